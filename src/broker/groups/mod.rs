//! Consumer groups (Kafka's classic protocol): the group coordinator and committed offsets.
//!
//! * [`state`]: the per-group state machine (join barrier, sync, heartbeats, static members).
//! * [`offsets`]: committed offsets in the engine's `__consumer_offsets-0` log.
//!
//! This broker is the coordinator of every group. Group membership lives in memory (after a
//! restart members rejoin, as after a coordinator move in Kafka); committed offsets are durable.
//! A ticker task (started with the first group request) runs the timers: session expiry,
//! the rebalance deadline and expiry of member ids handed out with MEMBER_ID_REQUIRED.
//! docs/GROUPS.md describes the state machine and the offsets log format.

pub mod assignors;
pub mod consumer;
pub mod offsets;
pub mod state;

use std::collections::BTreeMap;

use crate::broker::error::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use parking_lot::Mutex;
use strata_storage::io::IoBackend;

use super::config::BrokerConfig;
use offsets::OffsetStore;
use state::{Group, Limits};

/// How often the ticker looks at timers. Session timeouts are at least
/// `group.min.session.timeout.ms`, so this granularity is far below anything observable.
const TICK: Duration = Duration::from_millis(50);

/// The group coordinator.
#[derive(Debug)]
pub struct Coordinator {
    groups: Mutex<BTreeMap<String, Group>>,
    /// Groups of the next-generation protocol (KIP-848); a group id is in one map or the other.
    consumer_groups: Mutex<BTreeMap<String, consumer::ConsumerGroup>>,
    pub consumer_limits: consumer::ConsumerLimits,
    pub offsets: OffsetStore,
    limits: Limits,
    ticker_started: AtomicBool,
    closed: AtomicBool,
}

impl Coordinator {
    /// Opens the offsets log and restores committed offsets (blocking). Groups that have
    /// offsets exist again, Empty, as in Kafka.
    pub fn open(config: &BrokerConfig, backend: Arc<dyn IoBackend>) -> Result<Self> {
        let log = offsets::log_config(config.offsets_segment_bytes()?, config.preallocate());
        // In a cluster the offsets live in the replicated `__consumer_offsets` topic.
        let offsets = if config.get("process.roles").trim().is_empty() {
            OffsetStore::open(
                &config.data_dir(),
                log,
                config.offsets_segment_bytes()?,
                backend,
            )?
        } else {
            OffsetStore::replicated(
                &config.data_dir(),
                log,
                config.offsets_segment_bytes()?,
                backend,
            )
        };
        let now = Instant::now();
        let groups = offsets
            .groups()
            .into_iter()
            .map(|g| (g.clone(), Group::new(&g, now)))
            .collect();
        Ok(Coordinator {
            groups: Mutex::new(groups),
            consumer_groups: Mutex::new(BTreeMap::new()),
            consumer_limits: consumer::ConsumerLimits {
                session_timeout: config.consumer_session_timeout()?,
                heartbeat_interval: config.consumer_heartbeat_interval()?,
            },
            offsets,
            limits: Limits {
                initial_rebalance_delay: config.group_initial_rebalance_delay()?,
                min_session_timeout: config.group_min_session_timeout()?,
                max_session_timeout: config.group_max_session_timeout()?,
            },
            ticker_started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// In a cluster, each time the metadata image is applied: loads the offsets of a
    /// `__consumer_offsets` partition this broker now leads (`Some((epoch, log))`) unless
    /// already loaded under that epoch, or drops its groups when it leads it no longer
    /// (`None`), as Kafka's coordinator does on election and resignation. Blocking.
    pub fn offsets_partition_led(
        &self,
        partition: i32,
        partitions: i32,
        led: Option<(i32, &strata_storage::log::PartitionLog)>,
    ) {
        let in_partition =
            |g: &str| crate::cluster::offsets_partition_for(g, partitions) == partition;
        match led {
            Some((epoch, log)) => {
                if self.offsets.loaded_epoch(partition, epoch) == Some(epoch) {
                    return;
                }
                // Loaded under an older epoch: leadership went away and came back.
                self.offsets_partition_led(partition, partitions, None);
                match self
                    .offsets
                    .load_partition(partition, epoch, partitions, log)
                {
                    Ok(loaded) => {
                        let now = Instant::now();
                        let mut groups = self.groups.lock();
                        for g in loaded {
                            groups
                                .entry(g.clone())
                                .or_insert_with(|| Group::new(&g, now));
                        }
                    }
                    Err(e) => {
                        tracing::error!(partition, error = %format!("{e:#}"), "loading a __consumer_offsets partition failed: its groups stay unavailable");
                    }
                }
            }
            None => {
                if self.offsets.unload_partition(partition, partitions) {
                    self.groups.lock().retain(|id, _| !in_partition(id));
                    self.consumer_groups
                        .lock()
                        .retain(|id, _| !in_partition(id));
                }
            }
        }
    }

    /// Runs `f` on the group, creating it (Empty) if `create`.
    pub fn with_group<T>(
        &self,
        id: &str,
        create: bool,
        f: impl FnOnce(&mut Group, Instant, &Limits) -> T,
    ) -> Option<T> {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        if create && !groups.contains_key(id) {
            groups.insert(id.to_string(), Group::new(id, now));
        }
        groups.get_mut(id).map(|g| f(g, now, &self.limits))
    }

    /// Runs `f` on every group, in id order.
    pub fn each_group<T>(&self, mut f: impl FnMut(&Group) -> T) -> Vec<T> {
        self.groups.lock().values().map(&mut f).collect()
    }

    /// Deletes `group`'s committed offsets of `partitions` (Kafka's OffsetDelete), per
    /// partition `None` when done. As Kafka: a group that has neither members nor offsets is
    /// GROUP_ID_NOT_FOUND; a group with members may only lose the offsets of topics none of
    /// them subscribes to (GROUP_SUBSCRIBED_TO_TOPIC otherwise), and only if it uses the
    /// consumer protocol, whose subscriptions `subscribes(metadata, topic)` reads (the group
    /// is NON_EMPTY_GROUP otherwise). Blocking.
    pub fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, i32)],
        subscribes: impl Fn(&[u8], &str) -> bool,
    ) -> Result<Vec<Option<ErrorKind>>, ErrorKind> {
        // (members' subscription metadata) when the group has members.
        let members: Option<Vec<bytes::Bytes>> = {
            let groups = self.groups.lock();
            match groups.get(group) {
                Some(g) if !g.is_empty() => {
                    if g.protocol_type.as_deref() != Some("consumer") {
                        return Err(ErrorKind::NonEmptyGroup);
                    }
                    let protocol = g.protocol.clone().unwrap_or_default();
                    Some(g.members.iter().map(|m| m.metadata(&protocol)).collect())
                }
                Some(_) => None,
                None if self.offsets.group_offsets(group).is_empty() => {
                    return Err(ErrorKind::GroupIdNotFound);
                }
                None => None,
            }
        };
        let verdicts: Vec<Option<ErrorKind>> = partitions
            .iter()
            .map(|(t, _)| {
                members
                    .as_ref()
                    .is_some_and(|ms| ms.iter().any(|m| subscribes(m, t)))
                    .then_some(ErrorKind::GroupSubscribedToTopic)
            })
            .collect();
        let doomed: Vec<(String, i32)> = partitions
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if let Err(e) = self.offsets.delete_offsets(group, &doomed) {
            tracing::error!(group, error = %format!("{e:#}"), "deleting committed offsets failed");
            return Err(ErrorKind::Storage);
        }
        Ok(verdicts)
    }

    /// One ConsumerGroupHeartbeat (KIP-848) of `group`. `topics` looks a topic up by name:
    /// (id, partition count). A classic group with members under that id is
    /// INCONSISTENT_GROUP_PROTOCOL: a group is one or the other, as in Kafka.
    pub fn consumer_heartbeat(
        &self,
        group: &str,
        hb: consumer::Heartbeat,
        topics: &dyn Fn(&str) -> Option<(u128, i32)>,
    ) -> Result<consumer::HeartbeatAnswer, ErrorKind> {
        if self.groups.lock().get(group).is_some_and(|g| !g.is_empty()) {
            return Err(ErrorKind::InconsistentGroupProtocol);
        }
        let mut groups = self.consumer_groups.lock();
        // Only a join creates a group: heartbeats naming groups that do not exist leave
        // nothing behind.
        if !groups.contains_key(group) {
            match hb.member_epoch {
                0 => {}
                -1 | -2 => {
                    return Ok(consumer::HeartbeatAnswer {
                        member_id: hb.member_id,
                        member_epoch: hb.member_epoch,
                        assignment: None,
                    });
                }
                _ => return Err(ErrorKind::UnknownMemberId),
            }
        }
        let g = groups
            .entry(group.to_string())
            .or_insert_with(|| consumer::ConsumerGroup::new(group));
        let res = g.heartbeat(hb, topics, &self.consumer_limits, Instant::now(), || {
            uuid::Uuid::from_u128(crate::broker::random_u128()).to_string()
        });
        // An empty consumer group stays one while it has committed offsets (as in Kafka,
        // until a classic member joins it); without any it goes.
        if g.is_empty() && self.offsets.group_offsets(group).is_empty() {
            groups.remove(group);
        }
        res
    }

    /// Whether `group` is a consumer (KIP-848) group with members: a classic JoinGroup for it
    /// is INCONSISTENT_GROUP_PROTOCOL. An empty consumer group becomes classic when a classic
    /// member joins (as Kafka converts an empty group).
    pub fn is_consumer_group(&self, group: &str) -> bool {
        let mut groups = self.consumer_groups.lock();
        match groups.get(group) {
            Some(g) if !g.is_empty() => true,
            Some(_) => {
                groups.remove(group);
                false
            }
            None => false,
        }
    }

    /// For a consumer group (even one whose members all left, as Kafka keeps it): whether
    /// `member` may commit or fetch with `epoch` (`None` when `group` is not one).
    pub fn consumer_check(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
    ) -> Option<Option<ErrorKind>> {
        self.consumer_groups
            .lock()
            .get(group)
            .map(|g| g.check_commit(member, epoch))
    }

    /// Removes an empty group (DeleteGroups); its offsets are deleted by the caller.
    pub fn remove_group_if_empty(&self, id: &str) -> Result<(), ErrorKind> {
        let mut groups = self.groups.lock();
        match groups.get(id) {
            None => Err(ErrorKind::GroupIdNotFound),
            Some(g) if !g.is_empty() => Err(ErrorKind::NonEmptyGroup),
            Some(_) => {
                groups.remove(id);
                Ok(())
            }
        }
    }

    /// Starts the timer task once (needs a tokio runtime: called from the handlers).
    pub fn ensure_ticker(self: &Arc<Self>) {
        if self.ticker_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(c) = weak.upgrade() else { return };
                if c.closed.load(Ordering::Acquire) {
                    return;
                }
                let now = Instant::now();
                let limits = c.limits;
                for g in c.groups.lock().values_mut() {
                    g.tick(now, &limits);
                }
                let mut consumer_groups = c.consumer_groups.lock();
                let emptied: Vec<String> = consumer_groups
                    .iter_mut()
                    .filter_map(|(id, g)| g.tick(now).then(|| id.clone()))
                    .collect();
                for id in emptied {
                    if c.offsets.group_offsets(&id).is_empty() {
                        consumer_groups.remove(&id);
                    }
                }
            }
        });
    }

    /// Stops the timers and closes the offsets log cleanly (blocking).
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.offsets.close()
    }
}
