//! Metadata: brokers, topics and partitions (offline ones with their error).

use std::sync::Arc;

use kafka_protocol::messages::*;

use super::{code, kafka_code, s, uuid};
use crate::broker::Broker;
use crate::kafka::reply::{Reply, encode_body};
use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use crate::broker::error::ErrorKind;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::protocol::StrBytes;

pub async fn metadata(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> Reply {
    if let Some(link) = broker.cluster() {
        return cluster_metadata(broker, link, req, version).await;
    }
    let (host, port) = broker
        .config
        .advertised()
        .unwrap_or_else(|_| ("127.0.0.1".into(), 9092));
    // v0: an empty list means all topics; v1+: null means all, empty means none. Names stay
    // the request's own bytes (StrBytes slices of the frame), copied nowhere.
    // v10+ may name a topic by id instead (name null; librdkafka's KIP-848 consumer does, to
    // learn the topics of its assignment): found, it is answered as if named; an id no topic
    // has is UNKNOWN_TOPIC_ID.
    let mut unknown_ids: Vec<::uuid::Uuid> = Vec::new();
    let wanted: Option<Vec<StrBytes>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| match t.name {
                    Some(n) => Some(n.0),
                    None if version >= 10 && !t.topic_id.is_nil() => {
                        match broker.topic_by_id(t.topic_id.as_u128()) {
                            Some(topic) => Some(s(topic.name.clone())),
                            None => {
                                unknown_ids.push(t.topic_id);
                                None
                            }
                        }
                    }
                    None => None,
                })
                .collect(),
        ),
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
                    && crate::broker::validate_topic_name(n).is_ok()
            })
            .map(|n| n.to_string())
            .collect()
    } else {
        Vec::new()
    };
    let mut created: std::collections::HashMap<String, ErrorKind> =
        std::collections::HashMap::new();
    if !to_create.is_empty() {
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || {
            to_create
                .into_iter()
                .filter_map(|n| match b.create_topic(&n, -1, BTreeMap::new(), false) {
                    Ok(_) => None,
                    Err(e) if e.kind == ErrorKind::TopicAlreadyExists => None,
                    Err(e) => Some((n, e.kind)),
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
        let mut error = ErrorKind::UnknownTopicOrPartition;
        if topic.is_none() {
            if broker.damaged_topic(&name).is_some() {
                // Its metadata file is damaged: offline, like a partition whose log is.
                error = ErrorKind::Storage;
            } else if crate::broker::validate_topic_name(&name).is_err() {
                error = ErrorKind::InvalidTopic;
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
                                mp = mp.with_leader_epoch(
                                    crate::broker::admin::SINGLE_BROKER_LEADER_EPOCH,
                                );
                            }
                            // An offline partition (damaged, or its disk failed or filled), as
                            // Kafka lists the partitions of an offline log directory.
                            if p.offline().is_some() {
                                mp = mp
                                    .with_error_code(kafka_code(ResponseError::KafkaStorageError));
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
    for id in unknown_ids {
        topics.push(
            MetadataResponseTopic::default()
                .with_name(None)
                .with_topic_id(id)
                .with_error_code(code(ErrorKind::UnknownTopicId)),
        );
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

/// Metadata in a cluster: every live broker, and each partition's leader, replicas and ISR,
/// from the metadata image this node has applied (as a KRaft broker answers from its
/// `MetadataImage`). Auto-creation goes through the controller.
async fn cluster_metadata(
    broker: &Arc<Broker>,
    link: &Arc<crate::cluster::link::Link>,
    req: MetadataRequest,
    version: i16,
) -> Reply {
    use crate::cluster::controller::OFFSETS_TOPIC;
    use crate::cluster::image::NO_LEADER;
    let mut image = link.image();
    let mut unknown_ids: Vec<::uuid::Uuid> = Vec::new();
    let wanted: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| match t.name {
                    Some(n) => Some(n.0.to_string()),
                    None if version >= 10 && !t.topic_id.is_nil() => {
                        let id = format!("{:032x}", t.topic_id.as_u128());
                        match image.topics.values().find(|x| x.id == id) {
                            Some(x) => Some(x.name.clone()),
                            None => {
                                unknown_ids.push(t.topic_id);
                                None
                            }
                        }
                    }
                    None => None,
                })
                .collect(),
        ),
    };
    let allow_create =
        (version < 4 || req.allow_auto_topic_creation) && broker.config.auto_create_topics();
    let names: Vec<String> = match wanted {
        None => image
            .topics
            .keys()
            .filter(|n| n.as_str() != OFFSETS_TOPIC)
            .cloned()
            .collect(),
        Some(w) => {
            let mut seen = std::collections::HashSet::new();
            w.into_iter().filter(|n| seen.insert(n.clone())).collect()
        }
    };
    let mut failed: std::collections::HashMap<String, ErrorKind> = std::collections::HashMap::new();
    if allow_create {
        let to_create: Vec<crate::cluster::rpc::NewTopic> = names
            .iter()
            .filter(|n| {
                !image.topics.contains_key(n.as_str())
                    && crate::broker::validate_topic_name(n).is_ok()
            })
            .map(|n| crate::cluster::rpc::NewTopic {
                name: n.clone(),
                partitions: -1,
                replication_factor: -1,
                assignments: Vec::new(),
                configs: BTreeMap::new(),
            })
            .collect();
        if !to_create.is_empty() {
            for (n, r) in link
                .create_topics(to_create, false, std::time::Duration::from_secs(5))
                .await
            {
                match r {
                    Ok(()) => {}
                    Err(e) if e.kind == ErrorKind::TopicAlreadyExists => {}
                    // Kafka answers LEADER_NOT_AVAILABLE while a topic is being created.
                    Err(e) if e.kind == ErrorKind::NotController => {
                        failed.insert(n, ErrorKind::LeaderNotAvailable);
                    }
                    Err(e) => {
                        failed.insert(n, e.kind);
                    }
                }
            }
            image = link.image();
        }
    }
    let mut topics = Vec::new();
    for name in names {
        let mut t = MetadataResponseTopic::default().with_name(Some(TopicName(s(name.clone()))));
        let Some(info) = image.topics.get(&name) else {
            let error = if crate::broker::validate_topic_name(&name).is_err() {
                ErrorKind::InvalidTopic
            } else {
                failed
                    .get(&name)
                    .copied()
                    .unwrap_or(ErrorKind::UnknownTopicOrPartition)
            };
            topics.push(t.with_error_code(code(error)));
            continue;
        };
        if version >= 10 {
            t = t.with_topic_id(uuid(info.id_value()));
        }
        if version >= 1 && name == OFFSETS_TOPIC {
            t = t.with_is_internal(true);
        }
        let local = broker.topic(&name).filter(|l| l.id == info.id_value());
        let partitions = info
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let index = i32::try_from(i).unwrap_or(i32::MAX);
                let mut mp = MetadataResponsePartition::default()
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(p.leader))
                    .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                    .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect());
                if version >= 7 {
                    mp = mp.with_leader_epoch(p.leader_epoch);
                }
                let offline: Vec<BrokerId> = p
                    .replicas
                    .iter()
                    .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                    .map(|r| BrokerId(*r))
                    .collect();
                if p.leader == NO_LEADER {
                    mp = mp.with_error_code(code(ErrorKind::LeaderNotAvailable));
                } else if p.leader == broker.node_id
                    && local
                        .as_ref()
                        .and_then(|l| l.partitions.get(i))
                        .is_some_and(|x| x.offline().is_some())
                {
                    mp = mp.with_error_code(kafka_code(ResponseError::KafkaStorageError));
                }
                if version >= 5 {
                    mp = mp.with_offline_replicas(offline);
                }
                mp
            })
            .collect();
        topics.push(t.with_partitions(partitions));
    }
    for id in unknown_ids {
        topics.push(
            MetadataResponseTopic::default()
                .with_name(None)
                .with_topic_id(id)
                .with_error_code(code(ErrorKind::UnknownTopicId)),
        );
    }
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(s(b.host.clone()))
                .with_port(i32::from(b.port))
        })
        .collect();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 1 {
        // KRaft brokers name a random live broker as "controller" (clients send admin
        // requests there; they are forwarded): this one.
        resp = resp.with_controller_id(BrokerId(broker.node_id));
    }
    if version >= 2 {
        let id = if image.cluster_id.is_empty() {
            broker.cluster_id.clone()
        } else {
            image.cluster_id.clone()
        };
        resp = resp.with_cluster_id(Some(s(id)));
    }
    encode_body(&resp, version)
}
