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
    let mut c = b.client();
    let (_, mut body) = c.encode_request(&ApiVersionsRequest::default(), 0);
    body[0..2].copy_from_slice(&11i16.to_be_bytes()); // JoinGroup: real API, not implemented
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
