//! The buffered write path ([`WriteMode::Buffered`](crate::log::WriteMode::Buffered), the
//! default): batches go to the page cache in one backend call per run that fits the active
//! segment, with the fdatasync linked to the writes under `always`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};

use super::WritePath;
use crate::log::config::FsyncPolicy;
use crate::log::partition::maintenance::WRITEBACK_CHUNK;
use crate::log::partition::roll::RollSwap;
use crate::log::partition::state::{Head, Inner, Pending, WriterCore};
use crate::log::read::ReadSlice;
use crate::log::segment::{Segment, SegmentState, Want};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct BufferedPath;

impl WritePath for BufferedPath {
    fn write_group(
        &self,
        log: &Inner,
        core: &mut WriterCore,
        group: &[Pending],
        _upto: u64,
    ) -> std::result::Result<bool, (&'static str, Error)> {
        let always = log.config().fsync == FsyncPolicy::Always;
        let mut i = 0;
        let mut last_end = None;
        while let Some(first) = group.get(i) {
            if log.needs_roll(core, first.batch.len()) {
                log.roll(core).map_err(|e| ("roll", e))?;
            }
            // The run of batches that fit into the active segment.
            let start_pos = core.len;
            let mut end_pos = start_pos;
            let mut j = i;
            while let Some(p) = group.get(j) {
                let len = p.batch.len() as u64;
                if j > i && end_pos + len > log.config().segment_bytes {
                    break;
                }
                end_pos += len;
                j += 1;
            }
            let run = group.get(i..j).unwrap_or(&[]);
            // Two buffers per batch: its head as written, then the rest as received.
            let heads: Vec<Head> = run.iter().map(Pending::head).collect();
            let bufs: Vec<&[u8]> = run
                .iter()
                .zip(&heads)
                .flat_map(|(p, head)| p.parts(head))
                .collect();
            let seg = core.active.clone();
            let w = seg.writer().map_err(|e| ("write", e))?;
            let res = if always {
                w.write_all_at_and_sync(&bufs, start_pos)
            } else {
                w.write_all_at(&bufs, start_pos)
            };
            res.map_err(|e| ("write", Error::io("write", &seg.log_path, e)))?;
            if !always {
                let pending = log
                    .unflushed
                    .fetch_add(end_pos - start_pos, Ordering::AcqRel)
                    + (end_pos - start_pos);
                if pending >= WRITEBACK_CHUNK {
                    log.unflushed.store(0, Ordering::Release);
                    let from = end_pos.saturating_sub(pending);
                    log.request_range(|q| &mut q.writeback, &seg, from, end_pos);
                }
            }
            log.index_run(core, run, start_pos);
            log.reserve_ahead(core, end_pos);
            seg.publish(SegmentState {
                len: core.len,
                next_offset: core.next_offset,
                max_timestamp: core.max_timestamp,
            });
            last_end = Some(core.next_offset);
            i = j;
        }
        if let Some(end) = last_end {
            let written = end.saturating_sub(log.log_end.load(Ordering::Acquire));
            if !always && log.flush_due(written) {
                // flush.messages reached: acknowledged only once this and everything before it
                // is synced (rolled segments by their seals).
                log.wait_for_seals().map_err(|e| ("fdatasync", e))?;
                let seg = core.active.clone();
                let w = seg.writer().map_err(|e| ("fdatasync", e))?;
                w.sync_data()
                    .map_err(|e| ("fdatasync", Error::io("fdatasync", &seg.log_path, e)))?;
                log.durable_end.fetch_max(end, Ordering::AcqRel);
            } else if always {
                log.durable_end.fetch_max(end, Ordering::AcqRel);
            }
            log.log_end.store(end, Ordering::Release);
        }
        Ok(true)
    }

    fn prepare(&self, _log: &Inner, core: &WriterCore) -> Result<()> {
        core.active.writer().map(drop)
    }

    fn roll(&self, log: &Inner, _old: &Arc<Segment>, swap: RollSwap) -> Result<()> {
        log.apply_roll(swap);
        Ok(())
    }

    fn read_cached(&self, _seg: &Segment, _want: &Want) -> Result<Option<ReadSlice>> {
        Ok(None)
    }

    fn wait_writes(&self, log: &Inner) -> Result<()> {
        match log.failed_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn is_idle(&self) -> bool {
        true
    }

    fn seals_done(&self, _log: &Inner) {}

    fn wake(&self, _log: &Inner) {}

    fn truncated(&self, _end: u64) {}

    fn stop(&self) {}
}
