//! Writes a ~1 GiB partition with the engine for measuring `strata verify` throughput
//! (README, "strata verify"). Ignored: run it on purpose with STRATA_VERIFY_BENCH_DIR set.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "verify_common/mod.rs"]
mod common;

use strata_storage::batch::{Compression, NewRecord};

#[test]
#[ignore = "writes 1 GiB; set STRATA_VERIFY_BENCH_DIR"]
fn write_one_gib_partition() {
    let Ok(dir) = std::env::var("STRATA_VERIFY_BENCH_DIR") else {
        return;
    };
    let log = common::open(&std::path::Path::new(&dir).join("bench-0"));
    let value = vec![b'v'; 1024];
    while log.size_bytes() < 1 << 30 {
        let records =
            (0..256).map(|i| NewRecord::new(value.clone()).with_timestamp(common::T0 + i));
        log.append_records(records, Compression::None).unwrap();
    }
    log.close().unwrap();
}
