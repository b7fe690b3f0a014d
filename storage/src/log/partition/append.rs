//! Appending: the queue that assigns offsets, the leader/follower group commit, and what a
//! leader does around the write path (rolls, indexes, leader epochs, preallocation).
//!
//! Appenders put their batch on a queue (offsets are assigned there, in queue order) and wait.
//! Whoever finds no leader becomes one: it takes *every* queued batch and hands them to the
//! write path ([`super::super::write_path`]) in one go, then steps down. Batches that arrive
//! while a leader writes form the next group, so under `always` concurrent appenders share
//! fsyncs.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::batch::header;
use crate::error::{Error, Result};

use super::super::epoch;
use super::super::index::OffsetEntry;
use super::super::scan::relative;
use super::AppendInfo;
use super::state::{Inner, LogFailure, Pending, Ticket, Until, WriterCore, now_ms};

/// Where an append's offsets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The log assigns them (a producer's batch), stamping `epoch` as the batch's
    /// partitionLeaderEpoch if given.
    Assign { epoch: Option<i32> },
    /// The batch keeps its own baseOffset and partitionLeaderEpoch (a copy of another
    /// replica's batch), which must be the log end exactly.
    Replica,
}

impl Inner {
    /// Queues a validated batch and waits until a leader (possibly this thread) has stored it.
    pub fn append_wait(
        &self,
        batch: Bytes,
        count: u64,
        max_timestamp: i64,
        origin: Origin,
    ) -> Result<AppendInfo> {
        let ticket = self.enqueue(batch, count, max_timestamp, origin)?;
        self.drive(&ticket, Until::Done)?;
        Ok(ticket.info)
    }

    /// Queues a batch: assigns its offsets (under the queue lock, so offsets follow queue
    /// order) and its place in the write order.
    pub fn enqueue(
        &self,
        batch: Bytes,
        count: u64,
        max_timestamp: i64,
        origin: Origin,
    ) -> Result<Ticket> {
        if batch.len() < header::HEADER_LEN {
            // Validation guarantees a whole header; this keeps `Pending::parts` honest anyway.
            return Err(Error::InvalidBatch(crate::batch::BatchError::Truncated {
                needed: header::HEADER_LEN,
                available: batch.len(),
            }));
        }
        let mut q = self.queue.lock();
        self.check_open(&q)?;
        while q.frozen {
            self.queue_cv.wait(&mut q);
            self.check_open(&q)?;
        }
        let base = q.next_offset;
        let leader_epoch = match origin {
            Origin::Assign { epoch } => epoch,
            Origin::Replica => {
                let own = batch
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(-1, i64::from_be_bytes);
                if own != base as i64 {
                    return Err(Error::OffsetMismatch {
                        expected: base,
                        got: own,
                    });
                }
                None
            }
        };
        q.next_offset += count;
        let seq = q.next_seq;
        q.next_seq += 1;
        q.pending.push(Pending {
            batch,
            base_offset: base,
            next_offset: base + count,
            max_timestamp,
            leader_epoch,
        });
        Ok(Ticket {
            seq,
            info: AppendInfo {
                base_offset: base,
                last_offset: base + count - 1,
                max_timestamp,
            },
        })
    }

    /// Waits until the append `ticket` is `until`, leading a group (taking every queued batch
    /// and writing or staging it) whenever nobody else does.
    pub fn drive(&self, ticket: &Ticket, until: Until) -> Result<()> {
        let seq = ticket.seq;
        let mut q = self.queue.lock();
        loop {
            if let Some(&(_, _, errno)) = q.refused.iter().find(|(a, b, _)| (*a..*b).contains(&seq))
            {
                return Err(Error::io(
                    "open segment",
                    &self.dir,
                    std::io::Error::from_raw_os_error(errno),
                ));
            }
            if seq < q.done_seq || (until == Until::Taken && seq < q.taken_seq) {
                return Ok(());
            }
            if let Some(f) = &q.failure {
                return Err(self.poisoned(f));
            }
            // A batch a leader took is written even if the log closes meanwhile.
            if self.closed.load(Ordering::Acquire) && seq >= q.taken_seq {
                return Err(Error::Closed(self.dir.clone()));
            }
            // Lead only when something is queued: under `WriteMode::Direct` this append may
            // already be staged and waiting for its write to complete.
            if !q.leader && !q.pending.is_empty() {
                q.leader = true;
                let group = std::mem::take(&mut q.pending);
                let from = q.taken_seq;
                let upto = q.next_seq;
                q.taken_seq = upto;
                drop(q);
                let (res, end) = {
                    let mut core = self.core.lock();
                    let res = self.lead_group(&mut core, &group, upto);
                    (res, core.next_offset)
                };
                q = self.queue.lock();
                q.leader = false;
                match res {
                    Ok(true) => q.done_seq = q.done_seq.max(upto),
                    // Staged: published when its writes complete (`WriteMode::Direct`).
                    Ok(false) => {}
                    // Nothing was written: these appends fail, the log stays open.
                    Err(("open", e)) => {
                        let errno = match &e {
                            Error::Io { source, .. } => source.raw_os_error().unwrap_or(0),
                            _ => 0,
                        };
                        tracing::warn!(dir = %self.dir.display(), error = %e, "appends refused: a file could not be opened; the next ones try again");
                        // The batches queued meanwhile were given offsets after these: they
                        // are refused too, and the offsets taken back, so the log has no gap.
                        let upto = q.next_seq;
                        q.pending.clear();
                        q.taken_seq = upto;
                        q.refused.push_back((from, upto, errno));
                        while q.refused.len() > super::state::REFUSED_KEPT {
                            q.refused.pop_front();
                        }
                        q.done_seq = q.done_seq.max(upto);
                        q.next_offset = end;
                    }
                    Err((op, e)) => {
                        tracing::error!(dir = %self.dir.display(), op, error = %e, "write failed; the log refuses further writes");
                        q.failure.get_or_insert_with(|| LogFailure::new(op, &e));
                        q.pending.clear();
                    }
                }
                self.queue_cv.notify_all();
                continue;
            }
            self.queue_cv.wait(&mut q);
        }
    }

    /// What a leader does with a group: the first write since open clears the clean
    /// checkpoint, new leader epochs are recorded, then the write path writes (or stages) it.
    /// `Ok(true)` when stored, `Ok(false)` when it is published once its writes complete.
    pub fn lead_group(
        &self,
        core: &mut WriterCore,
        group: &[Pending],
        upto: u64,
    ) -> std::result::Result<bool, (&'static str, Error)> {
        // Everything that may fail for lack of descriptors or memory before a byte of the
        // group is written: such a failure refuses the group ("open") without poisoning.
        let refusable = |op: &'static str| {
            move |e: Error| {
                if e.is_out_of_resources() {
                    ("open", e)
                } else {
                    (op, e)
                }
            }
        };
        self.path
            .prepare(self, core)
            .map_err(refusable("open segment"))?;
        self.mark_dirty(core).map_err(refusable("checkpoint"))?;
        self.assign_epochs(group)
            .map_err(refusable("leader epoch"))?;
        self.appends
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.path.write_group(self, core, group, upto)
    }

    /// Records the leader epochs `group` starts (Kafka assigns them before the append), and
    /// writes the checkpoint file if that changed it: an entry may outlive its data after a
    /// crash (recovery drops it), never the other way round.
    fn assign_epochs(&self, group: &[Pending]) -> Result<()> {
        let mut epochs = self.epochs.lock();
        let mut changed = false;
        for p in group {
            let e = p.epoch();
            if e >= 0 && epochs.latest().is_none_or(|l| l.epoch != e) {
                changed |= epochs.assign(e, p.base_offset);
            }
        }
        if changed {
            epoch::write(self.backend.as_ref(), &self.dir, &epochs)?;
        }
        Ok(())
    }

    /// Before the first change to the files after open: replaces a clean checkpoint with one
    /// that says "not clean" (durably), so a crash from now on is recovered from.
    pub fn mark_dirty(&self, core: &WriterCore) -> Result<()> {
        if self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut m = self.maintenance.lock();
        if m.checkpoint_clean {
            super::super::checkpoint::write(
                self.backend.as_ref(),
                &self.dir,
                &super::super::checkpoint::Checkpoint {
                    clean: false,
                    recovery_point: core.active.base_offset,
                    log_end_offset: core.next_offset,
                    active_segment_len: core.len,
                },
            )?;
            m.checkpoint_clean = false;
        }
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs `f` as the leader (no append is being written meanwhile).
    pub fn with_leader<T>(
        &self,
        f: impl FnOnce(&Inner, &mut WriterCore) -> Result<T>,
    ) -> Result<T> {
        let mut q = self.queue.lock();
        self.check_open(&q)?;
        while q.leader {
            self.queue_cv.wait(&mut q);
        }
        self.check_open(&q)?;
        q.leader = true;
        drop(q);
        let res = {
            let mut core = self.core.lock();
            f(self, &mut core)
        };
        self.step_down(&res);
        res
    }

    /// Runs `f` as the leader if nobody leads and nothing is queued right now; `None` otherwise
    /// (for background work that must never wait for appends).
    pub fn try_with_leader<T>(
        &self,
        f: impl FnOnce(&Inner, &mut WriterCore) -> Result<T>,
    ) -> Option<Result<T>> {
        let mut q = self.queue.lock();
        if q.leader || !q.pending.is_empty() || self.check_open(&q).is_err() {
            return None;
        }
        q.leader = true;
        drop(q);
        let res = {
            let mut core = self.core.lock();
            f(self, &mut core)
        };
        self.step_down(&res);
        Some(res)
    }

    fn step_down<T>(&self, res: &Result<T>) {
        let mut q = self.queue.lock();
        q.leader = false;
        if let Err(e @ Error::Poisoned { op, .. }) = res {
            q.failure.get_or_insert_with(|| LogFailure::new(op, e));
        }
        drop(q);
        self.queue_cv.notify_all();
    }

    pub fn needs_roll(&self, core: &WriterCore, batch_len: usize) -> bool {
        if core.len == 0 {
            return false;
        }
        if core.len + batch_len as u64 > self.config().segment_bytes {
            return true;
        }
        match (self.config().segment_ms, core.first_append_ms) {
            (Some(ms), Some(first)) => now_ms().saturating_sub(first) >= ms.as_millis() as i64,
            _ => false,
        }
    }

    /// Counts `messages` more appended and says whether `flush.messages` is reached; if so the
    /// count starts again (the caller syncs before acknowledging).
    pub fn flush_due(&self, messages: u64) -> bool {
        let Some(n) = self.config().flush_messages else {
            return false;
        };
        let total = self.unsynced_messages.fetch_add(messages, Ordering::AcqRel) + messages;
        if total < n {
            return false;
        }
        self.unsynced_messages.store(0, Ordering::Release);
        true
    }

    /// Asks the runtime to reserve the next step of the active segment (at most
    /// [`PREALLOCATE_STEP`](super::super::config::PREALLOCATE_STEP), following the write rate: [`super::state::Pace`]) once the writer
    /// has used half of the current step, so `fallocate` (a journal transaction) never runs on
    /// the appending thread after the segment's first step, and a partition holds at most about
    /// one step past its data.
    pub fn reserve_ahead(&self, core: &mut WriterCore, written: u64) {
        let max = self.config().max_segment_len();
        let half = self.pace.lock().step / 2;
        if !self.config().preallocate || core.reserved >= max || written + half < core.reserved {
            return;
        }
        let step = self.pace.lock().next(std::time::Instant::now());
        let from = core.reserved;
        let to = (written.max(from) + step).min(max);
        core.reserved = to;
        self.request_range(|q| &mut q.preallocate, &core.active, from, to);
    }

    /// Index entries for batches just written at `start_pos`.
    pub fn index_run(&self, core: &mut WriterCore, run: &[Pending], start_pos: u64) {
        let seg = core.active.clone();
        let base = seg.base_offset;
        let mut pos = start_pos;
        let mut index = seg.index.write();
        let mut time_index = seg.time_index.write();
        for p in run {
            if core.bytes_since_index >= u64::from(self.config().index_interval_bytes) {
                index.push(OffsetEntry {
                    relative_offset: relative(p.base_offset, base),
                    position: pos as u32,
                });
                if let Some(e) = core.max_time_entry() {
                    time_index.maybe_push(e);
                }
                core.bytes_since_index = 0;
            }
            let len = p.batch.len() as u64;
            core.bytes_since_index += len;
            if p.max_timestamp > core.max_timestamp {
                core.max_timestamp = p.max_timestamp;
                core.offset_of_max_timestamp = p.next_offset - 1;
            }
            pos += len;
        }
        if core.first_append_ms.is_none() && !run.is_empty() {
            core.first_append_ms = Some(now_ms());
        }
        core.len = pos;
        if let Some(last) = run.last() {
            core.next_offset = last.next_offset;
        }
    }
}
