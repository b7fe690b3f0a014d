//! Data written by the engine verifies clean: several segments, zstd and uncompressed batches,
//! after a clean close and after a crash (no close), through every kind of PATH.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "verify_common/mod.rs"]
mod common;

use common::*;

#[test]
fn given_engine_written_partitions_when_verified_then_clean_for_every_path_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let closed = data.join("events-0");
    let log = open(&closed);
    for _ in 0..4 {
        append(&log, 40, 300, true);
        log.roll().unwrap();
    }
    append(&log, 7, 300, true);
    log.close().unwrap();
    let crashed = data.join("events-1");
    let log = open(&crashed);
    append(&log, 30, 500, true);
    log.roll().unwrap();
    append(&log, 11, 500, true);
    // Rolled segments are sealed (synced, index files written) in the background; a crash
    // before that is done leaves them without index files, which verify reports. Crash once
    // the seals are done: only the active segment is then without index files.
    log.wait_for_seals().unwrap();
    drop(log); // no close: like a crash of the process

    let o = strata(&["verify", "data"], tmp.path());
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{s}");
    assert!(s.starts_with("summary: partitions: 2 segments: 7 "), "{s}");
    assert!(
        s.contains(&format!("records: {} ", (4 * 40 + 7 + 30 + 11) * 3)),
        "{s}"
    );

    for p in ["data/events-0", "data/events-1/00000000000000000090.log"] {
        let o = strata(&["verify", p], tmp.path());
        assert_eq!(o.status.code(), Some(0), "{p}: {}", stdout(&o));
    }
    let o = strata(
        &[
            "verify",
            "--index-only",
            "--json",
            "data/events-0/00000000000000000120.index",
            "data/events-0/00000000000000000120.timeindex",
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let last: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["problems"], 0);
    assert!(last["index_entries"].as_u64().unwrap() > 0);

    let o = strata(&["dump", "--deep", "--json", "data"], tmp.path());
    assert_eq!(o.status.code(), Some(0));
    let mut batches = 0;
    let mut records = 0;
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["type"].as_str().unwrap() {
            "batch" => {
                batches += 1;
                assert_eq!(v["crc_valid"], true);
                assert!(v["codec"] == "zstd" || v["codec"] == "none", "{line}");
                assert!(
                    v["uncompressed_size"].as_u64().unwrap() >= v["size"].as_u64().unwrap()
                        || v["codec"] == "zstd"
                );
            }
            "record" => records += 1,
            // The zeros ending a direct write's last block, left by the crash (direct mode).
            "padding" => assert!(v["bytes"].as_u64().unwrap() < 4096, "{line}"),
            "summary" => assert_eq!(v["problems"], 0),
            "checkpoint" => assert!(v["recovery_point"].as_u64().is_some(), "{line}"),
            other => panic!("unexpected {other}: {line}"),
        }
    }
    assert_eq!(batches, 4 * 40 + 7 + 30 + 11);
    assert_eq!(records, batches * 3);
}

#[test]
fn given_max_batches_and_from_offset_when_dumped_then_only_those_batches_are_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = open(&dir);
    append(&log, 50, 200, false);
    log.close().unwrap();
    let o = strata(
        &[
            "dump",
            "--json",
            "--from-offset",
            "100",
            "--max-batches",
            "3",
            "t-0",
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(0));
    let bases: Vec<i64> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "batch")
        .map(|v| v["base_offset"].as_i64().unwrap())
        .collect();
    assert_eq!(bases, vec![99, 102, 105]);
}

#[test]
fn given_a_crash_before_rolled_segments_were_sealed_when_verified_then_their_missing_indexes_are_not_problems()
 {
    use strata_storage::log::checkpoint::{Checkpoint, FILE_NAME};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("events-0");
    let log = open(&dir);
    for _ in 0..3 {
        append(&log, 20, 300, true);
        log.roll().unwrap();
    }
    append(&log, 5, 300, true);
    log.wait_for_seals().unwrap();
    let segs = log.segments();
    drop(log); // a crash
    // The state a crash leaves when the sealer had sealed only the first segment: the later
    // rolled ones have only the empty index files they were created with (a power cut may
    // empty them; here the offset index) or none (their creation lost; here the time index),
    // and the recovery point is the second one's base.
    let unsealed = segs[1].base_offset;
    for s in &segs[1..] {
        std::fs::write(s.path.with_extension("index"), b"").unwrap();
        let _ = std::fs::remove_file(s.path.with_extension("timeindex"));
    }
    let write_checkpoint = |clean: bool, recovery_point: u64| {
        let cp = Checkpoint {
            clean,
            recovery_point,
            log_end_offset: 0,
            active_segment_len: 0,
        };
        std::fs::write(dir.join(FILE_NAME), cp.encode()).unwrap();
    };
    write_checkpoint(false, unsealed);
    let o = strata(&["verify", "events-0"], tmp.path());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // Had the checkpoint said those segments were sealed, the missing files are damage.
    write_checkpoint(false, segs.last().unwrap().base_offset);
    let o = strata(&["verify", "events-0"], tmp.path());
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    // Every sealed segment but the first has lost both of its index files: one is empty (a
    // bad header), one missing.
    assert_eq!(
        s.matches("time_index_missing").count(),
        segs.len() - 2,
        "{s}"
    );
    assert_eq!(s.matches("index_header").count(), segs.len() - 2, "{s}");

    // And the engine's recovery agrees the unsealed state is whole: all data is there.
    write_checkpoint(false, unsealed);
    let log = open(&dir);
    assert_eq!(log.log_end_offset(), (3 * 20 + 5) * 3);
    log.close().unwrap();
    let o = strata(&["verify", "events-0"], tmp.path());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn given_batches_larger_than_the_broker_default_written_by_the_engine_when_verified_and_dumped_then_they_are_read_clean()
 {
    // `strata bench --mode embedded` writes 1 MiB batches of 1 KiB records whose framing puts
    // them just over the broker's default max.message.bytes (1048588): verify used that
    // default as its limit and reported every segment damaged.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big-0");
    let config = strata_storage::log::LogConfig {
        max_batch_bytes: 24 << 20,
        ..config()
    };
    let log = strata_storage::log::PartitionLog::open(
        &dir,
        config,
        std::sync::Arc::new(strata_storage::io::plain::PlainBackend::new()),
    )
    .unwrap();
    for size in [1_058_801usize, 9 << 20, 20 << 20] {
        let mut b =
            strata_storage::batch::BatchBuilder::new(strata_storage::batch::Compression::None);
        b.push(strata_storage::batch::NewRecord::new(vec![
            b'v';
            size - 200
        ]))
        .unwrap();
        log.append_batch(b.build().unwrap()).unwrap();
    }
    log.close().unwrap();
    let o = strata(&["verify", "big-0"], tmp.path());
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{s}");
    assert!(s.contains("batches: 3 "), "{s}");
    let o = strata(&["dump", "big-0"], tmp.path());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(stdout(&o).matches("baseOffset: ").count(), 3);
    // A lower limit, asked for, still flags them.
    let o = strata(
        &["verify", "--max-batch-bytes", "1048588", "big-0"],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

#[test]
fn given_a_leader_epoch_file_a_log_start_and_a_producer_state_snapshot_when_verified_and_dumped_then_they_are_checked()
 {
    use strata_storage::batch::{BatchBuilder, Compression, NewRecord};
    use strata_storage::log::producer_state::{ProducerStates, SNAPSHOT_FILE};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = open(&dir);
    for epoch in [0, 0, 3] {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(NewRecord::new(b"v".to_vec())).unwrap();
        log.append_as_leader(b.build().unwrap(), epoch).unwrap();
    }
    log.close().unwrap();
    let epochs = std::fs::read(dir.join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(epochs, b"0\n2\n0 0\n3 2\n", "Kafka's format");
    let mut states = ProducerStates::default();
    states.record(7, 0, 0, 3, 0, 1);
    std::fs::write(dir.join(SNAPSHOT_FILE), states.encode_snapshot(3)).unwrap();
    std::fs::write(dir.join("log-start-offset"), b"0\n1\n").unwrap();
    let o = strata(&["verify", "t-0"], tmp.path());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // Dump says what each file holds.
    let o = strata(&["dump", "t-0"], tmp.path());
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{s}");
    for line in [
        "checkpoint: t-0/checkpoint clean: true recovery_point: 3 log_end_offset: 3",
        "log_start: t-0/log-start-offset offset: 1",
        "leader_epoch: t-0/leader-epoch-checkpoint epoch: 0 start_offset: 0",
        "leader_epoch: t-0/leader-epoch-checkpoint epoch: 3 start_offset: 2",
        "producer: t-0/producer-state end_offset: 3 producerId: 7 epoch: 0 lastTimestamp: 1 batches: 0..=2@0",
    ] {
        assert!(s.contains(line), "{line:?} in {s}");
    }

    // Each damage is named, with what the broker or the next open does about it.
    let cases: [(&str, Vec<u8>, &str, &str); 6] = [
        (
            "log-start-offset",
            b"0\nx\n".to_vec(),
            "log_start",
            "readable again",
        ),
        (
            "log-start-offset",
            b"0\n4\n".to_vec(),
            "log_start",
            "past the log end",
        ),
        (
            SNAPSHOT_FILE,
            {
                let mut b = states.encode_snapshot(3);
                b[10] ^= 1;
                b
            },
            "producer_state",
            "CRC-32C mismatch",
        ),
        (
            SNAPSHOT_FILE,
            states.encode_snapshot(4),
            "producer_state",
            "ahead of the log",
        ),
        (
            "leader-epoch-checkpoint",
            b"0\n2\n0 0\n3 x\n".to_vec(),
            "leader_epochs",
            "rebuilds it",
        ),
        (
            "leader-epoch-checkpoint",
            b"0\n2\n0 0\n4 3\n".to_vec(),
            "leader_epochs",
            "past the log end",
        ),
    ];
    for (file, bytes, check, says) in cases {
        let keep = std::fs::read(dir.join(file)).unwrap();
        std::fs::write(dir.join(file), &bytes).unwrap();
        let o = strata(&["verify", "--json", "t-0"], tmp.path());
        let s = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{check} {says}: {s}");
        let p: serde_json::Value = s
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["type"] == "problem")
            .unwrap_or_else(|| panic!("no problem in {s}"));
        assert_eq!(p["check"], check, "{s}");
        assert!(p["message"].as_str().unwrap().contains(says), "{s}");
        std::fs::write(dir.join(file), keep).unwrap();
    }
}
