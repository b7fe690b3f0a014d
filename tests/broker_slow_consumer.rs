//! Scenario: a consumer that pipelines fetches and never reads its responses (its socket buffer
//! fills up) does not stall producers or other consumers.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;

#[test]
fn given_a_consumer_that_stops_reading_when_producers_keep_producing_then_they_are_not_stalled() {
    let b = Broker::start(&[]);
    let mut c = b.client();
    create_topic(&mut c, "busy", 1, &[]);
    let big: String = "x".repeat(100_000);
    for _ in 0..40 {
        produce(&mut c, "busy", 0, batch(&[&big], None), 1).unwrap();
    }
    // The stuck consumer: 200 pipelined fetches of ~4 MB each, none of them read.
    let mut stuck = b.client();
    for _ in 0..200 {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{BrokerId, FetchRequest};
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(50 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic("busy"))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(50 << 20),
                    ]),
            ]);
        let (_, body) = stuck.encode_request(&req, 12);
        stuck.send_raw(&body);
    }
    // Producers and a healthy consumer carry on (each call has a 20 s read timeout).
    for i in 0..50 {
        let r = produce(&mut c, "busy", 0, batch(&[&format!("after {i}")], None), -1).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let mut healthy = b.client();
    let r = fetch(&mut healthy, "busy", 0, 40, 0, 12);
    assert_eq!(
        values(r.responses[0].partitions[0].records.as_ref().unwrap()).len(),
        50
    );
    drop(stuck);
}
