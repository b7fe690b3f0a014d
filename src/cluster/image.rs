//! The cluster's metadata: the typed records of the metadata log and the image they build.
//!
//! This is KRaft's model (KIP-500, KIP-631): the active controller decides, writes records to
//! the metadata log, and every node applies the committed log, in order, to the same image. So
//! [`MetadataImage::apply`] must be deterministic and total: a record that no longer fits the
//! image (a topic deleted in between) changes nothing, it never fails or panics.
//!
//! No wire type and no I/O here; `storage/FORMAT.md` §13 specifies how records are stored.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// "No leader" in a partition's state, as Kafka's `LeaderConstants.NO_LEADER`.
pub const NO_LEADER: i32 = -1;

/// One record of the metadata log. A log entry carries a list of them, applied together (the
/// active controller writes a fencing and the leader changes it causes as one entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's id, written once by the first active controller (Kafka formats it into
    /// each node's storage instead; here the quorum agrees on it).
    InitCluster { cluster_id: String },
    /// A broker process started and registered (`RegisterBrokerRecord`). Its broker epoch is
    /// the log index of this record. A registered broker starts fenced.
    RegisterBroker {
        id: i32,
        /// Random per process start: tells a restart from a duplicate registration.
        incarnation: String,
        host: String,
        port: u16,
    },
    /// The broker stopped heartbeating within `broker.session.timeout.ms` (`FenceBrokerRecord`).
    FenceBroker { id: i32 },
    /// The broker caught up with the metadata log and heartbeats (`UnfenceBrokerRecord`).
    UnfenceBroker { id: i32 },
    /// A topic and its partitions' replica lists (`TopicRecord` + `PartitionRecord`s).
    CreateTopic {
        name: String,
        /// 32 lowercase hex digits, as in `topics/<name>.json`.
        id: String,
        configs: BTreeMap<String, String>,
        /// One replica list per partition, in partition order; the first live one leads.
        replicas: Vec<Vec<i32>>,
    },
    /// Partitions added to a topic (CreatePartitions).
    CreatePartitions {
        name: String,
        id: String,
        replicas: Vec<Vec<i32>>,
    },
    /// A topic deleted (`RemoveTopicRecord`).
    DeleteTopic { name: String, id: String },
    /// A block of producer ids handed to a broker (`ProducerIdsRecord`, KIP-730): ids from the
    /// image's next one, `count` of them.
    AllocateProducerIds { broker: i32, count: i64 },
    /// A partition's ISR changed at its leader's request (`PartitionChangeRecord` from an
    /// AlterPartition): applied only if the leader epoch is still `leader_epoch`.
    ChangeIsr {
        topic: String,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// A broker's replica of a partition went offline (its disk failed or filled): it leaves
    /// the ISR, and if it led, the next live in-sync replica leads (Kafka moves leadership
    /// off an offline log directory the same way). The last in-sync replica stays.
    ReplicaOffline {
        topic: String,
        partition: i32,
        broker: i32,
    },
    /// Leadership back to the partition's preferred replica, the first of its replica list
    /// (`auto.leader.rebalance.enable`; Kafka writes a `PartitionChangeRecord` with the new
    /// leader): applied only if that replica is live and in the ISR, and not leading already.
    ElectPreferredLeader { topic: String, partition: i32 },
    /// A topic's config overrides replaced (AlterConfigs; Kafka writes a `ConfigRecord` per
    /// key changed).
    ReplaceTopicConfigs {
        name: String,
        id: String,
        configs: BTreeMap<String, String>,
    },
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: i32,
    pub incarnation: String,
    /// The log index of its registration (Kafka's broker epoch).
    pub epoch: u64,
    pub host: String,
    pub port: u16,
    pub fenced: bool,
}

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// A broker id, or [`NO_LEADER`].
    pub leader: i32,
    /// Incremented at every leader change (Kafka's leader epoch, KIP-101).
    pub leader_epoch: i32,
}

/// A topic in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    pub fn id_value(&self) -> u128 {
        u128::from_str_radix(&self.id, 16).unwrap_or(0)
    }
}

/// What the committed metadata log says, up to the last entry applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Empty until the first controller wrote [`MetadataRecord::InitCluster`].
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// Ids of deleted topics: a broker that finds one of them on its disk removes it (it may
    /// have been down while the topic was deleted).
    pub deleted_topic_ids: BTreeSet<String>,
    /// Index of the last log entry applied (0 before any).
    pub applied_index: u64,
    /// The first producer id no broker was given yet.
    #[serde(default)]
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// Applies the records of the log entry at `index`.
    pub fn apply(&mut self, index: u64, records: &[MetadataRecord]) {
        for r in records {
            self.apply_one(index, r);
        }
        self.applied_index = self.applied_index.max(index);
    }

    fn apply_one(&mut self, index: u64, r: &MetadataRecord) {
        match r {
            MetadataRecord::InitCluster { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
            }
            MetadataRecord::RegisterBroker {
                id,
                incarnation,
                host,
                port,
            } => {
                // A re-registration (a restart) fences the broker until it caught up again; its
                // partitions lose it as leader meanwhile, as the fencing does.
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        id: *id,
                        incarnation: incarnation.clone(),
                        epoch: index,
                        host: host.clone(),
                        port: *port,
                        fenced: false,
                    },
                );
                self.fence(*id);
            }
            MetadataRecord::FenceBroker { id } => self.fence(*id),
            MetadataRecord::UnfenceBroker { id } => self.unfence(*id),
            MetadataRecord::CreateTopic {
                name,
                id,
                configs,
                replicas,
            } => {
                if self.topics.contains_key(name) || self.deleted_topic_ids.contains(id) {
                    return;
                }
                let partitions = replicas.iter().map(|r| self.new_partition(r)).collect();
                self.topics.insert(
                    name.clone(),
                    TopicInfo {
                        name: name.clone(),
                        id: id.clone(),
                        configs: configs.clone(),
                        partitions,
                    },
                );
            }
            MetadataRecord::CreatePartitions { name, id, replicas } => {
                let new: Vec<PartitionInfo> =
                    replicas.iter().map(|r| self.new_partition(r)).collect();
                if let Some(t) = self.topics.get_mut(name)
                    && t.id == *id
                {
                    t.partitions.extend(new);
                }
            }
            MetadataRecord::DeleteTopic { name, id } => {
                if self.topics.get(name).is_some_and(|t| t.id == *id) {
                    self.topics.remove(name);
                }
                self.deleted_topic_ids.insert(id.clone());
            }
            MetadataRecord::AllocateProducerIds { count, .. } => {
                self.next_producer_id = self.next_producer_id.saturating_add((*count).max(0));
            }
            MetadataRecord::ChangeIsr {
                topic,
                partition,
                leader_epoch,
                isr,
            } => {
                let Some(p) = usize::try_from(*partition)
                    .ok()
                    .and_then(|i| self.topics.get_mut(topic)?.partitions.get_mut(i))
                else {
                    return;
                };
                // The leader must stay in it, and only replicas may be in it.
                if p.leader_epoch == *leader_epoch
                    && isr.contains(&p.leader)
                    && isr.iter().all(|r| p.replicas.contains(r))
                {
                    p.isr = isr.clone();
                }
            }
            MetadataRecord::ReplicaOffline {
                topic,
                partition,
                broker,
            } => {
                let live: BTreeSet<i32> = self.live_brokers().into_iter().collect();
                let Some(p) = usize::try_from(*partition)
                    .ok()
                    .and_then(|i| self.topics.get_mut(topic)?.partitions.get_mut(i))
                else {
                    return;
                };
                if !p.isr.contains(broker) || p.isr.len() < 2 {
                    return;
                }
                p.isr.retain(|r| r != broker);
                if p.leader == *broker {
                    p.leader = p
                        .isr
                        .iter()
                        .copied()
                        .find(|r| live.contains(r))
                        .unwrap_or(NO_LEADER);
                    p.leader_epoch = p.leader_epoch.saturating_add(1);
                }
            }
            MetadataRecord::ElectPreferredLeader { topic, partition } => {
                let live: BTreeSet<i32> = self.live_brokers().into_iter().collect();
                let Some(p) = usize::try_from(*partition)
                    .ok()
                    .and_then(|i| self.topics.get_mut(topic)?.partitions.get_mut(i))
                else {
                    return;
                };
                if let Some(&preferred) = p.replicas.first()
                    && p.leader != preferred
                    && p.isr.contains(&preferred)
                    && live.contains(&preferred)
                {
                    p.leader = preferred;
                    p.leader_epoch = p.leader_epoch.saturating_add(1);
                }
            }
            MetadataRecord::ReplaceTopicConfigs { name, id, configs } => {
                if let Some(t) = self.topics.get_mut(name)
                    && t.id == *id
                {
                    t.configs = configs.clone();
                }
            }
        }
    }

    fn live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    fn new_partition(&self, replicas: &[i32]) -> PartitionInfo {
        let leader = replicas
            .iter()
            .copied()
            .find(|r| self.live(*r))
            .unwrap_or(NO_LEADER);
        PartitionInfo {
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader,
            leader_epoch: 0,
        }
    }

    /// Fences `id`: every partition it leads gets the next live in-sync replica as leader, or
    /// none (its ISR keeps the fenced broker then, so that it can lead again: Kafka does not
    /// shrink an ISR to nothing).
    fn fence(&mut self, id: i32) {
        let Some(b) = self.brokers.get_mut(&id) else {
            return;
        };
        b.fenced = true;
        let live: BTreeSet<i32> = self
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader != id {
                    // A fenced follower leaves the ISR (KRaft does the same), unless it is the
                    // last member.
                    if p.isr.contains(&id) && p.isr.len() > 1 {
                        p.isr.retain(|r| *r != id);
                    }
                    continue;
                }
                if p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                }
                p.leader = p
                    .isr
                    .iter()
                    .copied()
                    .find(|r| live.contains(r))
                    .unwrap_or(NO_LEADER);
                p.leader_epoch = p.leader_epoch.saturating_add(1);
            }
        }
    }

    /// Unfences `id`: partitions without a leader whose ISR holds it get it back as leader.
    fn unfence(&mut self, id: i32) {
        let Some(b) = self.brokers.get_mut(&id) else {
            return;
        };
        b.fenced = false;
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader == NO_LEADER && p.isr.contains(&id) {
                    p.leader = id;
                    p.leader_epoch = p.leader_epoch.saturating_add(1);
                }
            }
        }
    }

    /// Brokers that are registered and not fenced, by id.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    /// The partition `index` of `topic`.
    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionInfo> {
        let i = usize::try_from(index).ok()?;
        self.topics.get(topic)?.partitions.get(i)
    }

    /// Partitions whose ISR is smaller than their replica set: (topic, partition, replicas,
    /// isr).
    pub fn under_replicated(&self) -> Vec<(String, i32, Vec<i32>, Vec<i32>)> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.isr.len() < p.replicas.len() {
                    out.push((
                        t.name.clone(),
                        i32::try_from(i).unwrap_or(i32::MAX),
                        p.replicas.clone(),
                        p.isr.clone(),
                    ));
                }
            }
        }
        out
    }

    /// Partitions without a leader, as (topic, partition).
    /// Partitions led by another replica than their preferred one (the first of the replica
    /// list) while the preferred one is live and in the ISR: what a preferred-leader election
    /// moves back (Kafka's `imbalancedPartitions`).
    pub fn imbalanced(&self) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if let Some(&preferred) = p.replicas.first()
                    && p.leader != preferred
                    && p.isr.contains(&preferred)
                    && self.live(preferred)
                {
                    out.push((t.name.clone(), i32::try_from(i).unwrap_or(i32::MAX)));
                }
            }
        }
        out
    }

    pub fn leaderless(&self) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.leader == NO_LEADER {
                    out.push((t.name.clone(), i32::try_from(i).unwrap_or(i32::MAX)));
                }
            }
        }
        out
    }
}

/// Kafka's rack-unaware replica placement (`AdminUtils.assignReplicasToBrokersRackUnaware`,
/// used by KRaft's `StripedReplicaPlacer` without racks): partition `p`'s first replica is
/// broker `(start + p) mod n` of the sorted live brokers, the others follow at a shift that
/// grows by one every `n` partitions, so leaders and followers both spread evenly. `start` and
/// `shift` are random in Kafka; the caller passes them.
pub fn place_replicas(
    brokers: &[i32],
    partitions: u32,
    replication_factor: usize,
    start: usize,
    shift: usize,
    first_partition: u32,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    if n == 0 || replication_factor == 0 || replication_factor > n {
        return Vec::new();
    }
    let mut shift = shift % n;
    let mut out = Vec::with_capacity(partitions as usize);
    for k in 0..partitions {
        let p = (first_partition + k) as usize;
        if p > 0 && p.is_multiple_of(n) {
            shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = Vec::with_capacity(replication_factor);
        replicas.push(brokers.get(first).copied().unwrap_or(NO_LEADER));
        for j in 0..replication_factor - 1 {
            let idx = (first + 1 + (shift + j) % (n - 1)) % n;
            replicas.push(brokers.get(idx).copied().unwrap_or(NO_LEADER));
        }
        out.push(replicas);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(img: &mut MetadataImage, index: u64, id: i32) {
        img.apply(
            index,
            &[MetadataRecord::RegisterBroker {
                id,
                incarnation: format!("i{index}"),
                host: "127.0.0.1".into(),
                port: 9000 + u16::try_from(id).unwrap_or(0),
            }],
        );
        img.apply(index + 1, &[MetadataRecord::UnfenceBroker { id }]);
    }

    /// Brokers 1-3 live (indexes 1-6), and topic `t` with one partition on all three
    /// (index 10).
    fn three_brokers_and_t() -> MetadataImage {
        let mut img = MetadataImage::default();
        for (i, id) in [1, 2, 3].into_iter().enumerate() {
            register(&mut img, 1 + 2 * i as u64, id);
        }
        img.apply(
            10,
            &[MetadataRecord::CreateTopic {
                name: "t".into(),
                id: "ab".into(),
                configs: BTreeMap::new(),
                replicas: vec![vec![1, 2, 3]],
            }],
        );
        img
    }

    #[test]
    fn placement_is_kafkas_round_robin() {
        // Kafka's documented example (AdminUtils): 5 brokers, 10 partitions, RF 3, start 0,
        // shift 0.
        let got = place_replicas(&[0, 1, 2, 3, 4], 10, 3, 0, 0, 0);
        let want: Vec<Vec<i32>> = vec![
            vec![0, 1, 2],
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![3, 4, 0],
            vec![4, 0, 1],
            vec![0, 2, 3],
            vec![1, 3, 4],
            vec![2, 4, 0],
            vec![3, 0, 1],
            vec![4, 1, 2],
        ];
        assert_eq!(got, want);
        // RF 1 over three brokers: leaders spread one per broker, from `start`.
        assert_eq!(
            place_replicas(&[1, 2, 3], 4, 1, 1, 0, 0),
            vec![vec![2], vec![3], vec![1], vec![2]]
        );
        assert!(place_replicas(&[1, 2], 3, 3, 0, 0, 0).is_empty());
    }

    #[test]
    fn fencing_moves_leadership_and_unfencing_restores_a_sole_replica() {
        let mut img = MetadataImage::default();
        register(&mut img, 1, 1);
        register(&mut img, 3, 2);
        img.apply(
            5,
            &[MetadataRecord::CreateTopic {
                name: "t".into(),
                id: "ab".into(),
                configs: BTreeMap::new(),
                replicas: vec![vec![1], vec![2], vec![1, 2]],
            }],
        );
        assert_eq!(img.partition("t", 0).map(|p| p.leader), Some(1));
        img.apply(6, &[MetadataRecord::FenceBroker { id: 1 }]);
        let p0 = img
            .partition("t", 0)
            .cloned()
            .unwrap_or_else(|| panic!("p0"));
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr),
            (NO_LEADER, 1, vec![1])
        );
        let p2 = img
            .partition("t", 2)
            .cloned()
            .unwrap_or_else(|| panic!("p2"));
        assert_eq!((p2.leader, p2.leader_epoch, p2.isr), (2, 1, vec![2]));
        assert_eq!(img.leaderless(), vec![("t".to_string(), 0)]);
        img.apply(7, &[MetadataRecord::UnfenceBroker { id: 1 }]);
        assert_eq!(
            img.partition("t", 0).map(|p| (p.leader, p.leader_epoch)),
            Some((1, 2))
        );
        // A restart re-registers: fenced again, with the new epoch.
        img.apply(
            9,
            &[MetadataRecord::RegisterBroker {
                id: 1,
                incarnation: "x".into(),
                host: "h".into(),
                port: 1,
            }],
        );
        let b = img.brokers.get(&1).cloned().unwrap_or_else(|| panic!("b1"));
        assert!(b.fenced);
        assert_eq!(b.epoch, 9);
        assert_eq!(img.partition("t", 0).map(|p| p.leader), Some(NO_LEADER));
        assert_eq!(img.applied_index, 9);
    }

    #[test]
    fn deletion_is_remembered_and_stale_records_change_nothing() {
        let mut img = MetadataImage::default();
        register(&mut img, 1, 1);
        let create = MetadataRecord::CreateTopic {
            name: "t".into(),
            id: "01".into(),
            configs: BTreeMap::new(),
            replicas: vec![vec![1]],
        };
        img.apply(3, std::slice::from_ref(&create));
        img.apply(
            4,
            &[MetadataRecord::DeleteTopic {
                name: "t".into(),
                id: "01".into(),
            }],
        );
        assert!(img.topics.is_empty());
        assert!(img.deleted_topic_ids.contains("01"));
        // Replaying the creation of a deleted id, or adding partitions to it, does nothing.
        img.apply(5, &[create]);
        img.apply(
            6,
            &[MetadataRecord::CreatePartitions {
                name: "t".into(),
                id: "01".into(),
                replicas: vec![vec![1]],
            }],
        );
        assert!(img.topics.is_empty());
        // Records about unknown brokers are ignored.
        img.apply(7, &[MetadataRecord::FenceBroker { id: 42 }]);
        assert!(!img.brokers.contains_key(&42));
    }

    #[test]
    fn isr_changes_only_at_the_leaders_epoch_and_offline_replicas_leave() {
        let mut img = three_brokers_and_t();
        let change = |epoch, isr: Vec<i32>| MetadataRecord::ChangeIsr {
            topic: "t".into(),
            partition: 0,
            leader_epoch: epoch,
            isr,
        };
        // A stale leader epoch, an ISR without the leader, or a non-replica: nothing.
        img.apply(11, &[change(5, vec![1, 2])]);
        img.apply(12, &[change(0, vec![2, 3])]);
        img.apply(13, &[change(0, vec![1, 4])]);
        assert_eq!(
            img.partition("t", 0).map(|p| p.isr.clone()),
            Some(vec![1, 2, 3])
        );
        img.apply(14, &[change(0, vec![1, 2])]);
        assert_eq!(
            img.partition("t", 0).map(|p| p.isr.clone()),
            Some(vec![1, 2])
        );
        // A fenced follower leaves the ISR; the leader keeps leading.
        img.apply(15, &[MetadataRecord::FenceBroker { id: 2 }]);
        let p = img
            .partition("t", 0)
            .cloned()
            .unwrap_or_else(|| panic!("p"));
        assert_eq!((p.leader, p.leader_epoch, p.isr), (1, 0, vec![1]));
        img.apply(16, &[MetadataRecord::UnfenceBroker { id: 2 }]);
        img.apply(17, &[change(0, vec![1, 2, 3])]);
        // The leader's replica goes offline: the next live in-sync replica leads.
        img.apply(
            18,
            &[MetadataRecord::ReplicaOffline {
                topic: "t".into(),
                partition: 0,
                broker: 1,
            }],
        );
        let p = img
            .partition("t", 0)
            .cloned()
            .unwrap_or_else(|| panic!("p"));
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (2, 1, vec![2, 3])
        );
        assert_eq!(img.under_replicated().len(), 1);
        // The last in-sync replica stays, offline or not.
        img.apply(19, &[change(1, vec![2])]);
        img.apply(
            20,
            &[MetadataRecord::ReplicaOffline {
                topic: "t".into(),
                partition: 0,
                broker: 2,
            }],
        );
        let p = img
            .partition("t", 0)
            .cloned()
            .unwrap_or_else(|| panic!("p"));
        assert_eq!((p.leader, p.isr), (2, vec![2]));
    }

    #[test]
    fn a_preferred_leader_election_needs_the_preferred_replica_live_and_in_sync() {
        let mut img = three_brokers_and_t();
        let elect = || MetadataRecord::ElectPreferredLeader {
            topic: "t".into(),
            partition: 0,
        };
        let state = |img: &MetadataImage| {
            img.partition("t", 0)
                .map(|p| (p.leader, p.leader_epoch, p.isr.clone()))
        };
        // Already the preferred leader: nothing changes, nothing is imbalanced.
        img.apply(11, &[elect()]);
        assert_eq!(state(&img), Some((1, 0, vec![1, 2, 3])));
        assert!(img.imbalanced().is_empty());
        // Broker 1 fenced: 2 leads, 1 leaves the ISR; the election cannot pick 1.
        img.apply(12, &[MetadataRecord::FenceBroker { id: 1 }]);
        assert_eq!(state(&img), Some((2, 1, vec![2, 3])));
        img.apply(13, &[elect()]);
        assert_eq!(state(&img), Some((2, 1, vec![2, 3])));
        // Back and live, but not in sync yet: still nothing.
        img.apply(14, &[MetadataRecord::UnfenceBroker { id: 1 }]);
        assert!(img.imbalanced().is_empty());
        img.apply(15, &[elect()]);
        assert_eq!(state(&img), Some((2, 1, vec![2, 3])));
        // In sync again: imbalanced, and the election gives it back at a new epoch.
        img.apply(
            16,
            &[MetadataRecord::ChangeIsr {
                topic: "t".into(),
                partition: 0,
                leader_epoch: 1,
                isr: vec![2, 3, 1],
            }],
        );
        assert_eq!(img.imbalanced(), vec![("t".to_string(), 0)]);
        img.apply(17, &[elect()]);
        assert_eq!(state(&img), Some((1, 2, vec![2, 3, 1])));
        assert!(img.imbalanced().is_empty());
    }
}
