//! ApiVersions tells the truth: every API and version it advertises is implemented. The walk
//! sends each advertised version of each API once (a default request: empty arrays, zero ids)
//! and checks that an answer of that API and version comes back on a connection that stays open.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;
use kafka_protocol::messages::*;

/// Sends one default request of `key` at `version` and decodes its answer (the client panics
/// on a closed connection or an answer that does not decode as that API's response).
fn send_default(c: &mut Client, key: ApiKey, version: i16) {
    if key == ApiKey::Produce && version < 3 {
        return produce_legacy(c, version);
    }
    macro_rules! walk {
        ($($k:ident => $req:expr),* $(,)?) => {
            match key {
                $(ApiKey::$k => {
                    let _ = c.call(&$req, version);
                })*
                other => panic!("{other:?} is advertised but this walk has no case for it: add one"),
            }
        };
    }
    walk!(
        // acks=0 (the default) is answered with nothing.
        Produce => ProduceRequest::default().with_acks(-1),
        Fetch => FetchRequest::default(),
        ListOffsets => ListOffsetsRequest::default(),
        Metadata => MetadataRequest::default(),
        ApiVersions => ApiVersionsRequest::default(),
        CreateTopics => CreateTopicsRequest::default(),
        DeleteTopics => DeleteTopicsRequest::default(),
        InitProducerId => InitProducerIdRequest::default(),
        DescribeConfigs => DescribeConfigsRequest::default(),
        CreatePartitions => CreatePartitionsRequest::default(),
        AlterConfigs => AlterConfigsRequest::default(),
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default(),
        DeleteRecords => DeleteRecordsRequest::default(),
        FindCoordinator => FindCoordinatorRequest::default(),
        JoinGroup => JoinGroupRequest::default(),
        SyncGroup => SyncGroupRequest::default(),
        Heartbeat => HeartbeatRequest::default(),
        LeaveGroup => LeaveGroupRequest::default(),
        OffsetCommit => OffsetCommitRequest::default(),
        OffsetFetch => OffsetFetchRequest::default(),
        ListGroups => ListGroupsRequest::default(),
        DescribeGroups => DescribeGroupsRequest::default(),
        DeleteGroups => DeleteGroupsRequest::default(),
        OffsetDelete => OffsetDeleteRequest::default(),
        DescribeCluster => DescribeClusterRequest::default(),
        DescribeLogDirs => DescribeLogDirsRequest::default(),
        DescribeProducers => DescribeProducersRequest::default(),
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::default(),
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::default(),
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default(),
    );
}

#[test]
fn given_the_advertised_table_when_every_version_of_every_api_is_sent_then_each_is_answered() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    let table = c.call(&ApiVersionsRequest::default(), 3);
    assert_eq!(table.error_code, 0);
    let mut sent = 0;
    for k in &table.api_keys {
        let key = ApiKey::try_from(k.api_key).unwrap();
        assert!(k.min_version <= k.max_version, "{key:?}");
        for v in k.min_version..=k.max_version {
            send_default(&mut c, key, v);
            sent += 1;
        }
    }
    assert!(sent > 100, "{sent} requests");
    // The connection served every one of them.
    assert_eq!(c.call(&ApiVersionsRequest::default(), 3).error_code, 0);
}

/// Produce v0-v2 (the crate encodes Produce from v3): a raw request for one partition, answered
/// with UNSUPPORTED_VERSION for it, on a connection that stays open.
fn produce_legacy(c: &mut Client, version: i16) {
    let mut req = Vec::new();
    req.extend_from_slice(&0i16.to_be_bytes()); // api key: Produce
    req.extend_from_slice(&version.to_be_bytes());
    req.extend_from_slice(&4242i32.to_be_bytes()); // correlation id
    req.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    req.extend_from_slice(&1i16.to_be_bytes()); // acks
    req.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    req.extend_from_slice(&1i32.to_be_bytes()); // one topic
    req.extend_from_slice(&1i16.to_be_bytes());
    req.extend_from_slice(b"t");
    req.extend_from_slice(&1i32.to_be_bytes()); // one partition
    req.extend_from_slice(&3i32.to_be_bytes());
    req.extend_from_slice(&(-1i32).to_be_bytes()); // null records
    c.send_raw(&req);
    let frame = c.read_frame().expect("an answer, not a closed connection");
    assert_eq!(&frame[..4], &4242i32.to_be_bytes(), "correlation id");
    let body = &frame[4..];
    // topics: 1, name "t", partitions: 1, partition 3, error 35.
    assert_eq!(&body[..4], &1i32.to_be_bytes());
    assert_eq!(&body[4..7], b"\x00\x01t");
    assert_eq!(&body[11..15], &3i32.to_be_bytes());
    assert_eq!(
        &body[15..17],
        &35i16.to_be_bytes(),
        "v{version}: UNSUPPORTED_VERSION"
    );
}
