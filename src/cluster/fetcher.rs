//! Followers' replica fetchers (Kafka's `ReplicaFetcherThread`): for every broker that leads a
//! partition this broker follows, one thread and one connection that fetch all those
//! partitions with the Kafka Fetch API (v12: `replica_id` set, `current_leader_epoch`,
//! `last_fetched_epoch`), append what comes exactly as the leader wrote it, take the leader's
//! high watermark, and truncate a divergent tail when the leader answers with a diverging
//! epoch (KIP-279/KIP-595). The leader learns each follower's log end offset from its fetch
//! offset, which moves the high watermark and the ISR ([`crate::broker::replica`]).
//!
//! A leader's answer is hostile input like any other: frames are bounded by the client crate,
//! batches are checked (CRC, lengths) by the engine's replica append, and a batch that does
//! not start at this log's end is refused rather than written.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;

use super::image::MetadataImage;
use super::link::Link;
use crate::broker::Broker;
use crate::broker::replica::Assignment;

/// The Fetch version followers send (flexible, with `last_fetched_epoch` and the diverging
/// epoch in the answer).
const FETCH_VERSION: i16 = 12;

/// The most bytes one fetch response carries (Kafka's `replica.fetch.response.max.bytes`
/// default).
const RESPONSE_MAX_BYTES: i32 = 10 << 20;

/// Fetcher settings (Kafka's names).
#[derive(Debug, Clone, Copy)]
pub struct FetcherSettings {
    /// `replica.fetch.max.bytes`.
    pub max_bytes: i32,
    /// `replica.fetch.wait.max.ms`.
    pub max_wait: Duration,
}

/// A partition this broker follows, as the image says.
#[derive(Debug, Clone)]
struct Followed {
    topic: String,
    partition: i32,
    leader_epoch: i32,
}

/// The partitions `me` follows, by leader.
fn followed(image: &MetadataImage, me: i32) -> BTreeMap<i32, Vec<Followed>> {
    let mut out: BTreeMap<i32, Vec<Followed>> = BTreeMap::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader >= 0 && p.leader != me && p.replicas.contains(&me) {
                out.entry(p.leader).or_default().push(Followed {
                    topic: t.name.clone(),
                    partition: i32::try_from(i).unwrap_or(i32::MAX),
                    leader_epoch: p.leader_epoch,
                });
            }
        }
    }
    out
}

/// Runs until `stop`: keeps one fetcher thread per leader this broker follows partitions of.
pub async fn run(
    broker: Arc<Broker>,
    link: Arc<Link>,
    settings: FetcherSettings,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = link.subscribe();
    let mut threads: HashMap<i32, (Arc<AtomicBool>, std::thread::JoinHandle<()>)> = HashMap::new();
    loop {
        let leaders: Vec<i32> = followed(&rx.borrow_and_update(), link.node_id)
            .into_keys()
            .collect();
        // Threads of leaders no longer followed stop; finished ones are reaped.
        threads.retain(|leader, (quit, h)| {
            if !leaders.contains(leader) {
                quit.store(true, Ordering::Release);
            }
            !h.is_finished()
        });
        for leader in leaders {
            if threads.contains_key(&leader) {
                continue;
            }
            let quit = Arc::new(AtomicBool::new(false));
            let (b, l, q) = (broker.clone(), link.clone(), quit.clone());
            match std::thread::Builder::new()
                .name(format!("strata-fetch-{leader}"))
                .spawn(move || fetch_from(&b, &l, leader, settings, &q))
            {
                Ok(h) => {
                    threads.insert(leader, (quit, h));
                }
                Err(e) => tracing::error!(leader, error = %e, "cannot start a replica fetcher"),
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
            // Restarts fetchers that ended (their leader was away).
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    for (quit, _) in threads.values() {
        quit.store(true, Ordering::Release);
    }
    // Each ends after its fetch in flight (a long poll, or a read timeout): joined off the
    // async threads.
    let _ = tokio::task::spawn_blocking(move || {
        for (_, (_, h)) in threads {
            let _ = h.join();
        }
    })
    .await;
}

/// One fetcher: fetches from `leader` until told to quit or nothing is followed there.
fn fetch_from(broker: &Broker, link: &Link, leader: i32, s: FetcherSettings, quit: &AtomicBool) {
    let me = link.node_id;
    let mut conn: Option<strata_client::Conn> = None;
    // Bounded by `quit`, which the manager sets when the leader no longer leads anything here
    // and at shutdown; each round waits at most the fetch wait plus the read timeout.
    while !quit.load(Ordering::Acquire) {
        let image = link.image();
        let Some(parts) = followed(&image, me).remove(&leader) else {
            return;
        };
        let Some(addr) = image
            .brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .map(|b| format!("{}:{}", b.host, b.port))
        else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        // Only partitions this broker already holds, with the image's assignment applied.
        let parts: Vec<Followed> = parts
            .into_iter()
            .filter(|f| {
                broker
                    .partition(&f.topic, f.partition)
                    .and_then(|p| p.assignment())
                    .is_some_and(|a: Assignment| {
                        a.leader == leader && a.leader_epoch == f.leader_epoch
                    })
            })
            .collect();
        if parts.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&addr, me, s.max_wait) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::debug!(leader, %addr, error = %e, "replica fetcher: cannot connect");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            },
        };
        let req = fetch_request(broker, me, &parts, s);
        match c.call(&req, FETCH_VERSION) {
            Ok(resp) => {
                // A replica that could not take the leader's batches (its disk failed or
                // filled) is not asked again at once: the health pass takes it offline, and
                // the controller takes it out of the ISR.
                if !handle(broker, leader, &parts, resp) {
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            Err(e) => {
                tracing::debug!(leader, %addr, error = %e, "replica fetch failed");
                conn = None;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn connect(addr: &str, me: i32, wait: Duration) -> anyhow::Result<strata_client::Conn> {
    // An advertised host may be a name: resolved at each connection.
    let sock = std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{addr} resolves to no address"))?;
    let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    let conn = strata_client::Conn::over(stream, &format!("strata-replica-{me}"));
    conn.set_read_timeout(Some(wait + Duration::from_secs(10)))?;
    Ok(conn)
}

fn fetch_request(broker: &Broker, me: i32, parts: &[Followed], s: FetcherSettings) -> FetchRequest {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for f in parts {
        let Some(p) = broker.partition(&f.topic, f.partition) else {
            continue;
        };
        let Ok(log) = p.log() else {
            continue;
        };
        let last_epoch = log.leader_epochs().last().map_or(-1, |e| e.epoch);
        topics.entry(&f.topic).or_default().push(
            FetchPartition::default()
                .with_partition(f.partition)
                .with_current_leader_epoch(f.leader_epoch)
                .with_fetch_offset(log.log_end_offset() as i64)
                .with_last_fetched_epoch(last_epoch)
                .with_log_start_offset(log.log_start_offset() as i64)
                .with_partition_max_bytes(s.max_bytes),
        );
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(i32::try_from(s.max_wait.as_millis()).unwrap_or(500))
        .with_min_bytes(1)
        // Kafka's replica.fetch.response.max.bytes default: a response stays well inside the
        // client's frame limit however many partitions are followed (at least one batch
        // comes, KIP-74).
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// Applies a leader's answer: truncation, batches, high watermarks. `false` when a partition
/// could not take what came.
fn handle(
    broker: &Broker,
    leader: i32,
    parts: &[Followed],
    resp: kafka_protocol::messages::FetchResponse,
) -> bool {
    use strata_storage::batch::header::BatchHeader;
    let mut ok = true;
    if resp.error_code != 0 {
        tracing::debug!(leader, code = resp.error_code, "replica fetch refused");
        std::thread::sleep(Duration::from_millis(100));
        return true;
    }
    for t in resp.responses {
        let name = t.topic.0.to_string();
        for pd in t.partitions {
            if !parts
                .iter()
                .any(|f| f.topic == name && f.partition == pd.partition_index)
            {
                continue; // Not asked: a hostile or confused leader.
            }
            let Some(p) = broker.partition(&name, pd.partition_index) else {
                continue;
            };
            let what = format!("{name}-{}", pd.partition_index);
            if pd.error_code != 0 {
                tracing::debug!(partition = %what, leader, code = pd.error_code, "replica fetch: partition refused");
                continue;
            }
            if pd.diverging_epoch.epoch >= 0 && pd.diverging_epoch.end_offset >= 0 {
                let (epoch, end) = (pd.diverging_epoch.epoch, pd.diverging_epoch.end_offset);
                if let Err(e) = p.truncate_diverging(epoch, end as u64) {
                    tracing::error!(partition = %what, error = %e, "truncating a divergent tail failed");
                }
                continue;
            }
            if let Some(records) = pd.records {
                let Ok(log) = p.log() else { continue };
                let mut pos = 0usize;
                while let Some(rest) = records.get(pos..) {
                    if rest.len() < strata_storage::batch::header::HEADER_LEN {
                        break;
                    }
                    let Ok(h) = BatchHeader::parse(rest) else {
                        break;
                    };
                    let len = h.total_len();
                    if len > rest.len() {
                        break; // A batch cut short by the size limit: fetched again next time.
                    }
                    let batch = records.slice(pos..pos + len);
                    pos += len;
                    if u64::try_from(h.next_offset()).unwrap_or(0) <= log.log_end_offset() {
                        continue; // Already here.
                    }
                    if let Err(e) = p.append_as_follower(batch) {
                        tracing::warn!(partition = %what, leader, error = %e, "a leader's batch was refused");
                        ok = false;
                        break;
                    }
                }
            }
            if pd.high_watermark >= 0 {
                p.follower_high_watermark(pd.high_watermark as u64);
            }
            // The leader's log start (moved by DeleteRecords, or by the coordinator's
            // compaction of `__consumer_offsets`): a follower's follows it, up to its own high
            // watermark (Kafka's `maybeIncrementLogStartOffset` on the follower).
            if let Ok(log) = p.log()
                && let Ok(start) = u64::try_from(pd.log_start_offset)
            {
                let start = start.min(log.high_watermark());
                if start > log.log_start_offset() {
                    let moved = log
                        .delete_records_before(start)
                        .and_then(|_| log.delete_segments_before(start));
                    if let Err(e) = moved {
                        tracing::warn!(partition = %what, error = %e, "following the leader's log start failed");
                    }
                }
            }
        }
    }
    ok
}
