//! `--mode kafka`: a broker driven over the Kafka wire protocol by a small blocking client
//! ([`client`]), one TCP connection per producer and per consumer thread.
//!
//! * **Setup**: ApiVersions handshake (every version used must be advertised), CreateTopics with
//!   `--partitions` (an existing topic is reused with its own partition count and configs), the
//!   topic configs `max.message.bytes` (sized to the batches), `message.timestamp.type=CreateTime`
//!   and the durability policy from `--fsync` (`always` → `flush.messages=1`, `interval:MS` →
//!   `flush.ms=MS`), then Metadata. With `--spawn-broker` the broker is this binary's
//!   `strata serve` on a free port, stopped with SIGTERM at the end.
//! * **produce**: producer threads claim batch numbers from one counter as in embedded mode (batch
//!   `b` → partition `b % partitions`), build the batch themselves with the engine's
//!   `BatchBuilder` (compression is the client's cost, as in a Kafka client) and send one Produce
//!   request per batch, **up to `--in-flight` (default 5) per connection**
//!   (`max.in.flight.requests.per.connection`); a reader thread per connection takes the
//!   responses. Latency is send → acknowledgment. With `acks=0`
//!   there is no response: latency is the send, and the phase ends when ListOffsets shows every
//!   message stored. Unlike embedded mode, the phase does **not** end with an fsync: it ends at
//!   the last acknowledgment, i.e. what the topic's flush policy promises.
//! * **consume**: each consumer thread owns the partitions `p % consumers == c` and fetches them
//!   from where the produce phase started (`max_wait_ms` 500, `min_bytes` 1, `partition_max_bytes`
//!   1 MiB or one batch, whichever is larger); batches are walked with [`BatchScanner`] with CRC
//!   checks and their records counted, which must equal what was produced. Latency is per fetch.
//!   With `--cold` the broker's segment files are synced and evicted from the page cache first
//!   (`phase::evict_partitions`), so the broker reads them from the disk.
//! * **e2e**: consumers long-poll from the log end while producers send the same volume again;
//!   latency is the record timestamp (send time, µs) to the fetch response's arrival, weighted per
//!   message.
//! * `--idle S`: consumers long-poll the idle topic; the broker's CPU time meanwhile.
//!
//! Record timestamps are microseconds since the epoch, as in embedded mode (for µs e2e
//! resolution); Strata does not police CreateTime values, and `CreateTime` is set on the topic.

pub mod client;
pub mod spawn;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_storage::log::scan::BatchScanner;
use strata_storage::log::{FsyncPolicy, name};

use super::args::{Acks, BenchArgs};
use super::embedded::{Outcome, assignment, duration_ns, max_batch_bytes, run_baseline};
use super::hist;
use super::machine::{self, Machine};
use super::phase::{
    self, Batches, CpuMeter, Crew, Load, PhaseResult, Plan, ProduceSpec, RunFacts, Runner,
    broker_cpu, broker_cpu_since, join_all, join_both, merge, monitored, producers_ok,
    spawn_flagged, spawn_n,
};
use super::progress::Progress;
use super::report::IdleReport;
use client::Conn;

/// Fetch long-poll wait.
pub const FETCH_MAX_WAIT_MS: i32 = 500;
/// Fetch size per partition, at least (Kafka's `max.partition.fetch.bytes` default).
pub const FETCH_PARTITION_BYTES: usize = 1 << 20;
/// Fetch size per request (Kafka's `fetch.max.bytes` default).
pub const FETCH_MAX_BYTES: i32 = 50 << 20;
/// A consumer that sees no new record for this long fails the run.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Setup<'a> {
    load: Load<'a>,
    bootstrap: String,
    topic: TopicName,
    partitions: u32,
    acks: i16,
    broker_pid: Option<u32>,
    /// The broker's data dir, when it is on this machine (for `--cold`).
    data_dir: Option<PathBuf>,
}

impl<'a> Deref for Setup<'a> {
    type Target = Load<'a>;

    fn deref(&self) -> &Load<'a> {
        &self.load
    }
}

/// The phases over the wire, with the admin connection for ListOffsets.
struct Wire<'s, 'a> {
    setup: &'s Setup<'a>,
    admin: &'s mut Conn,
}

impl<'a> Runner<'a> for Wire<'_, 'a> {
    type Offsets = Vec<i64>;

    fn load(&self) -> &Load<'a> {
        &self.setup.load
    }

    fn produce(&mut self, label: &str, spec: &ProduceSpec) -> anyhow::Result<PhaseResult> {
        produce(self.setup, self.admin, label, spec)
    }

    fn end_offsets(&mut self) -> anyhow::Result<Vec<i64>> {
        list_end_offsets(self.admin, self.setup)
    }

    fn consume(&mut self, start: &Vec<i64>) -> anyhow::Result<PhaseResult> {
        consume(self.setup, start)
    }

    fn end_to_end(&mut self) -> anyhow::Result<PhaseResult> {
        end_to_end(self.setup, self.admin)
    }

    fn partition_dirs(&self) -> Option<Vec<PathBuf>> {
        let dir = self.setup.data_dir.as_ref()?;
        let topic = self.setup.topic.0.as_str();
        Some(
            (0..self.setup.partitions)
                .map(|p| dir.join(name::partition_dir_name(topic, p)))
                .collect(),
        )
    }
}

/// Runs the kafka-mode benchmark (starting and stopping a broker with `--spawn-broker`).
pub fn run(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let plan = Plan::new(args)?;
    let mut spawned = if args.spawn_broker {
        Some(spawn::SpawnedBroker::start(
            args.data_dir.as_deref(),
            args.io_backend,
            args.write_mode,
            args.direct_cache,
        )?)
    } else {
        None
    };
    let bootstrap = spawned
        .as_ref()
        .map_or_else(|| args.bootstrap.clone(), |b| b.addr.clone());
    let broker_pid = spawned.as_ref().and_then(|b| b.pid()).or(args.broker_pid);
    let broker_cpu_start = broker_cpu(broker_pid);
    let data_dir = spawned
        .as_ref()
        .map(|b| b.dir.clone())
        .or_else(|| args.data_dir.clone());
    let machine = match &data_dir {
        Some(d) => Machine::detect(d, "broker"),
        None => Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: machine::kernel_release(),
            filesystem: "unknown (external broker; pass its --data-dir)".into(),
            device: "unknown".into(),
            io_backend: "broker".into(),
        },
    };
    let baseline = if args.baseline {
        let Some(d) = &data_dir else {
            bail!(
                "--baseline in kafka mode needs the broker's data dir: --spawn-broker or --data-dir"
            );
        };
        Some(run_baseline(d, plan.total_bytes)?)
    } else {
        None
    };
    if args.cold && data_dir.is_none() {
        bail!("--cold in kafka mode needs the broker's data dir: --spawn-broker or --data-dir");
    }

    let mut admin = client::open(&bootstrap)?;
    let max_batch = max_batch_bytes(args.message_size, args.batch_size);
    let topic = client::topic_name(&args.topic);
    let partitions = ensure_topic(&mut admin, args, &topic, max_batch)?;
    let setup = Setup {
        load: Load::new(args, plan.messages, machine.cores),
        bootstrap: bootstrap.clone(),
        topic,
        partitions,
        acks: match args.acks {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        },
        broker_pid,
        data_dir: data_dir.clone(),
    };

    let phases = phase::run_phases(
        &mut Wire {
            setup: &setup,
            admin: &mut admin,
        },
        baseline.as_ref(),
    )?;
    let idle = if args.idle > 0.0 {
        Some(idle(&setup, &mut admin).context("idle measurement")?)
    } else {
        None
    };
    let broker_cpu_seconds = broker_cpu_since(broker_pid, broker_cpu_start);
    drop(admin);
    let (temporary, spawned_flag) = match &spawned {
        Some(b) => (b.temporary, true),
        None => (false, false),
    };
    if let Some(b) = spawned.as_mut() {
        b.stop().context("stopping the spawned broker")?;
    }
    drop(spawned);

    let facts = RunFacts {
        plan,
        partitions,
        max_batch_bytes: max_batch,
        data_dir: data_dir.as_ref().map_or_else(
            || "(external broker)".to_string(),
            |d| d.display().to_string(),
        ),
        temporary_data_dir: temporary,
        bootstrap: Some(bootstrap),
        spawned_broker: Some(spawned_flag),
        machine,
        baseline,
        broker_cpu_seconds,
        idle,
    };
    Ok(phase::outcome(args, phases, facts))
}

/// Creates the topic (or reuses an existing one); returns its partition count.
fn ensure_topic(
    admin: &mut Conn,
    args: &BenchArgs,
    topic: &TopicName,
    max_batch: usize,
) -> anyhow::Result<u32> {
    let mut configs = vec![
        ("max.message.bytes", max_batch.to_string()),
        ("message.timestamp.type", "CreateTime".to_string()),
    ];
    match args.fsync {
        FsyncPolicy::Never => {}
        FsyncPolicy::Always => configs.push(("flush.messages", "1".into())),
        FsyncPolicy::Interval(d) => configs.push(("flush.ms", d.as_millis().to_string())),
    }
    let partitions = i32::try_from(args.partitions).context("--partitions")?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic.clone())
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_static_str(k))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                ),
        ]);
    let resp = admin.call(&req, client::CREATE_TOPICS_VERSION)?;
    let t = resp
        .topics
        .first()
        .ok_or_else(|| anyhow!("CreateTopics: empty response"))?;
    const TOPIC_ALREADY_EXISTS: i16 = 36;
    let existed = match t.error_code {
        0 => false,
        TOPIC_ALREADY_EXISTS => true,
        code => bail!(
            "CreateTopics {}: error {code} {}",
            args.topic,
            t.error_message.as_deref().unwrap_or("")
        ),
    };
    // Metadata: the partition count (and that every partition has a leader).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let md = admin.call(
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic.clone())),
                ]))
                .with_allow_auto_topic_creation(false),
            client::METADATA_VERSION,
        )?;
        if let Some(t) = md.topics.first()
            && t.error_code == 0
            && !t.partitions.is_empty()
            && t.partitions.iter().all(|p| p.error_code == 0)
        {
            let n = u32::try_from(t.partitions.len()).context("partition count")?;
            if existed {
                eprintln!(
                    "topic {} exists with {n} partition(s): reusing it with its own configs{}",
                    args.topic,
                    if n == args.partitions {
                        String::new()
                    } else {
                        format!(" (--partitions {} ignored)", args.partitions)
                    }
                );
            }
            return Ok(n);
        }
        if Instant::now() >= deadline {
            bail!("topic {} has no usable metadata after 10 s", args.topic);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log end offset of every partition (ListOffsets latest).
fn list_end_offsets(admin: &mut Conn, setup: &Setup<'_>) -> anyhow::Result<Vec<i64>> {
    let parts: Vec<i32> = (0..setup.partitions)
        .map(|p| i32::try_from(p).unwrap_or(i32::MAX))
        .collect();
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(setup.topic.clone())
                .with_partitions(
                    parts
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(-1)
                        })
                        .collect(),
                ),
        ]);
    let resp = admin.call(&req, client::LIST_OFFSETS_VERSION)?;
    let mut out = vec![-1i64; parts.len()];
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "ListOffsets partition {}: error {}",
                    p.partition_index,
                    p.error_code
                );
            }
            if let Some(slot) = usize::try_from(p.partition_index)
                .ok()
                .and_then(|i| out.get_mut(i))
            {
                *slot = p.offset;
            }
        }
    }
    if out.iter().any(|o| *o < 0) {
        bail!("ListOffsets did not answer for every partition: {out:?}");
    }
    Ok(out)
}

/// Runs the producers of one phase.
fn produce(
    setup: &Setup<'_>,
    admin: &mut Conn,
    label: &str,
    spec: &ProduceSpec,
) -> anyhow::Result<PhaseResult> {
    let progress = Progress::default();
    let failed = AtomicBool::new(false);
    let crew = Crew::new(spec, &progress, &failed);
    let before = if setup.acks == 0 {
        Some(list_end_offsets(admin, setup)?)
    } else {
        None
    };
    let meter = CpuMeter::start(setup.broker_pid);
    let target_bytes = spec.target_bytes(setup.args.message_size);
    let one = || producer(setup, &crew);
    let ((results, stored), samples, seconds) = monitored(label, &progress, target_bytes, |s| {
        let handles = spawn_n(s, setup.args.producers, &failed, &one);
        let results = join_all(handles, "a producer thread panicked");
        // acks=0: the phase ends when the broker has stored everything that was sent.
        let sent: u64 = results.iter().flatten().map(|r| r.messages).sum();
        let stored = match &before {
            Some(before) if !failed.load(Ordering::Acquire) => {
                wait_stored(admin, setup, before, sent)
            }
            _ => Ok(()),
        };
        (results, stored)
    });
    let merged = merge(results, |r| (r.hist, r.messages, r.batch_bytes))?;
    stored?;
    if let Some(want) = spec.messages
        && merged.1 != want
    {
        bail!(
            "producers got {} messages acknowledged, expected {want}",
            merged.1
        );
    }
    Ok(meter.result(merged, samples, seconds))
}

/// Polls ListOffsets until `sent` more messages than `before` are stored (acks=0).
fn wait_stored(
    admin: &mut Conn,
    setup: &Setup<'_>,
    before: &[i64],
    sent: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STALL_TIMEOUT;
    loop {
        let now = list_end_offsets(admin, setup)?;
        let stored: i64 = now.iter().zip(before).map(|(a, b)| a - b).sum();
        if u64::try_from(stored).unwrap_or(0) >= sent {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("acks=0: the broker stored {stored} of {sent} messages sent");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct ProducerResult {
    hist: Histogram<u64>,
    /// Messages acknowledged (or sent, with acks=0).
    messages: u64,
    /// Bytes of the batches.
    batch_bytes: u64,
}

/// One producer connection: this thread builds and sends, a reader thread takes the responses.
fn producer(setup: &Setup<'_>, crew: &Crew<'_>) -> anyhow::Result<ProducerResult> {
    let msg_bytes = setup.args.message_size as u64;
    let parts = u64::from(setup.partitions);
    let mut conn = client::open(&setup.bootstrap)?;
    // Response reader: (correlation id, send instant, messages, batch bytes) per request.
    let (info_tx, info_rx) = mpsc::channel::<(i32, Instant, u64, u64)>();
    // In-flight slots: the sender takes one per request, the reader returns it on the response.
    let in_flight = setup.args.in_flight();
    let (slot_tx, slot_rx) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        slot_tx.send(()).map_err(|_| anyhow!("in-flight slots"))?;
    }
    let acks = setup.acks;
    let mut reader_stream = conn.try_clone_stream()?;
    std::thread::scope(|s| {
        let reader = (acks != 0).then(|| {
            s.spawn(move || -> anyhow::Result<ProducerResult> {
                let mut h = hist::new_histogram();
                let mut buf = bytes::BytesMut::new();
                let (mut messages, mut batch_bytes) = (0u64, 0u64);
                while let Ok((id, t0, n, b)) = info_rx.recv() {
                    let resp = client::recv_produce(&mut reader_stream, &mut buf, id)?;
                    let lat = t0.elapsed();
                    for t in &resp.responses {
                        for p in &t.partition_responses {
                            if p.error_code != 0 {
                                bail!(
                                    "produce to partition {}: error {} {}",
                                    p.index,
                                    p.error_code,
                                    p.error_message.as_deref().unwrap_or("")
                                );
                            }
                        }
                    }
                    hist::record_ns(&mut h, duration_ns(lat), 1);
                    messages += n;
                    batch_bytes += b;
                    crew.progress
                        .bytes
                        .fetch_add(n * msg_bytes, Ordering::Relaxed);
                    // The sender may be gone (failed); then nobody needs the slot.
                    let _ = slot_tx.send(());
                }
                Ok(ProducerResult {
                    hist: h,
                    messages,
                    batch_bytes,
                })
            })
        });
        let mut send_hist = hist::new_histogram();
        let (mut sent, mut sent_bytes) = (0u64, 0u64);
        let sender = (|| -> anyhow::Result<()> {
            let mut batches = Batches::new(&setup.load, crew);
            loop {
                if crew.failed() {
                    return Ok(());
                }
                let Some((b, n)) = batches.claim(sent) else {
                    return Ok(());
                };
                let partition = i32::try_from(b % parts).unwrap_or(0);
                let batch = batches.build(b, n)?;
                if acks != 0 && slot_rx.recv().is_err() {
                    // The reader stopped: its error is the one to report.
                    return Ok(());
                }
                let t0 = Instant::now();
                let id = conn.send_produce(&setup.topic, partition, acks, &batch)?;
                let len = batch.len() as u64;
                if acks == 0 {
                    hist::record_ns(&mut send_hist, duration_ns(t0.elapsed()), 1);
                    crew.progress
                        .bytes
                        .fetch_add(n * msg_bytes, Ordering::Relaxed);
                    sent_bytes += len;
                } else if info_tx.send((id, t0, n, len)).is_err() {
                    return Ok(());
                }
                sent += n;
            }
        })();
        drop(info_tx);
        if sender.is_err() {
            crew.failed.store(true, Ordering::Release);
            // Unblock the reader if it waits for a response that will not come.
            let _ = conn
                .try_clone_stream()
                .map(|s| s.shutdown(std::net::Shutdown::Both));
        }
        let reader = reader.map(|r| {
            r.join()
                .unwrap_or_else(|_| Err(anyhow!("a producer's reader thread panicked")))
        });
        sender?;
        match reader {
            Some(r) => r,
            None => Ok(ProducerResult {
                hist: send_hist,
                messages: sent,
                batch_bytes: sent_bytes,
            }),
        }
    })
}

/// A consumer's position in one partition.
#[derive(Debug, Clone, Copy)]
struct Position {
    partition: i32,
    offset: i64,
    /// Records still expected.
    left: u64,
}

/// What a consumer counted.
#[derive(Debug, Default)]
struct Consumed {
    records: u64,
    batch_bytes: u64,
    fetches: u64,
}

/// How a consumer records latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatencyOf {
    /// One value per fetch: request sent → response read.
    Fetch,
    /// Per message: record timestamp (send time) → response read.
    EndToEnd,
}

/// The fetch request for the partitions that still expect records.
fn fetch_request(setup: &Setup<'_>, mine: &[Position], max_wait_ms: i32) -> FetchRequest {
    let part_bytes = i32::try_from(FETCH_PARTITION_BYTES.max(setup.max_batch)).unwrap_or(i32::MAX);
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(setup.topic.clone())
                .with_partitions(
                    mine.iter()
                        .filter(|m| m.left > 0)
                        .map(|m| {
                            FetchPartition::default()
                                .with_partition(m.partition)
                                .with_fetch_offset(m.offset)
                                .with_partition_max_bytes(part_bytes)
                        })
                        .collect(),
                ),
        ])
}

/// Fetches until every position has received what it expects.
fn consume_positions(
    setup: &Setup<'_>,
    mut mine: Vec<Position>,
    latency: LatencyOf,
    progress: &Progress,
    failed: &AtomicBool,
) -> anyhow::Result<(Histogram<u64>, Consumed)> {
    let msg_bytes = setup.args.message_size as u64;
    let mut conn = client::open(&setup.bootstrap)?;
    let mut h = hist::new_histogram();
    let mut got = Consumed::default();
    let mut last_progress = Instant::now();
    while mine.iter().any(|m| m.left > 0) {
        if failed.load(Ordering::Acquire) {
            bail!("stopped: a producer or consumer failed");
        }
        let req = fetch_request(setup, &mine, FETCH_MAX_WAIT_MS);
        let t0 = Instant::now();
        let resp = conn.call(&req, client::FETCH_VERSION)?;
        let lat = t0.elapsed();
        let seen_us = setup.clock.now_us();
        got.fetches += 1;
        if resp.error_code != 0 {
            bail!("fetch: error {}", resp.error_code);
        }
        if latency == LatencyOf::Fetch {
            hist::record_ns(&mut h, duration_ns(lat), 1);
        }
        let mut progressed = false;
        for t in &resp.responses {
            for pd in &t.partitions {
                if pd.error_code != 0 {
                    bail!(
                        "fetch partition {}: error {}",
                        pd.partition_index,
                        pd.error_code
                    );
                }
                let Some(pos) = mine.iter_mut().find(|m| m.partition == pd.partition_index) else {
                    bail!(
                        "fetch answered for partition {} not asked for",
                        pd.partition_index
                    );
                };
                let Some(records) = pd.records.as_ref().filter(|r| !r.is_empty()) else {
                    continue;
                };
                let mut scanner = BatchScanner::new(records, setup.max_batch, true);
                let mut n_total = 0u64;
                for b in scanner.by_ref() {
                    let hd = &b.header;
                    let next = hd.next_offset();
                    if next <= pos.offset {
                        continue;
                    }
                    // Records of the batch at or after the fetch offset.
                    let n = u64::try_from(next - hd.base_offset.max(pos.offset)).unwrap_or(0);
                    pos.offset = next;
                    n_total += n;
                    got.batch_bytes += hd.total_len() as u64;
                    if latency == LatencyOf::EndToEnd {
                        let lat_us =
                            u64::try_from(seen_us.saturating_sub(hd.max_timestamp)).unwrap_or(0);
                        hist::record_ns(&mut h, lat_us.saturating_mul(1000), n);
                    }
                }
                // Strata returns whole batches only: anything the scanner stops at is an error.
                if let Some(stop) = scanner.stop() {
                    bail!(
                        "partition {}: bad batch at byte {} of a fetch at offset {}: {}",
                        pd.partition_index,
                        stop.position,
                        pos.offset,
                        stop.problem
                    );
                }
                if n_total > pos.left {
                    bail!(
                        "partition {}: received {} more records than were produced",
                        pd.partition_index,
                        n_total - pos.left
                    );
                }
                pos.left -= n_total;
                got.records += n_total;
                progress
                    .bytes
                    .fetch_add(n_total * msg_bytes, Ordering::Relaxed);
                progressed |= n_total > 0;
            }
        }
        if progressed {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL_TIMEOUT {
            bail!(
                "no records for {STALL_TIMEOUT:?}; still expected: {:?}",
                mine.iter().filter(|m| m.left > 0).collect::<Vec<_>>()
            );
        }
    }
    Ok((h, got))
}

/// The positions consumer `c` of `consumers` owns, from `start[p]`, each expecting `left(p)`.
fn positions(
    parts: usize,
    consumers: usize,
    c: usize,
    start: &[i64],
    left: impl Fn(usize) -> u64,
) -> Vec<Position> {
    assignment(parts, consumers, c)
        .into_iter()
        .map(|p| Position {
            partition: i32::try_from(p).unwrap_or(0),
            offset: start.get(p).copied().unwrap_or(0),
            left: left(p),
        })
        .collect()
}

/// Consumer threads reading `expected[p]` records of every partition from `start[p]`.
fn run_consumers(
    setup: &Setup<'_>,
    label: &str,
    start: &[i64],
    latency: LatencyOf,
    with_producers: Option<&ProduceSpec>,
) -> anyhow::Result<PhaseResult> {
    let progress = Progress::default();
    let producer_progress = Progress::default();
    let parts = setup.partitions as usize;
    let consumers = setup.consumers(parts);
    let expected = setup.expected(setup.partitions);
    let failed = AtomicBool::new(false);
    let meter = CpuMeter::start(setup.broker_pid);
    let total = setup.messages * setup.args.message_size as u64;
    // Without producers (consume phase), none is spawned and `none` is never sent.
    let none = ProduceSpec::messages(0);
    let (producers, spec) = match with_producers {
        Some(spec) => (setup.args.producers, spec),
        None => (0, &none),
    };
    let crew = Crew::new(spec, &producer_progress, &failed);
    let one = || producer(setup, &crew);
    let ((consumer_results, producer_results), samples, seconds) =
        monitored(label, &progress, total, |s| {
            let consumer_handles: Vec<_> = (0..consumers)
                .map(|c| {
                    let mine = positions(parts, consumers, c, start, |p| {
                        expected.get(p).copied().unwrap_or(0)
                    });
                    let (progress, failed) = (&progress, &failed);
                    spawn_flagged(s, failed, move || {
                        consume_positions(setup, mine, latency, progress, failed)
                    })
                })
                .collect();
            join_both(consumer_handles, spawn_n(s, producers, &failed, &one))
        });
    producers_ok(producer_results)?;
    let parts = |(h, c): (Histogram<u64>, Consumed)| (h, c.records, c.batch_bytes);
    let what = format!("{label}: consumers received");
    meter.consumed(
        consumer_results,
        parts,
        setup.messages,
        &what,
        samples,
        seconds,
    )
}

fn consume(setup: &Setup<'_>, start: &[i64]) -> anyhow::Result<PhaseResult> {
    run_consumers(setup, "consume", start, LatencyOf::Fetch, None)
}

fn end_to_end(setup: &Setup<'_>, admin: &mut Conn) -> anyhow::Result<PhaseResult> {
    let start = list_end_offsets(admin, setup)?;
    let spec = ProduceSpec::messages(setup.messages);
    run_consumers(setup, "e2e", &start, LatencyOf::EndToEnd, Some(&spec))
}

/// Consumers long-poll the idle topic from its end for `--idle` seconds.
fn idle(setup: &Setup<'_>, admin: &mut Conn) -> anyhow::Result<IdleReport> {
    let start = list_end_offsets(admin, setup)?;
    let parts = setup.partitions as usize;
    let consumers = setup.consumers(parts);
    let wait = Duration::from_secs_f64(setup.args.idle);
    eprintln!(
        "idle: {consumers} consumer(s) long-polling {} for {:.1} s",
        setup.args.topic,
        wait.as_secs_f64()
    );
    let meter = CpuMeter::start(setup.broker_pid);
    let started = Instant::now();
    let deadline = started + wait;
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..consumers)
            .map(|c| {
                let mine = positions(parts, consumers, c, &start, |_| 1);
                s.spawn(move || -> anyhow::Result<u64> {
                    let mut conn = client::open(&setup.bootstrap)?;
                    let mut fetches = 0;
                    while Instant::now() < deadline {
                        let req = fetch_request(setup, &mine, FETCH_MAX_WAIT_MS);
                        let resp = conn.call(&req, client::FETCH_VERSION)?;
                        fetches += 1;
                        let any = resp.responses.iter().any(|t| {
                            t.partitions
                                .iter()
                                .any(|p| p.records.as_ref().is_some_and(|r| !r.is_empty()))
                        });
                        if any {
                            bail!("idle: the topic is not idle (someone is producing)");
                        }
                    }
                    Ok(fetches)
                })
            })
            .collect();
        join_all(handles, "an idle consumer panicked")
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut fetches = 0;
    for r in results {
        fetches += r?;
    }
    let broker_cpu_seconds = meter.broker_cpu_seconds();
    Ok(IdleReport {
        seconds,
        consumers: u32::try_from(consumers).unwrap_or(u32::MAX),
        fetches,
        broker_cpu_seconds,
        broker_cpu_percent_of_core: broker_cpu_seconds.map(|c| c * 100.0 / seconds.max(1e-9)),
        load_generator_cpu_seconds: meter.cpu_seconds(),
    })
}
