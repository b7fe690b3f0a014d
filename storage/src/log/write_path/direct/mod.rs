//! The direct write path ([`WriteMode::Direct`](crate::log::WriteMode::Direct)): appended
//! batches are copied into aligned staging buffers and written with `O_DIRECT`; the newest
//! buffers also answer reads.
//!
//! ## Who does what
//! * The **leader** (an appender thread, as in the buffered path) takes every queued batch,
//!   decides rolls, copies the batches into the current staging buffer ([`stage::Stage`]),
//!   updates the indexes and queues one [`stage::DirectWrite`] per buffer touched. Then it steps
//!   down, so the next group is copied while this one is being written.
//!   Staged writes go to the segment's [`DirectFile`](crate::io::DirectFile) while there is
//!   room in flight; the rest wait and are merged into one ([`flights::Flights`]). Under
//!   `always` (or when `flush.messages` is reached) each write is followed by an fdatasync
//!   queued on the same file, which runs once the write completed.
//! * On io_uring the backend's ring threads run the writes and call the log back
//!   ([`WritePath::wake`]) when they complete: it collects the completions, submits what was
//!   staged meanwhile, then **publishes** the completed writes (readers see their batches,
//!   their appenders are released), in staging order. On a synchronous backend the leader
//!   writes and publishes itself. An append returns only after its write (and sync) completed:
//!   the batch is in the file, as under the buffered path.
//!
//! ## Blocks
//! An O_DIRECT write covers whole [`DIRECT_ALIGN`](crate::io::DIRECT_ALIGN) blocks. A buffer
//! holds the file from a block boundary (`file_start`). A write covers its buffer from the block
//! that holds the first byte not yet written to the end of the last full block, and then the
//! last, partial block from a copy (`tail`) padded with zeros. The copy is what lets the next
//! leader fill the rest of that block while the write is in flight: the kernel reads the copy,
//! never bytes being copied. The padding lands past the published end: after a crash it is the
//! zero-filled tail recovery already cuts; a clean close or a seal truncates the file to its
//! data. The next write covers that partial block again, with more bytes, which is one reason
//! writes of a file never run together.
//!
//! ## Buffers and the tail cache
//! A batch never straddles two buffers: when one does not fit, the next buffer starts at the
//! block holding the batch's first byte, with a copy of that block's earlier bytes in front. The
//! newest buffers of the active segment, up to `direct_cache_bytes`, stay in the
//! [`tail_cache::TailCache`]; a read of a batch they hold is a slice of one of them, bounded by
//! the published length like every read. Buffers that leave the cache and that no reader or
//! write still holds are reused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};

use super::WritePath;
use crate::log::config::{FsyncPolicy, LogConfig};
use crate::log::partition::roll::RollSwap;
use crate::log::partition::state::{Inner, LogFailure, Pending, WriterCore};
use crate::log::read::ReadSlice;
use crate::log::segment::{Segment, SegmentState, Want};

pub(crate) mod flights;
pub(crate) mod stage;
pub(crate) mod tail_cache;
#[cfg(test)]
mod tests;

use flights::{Flight, Flights, Part, SYNC_TAG, Step};
use stage::{DirectWrite, Stage};
use tail_cache::TailCache;

/// See the module docs.
pub(crate) struct DirectPath {
    /// The leader's staging (only the leader, holding the writer core, touches it).
    stage: Mutex<Stage>,
    /// The newest staging buffers, which answer reads.
    cache: RwLock<TailCache>,
    /// Staged writes and rolls, writes in flight and completed ones to publish. Lock order:
    /// the writer core, then this, then the log's other locks.
    flights: Mutex<Flights<RollSwap>>,
    /// Signalled whenever a write is published or the flights change (for `wait_writes`).
    flights_cv: Condvar,
    /// The log end counted for `flush.messages` so far (under `flights`).
    counted_end: Mutex<u64>,
    /// No more callbacks run their work (the log is being dropped).
    stopped: AtomicBool,
    /// Callbacks running now, which `stop` waits for.
    running: AtomicUsize,
    idle: Mutex<()>,
    idle_cv: Condvar,
    /// The segment the last write went to (whose writes `stop` waits for).
    last_file: Mutex<Option<Arc<Segment>>>,
}

impl DirectPath {
    pub fn new(config: &LogConfig, end: u64) -> Self {
        DirectPath {
            stage: Mutex::new(Stage::new(config.direct_chunk_bytes())),
            cache: RwLock::new(TailCache::new(
                config.direct_cache_bytes.max(config.direct_chunk_bytes()),
            )),
            flights: Mutex::new(Flights::default()),
            flights_cv: Condvar::new(),
            counted_end: Mutex::new(end),
            stopped: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            idle: Mutex::new(()),
            idle_cv: Condvar::new(),
            last_file: Mutex::new(None),
        }
    }

    /// Queues a staged write: submitted now if there is room in flight (and, on a synchronous
    /// backend, written and published here). An error poisons the log (the caller reports it).
    fn submit_direct(&self, log: &Inner, w: DirectWrite) -> Result<()> {
        let mut f = self.flights.lock();
        if let Some(e) = log.failed_error() {
            return Err(e);
        }
        f.stage(w);
        self.advance(log, &mut f)
    }

    /// Whether a write must be followed by a sync, and whether its publish must wait for the
    /// seals of rolled segments.
    fn sync_for(&self, log: &Inner, flight: &Flight) -> (bool, bool) {
        if log.config().fsync == FsyncPolicy::Always {
            return (true, false);
        }
        let Some((state, _)) = flight.publish else {
            return (false, false);
        };
        let mut counted = self.counted_end.lock();
        let new = state.next_offset.saturating_sub(*counted);
        *counted = (*counted).max(state.next_offset);
        if log.flush_due(new) {
            (true, true)
        } else {
            (false, false)
        }
    }

    /// Moves the direct path on: applies the rolls that are due and submits writes while there
    /// is room in flight. On a synchronous backend a write has completed when `submit` returns,
    /// so it is published here and the loop goes on until nothing is staged; on io_uring the
    /// completion comes back through [`WritePath::wake`].
    fn advance(&self, log: &Inner, f: &mut Flights<RollSwap>) -> Result<()> {
        loop {
            if let Some(e) = log.failed_error() {
                // A failed log writes nothing more: what is staged is dropped, and the appends
                // that wait for it are woken to fail (whoever poisoned the log may not have).
                f.clear();
                log.queue_cv.notify_all();
                self.flights_cv.notify_all();
                return Err(e);
            }
            let steps = match f.take_next(|fl| self.sync_for(log, fl)) {
                Ok(steps) => steps,
                Err(e) => {
                    self.fail_writes(log, f, &e);
                    return Err(e);
                }
            };
            let progress = !steps.is_empty();
            let mut submitted = None;
            for step in steps {
                match step {
                    Step::Roll(swap) => log.apply_roll(swap),
                    Step::Publish(flight) => self.publish_flights(log, f, vec![flight]),
                    Step::Submit(part) => submitted = Some(self.submit_part(log, f, part)?),
                }
            }
            if progress {
                // `wait_writes` may be waiting for exactly this (a roll applied, say).
                self.flights_cv.notify_all();
            }
            let Some(segment) = submitted else {
                return Ok(());
            };
            let file = match segment.direct_writer() {
                Ok(file) => file,
                Err(e) => {
                    self.fail_writes(log, f, &e);
                    return Err(e);
                }
            };
            if file.is_async() {
                return Ok(());
            }
            let done = file.complete(0);
            let flights = self.completion(log, f, done, &segment)?;
            self.publish_flights(log, f, flights);
        }
    }

    /// Submits the write (and its sync) that is now in flight; returns its segment.
    fn submit_part(
        &self,
        log: &Inner,
        f: &mut Flights<RollSwap>,
        part: Part,
    ) -> Result<Arc<Segment>> {
        let segment = part.segment.clone();
        let res = segment.direct_writer().and_then(|file| {
            file.submit(part.id, part.bufs, part.offset)
                .map_err(|e| Error::io("write", &segment.log_path, e))?;
            if part.sync {
                file.submit_sync(part.id | SYNC_TAG)
                    .map_err(|e| Error::io("fdatasync", &segment.log_path, e))?;
            }
            Ok(())
        });
        *self.last_file.lock() = Some(segment.clone());
        if let Err(e) = res {
            self.fail_writes(log, f, &e);
            return Err(e);
        }
        Ok(segment)
    }

    /// The writes in flight that `done` (completions of `segment`'s direct file, in
    /// submission order) completes, oldest first; a failed write or sync poisons the log.
    fn completion(
        &self,
        log: &Inner,
        f: &mut Flights<RollSwap>,
        done: std::io::Result<Vec<(u64, std::io::Result<()>)>>,
        segment: &Segment,
    ) -> Result<Vec<Flight>> {
        let fail = |f: &mut Flights<RollSwap>, id: u64, e: std::io::Error| {
            let op = if id & SYNC_TAG != 0 {
                "fdatasync"
            } else {
                "write"
            };
            let e = Error::io(op, &segment.log_path, e);
            self.fail_writes(log, f, &e);
            e
        };
        let mut flights = Vec::new();
        for (id, res) in done.map_err(|e| fail(f, 0, e))? {
            res.map_err(|e| fail(f, id, e))?;
            flights.extend(f.completed(id));
        }
        Ok(flights)
    }

    /// Publishes completed writes in order, each once its sync (if it had one) completed; one
    /// that must wait for the seals of rolled segments holds back itself and every later one
    /// until [`WritePath::seals_done`].
    fn publish_flights(&self, log: &Inner, f: &mut Flights<RollSwap>, flights: Vec<Flight>) {
        if log.failed() {
            // A failed log acknowledges nothing more (a seal that failed may be exactly what a
            // held publish waited for); its appenders learn the failure.
            f.ready.clear();
            log.queue_cv.notify_all();
            self.flights_cv.notify_all();
            return;
        }
        f.ready.extend(flights);
        while let Some(front) = f.ready.front() {
            if front.needs_seals && log.seals_pending() {
                break;
            }
            let Some(flight) = f.ready.pop_front() else {
                break;
            };
            if let Some((state, upto)) = flight.publish {
                publish_direct(log, &flight.segment, state, upto, flight.sync);
            }
        }
        self.flights_cv.notify_all();
    }

    /// A direct write failed: poison the log, fail every waiting append, forget what was
    /// staged (writes already at the device complete on their own).
    fn fail_writes(&self, log: &Inner, f: &mut Flights<RollSwap>, e: &Error) {
        let op = match e {
            Error::Io {
                op: "fdatasync", ..
            } => "fdatasync",
            _ => "write",
        };
        tracing::error!(dir = %log.dir.display(), error = %e, "write failed; the log refuses further writes");
        log.fail(LogFailure::new(op, e));
        f.clear();
        self.flights_cv.notify_all();
    }

    /// The leader's half of a group: copies every batch into the staging buffers, rolling
    /// where needed, updates the indexes and queues the writes, the last one carrying what to
    /// publish when it completes.
    fn stage_group(
        &self,
        log: &Inner,
        core: &mut WriterCore,
        group: &[Pending],
        upto: u64,
    ) -> std::result::Result<(), (&'static str, Error)> {
        let mut writes = Vec::new();
        for p in group {
            if log.needs_roll(core, p.batch.len()) {
                log.roll(core).map_err(|e| ("roll", e))?;
            }
            let seg = core.active.clone();
            let start_pos = core.len;
            let head = p.head();
            self.stage
                .lock()
                .copy(
                    &seg,
                    start_pos,
                    p.base_offset,
                    &head,
                    p.batch.get(16..).unwrap_or(&[]),
                    &self.cache,
                    &mut writes,
                )
                .map_err(|e| ("stage", e))?;
            for w in writes.drain(..) {
                self.submit_direct(log, w).map_err(|e| ("write", e))?;
            }
            log.index_run(core, std::slice::from_ref(p), start_pos);
            log.reserve_ahead(core, core.len);
        }
        let state = SegmentState {
            len: core.len,
            next_offset: core.next_offset,
            max_timestamp: core.max_timestamp,
        };
        let seg = core.active.clone();
        let last = self
            .stage
            .lock()
            .emit(&seg, Some((state, upto)), &self.cache)
            .map_err(|e| ("stage", e))?;
        if let Some(w) = last {
            self.submit_direct(log, w).map_err(|e| ("write", e))?;
        }
        Ok(())
    }
}

/// Makes a completed direct write visible and releases its appenders.
fn publish_direct(log: &Inner, seg: &Segment, state: SegmentState, upto: u64, durable: bool) {
    seg.publish(state);
    if durable {
        log.durable_end
            .fetch_max(state.next_offset, Ordering::AcqRel);
    }
    log.log_end.store(state.next_offset, Ordering::Release);
    log.appends_done(upto);
}

impl WritePath for DirectPath {
    fn write_group(
        &self,
        log: &Inner,
        core: &mut WriterCore,
        group: &[Pending],
        upto: u64,
    ) -> std::result::Result<bool, (&'static str, Error)> {
        self.stage_group(log, core, group, upto)?;
        Ok(false)
    }

    fn prepare(&self, _log: &Inner, core: &WriterCore) -> Result<()> {
        // The write handle too: a block prefix is read through it, and syncs go through it.
        core.active.writer()?;
        core.active.direct_writer().map(drop)
    }

    fn roll(&self, log: &Inner, old: &Arc<Segment>, swap: RollSwap) -> Result<()> {
        // The old segment's last bytes are staged before the swap that follows them.
        let last = {
            let mut stage = self.stage.lock();
            let w = stage.emit(old, None, &self.cache)?;
            stage.finish_segment();
            w
        };
        if let Some(w) = last {
            self.submit_direct(log, w)?;
        }
        // Applied once the old segment's writes are published.
        let mut f = self.flights.lock();
        f.roll(swap);
        self.advance(log, &mut f)
    }

    fn read_cached(&self, seg: &Segment, want: &Want) -> Result<Option<ReadSlice>> {
        self.cache
            .read()
            .read(seg.base_offset, seg.len(), want, &seg.log_path)
    }

    fn wait_writes(&self, log: &Inner) -> Result<()> {
        let mut f = self.flights.lock();
        while !f.is_empty() && !log.failed() && !self.stopped.load(Ordering::Acquire) {
            // Every change wakes this wait; the timeout only bounds what a missed wake-up
            // could cost (a close or a roll, not an append).
            self.flights_cv.wait_for(&mut f, Duration::from_millis(100));
        }
        drop(f);
        match log.failed_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn is_idle(&self) -> bool {
        self.flights.lock().is_empty()
    }

    fn seals_done(&self, log: &Inner) {
        let mut f = self.flights.lock();
        if !f.ready.is_empty() {
            self.publish_flights(log, &mut f, Vec::new());
        }
    }

    fn wake(&self, log: &Inner) {
        self.running.fetch_add(1, Ordering::SeqCst);
        if !self.stopped.load(Ordering::SeqCst) {
            let mut f = self.flights.lock();
            if let Some(segment) = f.flying().cloned()
                && let Some(file) = segment.direct_if_open()
            {
                let done = file.complete(0);
                // Errors poison the log, which reports them to the appenders.
                if let Ok(flights) = self.completion(log, &mut f, done, &segment) {
                    // More writes go before these ones' appenders are woken.
                    let _ = self.advance(log, &mut f);
                    self.publish_flights(log, &mut f, flights);
                }
            }
        }
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _g = self.idle.lock();
            self.idle_cv.notify_all();
        }
    }

    fn truncated(&self, end: u64) {
        self.cache.write().clear();
        self.stage.lock().finish_segment();
        *self.counted_end.lock() = end;
        // Nothing is in flight (the truncation waited): the old segment is not needed.
        self.last_file.lock().take();
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        {
            let mut g = self.idle.lock();
            while self.running.load(Ordering::SeqCst) > 0 {
                self.idle_cv.wait_for(&mut g, Duration::from_millis(10));
            }
        }
        self.flights_cv.notify_all();
        // Writes still at the device finish before the files may be reopened.
        let last = self.last_file.lock().take();
        if let Some(file) = last.and_then(|s| s.direct_if_open()) {
            file.wait_idle();
        }
    }
}
