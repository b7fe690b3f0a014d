//! Fetch: the request as [`FetchWant`]s, the broker's [`FetchPlan`] (long poll, KIP-74 limits)
//! as a response whose records are sent from their files.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use tokio::sync::watch;

use super::code;
use crate::broker::Broker;
use crate::broker::fetch::{FetchLimits, FetchWant};
use crate::kafka::fetch_encode::{self, FetchOut, PartitionOut, TopicOut};
use crate::kafka::reply::{Chunk, Reply};

pub async fn fetch(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    shutdown: watch::Receiver<bool>,
) -> Reply {
    // v13+ names topics by id: (name, id) of each topic asked, `None` for an id no topic has
    // (UNKNOWN_TOPIC_ID: deleted, or re-created under a new id).
    let named: Vec<Option<(String, u128)>> = req
        .topics
        .iter()
        .map(|t| {
            if version >= 13 {
                let id = t.topic_id.as_u128();
                broker.topic_by_id(id).map(|topic| (topic.name.clone(), id))
            } else {
                let id = broker.topic(&t.topic.0).map_or(0, |x| x.id);
                Some((t.topic.0.to_string(), id))
            }
        })
        .collect();
    let wants: Vec<FetchWant> = req
        .topics
        .iter()
        .zip(&named)
        .filter_map(|(t, n)| n.as_ref().map(|(name, _)| (t, name)))
        .flat_map(|(t, name)| {
            t.partitions.iter().map(move |p| FetchWant {
                topic: name.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: if version >= 9 {
                    p.current_leader_epoch
                } else {
                    -1
                },
                last_fetched_epoch: if version >= 12 {
                    p.last_fetched_epoch
                } else {
                    -1
                },
            })
        })
        .collect();
    let limits = FetchLimits {
        max_bytes: (version >= 3 && req.max_bytes > 0).then_some(req.max_bytes as usize),
        min_bytes: req.min_bytes.max(0) as usize,
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        // A follower's fetch (v15+ says so in replica_state, older versions in replica_id).
        replica: Some(if version >= 15 {
            req.replica_state.replica_id.0
        } else {
            req.replica_id.0
        })
        .filter(|id| *id >= 0 && broker.cluster().is_some()),
    };
    let plan = broker.fetch(&wants, limits, shutdown).await;
    let read_committed = req.isolation_level == 1;
    let mut reads = plan.partitions.into_iter();
    let topics = req
        .topics
        .iter()
        .zip(&named)
        .map(|(t, n)| TopicOut {
            name: n
                .as_ref()
                .map_or_else(String::new, |(name, _)| name.clone()),
            topic_id: n.as_ref().map_or(t.topic_id.as_u128(), |(_, id)| *id),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let mut out = PartitionOut {
                        partition_index: p.partition,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        preferred_read_replica: -1,
                        aborted_transactions: read_committed.then(Vec::new),
                        records: Some(Chunk::Mem(Bytes::new())),
                        ..PartitionOut::default()
                    };
                    if n.is_none() {
                        out.error_code = kafka_protocol::ResponseError::UnknownTopicId.code();
                        return out;
                    }
                    match reads.next() {
                        Some(Ok(r)) => {
                            out.high_watermark = r.high_watermark;
                            // No transactions: everything below the high watermark is stable.
                            out.last_stable_offset = r.high_watermark;
                            out.log_start_offset = r.log_start_offset;
                            out.diverging_epoch = r.diverging;
                            if let Some(slice) = r.records {
                                out.records = Some(Chunk::File(slice));
                            }
                        }
                        Some(Err(e)) => out.error_code = code(e.kind),
                        None => {}
                    }
                    out
                })
                .collect(),
        })
        .collect();
    let out = FetchOut {
        throttle_time_ms: 0,
        error_code: 0,
        session_id: 0,
        topics,
    };
    Reply::Body(fetch_encode::encode(&out, version))
}
