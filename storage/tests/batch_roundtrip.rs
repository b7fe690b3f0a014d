//! Scenario: records built with `BatchBuilder` in every codec come back exactly from
//! `validate_batch` + `decode_records`, whatever their keys, values, headers and timestamps.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use strata_storage::batch::header::{
    self, ATTR_LOG_APPEND_TIME, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use strata_storage::batch::record::{decode_records_with_limit, records};
use strata_storage::batch::{
    BatchBuilder, BatchError, Compression, NewRecord, Record, RecordHeader, decode_records,
    validate_batch,
};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const MAX: usize = 8 << 20;

fn hdr(key: &[u8], value: Option<&[u8]>) -> RecordHeader {
    RecordHeader {
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec),
    }
}

/// Every awkward shape a record can have.
fn awkward_records() -> Vec<NewRecord> {
    let base = 1_700_000_000_000;
    vec![
        NewRecord::new("first").with_key("k").with_timestamp(base),
        // null key and null value
        NewRecord {
            timestamp: base + 10,
            ..NewRecord::default()
        },
        // empty key and empty value, distinct from null
        NewRecord::new(Vec::new())
            .with_key(Vec::new())
            .with_timestamp(base - 5),
        // non-UTF-8 bytes everywhere
        NewRecord::new(vec![0xff, 0xfe, 0x00, 0x80])
            .with_key(vec![0xc3, 0x28])
            .with_header(vec![0xff, 0x00], Some(vec![0x80]))
            .with_timestamp(base - 1_000_000),
        // duplicate header keys, a null header value and an empty header key, order kept
        NewRecord::new("dup")
            .with_header("trace", Some(b"1".to_vec()))
            .with_header("trace", Some(b"2".to_vec()))
            .with_header("trace", None)
            .with_header("", Some(Vec::new()))
            .with_timestamp(base + 3),
        // many headers
        NewRecord {
            value: Some(vec![7; 3000]),
            headers: (0..300)
                .map(|i| hdr(format!("h{i}").as_bytes(), Some(&[i as u8; 5])))
                .collect(),
            timestamp: base + 2,
            ..NewRecord::default()
        },
        // a large value that spans several compression blocks
        NewRecord::new(
            (0..200_000u32)
                .map(|i| (i * 7 % 256) as u8)
                .collect::<Vec<_>>(),
        )
        .with_timestamp(base),
    ]
}

fn expected(records: &[NewRecord], base_offset: i64) -> Vec<Record> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: base_offset + i as i64,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect()
}

fn build(codec: Compression, records: &[NewRecord]) -> Vec<u8> {
    let mut b = BatchBuilder::new(codec);
    for r in records {
        b.push(r.clone()).unwrap();
    }
    b.build().unwrap()
}

#[test]
fn given_awkward_records_when_built_in_each_codec_then_batch_decodes_to_the_same_records() {
    let input = awkward_records();
    for codec in CODECS {
        let batch = build(codec, &input);
        let h = validate_batch(&batch, MAX).unwrap();
        assert_eq!(h.compression().unwrap(), codec);
        assert_eq!(
            decode_records(&h, &batch).unwrap(),
            expected(&input, 0),
            "{codec}"
        );
    }
}

#[test]
fn given_a_built_batch_then_header_fields_follow_kafka_producer_conventions() {
    let input = awkward_records();
    for codec in CODECS {
        let batch = build(codec, &input);
        let h = validate_batch(&batch, MAX).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.partition_leader_epoch, -1);
        assert_eq!(h.magic, 2);
        assert_eq!(h.attributes, i16::from(codec.id()));
        assert_eq!(h.record_count, input.len() as i32);
        assert_eq!(h.last_offset_delta, input.len() as i32 - 1);
        // baseTimestamp is the first record's, not the smallest (record 3 is earlier).
        assert_eq!(h.base_timestamp, input[0].timestamp);
        assert_eq!(
            h.max_timestamp,
            input.iter().map(|r| r.timestamp).max().unwrap()
        );
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE)
        );
        assert_eq!(h.total_len(), batch.len());
    }
}

#[test]
fn given_producer_fields_when_batch_built_then_header_carries_them() {
    let mut b = BatchBuilder::new(Compression::Lz4).producer(4242, 7, 1000);
    b.push(NewRecord::new("v")).unwrap();
    let batch = b.build().unwrap();
    let h = validate_batch(&batch, MAX).unwrap();
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (4242, 7, 1000)
    );
}

#[test]
fn given_a_batch_when_base_offset_rewritten_then_record_offsets_follow() {
    let input = awkward_records();
    let mut batch = build(Compression::Zstd, &input);
    header::set_base_offset(&mut batch, 1_000_000);
    let h = validate_batch(&batch, MAX).unwrap();
    assert_eq!(
        decode_records(&h, &batch).unwrap(),
        expected(&input, 1_000_000)
    );
}

#[test]
fn given_log_append_time_batch_when_decoded_then_every_timestamp_is_max_timestamp() {
    let input = awkward_records();
    for codec in CODECS {
        let mut batch = build(codec, &input);
        header::set_log_append_time(&mut batch, 42);
        let h = validate_batch(&batch, MAX).unwrap();
        assert_ne!(h.attributes & ATTR_LOG_APPEND_TIME, 0);
        let got = decode_records(&h, &batch).unwrap();
        assert!(got.iter().all(|r| r.timestamp == 42), "{codec}");
    }
}

#[test]
fn given_a_batch_when_iterated_then_records_stream_in_order_and_end() {
    let input = awkward_records();
    let batch = build(Compression::Snappy, &input);
    let h = validate_batch(&batch, MAX).unwrap();
    let mut it = records(&h, &batch).unwrap();
    for want in expected(&input, 0) {
        assert_eq!(it.next().unwrap().unwrap(), want);
    }
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}

#[test]
fn given_a_compressed_batch_when_decoded_under_a_smaller_limit_then_too_large() {
    let input = awkward_records();
    // Uncompressed batches are read in place; the limit is on decompression.
    for codec in &CODECS[1..] {
        let batch = build(*codec, &input);
        let h = validate_batch(&batch, MAX).unwrap();
        assert!(
            matches!(
                decode_records_with_limit(&h, &batch, 100_000),
                Err(BatchError::DecompressedTooLarge { codec: c, limit: 100_000 }) if c == *codec
            ),
            "{codec}"
        );
    }
}

#[test]
fn given_extreme_timestamps_when_batch_built_then_deltas_roundtrip_or_push_refuses() {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(NewRecord::new("a").with_timestamp(0)).unwrap();
    b.push(NewRecord::new("b").with_timestamp(i64::MIN))
        .unwrap();
    b.push(NewRecord::new("c").with_timestamp(i64::MAX))
        .unwrap();
    let batch = b.build().unwrap();
    let h = validate_batch(&batch, MAX).unwrap();
    let ts: Vec<i64> = decode_records(&h, &batch)
        .unwrap()
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(ts, vec![0, i64::MIN, i64::MAX]);

    let mut b = BatchBuilder::new(Compression::None);
    b.push(NewRecord::new("a").with_timestamp(i64::MIN))
        .unwrap();
    assert!(matches!(
        b.push(NewRecord::new("b").with_timestamp(1)),
        Err(BatchError::Encode(_))
    ));
    assert_eq!(b.len(), 1);
}

#[test]
fn given_the_builder_when_estimated_then_size_matches_an_uncompressed_batch() {
    let input = awkward_records();
    let mut b = BatchBuilder::new(Compression::None);
    for r in &input {
        b.push(r.clone()).unwrap();
    }
    assert_eq!(b.len(), input.len());
    assert_eq!(b.estimated_size(), b.build().unwrap().len());
}
