//! What a PATH argument names: a segment file, an index file, a partition directory or a data
//! directory, and the files of a partition directory sorted out by the engine's name parser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use strata_storage::log::checkpoint;
use strata_storage::log::name::{self, FileKind};

/// One PATH argument, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A directory of `<topic>-<partition>` directories.
    DataDir(PathBuf),
    /// A directory of segment files.
    Partition(PathBuf),
    /// A single `.log`, `.index` or `.timeindex` file.
    File(PathBuf, FileKind),
}

/// Classifies `path`. A directory is a partition if it holds a segment, index or checkpoint
/// file (or its name is `<topic>-<partition>`); otherwise it is a data directory.
pub fn classify(path: &Path) -> anyhow::Result<Target> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.is_dir() {
        let mut partition_like = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| name::parse_partition_dir_name(n).is_some());
        for entry in std::fs::read_dir(path).with_context(|| format!("{}", path.display()))? {
            let entry = entry.with_context(|| format!("{}", path.display()))?;
            let n = entry.file_name();
            let n = n.to_string_lossy();
            if file_kind_by_suffix(&n).is_some() || n == checkpoint::FILE_NAME {
                partition_like = true;
                break;
            }
        }
        return Ok(if partition_like {
            Target::Partition(path.to_path_buf())
        } else {
            Target::DataDir(path.to_path_buf())
        });
    }
    let n = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match file_kind_by_suffix(&n) {
        Some(kind) => Ok(Target::File(path.to_path_buf(), kind)),
        None => anyhow::bail!(
            "{}: not a .log, .index or .timeindex file, nor a directory",
            path.display()
        ),
    }
}

/// The kind a file name claims by its suffix alone (whether or not the digits are well-formed).
pub fn file_kind_by_suffix(n: &str) -> Option<FileKind> {
    [FileKind::Log, FileKind::Index, FileKind::TimeIndex]
        .into_iter()
        .find(|k| n.ends_with(k.suffix()))
}

/// The partition directories of a data directory, sorted by name.
pub fn partitions_of(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir).with_context(|| format!("{}", data_dir.display()))? {
        let entry = entry.with_context(|| format!("{}", data_dir.display()))?;
        let n = entry.file_name();
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && n.to_str()
                .is_some_and(|n| name::parse_partition_dir_name(n).is_some())
        {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The files of one partition directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// Segments by base offset: (path, length).
    pub logs: BTreeMap<u64, (PathBuf, u64)>,
    pub indexes: BTreeMap<u64, PathBuf>,
    pub time_indexes: BTreeMap<u64, PathBuf>,
    /// Files with a segment suffix whose name is not 20 digits.
    pub malformed: Vec<(PathBuf, FileKind)>,
    pub checkpoint: Option<PathBuf>,
    /// The broker's idempotent-producer snapshot (FORMAT.md §9).
    pub producer_state: Option<PathBuf>,
    /// The leader-epoch file (FORMAT.md §11).
    pub leader_epochs: Option<PathBuf>,
    /// The log start offset DeleteRecords set (FORMAT.md §12).
    pub log_start: Option<PathBuf>,
}

pub fn list_partition(dir: &Path) -> anyhow::Result<Listing> {
    let mut l = Listing::default();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry.with_context(|| format!("{}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    for n in names {
        let path = dir.join(&n);
        if n == checkpoint::FILE_NAME {
            l.checkpoint = Some(path);
            continue;
        }
        if n == strata_storage::log::producer_state::SNAPSHOT_FILE {
            l.producer_state = Some(path);
            continue;
        }
        if n == strata_storage::log::epoch::FILE_NAME {
            l.leader_epochs = Some(path);
            continue;
        }
        if n == strata_storage::log::start::FILE_NAME {
            l.log_start = Some(path);
            continue;
        }
        match name::parse_file_name(&n) {
            Some((base, FileKind::Log)) => {
                let len = std::fs::metadata(&path)
                    .with_context(|| format!("{}", path.display()))?
                    .len();
                l.logs.insert(base, (path, len));
            }
            Some((base, FileKind::Index)) => {
                l.indexes.insert(base, path);
            }
            Some((base, FileKind::TimeIndex)) => {
                l.time_indexes.insert(base, path);
            }
            None => {
                if let Some(kind) = file_kind_by_suffix(&n) {
                    l.malformed.push((path, kind));
                }
            }
        }
    }
    Ok(l)
}
