//! Several brokers under a Raft metadata quorum: KRaft's role (KIP-500, KIP-595, KIP-631),
//! with consensus by openraft (an existing, tested Raft library; Strata writes none).
//!
//! * [`image`]: the metadata records and the image they build (pure, deterministic).
//! * [`raft`]: openraft's type configuration; [`log_store`]: the metadata log on the storage
//!   engine; [`state_machine`]: the image and its snapshots; [`network`] and [`rpc`]: what
//!   nodes send each other on the controller listener; [`server`]: that listener.
//! * [`controller`]: what the Raft leader decides (registrations, fencing, placement).
//! * [`link`]: a broker's side (heartbeats, forwarded admin requests, the image it serves);
//!   [`follow`]: applying each new image to the broker's local partitions.
//! * [`node`]: starting and stopping all of it for `strata serve`.
//!
//! `process.roles` unset: none of this runs, and the broker is the single node it always was.

pub mod checked_file;
pub mod controller;
pub mod fetcher;
pub mod follow;
pub mod image;
pub mod link;
pub mod log_store;
pub mod network;
pub mod node;
pub mod offsets;
pub mod raft;
pub mod rpc;
pub mod server;
pub mod state_machine;
pub mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::broker::config::BrokerConfig;
use controller::ControllerSettings;
use raft::NodeId;

/// Snapshot chunk size sent to a voter that is far behind (each chunk is one frame).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

/// A node's settings for the cluster, from Kafka's property names.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: NodeId,
    /// `process.roles` has `broker`.
    pub broker: bool,
    /// `process.roles` has `controller`.
    pub controller: bool,
    /// `controller.quorum.voters`: id -> `host:port`.
    pub voters: BTreeMap<NodeId, String>,
    /// Where this node's controller listener binds (`None` on a broker-only node).
    pub controller_listen: Option<SocketAddr>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `controller.quorum.election.timeout.ms`: elections start after this to twice it.
    pub election_timeout: Duration,
    pub controller_settings: ControllerSettings,
    /// `strata.metadata.snapshot.entries`.
    pub snapshot_every: u64,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_max: Duration,
    /// `replica.fetch.max.bytes`, `replica.fetch.wait.max.ms`.
    pub fetcher: fetcher::FetcherSettings,
}

/// Parses `controller.quorum.voters` (`1@127.0.0.1:19093,2@...`).
pub fn parse_voters(v: &str) -> Result<BTreeMap<NodeId, String>> {
    let mut out = BTreeMap::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('@').with_context(|| {
            format!("controller.quorum.voters entry {part:?}: expected ID@HOST:PORT")
        })?;
        let id: NodeId = id
            .parse()
            .with_context(|| format!("controller.quorum.voters entry {part:?}: bad id"))?;
        let (_, port) = addr.rsplit_once(':').with_context(|| {
            format!("controller.quorum.voters entry {part:?}: expected HOST:PORT")
        })?;
        port.parse::<u16>()
            .with_context(|| format!("controller.quorum.voters entry {part:?}: bad port"))?;
        if out.insert(id, addr.to_string()).is_some() {
            bail!("controller.quorum.voters names node {id} twice");
        }
    }
    Ok(out)
}

impl ClusterSettings {
    /// The cluster settings, or `None` when `process.roles` is unset (the single-node broker).
    pub fn from_config(c: &BrokerConfig) -> Result<Option<Self>> {
        let roles = c.get("process.roles");
        if roles.trim().is_empty() {
            return Ok(None);
        }
        let (mut broker, mut controller) = (false, false);
        for r in roles.split(',').map(str::trim) {
            match r {
                "broker" => broker = true,
                "controller" => controller = true,
                other => bail!("process.roles: unknown role {other:?} (broker, controller)"),
            }
        }
        let node_id = c.node_id()?;
        let node_id = NodeId::try_from(node_id).context("node.id must not be negative")?;
        let voters = parse_voters(c.get("controller.quorum.voters"))?;
        if voters.is_empty() {
            bail!("process.roles is set: controller.quorum.voters must name the voters");
        }
        let controller_listen = match (controller, voters.get(&node_id)) {
            (true, None) => bail!("node.id {node_id} is not among controller.quorum.voters"),
            // A broker-only node votes for nothing and has no controller listener.
            (false, Some(_)) => bail!(
                "process.roles=broker: node.id {node_id} is a voter in controller.quorum.voters; a voter needs the controller role"
            ),
            (false, None) => None,
            (true, Some(own)) => Some(match c.controller_listener()? {
                Some(a) => a,
                None => own
                    .parse()
                    .with_context(|| format!("controller.quorum.voters: {own:?} is not IP:PORT"))?,
            }),
        };
        let ms = |k: &str| -> Result<Duration> {
            let v: u64 = c
                .get(k)
                .parse()
                .with_context(|| format!("{k}: expected milliseconds"))?;
            if v == 0 {
                bail!("{k} must be positive");
            }
            Ok(Duration::from_millis(v))
        };
        let heartbeat_interval = ms("broker.heartbeat.interval.ms")?;
        let session_timeout = ms("broker.session.timeout.ms")?;
        if session_timeout <= heartbeat_interval {
            bail!("broker.session.timeout.ms must be above broker.heartbeat.interval.ms");
        }
        let rf: i16 = c
            .get("default.replication.factor")
            .parse()
            .context("default.replication.factor: expected a number")?;
        let offsets_partitions: i32 = c
            .get("offsets.topic.num.partitions")
            .parse()
            .context("offsets.topic.num.partitions: expected a number")?;
        if !(1..=strata_storage::meta::MAX_PARTITIONS).contains(&offsets_partitions) {
            bail!("offsets.topic.num.partitions must be 1 or more");
        }
        Ok(Some(ClusterSettings {
            node_id,
            broker,
            controller,
            voters: voters.clone(),
            controller_listen,
            heartbeat_interval,
            election_timeout: ms("controller.quorum.election.timeout.ms")?,
            replica_lag_max: ms("replica.lag.time.max.ms")?,
            fetcher: fetcher::FetcherSettings {
                max_bytes: c
                    .get("replica.fetch.max.bytes")
                    .parse::<i32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .context("replica.fetch.max.bytes: expected a positive number")?,
                max_wait: ms("replica.fetch.wait.max.ms")?,
            },
            snapshot_every: c
                .get("strata.metadata.snapshot.entries")
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 2)
                .context("strata.metadata.snapshot.entries: expected a number of 2 or more")?,
            controller_settings: ControllerSettings {
                session_timeout,
                num_partitions: c.num_partitions()?,
                default_replication_factor: rf,
                offsets_partitions,
                offsets_replication_factor: c.offsets_replication_factor()?,
                leader_rebalance: match c.get("auto.leader.rebalance.enable") {
                    "true" => Some(Duration::from_secs(
                        c.get("leader.imbalance.check.interval.seconds")
                            .parse::<u64>()
                            .ok()
                            .filter(|s| *s >= 1)
                            .context("leader.imbalance.check.interval.seconds: expected a number of seconds, at least 1")?,
                    )),
                    _ => None,
                },
                offsets_segment_bytes: c.offsets_segment_bytes()?,
                voters,
            },
        }))
    }
}

/// Java's `String.hashCode` (over UTF-16 code units), as Kafka hashes a group id to its
/// `__consumer_offsets` partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group: `abs(hashCode) % partitions`
/// (Kafka's `Utils.abs` maps `i32::MIN` to 0).
pub fn offsets_partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_hash_matches_java() {
        // "".hashCode() == 0, "a" == 97, "hello" == 99162322, "group-1" per Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(offsets_partition_for("polygenelubricants", 50), 0);
        assert_eq!(offsets_partition_for("hello", 50), 99_162_322 % 50);
    }

    #[test]
    fn voters_parse_and_refuse_duplicates() {
        let v = parse_voters("1@127.0.0.1:19093, 2@127.0.0.1:29093").unwrap_or_default();
        assert_eq!(v.get(&2).map(String::as_str), Some("127.0.0.1:29093"));
        assert!(parse_voters("1@a:1,1@b:2").is_err());
        assert!(parse_voters("x@a:1").is_err());
        assert!(parse_voters("1@a").is_err());
    }
}
