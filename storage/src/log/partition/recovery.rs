//! Opening a log: what a crash may have left is checked and repaired, the rest is trusted.
//!
//! After a clean close (checkpoint flag set, lengths match) nothing is scanned. Otherwise every
//! segment at or past the checkpoint's recovery point is scanned batch by batch (length, magic,
//! CRC-32C, contiguous offsets); a bad tail of the *last* segment is truncated and logged, bad
//! bytes anywhere else are an [`Error::Corrupt`] naming the file and position (unless
//! [`RecoveryMode::TruncateAtCorruption`]). Missing or damaged index files are rebuilt.
//! Segments before the recovery point are loaded from their index files
//! ([`load_trusted`]). Whether a bad tail is a crash's or damage depends on whether the
//! previous open ran in the same boot ([`note_boot`], FORMAT.md §7).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::io::{IoBackend, write_file_atomic};

use super::super::checkpoint::{self, Checkpoint};
use super::super::config::{LogConfig, MAX_SEGMENT_BYTES, RecoveryMode};
use super::super::epoch::{self, EpochCache};
use super::super::index::{self, OffsetIndex, TimeEntry, TimeIndex};
use super::super::name::{self, FileKind, TMP_SUFFIX};
use super::super::scan::{self, relative};
use super::super::segment::{Segment, SegmentState, create_segment_files};
use super::RecoveryReport;
use super::roll::open_active;
use super::state::{WriterCore, now_ms, remove_if_exists, remove_segment_files};

/// Segment files found in a directory.
#[derive(Debug, Default)]
struct Listing {
    logs: BTreeMap<u64, u64>,
    indexes: Vec<(u64, FileKind, PathBuf)>,
    tmps: Vec<PathBuf>,
}

fn list_dir(dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    for entry in std::fs::read_dir(dir).ctx("read dir", dir)? {
        let entry = entry.ctx("read dir", dir)?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if fname.ends_with(TMP_SUFFIX) {
            l.tmps.push(entry.path());
            continue;
        }
        match name::parse_file_name(fname) {
            Some((base, FileKind::Log)) => {
                let len = entry.metadata().ctx("stat", &entry.path())?.len();
                l.logs.insert(base, len);
            }
            Some((base, kind)) => l.indexes.push((base, kind, entry.path())),
            None => {}
        }
    }
    Ok(l)
}

/// What recovery learned of one segment.
struct Loaded {
    base: u64,
    state: SegmentState,
    index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    offset_of_max_timestamp: u64,
}

/// Most bytes after a segment's last offset-index entry that [`load_trusted`] reads; past it
/// (an index interval far above the default 4 KiB) the segment is walked whole.
const TRUSTED_TAIL_MAX: u64 = 16 << 20;

/// Loads a segment recovery trusts (sealed and synced, or closed cleanly) from its index files
/// instead of walking it: the offset index gives the position of a batch near the end, the
/// batches from there to the end of the file are walked (headers only) to find the segment's
/// next offset and the writer's index state, and the time index's last entry gives its largest
/// timestamp (a sealed segment's always holds it, FORMAT.md §4.3). `None` when an index file is
/// missing or damaged, or the walk does not end exactly at the end of the file: the caller walks
/// the whole segment and rebuilds the indexes.
fn load_trusted(dir: &Path, base: u64, file_len: u64) -> Result<Option<Loaded>> {
    use std::os::unix::fs::FileExt;
    let idx_path = name::segment_path(dir, base, FileKind::Index);
    let tidx_path = name::segment_path(dir, base, FileKind::TimeIndex);
    let Some(index) = index::read_index_file(&idx_path)?
        .and_then(|b| OffsetIndex::decode(&b, base, file_len.max(1)).ok())
    else {
        return Ok(None);
    };
    let Some(time_bytes) = index::read_index_file(&tidx_path)? else {
        return Ok(None);
    };
    let (from, from_offset) = index.entries().last().map_or((0, base), |e| {
        (u64::from(e.position), base + u64::from(e.relative_offset))
    });
    if file_len - from > TRUSTED_TAIL_MAX {
        return Ok(None);
    }
    let path = name::segment_path(dir, base, FileKind::Log);
    let mut tail = vec![0u8; (file_len - from) as usize];
    File::open(&path)
        .and_then(|f| f.read_exact_at(&mut tail, from))
        .ctx("read segment", &path)?;
    let mut scanner = scan::BatchScanner::new(&tail, MAX_SEGMENT_BYTES as usize, false)
        .expecting_offset(from_offset);
    let mut next_offset = from_offset;
    let mut tail_max = (-1i64, base);
    for b in scanner.by_ref() {
        next_offset = b.header.next_offset() as u64;
        if b.header.max_timestamp > tail_max.0 {
            tail_max = (b.header.max_timestamp, b.header.last_offset() as u64);
        }
    }
    if scanner.stop().is_some() || scanner.position() != tail.len() as u64 {
        return Ok(None);
    }
    let Ok(time_index) = TimeIndex::decode(&time_bytes, base, (next_offset - base).max(1)) else {
        return Ok(None);
    };
    let (max_timestamp, offset_of_max_timestamp) = match time_index.last() {
        Some(e) if e.timestamp >= tail_max.0 => (e.timestamp, base + u64::from(e.relative_offset)),
        _ => tail_max,
    };
    Ok(Some(Loaded {
        base,
        state: SegmentState {
            len: file_len,
            next_offset,
            max_timestamp,
        },
        index,
        time_index,
        bytes_since_index: file_len - from,
        offset_of_max_timestamp,
    }))
}

/// Records the running boot's id in the lock file (FORMAT.md §6) and says whether the previous
/// open of this directory ran in the same boot. Then the page cache outlived whatever stopped
/// that open: bytes it wrote are all there, so only a failed write can have left a partial tail
/// (the backends write each call's bytes in order, see [`crate::io`]), and bad bytes anywhere
/// else are damage. `false` when either id is unknown. The file is not synced: after a power
/// cut it may hold the old id or nothing, and either way differs from the new boot's.
pub(crate) fn note_boot(lock: &File, lock_path: &Path, backend: &dyn IoBackend) -> Result<bool> {
    use std::io::{Read, Seek, Write};
    let current = backend.boot_id();
    let mut f = lock;
    let mut previous = String::new();
    // A few bytes at most; a longer or unreadable file is an unknown boot.
    let read = (&mut f)
        .take(LOCK_FILE_MAX_BYTES)
        .read_to_string(&mut previous);
    let same = read.is_ok()
        && current
            .as_deref()
            .is_some_and(|c| previous.trim() == c && !c.is_empty());
    let line = current.map(|c| c + "\n").unwrap_or_default();
    f.set_len(0).ctx("truncate", lock_path)?;
    f.seek(std::io::SeekFrom::Start(0)).ctx("seek", lock_path)?;
    f.write_all(line.as_bytes()).ctx("write", lock_path)?;
    Ok(same)
}

/// The lock file holds one boot id (a UUID on Linux); anything longer is not one.
const LOCK_FILE_MAX_BYTES: u64 = 128;

/// Opens every segment of `dir`, checking and repairing what a crash may have left.
/// `same_boot`: the previous open ran in this boot (see [`note_boot`]).
pub(crate) fn recover(
    dir: &Path,
    config: &LogConfig,
    ctx: &RecoverCtx,
    same_boot: bool,
) -> Result<Recovered> {
    let backend = ctx.backend.as_ref();
    let cp = checkpoint::read(dir)?;
    let mut listing = list_dir(dir)?;
    let mut report = RecoveryReport::default();

    for tmp in &listing.tmps {
        remove_if_exists(backend, tmp)?;
    }
    for (base, _, path) in &listing.indexes {
        if !listing.logs.contains_key(base) {
            tracing::warn!(file = %path.display(), "removing index without a segment");
            remove_if_exists(backend, path)?;
        }
    }
    let fresh = listing.logs.is_empty() && cp.is_none();
    if listing.logs.is_empty() {
        let base = cp.map_or(0, |c| c.log_end_offset);
        drop(create_segment_files(backend, dir, base)?);
        backend.sync_dir(dir).ctx("fsync dir", dir)?;
        listing.logs.insert(base, 0);
    }

    let bases: Vec<(u64, u64)> = listing.logs.iter().map(|(b, l)| (*b, *l)).collect();
    let last_base = bases.last().map_or(0, |b| b.0);
    let clean =
        cp.is_some_and(|c| c.clean && listing.logs.get(&last_base) == Some(&c.active_segment_len));
    report.clean = clean;
    let recovery_point = match cp {
        Some(c) if clean => c.log_end_offset.max(last_base),
        Some(c) => c.recovery_point,
        None => 0,
    };

    let mut loaded: Vec<Loaded> = Vec::new();
    let mut expected_base: Option<u64> = None;
    // Set once a crash's torn tail was cut: later segments then hold nothing the log can keep.
    let mut crash_cut = false;
    let mut i = 0;
    while let Some(&(base, file_len)) = bases.get(i) {
        i += 1;
        let path = name::segment_path(dir, base, FileKind::Log);
        if let Some(exp) = expected_base
            && exp != base
        {
            let reason =
                format!("segment starts at offset {base}, but the previous segment ends at {exp}");
            // Past the recovery point the previous segment was never known durable: a machine
            // crash may have cut it short, and what follows it cannot be kept. In the same boot
            // only the tail cut above can explain a gap (and every later file is then empty).
            let crash_gap = base >= recovery_point && (!same_boot || crash_cut);
            if crash_gap || config.recovery == RecoveryMode::TruncateAtCorruption {
                tracing::warn!(file = %path.display(), %reason, "removing this and every later segment");
                report.segments_removed +=
                    remove_segments(backend, dir, bases.get(i - 1..).unwrap_or(&[]))?;
                break;
            }
            return Err(Error::Corrupt {
                file: path,
                position: 0,
                reason: format!(
                    "{reason} (a segment is missing, or was cut short, where no crash can have done it); {TRUNCATE_HINT}"
                ),
            });
        }
        let trusted = base < recovery_point || clean;
        // A segment recovery trusts is not walked: its index files say where its batches are,
        // and only the batches after the last index entry are read, to find its exact end.
        // (Kafka loads segments lazily the same way.) Damage inside it is for `strata verify`
        // to find; anything that does not add up falls back to the full walk below.
        if trusted && let Some(l) = load_trusted(dir, base, file_len)? {
            expected_base = Some(l.state.next_offset);
            loaded.push(l);
            report.segments_loaded_from_index += 1;
            continue;
        }
        let mut data = if file_len == 0 {
            None
        } else {
            let f = File::open(&path).ctx("open segment", &path)?;
            // SAFETY: recovery maps the file read-only while no writer exists for it (the
            // directory lock keeps other engines out); the map is dropped before any truncation.
            Some(unsafe { memmap2::Mmap::map(&f) }.ctx("mmap", &path)?)
        };
        let bytes = data.as_deref().unwrap_or(&[]);
        // Any batch the engine could ever have stored is accepted here, whatever the log's
        // max_batch_bytes is now (it may have been lowered since the data was written).
        let scan = scan::scan_segment(
            bytes,
            base,
            MAX_SEGMENT_BYTES as usize,
            !trusted,
            config.index_interval_bytes,
        );
        if !trusted {
            report.segments_scanned += 1;
        }
        let mut valid_len = file_len;
        // The zeros a direct write pads its last block with (FORMAT.md §2) end a segment that
        // was not yet truncated to its data: cut, but nothing was damaged or lost.
        if let Some(stop) = scan.stop.as_ref().filter(|s| {
            let tail = usize::try_from(s.position)
                .ok()
                .and_then(|p| bytes.get(p..))
                .unwrap_or(&[]);
            !trusted && scan::is_block_padding(tail, file_len)
        }) {
            tracing::debug!(file = %path.display(), position = stop.position, "cutting the zero padding of a direct write");
            report.padding_trimmed += file_len - stop.position;
            drop(data.take());
            let w = backend.open_writable(&path).ctx("open segment", &path)?;
            w.set_len(stop.position).ctx("truncate", &path)?;
            w.sync_data().ctx("fdatasync", &path)?;
            valid_len = stop.position;
        } else if let Some(stop) = &scan.stop {
            let reason = stop.problem.to_string();
            let later = bases.get(i..).unwrap_or(&[]);
            // Past the recovery point nothing was known durable. After a machine crash (another
            // boot) bad bytes there are what the crash left: a torn or garbled unsynced tail, a
            // segment the OS had not finished writing back. The segment ends there; later
            // segments stay only if their offsets continue where it now ends (checked at the top
            // of the loop): then the cut bytes held no batch the log needs. In the same boot the
            // page cache survived and every write lands in order, so the only tail a crash
            // leaves is a batch cut short by a write that failed or never finished, with nothing
            // after it in any file; anything else is damage. Before the recovery point, the
            // segment was synced and sealed: bad bytes are damage. Damage is an error unless the
            // operator chose TruncateAtCorruption, which drops everything after it.
            let crash_tail = !trusted
                && (!same_boot
                    || (scan::is_cut_short(&stop.problem)
                        && later.iter().all(|(_, len)| *len == 0)));
            if crash_tail || config.recovery == RecoveryMode::TruncateAtCorruption {
                let damage = !crash_tail;
                if damage {
                    tracing::error!(file = %path.display(), position = stop.position, %reason, later_segments = later.len(), "corruption: truncating here and removing every later segment");
                } else {
                    crash_cut = true;
                    tracing::warn!(file = %path.display(), position = stop.position, bytes = file_len - stop.position, %reason, "truncating what a crash left unwritten");
                }
                report.truncated.push((
                    path.clone(),
                    stop.position,
                    file_len - stop.position,
                    reason,
                ));
                drop(data.take());
                let w = backend.open_writable(&path).ctx("open segment", &path)?;
                w.set_len(stop.position).ctx("truncate", &path)?;
                w.sync_data().ctx("fdatasync", &path)?;
                valid_len = stop.position;
                if damage {
                    if !later.is_empty() {
                        report.segments_removed += remove_segments(backend, dir, later)?;
                    }
                    i = bases.len();
                }
            } else {
                return Err(Error::Corrupt {
                    file: path,
                    position: stop.position,
                    reason: damage_reason(&reason, trusted, later),
                });
            }
        }
        // A truncation above may have removed every later segment: this one is then the last.
        let is_last = i == bases.len();
        if !trusted && !is_last && valid_len == file_len {
            // A rolled segment the crash caught before its seal may still hold the blocks
            // preallocated past its data, which the seal would have released. The checkpoint
            // below trusts it from now on, so what was read of it must be on disk: after a
            // process crash part of it may still be only in the page cache.
            drop(data.take());
            let w = backend.open_writable(&path).ctx("open segment", &path)?;
            w.set_len(valid_len).ctx("truncate", &path)?;
            w.sync_data().ctx("fdatasync", &path)?;
        }
        // Indexes: trust the files only if they decode and agree with the scan's end.
        let end_rel = scan.next_offset - base;
        let idx_path = name::segment_path(dir, base, FileKind::Index);
        let tidx_path = name::segment_path(dir, base, FileKind::TimeIndex);
        let from_file = if trusted && scan.stop.is_none() {
            let idx = index::read_index_file(&idx_path)?
                .and_then(|b| OffsetIndex::decode(&b, base, valid_len).ok());
            let tidx = index::read_index_file(&tidx_path)?
                .and_then(|b| TimeIndex::decode(&b, base, end_rel.max(1)).ok());
            idx.zip(tidx)
        } else {
            None
        };
        let rebuilt = from_file.is_none();
        let (index, mut time_index) = match from_file {
            Some(p) => p,
            None => {
                // Segments that were scanned always take the scan's indexes; only a trusted
                // segment's missing or damaged files count as a rebuild.
                if trusted {
                    report.indexes_rebuilt += 1;
                }
                (scan.index.clone(), scan.time_index.clone())
            }
        };
        // A sealed segment's files, and after a clean close the active one's too, are as a
        // seal or the close wrote them: with the final time-index entry.
        let persisted = !is_last || clean;
        if scan.max_timestamp >= 0 && persisted {
            time_index.maybe_push(TimeEntry {
                timestamp: scan.max_timestamp,
                relative_offset: relative(scan.offset_of_max_timestamp, base),
            });
        }
        // Those are persisted now, so the next open need not rebuild them (the active
        // segment's are otherwise written when it seals or the log closes): the clean
        // checkpoint stays true until the first write replaces it.
        if rebuilt && persisted {
            write_file_atomic(backend, &idx_path, &index.encode(base))?;
            write_file_atomic(backend, &tidx_path, &time_index.encode(base))?;
            backend.sync_dir(dir).ctx("fsync dir", dir)?;
        }
        loaded.push(Loaded {
            base,
            state: SegmentState {
                len: valid_len,
                next_offset: scan.next_offset,
                max_timestamp: scan.max_timestamp,
            },
            index,
            time_index,
            bytes_since_index: scan.bytes_since_index,
            offset_of_max_timestamp: scan.offset_of_max_timestamp,
        });
        expected_base = Some(scan.next_offset);
    }

    let Some(last) = loaded.pop() else {
        return Err(Error::Corrupt {
            file: dir.to_path_buf(),
            position: 0,
            reason: "no segment survived recovery".into(),
        });
    };
    let mut segments = Vec::with_capacity(loaded.len() + 1);
    for l in loaded {
        segments.push(Arc::new(Segment::sealed(
            dir,
            l.base,
            l.state,
            l.index,
            l.time_index,
        )));
    }
    // The active segment's files are opened by its first write, not here: an idle partition
    // holds no descriptor.
    let (active, reserved) = open_active(
        dir,
        config,
        crate::log::config::MIN_PREALLOCATE_STEP,
        ctx.backend.clone(),
        ctx.waker.clone(),
        last.base,
        None,
        last.state,
        last.index,
        last.time_index,
    );
    segments.push(active.clone());
    report.segments = segments.len();

    // After a clean close the clean checkpoint stays until the first write replaces it (see
    // `Inner::mark_dirty`), so opening an idle partition writes nothing. Otherwise record that
    // every segment but the last is verified.
    if !clean {
        checkpoint::write(
            backend,
            dir,
            &Checkpoint {
                clean: false,
                recovery_point: last.base,
                log_end_offset: last.state.next_offset,
                active_segment_len: last.state.len,
            },
        )?;
    }
    if !report.clean && !fresh {
        tracing::info!(dir = %dir.display(), ?report, "recovered partition log");
    }
    let core = WriterCore {
        active,
        len: last.state.len,
        next_offset: last.state.next_offset,
        bytes_since_index: last.bytes_since_index,
        max_timestamp: last.state.max_timestamp,
        offset_of_max_timestamp: last.offset_of_max_timestamp,
        first_append_ms: (last.state.len > 0).then(now_ms),
        reserved,
    };
    Ok(Recovered {
        segments,
        core,
        report,
        checkpoint_clean: clean,
    })
}

/// The leader-epoch cache of a recovered log: its file, cut to the log's offsets. A log without
/// the file never had a batch with a leader epoch (the file is written before the first one);
/// a damaged file is rebuilt from the batches' partitionLeaderEpoch fields (one read of every
/// batch header) and written back.
pub(crate) fn load_epochs(
    dir: &Path,
    backend: &dyn IoBackend,
    segments: &[Arc<Segment>],
) -> Result<EpochCache> {
    let start = segments.first().map_or(0, |s| s.base_offset);
    let end = segments.last().map_or(0, |s| s.next_offset());
    let (mut cache, mut changed) = match epoch::read(dir)? {
        Ok(Some(c)) => (c, false),
        Ok(None) => return Ok(EpochCache::default()),
        Err(reason) => {
            tracing::warn!(dir = %dir.display(), %reason, "leader-epoch-checkpoint damaged; rebuilding it from the log");
            (rebuild_epochs(segments)?, true)
        }
    };
    changed |= cache.truncate_from_end(end);
    changed |= cache.truncate_from_start(start);
    if changed {
        epoch::write(backend, dir, &cache)?;
    }
    Ok(cache)
}

/// The log start offset DeleteRecords left (FORMAT.md §12), clamped to the log: at least the
/// first segment's base, at most `end` (a larger one is rewritten). 0 without a file. A damaged file is logged and
/// ignored: the records it had deleted are readable again, none is lost.
pub(crate) fn load_start(
    dir: &Path,
    backend: &dyn IoBackend,
    segments: &[Arc<Segment>],
    end: u64,
) -> Result<u64> {
    let base = segments.first().map_or(0, |s| s.base_offset);
    match super::super::start::read(dir)? {
        Ok(Some(o)) if o > end.max(base) => {
            // The log lost its tail in a crash: it starts (and ends) at its end now.
            let o = end.max(base);
            super::super::start::write(backend, dir, o)?;
            Ok(o)
        }
        Ok(Some(o)) => Ok(o.max(base)),
        Ok(None) => Ok(0),
        Err(reason) => {
            tracing::error!(dir = %dir.display(), %reason, "log-start-offset damaged; the log starts at its first segment again");
            Ok(0)
        }
    }
}

/// Every leader epoch the batches of `segments` carry, from their headers.
fn rebuild_epochs(segments: &[Arc<Segment>]) -> Result<EpochCache> {
    let mut cache = EpochCache::default();
    for seg in segments {
        let Some(map) = seg.mapping()? else { continue };
        let data = map.get(..seg.len() as usize).unwrap_or(&[]);
        let mut pos = 0;
        while let Some(h) = seg.header_at(data, pos)? {
            cache.assign(h.partition_leader_epoch, h.base_offset as u64);
            pos += h.total_len();
        }
        // No descriptor stays open for an idle log.
        drop(map);
        seg.take_mapping();
    }
    Ok(cache)
}

/// What [`recover`] hands to the log it opens.
pub(crate) struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    pub core: WriterCore,
    pub report: RecoveryReport,
    /// The checkpoint on disk is the clean one the last close wrote, still valid.
    pub checkpoint_clean: bool,
}

/// Where [`recover`] opens the active segment from.
pub(crate) struct RecoverCtx {
    pub backend: Arc<dyn IoBackend>,
    pub waker: Option<super::super::segment::WakerCell>,
}

/// What an operator reads when recovery refuses a partition: the problem, why it is damage and
/// not a crash's tail, and the way out.
fn damage_reason(problem: &str, trusted: bool, later: &[(u64, u64)]) -> String {
    let why = if trusted {
        "in data already synced and sealed"
    } else if later.iter().any(|(_, len)| *len > 0) {
        "with data after it, which no crash in this boot leaves"
    } else {
        "and not a batch cut short by an unfinished write, the only tail a crash in this boot leaves"
    };
    format!("{problem} ({why}); {TRUNCATE_HINT}")
}

/// The way out of damage recovery refuses, named in its error.
const TRUNCATE_HINT: &str = "`strata verify --repair --truncate-at-damage` cuts the partition here and keeps what it cuts in a quarantine directory";

/// Removes segments (log and index files) found by recovery past a point of corruption.
fn remove_segments(backend: &dyn IoBackend, dir: &Path, bases: &[(u64, u64)]) -> Result<usize> {
    for (base, _) in bases {
        remove_segment_files(backend, dir, *base)?;
    }
    backend.sync_dir(dir).ctx("fsync dir", dir)?;
    Ok(bases.len())
}
