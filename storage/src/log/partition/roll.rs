//! Rolling: the active segment is sealed off and a new one starts at the next offset. The roll
//! itself only creates the new file and swaps the segment list; making the old segment durable
//! (its seal) is background work ([`super::maintenance`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, IoContext, Result};
use crate::io::{IoBackend, WritableFile};

use super::super::config::{FsyncPolicy, LogConfig, WriteMode};
use super::super::index::{OffsetIndex, TimeIndex};
use super::super::name::{self, FileKind};
use super::super::segment::{ActiveSpec, Segment, SegmentState, create_segment_files};
use super::maintenance::SealJob;
use super::state::{Inner, LogFailure, WriterCore};

/// A roll's effect on the segment list: the old active segment is replaced by its sealed view,
/// the new one appended, and the old one handed to the runtime to seal.
pub(crate) struct RollSwap {
    pub sealed: Arc<Segment>,
    pub new: Arc<Segment>,
    pub job: SealJob,
}

impl Inner {
    /// Seals the active segment (in the background) and starts a new one at the next offset.
    /// On any failure the log is poisoned.
    pub fn roll(&self, core: &mut WriterCore) -> Result<()> {
        self.roll_inner(core).map_err(|e| match e {
            e @ Error::Poisoned { .. } => e,
            other => self.poisoned(&LogFailure::new("roll", &other)),
        })
    }

    /// Starts a new segment at the next offset. The old segment's release of preallocated
    /// blocks, fdatasync, index files and the checkpoint that moves the recovery point past it
    /// are done by the runtime, so an append never waits for a whole segment to be flushed.
    /// Until that is done the old segment stays past the recovery point, and a crash makes
    /// recovery re-check it (and release its preallocated blocks).
    fn roll_inner(&self, core: &mut WriterCore) -> Result<()> {
        let old = core.active.clone();
        if !old.is_active() {
            return Err(Error::Closed(self.dir.clone()));
        }
        self.mark_dirty(core)?;
        if let Some(e) = core.max_time_entry() {
            old.time_index.write().maybe_push(e);
        }
        let base = core.next_offset;
        let (new, reserved) = self.create_segment(base)?;
        // Under `always` the new file's directory entry must be durable before anything in it
        // is acknowledged. Under `never`/`interval` nothing in it is promised durable before the
        // next sync, and a sync first waits for this roll's seal, which fsyncs the directory.
        // So only `always` waits here: on ext4 a directory fsync commits the journal, which
        // waits for every data block in writeback (measured at 1.2 s under a 2 GiB produce).
        if self.config().fsync == FsyncPolicy::Always {
            self.backend
                .sync_dir(&self.dir)
                .ctx("fsync dir", &self.dir)?;
        }
        let sealed = Arc::new(Segment::sealed(
            &self.dir,
            old.base_offset,
            SegmentState {
                len: core.len,
                next_offset: core.next_offset,
                max_timestamp: core.max_timestamp,
            },
            old.index.read().clone(),
            old.time_index.read().clone(),
        ));
        let job = SealJob {
            segment: old.clone(),
            len: core.len,
            next_offset: core.next_offset,
        };
        *core = WriterCore {
            active: new.clone(),
            len: 0,
            next_offset: base,
            bytes_since_index: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base,
            first_append_ms: None,
            reserved,
        };
        self.unflushed.store(0, Ordering::Release);
        // The write path hands over the old segment's last bytes first; the swap follows them.
        self.path.roll(self, &old, RollSwap { sealed, new, job })?;
        tracing::debug!(dir = %self.dir.display(), base, "rolled to a new segment");
        Ok(())
    }

    /// Lists a roll's new segment in place of the old one (now read through its sealed view)
    /// and hands the old one to the runtime to seal.
    pub fn apply_roll(&self, swap: RollSwap) {
        let RollSwap { sealed, new, job } = swap;
        {
            let mut segs = self.segments.write();
            if let Some(last) = segs.last_mut() {
                *last = sealed;
            }
            segs.push(new);
        }
        self.queue_seal(job);
    }

    /// A new active segment and the end of the blocks reserved in it.
    pub fn create_segment(&self, base: u64) -> Result<(Arc<Segment>, u64)> {
        let w = create_segment_files(self.backend.as_ref(), &self.dir, base)?;
        let step = self.pace.lock().next(std::time::Instant::now());
        Ok(open_active(
            &self.dir,
            &self.config(),
            step,
            self.backend.clone(),
            self.direct_waker(),
            base,
            Some(w),
            SegmentState {
                len: 0,
                next_offset: base,
                max_timestamp: -1,
            },
            OffsetIndex::new(),
            TimeIndex::new(),
        ))
    }
}

/// An active segment. Given a write handle (`w`: a segment a roll just created, which an
/// append is about to write) the first `step` past its data is reserved here;
/// otherwise (a log being opened, maybe one of thousands of idle partitions) nothing is opened
/// or reserved until the first append asks ([`Inner::reserve_ahead`]). Reserving is best
/// effort: a failed `fallocate` (a full disk, a file system without it) is logged and the
/// blocks are then allocated as the data is written back. Returns the segment and the end of
/// the reservation (at most the data's end when nothing was reserved).
#[allow(clippy::too_many_arguments)]
pub(crate) fn open_active(
    dir: &Path,
    config: &LogConfig,
    step: u64,
    backend: Arc<dyn IoBackend>,
    waker: Option<super::super::segment::WakerCell>,
    base: u64,
    w: Option<Box<dyn WritableFile>>,
    state: SegmentState,
    index: OffsetIndex,
    time_index: TimeIndex,
) -> (Arc<Segment>, u64) {
    let max = config.max_segment_len();
    let mut reserved = state.len;
    if let Some(w) = &w
        && config.preallocate
        && state.len < max
    {
        let len = step.min(max - state.len);
        match w.preallocate(state.len, len) {
            Ok(()) => reserved = state.len + len,
            Err(e) => {
                let path = name::segment_path(dir, base, FileKind::Log);
                tracing::warn!(segment = %path.display(), error = %e, "fallocate failed; blocks are allocated as data is written");
            }
        }
    }
    let spec = ActiveSpec {
        backend,
        writer: w,
        direct_mode: config.write_mode == WriteMode::Direct,
        waker,
    };
    let seg = Segment::active(dir, base, spec, max, state, index, time_index);
    (Arc::new(seg), reserved)
}
