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
