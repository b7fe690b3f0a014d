//! How a leader's group of appends reaches the file: [`WritePath`], with one implementation per
//! [`WriteMode`](super::WriteMode).
//!
//! * [`buffered::BufferedPath`]: through the page cache, one backend call per run of batches
//!   (one io_uring submission), the fdatasync linked to it under `always`. Stored when the call
//!   returns.
//! * [`direct::DirectPath`]: copied into aligned staging buffers and written with `O_DIRECT`,
//!   the write (and its sync) in flight while the next group is copied; published when they
//!   complete.
//!
//! The partition log ([`super::partition`]) owns everything else (the queue, rolls, indexes,
//! seals) and calls the path at the few points where the two differ.

use std::sync::Arc;

use crate::error::{Error, Result};

use super::partition::roll::RollSwap;
use super::partition::state::{Inner, Pending, WriterCore};
use super::read::ReadSlice;
use super::segment::{Segment, Want};

pub(crate) mod buffered;
pub(crate) mod direct;

/// What differs between the write modes (see the module docs). Every method is called with the
/// log's [`Inner`]; those that take a [`WriterCore`] run as the log's leader.
pub(crate) trait WritePath: Send + Sync {
    /// Writes (or stages) a group of queued appends whose sequence numbers are below `upto`,
    /// rolling where needed. `Ok(true)` when they are stored and published; `Ok(false)` when
    /// they are published (and their appenders released) once their writes complete. On error
    /// returns the failed operation's name.
    fn write_group(
        &self,
        log: &Inner,
        core: &mut WriterCore,
        group: &[Pending],
        upto: u64,
    ) -> std::result::Result<bool, (&'static str, Error)>;

    /// Opens what the next group will be written through (the active segment's handles), so
    /// that a lack of descriptors shows before anything is written.
    fn prepare(&self, log: &Inner, core: &WriterCore) -> Result<()>;

    /// A roll: hands over the old segment's last bytes, then applies `swap` (at once, or once
    /// every write before it completed).
    fn roll(&self, log: &Inner, old: &Arc<Segment>, swap: RollSwap) -> Result<()>;

    /// Answers a read of the active segment `seg` from memory, if this path keeps its newest
    /// bytes there.
    fn read_cached(&self, seg: &Segment, want: &Want) -> Result<Option<ReadSlice>>;

    /// Blocks until everything handed to the path is published (or the log failed), then
    /// fails if the log is poisoned.
    fn wait_writes(&self, log: &Inner) -> Result<()>;

    /// Nothing is staged or in flight (the idle sweep may close the files).
    fn is_idle(&self) -> bool;

    /// A seal finished: publishes held back for it may go.
    fn seals_done(&self, log: &Inner);

    /// Told by a segment's direct file that writes completed (on the backend's thread).
    fn wake(&self, log: &Inner);

    /// The log was truncated to end at `end`: forget any bytes held in memory.
    fn truncated(&self, end: u64);

    /// No more callbacks from now on; waits for those running and for writes at the device.
    fn stop(&self);
}
