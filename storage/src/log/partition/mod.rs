//! [`PartitionLog`]: one partition's log.
//!
//! The log is split by concept: [`state`] (what is shared, and the lock order), [`append`] (the
//! queue and the group commit), [`roll`], [`maintenance`] (seals, syncs, idle files: the
//! background work the shared runtime runs), [`retention`], [`recovery`] (opening after a
//! crash) and [`replica`] (high watermark and truncation). How bytes reach the file is the
//! write path's business ([`super::write_path`]).
//!
//! ## What is on disk when `append_*` returns
//! * `never`: the batch is in the page cache and visible to readers. Survives a process crash;
//!   a machine crash may lose it (sealed segments are synced by their seal, everything on clean
//!   close).
//! * `interval:MS`: as `never`, plus a background fdatasync every MS: a machine crash loses at
//!   most the appends of the last interval.
//! * `always`: the batch and everything before it were covered by an fdatasync that returned
//!   `Ok` before the call returned. Readers see it only after that sync, so nothing a consumer
//!   reads can be lost by a crash.
//!
//! A failed write or fsync *poisons* the log: every later append fails with
//! [`Error::Poisoned`] until the log is reopened (which recovers from what is really on disk).

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::header;
use crate::batch::{BatchBuilder, Compression, NewRecord};
use crate::error::{Error, IoContext, Result};
use crate::io::{DirectWaker, IoBackend};

use super::config::{LogConfig, WriteMode};
use super::epoch::{EpochCache, EpochEnd, EpochEntry};
use super::read::ReadSlice;
use super::runtime::Runtime;
use super::segment::{Segment, WakerCell, Want};
use super::write_path::WritePath;
use super::write_path::buffered::BufferedPath;
use super::write_path::direct::DirectPath;

pub(crate) mod append;
pub(crate) mod maintenance;
pub(crate) mod recovery;
pub(crate) mod replica;
pub(crate) mod retention;
pub(crate) mod roll;
pub(crate) mod settings;
pub(crate) mod state;

use append::Origin;
pub use state::LogFailure;
use state::{Inner, Maintenance, Queue, Ticket, Until};

/// Name of the file that records the boot a partition directory was last opened in, and that
/// a standalone log locks ([`LogConfig::lock_dir`]).
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
    /// Segments recovery trusted and loaded from their index files, reading only the batches
    /// after the last offset-index entry.
    pub segments_loaded_from_index: usize,
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

/// Where a read stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// At the log end offset (what a follower replicates, and every read of a log that is not
    /// replicated).
    LogEnd,
    /// At the high watermark (what a consumer of a replicated log may see).
    HighWatermark,
}

/// Partition directories open in this process: a second open of one is refused even when no
/// directory lock is taken ([`LogConfig::lock_dir`] off).
fn open_dirs() -> &'static Mutex<HashSet<PathBuf>> {
    static OPEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A directory's entry in [`open_dirs`], removed when dropped.
#[derive(Debug)]
struct Registered(PathBuf);

impl Registered {
    fn take(dir: &Path) -> Result<Self> {
        let key = dir.canonicalize().ctx("resolve", dir)?;
        if !open_dirs().lock().insert(key.clone()) {
            return Err(Error::Locked(dir.to_path_buf()));
        }
        Ok(Registered(key))
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        open_dirs().lock().remove(&self.0);
    }
}

/// One partition's log. `Send + Sync`: share it in an `Arc` between appenders and readers.
pub struct PartitionLog {
    inner: Arc<Inner>,
    recovery: RecoveryReport,
    /// The directory lock, when the log takes one ([`LogConfig::lock_dir`]).
    _lock: Option<File>,
    _registered: Registered,
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

impl PartitionLog {
    /// Opens (creating if needed) the partition log in `dir`, recovering after a crash. The log
    /// runs its background work on the process's shared [`Runtime`].
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        backend: Arc<dyn IoBackend>,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.into();
        backend.create_dir_all(&dir).ctx("create dir", &dir)?;
        let registered = Registered::take(&dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .ctx("open", &lock_path)?;
        if config.lock_dir {
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir)),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io("lock", lock_path, e));
                }
            }
        }
        let same_boot = recovery::note_boot(&lock, &lock_path, backend.as_ref())?;
        let lock = config.lock_dir.then_some(lock);

        let direct = config.write_mode == WriteMode::Direct;
        let waker: Option<WakerCell> = direct.then(|| Arc::new(OnceLock::new()));
        let ctx = recovery::RecoverCtx {
            backend: backend.clone(),
            waker: waker.clone(),
        };
        let rec = recovery::recover(&dir, &config, &ctx, same_boot)?;
        let epochs = recovery::load_epochs(&dir, backend.as_ref(), &rec.segments)?;
        if direct {
            // Fails now, naming the file system, if it refuses O_DIRECT (a lack of descriptors
            // is for the first write to report).
            match rec.core.active.direct_writer() {
                Ok(_) => rec.core.active.release_files(),
                Err(e) if e.is_out_of_resources() => {}
                Err(e) => return Err(e),
            }
        }
        let end = rec.core.next_offset;
        let start_floor = recovery::load_start(&dir, backend.as_ref(), &rec.segments, end)?;
        let path: Box<dyn WritePath> = if direct {
            Box::new(DirectPath::new(&config, end))
        } else {
            Box::new(BufferedPath)
        };
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            dir,
            settings: parking_lot::Mutex::new(config),
            backend,
            runtime: Runtime::global(),
            segments: RwLock::new(rec.segments),
            queue: parking_lot::Mutex::new(Queue {
                next_offset: end,
                ..Queue::default()
            }),
            queue_cv: Condvar::new(),
            core: parking_lot::Mutex::new(rec.core),
            log_end: AtomicU64::new(end),
            durable_end: AtomicU64::new(end),
            high_watermark: AtomicU64::new(end),
            pace: parking_lot::Mutex::new(Default::default()),
            start_floor: AtomicU64::new(start_floor),
            closed: AtomicBool::new(false),
            maintenance: parking_lot::Mutex::new(Maintenance {
                checkpoint_clean: rec.checkpoint_clean,
            }),
            dirty: AtomicBool::new(false),
            epochs: parking_lot::Mutex::new(epochs),
            work: parking_lot::Mutex::new(Default::default()),
            work_cv: Condvar::new(),
            deadlines: parking_lot::Mutex::new(Default::default()),
            unflushed: AtomicU64::new(0),
            unsynced_messages: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            path,
            waker,
        });
        if let Some(cell) = &inner.waker {
            let w: std::sync::Weak<dyn DirectWaker> = inner.me.clone();
            let _ = cell.set(w);
        }
        inner.start_timers();
        Ok(PartitionLog {
            inner,
            recovery: rec.report,
            _lock: lock,
            _registered: registered,
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

    /// The settings now ([`PartitionLog::reconfigure`] changes them).
    pub fn config(&self) -> LogConfig {
        self.inner.config()
    }

    /// Changes the settings Kafka lets an operator change on a running topic (segment size and
    /// age, retention, flush policy, index interval, largest batch, preallocation); they apply
    /// from the next operation that reads them. Any other field must stay as it is
    /// ([`Error::Config`] otherwise), and so must the log: a closed or failed one refuses (it
    /// takes the new settings when it is reopened). See `partition/settings.rs`.
    pub fn reconfigure(&self, config: LogConfig) -> Result<()> {
        self.inner.reconfigure(config)
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.inner.log_start()
    }

    /// The offset the next append gets, as readers see it.
    pub fn log_end_offset(&self) -> u64 {
        self.inner.log_end.load(Ordering::Acquire)
    }

    /// Offset up to which data is known to be durable (an fdatasync completed).
    pub fn durable_offset(&self) -> u64 {
        self.inner.durable_end.load(Ordering::Acquire)
    }

    /// Kafka's high watermark: the end of what consumers may read. Unless the log is
    /// replicated ([`LogConfig::replicated`]) it is the log end offset; otherwise it is what
    /// [`set_high_watermark`](Self::set_high_watermark) last set (initially the log end found
    /// at open), never above the log end.
    pub fn high_watermark(&self) -> u64 {
        if self.inner.config().replicated {
            self.inner
                .stored_high_watermark()
                .min(self.log_end_offset())
        } else {
            self.log_end_offset()
        }
    }

    /// Sets the high watermark (replicated logs), bounded by the log start and end offsets
    /// as Kafka bounds it. Returns the value set.
    pub fn set_high_watermark(&self, hw: u64) -> u64 {
        self.inner.set_high_watermark(hw)
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

    /// Segments holding an open descriptor or mapping (the idle sweep closes them).
    pub fn open_files(&self) -> usize {
        self.inner
            .segments
            .read()
            .iter()
            .filter(|s| s.holds_files())
            .count()
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
        self.inner.append_wait(
            batch,
            h.record_count as u64,
            h.max_timestamp,
            Origin::Assign { epoch: None },
        )
    }

    /// As [`append_batch`](Self::append_batch), and stamps `leader_epoch` as the batch's
    /// partitionLeaderEpoch (a field the CRC does not cover), as a Kafka leader does with every
    /// batch it appends; a new epoch is recorded in the leader-epoch cache first.
    pub fn append_as_leader(
        &self,
        batch: impl Into<Bytes>,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        let (batch, h) = self.validate(batch.into())?;
        self.inner.append_wait(
            batch,
            h.record_count as u64,
            h.max_timestamp,
            Origin::Assign {
                epoch: Some(leader_epoch),
            },
        )
    }

    /// Appends a batch exactly as another replica wrote it: its baseOffset,
    /// partitionLeaderEpoch and producer fields are kept. It must start at the log end:
    /// anything else (a gap or an overlap) is [`Error::OffsetMismatch`] and nothing is written.
    /// The batch's leader epoch, if new, is recorded in the leader-epoch cache.
    pub fn append_replica(&self, batch: impl Into<Bytes>) -> Result<AppendInfo> {
        let (batch, h) = self.validate(batch.into())?;
        self.inner.append_wait(
            batch,
            h.record_count as u64,
            h.max_timestamp,
            Origin::Replica,
        )
    }

    /// Starts appending one batch, validated as by [`append_batch`](Self::append_batch), and
    /// returns once its offsets are assigned and a writer has taken it, without waiting for it
    /// to be stored: the caller may build and start the next batch meanwhile, as a Kafka
    /// producer keeps several requests in flight. [`PendingAppend::wait`] returns what
    /// `append_batch` would have, once the batch is stored as the fsync policy promises; that
    /// is the acknowledgement. Batches are stored in the order their appends started.
    ///
    /// Under `WriteMode::Direct` on io_uring, "taken" means copied into a staging buffer and
    /// handed to the backend's ring, so the write of one batch overlaps the building of the
    /// next. Elsewhere the append that leads a group writes it itself, so there is little to
    /// overlap: when this call leads, it returns with the batch already written.
    pub fn start_append(&self, batch: impl Into<Bytes>) -> Result<PendingAppend<'_>> {
        let (batch, h) = self.validate(batch.into())?;
        let ticket = self.inner.enqueue(
            batch,
            h.record_count as u64,
            h.max_timestamp,
            Origin::Assign { epoch: None },
        )?;
        self.inner.drive(&ticket, Until::Taken)?;
        Ok(PendingAppend { log: self, ticket })
    }

    /// Checks a raw batch's size against `max_batch_bytes`, then validates it.
    fn validate(&self, batch: Bytes) -> Result<(Bytes, header::BatchHeader)> {
        self.check_size(batch.len())?;
        let h = header::validate_batch(&batch, self.inner.config().max_batch_bytes)?;
        Ok((batch, h))
    }

    /// Refuses a batch of `size` bytes above `max_batch_bytes`.
    fn check_size(&self, size: usize) -> Result<()> {
        let max = self.inner.config().max_batch_bytes;
        if size > max {
            return Err(Error::BatchTooLarge { size, max });
        }
        Ok(())
    }

    /// Appends a batch validated by [`header::ValidBatch::new`], without checking its CRC a
    /// second time; otherwise exactly [`PartitionLog::append_batch`].
    pub fn append_validated(&self, batch: header::ValidBatch) -> Result<AppendInfo> {
        self.append_validated_as(batch, None)
    }

    /// [`append_validated`](Self::append_validated), stamping `leader_epoch` (if any) as
    /// [`append_as_leader`](Self::append_as_leader) does.
    pub fn append_validated_as(
        &self,
        batch: header::ValidBatch,
        leader_epoch: Option<i32>,
    ) -> Result<AppendInfo> {
        let h = *batch.header();
        let bytes = batch.into_bytes();
        self.check_size(bytes.len())?;
        self.inner.append_wait(
            bytes,
            h.record_count as u64,
            h.max_timestamp,
            Origin::Assign {
                epoch: leader_epoch,
            },
        )
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
    /// but always at least one batch, up to the log end. Empty at the log end;
    /// [`Error::OffsetOutOfRange`] outside `[log_start, log_end]`. The result borrows the
    /// segment's mapping, or under [`WriteMode::Direct`] the staging buffer that still holds
    /// the batches: no copy is made. A read from a staging buffer stops at the buffer's end, so
    /// it may return less than `max_bytes` (never less than one batch).
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadSlice> {
        self.read_bounded(offset, max_bytes, ReadBound::LogEnd)
    }

    /// [`read`](Self::read) stopping at `bound`: with [`ReadBound::HighWatermark`] nothing at
    /// or past the high watermark is returned (an offset between it and the log end reads as
    /// empty, as Kafka answers a consumer there).
    pub fn read_bounded(
        &self,
        offset: u64,
        max_bytes: usize,
        bound: ReadBound,
    ) -> Result<ReadSlice> {
        let end = self.inner.log_end.load(Ordering::Acquire);
        let limit = match bound {
            ReadBound::LogEnd => end,
            ReadBound::HighWatermark => self.high_watermark().min(end),
        };
        let seg = {
            let segs = self.inner.segments.read();
            let start = segs
                .first()
                .map_or(0, |s| s.base_offset)
                .max(self.inner.start_floor.load(Ordering::Acquire));
            if offset < start || offset > end {
                return Err(Error::OffsetOutOfRange {
                    offset,
                    log_start: start,
                    log_end: end,
                });
            }
            if offset >= limit {
                return Ok(ReadSlice::empty());
            }
            let i = segs.partition_point(|s| s.base_offset <= offset);
            match i.checked_sub(1).and_then(|i| segs.get(i)) {
                Some(s) => s.clone(),
                None => return Ok(ReadSlice::empty()),
            }
        };
        if seg.is_active() {
            let want = Want {
                offset,
                max_bytes,
                end_offset: limit,
            };
            if let Some(slice) = self.inner.path.read_cached(&seg, &want)? {
                return Ok(slice);
            }
        }
        seg.read(offset, max_bytes, limit)
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

    /// The leader-epoch cache's entries (epoch and the first offset it wrote), oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.inner.epochs.lock().entries().to_vec()
    }

    /// Where leader epoch `epoch` ends in this log (Kafka's OffsetsForLeaderEpoch): the largest
    /// epoch at or below it and the start offset of the next one, or the log end offset for
    /// the latest epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> EpochEnd {
        let epochs: EpochCache = self.inner.epochs.lock().clone();
        epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Removes the batch holding `offset` and every later one (a follower discarding a tail
    /// the leader does not have). Crash-safe: see [`replica`]. Returns the new log end offset
    /// (at most `offset`; the log end itself when `offset` is at or past it). Truncating at or
    /// below the log start empties the log, which then starts at `offset`. Appends wait while
    /// it runs; a reader still holding bytes it cuts delays it (up to 30 s; then the log
    /// refuses writes until reopened, and the reopened log is a prefix of the old one at least
    /// as long as the truncated one, to be truncated again).
    pub fn truncate_to(&self, offset: u64) -> Result<u64> {
        self.inner.truncate_to(offset)
    }

    /// Empties the log and starts it again at `offset` (Kafka's `truncateFullyAndStartAt`).
    pub fn truncate_fully_and_start_at(&self, offset: u64) -> Result<()> {
        self.inner.truncate_fully_and_start_at(offset)
    }

    /// Makes everything appended so far durable (fdatasync of the active segment).
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// Blocks until every rolled segment is sealed: synced, its index files written and the
    /// recovery point moved past it. Rolling never waits for this (the runtime does it); a
    /// crash before it is done only means the next open re-checks those segments.
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
        self.inner.path.wait_writes(&self.inner)
    }

    /// Applies retention now: deletes whole sealed segments that are too old or that put the
    /// partition over its size limit. Readers holding slices of them keep working.
    pub fn enforce_retention(&self) -> Result<RetentionReport> {
        self.inner.enforce_retention(state::now_ms())
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

    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords): durably (the
    /// `log-start-offset` file, FORMAT.md §12) before it returns, after which reads below it
    /// are out of range and ListOffsets' earliest is it; the segments wholly below it go at
    /// the next retention pass. `offset` may be at most the high watermark
    /// ([`Error::OffsetOutOfRange`] otherwise); one at or below the log start changes nothing.
    /// Returns the log start offset (Kafka's low watermark).
    pub fn delete_records_before(&self, offset: u64) -> Result<u64> {
        self.inner.advance_start(offset, self.high_watermark())
    }

    /// Clean shutdown: waits for in-flight appends, syncs, writes the indexes and a clean
    /// checkpoint so the next open scans nothing (a log that was not written since it opened
    /// cleanly has nothing to do). Dropping without `close` is like a crash: the next open
    /// recovers.
    pub fn close(self) -> Result<()> {
        self.close_inner(true)
    }

    /// [`close`](Self::close) without its last step, the directory fsync that makes the clean
    /// checkpoint's (and index files') renames durable: the caller does it for many logs at once
    /// ([`IoBackend::sync_filesystem`]; a broker closing thousands of partitions). Every byte
    /// appended is durable when this returns, as after `close`; until the caller's sync, a power
    /// cut may leave the last checkpoint before this one, and the next open then recovers (scans
    /// past the recovery point) instead of trusting a clean close.
    pub fn close_deferring_dir_sync(self) -> Result<()> {
        self.close_inner(false)
    }

    fn close_inner(self, dir_sync: bool) -> Result<()> {
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
                    .lead_group(core, &group, upto)
                    .map_err(|(op, e)| inner.poisoned(&LogFailure::new(op, &e)))?;
                if done {
                    inner.appends_done(upto);
                }
            }
            inner.path.wait_writes(inner)?;
            inner.wait_for_seals()?;
            inner.close_clean(core, dir_sync)
        })
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        // Nothing runs for this log once it is gone: its background work and write-path
        // callbacks stop (waiting for those running), so the directory can be reopened at once.
        self.inner.closed.store(true, Ordering::Release);
        self.inner.stop_work();
        self.inner.path.stop();
        self.inner.queue_cv.notify_all();
    }
}

impl Inner {
    /// What a new active segment tells about completed direct writes (direct mode only).
    pub(crate) fn direct_waker(&self) -> Option<WakerCell> {
        self.waker.clone()
    }
}

impl DirectWaker for Inner {
    fn wake(&self) {
        self.path.wake(self);
    }
}
