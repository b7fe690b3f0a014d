//! The controller listener: accepts connections from other nodes (and `strata cluster
//! status`), reads one request frame at a time and answers it. Raft RPCs go to openraft, the
//! rest to the [`Controller`]. Treated like the client listener: a bounded number of
//! connections, a bounded frame, a connection idle too long is closed, and a frame that does
//! not decode is answered with an error and closes its connection only.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::controller::Controller;
use super::image::MetadataImage;
use super::raft::{NodeId, Raft};
use super::rpc::{self, Envelope, Request, Response};
use crate::broker::error::{ErrorKind, err};

/// Connections the controller listener holds at once (peers, brokers and status calls need a
/// handful; the rest wait in the kernel's backlog).
pub const MAX_CONNECTIONS: usize = 256;
/// A connection that sends no whole frame for this long is closed: a voter's kept connection
/// carries a heartbeat every fifth of the election timeout, a broker opens one per request, so
/// only a stalled or hostile peer waits this long, and it holds one of the
/// [`MAX_CONNECTIONS`] slots for at most this long per frame.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a frame must match to be served: Raft RPCs only from a voter, and every request from
/// this cluster (when both sides know its id).
#[derive(Debug, Clone)]
pub struct Guard {
    pub voters: std::collections::BTreeSet<NodeId>,
    pub image: watch::Receiver<Arc<MetadataImage>>,
}

impl Guard {
    /// Why `env` is refused, if it is.
    fn refuse(&self, env: &Envelope) -> Option<String> {
        let own = self.image.borrow().cluster_id.clone();
        if !own.is_empty() && !env.cluster_id.is_empty() && own != env.cluster_id {
            return Some(format!(
                "the sender is in cluster {:?}, this node in {own:?}",
                env.cluster_id
            ));
        }
        let from = match &env.request {
            Request::AppendEntries(r) => Some(r.vote.leader_id().voted_for()),
            Request::Vote(r) => Some(r.vote.leader_id().voted_for()),
            Request::InstallSnapshot(r) => Some(r.vote.leader_id().voted_for()),
            _ => return None,
        };
        match from.flatten() {
            Some(id) if self.voters.contains(&id) => None,
            other => Some(format!("a Raft request from {other:?}, not a voter here")),
        }
    }
}

/// Serves `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    raft: Raft,
    controller: Arc<Controller>,
    guard: Guard,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        stream.set_nodelay(true).ok();
        let (raft, controller, guard, stop) = (
            raft.clone(),
            controller.clone(),
            guard.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = connection(stream, raft, controller, guard, stop).await {
                tracing::debug!(%peer, error = %format!("{e:#}"), "controller connection closed");
            }
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    raft: Raft,
    controller: Arc<Controller>,
    guard: Guard,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(IDLE_TIMEOUT, rpc::read_frame(&mut stream)) => match f {
                Ok(f) => f?,
                Err(_) => anyhow::bail!("idle for {IDLE_TIMEOUT:?}"),
            },
            _ = stop.changed() => return Ok(()),
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        let env: Envelope = match serde_json::from_slice(&frame) {
            Ok(r) => r,
            Err(e) => {
                let answer = Response::Error(err(
                    ErrorKind::InvalidRequest,
                    format!("the request did not decode: {e}"),
                ));
                rpc::write_frame(&mut stream, &answer).await.ok();
                anyhow::bail!("a request that did not decode: {e}");
            }
        };
        if let Some(why) = guard.refuse(&env) {
            let answer = Response::Error(err(ErrorKind::InvalidRequest, why.clone()));
            rpc::write_frame(&mut stream, &answer).await.ok();
            anyhow::bail!("refused: {why}");
        }
        let resp = match env.request {
            Request::AppendEntries(r) => Response::AppendEntries(raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                Response::InstallSnapshot(raft.install_snapshot(r).await)
            }
            other => controller.handle(other).await,
        };
        rpc::write_frame(&mut stream, &resp).await?;
    }
}
