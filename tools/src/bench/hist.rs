//! Latency histograms: one `hdrhistogram` per thread, merged at the end of a phase; percentiles
//! for the report and the `.hgrm` text the public HdrHistogram plotter reads.
//!
//! Values are recorded in **nanoseconds** with 3 significant digits; everything printed is in
//! microseconds.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Significant decimal digits kept (0.1% value resolution).
pub const SIGFIG: u8 = 3;

/// Nanoseconds per microsecond: the `.hgrm` "output value unit scaling ratio".
pub const NS_PER_US: f64 = 1000.0;

/// A new auto-resizing histogram of nanosecond values.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGFIG).expect("3 significant digits is a valid histogram precision")
}

/// Records a duration in nanoseconds (values below 1 ns are recorded as 1).
pub fn record_ns(h: &mut Histogram<u64>, ns: u64, count: u64) {
    // `record_n` grows an auto-resizing histogram; saturating is the fallback for values past
    // what a u64 histogram can track at all.
    if h.record_n(ns.max(1), count).is_err() {
        h.saturating_record_n(ns.max(1), count);
    }
}

/// Merges per-thread histograms into one.
pub fn merge<I: IntoIterator<Item = Histogram<u64>>>(parts: I) -> Histogram<u64> {
    let mut all = new_histogram();
    for h in parts {
        // Auto-resizing histograms with the same precision always add.
        let _ = all.add(&h);
    }
    all
}

/// The percentiles every report shows, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// 99.99th percentile.
    pub p9999: f64,
    /// Largest value recorded.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Number of values recorded.
    pub count: u64,
}

impl Percentiles {
    /// Reads the percentiles of `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / NS_PER_US;
        if h.is_empty() {
            return Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                p9999: 0.0,
                max: 0.0,
                mean: 0.0,
                count: 0,
            };
        }
        Percentiles {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
            mean: h.mean() / NS_PER_US,
            count: h.len(),
        }
    }
}

/// Sub-buckets per bucket for `SIGFIG` digits, as HdrHistogram computes it (printed in the
/// `.hgrm` footer).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// Writes `h` in HdrHistogram's percentile-distribution text format
/// (`AbstractHistogram.outputPercentileDistribution(out, 5, 1000.0)` in the Java original): a
/// `Value Percentile TotalCount 1/(1-Percentile)` table with 5 ticks per half distance, values in
/// microseconds, and the `#[Mean ...]` footer. The last row (percentile 1.0) has no fourth column.
pub fn write_hgrm<W: Write>(h: &Histogram<u64>, mut out: W) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total: u64 = 0;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / NS_PER_US;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / NS_PER_US,
            h.stdev() / NS_PER_US,
            h.max() as f64 / NS_PER_US,
        )
    };
    writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(SIGFIG)
    )?;
    Ok(())
}

/// The points of a percentile curve: `(quantile, value in µs)`, from the same iteration the
/// `.hgrm` file uses, for the plot.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / NS_PER_US,
            )
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = new_histogram();
        for i in 1..=10_000u64 {
            record_ns(&mut h, i * 1000, 1); // 1 µs .. 10 ms
        }
        h
    }

    #[test]
    fn merged_histograms_hold_every_value() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        record_ns(&mut a, 5_000, 10);
        record_ns(&mut b, 7_000_000, 1);
        let m = merge([a, b]);
        assert_eq!(m.len(), 11);
        let p = Percentiles::of(&m);
        assert!((p.p50 - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.max - 7000.0).abs() / 7000.0 < 0.001, "{p:?}");
    }

    #[test]
    fn percentiles_are_in_microseconds_and_ordered() {
        let p = Percentiles::of(&sample());
        assert!((p.p50 - 5000.0).abs() / 5000.0 < 0.002, "{p:?}");
        assert!((p.p99 - 9900.0).abs() / 9900.0 < 0.002, "{p:?}");
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999);
        assert!(p.p999 <= p.p9999 && p.p9999 <= p.max);
        assert_eq!(Percentiles::of(&new_histogram()).count, 0);
    }

    #[test]
    fn hgrm_has_the_hdrhistogram_layout() {
        let mut out = Vec::new();
        write_hgrm(&sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines[1], "");
        let rows: Vec<Vec<&str>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(rows.len() > 20);
        let mut last_q = -1.0;
        for r in &rows[..rows.len() - 1] {
            assert_eq!(r.len(), 4, "{r:?}");
            let q: f64 = r[1].parse().unwrap();
            assert!(q >= last_q);
            last_q = q;
        }
        let final_row = rows.last().unwrap();
        assert_eq!(final_row.len(), 3, "{final_row:?}");
        assert_eq!(final_row[1], "1.000000000000");
        assert_eq!(final_row[2], "10000");
        assert!(text.contains("#[Mean    ="));
        assert!(text.contains("Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn curve_runs_from_low_to_high_quantiles() {
        let c = percentile_curve(&sample());
        assert!(c.first().unwrap().0 < 0.01);
        assert!((c.last().unwrap().0 - 1.0).abs() < f64::EPSILON);
    }
}
