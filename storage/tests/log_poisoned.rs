//! Scenario: the disk fails a write or an fsync. The log refuses every later write with a clear
//! error instead of retrying blindly, and a reopen recovers from what is really on disk.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::*;
use strata_storage::Error;
use strata_storage::io::faulty::{FailMode, FailingBackend};
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog};

#[test]
fn given_always_when_an_fsync_fails_then_the_append_fails_and_the_log_refuses_writes_until_reopened()
 {
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingBackend::counting(backend());
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        ..small_config()
    };
    let log = PartitionLog::open(dir.path(), config, Arc::new(failing.clone())).unwrap();
    log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    failing.set_mode(FailMode::SyncsAfterN(failing.syncs()));
    let err = log.append_batch(numbered_batch(1, 1, 10, 0)).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. } | Error::Poisoned { .. }),
        "{err:?}"
    );
    failing.heal();
    let err = log.append_batch(numbered_batch(2, 1, 10, 0)).unwrap_err();
    // The buffered path links the sync to the write (one operation, "write"); the direct path
    // queues it after the write, and names the failed one ("fdatasync").
    let expected = match config.write_mode {
        strata_storage::log::WriteMode::Direct => "fdatasync",
        _ => "write",
    };
    assert!(
        matches!(err, Error::Poisoned { op, .. } if op == expected),
        "{err:?}, expected {expected}"
    );
    assert!(err.to_string().contains("refuses writes"), "{err}");
    // Reads of what was acknowledged still work.
    assert_eq!(read_all(&log, 0).len(), 1);
    drop(log);
    let log = PartitionLog::open(dir.path(), config, backend()).unwrap();
    assert!(log.append_batch(numbered_batch(3, 1, 10, 0)).is_ok());
}

#[test]
fn given_never_when_an_explicit_sync_fails_then_the_log_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingBackend::counting(backend());
    let log = PartitionLog::open(dir.path(), small_config(), Arc::new(failing.clone())).unwrap();
    log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    failing.set_mode(FailMode::SyncsAfterN(failing.syncs()));
    assert!(matches!(
        log.sync(),
        Err(Error::Poisoned {
            op: "fdatasync",
            ..
        })
    ));
    failing.heal();
    assert!(matches!(
        log.append_batch(numbered_batch(1, 1, 10, 0)),
        Err(Error::Poisoned {
            op: "fdatasync",
            ..
        })
    ));
    assert!(matches!(log.sync(), Err(Error::Poisoned { .. })));
}

#[test]
fn given_a_failing_write_when_appending_then_the_error_names_the_file_and_later_writes_are_refused()
{
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingBackend::counting(backend());
    let log = PartitionLog::open(dir.path(), small_config(), Arc::new(failing.clone())).unwrap();
    // The first append opens the segment's files; the next one only writes.
    log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap();
    failing.set_mode(FailMode::AfterN(failing.ops()));
    let err = log.append_batch(numbered_batch(1, 1, 10, 0)).unwrap_err();
    assert!(
        matches!(err, Error::Poisoned { op: "write", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(err.to_string().contains(".log"), "names the file: {err}");
    assert_eq!(log.log_end_offset(), 1, "nothing more became visible");
    failing.heal();
    assert!(matches!(
        log.append_batch(numbered_batch(2, 1, 10, 0)),
        Err(Error::Poisoned { .. })
    ));
}

/// A backend whose files cannot be opened while `full` is set: the process is out of file
/// descriptors (`EMFILE`).
#[derive(Debug)]
struct NoDescriptors {
    inner: Arc<dyn strata_storage::io::IoBackend>,
    full: std::sync::atomic::AtomicBool,
}

impl strata_storage::io::IoBackend for NoDescriptors {
    fn kind(&self) -> strata_storage::io::BackendKind {
        self.inner.kind()
    }
    fn create_new(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn strata_storage::io::WritableFile>> {
        self.check()?;
        self.inner.create_new(path)
    }
    fn open_writable(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn strata_storage::io::WritableFile>> {
        self.check()?;
        self.inner.open_writable(path)
    }
    fn open_direct(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn strata_storage::io::DirectFile>> {
        self.check()?;
        self.inner.open_direct(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

impl NoDescriptors {
    fn check(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(libc::EMFILE))
        } else {
            Ok(())
        }
    }
}

#[test]
fn given_no_file_descriptors_left_when_appending_then_the_appends_fail_and_the_log_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config(), backend()).unwrap();
    log.append_batch(numbered_batch(0, 2, 10, 0)).unwrap();
    log.close().unwrap();
    let disk = Arc::new(NoDescriptors {
        inner: backend(),
        full: std::sync::atomic::AtomicBool::new(false),
    });
    // Opening an idle partition needs no descriptor.
    disk.full.store(true, std::sync::atomic::Ordering::SeqCst);
    let log = PartitionLog::open(dir.path(), small_config(), disk.clone()).unwrap();
    let err = log.append_batch(numbered_batch(1, 2, 10, 0)).unwrap_err();
    assert!(err.is_out_of_resources(), "{err:?}");
    assert_eq!(
        log.failure(),
        None,
        "the log is not poisoned: nothing was written"
    );
    assert_eq!(log.log_end_offset(), 2);
    // Once descriptors are back, appends go on where the log ends, without a gap.
    disk.full.store(false, std::sync::atomic::Ordering::SeqCst);
    let info = log.append_batch(numbered_batch(2, 2, 10, 0)).unwrap();
    assert_eq!(info.base_offset, 2);
    assert_eq!(read_all(&log, 0).len(), 2);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config(), backend()).unwrap();
    assert_eq!(read_all(&log, 0).len(), 2);
}

#[test]
fn given_a_rolled_segment_that_cannot_be_opened_when_it_is_sealed_then_the_log_refuses_writes_and_the_recovery_point_stays()
 {
    // Only a segment retention already deleted may go unsealed; any other failure to open it
    // must stop the log, or the checkpoint would move past data nothing synced.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for b in 0..5 {
        log.append_batch(numbered_batch(b, 2, 200, 0)).unwrap();
    }
    log.close().unwrap();
    // Reopened, the active segment's file is not open: its seal opens it, and that fails.
    let first = strata_storage::log::name::segment_path(
        dir.path(),
        0,
        strata_storage::log::name::FileKind::Log,
    );
    let failing = OpenHook {
        inner: backend(),
        before_open: Box::new(move |path| {
            if path == first {
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            } else {
                Ok(())
            }
        }),
    };
    let log = PartitionLog::open(dir.path(), small_config(), Arc::new(failing)).unwrap();
    log.roll().unwrap();
    let e = log.wait_for_seals().unwrap_err();
    assert!(e.to_string().contains("open segment"), "{e}");
    assert!(log.append_batch(numbered_batch(9, 1, 10, 0)).is_err());
    drop(log);
    // The checkpoint still has the recovery point before the unsealed segment: it is scanned.
    let log = open(dir.path(), small_config());
    assert!(
        log.recovery_report().segments_scanned >= 1,
        "{:?}",
        log.recovery_report()
    );
    assert_eq!(read_all(&log, 0).len(), 5);
}
