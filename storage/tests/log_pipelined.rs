//! Scenario: producers keep several appends in flight (`start_append`, then `wait` for the
//! oldest), as a Kafka producer keeps requests in flight. Batches land in the order their
//! appends started, each acknowledgement means what `append_batch` means, and a failure reaches
//! every append still in flight.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::collections::VecDeque;
use std::sync::Arc;

use common::*;
use strata_storage::Error;
use strata_storage::io::faulty::{FailMode, FailingBackend};
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog};

#[test]
fn given_appends_started_ahead_when_each_is_awaited_then_offsets_follow_the_start_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut flying = VecDeque::new();
    let mut sent = Vec::new();
    for b in 0..60u64 {
        if flying.len() == 4 {
            let (p, want): (strata_storage::log::PendingAppend<'_>, _) =
                flying.pop_front().unwrap();
            let info = p.wait().unwrap();
            assert_eq!(info, want, "wait returns the offsets start gave");
        }
        let batch = numbered_batch(b, 3, 700, 1_000 + b as i64);
        let p = log.start_append(batch.clone()).unwrap();
        let info = p.info();
        assert_eq!(info.base_offset, b * 3);
        assert_eq!(info.last_offset, b * 3 + 2);
        flying.push_back((p, info));
        sent.push(batch);
    }
    for (p, want) in flying {
        assert_eq!(p.wait().unwrap(), want);
    }
    assert_eq!(log.log_end_offset(), 180);
    assert!(log.segments().len() > 1, "16 KiB segments must have rolled");
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 60);
    for (i, (base, _, bytes)) in got.iter().enumerate() {
        assert_eq!(*base, i as u64 * 3);
        assert_eq!(bytes[8..], sent[i][8..]);
    }
}

#[test]
fn given_threads_pipelining_together_when_they_finish_then_each_batch_is_stored_once_where_its_offsets_say()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), small_config()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut flying = VecDeque::new();
                let mut placed = Vec::new();
                for i in 0..40u64 {
                    let no = t * 1000 + i;
                    if flying.len() == 3 {
                        let (p, no): (strata_storage::log::PendingAppend<'_>, u64) =
                            flying.pop_front().unwrap();
                        placed.push((p.wait().unwrap().base_offset, no));
                    }
                    let p = log
                        .start_append(numbered_batch(no, 2, 300, no as i64))
                        .unwrap();
                    flying.push_back((p, no));
                }
                for (p, no) in flying {
                    placed.push((p.wait().unwrap().base_offset, no));
                }
                placed
            })
        })
        .collect();
    let mut placed: Vec<(u64, u64)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    placed.sort();
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 160);
    for ((base, no), (got_base, count, bytes)) in placed.iter().zip(&got) {
        assert_eq!(base, got_base);
        assert_eq!(*count, 2);
        let want = numbered_batch(*no, 2, 300, *no as i64);
        assert_eq!(bytes[8..], want[8..], "batch {no} at offset {base}");
    }
}

#[test]
fn given_an_append_dropped_without_waiting_when_the_log_closes_then_the_batch_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let batch = numbered_batch(7, 4, 100, 0);
    let info = log.start_append(batch.clone()).unwrap().info();
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, info.base_offset);
    assert_eq!(got[0].2[8..], batch[8..]);
}

#[test]
fn given_always_when_a_pipelined_append_is_acknowledged_then_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        ..small_config()
    };
    let log = open(dir.path(), config);
    let started: Vec<_> = (0..5)
        .map(|b| log.start_append(numbered_batch(b, 2, 50, 0)).unwrap())
        .collect();
    for p in started {
        let info = p.wait().unwrap();
        assert!(
            log.durable_offset() > info.last_offset,
            "acknowledged {info:?} but durable only below {}",
            log.durable_offset()
        );
    }
}

#[test]
fn given_an_invalid_batch_when_started_then_it_is_refused_and_the_appends_in_flight_are_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let first = log.start_append(numbered_batch(0, 2, 10, 0)).unwrap();
    let mut bad = numbered_batch(1, 2, 10, 0);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(matches!(log.start_append(bad), Err(Error::InvalidBatch(_))));
    let second = log.start_append(numbered_batch(2, 2, 10, 0)).unwrap();
    assert_eq!(first.wait().unwrap().base_offset, 0);
    assert_eq!(
        second.wait().unwrap().base_offset,
        2,
        "the refused batch took no offsets"
    );
    assert_eq!(read_all(&log, 0).len(), 2);
}

#[test]
fn given_a_failing_write_when_appends_are_in_flight_then_none_is_acknowledged_and_none_becomes_visible()
 {
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingBackend::counting(backend());
    let log = PartitionLog::open(dir.path(), small_config(), Arc::new(failing.clone())).unwrap();
    log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    failing.set_mode(FailMode::AfterN(failing.ops()));
    // A buffered writer fails inside `start_append` (it writes before the batch counts as
    // taken); a direct write on io_uring fails later, in `wait`. Either way no append of the
    // failed write or after it is acknowledged.
    let mut outcomes = Vec::new();
    let mut started = Vec::new();
    for b in 1..4 {
        match log.start_append(numbered_batch(b, 1, 10, 0)) {
            Ok(p) => started.push(p),
            Err(e) => outcomes.push(e),
        }
    }
    outcomes.extend(started.into_iter().map(|p| p.wait().unwrap_err()));
    assert_eq!(outcomes.len(), 3);
    for e in &outcomes {
        assert!(matches!(e, Error::Poisoned { op: "write", .. }), "{e:?}");
    }
    assert_eq!(
        log.log_end_offset(),
        1,
        "only the append before the failure"
    );
    assert_eq!(read_all(&log, 0).len(), 1);
}
