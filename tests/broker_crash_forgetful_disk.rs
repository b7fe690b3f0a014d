//! Scenario: the machine running the broker loses power at every operation of a workload. The
//! broker's storage — every partition log, the committed-offsets log, the producer-state
//! snapshots, the producer-id block, topic metadata — runs over the engine's fake disk that
//! forgets whatever was not synced (a process kill cannot show a missing fsync: the page cache
//! survives it). After each crash the broker reopens and everything it acknowledged must be
//! there: produces to `flush.messages=1` topics byte for byte, committed offsets, created
//! topics, idempotent producers' deduplication, and producer ids never handed out twice.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use strata::broker::Broker;
use strata::broker::config::BrokerConfig;
use strata::broker::groups::offsets::Committed;
use strata_storage::batch::{BatchBuilder, Compression, NewRecord};
use strata_storage::io::faulty::{FailMode, FailingBackend, ForgetfulBackend, TornMode};
use strata_storage::io::{IoBackend, backend_from_env};

fn config(dir: &Path) -> BrokerConfig {
    let mut c = BrokerConfig::default();
    c.set("log.dirs", dir.to_str().unwrap()).unwrap();
    c.set("log.preallocate", "false").unwrap();
    c.set("log.retention.check.interval.ms", "0").unwrap();
    if let Ok(mode) = std::env::var("STRATA_TEST_WRITE_MODE") {
        c.set("strata.log.write.mode", &mode).unwrap();
    }
    c
}

/// A one-record batch of an idempotent producer, stamped now (producer state expires by batch
/// timestamp, `producer.id.expiration.ms`, as Kafka's does).
fn idempotent_batch(value: &str, producer: i64, seq: i32) -> bytes::Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut b = BatchBuilder::new(Compression::None).producer(producer, 0, seq);
    b.push(NewRecord::new(value.as_bytes().to_vec()).with_timestamp(now))
        .unwrap();
    bytes::Bytes::from(b.build().unwrap())
}

/// Everything the broker acknowledged before it stopped answering.
#[derive(Debug, Default)]
struct Acked {
    topics: Vec<String>,
    /// (topic, partition, offset) -> the batch as sent.
    records: BTreeMap<(String, i32, u64), bytes::Bytes>,
    /// The last acknowledged idempotent batch per partition: what a retry re-sends.
    last_idempotent: BTreeMap<(String, i32), (u64, bytes::Bytes)>,
    commits: Vec<((String, String, i32), i64)>,
    producer_ids: Vec<i64>,
}

/// Runs the workload until an operation fails (the disk died), then drops the broker without
/// closing it, as a power cut would.
fn workload(dir: &Path, backend: Arc<dyn IoBackend>) -> Acked {
    let Ok(broker) = Broker::open_with_backend(config(dir), backend) else {
        return Acked::default();
    };
    let acked = run(&broker);
    drop(broker);
    acked
}

/// The workload itself: two topics, idempotent produces, commits, until an operation fails.
fn run(broker: &Broker) -> Acked {
    let mut acked = Acked::default();
    let always: BTreeMap<String, String> = [("flush.messages".to_string(), "1".to_string())]
        .into_iter()
        .collect();
    'work: {
        for topic in ["orders", "audit"] {
            match broker.create_topic(topic, 2, always.clone(), false) {
                Ok(_) => acked.topics.push(topic.to_string()),
                Err(_) => break 'work,
            }
            let Ok(pid) = broker.allocate_producer_id() else {
                break 'work;
            };
            acked.producer_ids.push(pid);
            let t = broker.topic(topic).unwrap();
            for i in 0..6i32 {
                let p = i % 2;
                let batch = idempotent_batch(&format!("{topic}-{i}"), pid, i / 2);
                let part = broker.partition(topic, p).unwrap();
                match broker.produce(&part, &t.config, batch.clone()) {
                    Ok(r) => {
                        acked
                            .records
                            .insert((topic.to_string(), p, r.base_offset), batch.clone());
                        acked
                            .last_idempotent
                            .insert((topic.to_string(), p), (r.base_offset, batch));
                    }
                    Err(_) => break 'work,
                }
            }
            let key = ("g".to_string(), topic.to_string(), 1);
            let c = Committed {
                offset: 3,
                leader_epoch: -1,
                metadata: Some("m".into()),
                commit_timestamp: 1,
            };
            match broker
                .groups
                .offsets
                .commit(vec![(key.clone(), c)], |_, _| true)
            {
                Ok(_) => acked.commits.push((key, 3)),
                Err(_) => break 'work,
            }
        }
    }
    acked
}

/// Reopens on a healthy disk and checks everything acknowledged.
fn check(dir: &Path, acked: &Acked, ctx: &str) {
    let broker = Broker::open_with_backend(config(dir), backend_from_env())
        .unwrap_or_else(|e| panic!("{ctx}: the broker did not reopen: {e:#}"));
    for t in &acked.topics {
        let topic = broker
            .topic(t)
            .unwrap_or_else(|| panic!("{ctx}: acknowledged topic {t} lost"));
        assert_eq!(topic.partitions.len(), 2, "{ctx}");
    }
    for ((t, p, offset), batch) in &acked.records {
        let log = broker.partition(t, *p).unwrap().log().unwrap();
        let slice = log
            .read(*offset, 1 << 20)
            .unwrap_or_else(|e| panic!("{ctx}: {t}-{p}@{offset}: {e}"));
        assert!(
            slice.len() >= batch.len() && slice[8..batch.len()] == batch[8..],
            "{ctx}: acknowledged batch {t}-{p}@{offset} lost or changed"
        );
    }
    for ((g, t, p), offset) in &acked.commits {
        let got = broker
            .groups
            .offsets
            .get(&(g.clone(), t.clone(), *p))
            .unwrap_or_else(|| panic!("{ctx}: acknowledged commit {g}/{t}-{p} lost"));
        assert_eq!(got.offset, *offset, "{ctx}");
    }
    // A retry of an acknowledged idempotent batch is recognized, not appended again.
    for ((t, p), (offset, batch)) in &acked.last_idempotent {
        let topic = broker.topic(t).unwrap();
        let part = broker.partition(t, *p).unwrap();
        let end = part.log().unwrap().log_end_offset();
        let r = broker.produce(&part, &topic.config, batch.clone()).unwrap();
        assert_eq!(
            r.base_offset, *offset,
            "{ctx}: a retry of {t}-{p}@{offset} was appended again"
        );
        assert_eq!(part.log().unwrap().log_end_offset(), end, "{ctx}");
    }
    // Producer ids are never handed out twice, across the crash.
    let next = broker.allocate_producer_id().unwrap();
    assert!(
        acked.producer_ids.iter().all(|id| next > *id),
        "{ctx}: producer id {next} was already handed out ({:?})",
        acked.producer_ids
    );
    broker.close().unwrap();
}

fn sweep(torn: fn(u64) -> TornMode) {
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let counting =
            FailingBackend::counting(Arc::new(ForgetfulBackend::wrapping(backend_from_env())));
        let acked = workload(dir.path(), Arc::new(counting.clone()));
        assert_eq!(
            acked.records.len(),
            12,
            "the workload runs through without failures"
        );
        counting.ops()
    };
    assert!(total > 50, "{total} operations");
    for n in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(backend_from_env());
        let failing = FailingBackend::new(Arc::new(disk.clone()), n);
        let acked = workload(dir.path(), Arc::new(failing));
        disk.crash(torn(n));
        check(
            dir.path(),
            &acked,
            &format!("power cut at operation {n} of {total}"),
        );
    }
}

#[test]
fn given_the_broker_on_a_disk_that_forgets_unsynced_writes_when_the_power_fails_at_every_operation_then_nothing_acknowledged_is_lost()
 {
    sweep(|_| TornMode::Clean);
}

#[test]
fn given_a_power_cut_that_leaves_garbled_tails_at_every_operation_then_nothing_acknowledged_is_lost()
 {
    sweep(|n| TornMode::PartialTail { seed: n * 31 + 7 });
}

#[test]
fn given_a_clean_stop_then_it_creates_renames_and_removes_no_partition_file_and_a_power_cut_after_it_finds_every_partition_clean()
 {
    // A stop closes every partition at once; creating or renaming a file costs ten times an
    // overwrite in place (PERFORMANCE.md, "The house"), so the stop only overwrites files that
    // exist: the active segments' index files (created with the segment), the checkpoints and
    // the producer-state snapshots (written when the partition opened). Each call below fails
    // the stop if it runs. One sync of the file system at its end makes it all durable.
    for op in ["create_new", "rename", "remove_file"] {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(backend_from_env());
        let failing = FailingBackend::counting(Arc::new(disk.clone()));
        let broker =
            Broker::open_with_backend(config(dir.path()), Arc::new(failing.clone())).unwrap();
        let acked = run(&broker);
        assert_eq!(acked.records.len(), 12, "the workload runs through");
        failing.set_mode(FailMode::EveryOp(op));
        broker
            .close()
            .unwrap_or_else(|e| panic!("the clean stop ran {op}: {e:#}"));
        assert_eq!(failing.injected(), 0, "the clean stop ran {op}");
        drop(broker);
        disk.crash(TornMode::Clean);
        let broker = Broker::open_with_backend(config(dir.path()), backend_from_env()).unwrap();
        for t in &acked.topics {
            for p in 0..2 {
                let log = broker.partition(t, p).unwrap().log().unwrap();
                assert!(
                    log.recovery_report().clean,
                    "{op}: {t}-{p} reopened from its clean checkpoint: {:?}",
                    log.recovery_report()
                );
                assert_eq!(log.recovery_report().indexes_rebuilt, 0, "{op}: {t}-{p}");
            }
        }
        broker.close().unwrap();
        drop(broker);
        check(
            dir.path(),
            &acked,
            &format!("a power cut after a clean stop ({op})"),
        );
    }
}

/// A one-record batch of no producer, `len` bytes of value.
fn plain_batch(len: usize) -> bytes::Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(NewRecord::new(vec![b'x'; len])).unwrap();
    bytes::Bytes::from(b.build().unwrap())
}

/// Reopens the broker of `dir` on a healthy disk and sends `batch` to `t-0` again (a
/// producer's retry after the restart): the log end before it, the offset the broker
/// answered, and the log end after it.
fn resend_after_restart(dir: &Path, batch: bytes::Bytes) -> (u64, u64, u64) {
    let broker = Broker::open_with_backend(config(dir), backend_from_env()).unwrap();
    let t = broker.topic("t").unwrap();
    let part = broker.partition("t", 0).unwrap();
    let log = part.log().unwrap();
    let before = log.log_end_offset();
    let answered = broker.produce(&part, &t.config, batch).unwrap().base_offset;
    (before, answered, log.log_end_offset())
}

#[test]
fn given_an_idempotent_producer_whose_batch_lies_in_an_older_segment_when_the_broker_restarts_cleanly_then_its_retry_is_still_recognized()
 {
    // The snapshot the clean stop wrote is as of the log end: the restart trusts it, and
    // knows the producer whose batches only older segments hold (replaying the last segment
    // alone would not).
    let dir = tempfile::tempdir().unwrap();
    let small: BTreeMap<String, String> = [("segment.bytes".to_string(), "4096".to_string())]
        .into_iter()
        .collect();
    let broker = Broker::open_with_backend(config(dir.path()), backend_from_env()).unwrap();
    broker.create_topic("t", 1, small, false).unwrap();
    let t = broker.topic("t").unwrap();
    let part = broker.partition("t", 0).unwrap();
    let pid = broker.allocate_producer_id().unwrap();
    let batch = idempotent_batch("first", pid, 0);
    let first = broker.produce(&part, &t.config, batch.clone()).unwrap();
    for _ in 0..20 {
        broker
            .produce(&part, &t.config, plain_batch(1_000))
            .unwrap();
    }
    assert!(part.log().unwrap().segments().len() > 2);
    // Past the last periodic snapshot (one per segment.bytes appended).
    broker.produce(&part, &t.config, plain_batch(10)).unwrap();
    let (partition_dir, log_end) = (
        part.dir().to_path_buf(),
        part.log().unwrap().log_end_offset(),
    );
    drop((t, part)); // a partition still held elsewhere is only synced at the stop
    broker.close().unwrap();
    drop(broker);
    // The stop wrote the snapshot as of the log end: the next start reads no batch.
    let (end, states) = strata_storage::log::producer_state::read(&partition_dir)
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(end, log_end);
    assert_eq!(states.producers().len(), 1);

    let (end, again, after) = resend_after_restart(dir.path(), batch);
    assert_eq!(again, first.base_offset, "recognized, not appended");
    assert_eq!(after, end);
}

/// A stopped broker's data directory whose only partition (`t-0`) has a producer-state
/// snapshot as of offset 2 and a log that ends at 1: what a power cut that took the log's
/// unsynced tail, and not the snapshot written after it, leaves. Returns the partition's
/// directory and the lost batch (sequence 1 of its producer).
fn snapshot_ahead_of_the_log(dir: &Path) -> (std::path::PathBuf, bytes::Bytes) {
    let broker = Broker::open_with_backend(config(dir), backend_from_env()).unwrap();
    broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
    let t = broker.topic("t").unwrap();
    let part = broker.partition("t", 0).unwrap();
    let pid = broker.allocate_producer_id().unwrap();
    broker
        .produce(&part, &t.config, idempotent_batch("a", pid, 0))
        .unwrap();
    let lost = idempotent_batch("b", pid, 1);
    assert_eq!(
        broker
            .produce(&part, &t.config, lost.clone())
            .unwrap()
            .base_offset,
        1
    );
    let partition_dir = part.dir().to_path_buf();
    drop((t, part)); // a partition still held elsewhere is only synced at the stop
    broker.close().unwrap(); // the snapshot is as of offset 2
    drop(broker);
    let log = strata_storage::log::PartitionLog::open(
        &partition_dir,
        strata_storage::log::LogConfig::default(),
        backend_from_env(),
    )
    .unwrap();
    assert_eq!(log.truncate_to(1).unwrap(), 1);
    log.close().unwrap();
    (partition_dir, lost)
}

#[test]
fn given_a_producer_state_snapshot_ahead_of_a_log_that_lost_its_tail_when_the_broker_starts_then_the_lost_batch_is_appended_again()
 {
    // The snapshot remembers a batch the log no longer has: it must not be trusted.
    let dir = tempfile::tempdir().unwrap();
    let (_, lost) = snapshot_ahead_of_the_log(dir.path());
    let (_, at, end) = resend_after_restart(dir.path(), lost);
    assert_eq!(at, 1, "the lost batch is written again");
    assert_eq!(end, 2);
}

#[test]
fn given_a_snapshot_ahead_of_the_log_that_cannot_be_replaced_when_the_broker_starts_then_it_is_removed()
 {
    // Kept, it would pass for valid once the log grows past its offset again.
    let dir = tempfile::tempdir().unwrap();
    let (partition_dir, _) = snapshot_ahead_of_the_log(dir.path());
    let snapshot = partition_dir.join("producer-state");
    assert!(snapshot.exists());
    let failing = FailingBackend::with_mode(backend_from_env(), FailMode::EveryOp("rename"));
    let broker = Broker::open_with_backend(config(dir.path()), Arc::new(failing)).unwrap();
    assert!(
        !snapshot.exists(),
        "the snapshot that could not be replaced is gone"
    );
    drop(broker);
}

#[test]
fn given_an_idempotent_producer_whose_batch_lies_in_an_older_segment_when_the_power_fails_then_its_retry_is_still_recognized()
 {
    // Every segment.bytes appended the broker snapshots the producer state durably, so after
    // a power cut it still knows producers whose batches only older segments hold.
    let dir = tempfile::tempdir().unwrap();
    let disk = ForgetfulBackend::wrapping(backend_from_env());
    let broker = Broker::open_with_backend(config(dir.path()), Arc::new(disk.clone())).unwrap();
    let configs: BTreeMap<String, String> = [
        ("segment.bytes".to_string(), "4096".to_string()),
        ("flush.messages".to_string(), "1".to_string()),
    ]
    .into_iter()
    .collect();
    broker.create_topic("t", 1, configs, false).unwrap();
    let t = broker.topic("t").unwrap();
    let part = broker.partition("t", 0).unwrap();
    let pid = broker.allocate_producer_id().unwrap();
    let batch = idempotent_batch("first", pid, 0);
    let first = broker.produce(&part, &t.config, batch.clone()).unwrap();
    for _ in 0..20 {
        broker
            .produce(&part, &t.config, plain_batch(1_000))
            .unwrap();
    }
    assert!(part.log().unwrap().segments().len() > 2);
    drop((t, part, broker)); // the power fails
    disk.crash(TornMode::Clean);

    let (end, again, after) = resend_after_restart(dir.path(), batch);
    assert_eq!(end, 21, "every acknowledged batch is there");
    assert_eq!(again, first.base_offset, "recognized, not appended");
    assert_eq!(after, end);
}

#[test]
fn given_an_idempotent_batch_megabytes_past_the_snapshot_when_the_broker_restarts_after_a_crash_then_its_retry_is_recognized()
 {
    // The restart replays every batch header after the snapshot, however many reads of the
    // log that takes (each returns about a mebibyte).
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with_backend(config(dir.path()), backend_from_env()).unwrap();
    broker.create_topic("t", 1, BTreeMap::new(), false).unwrap();
    let t = broker.topic("t").unwrap();
    let part = broker.partition("t", 0).unwrap();
    for _ in 0..3 {
        broker
            .produce(&part, &t.config, plain_batch(800_000))
            .unwrap();
    }
    let pid = broker.allocate_producer_id().unwrap();
    let batch = idempotent_batch("late", pid, 0);
    let first = broker.produce(&part, &t.config, batch.clone()).unwrap();
    assert_eq!(first.base_offset, 3);
    drop((t, part, broker)); // a crash of the process: no snapshot since the open's

    let (_, again, end) = resend_after_restart(dir.path(), batch);
    assert_eq!(again, 3, "recognized, not appended");
    assert_eq!(end, 4);
}

#[test]
fn given_a_full_disk_when_a_commit_fails_then_the_offsets_log_heals_once_writes_fit_and_keeps_every_acknowledged_commit()
 {
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingBackend::counting(backend_from_env());
    let broker = Broker::open_with_backend(config(dir.path()), Arc::new(failing.clone())).unwrap();
    // (Offsets of a topic that does not exist are forgotten at the next start.)
    broker.create_topic("t", 2, BTreeMap::new(), false).unwrap();
    let commit = |broker: &Broker, p: i32, offset: i64| {
        let c = Committed {
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: 1,
        };
        broker
            .groups
            .offsets
            .commit(vec![(("g".to_string(), "t".to_string(), p), c)], |_, _| {
                true
            })
    };
    let get = |broker: &Broker, p: i32| {
        broker
            .groups
            .offsets
            .get(&("g".to_string(), "t".to_string(), p))
            .map(|c| c.offset)
    };
    commit(&broker, 0, 5).unwrap();
    failing.set_mode(FailMode::DiskFull);
    assert!(commit(&broker, 1, 7).is_err(), "the disk is full");
    // Still full: the health pass cannot reopen it, and commits keep failing.
    broker.heal();
    assert!(commit(&broker, 1, 7).is_err());
    // Room again: the next pass reopens the offsets log, and commits are taken again.
    failing.heal();
    broker.heal();
    commit(&broker, 1, 7).unwrap();
    assert_eq!((get(&broker, 0), get(&broker, 1)), (Some(5), Some(7)));
    drop(broker);
    let broker = Broker::open_with_backend(config(dir.path()), backend_from_env()).unwrap();
    assert_eq!((get(&broker, 0), get(&broker, 1)), (Some(5), Some(7)));
}
