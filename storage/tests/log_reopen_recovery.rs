//! Scenario: a log is reopened after a clean close, after a crash, and with damaged files.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use common::*;
use strata_storage::Error;
use strata_storage::log::name::{FileKind, segment_path};
use strata_storage::log::{LogConfig, PartitionLog, RecoveryMode};

fn fill(log: &PartitionLog, batches: u64) -> Vec<Vec<u8>> {
    (0..batches)
        .map(|b| {
            let batch = numbered_batch(b, 4, 90, 10_000 + b as i64);
            log.append_batch(batch.clone()).unwrap();
            batch
        })
        .collect()
}

/// Writes the unclean checkpoint a crash leaves when the seals had reached `recovery_point`
/// (the base of the first segment not sealed yet): recovery scans from there.
fn sealed_up_to(dir: &std::path::Path, recovery_point: u64) {
    use strata_storage::log::checkpoint::{self, Checkpoint};
    let cp = Checkpoint {
        clean: false,
        recovery_point,
        log_end_offset: 0,
        active_segment_len: 0,
    };
    checkpoint::write(backend().as_ref(), dir, &cp).unwrap();
}

fn assert_same(got: &[(u64, u32, Vec<u8>)], sent: &[Vec<u8>]) {
    assert_eq!(got.len(), sent.len());
    for (i, (base, _, bytes)) in got.iter().enumerate() {
        assert_eq!(*base, i as u64 * 4);
        assert_eq!(bytes[8..], sent[i][8..], "batch {i}");
    }
}

#[test]
fn given_a_clean_close_when_reopened_then_nothing_is_scanned_and_everything_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 60);
    let segments = log.segments().len();
    log.close().unwrap();

    let log = open(dir.path(), small_config());
    let r = log.recovery_report();
    assert!(r.clean, "{r:?}");
    assert_eq!(r.segments_scanned, 0);
    assert_eq!(r.indexes_rebuilt, 0);
    assert_eq!(log.segments().len(), segments);
    assert_eq!(log.log_end_offset(), 240);
    assert_same(&read_all(&log, 0), &sent);
    // And it keeps appending where it left off.
    assert_eq!(
        log.append_batch(numbered_batch(99, 1, 1, 0))
            .unwrap()
            .base_offset,
        240
    );
}

#[test]
fn given_a_crash_when_reopened_then_segments_past_the_recovery_point_are_scanned_and_all_data_is_there()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 60);
    // Rolled segments are sealed in the background; once that is done, only the active
    // segment lies past the recovery point.
    log.wait_for_seals().unwrap();
    drop(log); // no close: like a crash of the process

    let log = open(dir.path(), small_config());
    let r = log.recovery_report().clone();
    assert!(!r.clean);
    assert_eq!(
        r.segments_scanned, 1,
        "only the active segment is past the recovery point"
    );
    assert!(r.truncated.is_empty());
    assert_same(&read_all(&log, 0), &sent);
    // A second reopen after the recovery is just as good.
    drop(log);
    let log = open(dir.path(), small_config());
    assert_same(&read_all(&log, 0), &sent);
}

#[test]
fn given_a_crash_while_rolled_segments_await_sealing_when_reopened_then_they_are_scanned_and_all_data_is_there()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 60);
    let segments = log.segments().len();
    drop(log); // the sealer may not have reached the last rolled segments

    let log = open(dir.path(), small_config());
    let r = log.recovery_report().clone();
    assert!(!r.clean);
    assert!(
        (1..=segments).contains(&r.segments_scanned),
        "{r:?} with {segments} segments"
    );
    assert!(r.truncated.is_empty());
    assert_same(&read_all(&log, 0), &sent);
}

/// The entries of a segment's index file of `kind` as it is on disk (`None` if it does not
/// check out).
fn entries_on_disk(
    seg: &strata_storage::log::SegmentInfo,
    kind: strata_storage::log::index::IndexKind,
) -> Option<usize> {
    use strata_storage::log::index::{IndexKind, check_file};
    let (ext, entry) = match kind {
        IndexKind::Offset => ("index", 8),
        IndexKind::Time => ("timeindex", 12),
    };
    let bytes = std::fs::read(seg.path.with_extension(ext)).ok()?;
    check_file(kind, seg.base_offset, &bytes)
        .ok()
        .map(|body| body.len() / entry)
}

#[test]
fn given_rolled_segments_a_crash_caught_before_their_seal_when_reopened_then_their_indexes_are_rebuilt_written_and_trusted_next_time()
 {
    use strata_storage::log::index::IndexKind;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 150);
    log.wait_for_seals().unwrap();
    let segs = log.segments();
    assert!(segs.len() > 3, "{segs:?}");
    drop(log); // a crash
    // What a crash leaves when only the first rolled segment was sealed: the later ones hold
    // the empty index files they were created with, and the recovery point is the second
    // segment's base.
    for seg in &segs[1..] {
        for (kind, ext) in [(IndexKind::Offset, "index"), (IndexKind::Time, "timeindex")] {
            let empty = match kind {
                IndexKind::Offset => {
                    strata_storage::log::index::OffsetIndex::new().encode(seg.base_offset)
                }
                IndexKind::Time => {
                    strata_storage::log::index::TimeIndex::new().encode(seg.base_offset)
                }
            };
            std::fs::write(seg.path.with_extension(ext), empty).unwrap();
        }
    }
    sealed_up_to(dir.path(), segs[1].base_offset);

    // The first open scans them and takes the scan's indexes, not the empty files (the active
    // segment's too), and writes the sealed ones' files, since it now trusts them.
    let log = open(dir.path(), small_config());
    assert_eq!(log.recovery_report().segments_scanned, segs.len() - 1);
    assert_same(&read_all(&log, 0), &sent);
    let reopened = log.segments();
    assert_eq!(
        reopened, segs,
        "the same segments, ends and largest timestamps"
    );
    for seg in &segs[1..segs.len() - 1] {
        for kind in [IndexKind::Offset, IndexKind::Time] {
            let n = entries_on_disk(seg, kind).unwrap();
            assert!(
                n > 0,
                "{kind:?} of {} written with entries",
                seg.base_offset
            );
        }
    }
    // The active segment's files are written by its clean close, from the scan's indexes.
    log.close().unwrap();
    let active = segs.last().unwrap();
    assert!(entries_on_disk(active, IndexKind::Offset).unwrap() > 0);
    assert!(entries_on_disk(active, IndexKind::Time).unwrap() > 0);

    // The next open trusts all of them and rebuilds nothing.
    let log = open(dir.path(), small_config());
    let r = log.recovery_report().clone();
    assert!(r.clean, "{r:?}");
    assert_eq!(r.indexes_rebuilt, 0, "{r:?}");
    assert_eq!(log.segments(), segs);
    assert_same(&read_all(&log, 0), &sent);
}

#[test]
fn given_a_rolled_segment_cut_short_and_only_an_empty_segment_after_it_in_the_same_boot_when_reopened_then_it_is_a_crash_tail()
 {
    // In the same boot the only tail a crash leaves is a batch cut short by a write that never
    // finished, with nothing written after it: here the last batch of a rolled segment whose
    // roll already created the next, still empty, segment. That is a crash tail (cut, and the
    // empty segment after it goes), not damage.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 150);
    log.roll().unwrap();
    log.wait_for_seals().unwrap();
    let segs = log.segments();
    drop(log); // a crash of the process
    let empty = segs.last().unwrap();
    assert_eq!(empty.size, 0);
    let cut = &segs[segs.len() - 2];
    let f = OpenOptions::new().write(true).open(&cut.path).unwrap();
    f.set_len(cut.size - 10).unwrap();
    drop(f);
    // As if the seal of the cut segment had not run: the recovery point is its base.
    sealed_up_to(dir.path(), cut.base_offset);

    let log = open(dir.path(), small_config());
    let r = log.recovery_report().clone();
    assert_eq!(r.truncated.len(), 1, "{r:?}");
    assert_eq!(r.truncated[0].0, cut.path);
    let got = read_all(&log, 0);
    assert_eq!(got.len(), sent.len() - 1, "every batch but the cut one");
    assert_same(&got, &sent[..sent.len() - 1]);
    assert_eq!(log.log_end_offset(), cut.next_offset - 4);
}

#[test]
fn given_a_torn_tail_when_reopened_then_it_is_truncated_and_every_whole_batch_survives() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 30);
    let active = log.segments().last().unwrap().clone();
    drop(log);
    // Half a batch written after the last one, as a crash in the middle of a write leaves it
    // (under the direct write path the file ends where that write stopped, past the zero
    // padding the previous one ended with).
    let half = numbered_batch(777, 4, 90, 0);
    let f = OpenOptions::new().write(true).open(&active.path).unwrap();
    f.set_len(active.size).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &half[..half.len() / 2], active.size).unwrap();
    drop(f);
    let file_len = std::fs::metadata(&active.path).unwrap().len();

    let log = open(dir.path(), small_config());
    let r = log.recovery_report();
    assert_eq!(r.truncated.len(), 1, "{r:?}");
    assert_eq!(r.truncated[0].1, active.size);
    assert_eq!(r.truncated[0].2, file_len - active.size);
    assert_same(&read_all(&log, 0), &sent);
    assert_eq!(std::fs::metadata(&active.path).unwrap().len(), active.size);
}

#[test]
fn given_a_damaged_header_after_a_sealed_segments_last_index_entry_when_reopened_then_open_fails_naming_file_and_position()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    fill(&log, 150);
    let first = log.segments()[0].clone();
    let batches: Vec<u64> = read_all(&log, 0)
        .iter()
        .take_while(|b| b.0 < first.next_offset)
        .map(|b| b.2.len() as u64)
        .collect();
    log.close().unwrap(); // every sealed segment is synced and below the recovery point
    // The last batch of the sealed segment lies after its last index entry: opening walks it
    // (that is how a trusted segment's end is found), so its damage is seen at once.
    let last_batch = batches[..batches.len() - 1].iter().sum::<u64>();
    let mut f = OpenOptions::new().write(true).open(&first.path).unwrap();
    f.seek(SeekFrom::Start(last_batch + 8)).unwrap();
    f.write_all(&0x7fff_0000i32.to_be_bytes()).unwrap();
    drop(f);

    let err = PartitionLog::open(dir.path(), small_config(), backend()).unwrap_err();
    match err {
        Error::Corrupt {
            file,
            position,
            reason,
        } => {
            assert_eq!(file, first.path);
            assert_eq!(position, last_batch);
            // The length it claims runs past the file.
            assert!(
                reason.contains("2147418124") && reason.contains("synced and sealed"),
                "{reason}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // The tolerant mode truncates there instead, dropping every later segment.
    let config = LogConfig {
        recovery: RecoveryMode::TruncateAtCorruption,
        ..small_config()
    };
    let before = strata_storage::testing::segment_files(dir.path());
    assert!(before > 2, "{before} segments");
    let log = PartitionLog::open(dir.path(), config, backend()).unwrap();
    assert_eq!(log.segments().len(), 1);
    assert_eq!(
        log.log_end_offset(),
        4 * (batches.len() as u64 - 1),
        "every batch before the damaged one survives"
    );
    assert_eq!(log.recovery_report().segments_removed, before - 1);
    assert_eq!(strata_storage::testing::segment_files(dir.path()), 1);
    read_all(&log, 0);
}

#[test]
fn given_a_damaged_header_inside_a_sealed_segment_when_reopened_then_it_is_not_walked_and_a_read_of_it_names_file_and_position()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    fill(&log, 60);
    let first = log.segments()[0].clone();
    let second_batch = read_all(&log, 0)[1].2.len() as u64; // position of batch #2 = size of #1
    log.close().unwrap();
    let mut f = OpenOptions::new().write(true).open(&first.path).unwrap();
    f.seek(SeekFrom::Start(second_batch + 8)).unwrap();
    f.write_all(&0x7fff_0000i32.to_be_bytes()).unwrap();
    drop(f);
    // A clean start trusts the sealed segment's indexes (Kafka loads segments lazily too): it
    // is not walked, so it opens. What is damaged is for `strata verify` to find, and a read of
    // it fails, naming the file and position, instead of returning bad bytes.
    let log = PartitionLog::open(dir.path(), small_config(), backend()).unwrap();
    assert_eq!(log.recovery_report().segments_scanned, 0);
    match log.read(4, 1 << 20) {
        Err(Error::Corrupt { file, position, .. }) => {
            assert_eq!(file, first.path);
            assert_eq!(position, second_batch);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        log.read(first.next_offset, 1 << 20).is_ok(),
        "later segments read"
    );
}

/// A log whose first segment holds a flipped byte at position 500 and no checkpoint: nothing is
/// known durable, as after a crash before the first seal finished.
fn damage_past_the_recovery_point(dir: &std::path::Path) -> (Vec<Vec<u8>>, std::path::PathBuf) {
    let log = open(dir, small_config());
    let sent = fill(&log, 150);
    let first = log.segments()[0].clone();
    drop(log);
    std::fs::remove_file(dir.join("checkpoint")).unwrap();
    let mut f = OpenOptions::new().write(true).open(&first.path).unwrap();
    f.seek(SeekFrom::Start(500)).unwrap();
    f.write_all(&[0xff]).unwrap();
    (sent, first.path)
}

#[test]
fn given_damage_past_the_recovery_point_after_a_machine_crash_when_reopened_then_the_log_ends_there()
 {
    let dir = tempfile::tempdir().unwrap();
    let (sent, first) = damage_past_the_recovery_point(dir.path());
    // A power cut can leave a garbled unsynced tail with good batches after it.
    as_if_rebooted(dir.path());

    let before = strata_storage::testing::segment_files(dir.path());
    assert!(before > 2, "{before} segments");
    let log = PartitionLog::open(dir.path(), small_config(), backend()).unwrap();
    let r = log.recovery_report().clone();
    assert_eq!(r.truncated.len(), 1, "{r:?}");
    assert_eq!(r.truncated[0].0, first);
    assert!(r.truncated[0].1 <= 500);
    assert!(r.truncated[0].3.contains("CRC"), "{:?}", r.truncated[0].3);
    assert_eq!(r.segments_removed, before - 1, "{r:?}");
    assert_eq!(strata_storage::testing::segment_files(dir.path()), 1);
    let kept = read_all(&log, 0);
    assert_same(&kept, &sent[..kept.len()]);
    assert_eq!(log.segments().len(), 1);
}

#[test]
fn given_damage_past_the_recovery_point_in_the_same_boot_when_reopened_then_open_fails_and_nothing_is_cut()
 {
    let dir = tempfile::tempdir().unwrap();
    let (_, first) = damage_past_the_recovery_point(dir.path());
    let sizes: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    // The page cache outlived the process: a flipped byte with good batches after it is
    // damage, not what a crash leaves, and recovery must not drop the batches after it.
    match PartitionLog::open(dir.path(), small_config(), backend()).unwrap_err() {
        Error::Corrupt {
            file,
            position,
            reason,
        } => {
            assert_eq!(file, first);
            assert!(position <= 500, "{position}");
            assert!(reason.contains("CRC"), "{reason}");
            assert!(reason.contains("--truncate-at-damage"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let after: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert_eq!(sizes.len(), after.len(), "no file was removed");
    assert_eq!(
        sizes.iter().sum::<u64>(),
        after.iter().sum::<u64>(),
        "nothing was cut"
    );
}

#[test]
fn given_a_flipped_byte_inside_the_active_segment_in_the_same_boot_when_reopened_then_open_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    fill(&log, 10);
    log.wait_for_seals().unwrap();
    let active = log.segments().last().unwrap().clone();
    let batches = read_all(&log, active.base_offset);
    drop(log); // a process crash
    assert!(batches.len() >= 3);
    let middle = batches[..batches.len() / 2]
        .iter()
        .map(|b| b.2.len() as u64)
        .sum::<u64>();
    let mut f = OpenOptions::new().write(true).open(&active.path).unwrap();
    f.seek(SeekFrom::Start(middle + 40)).unwrap();
    f.write_all(&[0xa5]).unwrap();
    drop(f);
    match PartitionLog::open(dir.path(), small_config(), backend()).unwrap_err() {
        Error::Corrupt { file, position, .. } => {
            assert_eq!(file, active.path);
            assert_eq!(position, middle);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // The same bytes after a reboot are a torn unsynced tail, cut as before.
    as_if_rebooted(dir.path());
    let log = open(dir.path(), small_config());
    assert_eq!(log.recovery_report().truncated[0].1, middle);
    assert_eq!(read_all(&log, active.base_offset).len(), batches.len() / 2);
}

#[test]
fn given_a_complete_last_batch_with_a_bad_crc_in_the_same_boot_when_reopened_then_it_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    fill(&log, 3);
    let active = log.segments().last().unwrap().clone();
    drop(log);
    let len = std::fs::metadata(&active.path).unwrap().len();
    // A complete frame (the direct mode's zero padding, if any, comes after it) with one bit off.
    let last_byte = active.size - 1;
    let mut f = OpenOptions::new().write(true).open(&active.path).unwrap();
    f.seek(SeekFrom::Start(last_byte)).unwrap();
    f.write_all(&[0x01]).unwrap();
    drop(f);
    assert!(matches!(
        PartitionLog::open(dir.path(), small_config(), backend()),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(std::fs::metadata(&active.path).unwrap().len(), len);
}

#[test]
fn given_missing_or_damaged_index_files_when_reopened_then_they_are_rebuilt_and_reads_work() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 60);
    let segs = log.segments();
    log.close().unwrap();
    std::fs::remove_file(segment_path(
        dir.path(),
        segs[0].base_offset,
        FileKind::Index,
    ))
    .unwrap();
    let tidx = segment_path(dir.path(), segs[1].base_offset, FileKind::TimeIndex);
    let mut b = std::fs::read(&tidx).unwrap();
    let n = b.len();
    b[n - 1] ^= 0x40;
    std::fs::write(&tidx, b).unwrap();

    let log = open(dir.path(), small_config());
    assert_eq!(log.recovery_report().indexes_rebuilt, 2);
    assert_same(&read_all(&log, 0), &sent);
    // Rebuilt index files of sealed segments were written back: a crash-reopen trusts them.
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(
        log.recovery_report().indexes_rebuilt,
        0,
        "{:?}",
        log.recovery_report()
    );
    assert_same(&read_all(&log, 0), &sent);
    for o in [0u64, 7, 100, 239] {
        let s = log.read(o, 1).unwrap();
        let h = strata_storage::batch::BatchHeader::parse(&s).unwrap();
        assert!(h.base_offset as u64 <= o && o <= h.last_offset() as u64);
    }
}

#[test]
fn given_a_running_log_when_a_second_one_opens_the_same_dir_then_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = open(dir.path(), small_config());
    assert!(matches!(
        PartitionLog::open(dir.path(), small_config(), backend()),
        Err(Error::Locked(_))
    ));
}

#[test]
fn given_a_crash_before_a_rolled_segment_released_its_preallocation_when_reopened_then_recovery_releases_it()
 {
    use std::os::unix::fs::MetadataExt;

    const EXTRA: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 150);
    log.wait_for_seals().unwrap();
    let sealed: Vec<_> = log.segments()[..log.segments().len() - 1].to_vec();
    assert!(sealed.len() >= 2, "{sealed:?}");
    drop(log);
    // What a crash between a roll and its seal leaves: rolled segments still holding blocks
    // preallocated past their data, and a checkpoint whose recovery point lies before them.
    let allocated = |base: u64| {
        let m = std::fs::metadata(segment_path(dir.path(), base, FileKind::Log)).unwrap();
        (m.blocks() * 512, m.len())
    };
    for s in &sealed {
        let path = segment_path(dir.path(), s.base_offset, FileKind::Log);
        backend()
            .open_writable(&path)
            .unwrap()
            .preallocate(0, EXTRA)
            .unwrap();
        let (blocks, len) = allocated(s.base_offset);
        if blocks < EXTRA {
            strata_storage::testing::skip(
                "fallocate",
                "this file system does not preallocate; nothing to release",
            );
            return;
        }
        assert!(len < EXTRA, "preallocation must not change the length");
    }
    sealed_up_to(dir.path(), 0);

    let log = open(dir.path(), small_config());
    let r = log.recovery_report().clone();
    assert_eq!(r.segments_scanned as usize, sealed.len() + 1, "{r:?}");
    assert!(r.truncated.is_empty());
    for s in &sealed {
        let (blocks, len) = allocated(s.base_offset);
        assert!(
            blocks < len + 64 * 1024,
            "segment {} keeps {blocks} bytes of blocks for {len} bytes of data",
            s.base_offset
        );
    }
    assert_same(&read_all(&log, 0), &sent);
}

#[test]
fn given_a_clean_close_when_reopened_read_and_closed_without_writes_then_no_file_is_touched() {
    use std::sync::Arc;
    use strata_storage::io::faulty::FailingBackend;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let sent = fill(&log, 30);
    log.close().unwrap();
    // Opening an idle partition costs no write and no fsync (thousands open at start-up)...
    let counting = FailingBackend::counting(backend());
    let log = PartitionLog::open(dir.path(), small_config(), Arc::new(counting.clone())).unwrap();
    assert!(log.recovery_report().clean);
    assert_same(&read_all(&log, 0), &sent);
    log.close().unwrap();
    // (In direct mode the open checks that the file system takes O_DIRECT by opening the
    // active segment that way and closing it again: an open, not a write.)
    let ops = counting.first_ops();
    let writes: Vec<_> = ops.iter().filter(|op| **op != "open_direct").collect();
    assert!(
        writes.is_empty() && counting.ops() == ops.len() as u64,
        "a clean open, reads and close wrote nothing: {ops:?}"
    );
    assert!(ops.len() <= 1, "one O_DIRECT probe at most: {ops:?}");
    // ...and the clean checkpoint it keeps is replaced before the first write: a crash after it
    // is recovered from, not trusted.
    let log = PartitionLog::open(dir.path(), small_config(), Arc::new(counting.clone())).unwrap();
    log.append_batch(numbered_batch(99, 1, 10, 0)).unwrap();
    assert!(counting.syncs() > 0);
    let active = log.segments().last().unwrap().path.clone();
    drop(log);
    // A power cut tore the next batch: half of one at the end of the active segment.
    let torn = numbered_batch(100, 1, 10, 0);
    let mut f = OpenOptions::new().append(true).open(&active).unwrap();
    f.write_all(&torn[..torn.len() / 2]).unwrap();
    drop(f);
    as_if_rebooted(dir.path());
    let log = open(dir.path(), small_config());
    assert!(
        !log.recovery_report().clean,
        "the crash is not mistaken for a clean close"
    );
    assert_eq!(
        log.recovery_report().truncated.len(),
        1,
        "the torn tail is cut, not damage"
    );
    assert_eq!(read_all(&log, 0).len(), 31);
}

#[test]
fn given_a_written_log_when_closed_cleanly_then_it_creates_no_file_and_renames_none_and_reopens_clean()
 {
    // A broker closes thousands of partitions at a stop; creating or renaming a file costs ten
    // times an overwrite in place (PERFORMANCE.md, "The house"). The active segment's index
    // files exist from its creation and the checkpoint from the first open, so the close
    // only overwrites them. Each call below fails the close if it runs.
    use std::sync::Arc;
    use strata_storage::io::faulty::{FailMode, FailingBackend};
    for op in ["create_new", "rename", "remove_file"] {
        let dir = tempfile::tempdir().unwrap();
        let failing = FailingBackend::counting(backend());
        let log =
            PartitionLog::open(dir.path(), small_config(), Arc::new(failing.clone())).unwrap();
        // Enough to roll a few times: the new segments' index files are created by the rolls.
        let sent = fill(&log, 150);
        assert!(log.segments().len() > 2, "the log rolled");
        log.wait_for_seals().unwrap();
        failing.set_mode(FailMode::EveryOp(op));
        log.close()
            .unwrap_or_else(|e| panic!("the clean close ran {op}: {e}"));
        assert_eq!(failing.injected(), 0, "the clean close ran {op}");
        let log = open(dir.path(), small_config());
        let report = log.recovery_report();
        assert!(report.clean, "{op}: {report:?}");
        assert_eq!(
            report.indexes_rebuilt, 0,
            "{op}: the close wrote the index files"
        );
        assert_same(&read_all(&log, 0), &sent);
    }
}

#[test]
fn given_sealed_segments_when_reopened_after_a_crash_or_a_clean_close_then_they_load_from_their_indexes_exactly_as_they_were()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    // Timestamps that go back and forth, so a segment's largest is not its last batch's.
    for b in 0..60u64 {
        let ts = 10_000 + ((b * 7919) % 61) as i64 * 100;
        log.append_batch(numbered_batch(b, 4, 400, ts)).unwrap();
    }
    log.wait_for_seals().unwrap();
    let before = log.segments();
    let sealed = before.len() - 1;
    assert!(sealed >= 3);
    let max_ts = log.max_timestamp_offset().unwrap();
    // A crash after the seals: every sealed segment is trusted and loaded from its index files.
    drop(log);
    let log = open(dir.path(), small_config());
    let r = log.recovery_report().clone();
    assert_eq!(r.segments_loaded_from_index, sealed, "{r:?}");
    assert_eq!((r.segments_scanned, r.indexes_rebuilt), (1, 0), "{r:?}");
    assert_eq!(log.segments(), before, "segments as they were");
    assert_eq!(log.max_timestamp_offset().unwrap(), max_ts);
    // A clean close: the active one too.
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    let r = log.recovery_report().clone();
    assert!(r.clean);
    assert_eq!(r.segments_loaded_from_index, sealed + 1, "{r:?}");
    assert_eq!(r.segments_scanned, 0);
    assert_eq!(log.segments(), before);
    assert_eq!(log.max_timestamp_offset().unwrap(), max_ts);
    // Appends continue exactly where the log ended, with the index state it had.
    let info = log.append_batch(numbered_batch(60, 4, 90, 1)).unwrap();
    assert_eq!(info.base_offset, before.last().unwrap().next_offset);
}

/// What a power cut right after a clean close can leave (the close writes index files without
/// fdatasync, FORMAT.md §6): a clean checkpoint with the active segment's *older* index files.
/// They are a prefix of the new ones, and the trusted open walks every batch after their last
/// entry: it must find the exact end, and the largest timestamp even when that lies in the
/// walked tail.
#[test]
fn given_a_clean_close_whose_index_files_are_an_older_prefix_when_reopened_then_the_tail_gives_the_end_and_largest_timestamp()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 1024,
        ..small_config()
    };
    let log = open(dir.path(), config);
    for b in 0..10u64 {
        log.append_batch(numbered_batch(b, 4, 400, 10_000 + b as i64))
            .unwrap();
    }
    log.close().unwrap();
    let idx = dir.path().join("00000000000000000000.index");
    let tidx = dir.path().join("00000000000000000000.timeindex");
    let (old_idx, old_tidx) = (std::fs::read(&idx).unwrap(), std::fs::read(&tidx).unwrap());
    // More batches, the newest with the largest timestamps, then a clean close again.
    let log = open(dir.path(), config);
    for b in 10..30u64 {
        log.append_batch(numbered_batch(b, 4, 400, 50_000 + b as i64))
            .unwrap();
    }
    let end = log.log_end_offset();
    log.close().unwrap();
    // The power cut lost the new index files' renames, not the clean checkpoint's.
    std::fs::write(&idx, &old_idx).unwrap();
    std::fs::write(&tidx, &old_tidx).unwrap();
    let log = open(dir.path(), config);
    let r = log.recovery_report().clone();
    assert!(r.clean, "{r:?}");
    assert_eq!(r.segments_scanned, 0, "trusted, not walked whole: {r:?}");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0).len(), 30);
    assert_eq!(
        log.max_timestamp_offset().unwrap(),
        Some((50_032, end - 1)),
        "the largest timestamp is in the walked tail"
    );
    // Record r of batch b is stamped 50_000 + b + r: the first at or after 50_015 is batch 12's
    // last record.
    let hit = log.find_timestamp(50_015).unwrap().unwrap();
    assert_eq!((hit.offset, hit.timestamp), (12 * 4 + 3, 50_015));
    // Appends continue exactly at the end.
    log.append_batch(numbered_batch(30, 4, 400, 60_000))
        .unwrap();
    assert_eq!(log.log_end_offset(), end + 4);
}

/// A segment missing from the middle of what was synced and sealed is damage, in the same boot
/// and after a reboot alike: the open fails naming the gap, and nothing is removed. (Only past
/// the recovery point, after a machine crash, can a gap be what the crash left.)
#[test]
fn given_a_sealed_segment_missing_from_the_middle_when_reopened_in_the_same_boot_or_after_a_reboot_then_open_fails_and_nothing_is_removed()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    fill(&log, 200);
    log.wait_for_seals().unwrap();
    let segments = log.segments();
    assert!(segments.len() >= 4, "{segments:?}");
    log.close().unwrap();
    let middle = &segments[1];
    std::fs::remove_file(&middle.path).unwrap();
    // Segments, that is: the missing one's index files go (recovery removes index files
    // without a segment, FORMAT.md §7).
    let files = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count()
    };
    let before = files(dir.path());
    for reboot in [false, true] {
        if reboot {
            as_if_rebooted(dir.path());
        }
        match PartitionLog::open(dir.path(), small_config(), backend()) {
            Err(strata_storage::Error::Corrupt { reason, .. }) => {
                assert!(reason.contains("previous segment ends"), "{reason}");
            }
            Err(e) => panic!("reboot {reboot}: unexpected error {e}"),
            Ok(_) => panic!("reboot {reboot}: a missing sealed segment was accepted"),
        }
        assert_eq!(
            files(dir.path()),
            before,
            "reboot {reboot}: no segment removed"
        );
    }
}
