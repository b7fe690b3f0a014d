//! The newest staging buffers of the active segment, which answer reads of the batches they
//! hold without the disk.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::io::aligned::StagingBuf;
use crate::log::read::ReadSlice;
use crate::log::segment::{Want, find_batches};

use super::stage::Mark;

#[derive(Debug)]
pub(super) struct CachedChunk {
    pub(super) buf: Arc<StagingBuf>,
    pub(super) file_start: u64,
    /// Batch starts in the buffer, in offset order (sparse: see [`MARK_INTERVAL`]).
    marks: Vec<Mark>,
}

impl CachedChunk {
    pub(super) fn first_offset(&self) -> u64 {
        self.marks.first().map_or(u64::MAX, |m| m.offset)
    }
}

/// The newest staging buffers of the active segment, which answer reads of the batches they
/// hold. Shared by the leader (which adds buffers and marks) and readers, behind a `RwLock`.
#[derive(Debug)]
pub(crate) struct TailCache {
    /// Base offset of the segment the buffers belong to.
    segment_base: u64,
    pub(super) chunks: VecDeque<CachedChunk>,
    /// Bytes of buffers to keep (the newest buffer is kept whatever its size).
    window: usize,
}

impl TailCache {
    pub fn new(window: usize) -> Self {
        TailCache {
            segment_base: u64::MAX,
            chunks: VecDeque::new(),
            window,
        }
    }

    /// Adds the newest buffer of segment `segment_base` (dropping every buffer of another
    /// segment) and returns the buffers that leave the cache.
    pub(super) fn push(
        &mut self,
        segment_base: u64,
        buf: Arc<StagingBuf>,
        file_start: u64,
    ) -> Vec<Arc<StagingBuf>> {
        let mut evicted = Vec::new();
        if self.segment_base != segment_base {
            evicted.extend(self.chunks.drain(..).map(|c| c.buf));
            self.segment_base = segment_base;
        }
        self.chunks.push_back(CachedChunk {
            buf,
            file_start,
            marks: Vec::new(),
        });
        let mut total: usize = self.chunks.iter().map(|c| c.buf.capacity()).sum();
        while total > self.window && self.chunks.len() > 1 {
            if let Some(c) = self.chunks.pop_front() {
                total -= c.buf.capacity();
                evicted.push(c.buf);
            }
        }
        evicted
    }

    pub(super) fn add_marks(&mut self, segment_base: u64, file_start: u64, marks: Vec<Mark>) {
        if self.segment_base != segment_base {
            return;
        }
        if let Some(c) = self
            .chunks
            .iter_mut()
            .rev()
            .find(|c| c.file_start == file_start)
        {
            c.marks.extend(marks);
        }
    }

    /// Answers a read of segment `segment_base` (of which `published_len` bytes are published)
    /// from memory if a cached buffer holds the batch that contains `want.offset`; `None` sends
    /// the read to the file.
    pub fn read(
        &self,
        segment_base: u64,
        published_len: u64,
        want: &Want,
        log_path: &Path,
    ) -> Result<Option<ReadSlice>> {
        if self.segment_base != segment_base {
            return Ok(None);
        }
        let i = self
            .chunks
            .partition_point(|c| c.first_offset() <= want.offset);
        let Some(chunk) = i.checked_sub(1).and_then(|i| self.chunks.get(i)) else {
            return Ok(None);
        };
        let m = chunk.marks.partition_point(|m| m.offset <= want.offset);
        let Some(mark) = m.checked_sub(1).and_then(|m| chunk.marks.get(m)) else {
            return Ok(None);
        };
        let readable = usize::try_from(published_len.saturating_sub(chunk.file_start))
            .unwrap_or(usize::MAX)
            .min(chunk.buf.filled());
        let Some(data) = chunk.buf.get(0..readable) else {
            return Ok(None);
        };
        Ok(
            find_batches(data, mark.pos, want, log_path, chunk.file_start)?.map(|r| {
                ReadSlice::staged(chunk.buf.clone(), chunk.file_start as usize, r.start, r.end)
            }),
        )
    }
}

impl TailCache {
    /// Forgets every buffer (the log was truncated: they may hold bytes that are gone).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.segment_base = u64::MAX;
    }
}
