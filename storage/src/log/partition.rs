//! [`PartitionLog`]: one partition's log.
//!
//! ## Writing: leader/follower group commit
//! Appenders put their batch on a queue (offsets are assigned there, in queue order) and wait.
//! Whoever finds no leader becomes one: it takes *every* queued batch, writes them in one
//! backend call (one io_uring submission), runs the fdatasync under `always`, publishes the new
//! end to readers and wakes the others. Batches that arrive while a leader writes form the next
//! group, so under `always` concurrent appenders share fsyncs.
//!
//! ## What is on disk when `append_*` returns
//! * `never`: the batch is in the page cache and visible to readers. Survives a process crash;
//!   a machine crash may lose it (sealed segments are synced on roll, everything on clean close).
//! * `interval:MS`: as `never`, plus a background fdatasync every MS: a machine crash loses at
//!   most the appends of the last interval.
//! * `always`: the batch and everything before it were covered by an fdatasync that returned
//!   `Ok` before the call returned. Readers see it only after that sync, so nothing a consumer
//!   reads can be lost by a crash.
//!
//! A failed write or fsync *poisons* the log: every later append fails with
//! [`Error::Poisoned`] until the log is reopened (which recovers from what is really on disk).
//!
//! ## Crash recovery (on open)
//! After a clean close (checkpoint flag set, lengths match) nothing is scanned. Otherwise every
//! segment at or past the checkpoint's recovery point is scanned batch by batch (length, magic,
//! CRC-32C, contiguous offsets); a bad tail of the *last* segment is truncated and logged, bad
//! bytes anywhere else are an [`Error::Corrupt`] naming the file and position (unless
//! [`RecoveryMode::TruncateAtCorruption`]). Missing or damaged index files are rebuilt.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::header;
use crate::batch::{BatchBuilder, Compression, NewRecord};
use crate::error::{Error, IoContext, Result};
use crate::io::{IoBackend, WritableFile, write_file_atomic};

use super::checkpoint::{self, Checkpoint};
use super::config::{
    FsyncPolicy, LogConfig, MAX_SEGMENT_BYTES, PREALLOCATE_STEP, RecoveryMode, WriteMode,
};
use super::direct::{DirectWrite, Flight, Flights, Part, Stage, Step, TailCache};
use super::index::{self, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use super::name::{self, FileKind, TMP_SUFFIX};
use super::read::ReadSlice;
use super::scan::{self, relative};
use super::segment::{Segment, SegmentState, Want};

/// Name of the lock file that keeps two processes off one partition directory.
pub const LOCK_FILE: &str = ".lock";

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record of the batch.
    pub base_offset: u64,
    /// Offset of the last record of the batch.
    pub last_offset: u64,
    /// The batch's maxTimestamp.
    pub max_timestamp: i64,
}

/// An append started by [`PartitionLog::start_append`]: queued with its offsets assigned and
/// taken by a writer. Dropping it without [`wait`](Self::wait) does not cancel the append; it
/// only gives up learning how it ended.
#[must_use = "an append is acknowledged only by wait()"]
#[derive(Debug)]
pub struct PendingAppend<'a> {
    log: &'a PartitionLog,
    ticket: Ticket,
}

impl PendingAppend<'_> {
    /// The offsets the batch was given (final once `wait` succeeds).
    pub fn info(&self) -> AppendInfo {
        self.ticket.info
    }

    /// Returns once the batch is stored as the log's fsync policy promises (what
    /// [`PartitionLog::append_batch`] returns), or the error that stopped it.
    pub fn wait(self) -> Result<AppendInfo> {
        self.log.inner.drive(&self.ticket, Until::Done)?;
        Ok(self.ticket.info)
    }
}

/// An append's place in the write order and its offsets.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    seq: u64,
    info: AppendInfo,
}

/// What [`Inner::drive`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// A leader has taken the batch (it is written or staged, or being so).
    Taken,
    /// The batch is stored as the fsync policy promises.
    Done,
}

/// A record found by [`PartitionLog::find_timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampHit {
    pub offset: u64,
    /// The record's own timestamp (at or after the one asked for).
    pub timestamp: i64,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    /// The log start offset after the pass.
    pub log_start_offset: u64,
}

/// A summary of one segment, for tools and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: u64,
    pub next_offset: u64,
    pub size: u64,
    pub max_timestamp: i64,
    pub active: bool,
    pub path: PathBuf,
}

/// What `open` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The previous close was clean and nothing had to be scanned.
    pub clean: bool,
    pub segments: usize,
    /// Segments whose batches were checked one by one.
    pub segments_scanned: usize,
    /// Bytes of torn tail cut off (`(file, position, bytes, reason)`).
    pub truncated: Vec<(PathBuf, u64, u64, String)>,
    /// Index files of trusted segments that were missing or damaged and were rebuilt from the
    /// segment (a scanned segment always takes the indexes its scan builds).
    pub indexes_rebuilt: usize,
    /// Segments removed by `TruncateAtCorruption`.
    pub segments_removed: usize,
    /// Bytes of zero padding cut from the end of segments written with
    /// [`super::WriteMode::Direct`] and not yet truncated to their data by a seal or a clean
    /// close (not damage: nothing was lost).
    pub padding_trimmed: u64,
}

/// A queued batch. Its bytes are exactly what was validated (possibly a slice of a shared
/// request buffer); the assigned offset is written from `base_offset` by [`Pending::parts`],
/// never into `batch`, so nothing is copied on the way to the file.
struct Pending {
    batch: Bytes,
    base_offset: u64,
    next_offset: u64,
    max_timestamp: i64,
}

impl Pending {
    /// The batch as written: the assigned baseOffset, then every byte after the batch's own
    /// baseOffset field. `head` must hold `base_offset.to_be_bytes()`.
    fn parts<'a>(&'a self, head: &'a [u8; 8]) -> [&'a [u8]; 2] {
        [head, self.batch.get(8..).unwrap_or(&[])]
    }
}

#[derive(Default)]
struct Queue {
    next_offset: u64,
    next_seq: u64,
    /// Every append with a sequence number below this has completed.
    done_seq: u64,
    /// Every append with a sequence number below this has been taken by a leader: it will be
    /// written (or fail with the log), even if the log closes meanwhile.
    taken_seq: u64,
    pending: Vec<Pending>,
    leader: bool,
    failure: Option<LogFailure>,
}

/// Why a log refuses writes (see [`PartitionLog::failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFailure {
    /// The operation that failed (`write`, `fdatasync`, `roll`, `seal`).
    pub op: &'static str,
    pub cause: String,
    /// A full disk or quota (`ENOSPC`, `EDQUOT`): reopening the log once there is room again
    /// recovers it (the failed write left at most a batch cut short at the end, which recovery
    /// cuts) and loses nothing acknowledged. Any other failure (`EIO` from a write or a sync)
    /// leaves the page cache not telling what is on the disk: the log stays refused.
    pub no_space: bool,
}

impl LogFailure {
    fn new(op: &'static str, e: &Error) -> Self {
        // A sync that failed may have lost pages the page cache still shows: reopening would
        // recover from bytes that are not on the disk, so it never counts as a full disk.
        let sync = matches!(
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
        }
    }
}

/// State only the current leader touches.
struct WriterCore {
    active: Arc<Segment>,
    /// Bytes of the active segment written so far (published or about to be).
    len: u64,
    next_offset: u64,
    bytes_since_index: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: u64,
    /// Wall-clock ms of the first append into the active segment (for `segment_ms`).
    first_append_ms: Option<i64>,
    /// End of the blocks reserved (or asked of the sealer) ahead of `len` in the active
    /// segment; 0 when preallocation is off.
    reserved: u64,
    /// The direct write path's staging (`WriteMode::Direct` only).
    stage: Option<Stage>,
}

impl WriterCore {
    /// The time-index entry for the largest timestamp written so far, if any batch had one.
    fn max_time_entry(&self) -> Option<TimeEntry> {
        (self.max_timestamp >= 0).then(|| TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: relative(self.offset_of_max_timestamp, self.active.base_offset),
        })
    }
}

struct Inner {
    dir: PathBuf,
    config: LogConfig,
    backend: Arc<dyn IoBackend>,
    segments: RwLock<Vec<Arc<Segment>>>,
    queue: Mutex<Queue>,
    queue_cv: Condvar,
    core: Mutex<WriterCore>,
    /// The end offset readers may see.
    log_end: AtomicU64,
    /// Offset up to which an fdatasync has completed.
    durable_end: AtomicU64,
    closed: AtomicBool,
    /// Serialises checkpoint writers and retention.
    maintenance: Mutex<()>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    /// Segments sealed by a roll whose sync, index files and checkpoint are still to be done,
    /// and the active segment's range whose writeback is to be started.
    seals: Mutex<SealQueue>,
    seals_cv: Condvar,
    /// Bytes written since writeback was last started (`never`/`interval` only).
    unflushed: AtomicU64,
    /// Messages appended since the last sync ([`LogConfig::flush_messages`]).
    unsynced_messages: AtomicU64,
    /// The direct write path's shared state (`WriteMode::Direct` only).
    direct: Option<DirectShared>,
    _lock: File,
}

/// What leaders, the reaper thread and readers share under `WriteMode::Direct` (see
/// [`super::direct`]).
struct DirectShared {
    /// The newest staging buffers, which answer reads.
    cache: RwLock<TailCache>,
    /// Staged writes and rolls, and the write in flight, until published. Lock order: the
    /// writer core, then this, then the append queue.
    flights: Mutex<Flights<RollSwap>>,
    /// Signalled when a write goes in flight (for the reaper) and when one is published (for
    /// `wait_writes`).
    flights_cv: Condvar,
    /// Tells the reaper thread to exit.
    stop: AtomicBool,
}

/// A roll's effect on the segment list: the old active segment is replaced by its sealed
/// view, the new one appended, and the old one handed to the sealer.
struct RollSwap {
    sealed: Arc<Segment>,
    new: Arc<Segment>,
    job: SealJob,
}

/// Work for the sealer thread: a rolled segment to make durable before the recovery point may
/// move past it.
struct SealJob {
    /// The segment as it was while active (it still holds the writable file).
    segment: Arc<Segment>,
    /// Its length: where its preallocated blocks start.
    len: u64,
    next_offset: u64,
}

/// A byte range of the active segment: to start writeback of, or to reserve blocks for.
struct RangeJob {
    segment: Arc<Segment>,
    offset: u64,
    len: u64,
}

/// What the sealer thread takes from its queue.
enum SealerWork {
    Seal(SealJob),
    Preallocate(RangeJob),
    Writeback(RangeJob),
}

#[derive(Default)]
struct SealQueue {
    jobs: std::collections::VecDeque<SealJob>,
    /// True while a seal job or a preallocation runs (not while writeback is started).
    busy: bool,
    stop: bool,
    /// Set by a clean close before it truncates the active segment: no preallocation may start
    /// after that truncation released the blocks reserved past the data.
    closing: bool,
    /// Writeback for the sealer to start when it has no seal to do. The writer never calls
    /// `sync_file_range` itself: it blocks while the device queue is full or a journal commit
    /// runs (measured at up to 0.86 s while a rolled segment was being synced).
    writeback: Option<RangeJob>,
    /// The next step of preallocation for the active segment. Dropped by the roll that seals
    /// the segment, so no reservation is made past a sealed segment's end after its seal
    /// released them.
    preallocate: Option<RangeJob>,
}

/// Under `never`/`interval`, start writeback (not wait for it) every this many bytes, so the
/// disk works while the producer keeps writing instead of everything landing at the next sync.
/// The sealer thread starts it, see [`SealQueue::writeback`].
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// One partition's log. `Send + Sync`: share it in an `Arc` between appenders and readers.
pub struct PartitionLog {
    inner: Arc<Inner>,
    background: Option<JoinHandle<()>>,
    sealer: Option<JoinHandle<()>>,
    /// The direct path's reaper thread (`WriteMode::Direct` on an asynchronous backend).
    reaper: Option<JoinHandle<()>>,
    recovery: RecoveryReport,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.inner.dir)
            .field("log_start_offset", &self.log_start_offset())
            .field("log_end_offset", &self.log_end_offset())
            .finish()
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn remove_if_exists(backend: &dyn IoBackend, path: &Path) -> Result<()> {
    match backend.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Segment files found in a directory.
#[derive(Debug, Default)]
struct Listing {
    logs: BTreeMap<u64, u64>,
    indexes: Vec<(u64, FileKind, PathBuf)>,
    tmps: Vec<PathBuf>,
}

fn list_dir(dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    for entry in std::fs::read_dir(dir).ctx("read dir", dir)? {
        let entry = entry.ctx("read dir", dir)?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if fname.ends_with(TMP_SUFFIX) {
            l.tmps.push(entry.path());
            continue;
        }
        match name::parse_file_name(fname) {
            Some((base, FileKind::Log)) => {
                let len = entry.metadata().ctx("stat", &entry.path())?.len();
                l.logs.insert(base, len);
            }
            Some((base, kind)) => l.indexes.push((base, kind, entry.path())),
            None => {}
        }
    }
    Ok(l)
}

impl PartitionLog {
    /// Opens (creating if needed) the partition log in `dir`, recovering after a crash.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        backend: Arc<dyn IoBackend>,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.into();
        backend.create_dir_all(&dir).ctx("create dir", &dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .ctx("open", &lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", lock_path, e)),
        }
        let same_boot = note_boot(&lock, &lock_path, backend.as_ref())?;

        let (segments, core, report) = recover(&dir, &config, backend.as_ref(), same_boot)?;
        let end = core.next_offset;
        let direct = (config.write_mode == WriteMode::Direct).then(|| DirectShared {
            cache: RwLock::new(TailCache::new(
                config.direct_cache_bytes.max(config.direct_chunk_bytes()),
            )),
            flights: Mutex::new(Flights::default()),
            flights_cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let inner = Arc::new(Inner {
            dir,
            config,
            backend,
            segments: RwLock::new(segments),
            queue: Mutex::new(Queue {
                next_offset: end,
                ..Queue::default()
            }),
            queue_cv: Condvar::new(),
            core: Mutex::new(core),
            log_end: AtomicU64::new(end),
            durable_end: AtomicU64::new(end),
            closed: AtomicBool::new(false),
            maintenance: Mutex::new(()),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            seals: Mutex::new(SealQueue::default()),
            seals_cv: Condvar::new(),
            unflushed: AtomicU64::new(0),
            unsynced_messages: AtomicU64::new(0),
            direct,
            _lock: lock,
        });
        let background = spawn_background(&inner)?;
        let sealer = spawn_sealer(&inner)?;
        let reaper = spawn_reaper(&inner)?;
        Ok(PartitionLog {
            inner,
            background,
            sealer: Some(sealer),
            reaper,
            recovery: report,
        })
    }

    /// Why the log refuses writes, if it does (a failed write, sync, roll or seal poisoned it).
    pub fn failure(&self) -> Option<LogFailure> {
        self.inner.queue.lock().failure.clone()
    }

    /// What recovery found when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.inner
            .segments
            .read()
            .first()
            .map_or(0, |s| s.base_offset)
    }

    /// The offset the next append gets, as readers see it (Kafka's high watermark).
    pub fn log_end_offset(&self) -> u64 {
        self.inner.log_end.load(Ordering::Acquire)
    }

    /// Offset up to which data is known to be durable (an fdatasync completed).
    pub fn durable_offset(&self) -> u64 {
        self.inner.durable_end.load(Ordering::Acquire)
    }

    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.segments.read().iter().map(|s| s.len()).sum()
    }

    /// One line per segment, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.inner
            .segments
            .read()
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset(),
                size: s.len(),
                max_timestamp: s.max_timestamp(),
                active: s.is_active(),
                path: s.log_path.clone(),
            })
            .collect()
    }

    /// Appends one RecordBatch v2 given as raw bytes (as a producer sent it). Validates it
    /// (length, magic, CRC-32C, codec, offset delta), assigns offsets (the batch is stored with
    /// the assigned baseOffset) and returns once the batch is stored as the log's fsync policy
    /// promises.
    ///
    /// `batch` may be a `Vec<u8>` or a `Bytes` (a slice of a larger buffer is fine); it is
    /// taken without a copy and never modified.
    pub fn append_batch(&self, batch: impl Into<Bytes>) -> Result<AppendInfo> {
        let (batch, h) = self.validate(batch.into())?;
        self.inner
            .append_wait(batch, h.record_count as u64, h.max_timestamp)
    }

    /// Starts appending one batch, validated as by [`append_batch`](Self::append_batch), and
    /// returns once its offsets are assigned and a writer has taken it, without waiting for it
    /// to be stored: the caller may build and start the next batch meanwhile, as a Kafka
    /// producer keeps several requests in flight. [`PendingAppend::wait`] returns what
    /// `append_batch` would have, once the batch is stored as the fsync policy promises; that
    /// is the acknowledgement. Batches are stored in the order their appends started.
    ///
    /// Under `WriteMode::Direct` on io_uring, "taken" means copied into a staging buffer and
    /// handed to the reaper thread, so the write of one batch overlaps the building of the
    /// next. Elsewhere the append that leads a group writes it itself, so there is little to
    /// overlap: when this call leads, it returns with the batch already written.
    pub fn start_append(&self, batch: impl Into<Bytes>) -> Result<PendingAppend<'_>> {
        let (batch, h) = self.validate(batch.into())?;
        let ticket = self
            .inner
            .enqueue(batch, h.record_count as u64, h.max_timestamp)?;
        self.inner.drive(&ticket, Until::Taken)?;
        Ok(PendingAppend { log: self, ticket })
    }

    /// Checks a raw batch's size against `max_batch_bytes`, then validates it.
    fn validate(&self, batch: Bytes) -> Result<(Bytes, header::BatchHeader)> {
        self.check_size(batch.len())?;
        let h = header::validate_batch(&batch, self.inner.config.max_batch_bytes)?;
        Ok((batch, h))
    }

    /// Refuses a batch of `size` bytes above `max_batch_bytes`.
    fn check_size(&self, size: usize) -> Result<()> {
        let max = self.inner.config.max_batch_bytes;
        if size > max {
            return Err(Error::BatchTooLarge { size, max });
        }
        Ok(())
    }

    /// Appends a batch validated by [`header::ValidBatch::new`], without checking its CRC a
    /// second time; otherwise exactly [`PartitionLog::append_batch`].
    pub fn append_validated(&self, batch: header::ValidBatch) -> Result<AppendInfo> {
        let h = *batch.header();
        let bytes = batch.into_bytes();
        self.check_size(bytes.len())?;
        self.inner
            .append_wait(bytes, h.record_count as u64, h.max_timestamp)
    }

    /// Builds a batch from `records` (keys, values, headers, timestamps), compressed with
    /// `compression` — pass `Compression::default()` for zstd, the default — and appends it.
    pub fn append_records(
        &self,
        records: impl IntoIterator<Item = NewRecord>,
        compression: Compression,
    ) -> Result<AppendInfo> {
        let mut b = BatchBuilder::new(compression);
        for r in records {
            b.push(r)?;
        }
        self.append_batch(b.build()?)
    }

    /// Reads whole batches starting with the one that contains `offset`, at most `max_bytes`
    /// but always at least one batch. Empty at the log end; [`Error::OffsetOutOfRange`] outside
    /// `[log_start, log_end]`. The result borrows the segment's mapping, or under
    /// [`WriteMode::Direct`] the staging buffer that still holds the batches: no copy is made.
    /// A read from a staging buffer stops at the buffer's end, so it may return less than
    /// `max_bytes` (never less than one batch).
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadSlice> {
        let end = self.inner.log_end.load(Ordering::Acquire);
        let seg = {
            let segs = self.inner.segments.read();
            let start = segs.first().map_or(0, |s| s.base_offset);
            if offset < start || offset > end {
                return Err(Error::OffsetOutOfRange {
                    offset,
                    log_start: start,
                    log_end: end,
                });
            }
            if offset == end {
                return Ok(ReadSlice::empty());
            }
            let i = segs.partition_point(|s| s.base_offset <= offset);
            match i.checked_sub(1).and_then(|i| segs.get(i)) {
                Some(s) => s.clone(),
                None => return Ok(ReadSlice::empty()),
            }
        };
        if let Some(d) = &self.inner.direct
            && seg.is_active()
        {
            let want = Want {
                offset,
                max_bytes,
                end_offset: end,
            };
            let cached = d
                .cache
                .read()
                .read(seg.base_offset, seg.len(), &want, &seg.log_path)?;
            if let Some(slice) = cached {
                return Ok(slice);
            }
        }
        seg.read(offset, max_bytes, end)
    }

    /// The first offset whose record timestamp is >= `timestamp` (Kafka's ListOffsets by time),
    /// or `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        Ok(self.find_timestamp(timestamp)?.map(|hit| hit.offset))
    }

    /// The first record whose timestamp is >= `timestamp`, with that timestamp (what Kafka's
    /// ListOffsets answers), or `None` if every record is older. The time index narrows the
    /// search to one stretch of one segment; the records of the batches there are streamed
    /// (`batch::stream`), never decoded whole, so a compressed batch costs its codec's working
    /// memory, not its expansion.
    pub fn find_timestamp(&self, timestamp: i64) -> Result<Option<TimestampHit>> {
        let end = self.log_end_offset();
        let segs: Vec<Arc<Segment>> = self.inner.segments.read().clone();
        for seg in segs {
            if seg.max_timestamp() < timestamp {
                continue;
            }
            let start_rel = seg.time_index.read().lookup(timestamp);
            let mut pos = seg.index.read().lookup(start_rel) as usize;
            let Some(map) = seg.mapping()? else { continue };
            let data = map.get(..seg.len() as usize).unwrap_or(&[]);
            while let Some(h) = seg.header_at(data, pos)? {
                if h.base_offset as u64 >= end {
                    break;
                }
                let batch = data.get(pos..pos + h.total_len()).unwrap_or(&[]);
                pos += h.total_len();
                if (h.last_offset() as u64) < seg.base_offset + u64::from(start_rel)
                    || h.max_timestamp < timestamp
                {
                    continue;
                }
                if let Some((offset, t)) = crate::batch::stream::first_at_or_after(
                    &h,
                    batch,
                    timestamp,
                    crate::batch::DEFAULT_DECOMPRESSED_LIMIT,
                )? {
                    return Ok(Some(TimestampHit {
                        offset: offset as u64,
                        timestamp: t,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The largest record timestamp in the log and the first offset that carries it (Kafka's
    /// ListOffsets `MAX_TIMESTAMP`), or `None` for an empty log.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, u64)>> {
        let segs: Vec<Arc<Segment>> = self.inner.segments.read().clone();
        let Some(max) = segs
            .iter()
            .map(|s| s.max_timestamp())
            .max()
            .filter(|t| *t >= 0)
        else {
            return Ok(None);
        };
        Ok(self.offset_for_timestamp(max)?.map(|o| (max, o)))
    }

    /// Makes everything appended so far durable (fdatasync of the active segment).
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// Blocks until every rolled segment is sealed: synced, its index files written and the
    /// recovery point moved past it. Rolling never waits for this (the sealer thread does it);
    /// a crash before it is done only means the next open re-checks those segments.
    pub fn wait_for_seals(&self) -> Result<()> {
        self.inner.wait_for_seals()
    }

    /// Seals the active segment and starts a new one (if the active one holds anything).
    pub fn roll(&self) -> Result<()> {
        self.inner.with_leader(|inner, core| {
            if core.len > 0 {
                inner.roll(core)?;
            }
            Ok(())
        })?;
        // Under `WriteMode::Direct` the swap waits for the old segment's writes.
        self.inner.wait_writes()
    }

    /// Applies retention now: deletes whole sealed segments that are too old or that put the
    /// partition over its size limit. Readers holding slices of them keep working.
    pub fn enforce_retention(&self) -> Result<RetentionReport> {
        self.inner.enforce_retention(now_ms())
    }

    /// Retention as if the clock read `now_ms` (for tests and tools).
    pub fn enforce_retention_at(&self, now_ms: i64) -> Result<RetentionReport> {
        self.inner.enforce_retention(now_ms)
    }

    /// Deletes every whole sealed segment that ends at or before `offset` (all its records are
    /// below `offset`), oldest first, so the log start moves forward without a gap. The active
    /// segment is never deleted. For logs that keep their own snapshot of live state (the
    /// broker's committed-offsets log): once a snapshot starting at `offset` is durable, what
    /// lies before it can go. A crash part-way leaves a suffix of the doomed segments, never a
    /// hole. Readers holding slices of deleted segments keep working.
    pub fn delete_segments_before(&self, offset: u64) -> Result<RetentionReport> {
        self.inner.delete_segments_before(offset)
    }

    /// Clean shutdown: waits for in-flight appends, syncs, writes the indexes and a clean
    /// checkpoint so the next open scans nothing. (Dropping without `close` is like a crash:
    /// the next open recovers.)
    pub fn close(mut self) -> Result<()> {
        self.stop_background();
        let inner = self.inner.clone();
        inner.with_leader(|inner, core| {
            // Finish appends that were queued before close: they were promised an answer.
            let (group, upto) = {
                let mut q = inner.queue.lock();
                q.taken_seq = q.next_seq;
                (std::mem::take(&mut q.pending), q.next_seq)
            };
            inner.closed.store(true, Ordering::Release);
            if !group.is_empty() {
                let done = inner
                    .write_group(core, &group, upto)
                    .map_err(|(op, e)| inner.poisoned(&LogFailure::new(op, &e)))?;
                if done {
                    inner.queue.lock().done_seq = upto;
                }
            }
            inner.wait_writes()?;
            inner.wait_for_seals()?;
            inner.close_clean(core)
        })
    }

    fn stop_background(&mut self) {
        *self.inner.stop.lock() = true;
        self.inner.stop_cv.notify_all();
        if let Some(h) = self.background.take() {
            let _ = h.join();
        }
    }

    /// Stops the direct path's reaper thread once the completion it waits for arrived (writes
    /// still in flight complete at the device; their appends are not acknowledged, as after a
    /// crash).
    fn stop_reaper(&mut self) {
        if let Some(d) = &self.inner.direct {
            d.stop.store(true, Ordering::Release);
            let _g = d.flights.lock();
            d.flights_cv.notify_all();
        }
        if let Some(h) = self.reaper.take() {
            let _ = h.join();
        }
    }

    /// Stops the sealer after the job it is doing (pending seals are left to recovery).
    fn stop_sealer(&mut self) {
        self.inner.seals.lock().stop = true;
        self.inner.seals_cv.notify_all();
        if let Some(h) = self.sealer.take() {
            let _ = h.join();
        }
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.stop_background();
        self.stop_reaper();
        self.stop_sealer();
        self.inner.closed.store(true, Ordering::Release);
    }
}

impl Inner {
    fn poisoned(&self, f: &LogFailure) -> Error {
        Error::Poisoned {
            dir: self.dir.clone(),
            op: f.op,
            cause: f.cause.clone(),
            no_space: f.no_space,
        }
    }

    fn check_open(&self, q: &Queue) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed(self.dir.clone()));
        }
        if let Some(f) = &q.failure {
            return Err(self.poisoned(f));
        }
        Ok(())
    }

    /// Queues a validated batch, assigning its offsets (under the queue lock, so offsets follow
    /// queue order), and waits until a leader (possibly this thread) has stored it.
    fn append_wait(&self, batch: Bytes, count: u64, max_timestamp: i64) -> Result<AppendInfo> {
        let ticket = self.enqueue(batch, count, max_timestamp)?;
        self.drive(&ticket, Until::Done)?;
        Ok(ticket.info)
    }

    /// Queues a batch: assigns its offsets and its place in the write order.
    fn enqueue(&self, batch: Bytes, count: u64, max_timestamp: i64) -> Result<Ticket> {
        if batch.len() < header::HEADER_LEN {
            // Validation guarantees a whole header; this keeps `Pending::parts` honest anyway.
            return Err(Error::InvalidBatch(crate::batch::BatchError::Truncated {
                needed: header::HEADER_LEN,
                available: batch.len(),
            }));
        }
        let mut q = self.queue.lock();
        self.check_open(&q)?;
        let base = q.next_offset;
        q.next_offset += count;
        let seq = q.next_seq;
        q.next_seq += 1;
        q.pending.push(Pending {
            batch,
            base_offset: base,
            next_offset: base + count,
            max_timestamp,
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
    fn drive(&self, ticket: &Ticket, until: Until) -> Result<()> {
        let seq = ticket.seq;
        let mut q = self.queue.lock();
        loop {
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
                let upto = q.next_seq;
                q.taken_seq = upto;
                drop(q);
                let res = {
                    let mut core = self.core.lock();
                    self.write_group(&mut core, &group, upto)
                };
                q = self.queue.lock();
                q.leader = false;
                match res {
                    Ok(true) => q.done_seq = q.done_seq.max(upto),
                    // Staged: published when its writes complete (`WriteMode::Direct`).
                    Ok(false) => {}
                    Err((op, e)) => {
                        tracing::error!(dir = %self.dir.display(), op, error = %e, "write failed; the log refuses further writes");
                        q.failure = Some(LogFailure::new(op, &e));
                        q.pending.clear();
                    }
                }
                self.queue_cv.notify_all();
                continue;
            }
            self.queue_cv.wait(&mut q);
        }
    }

    /// Runs `f` as the leader (no append is being written meanwhile).
    fn with_leader<T>(&self, f: impl FnOnce(&Inner, &mut WriterCore) -> Result<T>) -> Result<T> {
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
        let mut q = self.queue.lock();
        q.leader = false;
        if let Err(e @ Error::Poisoned { op, .. }) = &res {
            q.failure.get_or_insert_with(|| LogFailure::new(op, e));
        }
        self.queue_cv.notify_all();
        res
    }

    fn needs_roll(&self, core: &WriterCore, batch_len: usize) -> bool {
        if core.len == 0 {
            return false;
        }
        if core.len + batch_len as u64 > self.config.segment_bytes {
            return true;
        }
        match (self.config.segment_ms, core.first_append_ms) {
            (Some(ms), Some(first)) => now_ms().saturating_sub(first) >= ms.as_millis() as i64,
            _ => false,
        }
    }

    /// Writes a group of queued batches whose appends have sequence numbers below `upto`.
    /// Returns `true` when they are stored (buffered path), `false` when they were staged and
    /// are published once their writes complete (direct path, see [`super::direct`]). On error
    /// returns the failed operation's name.
    fn write_group(
        &self,
        core: &mut WriterCore,
        group: &[Pending],
        upto: u64,
    ) -> Result<bool, (&'static str, Error)> {
        if self.direct.is_some() {
            self.stage_group(core, group, upto)?;
            Ok(false)
        } else {
            self.write_group_buffered(core, group)?;
            Ok(true)
        }
    }

    /// The direct path's half of a group (see [`super::direct`]): copies every batch into the
    /// staging buffers, rolling where needed, updates the indexes and queues the writes, the
    /// last one carrying what to publish when it completes.
    fn stage_group(
        &self,
        core: &mut WriterCore,
        group: &[Pending],
        upto: u64,
    ) -> Result<(), (&'static str, Error)> {
        let Some(d) = &self.direct else {
            return Err(("stage", Error::Closed(self.dir.clone())));
        };
        let mut writes = Vec::new();
        for p in group {
            if self.needs_roll(core, p.batch.len()) {
                self.roll(core).map_err(|e| ("roll", e))?;
            }
            let seg = core.active.clone();
            let start_pos = core.len;
            let head = (p.base_offset as i64).to_be_bytes();
            let Some(stage) = core.stage.as_mut() else {
                return Err(("stage", Error::Closed(self.dir.clone())));
            };
            stage
                .copy(
                    &seg,
                    start_pos,
                    p.base_offset,
                    &head,
                    p.batch.get(8..).unwrap_or(&[]),
                    &d.cache,
                    &mut writes,
                )
                .map_err(|e| ("stage", e))?;
            for w in writes.drain(..) {
                self.submit_direct(w).map_err(|e| ("write", e))?;
            }
            self.index_run(core, std::slice::from_ref(p), start_pos);
            self.reserve_ahead(core, core.len);
        }
        let state = SegmentState {
            len: core.len,
            next_offset: core.next_offset,
            max_timestamp: core.max_timestamp,
        };
        let seg = core.active.clone();
        let Some(stage) = core.stage.as_mut() else {
            return Err(("stage", Error::Closed(self.dir.clone())));
        };
        let last = stage
            .emit(&seg, Some((state, upto)), &d.cache)
            .map_err(|e| ("stage", e))?;
        if let Some(w) = last {
            self.submit_direct(w).map_err(|e| ("write", e))?;
        }
        Ok(())
    }

    /// Stages a write. On a synchronous backend it is written (or merged into the next write)
    /// and published here. On io_uring the reaper thread submits it: a request belongs to the
    /// thread that submitted it, and the kernel cancels what has not started yet when that
    /// thread exits, which an appender's thread may do at any time; the reaper lives as long
    /// as the log. An error poisons the log (the caller reports it).
    fn submit_direct(&self, w: DirectWrite) -> Result<()> {
        let Some(d) = &self.direct else {
            return Err(Error::Closed(self.dir.clone()));
        };
        let is_async = w.segment.direct_writer().is_some_and(|f| f.is_async());
        let mut f = d.flights.lock();
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        f.stage(w);
        self.kick(d, &mut f, is_async)
    }

    /// After staging: on io_uring, wakes the reaper (if it waits for work rather than for a
    /// write in flight, whose completion wakes it anyway); otherwise moves on here.
    fn kick(&self, d: &DirectShared, f: &mut Flights<RollSwap>, is_async: bool) -> Result<()> {
        if is_async {
            d.flights_cv.notify_all();
            Ok(())
        } else {
            self.advance(f)
        }
    }

    /// Moves the direct path on: applies the rolls that are due and submits writes while there
    /// is room in flight (on io_uring, only ever called by the reaper thread). On a synchronous
    /// backend a write has completed when `submit` returns, so it is published here and the loop
    /// goes on until nothing is staged.
    fn advance(&self, f: &mut Flights<RollSwap>) -> Result<()> {
        loop {
            if let Some(e) = self.failed_error() {
                // A failed log writes nothing more: what is staged is dropped, and the appends
                // that wait for it are woken to fail (whoever poisoned the log may not have).
                f.clear();
                self.queue_cv.notify_all();
                return Err(e);
            }
            let steps = match f.take_next() {
                Ok(steps) => steps,
                Err(e) => {
                    self.fail_writes(f, &e);
                    return Err(e);
                }
            };
            let progress = !steps.is_empty();
            let mut submitted = None;
            for step in steps {
                match step {
                    Step::Roll(swap) => self.apply_roll(swap),
                    Step::Publish(flight) => self.publish_flights(f, vec![flight])?,
                    Step::Submit(part) => submitted = Some(self.submit_part(f, part)?),
                }
            }
            if progress && let Some(d) = &self.direct {
                // `wait_writes` may be waiting for exactly this (a roll applied, say), and on
                // io_uring the reaper for the write just submitted.
                d.flights_cv.notify_all();
            }
            let Some(segment) = submitted else {
                return Ok(());
            };
            let Some(file) = segment.direct_writer() else {
                return Err(Error::Closed(self.dir.clone()));
            };
            if file.is_async() {
                // Its completion comes to the reaper, woken above.
                return Ok(());
            }
            let done = file.complete(0);
            let flights = self.completion(f, done, &segment)?;
            self.publish_flights(f, flights)?;
        }
    }

    /// Submits the write that is now in flight; returns its segment.
    fn submit_part(&self, f: &mut Flights<RollSwap>, part: Part) -> Result<Arc<Segment>> {
        let segment = part.segment.clone();
        let file = segment
            .direct_writer()
            .ok_or_else(|| Error::Closed(self.dir.clone()))?;
        if let Err(e) = file.submit(part.id, part.bufs, part.offset) {
            let e = Error::io("write", &segment.log_path, e);
            self.fail_writes(f, &e);
            return Err(e);
        }
        Ok(segment)
    }

    /// The writes in flight that `done` (completions of `segment`'s direct file, in
    /// submission order) reports completed, oldest first; a failed write poisons the log.
    fn completion(
        &self,
        f: &mut Flights<RollSwap>,
        done: std::io::Result<Vec<(u64, std::io::Result<()>)>>,
        segment: &Segment,
    ) -> Result<Vec<Flight>> {
        let fail = |f: &mut Flights<RollSwap>, e: std::io::Error| {
            let e = Error::io("write", &segment.log_path, e);
            self.fail_writes(f, &e);
            e
        };
        let mut flights = Vec::new();
        for (id, res) in done.map_err(|e| fail(f, e))? {
            res.map_err(|e| fail(f, e))?;
            flights.extend(f.completed(id));
        }
        Ok(flights)
    }

    /// Publishes completed writes, oldest first (after one fdatasync per segment that covers
    /// them, under `always`).
    fn publish_flights(&self, f: &mut Flights<RollSwap>, flights: Vec<Flight>) -> Result<()> {
        let mut always = self.config.fsync == FsyncPolicy::Always;
        if !always {
            let end = flights
                .iter()
                .filter_map(|fl| fl.publish.map(|(state, _)| state.next_offset))
                .max()
                .unwrap_or(0);
            let new = end.saturating_sub(self.log_end.load(Ordering::Acquire));
            if self.flush_due(new) {
                // flush.messages reached: these writes are acknowledged only once synced, and
                // so is everything before them (rolled segments are synced by their seals).
                if let Err(e) = self.wait_for_seals() {
                    self.fail_writes(f, &e);
                    return Err(e);
                }
                always = true;
            }
        }
        let mut synced: Option<&Arc<Segment>> = None;
        for flight in &flights {
            if always && !synced.is_some_and(|s| Arc::ptr_eq(s, &flight.segment)) {
                let res = flight
                    .segment
                    .writer()
                    .ok_or_else(|| Error::Closed(self.dir.clone()))
                    .and_then(|w| {
                        w.sync_data()
                            .map_err(|e| Error::io("fdatasync", &flight.segment.log_path, e))
                    });
                if let Err(e) = res {
                    self.fail_writes(f, &e);
                    return Err(e);
                }
                synced = Some(&flight.segment);
            }
        }
        for flight in &flights {
            if let Some((state, upto)) = flight.publish {
                self.publish_direct(&flight.segment, state, upto, always);
            }
        }
        if let Some(d) = &self.direct {
            d.flights_cv.notify_all();
        }
        Ok(())
    }

    fn failed(&self) -> bool {
        self.queue.lock().failure.is_some()
    }

    fn failed_error(&self) -> Option<Error> {
        let q = self.queue.lock();
        q.failure.as_ref().map(|f| self.poisoned(f))
    }

    /// Blocks until every staged direct write is published (or the log failed); then fails if
    /// the log is poisoned. Returns at once under `WriteMode::Buffered`.
    fn wait_writes(&self) -> Result<()> {
        if let Some(d) = &self.direct {
            let mut f = d.flights.lock();
            while !f.is_empty() && !self.failed() && !d.stop.load(Ordering::Acquire) {
                // Every change wakes this wait; the timeout only bounds what a missed wake-up
                // could cost (a close or a roll, not an append).
                d.flights_cv.wait_for(&mut f, Duration::from_millis(100));
            }
        }
        match self.failed_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Makes a completed direct write visible and releases its appenders.
    fn publish_direct(&self, seg: &Segment, state: SegmentState, upto: u64, durable: bool) {
        seg.publish(state);
        if durable {
            self.durable_end
                .fetch_max(state.next_offset, Ordering::AcqRel);
        }
        self.log_end.store(state.next_offset, Ordering::Release);
        let mut q = self.queue.lock();
        q.done_seq = q.done_seq.max(upto);
        drop(q);
        self.queue_cv.notify_all();
    }

    /// A direct write failed: poison the log, fail every waiting append, forget what was
    /// staged (writes already at the device complete on their own).
    fn fail_writes(&self, f: &mut Flights<RollSwap>, e: &Error) {
        tracing::error!(dir = %self.dir.display(), error = %e, "write failed; the log refuses further writes");
        let mut q = self.queue.lock();
        q.failure.get_or_insert_with(|| LogFailure::new("write", e));
        q.pending.clear();
        drop(q);
        self.queue_cv.notify_all();
        f.clear();
        if let Some(d) = &self.direct {
            d.flights_cv.notify_all();
        }
    }

    /// Writes a group of queued batches through the page cache. On error returns the failed
    /// operation's name.
    fn write_group_buffered(
        &self,
        core: &mut WriterCore,
        group: &[Pending],
    ) -> Result<(), (&'static str, Error)> {
        let always = self.config.fsync == FsyncPolicy::Always;
        let mut i = 0;
        let mut last_end = None;
        while let Some(first) = group.get(i) {
            if self.needs_roll(core, first.batch.len()) {
                self.roll(core).map_err(|e| ("roll", e))?;
            }
            // The run of batches that fit into the active segment.
            let start_pos = core.len;
            let mut end_pos = start_pos;
            let mut j = i;
            while let Some(p) = group.get(j) {
                let len = p.batch.len() as u64;
                if j > i && end_pos + len > self.config.segment_bytes {
                    break;
                }
                end_pos += len;
                j += 1;
            }
            let run = group.get(i..j).unwrap_or(&[]);
            // Two buffers per batch: its assigned baseOffset, then the rest as received.
            let heads: Vec<[u8; 8]> = run
                .iter()
                .map(|p| (p.base_offset as i64).to_be_bytes())
                .collect();
            let bufs: Vec<&[u8]> = run
                .iter()
                .zip(&heads)
                .flat_map(|(p, head)| p.parts(head))
                .collect();
            let seg = core.active.clone();
            let Some(w) = seg.writer() else {
                return Err(("write", Error::Closed(self.dir.clone())));
            };
            let res = if always {
                w.write_all_at_and_sync(&bufs, start_pos)
            } else {
                w.write_all_at(&bufs, start_pos)
            };
            res.map_err(|e| ("write", Error::io("write", &seg.log_path, e)))?;
            if !always {
                let pending = self
                    .unflushed
                    .fetch_add(end_pos - start_pos, Ordering::AcqRel)
                    + (end_pos - start_pos);
                if pending >= WRITEBACK_CHUNK {
                    self.unflushed.store(0, Ordering::Release);
                    let from = end_pos.saturating_sub(pending);
                    self.request_range(|q| &mut q.writeback, &seg, from, end_pos);
                }
            }
            self.index_run(core, run, start_pos);
            self.reserve_ahead(core, end_pos);
            seg.publish(SegmentState {
                len: core.len,
                next_offset: core.next_offset,
                max_timestamp: core.max_timestamp,
            });
            last_end = Some(core.next_offset);
            i = j;
        }
        if let Some(end) = last_end {
            let written = end.saturating_sub(self.log_end.load(Ordering::Acquire));
            if !always && self.flush_due(written) {
                // flush.messages reached: acknowledged only once this and everything before it
                // is synced (rolled segments by their seals).
                self.wait_for_seals().map_err(|e| ("fdatasync", e))?;
                let seg = core.active.clone();
                let w = seg
                    .writer()
                    .ok_or_else(|| ("fdatasync", Error::Closed(self.dir.clone())))?;
                w.sync_data()
                    .map_err(|e| ("fdatasync", Error::io("fdatasync", &seg.log_path, e)))?;
                self.durable_end.fetch_max(end, Ordering::AcqRel);
            } else if always {
                self.durable_end.fetch_max(end, Ordering::AcqRel);
            }
            self.log_end.store(end, Ordering::Release);
        }
        Ok(())
    }

    /// Counts `messages` more appended and says whether `flush.messages` is reached; if so the
    /// count starts again (the caller syncs before acknowledging).
    fn flush_due(&self, messages: u64) -> bool {
        let Some(n) = self.config.flush_messages else {
            return false;
        };
        let total = self.unsynced_messages.fetch_add(messages, Ordering::AcqRel) + messages;
        if total < n {
            return false;
        }
        self.unsynced_messages.store(0, Ordering::Release);
        true
    }

    /// Hands the sealer thread `seg`'s bytes `[from, to)` in the slot `slot` picks (writeback
    /// or preallocation), merged with a request it has not taken yet. A request for an older
    /// segment is replaced: a pending writeback is covered by that segment's seal, and a
    /// pending preallocation was dropped by its roll.
    fn request_range(
        &self,
        slot: impl FnOnce(&mut SealQueue) -> &mut Option<RangeJob>,
        seg: &Arc<Segment>,
        from: u64,
        to: u64,
    ) {
        let mut q = self.seals.lock();
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
        drop(q);
        self.seals_cv.notify_all();
    }

    /// Asks the sealer thread to reserve the next [`PREALLOCATE_STEP`] of the active segment
    /// once the writer has used half of what is reserved, so `fallocate` (a journal
    /// transaction) never runs on the appending thread after the segment's first step, and an
    /// idle partition holds at most one step past its data.
    fn reserve_ahead(&self, core: &mut WriterCore, written: u64) {
        let max = self.config.max_segment_len();
        if !self.config.preallocate
            || core.reserved >= max
            || written + PREALLOCATE_STEP / 2 < core.reserved
        {
            return;
        }
        let from = core.reserved;
        let to = (written.max(from) + PREALLOCATE_STEP).min(max);
        core.reserved = to;
        self.request_range(|q| &mut q.preallocate, &core.active, from, to);
    }

    /// Index entries for batches just written at `start_pos`.
    fn index_run(&self, core: &mut WriterCore, run: &[Pending], start_pos: u64) {
        let seg = core.active.clone();
        let base = seg.base_offset;
        let mut pos = start_pos;
        let mut index = seg.index.write();
        let mut time_index = seg.time_index.write();
        for p in run {
            if core.bytes_since_index >= u64::from(self.config.index_interval_bytes) {
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

    /// Writes the active segment's indexes (with a final time-index entry) to their files.
    fn write_indexes(&self, core: &WriterCore, seg: &Segment) -> Result<()> {
        if let Some(e) = core.max_time_entry() {
            seg.time_index.write().maybe_push(e);
        }
        seg.write_index_files(self.backend.as_ref())
    }

    /// Seals the active segment (sync, release preallocation, write indexes) and opens a new
    /// one at the next offset. On any failure the log is poisoned.
    fn roll(&self, core: &mut WriterCore) -> Result<()> {
        self.roll_inner(core).map_err(|e| match e {
            e @ Error::Poisoned { .. } => e,
            other => self.poisoned(&LogFailure::new("roll", &other)),
        })
    }

    /// Starts a new segment at the next offset. The old segment's release of preallocated
    /// blocks, fdatasync, index files and the checkpoint that moves the recovery point past it
    /// are done by the sealer thread, so an append never waits for a whole segment to be
    /// flushed. Until that is done the old segment stays past the recovery point, and a crash
    /// makes recovery re-check it (and release its preallocated blocks).
    fn roll_inner(&self, core: &mut WriterCore) -> Result<()> {
        let old = core.active.clone();
        if old.writer().is_none() {
            return Err(Error::Closed(self.dir.clone()));
        }
        if let Some(e) = core.max_time_entry() {
            old.time_index.write().maybe_push(e);
        }
        let base = core.next_offset;
        let (new, reserved) = self.create_segment(base)?;
        // Under `always` the new file's directory entry must be durable before anything in it
        // is acknowledged. Under `never`/`interval` nothing in it is promised durable before the
        // next sync, and a sync first waits for this roll's seal, which fsyncs the directory.
        // So only `always` waits here: on ext4 a directory fsync commits the journal, which
        // waits for every data block in writeback (measured at 1.2 s under a 2 GiB produce).
        if self.config.fsync == FsyncPolicy::Always {
            self.backend
                .sync_dir(&self.dir)
                .ctx("fsync dir", &self.dir)?;
        }
        let sealed = Arc::new(Segment::sealed(
            &self.dir,
            old.base_offset,
            SegmentState {
                len: core.len,
                next_offset: core.next_offset,
                max_timestamp: core.max_timestamp,
            },
            old.index.read().clone(),
            old.time_index.read().clone(),
        )?);
        let job = SealJob {
            segment: old.clone(),
            len: core.len,
            next_offset: core.next_offset,
        };
        let mut stage = core.stage.take();
        if let (Some(stage), Some(d)) = (stage.as_mut(), &self.direct) {
            // The old segment's last bytes are staged before the swap that follows them.
            if let Some(w) = stage.emit(&old, None, &d.cache)? {
                self.submit_direct(w)?;
            }
            stage.finish_segment();
        }
        *core = WriterCore {
            active: new.clone(),
            len: 0,
            next_offset: base,
            bytes_since_index: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base,
            first_append_ms: None,
            reserved,
            stage,
        };
        self.unflushed.store(0, Ordering::Release);
        let swap = RollSwap { sealed, new, job };
        match &self.direct {
            Some(d) => {
                // Applied once the old segment's writes are published.
                let is_async = old.direct_writer().is_some_and(|f| f.is_async());
                let mut f = d.flights.lock();
                f.roll(swap);
                self.kick(d, &mut f, is_async)?;
            }
            None => self.apply_roll(swap),
        }
        tracing::debug!(dir = %self.dir.display(), base, "rolled to a new segment");
        Ok(())
    }

    /// Lists a roll's new segment in place of the old one (now read through its sealed view)
    /// and hands the old one to the sealer.
    fn apply_roll(&self, swap: RollSwap) {
        let RollSwap { sealed, new, job } = swap;
        {
            let mut segs = self.segments.write();
            if let Some(last) = segs.last_mut() {
                *last = sealed;
            }
            segs.push(new);
        }
        {
            let mut q = self.seals.lock();
            if q.preallocate
                .as_ref()
                .is_some_and(|p| Arc::ptr_eq(&p.segment, &job.segment))
            {
                q.preallocate = None;
            }
            q.jobs.push_back(job);
        }
        self.seals_cv.notify_all();
    }

    /// Makes a rolled segment durable: release of the blocks preallocated past its data
    /// (readers never look past it), fdatasync, index files, a directory fsync (which also
    /// makes the next segment's directory entry durable, see `roll_inner`), then the
    /// checkpoint that moves the recovery point to the next segment.
    fn seal(&self, job: &SealJob) -> Result<()> {
        let seg = &job.segment;
        let w = seg
            .writer()
            .ok_or_else(|| Error::Closed(self.dir.clone()))?;
        w.set_len(job.len).ctx("truncate", &seg.log_path)?;
        w.sync_data().ctx("fdatasync", &seg.log_path)?;
        // Seals run in roll order, so everything up to this segment's end is now durable.
        self.durable_end
            .fetch_max(job.next_offset, Ordering::AcqRel);
        // Held from the check to the checkpoint, so retention cannot delete the segment in
        // between and leave its index files orphaned.
        let _g = self.maintenance.lock();
        let still_listed = self
            .segments
            .read()
            .iter()
            .any(|s| s.base_offset == seg.base_offset);
        if still_listed {
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

    /// Blocks until every rolled segment has been sealed.
    fn wait_for_seals(&self) -> Result<()> {
        let mut q = self.seals.lock();
        while !q.jobs.is_empty() || q.busy {
            if q.stop {
                break;
            }
            self.seals_cv.wait(&mut q);
        }
        drop(q);
        let q = self.queue.lock();
        if let Some(f) = &q.failure {
            return Err(self.poisoned(f));
        }
        Ok(())
    }

    /// A new active segment and the end of the blocks reserved in it.
    fn create_segment(&self, base: u64) -> Result<(Arc<Segment>, u64)> {
        let path = name::segment_path(&self.dir, base, FileKind::Log);
        let w = self
            .backend
            .create_new(&path)
            .ctx("create segment", &path)?;
        open_active(
            &self.dir,
            &self.config,
            self.backend.as_ref(),
            base,
            w,
            SegmentState {
                len: 0,
                next_offset: base,
                max_timestamp: -1,
            },
            OffsetIndex::new(),
            TimeIndex::new(),
            true,
        )
    }

    fn sync(&self) -> Result<()> {
        let end = self.log_end.load(Ordering::Acquire);
        // Everything before the active segment must be durable too.
        self.wait_for_seals()?;
        let seg = self.segments.read().last().cloned();
        let Some(seg) = seg else { return Ok(()) };
        let Some(w) = seg.writer() else { return Ok(()) };
        if let Err(e) = w.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: the page cache
            // no longer tells what is on disk. Refuse writes until reopened.
            // Never `no_space`: a sync that failed may have lost pages the page cache still
            // shows, so reopening would recover from bytes that are not on the disk.
            let failure = LogFailure {
                op: "fdatasync",
                cause: e.to_string(),
                no_space: false,
            };
            let mut q = self.queue.lock();
            q.failure.get_or_insert_with(|| failure.clone());
            drop(q);
            self.queue_cv.notify_all();
            tracing::error!(dir = %self.dir.display(), error = %e, "fdatasync failed; the log refuses further writes");
            return Err(self.poisoned(&failure));
        }
        self.durable_end.fetch_max(end, Ordering::AcqRel);
        self.unsynced_messages.store(0, Ordering::Release);
        Ok(())
    }

    fn close_clean(&self, core: &mut WriterCore) -> Result<()> {
        {
            // No reservation may land after the truncation below released them.
            let mut q = self.seals.lock();
            q.closing = true;
            q.preallocate = None;
            while q.busy && !q.stop {
                self.seals_cv.wait(&mut q);
            }
        }
        let seg = core.active.clone();
        let w = seg
            .writer()
            .ok_or_else(|| Error::Closed(self.dir.clone()))?;
        w.set_len(core.len).ctx("truncate", &seg.log_path)?;
        w.sync_data().ctx("fdatasync", &seg.log_path)?;
        self.write_indexes(core, &seg)?;
        self.backend
            .sync_dir(&self.dir)
            .ctx("fsync dir", &self.dir)?;
        let _g = self.maintenance.lock();
        checkpoint::write(
            self.backend.as_ref(),
            &self.dir,
            &Checkpoint {
                clean: true,
                recovery_point: core.next_offset,
                log_end_offset: core.next_offset,
                active_segment_len: core.len,
            },
        )
    }

    fn enforce_retention(&self, now: i64) -> Result<RetentionReport> {
        let _g = self.maintenance.lock();
        let segs: Vec<Arc<Segment>> = self.segments.read().clone();
        let sealed = segs.len().saturating_sub(1);
        let mut total: u64 = segs.iter().map(|s| s.len()).sum();
        let mut doomed = 0;
        for s in segs.iter().take(sealed) {
            let too_old = self.config.retention_ms.is_some_and(|r| {
                s.largest_timestamp_ms() < now.saturating_sub(r.as_millis() as i64)
            });
            let too_big = self
                .config
                .retention_bytes
                .is_some_and(|r| total.saturating_sub(s.len()) >= r);
            if !(too_old || too_big) {
                break;
            }
            total -= s.len();
            doomed += 1;
        }
        self.remove_front(doomed, "retention")
    }

    /// Removes the `doomed` oldest segments (all sealed). Unlists them first: new reads no
    /// longer find them, reads in flight hold their mapping and finish undisturbed. Only this
    /// removes from the front, always under the maintenance lock the caller holds.
    fn remove_front(&self, doomed: usize, why: &'static str) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        if doomed > 0 {
            let removed: Vec<Arc<Segment>> = {
                let mut w = self.segments.write();
                let n = doomed.min(w.len().saturating_sub(1));
                w.drain(..n).collect()
            };
            for s in &removed {
                remove_if_exists(self.backend.as_ref(), &s.log_path)?;
                remove_if_exists(self.backend.as_ref(), &s.index_path)?;
                remove_if_exists(self.backend.as_ref(), &s.time_index_path)?;
                report.segments_deleted += 1;
                report.bytes_deleted += s.len();
                tracing::info!(segment = %s.log_path.display(), bytes = s.len(), why, "deleted segment");
            }
            self.backend
                .sync_dir(&self.dir)
                .ctx("fsync dir", &self.dir)?;
        }
        report.log_start_offset = self.segments.read().first().map_or(0, |s| s.base_offset);
        Ok(report)
    }
}

impl Inner {
    fn delete_segments_before(&self, offset: u64) -> Result<RetentionReport> {
        // Under the maintenance lock, like retention and the sealer (which writes a segment's
        // index files only while the segment is still listed).
        let _g = self.maintenance.lock();
        let segs: Vec<Arc<Segment>> = self.segments.read().clone();
        let sealed = segs.len().saturating_sub(1);
        let doomed = segs
            .iter()
            .take(sealed)
            .take_while(|s| s.next_offset() <= offset)
            .count();
        self.remove_front(doomed, "delete_segments_before")
    }
}

/// Opens `w` as the active segment. With `reserve_now` (a segment a roll just created, which an
/// append is about to write) the first [`PREALLOCATE_STEP`] past its data is reserved here;
/// otherwise (a log being opened, maybe one of thousands of idle partitions) nothing is until
/// the first append asks the sealer for it ([`Inner::reserve_ahead`]). Reserving is best effort:
/// a failed `fallocate` (a full disk, a file system without it) is logged and the blocks are
/// then allocated as the data is written back. Returns the segment and the end of the
/// reservation (at most the data's end when nothing was reserved).
#[allow(clippy::too_many_arguments)]
fn open_active(
    dir: &Path,
    config: &LogConfig,
    backend: &dyn IoBackend,
    base: u64,
    w: Box<dyn WritableFile>,
    state: SegmentState,
    index: OffsetIndex,
    time_index: TimeIndex,
    reserve_now: bool,
) -> Result<(Arc<Segment>, u64)> {
    let path = name::segment_path(dir, base, FileKind::Log);
    let max = config.max_segment_len();
    let mut reserved = state.len;
    if config.preallocate && reserve_now && state.len < max {
        let len = PREALLOCATE_STEP.min(max - state.len);
        match w.preallocate(state.len, len) {
            Ok(()) => reserved = state.len + len,
            Err(e) => {
                tracing::warn!(segment = %path.display(), error = %e, "fallocate failed; blocks are allocated as data is written");
            }
        }
    }
    let direct = match config.write_mode {
        WriteMode::Buffered => None,
        WriteMode::Direct => Some(backend.open_direct(&path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                Error::Config(format!(
                    "write mode direct: the file system of {} does not support O_DIRECT ({e})",
                    dir.display()
                ))
            } else {
                Error::io("open O_DIRECT", &path, e)
            }
        })?),
    };
    let seg = Segment::active(dir, base, w, direct, max, state, index, time_index)?;
    Ok((Arc::new(seg), reserved))
}

/// The sealer thread: makes rolled segments durable in the order they rolled and, when it has
/// none to seal, starts the writeback the writer asked for.
fn spawn_sealer(inner: &Arc<Inner>) -> Result<JoinHandle<()>> {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("strata-log-seal".into())
        .spawn(move || {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let work = {
                    let mut q = inner.seals.lock();
                    loop {
                        if q.stop {
                            return;
                        }
                        if let Some(job) = q.jobs.pop_front() {
                            q.busy = true;
                            break SealerWork::Seal(job);
                        }
                        if let Some(p) = q.preallocate.take()
                            && !q.closing
                        {
                            q.busy = true;
                            break SealerWork::Preallocate(p);
                        }
                        if let Some(wb) = q.writeback.take() {
                            break SealerWork::Writeback(wb);
                        }
                        inner.seals_cv.wait(&mut q);
                    }
                };
                let job = match work {
                    SealerWork::Seal(job) => job,
                    SealerWork::Preallocate(p) => {
                        // An optimisation: without it the file system allocates at writeback.
                        if let Some(w) = p.segment.writer()
                            && let Err(e) = w.preallocate(p.offset, p.len)
                        {
                            tracing::warn!(segment = %p.segment.log_path.display(), error = %e, "fallocate failed");
                        }
                        inner.seals.lock().busy = false;
                        inner.seals_cv.notify_all();
                        continue;
                    }
                    SealerWork::Writeback(wb) => {
                        // A hint: failure only means the OS flushes later, never lost data.
                        if let Some(w) = wb.segment.writer()
                            && let Err(e) = w.start_writeback(wb.offset, wb.len)
                        {
                            tracing::debug!(error = %e, "sync_file_range failed");
                        }
                        continue;
                    }
                };
                let res = inner.seal(&job);
                if let Err(e) = &res {
                    tracing::error!(segment = %job.segment.log_path.display(), error = %e, "sealing a segment failed; the log refuses further writes");
                    inner
                        .queue
                        .lock()
                        .failure
                        .get_or_insert_with(|| LogFailure::new("seal", e));
                    // Appends waiting for staged direct writes learn it now.
                    inner.queue_cv.notify_all();
                }
                {
                    let mut q = inner.seals.lock();
                    q.busy = false;
                    if res.is_err() {
                        q.jobs.clear();
                    }
                }
                inner.seals_cv.notify_all();
                drop(job);
            }
        })
        .map_err(|e| Error::io("spawn thread", PathBuf::new(), e))
}

/// The direct path's reaper thread (`WriteMode::Direct` on an asynchronous backend): waits
/// for writes in flight to complete, submits what was staged meanwhile, then publishes the
/// completed ones (see [`super::direct`]).
fn spawn_reaper(inner: &Arc<Inner>) -> Result<Option<JoinHandle<()>>> {
    let async_backend = inner
        .segments
        .read()
        .last()
        .and_then(|s| s.direct_writer().map(|w| w.is_async()))
        .unwrap_or(false);
    if inner.direct.is_none() || !async_backend {
        return Ok(None);
    }
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let h = std::thread::Builder::new()
        .name("strata-log-reap".into())
        .spawn(move || {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let Some(d) = &inner.direct else { return };
                let segment = {
                    let mut f = d.flights.lock();
                    loop {
                        if d.stop.load(Ordering::Acquire) {
                            return;
                        }
                        // What leaders staged while nothing was in flight; a failure poisons
                        // the log, which reports it to the appenders.
                        let _ = inner.advance(&mut f);
                        if let Some(seg) = f.flying() {
                            break seg.clone();
                        }
                        d.flights_cv.wait(&mut f);
                    }
                };
                let Some(file) = segment.direct_writer() else {
                    return;
                };
                let done = file.complete(1);
                let mut f = d.flights.lock();
                // Errors poison the log, which reports them to the appenders.
                if let Ok(flights) = inner.completion(&mut f, done, &segment) {
                    // More writes go before these ones' appenders are woken.
                    let _ = inner
                        .advance(&mut f)
                        .and_then(|()| inner.publish_flights(&mut f, flights));
                }
            }
        })
        .map_err(|e| Error::io("spawn thread", PathBuf::new(), e))?;
    Ok(Some(h))
}

/// The background thread: interval fsync and periodic retention.
fn spawn_background(inner: &Arc<Inner>) -> Result<Option<JoinHandle<()>>> {
    let flush = match inner.config.fsync {
        FsyncPolicy::Interval(d) => Some(d),
        _ => None,
    };
    let retention = inner.config.retention_check_interval;
    if flush.is_none() && retention.is_none() {
        return Ok(None);
    }
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let h = std::thread::Builder::new()
        .name("strata-log-bg".into())
        .spawn(move || background_loop(weak, flush, retention))
        .map_err(|e| Error::io("spawn thread", PathBuf::new(), e))?;
    Ok(Some(h))
}

fn background_loop(weak: Weak<Inner>, flush: Option<Duration>, retention: Option<Duration>) {
    let now = Instant::now();
    let mut next_flush = flush.map(|d| now + d);
    let mut next_retention = retention.map(|d| now + d);
    loop {
        let Some(wake) = [next_flush, next_retention].into_iter().flatten().min() else {
            return;
        };
        let Some(inner) = weak.upgrade() else { return };
        {
            let mut stop = inner.stop.lock();
            if *stop {
                return;
            }
            inner.stop_cv.wait_until(&mut stop, wake);
            if *stop {
                return;
            }
        }
        let now = Instant::now();
        if let (Some(at), Some(d)) = (next_flush, flush)
            && now >= at
        {
            if inner.log_end.load(Ordering::Acquire) > inner.durable_end.load(Ordering::Acquire)
                && let Err(e) = inner.sync()
            {
                tracing::error!(error = %e, "interval fsync failed");
            }
            next_flush = Some(now + d);
        }
        if let (Some(at), Some(d)) = (next_retention, retention)
            && now >= at
        {
            if let Err(e) = inner.enforce_retention(now_ms()) {
                tracing::error!(error = %e, "retention failed");
            }
            next_retention = Some(now + d);
        }
    }
}

/// What recovery learned of one segment.
struct Loaded {
    base: u64,
    state: SegmentState,
    index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    offset_of_max_timestamp: u64,
}

/// Most bytes after a segment's last offset-index entry that [`load_trusted`] reads; past it
/// (an index interval far above the default 4 KiB) the segment is walked whole.
const TRUSTED_TAIL_MAX: u64 = 16 << 20;

/// Loads a segment recovery trusts (sealed and synced, or closed cleanly) from its index files
/// instead of walking it: the offset index gives the position of a batch near the end, the
/// batches from there to the end of the file are walked (headers only) to find the segment's
/// next offset and the writer's index state, and the time index's last entry gives its largest
/// timestamp (a sealed segment's always holds it, FORMAT.md §4.3). `None` when an index file is
/// missing or damaged, or the walk does not end exactly at the end of the file: the caller walks
/// the whole segment and rebuilds the indexes.
fn load_trusted(dir: &Path, base: u64, file_len: u64) -> Result<Option<Loaded>> {
    use std::os::unix::fs::FileExt;
    let idx_path = name::segment_path(dir, base, FileKind::Index);
    let tidx_path = name::segment_path(dir, base, FileKind::TimeIndex);
    let Some(index) = index::read_index_file(&idx_path)?
        .and_then(|b| OffsetIndex::decode(&b, base, file_len.max(1)).ok())
    else {
        return Ok(None);
    };
    let Some(time_bytes) = index::read_index_file(&tidx_path)? else {
        return Ok(None);
    };
    let (from, from_offset) = index.entries().last().map_or((0, base), |e| {
        (u64::from(e.position), base + u64::from(e.relative_offset))
    });
    if file_len - from > TRUSTED_TAIL_MAX {
        return Ok(None);
    }
    let path = name::segment_path(dir, base, FileKind::Log);
    let mut tail = vec![0u8; (file_len - from) as usize];
    File::open(&path)
        .and_then(|f| f.read_exact_at(&mut tail, from))
        .ctx("read segment", &path)?;
    let mut scanner = scan::BatchScanner::new(&tail, MAX_SEGMENT_BYTES as usize, false)
        .expecting_offset(from_offset);
    let mut next_offset = from_offset;
    let mut tail_max = (-1i64, base);
    for b in scanner.by_ref() {
        next_offset = b.header.next_offset() as u64;
        if b.header.max_timestamp > tail_max.0 {
            tail_max = (b.header.max_timestamp, b.header.last_offset() as u64);
        }
    }
    if scanner.stop().is_some() || scanner.position() != tail.len() as u64 {
        return Ok(None);
    }
    let Ok(time_index) = TimeIndex::decode(&time_bytes, base, (next_offset - base).max(1)) else {
        return Ok(None);
    };
    let (max_timestamp, offset_of_max_timestamp) = match time_index.last() {
        Some(e) if e.timestamp >= tail_max.0 => (e.timestamp, base + u64::from(e.relative_offset)),
        _ => tail_max,
    };
    Ok(Some(Loaded {
        base,
        state: SegmentState {
            len: file_len,
            next_offset,
            max_timestamp,
        },
        index,
        time_index,
        bytes_since_index: file_len - from,
        offset_of_max_timestamp,
    }))
}

/// Records the running boot's id in the lock file (FORMAT.md §6) and says whether the previous
/// open of this directory ran in the same boot. Then the page cache outlived whatever stopped
/// that open: bytes it wrote are all there, so only a failed write can have left a partial tail
/// (the backends write each call's bytes in order, see [`crate::io`]), and bad bytes anywhere
/// else are damage. `false` when either id is unknown. The file is not synced: after a power
/// cut it may hold the old id or nothing, and either way differs from the new boot's.
fn note_boot(lock: &File, lock_path: &Path, backend: &dyn IoBackend) -> Result<bool> {
    use std::io::{Read, Seek, Write};
    let current = backend.boot_id();
    let mut f = lock;
    let mut previous = String::new();
    // A few bytes at most; a longer or unreadable file is an unknown boot.
    let read = (&mut f)
        .take(LOCK_FILE_MAX_BYTES)
        .read_to_string(&mut previous);
    let same = read.is_ok()
        && current
            .as_deref()
            .is_some_and(|c| previous.trim() == c && !c.is_empty());
    let line = current.map(|c| c + "\n").unwrap_or_default();
    f.set_len(0).ctx("truncate", lock_path)?;
    f.seek(std::io::SeekFrom::Start(0)).ctx("seek", lock_path)?;
    f.write_all(line.as_bytes()).ctx("write", lock_path)?;
    Ok(same)
}

/// The lock file holds one boot id (a UUID on Linux); anything longer is not one.
const LOCK_FILE_MAX_BYTES: u64 = 128;

/// Opens every segment of `dir`, checking and repairing what a crash may have left.
/// `same_boot`: the previous open ran in this boot (see [`note_boot`]).
fn recover(
    dir: &Path,
    config: &LogConfig,
    backend: &dyn IoBackend,
    same_boot: bool,
) -> Result<(Vec<Arc<Segment>>, WriterCore, RecoveryReport)> {
    let cp = checkpoint::read(dir)?;
    let mut listing = list_dir(dir)?;
    let mut report = RecoveryReport::default();

    for tmp in &listing.tmps {
        remove_if_exists(backend, tmp)?;
    }
    for (base, _, path) in &listing.indexes {
        if !listing.logs.contains_key(base) {
            tracing::warn!(file = %path.display(), "removing index without a segment");
            remove_if_exists(backend, path)?;
        }
    }
    let fresh = listing.logs.is_empty() && cp.is_none();
    if listing.logs.is_empty() {
        let base = cp.map_or(0, |c| c.log_end_offset);
        let path = name::segment_path(dir, base, FileKind::Log);
        drop(backend.create_new(&path).ctx("create segment", &path)?);
        backend.sync_dir(dir).ctx("fsync dir", dir)?;
        listing.logs.insert(base, 0);
    }

    let bases: Vec<(u64, u64)> = listing.logs.iter().map(|(b, l)| (*b, *l)).collect();
    let last_base = bases.last().map_or(0, |b| b.0);
    let clean =
        cp.is_some_and(|c| c.clean && listing.logs.get(&last_base) == Some(&c.active_segment_len));
    report.clean = clean;
    let recovery_point = match cp {
        Some(c) if clean => c.log_end_offset.max(last_base),
        Some(c) => c.recovery_point,
        None => 0,
    };

    let mut loaded: Vec<Loaded> = Vec::new();
    let mut expected_base: Option<u64> = None;
    // Set once a crash's torn tail was cut: later segments then hold nothing the log can keep.
    let mut crash_cut = false;
    let mut i = 0;
    while let Some(&(base, file_len)) = bases.get(i) {
        i += 1;
        let path = name::segment_path(dir, base, FileKind::Log);
        if let Some(exp) = expected_base
            && exp != base
        {
            let reason =
                format!("segment starts at offset {base}, but the previous segment ends at {exp}");
            // Past the recovery point the previous segment was never known durable: a machine
            // crash may have cut it short, and what follows it cannot be kept. In the same boot
            // only the tail cut above can explain a gap (and every later file is then empty).
            let crash_gap = base >= recovery_point && (!same_boot || crash_cut);
            if crash_gap || config.recovery == RecoveryMode::TruncateAtCorruption {
                tracing::warn!(file = %path.display(), %reason, "removing this and every later segment");
                report.segments_removed +=
                    remove_segments(backend, dir, bases.get(i - 1..).unwrap_or(&[]))?;
                break;
            }
            return Err(Error::Corrupt {
                file: path,
                position: 0,
                reason: format!(
                    "{reason} (a segment is missing, or was cut short, where no crash can have done it); {TRUNCATE_HINT}"
                ),
            });
        }
        let trusted = base < recovery_point || clean;
        // A segment recovery trusts is not walked: its index files say where its batches are,
        // and only the batches after the last index entry are read, to find its exact end.
        // (Kafka loads segments lazily the same way.) Damage inside it is for `strata verify`
        // to find; anything that does not add up falls back to the full walk below.
        if trusted && let Some(l) = load_trusted(dir, base, file_len)? {
            expected_base = Some(l.state.next_offset);
            loaded.push(l);
            continue;
        }
        let mut data = if file_len == 0 {
            None
        } else {
            let f = File::open(&path).ctx("open segment", &path)?;
            // SAFETY: recovery maps the file read-only while no writer exists for it (the
            // directory lock keeps other engines out); the map is dropped before any truncation.
            Some(unsafe { memmap2::Mmap::map(&f) }.ctx("mmap", &path)?)
        };
        let bytes = data.as_deref().unwrap_or(&[]);
        // Any batch the engine could ever have stored is accepted here, whatever the log's
        // max_batch_bytes is now (it may have been lowered since the data was written).
        let scan = scan::scan_segment(
            bytes,
            base,
            MAX_SEGMENT_BYTES as usize,
            !trusted,
            config.index_interval_bytes,
        );
        if !trusted {
            report.segments_scanned += 1;
        }
        let mut valid_len = file_len;
        // The zeros a direct write pads its last block with (FORMAT.md §2) end a segment that
        // was not yet truncated to its data: cut, but nothing was damaged or lost.
        if let Some(stop) = scan.stop.as_ref().filter(|s| {
            let tail = usize::try_from(s.position)
                .ok()
                .and_then(|p| bytes.get(p..))
                .unwrap_or(&[]);
            !trusted && scan::is_block_padding(tail, file_len)
        }) {
            tracing::debug!(file = %path.display(), position = stop.position, "cutting the zero padding of a direct write");
            report.padding_trimmed += file_len - stop.position;
            drop(data.take());
            let w = backend.open_writable(&path).ctx("open segment", &path)?;
            w.set_len(stop.position).ctx("truncate", &path)?;
            w.sync_data().ctx("fdatasync", &path)?;
            valid_len = stop.position;
        } else if let Some(stop) = &scan.stop {
            let reason = stop.problem.to_string();
            let later = bases.get(i..).unwrap_or(&[]);
            // Past the recovery point nothing was known durable. After a machine crash (another
            // boot) bad bytes there are what the crash left: a torn or garbled unsynced tail, a
            // segment the OS had not finished writing back. The segment ends there; later
            // segments stay only if their offsets continue where it now ends (checked at the top
            // of the loop): then the cut bytes held no batch the log needs. In the same boot the
            // page cache survived and every write lands in order, so the only tail a crash
            // leaves is a batch cut short by a write that failed or never finished, with nothing
            // after it in any file; anything else is damage. Before the recovery point, the
            // segment was synced and sealed: bad bytes are damage. Damage is an error unless the
            // operator chose TruncateAtCorruption, which drops everything after it.
            let crash_tail = !trusted
                && (!same_boot
                    || (scan::is_cut_short(&stop.problem)
                        && later.iter().all(|(_, len)| *len == 0)));
            if crash_tail || config.recovery == RecoveryMode::TruncateAtCorruption {
                let damage = !crash_tail;
                if damage {
                    tracing::error!(file = %path.display(), position = stop.position, %reason, later_segments = later.len(), "corruption: truncating here and removing every later segment");
                } else {
                    crash_cut = true;
                    tracing::warn!(file = %path.display(), position = stop.position, bytes = file_len - stop.position, %reason, "truncating what a crash left unwritten");
                }
                report.truncated.push((
                    path.clone(),
                    stop.position,
                    file_len - stop.position,
                    reason,
                ));
                drop(data.take());
                let w = backend.open_writable(&path).ctx("open segment", &path)?;
                w.set_len(stop.position).ctx("truncate", &path)?;
                w.sync_data().ctx("fdatasync", &path)?;
                valid_len = stop.position;
                if damage {
                    if !later.is_empty() {
                        report.segments_removed += remove_segments(backend, dir, later)?;
                    }
                    i = bases.len();
                }
            } else {
                return Err(Error::Corrupt {
                    file: path,
                    position: stop.position,
                    reason: damage_reason(&reason, trusted, later),
                });
            }
        }
        // A truncation above may have removed every later segment: this one is then the last.
        let is_last = i == bases.len();
        if !trusted && !is_last && valid_len == file_len {
            // A rolled segment the crash caught before its seal may still hold the blocks
            // preallocated past its data, which the seal would have released. The checkpoint
            // below trusts it from now on, so what was read of it must be on disk: after a
            // process crash part of it may still be only in the page cache.
            drop(data.take());
            let w = backend.open_writable(&path).ctx("open segment", &path)?;
            w.set_len(valid_len).ctx("truncate", &path)?;
            w.sync_data().ctx("fdatasync", &path)?;
        }
        // Indexes: trust the files only if they decode and agree with the scan's end.
        let end_rel = scan.next_offset - base;
        let idx_path = name::segment_path(dir, base, FileKind::Index);
        let tidx_path = name::segment_path(dir, base, FileKind::TimeIndex);
        let from_file = if trusted && scan.stop.is_none() {
            let idx = index::read_index_file(&idx_path)?
                .and_then(|b| OffsetIndex::decode(&b, base, valid_len).ok());
            let tidx = index::read_index_file(&tidx_path)?
                .and_then(|b| TimeIndex::decode(&b, base, end_rel.max(1)).ok());
            idx.zip(tidx)
        } else {
            None
        };
        let rebuilt = from_file.is_none();
        let (index, mut time_index) = match from_file {
            Some(p) => p,
            None => {
                // Segments that were scanned always take the scan's indexes; only a trusted
                // segment's missing or damaged files count as a rebuild.
                if trusted {
                    report.indexes_rebuilt += 1;
                }
                (scan.index.clone(), scan.time_index.clone())
            }
        };
        if scan.max_timestamp >= 0 && !is_last {
            time_index.maybe_push(TimeEntry {
                timestamp: scan.max_timestamp,
                relative_offset: relative(scan.offset_of_max_timestamp, base),
            });
        }
        // A sealed segment's indexes are persisted now, so the next open need not rebuild them
        // (the active segment's are written when it seals or the log closes).
        if rebuilt && !is_last {
            write_file_atomic(backend, &idx_path, &index.encode(base))?;
            write_file_atomic(backend, &tidx_path, &time_index.encode(base))?;
            backend.sync_dir(dir).ctx("fsync dir", dir)?;
        }
        loaded.push(Loaded {
            base,
            state: SegmentState {
                len: valid_len,
                next_offset: scan.next_offset,
                max_timestamp: scan.max_timestamp,
            },
            index,
            time_index,
            bytes_since_index: scan.bytes_since_index,
            offset_of_max_timestamp: scan.offset_of_max_timestamp,
        });
        expected_base = Some(scan.next_offset);
    }

    let Some(last) = loaded.pop() else {
        return Err(Error::Corrupt {
            file: dir.to_path_buf(),
            position: 0,
            reason: "no segment survived recovery".into(),
        });
    };
    let mut segments = Vec::with_capacity(loaded.len() + 1);
    for l in loaded {
        segments.push(Arc::new(Segment::sealed(
            dir,
            l.base,
            l.state,
            l.index,
            l.time_index,
        )?));
    }
    let path = name::segment_path(dir, last.base, FileKind::Log);
    let w = backend.open_writable(&path).ctx("open segment", &path)?;
    let (active, reserved) = open_active(
        dir,
        config,
        backend,
        last.base,
        w,
        last.state,
        last.index,
        last.time_index,
        false,
    )?;
    segments.push(active.clone());
    report.segments = segments.len();

    // From here on the log is not clean: clear the flag durably before the first write, and
    // record that every segment but the last is verified.
    checkpoint::write(
        backend,
        dir,
        &Checkpoint {
            clean: false,
            recovery_point: last.base,
            log_end_offset: last.state.next_offset,
            active_segment_len: last.state.len,
        },
    )?;
    if !report.clean && !fresh {
        tracing::info!(dir = %dir.display(), ?report, "recovered partition log");
    }
    let core = WriterCore {
        active,
        len: last.state.len,
        next_offset: last.state.next_offset,
        bytes_since_index: last.bytes_since_index,
        max_timestamp: last.state.max_timestamp,
        offset_of_max_timestamp: last.offset_of_max_timestamp,
        first_append_ms: (last.state.len > 0).then(now_ms),
        reserved,
        stage: (config.write_mode == WriteMode::Direct)
            .then(|| Stage::new(config.direct_chunk_bytes())),
    };
    Ok((segments, core, report))
}

/// What an operator reads when recovery refuses a partition: the problem, why it is damage and
/// not a crash's tail, and the way out.
fn damage_reason(problem: &str, trusted: bool, later: &[(u64, u64)]) -> String {
    let why = if trusted {
        "in data already synced and sealed"
    } else if later.iter().any(|(_, len)| *len > 0) {
        "with data after it, which no crash in this boot leaves"
    } else {
        "and not a batch cut short by an unfinished write, the only tail a crash in this boot leaves"
    };
    format!("{problem} ({why}); {TRUNCATE_HINT}")
}

/// The way out of damage recovery refuses, named in its error.
const TRUNCATE_HINT: &str = "`strata verify --repair --truncate-at-damage` cuts the partition here and keeps what it cuts in a quarantine directory";

/// Removes segments (log and index files) found by recovery past a point of corruption.
fn remove_segments(backend: &dyn IoBackend, dir: &Path, bases: &[(u64, u64)]) -> Result<usize> {
    for (base, _) in bases {
        for kind in [FileKind::Log, FileKind::Index, FileKind::TimeIndex] {
            remove_if_exists(backend, &name::segment_path(dir, *base, kind))?;
        }
    }
    backend.sync_dir(dir).ctx("fsync dir", dir)?;
    Ok(bases.len())
}
