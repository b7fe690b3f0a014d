//! Scenario: hostile bytes on the wire. Each gets an error code or a closed connection, never a
//! crash or a hang, and the broker keeps serving everyone else.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::io::Write;

use common::*;
use kafka_protocol::messages::*;

fn still_serving(b: &Broker) {
    let mut c = b.client();
    assert_eq!(
        c.call(&ApiVersionsRequest::default(), 3).error_code,
        0,
        "broker stopped serving"
    );
}

#[test]
fn given_random_bytes_when_sent_as_requests_then_connections_close_and_the_broker_survives() {
    let b = Broker::start(&[]);
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..200i32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = 8 + (seed % 300) as usize;
        let mut body: Vec<u8> = (0..len)
            .map(|i| (seed.rotate_left(i as u32 % 64) >> 3) as u8)
            .collect();
        // Half the rounds aim at a real API and version so the body decoder is exercised.
        // Half the rounds carry a valid request header for a real API and version, so the
        // random part reaches that API's body decoder.
        if round % 2 == 0 {
            let apis: [(i16, i16); 9] = [
                (0, 9),
                (0, 3),
                (1, 12),
                (1, 4),
                (3, 12),
                (3, 0),
                (2, 7),
                (19, 7),
                (32, 4),
            ];
            let (k, v) = apis[(seed % 9) as usize];
            let key = ApiKey::try_from(k).unwrap();
            let mut head = Vec::new();
            head.extend_from_slice(&k.to_be_bytes());
            head.extend_from_slice(&v.to_be_bytes());
            head.extend_from_slice(&round.to_be_bytes());
            head.extend_from_slice(&0i16.to_be_bytes()); // empty client id
            if key.request_header_version(v) >= 2 {
                head.push(0); // no tagged fields
            }
            body.splice(0..0, head);
        }
        let mut c = b.client();
        c.send_raw(&body);
        // Either an answer (if the bytes happened to decode) or a closed connection — no hang.
        let _ = c.read_frame();
    }
    still_serving(&b);
}

#[test]
fn given_a_huge_length_prefix_when_sent_then_the_connection_is_closed_without_allocating_it() {
    let b = Broker::start(&[]);
    for size in [i32::MAX, 104_857_601, -1, 0, 7] {
        let mut c = b.client();
        c.stream.write_all(&size.to_be_bytes()).unwrap();
        assert!(c.is_closed(), "size {size} must close the connection");
    }
    still_serving(&b);
}

#[test]
fn given_a_truncated_frame_when_the_client_goes_away_then_the_broker_does_not_hang_or_crash() {
    let b = Broker::start(&[]);
    {
        let mut c = b.client();
        c.stream.write_all(&1000i32.to_be_bytes()).unwrap();
        c.stream.write_all(&[0u8; 10]).unwrap();
    } // dropped mid-frame
    still_serving(&b);
}

#[test]
fn given_an_unknown_api_key_or_unsupported_version_when_sent_then_the_connection_is_closed() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    let (_, mut body) = c.encode_request(&ApiVersionsRequest::default(), 0);
    body[0..2].copy_from_slice(&9999i16.to_be_bytes());
    c.send_raw(&body);
    assert!(c.is_closed(), "unknown API key");
    let mut c = b.client();
    let (_, body) = c.encode_request(&MetadataRequest::default().with_topics(None), 12);
    let mut body = body;
    body[2..4].copy_from_slice(&40i16.to_be_bytes());
    c.send_raw(&body);
    assert!(c.is_closed(), "unsupported Metadata version");
    // A real API Strata does not implement, in a request that decodes: refused for what it
    // asks, not for a malformed body.
    let mut c = b.client();
    let (_, body) = c.encode_request(
        &DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_pattern_type_filter(3)
            .with_operation(1)
            .with_permission_type(1),
        1,
    );
    c.send_raw(&body);
    assert!(c.is_closed(), "unimplemented API");
    still_serving(&b);
}

#[test]
fn given_corrupt_or_invalid_batches_when_produced_then_each_gets_its_error_code_and_nothing_is_stored()
 {
    let b = Broker::start(&["--set", "message.max.bytes=2000"]);
    let mut c = b.client();
    create_topic(&mut c, "h", 1, &[]);
    let good = batch(&["ok"], None);
    let code_of = |c: &mut Client, records: bytes::Bytes| {
        produce(c, "h", 0, records, -1).unwrap().responses[0].partition_responses[0].error_code
    };
    let mut bad_crc = good.to_vec();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xff;
    assert_eq!(code_of(&mut c, bad_crc.into()), 2, "CORRUPT_MESSAGE");
    let mut bad_magic = good.to_vec();
    bad_magic[16] = 1;
    assert_eq!(
        code_of(&mut c, bad_magic.into()),
        43,
        "UNSUPPORTED_FOR_MESSAGE_FORMAT"
    );
    let two = [good.to_vec(), good.to_vec()].concat();
    assert_eq!(
        code_of(&mut c, two.into()),
        87,
        "INVALID_RECORD: one batch per partition"
    );
    assert_eq!(
        code_of(&mut c, bytes::Bytes::from_static(&[1, 2, 3])),
        2,
        "garbage"
    );
    let big = batch(&[&"x".repeat(3000)], None);
    assert_eq!(code_of(&mut c, big), 10, "MESSAGE_TOO_LARGE");
    let mut control = good.to_vec();
    control[22] |= 1 << 5;
    strata_storage::batch::header::write_crc(&mut control);
    assert_eq!(
        code_of(&mut c, control.into()),
        87,
        "clients may not send control batches"
    );
    let unknown = {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic("missing"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(good.clone())),
                ]),
        ]);
        c.call(&req, 9).responses[0].partition_responses[0].error_code
    };
    assert_eq!(unknown, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(code_of(&mut c, good), 0);
    let r = fetch(&mut c, "h", 0, 0, 0, 12);
    assert_eq!(
        r.responses[0].partitions[0].high_watermark, 1,
        "only the good batch was stored"
    );
}

/// Opens `n` connections that each announce a frame of `size` bytes and then send nothing.
fn silent_announcers(b: &Broker, n: usize, size: i32) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&b.addr).unwrap();
            s.write_all(&size.to_be_bytes()).unwrap();
            s
        })
        .collect()
}

#[test]
fn given_connections_that_announce_huge_frames_and_send_nothing_then_other_clients_are_still_answered()
 {
    // Six 100 MiB announcements were more than the 512 MiB request budget: a frame held its
    // whole length of budget before a byte of it arrived, and nobody got an answer.
    let b = Broker::start(&[]);
    let _silent = silent_announcers(&b, 6, 104_857_600);
    std::thread::sleep(std::time::Duration::from_millis(200));
    still_serving(&b);
    // And 256 of them leave a producer and a consumer undisturbed.
    let _more = silent_announcers(&b, 250, 104_857_600);
    let mut c = b.client();
    create_topic(&mut c, "busy", 1, &[]);
    for i in 0..20 {
        let r = produce(&mut c, "busy", 0, batch(&[&format!("v{i}")], None), -1).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let r = fetch(&mut c, "busy", 0, 0, 0, 12);
    assert_eq!(
        values(r.responses[0].partitions[0].records.as_ref().unwrap()).len(),
        20
    );
}

#[test]
fn given_a_client_that_stalls_mid_frame_when_the_read_timeout_passes_then_its_connection_is_closed()
{
    let b = Broker::start(&["--set", "strata.request.read.timeout.ms=300"]);
    let mut c = b.client();
    c.stream.write_all(&1000i32.to_be_bytes()).unwrap();
    c.stream.write_all(&[0u8; 10]).unwrap();
    assert!(
        c.is_closed(),
        "a frame that never completes must not hold the connection"
    );
    still_serving(&b);
}

#[test]
fn given_an_idle_connection_when_connections_max_idle_ms_passes_then_it_is_closed_but_a_long_poll_is_not_idle()
 {
    let b = Broker::start(&["--set", "connections.max.idle.ms=300"]);
    let mut idle = b.client();
    assert_eq!(idle.call(&ApiVersionsRequest::default(), 3).error_code, 0);
    assert!(idle.is_closed(), "closed after 300 ms without a request");
    // A fetch parked for longer than that keeps its connection: the connection is not idle
    // while a request is in process.
    let mut c = b.client();
    create_topic(&mut c, "quiet", 1, &[]);
    let r = fetch(&mut c, "quiet", 0, 0, 1500, 12);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(c.call(&ApiVersionsRequest::default(), 3).error_code, 0);
}

#[test]
fn given_a_mebibyte_of_one_byte_topic_names_in_delete_topics_then_each_is_answered_cheaply_and_nothing_else_is_touched()
 {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "keep", 1, &[]);
    create_topic(&mut c, "x", 1, &[]);
    // One-byte names, cycling through the legal characters and "." (not a legal name): every
    // name occurs thousands of times.
    let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
        .chars()
        .collect();
    let names: Vec<TopicName> = (0..(1 << 20) / 3)
        .map(|i| topic(&alphabet[i % alphabet.len()].to_string()))
        .collect();
    let n = names.len();
    let r = c.call(&DeleteTopicsRequest::default().with_topic_names(names), 3);
    assert_eq!(r.responses.len(), n, "one answer per name asked");
    assert!(
        r.responses.iter().all(|t| t.error_code == 42),
        "INVALID_REQUEST for every duplicate, and here every name is one"
    );
    // Nothing was deleted, "x" included (it was named more than once).
    let md = c.call(&MetadataRequest::default().with_topics(None), 12);
    let mut left: Vec<String> = md
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["keep", "x"]);
    // Once each: invalid, unknown and existing names get their own answers.
    let r = c.call(
        &DeleteTopicsRequest::default().with_topic_names(vec![
            topic("."),
            topic("nope"),
            topic("x"),
        ]),
        3,
    );
    let codes: Vec<i16> = r.responses.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        [17, 3, 0],
        "INVALID_TOPIC_EXCEPTION, UNKNOWN_TOPIC_OR_PARTITION, deleted"
    );
    still_serving(&b);
}

#[test]
fn given_arrays_that_repeat_one_element_when_sent_to_each_api_then_the_work_is_done_once() {
    let b = Broker::start(GROUP_SETTINGS);
    let mut c = b.client();
    create_topic(&mut c, "rep", 2, &[]);
    // Metadata answers a set of topics.
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let md = c.call(
        &MetadataRequest::default().with_topics(Some(
            (0..50_000)
                .map(|_| MetadataRequestTopic::default().with_name(Some(topic("rep"))))
                .collect(),
        )),
        12,
    );
    assert_eq!(md.topics.len(), 1);
    // DescribeConfigs: a resource named twice is refused, each occurrence.
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let res = |name: &str| {
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
    };
    let r = c.call(
        &DescribeConfigsRequest::default().with_resources(
            std::iter::repeat_n(res("rep"), 10_000)
                .chain([res("missing")])
                .collect(),
        ),
        4,
    );
    assert_eq!(r.results.len(), 10_001);
    assert!(
        r.results[..10_000]
            .iter()
            .all(|x| x.error_code == 42 && x.configs.is_empty())
    );
    assert_eq!(r.results[10_000].error_code, 3);
    // ListOffsets: a partition asked twice is refused, as Kafka does.
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let part = |p: i32| {
        ListOffsetsPartition::default()
            .with_partition_index(p)
            .with_timestamp(-1)
    };
    let r = c.call(
        &ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic("rep"))
                .with_partitions(vec![part(0), part(1), part(0)]),
        ]),
        7,
    );
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, [42, 0, 42]);
    // OffsetFetch: a partition asked twice, and DescribeGroups: a group asked twice.
    assert_eq!(
        commit(
            &mut c,
            "g",
            -1,
            "",
            &[("rep", 0, 5, Some(&"m".repeat(4000)))]
        ),
        [0]
    );
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let r = c.call(
        &OffsetFetchRequest::default()
            .with_group_id(group_id("g"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic("rep"))
                    .with_partition_indexes(vec![0; 20_000]),
                OffsetFetchRequestTopic::default()
                    .with_name(topic("rep"))
                    .with_partition_indexes(vec![1]),
            ])),
        7,
    );
    let parts = &r.topics[0].partitions;
    assert_eq!(parts.len(), 20_000);
    assert!(
        parts
            .iter()
            .all(|p| p.error_code == 42 && p.metadata.as_ref().is_none_or(|m| m.is_empty()))
    );
    assert_eq!(r.topics[1].partitions[0].error_code, 0);
    let r = c.call(
        &DescribeGroupsRequest::default().with_groups(vec![group_id("g"); 1000]),
        5,
    );
    assert!(r.groups.iter().all(|g| g.error_code == 42));
    still_serving(&b);
}

/// A one-record zstd batch whose value is `mib` MiB of zeros: a few kilobytes on the wire.
fn zstd_bomb(mib: usize) -> bytes::Bytes {
    use strata_storage::batch::{BatchBuilder, Compression, NewRecord};
    let mut b = BatchBuilder::new(Compression::Zstd);
    b.push(NewRecord::new(vec![0u8; mib << 20])).unwrap();
    bytes::Bytes::from(b.build().unwrap())
}

#[test]
fn given_decompression_bombs_to_a_topic_that_re_encodes_then_they_are_refused_past_the_limit_and_others_are_served()
 {
    let b = Broker::start(&["--set", "strata.decompressed.batch.max.bytes=16777216"]);
    let mut c = b.client();
    create_topic(&mut c, "lz4", 1, &[("compression.type", "lz4")]);
    create_topic(&mut c, "plain", 1, &[]);
    let bomb = zstd_bomb(60);
    assert!(bomb.len() < 16 << 10, "{} bytes on the wire", bomb.len());
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let addr = b.addr.clone();
            let bomb = bomb.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                for _ in 0..4 {
                    let r = produce(&mut c, "lz4", 0, bomb.clone(), -1).unwrap();
                    let p = &r.responses[0].partition_responses[0];
                    assert_eq!(p.error_code, 2, "CORRUPT_MESSAGE");
                    let m = p.error_message.as_ref().unwrap().to_string();
                    assert!(m.contains("strata.decompressed.batch.max.bytes"), "{m}");
                }
            })
        })
        .collect();
    // Meanwhile a client of another topic produces and consumes.
    for i in 0..50 {
        let r = produce(&mut c, "plain", 0, batch(&[&format!("v{i}")], None), -1).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let got = values(
        fetch(&mut c, "plain", 0, 0, 0, 12).responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap(),
    );
    assert_eq!(got.len(), 50);
    for s in senders {
        s.join().unwrap();
    }
    // Under the limit a bomb is just a very compressible batch: re-encoded and stored.
    let small = zstd_bomb(8);
    let r = produce(&mut c, "lz4", 0, small, -1).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let f = fetch(&mut c, "lz4", 0, 0, 0, 12);
    let records = f.responses[0].partitions[0].records.as_ref().unwrap();
    let h = strata_storage::batch::header::check_batch(records, usize::MAX).unwrap();
    assert_eq!(
        h.compression().unwrap(),
        strata_storage::batch::Compression::Lz4
    );
}

#[test]
fn given_a_flood_of_malformed_frames_when_logged_then_one_line_stands_for_many() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("broker.log");
    let b = Broker::start_logged(&tmp.path().join("data"), &[], &log);
    for _ in 0..50 {
        let mut c = b.client();
        c.stream.write_all(&7i32.to_be_bytes()).unwrap(); // shorter than any request header
        assert!(c.is_closed());
    }
    still_serving(&b);
    let text = b.log_text();
    let lines = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("closing connection"))
        .count();
    assert!(
        (1..=2).contains(&lines),
        "50 bad frames must not make 50 warnings ({lines} lines):\n{text}"
    );
}
