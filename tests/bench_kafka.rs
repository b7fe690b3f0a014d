//! `strata bench --mode kafka` end to end against the real broker, at small volumes:
//! counts, bytes and the JSON schema (not speed); `--spawn-broker`; an unreachable broker.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "bench_common/mod.rs"]
mod bench_common;

mod common;

use std::time::{Duration, Instant};

use bench_common::{assert_every_phase, assert_fails, assert_phase, bench_json};

const MODE: &str = "kafka";

#[test]
fn given_a_running_broker_when_8mib_are_benched_then_every_phase_moves_exactly_that() {
    let broker = common::Broker::start(&[]);
    let v = bench_json(
        MODE,
        &[
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
            "--in-flight",
            "2",
            "--consumers",
            "2",
            "--acks",
            "1",
        ],
    );
    assert_eq!(v["mode"], "kafka");
    assert_eq!(v["config"]["in_flight"], 2);
    assert_every_phase(&v, 8192, 8 << 20);
    assert_eq!(v["config"]["partitions"], 3);
    assert_eq!(v["config"]["bootstrap"], broker.addr.as_str());
    assert_eq!(v["config"]["spawned_broker"], false);
    assert!(v["load_generator_cpu_seconds"].as_f64().unwrap() > 0.0);
    // Batches on the wire hold the payload plus framing.
    let wire = v["produce"]["disk_bytes"].as_u64().unwrap();
    assert!(wire > 8 << 20 && wire < (8 << 20) * 11 / 10, "{wire}");
    assert_eq!(v["consume"]["disk_bytes"].as_u64().unwrap(), wire);

    // The topic exists now: a second run reuses it and counts only its own messages.
    let v = bench_json(
        MODE,
        &[
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
        ],
    );
    assert_phase(&v, "produce", 1000, 1000 * 1024);
    assert_phase(&v, "consume", 1000, 1000 * 1024);
    assert_eq!(v["config"]["in_flight"], 5, "Kafka's default");
    assert_eq!(
        v["config"]["partitions"], 3,
        "the existing topic's partitions"
    );
    assert!(v["compression_ratio"].as_f64().unwrap() > 1.5, "{v}");
}

#[test]
fn given_spawn_broker_when_benched_then_it_runs_over_the_wire_and_reports_broker_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let v = bench_json(
        MODE,
        &[
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
        ],
    );
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
fn given_cold_when_benched_then_the_broker_replays_from_evicted_segments() {
    let v = bench_json(
        MODE,
        &[
            "--spawn-broker",
            "--total",
            "4MiB",
            "--cold",
            "--phases",
            "produce,consume",
        ],
    );
    assert_phase(&v, "consume", 4096, 4 << 20);
    let cold = &v["cold"];
    assert!(cold["files"].as_u64().unwrap() >= 1, "{cold}");
    let bytes = cold["bytes"].as_u64().unwrap();
    assert!(bytes >= 4 << 20, "{cold}");
    let resident = cold["resident_bytes"].as_u64().unwrap();
    // tmpfs keeps every page; a disk-backed file system drops them.
    assert!(resident < bytes / 4 || resident == bytes, "{cold}");

    // An external broker's data is not known to be on this machine.
    assert_fails(
        &[
            "bench",
            "--mode",
            "kafka",
            "--bootstrap",
            "127.0.0.1:9",
            "--cold",
            "--total",
            "1MiB",
        ],
        1,
        &["--cold", "--data-dir"],
    );
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
    assert_fails(
        &[
            "bench",
            "--mode",
            "kafka",
            "--bootstrap",
            &addr,
            "--total",
            "1MiB",
        ],
        2,
        &["cannot reach a broker at", &addr],
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}
