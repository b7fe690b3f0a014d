//! Starting a node of the cluster: the metadata log and state machine, openraft, the
//! controller listener and the active-controller duties; and stopping them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use openraft::{BasicNode, SnapshotPolicy};
use strata_storage::io::IoBackend;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::controller::Controller;
use super::link::Link;
use super::log_store::LogStore;
use super::network::Network;
use super::raft::Raft;
use super::state_machine::StateMachine;
use super::{ClusterSettings, SNAPSHOT_CHUNK_BYTES, server};

/// A running node of the metadata quorum.
pub struct ClusterNode {
    pub settings: ClusterSettings,
    pub raft: Raft,
    pub state_machine: StateMachine,
    pub controller: Arc<Controller>,
    pub controller_addr: std::net::SocketAddr,
    log_store: LogStore,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("settings", &self.settings)
            .field("controller_addr", &self.controller_addr)
            .finish_non_exhaustive()
    }
}

/// openraft's settings from Kafka's: heartbeats well inside the election timeout.
pub fn raft_config(settings: &ClusterSettings) -> Result<openraft::Config> {
    let election = u64::try_from(settings.election_timeout.as_millis()).unwrap_or(1000);
    let config = openraft::Config {
        cluster_name: "strata".into(),
        heartbeat_interval: (election / 5).max(20),
        election_timeout_min: election,
        election_timeout_max: election * 2,
        install_snapshot_timeout: 4000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
        max_in_snapshot_log_to_keep: settings.snapshot_every / 2,
        purge_batch_size: 1,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    };
    config.validate().context("openraft settings")
}

impl ClusterNode {
    /// Opens the metadata log under `data_dir`, starts openraft (initialising the quorum from
    /// `controller.quorum.voters` on first start: every voter does it with the same voters,
    /// which openraft allows), the controller listener and the controller's duties.
    pub async fn start(
        settings: ClusterSettings,
        data_dir: &Path,
        backend: Arc<dyn IoBackend>,
        stop: watch::Receiver<bool>,
    ) -> Result<Self> {
        let (dir, b) = (data_dir.to_path_buf(), backend.clone());
        let (log_store, state_machine) = tokio::task::spawn_blocking(move || {
            Ok::<_, anyhow::Error>((
                LogStore::open(&dir, b.clone())?,
                StateMachine::open(&dir, b)?,
            ))
        })
        .await
        .context("opening the metadata log")??;
        let addr = settings
            .controller_listen
            .context("a node without the controller role has no quorum to start")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the controller listener {addr}"))?;
        let controller_addr = listener.local_addr()?;
        let raft = Raft::new(
            settings.node_id,
            Arc::new(raft_config(&settings)?),
            Network {
                voters: settings.voters.clone(),
                image: state_machine.subscribe(),
            },
            log_store.clone(),
            state_machine.clone(),
        )
        .await
        .context("starting openraft")?;
        let controller = Arc::new(Controller::new(
            settings.node_id,
            raft.clone(),
            state_machine.clone(),
            settings.controller_settings.clone(),
        ));
        let mut tasks = vec![tokio::spawn(server::serve(
            listener,
            raft.clone(),
            controller.clone(),
            server::Guard {
                voters: settings.voters.keys().copied().collect(),
                image: state_machine.subscribe(),
            },
            stop.clone(),
        ))];
        if !raft.is_initialized().await.context("openraft")? {
            let members: BTreeMap<u64, BasicNode> = settings
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(voters = ?settings.voters, "metadata quorum initialised"),
                Err(e) => tracing::info!(error = %e, "metadata quorum already initialised"),
            }
        }
        let tick = (settings.heartbeat_interval / 4)
            .clamp(Duration::from_millis(50), Duration::from_millis(500));
        tasks.push(tokio::spawn(controller.clone().run(tick, stop)));
        tracing::info!(node = settings.node_id, controller = %controller_addr, "cluster node started");
        Ok(ClusterNode {
            settings,
            raft,
            state_machine,
            controller,
            controller_addr,
            log_store,
            tasks,
        })
    }

    /// Resolves with the reason once this node's Raft stopped for good (its metadata log could
    /// not be written: a failed or full disk). Kafka's broker exits when its metadata log
    /// directory fails; so does this node (the caller shuts down and exits non-zero), rather
    /// than serve a metadata image that no longer moves.
    pub async fn fatal(&self) -> String {
        let mut rx = self.raft.metrics();
        loop {
            if let Err(e) = &rx.borrow_and_update().running_state {
                return e.to_string();
            }
            if rx.changed().await.is_err() {
                return "openraft stopped".into();
            }
        }
    }

    /// The broker side's link to the quorum.
    pub fn link(&self) -> Arc<Link> {
        Arc::new(Link::new(
            i32::try_from(self.settings.node_id).unwrap_or(i32::MAX),
            self.state_machine.subscribe(),
            self.settings.voters.clone(),
        ))
    }

    /// Stops openraft and the listener (the caller has sent `stop`), then closes the log.
    pub async fn shutdown(self) -> Result<()> {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "openraft did not stop cleanly");
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        drop(self.raft);
        let store = self.log_store;
        tokio::task::spawn_blocking(move || store.close())
            .await
            .context("closing the metadata log")?
    }
}
