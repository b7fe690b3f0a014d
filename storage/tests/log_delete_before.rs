//! Scenario: a log that keeps its own snapshot drops every whole segment below the snapshot,
//! never the active one, and reopens with the log start moved.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;

#[test]
fn given_sealed_segments_when_deleting_before_an_offset_then_only_whole_segments_below_it_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for b in 0..200 {
        log.append_batch(numbered_batch(b, 2, 200, 0)).unwrap();
    }
    let before = log.segments();
    assert!(
        before.len() >= 4,
        "needs several segments: {}",
        before.len()
    );
    // An offset in the middle of the third segment: the first two go, the third stays.
    let cut = (before[2].base_offset + before[2].next_offset) / 2;
    let report = log.delete_segments_before(cut).unwrap();
    assert_eq!(report.segments_deleted, 2);
    assert_eq!(report.log_start_offset, before[2].base_offset);
    assert_eq!(report.bytes_deleted, before[0].size + before[1].size);
    assert!(!before[0].path.exists() && !before[1].path.exists());
    assert_eq!(log.log_start_offset(), before[2].base_offset);
    // Past the end: every sealed segment goes, the active one stays.
    let end = log.log_end_offset();
    log.delete_segments_before(end + 10).unwrap();
    let after = log.segments();
    assert_eq!(after.len(), 1);
    assert!(after[0].active);
    assert_eq!(log.log_end_offset(), end);
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), after[0].base_offset);
    assert_eq!(log.log_end_offset(), end);
}
