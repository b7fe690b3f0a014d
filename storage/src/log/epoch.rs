//! The leader-epoch cache of a partition and its file, `leader-epoch-checkpoint` (FORMAT.md §11):
//! for every leader epoch that wrote to the log, the offset of its first batch. A follower asks
//! the leader "where does my last epoch end in your log?" (Kafka's OffsetsForLeaderEpoch,
//! KIP-101, KIP-279) and truncates to the answer, so it never keeps a tail the leader does not
//! have.
//!
//! Semantics follow Kafka's `LeaderEpochFileCache`: entries are strictly increasing in both
//! epoch and start offset; assigning a new entry first drops every entry that would break that
//! (an epoch at or above it, or a start offset at or above its own); the end offset of epoch E
//! is the start offset of the first larger epoch, or the log end offset when E is the latest.
//!
//! The file is Kafka's text format, so operators and Kafka's tools read it alike:
//! ```text
//! 0            version
//! 2            number of entries
//! 0 0          epoch start-offset
//! 3 1042
//! ```
//! It is replaced atomically (through the log's backend) whenever the cache changes, before the
//! batch that changed it is written: a crash can leave entries past the log end (dropped at
//! open), never miss one for data that is on disk.

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::io::{IoBackend, read_small_file, write_file_atomic};

/// File name of the checkpoint, in the partition directory (Kafka's).
pub const FILE_NAME: &str = "leader-epoch-checkpoint";

/// Largest checkpoint file read; anything longer is damage.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// One entry: `epoch` wrote from `start_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: u64,
}

/// The answer to "where does epoch E end" (Kafka's OffsetsForLeaderEpoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch at or below the one asked for, or -1 if none is known.
    pub epoch: i32,
    /// The start offset of the first larger epoch, or the log end offset if `epoch` is the
    /// latest; -1 with an unknown epoch.
    pub end_offset: i64,
}

impl EpochEnd {
    pub const UNDEFINED: EpochEnd = EpochEnd {
        epoch: -1,
        end_offset: -1,
    };
}

/// The in-memory cache (sorted by epoch, and therefore by start offset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` writes from `start_offset`. Returns whether the cache changed
    /// (an epoch below zero, as written by producers outside replication, never does).
    pub fn assign(&mut self, epoch: i32, start_offset: u64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(last) = self.entries.last()
            && last.epoch == epoch
            && start_offset >= last.start_offset
        {
            return false;
        }
        while self
            .entries
            .last()
            .is_some_and(|e| e.epoch >= epoch || e.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Where `epoch` ends (see [`EpochEnd`]), given the log end offset.
    pub fn end_offset_for(&self, epoch: i32, log_end: u64) -> EpochEnd {
        if epoch < 0 {
            return EpochEnd::UNDEFINED;
        }
        if self.latest().is_some_and(|l| l.epoch == epoch) {
            return EpochEnd {
                epoch,
                end_offset: log_end as i64,
            };
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let Some(next) = self.entries.get(higher) else {
            return EpochEnd::UNDEFINED;
        };
        match higher.checked_sub(1).and_then(|i| self.entries.get(i)) {
            // Every known epoch is larger: the data of earlier ones is gone from this log.
            None => EpochEnd {
                epoch,
                end_offset: next.start_offset as i64,
            },
            Some(floor) => EpochEnd {
                epoch: floor.epoch,
                end_offset: next.start_offset as i64,
            },
        }
    }

    /// Drops every entry starting at or after `end` (the log was truncated to `end`). Returns
    /// whether the cache changed.
    pub fn truncate_from_end(&mut self, end: u64) -> bool {
        let before = self.entries.len();
        while self.entries.last().is_some_and(|e| e.start_offset >= end) {
            self.entries.pop();
        }
        self.entries.len() != before
    }

    /// Drops the entries wholly before `start` (the log's new start) and moves the one that
    /// covers it to start there. Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start: u64) -> bool {
        let covered = self.entries.partition_point(|e| e.start_offset <= start);
        let Some(last_covered) = covered.checked_sub(1) else {
            return false;
        };
        let Some(mut first) = self.entries.get(last_covered).copied() else {
            return false;
        };
        if last_covered == 0 && first.start_offset == start {
            return false;
        }
        first.start_offset = start;
        self.entries.drain(..=last_covered);
        self.entries.insert(0, first);
        true
    }

    /// The epoch that wrote `offset`, if known.
    pub fn epoch_for_offset(&self, offset: u64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.epoch)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            s.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        s.into_bytes()
    }

    /// Parses a checkpoint file; the error says what is wrong. Entries must increase strictly
    /// in both epoch and offset, as the cache keeps them.
    pub fn decode(bytes: &[u8]) -> std::result::Result<EpochCache, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let mut lines = text.lines();
        match lines.next().map(str::trim) {
            Some("0") => {}
            Some(v) => return Err(format!("unknown version {v:?}")),
            None => return Err("empty file".into()),
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("missing or bad entry count")?;
        // Each entry takes at least four bytes ("0 0\n"): a count the file cannot hold is damage,
        // refused before anything is allocated for it.
        if count > bytes.len() / 4 {
            return Err(format!("entry count {count} larger than the file can hold"));
        }
        let mut cache = EpochCache {
            entries: Vec::with_capacity(count),
        };
        for i in 0..count {
            let line = lines.next().ok_or(format!("entry {i} missing"))?;
            let mut parts = line.split_whitespace();
            let (Some(epoch), Some(offset), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("entry {i} is not `epoch offset`: {line:?}"));
            };
            let epoch: i32 = epoch
                .parse()
                .map_err(|_| format!("entry {i}: bad epoch {epoch:?}"))?;
            let offset: u64 = offset
                .parse()
                .map_err(|_| format!("entry {i}: bad offset {offset:?}"))?;
            if epoch < 0 {
                return Err(format!("entry {i}: negative epoch {epoch}"));
            }
            if let Some(prev) = cache.entries.last()
                && (epoch <= prev.epoch || offset <= prev.start_offset)
            {
                return Err(format!(
                    "entry {i} ({epoch} {offset}) does not follow ({} {})",
                    prev.epoch, prev.start_offset
                ));
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset: offset,
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("text after the last entry".into());
        }
        Ok(cache)
    }
}

/// Reads `dir`'s checkpoint: `Ok(None)` if there is none, `Err` with the reason if it is
/// damaged (the caller rebuilds it from the log).
pub fn read(dir: &Path) -> Result<std::result::Result<Option<EpochCache>, String>> {
    Ok(
        match read_small_file(&dir.join(FILE_NAME), MAX_FILE_BYTES)? {
            None => Ok(None),
            Some(bytes) => bytes.and_then(|b| EpochCache::decode(&b)).map(Some),
        },
    )
}

/// Replaces `dir`'s checkpoint with `cache`, durably.
pub fn write(backend: &dyn IoBackend, dir: &Path, cache: &EpochCache) -> Result<()> {
    write_file_atomic(backend, &dir.join(FILE_NAME), &cache.encode())?;
    backend.sync_dir(dir).ctx("fsync dir", dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, u64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for &(e, o) in entries {
            assert!(c.assign(e, o));
        }
        c
    }

    #[test]
    fn end_offsets_follow_kafkas_offsets_for_leader_epoch() {
        let c = cache(&[(1, 0), (3, 100), (4, 250)]);
        // The latest epoch ends at the log end.
        assert_eq!(
            c.end_offset_for(4, 300),
            EpochEnd {
                epoch: 4,
                end_offset: 300
            }
        );
        // A known epoch ends where the next begins.
        assert_eq!(
            c.end_offset_for(3, 300),
            EpochEnd {
                epoch: 3,
                end_offset: 250
            }
        );
        // An epoch that never wrote answers with the largest one below it.
        assert_eq!(
            c.end_offset_for(2, 300),
            EpochEnd {
                epoch: 1,
                end_offset: 100
            }
        );
        // Below every known epoch: the first known start offset.
        assert_eq!(
            c.end_offset_for(0, 300),
            EpochEnd {
                epoch: 0,
                end_offset: 0
            }
        );
        // Above every known epoch, or undefined: unknown.
        assert_eq!(c.end_offset_for(9, 300), EpochEnd::UNDEFINED);
        assert_eq!(c.end_offset_for(-1, 300), EpochEnd::UNDEFINED);
        assert_eq!(
            EpochCache::default().end_offset_for(0, 5),
            EpochEnd::UNDEFINED
        );
    }

    #[test]
    fn assigning_drops_entries_that_would_break_the_order() {
        let mut c = cache(&[(1, 0), (3, 100), (4, 250)]);
        assert!(!c.assign(4, 260), "same epoch, later offset: nothing new");
        assert!(!c.assign(-1, 400), "producer batches carry -1");
        // A lower epoch at a later offset (an unclean election's leader): the higher ones go.
        assert!(c.assign(2, 120));
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 2,
                    start_offset: 120
                }
            ]
        );
        // The same epoch at an earlier offset replaces the entry.
        assert!(c.assign(2, 110));
        assert_eq!(
            c.latest(),
            Some(EpochEntry {
                epoch: 2,
                start_offset: 110
            })
        );
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 100), (4, 250)]);
        assert!(!c.truncate_from_end(251));
        assert!(c.truncate_from_end(250));
        assert_eq!(c.latest().unwrap().epoch, 3);
        assert!(c.truncate_from_start(150));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 150
            }]
        );
        assert!(!c.truncate_from_start(150));
        assert!(
            !c.truncate_from_start(10),
            "before the first entry: nothing to drop"
        );
        // One entry that covers the new start moves to it.
        let mut one = cache(&[(2, 0)]);
        assert!(one.truncate_from_start(10));
        assert_eq!(
            one.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 10
            }]
        );
        assert_eq!(c.epoch_for_offset(149), None);
        assert_eq!(c.epoch_for_offset(500), Some(3));
    }

    #[test]
    fn the_file_round_trips_and_damage_is_refused_with_a_reason() {
        let c = cache(&[(0, 0), (2, 17), (5, 9000)]);
        let bytes = c.encode();
        assert_eq!(bytes, b"0\n3\n0 0\n2 17\n5 9000\n");
        assert_eq!(EpochCache::decode(&bytes).unwrap(), c);
        for (bad, why) in [
            (&b""[..], "empty"),
            (b"1\n0\n", "version"),
            (b"0\n2\n0 0\n", "missing"),
            (b"0\n99999999999\n", "count"),
            (b"0\n10\n0 0\n", "count"),
            (b"0\n2\n3 0\n2 5\n", "follow"),
            (b"0\n1\n0 x\n", "offset"),
            (b"0\n1\n-2 0\n", "negative"),
            (b"0\n1\n0 0\njunk\n", "after"),
            (b"\xff\xfe", "UTF-8"),
        ] {
            let err = EpochCache::decode(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_file_is_written_through_the_backend_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap(), None);
        let disk = crate::io::faulty::ForgetfulBackend::new();
        let c = cache(&[(0, 0), (1, 10)]);
        write(&disk, dir.path(), &c).unwrap();
        disk.crash(crate::io::faulty::TornMode::Clean);
        assert_eq!(read(dir.path()).unwrap().unwrap(), Some(c));
        std::fs::write(dir.path().join(FILE_NAME), b"garbage").unwrap();
        assert!(read(dir.path()).unwrap().is_err());
    }
}
