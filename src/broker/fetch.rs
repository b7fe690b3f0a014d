//! Reading partitions for a fetch, wire-free: which bytes of which partitions go out, within
//! the limits asked (KIP-74: at least one whole batch, then only what fits), and the long poll
//! that waits for appends. The Kafka edge turns requests into [`FetchWant`]s and a
//! [`FetchPlan`] into a response.

use std::sync::Arc;
use std::time::Duration;

use strata_storage::log::ReadSlice;
use tokio::sync::watch;

use super::Broker;
use super::error::{BrokerError, ErrorKind, err};

/// The longest a fetch may park; clients ask for ~500 ms.
pub const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// One partition a fetch asks for.
#[derive(Debug, Clone)]
pub struct FetchWant {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The most bytes for this partition (`partition_max_bytes`).
    pub max_bytes: i32,
    /// The fetcher's idea of the leader epoch (-1: unchecked).
    pub current_leader_epoch: i32,
    /// A follower's: the epoch of the last batch it has (-1: none or not said), checked
    /// against the leader's log for divergence.
    pub last_fetched_epoch: i32,
}

/// What one partition answers.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole batches from the offset asked, or `None` when there is nothing (yet) or no room.
    pub records: Option<ReadSlice>,
    /// To a follower whose log diverges from this leader's: the leader's (epoch, end offset)
    /// at or below the follower's last epoch, to truncate to.
    pub diverging: Option<(i32, i64)>,
}

/// What a fetch returns, in the order of its [`FetchWant`]s.
#[derive(Debug, Default)]
pub struct FetchPlan {
    pub partitions: Vec<Result<PartitionRead, BrokerError>>,
    /// Record bytes in it.
    pub bytes: usize,
    /// Whether any partition has an error (errors are answered at once, as Kafka does).
    pub errors: bool,
    /// Record slices not all in memory, to read in off the async threads before they are sent.
    pub cold: Vec<ReadSlice>,
}

/// The limits of a fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// The most record bytes in the answer (`max_bytes`), `None` for no limit.
    pub max_bytes: Option<usize>,
    /// Answer once this many bytes are there (`min_bytes`; 0 answers at once).
    pub min_bytes: usize,
    /// The longest to wait for `min_bytes` (capped at [`MAX_WAIT_CAP`]).
    pub max_wait: Duration,
    /// A follower's fetch: its broker id (it reads up to the log end, not the high watermark,
    /// and its fetch offset tells the leader how far it is).
    pub replica: Option<i32>,
}

impl Broker {
    /// Reads every partition of `wants` once.
    pub fn plan_fetch(
        &self,
        wants: &[FetchWant],
        max_bytes: Option<usize>,
        replica: Option<i32>,
    ) -> FetchPlan {
        let mut plan = FetchPlan::default();
        let mut budget = max_bytes.unwrap_or(usize::MAX);
        for w in wants {
            let read = self.read_partition(w, &mut budget, &mut plan, replica);
            plan.errors |= read.is_err();
            plan.partitions.push(read);
        }
        plan
    }

    fn read_partition(
        &self,
        w: &FetchWant,
        budget: &mut usize,
        plan: &mut FetchPlan,
        replica: Option<i32>,
    ) -> Result<PartitionRead, BrokerError> {
        let p = self
            .partition(&w.topic, w.partition)
            .ok_or_else(|| err(ErrorKind::UnknownTopicOrPartition, ""))?;
        // Consumers and followers alike fetch from the leader (no KIP-392 follower fetching).
        p.check_leader()?;
        p.check_leader_epoch(w.current_leader_epoch)?;
        let log = p.log()?;
        let start = log.log_start_offset() as i64;
        let mut bound = strata_storage::log::ReadBound::HighWatermark;
        let mut hw = log.high_watermark() as i64;
        if let Some(follower) = replica {
            // Where the follower's last epoch ends here: before its fetch offset, its log
            // diverges from this one (Kafka's `Partition.fetchRecords`, KIP-595's check).
            if w.last_fetched_epoch >= 0 && !log.leader_epochs().is_empty() {
                let e = log.end_offset_for_epoch(w.last_fetched_epoch);
                if e.end_offset >= 0 && (e.epoch < w.last_fetched_epoch || e.end_offset < w.offset)
                {
                    return Ok(PartitionRead {
                        high_watermark: hw,
                        log_start_offset: start,
                        records: None,
                        diverging: Some((e.epoch, e.end_offset)),
                    });
                }
            }
            if !p
                .assignment()
                .is_some_and(|a| a.replicas.contains(&follower) && a.me != follower)
            {
                return Err(err(
                    ErrorKind::NotLeaderOrFollower,
                    format!(
                        "broker {follower} is not a follower of {}-{}",
                        w.topic, w.partition
                    ),
                ));
            }
            if w.offset >= 0 && w.offset <= log.log_end_offset() as i64 {
                hw = p.follower_fetched(follower, w.offset as u64) as i64;
            }
            bound = strata_storage::log::ReadBound::LogEnd;
        }
        let mut out = PartitionRead {
            high_watermark: hw,
            log_start_offset: start,
            records: None,
            diverging: None,
        };
        if w.offset < start || w.offset > log.log_end_offset() as i64 {
            return Err(err(ErrorKind::OffsetOutOfRange, ""));
        }
        // At least one whole batch for the first partition with data, even past the limits
        // (KIP-74); later partitions only within what is left.
        let limit = (w.max_bytes.max(0) as usize).min(*budget);
        if limit == 0 && plan.bytes > 0 {
            return Ok(out);
        }
        match log.read_bounded(w.offset as u64, limit.max(1), bound) {
            Ok(slice) if !slice.is_empty() && (plan.bytes == 0 || slice.len() <= *budget) => {
                plan.bytes += slice.len();
                *budget = budget.saturating_sub(slice.len());
                if !slice.is_resident() {
                    plan.cold.push(slice.clone());
                }
                out.records = Some(slice);
                Ok(out)
            }
            Ok(_) => Ok(out),
            Err(strata_storage::Error::OffsetOutOfRange { .. }) => {
                Err(err(ErrorKind::OffsetOutOfRange, ""))
            }
            Err(e) => {
                tracing::error!(topic = %w.topic, partition = w.partition, error = %e, "read failed");
                Err(err(ErrorKind::Storage, e.to_string()))
            }
        }
    }

    /// A fetch with its long poll: reads the partitions, and unless `min_bytes` are there (or
    /// an error, the wait expired, or `shutdown` turned true) parks until one of them is
    /// appended to, then reads again. Pages not in memory are read in on a blocking thread
    /// before the plan is returned: the records go out with `sendfile`, which would otherwise
    /// read them from the disk on an async thread, stalling every connection it serves.
    pub async fn fetch(
        self: &Arc<Self>,
        wants: &[FetchWant],
        limits: FetchLimits,
        mut shutdown: watch::Receiver<bool>,
    ) -> FetchPlan {
        let wait = limits.max_wait.min(MAX_WAIT_CAP);
        let deadline = tokio::time::Instant::now() + wait;
        // Woken only by appends to the partitions asked for (an unknown one is answered at once).
        let mut appended: Vec<watch::Receiver<u64>> = wants
            .iter()
            .filter_map(|w| self.partition(&w.topic, w.partition))
            .map(|p| p.subscribe_appends())
            .collect();
        loop {
            // A deleted partition's channel is closed: stop waiting on it (it would wake at
            // once, forever, if a topic of the same name were created meanwhile).
            appended.retain(|r| r.has_changed().is_ok());
            for r in &mut appended {
                r.borrow_and_update();
            }
            let mut plan = self.plan_fetch(wants, limits.max_bytes, limits.replica);
            let expired = tokio::time::Instant::now() >= deadline;
            if plan.bytes >= limits.min_bytes || plan.errors || expired || *shutdown.borrow() {
                let cold = std::mem::take(&mut plan.cold);
                if !cold.is_empty() {
                    // Pages in memory need nothing: `sendfile` copies them without mapping
                    // them, so it never waits for the page lock that writeback holds (a fault
                    // through the mapping did, for 0.7-1.1 s while a segment was being synced).
                    let _ =
                        tokio::task::spawn_blocking(move || cold.iter().for_each(|s| s.prefault()))
                            .await;
                }
                return plan;
            }
            tokio::select! {
                _ = any_changed(&mut appended) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Resolves once any of `rxs` has changed since it was last seen (or its sender is gone: the
/// partition was deleted). Never resolves for an empty list.
async fn any_changed(rxs: &mut [watch::Receiver<u64>]) {
    let mut waits: Vec<_> = rxs.iter_mut().map(|r| Box::pin(r.changed())).collect();
    std::future::poll_fn(|cx| {
        if waits.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
