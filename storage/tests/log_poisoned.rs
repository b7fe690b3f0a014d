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
    let log = PartitionLog::open(dir.path(), config.clone(), Arc::new(failing.clone())).unwrap();
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
    // queues it after the write ("fdatasync").
    assert!(
        matches!(
            err,
            Error::Poisoned {
                op: "write" | "fdatasync",
                ..
            }
        ),
        "{err:?}"
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
    failing.set_mode(FailMode::AfterN(failing.ops()));
    let err = log.append_batch(numbered_batch(0, 1, 10, 0)).unwrap_err();
    assert!(
        matches!(err, Error::Poisoned { op: "write", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(log.log_end_offset(), 0, "nothing became visible");
}
