//! Scenario: what replication needs from the engine (Kafka's replication protocol, KIP-101 and
//! KIP-279). A follower appends the leader's batches as they are (offsets, leader epoch and
//! producer fields kept) and refuses gaps and overlaps; it truncates a divergent tail, at a
//! batch boundary, in any segment, without pulling bytes from under a reader, and the result
//! survives a reopen; the leader-epoch cache answers "where does epoch E end" and follows
//! truncation and retention; a replicated log's high watermark bounds what consumers read.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use strata_storage::Error;
use strata_storage::log::epoch::FILE_NAME as EPOCH_FILE;
use strata_storage::log::{EpochEnd, EpochEntry, LogConfig, PartitionLog, ReadBound};

/// `numbered_batch` with its baseOffset and partitionLeaderEpoch set, as a leader wrote it.
fn replica_batch(no: u64, base: u64, epoch: i32) -> Vec<u8> {
    let mut b = numbered_batch(no, 3, 100, no as i64);
    b[..8].copy_from_slice(&(base as i64).to_be_bytes());
    b[12..16].copy_from_slice(&epoch.to_be_bytes());
    b
}

/// Appends one batch of one record (100 bytes of value) per number in `nos`, stamped
/// `timestamp(number)`.
fn single_records(log: &PartitionLog, nos: std::ops::Range<u64>, timestamp: impl Fn(u64) -> i64) {
    for n in nos {
        log.append_batch(numbered_batch(n, 1, 100, timestamp(n)))
            .unwrap();
    }
}

fn epochs(entries: &[(i32, u64)]) -> Vec<EpochEntry> {
    entries
        .iter()
        .map(|&(epoch, start_offset)| EpochEntry {
            epoch,
            start_offset,
        })
        .collect()
}

#[test]
fn given_a_leaders_batches_when_appended_as_a_replica_then_they_are_stored_byte_for_byte_and_gaps_are_refused()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent: Vec<Vec<u8>> = (0..20)
        .map(|n| replica_batch(n, n * 3, if n < 10 { 4 } else { 6 }))
        .collect();
    for b in &sent {
        log.append_replica(b.clone()).unwrap();
    }
    let stored = read_all(&log, 0);
    assert_eq!(stored.len(), sent.len());
    for ((base, _, bytes), b) in stored.iter().zip(&sent) {
        assert_eq!(bytes, b, "batch at {base} stored as the leader wrote it");
    }
    // A gap and an overlap are refused; nothing is written.
    for bad in [replica_batch(99, 61, 6), replica_batch(99, 59, 6)] {
        assert!(matches!(
            log.append_replica(bad),
            Err(Error::OffsetMismatch { expected: 60, .. })
        ));
    }
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(log.leader_epochs(), epochs(&[(4, 0), (6, 30)]));
}

#[test]
fn given_a_leader_stamping_epochs_when_asked_where_an_epoch_ends_then_it_answers_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for n in 0..30u64 {
        let epoch = match n {
            0..10 => 0,
            10..20 => 2,
            _ => 5,
        };
        let info = log
            .append_as_leader(numbered_batch(n, 2, 100, n as i64), epoch)
            .unwrap();
        let s = log.read(info.base_offset, 1).unwrap();
        assert_eq!(
            i32::from_be_bytes(s[12..16].try_into().unwrap()),
            epoch,
            "the batch carries the leader's epoch"
        );
    }
    assert_eq!(log.leader_epochs(), epochs(&[(0, 0), (2, 20), (5, 40)]));
    let end = |e| log.end_offset_for_epoch(e);
    assert_eq!(
        end(0),
        EpochEnd {
            epoch: 0,
            end_offset: 20
        }
    );
    assert_eq!(
        end(1),
        EpochEnd {
            epoch: 0,
            end_offset: 20
        }
    );
    assert_eq!(
        end(2),
        EpochEnd {
            epoch: 2,
            end_offset: 40
        }
    );
    assert_eq!(
        end(5),
        EpochEnd {
            epoch: 5,
            end_offset: 60
        }
    );
    assert_eq!(end(7), EpochEnd::UNDEFINED);
    // The cache is a file, and survives a crash and a reopen.
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.leader_epochs(), epochs(&[(0, 0), (2, 20), (5, 40)]));
    // Damaged or missing, it is rebuilt from the batches' headers.
    drop(log);
    std::fs::write(dir.path().join(EPOCH_FILE), b"0\n3\n0 0\n").unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.leader_epochs(), epochs(&[(0, 0), (2, 20), (5, 40)]));
    assert_eq!(
        std::fs::read(dir.path().join(EPOCH_FILE)).unwrap(),
        b"0\n3\n0 0\n2 20\n5 40\n",
        "the rebuilt cache is written"
    );
    // Entries past the log end (written before a batch a crash lost) are dropped at open.
    drop(log);
    std::fs::write(
        dir.path().join(EPOCH_FILE),
        b"0\n4\n0 0\n2 20\n5 40\n9 60\n",
    )
    .unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.leader_epochs(), epochs(&[(0, 0), (2, 20), (5, 40)]));
}

/// 60 batches of 3 records (offsets 0..180) over several small segments.
fn filled(dir: &std::path::Path) -> (PartitionLog, Vec<(u64, u32, Vec<u8>)>) {
    let log = open(dir, small_config());
    for n in 0..60u64 {
        log.append_as_leader(numbered_batch(n, 3, 1_000, n as i64), (n / 20) as i32)
            .unwrap();
    }
    let all = read_all(&log, 0);
    (log, all)
}

#[test]
fn given_a_divergent_tail_when_truncated_inside_a_batch_then_that_batch_and_all_after_it_go_and_appends_continue()
 {
    let dir = tempfile::tempdir().unwrap();
    let (log, all) = filled(dir.path());
    assert!(log.segments().len() > 3, "several segments");
    // Offset 100 lies inside the batch 99..102: it goes, and the log ends at 99.
    assert_eq!(log.truncate_to(100).unwrap(), 99);
    assert_eq!(log.log_end_offset(), 99);
    let kept: Vec<_> = all.iter().filter(|(b, _, _)| *b < 99).cloned().collect();
    assert_eq!(read_all(&log, 0), kept);
    assert_eq!(log.leader_epochs(), epochs(&[(0, 0), (1, 60)]));
    assert!(matches!(
        log.read(100, 1),
        Err(Error::OffsetOutOfRange { log_end: 99, .. })
    ));
    // The leader's next epoch writes from the new end.
    let info = log
        .append_as_leader(numbered_batch(500, 3, 100, 500), 7)
        .unwrap();
    assert_eq!(info.base_offset, 99);
    assert_eq!(log.leader_epochs(), epochs(&[(0, 0), (1, 60), (7, 99)]));
    let mut expected = kept.clone();
    expected.push(read_all(&log, 99).remove(0));
    // A crash right after, and a clean close, both keep exactly that.
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, 0), expected);
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert!(log.recovery_report().clean);
    assert_eq!(read_all(&log, 0), expected);
    assert_eq!(log.leader_epochs(), epochs(&[(0, 0), (1, 60), (7, 99)]));
}

#[test]
fn given_a_truncation_at_a_segment_start_or_below_the_log_start_then_whole_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let (log, all) = filled(dir.path());
    let segs = log.segments();
    let boundary = segs[2].base_offset;
    assert_eq!(log.truncate_to(boundary).unwrap(), boundary);
    assert_eq!(
        log.segments().len(),
        2,
        "the segment starting there went whole"
    );
    assert!(log.segments()[1].active, "the one before is active again");
    let kept: Vec<_> = all
        .iter()
        .filter(|(b, _, _)| *b < boundary)
        .cloned()
        .collect();
    assert_eq!(read_all(&log, 0), kept);
    log.append_batch(numbered_batch(900, 3, 100, 900)).unwrap();
    assert_eq!(log.log_end_offset(), boundary + 3);
    // At or past the end: nothing happens.
    assert_eq!(log.truncate_to(10_000).unwrap(), boundary + 3);
    // At the log start: the log is emptied and starts again there (Kafka's
    // truncateFullyAndStartAt); so is one emptied at any offset.
    assert_eq!(log.truncate_to(0).unwrap(), 0);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(log.leader_epochs().is_empty());
    log.truncate_fully_and_start_at(1_000).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (1_000, 1_000)
    );
    let info = log.append_batch(numbered_batch(1, 3, 100, 1)).unwrap();
    assert_eq!(info.base_offset, 1_000);
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (1_000, 1_003)
    );
}

#[test]
fn given_a_truncation_at_the_last_segments_start_or_inside_the_first_batch_then_exactly_the_batches_before_stay()
 {
    // The segment before the cut keeps all of its bytes, whatever the sizes of the segments
    // after it (the last one here holds a single batch).
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path());
    log.append_as_leader(numbered_batch(60, 3, 1_000, 60), 3)
        .unwrap();
    let all = read_all(&log, 0);
    let segs = log.segments();
    let last = segs.last().unwrap();
    assert!(last.size < segs[segs.len() - 2].size, "{segs:?}");
    let boundary = last.base_offset;
    assert_eq!(log.truncate_to(boundary).unwrap(), boundary);
    assert_eq!(log.segments().len(), segs.len() - 1);
    assert_eq!(
        log.segments().last().unwrap().size,
        segs[segs.len() - 2].size
    );
    let kept: Vec<_> = all
        .iter()
        .filter(|(b, _, _)| *b < boundary)
        .cloned()
        .collect();
    assert_eq!(read_all(&log, 0), kept);
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, 0), kept);
    // Inside the log's very first batch (0..=2): it goes, and the log is empty at 0.
    assert_eq!(log.truncate_to(2).unwrap(), 0);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(read_all(&log, 0).is_empty());
}

#[test]
fn given_a_reader_holding_the_bytes_a_truncation_cuts_then_the_truncation_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path());
    // A batch of a sealed segment: read through the file's mapping in either write mode.
    let cut = log.segments()[1].base_offset + 3;
    let held = log.read(cut, 1).unwrap();
    assert!(!held.is_staged());
    let copy = held.to_vec();
    let end = cut;
    let log = std::sync::Arc::new(log);
    let (tx, rx) = std::sync::mpsc::channel();
    let truncating = {
        let log = log.clone();
        std::thread::spawn(move || {
            let r = log.truncate_to(end);
            tx.send(()).unwrap();
            r
        })
    };
    // While the slice is held the cut cannot finish (the file keeps the bytes).
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the truncation waits for the reader"
    );
    assert_eq!(&held[..], &copy[..], "the reader's bytes are intact");
    drop(held);
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(truncating.join().unwrap().unwrap(), end);
    let active = log.segments().last().unwrap().clone();
    assert_eq!(log.segments().len(), 2, "the cut segment is active again");
    assert_eq!(
        std::fs::metadata(&active.path).unwrap().len(),
        active.size,
        "the file was cut once the reader let go"
    );
}

#[test]
fn given_a_replicated_log_when_the_high_watermark_is_behind_then_consumer_reads_stop_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        replicated: true,
        ..small_config()
    };
    let log = open(dir.path(), config);
    for n in 0..10u64 {
        log.append_replica(replica_batch(n, n * 3, 1)).unwrap();
    }
    assert_eq!(log.high_watermark(), 0, "nothing committed yet");
    assert!(
        log.read_bounded(0, usize::MAX, ReadBound::HighWatermark)
            .unwrap()
            .is_empty()
    );
    assert_eq!(log.set_high_watermark(12), 12);
    let committed = log
        .read_bounded(0, usize::MAX, ReadBound::HighWatermark)
        .unwrap();
    let mut pos = 0;
    let mut next = 0;
    while pos < committed.len() {
        let h = strata_storage::batch::BatchHeader::parse(&committed[pos..]).unwrap();
        assert!(
            h.last_offset() < 12,
            "nothing at or past the high watermark"
        );
        next = h.last_offset() + 1;
        pos += h.total_len();
    }
    assert_eq!(next, 12);
    drop(committed);
    // Between the high watermark and the log end a consumer reads nothing; a follower reads on.
    assert!(
        log.read_bounded(12, 1, ReadBound::HighWatermark)
            .unwrap()
            .is_empty()
    );
    assert!(
        !log.read_bounded(12, 1, ReadBound::LogEnd)
            .unwrap()
            .is_empty()
    );
    // Bounded by the log end; a truncation below it pulls it down.
    assert_eq!(log.set_high_watermark(1_000), 30);
    log.truncate_to(15).unwrap();
    assert_eq!(log.high_watermark(), 15);
    // Not replicated: the high watermark is the log end.
    let plain = tempfile::tempdir().unwrap();
    let log = open(plain.path(), small_config());
    log.append_batch(numbered_batch(0, 3, 10, 0)).unwrap();
    assert_eq!(log.high_watermark(), 3);
}

#[test]
fn given_batches_without_timestamps_when_truncated_then_the_active_segment_still_has_no_largest_timestamp()
 {
    // (-1: retention by time then uses the file's modification time, as Kafka does.)
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    // One record each: its batch's largest timestamp is then -1 too.
    single_records(&log, 0..10, |_| -1);
    assert_eq!(log.segments().last().unwrap().max_timestamp, -1);
    assert_eq!(log.truncate_to(5).unwrap(), 5);
    assert_eq!(log.segments().last().unwrap().max_timestamp, -1);
    // Emptied and started again elsewhere, likewise.
    log.truncate_fully_and_start_at(100).unwrap();
    log.append_batch(numbered_batch(10, 1, 10, -1)).unwrap();
    assert_eq!(log.segments().last().unwrap().max_timestamp, -1);
}

#[test]
fn given_a_truncation_inside_the_active_segment_then_its_largest_timestamp_is_that_of_the_batches_kept()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    single_records(&log, 0..40, |n| 1_000 + n as i64);
    let active = log.segments().last().unwrap().clone();
    let cut = active.base_offset + (active.next_offset - active.base_offset) / 2 + 1;
    assert_eq!(log.truncate_to(cut).unwrap(), cut);
    let seg = log.segments().last().unwrap().clone();
    assert_eq!(seg.base_offset, active.base_offset);
    assert_eq!(seg.max_timestamp, 1_000 + cut as i64 - 1);
}

#[test]
fn given_the_largest_timestamp_before_the_last_index_entry_when_truncated_after_it_then_the_segment_keeps_it()
 {
    // Timestamps that fall: the largest is the first batch's, which the time index holds; the
    // batches walked after the last index entry are all older.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    single_records(&log, 0..40, |n| 100_000 - n as i64);
    let active = log.segments().last().unwrap().clone();
    let cut = active.next_offset - 1;
    assert_eq!(log.truncate_to(cut).unwrap(), cut);
    let seg = log.segments().last().unwrap().clone();
    assert_eq!(seg.max_timestamp, 100_000 - active.base_offset as i64);
}

#[test]
fn given_a_truncation_after_a_timestamp_peak_when_more_is_appended_then_lookups_by_that_timestamp_still_find_it()
 {
    // The new active segment's writer carries the peak (and its offset) into the time-index
    // entries it adds after the truncation.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    single_records(&log, 0..20, |n| 1_000 + n as i64);
    log.roll().unwrap();
    let base = log.log_end_offset();
    for n in 0..2u64 {
        log.append_batch(numbered_batch(100 + n, 1, 100, 2_000))
            .unwrap();
    }
    let peak = log
        .append_batch(numbered_batch(200, 1, 100, 900_000))
        .unwrap()
        .base_offset;
    assert_eq!(peak, base + 2);
    for n in 0..30u64 {
        log.append_batch(numbered_batch(300 + n, 1, 100, 2_100))
            .unwrap();
    }
    let end = log.log_end_offset();
    assert_eq!(log.truncate_to(end - 1).unwrap(), end - 1);
    for n in 0..30u64 {
        log.append_batch(numbered_batch(400 + n, 1, 100, 2_200))
            .unwrap();
    }
    assert_eq!(log.offset_for_timestamp(900_000).unwrap(), Some(peak));
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((900_000, peak)));
    // And after the index files are written and read back.
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.offset_for_timestamp(900_000).unwrap(), Some(peak));
}
