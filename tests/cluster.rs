//! Three brokers under the metadata quorum (issue "cluster part 1"): placement and routing,
//! the active controller killed again and again, the whole cluster restarted, a node cut off
//! by a network partition, and hostile bytes on the controller listener.
//!
//! Every wait is bounded; none asserts a speed (fail-over times are printed, and measured in
//! PERFORMANCE.md).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod cluster_common;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cluster_common::{Cluster, eventually};
use common::{Client, batch, fetch, produce, topic, values};
use kafka_protocol::messages::*;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

fn metadata(c: &mut Client) -> MetadataResponse {
    c.call(&MetadataRequest::default().with_topics(None), 12)
}

/// CreateTopics of one topic: (error code, message).
fn create(c: &mut Client, name: &str, partitions: i32, timeout_ms: i32) -> (i16, Option<String>) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(-1),
        ]);
    let r = c.call(&req, 7);
    (
        r.topics[0].error_code,
        r.topics[0].error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Topic name -> per-partition (leader, replicas), from a Metadata response.
fn placement(m: &MetadataResponse) -> BTreeMap<String, Vec<(i32, Vec<i32>)>> {
    m.topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| {
            let mut ps: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        p.leader_id.0,
                        p.replica_nodes.iter().map(|r| r.0).collect::<Vec<_>>(),
                    )
                })
                .collect();
            ps.sort();
            (
                t.name.as_ref().unwrap().0.to_string(),
                ps.into_iter().map(|(_, l, r)| (l, r)).collect(),
            )
        })
        .collect()
}

/// Broker id -> address, from a Metadata response.
fn brokers(m: &MetadataResponse) -> BTreeMap<i32, String> {
    m.brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect()
}

/// Waits until node `i` lists `n` live brokers.
fn wait_brokers(c: &Cluster, i: usize, n: usize) -> MetadataResponse {
    eventually(Duration::from_secs(30), "every broker registered", || {
        let m = metadata(&mut c.client(i));
        (m.brokers.len() == n).then_some(m)
    })
}

#[test]
fn topics_are_placed_across_brokers_and_served_by_their_leaders() {
    let c = Cluster::start(3, false, &[]);
    c.wait_leader(Duration::from_secs(30));
    for i in 0..3 {
        wait_brokers(&c, i, 3);
    }
    // Created through node 2: visible there when answered, and on every node soon after.
    let (code, msg) = create(&mut c.client(1), "spread", 6, 10_000);
    assert_eq!(code, 0, "{msg:?}");
    let m1 = metadata(&mut c.client(1));
    let placed = placement(&m1)["spread"].clone();
    assert_eq!(placed.len(), 6);
    for i in [0, 2] {
        let same = eventually(
            Duration::from_secs(10),
            "the same placement on every node",
            || {
                let p = placement(&metadata(&mut c.client(i)));
                p.get("spread").filter(|p| **p == placed).cloned()
            },
        );
        assert_eq!(same, placed);
    }
    // Kafka's round-robin placement: six partitions over three brokers, two each.
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    for (leader, replicas) in &placed {
        assert_eq!(replicas, &vec![*leader]);
        *per_broker.entry(*leader).or_default() += 1;
    }
    assert_eq!(
        per_broker.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{placed:?}"
    );
    // Produce and fetch at each partition's leader; everyone else says NOT_LEADER_OR_FOLLOWER.
    let addrs = brokers(&m1);
    for (p, (leader, _)) in placed.iter().enumerate() {
        let p = i32::try_from(p).unwrap();
        let mut lc = Client::connect(&addrs[leader]);
        // The leader may apply the creation a moment after the node that forwarded it:
        // UNKNOWN_TOPIC_OR_PARTITION (3) until then, which clients retry.
        eventually(
            Duration::from_secs(10),
            "the leader has the partition",
            || {
                let r =
                    produce(&mut lc, "spread", p, batch(&[&format!("v{p}")], None), -1).unwrap();
                match r.responses[0].partition_responses[0].error_code {
                    0 => Some(()),
                    3 => None,
                    other => panic!("produce at the leader: error {other}"),
                }
            },
        );
        let f = fetch(&mut lc, "spread", p, 0, 100, 12);
        let got = values(f.responses[0].partitions[0].records.as_ref().unwrap());
        assert_eq!(got, vec![(0, format!("v{p}"))]);
        for (other, addr) in &addrs {
            if other == leader {
                continue;
            }
            let mut oc = Client::connect(addr);
            let r = produce(&mut oc, "spread", p, batch(&["x"], None), -1).unwrap();
            assert_eq!(
                r.responses[0].partition_responses[0].error_code,
                NOT_LEADER_OR_FOLLOWER
            );
            let f = fetch(&mut oc, "spread", p, 0, 0, 12);
            assert_eq!(
                f.responses[0].partitions[0].error_code,
                NOT_LEADER_OR_FOLLOWER
            );
        }
    }
    // Only the leader's data directory holds a partition's directory.
    for (p, (leader, _)) in placed.iter().enumerate() {
        for i in 0..3 {
            let here = c.dirs[i].join(format!("spread-{p}")).exists();
            assert_eq!(
                here,
                i32::try_from(i + 1).unwrap() == *leader,
                "spread-{p} on node {}",
                i + 1
            );
        }
    }
    // A replication factor above the brokers' count is refused by the controller.
    {
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        let r = c.client(0).call(
            &CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic("too-many"))
                    .with_num_partitions(1)
                    .with_replication_factor(4),
            ]),
            7,
        );
        assert_eq!(r.topics[0].error_code, 38, "INVALID_REPLICATION_FACTOR");
    }
    // Deleted through node 3: gone from every node's Metadata and disk.
    let r = c.client(2).call(
        &DeleteTopicsRequest::default()
            .with_topic_names(vec![topic("spread")])
            .with_timeout_ms(10_000),
        4,
    );
    assert_eq!(r.responses[0].error_code, 0);
    for i in 0..3 {
        eventually(Duration::from_secs(10), "the topic gone everywhere", || {
            let gone = !placement(&metadata(&mut c.client(i))).contains_key("spread")
                && (0..6).all(|p| !c.dirs[i].join(format!("spread-{p}")).exists());
            gone.then_some(())
        });
    }
}

#[test]
fn killing_the_active_controller_elects_another_and_loses_no_committed_metadata() {
    let rounds: usize = std::env::var("STRATA_CLUSTER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut c = Cluster::start(3, false, &[]);
    c.wait_leader(Duration::from_secs(30));
    wait_brokers(&c, 0, 3);
    let mut created: BTreeSet<String> = BTreeSet::new();
    let mut failovers = Vec::new();
    for round in 0..rounds {
        let leader = c.wait_leader(Duration::from_secs(30));
        // A topic through a node that stays up, acknowledged before the kill.
        let via = (leader + 1) % 3;
        let name = format!("round-{round}");
        let (code, msg) = create(&mut c.client(via), &name, 1, 10_000);
        assert_eq!(code, 0, "round {round}: {msg:?}");
        created.insert(name);
        c.kill9(leader);
        let killed_at = Instant::now();
        // Topic creation works again through a survivor once a new controller is elected.
        let probe = format!("probe-{round}");
        eventually(
            Duration::from_secs(30),
            "topic creation after the kill",
            || {
                let (code, _) = create(&mut c.client(via), &probe, 1, 2_000);
                (code == 0 || code == 36).then_some(())
            },
        );
        failovers.push(killed_at.elapsed());
        created.insert(probe);
        c.start_node(leader);
        // Every acknowledged creation is in every node's image (the restarted one included).
        for i in 0..3 {
            eventually(
                Duration::from_secs(30),
                "every acknowledged topic on every node",
                || {
                    let m = placement(&metadata(&mut c.client(i)));
                    created.iter().all(|t| m.contains_key(t)).then_some(())
                },
            );
        }
    }
    failovers.sort();
    println!(
        "controller fail-over (kill -9 to the next successful CreateTopics), {rounds} rounds: median {:?}, max {:?}",
        failovers.get(failovers.len() / 2),
        failovers.last()
    );
}

#[test]
fn a_whole_cluster_restart_keeps_topics_placement_records_and_committed_offsets() {
    let mut c = Cluster::start(3, false, &[]);
    c.wait_leader(Duration::from_secs(30));
    wait_brokers(&c, 0, 3);
    let (code, msg) = create(&mut c.client(0), "kept", 3, 10_000);
    assert_eq!(code, 0, "{msg:?}");
    let m = eventually(Duration::from_secs(10), "topic visible", || {
        let m2 = metadata(&mut c.client(0));
        placement(&m2).contains_key("kept").then_some(m2)
    });
    let before = placement(&m)["kept"].clone();
    let addrs = brokers(&m);
    for (p, (leader, _)) in before.iter().enumerate() {
        let mut lc = Client::connect(&addrs[leader]);
        eventually(
            Duration::from_secs(10),
            "the leader has the partition",
            || {
                let r = produce(
                    &mut lc,
                    "kept",
                    i32::try_from(p).unwrap(),
                    batch(&["a", "b"], None),
                    -1,
                );
                match r.unwrap().responses[0].partition_responses[0].error_code {
                    0 => Some(()),
                    3 => None,
                    other => panic!("produce at the leader: error {other}"),
                }
            },
        );
    }
    // A group's offsets, committed at its coordinator (the leader of its __consumer_offsets
    // partition).
    let coordinator = {
        let r = c.client(1).call(
            &FindCoordinatorRequest::default().with_key(common::s("g-kept")),
            2,
        );
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        format!("{}:{}", r.host, r.port)
    };
    let mut cc = Client::connect(&coordinator);
    // The coordinator may apply `__consumer_offsets` a moment after the broker that answered
    // FindCoordinator: COORDINATOR_NOT_AVAILABLE (15) or COORDINATOR_LOAD_IN_PROGRESS (14)
    // until then, which clients retry.
    let codes = eventually(
        Duration::from_secs(10),
        "the commit at the coordinator",
        || {
            let codes = common::commit(
                &mut cc,
                "g-kept",
                -1,
                "",
                &[("kept", 0, 2, None), ("kept", 1, 1, None)],
            );
            (codes != vec![15, 15] && codes != vec![14, 14]).then_some(codes)
        },
    );
    assert_eq!(codes, vec![0, 0]);
    // Every other broker refuses the group: NOT_COORDINATOR (16), clients look again.
    for (_, addr) in addrs.iter().filter(|(_, a)| **a != coordinator) {
        let mut other = Client::connect(addr);
        // COORDINATOR_NOT_AVAILABLE (15) while that broker has not applied the offsets topic.
        let codes = eventually(Duration::from_secs(10), "NOT_COORDINATOR", || {
            let codes = common::commit(&mut other, "g-kept", -1, "", &[("kept", 0, 9, None)]);
            (codes != vec![15]).then_some(codes)
        });
        assert_eq!(codes, vec![16], "a commit at {addr}, not the coordinator");
        let r = other.call(
            &HeartbeatRequest::default()
                .with_group_id(common::group_id("g-kept"))
                .with_member_id(common::s("m"))
                .with_generation_id(1),
            4,
        );
        assert_eq!(r.error_code, 16);
    }
    for i in 0..3 {
        assert_eq!(c.stop(i), 0, "node {} stopped cleanly", i + 1);
    }
    for i in 0..3 {
        c.start_node(i);
    }
    c.wait_leader(Duration::from_secs(30));
    let m = wait_brokers(&c, 2, 3);
    assert_eq!(placement(&m)["kept"], before, "placement after the restart");
    let addrs = brokers(&m);
    for (p, (leader, _)) in before.iter().enumerate() {
        let mut lc = Client::connect(&addrs[leader]);
        let f = fetch(&mut lc, "kept", i32::try_from(p).unwrap(), 0, 100, 12);
        let got = values(f.responses[0].partitions[0].records.as_ref().unwrap());
        assert_eq!(got, vec![(0, "a".into()), (1, "b".into())]);
    }
    // The new coordinator loads the group's partition (COORDINATOR_LOAD_IN_PROGRESS meanwhile).
    let offsets = eventually(
        Duration::from_secs(20),
        "the offsets after the restart",
        || {
            let (_, addr) = self::coordinator(&c, 0, "g-kept")?;
            let r = Client::connect(&addr).call(
                &OffsetFetchRequest::default()
                    .with_group_id(common::group_id("g-kept"))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic("kept"))
                            .with_partition_indexes(vec![0, 1]),
                    ])),
                7,
            );
            (r.error_code == 0).then(|| {
                r.topics[0]
                    .partitions
                    .iter()
                    .map(|p| p.committed_offset)
                    .collect::<Vec<_>>()
            })
        },
    );
    assert_eq!(offsets, vec![2, 1]);
    // After a clean stop every node's data directory verifies clean: the partitions placed
    // on it, the metadata log, and the quorum's checked files.
    for i in 0..3 {
        assert_eq!(c.stop(i), 0);
    }
    let verify = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("verify")
            .arg(dir)
            .output()
            .unwrap()
    };
    for i in 0..3 {
        let out = verify(&c.dirs[i]);
        assert!(
            out.status.success(),
            "node {}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The clean stop checkpointed each replica's high watermark (Kafka's
    // replication-offset-checkpoint): both records of each partition `kept` holds.
    for i in 0..3 {
        let hw = strata_storage::meta::read_high_watermarks(&c.dirs[i])
            .unwrap()
            .expect("a checkpoint after a clean stop");
        let kept: Vec<u64> = (0..3)
            .filter_map(|p| hw.get(&("kept".to_string(), p)).copied())
            .collect();
        assert!(!kept.is_empty(), "node {}: {hw:?}", i + 1);
        assert!(kept.iter().all(|h| *h == 2), "node {}: {hw:?}", i + 1);
    }
    // A damaged checkpoint: verify names it.
    let cp = c.dirs[1].join(strata_storage::meta::HW_CHECKPOINT);
    let good = std::fs::read(&cp).unwrap();
    std::fs::write(&cp, b"0\n7\nkept 0 2\n").unwrap();
    let out = verify(&c.dirs[1]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("hw_checkpoint"));
    std::fs::write(&cp, good).unwrap();
    // A flipped byte in a quorum file: verify names it, and the node refuses to start on it.
    let state = c.dirs[0].join("cluster/raft-state");
    let mut bytes = std::fs::read(&state).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(&state, &bytes).unwrap();
    let out = verify(&c.dirs[0]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("cluster_file"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&c.dirs[0])
        .args([
            "--set",
            "process.roles=broker,controller",
            "--set",
            "node.id=1",
        ])
        .arg("--set")
        .arg(format!("controller.quorum.voters=1@{}", c.controllers[0]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("raft-state is damaged"), "{err}");
}

#[test]
fn a_node_cut_off_cannot_change_metadata_and_catches_up_after_healing() {
    let c = Cluster::start(3, true, &[]);
    let leader = c.wait_leader(Duration::from_secs(30));
    wait_brokers(&c, 0, 3);
    let (code, msg) = create(&mut c.client(0), "before", 1, 10_000);
    assert_eq!(code, 0, "{msg:?}");
    // Cut the active controller off: it is the minority now.
    c.isolate(leader);
    let (code, _) = create(&mut c.client(leader), "minority", 1, 3_000);
    assert_ne!(code, 0, "the minority created a topic");
    // The majority elects a controller of its own and goes on.
    let other = (leader + 1) % 3;
    eventually(
        Duration::from_secs(30),
        "the majority creates a topic",
        || {
            let (code, _) = create(&mut c.client(other), "majority", 1, 2_000);
            (code == 0 || code == 36).then_some(())
        },
    );
    // ... and fences the node it cannot hear from.
    let fenced_id = i32::try_from(leader + 1).unwrap();
    eventually(Duration::from_secs(30), "the cut-off broker fenced", || {
        let m = metadata(&mut c.client(other));
        (!m.brokers.iter().any(|b| b.node_id.0 == fenced_id)).then_some(())
    });
    // The cut-off node still serves its own (stale) view, without the majority's topic.
    assert!(!placement(&metadata(&mut c.client(leader))).contains_key("majority"));
    c.heal();
    eventually(
        Duration::from_secs(30),
        "the healed node catches up",
        || {
            let p = placement(&metadata(&mut c.client(leader)));
            (p.contains_key("majority") && p.contains_key("before") && !p.contains_key("minority"))
                .then_some(())
        },
    );
    eventually(
        Duration::from_secs(30),
        "the healed broker unfenced",
        || {
            let m = metadata(&mut c.client(other));
            m.brokers
                .iter()
                .any(|b| b.node_id.0 == fenced_id)
                .then_some(())
        },
    );
}

#[test]
fn hostile_bytes_on_the_controller_listener_close_only_their_connection() {
    let c = Cluster::start(3, false, &[]);
    c.wait_leader(Duration::from_secs(30));
    wait_brokers(&c, 0, 3);
    let target = c.controllers[0].clone();
    let send = |bytes: &[u8]| -> Vec<u8> {
        let mut s = std::net::TcpStream::connect(&target).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    // A length far over the limit: closed before anything is allocated, nothing answered.
    assert!(send(&u32::MAX.to_be_bytes()).is_empty());
    // A frame cut short.
    let mut short = 100u32.to_be_bytes().to_vec();
    short.extend_from_slice(b"{\"Vote\"");
    assert!(send(&short).is_empty());
    // Bytes that are not a request: answered with an error, then closed.
    for body in [
        &b"not json at all"[..],
        b"{\"RegisterBroker\":{\"id\":\"x\"}}",
        b"{\"AppendEntries\":{\"vote\":1}}",
        &[b'['; 4000],
    ] {
        let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        let answer = send(&frame);
        assert!(
            answer.len() > 4,
            "no error answer to {:?}",
            String::from_utf8_lossy(body)
        );
        let text = String::from_utf8_lossy(&answer[4..]).to_string();
        assert!(text.contains("did not decode"), "{text}");
    }
    // Random bytes in many connections at once.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..50 {
        let mut junk = vec![0u8; 64];
        for b in &mut junk {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        send(&junk);
    }
    let ask = |req: &str| -> String {
        let mut frame = u32::try_from(req.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(req.as_bytes());
        let mut s = std::net::TcpStream::connect(&target).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&frame).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
        String::from_utf8_lossy(&body).to_string()
    };
    // A broker claiming another's id with a stale epoch is refused, not believed.
    let text = ask(
        r#"{"cluster_id":"","request":{"Heartbeat":{"id":2,"epoch":999999,"applied_index":0}}}"#,
    );
    assert!(
        text.contains("StaleBrokerEpoch") || text.contains("NotController"),
        "{text}"
    );
    // A frame from another cluster is refused whatever it asks.
    let text = ask(r#"{"cluster_id":"strata-someone-else","request":"Status"}"#);
    assert!(text.contains("is in cluster"), "{text}");
    // A Raft request from a node that is not a voter is refused.
    let text = ask(
        r#"{"cluster_id":"","request":{"Vote":{"vote":{"leader_id":{"term":99,"node_id":77},"committed":false},"last_log_id":null}}}"#,
    );
    assert!(text.contains("not a voter"), "{text}");
    // The quorum and the brokers serve on.
    assert!(c.status(0).is_some());
    let (code, msg) = create(&mut c.client(0), "after-hostile", 3, 10_000);
    assert_eq!(code, 0, "{msg:?}");
    assert_eq!(metadata(&mut c.client(0)).brokers.len(), 3);
}

#[test]
fn a_node_behind_a_snapshot_catches_up_by_installing_it() {
    let mut c = Cluster::start(3, false, &["--set", "strata.metadata.snapshot.entries=20"]);
    let leader = c.wait_leader(Duration::from_secs(30));
    wait_brokers(&c, 0, 3);
    let down = (leader + 1) % 3;
    let via = (leader + 2) % 3;
    c.kill9(down);
    for i in 0..40 {
        let (code, msg) = create(&mut c.client(via), &format!("snap-{i}"), 1, 10_000);
        assert_eq!(code, 0, "{msg:?}");
    }
    // The leader took a snapshot and purged the log before it.
    let st = eventually(Duration::from_secs(30), "a snapshot and a purge", || {
        let l = c.leader()?;
        let s = c.status(l)?;
        (s["purged_index"].as_u64().is_some() && s["snapshot_index"].as_u64().is_some())
            .then_some(s)
    });
    assert!(st["purged_index"].as_u64().unwrap() > 0, "{st}");
    // The node that was down cannot be sent the purged entries: it installs the snapshot.
    c.start_node(down);
    eventually(
        Duration::from_secs(30),
        "the restarted node has every topic",
        || {
            let p = placement(&metadata(&mut c.client(down)));
            (0..40)
                .all(|i| p.contains_key(&format!("snap-{i}")))
                .then_some(())
        },
    );
    assert!(c.dirs[down].join("cluster/metadata-snapshot").exists());
    // And a restart of a node that has a snapshot starts from it.
    let s = c.stop(via);
    assert_eq!(s, 0);
    c.start_node(via);
    eventually(
        Duration::from_secs(30),
        "the restarted node has every topic",
        || {
            let p = placement(&metadata(&mut c.client(via)));
            (0..40)
                .all(|i| p.contains_key(&format!("snap-{i}")))
                .then_some(())
        },
    );
}

#[test]
fn a_controller_only_voter_and_a_broker_only_node_work_beside_combined_nodes() {
    // Nodes 1 and 2 combined, 3 a voter serving no clients, 4 a broker that votes for nothing.
    let mut c = Cluster::start_roles(
        &[
            "broker,controller",
            "broker,controller",
            "controller",
            "broker",
        ],
        false,
        &[],
    );
    c.wait_leader(Duration::from_secs(30));
    let m = wait_brokers(&c, 3, 3);
    let ids: BTreeSet<i32> = m.brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(
        ids,
        BTreeSet::from([1, 2, 4]),
        "the brokers, not the controller-only voter"
    );
    // Created through the broker-only node, placed over the three brokers.
    let (code, msg) = create(&mut c.client(3), "mixed", 6, 10_000);
    assert_eq!(code, 0, "{msg:?}");
    let placed = eventually(Duration::from_secs(10), "the topic on node 4", || {
        placement(&metadata(&mut c.client(3))).get("mixed").cloned()
    });
    let leaders: BTreeSet<i32> = placed.iter().map(|(l, _)| *l).collect();
    assert_eq!(leaders, BTreeSet::from([1, 2, 4]), "{placed:?}");
    // A partition the broker-only node leads takes a produce there.
    let p = placed.iter().position(|(l, _)| *l == 4).unwrap();
    let mut c4 = c.client(3);
    eventually(
        Duration::from_secs(10),
        "the broker-only node serves its partition",
        || {
            let r = produce(
                &mut c4,
                "mixed",
                i32::try_from(p).unwrap(),
                batch(&["x"], None),
                -1,
            )
            .unwrap();
            (r.responses[0].partition_responses[0].error_code == 0).then_some(())
        },
    );
    // The quorum's leader killed: the broker-only node follows the new one.
    let leader = c.wait_leader(Duration::from_secs(30));
    c.kill9(leader);
    eventually(
        Duration::from_secs(30),
        "topic creation through node 4 after the kill",
        || {
            let (code, _) = create(&mut c.client(3), "after-kill", 1, 2_000);
            (code == 0 || code == 36).then_some(())
        },
    );
    eventually(Duration::from_secs(10), "node 4 sees the new topic", || {
        placement(&metadata(&mut c.client(3)))
            .contains_key("after-kill")
            .then_some(())
    });
}

/// Java's `String.hashCode`, as Kafka maps a group to its `__consumer_offsets` partition.
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (if h == i32::MIN { 0 } else { h.abs() }) % partitions
}

/// The coordinator of `group` as node `i` names it: (node id, address), once it names one.
fn coordinator(c: &Cluster, i: usize, group: &str) -> Option<(i32, String)> {
    let r = c.client(i).call(
        &FindCoordinatorRequest::default().with_key(common::s(group)),
        2,
    );
    (r.error_code == 0).then(|| (r.node_id.0, format!("{}:{}", r.host, r.port)))
}

#[test]
fn committed_offsets_survive_the_kill_9_of_their_coordinator() {
    // Small segments: the coordinator compacts its `__consumer_offsets` partition many times
    // over, and the followers follow the moved log start.
    let mut c = Cluster::start(
        3,
        false,
        &[
            "--set",
            "offsets.topic.segment.bytes=4096",
            "--set",
            "offsets.topic.num.partitions=5",
        ],
    );
    c.wait_leader(Duration::from_secs(30));
    wait_brokers(&c, 0, 3);
    let (code, msg) = create(&mut c.client(0), "tracked", 2, 10_000);
    assert_eq!(code, 0, "{msg:?}");
    let group = "g-survives";
    let (first, addr) = eventually(Duration::from_secs(20), "a coordinator", || {
        coordinator(&c, 0, group)
    });
    let mut cc = Client::connect(&addr);
    // A group of the same `__consumer_offsets` partition, committed once before everything the
    // compactions drop: only their snapshots keep it.
    let early = (0..)
        .map(|k| format!("early-{k}"))
        .find(|g| offsets_partition(g, 5) == offsets_partition(group, 5))
        .unwrap();
    let codes = eventually(Duration::from_secs(10), "the early commit", || {
        let codes = common::commit(&mut cc, &early, -1, "", &[("tracked", 0, 7, Some("once"))]);
        (!codes.iter().all(|c| *c == 14 || *c == 15)).then_some(codes)
    });
    assert_eq!(codes, vec![0]);
    // 200 commits, each acknowledged once every in-sync replica has it.
    for n in 0..200i64 {
        let codes = eventually(Duration::from_secs(10), "a commit", || {
            let codes = common::commit(
                &mut cc,
                group,
                -1,
                "",
                &[("tracked", 0, n, None), ("tracked", 1, 1000 + n, Some("m"))],
            );
            // COORDINATOR_LOAD_IN_PROGRESS (14) and COORDINATOR_NOT_AVAILABLE (15) right
            // after the topic is made; clients retry both.
            (!codes.iter().all(|c| *c == 14 || *c == 15)).then_some(codes)
        });
        assert_eq!(codes, vec![0, 0], "commit {n}");
    }
    let killed = usize::try_from(first - 1).unwrap();
    c.kill9(killed);
    let other = (killed + 1) % 3;
    // A new coordinator, another broker, has the offsets the dead one acknowledged.
    // The committed offsets of `of` for `partitions` of "tracked", at its coordinator, once
    // that is another broker than the killed one.
    let fetch = |of: &str, partitions: Vec<i32>| {
        let (id, addr) = coordinator(&c, other, of).filter(|(id, _)| *id != first)?;
        let mut nc = Client::connect(&addr);
        let r = nc.call(
            &OffsetFetchRequest::default()
                .with_group_id(common::group_id(of))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic("tracked"))
                        .with_partition_indexes(partitions),
                ])),
            7,
        );
        (r.error_code == 0).then(|| {
            let got: Vec<(i64, Option<String>)> = r.topics[0]
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.committed_offset,
                        p.metadata.as_ref().map(|m| m.to_string()),
                    )
                })
                .collect();
            (id, got)
        })
    };
    let (second, offsets) = eventually(
        Duration::from_secs(60),
        "offsets at the new coordinator",
        || fetch(group, vec![0, 1]),
    );
    assert_ne!(second, first);
    assert_eq!(
        offsets,
        vec![(199, Some(String::new())), (1199, Some("m".to_string()))],
        "what the killed coordinator acknowledged"
    );
    let (_, offsets) = eventually(
        Duration::from_secs(60),
        "the early group's offsets at the new coordinator",
        || fetch(&early, vec![0]),
    );
    assert_eq!(
        offsets,
        vec![(7, Some("once".to_string()))],
        "an offset committed before every compaction"
    );
    // The new leader was a follower: its copy starts past the compacted records.
    let p = offsets_partition(group, 5);
    let mut nc = c.client(usize::try_from(second - 1).unwrap());
    let r = nc.call(
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic("__consumer_offsets"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-2),
                    ]),
            ]),
        4,
    );
    let part = &r.topics[0].partitions[0];
    assert_eq!(part.error_code, 0);
    assert!(
        part.offset > 0,
        "the follower's log start followed the coordinator's compaction: {}",
        part.offset
    );
    // Commits go on with two brokers (the dead one leaves the ISR), and the restarted broker
    // catches up.
    let codes = eventually(
        Duration::from_secs(30),
        "a commit at the new coordinator",
        || {
            let addr = coordinator(&c, other, group)?.1;
            let codes = common::commit(
                &mut Client::connect(&addr),
                group,
                -1,
                "",
                &[("tracked", 0, 500, None)],
            );
            (codes != vec![14] && codes != vec![15] && codes != vec![16]).then_some(codes)
        },
    );
    assert_eq!(codes, vec![0]);
    c.start_node(killed);
    wait_brokers(&c, other, 3);
    // Clients cannot write to the offsets topic.
    let mut nc = c.client(usize::try_from(second - 1).unwrap());
    let r = produce(&mut nc, "__consumer_offsets", p, batch(&["x"], None), -1).unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 17,
        "INVALID_TOPIC_EXCEPTION"
    );
}
