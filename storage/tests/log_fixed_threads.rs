//! Scenario: a process opens hundreds of partition logs (issue "house" §3). They share the
//! engine's runtime, so the process runs the same threads however many logs are open; an idle
//! log holds no file descriptor (none until its first write, and the idle sweep closes what a
//! write or read opened). One test in this file: it counts the whole process's threads and
//! descriptors, which other tests running alongside would disturb.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_storage::log::{LogConfig, PartitionLog, Runtime};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// The process's threads, without the kernel's io_uring workers (`iou-wrk-*`): the kernel
/// starts those for a ring's requests that cannot complete inline and retires them when idle;
/// PERFORMANCE.md counts them separately.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| !name.starts_with("iou-wrk"))
        .count()
}

fn fds() -> usize {
    count("/proc/self/fd")
}

#[test]
fn given_hundreds_of_logs_then_threads_are_fixed_and_idle_logs_hold_no_descriptors() {
    const LOGS: usize = 300;
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        // The broker locks its data directory instead of every partition's.
        lock_dir: false,
        idle_file_close: Some(Duration::from_millis(200)),
        retention_check_interval: None,
        ..small_config()
    };
    let backend = backend();
    // Start the shared machinery once, then measure what the logs add.
    let probe = PartitionLog::open(root.path().join("probe"), config, backend.clone()).unwrap();
    probe.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    probe.close().unwrap();
    let (threads_before, fds_before) = (threads(), fds());

    let logs: Vec<PartitionLog> = (0..LOGS)
        .map(|i| {
            PartitionLog::open(root.path().join(format!("t-{i}")), config, backend.clone()).unwrap()
        })
        .collect();
    assert!(
        threads() <= threads_before,
        "{LOGS} logs added threads: {} -> {}",
        threads_before,
        threads()
    );
    assert!(
        fds() <= fds_before + 2,
        "{LOGS} idle logs hold descriptors: {fds_before} -> {}",
        fds()
    );

    // Every log written and read: each opens its files, checked right after its write (the
    // sweep closes only files left unused through two of its passes, and writing all of them
    // on a loaded machine can take longer than that)...
    for (i, log) in logs.iter().enumerate() {
        log.append_batch(numbered_batch(i as u64, 2, 100, i as i64))
            .unwrap();
        assert_eq!(read_all(log, 0).len(), 1);
        assert!(log.open_files() > 0, "log {i}: the write opened its files");
    }
    assert!(threads() <= threads_before, "writes added no thread");
    // ...and the idle sweep closes them once nobody uses them (after a sync).
    let deadline = Instant::now() + Duration::from_secs(30);
    while logs.iter().any(|l| l.open_files() > 0) {
        assert!(
            Instant::now() < deadline,
            "idle logs kept their files: {} still open",
            logs.iter().filter(|l| l.open_files() > 0).count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        fds() <= fds_before + 2,
        "descriptors after the sweep: {fds_before} -> {}",
        fds()
    );
    for log in &logs {
        assert_eq!(
            log.durable_offset(),
            log.log_end_offset(),
            "the sweep synced before it closed"
        );
    }
    // Closed files reopen on demand.
    for (i, log) in logs.iter().enumerate() {
        log.append_batch(numbered_batch(1_000 + i as u64, 2, 100, 0))
            .unwrap();
        assert_eq!(read_all(log, 0).len(), 2);
    }
    let start = Instant::now();
    for log in logs {
        log.close().unwrap();
    }
    eprintln!("closed {LOGS} logs in {:?}", start.elapsed());
    assert!(Runtime::global().threads() <= 9);
}
