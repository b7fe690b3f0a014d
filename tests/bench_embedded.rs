//! `strata bench --mode embedded` end to end, through the real binary, at small volumes:
//! correctness of counts, bytes, the JSON schema, the `.hgrm` files and the SVG — not speed.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::path::Path;

use bench_common::{assert_every_phase, assert_fails, assert_phase, bench_json, strata};

const MODE: &str = "embedded";

#[test]
fn given_4mib_of_1kib_messages_when_benched_then_json_reports_every_phase_with_exact_counts() {
    let v = bench_json(
        MODE,
        &[
            "--total",
            "4MiB",
            "--message-size",
            "1KiB",
            "--batch-size",
            "256",
        ],
    );
    assert_eq!(v["mode"], "embedded");
    assert_every_phase(&v, 4096, 4 << 20);
    assert!(v.get("baseline").is_none(), "no baseline unless asked");
    let m = &v["machine"];
    assert!(m["cores"].as_u64().unwrap() >= 1);
    for k in ["kernel", "filesystem", "io_backend"] {
        assert!(m[k].as_str().is_some_and(|s| !s.is_empty()), "machine.{k}");
    }
    let c = &v["config"];
    assert_eq!(c["messages"], 4096);
    assert_eq!(c["message_size"], 1024);
    assert_eq!(c["fsync"], "never");
    assert_eq!(c["temporary_data_dir"], true);
    assert!(
        !Path::new(c["data_dir"].as_str().unwrap()).exists(),
        "temp dir removed"
    );
    let ratio = v["compression_ratio"].as_f64().unwrap();
    assert!(
        ratio > 0.9 && ratio <= 1.0,
        "random payload does not compress: {ratio}"
    );
    assert!(v["load_generator_cpu_seconds"].as_f64().unwrap() >= 0.0);
}

#[test]
fn given_text_zstd_several_partitions_and_threads_when_benched_then_counts_still_match() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let v = bench_json(
        MODE,
        &[
            "--messages",
            "3001",
            "--message-size",
            "512",
            "--batch-size",
            "100",
            "--partitions",
            "3",
            "--producers",
            "2",
            "--in-flight",
            "3",
            "--direct-cache",
            "2MiB",
            "--consumers",
            "2",
            "--payload",
            "text",
            "--compression",
            "zstd",
            "--fsync",
            "always",
            "--warmup",
            "0.2",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert_every_phase(&v, 3001, 3001 * 512);
    let ratio = v["compression_ratio"].as_f64().unwrap();
    assert!(
        ratio > 2.0,
        "text log lines compress well with zstd: {ratio}"
    );
    assert_eq!(v["config"]["temporary_data_dir"], false);
    assert_eq!(v["config"]["in_flight"], 3);
    for p in 0..3 {
        assert!(
            data.join(format!("bench-{p}")).is_dir(),
            "partition {p} kept in --data-dir"
        );
    }
}

#[test]
fn given_phases_and_a_rate_when_benched_then_only_those_phases_are_reported() {
    let v = bench_json(
        MODE,
        &[
            "--total",
            "2MiB",
            "--message-size",
            "16KiB",
            "--batch-size",
            "8",
            "--phases",
            "produce",
            "--rate",
            "200",
            "--fsync",
            "interval:20",
        ],
    );
    assert_phase(&v, "produce", 128, 2 << 20);
    assert!(v.get("consume").is_none() && v.get("e2e").is_none(), "{v}");
}

#[test]
fn given_baseline_when_benched_then_the_raw_limit_and_ratios_are_reported() {
    let v = bench_json(
        MODE,
        &[
            "--total",
            "4MiB",
            "--batch-size",
            "512",
            "--baseline",
            "--phases",
            "produce,consume",
        ],
    );
    let b = &v["baseline"];
    assert_eq!(b["bytes"], 4 << 20);
    assert!(b["write_mb_per_s"].as_f64().unwrap() > 0.0);
    assert!(b["read_mb_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["produce"]["baseline_ratio"].as_f64().unwrap() > 0.0);
    assert!(v["consume"]["baseline_ratio"].as_f64().unwrap() > 0.0);
}

#[test]
fn given_cold_when_benched_then_consume_starts_from_evicted_segments_and_counts_still_match() {
    let v = bench_json(
        MODE,
        &["--total", "4MiB", "--cold", "--phases", "produce,consume"],
    );
    assert_phase(&v, "consume", 4096, 4 << 20);
    let cold = &v["cold"];
    assert_eq!(cold["files"], 1, "{cold}");
    let bytes = cold["bytes"].as_u64().unwrap();
    assert_eq!(bytes, v["produce"]["disk_bytes"].as_u64().unwrap(), "{v}");
    let resident = cold["resident_bytes"].as_u64().unwrap();
    // tmpfs keeps every page; a disk-backed file system drops them.
    assert!(resident < bytes / 4 || resident == bytes, "{cold}");

    assert_fails(
        &["bench", "--total", "1MiB", "--cold", "--phases", "produce"],
        1,
        &["add consume"],
    );
}

#[test]
fn given_hgrm_and_plot_when_benched_then_files_have_the_standard_formats() {
    let dir = tempfile::tempdir().unwrap();
    let hgrm = dir.path().join("hgrm");
    let svg = dir.path().join("plots/run.svg");
    let out = strata(&[
        "bench",
        "--total",
        "2MiB",
        "--batch-size",
        "64",
        "--hgrm",
        hgrm.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    for needle in ["produce", "consume", "e2e", "p99.99 us", "MB = 10^6 bytes"] {
        assert!(table.contains(needle), "table lacks {needle:?}:\n{table}");
    }

    for phase in ["produce", "consume", "e2e"] {
        let text = std::fs::read_to_string(hgrm.join(format!("{phase}.hgrm"))).unwrap();
        check_hgrm(&text);
    }

    let svg = std::fs::read_to_string(&svg).unwrap();
    check_well_formed_xml(&svg);
    assert!(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for phase in ["produce", "consume", "e2e"] {
        assert_eq!(
            svg.matches(&format!("id=\"latency-{phase}\"")).count(),
            1,
            "{phase}"
        );
        assert_eq!(
            svg.matches(&format!("id=\"throughput-{phase}\"")).count(),
            1,
            "{phase}"
        );
    }
    assert_eq!(svg.matches("class=\"series latency").count(), 3);
    assert_eq!(svg.matches("class=\"series throughput").count(), 3);
    for label in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
        assert!(svg.contains(&format!(">{label}</text>")), "x tick {label}");
    }
}

/// The HdrHistogram percentile-distribution layout: a header, a blank line, rows of
/// `Value Percentile TotalCount 1/(1-Percentile)` with growing percentiles and counts, a last row
/// at percentile 1 without the fourth column, and the `#[...]` footer.
fn check_hgrm(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    assert_eq!(lines[1], "");
    let rows: Vec<Vec<f64>> = lines[2..]
        .iter()
        .take_while(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert!(!rows.is_empty());
    for w in rows.windows(2) {
        assert!(
            w[1][0] >= w[0][0] && w[1][1] >= w[0][1] && w[1][2] >= w[0][2],
            "{w:?}"
        );
    }
    let last = rows.last().unwrap();
    assert_eq!(last.len(), 3);
    assert!((last[1] - 1.0).abs() < 1e-12);
    let footer: Vec<&&str> = lines.iter().filter(|l| l.starts_with("#[")).collect();
    assert_eq!(footer.len(), 3, "{text}");
    assert!(footer[0].starts_with("#[Mean    ="));
    assert!(footer[1].contains(&format!("Total count    = {:>12}]", last[2] as u64)));
}

/// A small XML well-formedness check: every tag closes in order, attributes are quoted, text
/// has no bare `<` or `&`.
fn check_well_formed_xml(doc: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = doc.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").unwrap() + 2..];
    }
    let mut roots = 0;
    loop {
        let Some(lt) = rest.find('<') else {
            assert!(rest.trim().is_empty(), "text after the root element");
            break;
        };
        let text = &rest[..lt];
        assert!(!text.contains('>'), "stray '>' in text {text:?}");
        for (i, _) in text.match_indices('&') {
            let ent = &text[i..text[i..].find(';').map_or(text.len(), |j| i + j + 1)];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&ent),
                "bad entity {ent:?}"
            );
        }
        if stack.is_empty() {
            assert!(text.trim().is_empty(), "text outside the root: {text:?}");
        }
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->").unwrap() + 3..];
            continue;
        }
        let gt = rest.find('>').expect("unclosed tag");
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(!name.is_empty(), "empty tag name");
        assert_eq!(
            body.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{body}>"
        );
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert_eq!(roots, 1, "exactly one root element");
}

#[test]
fn given_bad_arguments_when_run_then_it_exits_non_zero_with_a_message() {
    for args in [
        &["bench", "--total", "lots"][..],
        &["bench", "--message-size", "1.5KiB"],
        &["bench", "--fsync", "sometimes"],
        &["bench", "--compression", "brotli"],
        &["bench", "--partitions", "0"],
        &["bench", "--rate", "-1"],
        &["bench", "--total", "1GiB", "--messages", "5"],
        &["bench", "--no-such-flag"],
    ] {
        assert_fails(args, 2, &["error"]);
    }
    assert_fails(
        &["bench", "--total", "10", "--message-size", "1KiB"],
        1,
        &["smaller than one message"],
    );
}

#[test]
fn given_kafka_mode_without_a_broker_when_run_then_it_says_so_and_exits_2() {
    // Kafka mode itself is tested in tests/bench_kafka.rs; here only that it is wired up.
    assert_fails(
        &[
            "bench",
            "--mode",
            "kafka",
            "--bootstrap",
            "127.0.0.1:1",
            "--total",
            "1MiB",
        ],
        2,
        &["cannot reach a broker at 127.0.0.1:1"],
    );
}
