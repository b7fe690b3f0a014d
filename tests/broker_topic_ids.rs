//! Fetch v13+ and Produce v13 name topics by id: ids are stable across restarts and new for
//! every creation, so a client of a deleted and re-created topic gets UNKNOWN_TOPIC_ID.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;
use kafka_protocol::messages::*;

fn topic_id(c: &mut Client, name: &str) -> ::uuid::Uuid {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let md = c.call(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic(name))),
        ])),
        13,
    );
    assert_eq!(md.error_code, 0);
    md.topics[0].topic_id
}

fn fetch_by_id(c: &mut Client, id: ::uuid::Uuid, version: i16) -> (i16, Vec<(i64, String)>) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let r = c.call(
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic_id(id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]),
        version,
    );
    assert_eq!(
        r.responses[0].topic_id, id,
        "the answer names the topic by id"
    );
    let p = &r.responses[0].partitions[0];
    (
        p.error_code,
        p.records.as_ref().map(values).unwrap_or_default(),
    )
}

fn produce_by_id(c: &mut Client, id: ::uuid::Uuid, value: &str) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let r = c.call(
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_topic_id(id)
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(&[value], None))),
                    ]),
            ]),
        13,
    );
    assert_eq!(r.responses[0].topic_id, id);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn given_topic_ids_when_fetching_and_producing_by_id_then_records_flow_and_a_recreated_topic_is_unknown_by_its_old_id()
 {
    let mut b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "ids", 1, &[]);
    let id = topic_id(&mut c, "ids");
    assert!(!id.is_nil());
    assert_eq!(produce_by_id(&mut c, id, "one"), (0, 0));
    produce(&mut c, "ids", 0, batch(&["two"], None), -1).unwrap();
    for v in 13..=17 {
        assert_eq!(
            fetch_by_id(&mut c, id, v),
            (0, vec![(0, "one".to_string()), (1, "two".to_string())]),
            "v{v}"
        );
    }
    // Stable across a restart.
    b.stop();
    let b = Broker::start_in(&b.dir.clone(), &[]);
    let mut c = b.client();
    assert_eq!(topic_id(&mut c, "ids"), id);
    assert_eq!(fetch_by_id(&mut c, id, 17).1.len(), 2);
    // Deleted and re-created: a new id; the old one is unknown to fetch and produce.
    let del = c.call(
        &DeleteTopicsRequest::default().with_topic_names(vec![topic("ids")]),
        5,
    );
    assert_eq!(del.responses[0].error_code, 0);
    create_topic(&mut c, "ids", 1, &[]);
    let new_id = topic_id(&mut c, "ids");
    assert_ne!(new_id, id);
    assert_eq!(fetch_by_id(&mut c, id, 13).0, 100, "UNKNOWN_TOPIC_ID");
    assert_eq!(produce_by_id(&mut c, id, "lost").0, 100);
    assert_eq!(fetch_by_id(&mut c, new_id, 13), (0, vec![]));
}

#[test]
fn given_list_offsets_v8_to_v10_when_asked_for_earliest_local_and_latest_tiered_then_kafka_answers_come_back()
 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "lo", 1, &[]);
    for i in 0..3 {
        produce(&mut c, "lo", 0, batch(&[&format!("r{i}")], None), -1).unwrap();
    }
    for v in 8..=10 {
        let ask = |c: &mut Client, ts: i64| {
            let r = c.call(
                &ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![
                        ListOffsetsTopic::default()
                            .with_name(topic("lo"))
                            .with_partitions(vec![
                                ListOffsetsPartition::default()
                                    .with_partition_index(0)
                                    .with_timestamp(ts),
                            ]),
                    ]),
                v,
            );
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.offset)
        };
        assert_eq!(ask(&mut c, -2), (0, 0), "v{v} earliest");
        assert_eq!(ask(&mut c, -1), (0, 3), "v{v} latest");
        assert_eq!(
            ask(&mut c, -4),
            (0, 0),
            "v{v} earliest local: everything is local"
        );
        assert_eq!(
            ask(&mut c, -5),
            (0, -1),
            "v{v} latest tiered: nothing is tiered"
        );
    }
}
