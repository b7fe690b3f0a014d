//! `strata verify --repair`: the engine's crash recovery, run on purpose, and nothing more.
//!
//! The partition is opened with [`PartitionLog::open`] in [`RecoveryMode::Strict`] and closed
//! again: a torn tail of the last segment is truncated, missing or damaged indexes are rebuilt,
//! leftover `*.tmp` and orphan index files are removed, and a clean checkpoint is written.
//! Damage recovery refuses (a bad batch in a sealed segment, a gap between segments) makes the
//! open fail; nothing is forced, and the verification that follows reports it.
//!
//! With `--truncate-at-damage` it goes further, by the operator's choice: damage recovery
//! refuses, and damage `verify` finds in data recovery trusts (a bad CRC in a sealed segment),
//! is cut: everything from the first damaged batch on moves into
//! `<partition>.quarantine.<unix-ms>/` beside the partition (kept, not deleted), the partition
//! ends where the damage began, and the records and offsets lost are printed
//! ([`quarantine_and_cut`]).
//!
//! A directory whose `.lock` another process holds (a running broker) is refused before
//! anything is touched. Retention, preallocation and background threads are disabled for the
//! open, so nothing but recovery can change the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use strata_storage::Error;
use strata_storage::io::plain::PlainBackend;
use strata_storage::log::config::MAX_SEGMENT_BYTES;
use strata_storage::log::partition::LOCK_FILE;
use strata_storage::log::{FsyncPolicy, LogConfig, PartitionLog, RecoveryMode, WriteMode};

use super::VerifyArgs;
use super::report::{RepairAction, Reporter};
use super::target;

/// The partition is held by another process (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{}: held by a running process (the flock on its {LOCK_FILE} or its data directory's is taken); stop it before --repair", .0.display())]
pub struct LockHeld(pub PathBuf);

/// What a file looked like: the length of a segment (recovery only ever truncates one), the
/// bytes of anything else (indexes and the checkpoint are small).
#[derive(Debug, PartialEq, Eq)]
enum Snap {
    Log(u64),
    Bytes(Vec<u8>),
}

fn snapshot(dir: &Path) -> anyhow::Result<BTreeMap<String, Snap>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let entry = entry.with_context(|| dir.display().to_string())?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if n == LOCK_FILE || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let snap = if n.ends_with(".log") {
            Snap::Log(entry.metadata()?.len())
        } else {
            Snap::Bytes(std::fs::read(entry.path())?)
        };
        out.insert(n, snap);
    }
    Ok(out)
}

/// Takes the lock of the broker data directory `dir` is in (its parent's `.lock`, if there is
/// one: a running broker holds it) for the repair, and checks the partition's own lock (a
/// standalone engine holds that): fails with [`LockHeld`] if a process holds either. Returns
/// the data directory's lock, to hold until the repair is done.
fn lock_for_repair(dir: &Path) -> anyhow::Result<Option<std::fs::File>> {
    let take = |path: &Path, create: bool| -> anyhow::Result<Option<std::fs::File>> {
        let f = match std::fs::File::options()
            .create(create)
            .truncate(false)
            .write(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::Error::new(e).context(path.display().to_string())),
        };
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockHeld(dir.to_path_buf()).into()),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(anyhow::Error::new(e).context(format!("lock {}", path.display())))
            }
        }
    };
    let data_dir = match dir.parent() {
        Some(parent) => take(&parent.join(LOCK_FILE), false)?,
        None => None,
    };
    // Released at once: the engine takes it again when it opens the partition.
    drop(take(&dir.join(LOCK_FILE), true)?);
    Ok(data_dir)
}

/// Runs recovery on `dir` and reports every change.
pub fn repair_partition(
    dir: &Path,
    args: &VerifyArgs,
    rep: &mut Reporter<'_>,
) -> anyhow::Result<()> {
    if target::list_partition(dir)?.logs.is_empty() {
        // Opening would create a first segment: that is not a repair.
        return Ok(());
    }
    let _data_dir_lock = lock_for_repair(dir)?;
    let before = snapshot(dir)?;
    let config = LogConfig {
        segment_bytes: MAX_SEGMENT_BYTES,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        retention_check_interval: None,
        fsync: FsyncPolicy::Never,
        flush_messages: None,
        index_interval_bytes: args.index_interval_bytes,
        max_batch_bytes: args.max_batch_bytes,
        preallocate: false,
        recovery: RecoveryMode::Strict,
        // Repair appends nothing; recovery reads a directory the same in either mode.
        write_mode: WriteMode::Buffered,
        direct_cache_bytes: LogConfig::default().direct_cache_bytes,
        lock_dir: true,
        idle_file_close: None,
        replicated: false,
    };
    let mut truncated = Vec::new();
    // Damage recovery refused (with --truncate-at-damage, cut below).
    let mut pending: Option<(PathBuf, u64, String)> = None;
    match PartitionLog::open(dir, config, Arc::new(PlainBackend::new())) {
        Ok(log) => {
            truncated = log.recovery_report().truncated.clone();
            log.close()
                .with_context(|| format!("close {}", dir.display()))?;
        }
        Err(Error::Locked(d)) => return Err(LockHeld(d).into()),
        Err(Error::Corrupt {
            file,
            position,
            reason,
        }) if args.truncate_at_damage => pending = Some((file, position, reason)),
        Err(Error::Corrupt {
            file,
            position,
            reason,
        }) => rep.repair(RepairAction {
            action: "refused",
            file: file.display().to_string(),
            position: Some(position),
            bytes: None,
            reason: format!("recovery does not repair this: {reason}; left alone"),
        }),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("recover {}", dir.display()))),
    }
    if args.truncate_at_damage {
        // Cut at the first damage, then recover again: recovery (no checkpoint any more)
        // checks every batch's CRC, and may find damage further up, which is cut in turn.
        for _ in 0..MAX_CUTS {
            let damage = match pending.take() {
                Some(d) => Some(d),
                None => first_damage(dir)?,
            };
            let Some((file, position, reason)) = damage else {
                break;
            };
            quarantine_and_cut(dir, &file, position, &reason, rep)?;
            match PartitionLog::open(dir, config, Arc::new(PlainBackend::new())) {
                Ok(log) => {
                    truncated.extend(log.recovery_report().truncated.clone());
                    log.close()
                        .with_context(|| format!("close {}", dir.display()))?;
                }
                Err(Error::Corrupt {
                    file,
                    position,
                    reason,
                }) => pending = Some((file, position, reason)),
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("recover {}", dir.display())));
                }
            }
        }
    }
    // Why a file the engine's recovery does not own was removed.
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    if let Some(why) = stale_producer_state(dir)? {
        let name = strata_storage::log::producer_state::SNAPSHOT_FILE;
        std::fs::remove_file(dir.join(name))
            .with_context(|| format!("remove {}", dir.join(name).display()))?;
        sync_dir(dir)?;
        reasons.insert(name.to_string(), why);
    }
    for (file, position, bytes, reason) in truncated {
        rep.repair(RepairAction {
            action: "truncated",
            file: file.display().to_string(),
            position: Some(position),
            bytes: Some(bytes),
            reason,
        });
    }
    let after = snapshot(dir)?;
    for (n, old) in &before {
        let file = dir.join(n).display().to_string();
        match after.get(n) {
            None => rep.repair(RepairAction {
                action: "removed",
                file,
                position: None,
                bytes: None,
                reason: reasons.get(n).cloned().unwrap_or_default(),
            }),
            Some(Snap::Bytes(new)) if matches!(old, Snap::Bytes(o) if o != new) => {
                rep.repair(RepairAction {
                    action: "rewrote",
                    file,
                    position: None,
                    bytes: None,
                    reason: String::new(),
                })
            }
            Some(_) => {}
        }
    }
    for n in after.keys().filter(|n| !before.contains_key(*n)) {
        rep.repair(RepairAction {
            action: "created",
            file: dir.join(n).display().to_string(),
            position: None,
            bytes: None,
            reason: String::new(),
        });
    }
    Ok(())
}

/// Why the broker's producer-state snapshot (FORMAT.md §9) can no longer be used, if so: it
/// does not decode, or was taken past the end of the log as the repair left it. The broker
/// would ignore it and rebuild the state from the last segment; removing it says so on disk.
fn stale_producer_state(dir: &Path) -> anyhow::Result<Option<String>> {
    use strata_storage::log::checkpoint::{self, Checkpoint};
    use strata_storage::log::producer_state;
    let end = std::fs::read(dir.join(checkpoint::FILE_NAME))
        .ok()
        .and_then(|b| Checkpoint::decode(&b).ok())
        .filter(|c| c.clean)
        .map(|c| c.log_end_offset);
    Ok(match producer_state::read(dir)? {
        Err(reason) => Some(format!(
            "producer-state snapshot does not decode ({reason}); the broker rebuilds the state from the last segment"
        )),
        Ok(Some((at, _))) if end.is_some_and(|e| at > e) => Some(format!(
            "producer-state snapshot taken at offset {at}, past the log end {}; the broker rebuilds the state from the last segment",
            end.unwrap_or(0)
        )),
        _ => None,
    })
}

/// What a cut takes out of a partition, counted before it is made.
#[derive(Debug, Default)]
struct CutCount {
    /// The first offset no longer in the partition.
    first_lost: u64,
    /// Records in the batches that still decode among the bytes cut, and the last offset seen.
    records: u64,
    last_offset: Option<u64>,
    /// Bytes cut that are not part of a batch that decodes.
    undecoded: u64,
    bytes: u64,
}

/// Most cuts one `--truncate-at-damage` makes in a partition: each removes the damage it found
/// and everything after it, so every cut is further up than the last.
const MAX_CUTS: usize = 64;

/// The first batch of `dir` that does not check out (length, magic, CRC-32C, offsets that
/// continue), walking its segments in order as `verify` does: `(file, position, reason)`.
fn first_damage(dir: &Path) -> anyhow::Result<Option<(PathBuf, u64, String)>> {
    use super::walk::{Buffer, WalkOptions, walk};
    let listing = target::list_partition(dir)?;
    let mut expect: Option<u64> = None;
    let mut buf = Buffer::default();
    for (base, (path, _)) in &listing.logs {
        if let Some(e) = expect
            && e != *base
        {
            return Ok(Some((
                path.clone(),
                0,
                format!("segment starts at offset {base}, but the previous segment ends at {e}"),
            )));
        }
        let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        let opts = WalkOptions {
            max_batch_bytes: strata_storage::log::config::MAX_SEGMENT_BYTES as usize,
            verify_crc: true,
            expect_offset: Some(*base),
            start: 0,
        };
        let mut next = *base;
        let end = walk(&file, opts, &mut buf, |b, _| {
            next = b.header.next_offset() as u64;
            std::ops::ControlFlow::Continue(())
        })
        .with_context(|| path.display().to_string())?;
        if let Some(stop) = end.stop {
            return Ok(Some((
                path.clone(),
                stop.position,
                stop.problem.to_string(),
            )));
        }
        expect = Some(next);
    }
    Ok(None)
}

/// `--truncate-at-damage`: moves everything from the damage at `position` of `file` on into a
/// quarantine directory beside the partition (the rest of that segment as a copy, the later
/// segments and their indexes as they are), syncs it, and only then cuts: truncates the
/// segment there and removes the checkpoint, so the recovery that follows checks every batch.
/// A crash before the cut leaves the partition as it was (and the quarantine a copy).
fn quarantine_and_cut(
    dir: &Path,
    file: &Path,
    position: u64,
    reason: &str,
    rep: &mut Reporter<'_>,
) -> anyhow::Result<()> {
    use strata_storage::log::name::{self, FileKind};
    let listing = target::list_partition(dir)?;
    let base = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(name::parse_file_name)
        .map(|(b, _)| b)
        .with_context(|| format!("{}: not a segment file name", file.display()))?;
    let later: Vec<u64> = listing.logs.keys().copied().filter(|b| *b > base).collect();
    let dir_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("partition directory without a name")?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let quarantine = dir.with_file_name(format!("{dir_name}.quarantine.{now_ms}"));
    std::fs::create_dir_all(&quarantine).with_context(|| quarantine.display().to_string())?;
    let mut count = CutCount::default();
    // A cut at the very start of a segment that is not the first (a gap before it) takes the
    // whole segment: an empty file there would leave the gap. The partition then ends where
    // the segment before it does.
    let previous = listing
        .logs
        .range(..base)
        .next_back()
        .map(|(b, (p, _))| (*b, p.clone()));
    let whole = position == 0 && previous.is_some();
    // The damaged segment: what it holds before the damage says where the loss starts; the rest
    // is copied out.
    let data = std::fs::read(file).with_context(|| file.display().to_string())?;
    count.first_lost = match &previous {
        Some((pb, pp)) if whole => {
            let prev = std::fs::read(pp).with_context(|| pp.display().to_string())?;
            offset_at(&prev, *pb, prev.len() as u64)
        }
        _ => offset_at(&data, base, position),
    };
    let tail = data.get(position as usize..).unwrap_or_default();
    count_batches(tail, &mut count);
    let copy = quarantine.join(format!(
        "{}.from-{position}",
        file.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("segment")
    ));
    write_synced(&copy, tail)?;
    rep.repair(RepairAction {
        action: "quarantined",
        file: copy.display().to_string(),
        position: Some(position),
        bytes: Some(tail.len() as u64),
        reason: format!(
            "bytes {position}.. of {} (the damage and what follows it)",
            file.display()
        ),
    });
    // Later segments move out whole, with their indexes.
    for b in &later {
        for kind in [FileKind::Log, FileKind::Index, FileKind::TimeIndex] {
            let from = name::segment_path(dir, *b, kind);
            if !from.exists() {
                continue;
            }
            if kind == FileKind::Log {
                let bytes = std::fs::read(&from).with_context(|| from.display().to_string())?;
                count_batches(&bytes, &mut count);
            }
            let to = quarantine.join(name::file_name(*b, kind));
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
            rep.repair(RepairAction {
                action: "quarantined",
                file: to.display().to_string(),
                position: None,
                bytes: std::fs::metadata(&to).ok().map(|m| m.len()),
                reason: format!("moved from {}", from.display()),
            });
        }
    }
    sync_dir(&quarantine)?;
    sync_dir(
        dir.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    // The cut: the damaged segment ends where the damage starts, and without a checkpoint the
    // next open checks every batch (and rebuilds the indexes).
    if whole {
        std::fs::remove_file(file).with_context(|| format!("remove {}", file.display()))?;
    } else {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .with_context(|| file.display().to_string())?;
        f.set_len(position)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("truncate {}", file.display()))?;
    }
    for kind in [FileKind::Index, FileKind::TimeIndex] {
        let _ = std::fs::remove_file(name::segment_path(dir, base, kind));
    }
    match std::fs::remove_file(dir.join(strata_storage::log::checkpoint::FILE_NAME)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("remove checkpoint in {}", dir.display()))
            );
        }
    }
    sync_dir(dir)?;
    let lost = match count.last_offset {
        Some(last) if last >= count.first_lost => format!(
            "offsets {}..={last}: {} records in batches that still decode",
            count.first_lost, count.records
        ),
        _ => format!(
            "from offset {}: no batch that still decodes",
            count.first_lost
        ),
    };
    rep.repair(RepairAction {
        action: "cut",
        file: file.display().to_string(),
        position: Some(position),
        bytes: Some(count.bytes),
        reason: format!(
            "{reason}; the partition now ends at offset {}; lost {lost}, and {} bytes that do not decode; all of it kept in {}",
            count.first_lost,
            count.undecoded,
            quarantine.display()
        ),
    });
    Ok(())
}

/// The offset at byte `position` of a segment whose first batch has offset `base`: the end of
/// the last batch whose headers walk cleanly before it.
fn offset_at(data: &[u8], base: u64, position: u64) -> u64 {
    let before = data.get(..position as usize).unwrap_or(data);
    let mut next = base;
    let scanner = strata_storage::log::scan::BatchScanner::new(before, usize::MAX, false)
        .expecting_offset(base);
    for b in scanner {
        next = b.header.next_offset() as u64;
    }
    next
}

/// Counts the records of the batches in `bytes` that decode (CRC included), resuming after a
/// bad batch where its length field says it ends, if that is inside `bytes`; the rest counts
/// as undecoded.
fn count_batches(bytes: &[u8], count: &mut CutCount) {
    use strata_storage::batch::header::{BatchHeader, check_batch};
    count.bytes += bytes.len() as u64;
    let mut pos = 0usize;
    while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
        match check_batch(rest, usize::MAX) {
            Ok(h) => {
                count.records += h.record_count.max(0) as u64;
                count.last_offset = Some(
                    count
                        .last_offset
                        .map_or(h.last_offset() as u64, |l| l.max(h.last_offset() as u64)),
                );
                pos += h.total_len();
            }
            Err(_) => {
                // Skip a bad batch by its own length when that is plausible, else give up.
                let skip = BatchHeader::parse(rest)
                    .ok()
                    .map(|h| h.total_len())
                    .filter(|n| {
                        *n >= strata_storage::batch::header::HEADER_LEN && *n <= rest.len()
                    });
                match skip {
                    Some(n) => {
                        count.undecoded += n as u64;
                        pos += n;
                    }
                    None => {
                        count.undecoded += rest.len() as u64;
                        return;
                    }
                }
            }
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create_new(path).with_context(|| path.display().to_string())?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| path.display().to_string())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
}
