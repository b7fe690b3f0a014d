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
    // v0: an empty list means all topics; v1+: null means all, empty means none. Names stay
    // the request's own bytes (StrBytes slices of the frame), copied nowhere.
    let wanted: Option<Vec<StrBytes>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().filter_map(|t| t.name.map(|n| n.0)).collect()),
    };
    let allow_create =
        (version < 4 || req.allow_auto_topic_creation) && broker.config.auto_create_topics();
    let mut topics = Vec::new();
    let names: Vec<StrBytes> = match wanted {
        None => {
            let mut all: Vec<StrBytes> =
                broker.topics().iter().map(|t| s(t.name.clone())).collect();
            all.extend(broker.damaged_topics().into_iter().map(|(n, _)| s(n)));
            all
        }
        // Each topic once, in the order first asked (Kafka answers a set of topics too).
        Some(w) => {
            let mut seen = std::collections::HashSet::new();
            w.into_iter().filter(|n| seen.insert(n.clone())).collect()
        }
    };
    // Topics to auto-create, created together on one blocking thread.
    let to_create: Vec<String> = if allow_create {
        names
            .iter()
            .filter(|n| {
                broker.topic(n).is_none()
                    && broker.damaged_topic(n).is_none()
                    && super::validate_topic_name(n).is_ok()
            })
            .map(|n| n.to_string())
            .collect()
    } else {
        Vec::new()
    };
    let mut created: std::collections::HashMap<String, ResponseError> =
        std::collections::HashMap::new();
    if !to_create.is_empty() {
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || {
            to_create
                .into_iter()
                .filter_map(|n| match b.create_topic(&n, -1, BTreeMap::new(), false) {
                    Ok(_) => None,
                    Err(e) if e.code == ResponseError::TopicAlreadyExists => None,
                    Err(e) => Some((n, e.code)),
                })
                .collect::<Vec<_>>()
        })
        .await
        {
            Ok(failed) => created.extend(failed),
            Err(e) => tracing::error!(error = %e, "topic creation task failed"),
        }
    }
    for name in names {
        let topic = broker.topic(&name);
        let mut error = ResponseError::UnknownTopicOrPartition;
        if topic.is_none() {
            if broker.damaged_topic(&name).is_some() {
                // Its metadata file is damaged: offline, like a partition whose log is.
                error = ResponseError::KafkaStorageError;
            } else if super::validate_topic_name(&name).is_err() {
                error = ResponseError::InvalidTopicException;
            } else if let Some(e) = created.get(name.as_str()) {
                error = *e;
            }
        }
        let mut t = MetadataResponseTopic::default().with_name(Some(TopicName(name)));
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
    // Up to PRODUCE_IN_FLIGHT partitions of the request are appended at once (concurrent
    // appends share fsyncs under fsync=always); a request naming thousands of partitions costs
    // no more threads, tasks or memory than that, and answers in the order asked.
    // One slot per partition asked: the index of its topic in the request, its index, its
    // outcome. Topic names stay the request's own bytes.
    type Slot = (usize, i32, Option<Result<super::Produced, ProduceError>>);
    let mut slots: Vec<Slot> = Vec::new();
    let mut names: Vec<TopicName> = Vec::with_capacity(req.topic_data.len());
    let mut flying: std::collections::VecDeque<(usize, tokio::task::JoinHandle<_>)> =
        std::collections::VecDeque::new();
    let joined = |r: Result<Result<super::Produced, ProduceError>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| {
            Err(ProduceError {
                code: ResponseError::UnknownServerError,
                message: e.to_string(),
            })
        })
    };
    for t in req.topic_data {
        let topic = broker.topic(&t.name.0);
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
                (None, _) => Some(ProduceError {
                    code: ResponseError::UnknownTopicOrPartition,
                    message: String::new(),
                }),
                (Some(_), None) => Some(ProduceError {
                    code: ResponseError::InvalidRecord,
                    message: String::new(),
                }),
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
                        tokio::spawn(b.produce_async(partition, config, records)),
                    ));
                    None
                }
            };
            slots.push((topic_slot, index, refused.map(Err)));
        }
        names.push(t.name);
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
        .map(|n| TopicProduceResponse::default().with_name(n))
        .collect();
    for (topic_slot, index, result) in slots {
        let result = result.unwrap_or_else(|| {
            Err(ProduceError {
                code: ResponseError::UnknownServerError,
                message: "no result".into(),
            })
        });
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
                tracing::debug!(target: "strata::client", partition = index, code = ?e.code, message = %e.message, "produce refused");
                r = r.with_error_code(code(e.code)).with_base_offset(-1);
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
                Step::Done(refused(index, code(ResponseError::InvalidRequest)))
            } else {
                match broker.partition(&name, index).map(|p| p.log()) {
                    None => {
                        Step::Done(refused(index, code(ResponseError::UnknownTopicOrPartition)))
                    }
                    Some(Err(e)) => Step::Done(refused(index, code(e.code))),
                    Some(Ok(log)) => match p.timestamp {
                        -2 => Step::Done(answered(index, -1, log.log_start_offset() as i64)),
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
                                refused(index, code(ResponseError::KafkaStorageError))
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

/// CreateTopics. Each entry is checked cheaply first (duplicates INVALID_REQUEST, invalid names,
/// replication, assignments, topics that exist); the topics left are created one after the
/// other on one blocking thread, each all or nothing.
pub async fn create_topics(broker: &Arc<Broker>, req: CreateTopicsRequest, version: i16) -> Reply {
    let dup = duplicated(req.topics.iter().map(|t| t.name.0.clone()));
    // Per entry: the partition count asked, then what to create (or the error).
    type Plan = Result<(String, i32, BTreeMap<String, String>), ProduceError>;
    let mut plans: Vec<(i32, Plan)> = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let mut partitions = t.num_partitions;
        let plan: Plan = if dup.contains(&t.name.0) {
            Err(ProduceError {
                code: ResponseError::InvalidRequest,
                message: "duplicate topic in the request".into(),
            })
        } else if let Err(m) = super::validate_topic_name(&name) {
            Err(ProduceError {
                code: ResponseError::InvalidTopicException,
                message: m,
            })
        } else if broker.topic(&name).is_some() {
            Err(ProduceError {
                code: ResponseError::TopicAlreadyExists,
                message: format!("topic {name:?} already exists"),
            })
        } else if !matches!(t.replication_factor, -1 | 1) {
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
            Ok((name, partitions, configs))
        };
        plans.push((partitions, plan));
    }
    let validate_only = req.validate_only;
    let b = broker.clone();
    let entries = plans.len();
    let outcomes: Vec<(i32, Result<Arc<Topic>, ProduceError>)> =
        tokio::task::spawn_blocking(move || {
            plans
                .into_iter()
                .map(|(partitions, plan)| {
                    let outcome = plan.and_then(|(name, partitions, configs)| {
                        b.create_topic(&name, partitions, configs, validate_only)
                    });
                    (partitions, outcome)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            (0..entries)
                .map(|_| {
                    let e = ProduceError {
                        code: ResponseError::UnknownServerError,
                        message: e.to_string(),
                    };
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
                tracing::debug!(target: "strata::client", topic = %t.name.0, code = ?e.code, message = %e.message, "topic creation refused");
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

/// Keys that occur more than once in a request's array (Kafka refuses every occurrence of a
/// duplicated topic with INVALID_REQUEST rather than acting on one of them).
pub fn duplicated<K: std::hash::Hash + Eq + Clone>(
    keys: impl IntoIterator<Item = K>,
) -> std::collections::HashSet<K> {
    let mut seen = std::collections::HashSet::new();
    let mut dup = std::collections::HashSet::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            dup.insert(k);
        }
    }
    dup
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
            None if version >= 6 => Some(code(ResponseError::UnknownTopicId)),
            None => Some(code(ResponseError::UnknownTopicOrPartition)),
            Some(n) if dup_names.contains(&n.0) || dup_ids.contains(id) => {
                Some(code(ResponseError::InvalidRequest))
            }
            Some(n) if *given && super::validate_topic_name(&n.0).is_err() => {
                Some(code(ResponseError::InvalidTopicException))
            }
            Some(n) if broker.topic(&n.0).is_none() && broker.damaged_topic(&n.0).is_none() => {
                Some(code(ResponseError::UnknownTopicOrPartition))
            }
            Some(n) => {
                doomed.push(n.0.to_string());
                None
            }
        });
    }
    let deleted: std::collections::HashMap<String, ProduceError> = if doomed.is_empty() {
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
                    let err = ProduceError {
                        code: ResponseError::UnknownServerError,
                        message: e.to_string(),
                    };
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
                    .map(|e| (code(e.code), Some(e.message.clone()))),
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

/// One DescribeConfigs entry: key, value, source, and the broker setting it defaults to.
type ConfigEntry = (String, String, i8, Option<(String, String, i8)>);

/// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// DescribeConfigs. A resource named twice would be described twice (a few dozen entries for a
/// few bytes asked): every occurrence of a duplicate gets INVALID_REQUEST instead.
pub fn describe_configs(broker: &Arc<Broker>, req: DescribeConfigsRequest, version: i16) -> Reply {
    let dup = duplicated(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.clone())),
    );
    let mut results = Vec::new();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        // (key, value, source, synonym: (broker key, value, source))
        let entries: Result<Vec<ConfigEntry>, (ResponseError, String)> = match res.resource_type {
            _ if dup.contains(&(res.resource_type, res.resource_name.clone())) => Err((
                ResponseError::InvalidRequest,
                "duplicate resource in the request".into(),
            )),
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
