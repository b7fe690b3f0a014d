//! Scenario: retention deletes old sealed segments while a reader still holds one.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use strata_storage::Error;
use strata_storage::log::LogConfig;

#[test]
fn given_a_size_limit_when_retention_runs_then_oldest_sealed_segments_go_and_log_start_moves() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(40 * 1024),
        ..small_config()
    };
    let log = open(dir.path(), config);
    for b in 0..200 {
        log.append_batch(numbered_batch(b, 2, 200, 0)).unwrap();
    }
    let before = log.segments();
    let total: u64 = before.iter().map(|s| s.size).sum();
    let report = log.enforce_retention().unwrap();
    assert!(report.segments_deleted > 0);
    let after = log.segments();
    let remaining: u64 = after.iter().map(|s| s.size).sum();
    assert_eq!(total - remaining, report.bytes_deleted);
    assert!(remaining >= 40 * 1024, "never below the limit: {remaining}");
    assert!(
        remaining - after[0].size < 40 * 1024,
        "deleted as much as allowed"
    );
    assert_eq!(report.log_start_offset, after[0].base_offset);
    assert_eq!(log.log_start_offset(), after[0].base_offset);
    for s in &before[..report.segments_deleted] {
        assert!(!s.path.exists(), "{} should be unlinked", s.path.display());
    }
    assert!(matches!(
        log.read(0, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    read_all(&log, log.log_start_offset());
    assert!(
        after.last().unwrap().active,
        "the active segment is never deleted"
    );
}

#[test]
fn given_a_time_limit_when_retention_runs_then_only_segments_whose_newest_record_expired_go() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(Duration::from_millis(1000)),
        ..small_config()
    };
    let log = open(dir.path(), config);
    // Old records (timestamp 1000..) then new ones (timestamp 100_000..).
    for b in 0..60 {
        log.append_batch(numbered_batch(b, 2, 200, 1_000 + b as i64))
            .unwrap();
    }
    log.roll().unwrap();
    let old_segments = log.segments().len() - 1;
    for b in 0..60 {
        log.append_batch(numbered_batch(b, 2, 200, 100_000 + b as i64))
            .unwrap();
    }
    // At "now" = 50_000 the old ones are 49 s old, the new ones are in the future.
    let report = log.enforce_retention_at(50_000).unwrap();
    assert_eq!(report.segments_deleted, old_segments);
    assert_eq!(log.log_start_offset(), 120);
    // Nothing else expires until the new records are older than a second.
    assert_eq!(
        log.enforce_retention_at(100_500).unwrap().segments_deleted,
        0
    );
}

#[test]
fn given_a_reader_holding_a_slice_when_its_segment_is_deleted_then_the_slice_stays_intact() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(1),
        ..small_config()
    };
    let log = open(dir.path(), config);
    for b in 0..100 {
        log.append_batch(numbered_batch(b, 2, 200, 0)).unwrap();
    }
    let held = log.read(0, 8192).unwrap();
    let copy = held.to_vec();
    let first = log.segments()[0].path.clone();
    assert!(log.enforce_retention().unwrap().segments_deleted > 0);
    assert!(!first.exists());
    assert_eq!(
        &held[..],
        &copy[..],
        "mapping of an unlinked segment still reads the same bytes"
    );
    let mut scanner = strata_storage::log::scan::BatchScanner::new(&held, usize::MAX, true);
    assert!(scanner.by_ref().count() > 0);
    assert!(scanner.stop().is_none());
}

#[test]
fn given_retention_deleted_segments_when_reopened_then_log_start_stays_where_retention_left_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(20 * 1024),
        ..small_config()
    };
    let log = open(dir.path(), config);
    for b in 0..100 {
        log.append_batch(numbered_batch(b, 2, 200, 0)).unwrap();
    }
    log.enforce_retention().unwrap();
    let start = log.log_start_offset();
    assert!(start > 0);
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), 200);
}

#[test]
fn given_a_rolled_segment_retention_deletes_before_its_seal_runs_then_the_seal_skips_it_and_the_log_serves_on()
 {
    // Retention deletes every segment but the active one, a rolled one still waiting for its
    // seal too. The seal then finds nothing to seal: the log must not take the missing file
    // for a failed disk.
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let log = open(dir.path(), config);
    for b in 0..5 {
        log.append_batch(numbered_batch(b, 2, 200, 0)).unwrap();
    }
    log.close().unwrap();
    // Reopened, the active segment's file is not open: its seal opens it, and waits there.
    let gate = std::sync::Arc::new((
        parking_lot::Mutex::new((false, false)),
        parking_lot::Condvar::new(),
    ));
    // The seal's open of the first segment, from any thread but the test's, waits until the
    // test lets it go: (entered, released).
    let first = strata_storage::log::name::segment_path(
        dir.path(),
        0,
        strata_storage::log::name::FileKind::Log,
    );
    let test_thread = std::thread::current().id();
    let held = gate.clone();
    let backend = std::sync::Arc::new(OpenHook {
        inner: backend(),
        before_open: Box::new(move |path| {
            if path == first && std::thread::current().id() != test_thread {
                let (lock, cv) = &*held;
                let mut g = lock.lock();
                g.0 = true;
                cv.notify_all();
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while !g.1 && std::time::Instant::now() < deadline {
                    cv.wait_until(&mut g, deadline);
                }
            }
            Ok(())
        }),
    });
    let log = strata_storage::log::PartitionLog::open(dir.path(), config, backend).unwrap();
    log.roll().unwrap();
    {
        let (lock, cv) = &*gate;
        let mut g = lock.lock();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !g.0 {
            assert!(std::time::Instant::now() < deadline, "the seal never ran");
            cv.wait_until(&mut g, deadline);
        }
    }
    // (What retention by time or size and DeleteRecords do to whole segments.)
    let r = log.delete_segments_before(10).unwrap();
    assert_eq!(r.segments_deleted, 1, "{r:?}");
    {
        let (lock, cv) = &*gate;
        lock.lock().1 = true;
        cv.notify_all();
    }
    log.wait_for_seals()
        .unwrap_or_else(|e| panic!("the seal of a deleted segment failed the log: {e}"));
    log.append_batch(numbered_batch(5, 2, 200, 0)).unwrap();
    assert_eq!(read_all(&log, 10).len(), 1);
    log.close().unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.log_start_offset(), 10);
    assert_eq!(read_all(&log, 10).len(), 1);
}
