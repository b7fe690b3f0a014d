//! Memory budgets shared by every connection: what requests being decoded and answered may
//! hold (`strata.request.processing.memory.bytes`) and what request frames being read may hold
//! (`queued.max.request.bytes`).

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::warn::BUDGET_NOTICES;

/// `strata.request.processing.memory.bytes`: what requests being decoded and answered may hold
/// together. A request reserves an estimate before it is decoded (Redpanda's approach): a fixed
/// 8 KiB plus its size times what one byte of it can decode into, for its kind. kafka-protocol
/// decodes every array element into a struct of 30 to 100 bytes, from as little as 2 to 6 bytes
/// on the wire, and the answer holds one more per element; records and other byte fields are
/// slices of the frame, not copies. A request whose estimate exceeds the whole amount reserves
/// all of it and runs alone. Waiting holds no reservation, and a holder waits for nothing
/// else, so every reservation is eventually granted.
#[derive(Debug)]
pub(crate) struct ProcessingMemory {
    permits: Arc<Semaphore>,
    total: usize,
}

/// The fixed part of every request's estimate.
const PROCESSING_BASE: usize = 8 << 10;

impl ProcessingMemory {
    pub(crate) fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        ProcessingMemory {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Bytes of memory per request byte, worst case, by API key, with a margin over what
    /// `scripts/hostile-memory` measured (PERFORMANCE.md, "Hostile clients": up to 48x for
    /// arrays of names, 38x for Produce).
    fn factor(api_key: i16) -> usize {
        match ApiKey::try_from(api_key) {
            // Records stay slices of the frame, but an entry with no records (refused) is 6
            // bytes on the wire for a decoded struct and a 40-byte answer (measured: 34-38x).
            Ok(ApiKey::Produce) => 48,
            // Byte fields (metadata, assignments) stay slices of the frame.
            Ok(ApiKey::JoinGroup | ApiKey::SyncGroup) => 4,
            // Partition entries of 30 bytes or more on the wire.
            Ok(ApiKey::Fetch) => 8,
            Ok(ApiKey::OffsetCommit | ApiKey::ListOffsets) => 16,
            // Arrays of names: a few bytes each on the wire, a struct each in the request and
            // in the answer.
            _ => 64,
        }
    }

    fn estimate(&self, frame: &[u8]) -> usize {
        let key = frame
            .get(0..2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(-1, i16::from_be_bytes);
        frame
            .len()
            .saturating_mul(Self::factor(key))
            .saturating_add(PROCESSING_BASE)
            .min(self.total)
    }

    pub(crate) async fn reserve(&self, frame: &[u8]) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(self.estimate(frame)).unwrap_or(u32::MAX);
        self.permits.clone().acquire_many_owned(n).await.ok()
    }
}

/// Budget a frame takes before its first body bytes are read; it doubles each time the frame
/// has received all it held, so a large frame takes a few steps and a small one one.
const BUDGET_STEP: usize = 64 << 10;

/// `queued.max.request.bytes`, as permits of one byte, in two parts so that frames taking their
/// budget in steps can never all wait for each other. A frame grows in steps from the **pool**
/// (the budget less one largest frame). When the pool has no room for its next step, a frame
/// that holds nothing yet waits for the pool (holding nothing, it blocks nobody); one that
/// holds part of its bytes takes the **lane** (one largest frame's worth) for all it still
/// needs. Whoever holds the lane needs nothing more, so it finishes (or its client stalls and
/// `strata.request.read.timeout.ms` closes it) and hands the lane on: some frame always
/// progresses, and all of them together never hold more than the budget.
#[derive(Debug)]
pub(crate) struct RequestBudget {
    pub(crate) pool: Arc<Semaphore>,
    pool_size: usize,
    lane: Arc<Semaphore>,
}

impl RequestBudget {
    /// `total` is at least `max_frame` (checked at start-up).
    pub(crate) fn new(total: usize, max_frame: usize) -> Self {
        let lane = max_frame.min(total);
        let pool_size = (total - lane).min(Semaphore::MAX_PERMITS);
        RequestBudget {
            pool: Arc::new(Semaphore::new(pool_size)),
            pool_size,
            lane: Arc::new(Semaphore::new(lane.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Budget for the next bytes of a frame of `size` bytes that holds `held`: a step from the
    /// pool, or the rest of the frame from the lane. Returns the permit and how many bytes it
    /// covers.
    pub(crate) async fn next(
        &self,
        held: usize,
        size: usize,
    ) -> std::io::Result<(OwnedSemaphorePermit, usize)> {
        let closed = |_| std::io::Error::other("the request budget is closed");
        let step = held.max(BUDGET_STEP).min(size - held);
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        if let Ok(p) = self.pool.clone().try_acquire_many_owned(n(step)) {
            return Ok((p, step));
        }
        BUDGET_NOTICES.info(
            "the request budget (queued.max.request.bytes) is in use: connections wait before reading more (back-pressure)",
        );
        if held == 0 && step <= self.pool_size {
            let p = self
                .pool
                .clone()
                .acquire_many_owned(n(step))
                .await
                .map_err(closed)?;
            return Ok((p, step));
        }
        let rest = size - held;
        let p = self
            .lane
            .clone()
            .acquire_many_owned(n(rest))
            .await
            .map_err(closed)?;
        Ok((p, rest))
    }
}
