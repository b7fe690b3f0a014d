//! Scenario: a producer's batch is re-encoded with another codec (a topic whose
//! `compression.type` is not `producer`) by streaming: every record comes back byte for byte,
//! the header keeps what it must, and hostile payloads (bombs, bad records, trailing bytes)
//! are refused with the error that says why, before they cost their expansion.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Write;

use strata_storage::batch::header::{self, BatchHeader, HEADER_LEN};
use strata_storage::batch::record::encode_varint;
use strata_storage::batch::stream::{RecodeLimits, STREAM_WINDOW, decoder, recode};
use strata_storage::batch::{
    BatchBuilder, BatchError, Compression, NewRecord, decode_records, validate_batch,
};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

const LIMITS: RecodeLimits = RecodeLimits {
    max_decompressed: 64 << 20,
    max_output: 8 << 20,
};

fn sample(codec: Compression) -> Vec<u8> {
    let base = 1_700_000_000_000;
    let mut b = BatchBuilder::new(codec).producer(42, 3, 17);
    for i in 0..200 {
        let mut r = NewRecord::new(format!("value-{i}-{}", "v".repeat(i % 90)))
            .with_timestamp(base + (i as i64 * 7) % 500);
        if i % 3 != 0 {
            r = r.with_key(format!("k{i}"));
        }
        if i % 5 == 0 {
            r = r
                .with_header("h", Some(vec![i as u8; 3]))
                .with_header("n", None);
        }
        b.push(r).unwrap();
    }
    b.push(NewRecord::default().with_timestamp(base - 9))
        .unwrap();
    b.build().unwrap()
}

#[test]
fn given_every_pair_of_codecs_when_a_batch_is_recoded_then_its_records_and_header_fields_are_kept()
{
    for from in CODECS {
        let original = sample(from);
        let h = validate_batch(&original, usize::MAX).unwrap();
        let want = decode_records(&h, &original).unwrap();
        for to in CODECS {
            let out = recode(&h, &original, to, LIMITS).unwrap();
            let nh = validate_batch(&out.bytes, usize::MAX).unwrap();
            assert_eq!(nh.compression().unwrap(), to, "{from} -> {to}");
            assert_eq!(
                (nh.producer_id, nh.producer_epoch, nh.base_sequence),
                (42, 3, 17)
            );
            assert_eq!(
                (nh.base_timestamp, nh.record_count, nh.last_offset_delta),
                (h.base_timestamp, h.record_count, h.last_offset_delta)
            );
            assert_eq!(
                decode_records(&nh, &out.bytes).unwrap(),
                want,
                "{from} -> {to}"
            );
            assert_eq!(
                nh.max_timestamp,
                want.iter().map(|r| r.timestamp).max().unwrap()
            );
        }
    }
}

#[test]
fn given_a_header_whose_max_timestamp_is_unset_when_recoded_then_it_says_the_largest_record_timestamp()
 {
    // sarama before 1.45.1 sends maxTimestamp -1.
    let mut batch = sample(Compression::Gzip);
    batch[header::MAX_TIMESTAMP].copy_from_slice(&(-1i64).to_be_bytes());
    header::write_crc(&mut batch);
    let h = validate_batch(&batch, usize::MAX).unwrap();
    let out = recode(&h, &batch, Compression::Zstd, LIMITS).unwrap();
    let records = decode_records(&h, &batch).unwrap();
    assert_eq!(
        out.max_timestamp,
        records.iter().map(|r| r.timestamp).max().unwrap()
    );
}

/// A one-record zstd batch whose value is `value_len` zero bytes, compressed as a stream (the
/// test never holds the value either): a few kilobytes that expand to `value_len`.
fn zstd_bomb(value_len: usize, pledge_size: bool) -> Vec<u8> {
    let mut record = Vec::new();
    record.push(0u8); // attributes
    record.push(0); // timestampDelta 0
    record.push(0); // offsetDelta 0
    encode_varint(-1, &mut record); // null key
    encode_varint(value_len as i32, &mut record);
    let mut tail = Vec::new();
    encode_varint(0, &mut tail); // headers
    let body_len = record.len() + value_len + tail.len();
    let mut head = Vec::new();
    encode_varint(body_len as i32, &mut head);
    let payload_len = head.len() + body_len;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    if pledge_size {
        enc.set_pledged_src_size(Some(payload_len as u64)).unwrap();
        enc.include_contentsize(true).unwrap();
    } else {
        enc.include_contentsize(false).unwrap();
    }
    enc.write_all(&head).unwrap();
    enc.write_all(&record).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = value_len;
    while left > 0 {
        let n = left.min(zeros.len());
        enc.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    enc.write_all(&tail).unwrap();
    let compressed = enc.finish().unwrap();
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (HEADER_LEN - header::LOG_OVERHEAD + compressed.len()) as i32,
        partition_leader_epoch: -1,
        magic: header::MAGIC_V2,
        crc: 0,
        attributes: Compression::Zstd as i16,
        last_offset_delta: 0,
        base_timestamp: 1,
        max_timestamp: 1,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 1,
    };
    let mut head = [0u8; HEADER_LEN];
    h.write_to(&mut head);
    let mut out = head.to_vec();
    out.extend_from_slice(&compressed);
    header::write_crc(&mut out);
    out
}

#[test]
fn given_a_zstd_bomb_when_recoded_then_it_is_refused_at_the_expansion_limit() {
    let bomb = zstd_bomb(60 << 20, false);
    assert!(bomb.len() < 8 << 10, "{} bytes", bomb.len());
    let h = validate_batch(&bomb, usize::MAX).unwrap();
    let limits = RecodeLimits {
        max_decompressed: 16 << 20,
        max_output: 8 << 20,
    };
    for to in CODECS {
        let err = recode(&h, &bomb, to, limits).unwrap_err();
        assert!(
            matches!(
                err,
                BatchError::DecompressedTooLarge { .. } | BatchError::EncodedTooLarge { .. }
            ),
            "{to}: {err:?}"
        );
    }
    // Under a limit it fits: it decodes, and its re-encoding is refused only by the size of
    // what it would write (none: 60 MiB > 8 MiB).
    let roomy = RecodeLimits {
        max_decompressed: 64 << 20,
        max_output: 8 << 20,
    };
    assert!(recode(&h, &bomb, Compression::Zstd, roomy).is_ok());
    assert!(matches!(
        recode(&h, &bomb, Compression::None, roomy),
        Err(BatchError::EncodedTooLarge { .. })
    ));
}

#[test]
fn given_a_zstd_frame_that_declares_its_size_when_it_is_over_the_limit_then_it_is_refused_before_decoding()
 {
    let bomb = zstd_bomb(60 << 20, true);
    let payload = &bomb[HEADER_LEN..];
    // Refused when the decoder is made: nothing has been read, let alone expanded.
    assert!(matches!(
        decoder(Compression::Zstd, payload, 16 << 20).err(),
        Some(BatchError::DecompressedTooLarge { .. })
    ));
}

#[test]
fn given_a_raw_snappy_block_larger_than_the_working_limit_when_decoded_then_it_is_refused_unallocated()
 {
    let big = vec![0u8; STREAM_WINDOW + 1];
    let raw = snap::raw::Encoder::new().compress_vec(&big).unwrap();
    let mut d = decoder(Compression::Snappy, &raw, usize::MAX).unwrap();
    let mut buf = [0u8; 16];
    let err = d.read(&mut buf).unwrap_err();
    assert!(err.to_string().contains("a block declares"), "{err}");
}

/// An uncompressed batch built from raw record bodies.
fn raw_batch(records: &[Vec<u8>], count: i32, trailing: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    for r in records {
        encode_varint(r.len() as i32, &mut payload);
        payload.extend_from_slice(r);
    }
    payload.extend_from_slice(trailing);
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (HEADER_LEN - header::LOG_OVERHEAD + payload.len()) as i32,
        partition_leader_epoch: -1,
        magic: header::MAGIC_V2,
        crc: 0,
        attributes: 0,
        last_offset_delta: count - 1,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: count,
    };
    let mut head = [0u8; HEADER_LEN];
    h.write_to(&mut head);
    let mut out = head.to_vec();
    out.extend_from_slice(&payload);
    header::write_crc(&mut out);
    out
}

/// A record body: attributes, timestampDelta 0, the given offsetDelta, null key, a 1-byte value,
/// no headers.
fn body(offset_delta: i32) -> Vec<u8> {
    let mut b = vec![0u8, 0];
    encode_varint(offset_delta, &mut b);
    encode_varint(-1, &mut b);
    encode_varint(1, &mut b);
    b.push(b'x');
    encode_varint(0, &mut b);
    b
}

#[test]
fn given_malformed_records_when_recoded_then_each_is_refused_naming_the_record() {
    let refuse = |batch: Vec<u8>, expect: &str| {
        let h = validate_batch(&batch, usize::MAX).unwrap();
        match recode(&h, &batch, Compression::Zstd, LIMITS) {
            Err(BatchError::BadRecord { reason, .. }) => {
                assert!(reason.contains(expect), "{reason} should say {expect}")
            }
            other => panic!("expected BadRecord ({expect}), got {other:?}"),
        }
    };
    refuse(raw_batch(&[body(0), body(5)], 2, &[]), "offsetDelta 5");
    refuse(raw_batch(&[body(0)], 2, &[]), "payload ends after 1 of 2");
    refuse(raw_batch(&[body(0)], 1, b"junk"), "bytes follow the last");
    let mut short = body(0);
    short.push(0); // a byte the fields do not account for
    refuse(raw_batch(&[short], 1, &[]), "fields end");
    let mut long_value = vec![0u8, 0, 0];
    encode_varint(-1, &mut long_value);
    encode_varint(500, &mut long_value); // a 500-byte value in a 10-byte record
    long_value.push(b'x');
    refuse(raw_batch(&[long_value], 1, &[]), "exceeds the bytes left");
    // And a well-formed one goes through.
    let ok = raw_batch(&[body(0), body(1)], 2, &[]);
    let h = validate_batch(&ok, usize::MAX).unwrap();
    assert!(recode(&h, &ok, Compression::Lz4, LIMITS).is_ok());
}
