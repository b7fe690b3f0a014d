//! Scenario: the direct write path's files (`IoBackend::open_direct`) on the backend under test.
//! Writes land where they were aimed, a file performs its writes in submission order (so a
//! block written twice back to back holds the second write), bad requests are errors rather
//! than panics, a file's writes in flight finish at the device even if the file is dropped, and
//! `wait_idle` waits for them.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use strata_storage::io::faulty::{FailMode, FailingBackend, is_injected};
use strata_storage::io::{DIRECT_ALIGN, DirectBuf, DirectFile, IoBackend, probe_direct};

/// A file of `blocks` zero blocks, opened for direct writes.
fn direct_file(dir: &Path, backend: &dyn IoBackend, blocks: usize) -> Box<dyn DirectFile> {
    let path = dir.join("f");
    std::fs::write(&path, vec![0u8; blocks * DIRECT_ALIGN]).unwrap();
    backend.open_direct(&path).unwrap()
}

/// The same file opened for direct writes a second time (its own handle, maybe another ring).
fn direct_file_again(dir: &Path, backend: &dyn IoBackend) -> Box<dyn DirectFile> {
    backend.open_direct(&dir.join("f")).unwrap()
}

fn read(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("f")).unwrap()
}

/// Waits for `n` completions and checks they all succeeded, in submission order.
fn complete_ok(f: &dyn DirectFile, ids: &[u64]) {
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let min = if f.is_async() { 1 } else { 0 };
        for (id, res) in f.complete(min).unwrap() {
            res.unwrap_or_else(|e| panic!("write {id}: {e}"));
            got.push(id);
        }
        if !f.is_async() && got.len() < ids.len() {
            panic!("a synchronous file reported {got:?} of {ids:?}");
        }
    }
    assert_eq!(got, ids, "completions in submission order");
}

#[test]
fn given_aligned_blocks_when_written_directly_then_they_read_back_at_their_offset() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend();
    let f = direct_file(dir.path(), b.as_ref(), 4);
    let blocks = vec![
        DirectBuf::filled(7, 2 * DIRECT_ALIGN).unwrap(),
        DirectBuf::filled(9, DIRECT_ALIGN).unwrap(),
    ];
    f.submit(1, blocks, DIRECT_ALIGN as u64).unwrap();
    complete_ok(f.as_ref(), &[1]);
    let data = read(dir.path());
    assert_eq!(data.len(), 4 * DIRECT_ALIGN);
    assert!(data[..DIRECT_ALIGN].iter().all(|&x| x == 0));
    assert!(data[DIRECT_ALIGN..3 * DIRECT_ALIGN].iter().all(|&x| x == 7));
    assert!(data[3 * DIRECT_ALIGN..].iter().all(|&x| x == 9));
}

#[test]
fn given_two_writes_of_one_block_submitted_back_to_back_then_the_later_one_wins_every_time() {
    // The engine rewrites the partial block one write ends with in the next write, submitted
    // while the first may still be in flight: the file must perform them in order.
    let dir = tempfile::tempdir().unwrap();
    let b = backend();
    let f = direct_file(dir.path(), b.as_ref(), 64);
    for round in 0..200u64 {
        let at = (round % 64) * DIRECT_ALIGN as u64;
        let first = vec![DirectBuf::filled(1, 64 * DIRECT_ALIGN - at as usize).unwrap()];
        let second = vec![DirectBuf::filled(2, DIRECT_ALIGN).unwrap()];
        f.submit(2 * round, first, at).unwrap();
        f.submit(2 * round + 1, second, at).unwrap();
        complete_ok(f.as_ref(), &[2 * round, 2 * round + 1]);
        let data = read(dir.path());
        let block = &data[at as usize..at as usize + DIRECT_ALIGN];
        assert!(
            block.iter().all(|&x| x == 2),
            "round {round}: the earlier write landed last"
        );
    }
}

#[test]
fn given_a_misaligned_offset_when_written_directly_then_it_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend();
    let f = direct_file(dir.path(), b.as_ref(), 2);
    let bufs = vec![DirectBuf::filled(3, DIRECT_ALIGN).unwrap()];
    let failed = match f.submit(5, bufs, 100) {
        Err(_) => true,
        Ok(()) => f.complete(usize::from(f.is_async())).unwrap()[0].1.is_err(),
    };
    assert!(failed, "the kernel refuses a misaligned O_DIRECT write");
    assert!(read(dir.path()).iter().all(|&x| x == 0), "nothing written");
}

#[test]
fn given_nothing_in_flight_when_waiting_for_a_completion_then_it_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend();
    let f = direct_file(dir.path(), b.as_ref(), 1);
    if f.is_async() {
        assert!(f.complete(1).is_err());
    } else {
        assert!(f.complete(1).unwrap().is_empty());
    }
}

#[test]
fn given_writes_in_flight_when_the_file_is_dropped_then_they_still_complete_at_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend();
    let f = direct_file(dir.path(), b.as_ref(), 256);
    for i in 0..8u64 {
        let bufs = vec![DirectBuf::filled(i as u8 + 1, 32 * DIRECT_ALIGN).unwrap()];
        f.submit(i, bufs, i * 32 * DIRECT_ALIGN as u64).unwrap();
    }
    let second = direct_file_again(dir.path(), b.as_ref());
    for i in 0..8u64 {
        let bufs = vec![DirectBuf::filled(i as u8 + 101, DIRECT_ALIGN).unwrap()];
        second
            .submit(i, bufs, (256 + i) * DIRECT_ALIGN as u64)
            .unwrap();
    }
    // Waiting for one file's writes leaves its outcomes to collect.
    second.wait_idle();
    assert_eq!(second.complete(0).unwrap().len(), 8);
    drop(f);
    // The dropped file's writes finish on their own (bounded wait: they are at the device).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let complete = |data: &[u8]| {
        (0..8).all(|i| {
            data.get(i * 32 * DIRECT_ALIGN..(i + 1) * 32 * DIRECT_ALIGN)
                .is_some_and(|part| part.iter().all(|&x| x == i as u8 + 1))
        })
    };
    while !complete(&read(dir.path())) {
        assert!(
            std::time::Instant::now() < deadline,
            "writes of a dropped file never completed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn given_a_failing_disk_when_a_direct_write_is_submitted_then_the_injected_error_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingBackend::counting(backend());
    let f = direct_file(dir.path(), &failing, 1);
    let before = failing.ops();
    failing.set_mode(FailMode::OnlyNth(before));
    let bufs = vec![DirectBuf::filled(4, DIRECT_ALIGN).unwrap()];
    let err = f.submit(0, bufs, 0).unwrap_err();
    assert!(is_injected(&err), "{err}");
    assert_eq!(failing.ops(), before + 1, "a submit is one operation");
    let bufs = vec![DirectBuf::filled(4, DIRECT_ALIGN).unwrap()];
    f.submit(1, bufs, 0).unwrap();
    complete_ok(f.as_ref(), &[1]);
    assert!(read(dir.path()).iter().all(|&x| x == 4));
}

#[test]
fn given_a_real_directory_when_probed_then_direct_writes_work_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let b: Arc<dyn IoBackend> = backend();
    probe_direct(b.as_ref(), dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let missing = dir.path().join("no-such-dir");
    assert!(probe_direct(b.as_ref(), &missing).is_err());
}
