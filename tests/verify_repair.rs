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
    // Hold the lock as a broker would (a flock on .lock, from an open file in this process).
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    let o = strata(&["verify", "--repair", "torn-tail-0"], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("held by a running process"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("00000000000000000030.log")).unwrap(),
        before
    );
    drop(lock);
}
