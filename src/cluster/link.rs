//! The broker's side of the cluster: the metadata image it serves from, and its requests to
//! the active controller (registration, heartbeats, forwarded admin requests).
//!
//! The controller is found by asking: the last known leader first, then every voter; a voter
//! that is not the leader answers `NotController` with the leader it knows, which is tried
//! next. Every request is bounded by a deadline; past it the caller gets `NotController`
//! (Kafka's answer while a quorum elects), which clients retry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::image::MetadataImage;
use super::raft::NodeId;
use super::rpc::{self, NewTopic, Request, Response};
use crate::broker::error::{BrokerError, ErrorKind, err};

/// How long one controller call may take before the next voter is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A broker's link to the metadata quorum.
#[derive(Debug)]
pub struct Link {
    pub node_id: i32,
    image: watch::Receiver<Arc<MetadataImage>>,
    voters: BTreeMap<NodeId, String>,
    hint: Mutex<Option<NodeId>>,
    /// The broker epoch of the current registration (0 before one).
    epoch: AtomicU64,
    /// The producer ids left of the block the controller gave: `[next, end)`.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
}

impl Link {
    pub fn new(
        node_id: i32,
        image: watch::Receiver<Arc<MetadataImage>>,
        voters: BTreeMap<NodeId, String>,
    ) -> Self {
        Link {
            node_id,
            image,
            voters,
            hint: Mutex::new(None),
            epoch: AtomicU64::new(0),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// The next producer id of this broker's block, asking the controller for a new block
    /// when it is used up.
    pub async fn allocate_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let req = Request::AllocateProducerIds {
                broker: self.node_id,
            };
            match self.ask(&req, Duration::from_secs(5)).await? {
                Response::ProducerIds { start, count } if count > 0 => {
                    *ids = (start, start + count)
                }
                Response::Error(e) => return Err(e),
                other => return Err(unexpected(&other)),
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// The metadata image as this node last applied it.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver told of every newly applied image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Sends `req` to the active controller, following `NotController` hints, until
    /// `deadline` has passed.
    pub async fn ask(&self, req: &Request, deadline: Duration) -> Result<Response, BrokerError> {
        let end = Instant::now() + deadline;
        let mut last = String::from("no voter answered");
        // Bounded: each round tries every voter once; rounds stop at the deadline.
        for _round in 0..1000 {
            let hint = *self.hint.lock();
            let mut order: Vec<NodeId> = hint.into_iter().collect();
            order.extend(self.voters.keys().copied().filter(|v| Some(*v) != hint));
            let mut i = 0;
            while let Some(&target) = order.get(i) {
                i += 1;
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let Some(addr) = self.voters.get(&target) else {
                    continue;
                };
                let cluster_id = self.image.borrow().cluster_id.clone();
                match call_once(addr, &cluster_id, req, left.min(CALL_TIMEOUT)).await {
                    Ok(Response::NotController { leader }) => {
                        *self.hint.lock() = leader;
                        if let Some(l) = leader
                            && order.get(i..).is_none_or(|rest| rest.first() != Some(&l))
                        {
                            order.insert(i, l);
                        }
                        last = format!("node {target} is not the active controller");
                    }
                    Ok(resp) => {
                        *self.hint.lock() = Some(target);
                        return Ok(resp);
                    }
                    Err(e) => last = format!("node {target} at {addr}: {e:#}"),
                }
            }
            if Instant::now() >= end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(err(
            ErrorKind::NotController,
            format!("no active controller within {deadline:?} ({last})"),
        ))
    }

    /// Waits until the local image satisfies `ready`, at most `timeout`; whether it did.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&MetadataImage) -> bool,
    ) -> bool {
        let mut rx = self.image.clone();
        let wait = async {
            loop {
                if ready(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// CreateTopics through the controller; each created topic is waited for in the local
    /// image (bounded), so that this broker's Metadata shows it when the client is answered.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
        timeout: Duration,
    ) -> Vec<(String, Result<(), BrokerError>)> {
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let req = Request::CreateTopics {
            topics,
            validate_only,
        };
        let results = match self.ask(&req, timeout).await {
            Ok(Response::Topics(r)) => r,
            Ok(other) => return all_failed(names, unexpected(&other)),
            Err(e) => return all_failed(names, e),
        };
        if !validate_only {
            let created: Vec<String> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(n, _)| n.clone())
                .collect();
            self.wait_for(timeout, |img| {
                created.iter().all(|n| img.topics.contains_key(n))
            })
            .await;
        }
        results
    }

    pub async fn delete_topics(
        &self,
        names: Vec<String>,
        timeout: Duration,
    ) -> Vec<(String, Result<(), BrokerError>)> {
        let req = Request::DeleteTopics {
            names: names.clone(),
        };
        let results = match self.ask(&req, timeout).await {
            Ok(Response::Topics(r)) => r,
            Ok(other) => return all_failed(names, unexpected(&other)),
            Err(e) => return all_failed(names, e),
        };
        let deleted: Vec<String> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| n.clone())
            .collect();
        self.wait_for(timeout, |img| {
            deleted.iter().all(|n| !img.topics.contains_key(n))
        })
        .await;
        results
    }

    pub async fn create_partitions(
        &self,
        topic: String,
        count: i32,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        let req = Request::CreatePartitions {
            topic: topic.clone(),
            count,
            validate_only,
        };
        match self.ask(&req, timeout).await? {
            Response::Partitions(Ok(())) => {
                if !validate_only {
                    let n = usize::try_from(count).unwrap_or(0);
                    self.wait_for(timeout, |img| {
                        img.topics
                            .get(&topic)
                            .is_some_and(|t| t.partitions.len() >= n)
                    })
                    .await;
                }
                Ok(())
            }
            Response::Partitions(Err(e)) | Response::Error(e) => Err(e),
            other => Err(unexpected(&other)),
        }
    }

    /// Replaces a topic's config overrides through the controller, then waits (bounded) for
    /// the local image to have them.
    pub async fn set_topic_configs(
        &self,
        topic: String,
        configs: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        let req = Request::SetTopicConfigs {
            topic: topic.clone(),
            configs: configs.clone(),
        };
        match self.ask(&req, timeout).await? {
            Response::Done(r) => {
                r?;
                self.wait_for(timeout, |img| {
                    img.topics.get(&topic).is_some_and(|t| t.configs == configs)
                })
                .await;
                Ok(())
            }
            Response::Error(e) => Err(e),
            other => Err(unexpected(&other)),
        }
    }

    /// Makes sure `__consumer_offsets` exists (FindCoordinator needs it).
    pub async fn ensure_offsets_topic(&self, timeout: Duration) -> Result<(), BrokerError> {
        if self
            .image()
            .topics
            .contains_key(super::controller::OFFSETS_TOPIC)
        {
            return Ok(());
        }
        match self.ask(&Request::EnsureOffsetsTopic, timeout).await? {
            Response::Topics(r) => {
                for (_, res) in r {
                    res?;
                }
                self.wait_for(timeout, |img| {
                    img.topics.contains_key(super::controller::OFFSETS_TOPIC)
                })
                .await;
                Ok(())
            }
            Response::Error(e) => Err(e),
            other => Err(unexpected(&other)),
        }
    }

    /// Registers this broker until the controller accepts it (or `stop`); its epoch.
    pub async fn register(
        &self,
        incarnation: &str,
        host: &str,
        port: u16,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<u64> {
        let req = Request::RegisterBroker {
            id: self.node_id,
            incarnation: incarnation.to_string(),
            host: host.to_string(),
            port,
        };
        loop {
            match self.ask(&req, Duration::from_secs(5)).await {
                Ok(Response::Registered { epoch }) => {
                    self.epoch.store(epoch, Ordering::Release);
                    tracing::info!(
                        broker = self.node_id,
                        epoch,
                        "registered with the controller"
                    );
                    return Some(epoch);
                }
                Ok(other) => {
                    tracing::warn!(answer = ?other, "broker registration refused; retrying")
                }
                Err(e) => tracing::info!(error = %e.message, "broker registration: retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return None,
            }
        }
    }

    /// A broker-only node's link: its image comes from the active controller
    /// ([`Link::follow_controller`]), not from a local state machine.
    pub fn remote(node_id: i32, voters: BTreeMap<NodeId, String>) -> (Arc<Self>, ImageFeed) {
        let (tx, rx) = watch::channel(Arc::new(MetadataImage::default()));
        (Arc::new(Link::new(node_id, rx, voters)), ImageFeed(tx))
    }

    /// Keeps `feed` at the active controller's image until `stop`: a long poll that returns as
    /// soon as the controller applied something newer (KRaft brokers fetch the metadata log
    /// from the quorum the same way; here the whole image comes, which suits the metadata of
    /// a small cluster).
    pub async fn follow_controller(
        self: Arc<Self>,
        feed: ImageFeed,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let known = self.image().applied_index;
            let req = Request::FetchImage {
                known,
                wait_ms: 1000,
            };
            let got = tokio::select! {
                r = self.ask(&req, Duration::from_secs(5)) => r,
                _ = stop.changed() => return,
            };
            match got {
                Ok(Response::Image(Some(img))) if img.applied_index > known => {
                    feed.0.send_replace(Arc::new(*img));
                }
                Ok(Response::Image(_)) => {}
                Ok(other) => {
                    tracing::warn!(answer = ?other, "fetching the metadata image: unexpected answer");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e.message, "fetching the metadata image: retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Tells the active controller this broker is stopping cleanly, so that it is fenced at
    /// once (bounded by `timeout`; a failure only means the session timeout fences it).
    pub async fn shut_down(&self, timeout: Duration) {
        let epoch = self.epoch();
        if epoch == 0 {
            return;
        }
        let req = Request::ShutdownBroker {
            id: self.node_id,
            epoch,
        };
        match self.ask(&req, timeout).await {
            Ok(_) => tracing::info!("the controller fenced this broker for its shutdown"),
            Err(e) => {
                tracing::info!(error = %e.message, "could not tell the controller this broker stops")
            }
        }
    }

    /// Registers, then heartbeats every `interval` until `stop`; registers again when the
    /// controller no longer knows the epoch (it lost the registration, or fenced a restart).
    pub async fn run(
        self: Arc<Self>,
        host: String,
        port: u16,
        interval: Duration,
        offline: Arc<dyn Fn() -> Vec<(String, i32)> + Send + Sync>,
        mut stop: watch::Receiver<bool>,
    ) {
        let incarnation = format!("{:032x}", crate::broker::random_u128());
        let Some(mut epoch) = self.register(&incarnation, &host, port, &mut stop).await else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            let req = Request::Heartbeat {
                id: self.node_id,
                epoch,
                applied_index: self.image().applied_index,
                offline: offline(),
            };
            match self.ask(&req, interval.max(Duration::from_secs(1))).await {
                Ok(Response::Heartbeat { .. }) => {}
                Ok(Response::Error(e)) if e.kind == ErrorKind::StaleBrokerEpoch => {
                    tracing::warn!(reason = %e.message, "registering again");
                    match self.register(&incarnation, &host, port, &mut stop).await {
                        Some(e) => epoch = e,
                        None => return,
                    }
                }
                Ok(other) => tracing::warn!(answer = ?other, "heartbeat refused"),
                Err(e) => tracing::debug!(error = %e.message, "heartbeat not delivered"),
            }
        }
    }
}

/// Where a broker-only node's image comes from ([`Link::follow_controller`]).
#[derive(Debug)]
pub struct ImageFeed(watch::Sender<Arc<MetadataImage>>);

async fn call_once(
    addr: &str,
    cluster_id: &str,
    req: &Request,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let mut s = rpc::connect(addr, timeout).await?;
    rpc::call(&mut s, cluster_id, req, timeout).await
}

fn unexpected(r: &Response) -> BrokerError {
    err(
        ErrorKind::Unknown,
        format!("unexpected controller answer {r:?}"),
    )
}

fn all_failed(names: Vec<String>, e: BrokerError) -> Vec<(String, Result<(), BrokerError>)> {
    names.into_iter().map(|n| (n, Err(e.clone()))).collect()
}
