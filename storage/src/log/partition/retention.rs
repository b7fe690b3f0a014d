//! Deleting whole sealed segments from the front: by age and size (Kafka's `retention.ms` and
//! `retention.bytes`), or below an offset the owner no longer needs.

use std::sync::Arc;

use crate::error::{IoContext, Result};

use super::super::segment::Segment;
use super::super::{epoch, start};
use super::RetentionReport;
use super::state::{Inner, remove_if_exists};

impl Inner {
    pub fn enforce_retention(&self, now: i64) -> Result<RetentionReport> {
        let _g = self.maintenance.lock();
        let segs: Vec<Arc<Segment>> = self.segments.read().clone();
        let sealed = segs.len().saturating_sub(1);
        let mut total: u64 = segs.iter().map(|s| s.len()).sum();
        let mut doomed = 0;
        let floor = self.start_floor.load(std::sync::atomic::Ordering::Acquire);
        for s in segs.iter().take(sealed) {
            // Wholly below the log start offset DeleteRecords set.
            let deleted = s.next_offset() <= floor;
            let too_old = self.config().retention_ms.is_some_and(|r| {
                s.largest_timestamp_ms() < now.saturating_sub(r.as_millis() as i64)
            });
            let too_big = self
                .config()
                .retention_bytes
                .is_some_and(|r| total.saturating_sub(s.len()) >= r);
            if !(deleted || too_old || too_big) {
                break;
            }
            total -= s.len();
            doomed += 1;
        }
        self.remove_front(doomed, "retention")
    }

    pub fn delete_segments_before(&self, offset: u64) -> Result<RetentionReport> {
        // Under the maintenance lock, like retention and the seals (which write a segment's
        // index files only while the segment is still listed).
        let _g = self.maintenance.lock();
        let segs: Vec<Arc<Segment>> = self.segments.read().clone();
        let sealed = segs.len().saturating_sub(1);
        let doomed = segs
            .iter()
            .take(sealed)
            .take_while(|s| s.next_offset() <= offset)
            .count();
        self.remove_front(doomed, "delete_segments_before")
    }

    /// Moves the log start offset to `offset` (at most `limit`, the high watermark) and
    /// persists it before returning (DeleteRecords).
    pub fn advance_start(&self, offset: u64, limit: u64) -> Result<u64> {
        use std::sync::atomic::Ordering;
        let _g = self.maintenance.lock();
        let start = self.log_start();
        if offset > limit {
            return Err(crate::error::Error::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: limit,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        start::write(self.backend.as_ref(), &self.dir, offset)?;
        self.start_floor.store(offset, Ordering::Release);
        let mut epochs = self.epochs.lock();
        if epochs.truncate_from_start(offset) {
            epoch::write(self.backend.as_ref(), &self.dir, &epochs)?;
        }
        tracing::info!(dir = %self.dir.display(), offset, "log start offset moved (records deleted)");
        Ok(offset)
    }

    /// Removes the `doomed` oldest segments (all sealed). Unlists them first: new reads no
    /// longer find them, reads in flight hold their mapping and finish undisturbed. Only this
    /// removes from the front, always under the maintenance lock the caller holds. The
    /// leader-epoch cache then starts at the new log start.
    fn remove_front(&self, doomed: usize, why: &'static str) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        if doomed > 0 {
            let removed: Vec<Arc<Segment>> = {
                let mut w = self.segments.write();
                let n = doomed.min(w.len().saturating_sub(1));
                w.drain(..n).collect()
            };
            for s in &removed {
                remove_if_exists(self.backend.as_ref(), &s.log_path)?;
                remove_if_exists(self.backend.as_ref(), &s.index_path)?;
                remove_if_exists(self.backend.as_ref(), &s.time_index_path)?;
                report.segments_deleted += 1;
                report.bytes_deleted += s.len();
                tracing::info!(segment = %s.log_path.display(), bytes = s.len(), why, "deleted segment");
            }
            self.backend
                .sync_dir(&self.dir)
                .ctx("fsync dir", &self.dir)?;
            let start = self.log_start();
            let mut epochs = self.epochs.lock();
            if epochs.truncate_from_start(start) {
                epoch::write(self.backend.as_ref(), &self.dir, &epochs)?;
            }
        }
        report.log_start_offset = self.log_start();
        Ok(report)
    }
}
