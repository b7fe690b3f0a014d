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

/// The configs a CreateTopics entry sets (those with a value).
fn requested_configs(t: &create_topics_request::CreatableTopic) -> BTreeMap<String, String> {
    t.configs
        .iter()
        .filter_map(|c| {
            c.value
                .as_ref()
                .map(|v| (c.name.to_string(), v.to_string()))
        })
        .collect()
}

/// What to create for one CreateTopics entry (name, partitions, configs), or the refusal.
type Plan = Result<(String, i32, BTreeMap<String, String>), Refusal>;

/// CreateTopics. Each entry is checked cheaply first (duplicates INVALID_REQUEST, invalid names,
/// replication, assignments, topics that exist); the topics left are created one after the
/// other on one blocking thread, each all or nothing.
pub async fn create_topics(broker: &Arc<Broker>, req: CreateTopicsRequest, version: i16) -> Reply {
    let dup = duplicated(req.topics.iter().map(|t| t.name.0.clone()));
    // Per entry: the partition count asked, then what to create (or the error).
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
        } else if broker.cluster().is_none() && broker.topic(&name).is_some() {
            Err(Refusal::kafka(
                ResponseError::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ))
        } else if broker.cluster().is_some() {
            // The controller checks existence, replication and assignments.
            Ok((name, partitions, requested_configs(t)))
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
            Ok((name, partitions, requested_configs(t)))
        };
        plans.push((partitions, plan));
    }
    let validate_only = req.validate_only;
    let b = broker.clone();
    let entries = plans.len();
    let outcomes: Vec<(i32, Result<Arc<Topic>, Refusal>)> = if let Some(link) = broker.cluster() {
        create_in_cluster(broker, link, &req, plans).await
    } else {
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
        })
    };
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
                        .with_replication_factor(replication_factor_of(broker, &topic))
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

/// The replication factor of a created topic, as CreateTopics v5+ answers it.
fn replication_factor_of(broker: &Broker, topic: &Topic) -> i16 {
    broker
        .cluster()
        .and_then(|l| {
            l.image()
                .topics
                .get(&topic.name)
                .and_then(|t| t.partitions.first().map(|p| p.replicas.len()))
        })
        .map_or(1, |n| i16::try_from(n).unwrap_or(i16::MAX))
}

/// CreateTopics in a cluster: configs are checked here, the rest by the active controller,
/// which places the partitions and commits each topic to the metadata log (as a KRaft broker
/// forwards CreateTopics to it). A created topic is answered once this node's image has it.
async fn create_in_cluster(
    broker: &Arc<Broker>,
    link: &Arc<crate::cluster::link::Link>,
    req: &CreateTopicsRequest,
    plans: Vec<(i32, Plan)>,
) -> Vec<(i32, Result<Arc<Topic>, Refusal>)> {
    use crate::broker::config::TopicConfig;
    let defaults = broker.topic_defaults();
    let mut asks = Vec::new();
    let mut outcomes: Vec<(i32, Result<Arc<Topic>, Refusal>)> = Vec::with_capacity(plans.len());
    for ((partitions, plan), t) in plans.into_iter().zip(&req.topics) {
        let plan = plan.and_then(|(name, partitions, configs)| {
            let config = TopicConfig::resolve(&defaults, configs.clone())
                .map_err(|e| Refusal::kafka(ResponseError::InvalidConfig, format!("{e:#}")))?;
            let mut assignments: Vec<_> = t.assignments.iter().collect();
            assignments.sort_by_key(|a| a.partition_index);
            asks.push(crate::cluster::rpc::NewTopic {
                name: name.clone(),
                partitions: if assignments.is_empty() {
                    partitions
                } else {
                    -1
                },
                replication_factor: t.replication_factor,
                assignments: assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect(),
                configs,
            });
            Ok(Arc::new(Topic {
                name,
                id: 0,
                partitions: Vec::new(),
                config,
            }))
        });
        outcomes.push((partitions, plan));
    }
    if asks.is_empty() {
        return outcomes;
    }
    let timeout = std::time::Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0))
        .clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        );
    let answers: std::collections::HashMap<String, Result<(), BrokerError>> = link
        .create_topics(asks, req.validate_only, timeout)
        .await
        .into_iter()
        .collect();
    let image = link.image();
    for (partitions, outcome) in &mut outcomes {
        let Ok(topic) = outcome else {
            continue;
        };
        let name = topic.name.clone();
        match answers.get(&name) {
            Some(Ok(())) => {
                if let Some(info) = image.topics.get(&name) {
                    *partitions = i32::try_from(info.partitions.len()).unwrap_or(i32::MAX);
                    *outcome = Ok(Arc::new(Topic {
                        name,
                        id: info.id_value(),
                        partitions: Vec::new(),
                        config: topic.config.clone(),
                    }));
                }
            }
            Some(Err(e)) => *outcome = Err(Refusal::from(e.clone())),
            None => {
                *outcome = Err(Refusal::kafka(
                    ResponseError::UnknownServerError,
                    "the controller did not answer for this topic",
                ))
            }
        }
    }
    outcomes
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
    let image = broker.cluster().map(|l| l.image());
    let by_id: std::collections::HashMap<Uuid, String> =
        if let (true, Some(img)) = (ids_given, &image) {
            img.topics
                .values()
                .map(|t| (uuid(t.id_value()), t.name.clone()))
                .collect()
        } else if ids_given {
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
            Some(n)
                if image
                    .as_ref()
                    .is_some_and(|i| !i.topics.contains_key(n.0.as_str())) =>
            {
                Some(kafka_code(ResponseError::UnknownTopicOrPartition))
            }
            Some(n)
                if image.is_none()
                    && broker.topic(&n.0).is_none()
                    && broker.damaged_topic(&n.0).is_none() =>
            {
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
    } else if let Some(link) = broker.cluster() {
        let timeout = std::time::Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0))
            .clamp(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(30),
            );
        link.delete_topics(doomed, timeout)
            .await
            .into_iter()
            .filter_map(|(n, r)| r.err().map(|e| (n, e)))
            .collect()
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
