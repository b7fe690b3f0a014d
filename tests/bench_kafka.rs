//! `strata bench --mode kafka` end to end against the real broker, at small volumes:
//! counts, bytes and the JSON schema (not speed); `--spawn-broker`; an unreachable broker.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("the strata binary runs")
}

fn bench_json(extra: &[&str]) -> Value {
    let mut args = vec!["bench", "--mode", "kafka", "--json"];
    args.extend_from_slice(extra);
    let out = strata(&args);
    assert!(
        out.status.success(),
        "strata {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn assert_phase(v: &Value, phase: &str, messages: u64, bytes: u64) {
    let p = &v[phase];
    assert!(p.is_object(), "phase {phase} missing: {v}");
    assert_eq!(p["messages"].as_u64(), Some(messages), "{phase}.messages");
    assert_eq!(p["bytes"].as_u64(), Some(bytes), "{phase}.bytes");
    for k in ["mb_per_s", "msgs_per_s"] {
        let x = p[k].as_f64().unwrap_or_else(|| panic!("{phase}.{k}"));
        assert!(x > 0.0, "{phase}.{k} = {x}");
    }
    let l = &p["latency_us"];
    let mut last = 0.0;
    for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        let x = l[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{phase}.latency_us.{k} missing"));
        assert!(x >= last, "{phase}.latency_us.{k} = {x} < {last}");
        last = x;
    }
    assert!(last > 0.0, "{phase}: max latency must be positive");
}

#[test]
fn given_a_running_broker_when_8mib_are_benched_then_every_phase_moves_exactly_that() {
    let broker = common::Broker::start(&[]);
    let v = bench_json(&[
        "--bootstrap",
        &broker.addr,
        "--total",
        "8MiB",
        "--message-size",
        "1KiB",
        "--batch-size",
        "256",
        "--partitions",
        "3",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--acks",
        "1",
    ]);
    assert_eq!(v["mode"], "kafka");
    for phase in ["produce", "consume", "e2e"] {
        assert_phase(&v, phase, 8192, 8 << 20);
    }
    assert_eq!(v["config"]["partitions"], 3);
    assert_eq!(v["config"]["bootstrap"], broker.addr.as_str());
    assert_eq!(v["config"]["spawned_broker"], false);
    assert!(v["load_generator_cpu_seconds"].as_f64().unwrap() > 0.0);
    // Batches on the wire hold the payload plus framing.
    let wire = v["produce"]["disk_bytes"].as_u64().unwrap();
    assert!(wire > 8 << 20 && wire < (8 << 20) * 11 / 10, "{wire}");
    assert_eq!(v["consume"]["disk_bytes"].as_u64().unwrap(), wire);

    // The topic exists now: a second run reuses it and counts only its own messages.
    let v = bench_json(&[
        "--bootstrap",
        &broker.addr,
        "--messages",
        "1000",
        "--batch-size",
        "100",
        "--compression",
        "zstd",
        "--payload",
        "text",
        "--acks",
        "0",
        "--phases",
        "produce,consume",
    ]);
    assert_phase(&v, "produce", 1000, 1000 * 1024);
    assert_phase(&v, "consume", 1000, 1000 * 1024);
    assert_eq!(
        v["config"]["partitions"], 3,
        "the existing topic's partitions"
    );
    assert!(v["compression_ratio"].as_f64().unwrap() > 1.5, "{v}");
}

#[test]
fn given_spawn_broker_when_benched_then_it_runs_over_the_wire_and_reports_broker_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let v = bench_json(&[
        "--spawn-broker",
        "--total",
        "2MiB",
        "--fsync",
        "always",
        "--acks",
        "all",
        "--idle",
        "0.6",
        "--hgrm",
        dir.path().join("h").to_str().unwrap(),
        "--plot",
        dir.path().join("p.svg").to_str().unwrap(),
    ]);
    assert_eq!(v["config"]["spawned_broker"], true);
    for phase in ["produce", "consume", "e2e"] {
        assert_phase(&v, phase, 2048, 2 << 20);
        assert!(v[phase]["broker_cpu_seconds"].as_f64().is_some(), "{phase}");
    }
    assert!(v["broker_cpu_seconds"].as_f64().is_some());
    let idle = &v["idle"];
    assert!(idle["fetches"].as_u64().unwrap() >= 1, "{idle}");
    assert!(idle["broker_cpu_seconds"].as_f64().is_some(), "{idle}");
    assert!(dir.path().join("h/produce.hgrm").exists());
    let svg = std::fs::read_to_string(dir.path().join("p.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    assert!(svg.contains("strata bench kafka"));
}

#[test]
fn given_no_broker_when_benched_then_it_fails_fast_with_a_clear_message() {
    // Bind and drop a listener: a loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    let out = strata(&[
        "bench",
        "--mode",
        "kafka",
        "--bootstrap",
        &addr,
        "--total",
        "1MiB",
    ]);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach a broker at"), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(out.stdout.is_empty());
}
