//! The command line of `strata bench` (see issue 3 for the reference).
//!
//! Every value is checked by clap's value parsers, so a bad argument is reported with the flag's
//! name and exits with status 2 before anything touches the disk.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use strata_storage::batch::Compression;
use strata_storage::io::BackendChoice;
use strata_storage::log::{FsyncPolicy, WriteMode};

use super::units;

/// What the benchmark drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The storage engine in this process (a temporary data dir unless `--data-dir`).
    Embedded,
    /// A running broker over the Kafka protocol (needs the broker of issue 5).
    Kafka,
}

/// Message contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// Incompressible bytes (xorshift).
    Random,
    /// Realistic, compressible log lines (timestamps, levels, paths, ids).
    Text,
}

/// Batch compression codec the producers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchCompression {
    None,
    Zstd,
    Lz4,
}

impl BenchCompression {
    /// The engine's codec.
    pub fn codec(self) -> Compression {
        match self {
            BenchCompression::None => Compression::None,
            BenchCompression::Zstd => Compression::Zstd,
            BenchCompression::Lz4 => Compression::Lz4,
        }
    }
}

/// Producer acknowledgement level (kafka mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
pub enum Acks {
    #[value(name = "0")]
    #[serde(rename = "0")]
    None,
    #[value(name = "1")]
    #[serde(rename = "1")]
    Leader,
    #[value(name = "all")]
    #[serde(rename = "all")]
    All,
}

/// A phase of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Producers append everything, ending with a sync of every partition.
    Produce,
    /// Consumers read everything back from where the produce phase started.
    Consume,
    /// Consumers tail the logs while producers append; latency from send to receipt.
    E2e,
}

impl Phase {
    /// The phase's name in the output (`produce`, `consume`, `e2e`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Produce => "produce",
            Phase::Consume => "consume",
            Phase::E2e => "e2e",
        }
    }
}

/// `strata bench`: throughput and latency of the storage engine (or, later, a broker).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to drive: the engine in-process, or a broker over the Kafka protocol.
    #[arg(long, value_enum, default_value_t = Mode::Embedded)]
    pub mode: Mode,
    /// Broker address (kafka mode).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Kafka mode: start `strata serve` from this binary on a free loopback port (data in
    /// `--data-dir` or a temporary directory), benchmark it, and stop it with SIGTERM.
    #[arg(long, conflicts_with = "bootstrap")]
    pub spawn_broker: bool,
    /// Kafka mode: pid of an already running broker, to report its CPU time per phase (known
    /// without this flag with `--spawn-broker`).
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Kafka mode: after the phases, let the consumers long-poll the (now idle) topic for this
    /// many seconds and report the broker's CPU time meanwhile (needs the broker's pid).
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = units::parse_seconds)]
    pub idle: f64,
    /// Where the partition logs go; a temporary directory (removed afterwards) if absent. In
    /// kafka mode: the spawned broker's data dir, or where an external broker keeps its data
    /// (for the machine description and `--baseline`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Topic name; partition directories are `<topic>-<n>`.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Partitions; producers spread batches over them round-robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub partitions: u32,
    /// Producer threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub producers: u32,
    /// Appends (embedded) or produce requests (kafka) each producer keeps in flight, as
    /// Kafka's `max.in.flight.requests.per.connection`: it builds and starts the next batch
    /// while earlier ones are being stored. Default: 1 embedded (each append waits for its
    /// acknowledgement), 5 kafka (the Java client's default).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub in_flight: Option<u32>,
    /// Consumer threads (each partition is read by one of them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub consumers: u32,
    /// Size of each message value (`1KiB`, `16KiB`, `100`).
    #[arg(long, default_value = "1KiB", value_parser = units::parse_message_size)]
    pub message_size: usize,
    /// Messages per batch (one append call per batch).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Payload volume to produce (`2GiB`, `512MiB`, `10MB`); default 1GiB.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size, conflicts_with = "messages")]
    pub total: Option<u64>,
    /// Number of messages to produce (instead of `--total`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Message contents: incompressible random bytes or compressible log lines.
    #[arg(long, value_enum, default_value_t = Payload::Random)]
    pub payload: Payload,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = BenchCompression::None)]
    pub compression: BenchCompression,
    /// Durability policy of the logs: `never`, `always` or `interval:MS`.
    #[arg(long, default_value = "never", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,
    /// Producer acks (kafka mode): `0` (no response), `1` or `all` (the same with one broker).
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,
    /// Cap the produce rate at this many MB/s (10^6 bytes) over all producers.
    #[arg(long, value_name = "MB/s", value_parser = units::parse_rate)]
    pub rate: Option<f64>,
    /// Run producers this many seconds before measuring (their numbers are discarded).
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = units::parse_seconds)]
    pub warmup: f64,
    /// Also measure raw O_DIRECT io_uring sequential write and read of the same volume in the
    /// same directory, and print each phase as a ratio of it.
    #[arg(long)]
    pub baseline: bool,
    /// Before the consume phase, sync the partitions' segment files and evict them from the
    /// page cache (`posix_fadvise(DONTNEED)`), so consume replays from the disk. Needs the data
    /// dir on this machine (kafka mode: `--spawn-broker` or `--data-dir`).
    #[arg(long)]
    pub cold: bool,
    /// Print exactly one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write `<phase>.hgrm` latency histograms (HdrHistogram percentile format) into DIR.
    #[arg(long, value_name = "DIR")]
    pub hgrm: Option<PathBuf>,
    /// Draw latency percentile curves and throughput over time into an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Phases to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Phase::Produce, Phase::Consume, Phase::E2e])]
    pub phases: Vec<Phase>,
    /// Write path of the engine: `auto` (io_uring if the kernel allows), `io_uring` or `plain`.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub io_backend: BackendChoice,
    /// How appends reach the file: `buffered` (through the page cache) or `direct` (O_DIRECT
    /// from the engine's staging buffers; kafka mode sets the spawned broker's
    /// `strata.log.write.mode`).
    #[arg(long, default_value = "buffered", value_parser = parse_write_mode)]
    pub write_mode: WriteMode,
    /// With `--write-mode direct`: bytes of each partition's newest batches kept in memory
    /// (`strata.log.direct.cache.bytes`; kafka mode sets the spawned broker's). Default: the
    /// engine's.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub direct_cache: Option<u64>,
}

/// The volume used when neither `--total` nor `--messages` is given.
pub const DEFAULT_TOTAL: u64 = 1 << 30;

impl BenchArgs {
    /// Messages to produce per measured phase.
    pub fn message_count(&self) -> Result<u64, String> {
        match (self.messages, self.total) {
            (Some(n), _) => Ok(n),
            (None, total) => {
                let total = total.unwrap_or(DEFAULT_TOTAL);
                let n = total / self.message_size as u64;
                if n == 0 {
                    Err(format!(
                        "--total {total} is smaller than one message of {} bytes",
                        self.message_size
                    ))
                } else {
                    Ok(n)
                }
            }
        }
    }

    /// Appends or requests each producer keeps in flight (`--in-flight`, or the mode's default).
    pub fn in_flight(&self) -> usize {
        let default = match self.mode {
            Mode::Embedded => 1,
            Mode::Kafka => 5,
        };
        self.in_flight.unwrap_or(default) as usize
    }

    /// Whether `phase` was asked for.
    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    s.parse()
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    s.parse()
}

fn parse_write_mode(s: &str) -> Result<WriteMode, String> {
    s.parse()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(argv: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn defaults_are_one_gib_of_1kib_random_messages_with_fsync_never() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.mode, Mode::Embedded);
        assert_eq!(a.message_size, 1024);
        assert_eq!(a.message_count().unwrap(), (1 << 30) / 1024);
        assert_eq!(a.fsync, FsyncPolicy::Never);
        assert_eq!(a.phases, vec![Phase::Produce, Phase::Consume, Phase::E2e]);
    }

    #[test]
    fn every_flag_of_the_issue_parses() {
        let a = parse(&[
            "--mode",
            "kafka",
            "--bootstrap",
            "10.0.0.1:9092",
            "--data-dir",
            "/tmp/x",
            "--topic",
            "t",
            "--partitions",
            "4",
            "--producers",
            "8",
            "--consumers",
            "2",
            "--message-size",
            "16KiB",
            "--batch-size",
            "64",
            "--total",
            "2GiB",
            "--payload",
            "text",
            "--compression",
            "zstd",
            "--fsync",
            "interval:250",
            "--acks",
            "0",
            "--rate",
            "100",
            "--warmup",
            "3",
            "--baseline",
            "--cold",
            "--json",
            "--hgrm",
            "/tmp/h",
            "--plot",
            "/tmp/p.svg",
            "--phases",
            "produce,consume",
            "--in-flight",
            "3",
            "--direct-cache",
            "8MiB",
        ])
        .unwrap();
        assert_eq!(a.in_flight(), 3);
        assert_eq!(a.direct_cache, Some(8 << 20));
        assert_eq!(a.mode, Mode::Kafka);
        assert_eq!(a.partitions, 4);
        assert_eq!(a.message_size, 16384);
        assert_eq!(a.message_count().unwrap(), (2 << 30) / 16384);
        assert_eq!(
            a.fsync,
            FsyncPolicy::Interval(std::time::Duration::from_millis(250))
        );
        assert_eq!(a.acks, Acks::None);
        assert_eq!(a.compression.codec(), Compression::Zstd);
        assert!(a.baseline && a.cold && a.json);
        assert!(!a.runs(Phase::E2e));
    }

    #[test]
    fn bad_values_are_refused() {
        for argv in [
            &["--total", "lots"][..],
            &["--message-size", "0"],
            &["--fsync", "sometimes"],
            &["--fsync", "interval:0"],
            &["--compression", "brotli"],
            &["--partitions", "0"],
            &["--producers", "0"],
            &["--in-flight", "0"],
            &["--direct-cache", "lots"],
            &["--rate", "-5"],
            &["--acks", "2"],
            &["--total", "1GiB", "--messages", "10"],
            &["--mode", "cloud"],
            &["--phases", "produce,sleep"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} must be refused");
        }
    }

    #[test]
    fn in_flight_defaults_to_one_append_embedded_and_to_kafkas_five_requests() {
        assert_eq!(parse(&[]).unwrap().in_flight(), 1);
        assert_eq!(parse(&["--mode", "kafka"]).unwrap().in_flight(), 5);
        assert_eq!(parse(&["--in-flight", "3"]).unwrap().in_flight(), 3);
        assert_eq!(
            parse(&["--mode", "kafka", "--in-flight", "1"])
                .unwrap()
                .in_flight(),
            1
        );
    }

    #[test]
    fn a_total_smaller_than_one_message_is_an_error() {
        let a = parse(&["--total", "100", "--message-size", "1KiB"]).unwrap();
        assert!(a.message_count().is_err());
        let a = parse(&["--messages", "7"]).unwrap();
        assert_eq!(a.message_count().unwrap(), 7);
    }
}
