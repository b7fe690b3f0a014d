//! Idempotent producers: producer-id allocation and per-partition sequence checking.
//!
//! Kafka's rules, per partition and producer id: a batch's `baseSequence` must follow the last
//! accepted batch's last sequence (`OUT_OF_ORDER_SEQUENCE_NUMBER` otherwise); a batch equal to one
//! of the last five accepted batches is a retry and is answered with its original base offset
//! without being appended again; an older epoch is fenced (`INVALID_PRODUCER_EPOCH`); a newer epoch
//! starts at sequence 0. State is rebuilt from the batch headers of a partition's last segment when
//! the broker starts, so a producer retrying across a broker restart is still deduplicated.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use parking_lot::Mutex;

/// How many recent batches per producer are remembered for duplicate detection (Kafka: 5, the
/// largest `max.in.flight.requests.per.connection` that keeps idempotence).
pub const DEDUP_WINDOW: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: u64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<BatchMeta>,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// Append it.
    Append,
    /// A retry of an accepted batch: answer with this base offset, append nothing.
    Duplicate(u64),
    OutOfOrder {
        expected: i32,
        got: i32,
    },
    Fenced {
        current: i16,
        got: i16,
    },
}

/// Sequence state of one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

impl ProducerStates {
    /// Checks a batch of `count` records from (`pid`, `epoch`) starting at `first_seq`.
    pub fn check(&self, pid: i64, epoch: i16, first_seq: i32, count: i32) -> SeqCheck {
        let Some(e) = self.producers.get(&pid) else {
            // Unknown producer (new, or its state aged out): accept and start tracking.
            return SeqCheck::Append;
        };
        if epoch < e.epoch {
            return SeqCheck::Fenced {
                current: e.epoch,
                got: epoch,
            };
        }
        if epoch > e.epoch {
            return if first_seq == 0 {
                SeqCheck::Append
            } else {
                SeqCheck::OutOfOrder {
                    expected: 0,
                    got: first_seq,
                }
            };
        }
        let last_seq = first_seq.wrapping_add(count - 1);
        if let Some(b) = e
            .recent
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return SeqCheck::Duplicate(b.base_offset);
        }
        let expected = e.recent.back().map_or(0, |b| next_seq(b.last_seq));
        if first_seq == expected {
            SeqCheck::Append
        } else {
            SeqCheck::OutOfOrder {
                expected,
                got: first_seq,
            }
        }
    }

    /// Records an appended batch.
    pub fn record(&mut self, pid: i64, epoch: i16, first_seq: i32, count: i32, base_offset: u64) {
        let e = self.producers.entry(pid).or_default();
        if epoch != e.epoch {
            e.epoch = epoch;
            e.recent.clear();
        }
        e.recent.push_back(BatchMeta {
            first_seq,
            last_seq: first_seq.wrapping_add(count - 1),
            base_offset,
        });
        while e.recent.len() > DEDUP_WINDOW {
            e.recent.pop_front();
        }
    }
}

/// Hands out producer ids that are unique across restarts: ids are reserved in blocks, and the
/// end of the reserved block is persisted (atomic replace) before any id of it is handed out.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    state: Mutex<(i64, i64)>,
}

const BLOCK: i64 = 1000;

impl ProducerIdAllocator {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("producer-ids");
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse::<i64>()
                .with_context(|| format!("{}: not a number", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(ProducerIdAllocator {
            path,
            state: Mutex::new((next, next)),
        })
    }

    /// The next unused producer id.
    pub fn allocate(&self) -> Result<i64> {
        let mut s = self.state.lock();
        if s.0 >= s.1 {
            let end = s.1 + BLOCK;
            crate::broker::write_atomic(&self.path, end.to_string().as_bytes())?;
            s.1 = end;
        }
        let id = s.0;
        s.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sequences_must_follow_and_retries_get_their_original_offset() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 3), SeqCheck::Append);
        s.record(7, 0, 0, 3, 100);
        assert_eq!(s.check(7, 0, 3, 2), SeqCheck::Append);
        s.record(7, 0, 3, 2, 103);
        assert_eq!(s.check(7, 0, 0, 3), SeqCheck::Duplicate(100));
        assert_eq!(s.check(7, 0, 3, 2), SeqCheck::Duplicate(103));
        assert_eq!(
            s.check(7, 0, 9, 1),
            SeqCheck::OutOfOrder {
                expected: 5,
                got: 9
            }
        );
        assert!(matches!(s.check(7, 0, 4, 1), SeqCheck::OutOfOrder { .. }));
    }

    #[test]
    fn epochs_fence_old_producers_and_restart_sequences() {
        let mut s = ProducerStates::default();
        s.record(1, 3, 0, 1, 0);
        assert_eq!(s.check(1, 2, 1, 1), SeqCheck::Fenced { current: 3, got: 2 });
        assert_eq!(s.check(1, 4, 0, 1), SeqCheck::Append);
        assert!(matches!(s.check(1, 4, 5, 1), SeqCheck::OutOfOrder { .. }));
        s.record(1, 4, 0, 1, 1);
        assert_eq!(s.check(1, 4, 1, 1), SeqCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(1, 0, i, 1, i as u64);
        }
        assert!(matches!(s.check(1, 0, 0, 1), SeqCheck::OutOfOrder { .. }));
        assert_eq!(s.check(1, 0, 2, 1), SeqCheck::Duplicate(2));
        let mut w = ProducerStates::default();
        w.record(1, 0, i32::MAX - 1, 2, 0);
        assert_eq!(w.check(1, 0, 0, 1), SeqCheck::Append);
    }

    #[test]
    fn producer_ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIdAllocator::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate().unwrap()).collect();
        drop(a);
        let b = ProducerIdAllocator::open(dir.path()).unwrap();
        let next = b.allocate().unwrap();
        assert!(first.iter().all(|id| *id < next), "{first:?} then {next}");
    }
}
