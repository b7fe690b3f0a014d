//! `strata bench`: the load generator behind the numbers in PERFORMANCE.md.
//!
//! Modelled on kafka-producer-perf-test, OpenMessaging Benchmark and iggy-bench: produce, consume
//! and end-to-end phases; MB/s (10^6 bytes) and msgs/s; HDR latency percentiles merged from
//! per-thread histograms; the disk's raw limit from the same run (`--baseline`); JSON for
//! scripts, `.hgrm` files for the HdrHistogram plotter, and an SVG of the curves.
//!
//! Layout: [`args`] (the command line), [`units`] (sizes and rates), [`payload`] (message
//! contents), [`embedded`] (the in-process runner), [`kafka`] (the over-the-wire runner and its
//! small Kafka client), [`hist`] (histograms and `.hgrm`),
//! [`report`] (JSON + table), [`plot`] (SVG), [`machine`] (cores, kernel, file system, CPU time),
//! [`progress`] (progress display and throughput samples).

pub mod args;
pub mod embedded;
pub mod hist;
pub mod kafka;
pub mod machine;
pub mod payload;
pub mod phase;
pub mod plot;
pub mod progress;
pub mod report;
pub mod units;

use std::io::Write;
use std::path::Path;

use anyhow::Context;

pub use args::BenchArgs;
use args::Mode;

/// Failures `strata bench` reports with a specific exit status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The mode exists on the command line but not yet in the code.
    #[error("--mode {mode} is not implemented yet: needs the broker (issue 5)")]
    NotImplemented { mode: &'static str },
    /// Kafka mode: nothing answers at the bootstrap address.
    #[error(
        "cannot reach a broker at {addr}: {reason} (start `strata serve`, pass --bootstrap HOST:PORT, or use --spawn-broker)"
    )]
    Unreachable { addr: String, reason: String },
}

/// Exit status for usage errors and unimplemented modes (clap uses 2 for bad arguments too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for a run that failed.
pub const EXIT_FAILURE: u8 = 1;

/// The exit status `strata` should use for an error returned by [`run`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<BenchError>() {
        Some(BenchError::NotImplemented { .. } | BenchError::Unreachable { .. }) => EXIT_USAGE,
        None => EXIT_FAILURE,
    }
}

/// Runs the benchmark the arguments describe and prints its report on stdout (the table, or one
/// JSON object with `--json`); progress goes to stderr.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.mode != Mode::Kafka
        && (args.spawn_broker || args.broker_pid.is_some() || args.idle > 0.0)
    {
        anyhow::bail!(
            "--spawn-broker, --broker-pid and --idle are kafka-mode flags (--mode kafka)"
        );
    }
    let outcome = match args.mode {
        Mode::Embedded => embedded::run(&args)?,
        Mode::Kafka => kafka::run(&args)?,
    };
    if let Some(dir) = &args.hgrm {
        write_hgrms(dir, &outcome)?;
    }
    if let Some(path) = &args.plot {
        write_plot(path, &outcome)?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &outcome.report).context("writing JSON")?;
        writeln!(stdout).context("writing JSON")?;
    } else {
        write!(stdout, "{}", outcome.report.to_text()).context("writing the report")?;
    }
    Ok(())
}

/// Writes `<phase>.hgrm` for every phase that ran.
pub fn write_hgrms(dir: &Path, outcome: &embedded::Outcome) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for p in &outcome.phases {
        let (phase, h) = (p.phase, &p.hist);
        let path = dir.join(format!("{}.hgrm", phase.name()));
        let f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        hist::write_hgrm(h, &mut w).with_context(|| format!("writing {}", path.display()))?;
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Writes the SVG plot of every phase that ran.
pub fn write_plot(path: &Path, outcome: &embedded::Outcome) -> anyhow::Result<()> {
    let series: Vec<plot::Series> = outcome
        .phases
        .iter()
        .map(|p| plot::Series {
            name: p.phase.name().to_string(),
            latency: hist::percentile_curve(&p.hist),
            throughput: p.throughput.clone(),
        })
        .collect();
    let c = &outcome.report.config;
    let title = format!(
        "strata bench {}: {} B x {} msgs/batch, {} producer(s), {} partition(s), fsync {}, {:?}/{:?}",
        match outcome.report.mode {
            Mode::Embedded => "embedded",
            Mode::Kafka => "kafka",
        },
        c.message_size,
        c.batch_size,
        c.producers,
        c.partitions,
        c.fsync,
        c.payload,
        c.compression
    );
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, plot::render(&title, &series))
        .with_context(|| format!("writing {}", path.display()))
}
