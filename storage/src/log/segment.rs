//! One segment: a `.log` file of batches and its two indexes, mapped for reading.
//!
//! Concurrency: one writer (the partition's leader) appends and then *publishes* a new length
//! with a release store; readers load the length with acquire and only ever touch mapped bytes
//! below it. Published bytes are never rewritten, so a reader's slice stays valid for as long as
//! it holds the mapping (`Arc<Mapped>`), even after the segment is sealed or deleted: sealing only
//! releases preallocated blocks *past* the published length, and deletion unlinks, never truncates.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use memmap2::MmapOptions;
use parking_lot::RwLock;

use crate::batch::header::{BatchHeader, HEADER_LEN};
use crate::error::{Error, IoContext, Result};
use crate::io::{DirectFile, WritableFile};

use super::index::{OffsetIndex, TimeIndex};
use super::name::{FileKind, segment_path};
use super::read::{Mapped, ReadSlice};

/// A segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
    /// Present while the segment is active.
    writer: Option<Box<dyn WritableFile>>,
    /// The O_DIRECT handle the direct write path writes through (active segments of a log in
    /// [`super::config::WriteMode::Direct`] only).
    direct: Option<Box<dyn DirectFile>>,
    /// Read-only handle for sealed segments (active ones map through `writer`).
    reader: Option<File>,
    map: OnceLock<Arc<Mapped>>,
    /// How many bytes to map: the largest the segment can become.
    map_len: u64,
    len: AtomicU64,
    next_offset: AtomicU64,
    max_timestamp: AtomicI64,
    pub index: RwLock<OffsetIndex>,
    pub time_index: RwLock<TimeIndex>,
}

/// What the writer knows about a segment when it hands it over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentState {
    pub len: u64,
    pub next_offset: u64,
    pub max_timestamp: i64,
}

impl Segment {
    fn paths(dir: &Path, base: u64) -> (PathBuf, PathBuf, PathBuf) {
        (
            segment_path(dir, base, FileKind::Log),
            segment_path(dir, base, FileKind::Index),
            segment_path(dir, base, FileKind::TimeIndex),
        )
    }

    /// An active segment writing through `writer` (and `direct`, if given); the mapping covers
    /// `map_len` bytes so that it never has to be redone while the segment grows.
    #[allow(clippy::too_many_arguments)]
    pub fn active(
        dir: &Path,
        base_offset: u64,
        writer: Box<dyn WritableFile>,
        direct: Option<Box<dyn DirectFile>>,
        map_len: u64,
        state: SegmentState,
        index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Result<Self> {
        let (log_path, index_path, time_index_path) = Self::paths(dir, base_offset);
        let seg = Segment {
            base_offset,
            log_path,
            index_path,
            time_index_path,
            writer: Some(writer),
            direct,
            reader: None,
            map: OnceLock::new(),
            map_len,
            len: AtomicU64::new(state.len),
            next_offset: AtomicU64::new(state.next_offset),
            max_timestamp: AtomicI64::new(state.max_timestamp),
            index: RwLock::new(index),
            time_index: RwLock::new(time_index),
        };
        seg.mapping()?;
        Ok(seg)
    }

    /// A sealed (read-only) segment; mapped on first read.
    pub fn sealed(
        dir: &Path,
        base_offset: u64,
        state: SegmentState,
        index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Result<Self> {
        let (log_path, index_path, time_index_path) = Self::paths(dir, base_offset);
        let reader = File::open(&log_path).ctx("open segment", &log_path)?;
        Ok(Segment {
            base_offset,
            log_path,
            index_path,
            time_index_path,
            writer: None,
            direct: None,
            reader: Some(reader),
            map: OnceLock::new(),
            map_len: state.len,
            len: AtomicU64::new(state.len),
            next_offset: AtomicU64::new(state.next_offset),
            max_timestamp: AtomicI64::new(state.max_timestamp),
            index: RwLock::new(index),
            time_index: RwLock::new(time_index),
        })
    }

    pub fn writer(&self) -> Option<&dyn WritableFile> {
        self.writer.as_deref()
    }

    /// The O_DIRECT handle of an active segment of a direct-mode log.
    pub fn direct_writer(&self) -> Option<&dyn DirectFile> {
        self.direct.as_deref()
    }

    pub fn is_active(&self) -> bool {
        self.writer.is_some()
    }

    /// Published length in bytes.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// The offset after the last published batch (`base_offset` when empty).
    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    /// Largest batch maxTimestamp published, -1 if none.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// Makes newly written bytes visible to readers. Only the writer calls this, after the
    /// bytes are in the page cache (and synced, under `always`).
    pub fn publish(&self, state: SegmentState) {
        self.max_timestamp
            .fetch_max(state.max_timestamp, Ordering::AcqRel);
        self.next_offset.store(state.next_offset, Ordering::Release);
        self.len.store(state.len, Ordering::Release);
    }

    /// The shared mapping, created on first use.
    pub fn mapping(&self) -> Result<Option<Arc<Mapped>>> {
        if let Some(m) = self.map.get() {
            return Ok(Some(m.clone()));
        }
        if self.map_len == 0 {
            return Ok(None);
        }
        let file = match (&self.writer, &self.reader) {
            (Some(w), _) => w.file(),
            (None, Some(r)) => r,
            (None, None) => return Ok(None),
        };
        let len = usize::try_from(self.map_len).map_err(|_| {
            Error::Config(format!(
                "segment of {} bytes cannot be mapped",
                self.map_len
            ))
        })?;
        // SAFETY: the mapping is read-only and shared. Its bytes can change under us only
        // through writes to this file, and the engine writes only past the published length,
        // which readers never read. The file is never truncated below a published length while
        // mapped (sealing truncates past it; retention unlinks). Pages past the end of the file
        // are never touched because every read is bounded by the published length, which is
        // never more than the file's length. Other processes modifying the file are outside the
        // engine's contract (the partition directory is locked).
        let map = unsafe { MmapOptions::new().len(len).map(file) }.ctx("mmap", &self.log_path)?;
        // A descriptor of its own, for `sendfile` from slices that outlive this segment's.
        let file = file.try_clone().ctx("dup", &self.log_path)?;
        let map = Arc::new(Mapped { map, file });
        Ok(Some(self.map.get_or_init(|| map).clone()))
    }

    /// Whole batches starting with the one that holds `offset`, up to `max_bytes` (always at
    /// least one batch), none at or past `end_offset`.
    pub fn read(&self, offset: u64, max_bytes: usize, end_offset: u64) -> Result<ReadSlice> {
        let len = usize::try_from(self.len()).unwrap_or(usize::MAX);
        let Some(map) = self.mapping()? else {
            return Ok(ReadSlice::empty());
        };
        let data = map.get(..len).unwrap_or(&[]);
        let rel = super::scan::relative(offset, self.base_offset);
        let pos = self.index.read().lookup(rel) as usize;
        let want = Want {
            offset,
            max_bytes,
            end_offset,
        };
        Ok(match find_batches(data, pos, &want, &self.log_path, 0)? {
            Some(range) => ReadSlice::new(map.clone(), range.start, range.end),
            None => ReadSlice::empty(),
        })
    }

    /// The header of the batch at `pos` of published data, `None` at the end. The data was
    /// verified when written or recovered; lengths are still bounded so a damaged file cannot
    /// make a read run off the mapping.
    pub fn header_at(&self, data: &[u8], pos: usize) -> Result<Option<BatchHeader>> {
        header_at(data, pos, &self.log_path, 0)
    }

    /// Writes both index files from the in-memory indexes (atomic replace each; the caller
    /// syncs the directory).
    pub fn write_index_files(&self, backend: &dyn crate::io::IoBackend) -> Result<()> {
        let idx = self.index.read().encode(self.base_offset);
        let tidx = self.time_index.read().encode(self.base_offset);
        crate::io::write_file_atomic(backend, &self.index_path, &idx)?;
        crate::io::write_file_atomic(backend, &self.time_index_path, &tidx)
    }

    /// Largest timestamp for retention: the newest batch timestamp, or the file's modification
    /// time when no batch carries one (Kafka does the same).
    pub fn largest_timestamp_ms(&self) -> i64 {
        let ts = self.max_timestamp();
        if ts >= 0 {
            return ts;
        }
        std::fs::metadata(&self.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_millis() as i64)
    }
}

/// What a read asks for: the batch that holds `offset` and those after it, up to `max_bytes`
/// (always at least one batch), none at or past `end_offset` (the end readers may see).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    pub offset: u64,
    pub max_bytes: usize,
    pub end_offset: u64,
}

/// Walks the batches of `data` (published bytes of a segment, or of a staging buffer holding
/// the segment from file position `file_pos`) from `pos`, a batch boundary at or before the
/// batch that holds `want.offset`, and returns the byte range of the batches to read; `None`
/// when there are none.
pub(crate) fn find_batches(
    data: &[u8],
    mut pos: usize,
    want: &Want,
    file: &Path,
    file_pos: u64,
) -> Result<Option<std::ops::Range<usize>>> {
    let start = loop {
        let Some(h) = header_at(data, pos, file, file_pos)? else {
            return Ok(None);
        };
        if h.base_offset as u64 >= want.end_offset {
            return Ok(None);
        }
        if h.last_offset() as u64 >= want.offset {
            break pos;
        }
        pos += h.total_len();
    };
    let mut end = start;
    while let Some(h) = header_at(data, end, file, file_pos)? {
        if h.base_offset as u64 >= want.end_offset
            || (end > start && end + h.total_len() - start > want.max_bytes)
        {
            break;
        }
        end += h.total_len();
    }
    Ok(Some(start..end))
}

/// The header of the batch at `pos` of `data`, `None` at the end; errors name `file` and the
/// position in it (`file_pos` is where `data` starts). Lengths are bounded so that damaged bytes
/// cannot make a read run off `data`.
pub(crate) fn header_at(
    data: &[u8],
    pos: usize,
    file: &Path,
    file_pos: u64,
) -> Result<Option<BatchHeader>> {
    if pos >= data.len() {
        return Ok(None);
    }
    let corrupt = |reason: String| Error::Corrupt {
        file: file.to_path_buf(),
        position: file_pos + pos as u64,
        reason,
    };
    let rest = data.get(pos..).unwrap_or(&[]);
    let h = BatchHeader::parse(rest).map_err(|e| corrupt(e.to_string()))?;
    if h.total_len() < HEADER_LEN || h.total_len() > rest.len() {
        return Err(corrupt(format!(
            "batch length {} does not fit the {} bytes that remain",
            h.total_len(),
            rest.len()
        )));
    }
    Ok(Some(h))
}
