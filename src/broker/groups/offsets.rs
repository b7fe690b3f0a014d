//! Committed offsets, stored by the storage engine in `<data-dir>/__consumer_offsets-0/`.
//!
//! Guarantees: a commit is acknowledged only after the engine's fdatasync covered its record
//! (`FsyncPolicy::Always`); on open the whole log is replayed, later records winning, so the
//! state after a clean shutdown or a crash is exactly what was acknowledged (plus, possibly,
//! commits whose fsync completed but whose answer was lost). The log is kept bounded by
//! snapshotting: when it grows past `max(compact_bytes, 2 × last snapshot)`, the active segment
//! is rolled, every live offset is rewritten (durably) at the head of the new segment, and the
//! whole segments before it are deleted. Because a snapshot is made of ordinary commit records,
//! replay needs no special case: a crash before, during or after the deletion replays a suffix
//! of old records followed by the snapshot, which yields the same state.
//!
//! Concurrency: commits run in parallel (they share the engine's group-commit fsyncs) under a
//! read lock; compaction takes the write lock. Record formats: docs/GROUPS.md.
//!
//! In a cluster the same records go to the replicated `__consumer_offsets` topic instead of a
//! local log, as Kafka's group coordinator writes them ([`ReplicatedOffsets`]): a group's
//! records go to its partition (`abs(hashCode(group)) % partitions`), appended by that
//! partition's leader (the group's coordinator) and acknowledged once every in-sync replica
//! has them (`acks=all`). The store holds the offsets of the partitions this broker leads,
//! loaded (replayed) when it becomes their leader and dropped when it stops; compaction is the
//! same snapshot, appended through replication, after which the leader moves the log start
//! past the old records (Kafka's DeleteRecords) and the followers follow it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use parking_lot::{Mutex, RwLock};
use strata_storage::batch::{BatchBuilder, Compression, NewRecord};
use strata_storage::io::IoBackend;
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog};

/// Directory name of the offsets log under the data directory.
pub const OFFSETS_DIR: &str = "__consumer_offsets-0";
/// Version of the key and value layouts (docs/GROUPS.md). A reader refuses other versions.
pub const RECORD_VERSION: i16 = 1;
/// Records per snapshot batch: keeps each batch far below `max_batch_bytes`.
const SNAPSHOT_BATCH_RECORDS: usize = 500;
/// Group ids, topic names and metadata strings are i16-length strings on the wire; anything
/// longer is refused before it reaches the log.
const MAX_STRING: usize = i16::MAX as usize;

/// (group, topic, partition).
pub type OffsetKey = (String, String, i32);

/// In a cluster: where the commit records go, the replicated `__consumer_offsets` topic
/// (implemented by `crate::cluster::offsets`).
pub trait ReplicatedOffsets: Send + Sync + std::fmt::Debug {
    /// Partitions of `__consumer_offsets` (0 before it exists).
    fn partitions(&self) -> i32;
    /// Appends `batch` to partition `partition`, which this broker leads, and waits until
    /// every in-sync replica has it (`acks=all`). Returns the batch's base offset. Blocking.
    fn append(&self, partition: i32, batch: Vec<u8>) -> Result<u64>;
    /// This broker's log of the partition.
    fn log(&self, partition: i32) -> Option<Arc<PartitionLog>>;
}

/// The cluster half of the store.
#[derive(Debug, Default)]
struct Cluster {
    writer: std::sync::OnceLock<Arc<dyn ReplicatedOffsets>>,
    /// The `__consumer_offsets` partitions this broker leads and has loaded: partition ->
    /// the leader epoch it loaded under.
    loaded: Mutex<BTreeMap<i32, i32>>,
    /// Per partition, its log's size after the last snapshot.
    last_snapshot_bytes: Mutex<BTreeMap<i32, u64>>,
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Committed,
    /// Offset of the record in the offsets log that set it: a commit that lost a race to a
    /// later record for the same key does not overwrite it in memory.
    log_offset: u64,
}

/// The committed-offsets store.
#[derive(Debug)]
pub struct OffsetStore {
    log: RwLock<Option<PartitionLog>>,
    /// Commits hold it shared from their check that the topic exists to their append; a topic's
    /// deletion holds it alone while it writes tombstones, so no commit for the topic lands
    /// after them.
    topics_gate: RwLock<()>,
    live: Mutex<BTreeMap<OffsetKey, Entry>>,
    compact_bytes: u64,
    last_snapshot_bytes: Mutex<u64>,
    /// Why the log did not open at start-up (damage): the store then holds nothing and refuses
    /// commits, and the coordinator answers COORDINATOR_NOT_AVAILABLE.
    offline: Option<String>,
    /// Set while the log, taken down after a full disk, waits to be reopened.
    reopening: std::sync::atomic::AtomicBool,
    /// What reopening the log after a full disk needs.
    dir: std::path::PathBuf,
    config: LogConfig,
    backend: Arc<dyn IoBackend>,
    /// In a cluster: the replicated topic the records go to (no local log then).
    cluster: Option<Cluster>,
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) -> Result<()> {
    match s {
        None => out.extend_from_slice(&(-1i16).to_be_bytes()),
        Some(s) => {
            if s.len() > MAX_STRING {
                bail!("string of {} bytes is longer than {MAX_STRING}", s.len());
            }
            out.extend_from_slice(&(s.len() as i16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    Ok(())
}

/// A bounds-checked reader over one record's key or value.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            bail!("truncated: needed {N} bytes, {} left", self.0.len());
        };
        self.0 = rest;
        Ok(*head)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn string(&mut self) -> Result<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        let Some(bytes) = self.0.get(..n) else {
            bail!("string of {n} bytes but only {} left", self.0.len());
        };
        self.0 = self.0.get(n..).unwrap_or(&[]);
        Ok(Some(
            String::from_utf8(bytes.to_vec()).context("string is not UTF-8")?,
        ))
    }
    fn version(&mut self) -> Result<()> {
        let v = self.i16()?;
        if v != RECORD_VERSION {
            bail!("record version {v}, expected {RECORD_VERSION}");
        }
        Ok(())
    }
    fn end(&self) -> Result<()> {
        if !self.0.is_empty() {
            bail!("{} trailing bytes", self.0.len());
        }
        Ok(())
    }
}

/// Key: version i16 | group string | topic string | partition i32.
pub fn encode_key(key: &OffsetKey) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(8 + key.0.len() + key.1.len());
    out.extend_from_slice(&RECORD_VERSION.to_be_bytes());
    put_str(&mut out, Some(&key.0))?;
    put_str(&mut out, Some(&key.1))?;
    out.extend_from_slice(&key.2.to_be_bytes());
    Ok(out)
}

pub fn decode_key(bytes: &[u8]) -> Result<OffsetKey> {
    let mut r = Reader(bytes);
    r.version()?;
    let group = r.string()?.context("null group id")?;
    let topic = r.string()?.context("null topic")?;
    let partition = r.i32()?;
    r.end()?;
    Ok((group, topic, partition))
}

/// Value: version i16 | offset i64 | leader_epoch i32 | metadata nullable string |
/// commit_timestamp i64. A null record value is a tombstone (the group was deleted).
pub fn encode_value(c: &Committed) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(26 + c.metadata.as_ref().map_or(0, String::len));
    out.extend_from_slice(&RECORD_VERSION.to_be_bytes());
    out.extend_from_slice(&c.offset.to_be_bytes());
    out.extend_from_slice(&c.leader_epoch.to_be_bytes());
    put_str(&mut out, c.metadata.as_deref())?;
    out.extend_from_slice(&c.commit_timestamp.to_be_bytes());
    Ok(out)
}

pub fn decode_value(bytes: &[u8]) -> Result<Committed> {
    let mut r = Reader(bytes);
    r.version()?;
    let offset = r.i64()?;
    let leader_epoch = r.i32()?;
    let metadata = r.string()?;
    let commit_timestamp = r.i64()?;
    r.end()?;
    Ok(Committed {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// The engine settings of the offsets log: every commit is durable before it is acknowledged,
/// and only the store itself deletes segments (no time or size retention).
pub fn log_config(segment_bytes: u64, preallocate: bool) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        retention_check_interval: None,
        fsync: FsyncPolicy::Always,
        preallocate,
        // Under the broker's data-directory lock.
        lock_dir: false,
        ..LogConfig::default()
    }
}

impl OffsetStore {
    /// Opens (recovering) the offsets log and replays it. Blocking.
    pub fn open(
        data_dir: &Path,
        config: LogConfig,
        compact_bytes: u64,
        backend: Arc<dyn IoBackend>,
    ) -> Result<Self> {
        let dir = data_dir.join(OFFSETS_DIR);
        let opened = PartitionLog::open(&dir, config, backend.clone())
            .with_context(|| format!("opening the offsets log {}", dir.display()))
            .and_then(|log| {
                let live = replay(&log).with_context(|| format!("replaying {}", dir.display()))?;
                Ok((log, live))
            });
        let (log, live, offline) = match opened {
            Ok((log, live)) => {
                tracing::info!(offsets = live.len(), dir = %dir.display(), "committed offsets restored");
                (Some(log), live, None)
            }
            Err(e) => {
                // Groups are unavailable (COORDINATOR_NOT_AVAILABLE); everything else serves.
                let reason = format!("{e:#}");
                tracing::error!(%reason, "the committed-offsets log is offline: consumer groups are unavailable until it is repaired (strata verify --repair) and the broker restarted");
                (None, BTreeMap::new(), Some(reason))
            }
        };
        Ok(OffsetStore {
            log: RwLock::new(log),
            topics_gate: RwLock::new(()),
            live: Mutex::new(live),
            compact_bytes,
            last_snapshot_bytes: Mutex::new(0),
            offline,
            reopening: std::sync::atomic::AtomicBool::new(false),
            dir,
            config,
            backend,
            cluster: None,
        })
    }

    /// The store of a broker in a cluster: no local log; the records go to the replicated
    /// `__consumer_offsets` topic through `writer` (set with [`Self::set_writer`] once the
    /// broker has joined), and the offsets of a partition are here while this broker leads it
    /// ([`Self::load_partition`]).
    pub fn replicated(
        data_dir: &Path,
        config: LogConfig,
        compact_bytes: u64,
        backend: Arc<dyn IoBackend>,
    ) -> Self {
        OffsetStore {
            log: RwLock::new(None),
            topics_gate: RwLock::new(()),
            live: Mutex::new(BTreeMap::new()),
            compact_bytes,
            last_snapshot_bytes: Mutex::new(0),
            offline: None,
            reopening: std::sync::atomic::AtomicBool::new(false),
            dir: data_dir.to_path_buf(),
            config,
            backend,
            cluster: Some(Cluster::default()),
        }
    }

    /// Connects a cluster store to the replicated topic (once; later calls are ignored).
    pub fn set_writer(&self, writer: Arc<dyn ReplicatedOffsets>) {
        if let Some(c) = &self.cluster
            && c.writer.set(writer).is_err()
        {
            tracing::warn!("the offsets store's writer was set twice; the first one stays");
        }
    }

    /// In a cluster: the leader epoch under which partition `partition` of
    /// `__consumer_offsets` was loaded here (`None`: not loaded, so its groups are not
    /// coordinated here yet). Always `Some(epoch)` on a single broker.
    pub fn loaded_epoch(&self, partition: i32, epoch: i32) -> Option<i32> {
        match &self.cluster {
            None => Some(epoch),
            Some(c) => c.loaded.lock().get(&partition).copied(),
        }
    }

    /// In a cluster, after this broker became the leader of `partition` under `epoch`: replays
    /// its log (`log`, whole: what the previous leader acknowledged is in it) and serves its
    /// groups' offsets from now on. Returns the groups that have offsets. Commits wait
    /// meanwhile. Blocking.
    pub fn load_partition(
        &self,
        partition: i32,
        epoch: i32,
        partitions: i32,
        log: &PartitionLog,
    ) -> Result<Vec<String>> {
        let Some(c) = &self.cluster else {
            return Ok(Vec::new());
        };
        let _gate = self.topics_gate.write();
        let replayed = replay(log)?;
        let mut live = self.live.lock();
        live.retain(|k, _| crate::cluster::offsets_partition_for(&k.0, partitions) != partition);
        let mut groups: Vec<String> = replayed.keys().map(|k| k.0.clone()).collect();
        groups.dedup();
        let n = replayed.len();
        live.extend(replayed);
        c.loaded.lock().insert(partition, epoch);
        c.last_snapshot_bytes.lock().insert(partition, 0);
        tracing::info!(
            partition,
            epoch,
            offsets = n,
            groups = groups.len(),
            "loaded the committed offsets of a __consumer_offsets partition this broker now leads"
        );
        Ok(groups)
    }

    /// In a cluster, after this broker stopped leading `partition`: forgets its groups'
    /// offsets (the new leader serves them). Returns whether it was loaded.
    pub fn unload_partition(&self, partition: i32, partitions: i32) -> bool {
        let Some(c) = &self.cluster else {
            return false;
        };
        let _gate = self.topics_gate.write();
        if c.loaded.lock().remove(&partition).is_none() {
            return false;
        }
        self.live
            .lock()
            .retain(|k, _| crate::cluster::offsets_partition_for(&k.0, partitions) != partition);
        tracing::info!(
            partition,
            "unloaded the committed offsets of a __consumer_offsets partition led elsewhere now"
        );
        true
    }

    /// After a commit failed on a full disk (the log refuses writes, `LogFailure::no_space`),
    /// reopens the log, whose recovery cuts what the failed write left, and replays it. Does
    /// nothing otherwise, or while the disk is still full (the next call tries again). Blocking;
    /// commits wait meanwhile.
    pub fn heal(&self) {
        if self.cluster.is_some() {
            // The replicated partitions heal as every partition does.
            return;
        }
        let needs = self.reopening.load(std::sync::atomic::Ordering::Acquire)
            || self
                .log
                .read()
                .as_ref()
                .and_then(PartitionLog::failure)
                .is_some_and(|f| f.no_space);
        // Reopening would succeed on a full disk and the next commit fail again: wait for room.
        let room = strata_storage::io::available_bytes(&self.dir).unwrap_or(0);
        if !needs || room < (self.config.max_batch_bytes as u64).max(1 << 20) {
            return;
        }
        let mut guard = self.log.write();
        self.reopening
            .store(true, std::sync::atomic::Ordering::Release);
        drop(guard.take());
        let reopened = PartitionLog::open(&self.dir, self.config, self.backend.clone())
            .map_err(anyhow::Error::new)
            .and_then(|log| Ok((replay(&log)?, log)));
        match reopened {
            Ok((live, log)) => {
                *self.live.lock() = live;
                *guard = Some(log);
                self.reopening
                    .store(false, std::sync::atomic::Ordering::Release);
                tracing::info!(dir = %self.dir.display(), "the committed-offsets log is back after a full disk");
            }
            Err(e) => {
                // Still full: the next pass tries again (commits meanwhile fail, "closed").
                tracing::debug!(dir = %self.dir.display(), error = %format!("{e:#}"), "the committed-offsets log could not be reopened yet");
            }
        }
    }

    /// Why the offsets log did not open, if it did not (groups are then unavailable).
    pub fn offline(&self) -> Option<&str> {
        self.offline.as_deref()
    }

    pub fn get(&self, key: &OffsetKey) -> Option<Committed> {
        self.live.lock().get(key).map(|e| e.value.clone())
    }

    /// Every committed offset of `group`, sorted by topic and partition.
    pub fn group_offsets(&self, group: &str) -> Vec<((String, i32), Committed)> {
        let live = self.live.lock();
        let from = (group.to_string(), String::new(), i32::MIN);
        live.range(from..)
            .take_while(|(k, _)| k.0 == group)
            .map(|(k, e)| ((k.1.clone(), k.2), e.value.clone()))
            .collect()
    }

    /// Topics that have at least one committed offset.
    pub fn topics(&self) -> std::collections::BTreeSet<String> {
        self.live.lock().keys().map(|k| k.1.clone()).collect()
    }

    /// Group ids that have at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self.live.lock().keys().map(|k| k.0.clone()).collect();
        out.dedup();
        out
    }

    /// Stores the commits whose partition `exists` (checked here, so a topic deleted meanwhile
    /// gets none) durably (one batch, one fsync), then makes them visible. Returns, in order,
    /// whether each was stored. Blocking.
    pub fn commit(
        &self,
        commits: Vec<(OffsetKey, Committed)>,
        exists: impl Fn(&str, i32) -> bool,
    ) -> Result<Vec<bool>> {
        let _gate = self.topics_gate.read();
        let stored: Vec<bool> = commits.iter().map(|(k, _)| exists(&k.1, k.2)).collect();
        let commits: Vec<(OffsetKey, Committed)> = commits
            .into_iter()
            .zip(&stored)
            .filter(|(_, ok)| **ok)
            .map(|(c, _)| c)
            .collect();
        if commits.is_empty() {
            return Ok(stored);
        }
        let groups: std::collections::BTreeSet<String> =
            commits.iter().map(|(k, _)| k.0.clone()).collect();
        self.append(commits.into_iter().map(|(k, c)| (k, Some(c))).collect())?;
        drop(_gate);
        self.maybe_compact(&groups)?;
        Ok(stored)
    }

    /// Deletes the committed offsets of `group` for `partitions` (durable tombstones; those
    /// without one are skipped). Blocking.
    pub fn delete_offsets(&self, group: &str, partitions: &[(String, i32)]) -> Result<()> {
        let keys: Vec<OffsetKey> = {
            let live = self.live.lock();
            partitions
                .iter()
                .map(|(t, p)| (group.to_string(), t.clone(), *p))
                .filter(|k| live.contains_key(k))
                .collect()
        };
        self.append(keys.into_iter().map(|k| (k, None)).collect())
    }

    /// Deletes every committed offset of `group` (durable tombstones). Blocking.
    pub fn delete_group(&self, group: &str) -> Result<()> {
        let keys: Vec<OffsetKey> = self
            .group_offsets(group)
            .into_iter()
            .map(|((t, p), _)| (group.to_string(), t, p))
            .collect();
        self.append(keys.into_iter().map(|k| (k, None)).collect())
    }

    /// Deletes every committed offset of `topic`, of every group (durable tombstones, in
    /// batches of at most [`SNAPSHOT_BATCH_RECORDS`]). Blocking.
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        let _gate = self.topics_gate.write();
        let keys: Vec<OffsetKey> = self
            .live
            .lock()
            .keys()
            .filter(|k| k.1 == topic)
            .cloned()
            .collect();
        for chunk in keys.chunks(SNAPSHOT_BATCH_RECORDS) {
            self.append(chunk.iter().cloned().map(|k| (k, None)).collect())?;
        }
        if !keys.is_empty() {
            tracing::info!(
                topic,
                offsets = keys.len(),
                "deleted the committed offsets of a deleted topic"
            );
        }
        Ok(())
    }

    /// Writes `updates` (a value, or `None` for a tombstone), then applies them to the live
    /// map. In a cluster, one batch per `__consumer_offsets` partition touched.
    fn append(&self, updates: Vec<(OffsetKey, Option<Committed>)>) -> Result<()> {
        let Some(c) = &self.cluster else {
            let guard = self.log.read();
            let log = guard.as_ref().context("the offsets log is closed")?;
            let info = log.append_batch(batch_of(&updates)?)?;
            self.apply(info.base_offset, updates);
            return Ok(());
        };
        let writer = c
            .writer
            .get()
            .context("the broker has not joined the cluster yet")?;
        let n = writer.partitions();
        let mut by_partition: BTreeMap<i32, Vec<(OffsetKey, Option<Committed>)>> = BTreeMap::new();
        for u in updates {
            let p = crate::cluster::offsets_partition_for(&u.0.0, n);
            by_partition.entry(p).or_default().push(u);
        }
        for (p, updates) in by_partition {
            if !c.loaded.lock().contains_key(&p) {
                return Err(crate::broker::error::err(
                    crate::broker::error::ErrorKind::NotCoordinator,
                    format!("__consumer_offsets-{p} is not led (and loaded) here"),
                )
                .into());
            }
            let base = writer.append(p, batch_of(&updates)?)?;
            self.apply(base, updates);
        }
        Ok(())
    }

    /// Applies written updates (the first at log offset `base`) to the live map.
    fn apply(&self, base: u64, updates: Vec<(OffsetKey, Option<Committed>)>) {
        let mut live = self.live.lock();
        for (i, (k, v)) in updates.into_iter().enumerate() {
            let at = base + i as u64;
            if live.get(&k).is_some_and(|e| e.log_offset > at) {
                continue;
            }
            match v {
                Some(value) => {
                    live.insert(
                        k,
                        Entry {
                            value,
                            log_offset: at,
                        },
                    );
                }
                None => {
                    live.remove(&k);
                }
            }
        }
    }

    /// Size of the offsets log on disk (segments), for tests and `maybe_compact`.
    pub fn log_bytes(&self) -> u64 {
        self.log.read().as_ref().map_or(0, PartitionLog::size_bytes)
    }

    /// After a commit of `groups`: compacts the log they were written to if it outgrew its
    /// threshold.
    fn maybe_compact(&self, groups: &std::collections::BTreeSet<String>) -> Result<()> {
        if let Some(c) = &self.cluster {
            return self.maybe_compact_replicated(c, groups);
        }
        let threshold = self
            .compact_bytes
            .max(self.last_snapshot_bytes.lock().saturating_mul(2));
        if self.log_bytes() > threshold {
            self.compact()?;
        }
        Ok(())
    }

    /// Rolls, rewrites every live offset at the head of the new segment, then drops the
    /// segments before it. Commits wait meanwhile (write lock).
    pub fn compact(&self) -> Result<()> {
        let guard = self.log.write();
        let log = guard.as_ref().context("the offsets log is closed")?;
        let before = log.size_bytes();
        log.roll()?;
        let start = log.log_end_offset();
        // Every live offset, each now pointing at its snapshot record (commits wait on the
        // write lock, so nothing else lands meanwhile).
        let snapshot = self.snapshot_of(|_| true);
        self.write_snapshot(&snapshot, |batch| Ok(log.append_batch(batch)?.base_offset))?;
        let report = log.delete_segments_before(start)?;
        let after = log.size_bytes();
        *self.last_snapshot_bytes.lock() = after;
        tracing::info!(
            before,
            after,
            offsets = snapshot.len(),
            segments_deleted = report.segments_deleted,
            "compacted the offsets log"
        );
        Ok(())
    }

    /// In a cluster: each loaded partition whose log is larger than `max(compact_bytes, 2 ×
    /// its last snapshot)` gets a snapshot of its groups' offsets, appended through
    /// replication, and its log start moves to the snapshot (the followers follow it, and the
    /// segments before it go).
    fn maybe_compact_replicated(
        &self,
        c: &Cluster,
        groups: &std::collections::BTreeSet<String>,
    ) -> Result<()> {
        let Some(writer) = c.writer.get() else {
            return Ok(());
        };
        let n = writer.partitions();
        let written: std::collections::BTreeSet<i32> = groups
            .iter()
            .map(|g| crate::cluster::offsets_partition_for(g, n))
            .collect();
        for p in written {
            let Some(log) = writer.log(p) else { continue };
            let last = c.last_snapshot_bytes.lock().get(&p).copied().unwrap_or(0);
            if log.size_bytes() <= self.compact_bytes.max(last.saturating_mul(2)) {
                continue;
            }
            // The commit that got here is stored either way: a failed compaction is tried
            // again after the next commit.
            if let Err(e) = self.compact_partition(c, writer.as_ref(), p, &log) {
                tracing::warn!(partition = p, error = %format!("{e:#}"), "compacting a __consumer_offsets partition failed");
            }
        }
        Ok(())
    }

    fn compact_partition(
        &self,
        c: &Cluster,
        writer: &dyn ReplicatedOffsets,
        p: i32,
        log: &PartitionLog,
    ) -> Result<()> {
        let n = writer.partitions();
        let _gate = self.topics_gate.write();
        if !c.loaded.lock().contains_key(&p) {
            return Ok(());
        }
        let before = log.size_bytes();
        log.roll()?;
        let snapshot =
            self.snapshot_of(|group| crate::cluster::offsets_partition_for(group, n) == p);
        let start = self
            .write_snapshot(&snapshot, |batch| writer.append(p, batch))?
            .unwrap_or_else(|| log.log_end_offset());
        // Every snapshot record is on every in-sync replica: what is before it can go
        // (on a follower too, once it sees the new log start).
        log.delete_records_before(start)?;
        let report = log.delete_segments_before(start)?;
        let after = log.size_bytes();
        c.last_snapshot_bytes.lock().insert(p, after);
        tracing::info!(
            partition = p,
            before,
            after,
            offsets = snapshot.len(),
            segments_deleted = report.segments_deleted,
            "compacted a __consumer_offsets partition"
        );
        Ok(())
    }

    /// The live offsets of the groups `of` takes, as records to write again.
    fn snapshot_of(&self, of: impl Fn(&str) -> bool) -> Vec<(OffsetKey, Option<Committed>)> {
        self.live
            .lock()
            .iter()
            .filter(|(k, _)| of(&k.0))
            .map(|(k, e)| (k.clone(), Some(e.value.clone())))
            .collect()
    }

    /// Writes `snapshot` in batches of [`SNAPSHOT_BATCH_RECORDS`] through `append` (which
    /// returns a batch's base offset), pointing each live entry at its new record. Returns the
    /// first batch's base offset (`None` for an empty snapshot).
    fn write_snapshot(
        &self,
        snapshot: &[(OffsetKey, Option<Committed>)],
        mut append: impl FnMut(Vec<u8>) -> Result<u64>,
    ) -> Result<Option<u64>> {
        let mut first = None;
        for chunk in snapshot.chunks(SNAPSHOT_BATCH_RECORDS) {
            let base = append(batch_of(chunk)?)?;
            first.get_or_insert(base);
            self.apply(base, chunk.to_vec());
        }
        Ok(first)
    }

    /// Clean close (checkpoint written, nothing to recover next time). Blocking.
    pub fn close(&self) -> Result<()> {
        if let Some(log) = self.log.write().take() {
            log.close()?;
        }
        Ok(())
    }
}

/// One batch of `updates`: a value record, or a tombstone (null value) stamped now.
fn batch_of(updates: &[(OffsetKey, Option<Committed>)]) -> Result<Vec<u8>> {
    let mut b = BatchBuilder::new(Compression::None);
    for (k, v) in updates {
        let r = match v {
            Some(c) => NewRecord::new(encode_value(c)?).with_timestamp(c.commit_timestamp),
            None => {
                let mut r = NewRecord::new(Vec::new());
                r.value = None;
                r.with_timestamp(now_ms())
            }
        };
        b.push(r.with_key(encode_key(k)?))?;
    }
    Ok(b.build()?)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Reads the whole log, later records winning. A record that does not decode is an error
/// naming its offset: the engine already verified the batch CRCs, so it is a format bug or a
/// newer version, not a torn write, and silently dropping a commit would rewind a consumer.
fn replay(log: &PartitionLog) -> Result<BTreeMap<OffsetKey, Entry>> {
    let mut live = BTreeMap::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let slice = log.read(next, 1 << 20)?;
        let before = next;
        for b in strata_storage::log::scan::BatchScanner::new(&slice, usize::MAX, false) {
            let h = b.header;
            let pos = b.position as usize;
            let bytes = slice.get(pos..pos + h.total_len()).unwrap_or(&[]);
            for r in strata_storage::batch::records(&h, bytes)? {
                let r = r?;
                let at = r.offset as u64;
                if at < next {
                    continue;
                }
                let key = r
                    .key
                    .as_deref()
                    .context("record without key")
                    .and_then(decode_key)
                    .with_context(|| format!("offsets log record at offset {at}"))?;
                match r.value.as_deref() {
                    None => {
                        live.remove(&key);
                    }
                    Some(v) => {
                        let value = decode_value(v)
                            .with_context(|| format!("offsets log record at offset {at}"))?;
                        live.insert(
                            key,
                            Entry {
                                value,
                                log_offset: at,
                            },
                        );
                    }
                }
            }
            next = h.next_offset() as u64;
        }
        if next == before {
            bail!("offsets log stuck at offset {next}: no batch could be read");
        }
    }
    Ok(live)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_roundtrip_and_refuse_damage() {
        let k = ("g".to_string(), "topic-a".to_string(), 7);
        assert_eq!(decode_key(&encode_key(&k).unwrap()).unwrap(), k);
        for metadata in [None, Some(String::new()), Some("meta ✓".to_string())] {
            let c = Committed {
                offset: 42,
                leader_epoch: -1,
                metadata,
                commit_timestamp: 1_700_000_000_000,
            };
            let bytes = encode_value(&c).unwrap();
            assert_eq!(decode_value(&bytes).unwrap(), c);
            for cut in 0..bytes.len() {
                assert!(decode_value(&bytes[..cut]).is_err(), "truncated at {cut}");
            }
            let mut bad = bytes.clone();
            bad[1] = 9;
            assert!(decode_value(&bad).is_err(), "unknown version");
        }
        let kb = encode_key(&k).unwrap();
        for cut in 0..kb.len() {
            assert!(decode_key(&kb[..cut]).is_err());
        }
    }
}
