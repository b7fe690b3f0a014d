//! Scenario: a client speaks the Kafka protocol to a running broker, API by API, at every
//! advertised version where it matters.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;

#[test]
fn given_any_supported_version_when_api_versions_is_asked_then_it_lists_exactly_what_is_implemented()
 {
    let b = Broker::start(&[]);
    let mut c = b.client();
    for v in 0..=4 {
        let r = c.call(&ApiVersionsRequest::default(), v);
        assert_eq!(r.error_code, 0);
        let keys: Vec<i16> = r.api_keys.iter().map(|k| k.api_key).collect();
        for k in [0, 1, 2, 3, 18, 19, 20, 22, 32] {
            assert!(keys.contains(&k), "v{v}: api {k} missing from {keys:?}");
        }
        for k in [24, 25, 26, 71] {
            assert!(
                !keys.contains(&k),
                "v{v}: api {k} (transactions, telemetry) is not implemented, so not advertised"
            );
        }
    }
}

#[test]
fn given_an_unknown_api_versions_version_when_asked_then_error_35_comes_back_in_the_v0_layout() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    let (id, mut body) = c.encode_request(&ApiVersionsRequest::default(), 3);
    body[2..4].copy_from_slice(&99i16.to_be_bytes()); // claim v99
    c.send_raw(&body);
    let mut frame = c.read_frame().unwrap();
    let h = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut frame, 0).unwrap();
    assert_eq!(h.correlation_id, id);
    let r = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 0)
        .unwrap();
    assert_eq!(r.error_code, 35);
    assert!(
        r.api_keys
            .iter()
            .any(|k| k.api_key == 18 && k.max_version == 4)
    );
    // The connection stays usable: the client retries at a lower version.
    assert_eq!(c.call(&ApiVersionsRequest::default(), 0).error_code, 0);
}

#[test]
fn given_metadata_requests_when_topics_are_null_empty_or_unknown_then_kafka_semantics_hold() {
    let b = Broker::start(&["--set", "auto.create.topics.enable=true"]);
    let mut c = b.client();
    create_topic(&mut c, "existing", 3, &[]);
    let all = c.call(&MetadataRequest::default().with_topics(None), 12);
    assert_eq!(all.topics.len(), 1);
    assert_eq!(all.topics[0].partitions.len(), 3);
    assert_eq!(all.brokers[0].host.as_str(), "127.0.0.1");
    assert_eq!(all.controller_id.0, 0);
    assert!(all.cluster_id.is_some());
    let none = c.call(&MetadataRequest::default().with_topics(Some(vec![])), 12);
    assert!(none.topics.is_empty(), "v1+: an empty list means no topics");
    let v0_all = c.call(&MetadataRequest::default().with_topics(Some(vec![])), 0);
    assert_eq!(v0_all.topics.len(), 1, "v0: an empty list means all topics");
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let ask = |name: &str| {
        Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic(name))),
        ])
    };
    let no_create = c.call(
        &MetadataRequest::default()
            .with_topics(ask("fresh"))
            .with_allow_auto_topic_creation(false),
        12,
    );
    assert_eq!(no_create.topics[0].error_code, 3);
    let created = c.call(
        &MetadataRequest::default()
            .with_topics(ask("fresh"))
            .with_allow_auto_topic_creation(true),
        12,
    );
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].partitions.len(), 1);
    let bad = c.call(
        &MetadataRequest::default()
            .with_topics(ask("bad/name"))
            .with_allow_auto_topic_creation(true),
        12,
    );
    assert_eq!(bad.topics[0].error_code, 17);
    for v in 0..=12 {
        let r = c.call(
            &MetadataRequest::default().with_topics(if v == 0 { Some(vec![]) } else { None }),
            v,
        );
        assert_eq!(r.topics.len(), 2, "v{v}");
    }
}

#[test]
fn given_produced_batches_when_fetched_at_every_version_then_records_offsets_and_watermarks_are_exact()
 {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "t", 1, &[]);
    for i in 0..5 {
        let r = produce(
            &mut c,
            "t",
            0,
            batch(&[&format!("a{i}"), &format!("b{i}")], None),
            -1,
        )
        .unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.base_offset, i * 2);
    }
    for v in 4..=12 {
        let r = fetch(&mut c, "t", 0, 3, 0, v);
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{v}");
        assert_eq!(p.high_watermark, 10);
        assert_eq!(p.last_stable_offset, 10);
        if v >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let vals = values(p.records.as_ref().unwrap());
        assert_eq!(
            vals.first().unwrap(),
            &(2, "a1".to_string()),
            "the whole batch holding offset 3"
        );
        assert_eq!(vals.last().unwrap(), &(9, "b4".to_string()));
    }
    let out = fetch(&mut c, "t", 0, 11, 0, 12);
    assert_eq!(
        out.responses[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE past the end"
    );
    let at_end = fetch(&mut c, "t", 0, 10, 0, 12);
    assert_eq!(at_end.responses[0].partitions[0].error_code, 0);
    assert!(
        at_end.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn given_a_parked_fetch_when_a_producer_appends_then_the_fetch_returns_the_new_records() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "lp", 1, &[]);
    let addr = b.addr.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut p = Client::connect(&addr);
        produce(&mut p, "lp", 0, batch(&["late"], None), 1).unwrap();
    });
    let start = Instant::now();
    let r = fetch(&mut c, "lp", 0, 0, 20_000, 12);
    let waited = start.elapsed();
    producer.join().unwrap();
    assert_eq!(
        values(r.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![(0, "late".to_string())]
    );
    assert!(
        waited < Duration::from_secs(15),
        "woken by the produce, not by the 20 s timeout: {waited:?}"
    );
    // min_bytes 0 means "answer at once", whatever max_wait_ms says.
    {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(20_000)
            .with_min_bytes(0)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic("lp"))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(1)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let start = Instant::now();
        let r = c.call(&req, 12);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "min_bytes=0 must not park"
        );
        assert!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .unwrap()
                .is_empty()
        );
    }
    // And with nothing to wake it, the fetch waits out max_wait_ms and returns empty.
    let start = Instant::now();
    let r = fetch(&mut c, "lp", 0, 1, 300, 12);
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert!(
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn given_acks_zero_when_producing_then_no_response_is_sent_and_the_next_request_is_answered_in_order()
 {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "a0", 1, &[]);
    assert!(produce(&mut c, "a0", 0, batch(&["x"], None), 0).is_none());
    // The next response on this connection belongs to the next request.
    let r = fetch(&mut c, "a0", 0, 0, 1000, 12);
    assert_eq!(
        values(r.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![(0, "x".to_string())]
    );
}

#[test]
fn given_an_idempotent_producer_when_it_retries_or_skips_then_duplicates_get_the_original_offset_and_gaps_are_refused()
 {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "idem", 1, &[]);
    let pid = c.call(
        &InitProducerIdRequest::default().with_transaction_timeout_ms(60000),
        4,
    );
    assert_eq!(pid.error_code, 0);
    let id = pid.producer_id.0;
    let first = batch(&["one", "two"], Some((id, 0, 0)));
    let r = produce(&mut c, "idem", 0, first.clone(), -1).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 0);
    produce(&mut c, "idem", 0, batch(&["three"], Some((id, 0, 2))), -1).unwrap();
    let dup = produce(&mut c, "idem", 0, first, -1).unwrap();
    assert_eq!(dup.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(
        dup.responses[0].partition_responses[0].base_offset, 0,
        "a retry gets its original offset"
    );
    let gap = produce(&mut c, "idem", 0, batch(&["x"], Some((id, 0, 7))), -1).unwrap();
    assert_eq!(
        gap.responses[0].partition_responses[0].error_code, 45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    let stale = produce(&mut c, "idem", 0, batch(&["x"], Some((id, 0, 3))), -1).unwrap();
    assert_eq!(
        stale.responses[0].partition_responses[0].error_code, 0,
        "same epoch, next sequence"
    );
    let r = fetch(&mut c, "idem", 0, 0, 0, 12);
    let vals: Vec<String> = values(r.responses[0].partitions[0].records.as_ref().unwrap())
        .into_iter()
        .map(|v| v.1)
        .collect();
    assert_eq!(
        vals,
        ["one", "two", "three", "x"],
        "the retry was not stored twice"
    );
    // Without a transactional id, naming an id and epoch (KIP-360) gets a new id at epoch 0,
    // as from Kafka; so do the zeros some clients send (kafka-go): ids are never shared.
    for v in 3..=4 {
        let again = c.call(
            &InitProducerIdRequest::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            v,
        );
        assert_eq!(again.error_code, 0);
        assert_ne!(again.producer_id.0, id, "v{v}");
        assert_eq!(again.producer_epoch, 0);
        let zeros = c.call(&InitProducerIdRequest::default(), v);
        let zeros2 = c.call(&InitProducerIdRequest::default(), v);
        assert_ne!(zeros.producer_id, zeros2.producer_id, "v{v}");
    }
    // A newer epoch fences the old one.
    produce(&mut c, "idem", 0, batch(&["new"], Some((id, 1, 0))), -1).unwrap();
    let fenced = produce(&mut c, "idem", 0, batch(&["old"], Some((id, 0, 4))), -1).unwrap();
    assert_eq!(
        fenced.responses[0].partition_responses[0].error_code, 47,
        "INVALID_PRODUCER_EPOCH"
    );
}

/// `(error_code, base_offset)` of a one-partition produce response.
fn produced(r: &ProduceResponse) -> (i16, i64) {
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Produces `values` to partition 0 as one batch of `producer` (id, epoch, first sequence),
/// stamped now: `(error_code, base_offset)`.
fn send_as(c: &mut Client, name: &str, values: &[&str], producer: (i64, i16, i32)) -> (i16, i64) {
    let records = batch_at(values, Some(producer), now_ms());
    produced(&produce(c, name, 0, records, -1).unwrap())
}

#[test]
fn given_an_idempotent_producer_whose_batch_rolled_into_an_older_segment_when_the_broker_restarts_or_crashes_then_its_retry_is_still_a_duplicate()
 {
    for crash in [false, true] {
        let mut b = Broker::start(&[]);
        let mut c = b.client();
        create_topic(&mut c, "idem", 1, &[("segment.bytes", "1024")]);
        let pid = c.call(
            &InitProducerIdRequest::default().with_transaction_timeout_ms(60000),
            4,
        );
        let id = pid.producer_id.0;
        let first = batch_at(&["a0", "a1"], Some((id, 0, 0)), now_ms());
        let r = produce(&mut c, "idem", 0, first.clone(), -1).unwrap();
        assert_eq!(produced(&r), (0, 0));
        // Plain batches that roll the producer's batch into an older segment.
        let filler = "f".repeat(600);
        for _ in 0..6 {
            produce(&mut c, "idem", 0, batch(&[&filler], None), -1).unwrap();
        }
        assert!(strata_storage::testing::segment_files(&b.dir.join("idem-0")) >= 3);
        drop(c);
        if crash {
            b.kill9();
        } else {
            assert_eq!(b.stop(), 0);
        }
        let b2 = Broker::start_in(&b.dir, &[]);
        let mut c = b2.client();
        let dup = produce(&mut c, "idem", 0, first, -1).unwrap();
        assert_eq!(
            produced(&dup),
            (0, 0),
            "crash={crash}: the retry gets its original offset and is not stored again"
        );
        assert_eq!(
            send_as(&mut c, "idem", &["a2"], (id, 0, 2)),
            (0, 8),
            "crash={crash}: the next sequence follows"
        );
        assert_eq!(
            send_as(&mut c, "idem", &["a9"], (id, 0, 9)).0,
            45,
            "crash={crash}: OUT_OF_ORDER_SEQUENCE_NUMBER, the sequence is known"
        );
        drop(b2);
        drop(b);
    }
}

#[test]
fn given_a_producer_state_snapshot_ahead_of_the_log_or_damaged_when_the_broker_starts_then_it_is_not_trusted()
 {
    // A snapshot that says producer 0 wrote offsets 0..4.
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "snap", 1, &[]);
    produce(
        &mut c,
        "snap",
        0,
        batch_at(&["a", "b"], Some((0, 0, 0)), now_ms()),
        -1,
    )
    .unwrap();
    produce(
        &mut c,
        "snap",
        0,
        batch_at(&["c", "d"], Some((0, 0, 2)), now_ms()),
        -1,
    )
    .unwrap();
    drop(c);
    assert_eq!(b.stop(), 0);
    let ahead = std::fs::read(b.dir.join("snap-0/producer-state")).unwrap();

    // A log that holds one plain batch, as if a crash had cut it after offset 0.
    let mut b2 = Broker::start(&[]);
    let mut c = b2.client();
    create_topic(&mut c, "snap", 1, &[]);
    produce(&mut c, "snap", 0, batch(&["plain"], None), -1).unwrap();
    drop(c);
    assert_eq!(b2.stop(), 0);
    let snapshot = b2.dir.join("snap-0/producer-state");
    std::fs::write(&snapshot, &ahead).unwrap();
    let mut b3 = Broker::start_in(&b2.dir, &[]);
    assert_ne!(
        std::fs::read(&snapshot).unwrap(),
        ahead,
        "the stale snapshot is replaced at start"
    );
    let mut c = b3.client();
    assert_eq!(
        send_as(&mut c, "snap", &["a", "b"], (0, 0, 0)),
        (0, 1),
        "appended after the plain batch, not answered with offset 0 of a batch the log lacks"
    );
    drop(c);
    assert_eq!(b3.stop(), 0);

    // A damaged snapshot: the broker starts, says so, and rebuilds from the log.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    bytes[12] ^= 0xff;
    std::fs::write(&snapshot, &bytes).unwrap();
    let b4 = Broker::start_in(&b2.dir, &[]);
    let mut c = b4.client();
    assert_eq!(
        send_as(&mut c, "snap", &["a", "b"], (0, 0, 0)),
        (0, 1),
        "rebuilt from the last segment's headers"
    );
    assert_eq!(send_as(&mut c, "snap", &["c"], (0, 0, 2)), (0, 3));
}

#[test]
fn given_producer_id_expiration_when_a_producer_was_idle_longer_then_a_restart_forgets_it_and_keeps_the_others()
 {
    let mut b = Broker::start(&["--set", "producer.id.expiration.ms=60000"]);
    let mut c = b.client();
    create_topic(&mut c, "exp", 1, &[]);
    // Producer 1's last batch is two minutes old, producer 2's is fresh.
    let old = batch_at(&["old"], Some((1, 0, 0)), now_ms() - 120_000);
    let fresh = batch_at(&["fresh"], Some((2, 0, 0)), now_ms());
    assert_eq!(
        produced(&produce(&mut c, "exp", 0, old.clone(), -1).unwrap()),
        (0, 0)
    );
    assert_eq!(
        produced(&produce(&mut c, "exp", 0, fresh.clone(), -1).unwrap()),
        (0, 1)
    );
    drop(c);
    assert_eq!(b.stop(), 0);
    let b2 = Broker::start_in(&b.dir, &["--set", "producer.id.expiration.ms=60000"]);
    let mut c = b2.client();
    assert_eq!(
        produced(&produce(&mut c, "exp", 0, fresh, -1).unwrap()),
        (0, 1),
        "a producer within the expiration is still deduplicated"
    );
    assert_eq!(
        produced(&produce(&mut c, "exp", 0, old, -1).unwrap()),
        (0, 2),
        "an expired producer is unknown: its batch is appended as new"
    );
    drop(b2);
    drop(b);
}

#[test]
fn given_list_offsets_when_asked_for_earliest_latest_max_and_by_time_then_offsets_are_right() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use strata_storage::batch::{BatchBuilder, Compression, NewRecord};
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "lo", 1, &[]);
    for i in 0..4i64 {
        let mut bb = BatchBuilder::new(Compression::Zstd);
        bb.push(NewRecord::new(vec![1]).with_timestamp(1000 + i * 100))
            .unwrap();
        produce(&mut c, "lo", 0, bytes::Bytes::from(bb.build().unwrap()), 1).unwrap();
    }
    let ask = |c: &mut Client, ts: i64, v: i16| {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic("lo"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts),
                    ]),
            ]);
        let r = c.call(&req, v);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        (p.offset, p.timestamp)
    };
    for v in 1..=7 {
        assert_eq!(ask(&mut c, -2, v).0, 0, "earliest v{v}");
        assert_eq!(ask(&mut c, -1, v).0, 4, "latest v{v}");
        assert_eq!(ask(&mut c, 1150, v).0, 2, "by time v{v}");
        assert_eq!(ask(&mut c, 99_999, v).0, -1, "after everything v{v}");
    }
    assert_eq!(ask(&mut c, -3, 7), (3, 1300), "max timestamp");
}

#[test]
fn given_topic_admin_when_creating_describing_and_deleting_then_configs_and_errors_are_kafkas() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let b = Broker::start(&["--set", "log.retention.bytes=5000000"]);
    let mut c = b.client();
    create_topic(
        &mut c,
        "cfg",
        2,
        &[("retention.ms", "60000"), ("flush.messages", "1")],
    );
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let dup = c.call(
        &CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(topic("cfg"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]),
        7,
    );
    assert_eq!(dup.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    let rf = c.call(
        &CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(topic("rf3"))
                .with_num_partitions(1)
                .with_replication_factor(3),
        ]),
        7,
    );
    assert_eq!(rf.topics[0].error_code, 38, "INVALID_REPLICATION_FACTOR");
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    let badcfg = c.call(
        &CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(topic("bc"))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name("retention.ms".into())
                        .with_value(Some("soon".into())),
                ]),
        ]),
        7,
    );
    assert_eq!(badcfg.topics[0].error_code, 40, "INVALID_CONFIG");
    for v in 1..=4 {
        let r = c.call(
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name("cfg".into()),
                ]),
            v,
        );
        let res = &r.results[0];
        assert_eq!(res.error_code, 0);
        let get = |k: &str| res.configs.iter().find(|c| c.name.as_str() == k).unwrap();
        assert_eq!(get("retention.ms").value.as_deref(), Some("60000"));
        assert_eq!(get("retention.ms").config_source, 1, "topic override");
        assert_eq!(get("retention.bytes").value.as_deref(), Some("5000000"));
        assert_eq!(
            get("retention.bytes").config_source,
            4,
            "static broker config"
        );
        assert_eq!(get("compression.type").value.as_deref(), Some("producer"));
        assert_eq!(get("compression.type").config_source, 5, "default");
    }
    let del = c.call(
        &DeleteTopicsRequest::default().with_topic_names(vec![topic("cfg"), topic("nope")]),
        5,
    );
    assert_eq!(del.responses[0].error_code, 0);
    assert_eq!(del.responses[1].error_code, 3);
    assert!(!b.dir.join("cfg-0").exists() && !b.dir.join("cfg-1").exists());
    let md = c.call(&MetadataRequest::default().with_topics(None), 12);
    assert!(md.topics.is_empty());
}

#[test]
fn given_a_clean_shutdown_when_restarted_then_topics_and_records_are_all_there() {
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "keep", 2, &[("retention.ms", "-1")]);
    for i in 0..10 {
        produce(&mut c, "keep", i % 2, batch(&[&format!("v{i}")], None), -1).unwrap();
    }
    drop(c);
    assert_eq!(b.stop(), 0, "SIGTERM exits 0");
    let dir = b.dir.clone();
    let b2 = Broker::start_in(&dir, &[]);
    let mut c = b2.client();
    let r = fetch(&mut c, "keep", 1, 0, 0, 12);
    let vals: Vec<String> = values(r.responses[0].partitions[0].records.as_ref().unwrap())
        .into_iter()
        .map(|v| v.1)
        .collect();
    assert_eq!(vals, ["v1", "v3", "v5", "v7", "v9"]);
    drop(b);
}

#[test]
fn given_pipelined_requests_on_one_connection_when_sent_without_waiting_then_they_are_processed_and_answered_in_order()
 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, HeaderVersion};
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "piped", 1, &[]);
    // 60 produce requests (an idempotent producer, so any reordering would be refused as out
    // of sequence), then a raw garbage frame: all written before a single response is read.
    let mut ids = Vec::new();
    for i in 0..60 {
        let value = format!("p{i}-{}", "x".repeat(i * 200));
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic("piped"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(&[&value], Some((7, 0, i as i32))))),
                    ]),
            ]);
        let (id, body) = c.encode_request(&req, 9);
        c.send_raw(&body);
        ids.push(id);
    }
    c.send_raw(&[0xff; 20]); // an unknown API key: the connection closes after the others
    for (i, id) in ids.iter().enumerate() {
        let mut frame = c
            .read_frame()
            .expect("every request before the bad one is answered");
        let header =
            ResponseHeader::decode(&mut frame, ProduceResponse::header_version(9)).unwrap();
        assert_eq!(
            header.correlation_id, *id,
            "responses leave in request order"
        );
        let r = ProduceResponse::decode(&mut frame, 9).unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "request {i}: {:?}", p.error_message);
        assert_eq!(p.base_offset, i as i64, "appended in the order sent");
    }
    assert!(c.is_closed(), "the bad frame closes the connection");
    let mut other = b.client();
    let r = fetch(&mut other, "piped", 0, 0, 0, 12);
    let got = values(r.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(got.len(), 60);
    for (i, (offset, v)) in got.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert!(v.starts_with(&format!("p{i}-")), "{v:.20}");
    }
}

#[test]
fn given_segments_no_longer_in_the_page_cache_when_fetched_then_the_records_come_back_exactly() {
    // A consumer replaying old data: the fetch reads the pages in on a blocking thread first.
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "cold", 1, &[]);
    let big = "c".repeat(50_000);
    for i in 0..40 {
        produce(&mut c, "cold", 0, batch(&[&format!("{i}:{big}")], None), -1).unwrap();
    }
    drop(c);
    assert_eq!(b.stop(), 0);
    for entry in std::fs::read_dir(b.dir.join("cold-0")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            strata_storage::io::evict_page_cache(&path).unwrap();
        }
    }
    let b2 = Broker::start_in(&b.dir, &[]);
    let mut c = b2.client();
    let mut offset = 0;
    while offset < 40 {
        let r = fetch(&mut c, "cold", 0, offset, 0, 12);
        let got = values(r.responses[0].partitions[0].records.as_ref().unwrap());
        assert!(!got.is_empty());
        for (o, v) in got {
            assert_eq!(o, offset);
            assert_eq!(v, format!("{offset}:{big}"));
            offset += 1;
        }
    }
}

#[test]
fn given_a_parked_fetch_when_its_topic_is_deleted_then_it_is_answered_at_once_with_unknown_partition()
 {
    let b = Broker::start(&[]);
    let mut admin = b.client();
    create_topic(&mut admin, "gone", 1, &[]);
    let addr = b.addr.clone();
    let parked = std::thread::spawn(move || {
        let mut c = Client::connect(&addr);
        let start = Instant::now();
        let r = fetch(&mut c, "gone", 0, 0, 20_000, 12);
        (r, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300)); // let it park
    let del = admin.call(
        &DeleteTopicsRequest::default().with_topic_names(vec![topic("gone")]),
        5,
    );
    assert_eq!(del.responses[0].error_code, 0);
    let (r, waited) = parked.join().unwrap();
    assert_eq!(r.responses[0].partitions[0].error_code, 3);
    // Woken by the deletion, not by its 20 s deadline (a wide margin for a loaded machine).
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
}
