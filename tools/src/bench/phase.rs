//! What the embedded and kafka runners share: how producers claim and build batches, how a
//! phase's threads are timed and joined, a phase's numbers ([`PhaseResult`] → [`PhaseReport`]),
//! and the assembly of the final [`Report`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use strata_storage::batch::{BatchBuilder, Compression};
use strata_storage::io::{evict_page_cache, resident_bytes};

use super::args::{BenchArgs, Phase};
use super::embedded::{Clock, Outcome, PhaseData, max_batch_bytes, records_per_partition};
use super::hist;
use super::machine::{self, Machine};
use super::payload::PayloadPool;
use super::progress::{self, Progress};
use super::report::{
    BaselineReport, ColdReport, ConfigReport, IdleReport, PhaseReport, Report, UNITS,
};
use super::units;

/// The volume of a run, checked before anything starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub messages: u64,
    pub total_bytes: u64,
    /// The process CPU time when the run started.
    pub cpu_start: f64,
}

impl Plan {
    pub fn new(args: &BenchArgs) -> anyhow::Result<Self> {
        let messages = args.message_count().map_err(|e| anyhow!(e))?;
        if args.runs(Phase::Consume) && !args.runs(Phase::Produce) {
            bail!("--phases: consume reads what the produce phase wrote; add produce");
        }
        if args.cold && !args.runs(Phase::Consume) {
            bail!("--cold evicts the data before the consume phase; add consume to --phases");
        }
        let total_bytes = messages
            .checked_mul(args.message_size as u64)
            .ok_or_else(|| anyhow!("--messages x --message-size overflows"))?;
        Ok(Plan {
            messages,
            total_bytes,
            cpu_start: machine::process_cpu_seconds(),
        })
    }
}

/// What both runners' producers and consumers work from.
#[derive(Debug)]
pub(crate) struct Load<'a> {
    pub args: &'a BenchArgs,
    pub pool: PayloadPool,
    pub clock: Clock,
    pub codec: Compression,
    pub max_batch: usize,
    pub messages: u64,
    pub cores: usize,
}

impl<'a> Load<'a> {
    pub fn new(args: &'a BenchArgs, messages: u64, cores: usize) -> Self {
        let batch_bytes = args.message_size.saturating_mul(args.batch_size as usize);
        Load {
            args,
            pool: PayloadPool::new(args.payload, args.message_size, batch_bytes, 0x5EED_0001),
            clock: Clock::new(),
            codec: args.compression.codec(),
            max_batch: max_batch_bytes(args.message_size, args.batch_size),
            messages,
            cores,
        }
    }

    /// Consumer threads for `partitions` partitions: `--consumers`, at most one a partition.
    pub fn consumers(&self, partitions: usize) -> usize {
        (self.args.consumers as usize).min(partitions).max(1)
    }

    /// The records each of `partitions` partitions receives from one produce pass.
    pub fn expected(&self, partitions: u32) -> Vec<u64> {
        records_per_partition(self.messages, u64::from(self.args.batch_size), partitions)
    }
}

/// What the producers of one phase do.
#[derive(Debug)]
pub(crate) struct ProduceSpec {
    /// Messages to send, or `None` to run until `deadline`.
    pub messages: Option<u64>,
    pub deadline: Option<Instant>,
}

impl ProduceSpec {
    /// Exactly `messages` messages.
    pub fn messages(messages: u64) -> Self {
        ProduceSpec {
            messages: Some(messages),
            deadline: None,
        }
    }

    /// Until `deadline`.
    pub fn until(deadline: Instant) -> Self {
        ProduceSpec {
            messages: None,
            deadline: Some(deadline),
        }
    }

    /// The payload bytes the phase moves (0 when it runs until a deadline).
    pub fn target_bytes(&self, message_size: usize) -> u64 {
        self.messages.map_or(0, |m| m * message_size as u64)
    }
}

/// What the producer threads of one phase share.
#[derive(Debug)]
pub(crate) struct Crew<'a> {
    pub spec: &'a ProduceSpec,
    /// The next batch number to claim.
    pub next_batch: AtomicU64,
    pub progress: &'a Progress,
    /// Raised when a thread of the phase fails: the others stop.
    pub failed: &'a AtomicBool,
}

impl<'a> Crew<'a> {
    pub fn new(spec: &'a ProduceSpec, progress: &'a Progress, failed: &'a AtomicBool) -> Self {
        Crew {
            spec,
            next_batch: AtomicU64::new(0),
            progress,
            failed,
        }
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// One producer's supply of batches: batch numbers claimed from the phase's shared counter (batch
/// `b` holds messages `b * batch_size ..`), paced to `--rate`, built with one reused
/// [`BatchBuilder`] (its record buffer and zstd context are reused, as a Kafka client's
/// accumulator would).
pub(crate) struct Batches<'a> {
    spec: &'a ProduceSpec,
    next_batch: &'a AtomicU64,
    pool: &'a PayloadPool,
    clock: Clock,
    codec: Compression,
    batch_size: u64,
    msg_bytes: u64,
    rate: Option<f64>,
    builder: BatchBuilder,
    started: Instant,
}

impl<'a> Batches<'a> {
    pub fn new(load: &'a Load<'_>, crew: &'a Crew<'_>) -> Self {
        let args = load.args;
        Batches {
            spec: crew.spec,
            next_batch: &crew.next_batch,
            pool: &load.pool,
            clock: load.clock,
            codec: load.codec,
            batch_size: u64::from(args.batch_size),
            msg_bytes: args.message_size as u64,
            rate: args.rate.map(|r| r * 1e6 / f64::from(args.producers)),
            builder: BatchBuilder::new(load.codec),
            started: Instant::now(),
        }
    }

    /// The next batch number and its message count, once `sent` messages are paced out; `None`
    /// when the phase has nothing left for this producer.
    pub fn claim(&self, sent: u64) -> Option<(u64, u64)> {
        let b = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let first = b * self.batch_size;
        let n = match (self.spec.messages, self.spec.deadline) {
            (Some(total), _) => {
                if first >= total {
                    return None;
                }
                self.batch_size.min(total - first)
            }
            (None, Some(deadline)) => {
                if Instant::now() >= deadline {
                    return None;
                }
                self.batch_size
            }
            (None, None) => return None,
        };
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64((sent * self.msg_bytes) as f64 / rate);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        Some((b, n))
    }

    /// Builds batch `b` of `n` messages, stamped with the send time.
    pub fn build(&mut self, b: u64, n: u64) -> anyhow::Result<Vec<u8>> {
        let first = b * self.batch_size;
        let timestamp = self.clock.now_us();
        self.builder.clear();
        for i in 0..n {
            self.builder
                .push_parts(timestamp, None, Some(self.pool.message(first + i)), &[])
                .context("encoding a record")?;
        }
        self.builder
            .take_batch()
            .with_context(|| format!("building a {} batch of {n} messages", self.codec))
    }
}

/// Spawns a phase thread that raises `failed` when it fails, so the others stop.
pub(crate) fn spawn_flagged<'scope, T: Send + 'scope>(
    s: &'scope Scope<'scope, '_>,
    failed: &'scope AtomicBool,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'scope,
) -> ScopedJoinHandle<'scope, anyhow::Result<T>> {
    s.spawn(move || {
        let r = f();
        if r.is_err() {
            failed.store(true, Ordering::Release);
        }
        r
    })
}

/// Spawns `n` threads running `f` with [`spawn_flagged`].
pub(crate) fn spawn_n<'scope, T: Send + 'scope, F>(
    s: &'scope Scope<'scope, '_>,
    n: u32,
    failed: &'scope AtomicBool,
    f: &'scope F,
) -> Vec<ScopedJoinHandle<'scope, anyhow::Result<T>>>
where
    F: Fn() -> anyhow::Result<T> + Sync,
{
    (0..n).map(|_| spawn_flagged(s, failed, f)).collect()
}

/// Joins the producers, then the consumers, of a phase that runs both.
#[allow(clippy::type_complexity)]
pub(crate) fn join_both<C, P>(
    consumers: Vec<ScopedJoinHandle<'_, anyhow::Result<C>>>,
    producers: Vec<ScopedJoinHandle<'_, anyhow::Result<P>>>,
) -> (Vec<anyhow::Result<C>>, Vec<anyhow::Result<P>>) {
    let producer_results = join_all(producers, "a producer thread panicked");
    let consumer_results = join_all(consumers, "a consumer thread panicked");
    (consumer_results, producer_results)
}

/// The first error of the e2e producers, if any.
pub(crate) fn producers_ok<P>(results: Vec<anyhow::Result<P>>) -> anyhow::Result<()> {
    for r in results {
        r.context("e2e producer")?;
    }
    Ok(())
}

/// Joins phase threads; a panic becomes the error `panicked`.
pub(crate) fn join_all<T>(
    handles: Vec<ScopedJoinHandle<'_, anyhow::Result<T>>>,
    panicked: &str,
) -> Vec<anyhow::Result<T>> {
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("{panicked}"))))
        .collect()
}

/// Runs `body` in a thread scope with the progress monitor of `progress` (expecting `total`
/// bytes); returns what `body` returned, the throughput samples and the phase's seconds (up to
/// the end of `body`).
pub(crate) fn monitored<'env, T>(
    label: &'env str,
    progress: &'env Progress,
    total: u64,
    body: impl for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
) -> (T, Vec<(f64, f64)>, f64) {
    let started = Instant::now();
    std::thread::scope(|s| {
        let monitor = s.spawn(move || progress::monitor(label, progress, total, started));
        let out = body(s);
        let seconds = started.elapsed().as_secs_f64();
        progress.done.store(true, Ordering::Release);
        (out, monitor.join().unwrap_or_default(), seconds)
    })
}

/// Merges per-thread results (the first error wins): `parts` gives each one's histogram and two
/// counts, which are summed.
pub(crate) fn merge<T>(
    results: Vec<anyhow::Result<T>>,
    parts: impl Fn(T) -> (Histogram<u64>, u64, u64),
) -> anyhow::Result<(Histogram<u64>, u64, u64)> {
    let mut hists = Vec::new();
    let (mut a, mut b) = (0, 0);
    for r in results {
        let (h, x, y) = parts(r?);
        hists.push(h);
        a += x;
        b += y;
    }
    Ok((hist::merge(hists), a, b))
}

/// CPU seconds of the broker so far, when its pid is known.
pub(crate) fn broker_cpu(pid: Option<u32>) -> Option<f64> {
    pid.and_then(machine::pid_cpu_seconds)
}

/// CPU seconds the broker used since `start` (what [`broker_cpu`] said then).
pub(crate) fn broker_cpu_since(pid: Option<u32>, start: Option<f64>) -> Option<f64> {
    match (start, broker_cpu(pid)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    }
}

/// The CPU time of this process (and of the broker, when its pid is known) from a phase's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMeter {
    cpu0: f64,
    broker_pid: Option<u32>,
    broker_cpu0: Option<f64>,
}

impl CpuMeter {
    pub fn start(broker_pid: Option<u32>) -> Self {
        CpuMeter {
            cpu0: machine::process_cpu_seconds(),
            broker_pid,
            broker_cpu0: broker_cpu(broker_pid),
        }
    }

    /// This process's CPU seconds since the start.
    pub fn cpu_seconds(&self) -> f64 {
        machine::process_cpu_seconds() - self.cpu0
    }

    /// The broker's CPU seconds since the start, when its pid is known.
    pub fn broker_cpu_seconds(&self) -> Option<f64> {
        broker_cpu_since(self.broker_pid, self.broker_cpu0)
    }

    /// The result of a consume or e2e phase from its consumers' results, `parts` giving each
    /// one's histogram, records and bytes; fails, the message starting with `what`, unless they
    /// received the `expected` records.
    pub fn consumed<T>(
        &self,
        results: Vec<anyhow::Result<T>>,
        parts: impl Fn(T) -> (Histogram<u64>, u64, u64),
        expected: u64,
        what: &str,
        samples: Vec<(f64, f64)>,
        seconds: f64,
    ) -> anyhow::Result<PhaseResult> {
        let merged = merge(results, parts)?;
        if merged.1 != expected {
            bail!("{what} {} records, {expected} were produced", merged.1);
        }
        Ok(self.result(merged, samples, seconds))
    }

    /// The phase's result: `merged` is the merged histogram, the messages and the bytes (on disk
    /// or on the wire); `samples` and `seconds` come from [`monitored`].
    pub fn result(
        &self,
        merged: (Histogram<u64>, u64, u64),
        samples: Vec<(f64, f64)>,
        seconds: f64,
    ) -> PhaseResult {
        let (hist, messages, disk_bytes) = merged;
        let broker_cpu_seconds = self.broker_cpu_seconds();
        PhaseResult {
            hist,
            samples,
            seconds,
            cpu_seconds: self.cpu_seconds(),
            broker_cpu_seconds,
            messages,
            disk_bytes,
        }
    }
}

/// One measured phase's numbers, before they become a [`PhaseReport`].
#[derive(Debug)]
pub(crate) struct PhaseResult {
    pub hist: Histogram<u64>,
    pub samples: Vec<(f64, f64)>,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub broker_cpu_seconds: Option<f64>,
    pub messages: u64,
    /// Bytes on disk (embedded) or of the batches on the wire (kafka).
    pub disk_bytes: u64,
}

impl PhaseResult {
    /// The report of this phase, `limit` being the raw disk's MB/s for the baseline ratio.
    fn report(&self, message_size: usize, cores: usize, limit: Option<f64>) -> PhaseReport {
        let bytes = self.messages * message_size as u64;
        let mb_per_s = units::mb_per_s(bytes, self.seconds);
        PhaseReport {
            mb_per_s,
            msgs_per_s: if self.seconds > 0.0 {
                self.messages as f64 / self.seconds
            } else {
                0.0
            },
            messages: self.messages,
            bytes,
            disk_bytes: self.disk_bytes,
            seconds: self.seconds,
            latency_us: hist::Percentiles::of(&self.hist),
            cpu_seconds: self.cpu_seconds,
            cpu_utilization: if self.seconds > 0.0 {
                self.cpu_seconds / (self.seconds * cores as f64)
            } else {
                0.0
            },
            baseline_ratio: limit.filter(|l| *l > 0.0).map(|l| mb_per_s / l),
            broker_cpu_seconds: self.broker_cpu_seconds,
        }
    }
}

/// The measured phases of a run, as they complete.
#[derive(Debug, Default)]
pub(crate) struct Phases {
    data: Vec<PhaseData>,
    produce: Option<PhaseReport>,
    consume: Option<PhaseReport>,
    e2e: Option<PhaseReport>,
    cold: Option<ColdReport>,
}

impl Phases {
    /// Records phase `phase`; its baseline ratio is against the raw write (produce) or read
    /// (consume) speed. e2e ends when consumers have seen the data, not when it is on disk: no
    /// disk ratio.
    pub fn push(
        &mut self,
        phase: Phase,
        r: PhaseResult,
        args: &BenchArgs,
        cores: usize,
        baseline: Option<&BaselineReport>,
    ) {
        let (slot, limit) = match phase {
            Phase::Produce => (&mut self.produce, baseline.map(|b| b.write_mb_per_s)),
            Phase::Consume => (&mut self.consume, baseline.map(|b| b.read_mb_per_s)),
            Phase::E2e => (&mut self.e2e, None),
        };
        *slot = Some(r.report(args.message_size, cores, limit));
        self.data.push(PhaseData {
            phase,
            hist: r.hist,
            throughput: r.samples,
        });
    }
}

/// One mode's phases, for [`run_phases`].
pub(crate) trait Runner<'a> {
    /// Where each partition's log ends.
    type Offsets;
    fn load(&self) -> &Load<'a>;
    fn produce(&mut self, label: &str, spec: &ProduceSpec) -> anyhow::Result<PhaseResult>;
    fn end_offsets(&mut self) -> anyhow::Result<Self::Offsets>;
    /// Reads back what the produce phase wrote from `start`.
    fn consume(&mut self, start: &Self::Offsets) -> anyhow::Result<PhaseResult>;
    fn end_to_end(&mut self) -> anyhow::Result<PhaseResult>;
    /// The partitions' directories, if they are on this machine (for `--cold`).
    fn partition_dirs(&self) -> Option<Vec<PathBuf>>;
}

/// `--cold`: syncs every segment file (`*.log`) of `dirs` and evicts it from the page cache,
/// then counts what is still cached (pages a process has mapped, or that went dirty again).
pub(crate) fn evict_partitions(dirs: &[PathBuf]) -> anyhow::Result<ColdReport> {
    let mut report = ColdReport::default();
    for dir in dirs {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            evict_page_cache(&path).with_context(|| format!("evicting {}", path.display()))?;
            let len = std::fs::metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            report.files += 1;
            report.bytes += len;
            report.resident_bytes +=
                resident_bytes(&path).with_context(|| format!("mincore of {}", path.display()))?;
        }
    }
    Ok(report)
}

/// The warmup (`--warmup S`), then the phases `--phases` asks for, in order.
pub(crate) fn run_phases<'a>(
    runner: &mut impl Runner<'a>,
    baseline: Option<&BaselineReport>,
) -> anyhow::Result<Phases> {
    let (args, messages, cores) = {
        let load = runner.load();
        (load.args, load.messages, load.cores)
    };
    if args.warmup > 0.0 {
        let deadline = Instant::now() + Duration::from_secs_f64(args.warmup);
        runner
            .produce("warmup", &ProduceSpec::until(deadline))
            .context("warmup")?;
    }
    let mut phases = Phases::default();
    let start_offsets = runner.end_offsets()?;
    if args.runs(Phase::Produce) {
        let r = runner
            .produce("produce", &ProduceSpec::messages(messages))
            .context("produce phase")?;
        phases.push(Phase::Produce, r, args, cores, baseline);
    }
    if args.runs(Phase::Consume) {
        if args.cold {
            let dirs = runner.partition_dirs().ok_or_else(|| {
                anyhow!("--cold needs the partitions on this machine: --spawn-broker or --data-dir")
            })?;
            let cold = evict_partitions(&dirs).context("--cold")?;
            eprintln!(
                "cold: evicted {} segment file(s), {} bytes; {} bytes still cached",
                cold.files, cold.bytes, cold.resident_bytes
            );
            phases.cold = Some(cold);
        }
        let r = runner.consume(&start_offsets).context("consume phase")?;
        phases.push(Phase::Consume, r, args, cores, baseline);
    }
    if args.runs(Phase::E2e) {
        let r = runner.end_to_end().context("e2e phase")?;
        phases.push(Phase::E2e, r, args, cores, baseline);
    }
    Ok(phases)
}

/// What a runner knows about its run besides the phases, for the report.
#[derive(Debug)]
pub(crate) struct RunFacts {
    pub plan: Plan,
    pub partitions: u32,
    pub max_batch_bytes: usize,
    pub data_dir: String,
    pub temporary_data_dir: bool,
    pub bootstrap: Option<String>,
    pub spawned_broker: Option<bool>,
    pub machine: Machine,
    pub baseline: Option<BaselineReport>,
    pub broker_cpu_seconds: Option<f64>,
    pub idle: Option<IdleReport>,
}

/// The run's report and phase data.
pub(crate) fn outcome(args: &BenchArgs, phases: Phases, facts: RunFacts) -> Outcome {
    let compression_ratio = phases
        .produce
        .as_ref()
        .filter(|p: &&PhaseReport| p.disk_bytes > 0)
        .map(|p| p.bytes as f64 / p.disk_bytes as f64);
    let report = Report {
        mode: args.mode,
        config: ConfigReport {
            topic: args.topic.clone(),
            partitions: facts.partitions,
            producers: args.producers,
            in_flight: args.in_flight(),
            consumers: args.consumers,
            message_size: args.message_size as u64,
            batch_size: args.batch_size,
            messages: facts.plan.messages,
            total_bytes: facts.plan.total_bytes,
            payload: args.payload,
            compression: args.compression,
            fsync: args.fsync.to_string(),
            acks: args.acks,
            rate_mb_per_s: args.rate,
            warmup_s: args.warmup,
            data_dir: facts.data_dir,
            temporary_data_dir: facts.temporary_data_dir,
            phases: phases.data.iter().map(|p| p.phase).collect(),
            max_batch_bytes: facts.max_batch_bytes,
            bootstrap: facts.bootstrap,
            spawned_broker: facts.spawned_broker,
        },
        machine: facts.machine,
        produce: phases.produce,
        consume: phases.consume,
        e2e: phases.e2e,
        cold: phases.cold,
        baseline: facts.baseline,
        compression_ratio,
        load_generator_cpu_seconds: machine::process_cpu_seconds() - facts.plan.cpu_start,
        broker_cpu_seconds: facts.broker_cpu_seconds,
        idle: facts.idle,
        units: UNITS,
    };
    Outcome {
        report,
        phases: phases.data,
    }
}
