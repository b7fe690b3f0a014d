//! `strata verify --repair`: the engine's crash recovery, run on purpose, and nothing more.
//!
//! The partition is opened with [`PartitionLog::open`] in [`RecoveryMode::Strict`] and closed
//! again: a torn tail of the last segment is truncated, missing or damaged indexes are rebuilt,
//! leftover `*.tmp` and orphan index files are removed, and a clean checkpoint is written.
//! Damage recovery refuses (a bad batch in a sealed segment, a gap between segments) makes the
//! open fail; nothing is forced, and the verification that follows reports it.
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
#[error("{}: held by a running process (the flock on {LOCK_FILE} is taken); stop it before --repair", .0.display())]
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

/// Takes and releases the partition's lock: fails with [`LockHeld`] if a process holds it.
fn check_unlocked(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(LOCK_FILE);
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    match f.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockHeld(dir.to_path_buf()).into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("lock {}", path.display())))
        }
    }
    // `f` is dropped here, releasing the lock before the engine takes it.
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
    check_unlocked(dir)?;
    let before = snapshot(dir)?;
    let config = LogConfig {
        segment_bytes: MAX_SEGMENT_BYTES,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        retention_check_interval: None,
        fsync: FsyncPolicy::Never,
        index_interval_bytes: args.index_interval_bytes,
        max_batch_bytes: args.max_batch_bytes,
        preallocate: false,
        recovery: RecoveryMode::Strict,
        // Repair appends nothing; recovery reads a directory the same in either mode.
        write_mode: WriteMode::Buffered,
        direct_cache_bytes: LogConfig::default().direct_cache_bytes,
    };
    let mut truncated = Vec::new();
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
        }) => rep.repair(RepairAction {
            action: "refused",
            file: file.display().to_string(),
            position: Some(position),
            bytes: None,
            reason: format!("recovery does not repair this: {reason}; left alone"),
        }),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("recover {}", dir.display()))),
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
                reason: String::new(),
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
