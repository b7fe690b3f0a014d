//! Scenario: consumers speak the classic group protocol to a running broker: the join barrier,
//! sync, heartbeats, leaves, session expiry, static members, commits and their durability.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;

const RANGE: &[u8] = b"range-metadata";

fn start() -> Broker {
    Broker::start(GROUP_SETTINGS)
}

/// One member joins alone and syncs: generation 1, it leads.
fn solo(c: &mut Client, group: &str, session_ms: i32) -> (String, i32) {
    let j = join(c, group, None, session_ms, &[("range", RANGE)]);
    assert_eq!(j.error_code, 0);
    let id = j.member_id.to_string();
    let sy = sync(c, group, j.generation_id, &id, &[(&id, b"a")]);
    assert_eq!(sy.error_code, 0);
    (id, j.generation_id)
}

/// Heartbeats until the broker says REBALANCE_IN_PROGRESS (27), within `within`.
fn until_rebalance(c: &mut Client, group: &str, generation: i32, member: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let e = heartbeat(c, group, generation, member);
        if e == 27 {
            return;
        }
        assert_eq!(e, 0, "heartbeat error while waiting for a rebalance");
        assert!(Instant::now() < deadline, "no rebalance within {within:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn given_group_apis_when_api_versions_is_asked_then_every_group_api_is_advertised() {
    let b = start();
    let r = b.client().call(&ApiVersionsRequest::default(), 3);
    for (key, max) in [
        (10, 4),
        (11, 7),
        (12, 4),
        (13, 4),
        (14, 5),
        (8, 9),
        (9, 9),
        (15, 5),
        (16, 4),
        (42, 2),
        (47, 0),
        (68, 1),
    ] {
        let k = r.api_keys.iter().find(|k| k.api_key == key).unwrap();
        assert_eq!(k.max_version, max, "api {key}");
    }
}

#[test]
fn given_a_group_key_when_find_coordinator_is_asked_at_every_version_then_this_broker_answers() {
    let b = start();
    let mut c = b.client();
    let port: i32 = b.addr.rsplit(':').next().unwrap().parse().unwrap();
    for v in 0..=3 {
        let r = c.call(&FindCoordinatorRequest::default().with_key(s("g")), v);
        assert_eq!((r.error_code, r.node_id.0, r.port), (0, 0, port), "v{v}");
        assert_eq!(r.host.as_str(), "127.0.0.1");
    }
    let r = c.call(
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g1"), s("g2")]),
        4,
    );
    assert_eq!(r.coordinators.len(), 2);
    assert!(
        r.coordinators
            .iter()
            .all(|k| k.error_code == 0 && k.port == port)
    );
    assert_eq!(r.coordinators[1].key.as_str(), "g2");
    let txn = c.call(
        &FindCoordinatorRequest::default()
            .with_key(s("t"))
            .with_key_type(1),
        3,
    );
    assert_eq!(
        txn.error_code, 53,
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED: fatal in clients, where COORDINATOR_NOT_AVAILABLE made them retry"
    );
    assert!(
        txn.error_message
            .as_ref()
            .is_some_and(|m| m.contains("transactions are not supported")),
        "{:?}",
        txn.error_message
    );
    let txn = c.call(
        &FindCoordinatorRequest::default()
            .with_coordinator_keys(vec![s("t1")])
            .with_key_type(1),
        4,
    );
    assert_eq!(txn.coordinators[0].error_code, 53);
}

#[test]
fn given_two_members_when_the_second_joins_then_the_barrier_waits_for_both_and_the_leader_assigns()
{
    let b = start();
    let mut a = b.client();
    // MEMBER_ID_REQUIRED first, with a generated `client_id-uuid` id.
    let first = a.call(
        &join_request("g", "", None, 10_000, 5000, &[("range", RANGE)]),
        4,
    );
    assert_eq!(first.error_code, 79);
    assert!(
        first.member_id.starts_with("strata-test-"),
        "{:?}",
        first.member_id
    );
    let (a_id, g1) = solo(&mut a, "g", 10_000);
    assert_eq!(g1, 1);

    // Both now prefer roundrobin over range: roundrobin wins the vote. The rebalance timeout
    // is a minute: a barrier that did not end when both had joined would run that long.
    let addr = b.addr.clone();
    let joiner = thread::spawn(move || {
        let mut bc = Client::connect(&addr);
        let j = join_with_rebalance(
            &mut bc,
            "g",
            None,
            10_000,
            60_000,
            &[("roundrobin", b"b-meta"), ("range", RANGE)],
        );
        (bc, j)
    });
    until_rebalance(&mut a, "g", g1, &a_id, Duration::from_secs(5));
    let started = Instant::now();
    let ja = a.call(
        &join_request(
            "g",
            &a_id,
            None,
            10_000,
            60_000,
            &[("roundrobin", b"a-meta"), ("range", RANGE)],
        ),
        7,
    );
    let (mut bc, jb) = joiner.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the barrier ended when both had joined, not at the rebalance timeout"
    );
    assert_eq!((ja.error_code, jb.error_code), (0, 0));
    assert_eq!(ja.generation_id, 2);
    assert_eq!(jb.generation_id, 2);
    assert_eq!(ja.leader, ja.member_id, "the existing leader stays leader");
    assert_eq!(jb.leader.as_str(), a_id);
    assert_eq!(ja.protocol_name.as_ref().unwrap().as_str(), "roundrobin");
    assert_eq!(ja.protocol_type.as_ref().unwrap().as_str(), "consumer");
    let mut metas: Vec<(String, Vec<u8>)> = ja
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.metadata.to_vec()))
        .collect();
    metas.sort();
    let b_id = jb.member_id.to_string();
    let mut want = vec![
        (a_id.clone(), b"a-meta".to_vec()),
        (b_id.clone(), b"b-meta".to_vec()),
    ];
    want.sort();
    assert_eq!(
        metas, want,
        "the leader gets every member's metadata for the chosen protocol"
    );
    assert!(jb.members.is_empty(), "followers get no member list");

    // The follower's SyncGroup waits for the leader's.
    let b_id2 = b_id.clone();
    let follower = thread::spawn(move || {
        let r = sync(&mut bc, "g", 2, &b_id2, &[]);
        (bc, r)
    });
    thread::sleep(Duration::from_millis(300));
    assert!(!follower.is_finished(), "the follower waits for the leader");
    let sa = sync(
        &mut a,
        "g",
        2,
        &a_id,
        &[(&a_id, b"for-a"), (&b_id, b"for-b")],
    );
    let (mut bc, sb) = follower.join().unwrap();
    assert_eq!((sa.error_code, sb.error_code), (0, 0));
    assert_eq!(&sa.assignment[..], b"for-a");
    assert_eq!(&sb.assignment[..], b"for-b");
    assert_eq!(sb.protocol_name.as_ref().unwrap().as_str(), "roundrobin");

    // Heartbeat codes.
    assert_eq!(heartbeat(&mut a, "g", 2, &a_id), 0);
    assert_eq!(heartbeat(&mut a, "g", 1, &a_id), 22, "ILLEGAL_GENERATION");
    assert_eq!(heartbeat(&mut a, "g", 2, "nobody"), 25, "UNKNOWN_MEMBER_ID");
    assert_eq!(heartbeat(&mut a, "unknown-group", 2, &a_id), 25);

    // Describe shows both members with their assignments.
    let d = a.call(
        &DescribeGroupsRequest::default().with_groups(vec![group_id("g")]),
        5,
    );
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].members.len(), 2);
    let l = a.call(&ListGroupsRequest::default(), 4);
    assert_eq!(l.groups.len(), 1);
    assert_eq!(l.groups[0].group_state.as_str(), "Stable");

    // B leaves: A is told to rejoin and is alone in generation 3.
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    let lr = bc.call(
        &LeaveGroupRequest::default()
            .with_group_id(group_id("g"))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&b_id))]),
        4,
    );
    assert_eq!(lr.members[0].error_code, 0);
    assert_eq!(heartbeat(&mut a, "g", 2, &a_id), 27);
    let j3 = a.call(
        &join_request("g", &a_id, None, 10_000, 5000, &[("range", RANGE)]),
        7,
    );
    assert_eq!(
        (j3.error_code, j3.generation_id, j3.members.len()),
        (0, 3, 1)
    );
    // DeleteGroups refuses a group with members.
    let del = a.call(
        &DeleteGroupsRequest::default().with_groups_names(vec![group_id("g")]),
        2,
    );
    assert_eq!(del.results[0].error_code, 68, "NON_EMPTY_GROUP");
}

#[test]
fn given_a_member_that_stops_heartbeating_when_its_session_expires_then_it_is_evicted_and_the_group_rebalances()
 {
    let b = start();
    let mut a = b.client();
    let (a_id, _) = solo(&mut a, "g", 10_000);
    // B's session is short, but long enough that on a loaded machine its MEMBER_ID_REQUIRED
    // rejoin and A's SyncGroup still come well within it.
    let b_session = Duration::from_millis(2000);
    let addr = b.addr.clone();
    let joiner = thread::spawn(move || {
        let mut bc = Client::connect(&addr);
        join(
            &mut bc,
            "g",
            None,
            b_session.as_millis() as i32,
            &[("range", RANGE)],
        )
    });
    until_rebalance(&mut a, "g", 1, &a_id, Duration::from_secs(10));
    // B's session restarts when this join completes the barrier, which is after this instant.
    let started = Instant::now();
    let ja = a.call(
        &join_request("g", &a_id, None, 10_000, 5000, &[("range", RANGE)]),
        7,
    );
    let jb = joiner.join().unwrap();
    assert_eq!((ja.generation_id, ja.members.len()), (2, 2));
    let b_id = jb.member_id.to_string();
    // Only the leader syncs; B never heartbeats again.
    let sa = sync(&mut a, "g", 2, &a_id, &[(&a_id, b"x"), (&b_id, b"y")]);
    assert_eq!(sa.error_code, 0);
    until_rebalance(&mut a, "g", 2, &a_id, Duration::from_secs(15));
    assert!(
        started.elapsed() >= b_session,
        "not before the session timeout: {:?}",
        started.elapsed()
    );
    let j3 = a.call(
        &join_request("g", &a_id, None, 10_000, 5000, &[("range", RANGE)]),
        7,
    );
    assert_eq!(
        (j3.generation_id, j3.members.len()),
        (3, 1),
        "B was evicted"
    );
    assert_eq!(heartbeat(&mut a, "g", 3, &b_id), 25);
}

#[test]
fn given_a_static_member_when_it_rejoins_with_the_same_instance_id_then_no_rebalance_and_the_old_id_is_fenced()
 {
    let b = start();
    let mut a = b.client();
    let j = join(&mut a, "g", Some("instance-1"), 10_000, &[("range", RANGE)]);
    assert_eq!(
        j.error_code, 0,
        "a static member needs no MEMBER_ID_REQUIRED round"
    );
    let old = j.member_id.to_string();
    assert_eq!(sync(&mut a, "g", 1, &old, &[(&old, b"mine")]).error_code, 0);

    let mut again = b.client();
    let r = again.call(
        &join_request(
            "g",
            "",
            Some("instance-1"),
            10_000,
            5000,
            &[("range", RANGE)],
        ),
        7,
    );
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1, "same generation: no rebalance");
    let new = r.member_id.to_string();
    assert_ne!(new, old);
    let sy = sync(&mut again, "g", 1, &new, &[]);
    assert_eq!(sy.error_code, 0);
    assert_eq!(
        &sy.assignment[..],
        b"mine",
        "the old assignment carries over"
    );
    let fenced = a.call(
        &HeartbeatRequest::default()
            .with_group_id(group_id("g"))
            .with_generation_id(1)
            .with_member_id(s(&old))
            .with_group_instance_id(Some(s("instance-1"))),
        4,
    );
    assert_eq!(fenced.error_code, 82, "FENCED_INSTANCE_ID");
    assert_eq!(heartbeat(&mut again, "g", 1, &new), 0);
}

#[test]
fn given_commits_when_generation_or_member_is_wrong_then_they_are_refused_and_fetch_round_trips_metadata()
 {
    let b = start();
    let mut c = b.client();
    create_topic(&mut c, "t", 2, &[]);
    assert_eq!(
        fetch_offsets(&mut c, "g", &[("t", 0)]),
        vec![(-1, Some(String::new()))],
        "nothing committed: -1"
    );
    // A simple (non-member) commit is allowed while the group is empty.
    assert_eq!(
        commit(&mut c, "g", -1, "", &[("t", 0, 5, Some("simple"))]),
        vec![0]
    );
    let (id, generation) = solo(&mut c, "g", 10_000);
    assert_eq!(
        commit(&mut c, "g", generation - 1, &id, &[("t", 0, 9, None)]),
        vec![22]
    );
    assert_eq!(
        commit(&mut c, "g", generation, "stranger", &[("t", 0, 9, None)]),
        vec![25]
    );
    assert_eq!(
        commit(&mut c, "g", -1, "", &[("t", 0, 9, None)]),
        vec![25],
        "not while it has members"
    );
    assert_eq!(
        commit(&mut c, "g", generation, &id, &[("t", 9, 1, None)]),
        vec![3],
        "unknown partition"
    );
    assert_eq!(
        commit(
            &mut c,
            "g",
            generation,
            &id,
            &[("t", 0, 42, Some("meta ✓")), ("t", 1, 7, None)]
        ),
        vec![0, 0]
    );
    assert_eq!(
        fetch_offsets(&mut c, "g", &[("t", 0), ("t", 1)]),
        vec![(42, Some("meta ✓".into())), (7, Some(String::new()))]
    );
    // v8: the groups array.
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
    let r = c.call(
        &OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id("g"))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id("other"))
                .with_topics(None),
        ]),
        8,
    );
    assert_eq!(r.groups.len(), 2);
    let parts: Vec<(i32, i64)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(parts, vec![(0, 42), (1, 7)]);
    assert!(r.groups[1].topics.is_empty());
}

fn log_bytes(dir: &Path) -> (u64, usize) {
    let mut total = 0;
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("__consumer_offsets-0")).unwrap() {
        let e = e.unwrap();
        if e.path().extension().is_some_and(|x| x == "log") {
            total += e.metadata().unwrap().len();
            n += 1;
        }
    }
    (total, n)
}

#[test]
fn given_committed_offsets_when_the_broker_restarts_cleanly_or_is_killed_then_they_are_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Broker::start_in(tmp.path(), GROUP_SETTINGS);
    let mut c = b.client();
    create_topic(&mut c, "t", 3, &[]);
    assert_eq!(
        commit(
            &mut c,
            "g",
            -1,
            "",
            &[("t", 0, 10, Some("m0")), ("t", 1, 11, None)]
        ),
        vec![0, 0]
    );
    drop(c);
    assert_eq!(b.stop(), 0);

    let mut b = Broker::start_in(tmp.path(), GROUP_SETTINGS);
    let mut c = b.client();
    assert_eq!(
        fetch_offsets(&mut c, "g", &[("t", 0), ("t", 1), ("t", 2)]),
        vec![
            (10, Some("m0".into())),
            (11, Some(String::new())),
            (-1, Some(String::new()))
        ]
    );
    let l = c.call(&ListGroupsRequest::default(), 4);
    assert_eq!(
        l.groups[0].group_state.as_str(),
        "Empty",
        "a group with offsets exists after restart"
    );
    assert_eq!(
        commit(&mut c, "g", -1, "", &[("t", 2, 12, Some("acked"))]),
        vec![0]
    );
    b.kill9();

    let b = Broker::start_in(tmp.path(), GROUP_SETTINGS);
    let mut c = b.client();
    assert_eq!(
        fetch_offsets(&mut c, "g", &[("t", 0), ("t", 2)]),
        vec![(10, Some("m0".into())), (12, Some("acked".into()))],
        "an acknowledged commit survives SIGKILL"
    );
    // DeleteGroups on the empty group removes its offsets, durably.
    let del = c.call(
        &DeleteGroupsRequest::default().with_groups_names(vec![group_id("g")]),
        2,
    );
    assert_eq!(del.results[0].error_code, 0);
    let del = c.call(
        &DeleteGroupsRequest::default().with_groups_names(vec![group_id("g")]),
        2,
    );
    assert_eq!(del.results[0].error_code, 69, "GROUP_ID_NOT_FOUND");
    assert_eq!(
        fetch_offsets(&mut c, "g", &[("t", 0)]),
        vec![(-1, Some(String::new()))]
    );
}

#[test]
fn given_committed_offsets_when_their_topic_is_deleted_and_recreated_then_the_new_topic_has_none() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Broker::start_in(tmp.path(), GROUP_SETTINGS);
    let mut c = b.client();
    create_topic(&mut c, "t", 2, &[]);
    create_topic(&mut c, "kept", 1, &[]);
    assert_eq!(
        commit(
            &mut c,
            "g",
            -1,
            "",
            &[("t", 0, 20, None), ("t", 1, 7, None), ("kept", 0, 5, None)]
        ),
        vec![0, 0, 0]
    );
    assert_eq!(commit(&mut c, "h", -1, "", &[("t", 0, 3, None)]), vec![0]);
    let r = c.call(
        &DeleteTopicsRequest::default().with_topic_names(vec![topic("t")]),
        5,
    );
    assert_eq!(r.responses[0].error_code, 0);
    create_topic(&mut c, "t", 2, &[]);
    // Kafka deletes a topic's committed offsets with it: a group that had reached offset 20
    // must not silently skip the first 20 records of the new topic.
    let none = (-1, Some(String::new()));
    assert_eq!(
        fetch_offsets(&mut c, "g", &[("t", 0), ("t", 1), ("kept", 0)]),
        vec![none.clone(), none.clone(), (5, Some(String::new()))]
    );
    assert_eq!(fetch_offsets(&mut c, "h", &[("t", 0)]), vec![none.clone()]);
    drop(c);
    b.kill9();
    let b = Broker::start_in(tmp.path(), GROUP_SETTINGS);
    let mut c = b.client();
    assert_eq!(
        fetch_offsets(&mut c, "g", &[("t", 0), ("kept", 0)]),
        vec![none, (5, Some(String::new()))],
        "the deletion of the offsets was durable"
    );
}

#[test]
fn given_many_commits_when_the_offsets_log_outgrows_its_limit_then_it_is_compacted_and_still_restores()
 {
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = GROUP_SETTINGS.to_vec();
    settings.extend(["--set", "offsets.topic.segment.bytes=4096"]);
    let mut b = Broker::start_in(tmp.path(), &settings);
    let mut c = b.client();
    create_topic(&mut c, "t", 4, &[]);
    // Committed once, before everything compaction drops: only its snapshots keep it.
    assert_eq!(
        commit(&mut c, "early", -1, "", &[("t", 2, 42, Some("once"))]),
        vec![0]
    );
    let mut max_seen = 0;
    for i in 0..1500i64 {
        let p = (i % 4) as i32;
        let meta = format!("commit-{i}");
        assert_eq!(
            commit(&mut c, "g", -1, "", &[("t", p, i, Some(&meta))]),
            vec![0]
        );
        max_seen = max_seen.max(log_bytes(tmp.path()).0);
    }
    // 1500 commits of ~100 bytes each would be ~150 KB without compaction.
    let (bytes, segments) = log_bytes(tmp.path());
    assert!(
        max_seen < 3 * 4096,
        "the offsets log stays bounded: peak {max_seen} bytes"
    );
    assert!(segments <= 3, "{segments} segments");
    assert!(bytes < 3 * 4096);
    let want: Vec<(i64, Option<String>)> = (1496..1500)
        .map(|i| (i, Some(format!("commit-{i}"))))
        .collect();
    let parts = [("t", 0), ("t", 1), ("t", 2), ("t", 3)];
    assert_eq!(fetch_offsets(&mut c, "g", &parts), want);
    b.kill9();
    let b = Broker::start_in(tmp.path(), &settings);
    let mut c = b.client();
    assert_eq!(
        fetch_offsets(&mut c, "g", &parts),
        want,
        "restored from the compacted log"
    );
    assert_eq!(
        fetch_offsets(&mut c, "early", &[("t", 2)]),
        vec![(42, Some("once".to_string()))],
        "an offset committed before every compaction is still there"
    );
}

#[test]
fn given_a_member_parked_in_the_join_barrier_when_the_broker_stops_then_it_is_answered_and_shutdown_is_prompt()
 {
    let mut b = start();
    let mut a = b.client();
    solo(&mut a, "g", 10_000);
    let addr = b.addr.clone();
    // The barrier would keep it a minute: the first member never rejoins.
    let parked = thread::spawn(move || {
        let mut bc = Client::connect(&addr);
        join_with_rebalance(&mut bc, "g", None, 10_000, 60_000, &[("range", RANGE)])
    });
    wait_for_group_state(&mut a, "g", "PreparingRebalance");
    assert!(
        !parked.is_finished(),
        "waits for the first member to rejoin"
    );
    let started = Instant::now();
    assert_eq!(b.stop(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a stop answers parked members instead of waiting out their barrier: {:?}",
        started.elapsed()
    );
    assert_eq!(
        parked.join().unwrap().error_code,
        15,
        "COORDINATOR_NOT_AVAILABLE"
    );
}

#[test]
fn given_committed_offsets_when_offset_delete_is_asked_then_only_unsubscribed_topics_lose_them() {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::protocol::Encodable;
    let b = Broker::start(GROUP_SETTINGS);
    let mut c = b.client();
    create_topic(&mut c, "sub", 1, &[]);
    create_topic(&mut c, "other", 1, &[]);
    // A member subscribed to "sub" (consumer protocol metadata, v0).
    let mut meta = bytes::BytesMut::new();
    meta.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s("sub")])
        .encode(&mut meta, 0)
        .unwrap();
    let j = join(&mut c, "od", None, 10_000, &[("range", &meta)]);
    assert_eq!(j.error_code, 0);
    let member = j.member_id.to_string();
    let _ = sync(
        &mut c,
        "od",
        j.generation_id,
        &member,
        &[(member.as_str(), b"")],
    );
    let codes = commit(
        &mut c,
        "od",
        j.generation_id,
        &member,
        &[("sub", 0, 5, None), ("other", 0, 7, None)],
    );
    assert_eq!(codes, vec![0, 0]);
    let delete = |c: &mut Client, group: &str| {
        let r = c.call(
            &OffsetDeleteRequest::default()
                .with_group_id(group_id(group))
                .with_topics(
                    ["sub", "other"]
                        .iter()
                        .map(|t| {
                            OffsetDeleteRequestTopic::default()
                                .with_name(topic(t))
                                .with_partitions(vec![
                                    OffsetDeleteRequestPartition::default().with_partition_index(0),
                                ])
                        })
                        .collect(),
                ),
            0,
        );
        (
            r.error_code,
            r.topics
                .iter()
                .map(|t| t.partitions[0].error_code)
                .collect::<Vec<_>>(),
        )
    };
    // The subscribed topic keeps its offset (GROUP_SUBSCRIBED_TO_TOPIC); the other loses it.
    assert_eq!(delete(&mut c, "od"), (0, vec![86, 0]));
    assert_eq!(
        fetch_offsets(&mut c, "od", &[("sub", 0), ("other", 0)]),
        vec![(5, Some(String::new())), (-1, Some(String::new()))]
    );
    // A group nobody knows.
    assert_eq!(delete(&mut c, "nobody").0, 69, "GROUP_ID_NOT_FOUND");
}
