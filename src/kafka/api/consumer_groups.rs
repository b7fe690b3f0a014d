//! ConsumerGroupHeartbeat (KIP-848, v0-v1): the next-generation group protocol of
//! [`crate::broker::groups::consumer`], with the server-side `uniform` and `range` assignors.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;

use super::{code, s};
use crate::broker::Broker;
use crate::broker::groups::consumer::{Heartbeat, Partitions};
use crate::kafka::reply::{Reply, encode_body};

pub fn consumer_group_heartbeat(
    broker: &Arc<Broker>,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
) -> Reply {
    broker.groups.ensure_ticker();
    let group = req.group_id.0.to_string();
    let mut r = ConsumerGroupHeartbeatResponse::default().with_heartbeat_interval_ms(
        broker.groups.consumer_limits.heartbeat_interval.as_millis() as i32,
    );
    if group.is_empty() {
        return encode_body(
            &r.with_error_code(kafka_protocol::ResponseError::InvalidRequest.code())
                .with_error_message(Some(s("the group id is empty"))),
            version,
        );
    }
    if let Some(e) = super::groups::elsewhere(broker, &group) {
        return encode_body(
            &r.with_error_code(crate::kafka::errors::code(e))
                .with_error_message(Some(s("this broker does not coordinate the group"))),
            version,
        );
    }
    // A subscription names topics; assignments and owned partitions name them by id.
    let topics = |name: &str| {
        broker
            .topic(name)
            .map(|t| (t.id, t.partitions.len() as i32))
    };
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut p = Partitions::new();
        for tp in tps {
            p.entry(tp.topic_id.as_u128())
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        p
    });
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|i| i.to_string()),
        client_id,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        assignor: req.server_assignor.as_ref().map(|a| a.to_string()),
        owned,
    };
    // librdkafka sends an empty regex with its topic names: only a non-empty one is a regex.
    if req
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        return encode_body(
            &r.with_error_code(kafka_protocol::ResponseError::InvalidRequest.code())
                .with_error_message(Some(s(
                    "subscriptions by regular expression are not supported: subscribe to topic names",
                ))),
            version,
        );
    }
    match broker.groups.consumer_heartbeat(&group, hb, &topics) {
        Ok(a) => {
            r = r
                .with_member_id(Some(s(a.member_id)))
                .with_member_epoch(a.member_epoch);
            if let Some(parts) = a.assignment {
                r = r.with_assignment(Some(
                    Assignment::default().with_topic_partitions(
                        parts
                            .into_iter()
                            .map(|(t, ps)| {
                                TopicPartitions::default()
                                    .with_topic_id(::uuid::Uuid::from_u128(t))
                                    .with_partitions(ps.into_iter().collect())
                            })
                            .collect(),
                    ),
                ));
            }
        }
        Err(e) => {
            tracing::debug!(target: "strata::client", group = %group, code = ?e, "consumer group heartbeat refused");
            r = r
                .with_error_code(code(e))
                .with_member_id(Some(req.member_id))
                .with_member_epoch(req.member_epoch);
        }
    }
    encode_body(&r, version)
}
