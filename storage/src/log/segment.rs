//! One segment: a `.log` file of batches and its two indexes, mapped for reading.
//!
//! Concurrency: one writer (the partition's leader) appends and then *publishes* a new length
//! with a release store; readers load the length with acquire and only ever touch mapped bytes
//! below it. Published bytes are never rewritten, so a reader's slice stays valid for as long as
//! it holds the mapping (`Arc<Mapped>`), even after the segment is sealed or deleted: sealing only
//! releases preallocated blocks *past* the published length, deletion unlinks, never truncates,
//! and a truncation ([`super::PartitionLog::truncate_to`]) first waits until no reader holds a
//! slice of the bytes it cuts.
//!
//! Files are opened when first needed and closed when idle (issue "house" §3): a sealed segment
//! holds no descriptor until it is read (then one, inside its mapping); an active segment opens
//! its write handle at the first write after the log opened or after the idle sweep closed it.
//! A thousand idle partitions hold no descriptors at all.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use memmap2::MmapOptions;
use parking_lot::{Mutex, RwLock};

use crate::batch::header::{BatchHeader, HEADER_LEN};
use crate::error::{Error, IoContext, Result};
use crate::io::{DirectFile, DirectWaker, IoBackend, WritableFile};

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
    /// The write handles of an active segment; `None` once sealed.
    active: Option<ActiveFiles>,
    /// The read mapping, made on first read and dropped by the idle sweep.
    map: Mutex<Option<Arc<Mapped>>>,
    /// Reads so far (the idle sweep drops the mapping of a segment nobody read since it last
    /// looked).
    reads: AtomicU64,
    /// How many bytes to map: the largest the segment can become.
    map_len: AtomicU64,
    len: AtomicU64,
    next_offset: AtomicU64,
    max_timestamp: AtomicI64,
    pub index: RwLock<OffsetIndex>,
    pub time_index: RwLock<TimeIndex>,
}

/// An active segment's write handles, (re)opened on demand through `backend`.
struct ActiveFiles {
    backend: Arc<dyn IoBackend>,
    /// Writes go through an O_DIRECT handle too ([`super::WriteMode::Direct`]).
    direct_mode: bool,
    writer: Mutex<Option<Arc<dyn WritableFile>>>,
    direct: Mutex<Option<Arc<dyn DirectFile>>>,
    /// Told when direct writes complete.
    waker: Option<WakerCell>,
}

/// Where a log's active segments find the log to wake when direct writes complete: set once,
/// right after the log is built (its segments exist before it does).
pub(crate) type WakerCell = Arc<OnceLock<Weak<dyn DirectWaker>>>;

impl std::fmt::Debug for ActiveFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveFiles")
            .field("writer_open", &self.writer.lock().is_some())
            .field("direct_open", &self.direct.lock().is_some())
            .finish()
    }
}

/// What the writer knows about a segment when it hands it over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentState {
    pub len: u64,
    pub next_offset: u64,
    pub max_timestamp: i64,
}

/// How an active segment writes (see [`Segment::active`]).
pub(crate) struct ActiveSpec {
    pub backend: Arc<dyn IoBackend>,
    /// A write handle already open (a segment a roll just created), or `None` to open one at the
    /// first write.
    pub writer: Option<Box<dyn WritableFile>>,
    pub direct_mode: bool,
    pub waker: Option<WakerCell>,
}

impl Segment {
    fn paths(dir: &Path, base: u64) -> (PathBuf, PathBuf, PathBuf) {
        (
            segment_path(dir, base, FileKind::Log),
            segment_path(dir, base, FileKind::Index),
            segment_path(dir, base, FileKind::TimeIndex),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        dir: &Path,
        base_offset: u64,
        active: Option<ActiveFiles>,
        map_len: u64,
        state: SegmentState,
        index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Self {
        let (log_path, index_path, time_index_path) = Self::paths(dir, base_offset);
        Segment {
            base_offset,
            log_path,
            index_path,
            time_index_path,
            active,
            map: Mutex::new(None),
            reads: AtomicU64::new(0),
            map_len: AtomicU64::new(map_len),
            len: AtomicU64::new(state.len),
            next_offset: AtomicU64::new(state.next_offset),
            max_timestamp: AtomicI64::new(state.max_timestamp),
            index: RwLock::new(index),
            time_index: RwLock::new(time_index),
        }
    }

    /// An active segment; its mapping covers `map_len` bytes so that it never has to be redone
    /// while the segment grows.
    pub fn active(
        dir: &Path,
        base_offset: u64,
        spec: ActiveSpec,
        map_len: u64,
        state: SegmentState,
        index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Self {
        let files = ActiveFiles {
            backend: spec.backend,
            direct_mode: spec.direct_mode,
            writer: Mutex::new(spec.writer.map(Arc::from)),
            direct: Mutex::new(None),
            waker: spec.waker,
        };
        Self::new(
            dir,
            base_offset,
            Some(files),
            map_len,
            state,
            index,
            time_index,
        )
    }

    /// A sealed (read-only) segment; its file is opened and mapped on first read.
    pub fn sealed(
        dir: &Path,
        base_offset: u64,
        state: SegmentState,
        index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Self {
        Self::new(dir, base_offset, None, state.len, state, index, time_index)
    }

    fn files(&self) -> Result<&ActiveFiles> {
        self.active
            .as_ref()
            .ok_or_else(|| Error::Closed(self.log_path.clone()))
    }

    /// The write handle of an active segment, opened if it is not.
    pub fn writer(&self) -> Result<Arc<dyn WritableFile>> {
        let files = self.files()?;
        let mut w = files.writer.lock();
        if let Some(w) = w.as_ref() {
            return Ok(w.clone());
        }
        let opened: Arc<dyn WritableFile> = Arc::from(
            files
                .backend
                .open_writable(&self.log_path)
                .ctx("open segment", &self.log_path)?,
        );
        *w = Some(opened.clone());
        Ok(opened)
    }

    /// The write handle if it is open (nothing written through a closed one is unsynced: the
    /// idle sweep syncs before it closes).
    pub fn writer_if_open(&self) -> Option<Arc<dyn WritableFile>> {
        self.active.as_ref().and_then(|f| f.writer.lock().clone())
    }

    /// A handle to fdatasync the segment with, if anything may be unsynced: the write handle
    /// if it is open, or one opened now if only the O_DIRECT handle is (whose writes a sync of
    /// any handle of the file covers). `None` when no handle is open: the idle sweep synced
    /// before closing them, and nothing was written since.
    pub fn handle_for_sync(&self) -> Result<Option<Arc<dyn WritableFile>>> {
        if let Some(w) = self.writer_if_open() {
            return Ok(Some(w));
        }
        if self.direct_if_open().is_some() {
            return self.writer().map(Some);
        }
        Ok(None)
    }

    /// The O_DIRECT handle of an active segment of a direct-mode log, opened if it is not.
    pub fn direct_writer(&self) -> Result<Arc<dyn DirectFile>> {
        let files = self.files()?;
        if !files.direct_mode {
            return Err(Error::Closed(self.log_path.clone()));
        }
        let mut d = files.direct.lock();
        if let Some(d) = d.as_ref() {
            return Ok(d.clone());
        }
        let opened: Arc<dyn DirectFile> =
            Arc::from(files.backend.open_direct(&self.log_path).map_err(|e| {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    Error::Config(format!(
                        "write mode direct: the file system of {} does not support O_DIRECT ({e})",
                        self.log_path.display()
                    ))
                } else {
                    Error::io("open O_DIRECT", &self.log_path, e)
                }
            })?);
        if let Some(w) = files.waker.as_ref().and_then(|c| c.get()) {
            opened.set_waker(w.clone());
        }
        *d = Some(opened.clone());
        Ok(opened)
    }

    /// The O_DIRECT handle if it is open.
    pub fn direct_if_open(&self) -> Option<Arc<dyn DirectFile>> {
        self.active.as_ref().and_then(|f| f.direct.lock().clone())
    }

    /// Closes the handles and drops the mapping (the caller synced what was written, and no
    /// write is in flight). They are reopened when next needed.
    pub fn release_files(&self) {
        if let Some(f) = &self.active {
            f.writer.lock().take();
            f.direct.lock().take();
        }
        self.map.lock().take();
    }

    /// Drops the mapping unless the segment was read since the last call (whose count `seen`
    /// holds); readers holding slices keep theirs. Returns whether it was dropped.
    pub fn release_mapping_if_unread(&self, seen: &mut u64) -> bool {
        let reads = self.reads.load(Ordering::Relaxed);
        if reads != *seen {
            *seen = reads;
            return false;
        }
        self.map.lock().take().is_some()
    }

    /// Whether any handle or mapping is open.
    pub fn holds_files(&self) -> bool {
        self.map.lock().is_some()
            || self
                .active
                .as_ref()
                .is_some_and(|f| f.writer.lock().is_some() || f.direct.lock().is_some())
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
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

    /// The shared mapping, created on first use (opening the file read-only; the mapping keeps
    /// that descriptor for `sendfile`).
    pub fn mapping(&self) -> Result<Option<Arc<Mapped>>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.map.lock();
        if let Some(m) = slot.as_ref() {
            return Ok(Some(m.clone()));
        }
        let map_len = self.map_len.load(Ordering::Acquire);
        if map_len == 0 {
            return Ok(None);
        }
        let len = usize::try_from(map_len)
            .map_err(|_| Error::Config(format!("segment of {map_len} bytes cannot be mapped")))?;
        let file = File::open(&self.log_path).ctx("open segment", &self.log_path)?;
        // SAFETY: the mapping is read-only and shared. Its bytes can change under us only
        // through writes to this file, and the engine writes only past the published length,
        // which readers never read. The file is never truncated below a published length while
        // a reader holds a slice of it (sealing truncates past it; retention unlinks; a
        // truncation waits for readers to let go). Pages past the end of the file are never
        // touched because every read is bounded by the published length, which is never more
        // than the file's length. Other processes modifying the file are outside the engine's
        // contract (the partition directory is locked).
        let map = unsafe { MmapOptions::new().len(len).map(&file) }.ctx("mmap", &self.log_path)?;
        let map = Arc::new(Mapped { map, file });
        *slot = Some(map.clone());
        Ok(Some(map))
    }

    /// Lets an active segment grow to `len` bytes (its settings changed: a larger
    /// `segment.bytes` or `max.message.bytes`): the next mapping covers that much. Readers of
    /// the current mapping keep it; nothing they read moves.
    pub fn grow_map(&self, len: u64) {
        if self.active.is_none() {
            return;
        }
        let mut slot = self.map.lock();
        if len > self.map_len.load(Ordering::Acquire) {
            self.map_len.store(len, Ordering::Release);
            slot.take();
        }
    }

    /// Takes the cached mapping out (a truncation waits until its readers let go).
    pub fn take_mapping(&self) -> Option<Arc<Mapped>> {
        self.map.lock().take()
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
    pub fn write_index_files(&self, backend: &dyn IoBackend) -> Result<()> {
        let idx = self.index.read().encode(self.base_offset);
        let tidx = self.time_index.read().encode(self.base_offset);
        crate::io::write_file_atomic(backend, &self.index_path, &idx)?;
        crate::io::write_file_atomic(backend, &self.time_index_path, &tidx)
    }

    /// Writes both index files in place without syncing them (a clean close: an index file a
    /// crash leaves torn fails its CRC, and the segment is walked instead). They exist from
    /// the segment's creation ([`create_segment_files`]), so this creates nothing.
    pub fn write_index_files_unsynced(&self, backend: &dyn IoBackend) -> Result<()> {
        let idx = self.index.read().encode(self.base_offset);
        let tidx = self.time_index.read().encode(self.base_offset);
        crate::io::overwrite_file_unsynced(backend, &self.index_path, &idx)?;
        crate::io::overwrite_file_unsynced(backend, &self.time_index_path, &tidx)
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

/// Creates a new segment's files: its log (returned, open for writing) and its two index
/// files, valid and empty. The index files are not synced: the directory fsync that makes the
/// log's name durable covers theirs, and an empty index is what a crash may leave of any index
/// file the close or the seal had not written yet, which recovery rebuilds. Kafka creates a
/// segment's index files with it too; here it is so that the clean close, which may close
/// thousands of logs at once, overwrites them in place instead of creating them (FORMAT.md §6).
pub(crate) fn create_segment_files(
    backend: &dyn IoBackend,
    dir: &Path,
    base: u64,
) -> Result<Box<dyn WritableFile>> {
    let path = segment_path(dir, base, FileKind::Log);
    let w = backend.create_new(&path).ctx("create segment", &path)?;
    crate::io::overwrite_file_unsynced(
        backend,
        &segment_path(dir, base, FileKind::Index),
        &OffsetIndex::new().encode(base),
    )?;
    crate::io::overwrite_file_unsynced(
        backend,
        &segment_path(dir, base, FileKind::TimeIndex),
        &TimeIndex::new().encode(base),
    )?;
    Ok(w)
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
