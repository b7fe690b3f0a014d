//! The group coordinator's side of `__consumer_offsets` in a cluster: commit records are
//! appended to the group's partition by its leader, as a produce with `acks=all`, so an
//! acknowledged commit is on every in-sync replica (and, the topic having
//! `flush.messages=1`, on each one's disk). Kafka's `GroupMetadataManager.storeOffsets` does
//! the same; its error mapping is followed in the commit handler. The records are the store's
//! own (`crate::broker::groups::offsets`, docs/GROUPS.md), replicated by the replica fetchers
//! like any partition's.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use strata_storage::log::PartitionLog;

use super::controller::OFFSETS_TOPIC;
use crate::broker::groups::offsets::ReplicatedOffsets;
use crate::broker::{Acks, Broker};

/// Appends to this broker's `__consumer_offsets` partitions through the replicated produce
/// path.
#[derive(Debug)]
pub struct Writer {
    broker: Weak<Broker>,
    runtime: tokio::runtime::Handle,
    /// `offsets.commit.timeout.ms`.
    timeout: Duration,
}

impl Writer {
    /// A writer for `broker`, whose replicated appends run on `runtime`.
    pub fn new(broker: &Arc<Broker>, runtime: tokio::runtime::Handle, timeout: Duration) -> Self {
        Writer {
            broker: Arc::downgrade(broker),
            runtime,
            timeout,
        }
    }

    fn broker(&self) -> Result<Arc<Broker>> {
        self.broker.upgrade().context("the broker is shutting down")
    }
}

impl ReplicatedOffsets for Writer {
    fn partitions(&self) -> i32 {
        self.broker
            .upgrade()
            .and_then(|b| b.topic(OFFSETS_TOPIC))
            .map_or(0, |t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))
    }

    fn append(&self, partition: i32, batch: Vec<u8>) -> Result<u64> {
        let broker = self.broker()?;
        let topic = broker
            .topic(OFFSETS_TOPIC)
            .context("__consumer_offsets is not known here yet")?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| topic.partitions.get(i))
            .cloned()
            .with_context(|| format!("__consumer_offsets-{partition} does not exist"))?;
        let acks = Acks::All {
            timeout: self.timeout,
        };
        // The caller is a blocking thread: the append and its wait for the replicas run on the
        // runtime, and the answer comes back over a channel (no nested runtime).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let config = topic.config.clone();
        self.runtime.spawn(async move {
            let r = broker
                .produce_async(p, config, bytes::Bytes::from(batch), acks)
                .await;
            let _ = tx.send(r);
        });
        let produced = rx
            .recv_timeout(self.timeout + Duration::from_secs(5))
            .map_err(|_| {
                crate::broker::error::err(
                    crate::broker::error::ErrorKind::RequestTimedOut,
                    "the replicated offsets append did not answer in time",
                )
            })?;
        Ok(produced?.base_offset)
    }

    fn log(&self, partition: i32) -> Option<Arc<PartitionLog>> {
        self.broker
            .upgrade()?
            .partition(OFFSETS_TOPIC, partition)?
            .log()
            .ok()
    }
}
