//! Scenario: a broker sends a read slice to a client's socket with `sendfile`, in pieces when the
//! socket's buffer fills, and the client receives exactly the slice's bytes, also after the
//! segment was rolled and deleted by retention while the slice was held.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use common::*;
use strata_storage::log::{LogConfig, PartitionLog, ReadSlice};

/// Sends `slice[from..]` through a non-blocking socket whose other end a thread drains, counting
/// how often the socket was full. Returns what the reader received and that count.
fn send_all(slice: &ReadSlice, from: usize) -> (Vec<u8>, usize) {
    let (tx, mut rx) = UnixStream::pair().unwrap();
    tx.set_nonblocking(true).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        got
    });
    let mut sent = from;
    let mut full = 0;
    while sent < slice.len() {
        match slice.send_to(tx.as_fd(), sent) {
            Ok(0) => panic!("sendfile sent nothing at {sent} of {}", slice.len()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                full += 1;
                std::thread::yield_now();
            }
            Err(e) => panic!("sendfile: {e}"),
        }
    }
    assert_eq!(
        slice.send_to(tx.as_fd(), sent).unwrap(),
        0,
        "nothing is left"
    );
    drop(tx);
    (reader.join().unwrap(), full)
}

/// A log of `segment_bytes` segments holding `batches` batches of `records` 4 KiB records.
fn filled_log(dir: &Path, segment_bytes: u64, batches: u64, records: usize) -> PartitionLog {
    let log = open(
        dir,
        LogConfig {
            segment_bytes,
            ..small_config()
        },
    );
    for b in 0..batches {
        log.append_batch(numbered_batch(b, records, 4096, 1_000))
            .unwrap();
    }
    log
}

#[test]
fn given_a_slice_of_megabytes_when_sent_to_a_socket_then_the_peer_gets_exactly_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled_log(dir.path(), 64 << 20, 24, 64);
    let slice = log.read(0, 64 << 20).unwrap();
    assert!(slice.len() > 4 << 20, "{} bytes", slice.len());

    let (got, full) = send_all(&slice, 0);
    assert_eq!(got, &slice[..]);
    assert!(
        full > 0,
        "a socket buffer smaller than the slice fills at least once"
    );

    let (tail, _) = send_all(&slice, 1000);
    assert_eq!(tail, &slice[1000..]);
    assert!(send_all(&ReadSlice::empty(), 0).0.is_empty());
}

#[test]
fn given_a_held_slice_when_its_segment_is_rolled_and_deleted_then_it_can_still_be_sent() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled_log(dir.path(), 1 << 20, 32, 16);
    let slice = log.read(0, 256 << 10).unwrap();
    let expected = slice.to_vec();
    log.wait_for_seals().unwrap();
    let segments = log.segments();
    assert!(segments.len() >= 2, "{segments:?}");
    log.delete_segments_before(segments[1].base_offset).unwrap();
    assert!(!segments[0].path.exists(), "the first segment was deleted");

    let (got, _) = send_all(&slice, 0);
    assert_eq!(got, expected);
}
