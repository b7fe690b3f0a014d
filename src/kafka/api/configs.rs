//! DescribeConfigs as Kafka answers it: every topic config Kafka 4.x lists, with its source,
//! synonyms (in precedence order: the topic's override, the broker's static setting, the
//! default), read-only flag (the configs Strata does not implement, and the broker configs
//! that are static), type and, when asked, documentation; an unset value is null.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;

use super::admin::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{duplicated, s};
use crate::broker::Broker;
use crate::broker::config::{BROKER_KEYS, ConfigType, KAFKA_TOPIC_CONFIGS};
use crate::broker::dynamic::DYNAMIC_BROKER_KEYS;
use crate::kafka::reply::{Reply, encode_body};

/// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One entry before encoding.
struct Entry {
    name: String,
    value: Option<String>,
    source: i8,
    read_only: bool,
    /// (name, value, source), highest precedence first.
    synonyms: Vec<(String, Option<String>, i8)>,
    kind: i8,
    doc: &'static str,
}

fn null_if_empty(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

fn topic_entries(broker: &Broker, topic: &crate::broker::Topic) -> Vec<Entry> {
    let defaults = broker.topic_defaults();
    let dynamic = broker.dynamic_file();
    KAFKA_TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (value, overridden) = topic.config.value(&defaults, d.name);
            let supported = d.unsupported.is_none();
            let has_key = supported && !d.broker_key.is_empty();
            // Every layer that sets it, highest precedence first (Kafka's synonyms).
            let mut synonyms = Vec::new();
            if overridden {
                synonyms.push((d.name.to_string(), Some(value.clone()), SOURCE_TOPIC));
            }
            if has_key {
                if let Some(v) = dynamic.broker.get(d.broker_key) {
                    synonyms.push((
                        d.broker_key.to_string(),
                        Some(v.clone()),
                        SOURCE_DYNAMIC_BROKER,
                    ));
                }
                if let Some(v) = dynamic.cluster.get(d.broker_key) {
                    synonyms.push((
                        d.broker_key.to_string(),
                        Some(v.clone()),
                        SOURCE_DYNAMIC_DEFAULT,
                    ));
                }
                if broker.config.is_explicit(d.broker_key) {
                    synonyms.push((
                        d.broker_key.to_string(),
                        null_if_empty(broker.config.get(d.broker_key).to_string()),
                        SOURCE_STATIC_BROKER,
                    ));
                }
            }
            let default_name = if d.broker_key.is_empty() {
                d.name
            } else {
                d.broker_key
            };
            let default_value = if supported {
                let v = crate::broker::config::BrokerConfig::default().topic_default(d.name);
                if v.is_empty() {
                    d.kafka_default.to_string()
                } else {
                    v
                }
            } else {
                d.kafka_default.to_string()
            };
            synonyms.push((
                default_name.to_string(),
                null_if_empty(default_value),
                SOURCE_DEFAULT,
            ));
            let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2);
            Entry {
                name: d.name.to_string(),
                // An empty list is "" in Kafka's answer; other unset values are null.
                value: if d.kind == ConfigType::List {
                    Some(value)
                } else {
                    null_if_empty(value)
                },
                source,
                read_only: !supported,
                synonyms,
                kind: d.kind as i8,
                doc: d.doc,
            }
        })
        .collect()
}

/// Kafka's type of a broker setting, from its name and default.
fn broker_kind(key: &str, default: &str) -> ConfigType {
    if default == "true" || default == "false" {
        ConfigType::Boolean
    } else if key.ends_with(".ms") || key.ends_with(".bytes") || key.ends_with(".messages") {
        ConfigType::Long
    } else if default.parse::<i64>().is_ok() {
        ConfigType::Int
    } else if key.ends_with("listeners") || key == "log.dirs" {
        ConfigType::List
    } else {
        ConfigType::String
    }
}

fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let effective = broker.topic_defaults();
    let dynamic = broker.dynamic_file();
    BROKER_KEYS
        .iter()
        .map(|(k, default, doc)| {
            let mut synonyms = Vec::new();
            if let Some(v) = dynamic.broker.get(*k) {
                synonyms.push((k.to_string(), Some(v.clone()), SOURCE_DYNAMIC_BROKER));
            }
            if let Some(v) = dynamic.cluster.get(*k) {
                synonyms.push((k.to_string(), Some(v.clone()), SOURCE_DYNAMIC_DEFAULT));
            }
            if broker.config.is_explicit(k) {
                synonyms.push((
                    k.to_string(),
                    null_if_empty(broker.config.get(k).to_string()),
                    SOURCE_STATIC_BROKER,
                ));
            }
            synonyms.push((
                k.to_string(),
                null_if_empty(default.to_string()),
                SOURCE_DEFAULT,
            ));
            Entry {
                name: k.to_string(),
                value: null_if_empty(effective.get(k).to_string()),
                source: synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2),
                read_only: !DYNAMIC_BROKER_KEYS.contains(k),
                synonyms,
                kind: broker_kind(k, default) as i8,
                doc,
            }
        })
        .collect()
}

/// DescribeConfigs (v1-4). A resource named twice would be described twice (dozens of entries
/// for a few bytes asked): every occurrence of a duplicate gets INVALID_REQUEST instead.
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
        let entries: Result<Vec<Entry>, (ResponseError, String)> = match res.resource_type {
            _ if dup.contains(&(res.resource_type, res.resource_name.clone())) => Err((
                ResponseError::InvalidRequest,
                "duplicate resource in the request".into(),
            )),
            RESOURCE_TOPIC => match broker.topic(&name) {
                Some(topic) => Ok(topic_entries(broker, &topic)),
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                )),
            },
            RESOURCE_BROKER if name.is_empty() || name == broker.node_id.to_string() => {
                Ok(broker_entries(broker))
            }
            RESOURCE_BROKER => Err((
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
                r = r.with_error_code(e.code()).with_error_message(Some(s(m)));
            }
            Ok(entries) => {
                // Null asks for every key; so does an empty list (clients differ in how they
                // say "all").
                let keys: Option<Vec<String>> = res
                    .configuration_keys
                    .filter(|k| !k.is_empty())
                    .map(|k| k.iter().map(|k| k.to_string()).collect());
                let configs = entries
                    .into_iter()
                    .filter(|e| keys.as_ref().is_none_or(|w| w.contains(&e.name)))
                    .map(|e| {
                        let mut c = DescribeConfigsResourceResult::default()
                            .with_name(s(e.name))
                            .with_value(e.value.map(s))
                            .with_read_only(e.read_only)
                            .with_config_source(e.source);
                        if req.include_synonyms {
                            c = c.with_synonyms(
                                e.synonyms
                                    .into_iter()
                                    .map(|(n, v, src)| {
                                        DescribeConfigsSynonym::default()
                                            .with_name(s(n))
                                            .with_value(v.map(s))
                                            .with_source(src)
                                    })
                                    .collect(),
                            );
                        }
                        if version >= 3 {
                            c = c.with_config_type(e.kind);
                            if req.include_documentation {
                                c = c.with_documentation(Some(s(e.doc)));
                            }
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
