//! The metadata quorum's state machine: the committed metadata log applied to a
//! [`MetadataImage`], with snapshots so that a restart does not replay the log from its start.
//!
//! The image is in memory; a snapshot is the image and openraft's position, kept in
//! `<data-dir>/cluster/metadata-snapshot` (a checked file, `storage/FORMAT.md` §13). On start the
//! snapshot is loaded and openraft replays the committed entries after it. Every applied entry
//! publishes the new image on a watch channel: the broker's side follows it.

// openraft's storage traits return its `StorageError`, which is large: not ours to box.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_storage::io::IoBackend;
use tokio::sync::watch;

use super::checked_file;
use super::image::MetadataImage;
use super::log_store::CLUSTER_DIR;
use super::raft::{CommandReply, NodeId, TypeConfig};

use strata_storage::checked::SNAPSHOT_FILE;
/// Largest snapshot read back (the image of a large cluster is a few MiB).
const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotBody {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: MetadataImage,
}

#[derive(Debug)]
struct Inner {
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// The last snapshot built or installed, as its file holds it.
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine. Clones share one image.
#[derive(Debug, Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
    backend: Arc<dyn IoBackend>,
    path: PathBuf,
    published: Arc<watch::Sender<Arc<MetadataImage>>>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Loads the last snapshot under `data_dir`, if any.
    pub fn open(data_dir: &Path, backend: Arc<dyn IoBackend>) -> Result<Self> {
        let dir = data_dir.join(CLUSTER_DIR);
        backend
            .create_dir_all(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(SNAPSHOT_FILE);
        let mut inner = Inner {
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        if let Some(bytes) =
            checked_file::read(&path, checked_file::SNAPSHOT_MAGIC, MAX_SNAPSHOT_BYTES)?
        {
            let body: SnapshotBody = serde_json::from_slice(&bytes)
                .with_context(|| format!("decoding {}", path.display()))?;
            inner.image = body.image;
            inner.last_applied = body.meta.last_log_id;
            inner.membership = body.meta.last_membership.clone();
            inner.snapshot = Some((body.meta, bytes));
        }
        let published = Arc::new(watch::channel(Arc::new(inner.image.clone())).0);
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(inner)),
            backend,
            path,
            published,
        })
    }

    /// The image as last applied, and a receiver told of every later one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.published.subscribe()
    }

    /// The image as last applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.published.borrow().clone()
    }

    fn publish(&self, image: MetadataImage) {
        self.published.send_replace(Arc::new(image));
    }

    fn store_snapshot(&self, meta: &SnapshotMeta<NodeId, BasicNode>, body: &[u8]) -> Result<()> {
        let _ = meta;
        checked_file::write(
            self.backend.as_ref(),
            &self.path,
            checked_file::SNAPSHOT_MAGIC,
            body,
        )
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, bytes) = {
            let mut g = self.inner.lock();
            g.snapshots_built += 1;
            let snapshot_id = match g.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, g.snapshots_built),
                None => format!("--{}", g.snapshots_built),
            };
            let meta = SnapshotMeta {
                last_log_id: g.last_applied,
                last_membership: g.membership.clone(),
                snapshot_id,
            };
            let body = SnapshotBody {
                meta: meta.clone(),
                image: g.image.clone(),
            };
            (meta, serde_json::to_vec(&body).map_err(sm_err)?)
        };
        let this = self.clone();
        let (m, b) = (meta.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || this.store_snapshot(&m, &b))
            .await
            .map_err(sm_err)?
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(meta.signature()),
                    AnyError::error(format!("{e:#}")),
                ))
            })?;
        self.inner.lock().snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let g = self.inner.lock();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandReply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        let image = {
            let mut g = self.inner.lock();
            for entry in entries {
                let index = entry.log_id.index;
                g.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(cmd) => g.image.apply(index, &cmd.records),
                    EntryPayload::Membership(m) => {
                        g.membership = StoredMembership::new(Some(entry.log_id), m);
                    }
                }
                g.image.applied_index = g.image.applied_index.max(index);
                replies.push(CommandReply { index });
            }
            g.image.clone()
        };
        self.publish(image);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let read_err = |e: &dyn std::fmt::Display| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(e.to_string()),
            ))
        };
        // From another node: hostile until decoded (bounded by the frame it came in).
        let body: SnapshotBody = serde_json::from_slice(&bytes).map_err(|e| read_err(&e))?;
        let this = self.clone();
        let (m, b) = (meta.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || this.store_snapshot(&m, &b))
            .await
            .map_err(sm_err)?
            .map_err(|e| read_err(&format!("{e:#}")))?;
        let image = {
            let mut g = self.inner.lock();
            g.image = body.image;
            g.last_applied = meta.last_log_id;
            g.membership = meta.last_membership.clone();
            g.snapshot = Some((meta.clone(), bytes));
            g.image.clone()
        };
        self.publish(image);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let g = self.inner.lock();
        Ok(g.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}
