//! The admin APIs that change a running broker: CreatePartitions, AlterConfigs,
//! IncrementalAlterConfigs and DeleteRecords, at every version advertised, and what each
//! changes surviving a restart.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;
use kafka_protocol::messages::*;

fn partitions_of(c: &mut Client, name: &str) -> usize {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let md = c.call(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic(name))),
        ])),
        12,
    );
    assert_eq!(md.topics[0].error_code, 0);
    md.topics[0].partitions.len()
}

fn create_partitions(c: &mut Client, name: &str, count: i32, version: i16) -> (i16, String) {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let r = c.call(
        &CreatePartitionsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic(name))
                    .with_count(count),
            ]),
        version,
    );
    (
        r.results[0].error_code,
        r.results[0]
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

fn describe(c: &mut Client, name: &str) -> Vec<(String, Option<String>, i8)> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let r = c.call(
        &DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(name)),
        ]),
        4,
    );
    assert_eq!(r.results[0].error_code, 0);
    r.results[0]
        .configs
        .iter()
        .map(|e| {
            (
                e.name.to_string(),
                e.value.as_ref().map(|v| v.to_string()),
                e.config_source,
            )
        })
        .collect()
}

fn config(c: &mut Client, name: &str, key: &str) -> (Option<String>, i8) {
    describe(c, name)
        .into_iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, v, src)| (v, src))
        .unwrap()
}

#[test]
fn given_a_topic_when_partitions_are_added_at_every_version_then_they_serve_and_survive_a_restart()
{
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "grow", 2, &[]);
    for (v, count) in (0..=3).zip([3, 4, 5, 6]) {
        assert_eq!(
            create_partitions(&mut c, "grow", count, v),
            (0, String::new()),
            "v{v}"
        );
        assert_eq!(partitions_of(&mut c, "grow"), count as usize);
    }
    // The new partitions take records and serve them.
    for p in 0..6 {
        let r = produce(&mut c, "grow", p, batch(&[&format!("p{p}")], None), -1).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "p{p}");
    }
    // Shrinking, the same count, and unknown topics are refused as Kafka refuses them.
    let (code, msg) = create_partitions(&mut c, "grow", 3, 3);
    assert_eq!(code, 37, "INVALID_PARTITIONS: {msg}");
    assert_eq!(create_partitions(&mut c, "grow", 6, 3).0, 37);
    assert_eq!(create_partitions(&mut c, "nope", 6, 3).0, 3);
    // validate_only changes nothing.
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let r = c.call(
        &CreatePartitionsRequest::default()
            .with_validate_only(true)
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic("grow"))
                    .with_count(9),
            ]),
        3,
    );
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(partitions_of(&mut c, "grow"), 6);
    b.stop();
    let b = Broker::start_in(&b.dir.clone(), &[]);
    let mut c = b.client();
    assert_eq!(partitions_of(&mut c, "grow"), 6);
    let f = fetch(&mut c, "grow", 5, 0, 0, 12);
    let records = f.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(values(&records), vec![(0, "p5".to_string())]);
}

#[test]
fn given_topic_configs_when_altered_by_both_apis_then_they_take_effect_at_once_and_survive_a_restart()
 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::incremental_alter_configs_request as inc;
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "cfg", 1, &[("retention.ms", "60000")]);
    // Incremental: SET one, the other stays.
    for v in 0..=1 {
        let r = c.call(
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                inc::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("cfg"))
                    .with_configs(vec![
                        inc::AlterableConfig::default()
                            .with_name(s("max.message.bytes"))
                            .with_config_operation(0)
                            .with_value(Some(s(&format!("{}", 2000 + i32::from(v))))),
                    ]),
            ]),
            v,
        );
        assert_eq!(
            r.responses[0].error_code, 0,
            "v{v}: {:?}",
            r.responses[0].error_message
        );
    }
    assert_eq!(
        config(&mut c, "cfg", "max.message.bytes"),
        (Some("2001".into()), 1)
    );
    assert_eq!(
        config(&mut c, "cfg", "retention.ms"),
        (Some("60000".into()), 1)
    );
    // The largest batch changed at once: a 3000-byte batch is now too large.
    let big = "x".repeat(3000);
    let r = produce(&mut c, "cfg", 0, batch(&[&big], None), -1).unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 10,
        "MESSAGE_TOO_LARGE"
    );
    // DELETE goes back to the default; a bad value is refused whole, changing nothing.
    let r = c.call(
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("cfg"))
                .with_configs(vec![
                    inc::AlterableConfig::default()
                        .with_name(s("max.message.bytes"))
                        .with_config_operation(1),
                    inc::AlterableConfig::default()
                        .with_name(s("segment.bytes"))
                        .with_config_operation(0)
                        .with_value(Some(s("-5"))),
                ]),
        ]),
        1,
    );
    assert_eq!(r.responses[0].error_code, 40, "INVALID_CONFIG");
    assert_eq!(
        config(&mut c, "cfg", "max.message.bytes").0,
        Some("2001".into())
    );
    let r = c.call(
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("cfg"))
                .with_configs(vec![
                    inc::AlterableConfig::default()
                        .with_name(s("max.message.bytes"))
                        .with_config_operation(1),
                    inc::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(2)
                        .with_value(Some(s("5"))),
                ]),
        ]),
        1,
    );
    assert_eq!(r.responses[0].error_code, 40, "APPEND on a non-list config");
    let r = produce(&mut c, "cfg", 0, batch(&["small"], None), -1).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // AlterConfigs (legacy) replaces the whole set: retention.ms goes back to the default.
    for v in 0..=2 {
        let r = c.call(
            &AlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("cfg"))
                    .with_configs(vec![
                        AlterableConfig::default()
                            .with_name(s("segment.bytes"))
                            .with_value(Some(s(&format!("{}", 1_000_000 + i32::from(v))))),
                    ]),
            ]),
            v,
        );
        assert_eq!(
            r.responses[0].error_code, 0,
            "v{v}: {:?}",
            r.responses[0].error_message
        );
    }
    assert_eq!(
        config(&mut c, "cfg", "segment.bytes"),
        (Some("1000002".into()), 1)
    );
    assert_eq!(
        config(&mut c, "cfg", "retention.ms").1,
        5,
        "back to the default"
    );
    // Unknown topics and keys, broker resources and duplicates are refused.
    let r = c.call(
        &AlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("nope")),
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("cfg"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(s("no.such.config"))
                        .with_value(Some(s("1"))),
                ]),
            AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("0"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(s("num.partitions"))
                        .with_value(Some(s("3"))),
                ]),
        ]),
        2,
    );
    let codes: Vec<i16> = r.responses.iter().map(|x| x.error_code).collect();
    assert_eq!(codes, vec![3, 40, 42]);
    b.stop();
    let b = Broker::start_in(&b.dir.clone(), &[]);
    let mut c = b.client();
    assert_eq!(
        config(&mut c, "cfg", "segment.bytes"),
        (Some("1000002".into()), 1)
    );
    assert_eq!(config(&mut c, "cfg", "retention.ms").1, 5);
}

#[test]
fn given_records_when_deleted_then_earliest_and_fetch_follow_and_the_start_survives_a_restart() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "del", 1, &[]);
    for i in 0..10 {
        produce(&mut c, "del", 0, batch(&[&format!("r{i}")], None), -1).unwrap();
    }
    let delete = |c: &mut Client, offset: i64, v: i16| {
        let r = c.call(
            &DeleteRecordsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    DeleteRecordsTopic::default()
                        .with_name(topic("del"))
                        .with_partitions(vec![
                            DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(offset),
                        ]),
                ]),
            v,
        );
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.low_watermark)
    };
    assert_eq!(delete(&mut c, 3, 0), (0, 3));
    assert_eq!(delete(&mut c, 6, 1), (0, 6));
    assert_eq!(delete(&mut c, 2, 2), (0, 6), "lower changes nothing");
    assert_eq!(
        delete(&mut c, 11, 2).0,
        1,
        "OFFSET_OUT_OF_RANGE past the high watermark"
    );
    let earliest = |c: &mut Client| {
        let r = c.call(
            &ListOffsetsRequest::default().with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic("del"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-2),
                    ]),
            ]),
            7,
        );
        r.topics[0].partitions[0].offset
    };
    assert_eq!(earliest(&mut c), 6);
    let f = fetch(&mut c, "del", 0, 2, 0, 12);
    assert_eq!(
        f.responses[0].partitions[0].error_code, 1,
        "below the log start"
    );
    let f = fetch(&mut c, "del", 0, 6, 0, 12);
    assert_eq!(f.responses[0].partitions[0].log_start_offset, 6);
    let records = f.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(values(&records)[0], (6, "r6".to_string()));
    b.stop();
    let mut b = Broker::start_in(&b.dir.clone(), &[]);
    let mut c = b.client();
    assert_eq!(earliest(&mut c), 6);
    // -1: up to the high watermark.
    assert_eq!(delete(&mut c, -1, 2), (0, 10));
    b.kill9();
    let b = Broker::start_in(&b.dir.clone(), &[]);
    let mut c = b.client();
    assert_eq!(earliest(&mut c), 10);
}

#[test]
fn given_a_topic_when_its_configs_are_described_then_every_kafka_topic_config_is_listed_as_kafka_lists_it()
 {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let b = Broker::start(&["--set", "log.retention.bytes=5000000"]);
    let mut c = b.client();
    create_topic(&mut c, "all", 1, &[("retention.ms", "60000")]);
    let r = c.call(
        &DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_include_documentation(true)
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("all")),
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("0")),
            ]),
        4,
    );
    let topic = &r.results[0];
    assert_eq!(topic.error_code, 0);
    let names: Vec<&str> = topic.configs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), 33, "{names:?}");
    for k in [
        "cleanup.policy",
        "min.insync.replicas",
        "segment.index.bytes",
        "unclean.leader.election.enable",
        "message.timestamp.after.max.ms",
        "remote.storage.enable",
    ] {
        assert!(names.contains(&k), "{k} missing");
    }
    let get = |k: &str| topic.configs.iter().find(|e| e.name.as_str() == k).unwrap();
    // An override: topic source, then the broker's default as its synonym.
    let e = get("retention.ms");
    assert_eq!(
        (e.value.as_deref(), e.config_source, e.read_only),
        (Some("60000"), 1, false)
    );
    let syn: Vec<(&str, Option<&str>, i8)> = e
        .synonyms
        .iter()
        .map(|x| (x.name.as_str(), x.value.as_deref(), x.source))
        .collect();
    assert_eq!(
        syn,
        vec![
            ("retention.ms", Some("60000"), 1),
            ("log.retention.ms", Some("604800000"), 5)
        ]
    );
    assert_eq!(e.config_type, 5, "LONG");
    assert!(e.documentation.is_some());
    // A static broker setting: its source, and the default below it.
    let e = get("retention.bytes");
    assert_eq!((e.value.as_deref(), e.config_source), (Some("5000000"), 4));
    assert_eq!(e.synonyms.len(), 2);
    // Unset flush.ms is Kafka's "never", not an empty string.
    assert_eq!(
        get("flush.ms").value.as_deref(),
        Some("9223372036854775807")
    );
    // What Strata does not implement is listed with Kafka's default, read-only.
    let e = get("unclean.leader.election.enable");
    assert_eq!(
        (e.value.as_deref(), e.read_only, e.config_type),
        (Some("false"), true, 1)
    );
    // min.insync.replicas is implemented: writable, Kafka's default.
    let e = get("min.insync.replicas");
    assert_eq!(
        (e.value.as_deref(), e.read_only, e.config_type),
        (Some("1"), false, 3)
    );
    assert!(!get("segment.bytes").read_only);
    assert_eq!(get("cleanup.policy").config_type, 7, "LIST");
    // Broker configs: static, read-only; an unset one is null.
    let broker = &r.results[1];
    assert_eq!(broker.error_code, 0);
    let adv = broker
        .configs
        .iter()
        .find(|e| e.name.as_str() == "advertised.listeners")
        .unwrap();
    assert_eq!(adv.value, None);
    let read_only = |k: &str| {
        broker
            .configs
            .iter()
            .find(|e| e.name.as_str() == k)
            .unwrap()
            .read_only
    };
    assert!(read_only("num.partitions") && read_only("log.dirs"));
    assert!(!read_only("log.retention.ms"), "dynamic");
    // Changing what is not implemented is refused, saying why.
    use kafka_protocol::messages::incremental_alter_configs_request as inc;
    let r = c.call(
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("all"))
                .with_configs(vec![
                    inc::AlterableConfig::default()
                        .with_name(s("unclean.leader.election.enable"))
                        .with_config_operation(0)
                        .with_value(Some(s("true"))),
                ]),
        ]),
        1,
    );
    assert_eq!(r.responses[0].error_code, 40);
    let m = r.responses[0].error_message.as_deref().unwrap().to_string();
    assert!(m.contains("not supported") && m.contains("unclean"), "{m}");
}

#[test]
fn given_a_broker_when_described_then_cluster_log_dirs_producers_and_epoch_ends_are_answered() {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "info", 2, &[]);
    for i in 0..3 {
        let r = produce(&mut c, "info", 0, batch(&["x"], Some((42, 0, i))), -1).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    // DescribeCluster: this broker, which is also the controller.
    for v in 0..=2 {
        let r = c.call(&DescribeClusterRequest::default().with_endpoint_type(1), v);
        assert_eq!(r.error_code, 0, "v{v}");
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].broker_id.0, 0);
        assert_eq!(r.controller_id.0, 0);
        assert!(r.cluster_id.starts_with("strata-"));
    }
    let r = c.call(&DescribeClusterRequest::default().with_endpoint_type(2), 2);
    assert_eq!(r.error_code, 115, "UNSUPPORTED_ENDPOINT_TYPE");
    // DescribeLogDirs: the data directory, sizes per partition, and (v4) the disk's bytes.
    let r = c.call(
        &DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default()
                .with_topic(topic("info"))
                .with_partitions(vec![0, 1, 7]),
        ])),
        4,
    );
    let dir = &r.results[0];
    assert_eq!(dir.error_code, 0);
    assert!(dir.total_bytes > 0 && dir.usable_bytes > 0);
    let parts = &dir.topics[0].partitions;
    assert_eq!(parts.len(), 2, "an unknown partition is left out");
    assert!(parts[0].partition_size > 0);
    assert_eq!(parts[1].partition_size, 0);
    let all = c.call(&DescribeLogDirsRequest::default().with_topics(None), 1);
    assert!(
        all.results[0]
            .topics
            .iter()
            .any(|t| t.name.0.as_str() == "info")
    );
    // DescribeProducers: the idempotent producer and its last sequence.
    let r = c.call(
        &DescribeProducersRequest::default().with_topics(vec![
            TopicRequest::default()
                .with_name(topic("info"))
                .with_partition_indexes(vec![0, 1, 9]),
        ]),
        0,
    );
    let ps = &r.topics[0].partitions;
    assert_eq!(ps[0].error_code, 0);
    assert_eq!(ps[0].active_producers.len(), 1);
    assert_eq!(ps[0].active_producers[0].producer_id.0, 42);
    assert_eq!(ps[0].active_producers[0].last_sequence, 2);
    assert!(ps[1].active_producers.is_empty());
    assert_eq!(ps[2].error_code, 3);
    // OffsetForLeaderEpoch: epoch 0 ends at the log end; newer epochs are unknown.
    for v in 2..=4 {
        let r = c.call(
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    OffsetForLeaderTopic::default()
                        .with_topic(topic("info"))
                        .with_partitions(vec![
                            OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(0)
                                .with_leader_epoch(0),
                            OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(3),
                            OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(1)
                                .with_leader_epoch(0),
                        ]),
                ]),
            v,
        );
        let e: Vec<(i16, i32, i64)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect();
        assert_eq!(e, vec![(0, 0, 3), (0, -1, -1), (75, -1, -1)], "v{v}");
    }
}

#[test]
fn given_dynamic_broker_configs_when_set_cluster_wide_and_per_broker_then_topics_without_overrides_follow_and_they_survive_a_restart()
 {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request as inc;
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "plain", 1, &[]);
    create_topic(&mut c, "own", 1, &[("retention.ms", "60000")]);
    let set = |c: &mut Client, broker: &str, key: &str, value: Option<&str>| {
        let r = c.call(
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                inc::AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s(broker))
                    .with_configs(vec![
                        inc::AlterableConfig::default()
                            .with_name(s(key))
                            .with_config_operation(if value.is_some() { 0 } else { 1 })
                            .with_value(value.map(s)),
                    ]),
            ]),
            1,
        );
        r.responses[0].error_code
    };
    // Cluster-wide default: the topic without an override follows; the other keeps its own.
    assert_eq!(set(&mut c, "", "log.retention.ms", Some("3600000")), 0);
    assert_eq!(
        config(&mut c, "plain", "retention.ms"),
        (Some("3600000".into()), 3)
    );
    assert_eq!(
        config(&mut c, "own", "retention.ms"),
        (Some("60000".into()), 1)
    );
    // This broker's value wins over the cluster default.
    assert_eq!(set(&mut c, "0", "log.retention.ms", Some("7200000")), 0);
    assert_eq!(
        config(&mut c, "plain", "retention.ms"),
        (Some("7200000".into()), 2)
    );
    // In effect at once: a smaller message.max.bytes refuses a larger batch.
    assert_eq!(set(&mut c, "", "message.max.bytes", Some("2000")), 0);
    let big = "x".repeat(3000);
    let r = produce(&mut c, "plain", 0, batch(&[&big], None), -1).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 10);
    // Static settings, bad values and other brokers are refused; nothing changes.
    assert_eq!(
        set(&mut c, "", "num.partitions", Some("3")),
        42,
        "INVALID_REQUEST"
    );
    assert_eq!(
        set(&mut c, "", "log.segment.bytes", Some("-4")),
        40,
        "INVALID_CONFIG"
    );
    assert_eq!(set(&mut c, "7", "log.retention.ms", Some("1")), 42);
    let describe = |c: &mut Client| {
        let r = c.call(
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s("0")),
                ]),
            4,
        );
        let e = r.results[0]
            .configs
            .iter()
            .find(|e| e.name.as_str() == "log.retention.ms")
            .unwrap()
            .clone();
        (
            e.value.map(|v| v.to_string()),
            e.config_source,
            e.synonyms.iter().map(|x| x.source).collect::<Vec<_>>(),
        )
    };
    assert_eq!(describe(&mut c), (Some("7200000".into()), 2, vec![2, 3, 5]));
    b.stop();
    let mut b = Broker::start_in(&b.dir.clone(), &[]);
    let mut c = b.client();
    assert_eq!(describe(&mut c), (Some("7200000".into()), 2, vec![2, 3, 5]));
    assert_eq!(
        config(&mut c, "plain", "max.message.bytes").0,
        Some("2000".into())
    );
    // DELETE goes back through the layers.
    assert_eq!(set(&mut c, "0", "log.retention.ms", None), 0);
    assert_eq!(
        config(&mut c, "plain", "retention.ms"),
        (Some("3600000".into()), 3)
    );
    b.stop();
}
