//! `--mode embedded`: the storage engine driven in-process.
//!
//! Phases, in order (each optional with `--phases`):
//! 1. **warmup** (`--warmup S`): producers append for S seconds; the logs are synced and the
//!    numbers discarded. Measured phases start at the offsets the warmup ended at.
//! 2. **produce**: producer threads claim batch numbers from one counter; batch `b` holds messages
//!    `b * batch_size ..` and goes to partition `b % partitions` (round-robin). Each producer
//!    builds its batch (the compression cost is the producer's, as in a Kafka client) and starts
//!    its append (`PartitionLog::start_append`), keeping up to `--in-flight` (default 1)
//!    started before it waits for the oldest to be acknowledged, as a Kafka producer keeps
//!    requests in flight; latency is from an append's start to its acknowledgement. The phase
//!    ends with `sync()` of every partition, timed, so `--fsync never` is measured until the
//!    data is on disk.
//! 3. **consume**: each partition is read by one consumer thread (partition `p` by consumer
//!    `p % consumers`) from the produce phase's start offset to its end with `read(offset, 1 MiB)`;
//!    batches are walked with [`BatchScanner`] *with CRC checks*, which also makes the consumer
//!    touch every byte as a real client would. The record count must equal what was produced.
//!    With `--cold` the segment files are synced and evicted from the page cache first.
//! 4. **e2e**: consumers tail the logs from their end while producers append the same volume
//!    again; latency is from the send time (carried in the record timestamps) to the moment a
//!    consumer sees the batch.
//!
//! Record timestamps are **microseconds** since the Unix epoch (read from a monotonic clock
//! anchored once), not Kafka's milliseconds, so e2e latency has µs resolution; the bench logs
//! disable retention by time so these far-future-looking timestamps are harmless.

use std::collections::VecDeque;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use strata_storage::io::{IoBackend, select_backend};
use strata_storage::log::scan::BatchScanner;
use strata_storage::log::{LogConfig, PartitionLog, PendingAppend, name};

use super::args::{BenchArgs, Phase};
use super::hist;
use super::machine::Machine;
use super::phase::{
    self, Batches, CpuMeter, Crew, Load, PhaseResult, Plan, ProduceSpec, RunFacts, Runner,
    join_all, join_both, merge, monitored, producers_ok, spawn_flagged, spawn_n,
};
use super::progress::Progress;
use super::report::{BaselineReport, Report};
use super::units;

/// Bytes asked for per consumer `read` call.
pub const FETCH_BYTES: usize = 1 << 20;
/// Block size of the raw baseline.
pub const BASELINE_BLOCK: usize = 1 << 20;
/// Worst-case framing per record in a v2 batch (length, attributes, deltas, key/value lengths,
/// header count as varints), used to size `max_batch_bytes`.
const RECORD_OVERHEAD: usize = 32;

/// One measured phase's raw data.
#[derive(Debug)]
pub struct PhaseData {
    pub phase: Phase,
    /// Merged latency histogram (nanoseconds).
    pub hist: Histogram<u64>,
    /// `(seconds since phase start, MB/s)` samples.
    pub throughput: Vec<(f64, f64)>,
}

/// Everything one run produced, for the report, the `.hgrm` files and the plot.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub phases: Vec<PhaseData>,
}

/// The send-time clock shared by producers and consumers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
    origin_unix_us: i64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let origin_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2));
        Clock {
            origin: Instant::now(),
            origin_unix_us,
        }
    }

    /// Microseconds since the Unix epoch, monotonic within the run.
    pub(crate) fn now_us(&self) -> i64 {
        self.origin_unix_us.saturating_add(
            i64::try_from(self.origin.elapsed().as_micros()).unwrap_or(i64::MAX / 2),
        )
    }
}

/// How many records partition `p` receives when `messages` messages go out in batches of
/// `batch_size`, batch `b` to partition `b % partitions`.
pub fn records_per_partition(messages: u64, batch_size: u64, partitions: u32) -> Vec<u64> {
    let parts = u64::from(partitions.max(1));
    let batch_size = batch_size.max(1);
    let full = messages / batch_size;
    let rest = messages % batch_size;
    let mut v: Vec<u64> = (0..parts)
        .map(|p| (full / parts + u64::from(p < full % parts)) * batch_size)
        .collect();
    if rest > 0
        && let Some(slot) = v.get_mut((full % parts) as usize)
    {
        *slot += rest;
    }
    v
}

/// The largest batch a run can build, with room for framing and incompressible data.
pub fn max_batch_bytes(message_size: usize, batch_size: u32) -> usize {
    let raw = 61 + (batch_size as usize).saturating_mul(message_size + RECORD_OVERHEAD);
    let padded = raw + raw / 64 + 4096;
    padded.max(LogConfig::default().max_batch_bytes)
}

struct Setup<'a> {
    load: Load<'a>,
    logs: Vec<Arc<PartitionLog>>,
}

impl<'a> Deref for Setup<'a> {
    type Target = Load<'a>;

    fn deref(&self) -> &Load<'a> {
        &self.load
    }
}

impl<'a> Runner<'a> for Setup<'a> {
    type Offsets = Vec<u64>;

    fn load(&self) -> &Load<'a> {
        &self.load
    }

    fn produce(&mut self, label: &str, spec: &ProduceSpec) -> anyhow::Result<PhaseResult> {
        produce(self, label, spec)
    }

    fn end_offsets(&mut self) -> anyhow::Result<Vec<u64>> {
        Ok(end_offsets(&self.logs))
    }

    fn consume(&mut self, start: &Vec<u64>) -> anyhow::Result<PhaseResult> {
        consume(self, start)
    }

    fn end_to_end(&mut self) -> anyhow::Result<PhaseResult> {
        end_to_end(self)
    }

    fn partition_dirs(&self) -> Option<Vec<PathBuf>> {
        Some(self.logs.iter().map(|l| l.dir().to_path_buf()).collect())
    }
}

fn end_offsets(logs: &[Arc<PartitionLog>]) -> Vec<u64> {
    logs.iter().map(|l| l.log_end_offset()).collect()
}

/// Runs the embedded benchmark.
pub fn run(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let plan = Plan::new(args)?;

    let temp;
    let (dir, temporary): (PathBuf, bool) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("creating data dir {}", d.display()))?;
            (d.clone(), false)
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("strata-bench-")
                .tempdir()
                .context("creating a temporary data dir")?;
            (temp.path().to_path_buf(), true)
        }
    };
    let backend: Arc<dyn IoBackend> =
        select_backend(args.io_backend).context("opening the io backend")?;
    let machine = Machine::detect(
        &dir,
        &format!("{}, {} writes", backend.kind(), args.write_mode),
    );

    let baseline = if args.baseline {
        Some(run_baseline(&dir, plan.total_bytes)?)
    } else {
        None
    };

    let max_batch = max_batch_bytes(args.message_size, args.batch_size);
    let config = LogConfig {
        fsync: args.fsync,
        max_batch_bytes: max_batch,
        retention_ms: None,
        retention_bytes: None,
        retention_check_interval: None,
        segment_ms: None,
        write_mode: args.write_mode,
        direct_cache_bytes: match args.direct_cache {
            Some(bytes) => usize::try_from(bytes).context("--direct-cache")?,
            None => LogConfig::default().direct_cache_bytes,
        },
        ..LogConfig::default()
    };
    let mut logs = Vec::new();
    for p in 0..args.partitions {
        let pdir = dir.join(name::partition_dir_name(&args.topic, p));
        let log = PartitionLog::open(&pdir, config, backend.clone())
            .with_context(|| format!("opening partition log {}", pdir.display()))?;
        logs.push(Arc::new(log));
    }
    let mut setup = Setup {
        logs,
        load: Load::new(args, plan.messages, machine.cores),
    };
    let phases = phase::run_phases(&mut setup, baseline.as_ref())?;

    let Setup { logs, .. } = setup;
    for log in logs {
        let log = Arc::try_unwrap(log).map_err(|_| anyhow!("a partition log is still shared"))?;
        log.close().context("closing a partition log")?;
    }
    let facts = RunFacts {
        plan,
        partitions: args.partitions,
        max_batch_bytes: max_batch,
        data_dir: dir.display().to_string(),
        temporary_data_dir: temporary,
        bootstrap: None,
        spawned_broker: None,
        machine,
        baseline,
        broker_cpu_seconds: None,
        idle: None,
    };
    Ok(phase::outcome(args, phases, facts))
}

pub(crate) fn run_baseline(dir: &Path, total_bytes: u64) -> anyhow::Result<BaselineReport> {
    // The raw limit needs whole blocks; round the volume up to one.
    let block = BASELINE_BLOCK as u64;
    let bytes = total_bytes.div_ceil(block).max(1) * block;
    eprintln!(
        "baseline: raw O_DIRECT io_uring write+read of {}",
        units::human_bytes(bytes)
    );
    let b = strata_storage::io::uring::direct_baseline(dir, bytes, BASELINE_BLOCK)
        .with_context(|| format!("raw O_DIRECT baseline in {}", dir.display()))?;
    let w = b.write.as_secs_f64();
    let r = b.read.as_secs_f64();
    Ok(BaselineReport {
        write_mb_per_s: units::mb_per_s(b.bytes, w),
        read_mb_per_s: units::mb_per_s(b.bytes, r),
        bytes: b.bytes,
        block_size: block,
        write_seconds: w,
        read_seconds: r,
    })
}

fn disk_size(logs: &[Arc<PartitionLog>]) -> u64 {
    logs.iter().map(|l| l.size_bytes()).sum()
}

/// Runs the producers of one phase; returns their merged append-latency histogram.
fn produce(setup: &Setup<'_>, label: &str, spec: &ProduceSpec) -> anyhow::Result<PhaseResult> {
    let progress = Progress::default();
    let failed = AtomicBool::new(false);
    let crew = Crew::new(spec, &progress, &failed);
    let size_before = disk_size(&setup.logs);
    let meter = CpuMeter::start(None);
    let target_bytes = spec.target_bytes(setup.args.message_size);
    let one = || producer(setup, &crew);
    let ((results, sync), samples, seconds) = monitored(label, &progress, target_bytes, |s| {
        let handles = spawn_n(s, setup.args.producers, &failed, &one);
        let results = join_all(handles, "a producer thread panicked");
        // The phase ends when the data is on disk, whatever the fsync policy.
        let sync = setup
            .logs
            .iter()
            .try_for_each(|l| l.sync())
            .context("final sync");
        (results, sync)
    });
    sync?;
    let (hist, messages, _) = merge(results, |(h, n)| (h, n, 0))?;
    if let Some(want) = spec.messages
        && messages != want
    {
        bail!("producers appended {messages} messages, expected {want}");
    }
    let disk_bytes = disk_size(&setup.logs).saturating_sub(size_before);
    Ok(meter.result((hist, messages, disk_bytes), samples, seconds))
}

/// An append a producer started: its log, the append, when it started, its messages.
type InFlight<'a> = (&'a PartitionLog, PendingAppend<'a>, Instant, u64);

/// One producer: builds batches and keeps up to `--in-flight` appends started; latency is from
/// the start of an append to its acknowledgement.
fn producer(setup: &Setup<'_>, crew: &Crew<'_>) -> anyhow::Result<(Histogram<u64>, u64)> {
    let msg_bytes = setup.args.message_size as u64;
    let parts = setup.logs.len() as u64;
    let depth = setup.args.in_flight();
    let mut h = hist::new_histogram();
    let mut sent = 0u64;
    // Appends started and not acknowledged yet, oldest first: (log, append, its start, messages).
    let mut flying = VecDeque::with_capacity(depth);
    let mut ack = |(log, append, t0, n): InFlight<'_>, sent: &mut u64| {
        append
            .wait()
            .with_context(|| format!("appending to {}", log.dir().display()))?;
        hist::record_ns(&mut h, duration_ns(t0.elapsed()), 1);
        *sent += n;
        crew.progress
            .bytes
            .fetch_add(n * msg_bytes, Ordering::Relaxed);
        anyhow::Ok(())
    };
    let mut batches = Batches::new(&setup.load, crew);
    while !crew.failed() {
        if flying.len() >= depth
            && let Some(oldest) = flying.pop_front()
        {
            ack(oldest, &mut sent)?;
        }
        let Some((b, n)) = batches.claim(sent) else {
            break;
        };
        let log = setup
            .logs
            .get((b % parts) as usize)
            .ok_or_else(|| anyhow!("no partition for batch {b}"))?;
        let batch = batches.build(b, n)?;
        let t0 = Instant::now();
        let append = log
            .start_append(batch)
            .with_context(|| format!("appending to {}", log.dir().display()))?;
        flying.push_back((log, append, t0, n));
    }
    for oldest in flying.drain(..) {
        ack(oldest, &mut sent)?;
    }
    Ok((h, sent))
}

pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Partitions consumer `c` reads: `p % consumers == c`.
pub(crate) fn assignment(partitions: usize, consumers: usize, c: usize) -> Vec<usize> {
    (0..partitions)
        .filter(|p| p % consumers.max(1) == c)
        .collect()
}

/// What a consumer counted.
#[derive(Debug, Default)]
struct Consumed {
    records: u64,
    disk_bytes: u64,
}

/// Walks the batches of one read result, checking CRCs; returns records, bytes, next offset and
/// the batches' `(max_timestamp, record_count)`.
fn walk(
    data: &[u8],
    max_batch: usize,
    mut on_batch: impl FnMut(i64, u64),
) -> anyhow::Result<(u64, u64, Option<u64>)> {
    let mut scanner = BatchScanner::new(data, max_batch, true);
    let mut records = 0u64;
    let mut bytes = 0u64;
    let mut next = None;
    for b in scanner.by_ref() {
        let n = u64::try_from(b.header.record_count).unwrap_or(0);
        records += n;
        bytes += b.header.total_len() as u64;
        next = Some(u64::try_from(b.header.next_offset()).unwrap_or(0));
        on_batch(b.header.max_timestamp, n);
    }
    if let Some(stop) = scanner.stop() {
        bail!(
            "bad batch at byte {} of a read: {}",
            stop.position,
            stop.problem
        );
    }
    Ok((records, bytes, next))
}

fn consume(setup: &Setup<'_>, start_offsets: &[u64]) -> anyhow::Result<PhaseResult> {
    let progress = Progress::default();
    let consumers = setup.consumers(setup.logs.len());
    let expected = setup.expected(setup.args.partitions);
    let msg_bytes = setup.args.message_size as u64;
    let meter = CpuMeter::start(None);
    let total = setup.messages * msg_bytes;
    let (results, samples, seconds) = monitored("consume", &progress, total, |s| {
        let handles: Vec<_> = (0..consumers)
            .map(|c| {
                let (progress, expected) = (&progress, &expected);
                s.spawn(move || -> anyhow::Result<(Histogram<u64>, Consumed)> {
                    let mut h = hist::new_histogram();
                    let mut got = Consumed::default();
                    for p in assignment(setup.logs.len(), consumers, c) {
                        let (Some(log), Some(&start)) = (setup.logs.get(p), start_offsets.get(p))
                        else {
                            continue;
                        };
                        let end = log.log_end_offset();
                        let mut offset = start;
                        let mut records = 0u64;
                        while offset < end {
                            let t0 = Instant::now();
                            let slice = log
                                .read(offset, FETCH_BYTES)
                                .with_context(|| format!("partition {p}: read at {offset}"))?;
                            hist::record_ns(&mut h, duration_ns(t0.elapsed()), 1);
                            let (n, bytes, next) = walk(&slice, setup.max_batch, |_, _| {})
                                .with_context(|| format!("partition {p} at offset {offset}"))?;
                            let Some(next) = next.filter(|n| *n > offset) else {
                                bail!("partition {p}: read at {offset} returned no batch before the end {end}");
                            };
                            offset = next;
                            records += n;
                            got.disk_bytes += bytes;
                            progress.bytes.fetch_add(n * msg_bytes, Ordering::Relaxed);
                        }
                        let want = expected.get(p).copied().unwrap_or(0);
                        if records != want {
                            bail!("partition {p}: read {records} records back, {want} were produced");
                        }
                        got.records += records;
                    }
                    Ok((h, got))
                })
            })
            .collect();
        join_all(handles, "a consumer thread panicked")
    });
    let parts = |(h, c): (Histogram<u64>, Consumed)| (h, c.records, c.disk_bytes);
    let what = "consumers read";
    meter.consumed(results, parts, setup.messages, what, samples, seconds)
}

fn end_to_end(setup: &Setup<'_>) -> anyhow::Result<PhaseResult> {
    let progress = Progress::default();
    let producer_progress = Progress::default();
    let consumers = setup.consumers(setup.logs.len());
    let expected = setup.expected(setup.args.partitions);
    let start_offsets = end_offsets(&setup.logs);
    let msg_bytes = setup.args.message_size as u64;
    let failed = AtomicBool::new(false);
    let meter = CpuMeter::start(None);
    let total = setup.messages * msg_bytes;
    let spec = ProduceSpec::messages(setup.messages);
    let crew = Crew::new(&spec, &producer_progress, &failed);
    let one = || producer(setup, &crew);
    let ((consumer_results, producer_results), samples, seconds) =
        monitored("e2e", &progress, total, |s| {
            let consumer_handles: Vec<_> = (0..consumers)
                .map(|c| {
                    let (progress, failed, expected, start_offsets) =
                        (&progress, &failed, &expected, &start_offsets);
                    spawn_flagged(s, failed, move || {
                        tail(
                            setup,
                            c,
                            consumers,
                            expected,
                            start_offsets,
                            progress,
                            failed,
                        )
                    })
                })
                .collect();
            join_both(
                consumer_handles,
                spawn_n(s, setup.args.producers, &failed, &one),
            )
        });
    producers_ok(producer_results)?;
    let parts = |(h, c): (Histogram<u64>, Consumed)| (h, c.records, c.disk_bytes);
    let what = "e2e consumers received";
    meter.consumed(
        consumer_results,
        parts,
        setup.messages,
        what,
        samples,
        seconds,
    )
}

/// An e2e consumer: polls its partitions until it has received everything they will get.
fn tail(
    setup: &Setup<'_>,
    c: usize,
    consumers: usize,
    expected: &[u64],
    start_offsets: &[u64],
    progress: &Progress,
    failed: &AtomicBool,
) -> anyhow::Result<(Histogram<u64>, Consumed)> {
    let msg_bytes = setup.args.message_size as u64;
    let mut h = hist::new_histogram();
    let mut got = Consumed::default();
    // (partition, next offset, records still to come)
    let mut mine: Vec<(usize, u64, u64)> = assignment(setup.logs.len(), consumers, c)
        .into_iter()
        .map(|p| {
            (
                p,
                start_offsets.get(p).copied().unwrap_or(0),
                expected.get(p).copied().unwrap_or(0),
            )
        })
        .collect();
    let mut idle_rounds = 0u32;
    while mine.iter().any(|m| m.2 > 0) {
        if failed.load(Ordering::Acquire) {
            bail!("stopped: a producer or consumer failed");
        }
        let mut progressed = false;
        for (p, offset, left) in mine.iter_mut().filter(|m| m.2 > 0) {
            let log = setup
                .logs
                .get(*p)
                .ok_or_else(|| anyhow!("no partition {p}"))?;
            let slice = log
                .read(*offset, FETCH_BYTES)
                .with_context(|| format!("partition {p}: read at {offset}"))?;
            if slice.is_empty() {
                continue;
            }
            let seen_us = setup.clock.now_us();
            let (n, bytes, next) = walk(&slice, setup.max_batch, |sent_us, count| {
                let lat_us = u64::try_from(seen_us.saturating_sub(sent_us)).unwrap_or(0);
                hist::record_ns(&mut h, lat_us.saturating_mul(1000), count);
            })
            .with_context(|| format!("partition {p} at offset {offset}"))?;
            if let Some(next) = next {
                *offset = next;
            }
            *left = left.saturating_sub(n);
            got.records += n;
            got.disk_bytes += bytes;
            progress.bytes.fetch_add(n * msg_bytes, Ordering::Relaxed);
            progressed = true;
        }
        if progressed {
            idle_rounds = 0;
        } else {
            // Spin briefly (the next batch is usually close), then back off to a short sleep so
            // idle consumers do not steal the producers' cores.
            idle_rounds += 1;
            if idle_rounds < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    Ok((h, got))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn batches_go_round_robin_and_every_message_is_counted() {
        assert_eq!(records_per_partition(10, 3, 2), vec![6, 4]);
        assert_eq!(records_per_partition(9, 3, 2), vec![6, 3]);
        assert_eq!(records_per_partition(5, 10, 4), vec![5, 0, 0, 0]);
        assert_eq!(records_per_partition(4096, 1000, 1), vec![4096]);
        for (m, b, p) in [(12345, 100, 7), (1, 1, 3), (1000, 1000, 2)] {
            assert_eq!(records_per_partition(m, b, p).iter().sum::<u64>(), m);
        }
    }

    #[test]
    fn consumers_split_partitions_without_overlap() {
        let mut all: Vec<usize> = (0..3).flat_map(|c| assignment(8, 3, c)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn batches_of_1000_kib_messages_fit_the_default_limit_and_16_kib_ones_raise_it() {
        assert_eq!(
            max_batch_bytes(1024, 1000),
            LogConfig::default()
                .max_batch_bytes
                .max(max_batch_bytes(1024, 1000))
        );
        assert!(max_batch_bytes(16 * 1024, 1000) > 16 * 1024 * 1000);
    }

    #[test]
    fn the_clock_moves_forward_in_microseconds() {
        let c = Clock::new();
        let a = c.now_us();
        std::thread::sleep(Duration::from_millis(2));
        let b = c.now_us();
        assert!(b - a >= 2000, "{a} {b}");
        assert!(a > 1_600_000_000_000_000, "µs since the epoch: {a}");
    }
}
