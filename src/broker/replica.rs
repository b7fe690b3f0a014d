//! A partition's place in a cluster's replication, wire-free: Kafka's protocol (KIP-101 and
//! KIP-279 for leader epochs and truncation, KIP-392's Fetch fields, AlterPartition for ISR
//! changes), its rules kept:
//!
//! * the **leader** appends produces, stamps its leader epoch, and learns each follower's log
//!   end offset from the offset the follower fetches from; the **high watermark** is the
//!   smallest log end offset of the in-sync replicas, and never goes back;
//! * consumers read below the high watermark only; an `acks=all` produce is answered once the
//!   high watermark has passed it, and refused with NOT_ENOUGH_REPLICAS when the ISR is smaller
//!   than `min.insync.replicas`;
//! * a follower in the ISR that has not caught up with the leader's log end for
//!   `replica.lag.time.max.ms` is dropped from the ISR, and one that caught up is added back,
//!   through the controller (the caller sends what [`Partition::isr_change`] proposes);
//! * a **follower** appends the leader's batches as they are ([`Partition::append_as_follower`])
//!   and keeps the high watermark the leader sends, at most its own log end.
//!
//! Outside a cluster a partition has no assignment and none of this applies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Partition;
use super::error::{BrokerError, ErrorKind, err};

/// What the metadata image says about one partition, and who this broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub me: i32,
    /// A broker id, or -1 (no leader).
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Copy)]
struct Follower {
    /// Its log end offset: the offset of its last fetch.
    leo: u64,
    /// When its fetch last reached the leader's log end.
    caught_up_at: Instant,
}

/// The replication state of a partition (in a cluster).
#[derive(Debug, Default)]
pub struct ReplicaState {
    assignment: Option<Assignment>,
    followers: HashMap<i32, Follower>,
    /// When this broker became the partition's leader (for the ISR's first grace period).
    leading_since: Option<Instant>,
}

impl Partition {
    /// Takes the partition's assignment from a new metadata image. A new leader epoch forgets
    /// what was known of the followers (they fetch again); the leader epoch is stamped on what
    /// this broker appends as leader.
    pub fn assign(&self, a: Assignment) {
        let mut st = self.replica.lock();
        let epoch_changed = st
            .assignment
            .as_ref()
            .is_none_or(|old| old.leader_epoch != a.leader_epoch || old.leader != a.leader);
        if epoch_changed {
            st.followers.clear();
            st.leading_since = (a.leader == a.me).then(Instant::now);
        }
        self.set_leader_epoch(a.leader_epoch);
        st.assignment = Some(a);
        drop(st);
        if self.is_leader() {
            self.update_high_watermark();
        }
        // Waiters (acks=all produces, parked fetches) look again.
        self.notify_appended();
    }

    /// The partition's assignment, in a cluster.
    pub fn assignment(&self) -> Option<Assignment> {
        self.replica.lock().assignment.clone()
    }

    /// Whether this broker leads the partition (always, outside a cluster). In a cluster a
    /// partition leads only once the metadata image made it leader: a broker that has just
    /// restarted and not yet applied the image must not take writes on its own (it would
    /// acknowledge `acks=all` alone, and a log behind the real leader's).
    pub fn is_leader(&self) -> bool {
        match &self.replica.lock().assignment {
            Some(a) => a.leader == a.me,
            None => !self.log().is_ok_and(|l| l.config().replicated),
        }
    }

    /// Refuses a produce or a consumer's fetch unless this broker leads the partition.
    pub fn check_leader(&self) -> Result<(), BrokerError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(err(
                ErrorKind::NotLeaderOrFollower,
                format!(
                    "broker does not lead {}-{}: ask Metadata for its leader",
                    self.topic, self.index
                ),
            ))
        }
    }

    /// Kafka's check of a request's `current_leader_epoch` (-1: unchecked): older is
    /// FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
    pub fn check_leader_epoch(&self, current: i32) -> Result<(), BrokerError> {
        let Some(mine) = self.leader_epoch() else {
            return Ok(());
        };
        if current < 0 || current == mine {
            Ok(())
        } else if current < mine {
            Err(err(
                ErrorKind::FencedLeaderEpoch,
                format!("leader epoch {current} is older than {mine}"),
            ))
        } else {
            Err(err(
                ErrorKind::UnknownLeaderEpoch,
                format!("leader epoch {current} is newer than {mine}"),
            ))
        }
    }

    /// Leader: recomputes the high watermark, the smallest log end offset of the in-sync
    /// replicas (a follower not heard from since this broker leads counts as not there yet);
    /// it never moves back. Wakes waiters when it moved. Returns it.
    pub fn update_high_watermark(&self) -> u64 {
        let Ok(log) = self.log() else {
            return 0;
        };
        let leo = log.log_end_offset();
        let old = log.high_watermark();
        let candidate = {
            let st = self.replica.lock();
            match &st.assignment {
                None => leo,
                Some(a) if a.leader != a.me => return old,
                Some(a) => a
                    .isr
                    .iter()
                    .filter(|r| **r != a.me)
                    .map(|r| st.followers.get(r).map_or(old, |f| f.leo))
                    .fold(leo, u64::min),
            }
        };
        if candidate > old {
            let hw = log.set_high_watermark(candidate);
            self.notify_appended();
            hw
        } else {
            old
        }
    }

    /// Leader: a follower fetched from `fetch_offset`, which is its log end offset. Returns
    /// the high watermark to send it.
    pub fn follower_fetched(&self, follower: i32, fetch_offset: u64) -> u64 {
        let leo = self.log().map_or(0, |l| l.log_end_offset());
        {
            let mut st = self.replica.lock();
            let now = Instant::now();
            let since = st.leading_since.unwrap_or(now);
            let f = st.followers.entry(follower).or_insert(Follower {
                leo: fetch_offset,
                caught_up_at: since,
            });
            f.leo = fetch_offset;
            if fetch_offset >= leo {
                f.caught_up_at = now;
            }
        }
        self.update_high_watermark()
    }

    /// Leader: the ISR the partition should have now, if it differs from the image's: in-sync
    /// followers that have not caught up for `lag_max` leave, followers that reached the high
    /// watermark join (Kafka's `maybeShrinkIsr` / `maybeExpandIsr`). Returns the leader epoch it
    /// was computed at and the new ISR.
    pub fn isr_change(&self, lag_max: Duration) -> Option<(i32, Vec<i32>)> {
        let hw = self.log().ok()?.high_watermark();
        let st = self.replica.lock();
        let a = st.assignment.as_ref()?;
        if a.leader != a.me {
            return None;
        }
        let now = Instant::now();
        let since = st.leading_since.unwrap_or(now);
        let mut isr: Vec<i32> = a
            .isr
            .iter()
            .copied()
            .filter(|r| {
                *r == a.me
                    || match st.followers.get(r) {
                        Some(f) => now.duration_since(f.caught_up_at) <= lag_max,
                        // Not heard from since this broker leads: a grace of one lag period.
                        None => now.duration_since(since) <= lag_max,
                    }
            })
            .collect();
        for r in &a.replicas {
            if !isr.contains(r) && st.followers.get(r).is_some_and(|f| f.leo >= hw) {
                isr.push(*r);
            }
        }
        isr.sort_unstable();
        let mut old = a.isr.clone();
        old.sort_unstable();
        (isr != old).then_some((a.leader_epoch, isr))
    }

    /// Leader: waits until the high watermark reaches `end` (an `acks=all` produce of the
    /// batch ending there), at most `timeout`. NOT_LEADER_OR_FOLLOWER if leadership moves
    /// meanwhile, NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below `min_isr`,
    /// REQUEST_TIMED_OUT past the timeout.
    pub async fn wait_replicated(
        &self,
        end: u64,
        min_isr: usize,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        let mut rx = self.subscribe_appends();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            self.check_leader()?;
            let hw = self.log()?.high_watermark();
            if hw >= end {
                let isr = self.assignment().map_or(1, |a| a.isr.len());
                if isr < min_isr {
                    return Err(err(
                        ErrorKind::NotEnoughReplicasAfterAppend,
                        format!("the ISR has {isr} replica(s), min.insync.replicas is {min_isr}"),
                    ));
                }
                return Ok(());
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() {
                    return Err(err(ErrorKind::NotLeaderOrFollower, "the partition was removed"));
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(err(
                        ErrorKind::RequestTimedOut,
                        format!("the in-sync replicas did not all have offset {} within {timeout:?}", end.saturating_sub(1)),
                    ));
                }
            }
        }
    }

    /// Refuses an `acks=all` produce up front when the ISR is smaller than `min_isr`.
    pub fn check_min_isr(&self, min_isr: usize) -> Result<(), BrokerError> {
        let isr = self.assignment().map_or(usize::MAX, |a| a.isr.len());
        if isr < min_isr {
            return Err(err(
                ErrorKind::NotEnoughReplicas,
                format!("the ISR has {isr} replica(s), min.insync.replicas is {min_isr}"),
            ));
        }
        Ok(())
    }

    /// Follower: appends a batch exactly as the leader wrote it (offsets, epoch, producer
    /// fields), recording an idempotent producer's sequence as the leader did, so that a
    /// leader change keeps deduplication. Returns the new log end offset.
    pub fn append_as_follower(&self, batch: bytes::Bytes) -> Result<u64, BrokerError> {
        let log = self.log()?;
        let h = strata_storage::batch::header::BatchHeader::parse(&batch)
            .map_err(|e| err(ErrorKind::CorruptMessage, e.to_string()))?;
        let info = log.append_replica(batch).map_err(|e| match e {
            strata_storage::Error::OffsetMismatch { .. } => {
                err(ErrorKind::OffsetOutOfRange, e.to_string())
            }
            strata_storage::Error::InvalidBatch(b) => err(ErrorKind::CorruptMessage, b.to_string()),
            other => err(ErrorKind::Storage, other.to_string()),
        })?;
        if h.producer_id >= 0 && h.base_sequence >= 0 {
            self.record_producer(&h, info.base_offset);
        }
        self.notify_appended();
        Ok(log.log_end_offset())
    }

    /// Follower: takes the leader's high watermark (at most this log's end).
    pub fn follower_high_watermark(&self, leader_hw: u64) {
        if let Ok(log) = self.log() {
            let hw = leader_hw.min(log.log_end_offset());
            if hw != log.high_watermark() {
                log.set_high_watermark(hw);
            }
        }
    }

    /// Follower: cuts the log where it diverges from the leader's (KIP-279, through Fetch's
    /// diverging epoch, as Kafka's replica fetchers do since 2.7): the leader's epoch `epoch`
    /// ends at `end` there; this log keeps what is below both that and its own end of the
    /// same epoch. Returns the new log end offset.
    pub fn truncate_diverging(&self, epoch: i32, end: u64) -> Result<u64, BrokerError> {
        let log = self.log()?;
        let own = log.end_offset_for_epoch(epoch);
        // Kafka's follower: the smaller of the leader's end of the epoch and its own end of
        // the largest epoch at or below it.
        let cut = if own.end_offset >= 0 {
            end.min(own.end_offset as u64)
        } else {
            end
        };
        if cut >= log.log_end_offset() {
            return Ok(log.log_end_offset());
        }
        let new_end = log
            .truncate_to(cut)
            .map_err(|e| err(ErrorKind::Storage, e.to_string()))?;
        tracing::info!(partition = %format!("{}-{}", self.topic, self.index), epoch, leader_end = end, new_end, "truncated a divergent tail");
        self.reload_producer_state();
        Ok(new_end)
    }
}
