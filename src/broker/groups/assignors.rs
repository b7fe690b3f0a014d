//! Server-side assignors of consumer groups (KIP-848): `uniform` (the default, as in Kafka) and
//! `range`. Both are deterministic in the members' ids, so every coordinator computes the same
//! target from the same membership.
//!
//! * `range` (Kafka's `RangeAssignor`): per topic, the members subscribed to it in id order
//!   take consecutive ranges of its partitions, the first `partitions % members` one more.
//! * `uniform`: every (topic, partition), in topic-id then partition order, goes round-robin to
//!   the members subscribed to that topic, in id order, always to the one that has the fewest
//!   so far; the counts differ by at most one among members with the same subscriptions.
//!   Kafka's `UniformAssignor` also tries to keep partitions where they were (stickiness); this
//!   one does not, so a rebalance may move more partitions than Kafka's would (the protocol
//!   still never gives a partition to two members at once).

use std::collections::{BTreeMap, BTreeSet};

use crate::broker::error::ErrorKind;

use super::consumer::Partitions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    /// `uniform` or `range`; anything else is UNSUPPORTED_ASSIGNOR.
    pub fn parse(name: &str) -> Result<Assignor, ErrorKind> {
        match name {
            "uniform" => Ok(Assignor::Uniform),
            "range" => Ok(Assignor::Range),
            _ => Err(ErrorKind::UnsupportedAssignor),
        }
    }
}

/// A member and the ids of the existing topics it subscribes to.
#[derive(Debug, Clone)]
pub struct MemberSubscription {
    pub id: String,
    pub topics: BTreeSet<u128>,
}

#[derive(Debug, Clone, Copy)]
pub struct TopicInfo {
    pub id: u128,
    pub partitions: i32,
}

/// The target assignment: member id → partitions.
pub fn assign(
    assignor: Assignor,
    members: &[MemberSubscription],
    topics: &[TopicInfo],
) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = members
        .iter()
        .map(|m| (m.id.clone(), Partitions::new()))
        .collect();
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut topics: Vec<TopicInfo> = topics.to_vec();
    topics.sort_by_key(|t| t.id);
    let mut load: BTreeMap<&str, usize> = sorted.iter().map(|m| (m.id.as_str(), 0)).collect();
    for t in &topics {
        let subs: Vec<&str> = sorted
            .iter()
            .filter(|m| m.topics.contains(&t.id))
            .map(|m| m.id.as_str())
            .collect();
        if subs.is_empty() || t.partitions <= 0 {
            continue;
        }
        match assignor {
            Assignor::Range => {
                let n = t.partitions as usize;
                let per = n / subs.len();
                let extra = n % subs.len();
                let mut next = 0usize;
                for (i, m) in subs.iter().enumerate() {
                    let take = per + usize::from(i < extra);
                    let ps = out
                        .entry(m.to_string())
                        .or_default()
                        .entry(t.id)
                        .or_default();
                    for p in next..next + take {
                        ps.insert(p as i32);
                    }
                    next += take;
                }
            }
            Assignor::Uniform => {
                for p in 0..t.partitions {
                    // The subscriber with the fewest partitions so far (first in id order).
                    let Some(m) = subs
                        .iter()
                        .min_by_key(|m| load.get(**m).copied().unwrap_or(0))
                        .copied()
                    else {
                        continue;
                    };
                    out.entry(m.to_string())
                        .or_default()
                        .entry(t.id)
                        .or_default()
                        .insert(p);
                    *load.entry(m).or_default() += 1;
                }
            }
        }
    }
    out.retain(|_, v| {
        v.retain(|_, ps| !ps.is_empty());
        true
    });
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn m(id: &str, topics: &[u128]) -> MemberSubscription {
        MemberSubscription {
            id: id.into(),
            topics: topics.iter().copied().collect(),
        }
    }

    fn sizes(a: &BTreeMap<String, Partitions>) -> Vec<usize> {
        a.values()
            .map(|p| p.values().map(BTreeSet::len).sum())
            .collect()
    }

    #[test]
    fn range_gives_consecutive_ranges_per_topic_and_the_first_members_the_extra() {
        let a = assign(
            Assignor::Range,
            &[m("b", &[1]), m("a", &[1])],
            &[TopicInfo {
                id: 1,
                partitions: 5,
            }],
        );
        assert_eq!(a["a"][&1], BTreeSet::from([0, 1, 2]));
        assert_eq!(a["b"][&1], BTreeSet::from([3, 4]));
    }

    #[test]
    fn uniform_balances_across_topics_and_respects_subscriptions() {
        let topics = [
            TopicInfo {
                id: 1,
                partitions: 3,
            },
            TopicInfo {
                id: 2,
                partitions: 3,
            },
        ];
        let a = assign(
            Assignor::Uniform,
            &[m("a", &[1, 2]), m("b", &[1, 2])],
            &topics,
        );
        assert_eq!(sizes(&a), vec![3, 3]);
        let only = assign(Assignor::Uniform, &[m("a", &[1]), m("b", &[2])], &topics);
        assert_eq!(only["a"].keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(only["b"].keys().copied().collect::<Vec<_>>(), vec![2]);
        // Every partition exactly once.
        let mut all: Vec<(u128, i32)> = a
            .values()
            .flat_map(|p| {
                p.iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |x| (*t, *x)))
            })
            .collect();
        all.sort();
        assert_eq!(all.len(), 6);
        all.dedup();
        assert_eq!(all.len(), 6);
        assert_eq!(
            Assignor::parse("sticky"),
            Err(ErrorKind::UnsupportedAssignor)
        );
    }
}
