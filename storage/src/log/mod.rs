//! Partition logs: segments, indexes, checkpoint, recovery, retention.
//!
//! * [`partition::PartitionLog`]: the API (append, read, roll, retention, truncation, close),
//!   split by concept under [`partition`].
//! * [`write_path`]: how appends reach the file (buffered or `O_DIRECT`).
//! * [`runtime`]: the threads every log shares.
//! * [`config`]: settings and fsync policies.
//! * [`segment`], [`index`], [`checkpoint`], [`epoch`], [`name`]: the files (FORMAT.md).
//! * [`scan`]: the batch walker shared by recovery and the tools.

pub mod checkpoint;
pub mod config;
pub mod epoch;
pub mod index;
pub mod name;
pub mod partition;
pub mod producer_state;
pub mod read;
pub mod runtime;
pub mod scan;
mod segment;
pub mod start;
pub(crate) mod write_path;

pub use config::{
    FsyncPolicy, LogConfig, MIN_PREALLOCATE_STEP, PREALLOCATE_STEP, RecoveryMode, WriteMode,
};
pub use epoch::{EpochEnd, EpochEntry};
pub use partition::{
    AppendInfo, LogFailure, PartitionLog, PendingAppend, ReadBound, RecoveryReport,
    RetentionReport, SegmentInfo, TimestampHit,
};
pub use read::ReadSlice;
pub use runtime::Runtime;
