//! Helpers shared by the engine's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;

use strata_storage::batch::header::{self, BatchHeader, HEADER_LEN};
use strata_storage::io::{IoBackend, backend_from_env};
use strata_storage::log::scan::BatchScanner;
use strata_storage::log::{LogConfig, PartitionLog, WriteMode};

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// An uncompressed RecordBatch v2 built independently of the engine's builder: `values` become
/// records with key `k<i>`, timestamps `ts + i`.
pub fn raw_batch(values: &[Vec<u8>], ts: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut body = Vec::new();
        body.push(0u8); // attributes
        varint(&mut body, i as i64); // timestamp delta
        varint(&mut body, i as i64); // offset delta
        let key = format!("k{i}");
        varint(&mut body, key.len() as i64);
        body.extend_from_slice(key.as_bytes());
        varint(&mut body, v.len() as i64);
        body.extend_from_slice(v);
        varint(&mut body, 0); // headers
        varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (HEADER_LEN - header::LOG_OVERHEAD + records.len()) as i32,
        partition_leader_epoch: -1,
        magic: header::MAGIC_V2,
        crc: 0,
        attributes: 0,
        last_offset_delta: values.len() as i32 - 1,
        base_timestamp: ts,
        max_timestamp: ts + values.len() as i64 - 1,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: values.len() as i32,
    };
    let mut head = [0u8; HEADER_LEN];
    h.write_to(&mut head);
    let mut b = head.to_vec();
    b.extend_from_slice(&records);
    header::write_crc(&mut b);
    b
}

/// A batch of `n` records whose values say which batch and record they are.
pub fn numbered_batch(batch_no: u64, n: usize, value_len: usize, ts: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut v = format!("b{batch_no}r{i}:").into_bytes();
            v.resize(value_len.max(v.len()), b'x');
            v
        })
        .collect();
    raw_batch(&values, ts)
}

pub fn backend() -> Arc<dyn IoBackend> {
    backend_from_env()
}

/// The default settings, in the write mode the suite runs in: `STRATA_TEST_WRITE_MODE=buffered|
/// direct` (default buffered), so the whole suite can be run once per write path, as it is per
/// backend.
pub fn test_config() -> LogConfig {
    let write_mode = match std::env::var("STRATA_TEST_WRITE_MODE") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("STRATA_TEST_WRITE_MODE: {e}")),
        Err(_) => WriteMode::Buffered,
    };
    LogConfig {
        write_mode,
        ..LogConfig::default()
    }
}

/// Small segments so tests roll often; retention off unless a test sets it.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        retention_ms: None,
        retention_check_interval: None,
        index_interval_bytes: 1024,
        preallocate: true,
        ..test_config()
    }
}

/// Makes the next open of `dir` see a machine that rebooted since the last one (the lock file
/// names the boot that last opened it, FORMAT.md §6): recovery then expects what a power cut
/// leaves, not what a process crash leaves.
pub fn as_if_rebooted(dir: &Path) {
    std::fs::write(
        dir.join(strata_storage::log::partition::LOCK_FILE),
        "a-boot-before-the-power-cut\n",
    )
    .unwrap();
}

pub fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, backend()).unwrap()
}

/// Every batch from `from` to the log end, checked with the engine's scanner (CRC included):
/// `(base_offset, record_count, bytes)` per batch.
pub fn read_all(log: &PartitionLog, from: u64) -> Vec<(u64, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    let end = log.log_end_offset();
    while next < end {
        let slice = log.read(next, 64 * 1024).unwrap();
        assert!(!slice.is_empty(), "empty read at {next} before end {end}");
        let mut scanner = BatchScanner::new(&slice, usize::MAX, true);
        for b in scanner.by_ref() {
            let bytes = slice[b.position as usize..b.end() as usize].to_vec();
            out.push((
                b.header.base_offset as u64,
                b.header.record_count as u32,
                bytes,
            ));
            next = b.header.next_offset() as u64;
        }
        assert!(
            scanner.stop().is_none(),
            "bad batch in a read: {:?}",
            scanner.stop()
        );
    }
    out
}

/// What an [`OpenHook`] runs before each `open_writable`: it may wait, or fail the open.
pub type BeforeOpen = Box<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>;

/// A backend that runs `before_open` before every `open_writable` and passes every call on:
/// a disk that cannot open a file any more, or an open held while the test does something.
pub struct OpenHook {
    pub inner: Arc<dyn IoBackend>,
    pub before_open: BeforeOpen,
}

impl std::fmt::Debug for OpenHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenHook")
            .field("inner", &self.inner)
            .finish()
    }
}

impl IoBackend for OpenHook {
    fn kind(&self) -> strata_storage::io::BackendKind {
        self.inner.kind()
    }
    fn create_new(
        &self,
        path: &Path,
    ) -> std::io::Result<Box<dyn strata_storage::io::WritableFile>> {
        self.inner.create_new(path)
    }
    fn open_writable(
        &self,
        path: &Path,
    ) -> std::io::Result<Box<dyn strata_storage::io::WritableFile>> {
        (self.before_open)(path)?;
        self.inner.open_writable(path)
    }
    fn open_direct(&self, path: &Path) -> std::io::Result<Box<dyn strata_storage::io::DirectFile>> {
        self.inner.open_direct(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
}
