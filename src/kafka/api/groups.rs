//! The group APIs: wire types in, wire types out, the work in [`crate::broker::groups`].
//!
//! As in every API: a response field is set only at versions that define it.
//! JoinGroup and SyncGroup may wait (the join barrier, the leader's assignment); they await a
//! oneshot outside every lock, so a waiting member never blocks another connection.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::broker::error::ErrorKind;
use crate::broker::groups::offsets::{Committed, now_ms};
use crate::broker::groups::state::{JoinOutcome, JoinRequest, Step, SyncOutcome};
use crate::kafka::errors::code_of as code;
use crate::kafka::reply::{Reply, encode_body};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// In a cluster, why this broker does not coordinate `group`: another leads its
/// `__consumer_offsets` partition (NOT_COORDINATOR, clients ask FindCoordinator again), the
/// partition has no leader or does not exist yet (COORDINATOR_NOT_AVAILABLE), or this broker
/// leads it but has not loaded its offsets yet (COORDINATOR_LOAD_IN_PROGRESS, retried).
/// `None` on a single broker and on the coordinator.
pub(crate) fn elsewhere(broker: &Broker, group: &str) -> Option<ErrorKind> {
    let link = broker.cluster()?;
    let image = link.image();
    let Some(t) = image.topics.get(crate::cluster::controller::OFFSETS_TOPIC) else {
        return Some(ErrorKind::CoordinatorNotAvailable);
    };
    let n = i32::try_from(t.partitions.len()).unwrap_or(1);
    let p = crate::cluster::offsets_partition_for(group, n);
    let info = image.partition(crate::cluster::controller::OFFSETS_TOPIC, p);
    match info.map(|i| i.leader) {
        Some(l) if l == broker.node_id => {
            let epoch = info.map_or(-1, |i| i.leader_epoch);
            (broker.groups.offsets.loaded_epoch(p, epoch) != Some(epoch))
                .then_some(ErrorKind::CoordinatorLoadInProgress)
        }
        Some(crate::cluster::image::NO_LEADER) | None => Some(ErrorKind::CoordinatorNotAvailable),
        Some(_) => Some(ErrorKind::NotCoordinator),
    }
}

/// The answer to a commit the store could not write. In a cluster, Kafka's mapping
/// (`GroupMetadataManager.storeOffsets`): a replication shortfall or timeout is
/// COORDINATOR_NOT_AVAILABLE, a lost leadership or failed storage NOT_COORDINATOR, so the
/// client retries, finding the coordinator again. On a single broker, a storage failure.
fn commit_error(e: &anyhow::Error) -> ErrorKind {
    match e
        .downcast_ref::<crate::broker::error::BrokerError>()
        .map(|b| b.kind)
    {
        Some(
            ErrorKind::NotEnoughReplicas
            | ErrorKind::NotEnoughReplicasAfterAppend
            | ErrorKind::RequestTimedOut
            | ErrorKind::UnknownTopicOrPartition
            | ErrorKind::CoordinatorNotAvailable,
        ) => ErrorKind::CoordinatorNotAvailable,
        Some(
            ErrorKind::NotLeaderOrFollower
            | ErrorKind::NotCoordinator
            | ErrorKind::FencedLeaderEpoch
            | ErrorKind::Storage,
        ) => ErrorKind::NotCoordinator,
        _ => ErrorKind::Storage,
    }
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

/// Where a group's coordinator is: (node id, host, port), or the error to answer.
type Coordinates = Result<(i32, String, i32), (ResponseError, String)>;

/// FindCoordinator. On a single broker, this broker. In a cluster, the leader of the group's
/// `__consumer_offsets` partition (`abs(groupId.hashCode()) % offsets.topic.num.partitions`, as
/// Kafka computes it), the topic created on first use.
pub async fn find_coordinator(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
) -> Reply {
    let (host, port) = broker
        .config
        .advertised()
        .unwrap_or_else(|_| ("127.0.0.1".into(), 9092));
    let here: Coordinates = Ok((broker.node_id, host, i32::from(port)));
    // The error code and message for the key type, if any.
    let error: Option<(ResponseError, String)> = match req.key_type {
        // The committed-offsets log did not open: no group can be coordinated here.
        0 if broker.cluster().is_none() && broker.groups.offsets.offline().is_some() => Some((
            crate::kafka::errors::kafka_error(ErrorKind::CoordinatorNotAvailable),
            "the committed-offsets log is offline (see the broker's log)".to_string(),
        )),
        0 => None,
        // Transactions are not implemented. A retriable answer (COORDINATOR_NOT_AVAILABLE) left
        // clients retrying for a minute or forever; this one is fatal in librdkafka, the Java
        // client and kafka-python, and its message says why.
        1 => Some((
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported by this broker (Strata): use an idempotent producer without transactional.id".to_string(),
        )),
        _ => Some((
            ResponseError::InvalidRequest,
            ResponseError::InvalidRequest.to_string(),
        )),
    };
    let keys: Vec<StrBytes> = if version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut found: Vec<Coordinates> = Vec::with_capacity(keys.len());
    match (&error, broker.cluster()) {
        (Some(e), _) => found.extend(keys.iter().map(|_| Err(e.clone()))),
        (None, None) => found.extend(keys.iter().map(|_| here.clone())),
        (None, Some(link)) => {
            let ensured = link.ensure_offsets_topic(Duration::from_secs(5)).await;
            let image = link.image();
            let offsets = image.topics.get(crate::cluster::controller::OFFSETS_TOPIC);
            for k in &keys {
                let not_available = |m: String| {
                    Err((
                        crate::kafka::errors::kafka_error(ErrorKind::CoordinatorNotAvailable),
                        m,
                    ))
                };
                let Some(t) = offsets else {
                    found.push(not_available(match &ensured {
                        Err(e) => e.message.clone(),
                        Ok(()) => "__consumer_offsets is being created".into(),
                    }));
                    continue;
                };
                let n = i32::try_from(t.partitions.len()).unwrap_or(1);
                let p = crate::cluster::offsets_partition_for(k, n);
                let leader = image
                    .partition(crate::cluster::controller::OFFSETS_TOPIC, p)
                    .map(|p| p.leader);
                found.push(
                    match leader
                        .and_then(|l| image.brokers.get(&l))
                        .filter(|b| !b.fenced)
                    {
                        Some(b) => Ok((b.id, b.host.clone(), i32::from(b.port))),
                        None => not_available(format!(
                            "__consumer_offsets-{p}, which coordinates this group, has no leader"
                        )),
                    },
                );
            }
        }
    }
    let mut r = FindCoordinatorResponse::default();
    if version >= 4 {
        r = r.with_coordinators(
            keys.into_iter()
                .zip(found)
                .map(|(k, f)| {
                    let c = find_coordinator_response::Coordinator::default().with_key(k);
                    match f {
                        Ok((id, host, port)) => c
                            .with_node_id(BrokerId(id))
                            .with_host(s(host))
                            .with_port(port),
                        Err((e, m)) => c
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(e.code())
                            .with_error_message(Some(s(m))),
                    }
                })
                .collect(),
        );
    } else {
        let f = found
            .into_iter()
            .next()
            .unwrap_or_else(|| Err((ResponseError::InvalidRequest, "no key".into())));
        r = match f {
            Ok((id, host, port)) => r
                .with_node_id(BrokerId(id))
                .with_host(s(host))
                .with_port(port),
            Err((e, m)) => {
                let mut r = r
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(e.code());
                if version >= 1 {
                    r = r.with_error_message(Some(s(m)));
                }
                r
            }
        };
    }
    encode_body(&r, version)
}

fn join_response(o: JoinOutcome, version: i16) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default()
        .with_error_code(code(o.error))
        .with_generation_id(o.generation)
        .with_leader(s(o.leader))
        .with_member_id(s(o.member_id))
        .with_members(
            o.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let m = join_group_response::JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_metadata(metadata);
                    if version >= 5 {
                        m.with_group_instance_id(instance.map(s))
                    } else {
                        m
                    }
                })
                .collect(),
        );
    if version >= 7 {
        r = r
            .with_protocol_type(o.protocol_type.map(s))
            .with_protocol_name(o.protocol_name.map(s));
    } else {
        r = r.with_protocol_name(Some(s(o.protocol_name.unwrap_or_default())));
    }
    r
}

fn group_id_ok(id: &str) -> bool {
    !id.is_empty()
}

/// Waits for a parked JoinGroup/SyncGroup answer, or for the broker to stop (then `None`: the
/// client looks for the coordinator again, as when a Kafka coordinator moves).
async fn park<T>(
    rx: tokio::sync::oneshot::Receiver<T>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<T> {
    if *shutdown.borrow() {
        return None;
    }
    tokio::select! {
        r = rx => r.ok(),
        _ = shutdown.changed() => None,
    }
}

pub async fn join_group(
    broker: &Arc<Broker>,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    shutdown: watch::Receiver<bool>,
) -> Reply {
    let c = &broker.groups;
    c.ensure_ticker();
    let group = req.group_id.0.to_string();
    if !group_id_ok(&group) {
        let o = JoinOutcome::error(ErrorKind::InvalidGroupId, &req.member_id);
        return encode_body(&join_response(o, version), version);
    }
    if let Some(e) = elsewhere(broker, &group) {
        let o = JoinOutcome::error(e, &req.member_id);
        return encode_body(&join_response(o, version), version);
    }
    // A group is classic or consumer (KIP-848), not both.
    if c.is_consumer_group(&group) {
        let o = JoinOutcome::error(ErrorKind::InconsistentGroupProtocol, &req.member_id);
        return encode_body(&join_response(o, version), version);
    }
    let session = ms(req.session_timeout_ms);
    let j = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|i| i.to_string()),
        client_id,
        client_host: String::new(),
        session_timeout: session,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout: if version >= 1 {
            ms(req.rebalance_timeout_ms)
        } else {
            session
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member = j.member_id.clone();
    let step = c
        .with_group(&group, true, |g, now, limits| g.join(j, now, limits))
        .unwrap_or_else(|| {
            Step::Now(JoinOutcome::error(
                ErrorKind::CoordinatorNotAvailable,
                &member,
            ))
        });
    let outcome = match step {
        Step::Now(o) => o,
        Step::Wait(rx) => park(rx, shutdown)
            .await
            .unwrap_or_else(|| JoinOutcome::error(ErrorKind::CoordinatorNotAvailable, &member)),
    };
    encode_body(&join_response(outcome, version), version)
}

pub async fn sync_group(
    broker: &Arc<Broker>,
    req: SyncGroupRequest,
    version: i16,
    shutdown: watch::Receiver<bool>,
) -> Reply {
    let c = &broker.groups;
    c.ensure_ticker();
    let group = req.group_id.0.to_string();
    if let Some(e) = elsewhere(broker, &group) {
        return encode_body(
            &SyncGroupResponse::default().with_error_code(code(Some(e))),
            version,
        );
    }
    let member = req.member_id.to_string();
    let instance = req.group_instance_id.map(|i| i.to_string());
    let (ptype, pname) = (
        req.protocol_type.map(|t| t.to_string()),
        req.protocol_name.map(|t| t.to_string()),
    );
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let step = c
        .with_group(&group, false, |g, now, _| {
            g.sync(
                &member,
                instance.as_deref(),
                req.generation_id,
                ptype.as_deref(),
                pname.as_deref(),
                assignments,
                now,
            )
        })
        .unwrap_or(Step::Now(SyncOutcome {
            error: Some(ErrorKind::UnknownMemberId),
            ..SyncOutcome::default()
        }));
    let o = match step {
        Step::Now(o) => o,
        Step::Wait(rx) => park(rx, shutdown).await.unwrap_or(SyncOutcome {
            error: Some(ErrorKind::CoordinatorNotAvailable),
            ..SyncOutcome::default()
        }),
    };
    let mut r = SyncGroupResponse::default()
        .with_error_code(code(o.error))
        .with_assignment(o.assignment);
    if version >= 5 {
        r = r
            .with_protocol_type(o.protocol_type.map(s))
            .with_protocol_name(o.protocol_name.map(s));
    }
    encode_body(&r, version)
}

pub fn heartbeat(broker: &Arc<Broker>, req: HeartbeatRequest, version: i16) -> Reply {
    let c = &broker.groups;
    c.ensure_ticker();
    let instance = req.group_instance_id.map(|i| i.to_string());
    if let Some(e) = elsewhere(broker, &req.group_id.0) {
        return encode_body(
            &HeartbeatResponse::default().with_error_code(code(Some(e))),
            version,
        );
    }
    let e = c
        .with_group(&req.group_id.0, false, |g, now, _| {
            g.heartbeat(&req.member_id, instance.as_deref(), req.generation_id, now)
        })
        .unwrap_or(Some(ErrorKind::UnknownMemberId));
    encode_body(
        &HeartbeatResponse::default().with_error_code(code(e)),
        version,
    )
}

pub fn leave_group(broker: &Arc<Broker>, req: LeaveGroupRequest, version: i16) -> Reply {
    let c = &broker.groups;
    c.ensure_ticker();
    if let Some(e) = elsewhere(broker, &req.group_id.0) {
        return encode_body(
            &LeaveGroupResponse::default().with_error_code(code(Some(e))),
            version,
        );
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results: Vec<Option<ErrorKind>> = c
        .with_group(&req.group_id.0, false, |g, now, limits| {
            members
                .iter()
                .map(|(id, instance)| g.leave(id, instance.as_deref(), now, limits))
                .collect()
        })
        .unwrap_or_else(|| vec![Some(ErrorKind::UnknownMemberId); members.len()]);
    let mut r = LeaveGroupResponse::default();
    if version >= 3 {
        r = r.with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((id, instance), e)| {
                    leave_group_response::MemberResponse::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(instance.map(s))
                        .with_error_code(code(e))
                })
                .collect(),
        );
    } else {
        r = r.with_error_code(code(results.into_iter().next().flatten()));
    }
    encode_body(&r, version)
}

pub async fn offset_commit(broker: &Arc<Broker>, req: OffsetCommitRequest, version: i16) -> Reply {
    let c = broker.groups.clone();
    c.ensure_ticker();
    let group = req.group_id.0.to_string();
    let member = req.member_id.to_string();
    let instance = req.group_instance_id.map(|i| i.to_string());
    let generation = req.generation_id_or_member_epoch;
    let group_error = if !group_id_ok(&group) {
        Some(ErrorKind::InvalidGroupId)
    } else if let Some(e) = elsewhere(broker, &group) {
        Some(e)
    } else if let Some(check) = c.consumer_check(&group, &member, generation) {
        // A consumer group (KIP-848): the member's epoch where a classic group has a generation.
        check
    } else {
        let exists = c.with_group(&group, false, |_, _, _| ()).is_some();
        if !exists && generation >= 0 {
            Some(ErrorKind::IllegalGeneration)
        } else {
            c.with_group(&group, true, |g, _, _| {
                g.check_commit(&member, instance.as_deref(), generation)
            })
            .flatten()
        }
    };
    let now = now_ms();
    // (topic index, partition index) → error, and the commits to write.
    let mut errors: Vec<Vec<Option<ErrorKind>>> = Vec::new();
    let mut commits = Vec::new();
    for t in &req.topics {
        let mut row = Vec::new();
        for p in &t.partitions {
            let e = if group_error.is_some() {
                group_error
            } else if broker.partition(&t.name.0, p.partition_index).is_none() {
                Some(ErrorKind::UnknownTopicOrPartition)
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > 4096)
            {
                Some(ErrorKind::OffsetMetadataTooLarge)
            } else {
                commits.push((
                    (group.clone(), t.name.0.to_string(), p.partition_index),
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_timestamp: now,
                    },
                ));
                None
            };
            row.push(e);
        }
        errors.push(row);
    }
    let mut store_error = None;
    if !commits.is_empty() {
        let c2 = c.clone();
        let b = broker.clone();
        let keys: Vec<(String, i32)> = commits
            .iter()
            .map(|((_, t, p), _)| (t.clone(), *p))
            .collect();
        let exists = move |t: &str, p: i32| b.partition(t, p).is_some();
        match tokio::task::spawn_blocking(move || c2.offsets.commit(commits, exists)).await {
            Ok(Ok(stored)) => {
                // A topic deleted between the check above and the commit: not stored.
                let refused: std::collections::HashSet<(String, i32)> = keys
                    .into_iter()
                    .zip(stored)
                    .filter(|(_, ok)| !ok)
                    .map(|(k, _)| k)
                    .collect();
                if !refused.is_empty() {
                    for (row, topic) in errors.iter_mut().zip(&req.topics) {
                        for (e, part) in row.iter_mut().zip(&topic.partitions) {
                            let key = (topic.name.0.to_string(), part.partition_index);
                            if e.is_none() && refused.contains(&key) {
                                *e = Some(ErrorKind::UnknownTopicOrPartition);
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(group = %group, error = %format!("{e:#}"), "offset commit failed");
                store_error = Some(commit_error(&e));
            }
            Err(e) => {
                tracing::error!(error = %e, "offset commit task failed");
                store_error = Some(ErrorKind::Unknown);
            }
        }
    }
    let topics = req
        .topics
        .iter()
        .zip(errors)
        .map(|(t, row)| {
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(row)
                        .map(|(p, e)| {
                            offset_commit_response::OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(e.or(store_error)))
                        })
                        .collect(),
                )
        })
        .collect();
    encode_body(
        &OffsetCommitResponse::default().with_topics(topics),
        version,
    )
}

/// (topic, [(partition, committed)]) for a group: the asked partitions, or every committed
/// one when `topics` is None. A partition asked twice is answered once; its other occurrences
/// get `Err(())` (INVALID_REQUEST): each would copy up to 4 KiB of commit metadata for the
/// 4 bytes of its index.
type Fetched = Vec<(String, Vec<(i32, Result<Option<Committed>, ()>)>)>;

fn fetch_group(broker: &Broker, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    let store = &broker.groups.offsets;
    match topics {
        Some(ts) => {
            let dup = super::duplicated(
                ts.iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p))),
            );
            ts.into_iter()
                .map(|(t, ps)| {
                    let rows = ps
                        .into_iter()
                        .map(|p| {
                            if dup.contains(&(t.clone(), p)) {
                                (p, Err(()))
                            } else {
                                (p, Ok(store.get(&(group.to_string(), t.clone(), p))))
                            }
                        })
                        .collect();
                    (t, rows)
                })
                .collect()
        }
        None => {
            let mut out: Fetched = Vec::new();
            for ((t, p), c) in store.group_offsets(group) {
                match out.last_mut() {
                    Some((lt, rows)) if *lt == t => rows.push((p, Ok(Some(c)))),
                    _ => out.push((t, vec![(p, Ok(Some(c)))])),
                }
            }
            out
        }
    }
}

/// Offset, leader epoch, metadata and error code of one fetched partition.
fn committed_fields(c: Result<Option<Committed>, ()>) -> (i64, i32, String, i16) {
    match c {
        Ok(Some(c)) => (c.offset, c.leader_epoch, c.metadata.unwrap_or_default(), 0),
        Ok(None) => (-1, -1, String::new(), 0),
        Err(()) => (-1, -1, String::new(), ResponseError::InvalidRequest.code()),
    }
}

pub fn offset_fetch(broker: &Arc<Broker>, req: OffsetFetchRequest, version: i16) -> Reply {
    broker.groups.ensure_ticker();
    let mut r = OffsetFetchResponse::default();
    if version >= 8 {
        let dup = super::duplicated(req.groups.iter().map(|g| g.group_id.0.clone()));
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                if dup.contains(&g.group_id.0) {
                    return offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(ResponseError::InvalidRequest.code());
                }
                if let Some(e) = elsewhere(broker, &g.group_id.0) {
                    return offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(crate::kafka::errors::code(e));
                }
                // v9: a consumer group member's fetch carries its epoch, checked as a commit's.
                if let Some(member) = g.member_id.as_ref()
                    && let Some(Some(e)) =
                        broker
                            .groups
                            .consumer_check(&g.group_id.0, member, g.member_epoch)
                {
                    return offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(crate::kafka::errors::code(e));
                }
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let fetched = fetch_group(broker, &g.group_id.0, topics);
                offset_fetch_response::OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(
                        fetched
                            .into_iter()
                            .map(|(t, rows)| {
                                offset_fetch_response::OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(s(t)))
                                    .with_partitions(
                                        rows.into_iter()
                                            .map(|(p, c)| {
                                                let (o, e, m, err) = committed_fields(c);
                                                offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(s(m)))
                                                    .with_error_code(err)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        r = r.with_groups(groups);
    } else if let Some(e) = elsewhere(broker, &req.group_id.0) {
        // v0-1 have no top-level error: each partition asked carries it.
        let e = crate::kafka::errors::code(e);
        if version >= 2 {
            r = r.with_error_code(e);
        }
        r = r.with_topics(
            req.topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .into_iter()
                                .map(|p| {
                                    offset_fetch_response::OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(e)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    } else {
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let fetched = fetch_group(broker, &req.group_id.0, topics);
        r = r.with_topics(
            fetched
                .into_iter()
                .map(|(t, rows)| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            rows.into_iter()
                                .map(|(p, c)| {
                                    let (o, e, m, err) = committed_fields(c);
                                    let mut part =
                                        offset_fetch_response::OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_metadata(Some(s(m)))
                                            .with_error_code(err);
                                    if version >= 5 {
                                        part = part.with_committed_leader_epoch(e);
                                    }
                                    part
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    }
    encode_body(&r, version)
}

pub fn list_groups(broker: &Arc<Broker>, req: ListGroupsRequest, version: i16) -> Reply {
    let filter: Vec<String> = if version >= 4 {
        req.states_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let groups = broker
        .groups
        .each_group(|g| {
            let state = g.state.name();
            if !filter.is_empty() && !filter.contains(&state.to_ascii_lowercase()) {
                return None;
            }
            let mut l = list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(s(g.id.clone())))
                .with_protocol_type(s(g.protocol_type.clone().unwrap_or_default()));
            if version >= 4 {
                l = l.with_group_state(s(state));
            }
            Some(l)
        })
        .into_iter()
        .flatten()
        .collect();
    encode_body(&ListGroupsResponse::default().with_groups(groups), version)
}

/// DescribeGroups. A group named twice would be described (members, metadata, assignments)
/// twice for a few bytes asked: every occurrence of a duplicate gets INVALID_REQUEST instead.
pub fn describe_groups(broker: &Arc<Broker>, req: DescribeGroupsRequest, version: i16) -> Reply {
    let dup = super::duplicated(req.groups.iter().map(|g| g.0.clone()));
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            if dup.contains(&id.0) {
                return describe_groups_response::DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_group_state(StrBytes::from_static_str("Dead"));
            }
            let described = broker.groups.with_group(&id.0, false, |g, _, _| {
                let protocol = g.protocol.clone().unwrap_or_default();
                let members = g
                    .members
                    .iter()
                    .map(|m| {
                        let mut d = describe_groups_response::DescribedGroupMember::default()
                            .with_member_id(s(m.id.clone()))
                            .with_client_id(s(m.client_id.clone()))
                            .with_client_host(s(m.client_host.clone()))
                            .with_member_metadata(m.metadata(&protocol))
                            .with_member_assignment(m.assignment.clone());
                        if version >= 4 {
                            d = d.with_group_instance_id(m.instance_id.clone().map(s));
                        }
                        d
                    })
                    .collect();
                describe_groups_response::DescribedGroup::default()
                    .with_group_id(GroupId(s(g.id.clone())))
                    .with_group_state(s(g.state.name()))
                    .with_protocol_type(s(g.protocol_type.clone().unwrap_or_default()))
                    .with_protocol_data(s(protocol))
                    .with_members(members)
            });
            // An unknown group is "Dead" with no error, as Kafka answers before v6.
            described.unwrap_or_else(|| {
                describe_groups_response::DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(StrBytes::from_static_str("Dead"))
            })
        })
        .collect();
    encode_body(
        &DescribeGroupsResponse::default().with_groups(groups),
        version,
    )
}

/// DeleteGroups. Unknown, non-empty and duplicate groups are answered at once; the offsets of
/// the groups removed are deleted one group after the other on one blocking thread.
pub async fn delete_groups(broker: &Arc<Broker>, req: DeleteGroupsRequest, version: i16) -> Reply {
    let dup = super::duplicated(req.groups_names.iter().map(|g| g.0.clone()));
    // Per group: the error code (0 when removed).
    let mut errors: Vec<i16> = Vec::with_capacity(req.groups_names.len());
    let mut removed = Vec::new();
    for id in &req.groups_names {
        errors.push(if dup.contains(&id.0) {
            ResponseError::InvalidRequest.code()
        } else {
            match broker.groups.remove_group_if_empty(&id.0) {
                Err(e) => crate::kafka::errors::code(e),
                Ok(()) => {
                    removed.push(id.0.to_string());
                    0
                }
            }
        });
    }
    let failed: std::collections::HashMap<String, ErrorKind> = if removed.is_empty() {
        std::collections::HashMap::new()
    } else {
        let c = broker.groups.clone();
        tokio::task::spawn_blocking(move || {
            removed
                .into_iter()
                .filter_map(|g| match c.offsets.delete_group(&g) {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::error!(group = %g, error = %format!("{e:#}"), "deleting offsets failed");
                        Some((g, ErrorKind::Storage))
                    }
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    };
    let results: Vec<_> = req
        .groups_names
        .into_iter()
        .zip(errors)
        .map(|(id, e)| {
            let e = if e == 0 {
                code(failed.get(id.0.as_str()).copied())
            } else {
                e
            };
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(e)
        })
        .collect();
    encode_body(
        &DeleteGroupsResponse::default().with_results(results),
        version,
    )
}

/// OffsetDelete (v0): deletes a group's committed offsets of the partitions named, as Kafka
/// does (broker::groups::Coordinator::delete_offsets); a member's subscription is read from its
/// consumer-protocol metadata.
pub async fn offset_delete(broker: &Arc<Broker>, req: OffsetDeleteRequest, version: i16) -> Reply {
    use kafka_protocol::messages::offset_delete_response::{
        OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
    };
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let group = req.group_id.0.to_string();
    let c = broker.groups.clone();
    let outcome =
        tokio::task::spawn_blocking(move || c.delete_offsets(&group, &partitions, subscribes_to))
            .await
            .unwrap_or(Err(ErrorKind::Unknown));
    let mut r = OffsetDeleteResponse::default();
    match outcome {
        Err(e) => r = r.with_error_code(crate::kafka::errors::code(e)),
        Ok(verdicts) => {
            let mut v = verdicts.into_iter();
            r = r.with_topics(
                req.topics
                    .iter()
                    .map(|t| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(crate::kafka::errors::code_of(
                                                v.next().flatten(),
                                            ))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        }
    }
    encode_body(&r, version)
}

/// Whether a consumer-protocol subscription (`ConsumerProtocolSubscription`, its version
/// first) names `topic`; one that does not decode is taken as naming it (nothing is deleted
/// from under a member we cannot read).
fn subscribes_to(metadata: &[u8], topic: &str) -> bool {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let Some((version, body)) = metadata.split_first_chunk::<2>() else {
        return true;
    };
    let version = i16::from_be_bytes(*version);
    let mut buf = bytes::Bytes::copy_from_slice(body);
    match ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
        Ok(sub) => sub.topics.iter().any(|t| t.as_str() == topic),
        Err(_) => true,
    }
}
