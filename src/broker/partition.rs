//! One partition of a topic: its log, whether it is online, and its idempotent-producer state.
//!
//! A partition is **online** while its log is open and accepting writes, **offline** otherwise:
//! its log did not open (damage recovery refuses to cut, FORMAT.md §7), or a write, sync or seal
//! failed and poisoned it. An offline partition answers produce, fetch and ListOffsets with
//! `KAFKA_STORAGE_ERROR` and is listed in Metadata with that error (as Kafka reports the
//! partitions of an offline log directory); every other partition keeps serving.
//!
//! Some causes go away on their own, and the broker's health pass ([`super::Broker::heal`])
//! reopens the log when they do: a full disk (`ENOSPC`/`EDQUOT` on a write) and running out of
//! file descriptors or threads. Reopening runs the engine's recovery, which cuts what the failed
//! write left (a batch cut short at the end) and loses nothing acknowledged. Damage and other
//! I/O errors keep the partition offline until an operator repairs it (`strata verify --repair`)
//! and restarts the broker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};

use super::error::ErrorKind;
use anyhow::Result;
use parking_lot::{Mutex, RwLock};
use strata_storage::batch::header;
use strata_storage::io::IoBackend;
use strata_storage::log::{LogConfig, PartitionLog};

use super::config::{TopicCompression, TopicConfig};
use super::error::{BrokerError, err};
use super::producer::{self, ProducerStates, SeqCheck};
use super::{Produced, groups, write_atomic};

/// How often idle producers are looked for (Kafka's `producer.id.expiration.check.interval.ms`).
const PRODUCER_EXPIRY_CHECK_MS: i64 = 10 * 60 * 1000;

/// Whether an offline partition comes back by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The disk or quota is full: the log is reopened once a write can succeed again.
    NoSpace,
    /// The process ran out of file descriptors, threads or memory: reopened when it has room.
    Resources,
    /// Damage, or an I/O error after which the page cache no longer tells what is on the disk:
    /// offline until an operator repairs the partition and restarts the broker.
    Never,
}

/// Why a partition is offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offline {
    /// For operators and clients: names the file and byte position where the engine says so.
    pub reason: String,
    pub retry: Retry,
}

impl Offline {
    /// How an error from opening a log is reported and whether it is retried.
    pub fn from_open_error(e: &strata_storage::Error) -> Offline {
        let retry = if e.is_no_space() {
            Retry::NoSpace
        } else if e.is_out_of_resources() {
            Retry::Resources
        } else {
            Retry::Never
        };
        Offline {
            reason: e.to_string(),
            retry,
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    Online(Arc<PartitionLog>),
    Offline(Offline),
    /// In a cluster: the partition is on another broker (its leader, or none right now), and
    /// this broker holds nothing of it.
    Elsewhere,
}

/// One partition: its log (while online) and its idempotent-producer state.
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub index: i32,
    dir: PathBuf,
    /// The broker's io backend: the producer-state snapshot is written through it.
    backend: Arc<dyn IoBackend>,
    state: RwLock<State>,
    /// A log taken offline by a failure, until every request still using it has let go: its
    /// directory lock keeps a new one from opening before that.
    retiring: Mutex<Option<Arc<PartitionLog>>>,
    producers: Mutex<ProducerStates>,
    /// Serialises the sequence check and append of idempotent batches (they are rare to
    /// contend: one producer pipelines on one connection, which is processed in order).
    idempotent: Mutex<()>,
    /// Serialises writers of the producer-state snapshot file, and holds the log end offset
    /// the file on disk was taken at (`None` when unknown or absent).
    snapshot_write: Mutex<Option<u64>>,
    /// Bytes appended since the last snapshot was written.
    since_snapshot: AtomicU64,
    /// `producer.id.expiration.ms`.
    producer_expiration_ms: i64,
    /// Wall-clock ms of the last expiry of idle producers.
    last_expiry_ms: AtomicI64,
    /// Changes after every append to this partition: wakes the fetches parked on it, and only
    /// those.
    appended: tokio::sync::watch::Sender<u64>,
    /// In a cluster: the leader epoch the metadata quorum gave this partition, stamped on
    /// every batch appended (as a Kafka leader does). -1 outside a cluster.
    leader_epoch: AtomicI32,
    /// In a cluster: its assignment and, on the leader, what it knows of the followers
    /// ([`super::replica`]).
    pub(super) replica: Mutex<super::replica::ReplicaState>,
}

/// Free bytes a partition taken offline by a full disk waits for before it is reopened: room
/// for two of its largest batches and a segment's index files, at least 1 MiB.
fn min_room(config: &LogConfig) -> u64 {
    (config.max_batch_bytes as u64)
        .saturating_mul(2)
        .saturating_add(64 << 10)
        .max(1 << 20)
}

/// The answer to a request for an offline partition.
pub fn offline_error(topic: &str, index: i32, o: &Offline) -> BrokerError {
    err(
        ErrorKind::Storage,
        format!("partition {topic}-{index} is offline: {}", o.reason),
    )
}

/// A replicated log opens with its log end as high watermark; the checkpointed one (Kafka's
/// `replication-offset-checkpoint`), never above it, is what the replicas had acknowledged.
/// Without a checkpoint entry the high watermark starts at the log start: the leader moves it
/// as its in-sync followers fetch, a follower takes its leader's.
fn restore_high_watermark(log: &PartitionLog, checkpointed: Option<u64>) {
    if let Some(hw) = checkpointed
        && log.config().replicated
    {
        log.set_high_watermark(hw);
    }
}

impl Partition {
    /// Opens the partition's log in `dir`. A log that does not open leaves the partition
    /// offline, with the reason logged, instead of failing: the rest of the broker serves on.
    /// `high_watermark`: in a cluster, what the broker's checkpoint holds for the partition
    /// (its high watermark starts there, not at the log end).
    pub fn open(
        topic: &str,
        index: i32,
        dir: PathBuf,
        config: LogConfig,
        backend: Arc<dyn IoBackend>,
        producer_expiration_ms: i64,
        high_watermark: Option<u64>,
    ) -> Partition {
        let state = match PartitionLog::open(&dir, config, backend.clone()) {
            Ok(log) => State::Online(Arc::new(log)),
            Err(e) => {
                let o = Offline::from_open_error(&e);
                tracing::error!(partition = %format!("{topic}-{index}"), error = %e, retry = ?o.retry, "partition offline: its log did not open");
                State::Offline(o)
            }
        };
        let p = Partition::with_state(topic, index, dir, backend, state, producer_expiration_ms);
        if let Ok(log) = p.log() {
            p.load_producer_state(&log);
            restore_high_watermark(&log, high_watermark);
        }
        p
    }

    /// A partition of a cluster's topic that another broker holds: requests for it answer
    /// NOT_LEADER_OR_FOLLOWER, and nothing of it is on this broker's disk.
    pub fn elsewhere(
        topic: &str,
        index: i32,
        dir: PathBuf,
        backend: Arc<dyn IoBackend>,
        producer_expiration_ms: i64,
    ) -> Partition {
        Partition::with_state(
            topic,
            index,
            dir,
            backend,
            State::Elsewhere,
            producer_expiration_ms,
        )
    }

    /// A partition in `state` with no producer state yet.
    fn with_state(
        topic: &str,
        index: i32,
        dir: PathBuf,
        backend: Arc<dyn IoBackend>,
        state: State,
        producer_expiration_ms: i64,
    ) -> Partition {
        Partition {
            topic: topic.to_string(),
            index,
            dir,
            backend,
            state: RwLock::new(state),
            retiring: Mutex::new(None),
            producers: Mutex::new(ProducerStates::default()),
            idempotent: Mutex::new(()),
            snapshot_write: Mutex::new(None),
            since_snapshot: AtomicU64::new(0),
            producer_expiration_ms,
            last_expiry_ms: AtomicI64::new(groups::offsets::now_ms()),
            appended: tokio::sync::watch::channel(0).0,
            leader_epoch: AtomicI32::new(-1),
            replica: Mutex::new(Default::default()),
        }
    }

    /// Records an idempotent producer's batch appended at `base_offset` (a follower's append).
    pub(super) fn record_producer(
        &self,
        h: &strata_storage::batch::header::BatchHeader,
        base_offset: u64,
    ) {
        self.producers.lock().record(
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
            h.record_count,
            base_offset,
            h.max_timestamp,
        );
    }

    /// Rebuilds the producer state from the log (after a truncation removed batches it knew).
    pub(super) fn reload_producer_state(&self) {
        if let Ok(log) = self.log() {
            *self.producers.lock() = ProducerStates::default();
            self.load_producer_state(&log);
        }
    }

    /// In a cluster: the partition's leader epoch, as the metadata image says (never lowered).
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The leader epoch set by the cluster, `None` outside one.
    pub fn leader_epoch(&self) -> Option<i32> {
        Some(self.leader_epoch.load(Ordering::Acquire)).filter(|e| *e >= 0)
    }

    /// Whether this broker holds the partition (it always does outside a cluster).
    pub fn is_hosted(&self) -> bool {
        !matches!(&*self.state.read(), State::Elsewhere)
    }

    /// The partition's directory (`<data-dir>/<topic>-<index>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The open log, or why the partition is offline.
    pub fn log(&self) -> Result<Arc<PartitionLog>, BrokerError> {
        match &*self.state.read() {
            State::Online(log) => Ok(log.clone()),
            State::Offline(o) => Err(offline_error(&self.topic, self.index, o)),
            State::Elsewhere => Err(err(
                ErrorKind::NotLeaderOrFollower,
                format!(
                    "partition {}-{} is not on this broker: ask Metadata for its leader",
                    self.topic, self.index
                ),
            )),
        }
    }

    /// Why the partition is offline, or `None` while it serves.
    pub fn offline(&self) -> Option<Offline> {
        match &*self.state.read() {
            State::Online(_) | State::Elsewhere => None,
            State::Offline(o) => Some(o.clone()),
        }
    }

    /// A receiver that changes after every append to this partition (for long-poll fetches).
    pub fn subscribe_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Takes a poisoned log offline (keeping it until its users let go) and tells whether a
    /// partition that is offline may be reopened now. Called by the broker's health pass.
    pub(super) fn check_health(&self) -> bool {
        let failed = match &*self.state.read() {
            State::Online(log) => log.failure(),
            State::Offline(o) => return o.retry != Retry::Never,
            State::Elsewhere => return false,
        };
        let Some(f) = failed else {
            return false;
        };
        let mut state = self.state.write();
        let State::Online(log) = &*state else {
            return false;
        };
        let log = log.clone();
        let retry = if f.no_space {
            Retry::NoSpace
        } else if f.out_of_resources {
            Retry::Resources
        } else {
            Retry::Never
        };
        let reason = format!("{} failed: {}", f.op, f.cause);
        tracing::error!(partition = %format!("{}-{}", self.topic, self.index), %reason, ?retry, "partition offline");
        *state = State::Offline(Offline { reason, retry });
        drop(state);
        *self.retiring.lock() = Some(log);
        // Fetches parked on it answer now, with the error.
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        retry != Retry::Never
    }

    /// Reopens an offline partition's log (blocking): the engine's recovery cuts what a failed
    /// write left. Returns `true` once online again; `false` while the old log is still in use
    /// or the cause has not gone away (the next pass tries again).
    pub(super) fn try_reopen(
        &self,
        config: LogConfig,
        backend: Arc<dyn IoBackend>,
        high_watermark: Option<u64>,
    ) -> bool {
        if self.offline().is_some_and(|o| o.retry == Retry::NoSpace) {
            // Reopening would succeed on a full disk (recovery only truncates), and the next
            // write fail again: wait until a batch fits, so the partition refuses writes exactly
            // while the disk is full instead of flapping.
            let room = strata_storage::io::available_bytes(&self.dir).unwrap_or(0);
            if room < min_room(&config) {
                return false;
            }
        }
        {
            let mut retiring = self.retiring.lock();
            if let Some(old) = retiring.take() {
                match Arc::try_unwrap(old) {
                    // Dropped without `close`: like a crash, which recovery handles.
                    Ok(log) => drop(log),
                    Err(old) => {
                        *retiring = Some(old);
                        return false;
                    }
                }
            }
        }
        match PartitionLog::open(&self.dir, config, backend) {
            Ok(log) => {
                let log = Arc::new(log);
                *self.producers.lock() = ProducerStates::default();
                self.load_producer_state(&log);
                restore_high_watermark(&log, high_watermark);
                tracing::info!(partition = %format!("{}-{}", self.topic, self.index), report = ?log.recovery_report(), "partition back online");
                *self.state.write() = State::Online(log);
                self.appended.send_modify(|n| *n = n.wrapping_add(1));
                true
            }
            Err(e) => {
                let o = Offline::from_open_error(&e);
                tracing::debug!(partition = %format!("{}-{}", self.topic, self.index), error = %e, "partition still offline");
                *self.state.write() = State::Offline(o);
                false
            }
        }
    }

    /// Closes the log cleanly (sync, indexes, clean checkpoint) after writing the producer-state
    /// snapshot. A log still shared elsewhere is only synced; an offline one is left as it is.
    pub(super) fn close(self) -> Result<()> {
        let what = format!("{}-{}", self.topic, self.index);
        let State::Online(log) = self.state.into_inner() else {
            return Ok(());
        };
        if let Err(e) = save_producer_state(
            self.backend.as_ref(),
            &self.producers,
            &self.idempotent,
            &self.snapshot_write,
            &log,
            self.producer_expiration_ms,
        ) {
            // Not fatal: the next start rebuilds the state from the log.
            tracing::warn!(partition = %what, error = %format!("{e:#}"), "writing the producer-state snapshot failed");
        }
        // The directory fsync each log's clean close would end with is left to the broker,
        // which syncs the whole file system once for all of them (Broker::close).
        let res = match Arc::try_unwrap(log) {
            Ok(log) => log.close_deferring_dir_sync(),
            Err(log) => log.sync(),
        };
        res.map_err(|e| anyhow::anyhow!("{what}: {e}"))
    }

    /// Syncs the log of a partition that is still shared (a clean close is not possible).
    pub(super) fn sync(&self) -> Result<()> {
        match self.log() {
            Ok(log) => log
                .sync()
                .map_err(|e| anyhow::anyhow!("{}-{}: {e}", self.topic, self.index)),
            Err(_) => Ok(()),
        }
    }

    /// The idempotent producers this partition knows (Kafka's DescribeProducers), by id.
    pub fn producers(&self) -> Vec<strata_storage::log::producer_state::ProducerView> {
        self.producers.lock().producers()
    }

    fn snapshot_path(log: &PartitionLog) -> PathBuf {
        log.dir().join(producer::SNAPSHOT_FILE)
    }

    /// Loads the idempotent-producer state: the snapshot if there is a usable one, then the
    /// batch headers past it. Without one (none, damaged, or ahead of a log that lost its tail
    /// in a crash), the headers of the last segment only, and a fresh snapshot replaces a bad
    /// one at once, so it can never be taken for valid once the log grows past its offset.
    /// A log without one (a new partition) gets one at once, unsynced like a clean close's:
    /// the file then exists, and the clean close, which may close thousands of partitions at
    /// once, overwrites it in place instead of creating it.
    fn load_producer_state(&self, log: &PartitionLog) {
        let log_start = log.log_start_offset();
        let log_end = log.log_end_offset();
        let path = Self::snapshot_path(log);
        let (from, write) = match read_snapshot(log.dir()) {
            Ok(None) => (None, Some(false)),
            Ok(Some((end, states))) if end <= log_end => {
                *self.producers.lock() = states;
                *self.snapshot_write.lock() = Some(end);
                (Some(end), None)
            }
            Ok(Some((end, _))) => {
                tracing::warn!(file = %path.display(), snapshot_end = end, log_end, "the producer-state snapshot is ahead of the log (its tail was lost in a crash); rebuilding from the last segment");
                (None, Some(true))
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "ignoring a damaged producer-state snapshot; rebuilding from the last segment");
                (None, Some(true))
            }
        };
        let start = from
            .unwrap_or_else(|| log.segments().last().map_or(0, |s| s.base_offset))
            .max(log_start);
        self.replay_producer_state(log, start, log_end);
        self.expire_producers(groups::offsets::now_ms());
        let Some(durable) = write else { return };
        if let Err(e) = write_snapshot(
            self.backend.as_ref(),
            &self.producers,
            &self.idempotent,
            &self.snapshot_write,
            log,
            self.producer_expiration_ms,
            durable,
        ) {
            if !durable {
                // Nothing to undo: without a file the next start replays the last segment.
                tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "writing the first producer-state snapshot failed");
                return;
            }
            // Without a replacement the file must go: once the log grows past its offset it
            // would pass the check above.
            let removed = self
                .backend
                .remove_file(&path)
                .and_then(|()| self.backend.sync_dir(log.dir()));
            tracing::error!(file = %path.display(), error = %format!("{e:#}"), removed = removed.is_ok(), "replacing the producer-state snapshot failed");
        }
    }

    /// Records the idempotent batches in `[start, end)` from their headers.
    fn replay_producer_state(&self, log: &PartitionLog, start: u64, end: u64) {
        let mut next = start;
        let mut states = self.producers.lock();
        while next < end {
            let Ok(slice) = log.read(next, 1 << 20) else {
                break;
            };
            let mut scanner =
                strata_storage::log::scan::BatchScanner::new(&slice, usize::MAX, false);
            let before = next;
            for b in scanner.by_ref() {
                let h = b.header;
                if h.producer_id >= 0 && h.base_sequence >= 0 {
                    states.record(
                        h.producer_id,
                        h.producer_epoch,
                        h.base_sequence,
                        h.record_count,
                        h.base_offset as u64,
                        h.max_timestamp,
                    );
                }
                next = h.next_offset() as u64;
            }
            if next == before {
                break;
            }
        }
    }

    /// Forgets producers idle longer than `producer.id.expiration.ms`.
    fn expire_producers(&self, now_ms: i64) {
        self.last_expiry_ms.store(now_ms, Ordering::Release);
        let expired = self
            .producers
            .lock()
            .expire(now_ms, self.producer_expiration_ms);
        if expired > 0 {
            tracing::debug!(topic = %self.topic, partition = self.index, expired, "expired idle producers");
        }
    }

    /// Runs [`Partition::expire_producers`] at most every [`PRODUCER_EXPIRY_CHECK_MS`]
    /// (Kafka's `producer.id.expiration.check.interval.ms` default).
    pub(super) fn maybe_expire_producers(&self) {
        let now = groups::offsets::now_ms();
        if now.saturating_sub(self.last_expiry_ms.load(Ordering::Acquire))
            >= PRODUCER_EXPIRY_CHECK_MS
        {
            self.expire_producers(now);
        }
    }

    /// Writes the snapshot once `segment_bytes` have been appended since the last one, so a
    /// restart after a crash replays at most about one segment of headers and still knows the
    /// producers whose batches only older segments hold. Durably (atomic replace, directory
    /// fsync): a snapshot a power cut tore would leave only the last segment to replay, and
    /// those producers' retries would be appended again. Runs on the producing thread, whose
    /// response waits for it (two fsyncs per `segment.bytes`).
    pub(super) fn maybe_snapshot(&self, appended: u64, segment_bytes: u64) {
        let total = self.since_snapshot.fetch_add(appended, Ordering::AcqRel) + appended;
        if total < segment_bytes {
            return;
        }
        self.since_snapshot.store(0, Ordering::Release);
        let Ok(log) = self.log() else { return };
        if let Err(e) = write_snapshot(
            self.backend.as_ref(),
            &self.producers,
            &self.idempotent,
            &self.snapshot_write,
            &log,
            self.producer_expiration_ms,
            true,
        ) {
            tracing::warn!(topic = %self.topic, partition = self.index, error = %format!("{e:#}"), "writing the producer-state snapshot failed");
        }
    }

    /// Tells parked fetches that something was appended.
    pub(super) fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Validates and appends one producer batch (blocking). `records` is usually a slice of the
    /// request frame; unless the topic rewrites the batch it reaches the file without a copy.
    pub(super) fn produce(
        &self,
        config: &TopicConfig,
        records: bytes::Bytes,
    ) -> Result<Produced, BrokerError> {
        let log = self.log()?;
        let max = config.log.max_batch_bytes;
        if records.len() > max {
            return Err(err(
                ErrorKind::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {max}",
                    records.len()
                ),
            ));
        }
        let valid = header::ValidBatch::new(records, max).map_err(|e| match e {
            strata_storage::batch::BatchError::BadCrc { .. } => {
                err(ErrorKind::CorruptMessage, e.to_string())
            }
            strata_storage::batch::BatchError::LengthMismatch { .. } => err(
                ErrorKind::InvalidRecord,
                format!(
                    "{e} (a produce request must carry exactly one record batch per partition)"
                ),
            ),
            strata_storage::batch::BatchError::BadMagic { .. } => {
                err(ErrorKind::UnsupportedForMessageFormat, e.to_string())
            }
            other => err(ErrorKind::CorruptMessage, other.to_string()),
        })?;
        let h = *valid.header();
        if h.is_control() {
            return Err(err(
                ErrorKind::InvalidRecord,
                "clients may not produce control batches",
            ));
        }
        if h.is_transactional() {
            return Err(err(
                ErrorKind::InvalidRecord,
                "transactions are not supported",
            ));
        }
        // The bytes stay exactly as validated unless the topic rewrites them (another codec,
        // LogAppendTime); only then must the engine check them again.
        let mut rewritten = false;
        let mut batch = match config.compression {
            TopicCompression::Codec(c) if h.compression().ok() != Some(c) => {
                rewritten = true;
                recode(&h, valid.as_bytes(), c, config)?
            }
            _ => Vec::new(),
        };
        // maxTimestamp as Kafka keeps it: the largest record timestamp. Old clients (sarama
        // before 1.45.1) send -1, which would leave the time index empty and every seek by time
        // at the log end. Only a header that cannot be right (below the batch's first
        // timestamp) is checked against the records, so correct batches keep the zero-copy
        // path; the records are streamed, never held, within the decompression limit.
        // (A batch re-encoded above has its maxTimestamp from its records already.)
        if !rewritten
            && !config.log_append_time
            && h.max_timestamp < h.base_timestamp
            && h.record_count > 0
        {
            let max = strata_storage::batch::stream::max_record_timestamp(
                &h,
                valid.as_bytes(),
                config.max_decompressed,
            )
            .map_err(|e| match e {
                strata_storage::batch::BatchError::DecompressedTooLarge { .. } => err(
                    ErrorKind::CorruptMessage,
                    format!(
                        "records decompress to more than strata.decompressed.batch.max.bytes ({})",
                        config.max_decompressed
                    ),
                ),
                other => err(ErrorKind::InvalidRecord, other.to_string()),
            })?;
            if max != h.max_timestamp {
                batch = valid.as_bytes().to_vec();
                header::set_max_timestamp(&mut batch, max);
                rewritten = true;
            }
        }
        let append_time = if config.log_append_time {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            if !rewritten {
                batch = valid.as_bytes().to_vec();
            }
            header::set_log_append_time(&mut batch, now);
            rewritten = true;
            now
        } else {
            -1
        };
        let storage = |e: strata_storage::Error| match e {
            strata_storage::Error::InvalidBatch(b) => err(ErrorKind::CorruptMessage, b.to_string()),
            strata_storage::Error::BatchTooLarge { .. } => {
                err(ErrorKind::MessageTooLarge, e.to_string())
            }
            other => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %other, "append failed");
                err(ErrorKind::Storage, other.to_string())
            }
        };
        // Unchanged bytes go in without a second CRC pass; rewritten ones are checked again.
        let to_append = if rewritten { Err(batch) } else { Ok(valid) };
        let epoch = self.leader_epoch();
        let append = |b: Result<header::ValidBatch, Vec<u8>>| match (b, epoch) {
            (Ok(v), e) => log.append_validated_as(v, e),
            (Err(bytes), Some(e)) => log.append_as_leader(bytes, e),
            (Err(bytes), None) => log.append_batch(bytes),
        };
        let produced = |base: u64| Produced {
            base_offset: base,
            log_append_time: append_time,
            log_start_offset: log.log_start_offset(),
        };
        if h.producer_id < 0 {
            let info = append(to_append).map_err(storage)?;
            return Ok(produced(info.base_offset));
        }
        // Idempotent: check and append as one step.
        let _g = self.idempotent.lock();
        let check = self.producers.lock().check(
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
            h.record_count,
        );
        match check {
            SeqCheck::Duplicate(base) => Ok(produced(base)),
            SeqCheck::OutOfOrder { expected, got } => Err(err(
                ErrorKind::OutOfOrderSequenceNumber,
                format!(
                    "producer {} expected sequence {expected}, got {got}",
                    h.producer_id
                ),
            )),
            SeqCheck::Fenced { current, got } => Err(err(
                ErrorKind::InvalidProducerEpoch,
                format!(
                    "producer {} epoch {got} is older than the current {current}",
                    h.producer_id
                ),
            )),
            SeqCheck::Append => {
                let info = append(to_append).map_err(storage)?;
                // What the stored header says (the append time under LogAppendTime), so a
                // replay of the log rebuilds the same value.
                let max_timestamp = if append_time >= 0 {
                    append_time
                } else {
                    h.max_timestamp
                };
                self.producers.lock().record(
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.record_count,
                    info.base_offset,
                    max_timestamp,
                );
                Ok(produced(info.base_offset))
            }
        }
    }
}

/// Re-encodes a producer's batch with the topic's codec, streaming (the records are never all
/// in memory, see `strata_storage::batch::stream`), keeping every record and the producer id,
/// epoch and sequence (for `compression.type` other than `producer`). Blocking; the caller
/// holds its share of `strata.decompression.memory.bytes`.
fn recode(
    h: &header::BatchHeader,
    batch: &[u8],
    codec: strata_storage::batch::Compression,
    config: &TopicConfig,
) -> Result<Vec<u8>, BrokerError> {
    use strata_storage::batch::BatchError;
    use strata_storage::batch::stream::{RecodeLimits, recode};
    let limits = RecodeLimits {
        max_decompressed: config.max_decompressed,
        max_output: config.log.max_batch_bytes,
    };
    recode(h, batch, codec, limits)
        .map(|r| r.bytes)
        .map_err(|e| match e {
            BatchError::DecompressedTooLarge { codec, .. } => err(
                ErrorKind::CorruptMessage,
                format!(
                    "{codec} records decompress to more than strata.decompressed.batch.max.bytes ({})",
                    config.max_decompressed
                ),
            ),
            BatchError::EncodedTooLarge { codec, limit } => err(
                ErrorKind::MessageTooLarge,
                format!("re-encoded with {codec} the batch exceeds max.message.bytes {limit}"),
            ),
            e @ BatchError::BadRecord { .. } => err(ErrorKind::InvalidRecord, e.to_string()),
            other => err(ErrorKind::CorruptMessage, other.to_string()),
        })
}

/// Writes the snapshot at a clean close unless the one on disk is as of the log end already
/// (an idle partition writes nothing). Even an empty one is worth it: a start with a current
/// snapshot reads no batch, where one without replays the whole last segment.
fn save_producer_state(
    backend: &dyn IoBackend,
    producers: &Mutex<ProducerStates>,
    idempotent: &Mutex<()>,
    snapshot_write: &Mutex<Option<u64>>,
    log: &PartitionLog,
    expiration_ms: i64,
) -> Result<()> {
    if *snapshot_write.lock() == Some(log.log_end_offset()) {
        return Ok(());
    }
    // Overwritten in place without a sync of its own: the broker syncs the file system once
    // after closing every partition (Broker::close). A snapshot a power cut leaves torn fails
    // its CRC, one lost leaves the old (or none), and one that outlives the log's unsynced tail
    // is ahead of the log: each is ignored and the state rebuilt from the last segment.
    write_snapshot(
        backend,
        producers,
        idempotent,
        snapshot_write,
        log,
        expiration_ms,
        false,
    )
}

/// Replaces the snapshot file with the state as of the log end: `durable`, by atomic replace
/// and a directory fsync; otherwise in place, without a sync. Taken under the idempotent
/// lock, so every idempotent batch below that offset is in it and none past it.
fn write_snapshot(
    backend: &dyn IoBackend,
    producers: &Mutex<ProducerStates>,
    idempotent: &Mutex<()>,
    snapshot_write: &Mutex<Option<u64>>,
    log: &PartitionLog,
    expiration_ms: i64,
    durable: bool,
) -> Result<()> {
    let mut written = snapshot_write.lock();
    let (end, bytes) = {
        let _g = idempotent.lock();
        let end = log.log_end_offset();
        let mut states = producers.lock();
        states.expire(groups::offsets::now_ms(), expiration_ms);
        (end, states.encode_snapshot(end))
    };
    if durable {
        write_atomic(backend, &Partition::snapshot_path(log), &bytes)?;
    } else {
        strata_storage::io::overwrite_file_unsynced(
            backend,
            &Partition::snapshot_path(log),
            &bytes,
        )?;
    }
    *written = Some(end);
    Ok(())
}

/// Reads and decodes a producer-state snapshot: `None` if there is none, an error if it does
/// not read, is too large or does not decode.
fn read_snapshot(dir: &Path) -> Result<Option<(u64, ProducerStates)>> {
    producer::read_snapshot(dir)
        .map_err(anyhow::Error::new)?
        .map_err(|e| anyhow::anyhow!(e))
}
