//! Scenario: a golden RecordBatch v2 written out by hand from the Kafka spec (two records,
//! uncompressed) decodes to exactly the fields it was written with, and the builder produces it
//! byte for byte. A change to the encoder or decoder that changes the format fails here.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use strata_storage::batch::header::{CRC, compute_crc, set_base_offset};
use strata_storage::batch::{
    BatchBuilder, Compression, NewRecord, RecordHeader, decode_records, validate_batch,
};

/// Field by field; every multi-byte header field is big-endian, record fields are zigzag varints.
const GOLDEN: &[&str] = &[
    // --- header (61 bytes) ---
    "0000000000000000", // baseOffset 0
    "00000050",         // batchLength 80 (= 92 - 12)
    "ffffffff",         // partitionLeaderEpoch -1
    "02",               // magic 2
    "2e5781ae",         // CRC-32C of bytes 21..92
    "0000",             // attributes: codec none, CreateTime, not transactional, not control
    "00000001",         // lastOffsetDelta 1
    "0000018bcfe56800", // baseTimestamp 1_700_000_000_000
    "0000018bcfe56805", // maxTimestamp 1_700_000_000_005
    "ffffffffffffffff", // producerId -1
    "ffff",             // producerEpoch -1
    "ffffffff",         // baseSequence -1
    "00000002",         // recordCount 2
    // --- record 0 (18 bytes) ---
    "22",         // length 17
    "00",         // attributes
    "00",         // timestampDelta 0
    "00",         // offsetDelta 0
    "04",         // keyLength 2
    "6b30",       // key "k0"
    "0a",         // valueLength 5
    "68656c6c6f", // value "hello"
    "02",         // headersCount 1
    "02",         // headerKeyLength 1
    "68",         // header key "h"
    "02",         // headerValueLength 1
    "76",         // header value "v"
    // --- record 1 (13 bytes) ---
    "18", // length 12
    "00", // attributes
    "0a", // timestampDelta 5
    "02", // offsetDelta 1
    "01", // keyLength -1 (null)
    "00", // valueLength 0 (empty, not null)
    "04", // headersCount 2
    "02", // headerKeyLength 1
    "68", // "h"
    "01", // headerValueLength -1 (null)
    "02", // headerKeyLength 1
    "68", // "h" again: duplicate keys are kept, in order
    "00", // headerValueLength 0 (empty)
];

fn golden() -> Vec<u8> {
    let hex: String = GOLDEN.concat();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn h(key: &str, value: Option<&[u8]>) -> RecordHeader {
    RecordHeader {
        key: key.as_bytes().to_vec(),
        value: value.map(<[u8]>::to_vec),
    }
}

#[test]
fn given_the_golden_batch_when_validated_then_every_header_field_matches() {
    let batch = golden();
    assert_eq!(batch.len(), 92);
    assert_eq!(compute_crc(&batch).to_be_bytes(), batch[CRC]);
    let hd = validate_batch(&batch, 1 << 20).unwrap();
    assert_eq!(hd.base_offset, 0);
    assert_eq!(hd.batch_length, 80);
    assert_eq!(hd.partition_leader_epoch, -1);
    assert_eq!(hd.magic, 2);
    assert_eq!(hd.crc, 0x2e57_81ae);
    assert_eq!(hd.attributes, 0);
    assert_eq!(hd.compression().unwrap(), Compression::None);
    assert_eq!(hd.last_offset_delta, 1);
    assert_eq!(hd.base_timestamp, 1_700_000_000_000);
    assert_eq!(hd.max_timestamp, 1_700_000_000_005);
    assert_eq!(
        (hd.producer_id, hd.producer_epoch, hd.base_sequence),
        (-1, -1, -1)
    );
    assert_eq!(hd.record_count, 2);
}

#[test]
fn given_the_golden_batch_at_base_offset_100_when_decoded_then_every_record_field_matches() {
    let mut batch = golden();
    set_base_offset(&mut batch, 100);
    let hd = validate_batch(&batch, 1 << 20).unwrap();
    let recs = decode_records(&hd, &batch).unwrap();
    assert_eq!(recs.len(), 2);

    assert_eq!(recs[0].offset, 100);
    assert_eq!(recs[0].timestamp, 1_700_000_000_000);
    assert_eq!(recs[0].key.as_deref(), Some(&b"k0"[..]));
    assert_eq!(recs[0].value.as_deref(), Some(&b"hello"[..]));
    assert_eq!(recs[0].headers, vec![h("h", Some(b"v"))]);

    assert_eq!(recs[1].offset, 101);
    assert_eq!(recs[1].timestamp, 1_700_000_000_005);
    assert_eq!(recs[1].key, None);
    assert_eq!(recs[1].value.as_deref(), Some(&b""[..]));
    assert_eq!(recs[1].headers, vec![h("h", None), h("h", Some(b""))]);
}

#[test]
fn given_the_golden_records_when_batch_built_then_bytes_equal_the_golden_batch() {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(
        NewRecord::new("hello")
            .with_key("k0")
            .with_header("h", Some(b"v".to_vec()))
            .with_timestamp(1_700_000_000_000),
    )
    .unwrap();
    b.push(NewRecord {
        key: None,
        value: Some(Vec::new()),
        headers: vec![h("h", None), h("h", Some(b""))],
        timestamp: 1_700_000_000_005,
    })
    .unwrap();
    assert_eq!(b.build().unwrap(), golden());
}
