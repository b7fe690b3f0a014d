//! The direct write path ([`WriteMode::Direct`](super::WriteMode::Direct)): appended batches are
//! copied into aligned staging buffers and written with `O_DIRECT`; the newest buffers also
//! answer reads.
//!
//! ## Who does what
//! * The **leader** (an appender thread, as in the buffered path) takes every queued batch,
//!   decides rolls, copies the batches into the current staging buffer ([`Stage`]), updates the
//!   indexes and queues one [`DirectWrite`] per buffer touched. Then it steps down, so the next
//!   group is copied while this one is being written.
//!   Staged writes go to the segment's [`DirectFile`](crate::io::DirectFile) while there is
//!   room in flight; the rest wait and are merged into one ([`Flights`]).
//! * On io_uring the log's **reaper thread** submits them, waits for completions, submits what
//!   was staged meanwhile, then **publishes** the completed writes (readers see their batches,
//!   their appenders are released), in staging order. Only the reaper submits: the kernel
//!   cancels a request that has not started when the thread that submitted it exits, and an
//!   appender's thread may exit at any time. On a synchronous backend the leader writes and
//!   publishes itself. An append returns only after its write completed: the batch is in the
//!   file, as under the buffered path.
//!
//! ## Blocks
//! An O_DIRECT write covers whole [`DIRECT_ALIGN`] blocks. A buffer holds the file from a block
//! boundary (`file_start`). A write covers its buffer from the block that holds the first byte
//! not yet written to the end of the last full block, and then the last, partial block from a
//! copy (`tail`) padded with zeros. The copy is what lets the next leader fill the rest of that
//! block while the write is in flight: the kernel reads the copy, never bytes being copied. The
//! padding lands past the published end: after a crash it is the zero-filled tail recovery
//! already cuts; a clean close or a seal truncates the file to its data.
//! The next write covers that partial block again, with more bytes, which is one reason writes
//! are never in flight together.
//!
//! ## Buffers and the tail cache
//! A batch never straddles two buffers: when one does not fit, the next buffer starts at the
//! block holding the batch's first byte, with a copy of that block's earlier bytes in front. The
//! newest buffers of the active segment, up to `direct_cache_bytes`, stay in the [`TailCache`];
//! a read of a batch they hold is a slice of one of them, bounded by the published length like
//! every read. Buffers that leave the cache and that no reader or write still holds are reused.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::aligned::{AlignedBuf, Owned, StagingBuf, StagingWriter};
use crate::io::{DIRECT_ALIGN, DirectBuf};

use super::read::ReadSlice;
use super::segment::{Segment, SegmentState, Want, find_batches};

/// A read of a buffer starts its batch walk at the last mark at or before the wanted offset:
/// one every this many bytes (and one at each buffer's first batch).
const MARK_INTERVAL: usize = 4096;

/// Emptied buffers kept for reuse beyond those the cache holds.
const SPARE_BUFFERS: usize = 2;

fn align_down(n: usize) -> usize {
    n - n % DIRECT_ALIGN
}

/// Where a batch starts in a buffer, for reads.
#[derive(Debug, Clone, Copy)]
struct Mark {
    offset: u64,
    pos: usize,
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
    buf: Arc<StagingBuf>,
    file_start: u64,
    from: usize,
    full_end: usize,
    tail: Option<AlignedBuf>,
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
    fn into_part(self, id: u64) -> Result<(Option<Part>, Flight)> {
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
        };
        let part = (!bufs.is_empty()).then(|| Part {
            id,
            segment: self.segment,
            bufs,
            offset: self.file_start + self.from as u64,
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
                let w = seg
                    .writer()
                    .ok_or_else(|| Error::Closed(seg.log_path.clone()))?;
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
        head: &[u8; 8],
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

/// A buffer in the cache.
#[derive(Debug)]
struct CachedChunk {
    buf: Arc<StagingBuf>,
    file_start: u64,
    /// Batch starts in the buffer, in offset order (sparse: see [`MARK_INTERVAL`]).
    marks: Vec<Mark>,
}

impl CachedChunk {
    fn first_offset(&self) -> u64 {
        self.marks.first().map_or(u64::MAX, |m| m.offset)
    }
}

/// The newest staging buffers of the active segment, which answer reads of the batches they
/// hold. Shared by the leader (which adds buffers and marks) and readers, behind a `RwLock`.
#[derive(Debug)]
pub(crate) struct TailCache {
    /// Base offset of the segment the buffers belong to.
    segment_base: u64,
    chunks: VecDeque<CachedChunk>,
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
    fn push(
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

    fn add_marks(&mut self, segment_base: u64, file_start: u64, marks: Vec<Mark>) {
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

/// A write as submitted to a segment's [`DirectFile`](crate::io::DirectFile).
#[derive(Debug)]
pub(crate) struct Part {
    pub id: u64,
    pub segment: Arc<Segment>,
    pub bufs: Vec<DirectBuf>,
    pub offset: u64,
}

/// A write in flight, and what to publish when it completes.
#[derive(Debug)]
pub(crate) struct Flight {
    pub id: u64,
    pub segment: Arc<Segment>,
    pub publish: Option<(SegmentState, u64)>,
}

#[derive(Debug)]
enum Staged<R> {
    Write(DirectWrite),
    /// A roll, applied once every write staged before it completed.
    Roll(R),
}

/// One step of [`Flights::take_next`], to carry out in order.
#[derive(Debug)]
pub(crate) enum Step<R> {
    /// Apply a roll: every write staged before it has completed.
    Roll(R),
    /// Nothing to write and nothing in flight before it: publish now.
    Publish(Flight),
    /// Submit this write; it is now in flight.
    Submit(Part),
}

/// Writes submitted and not yet completed, per log: one at the device and one queued behind it
/// (a direct file performs its writes in order, see [`DirectFile`](crate::io::DirectFile)), so
/// the next write starts the moment the previous one completes, without waiting for a thread to
/// notice. Writes staged beyond that wait and are merged into one.
pub(crate) const MAX_FLYING: usize = 2;

/// The direct writes of a log from staging to completion. At most [`MAX_FLYING`] are
/// submitted; everything staged meanwhile is merged into the next write (see
/// [`DirectWrite::absorb`]): the busier the producers, the larger each write. More in flight
/// would not help: the writes of a file run one after another (consecutive writes overlap by a
/// block, and extending O_DIRECT writes serialise in the file system anyway, ext4 taking the
/// inode lock for each: two running together measured slower than one here). A roll waits until
/// every write before it completed, and the writes after it wait for the roll, so everything in
/// flight is on one file. Pure bookkeeping, behind the log's lock; `R` is what a roll carries.
#[derive(Debug)]
pub(crate) struct Flights<R> {
    staged: VecDeque<Staged<R>>,
    /// Submitted, oldest first.
    flying: VecDeque<Flight>,
    next_id: u64,
}

impl<R> Default for Flights<R> {
    fn default() -> Self {
        Flights {
            staged: VecDeque::new(),
            flying: VecDeque::new(),
            next_id: 0,
        }
    }
}

impl<R> Flights<R> {
    /// Nothing is staged or in flight.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.flying.is_empty()
    }

    /// The segment of the writes in flight, if any: the file to wait on.
    pub fn flying(&self) -> Option<&Arc<Segment>> {
        self.flying.front().map(|f| &f.segment)
    }

    pub fn stage(&mut self, w: DirectWrite) {
        self.staged.push_back(Staged::Write(w));
    }

    pub fn roll(&mut self, r: R) {
        self.staged.push_back(Staged::Roll(r));
    }

    /// What to do now: the rolls every earlier write has completed before, and writes to
    /// submit while fewer than [`MAX_FLYING`] are in flight, each made of every staged write
    /// that continues it in the same buffer.
    pub fn take_next(&mut self) -> Result<Vec<Step<R>>> {
        let mut steps = Vec::new();
        loop {
            match self.staged.front() {
                None => break,
                Some(Staged::Roll(_)) => {
                    if !self.flying.is_empty() {
                        break;
                    }
                    if let Some(Staged::Roll(r)) = self.staged.pop_front() {
                        steps.push(Step::Roll(r));
                    }
                }
                Some(Staged::Write(_)) => {
                    if self.flying.len() >= MAX_FLYING {
                        break;
                    }
                    let Some(Staged::Write(mut w)) = self.staged.pop_front() else {
                        break;
                    };
                    while matches!(self.staged.front(), Some(Staged::Write(_))) {
                        let Some(Staged::Write(next)) = self.staged.pop_front() else {
                            break;
                        };
                        if let Err(next) = w.absorb(next) {
                            self.staged.push_front(Staged::Write(next));
                            break;
                        }
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    match w.into_part(id)? {
                        (Some(part), flight) => {
                            self.flying.push_back(flight);
                            steps.push(Step::Submit(part));
                        }
                        // Nothing to write: what it publishes is published with the write
                        // in flight before it, or now.
                        (None, flight) => match self.flying.back_mut() {
                            Some(last) => last.publish = flight.publish.or(last.publish),
                            None => steps.push(Step::Publish(flight)),
                        },
                    }
                }
            }
        }
        Ok(steps)
    }

    /// Write `id` completed: returns it if it is the oldest in flight (a direct file reports
    /// completions in submission order), else `None`.
    pub fn completed(&mut self, id: u64) -> Option<Flight> {
        if self.flying.front().is_some_and(|f| f.id == id) {
            self.flying.pop_front()
        } else {
            None
        }
    }

    /// Forgets everything (the log failed; writes already at the device finish on their own).
    pub fn clear(&mut self) {
        self.staged.clear();
        self.flying.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;
    use crate::batch::NewRecord;
    use crate::io::IoBackend;
    use crate::io::plain::PlainBackend;
    use crate::log::index::{OffsetIndex, TimeIndex};
    use parking_lot::RwLock;

    /// An active segment of a direct-mode log in a temporary directory.
    fn segment(dir: &Path) -> Arc<Segment> {
        let path = dir.join("00000000000000000000.log");
        let w = PlainBackend.create_new(&path).unwrap();
        let direct = PlainBackend.open_direct(&path).unwrap();
        let state = SegmentState {
            len: 0,
            next_offset: 0,
            max_timestamp: -1,
        };
        Arc::new(
            Segment::active(
                dir,
                0,
                w,
                Some(direct),
                1 << 30,
                state,
                OffsetIndex::new(),
                TimeIndex::new(),
            )
            .unwrap(),
        )
    }

    /// A batch of `n` records of `len` bytes (baseOffset 0).
    fn batch(n: usize, len: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(crate::batch::Compression::None);
        for _ in 0..n {
            b.push(NewRecord {
                value: Some(vec![7u8; len]),
                ..NewRecord::default()
            })
            .unwrap();
        }
        b.build().unwrap().to_vec()
    }

    /// Copies batches of `sizes` (records, bytes each) into `stage`, as a leader does;
    /// returns the writes handed out and the file positions and base offsets used.
    fn fill(
        stage: &mut Stage,
        seg: &Arc<Segment>,
        cache: &RwLock<TailCache>,
        sizes: &[(usize, usize)],
    ) -> (Vec<DirectWrite>, u64, u64) {
        let (mut pos, mut offset) = (0u64, 0u64);
        let mut out = Vec::new();
        for &(n, len) in sizes {
            let b = batch(n, len);
            let head = (offset as i64).to_be_bytes();
            stage
                .copy(seg, pos, offset, &head, &b[8..], cache, &mut out)
                .unwrap();
            pos += b.len() as u64;
            offset += n as u64;
        }
        (out, pos, offset)
    }

    #[test]
    fn a_write_covers_whole_blocks_and_carries_the_partial_last_block_padded_with_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let seg = segment(dir.path());
        let cache = RwLock::new(TailCache::new(1 << 20));
        let mut stage = Stage::new(1 << 20);
        let (switches, end, _) = fill(&mut stage, &seg, &cache, &[(3, 1000)]);
        assert!(switches.is_empty(), "one buffer holds it");
        let w = stage.emit(&seg, None, &cache).unwrap().unwrap();
        assert_eq!((w.from, w.file_start), (0, 0));
        assert_eq!(w.full_end, align_down(end as usize));
        let tail = w.tail.as_ref().unwrap().as_slice();
        let partial = end as usize - w.full_end;
        assert_eq!(
            &tail[..partial],
            w.buf.get(w.full_end..end as usize).unwrap()
        );
        assert!(tail[partial..].iter().all(|&b| b == 0), "zero padding");
        assert!(
            stage.emit(&seg, None, &cache).unwrap().is_none(),
            "nothing new"
        );
    }

    #[test]
    fn consecutive_writes_of_one_buffer_merge_into_one_that_ends_like_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let seg = segment(dir.path());
        let cache = RwLock::new(TailCache::new(1 << 20));
        let mut stage = Stage::new(1 << 20);
        fill(&mut stage, &seg, &cache, &[(2, 3000)]);
        let mut first = stage.emit(&seg, None, &cache).unwrap().unwrap();
        let (_, pos, _) = fill(&mut stage, &seg, &cache, &[]);
        assert_eq!(pos, 0);
        let b = batch(2, 3000);
        let head = 2i64.to_be_bytes();
        let at = first.buf.filled() as u64;
        stage
            .copy(&seg, at, 2, &head, &b[8..], &cache, &mut Vec::new())
            .unwrap();
        let state = SegmentState {
            len: at + b.len() as u64,
            next_offset: 4,
            max_timestamp: -1,
        };
        let second = stage.emit(&seg, Some((state, 9)), &cache).unwrap().unwrap();
        assert_eq!(second.from, first.full_end, "rewrites the shared block");
        let (end, tail) = (
            second.full_end,
            second.tail.as_ref().map(|t| t.as_slice().to_vec()),
        );
        first.absorb(second).unwrap();
        assert_eq!(first.from, 0);
        assert_eq!(first.full_end, end);
        assert_eq!(first.tail.as_ref().map(|t| t.as_slice().to_vec()), tail);
        assert_eq!(first.publish.map(|p| p.1), Some(9));
    }

    #[test]
    fn a_batch_that_does_not_fit_starts_a_buffer_that_repeats_the_shared_block() {
        let dir = tempfile::tempdir().unwrap();
        let seg = segment(dir.path());
        let cache = RwLock::new(TailCache::new(4 << 20));
        let mut stage = Stage::new(1 << 20);
        // Five batches of ~300 KiB: the fourth does not fit a 1 MiB buffer.
        let (switches, end, _) = fill(&mut stage, &seg, &cache, &[(300, 1000); 5]);
        assert_eq!(switches.len(), 1, "one buffer switch");
        let old = &switches[0];
        let new = stage.emit(&seg, None, &cache).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&old.buf, &new.buf));
        let shared = old.file_start + old.full_end as u64;
        assert_eq!(
            new.file_start, shared,
            "the new buffer starts at the shared block"
        );
        let partial = old.buf.filled() - old.full_end;
        assert_eq!(
            new.buf.get(0..partial).unwrap(),
            old.buf.get(old.full_end..old.buf.filled()).unwrap(),
            "with the bytes the old buffer holds there"
        );
        assert_eq!(new.file_start + new.buf.filled() as u64, end);
        let mut merged = switches.into_iter().next().unwrap();
        assert!(merged.absorb(new).is_err(), "two buffers never merge");
    }

    #[test]
    fn flights_keep_two_writes_in_flight_merge_the_rest_and_hold_rolls_until_they_complete() {
        let dir = tempfile::tempdir().unwrap();
        let seg = segment(dir.path());
        let cache = RwLock::new(TailCache::new(1 << 20));
        let mut stage = Stage::new(1 << 20);
        let mut flights: Flights<&str> = Flights::default();
        let mut staged = |n: u64, flights: &mut Flights<&str>| {
            let b = batch(1, 100);
            let at = cache
                .read()
                .chunks
                .back()
                .map_or(0, |c| c.file_start + c.buf.filled() as u64);
            let head = (n as i64).to_be_bytes();
            stage
                .copy(&seg, at, n, &head, &b[8..], &cache, &mut Vec::new())
                .unwrap();
            let state = SegmentState {
                len: at + b.len() as u64,
                next_offset: n + 1,
                max_timestamp: -1,
            };
            let w = stage
                .emit(&seg, Some((state, n + 1)), &cache)
                .unwrap()
                .unwrap();
            flights.stage(w);
        };
        let submit = |steps: Vec<Step<&str>>| -> Vec<u64> {
            steps
                .into_iter()
                .map(|s| match s {
                    Step::Submit(p) => p.id,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        // Nothing in flight: each staged write goes at once, up to two.
        staged(0, &mut flights);
        let a = submit(flights.take_next().unwrap());
        staged(1, &mut flights);
        let b = submit(flights.take_next().unwrap());
        assert_eq!((a.len(), b.len()), (1, 1));
        for n in 2..5 {
            staged(n, &mut flights);
        }
        assert!(
            flights.take_next().unwrap().is_empty(),
            "no room: they wait"
        );
        flights.roll("roll");
        staged(5, &mut flights);
        assert!(
            flights.completed(b[0]).is_none(),
            "completions come in order"
        );
        let first = flights.completed(a[0]).unwrap();
        assert_eq!(first.publish.map(|p| p.1), Some(1));
        // Batches 2..=4 merge into one write; the roll waits for everything before it.
        let c = submit(flights.take_next().unwrap());
        assert_eq!(c.len(), 1, "three staged writes, one submitted");
        assert_eq!(
            flights.completed(b[0]).unwrap().publish.map(|p| p.1),
            Some(2)
        );
        assert!(flights.take_next().unwrap().is_empty(), "the roll waits");
        let merged = flights.completed(c[0]).unwrap();
        assert_eq!(merged.publish.map(|p| p.1), Some(5), "publishes the last");
        let steps = flights.take_next().unwrap();
        assert!(
            matches!(steps.as_slice(), [Step::Roll("roll"), Step::Submit(_)]),
            "{steps:?}"
        );
        flights.clear();
        assert!(flights.is_empty());
    }

    #[test]
    fn the_tail_cache_answers_reads_of_the_batches_it_holds_up_to_the_published_end() {
        let dir = tempfile::tempdir().unwrap();
        let seg = segment(dir.path());
        let cache = RwLock::new(TailCache::new(1 << 20));
        let mut stage = Stage::new(1 << 20);
        // 12 batches of ~100 KiB over two 1 MiB buffers; the cache keeps only the newest.
        let (_, end, offsets) = fill(&mut stage, &seg, &cache, &[(100, 1000); 12]);
        stage.emit(&seg, None, &cache).unwrap().unwrap();
        let c = cache.read();
        assert_eq!(c.chunks.len(), 1, "the 1 MiB window holds one buffer");
        let first_cached = c.chunks[0].first_offset();
        assert!(first_cached > 0 && first_cached < offsets);
        let want = |offset, max_bytes| Want {
            offset,
            max_bytes,
            end_offset: offsets,
        };
        let path = seg.log_path.clone();
        assert!(
            c.read(0, end, &want(0, 1), &path).unwrap().is_none(),
            "evicted"
        );
        let s = c
            .read(0, end, &want(offsets - 1, 1), &path)
            .unwrap()
            .unwrap();
        assert!(s.is_staged());
        let h = crate::batch::header::BatchHeader::parse(&s).unwrap();
        assert_eq!(h.base_offset as u64, offsets - 100);
        assert_eq!(s.file_position() as u64 + s.len() as u64, end);
        let all = c
            .read(0, end, &want(first_cached, usize::MAX), &path)
            .unwrap()
            .unwrap();
        assert_eq!(all.file_position() as u64 + all.len() as u64, end);
        // Not yet published: not served.
        let published = end - s.len() as u64;
        let short = c.read(0, published, &want(offsets - 1, 1), &path).unwrap();
        assert!(short.is_none(), "the last batch is not published");
        assert!(
            c.read(1, end, &want(offsets - 1, 1), &path)
                .unwrap()
                .is_none(),
            "another segment's reads go to its file"
        );
    }
}
