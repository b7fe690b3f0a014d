//! The state a partition log shares between appenders, readers, its write path and the
//! runtime's threads, and the order its locks are taken in.
//!
//! ## Locks, in the order they may be taken
//! 1. `core` ([`WriterCore`]): held by the *leader*, the one thread writing a group of appends
//!    (or rolling, truncating, closing). Becoming leader is decided under `queue`, which is
//!    released before `core` is taken.
//! 2. the write path's own locks (the direct path's staging and writes in flight).
//! 3. `maintenance` ([`Maintenance`]): checkpoint writes, retention, seals' index files.
//! 4. `segments`: the segment list (held briefly, never across I/O but a directory listing).
//! 5. `epochs`: the leader-epoch cache.
//! 6. `deadlines`: when periodic work is next due (the timer's view).
//! 7. `work`: the queue of background work the runtime runs for this log.
//! 8. `queue`: the append queue (held briefly).
//!
//! A thread holding one of these may take only those below it. Nothing is held across a wait
//! for another thread except `core` (a leader waiting for its writes) and `maintenance` (held
//! through the fsyncs of a checkpoint).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::io::IoBackend;

use super::super::config::LogConfig;
use super::super::epoch::EpochCache;
use super::super::index::TimeEntry;
use super::super::runtime::Runtime;
use super::super::scan::relative;
use super::super::segment::{Segment, WakerCell};
use super::super::write_path::WritePath;
use super::AppendInfo;
use super::maintenance::{Deadlines, WorkQueue};

/// A queued batch. Its bytes are exactly what was validated (possibly a slice of a shared
/// request buffer); the assigned offset (and leader epoch, if stamped) are written from
/// `base_offset` by [`Pending::parts`], never into `batch`, so nothing is copied on the way to
/// the file.
pub(crate) struct Pending {
    pub batch: Bytes,
    pub base_offset: u64,
    pub next_offset: u64,
    pub max_timestamp: i64,
    /// The partitionLeaderEpoch written into the batch header, if the append stamps one.
    pub leader_epoch: Option<i32>,
}

/// The first bytes of a batch as written: baseOffset, batchLength and partitionLeaderEpoch
/// (none of which the CRC covers, so they can be set without recomputing it).
pub(crate) type Head = [u8; 16];

impl Pending {
    /// The head to write for this batch: the assigned baseOffset, the batch's own length and
    /// its partitionLeaderEpoch (the stamped one, or the batch's).
    pub fn head(&self) -> Head {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&(self.base_offset as i64).to_be_bytes());
        if let Some(b) = self.batch.get(8..16) {
            h[8..].copy_from_slice(b);
        }
        if let Some(epoch) = self.leader_epoch {
            h[12..].copy_from_slice(&epoch.to_be_bytes());
        }
        h
    }

    /// The batch as written: `head`, then every byte after the batch's own
    /// partitionLeaderEpoch field.
    pub fn parts<'a>(&'a self, head: &'a Head) -> [&'a [u8]; 2] {
        [head, self.batch.get(16..).unwrap_or(&[])]
    }

    /// The partitionLeaderEpoch the batch is written with.
    pub fn epoch(&self) -> i32 {
        self.leader_epoch.unwrap_or_else(|| {
            self.batch
                .get(12..16)
                .and_then(|b| b.try_into().ok())
                .map_or(-1, i32::from_be_bytes)
        })
    }
}

/// An append's place in the write order and its offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub seq: u64,
    pub info: AppendInfo,
}

/// What [`Inner::drive`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// A leader has taken the batch (it is written or staged, or being so).
    Taken,
    /// The batch is stored as the fsync policy promises.
    Done,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub next_offset: u64,
    pub next_seq: u64,
    /// Every append with a sequence number below this has completed.
    pub done_seq: u64,
    /// Every append with a sequence number below this has been taken by a leader: it will be
    /// written (or fail with the log), even if the log closes meanwhile.
    pub taken_seq: u64,
    pub pending: Vec<Pending>,
    pub leader: bool,
    pub failure: Option<LogFailure>,
    /// A truncation is changing the log end: new appends wait until it is done.
    pub frozen: bool,
    /// Groups refused without touching the file (a handle could not be opened for lack of
    /// descriptors or memory): `[from, upto)` sequence numbers and the `errno`. Their appenders
    /// fail; the log stays open. The newest [`REFUSED_KEPT`] are kept.
    pub refused: std::collections::VecDeque<(u64, u64, i32)>,
}

/// Refused groups remembered for their appenders (each appender looks right after the group
/// is refused, so a few suffice).
pub(crate) const REFUSED_KEPT: usize = 64;

/// Why a log refuses writes (see [`super::PartitionLog::failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFailure {
    /// The operation that failed (`write`, `fdatasync`, `roll`, `seal`, `truncate`).
    pub op: &'static str,
    pub cause: String,
    /// A full disk or quota (`ENOSPC`, `EDQUOT`): reopening the log once there is room again
    /// recovers it (the failed write left at most a batch cut short at the end, which recovery
    /// cuts) and loses nothing acknowledged. Any other failure (`EIO` from a write or a sync)
    /// leaves the page cache not telling what is on the disk: the log stays refused.
    pub no_space: bool,
    /// The process ran out of file descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`) opening
    /// a file before anything was written with it: reopening the log once others closed theirs
    /// recovers it.
    pub out_of_resources: bool,
}

impl LogFailure {
    pub(crate) fn new(op: &'static str, e: &Error) -> Self {
        // A sync that failed may have lost pages the page cache still shows: reopening would
        // recover from bytes that are not on the disk, so it never counts as a full disk.
        let sync = op == "fdatasync"
            || matches!(
                e,
                Error::Io {
                    op: "fdatasync" | "fsync dir",
                    ..
                }
            );
        LogFailure {
            op,
            cause: e.to_string(),
            no_space: e.is_no_space() && !sync,
            out_of_resources: e.is_out_of_resources() && !sync,
        }
    }
}

/// State only the current leader touches.
pub(crate) struct WriterCore {
    pub active: Arc<Segment>,
    /// Bytes of the active segment written so far (published or about to be).
    pub len: u64,
    pub next_offset: u64,
    pub bytes_since_index: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: u64,
    /// Wall-clock ms of the first append into the active segment (for `segment_ms`).
    pub first_append_ms: Option<i64>,
    /// End of the blocks reserved (or asked of the runtime) ahead of `len` in the active
    /// segment; 0 when preallocation is off.
    pub reserved: u64,
}

impl WriterCore {
    /// The time-index entry for the largest timestamp written so far, if any batch had one.
    pub fn max_time_entry(&self) -> Option<TimeEntry> {
        (self.max_timestamp >= 0).then(|| TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: relative(self.offset_of_max_timestamp, self.active.base_offset),
        })
    }
}

/// How far ahead the active segment's blocks are reserved: the step follows the partition's
/// write rate (see [`super::super::config::PREALLOCATE_STEP`]).
#[derive(Debug)]
pub(crate) struct Pace {
    pub step: u64,
    last: Option<std::time::Instant>,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            step: super::super::config::MIN_PREALLOCATE_STEP,
            last: None,
        }
    }
}

impl Pace {
    /// The step of a reservation made at `now`: doubled if the last was made less than
    /// `PREALLOCATE_FAST` ago, halved if more than `PREALLOCATE_SLOW` ago.
    pub fn next(&mut self, now: std::time::Instant) -> u64 {
        use super::super::config::{
            MIN_PREALLOCATE_STEP, PREALLOCATE_FAST, PREALLOCATE_SLOW, PREALLOCATE_STEP,
        };
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            if gap < PREALLOCATE_FAST {
                self.step = (self.step * 2).min(PREALLOCATE_STEP);
            } else if gap > PREALLOCATE_SLOW {
                self.step = (self.step / 2).max(MIN_PREALLOCATE_STEP);
            }
        }
        self.last = Some(now);
        self.step
    }
}

/// What the maintenance lock guards besides its critical sections.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    /// The checkpoint on disk says "closed cleanly" and matches the files: nothing has been
    /// written since the log opened. The first write clears it durably first.
    pub checkpoint_clean: bool,
}

pub(crate) struct Inner {
    pub me: Weak<Inner>,
    pub dir: PathBuf,
    /// The settings; those Kafka lets an operator change while the log runs are replaced by
    /// [`Inner::reconfigure`].
    pub settings: Mutex<LogConfig>,
    pub backend: Arc<dyn IoBackend>,
    pub runtime: &'static Runtime,
    pub segments: RwLock<Vec<Arc<Segment>>>,
    pub queue: Mutex<Queue>,
    pub queue_cv: Condvar,
    pub core: Mutex<WriterCore>,
    /// The end offset readers may see (the log end offset).
    pub log_end: AtomicU64,
    /// Offset up to which an fdatasync has completed.
    pub durable_end: AtomicU64,
    /// Kafka's high watermark: the end of what consumers may read. Follows the log end unless
    /// the log is replicated ([`super::HighWatermark::Explicit`]).
    pub high_watermark: AtomicU64,
    /// The preallocation step, following the write rate (a leaf lock).
    pub pace: Mutex<Pace>,
    /// The log start offset DeleteRecords moved the log to (0 if never): the log starts at
    /// the larger of this and the first segment's base ([`Inner::log_start`]).
    pub start_floor: AtomicU64,
    pub closed: AtomicBool,
    pub maintenance: Mutex<Maintenance>,
    /// Set once the first write cleared the clean checkpoint (fast path for `mark_dirty`).
    pub dirty: AtomicBool,
    pub epochs: Mutex<EpochCache>,
    pub work: Mutex<WorkQueue>,
    pub work_cv: Condvar,
    /// Bytes written since writeback was last started (`never`/`interval` only).
    pub unflushed: AtomicU64,
    /// Messages appended since the last sync ([`LogConfig::flush_messages`]).
    pub unsynced_messages: AtomicU64,
    /// Appends so far (the idle sweep closes the files of a log nobody wrote since it looked).
    pub appends: AtomicU64,
    /// When each periodic item is next due, and what the idle sweep saw last time.
    pub deadlines: Mutex<Deadlines>,
    pub path: Box<dyn WritePath>,
    /// Direct mode: what new active segments tell when their writes complete.
    pub waker: Option<WakerCell>,
}

impl Inner {
    /// The settings now (a copy: a change applies from the next operation that reads them).
    pub fn config(&self) -> LogConfig {
        *self.settings.lock()
    }

    pub fn poisoned(&self, f: &LogFailure) -> Error {
        Error::Poisoned {
            dir: self.dir.clone(),
            op: f.op,
            cause: f.cause.clone(),
            no_space: f.no_space,
        }
    }

    pub fn check_open(&self, q: &Queue) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed(self.dir.clone()));
        }
        if let Some(f) = &q.failure {
            return Err(self.poisoned(f));
        }
        Ok(())
    }

    pub fn failed(&self) -> bool {
        self.queue.lock().failure.is_some()
    }

    pub fn failed_error(&self) -> Option<Error> {
        let q = self.queue.lock();
        q.failure.as_ref().map(|f| self.poisoned(f))
    }

    /// Records `failure` (the first one wins) and wakes every waiting appender.
    pub fn fail(&self, failure: LogFailure) -> Error {
        let mut q = self.queue.lock();
        let f = q.failure.get_or_insert(failure).clone();
        q.pending.clear();
        drop(q);
        self.queue_cv.notify_all();
        self.poisoned(&f)
    }

    /// Releases the appenders of sequence numbers below `upto`.
    pub fn appends_done(&self, upto: u64) {
        let mut q = self.queue.lock();
        q.done_seq = q.done_seq.max(upto);
        drop(q);
        self.queue_cv.notify_all();
    }

    /// The first offset still in the log.
    pub fn log_start(&self) -> u64 {
        let base = self.segments.read().first().map_or(0, |s| s.base_offset);
        base.max(self.start_floor.load(Ordering::Acquire))
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Removes a segment's files (log, offset index, time index), whichever exist.
pub(crate) fn remove_segment_files(backend: &dyn IoBackend, dir: &Path, base: u64) -> Result<()> {
    use super::super::name::{self, FileKind};
    for kind in [FileKind::Log, FileKind::Index, FileKind::TimeIndex] {
        remove_if_exists(backend, &name::segment_path(dir, base, kind))?;
    }
    Ok(())
}

pub(crate) fn remove_if_exists(backend: &dyn IoBackend, path: &Path) -> Result<()> {
    match backend.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}
