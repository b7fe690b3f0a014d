//! Where old or quirky clients meet Kafka's behaviour (issue "compat"): what Kafka does for
//! them, Strata does, tested with the raw requests those clients send.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use strata_storage::batch::header::{self, BatchHeader, MAX_TIMESTAMP};
use strata_storage::batch::{BatchBuilder, Compression, NewRecord};

/// A batch as sarama before 1.45.1 builds it: records stamped `t0 + 1000 * i`, maxTimestamp -1.
fn sarama_batch(codec: Compression, t0: i64, n: i64) -> Bytes {
    let mut b = BatchBuilder::new(codec);
    for i in 0..n {
        b.push(NewRecord::new(format!("v{i}").into_bytes()).with_timestamp(t0 + 1000 * i))
            .unwrap();
    }
    let mut bytes = b.build().unwrap();
    bytes[MAX_TIMESTAMP].copy_from_slice(&(-1i64).to_be_bytes());
    header::write_crc(&mut bytes);
    Bytes::from(bytes)
}

fn offset_for_time(c: &mut Client, t: &str, ts: i64) -> (i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let r = c.call(
        &ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic(t))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(ts),
                ]),
        ]),
        7,
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.offset, p.timestamp)
}

#[test]
fn given_batches_with_max_timestamp_minus_one_when_produced_then_it_is_recomputed_and_seeks_by_time_find_them()
 {
    let b = Broker::start(&[]);
    let mut c = b.client();
    let t0 = 1_700_000_000_000;
    for (name, codec) in [("plain", Compression::None), ("zstd", Compression::Zstd)] {
        create_topic(&mut c, name, 1, &[]);
        let r = produce(&mut c, name, 0, sarama_batch(codec, t0, 5), -1).unwrap();
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "{name}"
        );
        // The stored header says the largest record timestamp, with a valid CRC.
        let f = fetch(&mut c, name, 0, 0, 0, 12);
        let records = f.responses[0].partitions[0].records.clone().unwrap();
        let h = BatchHeader::parse(&records).unwrap();
        assert_eq!(h.max_timestamp, t0 + 4000, "{name}");
        header::check_batch(&records, usize::MAX).unwrap();
        // Seeks by time find the records instead of jumping to the end.
        assert_eq!(
            offset_for_time(&mut c, name, t0 + 2500),
            (3, t0 + 3000),
            "{name}"
        );
        assert_eq!(
            offset_for_time(&mut c, name, -3),
            (4, t0 + 4000),
            "{name} max timestamp"
        );
        assert_eq!(values(&records).len(), 5);
    }
}
