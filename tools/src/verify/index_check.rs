//! Judging every entry of a segment's offset index and time index against the segment's batches.
//!
//! Both checkers are fed the batches of one header walk in file order and resolve each entry as
//! soon as the walk passes it, so a segment is read once whatever its size. Entries are decoded
//! by the engine (`OffsetEntry::parse`, `TimeEntry::parse`); the rules are FORMAT.md §4.2–4.3.

use strata_storage::log::index::{OffsetEntry, TimeEntry};

/// Why one entry is wrong: the check's name, what was expected and found, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub expected: String,
    pub found: String,
    pub message: String,
}

/// The verdict on one entry (`entry` is its 0-based number in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<E> {
    pub entry: usize,
    pub value: E,
    /// Position of the batch the entry resolves to, when there is one.
    pub batch_position: Option<u64>,
    pub finding: Option<Finding>,
}

fn finding(check: &'static str, expected: String, found: String, message: String) -> Finding {
    Finding {
        check,
        expected,
        found,
        message,
    }
}

/// Offset index: each entry must name the position where the batch with base offset
/// `segment base + relative_offset` starts, and both fields must strictly grow.
#[derive(Debug)]
pub struct OffsetIndexCheck {
    base: u64,
    /// Entries that grow past their predecessor, in file order (= position order).
    pending: std::collections::VecDeque<(usize, OffsetEntry)>,
    last_batch: Option<u64>,
    done: Vec<Verdict<OffsetEntry>>,
}

impl OffsetIndexCheck {
    pub fn new(base: u64, entries: impl IntoIterator<Item = OffsetEntry>) -> Self {
        let mut pending = std::collections::VecDeque::new();
        let mut done = Vec::new();
        let mut last: Option<OffsetEntry> = None;
        for (i, e) in entries.into_iter().enumerate() {
            if let Some(l) = last
                && (e.relative_offset <= l.relative_offset || e.position <= l.position)
            {
                done.push(Verdict {
                    entry: i,
                    value: e,
                    batch_position: None,
                    finding: Some(finding(
                        "index_order",
                        format!(
                            "relative offset > {} and position > {}",
                            l.relative_offset, l.position
                        ),
                        format!(
                            "relative offset {} position {}",
                            e.relative_offset, e.position
                        ),
                        "entries must strictly grow in both fields".into(),
                    )),
                });
                continue;
            }
            last = Some(e);
            pending.push_back((i, e));
        }
        OffsetIndexCheck {
            base,
            pending,
            last_batch: None,
            done,
        }
    }

    /// The walk found a batch with `base_offset` at `position`.
    pub fn on_batch(&mut self, position: u64, base_offset: i64) {
        while let Some(&(i, e)) = self.pending.front() {
            let at = u64::from(e.position);
            if at > position {
                break;
            }
            self.pending.pop_front();
            let want = self.base + u64::from(e.relative_offset);
            let f = if at < position {
                let inside = self
                    .last_batch
                    .map_or(String::new(), |p| format!(" (inside the batch at {p})"));
                Some(finding(
                    "index_entry",
                    "the start of a batch".into(),
                    format!("position {at}{inside}"),
                    format!(
                        "entry for offset {want} points at position {at}, which is not the start of a batch"
                    ),
                ))
            } else if base_offset < 0 || base_offset as u64 != want {
                Some(finding(
                    "index_entry",
                    format!("base offset {want}"),
                    format!("base offset {base_offset}"),
                    format!(
                        "entry for offset {want} points at the batch at {at}, whose base offset is {base_offset}"
                    ),
                ))
            } else {
                None
            };
            self.done.push(Verdict {
                entry: i,
                value: e,
                batch_position: (at == position).then_some(at),
                finding: f,
            });
        }
        self.last_batch = Some(position);
    }

    /// The walk ended at `end` (position after the last good batch): every entry not yet
    /// resolved points past the good data. Returns every verdict in entry order.
    pub fn finish(mut self, end: u64) -> Vec<Verdict<OffsetEntry>> {
        for (i, e) in std::mem::take(&mut self.pending) {
            self.done.push(Verdict {
                entry: i,
                value: e,
                batch_position: None,
                finding: Some(finding(
                    "index_past_end",
                    format!("a position below {end}"),
                    format!("position {}", e.position),
                    format!(
                        "entry for offset {} points at position {}, past the last good batch (data ends at {end})",
                        self.base + u64::from(e.relative_offset),
                        e.position
                    ),
                )),
            });
        }
        self.done.sort_by_key(|v| v.entry);
        self.done
    }
}

/// Time index: each entry's timestamp must be the largest batch maxTimestamp up to and including
/// the batch that holds its offset; timestamps strictly grow, offsets never shrink.
#[derive(Debug)]
pub struct TimeIndexCheck {
    base: u64,
    pending: std::collections::VecDeque<(usize, TimeEntry)>,
    running_max: i64,
    done: Vec<Verdict<TimeEntry>>,
}

impl TimeIndexCheck {
    pub fn new(base: u64, entries: impl IntoIterator<Item = TimeEntry>) -> Self {
        let mut pending = std::collections::VecDeque::new();
        let mut done = Vec::new();
        let mut last: Option<TimeEntry> = None;
        for (i, e) in entries.into_iter().enumerate() {
            if let Some(l) = last
                && (e.timestamp <= l.timestamp || e.relative_offset < l.relative_offset)
            {
                done.push(Verdict {
                    entry: i,
                    value: e,
                    batch_position: None,
                    finding: Some(finding(
                        "time_index_order",
                        format!(
                            "timestamp > {} and relative offset >= {}",
                            l.timestamp, l.relative_offset
                        ),
                        format!(
                            "timestamp {} relative offset {}",
                            e.timestamp, e.relative_offset
                        ),
                        "timestamps must strictly grow and offsets never shrink".into(),
                    )),
                });
                continue;
            }
            last = Some(e);
            pending.push_back((i, e));
        }
        TimeIndexCheck {
            base,
            pending,
            running_max: -1,
            done,
        }
    }

    /// The walk found a batch at `position` holding offsets `[base_offset, last_offset]`.
    pub fn on_batch(&mut self, position: u64, base_offset: i64, last_offset: i64, max_ts: i64) {
        self.running_max = self.running_max.max(max_ts);
        while let Some(&(i, e)) = self.pending.front() {
            let offset = self.base + u64::from(e.relative_offset);
            if offset as i64 > last_offset {
                break;
            }
            self.pending.pop_front();
            let f = if (offset as i64) < base_offset {
                Some(finding(
                    "time_index_entry",
                    "an offset held by a batch".into(),
                    format!("offset {offset}"),
                    format!(
                        "entry names offset {offset}, which no batch holds (the next batch starts at {base_offset})"
                    ),
                ))
            } else if e.timestamp != self.running_max {
                Some(finding(
                    "time_index_entry",
                    format!("timestamp {}", self.running_max),
                    format!("timestamp {}", e.timestamp),
                    format!(
                        "entry for offset {offset} says timestamp {}, but the largest maxTimestamp up to the batch at {position} is {}",
                        e.timestamp, self.running_max
                    ),
                ))
            } else {
                None
            };
            self.done.push(Verdict {
                entry: i,
                value: e,
                batch_position: ((offset as i64) >= base_offset).then_some(position),
                finding: f,
            });
        }
    }

    /// The walk ended with `next_offset` as the offset after the last good batch.
    pub fn finish(mut self, next_offset: u64) -> Vec<Verdict<TimeEntry>> {
        for (i, e) in std::mem::take(&mut self.pending) {
            let offset = self.base + u64::from(e.relative_offset);
            self.done.push(Verdict {
                entry: i,
                value: e,
                batch_position: None,
                finding: Some(finding(
                    "time_index_past_end",
                    format!("an offset below {next_offset}"),
                    format!("offset {offset}"),
                    format!("entry names offset {offset}, past the segment's last good offset"),
                )),
            });
        }
        self.done.sort_by_key(|v| v.entry);
        self.done
    }
}
