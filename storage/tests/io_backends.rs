//! The write/read contract every production backend honours, run on each of them: plain, io_uring
//! (skipped with a message when the kernel refuses it), and both again behind the test backends
//! (which must be transparent while they are not failing or crashing).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

// One module named like the file, so `cargo test -p strata-storage io` selects these tests.
mod io_backends {

    use std::path::Path;
    use std::sync::Arc;

    use strata_storage::io::faulty::{FailingBackend, ForgetfulBackend};
    use strata_storage::io::plain::PlainBackend;
    use strata_storage::io::uring::UringBackend;
    use strata_storage::io::{BackendChoice, BackendKind, IoBackend, select_backend};

    /// Every backend to run the contract on, with a name for failure messages.
    fn backends() -> Vec<(&'static str, Arc<dyn IoBackend>)> {
        let plain: Arc<dyn IoBackend> = Arc::new(PlainBackend::new());
        let mut all: Vec<(&'static str, Arc<dyn IoBackend>)> = vec![
            ("plain", Arc::clone(&plain)),
            (
                "forgetful(plain)",
                Arc::new(ForgetfulBackend::wrapping(Arc::clone(&plain))),
            ),
            ("counting(plain)", Arc::new(FailingBackend::counting(plain))),
        ];
        match UringBackend::probe() {
            Ok(uring) => {
                let uring: Arc<dyn IoBackend> = Arc::new(uring);
                all.push(("io_uring", Arc::clone(&uring)));
                all.push((
                    "forgetful(io_uring)",
                    Arc::new(ForgetfulBackend::wrapping(Arc::clone(&uring))),
                ));
                all.push((
                    "counting(io_uring)",
                    Arc::new(FailingBackend::counting(uring)),
                ));
            }
            Err(e) => strata_storage::testing::skip("io_uring", &e.to_string()),
        }
        all
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn given_many_buffers_when_written_then_the_file_reads_back_exactly() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("00000000000000000000.log");
            let file = backend.create_new(&path).unwrap();
            // More buffers than an io_uring ring has slots and than one `pwritev` takes
            // (1024), of varied sizes, some empty.
            let owned: Vec<Vec<u8>> = (0..2_500u32)
                .map(|i| vec![(i % 251) as u8; (i as usize * 7) % 50])
                .collect();
            let bufs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            file.write_all_at(&bufs, 0).unwrap();
            assert_eq!(read(&path), owned.concat(), "backend {name}");
        }
    }

    #[test]
    fn given_an_offset_when_written_then_bytes_land_there_and_the_gap_is_zero() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let file = backend.create_new(&path).unwrap();
            file.write_all_at(&[b"world"], 6).unwrap();
            file.write_all_at(&[b"hel", b"lo"], 0).unwrap();
            assert_eq!(read(&path), b"hello\0world", "backend {name}");
        }
    }

    #[test]
    fn given_write_and_sync_when_it_returns_then_the_bytes_read_back() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let file = backend.create_new(&path).unwrap();
            file.write_all_at_and_sync(&[b"ab", b"cd"], 0).unwrap();
            file.write_all_at(&[b"ef"], 4).unwrap();
            file.sync_data().unwrap();
            assert_eq!(read(&path), b"abcdef", "backend {name}");
        }
    }

    #[test]
    fn given_an_empty_buffer_list_when_written_then_nothing_changes() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let file = backend.create_new(&path).unwrap();
            file.write_all_at(&[], 100).unwrap();
            file.write_all_at_and_sync(&[], 100).unwrap();
            assert_eq!(read(&path), b"", "backend {name}");
        }
    }

    #[test]
    fn given_an_existing_file_when_created_new_then_it_is_refused_and_kept() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            std::fs::write(&path, b"keep").unwrap();
            let err = backend.create_new(&path).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::AlreadyExists,
                "backend {name}"
            );
            assert_eq!(read(&path), b"keep", "backend {name}");
        }
    }

    #[test]
    fn given_a_missing_file_when_opened_writable_then_not_found_and_not_created() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("missing");
            let err = backend.open_writable(&path).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "backend {name}");
            assert!(!path.exists(), "backend {name}");
        }
    }

    #[test]
    fn given_an_existing_file_when_opened_writable_then_appends_keep_the_old_bytes() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            std::fs::write(&path, b"old").unwrap();
            let file = backend.open_writable(&path).unwrap();
            let len = file.file().metadata().unwrap().len();
            file.write_all_at_and_sync(&[b"new"], len).unwrap();
            assert_eq!(read(&path), b"oldnew", "backend {name}");
        }
    }

    #[test]
    fn given_rename_and_remove_when_the_dir_is_synced_then_names_follow() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let sub = dir.path().join("a/b");
            backend.create_dir_all(&sub).unwrap();
            let tmp = sub.join("x.tmp");
            let fin = sub.join("x");
            let file = backend.create_new(&tmp).unwrap();
            file.write_all_at_and_sync(&[b"checkpoint"], 0).unwrap();
            drop(file);
            backend.rename(&tmp, &fin).unwrap();
            backend.sync_dir(&sub).unwrap();
            assert!(!tmp.exists(), "backend {name}");
            assert_eq!(read(&fin), b"checkpoint", "backend {name}");
            backend.remove_file(&fin).unwrap();
            backend.sync_dir(&sub).unwrap();
            assert!(!fin.exists(), "backend {name}");
        }
    }

    #[test]
    fn given_set_len_and_preallocate_then_the_length_is_what_was_set() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let file = backend.create_new(&path).unwrap();
            file.preallocate(0, 1 << 20).unwrap();
            assert_eq!(file.file().metadata().unwrap().len(), 0, "backend {name}");
            file.write_all_at(&[b"0123456789"], 0).unwrap();
            file.set_len(4).unwrap();
            file.sync_data().unwrap();
            assert_eq!(read(&path), b"0123", "backend {name}");
        }
    }

    #[test]
    fn given_threads_sharing_one_file_when_writing_disjoint_ranges_then_all_bytes_land() {
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let file = backend.create_new(&path).unwrap();
            std::thread::scope(|s| {
                for t in 0..4u8 {
                    let file = &file;
                    s.spawn(move || {
                        for i in 0..50u64 {
                            let chunk = [t; 16];
                            let offset = (u64::from(t) * 50 + i) * 16;
                            file.write_all_at(&[&chunk[..8], &chunk[8..]], offset)
                                .unwrap();
                            if i % 10 == 0 {
                                file.sync_data().unwrap();
                            }
                        }
                    });
                }
            });
            let got = read(&path);
            assert_eq!(got.len(), 4 * 50 * 16, "backend {name}");
            for (t, part) in got.chunks(50 * 16).enumerate() {
                assert!(part.iter().all(|&b| usize::from(b) == t), "backend {name}");
            }
        }
    }

    #[test]
    fn given_a_file_overwritten_in_place_then_it_holds_exactly_the_new_bytes_created_or_not() {
        use strata_storage::io::overwrite_file_unsynced;
        for (name, backend) in backends() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("checkpoint");
            // None yet: created.
            overwrite_file_unsynced(backend.as_ref(), &path, b"a longer first version").unwrap();
            assert_eq!(read(&path), b"a longer first version", "backend {name}");
            let ino = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
            let first = ino();
            // Shorter: the old tail is cut, nothing of it stays behind the new bytes.
            overwrite_file_unsynced(backend.as_ref(), &path, b"short").unwrap();
            assert_eq!(read(&path), b"short", "backend {name}");
            // Longer again: grows.
            overwrite_file_unsynced(backend.as_ref(), &path, b"longer than short").unwrap();
            assert_eq!(read(&path), b"longer than short", "backend {name}");
            // In place: the same file (inode), no temporary left.
            assert_eq!(ino(), first, "backend {name}: overwritten, not replaced");
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["checkpoint"], "backend {name}");
        }
    }

    #[test]
    fn given_each_choice_when_selected_then_the_kind_matches_or_io_uring_is_unsupported() {
        assert_eq!(
            select_backend(BackendChoice::Plain).unwrap().kind(),
            BackendKind::Plain
        );
        match select_backend(BackendChoice::IoUring) {
            Ok(b) => assert_eq!(b.kind(), BackendKind::IoUring),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
                println!("io_uring unavailable here: {e}");
            }
        }
        let auto = select_backend(BackendChoice::Auto).unwrap().kind();
        assert!(matches!(auto, BackendKind::IoUring | BackendKind::Plain));
    }
}
