//! Scenario: under `never`, writeback of what was appended is started in the background, in
//! order and without gaps, and never by the appending thread (where `sync_file_range` would
//! stall appends while the device queue is full or a journal commit runs).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use parking_lot::Mutex;
use strata_storage::io::{BackendKind, IoBackend, WritableFile};
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog};

/// `(file, offset, len, thread name)` of every `start_writeback`.
type Calls = Arc<Mutex<Vec<(String, u64, u64, String)>>>;

/// The test backend, recording the writeback hints its files are given.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn IoBackend>,
    calls: Calls,
}

#[derive(Debug)]
struct RecordingFile {
    inner: Box<dyn WritableFile>,
    name: String,
    calls: Calls,
}

impl Recording {
    fn wrap(&self, path: &Path, inner: Box<dyn WritableFile>) -> Box<dyn WritableFile> {
        Box::new(RecordingFile {
            inner,
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            calls: self.calls.clone(),
        })
    }
}

impl IoBackend for Recording {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(self.wrap(path, self.inner.create_new(path)?))
    }
    fn open_writable(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(self.wrap(path, self.inner.open_writable(path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

impl WritableFile for RecordingFile {
    fn write_all_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(bufs, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let thread = std::thread::current().name().unwrap_or("").to_string();
        self.calls
            .lock()
            .push((self.name.clone(), offset, len, thread));
        self.inner.start_writeback(offset, len)
    }
    fn preallocate(&self, len: u64) -> io::Result<()> {
        self.inner.preallocate(len)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn file(&self) -> &File {
        self.inner.file()
    }
}

#[test]
fn given_never_when_megabytes_are_appended_then_the_sealer_starts_their_writeback_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let backend = Arc::new(Recording {
        inner: backend(),
        calls: calls.clone(),
    });
    let config = LogConfig {
        fsync: FsyncPolicy::Never,
        segment_bytes: 64 << 20,
        retention_ms: None,
        retention_check_interval: None,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config, backend).unwrap();
    // 40 batches of ≈256 KiB: about 10 MiB, one segment.
    std::thread::scope(|s| {
        s.spawn(|| {
            for b in 0..40 {
                log.append_batch(numbered_batch(b, 64, 4096, 1_000))
                    .unwrap();
            }
        });
    });
    let end: u64 = log.segments().iter().map(|s| s.size).sum();
    assert!(end > 8 << 20, "{end} bytes appended");

    // The requests are hints taken by another thread: wait for it to catch up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let covered = || calls.lock().iter().map(|c| c.2).sum::<u64>();
    while covered() < 8 << 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let calls = calls.lock().clone();
    assert!(!calls.is_empty(), "no writeback was started");
    let mut next = 0;
    for (file, offset, len, thread) in &calls {
        assert_eq!(file, "00000000000000000000.log");
        assert_eq!(*offset, next, "writeback ranges are contiguous: {calls:?}");
        assert!(*len > 0);
        assert_eq!(thread, "strata-log-seal", "started by {thread:?}");
        next = offset + len;
    }
    assert!(next >= 8 << 20 && next <= end, "{next} of {end}");
}
