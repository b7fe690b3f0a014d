//! What nodes say to each other on the controller listener: openraft's three RPCs, and the
//! brokers' requests to the active controller (KRaft's BrokerRegistration, BrokerHeartbeat,
//! and the admin requests a broker forwards, as Kafka forwards them with `Envelope`).
//!
//! Framing: a 4-byte big-endian length, then that many bytes of JSON (one request, or one
//! response to the request before it on the same connection). Frames come from the network,
//! so they are hostile: a length above [`MAX_FRAME`] closes the connection before anything is
//! allocated, a body that does not decode is answered [`Response::Error`] and the connection
//! closed, and nothing in a frame can panic the node (serde_json bounds nesting at 128).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::raft::{NodeId, TypeConfig};
use crate::broker::error::BrokerError;

/// Largest frame either side accepts. Snapshots travel in chunks of
/// [`super::SNAPSHOT_CHUNK_BYTES`], a few MiB once encoded.
pub const MAX_FRAME: usize = 16 << 20;

/// A topic to create, as CreateTopics names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions`.
    pub partitions: i32,
    /// -1: `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica lists, one per partition (CreateTopics' `assignments`), or empty.
    pub assignments: Vec<Vec<i32>>,
    pub configs: std::collections::BTreeMap<String, String>,
}

/// Every request frame: the request and the sender's cluster id (empty until the quorum wrote
/// one, and from `strata cluster status`). A node that knows its cluster id refuses a frame
/// from another cluster: a misconfigured voter list must not mix two quorums (Kafka checks
/// `cluster.id` in its Raft requests for the same reason).
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub cluster_id: String,
    pub request: Request,
}

/// A request to a node's controller listener.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A broker process started (KRaft's BrokerRegistration).
    RegisterBroker {
        id: i32,
        incarnation: String,
        host: String,
        port: u16,
    },
    /// A registered broker is alive and has applied the metadata log up to `applied_index`
    /// (KRaft's BrokerHeartbeat).
    Heartbeat {
        id: i32,
        epoch: u64,
        applied_index: u64,
        /// Partitions this broker holds whose log is offline (a failed or full disk): their
        /// leadership moves to another in-sync replica (Kafka: an offline log directory).
        #[serde(default)]
        offline: Vec<(String, i32)>,
    },
    /// The broker is stopping cleanly (KRaft's heartbeat with `want_shut_down`): fence it
    /// now rather than after `broker.session.timeout.ms`.
    ShutdownBroker {
        id: i32,
        epoch: u64,
    },
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    /// Replace `topic`'s config overrides (validated by the asking broker).
    SetTopicConfigs {
        topic: String,
        configs: std::collections::BTreeMap<String, String>,
    },
    /// Grow `topic` to `count` partitions.
    CreatePartitions {
        topic: String,
        count: i32,
        validate_only: bool,
    },
    /// The quorum and the brokers as this node sees them (`strata cluster status`).
    Status,
    /// Create `__consumer_offsets` if it does not exist yet (a FindCoordinator needs it).
    EnsureOffsetsTopic,
    /// A partition's leader asks to change its ISR (Kafka's AlterPartition).
    AlterPartition {
        broker: i32,
        topic: String,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// The metadata image, once the active controller's is newer than `known` (the applied
    /// index the asking broker has), waiting up to `wait_ms` for one: how a broker-only node
    /// follows the metadata log.
    FetchImage {
        known: u64,
        wait_ms: u64,
    },
    /// A block of producer ids for a broker (KIP-730's AllocateProducerIds).
    AllocateProducerIds {
        broker: i32,
    },
}

/// One node's view of the quorum, for `strata cluster status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub node_id: NodeId,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
    /// Each voter's controller listener, as the asked node's `controller.quorum.voters` says.
    pub voter_addrs: std::collections::BTreeMap<NodeId, String>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// The last index purged from the log (covered by a snapshot).
    pub purged_index: Option<u64>,
    /// On the leader: each voter's last matched log index.
    pub replication: Vec<(NodeId, Option<u64>)>,
    pub cluster_id: String,
    /// (id, host, port, fenced, epoch)
    pub brokers: Vec<(i32, String, u16, bool, u64)>,
    pub topics: usize,
    pub partitions: usize,
    pub leaderless: Vec<(String, i32)>,
    /// Partitions whose ISR is smaller than their replicas: (topic, partition, replicas, isr).
    #[serde(default)]
    pub under_replicated: Vec<(String, i32, Vec<i32>, Vec<i32>)>,
}

/// The answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The broker's epoch: the log index of its registration.
    Registered {
        epoch: u64,
    },
    /// Whether the broker is fenced after this heartbeat.
    Heartbeat {
        fenced: bool,
    },
    /// One result per topic asked, in order.
    Topics(Vec<(String, Result<(), BrokerError>)>),
    Partitions(Result<(), BrokerError>),
    /// A change that succeeded or not.
    Done(Result<(), BrokerError>),
    Status(Box<Status>),
    /// The metadata image (`None`: nothing newer than the asker's within the wait).
    Image(Option<Box<super::image::MetadataImage>>),
    /// Producer ids `[start, start + count)` are the asking broker's.
    ProducerIds {
        start: i64,
        count: i64,
    },
    /// This node is not the active controller; `leader` is who is, if known.
    NotController {
        leader: Option<NodeId>,
    },
    /// The request failed as a whole (it did not decode, the broker epoch is stale, ...).
    Error(BrokerError),
}

/// Reads one frame, `None` at a clean end of stream. Errors on a length over [`MAX_FRAME`]
/// (before allocating) or a stream cut inside a frame.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading a frame length"),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        bail!("frame of {len} bytes is over the {MAX_FRAME}-byte limit");
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .await
        .with_context(|| format!("reading a frame of {len} bytes"))?;
    Ok(Some(buf))
}

/// Writes `msg` as one frame.
pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(w: &mut W, msg: &T) -> Result<()> {
    let body = serde_json::to_vec(msg).context("encoding a frame")?;
    if body.len() > MAX_FRAME {
        bail!(
            "frame of {} bytes is over the {MAX_FRAME}-byte limit",
            body.len()
        );
    }
    let len = u32::try_from(body.len()).context("frame length")?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    w.write_all(&out).await.context("writing a frame")?;
    Ok(())
}

/// The request as [`Envelope`] serialises it, without taking it.
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    cluster_id: &'a str,
    request: &'a Request,
}

/// One request/response exchange on a new or kept connection, bounded by `timeout`.
pub async fn call(
    stream: &mut tokio::net::TcpStream,
    cluster_id: &str,
    req: &Request,
    timeout: Duration,
) -> Result<Response> {
    tokio::time::timeout(timeout, async {
        let env = EnvelopeRef {
            cluster_id,
            request: req,
        };
        write_frame(stream, &env).await?;
        let frame = read_frame(stream)
            .await?
            .context("the peer closed the connection")?;
        serde_json::from_slice::<Response>(&frame).context("decoding a response")
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
}

/// Connects to `addr` within `timeout`, with `TCP_NODELAY`.
pub async fn connect(addr: &str, timeout: Duration) -> Result<tokio::net::TcpStream> {
    let s = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {addr}: no answer within {timeout:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true).ok();
    Ok(s)
}
