//! `FailingBackend`: failures land exactly where they were scheduled, so a crash test can count a
//! workload's operations once and then fail each of them in turn.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

// One module named like the file, so `cargo test -p strata-storage io` selects these tests.
mod io_failing {

    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use strata_storage::io::IoBackend;
    use strata_storage::io::faulty::{FailMode, FailingBackend, is_injected};
    use strata_storage::io::plain::PlainBackend;

    /// A small log-like workload touching every counted operation; stops at the first error and
    /// returns it.
    fn workload(backend: &dyn IoBackend, dir: &Path) -> io::Result<()> {
        backend.create_dir_all(&dir.join("p"))?; // not counted
        let seg = dir.join("p/00000000000000000000.log");
        let file = backend.create_new(&seg)?;
        file.preallocate(0, 4096)?;
        file.write_all_at(&[b"batch-1", b"batch-2"], 0)?;
        file.sync_data()?;
        file.write_all_at_and_sync(&[b"batch-3"], 14)?;
        file.set_len(21)?;
        drop(file);
        let file = backend.open_writable(&seg)?;
        file.write_all_at(&[b"batch-4"], 21)?;
        let tmp = dir.join("p/checkpoint.tmp");
        let cp = backend.create_new(&tmp)?;
        cp.write_all_at_and_sync(&[b"28"], 0)?;
        backend.rename(&tmp, &dir.join("p/checkpoint"))?;
        backend.sync_dir(&dir.join("p"))?;
        backend.remove_file(&dir.join("p/checkpoint"))?;
        Ok(())
    }

    fn count_ops() -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let counting = FailingBackend::counting(Arc::new(PlainBackend::new()));
        workload(&counting, dir.path()).unwrap();
        counting.ops()
    }

    #[test]
    fn given_a_counting_backend_when_the_workload_runs_then_every_mutating_op_is_counted() {
        // create_new, preallocate, write, sync, write+sync, set_len, open_writable, write,
        // create_new, write+sync, rename, sync_dir, remove_file (create_dir_all is not counted).
        assert_eq!(count_ops(), 13);
    }

    #[test]
    fn given_fail_after_n_when_the_workload_runs_then_op_n_is_the_first_to_fail() {
        let count = count_ops();
        for n in 0..count {
            let dir = tempfile::tempdir().unwrap();
            let backend = FailingBackend::new(Arc::new(PlainBackend::new()), n);
            let err = workload(&backend, dir.path()).unwrap_err();
            assert!(is_injected(&err), "n={n}: {err}");
            assert!(
                err.to_string()
                    .contains(&format!("injected failure after {n} operations")),
                "n={n}: {err}"
            );
            assert_eq!(
                backend.ops(),
                n + 1,
                "n={n}: the workload stops at the failure"
            );
            assert_eq!(backend.injected(), 1);
        }
        let dir = tempfile::tempdir().unwrap();
        let backend = FailingBackend::new(Arc::new(PlainBackend::new()), count);
        workload(&backend, dir.path()).unwrap();
        assert_eq!(backend.injected(), 0);
    }

    #[test]
    fn given_fail_after_n_when_the_disk_has_died_then_every_later_op_fails_too() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FailingBackend::new(Arc::new(PlainBackend::new()), 1);
        let file = backend.create_new(&dir.path().join("f")).unwrap();
        assert!(is_injected(&file.write_all_at(&[b"x"], 0).unwrap_err()));
        assert!(is_injected(&file.sync_data().unwrap_err()));
        assert!(is_injected(&backend.sync_dir(dir.path()).unwrap_err()));
        assert_eq!(backend.injected(), 3);
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"");
    }

    #[test]
    fn given_only_nth_when_the_workload_runs_then_exactly_that_op_fails_and_later_ones_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let backend =
            FailingBackend::with_mode(Arc::new(PlainBackend::new()), FailMode::OnlyNth(2));
        let file = backend.create_new(&dir.path().join("f")).unwrap(); // op 0
        file.write_all_at(&[b"a"], 0).unwrap(); // op 1
        let err = file.write_all_at(&[b"b"], 1).unwrap_err(); // op 2
        assert!(is_injected(&err));
        file.write_all_at(&[b"c"], 1).unwrap(); // op 3
        file.sync_data().unwrap(); // op 4
        assert_eq!(backend.ops(), 5);
        assert_eq!(backend.injected(), 1);
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"ac");
    }

    #[test]
    fn given_syncs_fail_when_writing_then_writes_land_and_every_sync_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let backend =
            FailingBackend::with_mode(Arc::new(PlainBackend::new()), FailMode::SyncsAfterN(1));
        let file = backend.create_new(&path).unwrap();
        file.write_all_at(&[b"one"], 0).unwrap();
        file.sync_data().unwrap(); // the first sync succeeds
        file.write_all_at(&[b"two"], 3).unwrap();
        assert!(is_injected(&file.sync_data().unwrap_err()));
        // A failing write+sync still writes, as a real fsync error would leave the page cache.
        assert!(is_injected(
            &file.write_all_at_and_sync(&[b"six"], 6).unwrap_err()
        ));
        assert!(is_injected(&file.sync_data().unwrap_err()));
        backend.sync_dir(dir.path()).unwrap(); // not a data sync
        assert_eq!(backend.syncs(), 4);
        assert_eq!(backend.injected(), 3);
        assert_eq!(std::fs::read(&path).unwrap(), b"onetwosix");
    }

    #[test]
    fn given_a_failed_backend_when_healed_then_operations_succeed_again() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FailingBackend::new(Arc::new(PlainBackend::new()), 0);
        assert!(is_injected(
            &backend.create_new(&dir.path().join("f")).err().unwrap()
        ));
        assert!(!dir.path().join("f").exists(), "a failed op does nothing");
        backend.heal();
        assert_eq!(backend.mode(), FailMode::Never);
        backend.create_new(&dir.path().join("f")).unwrap();
        assert_eq!(backend.ops(), 2);
    }
}
