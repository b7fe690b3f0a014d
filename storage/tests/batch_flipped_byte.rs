//! Scenario: a built batch with one byte flipped, anywhere, in every codec. The CRC catches every
//! flip it covers; only baseOffset and partitionLeaderEpoch (outside the CRC by Kafka's design)
//! may change and still decode. With the CRC recomputed after the flip (a corrupting writer that
//! also fixes the CRC), the decoder itself must return a result or an error, never panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use strata_storage::batch::header::{BASE_OFFSET, CRC, PARTITION_LEADER_EPOCH, write_crc};
use strata_storage::batch::record::decode_records_with_limit;
use strata_storage::batch::{
    BatchBuilder, Compression, NewRecord, check_batch, decode_records, validate_batch,
};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const MAX: usize = 1 << 20;

fn sample(codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(codec).producer(9, 1, 0);
    b.push(NewRecord::new("v0").with_key("k0").with_timestamp(1000))
        .unwrap();
    b.push(NewRecord::default().with_timestamp(900)).unwrap();
    b.push(
        NewRecord::new(vec![0xab; 40])
            .with_header("h", Some(b"x".to_vec()))
            .with_header("h", None)
            .with_timestamp(1100),
    )
    .unwrap();
    b.build().unwrap()
}

#[test]
fn given_a_batch_with_any_byte_flipped_then_only_offset_and_epoch_flips_pass() {
    for codec in CODECS {
        let good = sample(codec);
        let want = {
            let h = validate_batch(&good, MAX).unwrap();
            decode_records(&h, &good).unwrap()
        };
        for i in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= mask;
                let res = validate_batch(&bad, MAX);
                let outside_crc = BASE_OFFSET.contains(&i) || PARTITION_LEADER_EPOCH.contains(&i);
                if !outside_crc {
                    assert!(
                        res.is_err(),
                        "{codec}: flip {mask:#x} at byte {i} went unnoticed"
                    );
                    continue;
                }
                let h = res.unwrap();
                let got = decode_records(&h, &bad).unwrap();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(
                        (&g.key, &g.value, &g.headers),
                        (&w.key, &w.value, &w.headers)
                    );
                    assert_eq!(g.offset - w.offset, h.base_offset);
                }
            }
        }
    }
}

#[test]
fn given_a_batch_with_any_byte_flipped_and_crc_recomputed_then_decoding_never_panics() {
    for codec in CODECS {
        let good = sample(codec);
        for i in CRC.end..good.len() {
            for mask in [0x01u8, 0x02, 0x10, 0x40, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= mask;
                write_crc(&mut bad);
                // The header checks may refuse it; whatever they let through goes to the decoder.
                let Ok(h) = check_batch(&bad, MAX) else {
                    continue;
                };
                if let Ok(records) = decode_records_with_limit(&h, &bad, 1 << 16) {
                    assert_eq!(records.len(), h.record_count as usize, "{codec} byte {i}");
                }
            }
        }
    }
}
