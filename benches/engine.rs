//! Micro-benchmarks of the storage engine's hot paths (issue 2): batch build with and without
//! zstd, CRC-32C, offset-index lookup, zero-copy reads from the page cache, and a segment scan.
//! End-to-end numbers come from `strata bench`; these isolate one mechanism each.
//!
//! Run: `cargo bench --bench engine` (a few minutes; measurement times are kept short).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_storage::batch::header::compute_crc;
use strata_storage::batch::{BatchBuilder, Compression};
use strata_storage::io::{BackendChoice, select_backend};
use strata_storage::log::index::{OffsetEntry, OffsetIndex};
use strata_storage::log::scan::{BatchScanner, scan_segment};
use strata_storage::log::{LogConfig, PartitionLog};
use strata_tools::bench::payload::{XorShift64, text_lines};

const RECORD: usize = 1024;
/// ~1 MiB of 1 KiB records per batch.
const RECORDS_PER_BATCH: usize = 1000;

fn text_records() -> Vec<Vec<u8>> {
    let mut rng = XorShift64::new(3);
    let text = text_lines(&mut rng, RECORD * RECORDS_PER_BATCH);
    text.chunks(RECORD).map(<[u8]>::to_vec).collect()
}

/// Builds one batch the way a producer does: borrowed values, a reused builder (record buffer
/// and zstd context kept across batches).
fn build(builder: &mut BatchBuilder, records: &[Vec<u8>]) -> Vec<u8> {
    builder.clear();
    for (i, v) in records.iter().enumerate() {
        builder
            .push_parts(1_764_000_000_000 + i as i64, None, Some(v), &[])
            .unwrap();
    }
    builder.build_reusing().unwrap()
}

fn batch_build(c: &mut Criterion) {
    let records = text_records();
    let bytes: usize = records.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("batch_build_1MiB_text");
    g.throughput(Throughput::Bytes(bytes as u64));
    for codec in [Compression::None, Compression::Zstd] {
        let mut builder = BatchBuilder::new(codec);
        g.bench_function(BenchmarkId::from_parameter(codec), |b| {
            b.iter(|| black_box(build(&mut builder, &records)));
        });
    }
    g.finish();
}

fn crc32c(c: &mut Criterion) {
    let mut data = vec![0u8; 1 << 20];
    XorShift64::new(9).fill(&mut data);
    let mut g = c.benchmark_group("crc32c");
    g.throughput(Throughput::Bytes(data.len() as u64));
    // compute_crc covers a batch from its attributes field on: all but the first 21 bytes.
    g.bench_function("1MiB", |b| {
        b.iter(|| black_box(compute_crc(black_box(&data))))
    });
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    let mut index = OffsetIndex::new();
    for i in 0..100_000u32 {
        index.push(OffsetEntry {
            relative_offset: i * 4,
            position: i * 4096,
        });
    }
    let mut rng = XorShift64::new(5);
    let probes: Vec<u32> = (0..1024).map(|_| rng.below(400_000) as u32).collect();
    let mut g = c.benchmark_group("offset_index");
    g.throughput(Throughput::Elements(probes.len() as u64));
    g.bench_function("lookup_100k_entries_x1024", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for &p in &probes {
                acc += u64::from(index.lookup(black_box(p)));
            }
            black_box(acc)
        });
    });
    g.finish();
}

/// A page-cached partition of `batches` 1 MiB batches of random 1 KiB records.
fn cached_log(dir: &std::path::Path, batches: usize) -> (PartitionLog, u64) {
    let backend = select_backend(BackendChoice::Auto).unwrap();
    let log = PartitionLog::open(dir, LogConfig::default(), Arc::clone(&backend)).unwrap();
    let mut rng = XorShift64::new(11);
    let mut value = vec![0u8; RECORD];
    for _ in 0..batches {
        let mut b = BatchBuilder::new(Compression::None);
        for _ in 0..RECORDS_PER_BATCH {
            rng.fill(&mut value);
            b.push_parts(1_764_000_000_000, None, Some(&value), &[])
                .unwrap();
        }
        log.append_batch(b.build().unwrap()).unwrap();
    }
    log.sync().unwrap();
    let size = log.size_bytes();
    (log, size)
}

fn read_mmap(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (log, size) = cached_log(dir.path(), 64);
    let end = log.log_end_offset();
    let mut g = c.benchmark_group("read_mmap");
    // The read itself copies nothing: this is the cost of finding the batches (index lookup,
    // header walk) and handing out a slice of the shared mapping.
    let reads = end.div_ceil(RECORDS_PER_BATCH as u64);
    g.throughput(Throughput::Elements(reads));
    g.bench_function("read_calls_1MiB_whole_log", |b| {
        b.iter(|| {
            let mut offset = 0;
            let mut bytes = 0usize;
            while offset < end {
                let s = log.read(offset, 1 << 20).unwrap();
                bytes += s.len();
                offset = last_next_offset(&s, offset);
            }
            black_box(bytes)
        });
    });
    // What a consumer does with the bytes at least once: verify each batch's CRC-32C, which
    // touches every byte of the page-cached mapping.
    g.throughput(Throughput::Bytes(size));
    g.bench_function("read_and_crc_64MiB_whole_log", |b| {
        b.iter(|| {
            let mut offset = 0;
            let mut batches = 0usize;
            while offset < end {
                let s = log.read(offset, 1 << 20).unwrap();
                let mut scan = BatchScanner::new(&s, 1 << 21, true);
                for batch in scan.by_ref() {
                    offset = batch.header.next_offset() as u64;
                    batches += 1;
                }
                assert!(scan.stop().is_none());
            }
            black_box(batches)
        });
    });
    g.finish();
    let segment = log.read(0, usize::MAX).unwrap();
    let mut g = c.benchmark_group("scan_segment");
    g.throughput(Throughput::Bytes(segment.len() as u64));
    g.bench_function("64MiB_with_crc", |b| {
        b.iter(|| black_box(scan_segment(&segment, 0, 1 << 21, true, 4096).batches));
    });
    g.bench_function("64MiB_headers_only", |b| {
        b.iter(|| black_box(scan_segment(&segment, 0, 1 << 21, false, 4096).batches));
    });
    g.finish();
    drop(segment);
    log.close().unwrap();
}

/// The offset after the last batch of a read result.
fn last_next_offset(data: &[u8], from: u64) -> u64 {
    BatchScanner::new(data, 1 << 21, false)
        .last()
        .map_or(from + 1, |b| b.header.next_offset() as u64)
}

criterion_group! {
    name = engine;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    targets = batch_build, crc32c, index_lookup, read_mmap
}
criterion_main!(engine);
