//! One function per Kafka API: wire types in, wire types out, logic in [`super::Broker`].
//!
//! Rule for every response: a field is set only at the versions that define it (the encoder
//! refuses a non-default value in a version that lacks the field).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use strata_storage::log::read::ReadSlice;

use ::uuid::Uuid;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;

use super::config::{BROKER_KEYS, TOPIC_KEYS};
use super::fetch_encode::{self, FetchOut, PartitionOut, TopicOut};
use super::server::{Chunk, Reply, SUPPORTED, encode_body};
use super::{Broker, ProduceError, Topic};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect()
}

pub fn api_versions(version: i16) -> Reply {
    encode_body(
        &ApiVersionsResponse::default().with_api_keys(api_list()),
        version,
    )
}

/// ApiVersions at a version we do not know: error 35 in the v0 body layout (header v0 too).
pub fn api_versions_unsupported() -> Reply {
    encode_body(
        &ApiVersionsResponse::default()
            .with_error_code(code(ResponseError::UnsupportedVersion))
            .with_api_keys(api_list()),
        0,
    )
}

fn uuid(id: u128) -> Uuid {
    Uuid::from_u128(id)
}

pub async fn metadata(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> Reply {
    let (host, port) = broker
        .config
        .advertised()
        .unwrap_or_else(|_| ("127.0.0.1".into(), 9092));
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let allow_create =
        (version < 4 || req.allow_auto_topic_creation) && broker.config.auto_create_topics();
    let mut topics = Vec::new();
    let names: Vec<String> = match &wanted {
        None => {
            let mut all: Vec<String> = broker.topics().iter().map(|t| t.name.clone()).collect();
            all.extend(broker.damaged_topics().into_iter().map(|(n, _)| n));
            all
        }
        Some(w) => w.clone(),
    };
    for name in names {
        let mut topic = broker.topic(&name);
        let mut error = ResponseError::UnknownTopicOrPartition;
        if topic.is_none() {
            if broker.damaged_topic(&name).is_some() {
                // Its metadata file is damaged: offline, like a partition whose log is.
                error = ResponseError::KafkaStorageError;
            } else if let Err(m) = super::validate_topic_name(&name) {
                tracing::debug!(topic = %name, reason = %m, "invalid topic name in metadata request");
                error = ResponseError::InvalidTopicException;
            } else if allow_create {
                let b = broker.clone();
                let n = name.clone();
                match tokio::task::spawn_blocking(move || {
                    b.create_topic(&n, -1, BTreeMap::new(), false)
                })
                .await
                {
                    Ok(Ok(t)) => topic = Some(t),
                    Ok(Err(e)) if e.code == ResponseError::TopicAlreadyExists => {
                        topic = broker.topic(&name)
                    }
                    Ok(Err(e)) => error = e.code,
                    Err(e) => tracing::error!(error = %e, "topic creation task failed"),
                }
            }
        }
        let mut t = MetadataResponseTopic::default().with_name(Some(TopicName(s(name.clone()))));
        match topic {
            None => t = t.with_error_code(code(error)),
            Some(topic) => {
                if version >= 10 {
                    t = t.with_topic_id(uuid(topic.id));
                }
                t = t.with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut mp = MetadataResponsePartition::default()
                                .with_partition_index(p.index)
                                .with_leader_id(BrokerId(broker.node_id))
                                .with_replica_nodes(vec![BrokerId(broker.node_id)])
                                .with_isr_nodes(vec![BrokerId(broker.node_id)]);
                            if version >= 7 {
                                mp = mp.with_leader_epoch(0);
                            }
                            // An offline partition (damaged, or its disk failed or filled), as
                            // Kafka lists the partitions of an offline log directory.
                            if p.offline().is_some() {
                                mp = mp.with_error_code(code(ResponseError::KafkaStorageError));
                                if version >= 5 {
                                    mp = mp.with_offline_replicas(vec![BrokerId(broker.node_id)]);
                                }
                            }
                            mp
                        })
                        .collect(),
                );
            }
        }
        topics.push(t);
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.node_id))
                .with_host(s(host))
                .with_port(i32::from(port)),
        ])
        .with_topics(topics);
    if version >= 1 {
        resp = resp.with_controller_id(BrokerId(broker.node_id));
    }
    if version >= 2 {
        resp = resp.with_cluster_id(Some(s(broker.cluster_id.clone())));
    }
    encode_body(&resp, version)
}

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
    // Every partition's batch is appended concurrently (group commit under fsync=always).
    let mut pending = Vec::new();
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let topic = broker.topic(&name);
        for p in t.partition_data {
            let index = p.index;
            let task = match (
                &topic,
                topic.as_ref().and_then(|t| {
                    usize::try_from(index)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                }),
            ) {
                (Some(topic), Some(partition)) => {
                    let b = broker.clone();
                    let partition = partition.clone();
                    let config = topic.config.clone();
                    let records = p.records;
                    Some(tokio::task::spawn_blocking(move || match records {
                        Some(r) => b.produce(&partition, &config, r),
                        None => Err(ProduceError {
                            code: ResponseError::InvalidRecord,
                            message: "null records".into(),
                        }),
                    }))
                }
                _ => None,
            };
            pending.push((name.clone(), index, task));
        }
    }
    let mut by_topic: BTreeMap<String, Vec<PartitionProduceResponse>> = BTreeMap::new();
    for (name, index, task) in pending {
        let result = match task {
            None => Err(ProduceError {
                code: ResponseError::UnknownTopicOrPartition,
                message: format!("unknown topic or partition {name}-{index}"),
            }),
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(ProduceError {
                    code: ResponseError::UnknownServerError,
                    message: e.to_string(),
                })
            }),
        };
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
                tracing::debug!(topic = %name, partition = index, code = ?e.code, message = %e.message, "produce refused");
                r = r.with_error_code(code(e.code)).with_base_offset(-1);
                if version >= 8 {
                    r = r.with_error_message(Some(s(e.message)));
                }
            }
        }
        by_topic.entry(name).or_default().push(r);
    }
    if acks == 0 {
        return Reply::Nothing;
    }
    let resp = ProduceResponse::default().with_responses(
        by_topic
            .into_iter()
            .map(|(name, partitions)| {
                TopicProduceResponse::default()
                    .with_name(TopicName(s(name)))
                    .with_partition_responses(partitions)
            })
            .collect(),
    );
    encode_body(&resp, version)
}

fn produce_error_all(req: &ProduceRequest, version: i16, e: ResponseError, acks: i16) -> Reply {
    if acks == 0 {
        return Reply::Nothing;
    }
    let resp = ProduceResponse::default().with_responses(
        req.topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(code(e))
                                    .with_base_offset(-1)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    encode_body(&resp, version)
}

/// The longest a fetch may park; clients ask for ~500 ms.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn fetch(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    mut shutdown: watch::Receiver<bool>,
) -> Reply {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    // Woken only by appends to the partitions asked for (an unknown one is answered at once).
    let mut appended: Vec<watch::Receiver<u64>> = req
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.topic.0.to_string();
            t.partitions
                .iter()
                .filter_map(move |p| broker.partition(&name, p.partition))
        })
        .map(|p| p.subscribe_appends())
        .collect();
    loop {
        // A deleted partition's channel is closed: stop waiting on it (it would wake at once,
        // forever, if a topic of the same name were created meanwhile).
        appended.retain(|r| r.has_changed().is_ok());
        for r in &mut appended {
            r.borrow_and_update();
        }
        let (out, bytes, errors, cold) = build_fetch(broker, &req, version);
        let expired = tokio::time::Instant::now() >= deadline;
        // min_bytes 0 answers at once, as in Kafka; otherwise wait for that much data.
        if bytes >= min_bytes || errors || expired || *shutdown.borrow() {
            if !cold.is_empty() {
                // The records go out with `sendfile`, which reads pages that are not in
                // memory from the disk, synchronously, on the network thread: every
                // connection it serves would wait (a consumer replaying old data). Read them
                // in on a blocking thread first. Pages in memory need nothing: `sendfile`
                // copies them without mapping them, so it never waits for the page lock that
                // writeback holds (a fault through the mapping did, for 0.7-1.1 s while a
                // segment was being fsynced).
                let _ = tokio::task::spawn_blocking(move || cold.iter().for_each(|s| s.prefault()))
                    .await;
            }
            return Reply::Body(fetch_encode::encode(&out, version));
        }
        // Long poll: park until something is appended, the wait expires or the broker stops.
        tokio::select! {
            _ = any_changed(&mut appended) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
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

/// Reads every requested partition. Returns the response, the record bytes in it, whether any
/// partition has an error (errors are answered at once, as Kafka does), and the record slices
/// in it that are not all in memory (to be read in off the runtime threads before `sendfile`).
fn build_fetch(
    broker: &Broker,
    req: &FetchRequest,
    version: i16,
) -> (FetchOut, usize, bool, Vec<ReadSlice>) {
    let mut cold = Vec::new();
    let mut budget = if version >= 3 && req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut errors = false;
    let read_committed = req.isolation_level == 1;
    let mut topics = Vec::new();
    for t in &req.topics {
        let name = t.topic.0.to_string();
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let mut out = PartitionOut {
                partition_index: p.partition,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                preferred_read_replica: -1,
                aborted_transactions: read_committed.then(Vec::new),
                ..PartitionOut::default()
            };
            match broker.partition(&name, p.partition).map(|part| part.log()) {
                None => {
                    out.error_code = code(ResponseError::UnknownTopicOrPartition);
                    errors = true;
                }
                Some(Err(e)) => {
                    out.error_code = code(e.code);
                    errors = true;
                }
                Some(Ok(log)) => {
                    let hw = log.log_end_offset() as i64;
                    let start = log.log_start_offset() as i64;
                    out.high_watermark = hw;
                    out.last_stable_offset = hw;
                    out.log_start_offset = start;
                    if p.fetch_offset < start || p.fetch_offset > hw {
                        out.error_code = code(ResponseError::OffsetOutOfRange);
                        errors = true;
                    } else {
                        // At least one whole batch for the first partition with data, even past
                        // the limits (KIP-74); later partitions only within what is left.
                        let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
                        if limit > 0 || total == 0 {
                            match log.read(p.fetch_offset as u64, limit.max(1)) {
                                Ok(slice)
                                    if !slice.is_empty()
                                        && (total == 0 || slice.len() <= budget) =>
                                {
                                    total += slice.len();
                                    budget = budget.saturating_sub(slice.len());
                                    if !slice.is_resident() {
                                        cold.push(slice.clone());
                                    }
                                    out.records = Some(Chunk::File(slice));
                                }
                                Ok(_) => out.records = Some(Chunk::Mem(Bytes::new())),
                                Err(strata_storage::Error::OffsetOutOfRange { .. }) => {
                                    out.error_code = code(ResponseError::OffsetOutOfRange);
                                    errors = true;
                                }
                                Err(e) => {
                                    tracing::error!(topic = %name, partition = p.partition, error = %e, "read failed");
                                    out.error_code = code(ResponseError::KafkaStorageError);
                                    errors = true;
                                }
                            }
                        } else {
                            out.records = Some(Chunk::Mem(Bytes::new()));
                        }
                    }
                }
            }
            if out.records.is_none() {
                out.records = Some(Chunk::Mem(Bytes::new()));
            }
            partitions.push(out);
        }
        topics.push(TopicOut { name, partitions });
    }
    (
        FetchOut {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics,
        },
        total,
        errors,
        cold,
    )
}

pub async fn list_offsets(broker: &Arc<Broker>, req: ListOffsetsRequest, version: i16) -> Reply {
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            match broker.partition(&name, p.partition_index).map(|p| p.log()) {
                None => r = r.with_error_code(code(ResponseError::UnknownTopicOrPartition)),
                Some(Err(e)) => r = r.with_error_code(code(e.code)),
                Some(Ok(log)) => {
                    let ts = p.timestamp;
                    let found = tokio::task::spawn_blocking(
                        move || -> strata_storage::Result<(i64, i64)> {
                            Ok(match ts {
                                -2 => (-1, log.log_start_offset() as i64),
                                -1 => (-1, log.log_end_offset() as i64),
                                -3 => match log.max_timestamp_offset()? {
                                    Some((t, o)) => (t, o as i64),
                                    None => (-1, -1),
                                },
                                t if t >= 0 => match log.offset_for_timestamp(t)? {
                                    Some(o) => (t, o as i64),
                                    None => (-1, -1),
                                },
                                _ => (-1, -1),
                            })
                        },
                    )
                    .await;
                    match found {
                        Ok(Ok((t, o))) => {
                            r = r.with_timestamp(t).with_offset(o);
                            if version >= 4 {
                                r = r.with_leader_epoch(0);
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::error!(topic = %name, error = %e, "list offsets failed");
                            r = r.with_error_code(code(ResponseError::KafkaStorageError));
                        }
                        Err(_) => r = r.with_error_code(code(ResponseError::UnknownServerError)),
                    }
                }
            }
            partitions.push(r);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(s(name)))
                .with_partitions(partitions),
        );
    }
    encode_body(&ListOffsetsResponse::default().with_topics(topics), version)
}

pub fn init_producer_id(broker: &Arc<Broker>, req: InitProducerIdRequest, version: i16) -> Reply {
    let mut resp = InitProducerIdResponse::default();
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        // Transactions are not implemented: refuse clearly rather than pretend.
        resp = resp
            .with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        return encode_body(&resp, version);
    }
    // KIP-360: an idempotent producer may ask to bump its epoch.
    if version >= 3
        && req.producer_id.0 >= 0
        && req.producer_epoch >= 0
        && req.producer_epoch < i16::MAX - 1
    {
        resp = resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
        return encode_body(&resp, version);
    }
    match broker.allocate_producer_id() {
        Ok(id) => resp = resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp = resp
                .with_error_code(code(ResponseError::KafkaStorageError))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
    }
    encode_body(&resp, version)
}

fn topic_configs(broker: &Broker, topic: &Topic) -> Vec<(String, String, bool)> {
    TOPIC_KEYS
        .iter()
        .map(|(k, _)| {
            let (v, overridden) = topic.config.value(&broker.config, k);
            (k.to_string(), v, overridden)
        })
        .collect()
}

pub async fn create_topics(broker: &Arc<Broker>, req: CreateTopicsRequest, version: i16) -> Reply {
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        let mut partitions = t.num_partitions;
        let outcome: Result<Arc<Topic>, ProduceError> = if !matches!(t.replication_factor, -1 | 1) {
            Err(ProduceError {
                code: ResponseError::InvalidReplicationFactor,
                message: format!(
                    "replication factor {} is not available: Strata runs one broker",
                    t.replication_factor
                ),
            })
        } else if !t.assignments.is_empty()
            && (t.num_partitions != -1
                || t.assignments
                    .iter()
                    .any(|a| a.broker_ids.iter().any(|b| b.0 != broker.node_id)))
        {
            Err(ProduceError {
                code: ResponseError::InvalidReplicaAssignment,
                message: "replica assignments may only name this broker, with num_partitions -1"
                    .into(),
            })
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
            let b = broker.clone();
            let n = name.clone();
            let validate_only = req.validate_only;
            tokio::task::spawn_blocking(move || {
                b.create_topic(&n, partitions, configs, validate_only)
            })
            .await
            .unwrap_or_else(|e| {
                Err(ProduceError {
                    code: ResponseError::UnknownServerError,
                    message: e.to_string(),
                })
            })
        };
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
                                .map(|(k, v, overridden)| {
                                    CreatableTopicConfigs::default()
                                        .with_name(s(k))
                                        .with_value(Some(s(v)))
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
                r = r.with_error_code(code(e.code));
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

pub async fn delete_topics(broker: &Arc<Broker>, req: DeleteTopicsRequest, version: i16) -> Reply {
    let mut targets: Vec<(Option<String>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    targets.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut responses = Vec::new();
    for (name, id) in targets {
        let name = name.or_else(|| {
            broker
                .topics()
                .into_iter()
                .find(|t| !id.is_nil() && uuid(t.id) == id)
                .map(|t| t.name.clone())
        });
        let mut r = DeletableTopicResult::default();
        if version >= 6 {
            r = r.with_topic_id(id);
        }
        let result = match &name {
            Some(n) => {
                let b = broker.clone();
                let n = n.clone();
                tokio::task::spawn_blocking(move || b.delete_topic(&n))
                    .await
                    .unwrap_or_else(|e| {
                        Err(ProduceError {
                            code: ResponseError::UnknownServerError,
                            message: e.to_string(),
                        })
                    })
            }
            None => Err(ProduceError {
                code: if version >= 6 {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                },
                message: format!("no topic with id {id}"),
            }),
        };
        r = r.with_name(name.map(|n| TopicName(s(n))));
        if let Err(e) = result {
            r = r.with_error_code(code(e.code));
            if version >= 5 {
                r = r.with_error_message(Some(s(e.message)));
            }
        }
        responses.push(r);
    }
    encode_body(
        &DeleteTopicsResponse::default().with_responses(responses),
        version,
    )
}

/// One DescribeConfigs entry: key, value, source, and the broker setting it defaults to.
type ConfigEntry = (String, String, i8, Option<(String, String, i8)>);

/// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub fn describe_configs(broker: &Arc<Broker>, req: DescribeConfigsRequest, version: i16) -> Reply {
    let mut results = Vec::new();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        // (key, value, source, synonym: (broker key, value, source))
        let entries: Result<Vec<ConfigEntry>, (ResponseError, String)> = match res.resource_type {
            2 => match broker.topic(&name) {
                Some(topic) => Ok(TOPIC_KEYS
                    .iter()
                    .map(|(k, bk)| {
                        let (v, overridden) = topic.config.value(&broker.config, k);
                        let broker_source = if broker.config.is_explicit(bk) {
                            SOURCE_STATIC_BROKER
                        } else {
                            SOURCE_DEFAULT
                        };
                        let source = if overridden {
                            SOURCE_TOPIC
                        } else {
                            broker_source
                        };
                        let syn = (!bk.is_empty()).then(|| {
                            (
                                bk.to_string(),
                                broker.config.get(bk).to_string(),
                                broker_source,
                            )
                        });
                        (k.to_string(), v, source, syn)
                    })
                    .collect()),
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                )),
            },
            4 if name.is_empty() || name == broker.node_id.to_string() => Ok(BROKER_KEYS
                .iter()
                .map(|(k, _, _)| {
                    let source = if broker.config.is_explicit(k) {
                        SOURCE_STATIC_BROKER
                    } else {
                        SOURCE_DEFAULT
                    };
                    (
                        k.to_string(),
                        broker.config.get(k).to_string(),
                        source,
                        None,
                    )
                })
                .collect()),
            4 => Err((
                ResponseError::InvalidRequest,
                format!("this is broker {}, not {name}", broker.node_id),
            )),
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        match entries {
            Err((e, m)) => {
                r = r.with_error_code(code(e)).with_error_message(Some(s(m)));
            }
            Ok(entries) => {
                // Null asks for every key; so does an empty list (clients differ in how they say "all").
                let keys: Option<Vec<String>> = res
                    .configuration_keys
                    .filter(|k| !k.is_empty())
                    .map(|k| k.iter().map(|k| k.to_string()).collect());
                let configs = entries
                    .into_iter()
                    .filter(|(k, ..)| keys.as_ref().is_none_or(|w| w.contains(k)))
                    .map(|(k, v, source, syn)| {
                        let mut c = DescribeConfigsResourceResult::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                            .with_read_only(res.resource_type == 4);
                        {
                            c = c.with_config_source(source);
                            if req.include_synonyms
                                && let Some((bk, bv, bs)) = syn
                            {
                                c = c.with_synonyms(vec![
                                    DescribeConfigsSynonym::default()
                                        .with_name(s(bk))
                                        .with_value(Some(s(bv)))
                                        .with_source(bs),
                                ]);
                            }
                        }
                        if version >= 3 {
                            c = c.with_config_type(0);
                        }
                        c
                    })
                    .collect();
                r = r.with_configs(configs);
            }
        }
        results.push(r);
    }
    encode_body(
        &DescribeConfigsResponse::default().with_results(results),
        version,
    )
}
