//! What replication needs from a log (issue "house" §2; Kafka's replication protocol, KIP-101
//! and KIP-279): the high watermark kept apart from the log end, and truncation of a divergent
//! tail. Appending another replica's batches as they are is [`super::PartitionLog::append_replica`];
//! the leader-epoch cache is [`super::super::epoch`].
//!
//! ## Truncation, crash-safe
//! [`Inner::truncate_to`] cuts the log at a batch boundary: the batch holding the target offset
//! and everything after it go (Kafka's `truncateTo`). In order:
//! 1. new appends wait, and the ones already queued are written first;
//! 2. the checkpoint's recovery point moves back to the segment being cut (durably), so a crash
//!    from here on makes the next open re-check that segment;
//! 3. the log end moves back in memory and the segment list is rebuilt, the cut segment active
//!    again; readers that started before keep the old segment objects;
//! 4. the segments after the cut are removed, newest first, then the directory is synced: a
//!    crash part-way leaves a shorter log with no hole;
//! 5. once no reader holds a slice of the cut segment's mapping (waited for, bounded), the file
//!    is truncated and synced: a reader never has bytes pulled from under it (which would be a
//!    `SIGBUS` through the mapping);
//! 6. the leader-epoch cache drops the epochs that started at or after the new end.
//!
//! A crash anywhere leaves a log that recovery accepts: a prefix of the old one, at least as
//! long as the truncated one. The replication protocol truncates again after a restart.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

use super::super::checkpoint::{self, Checkpoint};
use super::super::epoch;
use super::super::scan::{self, relative};
use super::super::segment::{Segment, SegmentState};
use super::roll::open_active;
use super::state::{Inner, LogFailure, WriterCore, remove_if_exists, remove_segment_files};

/// Why a truncation that changed nothing was refused.
const ALREADY: &str = "a truncation is already running";

/// How long a truncation waits for readers to let go of the bytes it cuts.
pub(crate) const TRUNCATE_READER_WAIT: Duration = Duration::from_secs(30);

impl Inner {
    /// The high watermark as stored (see [`super::PartitionLog::high_watermark`]).
    pub fn stored_high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Sets the high watermark, bounded by the log start and end (Kafka's
    /// `updateHighWatermark`). Returns the value set.
    pub fn set_high_watermark(&self, hw: u64) -> u64 {
        let end = self.log_end.load(Ordering::Acquire);
        let start = self.log_start();
        let hw = hw.clamp(start, end.max(start));
        self.high_watermark.store(hw, Ordering::Release);
        hw
    }

    /// Runs `f` as the leader with appends frozen: new ones wait, queued ones are written
    /// first. What `f` sets as the next offset holds when appends resume.
    fn with_frozen_leader<T>(
        &self,
        f: impl FnOnce(&Inner, &mut WriterCore) -> Result<T>,
    ) -> Result<T> {
        let mut q = self.queue.lock();
        self.check_open(&q)?;
        if q.frozen {
            return Err(Error::Busy {
                dir: self.dir.clone(),
                reason: ALREADY.into(),
            });
        }
        q.frozen = true;
        // Queued appends are led by their own threads; wait until they are all taken.
        while (q.leader || !q.pending.is_empty()) && q.failure.is_none() {
            self.queue_cv.wait(&mut q);
        }
        if let Err(e) = self.check_open(&q) {
            q.frozen = false;
            drop(q);
            self.queue_cv.notify_all();
            return Err(e);
        }
        q.leader = true;
        drop(q);
        let res = {
            let mut core = self.core.lock();
            let res = f(self, &mut core);
            let mut q = self.queue.lock();
            q.next_offset = core.next_offset;
            res
        };
        let mut q = self.queue.lock();
        q.leader = false;
        q.frozen = false;
        if let Err(e @ Error::Poisoned { op, .. }) = &res {
            q.failure.get_or_insert_with(|| LogFailure::new(op, e));
        }
        drop(q);
        self.queue_cv.notify_all();
        res
    }

    /// Removes the batch holding `offset` and everything after it (see the module docs).
    /// Returns the new log end offset: the base offset of the first batch removed, or the log
    /// end if `offset` is at or past it (nothing is removed). Truncating at or below the log
    /// start empties the log, which then starts at `offset`.
    pub fn truncate_to(&self, offset: u64) -> Result<u64> {
        self.with_frozen_leader(|inner, core| {
            if offset >= core.next_offset {
                return Ok(core.next_offset);
            }
            inner.path.wait_writes(inner)?;
            inner.wait_for_seals()?;
            let segs: Vec<Arc<Segment>> = inner.segments.read().clone();
            let first_base = segs.first().map_or(0, |s| s.base_offset);
            // At or below the log start offset (Kafka: truncateFullyAndStartAt). At it too: a
            // cut removes the whole batch holding the offset, which would leave the log ending
            // below its start when DeleteRecords moved the start inside a batch.
            if offset <= first_base || offset <= inner.start_floor.load(Ordering::Acquire) {
                return inner.restart_at(core, offset).map(|()| offset);
            }
            inner.cut(core, &segs, offset)
        })
        .map_err(|e| self.truncate_error(e))
    }

    /// Empties the log and starts it again at `offset` (Kafka's `truncateFullyAndStartAt`: a
    /// follower whose log does not overlap the leader's any more).
    pub fn truncate_fully_and_start_at(&self, offset: u64) -> Result<()> {
        self.with_frozen_leader(|inner, core| {
            inner.path.wait_writes(inner)?;
            inner.wait_for_seals()?;
            inner.restart_at(core, offset)
        })
        .map_err(|e| self.truncate_error(e))
    }

    /// A failed truncation may have left files and memory apart: the log refuses writes until
    /// reopened (recovery makes them agree: a prefix of the old log at least as long as the
    /// truncated one), except when it gave up before changing anything.
    fn truncate_error(&self, e: Error) -> Error {
        match e {
            e @ (Error::Poisoned { .. } | Error::Closed(_)) => e,
            Error::Busy { reason, .. } if reason.starts_with(ALREADY) => Error::Busy {
                dir: self.dir.clone(),
                reason,
            },
            other => {
                tracing::error!(dir = %self.dir.display(), error = %other, "truncation failed; the log refuses writes until reopened");
                self.fail(LogFailure::new("truncate", &other))
            }
        }
    }

    /// Cuts the log at the batch holding `offset` (which lies after the first segment's base).
    fn cut(&self, core: &mut WriterCore, segs: &[Arc<Segment>], offset: u64) -> Result<u64> {
        let i = segs
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        // The first batch that holds `offset` or comes after it: where the file is cut.
        let (end_offset, cut_at) = {
            let Some(target) = segs.get(i) else {
                return Ok(core.next_offset);
            };
            let map = target.mapping()?;
            let data = map
                .as_deref()
                .and_then(|m| m.get(..target.len() as usize))
                .unwrap_or(&[]);
            let mut pos = target
                .index
                .read()
                .lookup(relative(offset, target.base_offset)) as usize;
            let mut found = (target.next_offset(), target.len());
            while let Some(h) = target.header_at(data, pos)? {
                if h.last_offset() as u64 >= offset {
                    found = (h.base_offset as u64, pos as u64);
                    break;
                }
                pos += h.total_len();
            }
            found
        };
        match segs.get(i) {
            // Cut at a segment's first batch: that segment goes whole, and the one before it
            // ends the log.
            Some(t) if end_offset == t.base_offset && i > 0 => {
                let len = segs.get(i - 1).map_or(0, |s| s.len());
                self.cut_inside(core, segs, i - 1, len, end_offset)
            }
            _ => self.cut_inside(core, segs, i, cut_at, end_offset),
        }
    }

    /// Keeps `cut_at` bytes of segment `i` of `segs` (which becomes the active segment, ending
    /// at `end_offset`) and removes every later segment.
    fn cut_inside(
        &self,
        core: &mut WriterCore,
        segs: &[Arc<Segment>],
        i: usize,
        cut_at: u64,
        end_offset: u64,
    ) -> Result<u64> {
        let Some(target) = segs.get(i) else {
            return Ok(core.next_offset);
        };
        let later = segs.get(i + 1..).unwrap_or(&[]);
        self.mark_dirty(core)?;
        let (active, state, bytes_since_index, offset_of_max) =
            self.reopen_cut(target, cut_at, end_offset)?;
        {
            // Retention (which removes from the front) waits until the list is rebuilt.
            let _m = self.maintenance.lock();
            // 2. Recovery re-checks the cut segment from now on.
            checkpoint::write(
                self.backend.as_ref(),
                &self.dir,
                &Checkpoint {
                    clean: false,
                    recovery_point: target.base_offset,
                    log_end_offset: end_offset,
                    active_segment_len: cut_at,
                },
            )?;
            // 3. The new end, in memory: readers from now on see the shorter log.
            self.log_end.store(end_offset, Ordering::Release);
            self.durable_end.fetch_min(end_offset, Ordering::AcqRel);
            self.high_watermark.fetch_min(end_offset, Ordering::AcqRel);
            {
                let mut list = self.segments.write();
                let keep = list.partition_point(|s| s.base_offset < target.base_offset);
                list.truncate(keep);
                list.push(active.clone());
            }
            let mut q = self.work.lock();
            q.preallocate = None;
            q.writeback = None;
            drop(q);
            // 4. Later segments, newest first.
            for s in later.iter().rev() {
                remove_segment_files(self.backend.as_ref(), &self.dir, s.base_offset)?;
            }
            // The cut segment's index files no longer match it; the next seal or clean close
            // writes new ones.
            remove_if_exists(self.backend.as_ref(), &target.index_path)?;
            remove_if_exists(self.backend.as_ref(), &target.time_index_path)?;
            self.backend
                .sync_dir(&self.dir)
                .ctx("fsync dir", &self.dir)?;
        }
        self.path.truncated(end_offset);
        core.active = active.clone();
        // 5. The file, once nobody reads the bytes it loses. The caller's `segs` holds the old
        // segment; any other holder is a reader.
        self.wait_for_readers(target, 1)?;
        let w = active.writer()?;
        w.set_len(cut_at).ctx("truncate", &active.log_path)?;
        w.sync_data().ctx("fdatasync", &active.log_path)?;
        // 6. Epochs that started at or after the new end.
        self.drop_epochs_from(end_offset)?;
        *core = WriterCore {
            active,
            len: state.len,
            next_offset: end_offset,
            bytes_since_index,
            max_timestamp: state.max_timestamp,
            offset_of_max_timestamp: offset_of_max,
            first_append_ms: (state.len > 0).then(super::state::now_ms),
            reserved: state.len,
        };
        self.unflushed.store(0, Ordering::Release);
        self.unsynced_messages.store(0, Ordering::Release);
        tracing::info!(dir = %self.dir.display(), end_offset, removed_segments = later.len(), "truncated the log");
        Ok(end_offset)
    }

    /// The cut segment as the new active segment: its indexes cut at `end_offset`, the batches
    /// after the last kept index entry walked for the index state and largest timestamp.
    fn reopen_cut(
        &self,
        target: &Arc<Segment>,
        cut_at: u64,
        end_offset: u64,
    ) -> Result<(Arc<Segment>, SegmentState, u64, u64)> {
        let base = target.base_offset;
        let rel_end = relative(end_offset, base);
        let mut index = target.index.read().clone();
        index.truncate_to(rel_end);
        let mut time_index = target.time_index.read().clone();
        time_index.truncate_to(rel_end);
        let from = index.entries().last().map_or(0, |e| u64::from(e.position));
        let map = target.mapping()?;
        let tail = map
            .as_deref()
            .and_then(|m| m.get(from as usize..cut_at as usize))
            .unwrap_or(&[]);
        let mut tail_max = (-1i64, base);
        let mut scanner = scan::BatchScanner::new(
            tail,
            super::super::config::MAX_SEGMENT_BYTES as usize,
            false,
        );
        for b in scanner.by_ref() {
            if b.header.max_timestamp > tail_max.0 {
                tail_max = (b.header.max_timestamp, b.header.last_offset() as u64);
            }
        }
        if scanner.position() != tail.len() as u64 {
            return Err(Error::Corrupt {
                file: target.log_path.clone(),
                position: from + scanner.position(),
                reason: "the batches before the truncation point do not parse".into(),
            });
        }
        drop(map);
        let (max_timestamp, offset_of_max) = match time_index.last() {
            Some(e) if e.timestamp >= tail_max.0 => {
                (e.timestamp, base + u64::from(e.relative_offset))
            }
            _ => tail_max,
        };
        let state = SegmentState {
            len: cut_at,
            next_offset: end_offset,
            max_timestamp,
        };
        let (active, _) = open_active(
            &self.dir,
            &self.config(),
            crate::log::config::MIN_PREALLOCATE_STEP,
            self.backend.clone(),
            self.direct_waker(),
            base,
            None,
            state,
            index,
            time_index,
        );
        Ok((active, state, cut_at - from, offset_of_max))
    }

    /// Waits (bounded) until no reader holds `seg` (beyond the `owners` references the caller
    /// holds) or a slice of any of its mappings.
    fn wait_for_readers(&self, seg: &Arc<Segment>, owners: usize) -> Result<()> {
        let deadline = Instant::now() + TRUNCATE_READER_WAIT;
        let mut maps = Vec::new();
        loop {
            // Once nobody else holds the segment, nobody can map it again...
            let held = Arc::strong_count(seg) > owners;
            // ...and every mapping made before is here.
            maps.extend(seg.take_mapping());
            maps.retain(|m| Arc::strong_count(m) > 1);
            if !held && maps.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Busy {
                    dir: self.dir.clone(),
                    reason: format!(
                        "readers still hold {} after {} s; the truncation is not finished",
                        seg.log_path.display(),
                        TRUNCATE_READER_WAIT.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Drops the leader epochs that started at or after `end`.
    fn drop_epochs_from(&self, end: u64) -> Result<()> {
        let mut epochs = self.epochs.lock();
        if epochs.truncate_from_end(end) {
            epoch::write(self.backend.as_ref(), &self.dir, &epochs)?;
        }
        Ok(())
    }

    /// Removes every segment and starts an empty one at `offset`. The checkpoint first names
    /// `offset` as the log end, then the segments go newest first (a crash leaves a prefix of
    /// the old log), then the empty segment is created (a crash before leaves none, and
    /// recovery creates it from the checkpoint).
    fn restart_at(&self, core: &mut WriterCore, offset: u64) -> Result<()> {
        self.mark_dirty(core)?;
        let old: Vec<Arc<Segment>> = self.segments.read().clone();
        {
            let _m = self.maintenance.lock();
            checkpoint::write(
                self.backend.as_ref(),
                &self.dir,
                &Checkpoint {
                    clean: false,
                    recovery_point: offset,
                    log_end_offset: offset,
                    active_segment_len: 0,
                },
            )?;
            self.log_end.store(offset, Ordering::Release);
            self.durable_end.store(offset, Ordering::Release);
            self.high_watermark.store(offset, Ordering::Release);
            let mut q = self.work.lock();
            q.preallocate = None;
            q.writeback = None;
            drop(q);
            for s in old.iter().rev() {
                remove_segment_files(self.backend.as_ref(), &self.dir, s.base_offset)?;
            }
            self.backend
                .sync_dir(&self.dir)
                .ctx("fsync dir", &self.dir)?;
            let (new, reserved) = self.create_segment(offset)?;
            self.backend
                .sync_dir(&self.dir)
                .ctx("fsync dir", &self.dir)?;
            *self.segments.write() = vec![new.clone()];
            *core = WriterCore {
                active: new,
                len: 0,
                next_offset: offset,
                bytes_since_index: 0,
                max_timestamp: -1,
                offset_of_max_timestamp: offset,
                first_append_ms: None,
                reserved,
            };
        }
        self.path.truncated(offset);
        if self.start_floor.load(Ordering::Acquire) != 0 {
            // The log now starts at `offset` (an open clamps a larger one there anyway).
            super::super::start::write(self.backend.as_ref(), &self.dir, offset)?;
            self.start_floor.store(offset, Ordering::Release);
        }
        {
            let mut epochs = self.epochs.lock();
            *epochs = Default::default();
            epoch::write(self.backend.as_ref(), &self.dir, &epochs)?;
        }
        self.unflushed.store(0, Ordering::Release);
        self.unsynced_messages.store(0, Ordering::Release);
        tracing::info!(dir = %self.dir.display(), offset, "emptied the log; it starts again at this offset");
        Ok(())
    }
}
