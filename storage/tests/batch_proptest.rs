//! Scenario: property tests. Arbitrary records roundtrip through the builder and decoder in every
//! codec; arbitrary bytes, bare or wrapped in a header with a correct CRC, never make the checks
//! or the decoder panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use strata_storage::batch::header::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, write_crc};
use strata_storage::batch::record::{decode_records_with_limit, records_with_limit};
use strata_storage::batch::{
    BatchBuilder, Compression, NewRecord, RecordHeader, check_batch, decode_records, validate_batch,
};

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn new_record() -> impl Strategy<Value = NewRecord> {
    (
        prop::option::of(bytes(40)),
        prop::option::of(bytes(300)),
        prop::collection::vec((bytes(10), prop::option::of(bytes(20))), 0..5),
        -(1i64 << 50)..(1i64 << 50),
    )
        .prop_map(|(key, value, headers, timestamp)| NewRecord {
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(key, value)| RecordHeader { key, value })
                .collect(),
            timestamp,
        })
}

/// A header with a correct CRC around arbitrary payload bytes.
fn wrap(codec_id: u8, count: i32, payload: &[u8]) -> Vec<u8> {
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (HEADER_LEN - LOG_OVERHEAD + payload.len()) as i32,
        partition_leader_epoch: 0,
        magic: MAGIC_V2,
        crc: 0,
        attributes: i16::from(codec_id),
        last_offset_delta: count.wrapping_sub(1),
        base_timestamp: 0,
        max_timestamp: 0,
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn given_arbitrary_records_when_batch_built_in_any_codec_then_decode_gives_them_back(
        codec in codec(),
        input in prop::collection::vec(new_record(), 1..20),
    ) {
        let mut b = BatchBuilder::new(codec);
        for r in &input {
            b.push(r.clone()).unwrap();
        }
        let batch = b.build().unwrap();
        let h = validate_batch(&batch, 1 << 20).unwrap();
        prop_assert_eq!(h.base_timestamp, input[0].timestamp);
        prop_assert_eq!(h.max_timestamp, input.iter().map(|r| r.timestamp).max().unwrap());
        let got = decode_records(&h, &batch).unwrap();
        prop_assert_eq!(got.len(), input.len());
        for (i, (g, w)) in got.iter().zip(&input).enumerate() {
            prop_assert_eq!(g.offset, i as i64);
            prop_assert_eq!(g.timestamp, w.timestamp);
            prop_assert_eq!(&g.key, &w.key);
            prop_assert_eq!(&g.value, &w.value);
            prop_assert_eq!(&g.headers, &w.headers);
        }
    }

    #[test]
    fn given_arbitrary_bytes_when_checked_as_a_batch_then_nothing_panics(data in bytes(512)) {
        if let Ok(h) = check_batch(&data, 1 << 20) {
            let _ = decode_records_with_limit(&h, &data, 1 << 16);
        }
        let _ = validate_batch(&data, 1 << 20);
    }

    #[test]
    fn given_arbitrary_payload_under_a_valid_crc_when_batch_decoded_then_result_or_error(
        codec_id in 0u8..8,
        count in prop_oneof![Just(i32::MAX), Just(i32::MIN), -2i32..6],
        payload in bytes(256),
    ) {
        let batch = wrap(codec_id, count, &payload);
        let h = check_batch(&batch, 1 << 20).unwrap();
        if let Ok(recs) = decode_records_with_limit(&h, &batch, 1 << 16) {
            prop_assert_eq!(recs.len() as i64, i64::from(count));
        }
        // The iterator stops after the first error and never yields more than recordCount + 1.
        if let Ok(it) = records_with_limit(&h, &batch, 1 << 16) {
            let n = it.take(10_000).count();
            prop_assert!(n as i64 <= i64::from(count.max(0)) + 1);
        }
    }

    #[test]
    fn given_valid_records_with_random_payload_mutations_when_batch_decoded_then_no_panic(
        codec in codec(),
        input in prop::collection::vec(new_record(), 1..5),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut b = BatchBuilder::new(codec);
        for r in &input {
            b.push(r.clone()).unwrap();
        }
        let mut batch = b.build().unwrap();
        for (at, mask) in flips {
            let i = HEADER_LEN + at.index(batch.len() - HEADER_LEN);
            batch[i] ^= mask;
        }
        write_crc(&mut batch);
        let h = validate_batch(&batch, 1 << 20).unwrap();
        let _ = decode_records_with_limit(&h, &batch, 1 << 16);
    }
}
