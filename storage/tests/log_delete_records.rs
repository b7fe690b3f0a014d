//! DeleteRecords: the log start offset moves to any offset up to the high watermark, durably,
//! and whole segments below it go at the next retention pass.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use strata_storage::Error;
use strata_storage::io::faulty::{FailingBackend, ForgetfulBackend, TornMode};
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog};

fn fill(log: &PartitionLog, batches: u64) {
    for b in 0..batches {
        log.append_batch(numbered_batch(b, 4, 300, 1_000 + b as i64))
            .unwrap();
    }
}

#[test]
fn given_deleted_records_then_reads_below_are_out_of_range_and_the_start_survives_reopen_and_retention()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    fill(&log, 100);
    assert_eq!(log.log_end_offset(), 400);
    let segments = log.segments().len();
    assert_eq!(log.delete_records_before(250).unwrap(), 250);
    assert_eq!(log.log_start_offset(), 250);
    assert!(matches!(
        log.read(249, 1 << 20),
        Err(Error::OffsetOutOfRange { log_start: 250, .. })
    ));
    // The batch holding 250 (248..=251) is returned whole, as Kafka does.
    let first = read_all(&log, 250);
    assert_eq!(first[0].0, 248);
    // Lower changes nothing; past the end is refused.
    assert_eq!(log.delete_records_before(100).unwrap(), 250);
    assert!(matches!(
        log.delete_records_before(401),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.log_start_offset(), 250);
    // Up to the end itself is allowed (Kafka: at most the high watermark), on a copy.
    let other = tempfile::tempdir().unwrap();
    let copy = open(other.path(), small_config());
    fill(&copy, 10);
    assert_eq!(copy.delete_records_before(40).unwrap(), 40);
    assert_eq!((copy.log_start_offset(), copy.log_end_offset()), (40, 40));
    drop(copy);
    // Nothing deleted from disk yet; the next retention pass removes whole segments below 250.
    assert_eq!(log.segments().len(), segments);
    log.wait_for_seals().unwrap();
    let r = log.enforce_retention().unwrap();
    assert!(r.segments_deleted > 0, "{r:?}");
    assert!(log.segments()[0].base_offset <= 250);
    assert!(log.segments()[0].next_offset > 250);
    assert_eq!(log.log_start_offset(), 250);
    drop(log); // a crash of the process
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 250);
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 250);
    // A truncation below it empties the log, which starts again there (Kafka's
    // truncateFullyAndStartAt).
    log.truncate_to(200).unwrap();
    assert_eq!(log.log_start_offset(), 200);
    assert_eq!(log.log_end_offset(), 200);
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 200);
}

#[test]
fn given_deleted_records_when_the_disk_forgets_unsynced_writes_at_every_operation_then_a_finished_delete_stays_done()
 {
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        ..small_config()
    };
    let workload = |dir: &std::path::Path, backend: Arc<dyn strata_storage::io::IoBackend>| {
        let Ok(log) = PartitionLog::open(dir, config, backend) else {
            return None;
        };
        for b in 0..20 {
            if log
                .append_batch(numbered_batch(b, 4, 300, 1_000 + b as i64))
                .is_err()
            {
                return None;
            }
        }
        log.delete_records_before(37).ok()
    };
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let counting = FailingBackend::counting(backend());
        assert_eq!(workload(dir.path(), Arc::new(counting.clone())), Some(37));
        counting.ops()
    };
    for n in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(backend());
        let failing = FailingBackend::new(Arc::new(disk.clone()), n);
        let done = workload(dir.path(), Arc::new(failing));
        disk.crash(TornMode::Clean);
        let log = PartitionLog::open(dir.path(), config, backend())
            .unwrap_or_else(|e| panic!("crash at op {n}/{total}: {e}"));
        if done.is_some() {
            assert_eq!(log.log_start_offset(), 37, "crash at op {n}/{total}");
            assert_eq!(log.log_end_offset(), 80, "crash at op {n}/{total}");
        } else {
            assert!(log.log_start_offset() == 0 || log.log_start_offset() == 37);
        }
    }
}

#[test]
fn given_a_log_start_past_what_a_power_cut_left_of_the_log_when_reopened_then_the_log_starts_at_its_end()
 {
    // DeleteRecords makes the new start durable at once; the records it passed may not have
    // been (flush never). After a power cut that took them the log starts where it now ends,
    // and says so on disk.
    // One segment: a roll's seal would sync what this test leaves unsynced.
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let disk = ForgetfulBackend::wrapping(backend());
    let log = PartitionLog::open(dir.path(), config, Arc::new(disk.clone())).unwrap();
    fill(&log, 20);
    log.sync().unwrap();
    for b in 20..30 {
        log.append_batch(numbered_batch(b, 4, 300, 1_000 + b as i64))
            .unwrap();
    }
    assert_eq!(log.delete_records_before(100).unwrap(), 100);
    drop(log);
    disk.crash(TornMode::Clean);
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), 80, "the unsynced records are gone");
    assert_eq!(log.log_start_offset(), 80);
    assert!(read_all(&log, 80).is_empty());
    // Records appended now, past the old start's offset, are not deleted by it on the next
    // open: the start on disk was moved back with the log.
    for b in 20..30 {
        log.append_batch(numbered_batch(b, 4, 300, 1_000 + b as i64))
            .unwrap();
    }
    log.close().unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.log_start_offset(), 80);
    assert_eq!(read_all(&log, 80).len(), 10);
}

/// A log of 100 batches of 4 records whose start DeleteRecords moved to 250, inside the batch
/// 248..=251, and its directory (which must outlive it).
fn started_at_250(config: LogConfig) -> (tempfile::TempDir, PartitionLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config);
    fill(&log, 100);
    assert_eq!(log.delete_records_before(250).unwrap(), 250);
    (dir, log)
}

#[test]
fn given_deleted_records_when_truncated_below_the_log_start_inside_the_first_segment_then_the_log_starts_again_there()
 {
    // Kafka's truncateTo: below the log start offset the log is emptied and starts again at
    // the offset (truncateFullyAndStartAt), even when the first segment still holds it.
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let (_dir, log) = started_at_250(config);
    assert_eq!(log.segments()[0].base_offset, 0);
    assert_eq!(log.truncate_to(245).unwrap(), 245);
    assert_eq!(log.log_start_offset(), 245);
    assert_eq!(log.log_end_offset(), 245);
    assert!(read_all(&log, 245).is_empty());
    // At the log start itself too: cutting the batch that holds it (248..=251) would leave
    // the log ending at 248, below its start.
    let (_dir, log) = started_at_250(config);
    assert_eq!(log.truncate_to(250).unwrap(), 250);
    assert_eq!(log.log_start_offset(), 250);
    assert_eq!(log.log_end_offset(), 250);
    // Above it, the batch holding the offset goes and the start stays.
    let (_dir, log) = started_at_250(config);
    assert_eq!(log.truncate_to(258).unwrap(), 256);
    assert_eq!(log.log_start_offset(), 250);
    assert_eq!(read_all(&log, 250).len(), 2, "248..=251 and 252..=255");
}
