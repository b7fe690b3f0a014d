//! Scenario: segments roll by age (`segment.ms`) and retention runs periodically by itself.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_storage::log::LogConfig;

/// Segments roll after a second (`segment.ms`), never by size in these tests. A second is long
/// enough that two appends in a row surely land within it, even on a loaded machine that stalls
/// the test thread for a while; the tests sleep 1.1 s to pass it.
fn aging() -> LogConfig {
    LogConfig {
        segment_ms: Some(Duration::from_millis(1000)),
        segment_bytes: 1 << 20,
        ..small_config()
    }
}

#[test]
fn given_segment_ms_when_the_active_segment_gets_older_then_the_next_append_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let config = aging();
    let log = open(dir.path(), config);
    log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    log.append_batch(numbered_batch(1, 1, 10, 0)).unwrap();
    assert_eq!(log.segments().len(), 1);
    std::thread::sleep(Duration::from_millis(1100));
    let info = log.append_batch(numbered_batch(2, 1, 10, 0)).unwrap();
    let segs = log.segments();
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert_eq!(segs[1].base_offset, info.base_offset);
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn given_a_reopened_log_with_data_in_its_active_segment_when_segment_ms_passes_then_the_next_append_rolls()
 {
    // The age of a reopened active segment that holds data counts from the open (its first
    // append's time is not on disk); an empty one starts counting at its first append.
    let dir = tempfile::tempdir().unwrap();
    let config = aging();
    let log = open(dir.path(), config);
    log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    log.close().unwrap();
    let log = open(dir.path(), config);
    std::thread::sleep(Duration::from_millis(1100));
    let info = log.append_batch(numbered_batch(1, 1, 10, 0)).unwrap();
    let segs = log.segments();
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert_eq!(segs[1].base_offset, info.base_offset);
}

#[test]
fn given_a_log_opened_empty_when_segment_ms_passes_before_its_first_append_then_the_segment_ages_from_that_append()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = aging();
    let log = open(dir.path(), config);
    log.close().unwrap();
    let log = open(dir.path(), config);
    std::thread::sleep(Duration::from_millis(1100));
    log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    log.append_batch(numbered_batch(1, 1, 10, 0)).unwrap();
    assert_eq!(log.segments().len(), 1, "{:?}", log.segments());
}

#[test]
fn given_a_truncated_log_when_segment_ms_passes_then_its_active_segment_ages_from_the_truncation_or_its_next_append()
 {
    // A truncation that leaves data in the new active segment starts its age then (the time
    // of its first append is not kept); one that leaves it empty, at its next append.
    let config = aging();
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config);
    for b in 0..3 {
        log.append_batch(numbered_batch(b, 1, 10, 0)).unwrap();
    }
    assert_eq!(log.truncate_to(2).unwrap(), 2);
    std::thread::sleep(Duration::from_millis(1100));
    log.append_batch(numbered_batch(9, 1, 10, 0)).unwrap();
    assert_eq!(log.segments().len(), 2, "{:?}", log.segments());

    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config);
    log.append_batch(numbered_batch(0, 3, 10, 0)).unwrap();
    // Inside the only batch: the log is empty again at 0.
    assert_eq!(log.truncate_to(1).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(1100));
    log.append_batch(numbered_batch(1, 1, 10, 0)).unwrap();
    log.append_batch(numbered_batch(2, 1, 10, 0)).unwrap();
    assert_eq!(log.segments().len(), 1, "{:?}", log.segments());
}

#[test]
fn given_a_retention_check_interval_when_segments_expire_then_the_background_thread_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(1),
        retention_check_interval: Some(Duration::from_millis(20)),
        ..small_config()
    };
    let log = open(dir.path(), config);
    for b in 0..100 {
        log.append_batch(numbered_batch(b, 2, 200, 0)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.segments().len() > 1 {
        assert!(Instant::now() < deadline, "periodic retention never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(log.log_start_offset(), log.segments()[0].base_offset);
    assert!(log.log_start_offset() > 0);
}
