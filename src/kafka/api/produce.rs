//! Produce: up to [`PRODUCE_IN_FLIGHT`] partitions of a request appended at once, answered in
//! the order asked.

use std::sync::Arc;

use kafka_protocol::messages::*;

use super::{code, kafka_code, s};
use crate::broker::Broker;
use crate::kafka::reply::{Reply, encode_body};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};

use crate::broker::Produced;
use crate::broker::error::{BrokerError, ErrorKind};
use crate::cluster::controller::OFFSETS_TOPIC;

pub async fn produce(broker: &Arc<Broker>, req: ProduceRequest, version: i16) -> Reply {
    let acks = req.acks;
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        return produce_error_all(
            &req,
            version,
            ResponseError::TransactionalIdAuthorizationFailed,
            acks,
        );
    }
    if !(-1..=1).contains(&acks) {
        return produce_error_all(&req, version, ResponseError::InvalidRequiredAcks, acks);
    }
    let how = if acks == -1 {
        crate::broker::Acks::All {
            timeout: std::time::Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0))
                .clamp(
                    std::time::Duration::from_millis(1),
                    std::time::Duration::from_secs(300),
                ),
        }
    } else {
        crate::broker::Acks::Leader
    };
    // Up to PRODUCE_IN_FLIGHT partitions of the request are appended at once (concurrent
    // appends share fsyncs under fsync=always); a request naming thousands of partitions costs
    // no more threads, tasks or memory than that, and answers in the order asked.
    // One slot per partition asked: the index of its topic in the request, its index, its
    // outcome. Topic names stay the request's own bytes.
    type Slot = (usize, i32, Option<Result<Produced, BrokerError>>);
    let mut slots: Vec<Slot> = Vec::new();
    // Per topic: its name (v3-v12) or id (v13+) for the answer.
    let mut names: Vec<(TopicName, ::uuid::Uuid)> = Vec::with_capacity(req.topic_data.len());
    let mut flying: std::collections::VecDeque<(usize, tokio::task::JoinHandle<_>)> =
        std::collections::VecDeque::new();
    let joined = |r: Result<Result<Produced, BrokerError>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| Err(BrokerError::new(ErrorKind::Unknown, e.to_string())))
    };
    for t in req.topic_data {
        // v13 names the topic by id; an id no topic has is UNKNOWN_TOPIC_ID.
        let topic = if version >= 13 {
            broker.topic_by_id(t.topic_id.as_u128())
        } else {
            broker.topic(&t.name.0)
        };
        let missing = if version >= 13 {
            ErrorKind::UnknownTopicId
        } else {
            ErrorKind::UnknownTopicOrPartition
        };
        let topic_slot = names.len();
        for p in t.partition_data {
            let index = p.index;
            let partition = topic.as_ref().and_then(|t| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
                    .map(|part| (part.clone(), t.config.clone()))
            });
            let slot = slots.len();
            let refused = match (partition, p.records) {
                (None, _) => Some(BrokerError::new(missing, String::new())),
                // Kafka refuses client writes to its internal topics the same way.
                (Some(_), _) if topic.as_ref().is_some_and(|t| t.name == OFFSETS_TOPIC) => {
                    Some(BrokerError::new(
                        ErrorKind::InvalidTopic,
                        "__consumer_offsets is written by the group coordinators only",
                    ))
                }
                (Some(_), None) => Some(BrokerError::new(ErrorKind::InvalidRecord, String::new())),
                (Some((partition, config)), Some(records)) => {
                    if flying.len() >= PRODUCE_IN_FLIGHT
                        && let Some((done, h)) = flying.pop_front()
                    {
                        let r = joined(h.await);
                        if let Some(s) = slots.get_mut(done) {
                            s.2 = Some(r);
                        }
                    }
                    let b = broker.clone();
                    flying.push_back((
                        slot,
                        tokio::spawn(b.produce_async(partition, config, records, how)),
                    ));
                    None
                }
            };
            slots.push((topic_slot, index, refused.map(Err)));
        }
        names.push((t.name, t.topic_id));
    }
    while let Some((done, h)) = flying.pop_front() {
        let r = joined(h.await);
        if let Some(s) = slots.get_mut(done) {
            s.2 = Some(r);
        }
    }
    if acks == 0 {
        return Reply::Nothing;
    }
    let mut topics: Vec<TopicProduceResponse> = names
        .into_iter()
        .map(|(name, id)| {
            if version >= 13 {
                TopicProduceResponse::default().with_topic_id(id)
            } else {
                TopicProduceResponse::default().with_name(name)
            }
        })
        .collect();
    for (topic_slot, index, result) in slots {
        let result =
            result.unwrap_or_else(|| Err(BrokerError::new(ErrorKind::Unknown, "no result")));
        let mut r = PartitionProduceResponse::default().with_index(index);
        match result {
            Ok(p) => {
                r = r
                    .with_base_offset(p.base_offset as i64)
                    .with_log_append_time_ms(p.log_append_time);
                if version >= 5 {
                    r = r.with_log_start_offset(p.log_start_offset as i64);
                }
            }
            Err(e) => {
                tracing::debug!(target: "strata::client", partition = index, code = ?e.kind, message = %e.message, "produce refused");
                r = r.with_error_code(code(e.kind)).with_base_offset(-1);
                if version >= 8 && !e.message.is_empty() {
                    r = r.with_error_message(Some(s(e.message)));
                }
            }
        }
        if let Some(t) = topics.get_mut(topic_slot) {
            t.partition_responses.push(r);
        }
    }
    encode_body(&ProduceResponse::default().with_responses(topics), version)
}

/// Partitions of one produce request appended at once.
const PRODUCE_IN_FLIGHT: usize = 16;

fn produce_error_all(req: &ProduceRequest, version: i16, e: ResponseError, acks: i16) -> Reply {
    if acks == 0 {
        return Reply::Nothing;
    }
    let resp = ProduceResponse::default().with_responses(
        req.topic_data
            .iter()
            .map(|t| {
                let r = TopicProduceResponse::default();
                let r = if version >= 13 {
                    r.with_topic_id(t.topic_id)
                } else {
                    r.with_name(t.name.clone())
                };
                r.with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(kafka_code(e))
                                .with_base_offset(-1)
                        })
                        .collect(),
                )
            })
            .collect(),
    );
    encode_body(&resp, version)
}
