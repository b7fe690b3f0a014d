//! The sparse offset index (`.index`) and the time index (`.timeindex`) of a segment.
//!
//! Both live in memory while a segment is active and are written to their files when it seals
//! and at clean shutdown (FORMAT.md §4). A file that is missing, short, has a bad CRC or entries
//! that contradict the segment is not trusted: the index is rebuilt from the segment's batch
//! headers. Indexes are therefore an accelerator, never a source of truth.

use std::path::Path;

use crate::error::{Error, Result};

/// Layout of the 24-byte header shared by both index files.
pub mod layout {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: Range<usize> = 4..6;
    pub const ENTRY_SIZE: Range<usize> = 6..8;
    pub const BASE_OFFSET: Range<usize> = 8..16;
    pub const ENTRY_COUNT: Range<usize> = 16..20;
    pub const CRC: Range<usize> = 20..24;
    pub const HEADER_LEN: usize = 24;
    /// Offset index: `b"STOI"` (STrata Offset Index).
    pub const OFFSET_MAGIC: [u8; 4] = *b"STOI";
    /// Time index: `b"STTI"` (STrata Time Index).
    pub const TIME_MAGIC: [u8; 4] = *b"STTI";
    pub const VERSION_1: u16 = 1;
    /// relative offset u32 + position u32.
    pub const OFFSET_ENTRY_LEN: usize = 8;
    /// timestamp i64 + relative offset u32.
    pub const TIME_ENTRY_LEN: usize = 12;
}

/// One offset-index entry: the batch whose base offset is `base + relative_offset` starts at
/// `position` in the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time-index entry: up to and including offset `base + relative_offset`, the largest
/// timestamp in the segment is `timestamp`. Entries only ever grow in both fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl OffsetEntry {
    /// Reads one 8-byte entry (FORMAT.md §4.2); missing bytes read as zero.
    pub fn parse(entry: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32_at(entry, 0),
            position: u32_at(entry, 4),
        }
    }
}

impl TimeEntry {
    /// Reads one 12-byte entry (FORMAT.md §4.3); missing bytes read as zero.
    pub fn parse(entry: &[u8]) -> Self {
        TimeEntry {
            timestamp: u64_at(entry, 0) as i64,
            relative_offset: u32_at(entry, 8),
        }
    }
}

/// Which of the two index files (they share the header of FORMAT.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Offset,
    Time,
}

impl IndexKind {
    pub fn magic(self) -> [u8; 4] {
        match self {
            IndexKind::Offset => layout::OFFSET_MAGIC,
            IndexKind::Time => layout::TIME_MAGIC,
        }
    }

    pub fn entry_len(self) -> usize {
        match self {
            IndexKind::Offset => layout::OFFSET_ENTRY_LEN,
            IndexKind::Time => layout::TIME_ENTRY_LEN,
        }
    }
}

/// Checks an index file's header (magic, version, entry size, base offset, entry count against
/// the length) and CRC, and returns the entry bytes, without judging the entries themselves.
/// [`OffsetIndex::decode`] and [`TimeIndex::decode`] start with exactly this; the tools call it
/// so they can report on every entry instead of stopping at the first bad one.
pub fn check_file(kind: IndexKind, base_offset: u64, buf: &[u8]) -> Result<&[u8], IndexProblem> {
    decode_file(kind.magic(), kind.entry_len(), base_offset, buf)
}

/// Why an index file was not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexProblem {
    pub position: u64,
    pub reason: String,
}

fn problem(position: usize, reason: impl Into<String>) -> IndexProblem {
    IndexProblem {
        position: position as u64,
        reason: reason.into(),
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = buf.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = buf.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_be_bytes(a)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = buf.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn encode_file(
    magic: [u8; 4],
    entry_len: usize,
    base_offset: u64,
    count: usize,
    entries: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(layout::HEADER_LEN + entries.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&layout::VERSION_1.to_be_bytes());
    out.extend_from_slice(&(entry_len as u16).to_be_bytes());
    out.extend_from_slice(&base_offset.to_be_bytes());
    out.extend_from_slice(&(count as u32).to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), entries);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(entries);
    out
}

/// Checks the header and CRC and returns the entry bytes.
fn decode_file(
    magic: [u8; 4],
    entry_len: usize,
    base_offset: u64,
    buf: &[u8],
) -> Result<&[u8], IndexProblem> {
    let (header, entries) = buf.split_at_checked(layout::HEADER_LEN).ok_or_else(|| {
        problem(
            0,
            format!("file is {} bytes, shorter than the header", buf.len()),
        )
    })?;
    if header.get(layout::MAGIC) != Some(&magic[..]) {
        return Err(problem(0, format!("bad magic, expected {magic:?}")));
    }
    let version = u16_at(header, layout::VERSION.start);
    if version != layout::VERSION_1 {
        return Err(problem(4, format!("unknown version {version}, expected 1")));
    }
    let size = usize::from(u16_at(header, layout::ENTRY_SIZE.start));
    if size != entry_len {
        return Err(problem(
            6,
            format!("entry size {size}, expected {entry_len}"),
        ));
    }
    let base = u64_at(header, layout::BASE_OFFSET.start);
    if base != base_offset {
        return Err(problem(
            8,
            format!("base offset {base}, expected {base_offset}"),
        ));
    }
    let count = u32_at(header, layout::ENTRY_COUNT.start) as usize;
    if Some(entries.len()) != count.checked_mul(entry_len) {
        return Err(problem(
            16,
            format!(
                "{count} entries of {entry_len} bytes do not match {} bytes of entries",
                entries.len()
            ),
        ));
    }
    let stored = u32_at(header, layout::CRC.start);
    let got = crc32c::crc32c_append(
        crc32c::crc32c(header.get(..layout::CRC.start).unwrap_or(&[])),
        entries,
    );
    if stored != got {
        return Err(problem(
            20,
            format!("CRC-32C mismatch: stored {stored:#010x}, computed {got:#010x}"),
        ));
    }
    Ok(entries)
}

/// The sparse offset index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an entry; ignored unless both fields grow (keeps the index sorted whatever happens).
    pub fn push(&mut self, e: OffsetEntry) {
        if self
            .entries
            .last()
            .is_none_or(|l| e.relative_offset > l.relative_offset && e.position > l.position)
        {
            self.entries.push(e);
        }
    }

    /// Keeps only the entries of batches starting below `relative_offset` (a truncation).
    pub fn truncate_to(&mut self, relative_offset: u32) {
        let keep = self
            .entries
            .partition_point(|e| e.relative_offset < relative_offset);
        self.entries.truncate(keep);
    }

    /// Position of the last indexed batch whose base offset is <= `relative_offset` (0 if none):
    /// where a scan for that offset starts.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or(0, |e| e.position)
    }

    pub fn encode(&self, base_offset: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * layout::OFFSET_ENTRY_LEN);
        for e in &self.entries {
            body.extend_from_slice(&e.relative_offset.to_be_bytes());
            body.extend_from_slice(&e.position.to_be_bytes());
        }
        encode_file(
            layout::OFFSET_MAGIC,
            layout::OFFSET_ENTRY_LEN,
            base_offset,
            self.entries.len(),
            &body,
        )
    }

    /// Decodes an index file, checking header, CRC, that entries strictly grow and that every
    /// position lies inside a segment of `segment_len` bytes.
    pub fn decode(buf: &[u8], base_offset: u64, segment_len: u64) -> Result<Self, IndexProblem> {
        let body = decode_file(
            layout::OFFSET_MAGIC,
            layout::OFFSET_ENTRY_LEN,
            base_offset,
            buf,
        )?;
        let mut idx = OffsetIndex::new();
        for (i, chunk) in body.chunks_exact(layout::OFFSET_ENTRY_LEN).enumerate() {
            let e = OffsetEntry::parse(chunk);
            let at = layout::HEADER_LEN + i * layout::OFFSET_ENTRY_LEN;
            if u64::from(e.position) >= segment_len {
                return Err(problem(
                    at,
                    format!(
                        "position {} is past the segment's {segment_len} bytes",
                        e.position
                    ),
                ));
            }
            if let Some(l) = idx.entries.last()
                && (e.relative_offset <= l.relative_offset || e.position <= l.position)
            {
                return Err(problem(at, format!("entry {e:?} does not grow past {l:?}")));
            }
            idx.entries.push(e);
        }
        Ok(idx)
    }
}

/// The time index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// Appends an entry if its timestamp is larger than the last one's (and its offset not smaller).
    pub fn maybe_push(&mut self, e: TimeEntry) {
        if self
            .entries
            .last()
            .is_none_or(|l| e.timestamp > l.timestamp && e.relative_offset >= l.relative_offset)
        {
            self.entries.push(e);
        }
    }

    /// Keeps only the entries for records below `relative_offset` (a truncation).
    pub fn truncate_to(&mut self, relative_offset: u32) {
        let keep = self
            .entries
            .partition_point(|e| e.relative_offset < relative_offset);
        self.entries.truncate(keep);
    }

    /// Relative offset to start scanning from for the first record with timestamp >= `ts`:
    /// the offset of the last entry whose timestamp is < `ts` (no record at or before it can
    /// qualify, so the scan may begin at the batch holding it), or 0.
    pub fn lookup(&self, ts: i64) -> u32 {
        let i = self.entries.partition_point(|e| e.timestamp < ts);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or(0, |e| e.relative_offset)
    }

    pub fn encode(&self, base_offset: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * layout::TIME_ENTRY_LEN);
        for e in &self.entries {
            body.extend_from_slice(&e.timestamp.to_be_bytes());
            body.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        encode_file(
            layout::TIME_MAGIC,
            layout::TIME_ENTRY_LEN,
            base_offset,
            self.entries.len(),
            &body,
        )
    }

    /// Decodes a time index file; entries must grow in timestamp and not shrink in offset, and
    /// every offset must be below `max_relative_offset` (exclusive end of the segment).
    pub fn decode(
        buf: &[u8],
        base_offset: u64,
        end_relative_offset: u64,
    ) -> Result<Self, IndexProblem> {
        let body = decode_file(layout::TIME_MAGIC, layout::TIME_ENTRY_LEN, base_offset, buf)?;
        let mut idx = TimeIndex::new();
        for (i, chunk) in body.chunks_exact(layout::TIME_ENTRY_LEN).enumerate() {
            let e = TimeEntry::parse(chunk);
            let at = layout::HEADER_LEN + i * layout::TIME_ENTRY_LEN;
            if u64::from(e.relative_offset) >= end_relative_offset {
                return Err(problem(
                    at,
                    format!("offset {} is past the segment's end", e.relative_offset),
                ));
            }
            if let Some(l) = idx.entries.last()
                && (e.timestamp <= l.timestamp || e.relative_offset < l.relative_offset)
            {
                return Err(problem(at, format!("entry {e:?} does not grow past {l:?}")));
            }
            idx.entries.push(e);
        }
        Ok(idx)
    }
}

/// Reads a whole index file; `Ok(None)` if it does not exist.
pub(crate) fn read_index_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read index", path, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn sample_offsets() -> OffsetIndex {
        let mut i = OffsetIndex::new();
        for k in 0..10u32 {
            i.push(OffsetEntry {
                relative_offset: k * 100,
                position: k * 4096,
            });
        }
        i
    }

    fn sample_times() -> TimeIndex {
        let mut t = TimeIndex::new();
        for k in 0..10u32 {
            t.maybe_push(TimeEntry {
                timestamp: 1_000 + i64::from(k) * 10,
                relative_offset: k * 100,
            });
        }
        t
    }

    #[test]
    fn header_fields_tile_the_header() {
        use layout::*;
        let r = [MAGIC, VERSION, ENTRY_SIZE, BASE_OFFSET, ENTRY_COUNT, CRC];
        let mut at = 0;
        for x in r {
            assert_eq!(x.start, at);
            at = x.end;
        }
        assert_eq!(at, HEADER_LEN);
    }

    #[test]
    fn offset_index_roundtrips_and_looks_up_the_floor_entry() {
        let i = sample_offsets();
        let buf = i.encode(500);
        assert_eq!(buf.len(), layout::HEADER_LEN + 10 * 8);
        let back = OffsetIndex::decode(&buf, 500, 1 << 20).unwrap();
        assert_eq!(back, i);
        assert_eq!(i.lookup(0), 0);
        assert_eq!(i.lookup(99), 0);
        assert_eq!(i.lookup(100), 4096);
        assert_eq!(i.lookup(950), 9 * 4096);
        assert_eq!(OffsetIndex::new().lookup(7), 0);
    }

    #[test]
    fn time_index_roundtrips_and_finds_the_scan_start() {
        let t = sample_times();
        let back = TimeIndex::decode(&t.encode(7), 7, 1000).unwrap();
        assert_eq!(back, t);
        assert_eq!(t.lookup(0), 0);
        assert_eq!(t.lookup(1_000), 0);
        assert_eq!(t.lookup(1_001), 0);
        assert_eq!(t.lookup(1_011), 100);
        assert_eq!(t.lookup(i64::MAX), 900);
    }

    #[test]
    fn every_flipped_byte_of_an_index_file_is_detected() {
        let o = sample_offsets().encode(3);
        for i in 0..o.len() {
            let mut bad = o.clone();
            bad[i] ^= 0x01;
            assert!(
                OffsetIndex::decode(&bad, 3, 1 << 20).is_err(),
                "offset index byte {i}"
            );
        }
        let t = sample_times().encode(3);
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x80;
            assert!(
                TimeIndex::decode(&bad, 3, 1000).is_err(),
                "time index byte {i}"
            );
        }
    }

    #[test]
    fn an_index_that_contradicts_its_segment_is_refused() {
        let o = sample_offsets().encode(3);
        assert!(
            OffsetIndex::decode(&o, 4, 1 << 20).is_err(),
            "wrong base offset"
        );
        assert!(
            OffsetIndex::decode(&o, 3, 4096).is_err(),
            "positions past the end"
        );
        assert!(
            OffsetIndex::decode(&o[..o.len() - 1], 3, 1 << 20).is_err(),
            "truncated"
        );
        assert!(OffsetIndex::decode(&[], 3, 1 << 20).is_err(), "empty");
        let t = sample_times().encode(3);
        assert!(
            TimeIndex::decode(&t, 3, 900).is_err(),
            "offsets past the end"
        );
    }

    #[test]
    fn pushes_that_would_unsort_the_index_are_ignored() {
        let mut i = sample_offsets();
        i.push(OffsetEntry {
            relative_offset: 5,
            position: 1,
        });
        assert_eq!(i.len(), 10);
        let mut t = sample_times();
        t.maybe_push(TimeEntry {
            timestamp: 0,
            relative_offset: 2000,
        });
        assert_eq!(t.entries().len(), 10);
    }
}
