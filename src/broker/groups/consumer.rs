//! Consumer groups of the next-generation protocol (KIP-848, Kafka's `group.protocol=consumer`):
//! members heartbeat with their subscriptions and the partitions they own, and the coordinator
//! computes the assignment (the `uniform` and `range` assignors, [`super::assignors`]) and hands
//! each member its share in steps that never give a partition to two members at once.
//!
//! The rules follow Kafka's `GroupMetadataManager` and `CurrentAssignmentBuilder`:
//!
//! * The **group epoch** goes up whenever membership or a subscription changes (or a subscribed
//!   topic gains partitions); the **target assignment** is then recomputed for that epoch.
//! * A member's **epoch** catches up with the target epoch in steps. A member that owns
//!   partitions the target gives to others must revoke them first: it is answered with its
//!   assignment minus those (state `UnrevokedPartitions`) and keeps its epoch until a heartbeat
//!   says it no longer owns them. It then moves to the target epoch and receives its new
//!   partitions, except those another member still owns (`UnreleasedPartitions`), which it
//!   receives once they are released.
//! * A heartbeat with an epoch newer than the member's, or older than its previous epoch, is
//!   FENCED_MEMBER_EPOCH (the client rejoins with epoch 0); an unknown member is
//!   UNKNOWN_MEMBER_ID; epoch -1 leaves (-2, a static member leaving for now, leaves too: static
//!   membership is not kept across a leave). A member silent for
//!   `group.consumer.session.timeout.ms`, or holding partitions it must revoke for longer than
//!   its rebalance timeout, is removed.
//! * A group is classic or consumer, not both (INCONSISTENT_GROUP_PROTOCOL otherwise); offsets
//!   are committed with the member's epoch where classic groups give a generation.
//!
//! Membership lives in memory, as classic groups': after a restart members rejoin (epoch 0).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::broker::error::ErrorKind;

use super::assignors::{self, Assignor, MemberSubscription, TopicInfo};

/// Partitions by topic id.
pub type Partitions = BTreeMap<u128, BTreeSet<i32>>;

/// Where a member is in catching up with the target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// It must revoke partitions the target gives to others before it moves on.
    UnrevokedPartitions,
    /// It is at the target epoch, but some of its target partitions are still owned by others.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub subscribed: BTreeSet<String>,
    pub assignor: Option<String>,
    pub rebalance_timeout: Duration,
    /// What the member owns, as the coordinator last told it.
    pub assigned: Partitions,
    /// What it must give up (still counted as owned until it does).
    pub revoking: Partitions,
    expires: Instant,
    revoke_deadline: Option<Instant>,
}

/// One consumer group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    pub id: String,
    pub epoch: i32,
    pub target_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: BTreeMap<String, Partitions>,
    /// Partition counts of the subscribed topics the target was computed with.
    topics_seen: BTreeMap<String, (u128, i32)>,
}

/// A heartbeat, wire-free.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed: Option<Vec<String>>,
    pub assignor: Option<String>,
    /// The partitions the member says it owns (`None`: unchanged since the last heartbeat).
    pub owned: Option<Partitions>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    /// What the member is to own now.
    pub assignment: Option<Partitions>,
}

/// The coordinator's settings for consumer groups (Kafka's names).
#[derive(Debug, Clone, Copy)]
pub struct ConsumerLimits {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
}

fn owned_by_others(g: &ConsumerGroup, me: &str) -> BTreeSet<(u128, i32)> {
    g.members
        .values()
        .filter(|m| m.id != me)
        .flat_map(|m| {
            m.assigned
                .iter()
                .chain(m.revoking.iter())
                .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
        })
        .collect()
}

fn minus(a: &Partitions, b: &Partitions) -> Partitions {
    let mut out = Partitions::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = ps
            .iter()
            .filter(|p| !b.get(t).is_some_and(|x| x.contains(p)))
            .copied()
            .collect();
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn is_subset(a: &Partitions, b: &Partitions) -> bool {
    a.iter()
        .all(|(t, ps)| ps.iter().all(|p| b.get(t).is_some_and(|x| x.contains(p))))
}

impl ConsumerGroup {
    pub fn new(id: &str) -> Self {
        ConsumerGroup {
            id: id.to_string(),
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The subscribed topic names of every member.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    /// Bumps the group epoch if the subscribed topics' partition counts changed (a topic
    /// created, deleted or grown).
    fn note_topics(&mut self, topics: &dyn Fn(&str) -> Option<(u128, i32)>) {
        // One lookup per subscribed topic, however many topics the broker has.
        let now: BTreeMap<String, (u128, i32)> = self
            .subscribed_topics()
            .into_iter()
            .filter_map(|n| topics(&n).map(|v| (n, v)))
            .collect();
        if now != self.topics_seen {
            self.topics_seen = now;
            self.epoch += 1;
        }
    }

    fn compute_target(&mut self) -> Result<(), ErrorKind> {
        if self.target_epoch == self.epoch {
            return Ok(());
        }
        let assignor = self
            .members
            .values()
            .filter_map(|m| m.assignor.as_deref())
            .next()
            .map(Assignor::parse)
            .transpose()?
            .unwrap_or(Assignor::Uniform);
        let members: Vec<MemberSubscription> = self
            .members
            .values()
            .map(|m| MemberSubscription {
                id: m.id.clone(),
                topics: m
                    .subscribed
                    .iter()
                    .filter_map(|t| self.topics_seen.get(t).map(|(id, _)| *id))
                    .collect(),
            })
            .collect();
        let topics: Vec<TopicInfo> = self
            .topics_seen
            .values()
            .map(|(id, n)| TopicInfo {
                id: *id,
                partitions: *n,
            })
            .collect();
        self.target = assignors::assign(assignor, &members, &topics);
        self.target_epoch = self.epoch;
        Ok(())
    }

    /// Moves `member` as far toward the target as it can go now (Kafka's
    /// `CurrentAssignmentBuilder`).
    fn reconcile(&mut self, member_id: &str, now: Instant) {
        let others = owned_by_others(self, member_id);
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let target_epoch = self.target_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if m.state == MemberState::UnrevokedPartitions {
            return;
        }
        if m.epoch < target_epoch {
            let revoke = minus(&m.assigned, &target);
            if !revoke.is_empty() {
                m.assigned = minus(&m.assigned, &revoke);
                m.revoking = revoke;
                m.state = MemberState::UnrevokedPartitions;
                m.revoke_deadline = Some(now + m.rebalance_timeout);
                return;
            }
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
        }
        // At the target epoch: take what nobody else holds any more.
        let mut missing = false;
        for (t, ps) in &target {
            for p in ps {
                if others.contains(&(*t, *p)) {
                    missing = true;
                } else {
                    m.assigned.entry(*t).or_default().insert(*p);
                }
            }
        }
        // Partitions no longer in the target and not being revoked (a topic deleted).
        m.assigned = m
            .assigned
            .iter()
            .filter_map(|(t, ps)| {
                let keep: BTreeSet<i32> = ps
                    .iter()
                    .filter(|p| target.get(t).is_some_and(|x| x.contains(p)))
                    .copied()
                    .collect();
                (!keep.is_empty()).then_some((*t, keep))
            })
            .collect();
        m.state = if missing {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }

    /// One heartbeat. `topics` looks a topic up by name: (id, partition count).
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &dyn Fn(&str) -> Option<(u128, i32)>,
        limits: &ConsumerLimits,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatAnswer, ErrorKind> {
        let expires = now + limits.session_timeout;
        let rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms.max(0) as u64);
        match hb.member_epoch {
            -1 | -2 => {
                if self.members.remove(&hb.member_id).is_some() {
                    self.target.remove(&hb.member_id);
                    self.epoch += 1;
                }
                return Ok(HeartbeatAnswer {
                    member_id: hb.member_id,
                    member_epoch: hb.member_epoch,
                    assignment: None,
                });
            }
            0 => {
                let Some(subscribed) = hb.subscribed.clone() else {
                    return Err(ErrorKind::InvalidRequest);
                };
                let id = if hb.member_id.is_empty() {
                    new_member_id()
                } else {
                    hb.member_id.clone()
                };
                // A static member rejoining under a new id replaces its old self.
                if let Some(inst) = &hb.instance_id {
                    let old: Vec<String> = self
                        .members
                        .values()
                        .filter(|m| m.instance_id.as_deref() == Some(inst) && m.id != id)
                        .map(|m| m.id.clone())
                        .collect();
                    for o in old {
                        self.members.remove(&o);
                        self.target.remove(&o);
                    }
                }
                // Joining again (epoch 0) resets what the member owns.
                self.members.insert(
                    id.clone(),
                    ConsumerMember {
                        id: id.clone(),
                        epoch: 0,
                        previous_epoch: -1,
                        state: MemberState::Stable,
                        instance_id: hb.instance_id.clone(),
                        client_id: hb.client_id.clone(),
                        subscribed: subscribed.into_iter().collect(),
                        assignor: hb.assignor.clone(),
                        rebalance_timeout,
                        assigned: Partitions::new(),
                        revoking: Partitions::new(),
                        expires,
                        revoke_deadline: None,
                    },
                );
                self.epoch += 1;
                self.note_topics(topics);
                self.compute_target()?;
                self.reconcile(&id, now);
                let m = self.members.get(&id).ok_or(ErrorKind::Unknown)?;
                return Ok(HeartbeatAnswer {
                    member_id: id,
                    member_epoch: m.epoch,
                    assignment: Some(m.assigned.clone()),
                });
            }
            _ => {}
        }
        let Some(m) = self.members.get_mut(&hb.member_id) else {
            return Err(ErrorKind::UnknownMemberId);
        };
        if hb.member_epoch > m.epoch
            || (hb.member_epoch < m.epoch
                && !(hb.member_epoch == m.previous_epoch
                    && hb.owned.as_ref().is_some_and(|o| is_subset(o, &m.assigned))))
        {
            return Err(ErrorKind::FencedMemberEpoch);
        }
        m.expires = expires;
        if hb.rebalance_timeout_ms > 0 {
            m.rebalance_timeout = rebalance_timeout;
        }
        let mut changed = false;
        if let Some(s) = &hb.subscribed {
            let s: BTreeSet<String> = s.iter().cloned().collect();
            if s != m.subscribed {
                m.subscribed = s;
                changed = true;
            }
        }
        if hb.assignor.is_some() && hb.assignor != m.assignor {
            m.assignor = hb.assignor.clone();
            changed = true;
        }
        // Revocation done: the member owns nothing of what it had to give up.
        if m.state == MemberState::UnrevokedPartitions
            && let Some(owned) = &hb.owned
            && minus(&m.revoking, &minus(&m.revoking, owned)).is_empty()
        {
            m.revoking.clear();
            m.revoke_deadline = None;
            m.state = MemberState::Stable;
        }
        if changed {
            self.epoch += 1;
        }
        self.note_topics(topics);
        self.compute_target()?;
        self.reconcile(&hb.member_id, now);
        let m = self.members.get(&hb.member_id).ok_or(ErrorKind::Unknown)?;
        Ok(HeartbeatAnswer {
            member_id: hb.member_id,
            member_epoch: m.epoch,
            assignment: Some(m.assigned.clone()),
        })
    }

    /// Removes members silent past their session, or stuck revoking past their rebalance
    /// timeout (both bump the group epoch). Returns whether that left the group empty.
    pub fn tick(&mut self, now: Instant) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expires <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "consumer group member removed (session or rebalance timeout)");
            self.members.remove(&id);
            self.target.remove(&id);
            self.epoch += 1;
            if self.members.is_empty() {
                return true;
            }
        }
        false
    }

    /// Whether `member` may commit with `epoch` (Kafka: the member's current epoch; an older
    /// one is STALE_MEMBER_EPOCH, a newer one or an unknown member fails).
    pub fn check_commit(&self, member: &str, epoch: i32) -> Option<ErrorKind> {
        // A commit from outside the group (an admin tool: no member, epoch -1) is allowed
        // while the group has no members, as in Kafka.
        if member.is_empty() && epoch < 0 {
            return (!self.members.is_empty()).then_some(ErrorKind::UnknownMemberId);
        }
        match self.members.get(member) {
            None => Some(ErrorKind::UnknownMemberId),
            Some(m) if epoch > m.epoch => Some(ErrorKind::FencedMemberEpoch),
            Some(m) if epoch < m.epoch => Some(ErrorKind::StaleMemberEpoch),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const LIMITS: ConsumerLimits = ConsumerLimits {
        session_timeout: Duration::from_secs(45),
        heartbeat_interval: Duration::from_secs(5),
    };

    fn topics(name: &str) -> Option<(u128, i32)> {
        (name == "t").then_some((7u128, 4))
    }

    fn join(g: &mut ConsumerGroup, id: &str) -> HeartbeatAnswer {
        g.heartbeat(
            Heartbeat {
                member_id: id.into(),
                member_epoch: 0,
                instance_id: None,
                client_id: "c".into(),
                rebalance_timeout_ms: 60_000,
                subscribed: Some(vec!["t".into()]),
                assignor: None,
                owned: Some(Partitions::new()),
            },
            &topics,
            &LIMITS,
            Instant::now(),
            || unreachable!(),
        )
        .unwrap()
    }

    fn beat(g: &mut ConsumerGroup, id: &str, epoch: i32, owned: &Partitions) -> HeartbeatAnswer {
        g.heartbeat(
            Heartbeat {
                member_id: id.into(),
                member_epoch: epoch,
                instance_id: None,
                client_id: "c".into(),
                rebalance_timeout_ms: 60_000,
                subscribed: None,
                assignor: None,
                owned: Some(owned.clone()),
            },
            &topics,
            &LIMITS,
            Instant::now(),
            || unreachable!(),
        )
        .unwrap()
    }

    fn count(p: &Option<Partitions>) -> usize {
        p.as_ref()
            .map_or(0, |p| p.values().map(BTreeSet::len).sum())
    }

    /// Two members: the first gives up half before the second gets it, and no partition is
    /// ever held by both.
    #[test]
    fn a_second_member_gets_its_share_only_after_the_first_revoked_it() {
        let mut g = ConsumerGroup::new("g");
        let a = join(&mut g, "a");
        assert_eq!(count(&a.assignment), 4);
        let a_owned = a.assignment.clone().unwrap();
        let b = join(&mut g, "b");
        assert_eq!(count(&b.assignment), 0, "a still owns everything");
        // a's next heartbeat: revoke two, keep its epoch.
        let a2 = beat(&mut g, "a", a.member_epoch, &a_owned);
        assert_eq!(count(&a2.assignment), 2);
        assert_eq!(a2.member_epoch, a.member_epoch);
        // b still waits: a has not said it revoked them.
        let b2 = beat(&mut g, "b", b.member_epoch, &Partitions::new());
        assert_eq!(count(&b2.assignment), 0);
        // a confirms; it moves to the new epoch; then b gets the two.
        let a3 = beat(
            &mut g,
            "a",
            a2.member_epoch,
            a2.assignment.as_ref().unwrap(),
        );
        assert!(a3.member_epoch > a.member_epoch);
        let b3 = beat(&mut g, "b", b2.member_epoch, &Partitions::new());
        assert_eq!(count(&b3.assignment), 2);
        let mut all: Vec<(u128, i32)> = Vec::new();
        for p in [a3.assignment.unwrap(), b3.assignment.unwrap()] {
            for (t, ps) in p {
                all.extend(ps.into_iter().map(|x| (t, x)));
            }
        }
        all.sort();
        assert_eq!(all, vec![(7, 0), (7, 1), (7, 2), (7, 3)]);
    }

    #[test]
    fn epochs_are_fenced_and_unknown_members_refused() {
        let mut g = ConsumerGroup::new("g");
        let a = join(&mut g, "a");
        let owned = a.assignment.clone().unwrap();
        let e = g
            .heartbeat(
                Heartbeat {
                    member_id: "a".into(),
                    member_epoch: a.member_epoch + 5,
                    instance_id: None,
                    client_id: "c".into(),
                    rebalance_timeout_ms: 1,
                    subscribed: None,
                    assignor: None,
                    owned: Some(owned),
                },
                &topics,
                &LIMITS,
                Instant::now(),
                || unreachable!(),
            )
            .unwrap_err();
        assert_eq!(e, ErrorKind::FencedMemberEpoch);
        assert_eq!(
            g.check_commit("a", a.member_epoch - 1),
            Some(ErrorKind::StaleMemberEpoch)
        );
        assert_eq!(g.check_commit("a", a.member_epoch), None);
        assert_eq!(g.check_commit("zz", 1), Some(ErrorKind::UnknownMemberId));
    }

    #[test]
    fn a_silent_member_is_removed_and_the_other_takes_everything() {
        let mut g = ConsumerGroup::new("g");
        let a = join(&mut g, "a");
        let b = join(&mut g, "b");
        let a2 = beat(&mut g, "a", a.member_epoch, a.assignment.as_ref().unwrap());
        let _ = beat(
            &mut g,
            "a",
            a2.member_epoch,
            a2.assignment.as_ref().unwrap(),
        );
        let b2 = beat(&mut g, "b", b.member_epoch, &Partitions::new());
        assert_eq!(count(&b2.assignment), 2);
        g.tick(Instant::now() + Duration::from_secs(46));
        assert!(g.members.is_empty(), "both silent past the session");
        let c = join(&mut g, "c");
        assert_eq!(count(&c.assignment), 4);
    }
}
