//! The leader's side of the direct path: copying batches into aligned staging buffers and
//! cutting them into writes of whole blocks (see [`super`] for the block rules).

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::aligned::{AlignedBuf, Owned, StagingBuf, StagingWriter};
use crate::io::{DIRECT_ALIGN, DirectBuf};

use super::flights::{Flight, Part};
use super::tail_cache::TailCache;
use crate::log::segment::{Segment, SegmentState};

/// one every this many bytes (and one at each buffer's first batch).
const MARK_INTERVAL: usize = 4096;

/// Emptied buffers kept for reuse beyond those the cache holds.
const SPARE_BUFFERS: usize = 2;

pub(crate) fn align_down(n: usize) -> usize {
    n - n % DIRECT_ALIGN
}

/// Where a batch starts in a buffer, for reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    pub offset: u64,
    pub pos: usize,
}

/// The buffer the leader is filling.
#[derive(Debug)]
struct Current {
    writer: StagingWriter,
    /// File position of the buffer's first byte (a block boundary).
    file_start: u64,
    /// Bytes of the buffer already handed to a write.
    handed: usize,
    /// Bytes copied since the last mark.
    since_mark: usize,
    /// Marks not yet in the cache (added at the next [`Stage::emit`], before any of their
    /// batches can be published).
    marks: Vec<Mark>,
}

/// The leader's side of the direct path (it lives in the writer core, so only the leader
/// touches it).
#[derive(Debug)]
pub(crate) struct Stage {
    current: Option<Current>,
    /// Emptied buffers of `chunk_bytes`, for reuse.
    spare: Vec<StagingWriter>,
    chunk_bytes: usize,
}

/// A staged write: bytes `from..full_end` of `buf` (whole blocks) and then `tail` (the last,
/// partial block, zero-padded), at file position `file_start + from`.
#[derive(Debug)]
pub(crate) struct DirectWrite {
    pub segment: Arc<Segment>,
    pub(crate) buf: Arc<StagingBuf>,
    pub(crate) file_start: u64,
    pub(crate) from: usize,
    pub(crate) full_end: usize,
    pub(crate) tail: Option<AlignedBuf>,
    /// Set on the last write of a group: what to publish once it (and every write before it)
    /// completed, and the append sequence number up to which appends are then done.
    pub publish: Option<(SegmentState, u64)>,
}

impl DirectWrite {
    /// Extends this write by `next`, staged right after it, when `next` continues it in the
    /// same buffer (it starts at this write's partial last block, which it rewrites with more
    /// bytes): one larger write replaces both, and publishes what `next` would. Gives `next`
    /// back otherwise.
    pub fn absorb(&mut self, next: DirectWrite) -> std::result::Result<(), DirectWrite> {
        if !Arc::ptr_eq(&self.buf, &next.buf) || next.from != self.full_end {
            return Err(next);
        }
        self.full_end = next.full_end;
        self.tail = next.tail;
        self.publish = next.publish.or(self.publish);
        Ok(())
    }

    /// The write as submitted under `id` (`None` when there is nothing to write), and what to
    /// publish when it completes.
    pub(crate) fn into_part(self, id: u64) -> Result<(Option<Part>, Flight)> {
        let bad = || {
            Error::io(
                "stage",
                &self.segment.log_path,
                io::Error::other("direct write not made of whole aligned blocks"),
            )
        };
        let mut bufs = Vec::with_capacity(2);
        if self.full_end > self.from {
            let body = Owned::staged(self.buf.clone(), self.from..self.full_end).ok_or_else(bad)?;
            bufs.push(DirectBuf(body));
        }
        if let Some(t) = self.tail {
            bufs.push(DirectBuf(Owned::block(t).ok_or_else(bad)?));
        }
        let flight = Flight {
            id,
            segment: self.segment.clone(),
            publish: self.publish,
            sync: false,
            written: false,
            needs_seals: false,
        };
        let part = (!bufs.is_empty()).then(|| Part {
            id,
            segment: self.segment,
            bufs,
            offset: self.file_start + self.from as u64,
            sync: false,
        });
        Ok((part, flight))
    }
}

impl Stage {
    pub fn new(chunk_bytes: usize) -> Self {
        Stage {
            current: None,
            spare: Vec::new(),
            chunk_bytes,
        }
    }

    /// A buffer of at least `need` bytes: a spare one if it is big enough, else a new one.
    fn buffer(&mut self, need: usize) -> io::Result<StagingWriter> {
        if need <= self.chunk_bytes
            && let Some(w) = self.spare.pop()
        {
            return Ok(w);
        }
        StagingBuf::with_capacity(need.max(self.chunk_bytes))
    }

    /// Keeps an emptied buffer for reuse if it has the standard size and there is room.
    fn keep_spare(&mut self, w: StagingWriter) {
        if w.shared().capacity() == self.chunk_bytes && self.spare.len() < SPARE_BUFFERS {
            self.spare.push(w);
        }
    }

    /// Starts a new buffer for `seg`, whose data ends at `pos`, to hold at least `need` more
    /// bytes. Its first bytes are those of the block holding `pos` that precede it: from the
    /// previous buffer if there is one, else from the file (a log reopened mid-block).
    fn start_buffer(
        &mut self,
        seg: &Segment,
        pos: u64,
        need: usize,
        cache: &parking_lot::RwLock<TailCache>,
    ) -> Result<()> {
        let file_start = pos - pos % DIRECT_ALIGN as u64;
        let prefix_len = (pos - file_start) as usize;
        let mut prefix = vec![0u8; prefix_len];
        match &self.current {
            Some(c) => {
                let from = (file_start - c.file_start) as usize;
                let bytes = c
                    .writer
                    .shared()
                    .get(from..from + prefix_len)
                    .ok_or_else(|| {
                        Error::io(
                            "stage",
                            &seg.log_path,
                            io::Error::other("block prefix not in the previous buffer"),
                        )
                    })?;
                prefix.copy_from_slice(bytes);
            }
            None if prefix_len > 0 => {
                let w = seg.writer()?;
                w.file()
                    .read_exact_at(&mut prefix, file_start)
                    .map_err(|e| Error::io("read block prefix", &seg.log_path, e))?;
            }
            None => {}
        }
        let need = (prefix_len + need).next_multiple_of(DIRECT_ALIGN);
        let mut writer = self
            .buffer(need)
            .map_err(|e| Error::io("allocate staging buffer", &seg.log_path, e))?;
        if !writer.append(&[&prefix]) {
            return Err(Error::io(
                "stage",
                &seg.log_path,
                io::Error::other("staging buffer smaller than a block"),
            ));
        }
        let evicted = cache
            .write()
            .push(seg.base_offset, writer.shared().clone(), file_start);
        for buf in evicted {
            if let Some(w) = StagingBuf::recycle(buf) {
                self.keep_spare(w);
            }
        }
        self.current = Some(Current {
            writer,
            file_start,
            handed: prefix_len,
            since_mark: usize::MAX,
            marks: Vec::new(),
        });
        Ok(())
    }

    /// Copies `batch` (its assigned baseOffset `head`, then `rest`, the batch's bytes after its
    /// own baseOffset field), which goes at file position `pos` of `seg`, into the current
    /// buffer. When it does not fit, the bytes copied so far are handed to a write first
    /// (pushed to `out`) and a new buffer is started.
    #[allow(clippy::too_many_arguments)]
    pub fn copy(
        &mut self,
        seg: &Arc<Segment>,
        pos: u64,
        base_offset: u64,
        head: &[u8],
        rest: &[u8],
        cache: &parking_lot::RwLock<TailCache>,
        out: &mut Vec<DirectWrite>,
    ) -> Result<()> {
        let len = head.len() + rest.len();
        let fits = self
            .current
            .as_ref()
            .is_some_and(|c| c.writer.remaining() >= len);
        if !fits {
            if let Some(w) = self.emit(seg, None, cache)? {
                out.push(w);
            }
            self.start_buffer(seg, pos, len, cache)?;
        }
        let c = self
            .current
            .as_mut()
            .ok_or_else(|| Error::Closed(seg.log_path.clone()))?;
        let at = (pos - c.file_start) as usize;
        if at != c.writer.shared().filled() || !c.writer.append(&[head, rest]) {
            return Err(Error::io(
                "stage",
                &seg.log_path,
                io::Error::other(format!("batch at {pos} does not follow the staged bytes")),
            ));
        }
        if c.since_mark >= MARK_INTERVAL {
            c.marks.push(Mark {
                offset: base_offset,
                pos: at,
            });
            c.since_mark = 0;
        }
        c.since_mark = c.since_mark.saturating_add(len);
        Ok(())
    }

    /// The write of everything copied into the current buffer and not yet handed to a write
    /// (`None` if nothing was), carrying `publish`. Its marks go into the cache now, before
    /// the write can complete and publish them.
    pub fn emit(
        &mut self,
        seg: &Arc<Segment>,
        publish: Option<(SegmentState, u64)>,
        cache: &parking_lot::RwLock<TailCache>,
    ) -> Result<Option<DirectWrite>> {
        let Some(c) = self.current.as_mut() else {
            return Ok(None);
        };
        let buf = c.writer.shared().clone();
        let end = buf.filled();
        let nothing = end == c.handed;
        if nothing && publish.is_none() {
            return Ok(None);
        }
        let full_end = align_down(end);
        // Nothing new (only a publish to carry): an empty write.
        let from = if nothing {
            full_end
        } else {
            align_down(c.handed)
        };
        let tail = if !nothing && end > full_end {
            let mut t = AlignedBuf::new(DIRECT_ALIGN, DIRECT_ALIGN)
                .map_err(|e| Error::io("allocate staging buffer", &seg.log_path, e))?;
            let bytes = buf.get(full_end..end).unwrap_or(&[]);
            if let Some(dst) = t.as_mut_slice().get_mut(..bytes.len()) {
                dst.copy_from_slice(bytes);
            }
            Some(t)
        } else {
            None
        };
        c.handed = end;
        if !c.marks.is_empty() {
            cache
                .write()
                .add_marks(seg.base_offset, c.file_start, std::mem::take(&mut c.marks));
        }
        Ok(Some(DirectWrite {
            segment: seg.clone(),
            buf,
            file_start: c.file_start,
            from,
            full_end,
            tail,
            publish,
        }))
    }

    /// Forgets the current buffer (the segment rolled or the log closes); the cache keeps it
    /// while it is cached.
    pub fn finish_segment(&mut self) {
        self.current = None;
    }
}
