//! Scenario: concurrent appenders under `always` share fsyncs and get unique, contiguous offsets.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use strata_storage::io::faulty::FailingBackend;
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog};

#[test]
fn given_eight_appenders_with_always_when_they_append_concurrently_then_offsets_are_unique_contiguous_and_durable()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        segment_bytes: 256 * 1024,
        ..small_config()
    };
    let log = Arc::new(open(dir.path(), config));
    let per_thread = 40u64;
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let info = log
                            .append_batch(numbered_batch(t * 1000 + i, 3, 64, 0))
                            .unwrap();
                        // Acknowledged under `always` means durable.
                        assert!(log.durable_offset() > info.last_offset);
                        (info.base_offset, t * 1000 + i)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    acked.sort();
    for (i, (base, _)) in acked.iter().enumerate() {
        assert_eq!(*base, i as u64 * 3, "offsets contiguous and unique");
    }
    // Each acknowledged batch is the one stored at its offset.
    let stored = read_all(&log, 0);
    for ((base, id), (sbase, _, bytes)) in acked.iter().zip(&stored) {
        assert_eq!(base, sbase);
        let needle = format!("b{id}r0:");
        assert!(bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
    }
}

#[test]
fn given_interval_policy_when_time_passes_then_the_background_flush_makes_appends_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        fsync: FsyncPolicy::Interval(std::time::Duration::from_millis(20)),
        ..small_config()
    };
    let log = open(dir.path(), config);
    let info = log.append_batch(numbered_batch(0, 2, 10, 0)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.durable_offset() <= info.last_offset {
        assert!(
            std::time::Instant::now() < deadline,
            "background fsync never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn given_concurrent_appenders_with_always_when_they_queue_up_then_they_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let counting = FailingBackend::counting(backend());
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let log = Arc::new(PartitionLog::open(dir.path(), config, Arc::new(counting.clone())).unwrap());
    let syncs_before = counting.syncs();
    let appends = 8 * 50;
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    log.append_batch(numbered_batch(t * 100 + i, 1, 32, 0))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let syncs = counting.syncs() - syncs_before;
    assert!(syncs >= 1);
    // Eight threads keep the queue non-empty while a sync runs, so groups form. (Not a timing
    // assertion: any grouping at all proves batches shared an fsync.)
    assert!(
        syncs < appends,
        "{syncs} fsyncs for {appends} appends: no group commit happened"
    );
    assert_eq!(log.log_end_offset(), appends);
}

#[test]
fn given_groups_larger_than_a_segment_when_written_then_they_roll_between_batches_and_no_segment_passes_the_limit()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        segment_bytes: 8 * 1024,
        ..small_config()
    };
    let log = Arc::new(open(dir.path(), config));
    // Eight appenders queue up behind each slow fsync: groups of several ~1 KiB batches, many
    // of which cross a segment's end.
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..40 {
                    log.append_batch(numbered_batch(t * 1000 + i, 2, 400, 0))
                        .unwrap();
                }
            });
        }
    });
    let segs = log.segments();
    let total: u64 = segs.iter().map(|s| s.size).sum();
    for s in &segs {
        assert!(
            s.size <= 8 * 1024,
            "segment at {} holds {} bytes",
            s.base_offset,
            s.size
        );
    }
    assert!(
        segs.len() as u64 >= total / (8 * 1024),
        "{} segments for {total} bytes",
        segs.len()
    );
    assert_eq!(read_all(&log, 0).len(), 320);
}
