//! Measures what hostile clients cost a running broker (issue "hardening"): its RSS from
//! `/proc/<pid>/status` while connections send decompression bombs, announce huge frames and
//! send nothing, or send a mebibyte of one-byte topic names; and a normal client's request
//! latency meanwhile. Run by `scripts/hostile-memory`, which builds the broker first; the
//! results go in PERFORMANCE.md ("Hostile clients").
//!
//! ```text
//! cargo run --release --example hostile_memory -- target/release/strata
//! ```
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use strata_storage::batch::{BatchBuilder, Compression, NewRecord};

/// The project's client, every failure a panic (a measurement that fails is not a result).
struct Client(strata_client::Conn);

impl Client {
    fn connect(addr: &str) -> Client {
        let c = strata_client::Conn::connect(addr, "hostile").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        Client(c)
    }

    fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        self.0.call(req, version).unwrap()
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create(c: &mut Client, topic: &str, configs: &[(&str, &str)]) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let r = c.call(
        &CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                ),
        ]),
        5,
    );
    assert_eq!(r.topics[0].error_code, 0);
}

fn produce(c: &mut Client, topic: &str, records: Bytes) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let r = c.call(
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records)),
                    ]),
            ]),
        8,
    );
    r.responses[0].partition_responses[0].error_code
}

fn fetch_count(c: &mut Client, topic: &str) -> usize {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let r = c.call(
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]),
        11,
    );
    r.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len())
}

fn one(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(NewRecord::new(value.as_bytes().to_vec())).unwrap();
    Bytes::from(b.build().unwrap())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples the broker's RSS every 20 ms while `work` runs; returns the peak (KiB).
fn peak_rss_during(pid: u32, work: impl FnOnce()) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    work();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    peak.load(Ordering::Relaxed)
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// A normal client's produce + fetch round trips, `n` of them.
fn normal_client(addr: &str, topic: &str, n: usize) -> Vec<Duration> {
    let mut c = Client::connect(addr);
    (0..n)
        .map(|i| {
            let t = Instant::now();
            assert_eq!(produce(&mut c, topic, one(&format!("n{i}"))), 0);
            assert!(fetch_count(&mut c, topic) > 0);
            t.elapsed()
        })
        .collect()
}

struct Broker {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &str) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    Broker {
        child,
        addr,
        _dir: dir,
    }
}

fn main() {
    let bin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/release/strata".into());
    println!(
        "| scenario | broker RSS, idle | peak | peak − idle | normal client p50 / max (produce+fetch) |"
    );
    println!("|---|---|---|---|---|");

    // 1. Decompression bombs: 64 connections, each sending 4 produce requests of a 60 MiB
    //    zstd bomb (4 KiB on the wire) to a topic that re-encodes with lz4.
    {
        let b = start(&bin);
        let pid = b.child.id();
        let mut c = Client::connect(&b.addr);
        create(&mut c, "lz4", &[("compression.type", "lz4")]);
        create(&mut c, "plain", &[]);
        let bomb = {
            let mut bb = BatchBuilder::new(Compression::Zstd);
            bb.push(NewRecord::new(vec![0u8; 60 << 20])).unwrap();
            Bytes::from(bb.build().unwrap())
        };
        let base = normal_client(&b.addr, "plain", 50);
        let idle = rss_kib(pid);
        let mut lat = Vec::new();
        let peak = peak_rss_during(pid, || {
            let senders: Vec<_> = (0..64)
                .map(|_| {
                    let (addr, bomb) = (b.addr.clone(), bomb.clone());
                    std::thread::spawn(move || {
                        let mut c = Client::connect(&addr);
                        for _ in 0..4 {
                            produce(&mut c, "lz4", bomb.clone());
                        }
                    })
                })
                .collect();
            lat = normal_client(&b.addr, "plain", 200);
            for s in senders {
                s.join().unwrap();
            }
        });
        println!(
            "| 64 connections × 4 zstd bombs (60 MiB each, {} B on the wire) to an lz4 topic | {} MiB | {} MiB | {} MiB | {:?} / {:?} (alone: {:?} / {:?}) |",
            bomb.len(),
            idle / 1024,
            peak / 1024,
            peak.saturating_sub(idle) / 1024,
            percentile(lat.clone(), 0.5),
            percentile(lat, 1.0),
            percentile(base.clone(), 0.5),
            percentile(base, 1.0),
        );
    }

    // 2. 256 connections that announce a 100 MiB frame and send nothing.
    {
        let b = start(&bin);
        let pid = b.child.id();
        let mut c = Client::connect(&b.addr);
        create(&mut c, "plain", &[]);
        let base = normal_client(&b.addr, "plain", 200);
        let idle = rss_kib(pid);
        let mut lat = Vec::new();
        let peak = peak_rss_during(pid, || {
            let _silent: Vec<TcpStream> = (0..256)
                .map(|_| {
                    let mut s = TcpStream::connect(&b.addr).unwrap();
                    s.write_all(&104_857_600i32.to_be_bytes()).unwrap();
                    s
                })
                .collect();
            std::thread::sleep(Duration::from_millis(200));
            lat = normal_client(&b.addr, "plain", 200);
        });
        println!(
            "| 256 connections announce 100 MiB frames and send nothing | {} MiB | {} MiB | {} MiB | {:?} / {:?} (alone: {:?} / {:?}) |",
            idle / 1024,
            peak / 1024,
            peak.saturating_sub(idle) / 1024,
            percentile(lat.clone(), 0.5),
            percentile(lat, 1.0),
            percentile(base.clone(), 0.5),
            percentile(base, 1.0),
        );
    }

    // 3. One request of about 1 MiB of array elements, each as small as the API allows, per
    //    API: what it costs (the factor `strata.request.processing.memory.bytes` reserves per
    //    request byte must cover it).
    {
        println!();
        println!(
            "| one request of ~1 MiB of smallest elements | elements | answered in | broker RSS peak − before | per request byte |"
        );
        println!("|---|---|---|---|---|");
        let n = 1 << 20;
        // A fresh broker per row: freed memory the allocator keeps would hide the next row's.
        let row = |label: &str, elements: usize, f: &mut dyn FnMut(&mut Client)| {
            let b = start(&bin);
            let pid = b.child.id();
            let mut c = Client::connect(&b.addr);
            create(&mut c, "plain", &[]);
            let before = rss_kib(pid);
            let mut took = Duration::ZERO;
            let peak = peak_rss_during(pid, || {
                let t = Instant::now();
                f(&mut c);
                took = t.elapsed();
            });
            let grew = peak.saturating_sub(before) * 1024;
            println!(
                "| {label} | {elements} | {took:?} | {} MiB | {:.1} |",
                grew >> 20,
                grew as f64 / n as f64
            );
        };
        let short = |i: usize| -> String {
            // Distinct names of 1-4 characters, as short as the count allows.
            let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._";
            let mut s = String::new();
            let mut i = i;
            loop {
                s.push(alphabet[i % alphabet.len()] as char);
                i /= alphabet.len();
                if i == 0 {
                    break;
                }
                i -= 1;
            }
            s
        };
        let count = n / 5;
        row("DeleteTopics v3, distinct unknown names", count, &mut |c| {
            let names = (0..count).map(|i| name(&short(i))).collect();
            c.call(&DeleteTopicsRequest::default().with_topic_names(names), 3);
        });
        row(
            "Metadata v9, distinct unknown names, no auto-create",
            count,
            &mut |c| {
                use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
                let topics = (0..count)
                    .map(|i| MetadataRequestTopic::default().with_name(Some(name(&short(i)))))
                    .collect();
                c.call(
                    &MetadataRequest::default()
                        .with_topics(Some(topics))
                        .with_allow_auto_topic_creation(false),
                    9,
                );
            },
        );
        row(
            "DescribeConfigs v1, distinct unknown topics",
            n / 6,
            &mut |c| {
                use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
                let res = (0..n / 6)
                    .map(|i| {
                        DescribeConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_string(short(i)))
                    })
                    .collect();
                c.call(&DescribeConfigsRequest::default().with_resources(res), 1);
            },
        );
        row(
            "ListOffsets v1, distinct partitions of one topic",
            n / 12,
            &mut |c| {
                use kafka_protocol::messages::list_offsets_request::{
                    ListOffsetsPartition, ListOffsetsTopic,
                };
                let parts = (0..n / 12)
                    .map(|i| {
                        ListOffsetsPartition::default()
                            .with_partition_index(i as i32)
                            .with_timestamp(-1)
                    })
                    .collect();
                c.call(
                    &ListOffsetsRequest::default().with_topics(vec![
                        ListOffsetsTopic::default()
                            .with_name(name("plain"))
                            .with_partitions(parts),
                    ]),
                    1,
                );
            },
        );
        row(
            "OffsetFetch v1, distinct partitions of one topic",
            n / 4,
            &mut |c| {
                use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
                c.call(
                    &OffsetFetchRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("g")))
                        .with_topics(Some(vec![
                            OffsetFetchRequestTopic::default()
                                .with_name(name("plain"))
                                .with_partition_indexes((0..(n / 4) as i32).collect()),
                        ])),
                    1,
                );
            },
        );
        row(
            "Produce v9, partitions with null records",
            n / 6,
            &mut |c| {
                use kafka_protocol::messages::produce_request::{
                    PartitionProduceData, TopicProduceData,
                };
                let parts = (0..n / 6)
                    .map(|i| PartitionProduceData::default().with_index(i as i32))
                    .collect();
                c.call(
                    &ProduceRequest::default().with_acks(1).with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(name("plain"))
                            .with_partition_data(parts),
                    ]),
                    9,
                );
            },
        );
        row(
            "Fetch v11, distinct partitions of one topic",
            n / 36,
            &mut |c| {
                use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
                let parts = (0..n / 36)
                    .map(|i| {
                        FetchPartition::default()
                            .with_partition(i as i32)
                            .with_partition_max_bytes(1)
                    })
                    .collect();
                c.call(
                    &FetchRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![
                            FetchTopic::default()
                                .with_topic(name("plain"))
                                .with_partitions(parts),
                        ]),
                    11,
                );
            },
        );
        row(
            "CreateTopics v2, distinct invalid names",
            n / 12,
            &mut |c| {
                use kafka_protocol::messages::create_topics_request::CreatableTopic;
                let topics = (0..n / 12)
                    .map(|i| {
                        CreatableTopic::default()
                            .with_name(name(&format!("!{}", short(i))))
                            .with_num_partitions(1)
                            .with_replication_factor(1)
                    })
                    .collect();
                c.call(&CreateTopicsRequest::default().with_topics(topics), 2);
            },
        );
        row(
            "OffsetCommit v2, distinct partitions of an unknown topic",
            n / 18,
            &mut |c| {
                use kafka_protocol::messages::offset_commit_request::{
                    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
                };
                let parts = (0..n / 18)
                    .map(|i| OffsetCommitRequestPartition::default().with_partition_index(i as i32))
                    .collect();
                c.call(
                    &OffsetCommitRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("g")))
                        .with_generation_id_or_member_epoch(-1)
                        .with_topics(vec![
                            OffsetCommitRequestTopic::default()
                                .with_name(name("nope"))
                                .with_partitions(parts),
                        ]),
                    2,
                );
            },
        );
        row(
            "DeleteGroups v1, distinct unknown groups",
            count,
            &mut |c| {
                let groups = (0..count)
                    .map(|i| GroupId(StrBytes::from_string(short(i))))
                    .collect();
                c.call(&DeleteGroupsRequest::default().with_groups_names(groups), 1);
            },
        );
        row(
            "DescribeGroups v1, distinct unknown groups",
            count,
            &mut |c| {
                let groups = (0..count)
                    .map(|i| GroupId(StrBytes::from_string(short(i))))
                    .collect();
                c.call(&DescribeGroupsRequest::default().with_groups(groups), 1);
            },
        );
        row("FindCoordinator v4, distinct keys", count, &mut |c| {
            let keys = (0..count)
                .map(|i| StrBytes::from_string(short(i)))
                .collect();
            c.call(
                &FindCoordinatorRequest::default().with_coordinator_keys(keys),
                4,
            );
        });
    }

    // 4. DeleteTopics with a mebibyte of one-byte names.
    {
        let b = start(&bin);
        let pid = b.child.id();
        let mut c = Client::connect(&b.addr);
        create(&mut c, "plain", &[]);
        let idle = rss_kib(pid);
        let alphabet: Vec<char> =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
                .chars()
                .collect();
        let names: Vec<TopicName> = (0..(1 << 20) / 3)
            .map(|i| name(&alphabet[i % alphabet.len()].to_string()))
            .collect();
        let mut took = Duration::ZERO;
        let peak = peak_rss_during(pid, || {
            let t = Instant::now();
            let r = c.call(&DeleteTopicsRequest::default().with_topic_names(names), 3);
            took = t.elapsed();
            assert_eq!(r.responses.len(), (1 << 20) / 3);
        });
        println!(
            "| DeleteTopics of 1 MiB of one-byte names ({} names), answered in {took:?} | {} MiB | {} MiB | {} MiB | |",
            (1 << 20) / 3,
            idle / 1024,
            peak / 1024,
            peak.saturating_sub(idle) / 1024,
        );
    }
}
