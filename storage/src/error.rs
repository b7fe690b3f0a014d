//! The engine's one error type.
//!
//! Every variant that comes from bytes on disk carries evidence: the file, the position, what was
//! expected and what was found, so an operator can go and look.

use std::path::PathBuf;

use crate::batch::BatchError;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed; `op` names the call, `path` the file it was made on.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A batch handed to `append_batch` (or built by the records API) is not a valid RecordBatch v2.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),

    /// A batch is larger than the log accepts.
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },

    /// Bytes on disk are damaged somewhere recovery may not silently drop them (inside a sealed
    /// segment, or before the last durable checkpoint).
    #[error("corrupt data in {file} at position {position}: {reason}")]
    Corrupt {
        file: PathBuf,
        position: u64,
        reason: String,
    },

    /// An earlier write or fsync failed. The page cache may no longer match the disk, so the log
    /// refuses every further write until it is reopened (and recovered). `no_space`: the failure
    /// was a full disk or quota (`ENOSPC`, `EDQUOT`), after which reopening once there is room
    /// again recovers the log without losing anything acknowledged.
    #[error("log {dir} refuses writes after a failed {op}: {cause}")]
    Poisoned {
        dir: PathBuf,
        op: &'static str,
        cause: String,
        no_space: bool,
    },

    /// A read asked for an offset outside `[log_start, log_end]`.
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: u64,
        log_start: u64,
        log_end: u64,
    },

    /// A configuration value is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The log has been closed (or deleted) and takes no more calls.
    #[error("log {0} is closed")]
    Closed(PathBuf),

    /// Another process holds the partition directory's lock (or this process has it open).
    #[error("partition directory {0} is locked by another process or already open")]
    Locked(PathBuf),

    /// A replica's batch does not start at the log end: appending it would leave a gap or
    /// overlap what the log holds ([`crate::log::PartitionLog::append_replica`]).
    #[error("replica batch starts at offset {got}, but the log ends at {expected}")]
    OffsetMismatch { expected: u64, got: i64 },

    /// A truncation could not proceed: readers kept holding the bytes it would cut.
    #[error("log {dir}: {reason}")]
    Busy { dir: PathBuf, reason: String },
}

impl Error {
    /// Whether this is, or was caused by, a full disk or an exhausted quota (`ENOSPC`,
    /// `EDQUOT`): a condition that goes away when space is freed.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } => is_no_space_io(source),
            Error::Poisoned { no_space, .. } => *no_space,
            _ => false,
        }
    }

    /// Whether this is the process running out of file descriptors, memory or threads
    /// (`EMFILE`, `ENFILE`, `ENOMEM`, `EAGAIN`): a condition that goes away when others close.
    pub fn is_out_of_resources(&self) -> bool {
        matches!(
            self,
            Error::Io { source, .. }
                if matches!(
                    source.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN)
                )
        )
    }

    /// Wraps an `io::Error` with the operation and the path it was about.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Attaches an operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

/// `ENOSPC` or `EDQUOT`.
pub fn is_no_space_io(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
}
