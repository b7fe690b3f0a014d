//! How long opening a large partition takes (issue "proof", item 6): a clean start, and a start
//! after a crash, each with the page cache emptied of the partition's files first. Run by
//! `scripts/startup-time`; results in PERFORMANCE.md ("Start-up").
//!
//! ```text
//! cargo run --release -p strata-storage --example startup -- DIR [GIB]
//! ```
//! Writes GIB (default 10) GiB of 1 KiB records in 1 MiB batches into DIR/p-0 (reused if it is
//! already that large), then times `PartitionLog::open`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use strata_storage::batch::{BatchBuilder, Compression, NewRecord};
use strata_storage::io::{evict_page_cache, plain::PlainBackend};
use strata_storage::log::{LogConfig, PartitionLog};

fn config() -> LogConfig {
    LogConfig {
        retention_ms: None,
        retention_check_interval: None,
        max_batch_bytes: 2 << 20,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> (PartitionLog, f64) {
    let t = Instant::now();
    let log = PartitionLog::open(dir, config(), Arc::new(PlainBackend::new())).unwrap();
    (log, t.elapsed().as_secs_f64())
}

/// Drops every file of `dir` from the page cache (what a cold start finds).
fn evict(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            evict_page_cache(&p).unwrap();
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().expect("usage: startup DIR [GIB]");
    let gib: u64 = args.next().map_or(10, |g| g.parse().unwrap());
    let dir = Path::new(&root).join("p-0");
    let (log, _) = open(&dir);
    let want = gib << 30;
    if log.size_bytes() < want {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..1000u32 {
            b.push(NewRecord::new(vec![(i % 251) as u8; 1024]).with_timestamp(1_700_000_000_000))
                .unwrap();
        }
        let batch = bytes::Bytes::from(b.build().unwrap());
        while log.size_bytes() < want {
            log.append_batch(batch.clone()).unwrap();
        }
    }
    let size = log.size_bytes();
    let segments = log.segments().len();
    log.close().unwrap();
    println!(
        "partition: {:.1} GiB in {segments} segments",
        size as f64 / (1u64 << 30) as f64
    );

    evict(&dir);
    let (log, clean) = open(&dir);
    let r = log.recovery_report().clone();
    println!(
        "clean start, cold cache: {clean:.3} s (clean: {}, segments scanned: {})",
        r.clean, r.segments_scanned
    );
    // A crash: the sealed segments are synced and the recovery point is past them; the active
    // segment gets 64 MiB more that a crash leaves to be checked.
    let mut b = BatchBuilder::new(Compression::None);
    b.push(NewRecord::new(vec![7u8; 1 << 20])).unwrap();
    let tail = bytes::Bytes::from(b.build().unwrap());
    for _ in 0..64 {
        log.append_batch(tail.clone()).unwrap();
    }
    log.wait_for_seals().unwrap();
    drop(log);
    evict(&dir);
    let (log, crashed) = open(&dir);
    let r = log.recovery_report().clone();
    println!(
        "start after a crash, cold cache: {crashed:.3} s (segments scanned: {}, the active one with its unsynced tail)",
        r.segments_scanned
    );
    log.close().unwrap();
}
