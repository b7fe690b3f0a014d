//! `strata verify --repair`: does what the engine's recovery does and nothing more, says what
//! it changed, leaves damage recovery refuses alone, and refuses a partition a process holds.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "verify_common/mod.rs"]
mod common;

use common::*;

fn copy_fixture(case: &str, to: &std::path::Path) -> std::path::PathBuf {
    let dest = to.join(format!("{case}-0"));
    copy_partition(&fixtures().join(format!("{case}-0")), &dest);
    dest
}

#[test]
fn given_a_torn_tail_when_repaired_then_it_is_truncated_reported_and_verifies_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("torn-tail", tmp.path());
    let o = strata(&["verify", "--repair", "torn-tail-0"], tmp.path());
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{s}");
    assert!(
        s.contains("repair: torn-tail-0/00000000000000000030.log: truncated at position 984, 100 bytes removed"),
        "{s}"
    );
    assert!(
        s.contains("repair: torn-tail-0/00000000000000000030.index: created"),
        "{s}"
    );
    assert!(s.contains("repair: torn-tail-0/checkpoint: rewrote"), "{s}");
    assert!(s.ends_with("problems: 0\n"), "{s}");
    assert_eq!(
        std::fs::metadata(dir.join("00000000000000000030.log"))
            .unwrap()
            .len(),
        984
    );
    let again = strata(&["verify", "--repair", "torn-tail-0"], tmp.path());
    assert_eq!(
        stdout(&again)
            .lines()
            .filter(|l| l.starts_with("repair:"))
            .count(),
        0,
        "{}",
        stdout(&again)
    );
}

#[test]
fn given_corruption_in_a_sealed_segment_when_repaired_then_it_is_left_alone_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("flipped-crc", tmp.path());
    let before = std::fs::read(dir.join("00000000000000000000.log")).unwrap();
    let o = strata(&["verify", "--repair", "flipped-crc-0"], tmp.path());
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(s.contains("batch_crc"), "{s}");
    assert_eq!(
        std::fs::read(dir.join("00000000000000000000.log")).unwrap(),
        before
    );
}

#[test]
fn given_a_gap_between_segments_when_repaired_then_recovery_refuses_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("wrong-name", tmp.path());
    let o = strata(&["verify", "--repair", "wrong-name-0"], tmp.path());
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.contains(": refused at position 0 (recovery does not repair this"),
        "{s}"
    );
}

#[test]
fn given_a_partition_open_in_another_process_when_repaired_then_refused_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("torn-tail", tmp.path());
    let before = std::fs::read(dir.join("00000000000000000030.log")).unwrap();
    // Hold the lock as a broker would (a flock on its data directory's .lock), then as a
    // standalone engine would (on the partition's), from an open file in this process.
    for holder in [tmp.path().join(".lock"), dir.join(".lock")] {
        let lock = std::fs::File::create(&holder).unwrap();
        lock.try_lock().unwrap();
        let o = strata(&["verify", "--repair", "torn-tail-0"], tmp.path());
        assert_eq!(o.status.code(), Some(2), "{}", holder.display());
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(err.contains("held by a running process"), "{err}");
        assert_eq!(
            std::fs::read(dir.join("00000000000000000030.log")).unwrap(),
            before
        );
        drop(lock);
    }
}

/// A partition of three segments (offsets 0..15, 15..30, 30..45) closed cleanly, with one byte
/// of the batch at offset 18 (the second batch of the middle segment) flipped.
fn damaged_middle(tmp: &std::path::Path) -> (std::path::PathBuf, usize) {
    let dir = tmp.join("t-0");
    let log = open(&dir);
    write_three_segments(&log);
    log.close().unwrap();
    let seg = dir.join("00000000000000000015.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let (pos, len) = batch_positions(&bytes)[1];
    bytes[pos + len - 3] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    (dir, pos)
}

#[test]
fn given_damage_in_a_sealed_segment_when_repaired_with_truncate_at_damage_then_it_is_cut_and_kept_in_quarantine()
 {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, damage_at) = damaged_middle(tmp.path());
    let seg = dir.join("00000000000000000015.log");
    let damaged = std::fs::read(&seg).unwrap();
    let last = std::fs::read(dir.join("00000000000000000030.log")).unwrap();
    // Without the option, nothing is cut, and the report says what to do.
    let o = strata(&["verify", "--repair", "t-0"], tmp.path());
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(std::fs::read(&seg).unwrap(), damaged);

    let o = strata(
        &["verify", "--repair", "--truncate-at-damage", "t-0"],
        tmp.path(),
    );
    let s = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the cut partition verifies clean: {s}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        s.contains("the partition now ends at offset 18; lost offsets 18..=44: 24 records in batches that still decode"),
        "{s}"
    );
    // The partition ends where the damage began, and the engine opens it.
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), damage_at as u64);
    assert!(!dir.join("00000000000000000030.log").exists());
    let log = open(&dir);
    assert_eq!(log.log_end_offset(), 18);
    drop(log);
    // Everything cut is kept beside the partition, byte for byte, under a name no broker
    // takes for a partition.
    let q: Vec<std::path::PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("t-0.quarantine."))
        .collect();
    assert_eq!(q.len(), 1, "{q:?}");
    let qname = q[0].file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(strata_storage::meta::parse_partition_dir(&qname), None);
    assert_eq!(
        std::fs::read(q[0].join(format!("00000000000000000015.log.from-{damage_at}"))).unwrap(),
        damaged[damage_at..]
    );
    assert_eq!(
        std::fs::read(q[0].join("00000000000000000030.log")).unwrap(),
        last
    );
}
