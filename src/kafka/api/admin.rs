//! CreatePartitions, AlterConfigs, IncrementalAlterConfigs and DeleteRecords: the admin
//! changes of [`crate::broker::admin`]. Every entry is checked cheaply first (duplicates
//! INVALID_REQUEST, as Kafka); the changes then run one after the other on one blocking thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::*;

use super::{Refusal, duplicated, s};
use crate::broker::Broker;
use crate::broker::config::TopicConfig;
use crate::broker::dynamic::Scope;
use crate::kafka::reply::{Reply, encode_body};

/// `resource_type` of a topic and of a broker in the config APIs.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Runs `work` on a blocking thread; a panic there (a bug) answers every entry
/// UNKNOWN_SERVER_ERROR instead of taking the connection down.
async fn blocking<T: Send + 'static>(
    entries: usize,
    work: impl FnOnce() -> Vec<Result<T, Refusal>> + Send + 'static,
) -> Vec<Result<T, Refusal>> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        (0..entries)
            .map(|_| {
                Err(Refusal::kafka(
                    ResponseError::UnknownServerError,
                    e.to_string(),
                ))
            })
            .collect()
    })
}

/// CreatePartitions (v0-3).
pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    version: i16,
) -> Reply {
    let dup = duplicated(req.topics.iter().map(|t| t.name.0.clone()));
    let mut plans: Vec<Result<(String, i32), Refusal>> = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        plans.push(if dup.contains(&t.name.0) {
            Err(Refusal::kafka(
                ResponseError::InvalidRequest,
                "duplicate topic in the request",
            ))
        } else if broker.cluster().is_some() && t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            Err(Refusal::kafka(
                ResponseError::InvalidReplicaAssignment,
                "explicit assignments for new partitions are not supported in a cluster yet: the controller places them",
            ))
        } else if let Some(a) = t.assignments.as_ref().filter(|a| !a.is_empty())
            && (a
                .iter()
                .any(|a| a.broker_ids.iter().any(|b| b.0 != broker.node_id))
                || (t.count >= 0
                    && broker.topic(&name).is_some_and(|x| {
                        a.len() as i64 != i64::from(t.count) - x.partitions.len() as i64
                    })))
        {
            Err(Refusal::kafka(
                ResponseError::InvalidReplicaAssignment,
                "assignments must name this broker only, one per partition added",
            ))
        } else {
            Ok((name, t.count))
        });
    }
    let validate_only = req.validate_only;
    let b = broker.clone();
    let entries = plans.len();
    let outcomes = if let Some(link) = broker.cluster() {
        let timeout = std::time::Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0))
            .clamp(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(30),
            );
        let mut out = Vec::with_capacity(plans.len());
        for p in plans {
            out.push(match p {
                Ok((name, count)) => link
                    .create_partitions(name, count, validate_only, timeout)
                    .await
                    .map(|()| 0)
                    .map_err(Refusal::from),
                Err(e) => Err(e),
            });
        }
        out
    } else {
        blocking(entries, move || {
            plans
                .into_iter()
                .map(|p| {
                    p.and_then(|(name, count)| {
                        b.add_partitions(&name, count, validate_only)
                            .map_err(Refusal::from)
                    })
                })
                .collect()
        })
        .await
    };
    let results = req
        .topics
        .iter()
        .zip(outcomes)
        .map(|(t, o)| {
            let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match o {
                Ok(_) => r,
                Err(e) => {
                    tracing::debug!(target: "strata::client", topic = %t.name.0, code = e.code, message = %e.message, "partitions not added");
                    r.with_error_code(e.code)
                        .with_error_message(Some(s(e.message)))
                }
            }
        })
        .collect();
    encode_body(
        &CreatePartitionsResponse::default().with_results(results),
        version,
    )
}

/// What a config change is for.
#[derive(Debug, Clone)]
enum Target {
    Topic(String),
    Broker(Scope),
}

/// A resource, the values it has now, and (a topic) its settings.
type Current = (Target, BTreeMap<String, String>, Option<TopicConfig>);

/// The resource a config change names, and the values it has now (a topic's overrides, or
/// the dynamic layer of the broker's scope), or why it cannot be changed.
fn target_of(broker: &Broker, resource_type: i8, name: &str) -> Result<Current, Refusal> {
    match resource_type {
        RESOURCE_TOPIC => match broker.topic(name) {
            Some(t) => Ok((
                Target::Topic(name.to_string()),
                t.config.overrides.clone(),
                Some(t.config.clone()),
            )),
            None => Err(Refusal::kafka(
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name:?} does not exist"),
            )),
        },
        RESOURCE_BROKER => {
            let scope = if name.is_empty() {
                Scope::Cluster
            } else if name == broker.node_id.to_string() {
                Scope::Broker
            } else {
                return Err(Refusal::kafka(
                    ResponseError::InvalidRequest,
                    format!("this is broker {}, not {name:?}", broker.node_id),
                ));
            };
            let file = broker.dynamic_file();
            let now = match scope {
                Scope::Cluster => file.cluster,
                Scope::Broker => file.broker,
            };
            Ok((Target::Broker(scope), now, None))
        }
        other => Err(Refusal::kafka(
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported"),
        )),
    }
}

/// A resource and the values it is to have, or why not.
type ConfigPlan = Result<(Target, BTreeMap<String, String>), Refusal>;

/// Applies the planned changes, one resource after the other, on a blocking thread.
async fn apply_configs(
    broker: &Arc<Broker>,
    plans: Vec<ConfigPlan>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    if let Some(link) = broker.cluster() {
        // A topic's configs change through the metadata log (checked here first); every
        // broker applies them from its image. Broker configs stay this broker's.
        let mut out = Vec::with_capacity(plans.len());
        for p in plans {
            out.push(match p {
                Err(e) => Err(e),
                Ok((Target::Topic(name), values)) => {
                    match broker.alter_topic_configs(&name, values.clone(), true) {
                        Err(e) => Err(Refusal::from(e)),
                        Ok(()) if validate_only => Ok(()),
                        Ok(()) => link
                            .set_topic_configs(name, values, std::time::Duration::from_secs(10))
                            .await
                            .map_err(Refusal::from),
                    }
                }
                Ok((Target::Broker(scope), values)) => {
                    let b = broker.clone();
                    blocking(1, move || {
                        vec![
                            b.alter_broker_configs(scope, values, validate_only)
                                .map_err(Refusal::from),
                        ]
                    })
                    .await
                    .pop()
                    .unwrap_or_else(|| {
                        Err(Refusal::kafka(
                            ResponseError::UnknownServerError,
                            "no result",
                        ))
                    })
                }
            });
        }
        return out;
    }
    let b = broker.clone();
    let entries = plans.len();
    blocking(entries, move || {
        plans
            .into_iter()
            .map(|p| {
                p.and_then(|(target, values)| {
                    match target {
                        Target::Topic(name) => b.alter_topic_configs(&name, values, validate_only),
                        Target::Broker(scope) => {
                            b.alter_broker_configs(scope, values, validate_only)
                        }
                    }
                    .map_err(Refusal::from)
                })
            })
            .collect()
    })
    .await
}

/// Duplicate resources in a request (INVALID_REQUEST each, as Kafka).
fn duplicate_resources<'a>(
    keys: impl Iterator<Item = (i8, &'a str)>,
) -> std::collections::HashSet<(i8, String)> {
    duplicated(keys.map(|(t, n)| (t, n.to_string())))
}

/// AlterConfigs (v0-2): the resource's overrides become exactly the ones given (a config not
/// named goes back to its default), as Kafka's legacy API does.
pub async fn alter_configs(broker: &Arc<Broker>, req: AlterConfigsRequest, version: i16) -> Reply {
    let dup = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let plans = req
        .resources
        .iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            if dup.contains(&(r.resource_type, name.clone())) {
                return Err(Refusal::kafka(
                    ResponseError::InvalidRequest,
                    "duplicate resource in the request",
                ));
            }
            let (target, _, _) = target_of(broker, r.resource_type, &name)?;
            let mut overrides = BTreeMap::new();
            for c in &r.configs {
                let Some(v) = &c.value else {
                    return Err(Refusal::kafka(
                        ResponseError::InvalidRequest,
                        format!("config {} has a null value", c.name.as_str()),
                    ));
                };
                if overrides
                    .insert(c.name.to_string(), v.to_string())
                    .is_some()
                {
                    return Err(Refusal::kafka(
                        ResponseError::InvalidRequest,
                        format!("config {} is named twice", c.name.as_str()),
                    ));
                }
            }
            Ok((target, overrides))
        })
        .collect();
    let outcomes = apply_configs(broker, plans, req.validate_only).await;
    let responses = req
        .resources
        .iter()
        .zip(outcomes)
        .map(|(r, o)| {
            let a = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match o {
                Ok(()) => a,
                Err(e) => a
                    .with_error_code(e.code)
                    .with_error_message(Some(s(e.message))),
            }
        })
        .collect();
    encode_body(
        &AlterConfigsResponse::default().with_responses(responses),
        version,
    )
}

/// IncrementalAlterConfigs (v0-1): SET (0), DELETE (1) on the current overrides; APPEND (2) and
/// SUBTRACT (3) on list configs (`cleanup.policy`, Strata's only one).
pub async fn incremental_alter_configs(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    version: i16,
) -> Reply {
    let dup = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let plans = req
        .resources
        .iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            if dup.contains(&(r.resource_type, name.clone())) {
                return Err(Refusal::kafka(
                    ResponseError::InvalidRequest,
                    "duplicate resource in the request",
                ));
            }
            let (target, mut overrides, current) = target_of(broker, r.resource_type, &name)?;
            let mut seen = std::collections::HashSet::new();
            for c in &r.configs {
                let key = c.name.to_string();
                if !seen.insert(key.clone()) {
                    return Err(Refusal::kafka(
                        ResponseError::InvalidRequest,
                        format!("config {key} is named twice"),
                    ));
                }
                let value = c.value.as_ref().map(|v| v.to_string());
                match c.config_operation {
                    0 => {
                        let Some(v) = value else {
                            return Err(Refusal::kafka(
                                ResponseError::InvalidRequest,
                                format!("SET of {key} has a null value"),
                            ));
                        };
                        overrides.insert(key, v);
                    }
                    1 => {
                        overrides.remove(&key);
                    }
                    op @ (2 | 3) => {
                        let Some(current) = current.as_ref().filter(|_| key == "cleanup.policy")
                        else {
                            return Err(Refusal::kafka(
                                ResponseError::InvalidConfig,
                                format!(
                                    "{} is not allowed on {key}: it is not a list config",
                                    if op == 2 { "APPEND" } else { "SUBTRACT" }
                                ),
                            ));
                        };
                        let (now, _) = current.value(&broker.topic_defaults(), &key);
                        let mut items: Vec<String> = now
                            .split(',')
                            .map(str::trim)
                            .filter(|x| !x.is_empty())
                            .map(String::from)
                            .collect();
                        for v in value.iter().flat_map(|v| v.split(',')).map(str::trim) {
                            if op == 2 && !items.iter().any(|x| x == v) {
                                items.push(v.to_string());
                            } else if op == 3 {
                                items.retain(|x| x != v);
                            }
                        }
                        overrides.insert(key, items.join(","));
                    }
                    other => {
                        return Err(Refusal::kafka(
                            ResponseError::InvalidRequest,
                            format!("unknown config operation {other}"),
                        ));
                    }
                }
            }
            Ok((target, overrides))
        })
        .collect();
    let outcomes = apply_configs(broker, plans, req.validate_only).await;
    let responses = req
        .resources
        .iter()
        .zip(outcomes)
        .map(|(r, o)| {
            let a = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match o {
                Ok(()) => a,
                Err(e) => a
                    .with_error_code(e.code)
                    .with_error_message(Some(s(e.message))),
            }
        })
        .collect();
    encode_body(
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
        version,
    )
}

/// DeleteRecords (v0-2): per partition, the log start offset moves up to the offset given
/// (-1: the high watermark), durably, and the answer is the new low watermark.
pub async fn delete_records(
    broker: &Arc<Broker>,
    req: DeleteRecordsRequest,
    version: i16,
) -> Reply {
    let dup_topics = duplicated(req.topics.iter().map(|t| t.name.0.clone()));
    let mut plans: Vec<Result<(String, i32, i64), Refusal>> = Vec::new();
    for t in &req.topics {
        let dup_parts = duplicated(t.partitions.iter().map(|p| p.partition_index));
        for p in &t.partitions {
            plans.push(
                if dup_topics.contains(&t.name.0) || dup_parts.contains(&p.partition_index) {
                    Err(Refusal::kafka(
                        ResponseError::InvalidRequest,
                        "duplicate partition in the request",
                    ))
                } else {
                    Ok((t.name.0.to_string(), p.partition_index, p.offset))
                },
            );
        }
    }
    let b = broker.clone();
    let entries = plans.len();
    let mut outcomes = blocking(entries, move || {
        plans
            .into_iter()
            .map(|p| {
                p.and_then(|(topic, partition, offset)| {
                    b.delete_records(&topic, partition, offset)
                        .map_err(Refusal::from)
                })
            })
            .collect()
    })
    .await
    .into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match outcomes.next() {
                        Some(Ok(low)) => r.with_low_watermark(low as i64),
                        Some(Err(e)) => {
                            tracing::debug!(target: "strata::client", topic = %t.name.0, partition = p.partition_index, code = e.code, message = %e.message, "records not deleted");
                            r.with_low_watermark(-1).with_error_code(e.code)
                        }
                        None => r
                            .with_low_watermark(-1)
                            .with_error_code(ResponseError::UnknownServerError.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    encode_body(
        &DeleteRecordsResponse::default().with_topics(topics),
        version,
    )
}
