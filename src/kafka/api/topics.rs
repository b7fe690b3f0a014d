//! CreateTopics and DeleteTopics.

use std::sync::Arc;

use kafka_protocol::messages::*;

use ::uuid::Uuid;

use super::{Refusal, code, kafka_code, s, uuid};
use crate::broker::Broker;
use crate::broker::error::{BrokerError, ErrorKind};
use crate::kafka::reply::{Reply, encode_body};
use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;

use super::duplicated;
use crate::broker::Topic;
use crate::broker::config::KAFKA_TOPIC_CONFIGS;

/// Every config of a new topic, as CreateTopics (v5+) answers: (name, value, overridden,
/// read-only).
fn topic_configs(broker: &Broker, topic: &Topic) -> Vec<(String, String, bool, bool)> {
    let defaults = broker.topic_defaults();
    KAFKA_TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (v, overridden) = topic.config.value(&defaults, d.name);
            (d.name.to_string(), v, overridden, d.unsupported.is_some())
        })
        .collect()
}

/// CreateTopics. Each entry is checked cheaply first (duplicates INVALID_REQUEST, invalid names,
/// replication, assignments, topics that exist); the topics left are created one after the
/// other on one blocking thread, each all or nothing.
pub async fn create_topics(broker: &Arc<Broker>, req: CreateTopicsRequest, version: i16) -> Reply {
    let dup = duplicated(req.topics.iter().map(|t| t.name.0.clone()));
    // Per entry: the partition count asked, then what to create (or the error).
    type Plan = Result<(String, i32, BTreeMap<String, String>), Refusal>;
    let mut plans: Vec<(i32, Plan)> = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let mut partitions = t.num_partitions;
        let plan: Plan = if dup.contains(&t.name.0) {
            Err(Refusal::kafka(
                ResponseError::InvalidRequest,
                "duplicate topic in the request",
            ))
        } else if let Err(m) = crate::broker::validate_topic_name(&name) {
            Err(Refusal::kafka(ResponseError::InvalidTopicException, m))
        } else if broker.topic(&name).is_some() {
            Err(Refusal::kafka(
                ResponseError::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ))
        } else if !matches!(t.replication_factor, -1 | 1) {
            Err(Refusal::kafka(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {} is not available: Strata runs one broker",
                    t.replication_factor
                ),
            ))
        } else if !t.assignments.is_empty()
            && (t.num_partitions != -1
                || t.assignments
                    .iter()
                    .any(|a| a.broker_ids.iter().any(|b| b.0 != broker.node_id)))
        {
            Err(Refusal::kafka(
                ResponseError::InvalidReplicaAssignment,
                "replica assignments may only name this broker, with num_partitions -1",
            ))
        } else {
            if !t.assignments.is_empty() {
                partitions = t.assignments.len() as i32;
            }
            let configs: BTreeMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            Ok((name, partitions, configs))
        };
        plans.push((partitions, plan));
    }
    let validate_only = req.validate_only;
    let b = broker.clone();
    let entries = plans.len();
    let outcomes: Vec<(i32, Result<Arc<Topic>, Refusal>)> =
        tokio::task::spawn_blocking(move || {
            plans
                .into_iter()
                .map(|(partitions, plan)| {
                    let outcome = plan.and_then(|(name, partitions, configs)| {
                        b.create_topic(&name, partitions, configs, validate_only)
                            .map_err(Refusal::from)
                    });
                    (partitions, outcome)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            (0..entries)
                .map(|_| {
                    let e = Refusal::kafka(ResponseError::UnknownServerError, e.to_string());
                    (-1, Err(e))
                })
                .collect()
        });
    let mut results = Vec::new();
    for (t, (partitions, outcome)) in req.topics.iter().zip(outcomes) {
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        match outcome {
            Ok(topic) => {
                if version >= 5 {
                    let n = if topic.partitions.is_empty() {
                        if partitions == -1 {
                            broker.config.num_partitions().unwrap_or(1)
                        } else {
                            partitions
                        }
                    } else {
                        topic.partitions.len() as i32
                    };
                    r = r
                        .with_num_partitions(n)
                        .with_replication_factor(1)
                        .with_configs(Some(
                            topic_configs(broker, &topic)
                                .into_iter()
                                .map(|(k, v, overridden, read_only)| {
                                    CreatableTopicConfigs::default()
                                        .with_name(s(k))
                                        .with_value((!v.is_empty()).then(|| s(v)))
                                        .with_read_only(read_only)
                                        .with_config_source(if overridden { 1 } else { 5 })
                                })
                                .collect(),
                        ));
                }
                if version >= 7 {
                    r = r.with_topic_id(uuid(topic.id));
                }
            }
            Err(e) => {
                tracing::debug!(target: "strata::client", topic = %t.name.0, code = e.code, message = %e.message, "topic creation refused");
                r = r.with_error_code(e.code);
                if version >= 1 {
                    r = r.with_error_message(Some(s(e.message)));
                }
                if version >= 5 {
                    r = r.with_num_partitions(-1).with_replication_factor(-1);
                }
            }
        }
        results.push(r);
    }
    encode_body(
        &CreateTopicsResponse::default().with_topics(results),
        version,
    )
}

/// DeleteTopics. Every entry costs a lookup: invalid names (INVALID_TOPIC_EXCEPTION), duplicates
/// (INVALID_REQUEST) and unknown topics are answered without any other work (and without an
/// error message: the code says it), and the topics that exist are deleted one after the other
/// on one blocking thread. Names in the answer are the request's own bytes, not copies.
pub async fn delete_topics(broker: &Arc<Broker>, req: DeleteTopicsRequest, version: i16) -> Reply {
    // (name as given or resolved from the id, id)
    let mut targets: Vec<(Option<TopicName>, Uuid, bool)> = req
        .topic_names
        .into_iter()
        .map(|n| (Some(n), Uuid::nil(), true))
        .collect();
    let ids_given = req.topics.iter().any(|t| t.name.is_none());
    let by_id: std::collections::HashMap<Uuid, String> = if ids_given {
        broker
            .topics()
            .iter()
            .map(|t| (uuid(t.id), t.name.clone()))
            .collect()
    } else {
        std::collections::HashMap::new()
    };
    targets.extend(req.topics.into_iter().map(|t| {
        let given = t.name.is_some();
        let name = t
            .name
            .or_else(|| by_id.get(&t.topic_id).map(|n| TopicName(s(n.clone()))));
        (name, t.topic_id, given)
    }));
    let dup_names = duplicated(
        targets
            .iter()
            .filter_map(|(n, ..)| n.as_ref().map(|n| n.0.clone())),
    );
    let dup_ids = duplicated(
        targets
            .iter()
            .map(|(_, id, _)| *id)
            .filter(|id| !id.is_nil()),
    );
    // Per entry: the error code, or `None` for a topic to delete.
    let mut codes: Vec<Option<i16>> = Vec::with_capacity(targets.len());
    let mut doomed: Vec<String> = Vec::new();
    for (name, id, given) in &targets {
        codes.push(match name {
            None if version >= 6 => Some(kafka_code(ResponseError::UnknownTopicId)),
            None => Some(kafka_code(ResponseError::UnknownTopicOrPartition)),
            Some(n) if dup_names.contains(&n.0) || dup_ids.contains(id) => {
                Some(kafka_code(ResponseError::InvalidRequest))
            }
            Some(n) if *given && crate::broker::validate_topic_name(&n.0).is_err() => {
                Some(kafka_code(ResponseError::InvalidTopicException))
            }
            Some(n) if broker.topic(&n.0).is_none() && broker.damaged_topic(&n.0).is_none() => {
                Some(kafka_code(ResponseError::UnknownTopicOrPartition))
            }
            Some(n) => {
                doomed.push(n.0.to_string());
                None
            }
        });
    }
    let deleted: std::collections::HashMap<String, BrokerError> = if doomed.is_empty() {
        std::collections::HashMap::new()
    } else {
        let b = broker.clone();
        let all = doomed.clone();
        tokio::task::spawn_blocking(move || {
            doomed
                .into_iter()
                .filter_map(|n| b.delete_topic(&n).err().map(|e| (n, e)))
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            all.into_iter()
                .map(|n| {
                    let err = BrokerError::new(ErrorKind::Unknown, e.to_string());
                    (n, err)
                })
                .collect()
        })
    };
    let responses = targets
        .into_iter()
        .zip(codes)
        .map(|((name, id, _), error)| {
            let mut r = DeletableTopicResult::default();
            if version >= 6 {
                r = r.with_topic_id(id);
            }
            let failure = match (error, &name) {
                (Some(c), _) => Some((c, None)),
                (None, Some(n)) => deleted
                    .get(n.0.as_str())
                    .map(|e| (code(e.kind), Some(e.message.clone()))),
                (None, None) => None,
            };
            if let Some((c, message)) = failure {
                r = r.with_error_code(c);
                if version >= 5 {
                    r = r.with_error_message(message.map(s));
                }
            }
            r.with_name(name)
        })
        .collect();
    encode_body(
        &DeleteTopicsResponse::default().with_responses(responses),
        version,
    )
}
