//! Scenario: decompression bombs in every codec (a few KiB that expand to 16 MiB) decoded with a
//! 1 MiB limit are refused, and the process never holds much more than the limit while refusing.
//! Measured with a counting global allocator; the file holds one test so nothing else allocates
//! concurrently. (zstd's C context allocates through libc, not this allocator; its window is
//! bounded separately by `ZSTD_WINDOW_LOG_MAX`.)
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_storage::batch::compression::{compress, decompress};
use strata_storage::batch::{BatchError, Compression};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: `ptr` came from `alloc` above with the same layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const LIMIT: usize = 1 << 20;
const BOMB: usize = 16 << 20;

#[test]
fn given_a_bomb_batch_payload_in_each_codec_when_decompressed_under_1_mib_then_refused_within_budget()
 {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bomb = compress(codec, &vec![0u8; BOMB]).unwrap();
        assert!(bomb.len() < BOMB / 20, "{codec}: {} bytes", bomb.len());
        let before = LIVE.load(Ordering::SeqCst);
        PEAK.store(before, Ordering::SeqCst);
        let res = decompress(codec, &bomb, LIMIT);
        let extra = PEAK.load(Ordering::SeqCst) - before;
        assert!(
            matches!(res, Err(BatchError::DecompressedTooLarge { codec: c, limit: LIMIT }) if c == codec),
            "{codec}: {res:?}"
        );
        // The output (at most LIMIT) plus the codec's own state; far below the 16 MiB it claims.
        assert!(
            extra < 4 * LIMIT,
            "{codec}: {extra} bytes allocated while refusing"
        );
    }
}
