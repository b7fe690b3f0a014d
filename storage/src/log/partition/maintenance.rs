//! A log's background work, run by the shared [`Runtime`](super::super::runtime::Runtime):
//! sealing rolled segments, the interval fsync, preallocation, writeback, retention and closing
//! idle files. Also the syncs and the clean close the API asks for, which share its code.
//!
//! Work is queued in the log's [`WorkQueue`]; one runtime job at a time drains it, so a log's
//! work runs in order (seals first, in roll order) and never waits for other work of the same
//! log. Nothing here waits for an append: closing idle files happens only when no append is
//! being written ([`Inner::try_with_leader`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::error::{IoContext, Result};

use super::super::checkpoint::{self, Checkpoint};
use super::super::config::FsyncPolicy;
use super::super::runtime::Timed;
use super::super::segment::Segment;
use super::state::{Inner, LogFailure, WriterCore, now_ms};

/// Under `never`/`interval`, start writeback (not wait for it) every this many bytes, so the
/// disk works while the producer keeps writing instead of everything landing at the next sync.
/// The runtime starts it, see [`WorkQueue::writeback`].
pub(crate) const WRITEBACK_CHUNK: u64 = 8 << 20;

/// Items one runtime job handles before it lets other logs' jobs run.
const ITEMS_PER_JOB: usize = 16;

/// Work for the runtime: a rolled segment to make durable before the recovery point may move
/// past it.
pub(crate) struct SealJob {
    /// The segment as it was while active (it still holds the writable file).
    pub segment: Arc<Segment>,
    /// Its length: where its preallocated blocks start.
    pub len: u64,
    pub next_offset: u64,
}

/// A byte range of the active segment: to start writeback of, or to reserve blocks for.
pub(crate) struct RangeJob {
    pub segment: Arc<Segment>,
    pub offset: u64,
    pub len: u64,
}

/// One item of background work.
enum Item {
    Seal(SealJob),
    Preallocate(RangeJob),
    Writeback(RangeJob),
    IntervalSync,
    Retention,
    Sweep,
}

#[derive(Default)]
pub(crate) struct WorkQueue {
    pub seals: VecDeque<SealJob>,
    /// The next step of preallocation for the active segment. Dropped by the roll that seals
    /// the segment, so no reservation is made past a sealed segment's end after its seal
    /// released them.
    pub preallocate: Option<RangeJob>,
    /// Writeback to start when there is no seal to do. The writer never calls
    /// `sync_file_range` itself: it blocks while the device queue is full or a journal commit
    /// runs (measured at up to 0.86 s while a rolled segment was being synced).
    pub writeback: Option<RangeJob>,
    pub sync_due: bool,
    pub retention_due: bool,
    pub sweep_due: bool,
    /// A runtime job is queued or running for this log.
    scheduled: bool,
    /// A job is running right now (closing the log waits for it).
    running: bool,
    /// True while a seal or a preallocation runs (what `wait_for_seals` and a clean close
    /// wait for).
    pub busy: bool,
    /// True while a seal runs.
    sealing: bool,
    /// No more work is started (the log is closing or dropped).
    pub stop: bool,
    /// Set by a clean close before it truncates the active segment: no preallocation may start
    /// after that truncation released the blocks reserved past the data.
    pub closing: bool,
}

impl WorkQueue {
    fn next(&mut self) -> Option<Item> {
        if let Some(job) = self.seals.pop_front() {
            return Some(Item::Seal(job));
        }
        if !self.closing
            && let Some(p) = self.preallocate.take()
        {
            return Some(Item::Preallocate(p));
        }
        if std::mem::take(&mut self.sync_due) {
            return Some(Item::IntervalSync);
        }
        if std::mem::take(&mut self.retention_due) {
            return Some(Item::Retention);
        }
        if let Some(wb) = self.writeback.take() {
            return Some(Item::Writeback(wb));
        }
        if std::mem::take(&mut self.sweep_due) {
            return Some(Item::Sweep);
        }
        None
    }

    fn has_work(&self) -> bool {
        !self.seals.is_empty()
            || (self.preallocate.is_some() && !self.closing)
            || self.writeback.is_some()
            || self.sync_due
            || self.retention_due
            || self.sweep_due
    }
}

/// When each periodic item is next due (the timer's view of a log).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    pub flush: Option<Instant>,
    pub retention: Option<Instant>,
    pub sweep: Option<Instant>,
    /// The sweep's memory of the counters it saw last time.
    pub seen_appends: u64,
    pub seen_reads: Vec<(u64, u64)>,
}

impl Inner {
    /// Makes sure a runtime job will look at the queue.
    fn schedule(&self, q: &mut WorkQueue) {
        if q.scheduled || q.stop || !q.has_work() {
            return;
        }
        q.scheduled = true;
        let me = self.me.clone();
        self.runtime.submit(Box::new(move || {
            if let Some(inner) = me.upgrade() {
                inner.run_work();
            }
        }));
    }

    /// Queues a rolled segment's seal (behind earlier ones) and drops a pending preallocation
    /// of it.
    pub fn queue_seal(&self, job: SealJob) {
        let mut q = self.work.lock();
        if q.preallocate
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(&p.segment, &job.segment))
        {
            q.preallocate = None;
        }
        q.seals.push_back(job);
        self.schedule(&mut q);
    }

    /// Hands the runtime `seg`'s bytes `[from, to)` in the slot `slot` picks (writeback or
    /// preallocation), merged with a request it has not taken yet. A request for an older
    /// segment is replaced: a pending writeback is covered by that segment's seal, and a
    /// pending preallocation was dropped by its roll.
    pub fn request_range(
        &self,
        slot: impl FnOnce(&mut WorkQueue) -> &mut Option<RangeJob>,
        seg: &Arc<Segment>,
        from: u64,
        to: u64,
    ) {
        let mut q = self.work.lock();
        match slot(&mut q) {
            Some(job) if Arc::ptr_eq(&job.segment, seg) && job.offset <= from => {
                job.len = to.saturating_sub(job.offset);
            }
            pending => {
                *pending = Some(RangeJob {
                    segment: seg.clone(),
                    offset: from,
                    len: to.saturating_sub(from),
                });
            }
        }
        self.schedule(&mut q);
    }

    /// Drains the work queue (a runtime job): seals first, in roll order.
    fn run_work(&self) {
        let mut q = self.work.lock();
        if q.stop {
            q.scheduled = false;
            drop(q);
            self.work_cv.notify_all();
            return;
        }
        q.running = true;
        for _ in 0..ITEMS_PER_JOB {
            let Some(item) = q.next() else { break };
            let blocking = matches!(item, Item::Seal(_) | Item::Preallocate(_));
            let seal = matches!(item, Item::Seal(_));
            q.busy = blocking;
            q.sealing = seal;
            drop(q);
            self.run_item(item);
            q = self.work.lock();
            q.busy = false;
            q.sealing = false;
            self.work_cv.notify_all();
            if seal {
                // The direct path may hold publishes back until every earlier seal is done.
                drop(q);
                self.path.seals_done(self);
                q = self.work.lock();
            }
            if q.stop {
                break;
            }
        }
        q.running = false;
        q.scheduled = false;
        self.schedule(&mut q);
        drop(q);
        self.work_cv.notify_all();
    }

    fn run_item(&self, item: Item) {
        match item {
            Item::Seal(job) => {
                let res = self.seal(&job);
                if let Err(e) = &res {
                    tracing::error!(segment = %job.segment.log_path.display(), error = %e, "sealing a segment failed; the log refuses further writes");
                    self.fail(LogFailure::new("seal", e));
                    self.work.lock().seals.clear();
                }
            }
            Item::Preallocate(p) => {
                // An optimisation: without it the file system allocates at writeback.
                if let Ok(w) = p.segment.writer()
                    && let Err(e) = w.preallocate(p.offset, p.len)
                {
                    tracing::warn!(segment = %p.segment.log_path.display(), error = %e, "fallocate failed");
                }
            }
            Item::Writeback(wb) => {
                // A hint: failure only means the OS flushes later, never lost data.
                if let Some(w) = wb.segment.writer_if_open()
                    && let Err(e) = w.start_writeback(wb.offset, wb.len)
                {
                    tracing::debug!(error = %e, "sync_file_range failed");
                }
            }
            Item::IntervalSync => {
                // Seals queued before this ran first, so everything before the active segment
                // is durable or being made so by a later seal.
                if self.log_end.load(Ordering::Acquire) > self.durable_end.load(Ordering::Acquire)
                    && let Err(e) = self.sync_active()
                {
                    tracing::error!(error = %e, "interval fsync failed");
                }
            }
            Item::Retention => {
                if let Err(e) = self.enforce_retention(now_ms()) {
                    tracing::error!(dir = %self.dir.display(), error = %e, "retention failed");
                }
            }
            Item::Sweep => self.sweep(),
        }
    }

    /// Makes a rolled segment durable: release of the blocks preallocated past its data
    /// (readers never look past it), fdatasync, index files, a directory fsync (which also
    /// makes the next segment's directory entry durable, see `roll_inner`), then the
    /// checkpoint that moves the recovery point to the next segment.
    fn seal(&self, job: &SealJob) -> Result<()> {
        let seg = &job.segment;
        match seg.writer() {
            Ok(w) => {
                w.set_len(job.len).ctx("truncate", &seg.log_path)?;
                w.sync_data().ctx("fdatasync", &seg.log_path)?;
            }
            // Retention deletes every segment but the active one, a rolled one whose seal has
            // not run yet too (it unlists a segment before it removes its files): if its file
            // is gone, so is everything there was to seal.
            Err(_) if !self.is_listed(seg.base_offset) => {}
            Err(e) => return Err(e),
        }
        // The sealed segment is read through its sealed view: its write handles can go.
        seg.release_files();
        // Seals run in roll order, so everything up to this segment's end is now durable.
        self.durable_end
            .fetch_max(job.next_offset, Ordering::AcqRel);
        // Held from the check to the checkpoint, so retention cannot delete the segment in
        // between and leave its index files orphaned.
        let _g = self.maintenance.lock();
        if self.is_listed(seg.base_offset) {
            seg.write_index_files(self.backend.as_ref())?;
        }
        self.backend
            .sync_dir(&self.dir)
            .ctx("fsync dir", &self.dir)?;
        checkpoint::write(
            self.backend.as_ref(),
            &self.dir,
            &Checkpoint {
                clean: false,
                recovery_point: job.next_offset,
                log_end_offset: job.next_offset,
                active_segment_len: 0,
            },
        )?;
        Ok(())
    }

    /// Whether the segment based at `base` is still in the log (retention has not removed it).
    fn is_listed(&self, base: u64) -> bool {
        self.segments.read().iter().any(|s| s.base_offset == base)
    }

    /// Blocks until every rolled segment has been sealed (from outside the runtime only).
    pub fn wait_for_seals(&self) -> Result<()> {
        let mut q = self.work.lock();
        while !q.seals.is_empty() || q.busy {
            if q.stop {
                break;
            }
            self.work_cv.wait(&mut q);
        }
        drop(q);
        match self.failed_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether a seal is queued or running (when the last one ends, the write path hears of
    /// it: [`super::super::write_path::WritePath::seals_done`]).
    pub fn seals_pending(&self) -> bool {
        let q = self.work.lock();
        !q.seals.is_empty() || q.sealing
    }

    /// Makes everything appended so far durable: waits for the seals of rolled segments, then
    /// syncs the active one.
    pub fn sync(&self) -> Result<()> {
        self.wait_for_seals()?;
        self.sync_active()
    }

    /// fdatasync of the active segment (what seals do for the others). A failure poisons.
    pub fn sync_active(&self) -> Result<()> {
        let end = self.log_end.load(Ordering::Acquire);
        let seg = self.segments.read().last().cloned();
        let Some(seg) = seg else { return Ok(()) };
        // A closed handle was synced when the sweep closed it, and nothing was written since.
        let w = match seg.handle_for_sync() {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(self.fail(LogFailure::new("fdatasync", &e)));
            }
        };
        if let Err(e) = w.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: the page cache
            // no longer tells what is on disk. Refuse writes until reopened.
            tracing::error!(dir = %self.dir.display(), error = %e, "fdatasync failed; the log refuses further writes");
            return Err(self.fail(LogFailure {
                op: "fdatasync",
                cause: e.to_string(),
                no_space: false,
                out_of_resources: false,
            }));
        }
        self.durable_end.fetch_max(end, Ordering::AcqRel);
        self.unsynced_messages.store(0, Ordering::Release);
        Ok(())
    }

    /// The clean close's last step (as the leader, after every write and seal): truncate the
    /// active segment to its data, sync it, write its indexes and a clean checkpoint. Nothing
    /// to do if nothing changed since the log opened from a clean checkpoint.
    pub fn close_clean(&self, core: &mut WriterCore, dir_sync: bool) -> Result<()> {
        {
            // No reservation may land after the truncation below released them.
            let mut q = self.work.lock();
            q.closing = true;
            q.preallocate = None;
            while q.busy && !q.stop {
                self.work_cv.wait(&mut q);
            }
        }
        if self.maintenance.lock().checkpoint_clean {
            return Ok(());
        }
        let seg = core.active.clone();
        let w = seg.writer()?;
        // Releases the blocks reserved past the data (the file's length is the data's already).
        w.set_len(core.len).ctx("truncate", &seg.log_path)?;
        // Data an earlier sync covered (the idle sweep's, an interval's, every append's under
        // `always`) needs no other: the truncation above changes only blocks past the end, and
        // were it lost in a power cut they would stay reserved, nothing more.
        if self.durable_end.load(Ordering::Acquire) < core.next_offset {
            w.sync_data().ctx("fdatasync", &seg.log_path)?;
            self.durable_end
                .fetch_max(core.next_offset, Ordering::AcqRel);
        }
        if let Some(e) = core.max_time_entry() {
            seg.time_index.write().maybe_push(e);
        }
        // The data is synced above; what follows is only there to make the next start fast, so
        // it is written without fdatasyncs (thousands of partitions close at once), and one
        // directory fsync at the end makes the renames durable. After a power cut in between:
        // index files lost or cut short fail their CRC or are the old ones, a prefix of the new
        // (a trusted open walks every batch after their last entry, `load_trusted`, or the whole
        // segment when they do not check out); a checkpoint cut short fails its CRC and the next
        // open scans every segment. Nothing acknowledged depends on them.
        seg.write_index_files_unsynced(self.backend.as_ref())?;
        let mut m = self.maintenance.lock();
        checkpoint::write_unsynced(
            self.backend.as_ref(),
            &self.dir,
            &Checkpoint {
                clean: true,
                recovery_point: core.next_offset,
                log_end_offset: core.next_offset,
                active_segment_len: core.len,
            },
            dir_sync,
        )?;
        m.checkpoint_clean = true;
        Ok(())
    }

    /// Closes the files of a log nobody wrote or read since the last sweep: the active
    /// segment's handles (after a sync, so no writeback error can go unseen by a later sync
    /// through a new handle) when no append is in progress, and the mappings of unread
    /// segments. They are reopened on the next write or read.
    fn sweep(&self) {
        let segs: Vec<Arc<Segment>> = self.segments.read().clone();
        let mut deadlines = self.deadlines.lock();
        let appends = self.appends.load(Ordering::Relaxed);
        let idle_writes = appends == deadlines.seen_appends;
        deadlines.seen_appends = appends;
        // Mappings of segments not read since the last sweep.
        let mut seen: Vec<(u64, u64)> = Vec::with_capacity(segs.len());
        for s in &segs {
            let mut count = deadlines
                .seen_reads
                .iter()
                .find(|(b, _)| *b == s.base_offset)
                .map_or(u64::MAX, |(_, c)| *c);
            if !s.is_active() {
                s.release_mapping_if_unread(&mut count);
            }
            seen.push((s.base_offset, count));
        }
        deadlines.seen_reads = seen;
        drop(deadlines);
        if !idle_writes || !self.path.is_idle() {
            return;
        }
        let Some(active) = segs.last().filter(|s| s.holds_files()).cloned() else {
            return;
        };
        let res = self.try_with_leader(|inner, core| {
            if !Arc::ptr_eq(&core.active, &active) || !inner.path.is_idle() {
                return Ok(());
            }
            if let Some(w) = active.handle_for_sync()? {
                w.sync_data().map_err(|e| {
                    inner.fail(LogFailure {
                        op: "fdatasync",
                        cause: e.to_string(),
                        no_space: false,
                        out_of_resources: false,
                    })
                })?;
                inner
                    .durable_end
                    .fetch_max(core.next_offset, Ordering::AcqRel);
            }
            active.release_files();
            Ok(())
        });
        if let Some(Err(e)) = res {
            tracing::error!(dir = %self.dir.display(), error = %e, "closing an idle log's files failed");
        }
    }

    /// Registers the log with the runtime's timer (interval fsync, retention, idle sweep).
    pub fn start_timers(&self) {
        let now = Instant::now();
        let mut d = self.deadlines.lock();
        d.flush = match self.config().fsync {
            FsyncPolicy::Interval(i) => Some(now + i),
            _ => None,
        };
        d.retention = self.config().retention_check_interval.map(|i| now + i);
        d.sweep = self.config().idle_file_close.map(|i| now + i);
        let first = [d.flush, d.retention, d.sweep].into_iter().flatten().min();
        drop(d);
        if let Some(at) = first {
            let me: std::sync::Weak<dyn Timed> = self.me.clone();
            self.runtime.wake_at(at, me);
        }
    }

    /// Stops background work: queued items are dropped (pending seals are left to recovery),
    /// and the job running now, if any, is waited for.
    pub fn stop_work(&self) {
        let mut q = self.work.lock();
        q.stop = true;
        while q.running {
            self.work_cv.wait(&mut q);
        }
        drop(q);
        self.work_cv.notify_all();
    }
}

impl Timed for Inner {
    fn fire(&self, now: Instant) -> Option<Instant> {
        let mut d = self.deadlines.lock();
        let mut q = self.work.lock();
        if q.stop {
            return None;
        }
        if let (Some(at), FsyncPolicy::Interval(i)) = (d.flush, self.config().fsync)
            && now >= at
        {
            q.sync_due = true;
            d.flush = Some(now + i);
        }
        if let (Some(at), Some(i)) = (d.retention, self.config().retention_check_interval)
            && now >= at
        {
            q.retention_due = true;
            d.retention = Some(now + i);
        }
        if let (Some(at), Some(i)) = (d.sweep, self.config().idle_file_close)
            && now >= at
        {
            q.sweep_due = true;
            d.sweep = Some(now + i);
        }
        self.schedule(&mut q);
        [d.flush, d.retention, d.sweep].into_iter().flatten().min()
    }
}
