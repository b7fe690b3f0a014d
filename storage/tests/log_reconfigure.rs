//! A running log takes new settings (Kafka's dynamic topic configs) without a reopen.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_storage::log::{FsyncPolicy, WriteMode};

#[test]
fn given_a_larger_segment_size_when_set_on_a_running_log_then_the_active_segment_grows_past_the_old_limit_and_reads_back()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut sent = Vec::new();
    for b in 0..5 {
        let batch = numbered_batch(b, 4, 500, 1_000 + b as i64);
        log.append_batch(batch.clone()).unwrap();
        sent.push(batch);
    }
    let before = log.segments().len();
    // The active segment is mapped for what it could become: 16 KiB plus one largest batch.
    let old_reach = small_config().segment_bytes + small_config().max_batch_bytes as u64;
    assert!(!read_all(&log, 0).is_empty());
    let mut bigger = log.config();
    bigger.segment_bytes = 8 << 20;
    log.reconfigure(bigger).unwrap();
    assert_eq!(log.config().segment_bytes, 8 << 20);
    // Far past the old segment size and the old mapping, in one segment.
    for b in 5..400 {
        let batch = numbered_batch(b, 4, 1_500, 1_000 + b as i64);
        log.append_batch(batch.clone()).unwrap();
        sent.push(batch);
    }
    assert_eq!(log.segments().len(), before, "no roll below 8 MiB");
    assert!(log.segments().last().unwrap().size > old_reach);
    let got = read_all(&log, 0);
    assert_eq!(got.len(), sent.len());
    for (g, s) in got.iter().zip(&sent) {
        assert_eq!(g.2[8..], s[8..]);
    }
    // Smaller again: the next append rolls.
    let mut smaller = log.config();
    smaller.segment_bytes = 16 * 1024;
    log.reconfigure(smaller).unwrap();
    log.append_batch(numbered_batch(200, 4, 500, 2_000))
        .unwrap();
    assert_eq!(log.segments().len(), before + 1);
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, 0).len(), sent.len() + 1);
}

#[test]
fn given_a_flush_interval_set_on_a_running_log_then_the_background_sync_starts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append_batch(numbered_batch(0, 4, 100, 1)).unwrap();
    let end = log.log_end_offset();
    let mut c = log.config();
    c.fsync = FsyncPolicy::Interval(Duration::from_millis(20));
    log.reconfigure(c).unwrap();
    log.append_batch(numbered_batch(1, 4, 100, 2)).unwrap();
    let end2 = log.log_end_offset();
    assert!(end2 > end);
    // Well before the idle sweep (30 s), which would sync too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.durable_offset() < end2 {
        assert!(
            Instant::now() < deadline,
            "no interval sync ran: durable {} of {end2}",
            log.durable_offset()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn given_retention_set_on_a_running_log_then_the_next_pass_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for b in 0..100 {
        log.append_batch(numbered_batch(b, 4, 500, 1_000 + b as i64))
            .unwrap();
    }
    log.wait_for_seals().unwrap();
    let segments = log.segments().len();
    assert!(segments > 3);
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, 0);
    let mut c = log.config();
    c.retention_bytes = Some(20 * 1024);
    log.reconfigure(c).unwrap();
    let r = log.enforce_retention().unwrap();
    assert!(r.segments_deleted > 0, "{r:?}");
    assert!(log.log_start_offset() > 0);
}

#[test]
fn given_a_larger_max_batch_when_set_then_a_larger_batch_is_taken_and_fixed_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config();
    config.max_batch_bytes = 4096;
    let log = open(dir.path(), config);
    let big = numbered_batch(0, 2, 10_000, 1);
    assert!(log.append_batch(big.clone()).is_err());
    let mut c = log.config();
    c.max_batch_bytes = 64 * 1024;
    log.reconfigure(c).unwrap();
    log.append_batch(big).unwrap();
    assert_eq!(read_all(&log, 0).len(), 1);

    let mut fixed = log.config();
    fixed.write_mode = match fixed.write_mode {
        WriteMode::Buffered => WriteMode::Direct,
        WriteMode::Direct => WriteMode::Buffered,
    };
    let e = log.reconfigure(fixed).unwrap_err().to_string();
    assert!(e.contains("write_mode"), "{e}");
    let mut invalid = log.config();
    invalid.segment_bytes = 0;
    assert!(log.reconfigure(invalid).is_err());
}
