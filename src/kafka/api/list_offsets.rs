//! ListOffsets: earliest, latest, by timestamp, max timestamp.

use std::sync::Arc;

use kafka_protocol::messages::*;

use super::{code, kafka_code, s};
use crate::broker::Broker;
use crate::kafka::reply::{Reply, encode_body};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};

use super::duplicated;

/// ListOffsets. Duplicate partitions are refused (INVALID_REQUEST, as Kafka); earliest and latest
/// are answered at once; lookups by timestamp read segments, all of them one after the other on
/// one blocking thread.
pub async fn list_offsets(broker: &Arc<Broker>, req: ListOffsetsRequest, version: i16) -> Reply {
    let dup = duplicated(req.topics.iter().flat_map(|t| {
        t.partitions
            .iter()
            .map(move |p| (t.name.0.clone(), p.partition_index))
    }));
    // Per entry: the answer, or the log and timestamp to look up.
    enum Step {
        Done(ListOffsetsPartitionResponse),
        Lookup(i32, Arc<strata_storage::log::PartitionLog>, i64),
    }
    let answered = move |index: i32, t: i64, o: i64| {
        let mut r = ListOffsetsPartitionResponse::default()
            .with_partition_index(index)
            .with_timestamp(t)
            .with_offset(o);
        if version >= 4 {
            r = r.with_leader_epoch(0);
        }
        r
    };
    let refused = |index: i32, e: i16| {
        ListOffsetsPartitionResponse::default()
            .with_partition_index(index)
            .with_timestamp(-1)
            .with_offset(-1)
            .with_error_code(e)
    };
    let mut steps: Vec<(String, Vec<Step>)> = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let mut row = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let index = p.partition_index;
            let step = if dup.contains(&(t.name.0.clone(), index)) {
                Step::Done(refused(index, kafka_code(ResponseError::InvalidRequest)))
            } else {
                match broker.partition(&name, index).map(|p| p.log()) {
                    None => Step::Done(refused(
                        index,
                        kafka_code(ResponseError::UnknownTopicOrPartition),
                    )),
                    Some(Err(e)) => Step::Done(refused(index, code(e.kind))),
                    Some(Ok(log)) => match p.timestamp {
                        // -4 (v8+): the earliest offset kept locally; no tiered storage, so
                        // the log start. -5 (v9+, latest tiered) falls to -1 below: nothing
                        // is tiered.
                        -2 | -4 => Step::Done(answered(index, -1, log.log_start_offset() as i64)),
                        -1 => Step::Done(answered(index, -1, log.log_end_offset() as i64)),
                        t if t >= 0 || t == -3 => Step::Lookup(index, log, t),
                        _ => Step::Done(answered(index, -1, -1)),
                    },
                }
            };
            row.push(step);
        }
        steps.push((name, row));
    }
    let lookup =
        |log: &strata_storage::log::PartitionLog, ts: i64| -> strata_storage::Result<(i64, i64)> {
            Ok(match ts {
                -3 => match log.max_timestamp_offset()? {
                    Some((t, o)) => (t, o as i64),
                    None => (-1, -1),
                },
                // The found record's own timestamp, as Kafka answers, not the one asked for.
                t => match log.find_timestamp(t)? {
                    Some(hit) => (hit.timestamp, hit.offset as i64),
                    None => (-1, -1),
                },
            })
        };
    let needs_disk = steps
        .iter()
        .any(|(_, row)| row.iter().any(|s| matches!(s, Step::Lookup(..))));
    let resolve = move |steps: Vec<(String, Vec<Step>)>| -> Vec<ListOffsetsTopicResponse> {
        steps
            .into_iter()
            .map(|(name, row)| {
                let partitions = row
                    .into_iter()
                    .map(|step| match step {
                        Step::Done(r) => r,
                        Step::Lookup(index, log, ts) => match lookup(&log, ts) {
                            Ok((t, o)) => answered(index, t, o),
                            Err(e) => {
                                tracing::error!(topic = %name, partition = index, error = %e, "list offsets failed");
                                refused(index, kafka_code(ResponseError::KafkaStorageError))
                            }
                        },
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(TopicName(s(name)))
                    .with_partitions(partitions)
            })
            .collect()
    };
    let topics = if needs_disk {
        match tokio::task::spawn_blocking(move || resolve(steps)).await {
            Ok(t) => t,
            Err(e) => return Reply::Close(format!("list offsets task failed: {e}")),
        }
    } else {
        resolve(steps)
    };
    encode_body(&ListOffsetsResponse::default().with_topics(topics), version)
}
