//! Walking the batches of a segment: the one decoder that recovery, reads, `strata dump` and
//! `strata verify` share.
//!
//! A scan never trusts a length: every `batchLength` is bounded by the configured maximum and by
//! the bytes that remain before anything is sliced. It stops at the first problem and says where
//! and why; the caller decides whether that is a torn tail (truncate) or corruption (error).

use crate::batch::BatchError;
use crate::batch::header::{self, BatchHeader};

use super::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

/// One batch found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBatch {
    /// Byte position of the batch in the segment.
    pub position: u64,
    pub header: BatchHeader,
}

impl ScannedBatch {
    pub fn end(&self) -> u64 {
        self.position + self.header.total_len() as u64
    }
}

/// Whether `tail`, the bytes from where a scan stopped to the end of a file of `file_len`
/// bytes, is the zero padding of a direct write's last block (FORMAT.md §2): all zero, fewer
/// than [`DIRECT_ALIGN`], and ending on a block boundary. A segment written with O_DIRECT holds
/// such a tail between its last batch and the end of the file until a seal or a clean close
/// truncates it.
///
/// [`DIRECT_ALIGN`]: crate::io::DIRECT_ALIGN
pub fn is_block_padding(tail: &[u8], file_len: u64) -> bool {
    let align = crate::io::DIRECT_ALIGN as u64;
    !tail.is_empty()
        && (tail.len() as u64) < align
        && file_len.is_multiple_of(align)
        && tail.iter().all(|&b| b == 0)
}

/// Whether a scan stopped at a batch whose frame runs past the end of the data: the bytes of a
/// write that failed or had not finished (the only tail a process crash leaves, FORMAT.md §7).
pub fn is_cut_short(problem: &ScanProblem) -> bool {
    matches!(problem, ScanProblem::Batch(BatchError::Truncated { .. }))
}

/// Why a scan stopped before the end of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanProblem {
    /// A header of all zeros: never-written space (a preallocated or zero-filled tail).
    Zeroed,
    /// The bytes are not a valid batch.
    Batch(BatchError),
    /// A valid batch whose offsets do not continue the log.
    OffsetGap { expected: u64, found: i64 },
}

impl std::fmt::Display for ScanProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanProblem::Zeroed => f.write_str("zero-filled bytes where a batch header should be"),
            ScanProblem::Batch(e) => write!(f, "{e}"),
            ScanProblem::OffsetGap { expected, found } => {
                write!(f, "batch base offset is {found}, expected {expected}")
            }
        }
    }
}

/// Where and why a scan stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStop {
    pub position: u64,
    pub problem: ScanProblem,
}

/// Iterates the batches of `data`, checking each (lengths always; CRC when `verify_crc`) and,
/// when `expected_base` is given, that offsets continue without gaps from it.
#[derive(Debug)]
pub struct BatchScanner<'a> {
    data: &'a [u8],
    pos: usize,
    max_batch_bytes: usize,
    verify_crc: bool,
    next_offset: Option<u64>,
    stop: Option<ScanStop>,
}

impl<'a> BatchScanner<'a> {
    pub fn new(data: &'a [u8], max_batch_bytes: usize, verify_crc: bool) -> Self {
        BatchScanner {
            data,
            pos: 0,
            max_batch_bytes,
            verify_crc,
            next_offset: None,
            stop: None,
        }
    }

    /// Start at `position` instead of 0 (an offset-index hint).
    pub fn starting_at(mut self, position: usize) -> Self {
        self.pos = position.min(self.data.len());
        self
    }

    /// Require the first batch to start at `offset` and every later one to continue the previous.
    pub fn expecting_offset(mut self, offset: u64) -> Self {
        self.next_offset = Some(offset);
        self
    }

    /// Position after the last good batch.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// Why the scan stopped early, if it did.
    pub fn stop(&self) -> Option<&ScanStop> {
        self.stop.as_ref()
    }

    fn fail(&mut self, problem: ScanProblem) -> Option<ScannedBatch> {
        self.stop = Some(ScanStop {
            position: self.pos as u64,
            problem,
        });
        None
    }
}

impl Iterator for BatchScanner<'_> {
    type Item = ScannedBatch;

    fn next(&mut self) -> Option<ScannedBatch> {
        if self.stop.is_some() {
            return None;
        }
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        if BatchHeader::is_zeroed(rest) {
            return self.fail(ScanProblem::Zeroed);
        }
        let checked = if self.verify_crc {
            header::check_batch(rest, self.max_batch_bytes)
        } else {
            check_length_only(rest, self.max_batch_bytes)
        };
        let h = match checked {
            Ok(h) => h,
            Err(e) => return self.fail(ScanProblem::Batch(e)),
        };
        if h.last_offset_delta < 0 || h.base_offset < 0 {
            return self.fail(ScanProblem::Batch(BatchError::OffsetDeltaMismatch {
                last_offset_delta: h.last_offset_delta,
                record_count: h.record_count,
            }));
        }
        if let Some(expected) = self.next_offset {
            if h.base_offset as u64 != expected {
                return self.fail(ScanProblem::OffsetGap {
                    expected,
                    found: h.base_offset,
                });
            }
            self.next_offset = Some(h.next_offset() as u64);
        }
        let b = ScannedBatch {
            position: self.pos as u64,
            header: h,
        };
        self.pos += h.total_len();
        Some(b)
    }
}

/// Length and magic checks without the CRC: for walking segments that are already verified.
fn check_length_only(buf: &[u8], max_total_len: usize) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf)?;
    let length = i64::from(h.batch_length);
    let max = i64::try_from(max_total_len.saturating_sub(header::LOG_OVERHEAD)).unwrap_or(i64::MAX);
    if length < header::MIN_BATCH_LENGTH as i64 || length > max {
        return Err(BatchError::BadLength {
            length,
            min: header::MIN_BATCH_LENGTH as i64,
            max,
        });
    }
    if buf.len() < h.total_len() {
        return Err(BatchError::Truncated {
            needed: h.total_len(),
            available: buf.len(),
        });
    }
    if h.magic != header::MAGIC_V2 {
        return Err(BatchError::BadMagic { got: h.magic });
    }
    Ok(h)
}

/// Everything a full scan of one segment learns: where its good data ends, its next offset,
/// its largest timestamp and the indexes rebuilt on the way.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    pub valid_len: u64,
    pub next_offset: u64,
    pub batches: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: u64,
    pub bytes_since_index: u64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub stop: Option<ScanStop>,
}

/// Scans a whole segment from position 0, rebuilding its indexes as the writer would have built
/// them (an entry each time `index_interval` bytes have passed).
pub fn scan_segment(
    data: &[u8],
    base_offset: u64,
    max_batch_bytes: usize,
    verify_crc: bool,
    index_interval: u32,
) -> SegmentScan {
    let mut scanner =
        BatchScanner::new(data, max_batch_bytes, verify_crc).expecting_offset(base_offset);
    let mut s = SegmentScan {
        valid_len: 0,
        next_offset: base_offset,
        batches: 0,
        max_timestamp: -1,
        offset_of_max_timestamp: base_offset,
        bytes_since_index: 0,
        index: OffsetIndex::new(),
        time_index: TimeIndex::new(),
        stop: None,
    };
    for b in scanner.by_ref() {
        let rel_base = relative(b.header.base_offset as u64, base_offset);
        if s.bytes_since_index >= u64::from(index_interval) {
            s.index.push(OffsetEntry {
                relative_offset: rel_base,
                position: b.position as u32,
            });
            if s.max_timestamp >= 0 {
                s.time_index.maybe_push(TimeEntry {
                    timestamp: s.max_timestamp,
                    relative_offset: relative(s.offset_of_max_timestamp, base_offset),
                });
            }
            s.bytes_since_index = 0;
        }
        s.bytes_since_index += b.header.total_len() as u64;
        if b.header.max_timestamp > s.max_timestamp {
            s.max_timestamp = b.header.max_timestamp;
            s.offset_of_max_timestamp = b.header.last_offset() as u64;
        }
        s.batches += 1;
        s.next_offset = b.header.next_offset() as u64;
        s.valid_len = b.end();
    }
    s.stop = scanner.stop().cloned();
    s
}

/// `offset - base` as the u32 the indexes store (segments hold < 2^31 bytes, hence < 2^32 records).
pub(crate) fn relative(offset: u64, base: u64) -> u32 {
    u32::try_from(offset.saturating_sub(base)).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn only_a_short_zero_run_ending_on_a_block_boundary_is_padding() {
        let mut block = vec![7u8; 4096];
        block[4000..].fill(0);
        let tail = |from: usize| &block[from..];
        assert!(is_block_padding(tail(4000), 4096));
        assert!(is_block_padding(tail(4095), 4096));
        assert!(
            !is_block_padding(tail(4096), 4096),
            "nothing left: not padding"
        );
        assert!(
            !is_block_padding(tail(3999), 4096),
            "a non-zero byte in the run"
        );
        assert!(
            !is_block_padding(tail(4000), 4095),
            "not on a block boundary"
        );
        assert!(
            !is_block_padding(&[0u8; 4096], 8192),
            "a whole block of zeros is a zeroed tail"
        );
    }
}
