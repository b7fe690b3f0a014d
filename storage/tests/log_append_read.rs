//! Scenario: a producer appends batches and readers read them back, during and after writing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use strata_storage::Error;
use strata_storage::batch::header::BatchHeader;
use strata_storage::log::LogConfig;

#[test]
fn given_appended_batches_when_read_from_start_then_every_batch_comes_back_with_assigned_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut sent = Vec::new();
    for b in 0..50u64 {
        let batch = numbered_batch(b, 3, 100, 1_000 + b as i64);
        let info = log.append_batch(batch.clone()).unwrap();
        assert_eq!(info.base_offset, b * 3);
        assert_eq!(info.last_offset, b * 3 + 2);
        sent.push(batch);
    }
    assert_eq!(log.log_end_offset(), 150);
    assert!(log.segments().len() > 1, "16 KiB segments must have rolled");
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 50);
    for (i, (base, count, bytes)) in got.iter().enumerate() {
        assert_eq!(*base, i as u64 * 3);
        assert_eq!(*count, 3);
        // Identical to what was sent except baseOffset (bytes 0..8), which the log assigned.
        assert_eq!(bytes[8..], sent[i][8..]);
    }
}

#[test]
fn given_a_mid_batch_offset_when_read_then_the_whole_containing_batch_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for b in 0..10 {
        log.append_batch(numbered_batch(b, 5, 10, 0)).unwrap();
    }
    let s = log.read(17, 1).unwrap();
    let h = BatchHeader::parse(&s).unwrap();
    assert_eq!(h.base_offset, 15, "offset 17 lives in the batch 15..=19");
    assert_eq!(
        s.len(),
        h.total_len(),
        "max_bytes=1 still yields exactly one whole batch"
    );
    let s = log.read(15, 3 * h.total_len()).unwrap();
    assert_eq!(s.len(), 3 * h.total_len(), "three whole batches fit");
}

#[test]
fn given_offsets_outside_the_log_when_read_then_end_is_empty_and_beyond_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    assert!(
        log.read(0, 100).unwrap().is_empty(),
        "empty log, read at end"
    );
    log.append_batch(numbered_batch(0, 2, 10, 0)).unwrap();
    assert!(log.read(2, 100).unwrap().is_empty());
    assert!(matches!(
        log.read(3, 100),
        Err(Error::OffsetOutOfRange {
            offset: 3,
            log_start: 0,
            log_end: 2
        })
    ));
}

#[test]
fn given_invalid_batches_when_appended_then_they_are_refused_and_the_log_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_batch_bytes: 4096,
        ..small_config()
    };
    let log = open(dir.path(), config);
    let mut bad_crc = numbered_batch(0, 2, 10, 0);
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 1;
    assert!(matches!(
        log.append_batch(bad_crc),
        Err(Error::InvalidBatch(_))
    ));
    assert!(matches!(
        log.append_batch(vec![0; 10]),
        Err(Error::InvalidBatch(_))
    ));
    assert!(matches!(
        log.append_batch(numbered_batch(0, 1, 5000, 0)),
        Err(Error::BatchTooLarge { max: 4096, .. })
    ));
    assert_eq!(log.log_end_offset(), 0, "nothing refused took an offset");
    let info = log.append_batch(numbered_batch(1, 2, 10, 0)).unwrap();
    assert_eq!(info.base_offset, 0);
}

#[test]
fn given_a_concurrent_writer_when_readers_tail_the_log_then_they_only_ever_see_whole_valid_batches()
{
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), small_config()));
    let total_batches = 400u64;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for b in 0..total_batches {
                log.append_batch(numbered_batch(b, 2, 200, b as i64))
                    .unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut next = 0u64;
                while next < total_batches * 2 {
                    let s = log.read(next, 8192).unwrap();
                    let mut scanner =
                        strata_storage::log::scan::BatchScanner::new(&s, usize::MAX, true)
                            .expecting_offset(next - next % 2);
                    for b in scanner.by_ref() {
                        next = b.header.next_offset() as u64;
                    }
                    assert!(scanner.stop().is_none(), "reader saw {:?}", scanner.stop());
                }
                next
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        assert_eq!(r.join().unwrap(), total_batches * 2);
    }
}

#[test]
fn given_records_when_appended_through_the_records_api_then_they_decode_back_exactly() {
    use strata_storage::batch::{Compression, NewRecord, decode_records};
    for codec in [Compression::Zstd, Compression::None] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let records: Vec<NewRecord> = (0..20)
            .map(|i| {
                NewRecord::new(format!("value {i} ").repeat(20).into_bytes())
                    .with_key(format!("key-{i}").into_bytes())
                    .with_timestamp(1_700_000_000_000 + i)
                    .with_header(b"h".to_vec(), Some(vec![i as u8]))
            })
            .collect();
        log.append_records(records.clone(), codec).unwrap();
        log.append_records(records.clone(), codec).unwrap();
        let s = log.read(20, 1 << 20).unwrap();
        let h = BatchHeader::parse(&s).unwrap();
        assert_eq!(h.compression().unwrap(), codec);
        assert_eq!(h.base_offset, 20);
        let decoded = decode_records(&h, &s[..h.total_len()]).unwrap();
        assert_eq!(decoded.len(), 20);
        for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
            assert_eq!(d.offset, 20 + i as i64);
            assert_eq!(d.key, r.key);
            assert_eq!(d.value, r.value);
            assert_eq!(d.timestamp, r.timestamp);
            assert_eq!(d.headers, r.headers);
        }
    }
}

#[test]
fn given_the_records_api_when_no_codec_is_chosen_then_batches_are_zstd() {
    use strata_storage::batch::{Compression, NewRecord};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append_records([NewRecord::new(b"v".to_vec())], Compression::default())
        .unwrap();
    let s = log.read(0, 1 << 20).unwrap();
    assert_eq!(
        BatchHeader::parse(&s).unwrap().compression().unwrap(),
        Compression::Zstd
    );
}

#[test]
fn given_timestamps_across_segments_when_looked_up_then_the_first_offset_at_or_after_is_returned() {
    use strata_storage::batch::{Compression, NewRecord};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    // Record i has timestamp 1000 + 10 * i; 10 records per batch, enough to roll several times.
    for b in 0..40i64 {
        let records = (0..10).map(|r| {
            let i = b * 10 + r;
            NewRecord::new(vec![b'x'; 100]).with_timestamp(1000 + 10 * i)
        });
        log.append_records(records, Compression::None).unwrap();
    }
    assert!(log.segments().len() > 2);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some(1));
    assert_eq!(
        log.offset_for_timestamp(1000 + 10 * 123).unwrap(),
        Some(123)
    );
    assert_eq!(
        log.offset_for_timestamp(1000 + 10 * 123 - 5).unwrap(),
        Some(123)
    );
    assert_eq!(
        log.offset_for_timestamp(1000 + 10 * 399).unwrap(),
        Some(399)
    );
    assert_eq!(log.offset_for_timestamp(1000 + 10 * 400).unwrap(), None);
    // The record found carries its own timestamp, not the one asked for (Kafka answers it).
    for codec in [Compression::Zstd, Compression::Gzip] {
        let d = tempfile::tempdir().unwrap();
        let l = open(d.path(), small_config());
        l.append_records(
            [5_000, 7_000, 6_000, 9_000].map(|t| NewRecord::new("v").with_timestamp(t)),
            codec,
        )
        .unwrap();
        let hit = l.find_timestamp(6_500).unwrap().unwrap();
        assert_eq!((hit.offset, hit.timestamp), (1, 7_000), "{codec}");
        let hit = l.find_timestamp(8_000).unwrap().unwrap();
        assert_eq!((hit.offset, hit.timestamp), (3, 9_000), "{codec}");
        assert_eq!(l.find_timestamp(9_001).unwrap(), None);
    }
    // The same answers after a crash (indexes rebuilt) and after a clean close (indexes loaded).
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(
        log.offset_for_timestamp(1000 + 10 * 250 + 1).unwrap(),
        Some(251)
    );
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.offset_for_timestamp(1000 + 10 * 77).unwrap(), Some(77));
}

#[test]
fn given_a_validated_batch_when_appended_then_it_is_stored_and_the_limit_still_applies() {
    use strata_storage::batch::header::ValidBatch;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_batch_bytes: 4096,
        ..small_config()
    };
    let log = open(dir.path(), config);
    let b = numbered_batch(0, 3, 50, 7);
    let valid = ValidBatch::new(b.clone(), 1 << 20).unwrap();
    assert_eq!(log.append_validated(valid).unwrap().base_offset, 0);
    let mut bad = b.clone();
    bad[30] ^= 1;
    assert!(
        ValidBatch::new(bad, 1 << 20).is_err(),
        "validation is where the CRC is checked"
    );
    let big = ValidBatch::new(numbered_batch(1, 1, 5000, 0), 1 << 20).unwrap();
    assert!(matches!(
        log.append_validated(big),
        Err(Error::BatchTooLarge { max: 4096, .. })
    ));
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2[8..], b[8..]);
}

#[test]
fn given_batches_sliced_from_one_shared_buffer_when_appended_then_offsets_are_assigned_on_disk_and_the_buffer_is_untouched()
 {
    // As the broker appends them: every batch of a request is a slice of the request's frame.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut frame = b"request header".to_vec();
    let mut ranges = Vec::new();
    for b in 0..3u64 {
        let mut batch = numbered_batch(b, 2, 40, 5);
        batch[..8].copy_from_slice(&1234i64.to_be_bytes()); // a client's baseOffset, ignored
        ranges.push(frame.len()..frame.len() + batch.len());
        frame.extend_from_slice(&batch);
    }
    let frame = bytes::Bytes::from(frame);
    let before = frame.to_vec();
    for (i, r) in ranges.iter().enumerate() {
        let info = log.append_batch(frame.slice(r.clone())).unwrap();
        assert_eq!(info.base_offset, i as u64 * 2);
    }
    assert_eq!(frame.to_vec(), before, "the shared buffer is never written");
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 3);
    for (i, (base, _, bytes)) in got.iter().enumerate() {
        assert_eq!(*base, i as u64 * 2);
        assert_eq!(
            bytes[..8],
            (i as i64 * 2).to_be_bytes(),
            "baseOffset on disk"
        );
        assert_eq!(bytes[8..], frame[ranges[i].clone()][8..]);
    }
    // And after a crash-reopen, recovery reads the same offsets from the file.
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, 0).len(), 3);
    assert_eq!(log.log_end_offset(), 6);
}

#[test]
fn given_records_stamped_zero_in_a_rolled_segment_then_their_timestamp_is_found_and_reported() {
    use strata_storage::batch::{Compression, NewRecord};
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append_records([NewRecord::new("a").with_timestamp(0)], Compression::None)
        .unwrap();
    log.roll().unwrap();
    let second = log.log_end_offset();
    log.append_records(
        (0..3).map(|_| NewRecord::new("b").with_timestamp(0)),
        Compression::None,
    )
    .unwrap();
    let segs = log.segments();
    assert_eq!(segs.len(), 2);
    assert_eq!(
        segs[1].max_timestamp, 0,
        "a new segment starts with no timestamp"
    );
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((0, 0)));
    let hit = log.find_timestamp(0).unwrap().unwrap();
    assert_eq!((hit.offset, hit.timestamp), (0, 0));
    assert!(second > 0);
}
