//! The active controller: what the Raft leader of the metadata quorum decides (KRaft's
//! `QuorumController`). It answers brokers' registrations and heartbeats, fences brokers that
//! fall silent, and validates and places new topics; each decision is a list of records
//! committed to the metadata log before it is answered. On any other voter the same requests
//! are answered `NotController` with the leader, if known.
//!
//! Decisions are made one at a time (a lock around decide-and-commit), each on an image that
//! has applied everything committed before (`ensure_linearizable`), so two decisions never
//! both see the same free name or the same broker state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};

use super::image::{MetadataImage, MetadataRecord, place_replicas};
use super::raft::{Command, NodeId, Raft};
use super::rpc::{NewTopic, Request, Response, Status};
use super::state_machine::StateMachine;
use crate::broker::error::{BrokerError, ErrorKind, err};
use crate::broker::random_u128;

/// The topic holding committed offsets: KRaft creates it on first use; here the first
/// controller creates it with `offsets.topic.num.partitions` partitions (RF 1 in part 1).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Producer ids per block (Kafka's `ProducerIdControlManager` hands out 1000).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// What the controller needs from the node's settings (Kafka's names).
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// `broker.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `offsets.topic.num.partitions`.
    pub offsets_partitions: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_replication_factor: i16,
    /// `leader.imbalance.check.interval.seconds` when `auto.leader.rebalance.enable`.
    pub leader_rebalance: Option<Duration>,
    /// `offsets.topic.segment.bytes`.
    pub offsets_segment_bytes: u64,
    /// `controller.quorum.voters` as this node has it (for `strata cluster status`).
    pub voters: BTreeMap<NodeId, String>,
}

/// The controller role of one voter.
pub struct Controller {
    pub node_id: NodeId,
    raft: Raft,
    sm: StateMachine,
    settings: ControllerSettings,
    /// Serialises decide-and-commit.
    write: tokio::sync::Mutex<()>,
    /// When each broker was last heard from (the active controller's memory, as in Kafka:
    /// heartbeats are not written to the log).
    seen: parking_lot::Mutex<HashMap<i32, Instant>>,
    /// When the last preferred-leader pass ran (the first comes one interval after this node
    /// became the active controller, as Kafka schedules it).
    last_balance: parking_lot::Mutex<Option<Instant>>,
}

/// Preferred-leader elections per pass (Kafka's `maxElectionsPerImbalance`).
const MAX_ELECTIONS_PER_PASS: usize = 1000;

type Refusal = Response;

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.node_id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Controller {
    pub fn new(
        node_id: NodeId,
        raft: Raft,
        sm: StateMachine,
        settings: ControllerSettings,
    ) -> Self {
        Controller {
            node_id,
            raft,
            sm,
            settings,
            write: tokio::sync::Mutex::new(()),
            seen: parking_lot::Mutex::new(HashMap::new()),
            last_balance: parking_lot::Mutex::new(None),
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn not_controller(&self) -> Refusal {
        Response::NotController {
            leader: self.leader().filter(|l| *l != self.node_id),
        }
    }

    /// The decision lock and an image with everything committed applied, or `NotController`.
    async fn fresh(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, Arc<MetadataImage>), Refusal> {
        let g = self.write.lock().await;
        if self.raft.ensure_linearizable().await.is_err() {
            return Err(self.not_controller());
        }
        Ok((g, self.sm.image()))
    }

    /// Commits `records` as one entry; its index once applied.
    async fn commit(&self, records: Vec<MetadataRecord>) -> Result<u64, Refusal> {
        match self.raft.client_write(Command { records }).await {
            Ok(r) => Ok(r.data.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Response::NotController {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(Response::Error(err(
                ErrorKind::NotController,
                format!("the metadata quorum did not commit: {e}"),
            ))),
        }
    }

    /// Answers a broker's request (not openraft's: the server hands those to openraft).
    pub async fn handle(&self, req: Request) -> Response {
        let res = match req {
            Request::RegisterBroker {
                id,
                incarnation,
                host,
                port,
            } => self.register(id, incarnation, host, port).await,
            Request::Heartbeat {
                id,
                epoch,
                applied_index,
                offline,
            } => self.heartbeat(id, epoch, applied_index, offline).await,
            Request::ShutdownBroker { id, epoch } => self.shutdown_broker(id, epoch).await,
            Request::CreateTopics {
                topics,
                validate_only,
            } => self.create_topics(topics, validate_only).await,
            Request::DeleteTopics { names } => self.delete_topics(names).await,
            Request::SetTopicConfigs { topic, configs } => {
                self.set_topic_configs(topic, configs).await
            }
            Request::CreatePartitions {
                topic,
                count,
                validate_only,
            } => self.create_partitions(topic, count, validate_only).await,
            Request::Status => Ok(Response::Status(Box::new(self.status()))),
            Request::EnsureOffsetsTopic => self.ensure_offsets_topic().await,
            Request::FetchImage { known, wait_ms } => self.fetch_image(known, wait_ms).await,
            Request::AlterPartition {
                broker,
                topic,
                partition,
                leader_epoch,
                isr,
            } => {
                self.alter_partition(broker, topic, partition, leader_epoch, isr)
                    .await
            }
            Request::AllocateProducerIds { broker } => self.allocate_producer_ids(broker).await,
            Request::AppendEntries(_) | Request::Vote(_) | Request::InstallSnapshot(_) => {
                Ok(Response::Error(err(
                    ErrorKind::InvalidRequest,
                    "a Raft RPC reached the controller",
                )))
            }
        };
        res.unwrap_or_else(|refusal| refusal)
    }

    async fn register(
        &self,
        id: i32,
        incarnation: String,
        host: String,
        port: u16,
    ) -> Result<Response, Refusal> {
        if id < 0 {
            return Ok(Response::Error(err(
                ErrorKind::InvalidRequest,
                format!("broker id {id} is negative"),
            )));
        }
        let (_g, image) = self.fresh().await?;
        // The same process registering again (its answer was lost): same epoch.
        if let Some(b) = image.brokers.get(&id)
            && b.incarnation == incarnation
        {
            self.seen.lock().insert(id, Instant::now());
            return Ok(Response::Registered { epoch: b.epoch });
        }
        let epoch = self
            .commit(vec![MetadataRecord::RegisterBroker {
                id,
                incarnation,
                host,
                port,
            }])
            .await?;
        self.seen.lock().insert(id, Instant::now());
        tracing::info!(broker = id, epoch, "broker registered");
        Ok(Response::Registered { epoch })
    }

    async fn heartbeat(
        &self,
        id: i32,
        epoch: u64,
        applied: u64,
        offline: Vec<(String, i32)>,
    ) -> Result<Response, Refusal> {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            return Err(self.not_controller());
        }
        let image = self.sm.image();
        let Some(b) = image.brokers.get(&id) else {
            return Ok(Response::Error(err(
                ErrorKind::StaleBrokerEpoch,
                format!("broker {id} is not registered"),
            )));
        };
        if b.epoch != epoch {
            return Ok(Response::Error(err(
                ErrorKind::StaleBrokerEpoch,
                format!(
                    "broker {id} heartbeats with epoch {epoch}, registered as {}",
                    b.epoch
                ),
            )));
        }
        self.seen.lock().insert(id, Instant::now());
        if !offline.is_empty() {
            self.replicas_offline(id, &offline).await?;
        }
        if !b.fenced {
            return Ok(Response::Heartbeat { fenced: false });
        }
        // Unfenced once it applied the log up to its own registration (Kafka: caught up).
        if applied < b.epoch {
            return Ok(Response::Heartbeat { fenced: true });
        }
        let (_g, image) = self.fresh().await?;
        if image
            .brokers
            .get(&id)
            .is_some_and(|b| b.fenced && b.epoch == epoch)
        {
            self.commit(vec![MetadataRecord::UnfenceBroker { id }])
                .await?;
            tracing::info!(broker = id, "broker unfenced");
        }
        Ok(Response::Heartbeat { fenced: false })
    }

    /// Moves leadership and ISR membership off a broker's offline replicas (only those where it
    /// leads or is in an ISR of more than one: nothing else changes).
    async fn replicas_offline(&self, id: i32, offline: &[(String, i32)]) -> Result<(), Refusal> {
        let image = self.sm.image();
        let affected = |image: &MetadataImage| -> Vec<MetadataRecord> {
            offline
                .iter()
                .take(100_000)
                .filter(|(t, p)| {
                    image
                        .partition(t, *p)
                        .is_some_and(|x| x.isr.contains(&id) && x.isr.len() > 1)
                })
                .map(|(t, p)| MetadataRecord::ReplicaOffline {
                    topic: t.clone(),
                    partition: *p,
                    broker: id,
                })
                .collect()
        };
        if affected(&image).is_empty() {
            return Ok(());
        }
        let (_g, image) = self.fresh().await?;
        let records = affected(&image);
        if !records.is_empty() {
            tracing::warn!(
                broker = id,
                partitions = records.len(),
                "replicas offline on a broker: leadership and ISR move off them"
            );
            self.commit(records).await?;
        }
        Ok(())
    }

    async fn shutdown_broker(&self, id: i32, epoch: u64) -> Result<Response, Refusal> {
        let (_g, image) = self.fresh().await?;
        match image.brokers.get(&id) {
            Some(b) if b.epoch == epoch => {
                if !b.fenced {
                    self.commit(vec![MetadataRecord::FenceBroker { id }])
                        .await?;
                    tracing::info!(broker = id, "broker fenced: it is shutting down");
                }
                self.seen.lock().remove(&id);
                Ok(Response::Heartbeat { fenced: true })
            }
            _ => Ok(Response::Error(err(
                ErrorKind::StaleBrokerEpoch,
                format!("broker {id} is not registered with epoch {epoch}"),
            ))),
        }
    }

    fn plan_topic(
        &self,
        image: &MetadataImage,
        t: &NewTopic,
    ) -> Result<Vec<Vec<i32>>, BrokerError> {
        crate::broker::validate_topic_name(&t.name).map_err(|m| err(ErrorKind::InvalidTopic, m))?;
        if image.topics.contains_key(&t.name) {
            return Err(err(
                ErrorKind::TopicAlreadyExists,
                format!("topic {:?} already exists", t.name),
            ));
        }
        let live = image.live_brokers();
        if !t.assignments.is_empty() {
            for (p, r) in t.assignments.iter().enumerate() {
                if r.is_empty() || r.iter().any(|b| !image.brokers.contains_key(b)) {
                    return Err(err(
                        ErrorKind::InvalidReplicationFactor,
                        format!(
                            "partition {p}: replicas {r:?} name a broker that is not registered"
                        ),
                    ));
                }
            }
            return Ok(t.assignments.clone());
        }
        let partitions = if t.partitions == -1 {
            self.settings.num_partitions
        } else {
            t.partitions
        };
        if !(1..=strata_storage::meta::MAX_PARTITIONS).contains(&partitions) {
            return Err(err(
                ErrorKind::InvalidPartitions,
                format!(
                    "number of partitions must be in 1..={}, got {partitions}",
                    strata_storage::meta::MAX_PARTITIONS
                ),
            ));
        }
        let rf = if t.replication_factor == -1 {
            self.settings.default_replication_factor
        } else {
            t.replication_factor
        };
        let rf_usize = usize::try_from(rf).unwrap_or(0);
        if rf_usize == 0 || rf_usize > live.len() {
            return Err(err(
                ErrorKind::InvalidReplicationFactor,
                format!(
                    "replication factor {rf} is not possible with {} live broker(s)",
                    live.len()
                ),
            ));
        }
        let n = live.len();
        let r = random_u128();
        let start = (r % n as u128) as usize;
        let shift = ((r >> 64) % n as u128) as usize;
        let partitions = u32::try_from(partitions).unwrap_or(1);
        Ok(place_replicas(&live, partitions, rf_usize, start, shift, 0))
    }

    async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Response, Refusal> {
        let mut out = Vec::with_capacity(topics.len());
        for t in topics {
            let (_g, image) = self.fresh().await?;
            let res = match self.plan_topic(&image, &t) {
                Err(e) => Err(e),
                Ok(_) if validate_only => Ok(()),
                Ok(replicas) => self
                    .commit(vec![MetadataRecord::CreateTopic {
                        name: t.name.clone(),
                        id: format!("{:032x}", random_u128()),
                        configs: t.configs.clone(),
                        replicas,
                    }])
                    .await
                    .map(drop)
                    .map_err(|r| refusal_error(&r))
                    .inspect(|()| tracing::info!(topic = %t.name, "topic created")),
            };
            out.push((t.name, res));
        }
        Ok(Response::Topics(out))
    }

    async fn delete_topics(&self, names: Vec<String>) -> Result<Response, Refusal> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let (_g, image) = self.fresh().await?;
            let res = match image.topics.get(&name) {
                None => Err(err(
                    ErrorKind::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                )),
                Some(_) if name == OFFSETS_TOPIC => Err(err(
                    ErrorKind::InvalidRequest,
                    "__consumer_offsets cannot be deleted",
                )),
                Some(t) => self
                    .commit(vec![MetadataRecord::DeleteTopic {
                        name: name.clone(),
                        id: t.id.clone(),
                    }])
                    .await
                    .map(drop)
                    .map_err(|r| refusal_error(&r)),
            };
            out.push((name, res));
        }
        Ok(Response::Topics(out))
    }

    async fn set_topic_configs(
        &self,
        topic: String,
        configs: BTreeMap<String, String>,
    ) -> Result<Response, Refusal> {
        let (_g, image) = self.fresh().await?;
        let Some(t) = image.topics.get(&topic) else {
            return Ok(Response::Done(Err(err(
                ErrorKind::UnknownTopicOrPartition,
                format!("topic {topic:?} does not exist"),
            ))));
        };
        if t.configs == configs {
            return Ok(Response::Done(Ok(())));
        }
        let res = self
            .commit(vec![MetadataRecord::ReplaceTopicConfigs {
                name: topic,
                id: t.id.clone(),
                configs,
            }])
            .await
            .map(drop)
            .map_err(|r| refusal_error(&r));
        Ok(Response::Done(res))
    }

    async fn create_partitions(
        &self,
        topic: String,
        count: i32,
        validate_only: bool,
    ) -> Result<Response, Refusal> {
        let (_g, image) = self.fresh().await?;
        let Some(t) = image.topics.get(&topic) else {
            return Ok(Response::Partitions(Err(err(
                ErrorKind::UnknownTopicOrPartition,
                format!("topic {topic:?} does not exist"),
            ))));
        };
        let have = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
        if count <= have || count > strata_storage::meta::MAX_PARTITIONS {
            return Ok(Response::Partitions(Err(err(
                ErrorKind::InvalidPartitions,
                format!("topic {topic:?} has {have} partitions; asked for {count}"),
            ))));
        }
        let live = image.live_brokers();
        let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
        if live.len() < rf {
            return Ok(Response::Partitions(Err(err(
                ErrorKind::InvalidReplicationFactor,
                format!(
                    "replication factor {rf} needs {rf} live brokers, {} are",
                    live.len()
                ),
            ))));
        }
        if validate_only {
            return Ok(Response::Partitions(Ok(())));
        }
        let n = live.len();
        let start = (random_u128() % n as u128) as usize;
        let replicas = place_replicas(
            &live,
            u32::try_from(count - have).unwrap_or(0),
            rf,
            start,
            0,
            u32::try_from(have).unwrap_or(0),
        );
        let res = self
            .commit(vec![MetadataRecord::CreatePartitions {
                name: topic,
                id: t.id.clone(),
                replicas,
            }])
            .await
            .map(drop)
            .map_err(|r| refusal_error(&r));
        Ok(Response::Partitions(res))
    }

    /// Changes a partition's ISR at its leader's request (Kafka's AlterPartition): only from
    /// the current leader at the current leader epoch, only replicas, the leader kept in it,
    /// and no fenced broker added.
    async fn alter_partition(
        &self,
        broker: i32,
        topic: String,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<Response, Refusal> {
        let (_g, image) = self.fresh().await?;
        let Some(p) = image.partition(&topic, partition) else {
            return Ok(Response::Done(Err(err(
                ErrorKind::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            ))));
        };
        if p.leader != broker || p.leader_epoch != leader_epoch {
            return Ok(Response::Done(Err(err(
                ErrorKind::FencedLeaderEpoch,
                format!(
                    "{topic}-{partition} is led by {} at epoch {}, not {broker} at {leader_epoch}",
                    p.leader, p.leader_epoch
                ),
            ))));
        }
        let fenced = |r: &i32| image.brokers.get(r).is_none_or(|b| b.fenced);
        if !isr.contains(&broker)
            || isr.iter().any(|r| !p.replicas.contains(r))
            || isr.iter().any(|r| !p.isr.contains(r) && fenced(r))
        {
            return Ok(Response::Done(Err(err(
                ErrorKind::InvalidRequest,
                format!("ISR {isr:?} is not possible for replicas {:?}", p.replicas),
            ))));
        }
        if isr == p.isr {
            return Ok(Response::Done(Ok(())));
        }
        tracing::info!(%topic, partition, from = ?p.isr, to = ?isr, "ISR changed");
        let res = self
            .commit(vec![MetadataRecord::ChangeIsr {
                topic,
                partition,
                leader_epoch,
                isr,
            }])
            .await
            .map(drop)
            .map_err(|r| refusal_error(&r));
        Ok(Response::Done(res))
    }

    /// The image once it is newer than `known` (long poll, at most `wait_ms`, capped at 5 s).
    /// Only the active controller answers: its image has every committed change.
    async fn fetch_image(&self, known: u64, wait_ms: u64) -> Result<Response, Refusal> {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            return Err(self.not_controller());
        }
        let mut rx = self.sm.subscribe();
        let wait = Duration::from_millis(wait_ms.min(5000));
        let newer = tokio::time::timeout(wait, async {
            loop {
                if rx.borrow_and_update().applied_index > known {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok();
        let image = self.sm.image();
        Ok(Response::Image(
            (newer && image.applied_index > known).then(|| Box::new((*image).clone())),
        ))
    }

    /// Hands `broker` the next block of producer ids (committed before it is answered, so a
    /// new controller never hands the same block again).
    async fn allocate_producer_ids(&self, broker: i32) -> Result<Response, Refusal> {
        let (_g, image) = self.fresh().await?;
        let start = image.next_producer_id;
        self.commit(vec![MetadataRecord::AllocateProducerIds {
            broker,
            count: PRODUCER_ID_BLOCK,
        }])
        .await?;
        Ok(Response::ProducerIds {
            start,
            count: PRODUCER_ID_BLOCK,
        })
    }

    /// Creates `__consumer_offsets` if it does not exist (Kafka creates it on the first
    /// FindCoordinator), its partitions placed over the live brokers with
    /// `offsets.topic.replication.factor` replicas each; with fewer live brokers than that it
    /// is not created (as Kafka). Its configs: no time or size retention (the coordinator
    /// compacts it itself), `segment.bytes` from `offsets.topic.segment.bytes`, and
    /// `flush.messages=1`, so an acknowledged commit is on the disk of every in-sync replica.
    async fn ensure_offsets_topic(&self) -> Result<Response, Refusal> {
        let (_g, image) = self.fresh().await?;
        if image.topics.contains_key(OFFSETS_TOPIC) {
            return Ok(Response::Topics(vec![(OFFSETS_TOPIC.into(), Ok(()))]));
        }
        let live = image.live_brokers();
        if live.is_empty() {
            return Ok(Response::Error(err(
                ErrorKind::CoordinatorNotAvailable,
                "no live broker to place __consumer_offsets on",
            )));
        }
        let rf = self.settings.offsets_replication_factor;
        if live.len() < usize::try_from(rf).unwrap_or(usize::MAX) {
            return Ok(Response::Error(err(
                ErrorKind::CoordinatorNotAvailable,
                format!(
                    "__consumer_offsets needs {rf} live brokers (offsets.topic.replication.factor), {} are live",
                    live.len()
                ),
            )));
        }
        let configs: BTreeMap<String, String> = [
            ("retention.ms", "-1".to_string()),
            ("retention.bytes", "-1".to_string()),
            ("flush.messages", "1".to_string()),
            (
                "segment.bytes",
                self.settings.offsets_segment_bytes.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let start = (random_u128() % live.len() as u128) as usize;
        let res = self
            .commit(vec![MetadataRecord::CreateTopic {
                name: OFFSETS_TOPIC.into(),
                id: format!("{:032x}", random_u128()),
                configs,
                replicas: place_replicas(
                    &live,
                    u32::try_from(self.settings.offsets_partitions).unwrap_or(1),
                    usize::try_from(rf).unwrap_or(1),
                    start,
                    0,
                    0,
                ),
            }])
            .await
            .map(drop)
            .map_err(|r| refusal_error(&r));
        Ok(Response::Topics(vec![(OFFSETS_TOPIC.into(), res)]))
    }

    /// This node's view: the quorum from openraft's metrics, brokers and topics from the image.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let image = self.sm.image();
        Status {
            node_id: self.node_id,
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            voters: m.membership_config.membership().voter_ids().collect(),
            voter_addrs: self.settings.voters.clone(),
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            replication: m
                .replication
                .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
                .unwrap_or_default(),
            cluster_id: image.cluster_id.clone(),
            brokers: image
                .brokers
                .values()
                .map(|b| (b.id, b.host.clone(), b.port, b.fenced, b.epoch))
                .collect(),
            topics: image.topics.len(),
            partitions: image.topics.values().map(|t| t.partitions.len()).sum(),
            leaderless: image.leaderless(),
            under_replicated: image.under_replicated(),
        }
    }

    /// The active controller's periodic duties, every `tick` until `stop`: on becoming leader,
    /// give every broker a full session before fencing it and write the cluster id if none
    /// is; then fence brokers silent for longer than `broker.session.timeout.ms`, and every
    /// `leader.imbalance.check.interval.seconds` give partitions back to their preferred
    /// replicas.
    pub async fn run(
        self: Arc<Self>,
        tick: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut leading = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => return,
            }
            let is_leader = self.raft.metrics().borrow().state == ServerState::Leader;
            if !is_leader {
                leading = false;
                continue;
            }
            if !leading {
                leading = true;
                let now = Instant::now();
                let image = self.sm.image();
                let mut seen = self.seen.lock();
                seen.clear();
                for id in image.brokers.keys() {
                    seen.insert(*id, now);
                }
                drop(seen);
                *self.last_balance.lock() = Some(now);
                tracing::info!(node = self.node_id, "this node is the active controller");
            }
            if let Err(e) = self.duties().await {
                tracing::debug!(error = ?e, "controller duties deferred");
            }
        }
    }

    async fn duties(&self) -> Result<(), Refusal> {
        let image = self.sm.image();
        let mut records = Vec::new();
        if image.cluster_id.is_empty() {
            records.push(MetadataRecord::InitCluster {
                cluster_id: format!("strata-{:032x}", random_u128()),
            });
        }
        let now = Instant::now();
        let expired: Vec<i32> = {
            let seen = self.seen.lock();
            image
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .filter(|b| {
                    seen.get(&b.id)
                        .is_none_or(|t| now.duration_since(*t) > self.settings.session_timeout)
                })
                .map(|b| b.id)
                .collect()
        };
        // Preferred-leader elections (Kafka's `maybeBalancePartitionLeaders`): every partition
        // whose preferred replica is live and in the ISR but does not lead, at most
        // MAX_ELECTIONS_PER_PASS at a time; a capped pass runs again at the next tick.
        let balance = self.settings.leader_rebalance.is_some_and(|every| {
            self.last_balance
                .lock()
                .is_none_or(|t| now.duration_since(t) >= every)
        });
        if records.is_empty() && expired.is_empty() && !balance {
            return Ok(());
        }
        let (_g, image) = self.fresh().await?;
        if balance {
            let imbalanced = image.imbalanced();
            if imbalanced.len() <= MAX_ELECTIONS_PER_PASS {
                *self.last_balance.lock() = Some(now);
            }
            for (topic, partition) in imbalanced.into_iter().take(MAX_ELECTIONS_PER_PASS) {
                tracing::info!(%topic, partition, "leadership back to the preferred replica");
                records.push(MetadataRecord::ElectPreferredLeader { topic, partition });
            }
        }
        for id in expired {
            if image.brokers.get(&id).is_some_and(|b| !b.fenced) {
                tracing::warn!(
                    broker = id,
                    "broker fenced: no heartbeat within broker.session.timeout.ms"
                );
                records.push(MetadataRecord::FenceBroker { id });
            }
        }
        if !records.is_empty() {
            self.commit(records).await?;
        }
        Ok(())
    }
}

fn refusal_error(r: &Response) -> BrokerError {
    match r {
        Response::Error(e) => e.clone(),
        Response::NotController { .. } => err(
            ErrorKind::NotController,
            "the active controller changed while committing; retry",
        ),
        other => err(ErrorKind::Unknown, format!("unexpected {other:?}")),
    }
}
