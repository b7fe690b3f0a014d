//! The idempotent producers of a partition: Kafka's sequence rules and their snapshot file,
//! `producer-state` (FORMAT.md §9). Kafka keeps this in its storage layer too
//! (`ProducerStateManager`): it is rebuilt from the log's batch headers, and a replica rebuilds it
//! from the batches it copies, so it belongs with the log. The broker decides when to check,
//! record and snapshot.
//!
//! Kafka's rules, per partition and producer id: a batch's `baseSequence` must follow the last
//! accepted batch's last sequence (`OUT_OF_ORDER_SEQUENCE_NUMBER` otherwise); a batch equal to one
//! of the last five accepted batches is a retry and is answered with its original base offset
//! without being appended again; an older epoch is fenced (`INVALID_PRODUCER_EPOCH`); a newer epoch
//! starts at sequence 0. A producer whose newest batch timestamp is older than
//! `producer.id.expiration.ms` is forgotten, as in Kafka.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

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
    /// The largest batch timestamp seen from it (ms), which its expiry counts from, as Kafka's
    /// `producer.id.expiration.ms`.
    last_timestamp: i64,
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

    /// Records an appended batch whose largest timestamp is `max_timestamp` (ms).
    pub fn record(
        &mut self,
        pid: i64,
        epoch: i16,
        first_seq: i32,
        count: i32,
        base_offset: u64,
        max_timestamp: i64,
    ) {
        let e = self.producers.entry(pid).or_insert_with(|| ProducerEntry {
            last_timestamp: max_timestamp,
            ..ProducerEntry::default()
        });
        e.last_timestamp = e.last_timestamp.max(max_timestamp);
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

/// The producer-state snapshot in a partition directory (FORMAT.md §9).
pub const SNAPSHOT_FILE: &str = "producer-state";
/// `b"STPS"`: STrata Producer State.
const SNAPSHOT_MAGIC: [u8; 4] = *b"STPS";
const SNAPSHOT_VERSION: u16 = 1;
/// magic, version, flags, end offset, producer count.
const SNAPSHOT_HEADER: usize = 20;
/// producer id, epoch, last timestamp, batch count.
const SNAPSHOT_PRODUCER: usize = 19;
/// first sequence, last sequence, base offset.
const SNAPSHOT_BATCH: usize = 16;
const SNAPSHOT_CRC: usize = 4;
/// Larger snapshot files are refused before they are read: more than a million producers with
/// five batches each.
pub const MAX_SNAPSHOT_BYTES: u64 = 128 << 20;

/// Takes `n` bytes off the front of `rest`, or says the snapshot is truncated.
fn take<const N: usize>(rest: &mut &[u8]) -> std::result::Result<[u8; N], String> {
    let (head, tail) = rest
        .split_first_chunk::<N>()
        .ok_or_else(|| "snapshot truncated".to_string())?;
    *rest = tail;
    Ok(*head)
}

/// One producer's state as a reader sees it ([`ProducerStates::producers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub epoch: i16,
    /// The largest batch timestamp seen from it (ms).
    pub last_timestamp: i64,
    /// Its last accepted batches, oldest first (at most [`DEDUP_WINDOW`]).
    pub batches: Vec<BatchMeta>,
}

impl ProducerStates {
    /// Every producer, in id order.
    pub fn producers(&self) -> Vec<ProducerView> {
        let mut v: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(id, e)| ProducerView {
                producer_id: *id,
                epoch: e.epoch,
                last_timestamp: e.last_timestamp,
                batches: e.recent.iter().copied().collect(),
            })
            .collect();
        v.sort_by_key(|p| p.producer_id);
        v
    }

    /// True when no idempotent producer has been seen.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Forgets the producers whose last batch is more than `max_idle_ms` older than `now_ms`
    /// (Kafka's `producer.id.expiration.ms`); returns how many. A forgotten producer's next
    /// batch is accepted at any sequence, and a retry of its old batches is appended again.
    pub fn expire(&mut self, now_ms: i64, max_idle_ms: i64) -> usize {
        let before = self.producers.len();
        let cutoff = now_ms.saturating_sub(max_idle_ms);
        self.producers.retain(|_, e| e.last_timestamp >= cutoff);
        before - self.producers.len()
    }

    /// The snapshot of this state as of `end_offset` (every batch below it is included).
    /// Producers in id order, their batches oldest first; big-endian; CRC-32C last.
    pub fn encode_snapshot(&self, end_offset: u64) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        let batches: usize = self.producers.values().map(|e| e.recent.len()).sum();
        let mut b = Vec::with_capacity(
            SNAPSHOT_HEADER
                + ids.len() * SNAPSHOT_PRODUCER
                + batches * SNAPSHOT_BATCH
                + SNAPSHOT_CRC,
        );
        b.extend_from_slice(&SNAPSHOT_MAGIC);
        b.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&end_offset.to_be_bytes());
        // More than u32::MAX producers cannot be held in memory anyway.
        b.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let Some(e) = self.producers.get(id) else {
                continue;
            };
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&e.epoch.to_be_bytes());
            b.extend_from_slice(&e.last_timestamp.to_be_bytes());
            // At most DEDUP_WINDOW (5).
            b.push(e.recent.len() as u8);
            for m in &e.recent {
                b.extend_from_slice(&m.first_seq.to_be_bytes());
                b.extend_from_slice(&m.last_seq.to_be_bytes());
                b.extend_from_slice(&m.base_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes a snapshot: its end offset and the state. Every field is checked (CRC first,
    /// then magic, version, counts against the bytes present); nothing is allocated from a
    /// count before the bytes for it are known to be there.
    pub fn decode_snapshot(bytes: &[u8]) -> std::result::Result<(u64, ProducerStates), String> {
        let (body, crc) = bytes
            .split_last_chunk::<SNAPSHOT_CRC>()
            .ok_or_else(|| format!("{} bytes is too short for a snapshot", bytes.len()))?;
        if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
            return Err("CRC-32C mismatch".into());
        }
        let mut rest = body;
        if take::<4>(&mut rest)? != SNAPSHOT_MAGIC {
            return Err("bad magic".into());
        }
        let version = u16::from_be_bytes(take(&mut rest)?);
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown version {version}"));
        }
        let _flags = take::<2>(&mut rest)?;
        let end_offset = u64::from_be_bytes(take(&mut rest)?);
        let count = u32::from_be_bytes(take(&mut rest)?) as usize;
        if count > rest.len() / SNAPSHOT_PRODUCER {
            return Err(format!(
                "{count} producers do not fit in {} bytes",
                rest.len()
            ));
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = i64::from_be_bytes(take(&mut rest)?);
            let epoch = i16::from_be_bytes(take(&mut rest)?);
            let last_timestamp = i64::from_be_bytes(take(&mut rest)?);
            let [n] = take::<1>(&mut rest)?;
            if usize::from(n) > DEDUP_WINDOW {
                return Err(format!(
                    "producer {id}: {n} batches, at most {DEDUP_WINDOW}"
                ));
            }
            let mut recent = VecDeque::with_capacity(usize::from(n));
            for _ in 0..n {
                recent.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(take(&mut rest)?),
                    last_seq: i32::from_be_bytes(take(&mut rest)?),
                    base_offset: u64::from_be_bytes(take(&mut rest)?),
                });
            }
            if producers
                .insert(
                    id,
                    ProducerEntry {
                        epoch,
                        recent,
                        last_timestamp,
                    },
                )
                .is_some()
            {
                return Err(format!("producer {id} appears twice"));
            }
        }
        if !rest.is_empty() {
            return Err(format!("{} bytes after the last producer", rest.len()));
        }
        Ok((end_offset, ProducerStates { producers }))
    }
}

/// Reads the snapshot in partition directory `dir`: `Ok(None)` when there is none, the inner
/// error when it is larger than [`MAX_SNAPSHOT_BYTES`] (checked before reading) or does not
/// decode; the outer one for an I/O error.
pub fn read(dir: &Path) -> Result<std::result::Result<Option<(u64, ProducerStates)>, String>> {
    use std::io::Read;
    let path = dir.join(SNAPSHOT_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let len = file.metadata().ctx("stat", &path)?.len();
    if len > MAX_SNAPSHOT_BYTES {
        return Ok(Err(format!(
            "{len} bytes, more than the {MAX_SNAPSHOT_BYTES} a snapshot may have"
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_SNAPSHOT_BYTES + 1)
        .read_to_end(&mut bytes)
        .ctx("read", &path)?;
    Ok(ProducerStates::decode_snapshot(&bytes).map(Some))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn sequences_must_follow_and_retries_get_their_original_offset() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 3), SeqCheck::Append);
        s.record(7, 0, 0, 3, 100, 0);
        assert_eq!(s.check(7, 0, 3, 2), SeqCheck::Append);
        s.record(7, 0, 3, 2, 103, 0);
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
        s.record(1, 3, 0, 1, 0, 0);
        assert_eq!(s.check(1, 2, 1, 1), SeqCheck::Fenced { current: 3, got: 2 });
        assert_eq!(s.check(1, 4, 0, 1), SeqCheck::Append);
        assert!(matches!(s.check(1, 4, 5, 1), SeqCheck::OutOfOrder { .. }));
        s.record(1, 4, 0, 1, 1, 0);
        assert_eq!(s.check(1, 4, 1, 1), SeqCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(1, 0, i, 1, i as u64, 0);
        }
        assert!(matches!(s.check(1, 0, 0, 1), SeqCheck::OutOfOrder { .. }));
        assert_eq!(s.check(1, 0, 2, 1), SeqCheck::Duplicate(2));
        let mut w = ProducerStates::default();
        w.record(1, 0, i32::MAX - 1, 2, 0, 0);
        assert_eq!(w.check(1, 0, 0, 1), SeqCheck::Append);
    }

    fn sample() -> ProducerStates {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(
                42,
                3,
                i * 10,
                10,
                1000 + i as u64 * 10,
                1_700_000_000_000 + i64::from(i),
            );
        }
        s.record(-5, 0, i32::MAX - 1, 4, 7, -1);
        s.record(9, i16::MAX, 0, 1, u64::MAX - 1, i64::MAX);
        s
    }

    /// The state as comparable data (the map's order is arbitrary).
    fn entries(s: &ProducerStates) -> Vec<(i64, i16, i64, Vec<BatchMeta>)> {
        s.producers()
            .into_iter()
            .map(|p| (p.producer_id, p.epoch, p.last_timestamp, p.batches))
            .collect()
    }

    /// The count bound (producers × their smallest size against the bytes present) lets every
    /// real snapshot through, however many producers it holds.
    #[test]
    fn a_snapshot_of_many_producers_round_trips() {
        let mut s = ProducerStates::default();
        for pid in 0..200 {
            s.record(pid, 0, 0, 1, pid as u64, 1_000);
        }
        let (end, back) = ProducerStates::decode_snapshot(&s.encode_snapshot(200)).unwrap();
        assert_eq!(end, 200);
        assert_eq!(back.producers().len(), 200);
        assert_eq!(entries(&back), entries(&s));
    }

    #[test]
    fn snapshots_round_trip_and_keep_deduplicating() {
        let s = sample();
        let bytes = s.encode_snapshot(12_345);
        assert_eq!(
            bytes.len(),
            SNAPSHOT_HEADER + 3 * SNAPSHOT_PRODUCER + 7 * SNAPSHOT_BATCH + SNAPSHOT_CRC
        );
        let (end, back) = ProducerStates::decode_snapshot(&bytes).unwrap();
        assert_eq!(end, 12_345);
        assert_eq!(entries(&back), entries(&s));
        assert_eq!(back.check(42, 3, 60, 10), SeqCheck::Duplicate(1060));
        assert_eq!(back.check(42, 3, 70, 1), SeqCheck::Append);
        let empty = ProducerStates::default().encode_snapshot(0);
        assert!(
            ProducerStates::decode_snapshot(&empty)
                .unwrap()
                .1
                .is_empty()
        );
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_of_a_snapshot_is_refused() {
        let bytes = sample().encode_snapshot(99);
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                assert!(
                    ProducerStates::decode_snapshot(&bad).is_err(),
                    "byte {i} bit {bit:#x} flipped was accepted"
                );
            }
        }
        for len in 0..bytes.len() {
            assert!(
                ProducerStates::decode_snapshot(&bytes[..len]).is_err(),
                "{len}"
            );
        }
    }

    /// A snapshot whose CRC is right but whose fields are not (a bug, or a hand-made file).
    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        body
    }

    #[test]
    fn well_checksummed_snapshots_with_impossible_fields_are_refused_without_allocating() {
        let good = sample().encode_snapshot(1);
        let body = &good[..good.len() - SNAPSHOT_CRC];
        let mut huge = body.to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = ProducerStates::decode_snapshot(&with_crc(huge)).unwrap_err();
        assert!(err.contains("do not fit"), "{err}");
        // One more producer than the bytes could hold, at the smallest entry size, is refused
        // by the count bound itself (before anything is allocated for it), not later.
        let rest = body.len() - SNAPSHOT_HEADER;
        let mut one_more = body.to_vec();
        one_more[16..20].copy_from_slice(&((rest / SNAPSHOT_PRODUCER + 1) as u32).to_be_bytes());
        let err = ProducerStates::decode_snapshot(&with_crc(one_more)).unwrap_err();
        assert!(err.contains("do not fit"), "{err}");
        let mut six = body.to_vec();
        six[SNAPSHOT_HEADER + SNAPSHOT_PRODUCER - 1] = 6;
        assert!(ProducerStates::decode_snapshot(&with_crc(six)).is_err());
        let mut trailing = body.to_vec();
        trailing.push(0);
        let err = ProducerStates::decode_snapshot(&with_crc(trailing)).unwrap_err();
        assert!(err.contains("after the last producer"), "{err}");
        let mut version = body.to_vec();
        version[5] = 2;
        let err = ProducerStates::decode_snapshot(&with_crc(version)).unwrap_err();
        assert!(err.contains("version"), "{err}");
        // The same producer twice.
        let mut one = ProducerStates::default();
        one.record(1, 0, 0, 1, 0, 0);
        let b = one.encode_snapshot(1);
        let entry = b[SNAPSHOT_HEADER..b.len() - SNAPSHOT_CRC].to_vec();
        let mut twice = b[..SNAPSHOT_HEADER].to_vec();
        twice[16..20].copy_from_slice(&2u32.to_be_bytes());
        twice.extend_from_slice(&entry);
        twice.extend_from_slice(&entry);
        let err = ProducerStates::decode_snapshot(&with_crc(twice)).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn producers_idle_past_the_expiration_are_forgotten() {
        let mut s = ProducerStates::default();
        s.record(1, 0, 0, 1, 0, 1_000);
        s.record(2, 0, 0, 1, 1, 5_000);
        s.record(2, 0, 1, 1, 2, 4_000);
        assert_eq!(s.expire(10_000, 6_000), 1, "producer 1 was idle 9 s");
        assert_eq!(
            s.check(1, 0, 7, 1),
            SeqCheck::Append,
            "forgotten: any sequence"
        );
        assert_eq!(
            s.check(2, 0, 1, 1),
            SeqCheck::Duplicate(2),
            "kept: 5 s is its newest"
        );
        assert_eq!(s.expire(11_001, 6_000), 1);
        assert!(s.is_empty());
        s.record(3, 0, 0, 1, 0, i64::MIN);
        assert_eq!(s.expire(i64::MIN, i64::MAX), 0, "no overflow");
    }
}
