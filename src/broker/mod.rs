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
pub mod partition;
pub mod producer;
pub mod server;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kafka_protocol::ResponseError;
use parking_lot::{Mutex, RwLock};
use strata_storage::io::IoBackend;

use config::{BrokerConfig, TopicConfig};
pub use partition::Partition;
use producer::ProducerIdAllocator;

/// Writes `bytes` to `path` durably by atomic replace (tmp, fsync, rename, fsync dir) through
/// `backend`, the broker's io backend (so the fault-injecting test backends see it).
pub fn write_atomic(backend: &dyn IoBackend, path: &Path, bytes: &[u8]) -> Result<()> {
    strata_storage::io::write_file_atomic(backend, path, bytes)?;
    if let Some(dir) = path.parent() {
        backend
            .sync_dir(dir)
            .with_context(|| format!("fsync {}", dir.display()))?;
    }
    Ok(())
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

/// A topic: its partitions and effective configuration.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: u128,
    pub partitions: Vec<Arc<Partition>>,
    pub config: TopicConfig,
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
    /// Topics whose metadata file (`topics/<name>.json`) did not read or decode at start-up,
    /// with the reason: listed offline in Metadata until deleted or repaired (and restarted).
    damaged_topics: RwLock<BTreeMap<String, String>>,
    /// Consumer groups and committed offsets (`__consumer_offsets-0`).
    pub groups: Arc<groups::Coordinator>,
    /// `strata.decompression.memory.bytes` as permits (one per byte): the memory re-encodings
    /// in progress may hold together.
    decompression: Arc<tokio::sync::Semaphore>,
    decompression_total: usize,
}

/// How often the health pass looks for partitions to take offline or bring back
/// ([`Broker::heal`]).
pub const HEAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

impl Broker {
    /// Opens the data directory: every topic in `topics/` with its partitions (recovering them).
    pub fn open(config: BrokerConfig) -> Result<Arc<Self>> {
        let backend = strata_storage::io::select_backend(config.io_backend()?)
            .context("opening the io backend")?;
        Self::open_with_backend(config, backend)
    }

    /// [`Broker::open`] writing every file through `backend` (`strata.io.backend` is then not
    /// consulted): for tests that run the broker over the engine's fault-injecting backends.
    pub fn open_with_backend(
        config: BrokerConfig,
        backend: Arc<dyn IoBackend>,
    ) -> Result<Arc<Self>> {
        let data_dir = config.data_dir();
        std::fs::create_dir_all(data_dir.join(strata_storage::meta::TOPICS_DIR))
            .with_context(|| format!("creating {}", data_dir.display()))?;
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
                write_atomic(backend.as_ref(), &cluster_path, id.as_bytes())?;
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
            producer_ids: ProducerIdAllocator::open(&data_dir, backend.clone())?,
            backend,
            topics: RwLock::new(BTreeMap::new()),
            damaged_topics: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            decompression: Arc::new(tokio::sync::Semaphore::new(
                config
                    .decompression_memory()?
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            decompression_total: config.decompression_memory()?,
            config,
        });
        for (name, path) in strata_storage::meta::list_topics(&data_dir)? {
            let opened = strata_storage::meta::read_topic(&path, &name)
                .map_err(anyhow::Error::new)
                .and_then(|meta| broker.open_topic(&meta));
            match opened {
                Ok(topic) => {
                    broker.topics.write().insert(name, topic);
                }
                Err(e) => {
                    let reason = format!("{}: {e:#}", path.display());
                    tracing::error!(topic = %name, %reason, "topic offline: its metadata file is damaged; DeleteTopics removes it, or repair the file and restart");
                    broker.damaged_topics.write().insert(name, reason);
                }
            }
        }
        broker.report_orphan_dirs();
        broker.forget_offsets_of_deleted_topics()?;
        Ok(broker)
    }

    /// Deletes committed offsets of topics that no longer exist: a crash in the middle of a
    /// topic deletion, or a data directory from a version that kept them.
    fn forget_offsets_of_deleted_topics(&self) -> Result<()> {
        for t in self.groups.offsets.topics() {
            if self.topic(&t).is_none() && self.damaged_topic(&t).is_none() {
                self.groups.offsets.delete_topic(&t).with_context(|| {
                    format!("deleting the committed offsets of deleted topic {t:?}")
                })?;
            }
        }
        Ok(())
    }

    /// Logs every directory of the data dir that looks like a partition (`<topic>-<n>`) of no
    /// topic the broker knows: left by a crash in the middle of a topic creation or deletion,
    /// or by hand. They are kept for the operator (`strata verify` lists them too).
    fn report_orphan_dirs(&self) -> Vec<PathBuf> {
        let data_dir = self.config.data_dir();
        let Ok(entries) = std::fs::read_dir(&data_dir) else {
            return Vec::new();
        };
        let mut orphans = Vec::new();
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let Some((topic, index)) = name.to_str().and_then(parse_partition_dir) else {
                continue;
            };
            if name.to_str() == Some(groups::offsets::OFFSETS_DIR)
                || self.damaged_topics.read().contains_key(topic)
            {
                continue;
            }
            let known = self
                .topic(topic)
                .is_some_and(|t| usize::try_from(index).is_ok_and(|i| i < t.partitions.len()));
            if !known {
                tracing::warn!(dir = %entry.path().display(), "partition directory of no topic: left as it is (remove it, or recreate its topic)");
                orphans.push(entry.path());
            }
        }
        orphans
    }

    /// One health pass (blocking): takes partitions whose log failed offline, and reopens the
    /// offline ones whose cause may have gone (a full disk, too many open files). Run every
    /// [`HEAL_INTERVAL`] by the server.
    pub fn heal(&self) {
        self.groups.offsets.heal();
        for topic in self.topics() {
            for p in &topic.partitions {
                if p.check_health() {
                    p.try_reopen(topic.config.log.clone(), self.backend.clone());
                }
            }
        }
    }

    /// Why a topic is offline because its metadata file is damaged, if it is.
    pub fn damaged_topic(&self, name: &str) -> Option<String> {
        self.damaged_topics.read().get(name).cloned()
    }

    /// Topics whose metadata file is damaged, with the reason.
    pub fn damaged_topics(&self) -> Vec<(String, String)> {
        self.damaged_topics
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn partition_dir(&self, topic: &str, p: i32) -> PathBuf {
        strata_storage::meta::partition_dir(&self.config.data_dir(), topic, p)
    }

    fn open_topic(&self, meta: &TopicMeta) -> Result<Arc<Topic>> {
        let config = TopicConfig::resolve(&self.config, meta.configs.clone())?;
        let producer_expiration_ms = self.config.producer_id_expiration_ms()?;
        let mut partitions = Vec::new();
        for p in 0..meta.partitions {
            let dir = self.partition_dir(&meta.name, p);
            partitions.push(Arc::new(Partition::open(
                &meta.name,
                p,
                dir,
                config.log.clone(),
                self.backend.clone(),
                producer_expiration_ms,
            )));
        }
        Ok(Arc::new(Topic {
            name: meta.name.clone(),
            id: meta.id_value(),
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
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(perr(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be in 1..={MAX_PARTITIONS}, got {partitions}"),
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
        if let Some(reason) = self.damaged_topic(name) {
            return Err(perr(
                ResponseError::KafkaStorageError,
                format!(
                    "topic {name:?} exists but its metadata file is damaged ({reason}); delete the topic first"
                ),
            ));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            partitions,
            id: format!("{:032x}", random_u128()),
            configs: overrides,
        };
        let storage_err =
            |e: anyhow::Error| perr(ResponseError::KafkaStorageError, format!("{e:#}"));
        // All or nothing: the partitions first (a failure removes the ones made), then the
        // metadata file that makes the topic exist. A crash in between leaves directories of no
        // topic, which the next start reports.
        let made = self.create_partitions(&meta, &config)?;
        if let Err(e) =
            strata_storage::meta::write_topic(self.backend.as_ref(), &self.config.data_dir(), &meta)
        {
            self.remove_partitions(name, made);
            return Err(storage_err(e.into()));
        }
        let topic = Arc::new(Topic {
            name: meta.name.clone(),
            id: meta.id_value(),
            partitions: made,
            config,
        });
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Creates every partition of a new topic, or none: a partition directory that already
    /// exists (of an earlier topic of this name whose deletion a crash interrupted) is refused
    /// rather than reused, and if one partition fails to open (a full disk, out of file
    /// descriptors or threads) the ones already made are removed.
    fn create_partitions(
        &self,
        meta: &TopicMeta,
        config: &TopicConfig,
    ) -> Result<Vec<Arc<Partition>>, ProduceError> {
        let producer_expiration_ms = self
            .config
            .producer_id_expiration_ms()
            .map_err(|e| perr(ResponseError::InvalidConfig, format!("{e:#}")))?;
        let mut made = Vec::new();
        for p in 0..meta.partitions {
            let dir = self.partition_dir(&meta.name, p);
            if dir.exists() {
                self.remove_partitions(&meta.name, made);
                return Err(perr(
                    ResponseError::KafkaStorageError,
                    format!(
                        "{} already exists, left by an earlier topic of this name (a crash during its deletion?); remove the directory to create the topic",
                        dir.display()
                    ),
                ));
            }
            let partition = Arc::new(Partition::open(
                &meta.name,
                p,
                dir,
                config.log.clone(),
                self.backend.clone(),
                producer_expiration_ms,
            ));
            let offline = partition.offline();
            made.push(partition);
            if let Some(o) = offline {
                let message = format!(
                    "creating partition {} of {} failed, so none was created: {}",
                    p, meta.partitions, o.reason
                );
                self.remove_partitions(&meta.name, made);
                return Err(perr(ResponseError::KafkaStorageError, message));
            }
        }
        Ok(made)
    }

    /// Removes partitions made for a topic that will not exist after all: their logs are
    /// dropped, then their directories removed (logged, not returned: the caller reports the
    /// failure that brought it here).
    fn remove_partitions(&self, topic: &str, made: Vec<Arc<Partition>>) {
        let dirs: Vec<PathBuf> = made.iter().map(|p| p.dir().to_path_buf()).collect();
        drop(made);
        for dir in dirs {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!(topic, dir = %dir.display(), error = %e, "removing a partition of a topic that failed to be created");
            }
        }
        let data_dir = self.config.data_dir();
        if let Err(e) = self.backend.sync_dir(&data_dir) {
            tracing::warn!(dir = %data_dir.display(), error = %e, "fsync failed");
        }
    }

    /// Deletes a topic, its committed offsets (as Kafka does: a topic re-created under the same
    /// name starts with none) and its data. Readers in flight keep their mappings. A topic whose
    /// metadata file is damaged is deleted too: the file and every `<name>-<n>` directory.
    pub fn delete_topic(&self, name: &str) -> Result<(), ProduceError> {
        let _g = self.admin.lock();
        let dirs: Vec<PathBuf> = match self.topics.write().remove(name) {
            Some(topic) => topic
                .partitions
                .iter()
                .map(|p| p.dir().to_path_buf())
                .collect(),
            None if self.damaged_topics.write().remove(name).is_some() => {
                self.partition_dirs_on_disk(name)
            }
            None => {
                return Err(perr(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                ));
            }
        };
        let storage_err =
            |e: anyhow::Error| perr(ResponseError::KafkaStorageError, format!("{e:#}"));
        // Offsets first: a crash after this and before the metadata file is gone leaves a topic
        // without committed offsets, never offsets a re-created topic would inherit.
        self.groups
            .offsets
            .delete_topic(name)
            .map_err(storage_err)?;
        strata_storage::meta::remove_topic(self.backend.as_ref(), &self.config.data_dir(), name)
            .map_err(|e| storage_err(e.into()))?;
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // The topic is gone; what is left is a directory of no topic, reported at
                    // the next start.
                    tracing::error!(topic = name, dir = %dir.display(), error = %e, "removing a deleted topic's partition failed");
                }
            }
        }
        let data_dir = self.config.data_dir();
        if let Err(e) = self.backend.sync_dir(&data_dir) {
            tracing::warn!(dir = %data_dir.display(), error = %e, "fsync failed");
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Every `<name>-<n>` directory in the data dir.
    fn partition_dirs_on_disk(&self, name: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.config.data_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(parse_partition_dir)
                    .is_some_and(|(t, _)| t == name)
            })
            .map(|e| e.path())
            .collect()
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
            partition.notify_appended();
            partition.maybe_snapshot(len, config.log.segment_bytes);
            partition.maybe_expire_producers();
        }
        res
    }

    /// Validates and appends one producer batch, first waiting for its share of
    /// `strata.decompression.memory.bytes` if the topic re-encodes it (the share is held until
    /// the re-encoded batch is appended). The blocking work runs on a blocking thread.
    pub async fn produce_async(
        self: Arc<Self>,
        partition: Arc<Partition>,
        config: TopicConfig,
        records: bytes::Bytes,
    ) -> Result<Produced, ProduceError> {
        let _share = match self.recode_cost(&config, &records) {
            0 => None,
            cost => Some(
                self.decompression
                    .clone()
                    .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
                    .await
                    .map_err(|_| perr(ResponseError::UnknownServerError, "shutting down"))?,
            ),
        };
        tokio::task::spawn_blocking(move || self.produce(&partition, &config, records))
            .await
            .unwrap_or_else(|e| Err(perr(ResponseError::UnknownServerError, e.to_string())))
    }

    /// The memory re-encoding `records` for its topic takes (0 when the topic keeps the
    /// producer's codec, or the batch already has the topic's): the codecs' working memory and
    /// the largest batch the topic takes, at most the whole budget (it then runs alone).
    fn recode_cost(&self, config: &TopicConfig, records: &[u8]) -> usize {
        use config::TopicCompression;
        let TopicCompression::Codec(target) = config.compression else {
            return 0;
        };
        let sent = records
            .get(strata_storage::batch::header::ATTRIBUTES)
            .and_then(|a| a.get(1))
            .map(|lo| lo & 0b111);
        if sent == Some(target as u8) {
            return 0;
        }
        (strata_storage::batch::stream::RECODE_WORKING_BYTES + config.log.max_batch_bytes)
            .min(self.decompression_total)
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
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                tracing::error!(error = %format!("{e:#}"), "closing partition failed");
                first_err.get_or_insert(e);
            }
        };
        for t in topics {
            let partitions: Vec<Arc<Partition>> = match Arc::try_unwrap(t) {
                Ok(topic) => topic.partitions,
                Err(t) => t.partitions.clone(),
            };
            for p in partitions {
                match Arc::try_unwrap(p) {
                    Ok(p) => note(p.close()),
                    Err(p) => note(p.sync()),
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Runs [`Broker::heal`] every [`HEAL_INTERVAL`] on a blocking thread until `stop` turns true.
pub async fn heal_loop(broker: Arc<Broker>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEAL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let b = broker.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || b.heal()).await {
            tracing::error!(error = %e, "health pass failed");
        }
    }
}

/// File descriptors an open partition holds: the lock file, the active segment (written,
/// mapped, and again with O_DIRECT or an io_uring in some modes) and its sealed segments'
/// mappings, kept for `sendfile`. A rough figure for the start-up log line.
pub const FDS_PER_PARTITION: u64 = 5;

use strata_storage::meta::TopicMeta;
pub use strata_storage::meta::{MAX_PARTITIONS, parse_partition_dir};

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
    use strata_storage::batch::{BatchBuilder, NewRecord};

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
