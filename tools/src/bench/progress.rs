//! Watching a phase: throughput samples for the plot, and a progress display on stderr — an
//! `indicatif` bar when stderr is a terminal, a plain line per second otherwise (logs, CI).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often throughput is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Counters a phase's threads bump and the monitor reads.
#[derive(Debug, Default)]
pub struct Progress {
    /// Payload bytes done.
    pub bytes: AtomicU64,
    /// Set when the phase is over (or failed): the monitor stops.
    pub done: AtomicBool,
}

/// Samples `progress` until `done`, returning `(seconds since start, MB/s in the interval)`.
/// Runs on its own thread inside the phase's scope.
pub fn monitor(
    phase: &str,
    progress: &Progress,
    total_bytes: u64,
    started: Instant,
) -> Vec<(f64, f64)> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total_bytes);
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(phase.to_string());
        bar
    });
    let mut samples = Vec::new();
    let mut last_t = started;
    let mut last_b = 0u64;
    let mut last_line = started;
    loop {
        let finished = progress.done.load(Ordering::Acquire);
        if !finished {
            std::thread::sleep(SAMPLE_EVERY);
        }
        let now = Instant::now();
        let b = progress.bytes.load(Ordering::Relaxed);
        let dt = now.duration_since(last_t).as_secs_f64();
        if dt > 0.0 && (b > last_b || !finished) {
            samples.push((
                now.duration_since(started).as_secs_f64(),
                (b - last_b.min(b)) as f64 / 1e6 / dt,
            ));
        }
        last_t = now;
        last_b = b;
        match &bar {
            Some(bar) => bar.set_position(b.min(total_bytes)),
            None => {
                if now.duration_since(last_line) >= Duration::from_secs(1) && !finished {
                    last_line = now;
                    let secs = now.duration_since(started).as_secs_f64();
                    eprintln!(
                        "{phase}: {:.1}% {:.1} MB in {secs:.1} s ({:.1} MB/s)",
                        if total_bytes > 0 {
                            b as f64 * 100.0 / total_bytes as f64
                        } else {
                            0.0
                        },
                        b as f64 / 1e6,
                        b as f64 / 1e6 / secs.max(1e-9)
                    );
                }
            }
        }
        if finished {
            break;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    samples
}
