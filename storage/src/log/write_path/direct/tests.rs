//! Unit tests of the direct path's staging, writes in flight and tail cache.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::flights::*;
use super::stage::*;
use super::tail_cache::*;
use crate::batch::BatchBuilder;
use crate::batch::NewRecord;
use crate::io::IoBackend;
use crate::io::plain::PlainBackend;
use crate::log::index::{OffsetIndex, TimeIndex};
use crate::log::segment::{Segment, SegmentState, Want};
use parking_lot::RwLock;
use std::path::Path;
use std::sync::Arc;

/// Writes complete without a sync (the policy `never`).
fn no_sync(_: &Flight) -> (bool, bool) {
    (false, false)
}

/// An active segment of a direct-mode log in a temporary directory.
fn segment(dir: &Path) -> Arc<Segment> {
    let path = dir.join("00000000000000000000.log");
    let w = PlainBackend.create_new(&path).unwrap();
    let state = SegmentState {
        len: 0,
        next_offset: 0,
        max_timestamp: -1,
    };
    let spec = crate::log::segment::ActiveSpec {
        backend: Arc::new(PlainBackend),
        writer: Some(w),
        direct_mode: true,
        waker: None,
    };
    Arc::new(Segment::active(
        dir,
        0,
        spec,
        1 << 30,
        state,
        OffsetIndex::new(),
        TimeIndex::new(),
    ))
}

/// A batch of `n` records of `len` bytes (baseOffset 0).
fn batch(n: usize, len: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(crate::batch::Compression::None);
    for _ in 0..n {
        b.push(NewRecord {
            value: Some(vec![7u8; len]),
            ..NewRecord::default()
        })
        .unwrap();
    }
    b.build().unwrap().to_vec()
}

/// Copies batches of `sizes` (records, bytes each) into `stage`, as a leader does;
/// returns the writes handed out and the file positions and base offsets used.
fn fill(
    stage: &mut Stage,
    seg: &Arc<Segment>,
    cache: &RwLock<TailCache>,
    sizes: &[(usize, usize)],
) -> (Vec<DirectWrite>, u64, u64) {
    let (mut pos, mut offset) = (0u64, 0u64);
    let mut out = Vec::new();
    for &(n, len) in sizes {
        let b = batch(n, len);
        let head = (offset as i64).to_be_bytes();
        stage
            .copy(seg, pos, offset, &head, &b[8..], cache, &mut out)
            .unwrap();
        pos += b.len() as u64;
        offset += n as u64;
    }
    (out, pos, offset)
}

#[test]
fn a_write_covers_whole_blocks_and_carries_the_partial_last_block_padded_with_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path());
    let cache = RwLock::new(TailCache::new(1 << 20));
    let mut stage = Stage::new(1 << 20);
    let (switches, end, _) = fill(&mut stage, &seg, &cache, &[(3, 1000)]);
    assert!(switches.is_empty(), "one buffer holds it");
    let w = stage.emit(&seg, None, &cache).unwrap().unwrap();
    assert_eq!((w.from, w.file_start), (0, 0));
    assert_eq!(w.full_end, align_down(end as usize));
    let tail = w.tail.as_ref().unwrap().as_slice();
    let partial = end as usize - w.full_end;
    assert_eq!(
        &tail[..partial],
        w.buf.get(w.full_end..end as usize).unwrap()
    );
    assert!(tail[partial..].iter().all(|&b| b == 0), "zero padding");
    assert!(
        stage.emit(&seg, None, &cache).unwrap().is_none(),
        "nothing new"
    );
}

#[test]
fn consecutive_writes_of_one_buffer_merge_into_one_that_ends_like_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path());
    let cache = RwLock::new(TailCache::new(1 << 20));
    let mut stage = Stage::new(1 << 20);
    fill(&mut stage, &seg, &cache, &[(2, 3000)]);
    let mut first = stage.emit(&seg, None, &cache).unwrap().unwrap();
    let (_, pos, _) = fill(&mut stage, &seg, &cache, &[]);
    assert_eq!(pos, 0);
    let b = batch(2, 3000);
    let head = 2i64.to_be_bytes();
    let at = first.buf.filled() as u64;
    stage
        .copy(&seg, at, 2, &head, &b[8..], &cache, &mut Vec::new())
        .unwrap();
    let state = SegmentState {
        len: at + b.len() as u64,
        next_offset: 4,
        max_timestamp: -1,
    };
    let second = stage.emit(&seg, Some((state, 9)), &cache).unwrap().unwrap();
    assert_eq!(second.from, first.full_end, "rewrites the shared block");
    let (end, tail) = (
        second.full_end,
        second.tail.as_ref().map(|t| t.as_slice().to_vec()),
    );
    first.absorb(second).unwrap();
    assert_eq!(first.from, 0);
    assert_eq!(first.full_end, end);
    assert_eq!(first.tail.as_ref().map(|t| t.as_slice().to_vec()), tail);
    assert_eq!(first.publish.map(|p| p.1), Some(9));
}

#[test]
fn a_batch_that_does_not_fit_starts_a_buffer_that_repeats_the_shared_block() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path());
    let cache = RwLock::new(TailCache::new(4 << 20));
    let mut stage = Stage::new(1 << 20);
    // Five batches of ~300 KiB: the fourth does not fit a 1 MiB buffer.
    let (switches, end, _) = fill(&mut stage, &seg, &cache, &[(300, 1000); 5]);
    assert_eq!(switches.len(), 1, "one buffer switch");
    let old = &switches[0];
    let new = stage.emit(&seg, None, &cache).unwrap().unwrap();
    assert!(!Arc::ptr_eq(&old.buf, &new.buf));
    let shared = old.file_start + old.full_end as u64;
    assert_eq!(
        new.file_start, shared,
        "the new buffer starts at the shared block"
    );
    let partial = old.buf.filled() - old.full_end;
    assert_eq!(
        new.buf.get(0..partial).unwrap(),
        old.buf.get(old.full_end..old.buf.filled()).unwrap(),
        "with the bytes the old buffer holds there"
    );
    assert_eq!(new.file_start + new.buf.filled() as u64, end);
    let mut merged = switches.into_iter().next().unwrap();
    assert!(merged.absorb(new).is_err(), "two buffers never merge");
}

#[test]
fn flights_keep_two_writes_in_flight_merge_the_rest_and_hold_rolls_until_they_complete() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path());
    let cache = RwLock::new(TailCache::new(1 << 20));
    let mut stage = Stage::new(1 << 20);
    let mut flights: Flights<&str> = Flights::default();
    let mut staged = |n: u64, flights: &mut Flights<&str>| {
        let b = batch(1, 100);
        let at = cache
            .read()
            .chunks
            .back()
            .map_or(0, |c| c.file_start + c.buf.filled() as u64);
        let head = (n as i64).to_be_bytes();
        stage
            .copy(&seg, at, n, &head, &b[8..], &cache, &mut Vec::new())
            .unwrap();
        let state = SegmentState {
            len: at + b.len() as u64,
            next_offset: n + 1,
            max_timestamp: -1,
        };
        let w = stage
            .emit(&seg, Some((state, n + 1)), &cache)
            .unwrap()
            .unwrap();
        flights.stage(w);
    };
    let submit = |steps: Vec<Step<&str>>| -> Vec<u64> {
        steps
            .into_iter()
            .map(|s| match s {
                Step::Submit(p) => p.id,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    // Nothing in flight: each staged write goes at once, up to two.
    staged(0, &mut flights);
    let a = submit(flights.take_next(no_sync).unwrap());
    staged(1, &mut flights);
    let b = submit(flights.take_next(no_sync).unwrap());
    assert_eq!((a.len(), b.len()), (1, 1));
    for n in 2..5 {
        staged(n, &mut flights);
    }
    assert!(
        flights.take_next(no_sync).unwrap().is_empty(),
        "no room: they wait"
    );
    flights.roll("roll");
    staged(5, &mut flights);
    assert!(
        flights.completed(b[0]).is_none(),
        "completions come in order"
    );
    let first = flights.completed(a[0]).unwrap();
    assert_eq!(first.publish.map(|p| p.1), Some(1));
    // Batches 2..=4 merge into one write; the roll waits for everything before it.
    let c = submit(flights.take_next(no_sync).unwrap());
    assert_eq!(c.len(), 1, "three staged writes, one submitted");
    assert_eq!(
        flights.completed(b[0]).unwrap().publish.map(|p| p.1),
        Some(2)
    );
    assert!(
        flights.take_next(no_sync).unwrap().is_empty(),
        "the roll waits"
    );
    let merged = flights.completed(c[0]).unwrap();
    assert_eq!(merged.publish.map(|p| p.1), Some(5), "publishes the last");
    let steps = flights.take_next(no_sync).unwrap();
    assert!(
        matches!(steps.as_slice(), [Step::Roll("roll"), Step::Submit(_)]),
        "{steps:?}"
    );
    flights.clear();
    assert!(flights.is_empty());
}

#[test]
fn the_tail_cache_answers_reads_of_the_batches_it_holds_up_to_the_published_end() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment(dir.path());
    let cache = RwLock::new(TailCache::new(1 << 20));
    let mut stage = Stage::new(1 << 20);
    // 12 batches of ~100 KiB over two 1 MiB buffers; the cache keeps only the newest.
    let (_, end, offsets) = fill(&mut stage, &seg, &cache, &[(100, 1000); 12]);
    stage.emit(&seg, None, &cache).unwrap().unwrap();
    let c = cache.read();
    assert_eq!(c.chunks.len(), 1, "the 1 MiB window holds one buffer");
    let first_cached = c.chunks[0].first_offset();
    assert!(first_cached > 0 && first_cached < offsets);
    let want = |offset, max_bytes| Want {
        offset,
        max_bytes,
        end_offset: offsets,
    };
    let path = seg.log_path.clone();
    assert!(
        c.read(0, end, &want(0, 1), &path).unwrap().is_none(),
        "evicted"
    );
    let s = c
        .read(0, end, &want(offsets - 1, 1), &path)
        .unwrap()
        .unwrap();
    assert!(s.is_staged());
    let h = crate::batch::header::BatchHeader::parse(&s).unwrap();
    assert_eq!(h.base_offset as u64, offsets - 100);
    assert_eq!(s.file_position() as u64 + s.len() as u64, end);
    let all = c
        .read(0, end, &want(first_cached, usize::MAX), &path)
        .unwrap()
        .unwrap();
    assert_eq!(all.file_position() as u64 + all.len() as u64, end);
    // Not yet published: not served.
    let published = end - s.len() as u64;
    let short = c.read(0, published, &want(offsets - 1, 1), &path).unwrap();
    assert!(short.is_none(), "the last batch is not published");
    assert!(
        c.read(1, end, &want(offsets - 1, 1), &path)
            .unwrap()
            .is_none(),
        "another segment's reads go to its file"
    );
}
