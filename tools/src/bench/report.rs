//! What a run reports: the `--json` object (every field documented here is part of the output
//! contract) and the human table.
//!
//! Units: **MB = 10^6 bytes**, MB/s = 10^6 bytes per second; latencies in **microseconds**.

use std::fmt::Write as _;

use super::args::{Acks, BenchCompression, Mode, Payload, Phase};
use super::hist::Percentiles;
use super::machine::Machine;
use super::units::human_bytes;

/// The one JSON object `strata bench --json` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// `"embedded"` (the engine in-process) or `"kafka"` (a broker over the wire).
    pub mode: Mode,
    /// The settings the run used, after defaults were applied.
    pub config: ConfigReport,
    /// Where it ran.
    pub machine: Machine,
    /// Producers appending everything, ending with a sync of every partition (absent if not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produce: Option<PhaseReport>,
    /// Consumers reading everything the produce phase wrote (absent if not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consume: Option<PhaseReport>,
    /// Consumers tailing while producers append; latency is send → receipt (absent if not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e: Option<PhaseReport>,
    /// What `--cold` evicted before the consume phase (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold: Option<ColdReport>,
    /// The disk's raw limit measured in the same run and directory (present with `--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineReport>,
    /// Payload bytes / bytes the produce phase added on disk (batch framing included); > 1 means
    /// compression saved space. `null` when no produce phase ran.
    pub compression_ratio: Option<f64>,
    /// User + system CPU seconds of the whole benchmark process (the load generator *and*, in
    /// embedded mode, the engine), from `/proc/self/stat`.
    pub load_generator_cpu_seconds: f64,
    /// Kafka mode: user + system CPU seconds the broker process used during the run, from
    /// `/proc/<pid>/stat` (present with `--spawn-broker` or `--broker-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_seconds: Option<f64>,
    /// Kafka mode with `--idle S`: what consumers long-polling an idle topic cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleReport>,
    /// Human note on units: MB = 10^6 bytes, latencies in microseconds.
    pub units: &'static str,
}

/// The settings of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigReport {
    /// Topic name (partition directories are `<topic>-<n>`).
    pub topic: String,
    pub partitions: u32,
    pub producers: u32,
    /// Appends (embedded) or produce requests (kafka) each producer keeps in flight.
    pub in_flight: usize,
    pub consumers: u32,
    /// Bytes per message value.
    pub message_size: u64,
    /// Messages per batch (one append per batch).
    pub batch_size: u32,
    /// Messages each measured phase produces.
    pub messages: u64,
    /// `messages * message_size`.
    pub total_bytes: u64,
    pub payload: Payload,
    pub compression: BenchCompression,
    /// `never`, `always` or `interval:MS`.
    pub fsync: String,
    /// Kafka mode only; recorded for completeness.
    pub acks: Acks,
    /// Produce rate cap in MB/s, `null` for unlimited.
    pub rate_mb_per_s: Option<f64>,
    /// Seconds of unmeasured producing before the produce phase.
    pub warmup_s: f64,
    /// Data directory used.
    pub data_dir: String,
    /// Whether the data directory was a temporary one, removed after the run.
    pub temporary_data_dir: bool,
    /// Phases that ran, in order.
    pub phases: Vec<Phase>,
    /// Largest batch the logs accept (sized to fit `batch_size` messages).
    pub max_batch_bytes: usize,
    /// Kafka mode: the broker address benchmarked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// Kafka mode: whether the broker was started by the benchmark (`--spawn-broker`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spawned_broker: Option<bool>,
}

/// `--cold`: the segment files evicted from the page cache before the consume phase.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ColdReport {
    /// Segment files (`*.log`) synced and evicted.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Bytes of them still in the page cache afterwards (`mincore`): pages a process has
    /// mapped stay. Near 0 means consume read from the disk.
    pub resident_bytes: u64,
}

/// Consumers long-polling a topic nobody writes to (`--idle`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdleReport {
    /// Wall time of the measurement.
    pub seconds: f64,
    /// Consumer connections polling.
    pub consumers: u32,
    /// Fetch requests they completed (each waits up to `max_wait_ms` = 500).
    pub fetches: u64,
    /// Broker CPU seconds (user + system) meanwhile; `null` without the broker's pid.
    pub broker_cpu_seconds: Option<f64>,
    /// `broker_cpu_seconds / seconds` in percent of one core.
    pub broker_cpu_percent_of_core: Option<f64>,
    /// This process's CPU seconds meanwhile.
    pub load_generator_cpu_seconds: f64,
}

/// One phase's numbers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseReport {
    /// Payload MB (10^6 bytes of message values) per second of wall time.
    pub mb_per_s: f64,
    /// Messages per second of wall time.
    pub msgs_per_s: f64,
    /// Messages produced (produce) or received (consume, e2e).
    pub messages: u64,
    /// Payload bytes: `messages * message_size`.
    pub bytes: u64,
    /// Bytes of whole batches written to (produce) or read from (consume, e2e) the logs.
    pub disk_bytes: u64,
    /// Wall time of the phase in seconds (produce includes the final sync of every partition).
    pub seconds: f64,
    /// Latency percentiles in microseconds: produce = one append call (under the fsync policy),
    /// consume = one `read` call, e2e = send (record timestamp) to the consumer seeing the batch,
    /// weighted per message.
    pub latency_us: Percentiles,
    /// CPU seconds (user + system) the process used during the phase.
    pub cpu_seconds: f64,
    /// `cpu_seconds / (seconds * cores)`: 1.0 means every core was busy.
    pub cpu_utilization: f64,
    /// Kafka mode: CPU seconds the broker process used during the phase (with its pid known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_seconds: Option<f64>,
    /// `mb_per_s` divided by the raw limit from `--baseline`: the raw write for produce, the raw
    /// (O_DIRECT, uncached) read for consume. Absent without `--baseline` and for e2e, which ends
    /// when consumers see the data rather than when it is on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_ratio: Option<f64>,
}

/// Raw sequential O_DIRECT I/O through io_uring of the same volume in the same directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineReport {
    /// Raw write bandwidth, MB/s (10^6 bytes), ending with the data on disk.
    pub write_mb_per_s: f64,
    /// Raw read bandwidth, MB/s (10^6 bytes), bypassing the page cache.
    pub read_mb_per_s: f64,
    /// Bytes written and read.
    pub bytes: u64,
    /// I/O size in bytes.
    pub block_size: u64,
    pub write_seconds: f64,
    pub read_seconds: f64,
}

/// The units note of every report.
pub const UNITS: &str = "MB = 10^6 bytes; MB/s = 10^6 bytes per second; latency in microseconds";

impl Report {
    /// The phases present, in order.
    pub fn phases(&self) -> Vec<(Phase, &PhaseReport)> {
        let mut v = Vec::new();
        if let Some(p) = &self.produce {
            v.push((Phase::Produce, p));
        }
        if let Some(p) = &self.consume {
            v.push((Phase::Consume, p));
        }
        if let Some(p) = &self.e2e {
            v.push((Phase::E2e, p));
        }
        v
    }

    /// The human-readable table.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "strata bench --mode {}: {} partition(s), {} producer(s) with {} in flight each, {} consumer(s), {} B messages x {} per batch, {} payload, {} compression, fsync {}",
            match self.mode {
                Mode::Embedded => "embedded",
                Mode::Kafka => "kafka",
            },
            c.partitions,
            c.producers,
            c.in_flight,
            c.consumers,
            c.message_size,
            c.batch_size,
            match c.payload {
                Payload::Random => "random",
                Payload::Text => "text",
            },
            match c.compression {
                BenchCompression::None => "no",
                BenchCompression::Zstd => "zstd",
                BenchCompression::Lz4 => "lz4",
            },
            c.fsync
        );
        let _ = writeln!(
            s,
            "volume: {} messages, {} payload per phase{}",
            c.messages,
            human_bytes(c.total_bytes),
            c.rate_mb_per_s
                .map(|r| format!(", rate cap {r} MB/s"))
                .unwrap_or_default()
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<8} {:>10} {:>12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
            "phase",
            "MB/s",
            "msgs/s",
            "seconds",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "p99.99 us",
            "max us",
            "cpu s",
            "vs raw"
        );
        for (phase, p) in self.phases() {
            let l = &p.latency_us;
            let _ = writeln!(
                s,
                "{:<8} {:>10.1} {:>12.0} {:>9.3} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8.2} {:>8}",
                phase.name(),
                p.mb_per_s,
                p.msgs_per_s,
                p.seconds,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.p9999,
                l.max,
                p.cpu_seconds,
                p.baseline_ratio
                    .map(|r| format!("{:.0}%", r * 100.0))
                    .unwrap_or_else(|| "-".into())
            );
        }
        let _ = writeln!(s);
        if let (Some(ratio), Some(p)) = (self.compression_ratio, &self.produce) {
            let _ = writeln!(
                s,
                "compression ratio on disk: {ratio:.2} (payload {}, on disk {})",
                human_bytes(p.bytes),
                human_bytes(p.disk_bytes)
            );
        }
        if let Some(b) = &self.baseline {
            let _ = writeln!(
                s,
                "baseline (raw O_DIRECT io_uring, same dir, {} in {} KiB blocks): write {:.1} MB/s, read {:.1} MB/s",
                human_bytes(b.bytes),
                b.block_size / 1024,
                b.write_mb_per_s,
                b.read_mb_per_s
            );
        }
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine: {} cores, kernel {}, {} on {}, io backend {}",
            m.cores, m.kernel, m.filesystem, m.device, m.io_backend
        );
        let _ = writeln!(
            s,
            "{} CPU: {:.2} s in total; data dir {}{}",
            match self.mode {
                Mode::Embedded => "load generator + engine",
                Mode::Kafka => "load generator",
            },
            self.load_generator_cpu_seconds,
            c.data_dir,
            if c.temporary_data_dir {
                " (temporary, removed)"
            } else {
                ""
            }
        );
        if let Some(b) = self.broker_cpu_seconds {
            let _ = writeln!(s, "broker CPU: {b:.2} s in total");
        }
        for (phase, p) in self.phases() {
            if let Some(b) = p.broker_cpu_seconds {
                let _ = writeln!(
                    s,
                    "  {}: broker CPU {b:.2} s, load generator CPU {:.2} s in {:.2} s",
                    phase.name(),
                    p.cpu_seconds,
                    p.seconds
                );
            }
        }
        if let Some(c) = &self.cold {
            let _ = writeln!(
                s,
                "cold: consume started with {} of {} evicted from the page cache ({} segment file(s)); {} still cached",
                human_bytes(c.bytes.saturating_sub(c.resident_bytes)),
                human_bytes(c.bytes),
                c.files,
                human_bytes(c.resident_bytes)
            );
        }
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "idle: {} consumer(s) long-polling for {:.1} s ({} fetches): broker CPU {}, load generator CPU {:.3} s",
                i.consumers,
                i.seconds,
                i.fetches,
                match (i.broker_cpu_seconds, i.broker_cpu_percent_of_core) {
                    (Some(c), Some(p)) => format!("{c:.3} s ({p:.2}% of a core)"),
                    _ => "unknown (no broker pid)".to_string(),
                },
                i.load_generator_cpu_seconds
            );
        }
        let _ = writeln!(s, "units: {}", self.units);
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::bench::hist;

    pub(crate) fn sample_report() -> Report {
        let p = PhaseReport {
            mb_per_s: 100.0,
            msgs_per_s: 97_656.0,
            messages: 1000,
            bytes: 1_024_000,
            disk_bytes: 1_040_000,
            seconds: 0.01,
            latency_us: hist::Percentiles::of(&hist::new_histogram()),
            cpu_seconds: 0.01,
            cpu_utilization: 0.5,
            baseline_ratio: Some(0.93),
            broker_cpu_seconds: None,
        };
        Report {
            mode: Mode::Embedded,
            config: ConfigReport {
                topic: "bench".into(),
                partitions: 1,
                producers: 1,
                in_flight: 1,
                consumers: 1,
                message_size: 1024,
                batch_size: 100,
                messages: 1000,
                total_bytes: 1_024_000,
                payload: Payload::Random,
                compression: BenchCompression::None,
                fsync: "never".into(),
                acks: Acks::All,
                rate_mb_per_s: None,
                warmup_s: 0.0,
                data_dir: "/tmp/x".into(),
                temporary_data_dir: true,
                phases: vec![Phase::Produce],
                max_batch_bytes: 1 << 20,
                bootstrap: None,
                spawned_broker: None,
            },
            machine: Machine {
                cores: 2,
                kernel: "6.1".into(),
                filesystem: "ext4".into(),
                device: "/dev/vda".into(),
                io_backend: "io_uring".into(),
            },
            produce: Some(p),
            consume: None,
            e2e: None,
            cold: None,
            baseline: None,
            compression_ratio: Some(0.98),
            load_generator_cpu_seconds: 0.02,
            broker_cpu_seconds: None,
            idle: None,
            units: UNITS,
        }
    }

    #[test]
    fn json_has_the_documented_fields_and_omits_absent_phases() {
        let v = serde_json::to_value(sample_report()).unwrap();
        assert_eq!(v["mode"], "embedded");
        for k in ["mb_per_s", "msgs_per_s", "messages", "bytes", "latency_us"] {
            assert!(v["produce"].get(k).is_some(), "{k}");
        }
        for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            assert!(v["produce"]["latency_us"].get(k).is_some(), "{k}");
        }
        assert!(v.get("consume").is_none());
        assert!(v.get("baseline").is_none());
        assert_eq!(v["config"]["acks"], "all");
        assert_eq!(v["config"]["phases"][0], "produce");
    }

    #[test]
    fn the_table_names_every_phase_and_the_units() {
        let t = sample_report().to_text();
        assert!(t.contains("produce"));
        assert!(t.contains("93%"));
        assert!(t.contains("MB = 10^6 bytes"));
        assert!(t.contains("2 cores"));
        assert!(!t.contains("cold"));
        let mut r = sample_report();
        r.cold = Some(ColdReport {
            files: 2,
            bytes: 2 << 30,
            resident_bytes: 1 << 20,
        });
        let t = r.to_text();
        assert!(
            t.contains("cold: consume started with 2.00 GiB of 2.00 GiB evicted"),
            "{t}"
        );
        assert!(
            t.contains("2 segment file(s)") && t.contains("1.00 MiB still cached"),
            "{t}"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cold"]["resident_bytes"], 1 << 20);
    }
}
