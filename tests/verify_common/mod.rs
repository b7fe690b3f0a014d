//! Helpers shared by the `dump_*` and `verify_*` end-to-end tests: writing partitions with the
//! engine and running the real `strata` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use strata_storage::batch::{Compression, NewRecord};
use strata_storage::io::plain::PlainBackend;
use strata_storage::log::{LogConfig, PartitionLog};

/// First timestamp of generated data; record `o` gets `T0 + o * 1000` (fixed, so output is).
pub const T0: i64 = 1_700_000_000_000;

pub fn strata(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verify")
}

/// Settings that keep generated data deterministic: no retention, no age rolls, no
/// preallocation, small index interval so small segments still get index entries.
pub fn config() -> LogConfig {
    LogConfig {
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        retention_check_interval: None,
        index_interval_bytes: 256,
        preallocate: false,
        // The suite runs once per write mode (scripts/test-all sets STRATA_TEST_WRITE_MODE):
        // the tools must read what either path leaves, crash padding included.
        write_mode: std::env::var("STRATA_TEST_WRITE_MODE")
            .ok()
            .and_then(|m| m.parse().ok())
            .unwrap_or_default(),
        ..LogConfig::default()
    }
}

pub fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, config(), Arc::new(PlainBackend::new())).unwrap()
}

/// Appends `batches` batches of 3 records each, values `value_len` bytes, every other batch
/// zstd when `mixed`, a header on the first record of each batch.
pub fn append(log: &PartitionLog, batches: usize, value_len: usize, mixed: bool) {
    for b in 0..batches {
        let start = log.log_end_offset();
        let records = (0..3u64).map(|r| {
            let o = start + r;
            let mut value = format!("value-{o}-").into_bytes();
            value.resize(value_len.max(value.len()), b'a' + (o % 26) as u8);
            let mut rec = NewRecord::new(value)
                .with_key(format!("key-{o}"))
                .with_timestamp(T0 + o as i64 * 1000);
            if r == 0 {
                rec = rec.with_header("trace", Some(format!("t{o}").into_bytes()));
            }
            rec
        });
        let codec = if mixed && b % 2 == 1 {
            Compression::Zstd
        } else {
            Compression::None
        };
        log.append_records(records, codec).unwrap();
    }
}

/// Three segments of 5 batches each (offsets 0..15, 15..30, 30..45), zstd and none.
pub fn write_three_segments(log: &PartitionLog) {
    append(log, 5, 40, true);
    log.roll().unwrap();
    append(log, 5, 40, true);
    log.roll().unwrap();
    append(log, 5, 40, true);
}

/// Copies the files of a partition directory (not `.lock`) into `to`.
pub fn copy_partition(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let n = e.file_name();
        if n != ".lock" && e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(n)).unwrap();
        }
    }
}

/// Byte positions of the batches of a segment, found by the engine's scanner.
pub fn batch_positions(segment: &[u8]) -> Vec<(usize, usize)> {
    strata_storage::log::scan::BatchScanner::new(segment, 1 << 20, true)
        .map(|b| (b.position as usize, b.header.total_len()))
        .collect()
}

/// A splitmix64 generator: seeded, so a failing trial can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
