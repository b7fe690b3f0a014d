//! The broker's domain: topics and partitions on the storage engine, producers and consumer
//! groups. No wire type appears here: [`crate::kafka`] is the edge that speaks the Kafka
//! protocol, and errors are [`error::BrokerError`]s it maps to Kafka's codes.
//!
//! * [`config`]: settings under Kafka's names.
//! * this module: the broker (opening, closing, the topic registry), produce, the health pass.
//! * [`fetch`]: reading partitions for a fetch, and its long poll; [`topics`]: topic creation
//!   and deletion.
//! * [`partition`]: one partition (online or offline) and its produce path; [`producer`]:
//!   idempotent producers' state; [`groups`]: the group coordinator and committed offsets.
//!
//! Topic metadata (partition count, config overrides, id) lives in `<data-dir>/topics/<name>.json`,
//! written by atomic replace; partitions are the engine's `<data-dir>/<topic>-<n>/` directories.

pub mod admin;
pub mod config;
pub mod dynamic;
pub mod error;
pub mod fetch;
pub mod groups;
pub mod partition;
pub mod producer;
pub mod replica;
pub mod topics;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use error::{BrokerError, ErrorKind, err};
use parking_lot::{Mutex, RwLock};
use strata_storage::io::IoBackend;

use config::{BrokerConfig, TopicConfig};
pub use partition::Partition;
use producer::ProducerIdAllocator;
pub use topics::{Topic, validate_topic_name};

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

/// What a produce waits for before it is answered (Kafka's `acks`).
#[derive(Debug, Clone, Copy)]
pub enum Acks {
    /// 0 or 1: the leader's own append (as the topic's flush policy stores it).
    Leader,
    /// -1 (`all`): every in-sync replica, within the request's timeout.
    All { timeout: std::time::Duration },
}

/// What a successful produce returns.
#[derive(Debug, Clone, Copy)]
pub struct Produced {
    pub base_offset: u64,
    /// The broker's timestamp under LogAppendTime, -1 otherwise.
    pub log_append_time: i64,
    pub log_start_offset: u64,
}

/// The whole broker state.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub cluster_id: String,
    backend: Arc<dyn IoBackend>,
    topics: RwLock<topics::TopicMap>,
    /// Dynamic broker configs and the effective topic defaults they make.
    dynamic: RwLock<dynamic::Dynamic>,
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
    /// In a cluster: the link to the metadata quorum (set once, right after opening).
    cluster: std::sync::OnceLock<Arc<crate::cluster::link::Link>>,
    /// In a cluster: the high watermarks last checkpointed (`replication-offset-checkpoint`,
    /// read at open, then what [`Broker::checkpoint_high_watermarks`] last wrote). `None` on a
    /// single broker, whose high watermark is its log end.
    high_watermarks: Option<Mutex<strata_storage::meta::HighWatermarks>>,
    /// The data directory's lock (`<data-dir>/.lock`): one broker per data directory. The
    /// partitions under it take none of their own (one descriptor, not one per partition).
    _lock: std::fs::File,
}

/// Name of the data directory's lock file.
pub const DATA_DIR_LOCK: &str = ".lock";

/// Locks the data directory (an `flock` on `<data-dir>/.lock`), or says who holds it.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let path = data_dir.join(DATA_DIR_LOCK);
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another broker (the lock on {} is taken)",
            data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Threads that close partitions at shutdown (temporary: they end with the close).
const CLOSE_THREADS: usize = 16;

/// How often the health pass looks for partitions to take offline or bring back
/// ([`Broker::heal`]).
pub const HEAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

impl Broker {
    /// Joins the broker to a cluster: from now on topics are what the metadata quorum says
    /// (`crate::cluster::follow`), and admin requests go to its controller.
    pub fn set_cluster(&self, link: Arc<crate::cluster::link::Link>) {
        if self.cluster.set(link).is_err() {
            tracing::warn!("the broker's cluster link was set twice; the first one stays");
        }
    }

    /// The link to the metadata quorum, in a cluster.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::link::Link>> {
        self.cluster.get()
    }

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
        let lock = lock_data_dir(&data_dir)?;
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
        let high_watermarks = (!config.get("process.roles").trim().is_empty()).then(|| {
            Mutex::new(
                match strata_storage::meta::read_high_watermarks(&data_dir) {
                    Ok(hw) => hw.unwrap_or_default(),
                    Err(reason) => {
                        // Every high watermark then starts at its log start: nothing
                        // unacknowledged is shown, and replication moves them on.
                        tracing::warn!(%reason, "the high-watermark checkpoint is unreadable: high watermarks start at each log's start");
                        Default::default()
                    }
                },
            )
        });
        let broker = Arc::new(Broker {
            groups,
            node_id: config.node_id()?,
            cluster_id,
            producer_ids: ProducerIdAllocator::open(&data_dir, backend.clone())?,
            backend,
            topics: RwLock::new(Default::default()),
            damaged_topics: RwLock::new(BTreeMap::new()),
            admin: Mutex::new(()),
            decompression: Arc::new(tokio::sync::Semaphore::new(
                config
                    .decompression_memory()?
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            decompression_total: config.decompression_memory()?,
            dynamic: RwLock::new(dynamic::Dynamic::load(&config, &data_dir)),
            cluster: std::sync::OnceLock::new(),
            high_watermarks,
            config,
            _lock: lock,
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

    /// One health pass (blocking): takes partitions whose log failed offline, and reopens the
    /// offline ones whose cause may have gone (a full disk, too many open files). Run every
    /// [`HEAL_INTERVAL`] by the server.
    pub fn heal(&self) {
        self.groups.offsets.heal();
        for topic in self.topics() {
            for p in &topic.partitions {
                if p.check_health() {
                    p.try_reopen(
                        topic.config.log,
                        self.backend.clone(),
                        self.checkpointed_high_watermark(&topic.name, p.index),
                    );
                }
            }
        }
    }

    /// In a cluster, where a replicated partition's high watermark starts when its log opens:
    /// the checkpoint's value, or 0 (the log start) without one. `None` on a single broker.
    pub(crate) fn checkpointed_high_watermark(&self, topic: &str, partition: i32) -> Option<u64> {
        let hw = self.high_watermarks.as_ref()?;
        Some(
            hw.lock()
                .get(&(topic.to_string(), partition))
                .copied()
                .unwrap_or(0),
        )
    }

    /// In a cluster, writes every hosted partition's high watermark to
    /// `replication-offset-checkpoint` (Kafka's file, every
    /// `replica.high.watermark.checkpoint.interval.ms` and at a clean stop), unless nothing
    /// changed since the last write. Blocking.
    pub fn checkpoint_high_watermarks(&self) -> Result<()> {
        let Some(last) = &self.high_watermarks else {
            return Ok(());
        };
        let mut now = strata_storage::meta::HighWatermarks::new();
        for t in self.topics() {
            for p in &t.partitions {
                if let Ok(log) = p.log() {
                    now.insert((t.name.clone(), p.index), log.high_watermark());
                }
            }
        }
        let mut last = last.lock();
        if *last == now {
            return Ok(());
        }
        strata_storage::meta::write_high_watermarks(
            self.backend.as_ref(),
            &self.config.data_dir(),
            &now,
        )?;
        *last = now;
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
    ) -> Result<Produced, BrokerError> {
        let len = records.len() as u64;
        // In a cluster only the leader appends produces.
        partition.check_leader()?;
        let res = partition.produce(config, records);
        if res.is_ok() {
            // The high watermark follows the log end when the leader is the only in-sync
            // replica; otherwise the followers' fetches move it.
            partition.update_high_watermark();
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
        acks: Acks,
    ) -> Result<Produced, BrokerError> {
        // acks=all in a cluster: refused up front when the ISR is too small, answered once
        // every in-sync replica has the batch (the high watermark passed it).
        let replicated = match acks {
            Acks::All { timeout }
                if partition.assignment().is_some() || self.cluster().is_some() =>
            {
                partition.check_leader()?;
                partition.check_min_isr(config.min_insync_replicas)?;
                let h = strata_storage::batch::header::BatchHeader::parse(&records).ok();
                Some((h.map_or(0, |h| h.last_offset_delta.max(0) as u64), timeout))
            }
            _ => None,
        };
        let min_isr = config.min_insync_replicas;
        let produced = self
            .produce_local(partition.clone(), config, records)
            .await?;
        if let Some((delta, timeout)) = replicated {
            let end = produced.base_offset + delta + 1;
            partition.wait_replicated(end, min_isr, timeout).await?;
        }
        Ok(produced)
    }

    async fn produce_local(
        self: Arc<Self>,
        partition: Arc<Partition>,
        config: TopicConfig,
        records: bytes::Bytes,
    ) -> Result<Produced, BrokerError> {
        let _share = match self.recode_cost(&config, &records) {
            0 => None,
            cost => Some(
                self.decompression
                    .clone()
                    .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
                    .await
                    .map_err(|_| err(ErrorKind::Unknown, "shutting down"))?,
            ),
        };
        tokio::task::spawn_blocking(move || self.produce(&partition, &config, records))
            .await
            .unwrap_or_else(|e| Err(err(ErrorKind::Unknown, e.to_string())))
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
        // The high watermarks as they are at the stop (the partitions still open).
        if let Err(e) = self.checkpoint_high_watermarks() {
            tracing::error!(error = %format!("{e:#}"), "writing the high-watermark checkpoint failed");
        }
        let topics: Vec<Arc<Topic>> = std::mem::take(&mut self.topics.write().by_name)
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
        let partitions: Vec<Arc<Partition>> = topics
            .into_iter()
            .flat_map(|t| match Arc::try_unwrap(t) {
                Ok(topic) => topic.partitions,
                Err(t) => t.partitions.clone(),
            })
            .collect();
        // Closed in parallel: each close may fdatasync its segment, which the file system
        // commits together when they come from many threads at once (2,000 partitions closed
        // one by one took 8-10 s; PERFORMANCE.md, "The house").
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Arc<Partition>>>> = partitions
            .into_iter()
            .map(|p| Mutex::new(Some(p)))
            .collect();
        let errors = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..CLOSE_THREADS.min(slots.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(slot) = slots.get(i) else { return };
                        let Some(p) = slot.lock().take() else {
                            continue;
                        };
                        let res = match Arc::try_unwrap(p) {
                            Ok(p) => p.close(),
                            Err(p) => p.sync(),
                        };
                        if let Err(e) = res {
                            errors.lock().push(e);
                        }
                    }
                });
            }
        });
        for e in errors.into_inner() {
            note(Err(e));
        }
        // Each partition's clean close left its directory fsync (the renames of its index
        // files, checkpoint and producer-state snapshot) to this one sync of the file system:
        // one journal commit instead of one per partition. Their data was synced by the closes.
        let data_dir = self.config.data_dir();
        if let Err(e) = self.backend.sync_filesystem(&data_dir) {
            note(Err(anyhow::anyhow!(
                "syncing {} after closing the partitions: {e}",
                data_dir.display()
            )));
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Runs `work` on a blocking thread every `every` until `stop` turns true (one pass at a
/// time; a late pass delays the next rather than bunching them).
async fn every_on_blocking_thread(
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
    work: impl Fn() + Clone + Send + 'static,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = tokio::task::spawn_blocking(work.clone()).await {
            tracing::error!(error = %e, what, "a periodic pass failed");
        }
    }
}

/// In a cluster: writes the high-watermark checkpoint every `every`
/// (`replica.high.watermark.checkpoint.interval.ms`) until `stop`.
pub async fn high_watermark_checkpoint_loop(
    broker: Arc<Broker>,
    every: std::time::Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    every_on_blocking_thread(every, stop, "high-watermark checkpoint", move || {
        if let Err(e) = broker.checkpoint_high_watermarks() {
            tracing::warn!(error = %format!("{e:#}"), "writing the high-watermark checkpoint failed; tried again next time");
        }
    })
    .await;
}

/// Runs [`Broker::heal`] every [`HEAL_INTERVAL`] on a blocking thread until `stop` turns true.
pub async fn heal_loop(broker: Arc<Broker>, stop: tokio::sync::watch::Receiver<bool>) {
    every_on_blocking_thread(HEAL_INTERVAL, stop, "health pass", move || broker.heal()).await;
}

/// File descriptors a partition in use holds: its active segment's write handle (and its
/// O_DIRECT handle in direct mode) and the mappings being read (one each, kept for
/// `sendfile`). An idle partition holds none (`strata.log.file.idle.ms`). A rough figure for
/// the start-up log line.
pub const FDS_PER_PARTITION: u64 = 3;

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
    fn a_replicated_partition_reopens_at_its_checkpointed_high_watermark() {
        use strata_storage::log::LogConfig;
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn IoBackend> = Arc::new(strata_storage::io::plain::PlainBackend::new());
        let replicated = LogConfig {
            replicated: true,
            ..LogConfig::default()
        };
        let open = |config: LogConfig, hw: Option<u64>| {
            Partition::open(
                "t",
                0,
                dir.path().join("t-0"),
                config,
                backend.clone(),
                -1,
                hw,
            )
        };
        {
            let p = open(replicated, None);
            let log = p.log().unwrap();
            for v in ["a", "b", "c", "d"] {
                log.append_batch(one_record_batch(v).to_vec()).unwrap();
            }
            p.close().unwrap();
        }
        // A checkpoint entry: the high watermark starts there, below the log end.
        let p = open(replicated, Some(2));
        assert_eq!(p.log().unwrap().high_watermark(), 2);
        p.close().unwrap();
        // One above the log end is bounded by it; none (`Some(0)`) starts at the log start.
        let p = open(replicated, Some(99));
        assert_eq!(p.log().unwrap().high_watermark(), 4);
        p.close().unwrap();
        let p = open(replicated, Some(0));
        assert_eq!(p.log().unwrap().high_watermark(), 0);
        p.close().unwrap();
        // A log that is not replicated (a single broker) reads to its end.
        let p = open(LogConfig::default(), Some(1));
        assert_eq!(p.log().unwrap().high_watermark(), 4);
        p.close().unwrap();
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
