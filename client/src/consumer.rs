//! The consumer protocol's assignment bytes (what SyncGroup carries for `protocol_type`
//! "consumer"): version i16, then `[topic string, [partition i32]]`, then user data bytes
//! (ignored here). A broker relays these bytes untouched; `strata groups describe` decodes them,
//! through kafka-protocol's own `ConsumerProtocolAssignment`.

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;

/// A decoded assignment: its version and `(topic, partitions)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub version: i16,
    pub topics: Vec<(String, Vec<i32>)>,
}

/// Decodes assignment bytes; `None` if empty or not in the consumer protocol's layout.
pub fn decode_assignment(bytes: &[u8]) -> Option<Assignment> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let version = i16::from_be_bytes(*bytes.first_chunk::<2>()?);
    if !(0..=3).contains(&version) {
        return None;
    }
    let _ = bytes::Buf::get_i16(&mut buf);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).ok()?;
    Some(Assignment {
        version,
        topics: a
            .assigned_partitions
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn an_encoded_assignment_decodes_and_garbage_does_not_panic() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        a.encode(&mut buf, 1).unwrap();
        let d = decode_assignment(&buf).unwrap();
        assert_eq!(d.version, 1);
        assert_eq!(d.topics, vec![("t".to_string(), vec![0, 2])]);
        for cut in 0..buf.len() {
            let _ = decode_assignment(&buf[..cut]);
        }
        assert!(decode_assignment(&[]).is_none());
    }
}
