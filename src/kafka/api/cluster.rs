//! What the broker tells about itself and its partitions: DescribeCluster, DescribeLogDirs,
//! DescribeProducers and OffsetForLeaderEpoch.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::*;

use super::{Refusal, s};
use crate::broker::Broker;
use crate::kafka::reply::{Reply, encode_body};

/// `cluster_authorized_operations` when they were not asked for (Kafka's INT32_MIN).
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

/// DescribeCluster (v0-2): this broker, which is also the controller. Asking for the
/// controllers' endpoints (v1+, endpoint type 2) is UNSUPPORTED_ENDPOINT_TYPE, as from a Kafka
/// broker.
pub fn describe_cluster(broker: &Arc<Broker>, req: DescribeClusterRequest, version: i16) -> Reply {
    let mut r = DescribeClusterResponse::default()
        .with_cluster_id(s(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.node_id))
        .with_cluster_authorized_operations(OPERATIONS_NOT_ASKED);
    if version >= 1 {
        r = r.with_endpoint_type(req.endpoint_type);
    }
    if version >= 1 && req.endpoint_type != 1 {
        r = r
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(s(format!(
                "endpoint type {} is not supported: this broker answers for brokers (1)",
                req.endpoint_type
            ))))
            .with_controller_id(BrokerId(-1));
    } else {
        let (host, port) = broker
            .config
            .advertised()
            .unwrap_or_else(|_| ("127.0.0.1".into(), 9092));
        r = match broker.cluster() {
            // Every registered broker; v2 says which are fenced, older versions list the live.
            Some(link) => {
                let image = link.image();
                if !image.cluster_id.is_empty() {
                    r = r.with_cluster_id(s(image.cluster_id.clone()));
                }
                r.with_brokers(
                    image
                        .brokers
                        .values()
                        .filter(|b| version >= 2 || !b.fenced)
                        .map(|b| {
                            let d = DescribeClusterBroker::default()
                                .with_broker_id(BrokerId(b.id))
                                .with_host(s(b.host.clone()))
                                .with_port(i32::from(b.port));
                            if version >= 2 {
                                d.with_is_fenced(b.fenced)
                            } else {
                                d
                            }
                        })
                        .collect(),
                )
            }
            None => r.with_brokers(vec![
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(broker.node_id))
                    .with_host(s(host))
                    .with_port(i32::from(port)),
            ]),
        };
    }
    encode_body(&r, version)
}

/// DescribeLogDirs (v1-4): the one data directory, each asked partition's size on disk (offset
/// lag 0: there are no future replicas), and (v4) the file system's total and usable bytes.
/// Unknown and offline partitions are left out, as Kafka leaves out those not in the directory.
pub async fn describe_log_dirs(
    broker: &Arc<Broker>,
    req: DescribeLogDirsRequest,
    version: i16,
) -> Reply {
    let b = broker.clone();
    let result = tokio::task::spawn_blocking(move || {
        let wanted: Vec<(String, Vec<i32>)> = match req.topics {
            None => b
                .topics()
                .iter()
                .map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect()))
                .collect(),
            Some(ts) => ts
                .into_iter()
                .map(|t| (t.topic.0.to_string(), t.partitions))
                .collect(),
        };
        let topics: Vec<DescribeLogDirsTopic> = wanted
            .into_iter()
            .filter_map(|(name, partitions)| {
                let parts: Vec<DescribeLogDirsPartition> = partitions
                    .into_iter()
                    .filter_map(|p| {
                        let log = b.partition(&name, p)?.log().ok()?;
                        Some(
                            DescribeLogDirsPartition::default()
                                .with_partition_index(p)
                                .with_partition_size(log.size_bytes() as i64),
                        )
                    })
                    .collect();
                (!parts.is_empty()).then(|| {
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(s(name)))
                        .with_partitions(parts)
                })
            })
            .collect();
        let dir = b.config.data_dir();
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let mut r = DescribeLogDirsResult::default()
            .with_log_dir(s(dir.display().to_string()))
            .with_topics(topics);
        if version >= 4 {
            let (total, usable) = strata_storage::io::space(&dir).unwrap_or((0, 0));
            r = r
                .with_total_bytes(total as i64)
                .with_usable_bytes(usable as i64);
        }
        r
    })
    .await;
    let r = match result {
        Ok(r) => DescribeLogDirsResponse::default().with_results(vec![r]),
        Err(e) => {
            let mut r = DescribeLogDirsResponse::default();
            if version >= 3 {
                r = r.with_error_code(ResponseError::UnknownServerError.code());
            }
            tracing::error!(error = %e, "describing the log directory failed");
            r
        }
    };
    encode_body(&r, version)
}

/// DescribeProducers (v0): the idempotent producers each partition remembers (no transactions:
/// coordinator epoch and transaction start are -1).
pub fn describe_producers(
    broker: &Arc<Broker>,
    req: DescribeProducersRequest,
    version: i16,
) -> Reply {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    let r = PartitionResponse::default().with_partition_index(p);
                    let Some(part) = broker.partition(&t.name.0, p) else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if let Err(e) = part.log() {
                        let e = Refusal::from(e);
                        return r
                            .with_error_code(e.code)
                            .with_error_message(Some(s(e.message)));
                    }
                    r.with_active_producers(
                        part.producers()
                            .into_iter()
                            .map(|v| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(v.producer_id))
                                    .with_producer_epoch(i32::from(v.epoch))
                                    .with_last_sequence(v.batches.last().map_or(-1, |b| b.last_seq))
                                    .with_last_timestamp(v.last_timestamp)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(-1)
                            })
                            .collect(),
                    )
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    encode_body(
        &DescribeProducersResponse::default().with_topics(topics),
        version,
    )
}

/// OffsetForLeaderEpoch (v2-4): where each asked leader epoch ends (clients use it to detect a
/// truncated log after a leader change; KIP-101, KIP-279, KIP-320).
pub fn offset_for_leader_epoch(
    broker: &Arc<Broker>,
    req: OffsetForLeaderEpochRequest,
    version: i16,
) -> Reply {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = EpochEndOffset::default().with_partition(p.partition);
                    match broker.end_offset_for_epoch(
                        &t.topic.0,
                        p.partition,
                        p.current_leader_epoch,
                        p.leader_epoch,
                    ) {
                        Ok((epoch, end)) => r.with_leader_epoch(epoch).with_end_offset(end),
                        Err(e) => r
                            .with_error_code(Refusal::from(e).code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    encode_body(
        &OffsetForLeaderEpochResponse::default().with_topics(topics),
        version,
    )
}
