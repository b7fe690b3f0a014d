//! Scenario: a log written with O_DIRECT (`WriteMode::Direct`), whatever write mode the rest of
//! the suite runs in. The newest batches are read from the engine's staging buffers, older ones
//! from the file, and both always agree with what is on disk, also while readers race the
//! writers; a clean close leaves exactly the data; a crash leaves only the zero padding of the
//! last block, which recovery trims without calling it damage.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use strata_storage::Error;
use strata_storage::io::{DirectFile, IoBackend, WritableFile};
use strata_storage::log::scan::BatchScanner;
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog, ReadSlice, WriteMode};

fn direct(cache_bytes: usize) -> LogConfig {
    LogConfig {
        write_mode: WriteMode::Direct,
        direct_cache_bytes: cache_bytes,
        segment_bytes: 4 << 20,
        ..small_config()
    }
}

/// The bytes `slice` holds, read from its segment file instead (the segment that holds
/// `offset`).
fn from_file(log: &PartitionLog, offset: u64, slice: &ReadSlice) -> Vec<u8> {
    let seg = log
        .segments()
        .into_iter()
        .rfind(|s| s.base_offset <= offset)
        .unwrap();
    let mut buf = vec![0u8; slice.len()];
    std::fs::File::open(&seg.path)
        .unwrap()
        .read_exact_at(&mut buf, slice.file_position() as u64)
        .unwrap();
    buf
}

/// Checks every batch of a read: whole, CRC-valid, offsets contiguous, the first one holding
/// `offset`. Returns the offset after the last batch.
fn check_read(slice: &ReadSlice, offset: u64) -> u64 {
    let mut scanner = BatchScanner::new(slice, usize::MAX, true);
    let mut next = None;
    for b in scanner.by_ref() {
        let h = b.header;
        match next {
            None => assert!(
                h.base_offset as u64 <= offset && offset <= h.last_offset() as u64,
                "first batch {}..={} does not hold {offset}",
                h.base_offset,
                h.last_offset()
            ),
            Some(n) => assert_eq!(h.base_offset as u64, n, "offsets not contiguous"),
        }
        next = Some(h.next_offset() as u64);
    }
    assert!(scanner.stop().is_none(), "bad batch: {:?}", scanner.stop());
    next.unwrap()
}

#[test]
fn given_direct_writes_when_read_then_new_batches_come_from_memory_and_old_ones_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest cache: one 1 MiB staging buffer.
    let log = open(dir.path(), direct(0));
    for b in 0..40 {
        log.append_batch(numbered_batch(b, 10, 9_000, 0)).unwrap();
    }
    let end = log.log_end_offset();
    let newest = log.read(end - 1, 1).unwrap();
    assert!(newest.is_staged(), "the newest batch is still in memory");
    let oldest = log.read(0, 1).unwrap();
    assert!(!oldest.is_staged(), "the first batches left the cache");
    for (offset, slice) in [(end - 1, &newest), (0, &oldest)] {
        check_read(slice, offset);
        assert_eq!(&slice[..], &from_file(&log, offset, slice)[..]);
    }
    assert_eq!(read_all(&log, 0).len(), 40);
}

#[test]
fn given_direct_writes_when_closed_cleanly_then_every_file_holds_exactly_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 256 << 10,
        ..direct(1 << 20)
    };
    let log = open(dir.path(), config);
    let mut sent = Vec::new();
    for b in 0..70 {
        let batch = numbered_batch(b, 7, 1_000 + b as usize * 37, 0);
        log.append_batch(batch.clone()).unwrap();
        sent.push(batch);
    }
    assert!(log.segments().len() > 1, "rolled");
    let segments = log.segments();
    log.close().unwrap();
    for s in &segments {
        assert_eq!(
            std::fs::metadata(&s.path).unwrap().len(),
            s.size,
            "{} holds padding past its data",
            s.path.display()
        );
    }
    let log = open(dir.path(), config);
    let r = log.recovery_report();
    assert!(r.clean && r.segments_scanned == 0, "{r:?}");
    let got = read_all(&log, 0);
    assert_eq!(got.len(), sent.len());
    for (g, s) in got.iter().zip(&sent) {
        assert_eq!(g.2[8..], s[8..]);
    }
}

#[test]
fn given_direct_writes_when_the_process_dies_then_recovery_trims_only_the_padding() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), direct(1 << 20));
    for b in 0..25 {
        // 1 + 10 * (record framing + 333) bytes: never a whole number of blocks.
        log.append_batch(numbered_batch(b, 10, 333, 0)).unwrap();
    }
    let active = log.segments().last().unwrap().clone();
    drop(log); // no close
    let on_disk = std::fs::metadata(&active.path).unwrap().len();
    assert!(
        on_disk > active.size && on_disk.is_multiple_of(4096),
        "the last block is padded: {on_disk} bytes for {} of data",
        active.size
    );

    let log = open(dir.path(), direct(1 << 20));
    let r = log.recovery_report().clone();
    assert!(!r.clean);
    assert!(r.truncated.is_empty(), "padding is not damage: {r:?}");
    assert_eq!(r.padding_trimmed, on_disk - active.size, "{r:?}");
    assert_eq!(std::fs::metadata(&active.path).unwrap().len(), active.size);
    assert_eq!(read_all(&log, 0).len(), 25);
}

#[test]
fn given_readers_racing_writers_when_batches_of_every_size_are_appended_then_every_read_is_whole_and_matches_the_file()
 {
    for fsync in [FsyncPolicy::Never, FsyncPolicy::Always] {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(open(dir.path(), LogConfig { fsync, ..direct(0) }));
        let done = Arc::new(AtomicBool::new(false));
        let staged = Arc::new(AtomicU64::new(0));
        let mapped = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..3u64)
            .map(|w| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..120u64 {
                        let n = 1 + ((w * 7 + i * 13) % 20) as usize;
                        let len = 1 + ((w * 911 + i * 4099) % 3_000) as usize;
                        log.append_batch(numbered_batch(w * 1000 + i, n, len, 0))
                            .unwrap();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let (log, done) = (log.clone(), done.clone());
                let (staged, mapped) = (staged.clone(), mapped.clone());
                std::thread::spawn(move || {
                    let mut tail = 0u64;
                    let mut seed = r + 1;
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        let end = log.log_end_offset();
                        // Reader 0 tails the log; reader 1 reads anywhere.
                        let offset = if r == 0 {
                            tail
                        } else {
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                            if end == 0 { 0 } else { (seed >> 33) % end }
                        };
                        if offset < end {
                            let slice = log.read(offset, 64 << 10).unwrap();
                            let next = check_read(&slice, offset);
                            assert_eq!(&slice[..], &from_file(&log, offset, &slice)[..]);
                            let which = if slice.is_staged() { &staged } else { &mapped };
                            which.fetch_add(1, Ordering::Relaxed);
                            if r == 0 {
                                tail = next;
                            }
                        }
                        // The tail reader stops once it has read everything; the other one
                        // once the writers are done.
                        if finished && (r != 0 || tail >= end) {
                            return;
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(read_all(&log, 0).len(), 360, "{fsync}");
        assert!(
            staged.load(Ordering::Relaxed) > 0 && mapped.load(Ordering::Relaxed) > 0,
            "{fsync}: reads from memory {} and from the file {}",
            staged.load(Ordering::Relaxed),
            mapped.load(Ordering::Relaxed)
        );
    }
}

/// A backend whose file system refuses O_DIRECT (as tmpfs did before Linux 6.6).
#[derive(Debug)]
struct NoDirect(Arc<dyn IoBackend>);

impl IoBackend for NoDirect {
    fn kind(&self) -> strata_storage::io::BackendKind {
        self.0.kind()
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.0.create_new(path)
    }
    fn open_writable(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.0.open_writable(path)
    }
    fn open_direct(&self, _: &Path) -> io::Result<Box<dyn DirectFile>> {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
}

#[test]
fn given_a_file_system_without_o_direct_when_a_direct_log_opens_then_the_error_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = PartitionLog::open(dir.path(), direct(0), Arc::new(NoDirect(backend()))).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("O_DIRECT")),
        "{err}"
    );
    // The same directory opens buffered.
    let buffered = LogConfig {
        write_mode: WriteMode::Buffered,
        ..small_config()
    };
    PartitionLog::open(dir.path(), buffered, Arc::new(NoDirect(backend()))).unwrap();
}
