//! Scenario: the machine loses power. A fake disk forgets every byte and directory entry that was
//! not synced (and may leave a torn, garbage-filled tail); the log must reopen, return no torn
//! batch, and — under `always` — hold every batch it acknowledged.
//!
//! The sweep crashes the disk at *every* operation of a workload (appends, rolls, index and
//! checkpoint writes), the way redb's crash-consistency test does.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use strata_storage::io::IoBackend;
use strata_storage::io::faulty::{FailingBackend, ForgetfulBackend, TornMode};
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog};

fn config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..small_config()
    }
}

/// Appends batches until the backend fails (or `batches` are done), `in_flight` at a time
/// (1: `append_batch`; more: `start_append`, waiting for the oldest when that many are started);
/// returns what was acknowledged and what must survive the crash: the log's durable offset, or
/// the end of what was acknowledged before an explicit `sync` returned, whichever is further.
fn workload(
    dir: &Path,
    backend: Arc<dyn IoBackend>,
    fsync: FsyncPolicy,
    batches: u64,
    in_flight: usize,
) -> (Vec<(u64, u64)>, u64) {
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let Ok(log) = PartitionLog::open(dir, config(fsync), backend) else {
        return (acked, 0);
    };
    // The end of what was acknowledged when an explicit `sync` last returned: durable from then
    // on, whatever the fsync policy.
    let mut synced = 0u64;
    let mut flying = std::collections::VecDeque::new();
    for n in 0..batches {
        let batch = numbered_batch(n, 2, 150, n as i64);
        if in_flight <= 1 {
            match log.append_batch(batch) {
                Ok(info) => acked.push((info.base_offset, n)),
                Err(_) => break,
            }
        } else {
            if flying.len() == in_flight {
                let (p, m): (strata_storage::log::PendingAppend<'_>, u64) =
                    flying.pop_front().unwrap();
                match p.wait() {
                    Ok(info) => acked.push((info.base_offset, m)),
                    Err(_) => break,
                }
            }
            match log.start_append(batch) {
                Ok(p) => flying.push_back((p, n)),
                Err(_) => break,
            }
        }
        if n % 7 == 6 {
            let end = acked.iter().map(|(base, _)| base + 2).max().unwrap_or(0);
            if log.sync().is_err() {
                break;
            }
            synced = synced.max(end);
        }
    }
    // What is still in flight is acknowledged only if its wait succeeds.
    for (p, m) in flying {
        if let Ok(info) = p.wait() {
            acked.push((info.base_offset, m));
        }
    }
    let durable = log.durable_offset().max(synced);
    drop(log); // the process dies with the machine: no clean close
    (acked, durable)
}

/// Reopens on a healthy disk and checks the log's integrity, that nothing below the durable
/// offset was lost, and under `always` that every acknowledged batch is there.
fn check(dir: &Path, fsync: FsyncPolicy, acked: &[(u64, u64)], durable: u64, ctx: &str) -> usize {
    let log = PartitionLog::open(dir, config(fsync), backend())
        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let stored = read_all(&log, 0); // CRC-checks every batch: nothing torn is returned
    for w in stored.windows(2) {
        assert_eq!(
            w[0].0 + u64::from(w[0].1),
            w[1].0,
            "{ctx}: offsets not contiguous"
        );
    }
    assert!(
        log.log_end_offset() >= durable,
        "{ctx}: offsets below the durable offset {durable} were lost (log ends at {})",
        log.log_end_offset()
    );
    if fsync == FsyncPolicy::Always {
        let by_offset: HashMap<u64, &Vec<u8>> = stored.iter().map(|(b, _, x)| (*b, x)).collect();
        for (base, n) in acked {
            let got = by_offset
                .get(base)
                .unwrap_or_else(|| panic!("{ctx}: acknowledged batch {n} at offset {base} lost"));
            assert_eq!(
                got[8..],
                numbered_batch(*n, 2, 150, *n as i64)[8..],
                "{ctx}: batch {n} differs"
            );
        }
    }
    stored.len()
}

fn count_ops(fsync: FsyncPolicy, batches: u64, in_flight: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let counting = FailingBackend::counting(backend());
    workload(
        dir.path(),
        Arc::new(counting.clone()),
        fsync,
        batches,
        in_flight,
    );
    counting.ops()
}

fn sweep(fsync: FsyncPolicy, torn: fn(u64) -> TornMode) {
    sweep_in_flight(fsync, torn, 1);
}

fn sweep_in_flight(fsync: FsyncPolicy, torn: fn(u64) -> TornMode, in_flight: usize) {
    let batches = 40;
    let total = count_ops(fsync, batches, in_flight);
    assert!(
        total > 40,
        "the workload should perform many operations, saw {total}"
    );
    for n in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(backend());
        let failing = FailingBackend::new(Arc::new(disk.clone()), n);
        let (acked, durable) = workload(dir.path(), Arc::new(failing), fsync, batches, in_flight);
        disk.crash(torn(n));
        check(
            dir.path(),
            fsync,
            &acked,
            durable,
            &format!("{fsync}, {in_flight} in flight, crash at op {n}/{total}"),
        );
    }
}

#[test]
fn given_always_when_the_disk_forgets_unsynced_writes_at_every_operation_then_nothing_acknowledged_is_lost()
 {
    sweep(FsyncPolicy::Always, |_| TornMode::Clean);
}

#[test]
fn given_always_and_appends_in_flight_when_the_disk_forgets_unsynced_writes_at_every_operation_then_nothing_acknowledged_is_lost()
 {
    sweep_in_flight(FsyncPolicy::Always, |_| TornMode::Clean, 3);
}

#[test]
fn given_always_when_the_crash_leaves_a_torn_garbage_tail_then_it_is_cut_and_nothing_acknowledged_is_lost()
 {
    sweep(FsyncPolicy::Always, |n| TornMode::PartialTail {
        seed: n * 7919 + 1,
    });
}

#[test]
fn given_never_when_the_disk_forgets_unsynced_writes_then_the_log_reopens_with_a_valid_prefix() {
    sweep(FsyncPolicy::Never, |n| TornMode::PrefixOnly { seed: n + 3 });
}

#[test]
fn given_never_when_rolled_segments_were_sealed_before_the_crash_then_they_survive() {
    let dir = tempfile::tempdir().unwrap();
    let disk = ForgetfulBackend::wrapping(backend());
    let log = PartitionLog::open(
        dir.path(),
        config(FsyncPolicy::Never),
        Arc::new(disk.clone()),
    )
    .unwrap();
    for n in 0..60 {
        log.append_batch(numbered_batch(n, 2, 150, 0)).unwrap();
    }
    let active_base = log.segments().last().unwrap().base_offset;
    assert!(active_base > 0, "must have rolled");
    // Sealing happens in the background; once it is done the durable offset covers every
    // sealed segment (and a roll never waited for it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while log.durable_offset() < active_base {
        assert!(
            std::time::Instant::now() < deadline,
            "sealer never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(log);
    disk.crash(TornMode::Clean);
    let stored = check(
        dir.path(),
        FsyncPolicy::Never,
        &[],
        active_base,
        "never/rolled",
    );
    assert!(
        stored as u64 * 2 >= active_base,
        "everything sealed before the crash is there"
    );
}

/// `flush.messages` = 5, batches of 1 or 2 records: appends until the backend fails. Returns
/// what was acknowledged and, by Kafka's rule, the offset below which everything must survive:
/// the end of the last acknowledged append that brought the count since the last sync to 5.
/// Records in batch `n` of the flush workload: counts that reach 5 exactly and that pass it.
fn flush_records(n: u64) -> usize {
    if n % 3 == 2 { 2 } else { 1 }
}

fn flush_count_workload(dir: &Path, backend: Arc<dyn IoBackend>) -> (Vec<(u64, u64)>, u64) {
    let config = LogConfig {
        flush_messages: Some(5),
        ..config(FsyncPolicy::Never)
    };
    let mut acked = Vec::new();
    let mut must_survive = 0;
    let Ok(log) = PartitionLog::open(dir, config, backend) else {
        return (acked, 0);
    };
    let mut unsynced = 0;
    for n in 0..40 {
        match log.append_batch(numbered_batch(n, flush_records(n), 150, n as i64)) {
            Ok(info) => {
                acked.push((info.base_offset, n));
                unsynced += flush_records(n);
                if unsynced >= 5 {
                    unsynced = 0;
                    must_survive = info.last_offset + 1;
                }
            }
            Err(_) => break,
        }
    }
    drop(log);
    (acked, must_survive)
}

#[test]
fn given_flush_messages_when_the_disk_forgets_unsynced_writes_at_every_operation_then_every_append_that_reached_the_count_survives_with_all_before_it()
 {
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let counting = FailingBackend::counting(backend());
        flush_count_workload(dir.path(), Arc::new(counting.clone()));
        counting.ops()
    };
    for n in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(backend());
        let failing = FailingBackend::new(Arc::new(disk.clone()), n);
        let (acked, must_survive) = flush_count_workload(dir.path(), Arc::new(failing));
        disk.crash(TornMode::Clean);
        let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never), backend()).unwrap();
        let stored: HashMap<u64, Vec<u8>> = read_all(&log, 0)
            .into_iter()
            .map(|(b, _, x)| (b, x))
            .collect();
        assert!(
            log.log_end_offset() >= must_survive,
            "crash at op {n}/{total}: flush.messages promised offsets below {must_survive}, the log ends at {}",
            log.log_end_offset()
        );
        for (base, batch) in acked.iter().filter(|(b, _)| *b < must_survive) {
            assert_eq!(
                stored.get(base).map(|x| &x[8..]),
                Some(&numbered_batch(*batch, flush_records(*batch), 150, *batch as i64)[8..]),
                "crash at op {n}/{total}: batch {batch} at {base}"
            );
        }
    }
}

#[test]
fn given_an_interval_when_the_interval_and_one_sync_have_passed_then_nothing_older_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let disk = ForgetfulBackend::wrapping(backend());
    let log = PartitionLog::open(
        dir.path(),
        config(FsyncPolicy::Interval(std::time::Duration::from_millis(50))),
        Arc::new(disk.clone()),
    )
    .unwrap();
    for n in 0..30 {
        log.append_batch(numbered_batch(n, 2, 150, 0)).unwrap();
    }
    let end = log.log_end_offset();
    // No sync from here: only the background one can make it durable. It says so through the
    // durable offset, and the disk must then hold it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while log.durable_offset() < end {
        assert!(
            std::time::Instant::now() < deadline,
            "no background sync reached offset {end} (durable: {})",
            log.durable_offset()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(log);
    disk.crash(TornMode::Clean);
    let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never), backend()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        end,
        "an interval and a sync later, nothing is lost"
    );
    assert_eq!(read_all(&log, 0).len(), 30);
}

/// What [`truncate_workload`] did before the disk failed.
#[derive(Debug, Default)]
struct TruncateRun {
    /// Acknowledged before the truncation: `(base offset, batch number)`.
    before: Vec<(u64, u64)>,
    /// The truncation returned this new log end.
    truncated: Option<u64>,
    /// Acknowledged after it (batch numbers from 1000).
    after: Vec<(u64, u64)>,
}

/// The offset the workload truncates at: inside batch 17 (two records per batch).
const CUT: u64 = 35;

/// Under `always`: 30 batches over several segments, a truncation inside batch 17 (a follower
/// dropping a divergent tail), then 10 more batches, until the backend fails.
fn truncate_workload(dir: &Path, backend: Arc<dyn IoBackend>) -> TruncateRun {
    let mut run = TruncateRun::default();
    let Ok(log) = PartitionLog::open(dir, config(FsyncPolicy::Always), backend) else {
        return run;
    };
    for n in 0..30 {
        match log.append_batch(numbered_batch(n, 2, 150, n as i64)) {
            Ok(info) => run.before.push((info.base_offset, n)),
            Err(_) => return run,
        }
    }
    match log.truncate_to(CUT) {
        Ok(end) => run.truncated = Some(end),
        Err(_) => return run,
    }
    for n in 1000..1010 {
        match log.append_batch(numbered_batch(n, 2, 150, n as i64)) {
            Ok(info) => run.after.push((info.base_offset, n)),
            Err(_) => break,
        }
    }
    drop(log);
    run
}

#[test]
fn given_a_truncation_when_the_disk_forgets_unsynced_writes_at_every_operation_then_the_log_is_a_prefix_and_a_finished_truncation_stays_done()
 {
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let counting = FailingBackend::counting(backend());
        let run = truncate_workload(dir.path(), Arc::new(counting.clone()));
        assert_eq!(run.truncated, Some(34), "the cut is at batch 17's start");
        assert_eq!(run.after.len(), 10);
        assert!(
            PartitionLog::open(dir.path(), config(FsyncPolicy::Always), backend())
                .unwrap()
                .segments()
                .len()
                > 1
        );
        counting.ops()
    };
    for n in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(backend());
        let failing = FailingBackend::new(Arc::new(disk.clone()), n);
        let run = truncate_workload(dir.path(), Arc::new(failing));
        disk.crash(TornMode::Clean);
        let ctx = format!("crash at op {n}/{total}");
        let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Always), backend())
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        let stored: HashMap<u64, Vec<u8>> = read_all(&log, 0)
            .into_iter()
            .map(|(b, _, x)| (b, x))
            .collect();
        let batch_no = |bytes: &Vec<u8>, base: u64| {
            (0..30u64)
                .chain(1000..1010)
                .find(|n| bytes[8..] == numbered_batch(*n, 2, 150, *n as i64)[8..])
                .unwrap_or_else(|| panic!("{ctx}: unknown batch at {base}"))
        };
        // Everything acknowledged below the cut survives.
        for (base, n) in run.before.iter().filter(|(b, _)| *b + 2 < CUT) {
            assert_eq!(
                stored.get(base).map(|x| batch_no(x, *base)),
                Some(*n),
                "{ctx}: batch {n} at {base}"
            );
        }
        if let Some(end) = run.truncated {
            // A finished truncation stays done: nothing from before it at or past its end.
            for (base, bytes) in &stored {
                if *base >= end {
                    assert!(
                        batch_no(bytes, *base) >= 1000,
                        "{ctx}: truncated batch at {base} came back"
                    );
                }
            }
            for (base, n) in &run.after {
                assert_eq!(
                    stored.get(base).map(|x| batch_no(x, *base)),
                    Some(*n),
                    "{ctx}: acknowledged batch {n} at {base} after the truncation"
                );
            }
        }
    }
}

#[test]
fn given_flush_messages_when_appending_then_a_sync_comes_every_n_messages_not_every_append() {
    let dir = tempfile::tempdir().unwrap();
    let counting = FailingBackend::counting(backend());
    let config = LogConfig {
        flush_messages: Some(10),
        segment_bytes: 1 << 20,
        ..config(FsyncPolicy::Never)
    };
    let log = PartitionLog::open(dir.path(), config, Arc::new(counting.clone())).unwrap();
    log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    let before = counting.syncs();
    for n in 1..=100 {
        log.append_batch(numbered_batch(n, 1, 10, 0)).unwrap();
    }
    let syncs = counting.syncs() - before;
    assert_eq!(
        syncs, 10,
        "101 messages, flush.messages=10: the 10th, 20th, ... 100th sync"
    );
}

/// Appends under `never` (nothing synced by the appends), then closes cleanly (with `deferred`,
/// as a broker does: each log without its directory fsync, then the whole file system synced
/// once). Returns what was appended and whether the close returned Ok.
fn close_workload(
    dir: &Path,
    backend: Arc<dyn IoBackend>,
    deferred: bool,
) -> (Vec<(u64, u64)>, bool) {
    let mut acked = Vec::new();
    let Ok(log) = PartitionLog::open(dir, config(FsyncPolicy::Never), backend.clone()) else {
        return (acked, false);
    };
    for n in 0..30 {
        match log.append_batch(numbered_batch(n, 2, 150, n as i64)) {
            Ok(info) => acked.push((info.base_offset, n)),
            Err(_) => return (acked, false),
        }
    }
    if !deferred {
        return (acked, log.close().is_ok());
    }
    let closed = log.close_deferring_dir_sync().is_ok() && backend.sync_filesystem(dir).is_ok();
    (acked, closed)
}

#[test]
fn given_a_clean_close_when_the_disk_forgets_unsynced_writes_at_every_operation_then_a_finished_close_kept_everything()
 {
    clean_close_sweep(false);
}

#[test]
fn given_a_close_deferring_its_directory_sync_to_one_sync_of_the_file_system_when_the_disk_forgets_at_every_operation_then_a_finished_close_kept_everything_and_reopens_clean()
 {
    clean_close_sweep(true);
}

fn clean_close_sweep(deferred: bool) {
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let counting = FailingBackend::counting(backend());
        let (acked, closed) = close_workload(dir.path(), Arc::new(counting.clone()), deferred);
        assert!(closed && acked.len() == 30);
        counting.ops()
    };
    for n in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(backend());
        let failing = FailingBackend::new(Arc::new(disk.clone()), n);
        let (acked, closed) = close_workload(dir.path(), Arc::new(failing), deferred);
        disk.crash(TornMode::Clean);
        let ctx = format!("crash at op {n}/{total}");
        let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never), backend())
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        let stored = read_all(&log, 0);
        for w in stored.windows(2) {
            assert_eq!(
                w[0].0 + u64::from(w[0].1),
                w[1].0,
                "{ctx}: offsets not contiguous"
            );
        }
        if closed {
            // Everything appended before a clean close that returned is on the disk, whatever
            // became of the index files and the checkpoint written without fdatasyncs.
            assert_eq!(stored.len(), acked.len(), "{ctx}");
            for ((base, _, bytes), (want_base, m)) in stored.iter().zip(&acked) {
                assert_eq!(base, want_base, "{ctx}");
                assert_eq!(
                    bytes[8..],
                    numbered_batch(*m, 2, 150, *m as i64)[8..],
                    "{ctx}"
                );
            }
            assert_eq!(log.log_end_offset(), 60, "{ctx}");
            assert!(log.max_timestamp_offset().unwrap().is_some(), "{ctx}");
            if deferred {
                // One sync of the file system made the clean checkpoint durable too.
                assert!(log.recovery_report().clean, "{ctx}");
            }
        }
    }
}
