//! ConsumerGroupHeartbeat (KIP-848) on the wire: joins, the revoke-before-assign handover,
//! fencing, leaving, session expiry, commits with the member epoch, and a group being classic
//! or consumer, not both.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::*;

fn hb(
    c: &mut Client,
    group: &str,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
    owned: Option<Vec<TopicPartitions>>,
) -> ConsumerGroupHeartbeatResponse {
    c.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(60_000)
            .with_subscribed_topic_names(topics.map(|ts| ts.iter().map(|t| topic(t)).collect()))
            .with_topic_partitions(owned),
        1,
    )
}

fn owned_of(r: &ConsumerGroupHeartbeatResponse) -> Vec<TopicPartitions> {
    r.assignment
        .as_ref()
        .map(|a| {
            a.topic_partitions
                .iter()
                .map(|tp| {
                    TopicPartitions::default()
                        .with_topic_id(tp.topic_id)
                        .with_partitions(tp.partitions.clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn count(r: &ConsumerGroupHeartbeatResponse) -> usize {
    r.assignment.as_ref().map_or(0, |a| {
        a.topic_partitions.iter().map(|t| t.partitions.len()).sum()
    })
}

#[test]
fn given_two_members_when_the_second_joins_then_it_gets_partitions_only_after_the_first_revoked_them()
 {
    let b = Broker::start(&[
        "--set",
        "group.consumer.session.timeout.ms=2000",
        "--set",
        "group.consumer.heartbeat.interval.ms=100",
    ]);
    let mut c = b.client();
    create_topic(&mut c, "cg", 4, &[]);
    let a = hb(&mut c, "g", "member-a", 0, Some(&["cg"]), Some(vec![]));
    assert_eq!(a.error_code, 0);
    assert_eq!(a.member_id.as_deref(), Some("member-a"));
    assert_eq!(a.heartbeat_interval_ms, 100);
    assert_eq!(count(&a), 4);
    let b1 = hb(&mut c, "g", "member-b", 0, Some(&["cg"]), Some(vec![]));
    assert_eq!(count(&b1), 0, "member-a still owns every partition");
    // member-a is asked to revoke two; member-b waits until it has.
    let a2 = hb(
        &mut c,
        "g",
        "member-a",
        a.member_epoch,
        None,
        Some(owned_of(&a)),
    );
    assert_eq!((count(&a2), a2.member_epoch), (2, a.member_epoch));
    assert_eq!(
        count(&hb(
            &mut c,
            "g",
            "member-b",
            b1.member_epoch,
            None,
            Some(vec![])
        )),
        0
    );
    let a3 = hb(
        &mut c,
        "g",
        "member-a",
        a2.member_epoch,
        None,
        Some(owned_of(&a2)),
    );
    assert!(a3.member_epoch > a.member_epoch);
    let b2 = hb(&mut c, "g", "member-b", b1.member_epoch, None, Some(vec![]));
    assert_eq!(count(&b2), 2);
    // A newer epoch than the coordinator's is fenced; an unknown member is refused.
    assert_eq!(
        hb(&mut c, "g", "member-a", a3.member_epoch + 3, None, None).error_code,
        110
    );
    assert_eq!(hb(&mut c, "g", "nobody", 5, None, None).error_code, 25);
    assert_eq!(
        hb(&mut c, "never-joined", "x", 3, None, None).error_code,
        25
    );
    assert_eq!(
        hb(&mut c, "never-joined", "x", -1, None, None).error_code,
        0
    );
    // Commits carry the member epoch: an old one is STALE_MEMBER_EPOCH.
    assert_eq!(
        commit(
            &mut c,
            "g",
            a3.member_epoch,
            "member-a",
            &[("cg", 0, 1, None)]
        ),
        vec![0]
    );
    let stale = {
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        let r = c.call(
            &OffsetCommitRequest::default()
                .with_group_id(group_id("g"))
                .with_generation_id_or_member_epoch(a.member_epoch)
                .with_member_id(s("member-a"))
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(topic("cg"))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(2),
                        ]),
                ]),
            9,
        );
        r.topics[0].partitions[0].error_code
    };
    assert_eq!(stale, 113, "STALE_MEMBER_EPOCH");
    // A classic JoinGroup for the same group id is refused: a group is one or the other.
    let j = join(&mut c, "g", None, 10_000, &[("range", b"")]);
    assert_eq!(j.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");
    // member-a leaves; member-b, still heartbeating, takes everything.
    assert_eq!(hb(&mut c, "g", "member-a", -1, None, None).member_epoch, -1);
    let b3 = hb(
        &mut c,
        "g",
        "member-b",
        b2.member_epoch,
        None,
        Some(owned_of(&b2)),
    );
    assert_eq!(count(&b3), 4);
    // Silent past the session, member-b is removed: a commit (which does not count as a
    // heartbeat) finds it gone, and so does its next heartbeat.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while commit(
        &mut c,
        "g",
        b3.member_epoch,
        "member-b",
        &[("cg", 1, 1, None)],
    ) != vec![25]
    {
        assert!(
            std::time::Instant::now() < deadline,
            "member-b never expired"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        hb(&mut c, "g", "member-b", b3.member_epoch, None, None).error_code,
        25
    );
}
