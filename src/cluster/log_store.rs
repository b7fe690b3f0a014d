//! The metadata log's storage for openraft: the engine's own partition log (dogfooding).
//!
//! openraft's `RaftLogStorage` asks for append, truncate-after, purge-before, reads by index,
//! and a durable vote. The engine has each of them: an entry is one RecordBatch v2 of one
//! record whose baseOffset is the entry's index and whose partitionLeaderEpoch is its term,
//! appended with [`PartitionLog::append_replica`] (which refuses gaps and overlaps) and synced
//! before openraft is told; truncation is [`PartitionLog::truncate_to`], purging
//! [`PartitionLog::delete_records_before`]. The vote, the last purged log id and the committed
//! log id live beside it in `raft-state`, a checked file (`storage/FORMAT.md` §13).
//!
//! The log is `<data-dir>/__cluster_metadata-0/`, as KRaft names it, so `strata dump` and
//! `strata verify` read it like any partition.

// openraft's storage traits return its `StorageError`, which is large: not ours to box.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_storage::batch::{BatchBuilder, Compression, NewRecord, header::BatchHeader, record};
use strata_storage::io::IoBackend;
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog};

use super::checked_file;
use super::raft::{NodeId, TypeConfig};

/// The metadata log's partition directory under the data directory.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// The directory of the quorum's other files (`raft-state`, `metadata-snapshot`).
pub use strata_storage::checked::CLUSTER_DIR;
use strata_storage::checked::RAFT_STATE_FILE as STATE_FILE;
/// Largest metadata log entry (one batch): a topic of tens of thousands of partitions fits.
pub const MAX_ENTRY_BYTES: usize = 8 << 20;

/// What openraft keeps beside the log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RaftFileState {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

/// The log store. Clones share one log.
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    log: PartitionLog,
    backend: Arc<dyn IoBackend>,
    state_path: PathBuf,
    state: Mutex<RaftFileState>,
}

fn io_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

fn read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::error(e.to_string())).into()
}

/// The engine settings of the metadata log: every append synced before it counts, segments
/// of 64 MiB, nothing retired by time or size (snapshots purge it instead).
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 20,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        fsync: FsyncPolicy::Never,
        max_batch_bytes: MAX_ENTRY_BYTES,
        preallocate: false,
        lock_dir: false,
        ..LogConfig::default()
    }
}

impl LogStore {
    /// Opens (creating) the metadata log under `data_dir`, recovering it as the engine does.
    pub fn open(data_dir: &Path, backend: Arc<dyn IoBackend>) -> Result<Self> {
        let dir = data_dir.join(METADATA_LOG_DIR);
        let log = PartitionLog::open(&dir, log_config(), backend.clone())
            .with_context(|| format!("opening the metadata log {}", dir.display()))?;
        let cluster_dir = data_dir.join(CLUSTER_DIR);
        backend
            .create_dir_all(&cluster_dir)
            .with_context(|| format!("creating {}", cluster_dir.display()))?;
        let state_path = cluster_dir.join(STATE_FILE);
        let state = match checked_file::read(&state_path, checked_file::RAFT_STATE_MAGIC, 1 << 16)?
        {
            None => RaftFileState::default(),
            Some(body) => serde_json::from_slice(&body)
                .with_context(|| format!("decoding {}", state_path.display()))?,
        };
        Ok(LogStore {
            inner: Arc::new(Inner {
                log,
                backend,
                state_path,
                state: Mutex::new(state),
            }),
        })
    }

    /// The engine log (for `strata cluster status` and tests).
    pub fn log(&self) -> &PartitionLog {
        &self.inner.log
    }

    /// Appends `entries` and syncs the log: once this returns `Ok` they are durable (what
    /// openraft is told through its callback). Blocking.
    pub fn append_entries(&self, entries: Vec<Entry<TypeConfig>>) -> Result<()> {
        self.inner.append(entries)
    }

    /// Entries with index in `[from, to)`. Blocking.
    pub fn read_entries(&self, from: u64, to: u64) -> Result<Vec<Entry<TypeConfig>>> {
        self.inner.entries(from, to)
    }

    /// Saves the vote durably. Blocking.
    pub fn save_vote_now(&self, vote: Vote<NodeId>) -> Result<()> {
        self.inner.save_state(|s| s.vote = Some(vote))
    }

    /// The saved vote.
    pub fn vote(&self) -> Option<Vote<NodeId>> {
        self.inner.state.lock().vote
    }

    /// Removes entries from `index` on (a conflicting suffix). Blocking.
    pub fn truncate_from(&self, index: u64) -> Result<()> {
        self.inner.log.truncate_to(index)?;
        Ok(())
    }

    /// Purges entries up to and including `log_id` (covered by a snapshot). Blocking.
    pub fn purge_upto(&self, log_id: LogId<NodeId>) -> Result<()> {
        self.inner.purge(log_id)
    }

    /// The last purged log id.
    pub fn last_purged(&self) -> Option<LogId<NodeId>> {
        self.inner.state.lock().last_purged
    }

    /// Closes the log cleanly (at shutdown, once openraft stopped).
    pub fn close(self) -> Result<()> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner.log.close().context("closing the metadata log"),
            Err(_) => Ok(()),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StorageError<NodeId>> + Send + 'static,
    ) -> Result<T, StorageError<NodeId>> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(io_err)?
    }
}

impl Inner {
    fn save_state(&self, change: impl FnOnce(&mut RaftFileState)) -> Result<()> {
        let mut state = self.state.lock();
        let mut next = state.clone();
        change(&mut next);
        let body = serde_json::to_vec(&next)?;
        checked_file::write(
            self.backend.as_ref(),
            &self.state_path,
            checked_file::RAFT_STATE_MAGIC,
            &body,
        )?;
        *state = next;
        Ok(())
    }

    /// Entries with index in `[from, to)`, read from the engine log.
    fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry<TypeConfig>>> {
        let start = self.log.log_start_offset();
        let end = self.log.log_end_offset();
        let (from, to) = (from.max(start), to.min(end));
        let mut out = Vec::new();
        let mut next = from;
        // Bounded: every round moves `next` past at least one entry or stops.
        while next < to {
            let slice = self.log.read(next, 1 << 20)?;
            let bytes: &[u8] = &slice;
            if bytes.is_empty() {
                break;
            }
            let before = next;
            let mut pos = 0usize;
            while let Some(rest) = bytes.get(pos..) {
                if rest.is_empty() || next >= to {
                    break;
                }
                let h = BatchHeader::parse(rest)?;
                let batch = rest
                    .get(..h.total_len())
                    .context("metadata log: a batch runs past what was read")?;
                pos += h.total_len();
                let base = u64::try_from(h.base_offset).unwrap_or(0);
                if base < next {
                    continue;
                }
                let records = record::decode_records(&h, batch)?;
                let value = records
                    .first()
                    .and_then(|r| r.value.as_deref())
                    .context("metadata log: an entry without a value")?;
                let entry: Entry<TypeConfig> = serde_json::from_slice(value)
                    .with_context(|| format!("metadata log: decoding entry {base}"))?;
                anyhow::ensure!(
                    entry.log_id.index == base,
                    "metadata log: entry at offset {base} says index {}",
                    entry.log_id.index
                );
                out.push(entry);
                next = base + 1;
            }
            if next == before {
                break;
            }
        }
        Ok(out)
    }

    fn purge(&self, log_id: LogId<NodeId>) -> Result<()> {
        // The purged id first: after a crash between the two, the log may hold entries below
        // it, which openraft never reads again.
        self.save_state(|s| s.last_purged = Some(log_id))?;
        let next = log_id.index.saturating_add(1);
        if next > self.log.log_end_offset() {
            // A snapshot from the leader covers more than this log holds.
            self.log.truncate_fully_and_start_at(next)?;
        } else {
            self.log.delete_records_before(next)?;
        }
        Ok(())
    }

    fn append(&self, entries: Vec<Entry<TypeConfig>>) -> Result<()> {
        for e in entries {
            let body = serde_json::to_vec(&e)?;
            let mut b = BatchBuilder::new(Compression::None);
            b.push(NewRecord::new(body))?;
            let mut batch = b.build()?;
            let index = i64::try_from(e.log_id.index).context("index over i64")?;
            let term = i32::try_from(e.log_id.leader_id.term).unwrap_or(i32::MAX);
            // baseOffset and partitionLeaderEpoch: outside the CRC (FORMAT.md §3).
            if let Some(b) = batch.get_mut(0..8) {
                b.copy_from_slice(&index.to_be_bytes());
            }
            if let Some(b) = batch.get_mut(12..16) {
                b.copy_from_slice(&term.to_be_bytes());
            }
            self.log.append_replica(batch)?;
        }
        self.log.sync()?;
        Ok(())
    }
}

fn range_to(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let (from, to) = range_to(&range);
        self.blocking(move |i| i.entries(from, to).map_err(read_err))
            .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.blocking(|i| {
            let last_purged = i.state.lock().last_purged;
            let (start, end) = (i.log.log_start_offset(), i.log.log_end_offset());
            let last = if end > start {
                i.entries(end - 1, end)
                    .map_err(read_err)?
                    .last()
                    .map(|e| e.log_id)
            } else {
                None
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last.or(last_purged),
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.blocking(move |i| {
            i.save_state(|s| s.vote = Some(vote))
                .map_err(|e| StorageIOError::write_vote(AnyError::error(format!("{e:#}"))).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.state.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |i| {
            i.save_state(|s| s.committed = committed)
                .map_err(|e| io_err(format!("{e:#}")))
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.state.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let res = self
            .blocking(move |i| i.append(entries).map_err(|e| io_err(format!("{e:#}"))))
            .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |i| {
            i.log
                .truncate_to(log_id.index)
                .map(drop)
                .map_err(|e| io_err(format!("{e:#}")))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |i| i.purge(log_id).map_err(|e| io_err(format!("{e:#}"))))
            .await
    }
}
