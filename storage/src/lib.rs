//! `strata-storage`: Strata's storage engine.
//!
//! A partition is a directory of segments, each a file of Kafka RecordBatch v2 bytes named by its
//! base offset, with a sparse offset index and a time index beside it (`storage/FORMAT.md` is the
//! byte-level spec). Appends go through an [`io::IoBackend`] (io_uring by default, plain files
//! where the kernel has no io_uring); reads are zero-copy slices of a shared `mmap`.
//!
//! Start with [`log::PartitionLog`] for one partition and [`log::LogConfig`] for its settings.

pub mod batch;
pub mod checked;
pub mod error;
pub mod io;
pub mod log;
pub mod meta;
pub mod testing;

pub use error::{Error, Result};
