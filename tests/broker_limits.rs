//! Scenario: the broker's resource limits, `max.connections` and `queued.max.request.bytes`,
//! apply back-pressure without failing or reordering anyone's requests.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion};

#[test]
fn given_max_connections_when_one_more_client_connects_then_it_is_served_once_another_leaves() {
    let b = Broker::start(&["--set", "max.connections=2"]);
    let mut first = b.client();
    let mut second = b.client();
    for c in [&mut first, &mut second] {
        let r = c.call(&ApiVersionsRequest::default(), 3);
        assert_eq!(r.error_code, 0);
    }
    // The third connects (the kernel's listen backlog takes it) but is not accepted yet.
    let mut third = b.client();
    third
        .stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (id, body) = third.encode_request(&ApiVersionsRequest::default(), 3);
    third.send_raw(&body);
    assert!(
        third.read_frame().is_none(),
        "the broker answered a connection over max.connections"
    );
    drop(first);
    third
        .stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut frame = third.read_frame().expect("served once a slot is free");
    let header =
        ResponseHeader::decode(&mut frame, ApiVersionsResponse::header_version(3)).unwrap();
    assert_eq!(header.correlation_id, id);
    assert_eq!(
        ApiVersionsResponse::decode(&mut frame, 3)
            .unwrap()
            .error_code,
        0
    );
    // The one still connected was never disturbed.
    assert_eq!(second.call(&ApiVersionsRequest::default(), 3).error_code, 0);
}

#[test]
fn given_a_small_request_budget_when_many_clients_pipeline_large_produces_then_all_are_stored_in_order()
 {
    // Room for two ≈600 KB requests at a time, broker-wide, against 4 clients x 6 in flight.
    let tmp = tempfile::tempdir().unwrap();
    let b = Broker::start_logged(
        &tmp.path().join("data"),
        &[
            "--set",
            "socket.request.max.bytes=700000",
            "--set",
            "queued.max.request.bytes=1400000",
            // An fsync per produce keeps frames waiting while others arrive.
            "--set",
            "log.flush.interval.messages=1",
        ],
        &tmp.path().join("broker.log"),
    );
    let mut admin = b.client();
    create_topic(&mut admin, "budget", 4, &[]);
    let value = "v".repeat(600_000);
    let clients: Vec<_> = (0..4)
        .map(|p| {
            let addr = b.addr.clone();
            let value = value.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                let mut ids = Vec::new();
                for i in 0..6 {
                    let v = format!("{p}:{i}:{value}");
                    let req = ProduceRequest::default()
                        .with_acks(-1)
                        .with_timeout_ms(30_000)
                        .with_topic_data(vec![
                            TopicProduceData::default()
                                .with_name(topic("budget"))
                                .with_partition_data(vec![
                                    PartitionProduceData::default()
                                        .with_index(p)
                                        .with_records(Some(batch(&[&v], None))),
                                ]),
                        ]);
                    let (id, body) = c.encode_request(&req, 9);
                    c.send_raw(&body);
                    ids.push(id);
                }
                for (i, id) in ids.into_iter().enumerate() {
                    let mut frame = c.read_frame().expect("answered");
                    let h = ResponseHeader::decode(&mut frame, ProduceResponse::header_version(9))
                        .unwrap();
                    assert_eq!(h.correlation_id, id);
                    let r = ProduceResponse::decode(&mut frame, 9).unwrap();
                    let pr = &r.responses[0].partition_responses[0];
                    assert_eq!(pr.error_code, 0, "{:?}", pr.error_message);
                    assert_eq!(pr.base_offset, i as i64);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // The budget really ran out: connections waited before reading more.
    let log = b.log_text();
    assert!(
        log.contains("back-pressure"),
        "the budget never held anyone back:\n{log}"
    );
    for p in 0..4 {
        let mut offset = 0;
        while offset < 6 {
            let r = fetch(&mut admin, "budget", p, offset, 0, 12);
            let got = values(r.responses[0].partitions[0].records.as_ref().unwrap());
            assert!(!got.is_empty());
            for (o, v) in got {
                assert_eq!(o, offset);
                assert!(v.starts_with(&format!("{p}:{offset}:")));
                offset += 1;
            }
        }
    }
}

#[test]
fn given_a_request_budget_smaller_than_a_frame_when_starting_then_the_broker_refuses_with_a_clear_error()
 {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--set", "socket.request.max.bytes=2000000"])
        .args(["--set", "queued.max.request.bytes=1000000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("queued.max.request.bytes must be -1 or at least socket.request.max.bytes"),
        "{err}"
    );
    for bad in ["max.connections=0", "socket.request.max.bytes=3000000000"] {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--set", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
    }
}

#[test]
fn given_a_low_open_file_limit_when_a_topic_has_more_partitions_than_descriptors_then_it_is_created_and_served()
 {
    use kafka_protocol::messages::CreateTopicsRequest;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log = tmp.path().join("broker.log");
    // Idle partitions hold no descriptor, and those written close theirs soon after.
    let b = Broker::start_with_open_file_limit(
        &dir,
        &["--set", "strata.log.file.idle.ms=100"],
        &log,
        128,
    );
    let text = b.log_text();
    assert!(
        text.contains("open-file limit") && text.contains("open_files=128"),
        "the broker says what it can hold: {text}"
    );
    let mut c = b.client();
    let r = c.call(
        &CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(topic("wide"))
                .with_num_partitions(300)
                .with_replication_factor(1),
        ]),
        7,
    );
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    // Every partition takes a record. A write that finds no descriptor free is refused with
    // KAFKA_STORAGE_ERROR (retriable) without harming the partition; the client retries.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for p in 0..300 {
        loop {
            let r = produce(&mut c, "wide", p, batch(&[&format!("p{p}")], None), -1).unwrap();
            let e = r.responses[0].partition_responses[0].error_code;
            if e == 0 {
                break;
            }
            assert_eq!(e, 56, "partition {p}: only KAFKA_STORAGE_ERROR is retried");
            assert!(
                std::time::Instant::now() < deadline,
                "partition {p} never took its record"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Reads likewise: a segment that cannot be opened for lack of a descriptor answers
    // KAFKA_STORAGE_ERROR and the consumer retries (descriptors free as the idle sweep closes
    // the files of the partitions just written).
    for p in [0, 150, 299] {
        loop {
            let f = fetch(&mut c, "wide", p, 0, 1000, 12);
            let part = &f.responses[0].partitions[0];
            if part.error_code == 0 {
                let records = part.records.clone().unwrap();
                assert_eq!(
                    values(&records),
                    vec![(0, format!("p{p}"))],
                    "partition {p}"
                );
                break;
            }
            assert_eq!(
                part.error_code, 56,
                "partition {p}: only KAFKA_STORAGE_ERROR"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "partition {p} was never read"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn given_a_small_processing_memory_when_a_request_needs_more_than_all_of_it_then_it_runs_alone_and_everyone_is_answered()
 {
    use kafka_protocol::messages::{DeleteTopicsRequest, MetadataRequest};
    let b = Broker::start(&["--set", "strata.request.processing.memory.bytes=1048576"]);
    let mut admin = b.client();
    create_topic(&mut admin, "t", 1, &[]);
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let addr = b.addr.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                for j in 0..5 {
                    // ~100 KB of names: its estimate (64 bytes per byte) is six times the whole.
                    let names = (0..20_000)
                        .map(|k| topic(&format!("n{i}-{j}-{k}")))
                        .collect();
                    let r = c.call(&DeleteTopicsRequest::default().with_topic_names(names), 3);
                    assert_eq!(r.responses.len(), 20_000);
                    let r = produce(&mut c, "t", 0, batch(&["v"], None), -1).unwrap();
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let md = admin.call(&MetadataRequest::default().with_topics(None), 12);
    assert_eq!(md.topics.len(), 1);
    let r = fetch(&mut admin, "t", 0, 0, 0, 12);
    assert_eq!(r.responses[0].partitions[0].high_watermark, 20);
}
