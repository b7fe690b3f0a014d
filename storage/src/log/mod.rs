//! Partition logs: segments, indexes, checkpoint, recovery, retention.
//!
//! * [`partition::PartitionLog`]: the API (append, read, roll, retention, close).
//! * [`config`]: settings and fsync policies.
//! * [`segment`], [`index`], [`checkpoint`], [`name`]: the files (FORMAT.md).
//! * [`scan`]: the batch walker shared by recovery and the tools.

pub mod checkpoint;
pub mod config;
mod direct;
pub mod index;
pub mod name;
pub mod partition;
pub mod read;
pub mod scan;
mod segment;

pub use config::{FsyncPolicy, LogConfig, PREALLOCATE_STEP, RecoveryMode, WriteMode};
pub use partition::{
    AppendInfo, LogFailure, PartitionLog, PendingAppend, RecoveryReport, RetentionReport,
    SegmentInfo,
};
pub use read::ReadSlice;
