//! The broker: topics and partitions on the storage engine, served over the Kafka protocol.
//!
//! * [`config`]: settings under Kafka's names.
//! * this module: the topic registry and the produce/fetch logic, free of wire types.
//! * [`server`]: connections, framing, dispatch; [`handlers`]: one function per Kafka API.
//! * [`fetch_encode`]: the zero-copy Fetch response writer.
//!
//! Topic metadata (partition count, config overrides, id) lives in `<data-dir>/topics/<name>.json`,
//! written by atomic replace; partitions are the engine's `<data-dir>/<topic>-<n>/` directories.

pub mod config;
pub mod fetch_encode;
pub mod groups;
pub mod handlers;
pub mod producer;
pub mod server;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kafka_protocol::ResponseError;
use parking_lot::{Mutex, RwLock};
use strata_storage::batch::header::{self, BatchHeader};
use strata_storage::batch::{BatchBuilder, NewRecord, records};
use strata_storage::io::IoBackend;
use strata_storage::log::{PartitionLog, ReadSlice};

use config::{BrokerConfig, TopicCompression, TopicConfig};
use producer::{ProducerIdAllocator, ProducerStates, SeqCheck};

/// Writes `bytes` to `path` durably by atomic replace (tmp, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use strata_storage::io::IoBackend;
    let plain = strata_storage::io::plain::PlainBackend::new();
    strata_storage::io::write_file_atomic(&plain, path, bytes)?;
    if let Some(dir) = path.parent() {
        plain
            .sync_dir(dir)
            .with_context(|| format!("fsync {}", dir.display()))?;
    }
    Ok(())
}

/// How often idle producers are looked for (Kafka's `producer.id.expiration.check.interval.ms`).
const PRODUCER_EXPIRY_CHECK_MS: i64 = 10 * 60 * 1000;

/// Reads and decodes a producer-state snapshot: `None` if there is none, an error if it is too
/// large (checked before reading) or does not decode.
fn read_snapshot(path: &Path) -> Result<Option<(u64, ProducerStates)>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let len = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    if len > producer::MAX_SNAPSHOT_BYTES {
        bail!(
            "{len} bytes, more than the {} a snapshot may have",
            producer::MAX_SNAPSHOT_BYTES
        );
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(producer::MAX_SNAPSHOT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    ProducerStates::decode_snapshot(&bytes)
        .map(Some)
        .map_err(|e| anyhow::anyhow!(e))
}

/// A random 128-bit value from the standard library's randomly keyed hasher (no extra crate).
pub fn random_u128() -> u128 {
    let s = std::collections::hash_map::RandomState::new();
    let mut a = s.build_hasher();
    a.write_u64(std::process::id().into());
    let mut b = s.build_hasher();
    b.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Kafka's rule for topic names.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1 to 249 characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be \".\" or \"..\"".into());
    }
    if name == "__consumer_offsets" {
        return Err("__consumer_offsets is reserved for committed offsets".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name contains {c:?}: only [a-zA-Z0-9._-] are allowed"
        ));
    }
    Ok(())
}

/// A produce-path failure, as a Kafka error code and a message for the client.
#[derive(Debug, Clone)]
pub struct ProduceError {
    pub code: ResponseError,
    pub message: String,
}

fn perr(code: ResponseError, message: impl Into<String>) -> ProduceError {
    ProduceError {
        code,
        message: message.into(),
    }
}

/// What a successful produce returns.
#[derive(Debug, Clone, Copy)]
pub struct Produced {
    pub base_offset: u64,
    /// The broker's timestamp under LogAppendTime, -1 otherwise.
    pub log_append_time: i64,
    pub log_start_offset: u64,
}

/// One partition: its log and its idempotent-producer state.
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub log: Arc<PartitionLog>,
    producers: Mutex<ProducerStates>,
    /// Serialises the sequence check and append of idempotent batches (they are rare to
    /// contend: one producer pipelines on one connection, which is processed in order).
    idempotent: Mutex<()>,
    /// Serialises writers of the producer-state snapshot file.
    snapshot_write: Mutex<()>,
    /// Bytes appended since the last snapshot was written.
    since_snapshot: std::sync::atomic::AtomicU64,
    /// `producer.id.expiration.ms`.
    producer_expiration_ms: i64,
    /// Wall-clock ms of the last expiry of idle producers.
    last_expiry_ms: std::sync::atomic::AtomicI64,
    /// Changes after every append to this partition: wakes the fetches parked on it, and only
    /// those.
    appended: tokio::sync::watch::Sender<u64>,
}

impl Partition {
    /// A receiver that changes after every append to this partition (for long-poll fetches).
    pub fn subscribe_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }
}

/// A topic: its partitions and effective configuration.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: u128,
    pub partitions: Vec<Arc<Partition>>,
    pub config: TopicConfig,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct TopicMeta {
    name: String,
    partitions: i32,
    id: String,
    configs: BTreeMap<String, String>,
}

/// The whole broker state.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub cluster_id: String,
    backend: Arc<dyn IoBackend>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion.
    admin: Mutex<()>,
    producer_ids: ProducerIdAllocator,
    /// Bumped after every append; long-polling fetches wait on it.
    /// Consumer groups and committed offsets (`__consumer_offsets-0`).
    pub groups: Arc<groups::Coordinator>,
}

impl Broker {
    /// Opens the data directory: every topic in `topics/` with its partitions (recovering them).
    pub fn open(config: BrokerConfig) -> Result<Arc<Self>> {
        let data_dir = config.data_dir();
        std::fs::create_dir_all(data_dir.join("topics"))
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let backend = strata_storage::io::select_backend(config.io_backend()?)
            .context("opening the io backend")?;
        let write_mode = config.write_mode()?;
        if write_mode == strata_storage::log::WriteMode::Direct {
            strata_storage::io::probe_direct(backend.as_ref(), &data_dir).with_context(|| {
                format!(
                    "strata.log.write.mode=direct: cannot write with O_DIRECT under {} (a file system without O_DIRECT, such as tmpfs?)",
                    data_dir.display()
                )
            })?;
        }
        tracing::info!(backend = %backend.kind(), %write_mode, dir = %data_dir.display(), "opening data directory");
        let cluster_path = data_dir.join("cluster-id");
        let cluster_id = match std::fs::read_to_string(&cluster_path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = format!("strata-{:032x}", random_u128());
                write_atomic(&cluster_path, id.as_bytes())?;
                id
            }
            Err(e) => return Err(e).context("reading cluster-id"),
        };
        let groups = Arc::new(
            groups::Coordinator::open(&config, backend.clone())
                .context("opening the group coordinator")?,
        );
        let broker = Arc::new(Broker {
            groups,
            node_id: config.node_id()?,
            cluster_id,
            producer_ids: ProducerIdAllocator::open(&data_dir)?,
            backend,
            topics: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            config,
        });
        let mut metas: Vec<PathBuf> = std::fs::read_dir(data_dir.join("topics"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        metas.sort();
        for path in metas {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let meta: TopicMeta = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            let topic = broker
                .open_topic(&meta)
                .with_context(|| format!("opening topic {}", meta.name))?;
            broker.topics.write().insert(meta.name.clone(), topic);
        }
        Ok(broker)
    }

    fn partition_dir(&self, topic: &str, p: i32) -> PathBuf {
        self.config.data_dir().join(format!("{topic}-{p}"))
    }

    fn open_topic(&self, meta: &TopicMeta) -> Result<Arc<Topic>> {
        let config = TopicConfig::resolve(&self.config, meta.configs.clone())?;
        let producer_expiration_ms = self.config.producer_id_expiration_ms()?;
        let mut partitions = Vec::new();
        for p in 0..meta.partitions {
            let dir = self.partition_dir(&meta.name, p);
            let log = PartitionLog::open(&dir, config.log.clone(), self.backend.clone())
                .with_context(|| format!("opening partition {}", dir.display()))?;
            let partition = Partition {
                topic: meta.name.clone(),
                index: p,
                log: Arc::new(log),
                producers: Mutex::new(ProducerStates::default()),
                idempotent: Mutex::new(()),
                snapshot_write: Mutex::new(()),
                since_snapshot: std::sync::atomic::AtomicU64::new(0),
                producer_expiration_ms,
                last_expiry_ms: std::sync::atomic::AtomicI64::new(groups::offsets::now_ms()),
                appended: tokio::sync::watch::channel(0).0,
            };
            partition.load_producer_state();
            partitions.push(Arc::new(partition));
        }
        Ok(Arc::new(Topic {
            name: meta.name.clone(),
            id: u128::from_str_radix(&meta.id, 16).unwrap_or(0),
            partitions,
            config,
        }))
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let t = self.topic(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .cloned()
    }

    /// Creates a topic. Errors carry the Kafka code to answer with.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, ProduceError> {
        validate_topic_name(name).map_err(|m| perr(ResponseError::InvalidTopicException, m))?;
        let partitions = if partitions == -1 {
            self.config.num_partitions().unwrap_or(1)
        } else {
            partitions
        };
        if !(1..=100_000).contains(&partitions) {
            return Err(perr(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be in 1..=100000, got {partitions}"),
            ));
        }
        let config = TopicConfig::resolve(&self.config, overrides.clone())
            .map_err(|e| perr(ResponseError::InvalidConfig, format!("{e:#}")))?;
        let _g = self.admin.lock();
        if let Some(t) = self.topic(name) {
            return Err(perr(
                ResponseError::TopicAlreadyExists,
                format!("topic {:?} already exists", t.name),
            ));
        }
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.into(),
                id: 0,
                partitions: Vec::new(),
                config,
            }));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            partitions,
            id: format!("{:032x}", random_u128()),
            configs: overrides,
        };
        let storage_err =
            |e: anyhow::Error| perr(ResponseError::KafkaStorageError, format!("{e:#}"));
        let topic = self.open_topic(&meta).map_err(storage_err)?;
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| perr(ResponseError::UnknownServerError, e.to_string()))?;
        write_atomic(&self.meta_path(name), &json).map_err(storage_err)?;
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.config
            .data_dir()
            .join("topics")
            .join(format!("{name}.json"))
    }

    /// Deletes a topic and its data. Readers in flight keep their mappings.
    pub fn delete_topic(&self, name: &str) -> Result<(), ProduceError> {
        let _g = self.admin.lock();
        let Some(topic) = self.topics.write().remove(name) else {
            return Err(perr(
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name:?} does not exist"),
            ));
        };
        let storage_err = |e: std::io::Error| perr(ResponseError::KafkaStorageError, e.to_string());
        std::fs::remove_file(self.meta_path(name)).map_err(storage_err)?;
        for p in &topic.partitions {
            let dir = self.partition_dir(name, p.index);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(storage_err(e)),
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    pub fn allocate_producer_id(&self) -> Result<i64> {
        self.producer_ids.allocate()
    }

    /// Validates and appends one producer batch (blocking: call from a blocking thread).
    /// `records` is usually a slice of the request frame; unless the topic rewrites the batch
    /// it reaches the file without being copied.
    pub fn produce(
        &self,
        partition: &Partition,
        config: &TopicConfig,
        records: bytes::Bytes,
    ) -> Result<Produced, ProduceError> {
        let len = records.len() as u64;
        let res = partition.produce(config, records);
        if res.is_ok() {
            partition.appended.send_modify(|n| *n = n.wrapping_add(1));
            partition.maybe_snapshot(len, config.log.segment_bytes);
            partition.maybe_expire_producers();
        }
        res
    }

    /// Closes every log cleanly (sync, indexes, clean checkpoint). Call after the server has
    /// stopped, so no connection holds a partition any more; a log still held elsewhere is
    /// synced but not marked clean (its next open recovers it, losing nothing).
    pub fn close(&self) -> Result<()> {
        let topics: Vec<Arc<Topic>> = std::mem::take(&mut *self.topics.write())
            .into_values()
            .collect();
        let mut first_err: Option<anyhow::Error> = None;
        if let Err(e) = self.groups.close() {
            tracing::error!(error = %format!("{e:#}"), "closing the offsets log failed");
            first_err = Some(e);
        }
        let mut note = |r: strata_storage::Result<()>, what: &str| {
            if let Err(e) = r {
                tracing::error!(partition = what, error = %e, "closing partition failed");
                first_err.get_or_insert_with(|| anyhow::anyhow!("{what}: {e}"));
            }
        };
        for t in topics {
            let partitions: Vec<Arc<Partition>> = match Arc::try_unwrap(t) {
                Ok(topic) => topic.partitions,
                Err(t) => t.partitions.clone(),
            };
            for p in partitions {
                let what = format!("{}-{}", p.topic, p.index);
                if let Err(e) = p.save_producer_state() {
                    // Not fatal: the next start rebuilds the state from the log.
                    tracing::warn!(partition = %what, error = %format!("{e:#}"), "writing the producer-state snapshot failed");
                }
                match Arc::try_unwrap(p) {
                    Ok(p) => match Arc::try_unwrap(p.log) {
                        Ok(log) => note(log.close(), &what),
                        Err(log) => note(log.sync(), &what),
                    },
                    Err(p) => note(p.log.sync(), &what),
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Partition {
    fn snapshot_path(&self) -> PathBuf {
        self.log.dir().join(producer::SNAPSHOT_FILE)
    }

    /// Loads the idempotent-producer state: the snapshot if there is a usable one, then the
    /// batch headers past it. Without one (none, damaged, or ahead of a log that lost its tail
    /// in a crash), the headers of the last segment only, and a fresh snapshot replaces a bad
    /// one at once, so it can never be taken for valid once the log grows past its offset.
    fn load_producer_state(&self) {
        let log_start = self.log.log_start_offset();
        let log_end = self.log.log_end_offset();
        let path = self.snapshot_path();
        let (from, replace) = match read_snapshot(&path) {
            Ok(None) => (None, false),
            Ok(Some((end, states))) if end <= log_end => {
                *self.producers.lock() = states;
                (Some(end), false)
            }
            Ok(Some((end, _))) => {
                tracing::warn!(file = %path.display(), snapshot_end = end, log_end, "the producer-state snapshot is ahead of the log (its tail was lost in a crash); rebuilding from the last segment");
                (None, true)
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "ignoring a damaged producer-state snapshot; rebuilding from the last segment");
                (None, true)
            }
        };
        let start = from
            .unwrap_or_else(|| self.log.segments().last().map_or(0, |s| s.base_offset))
            .max(log_start);
        self.replay_producer_state(start, log_end);
        self.expire_producers(groups::offsets::now_ms());
        if replace && let Err(e) = self.write_snapshot() {
            // Without a replacement the file must go: once the log grows past its offset it
            // would pass the check above.
            let removed = std::fs::remove_file(&path)
                .and_then(|()| std::fs::File::open(self.log.dir()).and_then(|d| d.sync_all()));
            tracing::error!(file = %path.display(), error = %format!("{e:#}"), removed = removed.is_ok(), "replacing the producer-state snapshot failed");
        }
    }

    /// Records the idempotent batches in `[start, end)` from their headers.
    fn replay_producer_state(&self, start: u64, end: u64) {
        let mut next = start;
        let mut states = self.producers.lock();
        while next < end {
            let Ok(slice) = self.log.read(next, 1 << 20) else {
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
        use std::sync::atomic::Ordering;
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
    fn maybe_expire_producers(&self) {
        use std::sync::atomic::Ordering;
        let now = groups::offsets::now_ms();
        if now.saturating_sub(self.last_expiry_ms.load(Ordering::Acquire))
            >= PRODUCER_EXPIRY_CHECK_MS
        {
            self.expire_producers(now);
        }
    }

    /// Writes the snapshot once `segment_bytes` have been appended since the last one, so a
    /// restart after a crash replays at most about one segment of headers. Runs on the
    /// producing thread, whose response waits for it (one fsync per `segment.bytes`).
    fn maybe_snapshot(&self, appended: u64, segment_bytes: u64) {
        use std::sync::atomic::Ordering;
        let total = self.since_snapshot.fetch_add(appended, Ordering::AcqRel) + appended;
        if total < segment_bytes {
            return;
        }
        self.since_snapshot.store(0, Ordering::Release);
        if let Err(e) = self.save_producer_state() {
            tracing::warn!(topic = %self.topic, partition = self.index, error = %format!("{e:#}"), "writing the producer-state snapshot failed");
        }
    }

    /// Writes the snapshot if any idempotent producer has been seen (there is nothing to keep
    /// otherwise, and a restart without a snapshot replays only the last segment).
    fn save_producer_state(&self) -> Result<()> {
        if self.producers.lock().is_empty() {
            return Ok(());
        }
        self.write_snapshot()
    }

    /// Replaces the snapshot file with the state as of the log end (atomic replace, directory
    /// fsync). Taken under the idempotent lock, so every idempotent batch below that offset is
    /// in it and none past it.
    fn write_snapshot(&self) -> Result<()> {
        let _w = self.snapshot_write.lock();
        let bytes = {
            let _g = self.idempotent.lock();
            let end = self.log.log_end_offset();
            let mut states = self.producers.lock();
            states.expire(groups::offsets::now_ms(), self.producer_expiration_ms);
            states.encode_snapshot(end)
        };
        write_atomic(&self.snapshot_path(), &bytes)
    }

    fn produce(
        &self,
        config: &TopicConfig,
        records: bytes::Bytes,
    ) -> Result<Produced, ProduceError> {
        let max = config.log.max_batch_bytes;
        if records.len() > max {
            return Err(perr(
                ResponseError::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {max}",
                    records.len()
                ),
            ));
        }
        let valid = header::ValidBatch::new(records, max).map_err(|e| match e {
            strata_storage::batch::BatchError::BadCrc { .. } => {
                perr(ResponseError::CorruptMessage, e.to_string())
            }
            strata_storage::batch::BatchError::LengthMismatch { .. } => perr(
                ResponseError::InvalidRecord,
                format!(
                    "{e} (a produce request must carry exactly one record batch per partition)"
                ),
            ),
            strata_storage::batch::BatchError::BadMagic { .. } => {
                perr(ResponseError::UnsupportedForMessageFormat, e.to_string())
            }
            other => perr(ResponseError::CorruptMessage, other.to_string()),
        })?;
        let h = *valid.header();
        if h.is_control() {
            return Err(perr(
                ResponseError::InvalidRecord,
                "clients may not produce control batches",
            ));
        }
        if h.is_transactional() {
            return Err(perr(
                ResponseError::InvalidRecord,
                "transactions are not supported",
            ));
        }
        // The bytes stay exactly as validated unless the topic rewrites them (another codec,
        // LogAppendTime); only then must the engine check them again.
        let mut rewritten = false;
        let mut batch = match config.compression {
            TopicCompression::Codec(c) if h.compression().ok() != Some(c) => {
                rewritten = true;
                recompress(&h, valid.as_bytes(), c)?
            }
            _ => Vec::new(),
        };
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
            strata_storage::Error::InvalidBatch(b) => {
                perr(ResponseError::CorruptMessage, b.to_string())
            }
            strata_storage::Error::BatchTooLarge { .. } => {
                perr(ResponseError::MessageTooLarge, e.to_string())
            }
            other => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %other, "append failed");
                perr(ResponseError::KafkaStorageError, other.to_string())
            }
        };
        // Unchanged bytes go in without a second CRC pass; rewritten ones are checked again.
        let to_append = if rewritten { Err(batch) } else { Ok(valid) };
        let append = |b: Result<header::ValidBatch, Vec<u8>>| match b {
            Ok(v) => self.log.append_validated(v),
            Err(bytes) => self.log.append_batch(bytes),
        };
        let produced = |base: u64| Produced {
            base_offset: base,
            log_append_time: append_time,
            log_start_offset: self.log.log_start_offset(),
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
            SeqCheck::OutOfOrder { expected, got } => Err(perr(
                ResponseError::OutOfOrderSequenceNumber,
                format!(
                    "producer {} expected sequence {expected}, got {got}",
                    h.producer_id
                ),
            )),
            SeqCheck::Fenced { current, got } => Err(perr(
                ResponseError::InvalidProducerEpoch,
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

    /// Whole batches from `offset`, at most `max_bytes` unless the first batch is larger.
    pub fn read(&self, offset: u64, max_bytes: usize) -> strata_storage::Result<ReadSlice> {
        self.log.read(offset, max_bytes)
    }
}

/// Re-encodes a producer's batch with the topic's codec, keeping every record field and the
/// producer id, epoch and sequence (for `compression.type` other than `producer`).
fn recompress(
    h: &BatchHeader,
    batch: &[u8],
    codec: strata_storage::batch::Compression,
) -> Result<Vec<u8>, ProduceError> {
    let bad =
        |e: strata_storage::batch::BatchError| perr(ResponseError::CorruptMessage, e.to_string());
    let mut b = BatchBuilder::new(codec).producer(h.producer_id, h.producer_epoch, h.base_sequence);
    for r in records(h, batch).map_err(bad)? {
        let r = r.map_err(bad)?;
        b.push(NewRecord {
            key: r.key,
            value: r.value,
            headers: r.headers,
            timestamp: r.timestamp,
        })
        .map_err(bad)?;
    }
    b.build().map_err(bad)
}

/// Checks that the data directory is usable before anything else happens.
pub fn check_data_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn one_record_batch(value: &str) -> bytes::Bytes {
        let mut b = BatchBuilder::new(strata_storage::batch::Compression::None);
        b.push(NewRecord::new(value.as_bytes().to_vec())).unwrap();
        bytes::Bytes::from(b.build().unwrap())
    }

    #[test]
    fn an_append_wakes_the_fetches_of_its_own_partition_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::default();
        config
            .set("log.dirs", dir.path().to_str().unwrap())
            .unwrap();
        config.set("strata.io.backend", "plain").unwrap();
        let broker = Broker::open(config).unwrap();
        broker.create_topic("a", 2, BTreeMap::new(), false).unwrap();
        broker.create_topic("b", 1, BTreeMap::new(), false).unwrap();
        let topic_a = broker.topic("a").unwrap();
        let (a0, a1) = (
            broker.partition("a", 0).unwrap(),
            broker.partition("a", 1).unwrap(),
        );
        let b0 = broker.partition("b", 0).unwrap();
        let (rx_a0, mut rx_a1, rx_b0) = (
            a0.subscribe_appends(),
            a1.subscribe_appends(),
            b0.subscribe_appends(),
        );

        broker
            .produce(&a1, &topic_a.config, one_record_batch("x"))
            .unwrap();
        assert!(
            rx_a1.has_changed().unwrap(),
            "its own partition's fetches wake"
        );
        assert!(
            !rx_a0.has_changed().unwrap(),
            "another partition of the topic does not"
        );
        assert!(!rx_b0.has_changed().unwrap(), "another topic does not");
        rx_a1.borrow_and_update();

        // A refused batch wakes no one.
        assert!(
            broker
                .produce(
                    &a0,
                    &topic_a.config,
                    bytes::Bytes::from_static(b"not a batch")
                )
                .is_err()
        );
        assert!(!rx_a0.has_changed().unwrap());
        drop((a0, a1, b0, topic_a));
        broker.close().unwrap();
    }
}
