//! `ForgetfulBackend`: after `crash`, exactly what was made durable survives — synced content,
//! dir-synced names — and a torn tail keeps at most a prefix of what was written past it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

// One module named like the file, so `cargo test -p strata-storage io` selects these tests.
mod io_forgetful {

    use std::path::Path;
    use std::sync::Arc;

    use strata_storage::io::IoBackend;
    use strata_storage::io::faulty::{ForgetfulBackend, TornMode};
    use strata_storage::io::uring::UringBackend;

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    /// A file created and dir-synced, holding `synced` durably and `unsynced` after it.
    fn durable_file_with_tail(
        disk: &ForgetfulBackend,
        dir: &Path,
        synced: &[u8],
        unsynced: &[u8],
    ) -> std::path::PathBuf {
        let path = dir.join("00000000000000000000.log");
        let file = disk.create_new(&path).unwrap();
        disk.sync_dir(dir).unwrap();
        file.write_all_at_and_sync(&[synced], 0).unwrap();
        file.write_all_at(&[unsynced], synced.len() as u64).unwrap();
        path
    }

    #[test]
    fn given_unsynced_bytes_when_crashing_then_they_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        let path = durable_file_with_tail(&disk, dir.path(), b"acked", b"not-acked");
        assert_eq!(read(&path), b"ackednot-acked");
        disk.crash(TornMode::Clean);
        assert_eq!(read(&path), b"acked");
    }

    #[test]
    fn given_bytes_synced_with_sync_data_when_crashing_then_they_stay() {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        let path = dir.path().join("f");
        let file = disk.create_new(&path).unwrap();
        disk.sync_dir(dir.path()).unwrap();
        file.write_all_at(&[b"one", b"two"], 0).unwrap();
        file.sync_data().unwrap();
        assert_eq!(disk.durable_content(&path).unwrap(), b"onetwo");
        drop(file);
        disk.crash(TornMode::Clean);
        assert_eq!(read(&path), b"onetwo");
    }

    #[test]
    fn given_a_file_created_without_sync_dir_when_crashing_then_it_vanishes_even_if_synced() {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        let path = dir.path().join("f");
        let file = disk.create_new(&path).unwrap();
        file.write_all_at_and_sync(&[b"data"], 0).unwrap();
        assert_eq!(disk.durable_content(&path), None);
        drop(file);
        disk.crash(TornMode::Clean);
        assert!(!path.exists());
    }

    #[test]
    fn given_a_rename_without_sync_dir_when_crashing_then_the_old_name_is_back_with_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("checkpoint");
        let tmp = dir.path().join("checkpoint.tmp");
        std::fs::write(&final_path, b"old").unwrap(); // predates the backend: durable
        let disk = ForgetfulBackend::new();
        let file = disk.create_new(&tmp).unwrap();
        file.write_all_at_and_sync(&[b"new"], 0).unwrap();
        drop(file);
        disk.rename(&tmp, &final_path).unwrap();
        assert_eq!(read(&final_path), b"new");
        disk.crash(TornMode::Clean);
        assert_eq!(read(&final_path), b"old");
        assert!(!tmp.exists(), "the tmp file was never dir-synced either");
    }

    #[test]
    fn given_a_rename_with_sync_dir_when_crashing_then_the_new_content_is_under_the_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("checkpoint");
        let tmp = dir.path().join("checkpoint.tmp");
        std::fs::write(&final_path, b"old").unwrap();
        let disk = ForgetfulBackend::new();
        let file = disk.create_new(&tmp).unwrap();
        file.write_all_at_and_sync(&[b"new"], 0).unwrap();
        drop(file);
        disk.rename(&tmp, &final_path).unwrap();
        disk.sync_dir(dir.path()).unwrap();
        disk.crash(TornMode::Clean);
        assert_eq!(read(&final_path), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn given_a_synced_tmp_renamed_over_nothing_without_sync_dir_when_crashing_then_tmp_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        let tmp = dir.path().join("x.tmp");
        let file = disk.create_new(&tmp).unwrap();
        file.write_all_at_and_sync(&[b"v1"], 0).unwrap();
        disk.sync_dir(dir.path()).unwrap(); // x.tmp is durable
        disk.rename(&tmp, &dir.path().join("x")).unwrap(); // the rename is not
        drop(file);
        disk.crash(TornMode::Clean);
        assert_eq!(read(&tmp), b"v1");
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn given_a_removal_without_sync_dir_when_crashing_then_the_file_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        let path = durable_file_with_tail(&disk, dir.path(), b"durable", b"-tail");
        disk.remove_file(&path).unwrap();
        assert!(!path.exists());
        disk.crash(TornMode::Clean);
        assert_eq!(read(&path), b"durable");
    }

    #[test]
    fn given_a_removal_with_sync_dir_when_crashing_then_the_file_stays_gone() {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        let path = durable_file_with_tail(&disk, dir.path(), b"durable", b"");
        disk.remove_file(&path).unwrap();
        disk.sync_dir(dir.path()).unwrap();
        disk.crash(TornMode::Clean);
        assert!(!path.exists());
    }

    #[test]
    fn given_a_preexisting_file_appended_without_sync_when_crashing_then_it_has_its_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"before").unwrap();
        let disk = ForgetfulBackend::new();
        let file = disk.open_writable(&path).unwrap();
        file.write_all_at(&[b"-after"], 6).unwrap();
        file.set_len(3).unwrap();
        drop(file);
        disk.crash(TornMode::Clean);
        assert_eq!(read(&path), b"before");
    }

    #[test]
    fn given_prefix_only_torn_mode_when_crashing_then_a_prefix_of_the_unsynced_tail_is_kept() {
        let synced = b"0123456789";
        let unsynced: Vec<u8> = (0..200u8).collect();
        let live = [&synced[..], &unsynced[..]].concat();
        let mut lengths = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let dir = tempfile::tempdir().unwrap();
            let disk = ForgetfulBackend::new();
            let path = durable_file_with_tail(&disk, dir.path(), synced, &unsynced);
            disk.crash(TornMode::PrefixOnly { seed });
            let got = read(&path);
            assert!(
                got.len() >= synced.len() && got.len() <= live.len(),
                "seed {seed}"
            );
            assert_eq!(got, live[..got.len()], "seed {seed}: a clean prefix");
            lengths.insert(got.len());
        }
        assert!(
            lengths.iter().any(|&l| l > synced.len() && l < live.len()),
            "some seed must tear inside the tail: {lengths:?}"
        );
    }

    #[test]
    fn given_partial_tail_torn_mode_when_crashing_then_durable_bytes_are_intact_and_the_tail_may_be_garbled()
     {
        let synced = b"0123456789";
        let unsynced = vec![0xAAu8; 200];
        let mut garbled = false;
        for seed in 0..32 {
            let dir = tempfile::tempdir().unwrap();
            let disk = ForgetfulBackend::new();
            let path = durable_file_with_tail(&disk, dir.path(), synced, &unsynced);
            disk.crash(TornMode::PartialTail { seed });
            let got = read(&path);
            assert!(got.len() >= synced.len() && got.len() <= synced.len() + unsynced.len());
            assert_eq!(
                &got[..synced.len()],
                synced,
                "seed {seed}: durable bytes never torn"
            );
            garbled |= got[synced.len()..].iter().any(|&b| b != 0xAA);
        }
        assert!(garbled, "some seed must write garbage into the kept tail");
    }

    #[test]
    fn given_the_same_seed_when_crashing_twice_then_the_torn_result_is_the_same() {
        let run = || {
            let dir = tempfile::tempdir().unwrap();
            let disk = ForgetfulBackend::new();
            let path = durable_file_with_tail(&disk, dir.path(), b"head", &[7u8; 100]);
            disk.crash(TornMode::PartialTail { seed: 42 });
            read(&path)
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn given_a_crash_when_reopening_through_the_same_backend_then_the_survivors_are_the_new_baseline()
     {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        let path = durable_file_with_tail(&disk, dir.path(), b"a", b"b");
        disk.crash(TornMode::Clean);
        // Reopen: the survivor counts as durable; new unsynced bytes vanish again on the next crash.
        let file = disk.open_writable(&path).unwrap();
        file.write_all_at(&[b"c"], 1).unwrap();
        drop(file);
        disk.crash(TornMode::Clean);
        assert_eq!(read(&path), b"a");
        // A fresh backend sees it as pre-existing too.
        let fresh = ForgetfulBackend::new();
        let file = fresh.open_writable(&path).unwrap();
        file.write_all_at_and_sync(&[b"d"], 1).unwrap();
        drop(file);
        fresh.crash(TornMode::Clean);
        assert_eq!(read(&path), b"ad");
    }

    #[test]
    fn given_a_handle_kept_across_a_crash_when_it_syncs_then_the_new_model_is_unaffected() {
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        let path = dir.path().join("f");
        let stale = disk.create_new(&path).unwrap();
        disk.sync_dir(dir.path()).unwrap();
        stale.write_all_at_and_sync(&[b"x"], 0).unwrap();
        disk.crash(TornMode::Clean);
        stale.write_all_at_and_sync(&[b"zzz"], 0).unwrap(); // writes the unlinked old inode
        assert_eq!(read(&path), b"x");
        disk.crash(TornMode::Clean);
        assert_eq!(read(&path), b"x");
    }

    #[test]
    fn given_a_forgetful_disk_over_io_uring_when_crashing_then_unsynced_bytes_vanish() {
        let uring = match UringBackend::probe() {
            Ok(u) => u,
            Err(e) => {
                strata_storage::testing::skip("io_uring", &e.to_string());
                return;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::wrapping(Arc::new(uring));
        let path = dir.path().join("f");
        let file = disk.create_new(&path).unwrap();
        disk.sync_dir(dir.path()).unwrap();
        let bufs: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 3]).collect();
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        file.write_all_at_and_sync(&refs, 0).unwrap();
        file.write_all_at(&refs, 300).unwrap();
        drop(file);
        disk.crash(TornMode::Clean);
        assert_eq!(read(&path), bufs.concat());
    }
}
