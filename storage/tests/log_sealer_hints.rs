//! Scenario: the engine's runtime (not the appending thread) does the active segment's housekeeping that would stall an
//! appending thread. Under `never`, writeback of what was appended is started in order and
//! without gaps, and never by the appending thread (where `sync_file_range` would stall appends
//! while the device queue is full or a journal commit runs). Disk blocks are reserved one step
//! ahead of the data, never for a whole segment up front and never past a sealed segment's end.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use parking_lot::{Condvar, Mutex};
use strata_storage::io::{BackendKind, DirectFile, IoBackend, WritableFile};
use strata_storage::log::{
    FsyncPolicy, LogConfig, MIN_PREALLOCATE_STEP, PREALLOCATE_STEP, PartitionLog,
};

/// What a file was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Writeback { offset: u64, len: u64 },
    Preallocate { offset: u64, len: u64 },
    SetLen(u64),
}

/// `(file, op, thread name)` of every call the test watches, in order.
type Calls = Arc<Mutex<Vec<(String, Op, String)>>>;

/// The name of a file whose `sync_data` waits until the test clears it.
type Gate = Arc<(Mutex<Option<String>>, Condvar)>;

/// The test backend, recording the hints and truncations its files are given.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn IoBackend>,
    calls: Calls,
    gate: Gate,
}

#[derive(Debug)]
struct RecordingFile {
    inner: Box<dyn WritableFile>,
    name: String,
    calls: Calls,
    gate: Gate,
}

impl Recording {
    fn new() -> (Arc<Recording>, Calls, Gate) {
        let calls = Calls::default();
        let gate = Gate::default();
        let backend = Arc::new(Recording {
            inner: backend(),
            calls: calls.clone(),
            gate: gate.clone(),
        });
        (backend, calls, gate)
    }

    fn wrap(&self, path: &Path, inner: Box<dyn WritableFile>) -> Box<dyn WritableFile> {
        Box::new(RecordingFile {
            inner,
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            calls: self.calls.clone(),
            gate: self.gate.clone(),
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
    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn DirectFile>> {
        self.inner.open_direct(path)
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

impl RecordingFile {
    fn record(&self, op: Op) {
        let thread = std::thread::current().name().unwrap_or("").to_string();
        self.calls.lock().push((self.name.clone(), op, thread));
    }
}

impl WritableFile for RecordingFile {
    fn write_all_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(bufs, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        let (held, cv) = &*self.gate;
        let mut held = held.lock();
        while held.as_deref() == Some(self.name.as_str()) {
            cv.wait(&mut held);
        }
        drop(held);
        self.inner.sync_data()
    }
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        self.record(Op::Writeback { offset, len });
        self.inner.start_writeback(offset, len)
    }
    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.record(Op::Preallocate { offset, len });
        self.inner.preallocate(offset, len)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.record(Op::SetLen(len));
        self.inner.set_len(len)
    }
    fn file(&self) -> &File {
        self.inner.file()
    }
}

#[test]
fn given_never_when_megabytes_are_appended_then_the_runtime_starts_their_writeback_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, calls, _) = Recording::new();
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
    let writebacks = || {
        calls
            .lock()
            .iter()
            .filter_map(|(file, op, thread)| match *op {
                Op::Writeback { offset, len } => Some((file.clone(), offset, len, thread.clone())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while writebacks().iter().map(|c| c.2).sum::<u64>() < 8 << 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let calls = writebacks();
    assert!(!calls.is_empty(), "no writeback was started");
    assert!(
        calls[0].2 >= 8 << 20,
        "writeback starts once 8 MiB are pending, not for every write: {calls:?}"
    );
    let mut next = 0;
    for (file, offset, len, thread) in &calls {
        assert_eq!(file, "00000000000000000000.log");
        assert_eq!(*offset, next, "writeback ranges are contiguous: {calls:?}");
        assert!(*len > 0);
        assert!(is_runtime_worker(thread), "started by {thread:?}");
        next = offset + len;
    }
    assert!(next >= 8 << 20 && next <= end, "{next} of {end}");
}

/// Whether `thread` is one of the engine runtime's workers (not an appending thread).
fn is_runtime_worker(thread: &str) -> bool {
    thread
        .strip_prefix("strata-log-")
        .is_some_and(|n| n.parse::<usize>().is_ok())
}

/// The thread of preallocation `i` if it is a runtime worker (so the comparison fails
/// otherwise, naming the thread).
fn worker(steps: &[(u64, u64, String)], i: usize) -> String {
    match steps.get(i) {
        Some((_, _, t)) if is_runtime_worker(t) => t.clone(),
        _ => "a runtime worker".to_string(),
    }
}

/// `(offset, len, thread)` of the preallocations of `file`, in order.
fn preallocations(calls: &[(String, Op, String)], file: &str) -> Vec<(u64, u64, String)> {
    calls
        .iter()
        .filter(|(f, _, _)| f == file)
        .filter_map(|(_, op, thread)| match *op {
            Op::Preallocate { offset, len } => Some((offset, len, thread.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn given_preallocation_when_segments_fill_and_roll_then_blocks_are_reserved_a_step_ahead_and_never_past_a_seal()
 {
    const SEG: &str = "00000000000000000000.log";
    let dir = tempfile::tempdir().unwrap();
    let (backend, calls, gate) = Recording::new();
    let config = LogConfig {
        fsync: FsyncPolicy::Never,
        segment_bytes: PREALLOCATE_STEP + (8 << 20),
        preallocate: true,
        retention_ms: None,
        retention_check_interval: None,
        ..LogConfig::default()
    };
    let max_len = config.segment_bytes + config.max_batch_bytes as u64;
    let log = PartitionLog::open(dir.path(), config, backend).unwrap();
    assert_eq!(
        preallocations(&calls.lock(), SEG),
        [],
        "opening reserves nothing: an idle partition holds no disk beyond its data"
    );
    let wait_for_steps = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while preallocations(&calls.lock(), SEG).len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        preallocations(&calls.lock(), SEG)
    };

    // ≈256 KiB batches. The first append asks the runtime for one step past it; past half of
    // that step the writer asks for the rest.
    let mut b = 0;
    let mut append_until = |done: &dyn Fn(&PartitionLog) -> bool| {
        while !done(&log) {
            log.append_batch(numbered_batch(b, 64, 4096, 1_000))
                .unwrap();
            b += 1;
        }
    };
    let size = |log: &PartitionLog| log.segments().iter().map(|s| s.size).sum::<u64>();
    append_until(&|log| size(log) > 0);
    let first = size(&log);
    let steps = wait_for_steps(1);
    assert_eq!(
        steps,
        [(0, first + MIN_PREALLOCATE_STEP, worker(&steps, 0))],
        "the first append reserves the smallest step past it, not the whole segment"
    );
    // Written fast, the partition's step grows (doubling) up to PREALLOCATE_STEP, each
    // reserved by the runtime once half of the last is used.
    append_until(&|log| size(log) > 3 * PREALLOCATE_STEP / 2);
    let steps = wait_for_steps(3);
    assert!(steps.len() >= 3, "{steps:?}");
    for (i, s) in steps.iter().enumerate().skip(1) {
        assert_eq!(
            s.2,
            worker(&steps, i),
            "reserved by the runtime, not the writer"
        );
    }
    let largest = steps.iter().map(|s| s.1).max().unwrap();
    assert!(
        largest > MIN_PREALLOCATE_STEP && largest <= PREALLOCATE_STEP + (1 << 20),
        "steps grow with the write rate, up to PREALLOCATE_STEP: {steps:?}"
    );

    // Keep the runtime busy with the first segment's seal until the second segment has asked
    // for its next step and rolled too: that request must die with the roll.
    *gate.0.lock() = Some(SEG.to_string());
    append_until(&|log| log.segments().len() == 3);
    *gate.0.lock() = None;
    gate.1.notify_all();
    log.wait_for_seals().unwrap();
    let segments = log.segments();
    log.close().unwrap();

    let calls = calls.lock().clone();
    for sealed in &segments[..2] {
        let file = format!("{:020}.log", sealed.base_offset);
        let seal_at = calls
            .iter()
            .position(|(f, op, _)| *f == file && *op == Op::SetLen(sealed.size))
            .expect("the seal truncates a rolled segment to its data");
        for (i, (f, op, _)) in calls.iter().enumerate() {
            if *f == file && matches!(op, Op::Preallocate { .. }) {
                assert!(
                    i < seal_at,
                    "{file}: a reservation after the seal released them is never freed: {calls:?}"
                );
            }
        }
    }
    for s in &segments[1..] {
        let steps = preallocations(&calls, &format!("{:020}.log", s.base_offset));
        let first = steps.first().map(|s| (s.0, s.1));
        assert!(
            matches!(first, Some((0, len)) if (MIN_PREALLOCATE_STEP..=PREALLOCATE_STEP).contains(&len)),
            "a segment a roll creates reserves its first step at once: {first:?}"
        );
    }
    for s in &segments {
        let steps = preallocations(&calls, &format!("{:020}.log", s.base_offset));
        let mut next = 0;
        for (offset, len, _) in steps {
            assert_eq!(offset, next, "steps are contiguous: {calls:?}");
            assert!(offset + len <= max_len, "past a segment's largest size");
            next = offset + len;
        }
    }
}

#[test]
fn given_default_one_gib_segments_when_a_partition_holds_one_small_batch_then_it_holds_about_one_step_of_disk()
 {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_check_interval: None,
        ..LogConfig::default()
    };
    assert!(config.preallocate && config.segment_bytes == 1 << 30);
    let log = PartitionLog::open(dir.path(), config, backend()).unwrap();
    log.append_batch(numbered_batch(0, 4, 100, 1_000)).unwrap();
    let m = std::fs::metadata(dir.path().join("00000000000000000000.log")).unwrap();
    let allocated = m.blocks() * 512;
    // Equal to the step where the file system preallocates, far less where it cannot; never
    // the 1 GiB segment (an idle 1 000-partition broker would otherwise hold a terabyte).
    assert!(
        allocated <= MIN_PREALLOCATE_STEP + (1 << 20),
        "{allocated} bytes allocated for {} bytes of data: a partition that writes a little \
         reserves the smallest step",
        m.len()
    );
    log.close().unwrap();
}

#[test]
fn given_a_file_system_that_refuses_fallocate_when_a_log_opens_appends_and_rolls_then_nothing_fails()
 {
    use strata_storage::io::faulty::{FailMode, FailingBackend};
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingBackend::with_mode(backend(), FailMode::EveryOp("preallocate"));
    let config = LogConfig {
        segment_bytes: 64 << 10,
        preallocate: true,
        ..small_config()
    };
    let log = PartitionLog::open(dir.path(), config, Arc::new(failing.clone())).unwrap();
    let mut sent = 0;
    while log.segments().len() < 3 {
        log.append_batch(numbered_batch(sent, 8, 1000, 1_000))
            .unwrap();
        sent += 1;
    }
    log.wait_for_seals().unwrap();
    assert!(
        failing.injected() > 0,
        "the engine asked for preallocation, and was refused"
    );
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config, Arc::new(failing)).unwrap();
    assert_eq!(log.log_end_offset(), sent * 8);
    assert_eq!(read_all(&log, 0).len() as u64, sent);
}

#[test]
fn given_an_existing_partition_when_it_is_opened_then_no_blocks_are_reserved_until_it_is_appended_to()
 {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_check_interval: None,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config, backend()).unwrap();
    log.append_batch(numbered_batch(0, 4, 100, 1_000)).unwrap();
    log.close().unwrap();
    let seg = dir.path().join("00000000000000000000.log");
    let allocated = std::fs::metadata(&seg).unwrap().blocks() * 512;
    assert!(
        allocated < 64 << 10,
        "a clean close releases the reservation: {allocated} bytes still allocated"
    );
    // 2 000 idle partitions opened at start-up must not need 2 000 steps of free disk.
    let log = PartitionLog::open(dir.path(), config, backend()).unwrap();
    let m = std::fs::metadata(&seg).unwrap();
    assert!(
        m.blocks() * 512 < 64 << 10,
        "{} bytes allocated for {} bytes of data right after opening",
        m.blocks() * 512,
        m.len()
    );
    drop(log);
}
