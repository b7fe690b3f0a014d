//! Replicated partitions (issue "cluster part 2"): three brokers, replication factor 3,
//! `min.insync.replicas=2`, an idempotent producer with `acks=all` that retries until
//! acknowledged, and faults: the leader killed with `kill -9` at random moments and restarted,
//! the leader cut off by a network partition and healed, followers gone below
//! `min.insync.replicas`. The contract: nothing acknowledged is lost, nothing is written twice,
//! offsets have no gaps, and the replicas end byte-identical.
//!
//! The kill loop runs `STRATA_REPLICATION_ROUNDS` rounds (5 by default; 50 in the documented
//! full run). Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod cluster_common;
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster_common::{Cluster, eventually};
use common::{batch, topic};
use kafka_protocol::messages::*;
use parking_lot::Mutex;

const TOPIC: &str = "durable";

fn conn(addr: &str) -> Option<strata_client::Conn> {
    let s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    let c = strata_client::Conn::over(s, "replication-test");
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    Some(c)
}

/// (leader id, leader epoch, isr) of `TOPIC`-0 as any live node's Metadata says.
fn leader(c: &Cluster) -> Option<(i32, i32, Vec<i32>)> {
    for i in 0..c.nodes.len() {
        let Some(n) = &c.nodes[i] else { continue };
        let Some(mut k) = conn(&n.addr) else { continue };
        let Ok(m) = k.call(
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic(TOPIC))),
            ])),
            12,
        ) else {
            continue;
        };
        let Some(p) = m.topics.first().and_then(|t| t.partitions.first()) else {
            continue;
        };
        if p.leader_id.0 >= 0 {
            return Some((
                p.leader_id.0,
                p.leader_epoch,
                p.isr_nodes.iter().map(|b| b.0).collect(),
            ));
        }
    }
    None
}

fn create(c: &Cluster) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    eventually(Duration::from_secs(30), "three live brokers", || {
        let m = c
            .client(0)
            .call(&MetadataRequest::default().with_topics(None), 12);
        (m.brokers.len() == 3).then_some(())
    });
    let mut k = c.client(0);
    let r = k.call(
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic(TOPIC))
                    .with_num_partitions(1)
                    .with_replication_factor(3)
                    .with_configs(vec![
                        CreatableTopicConfig::default()
                            .with_name(common::s("min.insync.replicas"))
                            .with_value(Some(common::s("2"))),
                    ]),
            ]),
        7,
    );
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    eventually(
        Duration::from_secs(30),
        "the ISR has all three replicas",
        || leader(c).filter(|(_, _, isr)| isr.len() == 3),
    );
}

/// Produces one batch with `acks` to the partition's leader: its (error code, base offset).
fn produce_once(
    c: &Cluster,
    value: &str,
    producer: Option<(i64, i16, i32)>,
    acks: i16,
) -> Option<(i16, i64)> {
    let (id, _, _) = leader(c)?;
    produce_at(&c.broker_addr(id), value, producer, acks)
}

/// Produces one batch with `acks` to the broker at `addr`: its (error code, base offset), or
/// `None` without an answer.
fn produce_at(
    addr: &str,
    value: &str,
    producer: Option<(i64, i16, i32)>,
    acks: i16,
) -> Option<(i16, i64)> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let mut k = conn(addr)?;
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(3000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic(TOPIC))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(&[value], producer))),
                ]),
        ]);
    let r = k.call(&req, 9).ok()?;
    let p = r.responses.first()?.partition_responses.first()?;
    Some((p.error_code, p.base_offset))
}

/// (leader id, leader epoch) of `TOPIC`-0 as node `i`'s Metadata says.
fn seen_by(c: &Cluster, i: usize) -> Option<(i32, i32)> {
    let mut k = conn(&c.nodes[i].as_ref()?.addr)?;
    let m = k
        .call(&MetadataRequest::default().with_topics(None), 12)
        .ok()?;
    let p = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))?
        .partitions
        .first()?
        .clone();
    Some((p.leader_id.0, p.leader_epoch))
}

/// An idempotent producer: each value is retried (same sequence) until acknowledged.
struct Idempotent {
    pid: i64,
    seq: i32,
}

impl Idempotent {
    fn new(c: &Cluster) -> Idempotent {
        let pid = eventually(Duration::from_secs(30), "a producer id", || {
            (0..c.nodes.len()).find_map(|i| {
                let mut k = conn(&c.nodes[i].as_ref()?.addr)?;
                let r = k.call(&InitProducerIdRequest::default(), 4).ok()?;
                (r.error_code == 0).then_some(r.producer_id.0)
            })
        });
        Idempotent { pid, seq: 0 }
    }

    /// Sends `value` until acknowledged or `stop`; its offset.
    fn send(&mut self, c: &Cluster, value: &str, stop: &AtomicBool) -> Option<i64> {
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end {
            if let Some((0, offset)) = produce_once(c, value, Some((self.pid, 0, self.seq)), -1) {
                self.seq += 1;
                return Some(offset);
            }
            if stop.load(Ordering::Acquire) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{value} not acknowledged within 120 s");
    }
}

/// Every record of the partition from its leader (below the high watermark): (offset, value),
/// read until at least offset `at_least` (what the test saw acknowledged ends there). A new or
/// restarted leader's high watermark starts at its checkpoint and moves once its in-sync
/// followers fetch, so reads below `at_least` that come back empty are tried again; a fetch
/// that fails (a leader that just changed, a view not yet caught up) is retried against the
/// leader Metadata names then. For at most 60 s: then what was read is returned, for the
/// caller's check to name what is missing.
fn read_all(c: &Cluster, at_least: i64) -> Vec<(i64, String)> {
    let end = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    let mut next = 0i64;
    while Instant::now() < end {
        let got = leader(c)
            .and_then(|(id, _, _)| conn(&c.broker_addr(id)))
            .and_then(|mut k| common::fetch_with(&mut k, TOPIC, 0, next));
        match got {
            Some(records) if !records.is_empty() => {
                next = records.last().map_or(next, |r| r.0 + 1);
                out.extend(records);
            }
            Some(_) if next >= at_least => return out,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    out
}

/// The offset after the last acknowledged one.
fn end_of(acked: &BTreeMap<String, i64>) -> i64 {
    acked.values().max().map_or(0, |o| o + 1)
}

/// Waits until every replica is in the ISR, then stops every node cleanly and compares the
/// partition's segment files: byte-identical.
fn replicas_identical(c: &mut Cluster) {
    eventually(
        Duration::from_secs(60),
        "the ISR has all three replicas",
        || leader(c).filter(|(_, _, isr)| isr.len() == 3),
    );
    // Followers fetch continuously; a moment for the last high watermark to reach them.
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..3 {
        assert_eq!(c.stop(i), 0);
    }
    let bytes = |i: usize| -> Vec<u8> {
        let dir = c.dirs[i].join(format!("{TOPIC}-0"));
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        logs.iter()
            .flat_map(|p| std::fs::read(p).unwrap())
            .collect()
    };
    let first = bytes(0);
    assert!(!first.is_empty());
    // `strata verify --compare-replicas` says the same, and names a difference.
    let part = |i: usize| c.dirs[i].join(format!("{TOPIC}-0"));
    let compare = |dirs: &[std::path::PathBuf]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["verify", "--compare-replicas"])
            .args(dirs)
            .output()
            .unwrap()
    };
    let out = compare(&[part(0), part(1), part(2)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replicas identical"));
    {
        let copy = c.dirs[2].join("tampered-0");
        std::fs::create_dir_all(&copy).unwrap();
        for e in std::fs::read_dir(part(2)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                // The last byte: inside the last batch's records, not its framing.
                let mut b = std::fs::read(e.path()).unwrap();
                let last = b.len() - 1;
                b[last] ^= 0x01;
                std::fs::write(copy.join(e.file_name()), b).unwrap();
            }
        }
        let out = compare(&[part(0), copy]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("replicas differ"));
    }
    for i in 1..3 {
        assert!(
            bytes(i) == first,
            "replica on node {} differs from node 1's ({} vs {} bytes)",
            i + 1,
            bytes(i).len(),
            first.len()
        );
    }
}

/// Everything a background producer acknowledged (value -> offset).
type Acked = Arc<Mutex<BTreeMap<String, i64>>>;
/// The error codes it saw.
type Errors = Arc<Mutex<std::collections::BTreeSet<i16>>>;
/// Its thread.
type Background = std::thread::JoinHandle<()>;

/// Starts an idempotent `acks=all` producer that sends `v0`, `v1`, ... one at a time, each
/// retried (same sequence) until acknowledged, until `stop`.
fn spawn_producer(c: &Arc<Mutex<Cluster>>) -> (Acked, Errors, Arc<AtomicBool>, Background) {
    let acked: Acked = Arc::default();
    let errors: Arc<Mutex<std::collections::BTreeSet<i16>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (c, a, e, st) = (c.clone(), acked.clone(), errors.clone(), stop.clone());
    let h = std::thread::spawn(move || {
        let mut p = Idempotent::new(&c.lock());
        for n in 0..1_000_000 {
            if st.load(Ordering::Acquire) {
                break;
            }
            let v = format!("v{n}");
            let end = Instant::now() + Duration::from_secs(120);
            // The cluster lock is held for one attempt at a time, never across a fault.
            let offset = loop {
                let got = {
                    let g = c.lock();
                    produce_once(&g, &v, Some((p.pid, 0, p.seq)), -1)
                };
                match got {
                    Some((0, o)) => {
                        p.seq += 1;
                        break Some(o);
                    }
                    Some((code, _)) => {
                        e.lock().insert(code);
                    }
                    None => {}
                }
                if st.load(Ordering::Acquire) {
                    break None;
                }
                assert!(Instant::now() < end, "{v} not acknowledged within 120 s");
                std::thread::sleep(Duration::from_millis(50));
            };
            match offset {
                Some(o) => {
                    a.lock().insert(v, o);
                }
                None => break,
            }
        }
    });
    (acked, errors, stop, h)
}

/// Kafka's retriable produce errors a client sees while leaders move: NOT_LEADER_OR_FOLLOWER
/// (6), REQUEST_TIMED_OUT (7), UNKNOWN_TOPIC_OR_PARTITION (3, a broker that has not applied
/// the topic yet), LEADER_NOT_AVAILABLE (5), NOT_ENOUGH_REPLICAS (19) and
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND (20), KAFKA_STORAGE_ERROR (56, a log closing).
const RETRIABLE: [i16; 7] = [3, 5, 6, 7, 19, 20, 56];

#[test]
fn a_rolling_restart_under_load_shows_only_retriable_errors_and_loses_nothing() {
    let c = Cluster::start(3, false, &["--set", "replica.lag.time.max.ms=3000"]);
    c.wait_leader(Duration::from_secs(30));
    create(&c);
    let c = Arc::new(Mutex::new(c));
    let (acked, errors, stop, producer) = spawn_producer(&c);
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        let before = acked.lock().len();
        assert_eq!(c.lock().stop(i), 0, "node {} stopped cleanly", i + 1);
        c.lock().start_node(i);
        eventually(
            Duration::from_secs(60),
            "the restarted broker back in the ISR",
            || leader(&c.lock()).filter(|(_, _, isr)| isr.len() == 3),
        );
        eventually(
            Duration::from_secs(60),
            "acknowledgements after the restart",
            || (acked.lock().len() > before).then_some(()),
        );
    }
    stop.store(true, Ordering::Release);
    producer.join().unwrap();
    let seen = errors.lock().clone();
    assert!(
        seen.iter().all(|e| RETRIABLE.contains(e)),
        "non-retriable errors during the rolling restart: {seen:?}"
    );
    let acked = acked.lock().clone();
    let log = read_all(&c.lock(), end_of(&acked));
    check(&acked, &log);
    replicas_identical(&mut c.lock());
}

#[test]
fn a_crash_of_the_whole_cluster_under_flush_messages_1_loses_nothing_acknowledged() {
    let c = Cluster::start(
        3,
        false,
        &[
            "--set",
            "replica.lag.time.max.ms=3000",
            "--set",
            "log.flush.interval.messages=1",
        ],
    );
    c.wait_leader(Duration::from_secs(30));
    create(&c);
    let c = Arc::new(Mutex::new(c));
    let (acked, _errors, stop, producer) = spawn_producer(&c);
    eventually(Duration::from_secs(60), "some acknowledgements", || {
        (acked.lock().len() > 50).then_some(())
    });
    // Every node at once, mid-stream.
    {
        let mut g = c.lock();
        for i in 0..3 {
            g.kill9(i);
        }
    }
    stop.store(true, Ordering::Release);
    producer.join().unwrap();
    let acked = acked.lock().clone();
    {
        let mut g = c.lock();
        for i in 0..3 {
            g.start_node(i);
        }
        g.wait_leader(Duration::from_secs(60));
    }
    eventually(
        Duration::from_secs(60),
        "the ISR has all three replicas",
        || leader(&c.lock()).filter(|(_, _, isr)| isr.len() == 3),
    );
    let log = read_all(&c.lock(), end_of(&acked));
    check(&acked, &log);
    replicas_identical(&mut c.lock());
}

fn check(acked: &BTreeMap<String, i64>, log: &[(i64, String)]) {
    // Offsets without gaps from 0.
    for (i, (o, _)) in log.iter().enumerate() {
        assert_eq!(*o, i64::try_from(i).unwrap(), "a gap before offset {o}");
    }
    // Every value once.
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    for (o, v) in log {
        if let Some(first) = seen.insert(v, *o) {
            panic!("{v} written twice, at {first} and {o}");
        }
    }
    // Every acknowledged value, where it was acknowledged.
    for (v, o) in acked {
        assert_eq!(
            seen.get(v.as_str()),
            Some(o),
            "acknowledged {v} at {o} is not there"
        );
    }
}

#[test]
fn killing_the_leader_at_random_moments_loses_and_duplicates_nothing_acknowledged() {
    let rounds: usize = std::env::var("STRATA_REPLICATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let c = Cluster::start(3, false, &["--set", "replica.lag.time.max.ms=3000"]);
    c.wait_leader(Duration::from_secs(30));
    create(&c);
    let c = Arc::new(Mutex::new(c));
    let (acked, errors, stop, producer) = spawn_producer(&c);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut elections = Vec::new();
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(200 + seed % 1300));
        let (old, epoch, _) = eventually(Duration::from_secs(30), "a leader", || leader(&c.lock()));
        let before = acked.lock().len();
        c.lock().kill9(usize::try_from(old - 1).unwrap());
        let killed = Instant::now();
        // A new leader from the ISR, and the producer acknowledged again through it.
        eventually(Duration::from_secs(60), "a new leader", || {
            leader(&c.lock()).filter(|(l, e, _)| *l != old && *e > epoch)
        });
        let end = Instant::now() + Duration::from_secs(60);
        while acked.lock().len() <= before {
            assert!(
                Instant::now() < end,
                "round {round}: no acknowledgement within 60 s of the kill; leader now {:?}; errors seen {:?}",
                leader(&c.lock()),
                errors.lock()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        elections.push(killed.elapsed());
        c.lock().start_node(usize::try_from(old - 1).unwrap());
        eventually(
            Duration::from_secs(60),
            "the restarted broker back in the ISR",
            || leader(&c.lock()).filter(|(_, _, isr)| isr.len() == 3),
        );
        println!(
            "round {round}: leader {old} killed, {} acknowledged so far",
            acked.lock().len()
        );
    }
    stop.store(true, Ordering::Release);
    producer.join().unwrap();
    let acked = acked.lock().clone();
    assert!(
        acked.len() > rounds,
        "only {} records acknowledged",
        acked.len()
    );
    let log = read_all(&c.lock(), end_of(&acked));
    check(&acked, &log);
    elections.sort();
    println!(
        "{rounds} kills: from kill -9 of the leader to the next acknowledged produce, median {:?}, max {:?}; {} acknowledged, {} in the log",
        elections.get(elections.len() / 2),
        elections.last(),
        acked.len(),
        log.len()
    );
    replicas_identical(&mut c.lock());
}

/// The replica list of `TOPIC`-0 (its first is the preferred leader).
fn replicas(c: &Cluster) -> Vec<i32> {
    let m = c.client(0).call(
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic(TOPIC))),
        ])),
        12,
    );
    m.topics[0].partitions[0]
        .replica_nodes
        .iter()
        .map(|b| b.0)
        .collect()
}

#[test]
fn leadership_returns_to_the_preferred_replica_once_it_is_back_in_sync() {
    let mut c = Cluster::start(
        3,
        false,
        &[
            "--set",
            "replica.lag.time.max.ms=3000",
            "--set",
            "leader.imbalance.check.interval.seconds=1",
        ],
    );
    c.wait_leader(Duration::from_secs(30));
    create(&c);
    let preferred = replicas(&c)[0];
    eventually(
        Duration::from_secs(10),
        "the preferred replica leads",
        || leader(&c).filter(|(l, _, _)| *l == preferred),
    );
    let i = usize::try_from(preferred - 1).unwrap();
    c.kill9(i);
    eventually(Duration::from_secs(30), "another leader", || {
        leader(&c).filter(|(l, _, _)| *l != preferred)
    });
    // Records the preferred replica must fetch before it is in sync again.
    for n in 0..5 {
        eventually(Duration::from_secs(10), "acks=all without it", || {
            (produce_once(&c, &format!("away-{n}"), None, -1).map(|r| r.0) == Some(0)).then_some(())
        });
    }
    c.start_node(i);
    // Back in the ISR, then leading again after a pass of the controller's check: a second
    // leader change (epoch 2; a node just restarted may still show its old image, epoch 0).
    eventually(
        Duration::from_secs(60),
        "the preferred replica leads again",
        || leader(&c).filter(|(l, epoch, isr)| *l == preferred && *epoch >= 2 && isr.len() == 3),
    );
    let back = eventually(
        Duration::from_secs(10),
        "acks=all at the preferred leader",
        || produce_once(&c, "back", None, -1).filter(|r| r.0 == 0),
    );
    let log: Vec<String> = read_all(&c, back.1 + 1)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    for v in ["away-0", "away-4", "back"] {
        assert!(log.contains(&v.to_string()), "{v} in {log:?}");
    }
    replicas_identical(&mut c);
}

#[test]
fn acks_all_is_refused_below_min_insync_replicas_and_acks_1_still_served() {
    let mut c = Cluster::start(3, false, &["--set", "replica.lag.time.max.ms=3000"]);
    c.wait_leader(Duration::from_secs(30));
    create(&c);
    eventually(Duration::from_secs(10), "acks=all served", || {
        (produce_once(&c, "all-in", None, -1).map(|r| r.0) == Some(0)).then_some(())
    });
    // min.insync.replicas=3 (through the metadata log): one follower down is one too many.
    {
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let r = c.client(0).call(
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(common::s(TOPIC))
                    .with_configs(vec![
                        AlterableConfig::default()
                            .with_name(common::s("min.insync.replicas"))
                            .with_config_operation(0)
                            .with_value(Some(common::s("3"))),
                    ]),
            ]),
            1,
        );
        assert_eq!(r.responses[0].error_code, 0);
    }
    let (l, _, _) = leader(&c).unwrap();
    let follower = (0..3)
        .find(|i| i32::try_from(*i + 1).unwrap() != l)
        .unwrap();
    c.kill9(follower);
    eventually(Duration::from_secs(30), "the ISR shrinks to two", || {
        leader(&c).filter(|(_, _, isr)| isr.len() == 2)
    });
    // NOT_ENOUGH_REPLICAS (19) for acks=all; acks=1 is the leader's own append.
    eventually(Duration::from_secs(10), "acks=all refused", || {
        (produce_once(&c, "refused", None, -1).map(|r| r.0) == Some(19)).then_some(())
    });
    assert_eq!(produce_once(&c, "one", None, 1).map(|r| r.0), Some(0));
    // The follower back and caught up: acks=all works again.
    c.start_node(follower);
    eventually(Duration::from_secs(30), "the ISR back to three", || {
        leader(&c).filter(|(_, _, isr)| isr.len() == 3)
    });
    let again = eventually(Duration::from_secs(10), "acks=all served again", || {
        produce_once(&c, "all-again", None, -1).filter(|r| r.0 == 0)
    });
    let log: Vec<String> = read_all(&c, again.1 + 1)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert!(log.contains(&"one".to_string()) && log.contains(&"all-again".to_string()));
    assert!(
        !log.contains(&"refused".to_string()),
        "a refused produce was written"
    );
}

#[test]
fn a_leader_cut_off_cannot_acknowledge_and_converges_after_healing() {
    let c = Cluster::start(3, true, &["--set", "replica.lag.time.max.ms=3000"]);
    c.wait_leader(Duration::from_secs(30));
    create(&c);
    let mut p = Idempotent::new(&c);
    let never = AtomicBool::new(false);
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    for n in 0..20 {
        let v = format!("before-{n}");
        let o = p.send(&c, &v, &never).unwrap();
        acked.insert(v, o);
    }
    let (old, epoch, _) = leader(&c).unwrap();
    let old_node = usize::try_from(old - 1).unwrap();
    c.isolate(old_node);
    // The cut-off leader takes the write but cannot get it to the in-sync replicas: no
    // acknowledgement (REQUEST_TIMED_OUT, or NOT_LEADER once it learns better).
    let (code, _) = produce_at(&c.broker_addr(old), "lost-on-the-minority", None, -1)
        .expect("the cut-off leader answers");
    assert_ne!(code, 0);
    // The majority elects a new leader and goes on.
    eventually(
        Duration::from_secs(60),
        "a new leader on the majority side",
        || {
            (0..3)
                .filter(|i| *i != old_node)
                .find_map(|i| seen_by(&c, i))
                .filter(|(l, e)| *l >= 0 && *l != old && *e > epoch)
        },
    );
    for n in 0..20 {
        let v = format!("after-{n}");
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            // Through a majority node's view of the leader (the cut-off one still thinks it
            // leads).
            let got = (|| {
                let other = (0..3).find(|i| *i != old_node)?;
                let (l, _) = seen_by(&c, other)?;
                if l < 0 || l == old {
                    return None;
                }
                let (code, o) = produce_at(&c.broker_addr(l), &v, Some((p.pid, 0, p.seq)), -1)?;
                (code == 0).then_some(o)
            })();
            if let Some(o) = got {
                p.seq += 1;
                acked.insert(v.clone(), o);
                break;
            }
            assert!(Instant::now() < end, "{v} not acknowledged by the majority");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    c.heal();
    // The old leader learns it is a follower, truncates what only it had, and catches up.
    eventually(
        Duration::from_secs(60),
        "the old leader back in the ISR",
        || leader(&c).filter(|(l, _, isr)| *l != old && isr.len() == 3),
    );
    let log = read_all(&c, end_of(&acked));
    check(&acked, &log);
    assert!(
        !log.iter().any(|(_, v)| v == "lost-on-the-minority"),
        "a write no in-sync replica acknowledged survived"
    );
    let mut c = c;
    replicas_identical(&mut c);
}

/// Mounts a `size`-byte tmpfs at `dir`, keeping what `dir` held. `false` if this machine
/// cannot (not root).
fn mount_small_fs(dir: &std::path::Path, size: &str) -> bool {
    let held = dir.with_extension("held");
    std::fs::rename(dir, &held).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    let copied = ok
        && std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", held.display()))
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
    if !copied {
        if ok {
            let _ = std::process::Command::new("umount").arg(dir).status();
        }
        let _ = std::fs::remove_dir(dir);
        std::fs::rename(&held, dir).unwrap();
    }
    copied
}

/// Fills the file system of `dir` with a file, leaving about `leave` bytes.
fn fill(dir: &std::path::Path, leave: u64) -> std::path::PathBuf {
    let path = dir.join("filler");
    let st = nix_statvfs(dir);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(0).unwrap();
    let want = st.saturating_sub(leave);
    let _ = std::process::Command::new("fallocate")
        .args(["-l", &want.to_string()])
        .arg(&path)
        .status();
    path
}

/// Free bytes of the file system of `dir` (`df`'s answer, from `stat -f`).
fn nix_statvfs(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|x| x.parse::<u64>().unwrap_or(0));
    it.next().unwrap_or(0) * it.next().unwrap_or(0)
}

#[test]
fn a_broker_whose_disk_fills_gives_up_leadership_and_rejoins_when_there_is_room() {
    // The small disk is a tmpfs, which takes no O_DIRECT: buffered writes on every node.
    let mut c = Cluster::start(
        3,
        false,
        &[
            "--set",
            "replica.lag.time.max.ms=3000",
            "--set",
            "strata.log.write.mode=buffered",
            // No blocks reserved ahead of the data: a write meets the full disk at once.
            "--set",
            "log.preallocate=false",
        ],
    );
    c.wait_leader(Duration::from_secs(30));
    // Node 1 gets a 48 MiB disk of its own.
    assert_eq!(c.stop(0), 0);
    if !mount_small_fs(&c.dirs[0], "48m") {
        c.start_node(0);
        strata_storage::testing::skip("loop_mount", "cannot mount a small tmpfs (root needed)");
        return;
    }
    let dir0 = c.dirs[0].clone();
    let unmount = scopeguard(move || {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&dir0)
            .status();
    });
    c.start_node(0);
    create(&c);
    // Node 1 leads: the producer writes there first.
    let c = Arc::new(Mutex::new(c));
    let led_by_1 = eventually(Duration::from_secs(30), "a leader", || leader(&c.lock()));
    let (acked, _errors, stop, producer) = spawn_producer(&c);
    eventually(Duration::from_secs(60), "some acknowledgements", || {
        (acked.lock().len() > 20).then_some(())
    });
    // Fill node 1's disk; whichever partition replica it holds fails its next write.
    let filler = fill(&c.lock().dirs[0], 64 << 10);
    // Its replica goes offline, leaves the ISR, and leadership (if it led) moves.
    eventually(Duration::from_secs(60), "node 1 out of the ISR", || {
        leader(&c.lock()).filter(|(l, _, isr)| *l != 1 && !isr.contains(&1))
    });
    let before = acked.lock().len();
    eventually(
        Duration::from_secs(60),
        "acknowledgements without node 1",
        || (acked.lock().len() > before + 10).then_some(()),
    );
    // Room again: the partition reopens, catches up as a follower and rejoins. The metadata
    // log shares the full disk: a node whose metadata log cannot be written stops (as a Kafka
    // broker whose metadata log directory fails), and is restarted once there is room.
    std::fs::remove_file(&filler).unwrap();
    // The node may stop at any moment until its metadata log has written again (a write that
    // met the full disk a moment before the room came back): it is restarted whenever it is
    // found stopped, as an operator (or systemd) would.
    eventually(Duration::from_secs(90), "node 1 back in the ISR", || {
        let mut g = c.lock();
        if !g.is_running(0) {
            g.start_node(0);
        }
        leader(&g).filter(|(_, _, isr)| isr.len() == 3)
    });
    stop.store(true, Ordering::Release);
    producer.join().unwrap();
    let acked = acked.lock().clone();
    let log = read_all(&c.lock(), end_of(&acked));
    check(&acked, &log);
    let _ = led_by_1;
    replicas_identical(&mut c.lock());
    drop(unmount);
}

/// Runs `f` when dropped (a test's cleanup, also when it fails).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
