//! Scenario: re-encoding a decompression bomb costs the codecs' working memory, not what the
//! bomb expands to. A counting allocator (this file is its own test binary) measures the peak
//! of live heap bytes while a 60 MiB bomb is recoded.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_storage::batch::header::{self, BatchHeader, HEADER_LEN};
use strata_storage::batch::record::encode_varint;
use strata_storage::batch::stream::{
    RECODE_WORKING_BYTES, RecodeLimits, first_at_or_after, recode,
};
use strata_storage::batch::{Compression, validate_batch};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A one-record zstd batch whose value is `value_len` zeros, compressed as a stream.
fn zstd_bomb(value_len: usize) -> Vec<u8> {
    let mut record = vec![0u8, 0, 0];
    encode_varint(-1, &mut record);
    encode_varint(value_len as i32, &mut record);
    let body_len = record.len() + value_len + 1;
    let mut head = Vec::new();
    encode_varint(body_len as i32, &mut head);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.write_all(&head).unwrap();
    enc.write_all(&record).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..value_len >> 20 {
        enc.write_all(&zeros).unwrap();
    }
    enc.write_all(&[0]).unwrap(); // headers count 0
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

/// The heap counters are process-wide: measurements run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn given_a_60_mib_bomb_when_recoded_to_every_codec_then_the_heap_never_holds_its_expansion() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bomb = zstd_bomb(60 << 20);
    let h = validate_batch(&bomb, usize::MAX).unwrap();
    let limits = RecodeLimits {
        max_decompressed: 64 << 20,
        max_output: 1 << 20,
    };
    for to in [
        Compression::Zstd,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Snappy,
        Compression::None,
    ] {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        // zstd and lz4 squeeze 60 MiB of zeros under 1 MiB; the others are refused at the
        // output limit. Either way the records are never all in memory.
        let _ = recode(&h, &bomb, to, limits);
        let grew = PEAK.load(Ordering::Relaxed) - before;
        assert!(
            grew <= RECODE_WORKING_BYTES + limits.max_output,
            "{to}: the heap grew by {grew} bytes recoding a bomb that expands to 60 MiB"
        );
    }
}

#[test]
fn given_a_60_mib_bomb_when_its_timestamps_are_searched_then_the_heap_never_holds_its_expansion() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bomb = zstd_bomb(60 << 20);
    let h = validate_batch(&bomb, usize::MAX).unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    // No record is that late: the whole payload is walked.
    assert_eq!(
        first_at_or_after(&h, &bomb, i64::MAX, 64 << 20).unwrap(),
        None
    );
    let grew = PEAK.load(Ordering::Relaxed) - before;
    assert!(
        grew <= RECODE_WORKING_BYTES,
        "the heap grew by {grew} bytes searching a bomb that expands to 60 MiB"
    );
}
