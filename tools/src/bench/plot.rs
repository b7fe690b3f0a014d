//! `--plot FILE.svg`: latency percentile curves and throughput over time, drawn by hand.
//!
//! The top panel is drawn the way HdrHistogram plots are: the x axis is the percentile on a log
//! scale of `1/(1-p)` (ticks 0%, 90%, 99%, 99.9%, 99.99%, 99.999%), so the tail gets as much room
//! as the median. Latency (y) is log-scaled too, because the phases differ by orders of
//! magnitude (an fsync'd append vs a page-cache read). The bottom panel is MB/s (10^6 bytes) per
//! sampling interval against seconds since the phase started.
//!
//! Element ids are stable (`latency-<phase>`, `throughput-<phase>`, class `series`) so tests and
//! scripts can find each series.

use std::fmt::Write as _;

/// One phase to draw.
#[derive(Debug, Clone)]
pub struct Series {
    /// Phase name (`produce`, `consume`, `e2e`).
    pub name: String,
    /// `(quantile in 0..=1, latency µs)` points, increasing.
    pub latency: Vec<(f64, f64)>,
    /// `(seconds since phase start, MB/s)` samples.
    pub throughput: Vec<(f64, f64)>,
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 820.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 170.0;
const PANEL_W: f64 = WIDTH - LEFT - RIGHT;
const LAT_TOP: f64 = 70.0;
const LAT_H: f64 = 400.0;
const TP_TOP: f64 = 560.0;
const TP_H: f64 = 200.0;
/// Decades of `1/(1-p)` shown: 10^5 is 99.999%.
const X_DECADES: f64 = 5.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b",
];
const X_LABELS: [&str; 6] = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"];

/// `log10(1/(1-q))`, clamped to the axis (q = 1.0, the max, lands on the right edge).
fn percentile_x(q: f64) -> f64 {
    let q = q.clamp(0.0, 1.0);
    let d = if q >= 1.0 {
        X_DECADES
    } else {
        (1.0 / (1.0 - q)).log10()
    };
    LEFT + d.clamp(0.0, X_DECADES) / X_DECADES * PANEL_W
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the SVG document.
pub fn render(title: &str, series: &[Series]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="strata-bench" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    latency_panel(&mut s, series);
    throughput_panel(&mut s, series);
    legend(&mut s, series);
    let _ = writeln!(s, "</svg>");
    s
}

fn latency_panel(s: &mut String, series: &[Series]) {
    let values = series
        .iter()
        .flat_map(|x| x.latency.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo_exp, hi_exp) = if hi <= 0.0 {
        (0, 3)
    } else {
        let lo_e = lo.log10().floor() as i32;
        let hi_e = hi.log10().ceil() as i32;
        (lo_e, hi_e.max(lo_e + 1))
    };
    let y_of = |v: f64| {
        let l = v.max(10f64.powi(lo_exp)).log10();
        LAT_TOP + LAT_H - (l - f64::from(lo_exp)) / f64::from(hi_exp - lo_exp) * LAT_H
    };
    panel_start(s, "latency-panel", "Latency by percentile", LAT_TOP, LAT_H);
    for (i, label) in X_LABELS.iter().enumerate() {
        let x = LEFT + i as f64 / X_DECADES * PANEL_W;
        let _ = writeln!(
            s,
            r##"<line class="grid" x1="{x:.1}" y1="{LAT_TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            LAT_TOP + LAT_H
        );
        let _ = writeln!(
            s,
            r#"<text class="x-tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            LAT_TOP + LAT_H + 18.0
        );
    }
    x_axis_title(s, "Percentile", LAT_TOP + LAT_H);
    for e in lo_exp..=hi_exp {
        let y = y_of(10f64.powi(e));
        let label = if e >= 0 {
            format!("{}", 10u64.pow(e.unsigned_abs()))
        } else {
            format!("{}", 10f64.powi(e))
        };
        y_grid_line(s, y, &label);
    }
    y_axis_title(s, "Latency (µs, log scale)", LAT_TOP + LAT_H / 2.0);
    polylines(
        s,
        series,
        "latency",
        |ser| &ser.latency,
        |(q, v)| (percentile_x(q), y_of(v)),
    );
    let _ = writeln!(s, "</g>");
}

fn throughput_panel(s: &mut String, series: &[Series]) {
    let t_max = series
        .iter()
        .flat_map(|x| x.throughput.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let v_max = series
        .iter()
        .flat_map(|x| x.throughput.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let v_max = nice_ceiling(v_max.max(1.0));
    let x_of = |t: f64| LEFT + (t / t_max).clamp(0.0, 1.0) * PANEL_W;
    let y_of = |v: f64| TP_TOP + TP_H - (v / v_max).clamp(0.0, 1.0) * TP_H;
    panel_start(s, "throughput-panel", "Throughput over time", TP_TOP, TP_H);
    for i in 0..=4 {
        let v = v_max * f64::from(i) / 4.0;
        let y = y_of(v);
        y_grid_line(s, y, &format!("{v:.0}"));
        let t = t_max * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r#"<text class="x-tick" x="{:.1}" y="{:.1}" text-anchor="middle">{t:.1}</text>"#,
            x_of(t),
            TP_TOP + TP_H + 18.0
        );
    }
    x_axis_title(s, "Seconds since phase start", TP_TOP + TP_H);
    y_axis_title(s, "MB/s (10^6 B/s)", TP_TOP + TP_H / 2.0);
    polylines(
        s,
        series,
        "throughput",
        |ser| &ser.throughput,
        |(t, v)| (x_of(t), y_of(v)),
    );
    let _ = writeln!(s, "</g>");
}

/// Opens a panel's group (`id`) with its title and frame, `top` to `top + height`.
fn panel_start(s: &mut String, id: &str, title: &str, top: f64, height: f64) {
    let _ = writeln!(s, r#"<g id="{id}">"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="14">{title}</text>"#,
        LEFT + PANEL_W / 2.0,
        top - 12.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{PANEL_W}" height="{height}" fill="none" stroke="#444"/>"##
    );
}

/// A horizontal grid line at `y` with its tick label on the left.
fn y_grid_line(s: &mut String, y: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
        LEFT + PANEL_W
    );
    let _ = writeln!(
        s,
        r#"<text class="y-tick" x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
        LEFT - 6.0,
        y + 4.0
    );
}

/// The x axis title below a panel whose frame ends at `bottom`.
fn x_axis_title(s: &mut String, title: &str, bottom: f64) {
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{title}</text>"#,
        LEFT + PANEL_W / 2.0,
        bottom + 40.0
    );
}

/// The y axis title, rotated, centred on `middle`.
fn y_axis_title(s: &mut String, title: &str, middle: f64) {
    let _ = writeln!(
        s,
        r#"<text x="24" y="{middle:.1}" text-anchor="middle" transform="rotate(-90 24 {middle:.1})">{title}</text>"#
    );
}

/// One polyline per series (`kind`: `latency` or `throughput`), its `points` mapped by `xy`.
fn polylines(
    s: &mut String,
    series: &[Series],
    kind: &str,
    points: impl Fn(&Series) -> &Vec<(f64, f64)>,
    xy: impl Fn((f64, f64)) -> (f64, f64),
) {
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or("#000");
        let points: Vec<String> = points(ser)
            .iter()
            .map(|p| {
                let (x, y) = xy(*p);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline id="{kind}-{name}" class="series {kind} {name}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" "),
            name = escape(&ser.name)
        );
    }
}

fn legend(s: &mut String, series: &[Series]) {
    let x = LEFT + PANEL_W + 20.0;
    let _ = writeln!(s, r#"<g id="legend">"#);
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or("#000");
        let y = LAT_TOP + 10.0 + i as f64 * 22.0;
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="3"/>"#,
            x + 24.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 30.0,
            y + 4.0,
            escape(&ser.name)
        );
    }
    let _ = writeln!(s, "</g>");
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn series(name: &str) -> Series {
        Series {
            name: name.into(),
            latency: vec![(0.0, 10.0), (0.5, 20.0), (0.99, 200.0), (1.0, 5000.0)],
            throughput: vec![(0.2, 100.0), (0.4, 120.0), (0.6, 90.0)],
        }
    }

    #[test]
    fn percentile_axis_is_logarithmic_in_the_tail() {
        let x0 = percentile_x(0.0);
        let x90 = percentile_x(0.9);
        let x99 = percentile_x(0.99);
        let x999 = percentile_x(0.999);
        assert!((x0 - LEFT).abs() < 1e-9);
        assert!(((x90 - x0) - (x99 - x90)).abs() < 1e-6);
        assert!(((x99 - x90) - (x999 - x99)).abs() < 1e-6);
        assert!((percentile_x(1.0) - (LEFT + PANEL_W)).abs() < 1e-9);
    }

    #[test]
    fn every_phase_gets_a_latency_and_a_throughput_series() {
        let svg = render(
            "t <&>",
            &[series("produce"), series("consume"), series("e2e")],
        );
        for p in ["produce", "consume", "e2e"] {
            assert!(svg.contains(&format!(r#"id="latency-{p}""#)));
            assert!(svg.contains(&format!(r#"id="throughput-{p}""#)));
        }
        assert!(svg.contains("t &lt;&amp;&gt;"));
        for label in X_LABELS {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
        assert_eq!(svg.matches("<polyline").count(), 6);
    }

    #[test]
    fn nice_ceilings() {
        assert!((nice_ceiling(130.0) - 200.0).abs() < 1e-9);
        assert!((nice_ceiling(1.0) - 1.0).abs() < 1e-9);
        assert!((nice_ceiling(4100.0) - 5000.0).abs() < 1e-9);
    }
}
