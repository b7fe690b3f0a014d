//! openraft's network: its three RPCs to another voter's controller listener, one kept TCP
//! connection per peer (re-made after any error), each call bounded by openraft's own timeout.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::raft::{NodeId, TypeConfig};
use super::rpc::{self, Request, Response};

/// Makes a [`Peer`] per voter. A voter's address is this node's `controller.quorum.voters`
/// entry (as in Kafka, each node's own setting), the one in the membership only if it has none.
#[derive(Debug, Clone)]
pub struct Network {
    pub voters: std::collections::BTreeMap<NodeId, String>,
    /// The cluster id each frame carries (from the applied image).
    pub image: tokio::sync::watch::Receiver<std::sync::Arc<super::image::MetadataImage>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: self
                .voters
                .get(&target)
                .cloned()
                .unwrap_or_else(|| node.addr.clone()),
            conn: None,
            image: self.image.clone(),
        }
    }
}

/// The connection to one voter.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    addr: String,
    conn: Option<tokio::net::TcpStream>,
    image: tokio::sync::watch::Receiver<std::sync::Arc<super::image::MetadataImage>>,
}

type NetErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl Peer {
    async fn send<E: std::error::Error>(
        &mut self,
        req: Request,
        option: &RPCOption,
    ) -> Result<Response, NetErr<E>> {
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => rpc::connect(&self.addr, timeout).await.map_err(|e| {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                    "node {} at {}: {e:#}",
                    self.target, self.addr
                ))))
            })?,
        };
        let cluster_id = self.image.borrow().cluster_id.clone();
        match rpc::call(&mut conn, &cluster_id, &req, timeout).await {
            Ok(resp) => {
                self.conn = Some(conn);
                Ok(resp)
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(format!("node {} at {}: {e:#}", self.target, self.addr)),
            ))),
        }
    }
}

fn unexpected<E: std::error::Error>(what: &str, got: &Response) -> NetErr<E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
        "expected a {what} response, got {got:?}"
    ))))
}

fn remote<E: std::error::Error>(target: NodeId, e: RaftError<NodeId, E>) -> NetErr<E> {
    RPCError::RemoteError(openraft::error::RemoteError::new(target, e))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, NetErr<openraft::error::Infallible>> {
        match self.send(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(r) => r.map_err(|e| remote(self.target, e)),
            other => Err(unexpected("AppendEntries", &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, NetErr<InstallSnapshotError>> {
        match self.send(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(r) => r.map_err(|e| remote(self.target, e)),
            other => Err(unexpected("InstallSnapshot", &other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, NetErr<openraft::error::Infallible>> {
        match self.send(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => r.map_err(|e| remote(self.target, e)),
            other => Err(unexpected("Vote", &other)),
        }
    }
}
