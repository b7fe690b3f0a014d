//! Scenario: hand-crafted hostile batches whose CRC is correct (so only the record decoder stands
//! between them and the engine) are refused with an error that names the field and the numbers,
//! never a panic or an allocation sized by a hostile count.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use strata_storage::batch::header::{
    ATTRIBUTES, BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, write_crc,
};
use strata_storage::batch::record::{DEFAULT_DECOMPRESSED_LIMIT, encode_varint, encode_varlong};
use strata_storage::batch::{BatchError, Compression, Record, check_batch, decode_records};

/// A batch around `payload` (already in `codec`) claiming `count` records, CRC correct.
fn craft(codec_id: u8, count: i32, base_timestamp: i64, payload: &[u8]) -> Vec<u8> {
    let h = BatchHeader {
        base_offset: 100,
        batch_length: (HEADER_LEN - LOG_OVERHEAD + payload.len()) as i32,
        partition_leader_epoch: 0,
        magic: MAGIC_V2,
        crc: 0,
        attributes: i16::from(codec_id),
        last_offset_delta: count.wrapping_sub(1),
        base_timestamp,
        max_timestamp: base_timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: count,
    };
    let mut head = [0u8; HEADER_LEN];
    h.write_to(&mut head);
    let mut batch = head.to_vec();
    batch.extend_from_slice(payload);
    write_crc(&mut batch);
    batch
}

/// Fields of a record body, written raw so they can lie.
#[derive(Clone)]
struct Body {
    ts_delta: i64,
    offset_delta: i32,
    key_len: i32,
    key: Vec<u8>,
    value_len: i32,
    value: Vec<u8>,
    headers_count: i32,
    headers: Vec<u8>,
}

impl Default for Body {
    fn default() -> Self {
        Body {
            ts_delta: 0,
            offset_delta: 0,
            key_len: -1,
            key: vec![],
            value_len: 3,
            value: b"abc".to_vec(),
            headers_count: 0,
            headers: vec![],
        }
    }
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8]; // attributes
        encode_varlong(self.ts_delta, &mut b);
        encode_varint(self.offset_delta, &mut b);
        encode_varint(self.key_len, &mut b);
        b.extend_from_slice(&self.key);
        encode_varint(self.value_len, &mut b);
        b.extend_from_slice(&self.value);
        encode_varint(self.headers_count, &mut b);
        b.extend_from_slice(&self.headers);
        b
    }

    /// The body with its true `length` prefix.
    fn record(&self) -> Vec<u8> {
        let body = self.bytes();
        let mut r = Vec::new();
        encode_varint(body.len() as i32, &mut r);
        r.extend_from_slice(&body);
        r
    }
}

fn decode(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let h = check_batch(batch, 1 << 30).unwrap();
    decode_records(&h, batch)
}

/// Asserts a BadRecord at `index` whose reason contains every one of `words`.
fn assert_bad_record(res: Result<Vec<Record>, BatchError>, index: usize, words: &[&str]) {
    match res {
        Err(BatchError::BadRecord { index: i, reason }) => {
            assert_eq!(i, index, "{reason}");
            for w in words {
                assert!(reason.contains(w), "reason {reason:?} lacks {w:?}");
            }
        }
        other => panic!("expected BadRecord at {index}, got {other:?}"),
    }
}

#[test]
fn given_a_valid_crafted_batch_then_it_decodes_so_the_other_cases_test_one_lie_each() {
    let batch = craft(0, 1, 10, &Body::default().record());
    let recs = decode(&batch).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].offset, 100);
    assert_eq!(recs[0].value.as_deref(), Some(&b"abc"[..]));
}

#[test]
fn given_a_batch_with_record_count_i32_max_with_one_record_when_decoded_then_payload_ends_error() {
    let batch = craft(0, i32::MAX, 0, &Body::default().record());
    assert_bad_record(decode(&batch), 1, &["payload ends after 1 of 2147483647"]);
}

#[test]
fn given_a_batch_with_negative_record_count_when_decoded_then_bad_record_count() {
    let batch = craft(0, -5, 0, &Body::default().record());
    assert!(matches!(
        decode(&batch),
        Err(BatchError::BadRecordCount { count: -5 })
    ));
}

#[test]
fn given_a_batch_with_fewer_records_than_record_count_when_decoded_then_error_names_both() {
    let payload = [Body::default().record(), Body::default().record()].concat();
    let batch = craft(0, 3, 0, &payload);
    assert_bad_record(decode(&batch), 2, &["2 of 3"]);
}

#[test]
fn given_a_batch_with_trailing_bytes_after_the_last_record_when_decoded_then_error() {
    let mut payload = Body::default().record();
    payload.extend_from_slice(&[0, 0, 0]);
    let batch = craft(0, 1, 0, &payload);
    assert_bad_record(decode(&batch), 1, &["3 bytes follow the last of 1 records"]);
}

#[test]
fn given_a_batch_with_key_length_i32_max_when_decoded_then_error_names_key_length() {
    let body = Body {
        key_len: i32::MAX,
        key: b"xy".to_vec(),
        ..Body::default()
    };
    let batch = craft(0, 1, 0, &body.record());
    assert_bad_record(
        decode(&batch),
        0,
        &["keyLength 2147483647", "bytes left in the record"],
    );
}

#[test]
fn given_a_batch_with_negative_key_length_other_than_minus_one_when_decoded_then_error() {
    let body = Body {
        key_len: -2,
        ..Body::default()
    };
    let batch = craft(0, 1, 0, &body.record());
    assert_bad_record(decode(&batch), 0, &["keyLength -2", "negative"]);
}

#[test]
fn given_a_batch_with_negative_value_length_other_than_minus_one_when_decoded_then_error() {
    let body = Body {
        value_len: -7,
        value: vec![],
        ..Body::default()
    };
    let batch = craft(0, 1, 0, &body.record());
    assert_bad_record(decode(&batch), 0, &["valueLength -7"]);
}

#[test]
fn given_a_batch_with_value_longer_than_the_record_when_decoded_then_error_names_both_sizes() {
    let body = Body {
        value_len: 8,
        value: b"abc".to_vec(),
        ..Body::default()
    };
    let batch = craft(0, 1, 0, &body.record());
    assert_bad_record(
        decode(&batch),
        0,
        &["valueLength 8 exceeds the 4 bytes left"],
    );
}

#[test]
fn given_a_batch_with_negative_record_length_when_decoded_then_error() {
    let mut payload = Vec::new();
    encode_varint(-3, &mut payload);
    payload.extend_from_slice(&Body::default().bytes());
    let batch = craft(0, 1, 0, &payload);
    assert_bad_record(decode(&batch), 0, &["length -3 is negative"]);
}

#[test]
fn given_a_batch_with_record_length_past_the_payload_when_decoded_then_truncation_error() {
    let body = Body::default().bytes();
    let mut payload = Vec::new();
    encode_varint(100, &mut payload);
    payload.extend_from_slice(&body);
    let batch = craft(0, 1, 0, &payload);
    let msg = format!(
        "length 100 exceeds the {} bytes left in the payload",
        body.len()
    );
    assert_bad_record(decode(&batch), 0, &[&msg]);
}

#[test]
fn given_a_batch_with_record_length_longer_than_its_fields_when_decoded_then_error() {
    let mut body = Body::default().bytes();
    body.push(0xaa);
    let mut payload = Vec::new();
    encode_varint(body.len() as i32, &mut payload);
    payload.extend_from_slice(&body);
    let batch = craft(0, 1, 0, &payload);
    let msg = format!(
        "length {} but the fields end after {}",
        body.len(),
        body.len() - 1
    );
    assert_bad_record(decode(&batch), 0, &[&msg]);
}

#[test]
fn given_a_batch_with_six_byte_offset_delta_varint_when_decoded_then_too_long_error() {
    let mut body = vec![0u8, 0]; // attributes, timestampDelta 0
    body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]); // offsetDelta, 6 bytes
    body.extend_from_slice(&[0x01, 0x01, 0x00]); // null key, null value, no headers
    let mut payload = Vec::new();
    encode_varint(body.len() as i32, &mut payload);
    payload.extend_from_slice(&body);
    let batch = craft(0, 1, 0, &payload);
    assert_bad_record(decode(&batch), 0, &["offsetDelta", "longer"]);
}

#[test]
fn given_a_batch_with_eleven_byte_timestamp_delta_varlong_when_decoded_then_too_long_error() {
    let mut body = vec![0u8];
    body.extend_from_slice(&[0xff; 10]);
    body.extend_from_slice(&[0x00, 0x00, 0x01, 0x01, 0x00]);
    let mut payload = Vec::new();
    encode_varint(body.len() as i32, &mut payload);
    payload.extend_from_slice(&body);
    let batch = craft(0, 1, 0, &payload);
    assert_bad_record(decode(&batch), 0, &["timestampDelta", "longer"]);
}

#[test]
fn given_a_batch_with_headers_count_i32_max_when_decoded_then_error_before_allocating() {
    let body = Body {
        headers_count: i32::MAX,
        headers: vec![0; 10],
        ..Body::default()
    };
    let batch = craft(0, 1, 0, &body.record());
    assert_bad_record(
        decode(&batch),
        0,
        &["headersCount 2147483647", "10 bytes left"],
    );
}

#[test]
fn given_a_batch_with_negative_headers_count_when_decoded_then_error() {
    let body = Body {
        headers_count: -1,
        ..Body::default()
    };
    let batch = craft(0, 1, 0, &body.record());
    assert_bad_record(decode(&batch), 0, &["headersCount -1"]);
}

#[test]
fn given_a_batch_with_null_header_key_when_decoded_then_error_names_the_header() {
    let mut headers = Vec::new();
    encode_varint(-1, &mut headers); // key length -1: not allowed for header keys
    encode_varint(-1, &mut headers);
    let body = Body {
        headers_count: 1,
        headers,
        ..Body::default()
    };
    let batch = craft(0, 1, 0, &body.record());
    assert_bad_record(decode(&batch), 0, &["header 0", "headerKeyLength -1"]);
}

#[test]
fn given_a_batch_with_header_value_past_the_record_when_decoded_then_error_names_the_header() {
    let mut headers = Vec::new();
    encode_varint(1, &mut headers);
    headers.push(b'h');
    encode_varint(1000, &mut headers);
    let body = Body {
        headers_count: 1,
        headers,
        ..Body::default()
    };
    let batch = craft(0, 1, 0, &body.record());
    assert_bad_record(
        decode(&batch),
        0,
        &["header 0", "headerValueLength 1000 exceeds the 0 bytes"],
    );
}

#[test]
fn given_a_batch_with_record_cut_inside_a_varint_when_decoded_then_truncated_varint_error() {
    let body = [0u8, 0x80]; // attributes, timestampDelta with continuation bit and nothing after
    let mut payload = Vec::new();
    encode_varint(body.len() as i32, &mut payload);
    payload.extend_from_slice(&body);
    let batch = craft(0, 1, 0, &payload);
    assert_bad_record(decode(&batch), 0, &["timestampDelta", "truncated"]);
}

#[test]
fn given_a_batch_with_timestamp_delta_past_i64_max_when_decoded_then_timestamp_saturates() {
    let body = Body {
        ts_delta: 10,
        ..Body::default()
    };
    let batch = craft(0, 1, i64::MAX - 1, &body.record());
    assert_eq!(decode(&batch).unwrap()[0].timestamp, i64::MAX);
}

#[test]
fn given_a_batch_with_codec_id_5_when_decoded_then_unknown_codec() {
    let batch = craft(5, 1, 0, &Body::default().record());
    assert!(matches!(decode(&batch), Err(BatchError::UnknownCodec(5))));
}

#[test]
fn given_a_batch_with_garbage_in_each_compressed_codec_when_decoded_then_decompress_error() {
    for id in 1..=4u8 {
        let codec = Compression::from_id(id).unwrap();
        let garbage: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let batch = craft(id, 1, 0, &garbage);
        let res = decode(&batch);
        assert!(
            matches!(&res, Err(BatchError::Decompress { codec: c, .. }) if *c == codec),
            "{codec}: {res:?}"
        );
    }
}

/// A zstd frame of `blocks` RLE blocks of 128 KiB zeros each: 4 bytes of input per 128 KiB.
fn zstd_rle_bomb(blocks: usize) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd]; // magic
    f.push(0x00); // frame header descriptor: no content size, not single segment, no checksum
    f.push((17 - 10) << 3); // window descriptor: 2^17 = 128 KiB
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = (128 * 1024) << 3 | 1 << 1 | last; // size, type RLE, last flag
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(0x00);
    }
    f
}

#[test]
fn given_a_batch_with_zstd_bomb_past_the_default_limit_when_decoded_then_decompressed_too_large() {
    let blocks = DEFAULT_DECOMPRESSED_LIMIT / (128 * 1024) + 1;
    let bomb = zstd_rle_bomb(blocks);
    assert!(bomb.len() < 4 * 1024, "{} bytes", bomb.len());
    // The frame is well formed: under a large enough limit it is just zeros.
    let small = zstd_rle_bomb(2);
    assert_eq!(
        strata_storage::batch::compression::decompress(Compression::Zstd, &small, 1 << 18).unwrap(),
        vec![0u8; 1 << 18]
    );
    let batch = craft(4, 1, 0, &bomb);
    assert!(matches!(
        decode(&batch),
        Err(BatchError::DecompressedTooLarge { codec: Compression::Zstd, limit }) if limit == DEFAULT_DECOMPRESSED_LIMIT
    ));
}

#[test]
fn given_a_batch_with_raw_snappy_declaring_4_gib_when_decoded_then_refused_before_allocating() {
    // Raw snappy starts with the uncompressed length as a varint: 0xffffffff.
    let payload = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00];
    let batch = craft(2, 1, 0, &payload);
    assert!(matches!(
        decode(&batch),
        Err(BatchError::DecompressedTooLarge {
            codec: Compression::Snappy,
            ..
        })
    ));
}

#[test]
fn given_a_batch_with_attributes_with_unknown_high_bits_when_decoded_then_codec_bits_still_rule() {
    // Bits above the control flag are unused by Kafka; the decoder reads only the codec bits.
    let mut batch = craft(0, 1, 0, &Body::default().record());
    batch[ATTRIBUTES].copy_from_slice(&0x4000i16.to_be_bytes());
    write_crc(&mut batch);
    assert_eq!(decode(&batch).unwrap().len(), 1);
}
