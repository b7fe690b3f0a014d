//! Arbitrary bytes through everything that reads a stored or received batch: `check_batch`,
//! `validate_batch`, `decode_records` and the record iterator. Any panic, abort or allocation
//! beyond libFuzzer's `-rss_limit_mb` is a bug.
//!
//! The first input byte picks a mode. Mode 0 feeds the bytes as they are (the CRC must match,
//! so this mostly exercises the header checks). Otherwise the bytes become the payload of a
//! header with a correct CRC, with the codec and record count taken from the input, so the
//! decompressors and the record decoder see arbitrary data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_storage::batch::header::{
    BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, write_crc,
};
use strata_storage::batch::record::{decode_records_with_limit, records_with_limit};
use strata_storage::batch::{check_batch, validate_batch};

const MAX_BATCH: usize = 1 << 20;
const LIMIT: usize = 1 << 20;

fn decode_all(buf: &[u8]) {
    let _ = validate_batch(buf, MAX_BATCH);
    if let Ok(h) = check_batch(buf, MAX_BATCH) {
        let batch = buf.get(..h.total_len()).unwrap_or(buf);
        let listed = decode_records_with_limit(&h, batch, LIMIT);
        if let Ok(records) = &listed {
            assert_eq!(records.len() as i64, i64::from(h.record_count));
        }
        if let Ok(iter) = records_with_limit(&h, batch, LIMIT) {
            let streamed: Result<Vec<_>, _> = iter.collect();
            assert_eq!(streamed.is_ok(), listed.is_ok());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        decode_all(rest);
        return;
    }
    // mode: low 3 bits codec id (5..7 are invalid on purpose), bit 3 LogAppendTime.
    let Some((count, payload)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let count = i32::from(i16::from_be_bytes(*count));
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (HEADER_LEN - LOG_OVERHEAD + payload.len()) as i32,
        partition_leader_epoch: 0,
        magic: MAGIC_V2,
        crc: 0,
        attributes: i16::from(mode & 0x0f),
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
    decode_all(&batch);
});
