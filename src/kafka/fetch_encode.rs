//! The Fetch response (v4–v17), written so that record bytes are never copied in user space.
//!
//! `kafka-protocol` encodes `records` by copying them into its output buffer. Here the response
//! is produced as a list of chunks: small owned chunks for the framing and, for each partition,
//! the records as they are: a slice of the segment file, which the connection sends with
//! `sendfile` (so records go from the page cache straight to the socket), or bytes in memory.
//! A test proves the concatenated chunks equal the crate's own encoding, byte for byte, for every
//! version we advertise.

use bytes::{BufMut, BytesMut};

use super::reply::Chunk;

/// Lowest and highest Fetch versions this encoder writes.
pub const MIN_VERSION: i16 = 4;
/// v13 names topics by id; v14-v17 change nothing here (their new fields are tagged, and
/// Strata sends none of them).
pub const MAX_VERSION: i16 = 17;

/// One partition of a Fetch response.
#[derive(Debug, Clone, Default)]
pub struct PartitionOut {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// `None` (null) unless the fetch was read_committed; always empty: no transactions.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    pub preferred_read_replica: i32,
    pub records: Option<Chunk>,
    /// v12+, to a follower whose log diverges from the leader's (KIP-320/595): the leader's
    /// (epoch, end offset) to truncate to. A tagged field (tag 0).
    pub diverging_epoch: Option<(i32, i64)>,
}

#[derive(Debug, Clone, Default)]
pub struct TopicOut {
    /// The topic's name (v4-v12) and id (v13+).
    pub name: String,
    pub topic_id: u128,
    pub partitions: Vec<PartitionOut>,
}

#[derive(Debug, Clone, Default)]
pub struct FetchOut {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<TopicOut>,
}

struct Writer {
    chunks: Vec<Chunk>,
    cur: BytesMut,
    flexible: bool,
}

fn uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

impl Writer {
    fn array_len(&mut self, n: usize) {
        if self.flexible {
            uvarint(&mut self.cur, n as u32 + 1);
        } else {
            self.cur.put_i32(n as i32);
        }
    }

    fn nullable_array_len(&mut self, n: Option<usize>) {
        match n {
            Some(n) => self.array_len(n),
            None if self.flexible => uvarint(&mut self.cur, 0),
            None => self.cur.put_i32(-1),
        }
    }

    fn string(&mut self, s: &str) {
        if self.flexible {
            uvarint(&mut self.cur, s.len() as u32 + 1);
        } else {
            self.cur.put_i16(s.len() as i16);
        }
        self.cur.put_slice(s.as_bytes());
    }

    fn tagged_fields(&mut self) {
        if self.flexible {
            uvarint(&mut self.cur, 0);
        }
    }

    /// Nullable bytes: the length goes into the framing, the bytes become their own chunk.
    fn records(&mut self, r: &Option<Chunk>) {
        match r {
            None if self.flexible => uvarint(&mut self.cur, 0),
            None => self.cur.put_i32(-1),
            Some(b) => {
                if self.flexible {
                    uvarint(&mut self.cur, b.len() as u32 + 1);
                } else {
                    self.cur.put_i32(b.len() as i32);
                }
                if !b.is_empty() {
                    self.chunks.push(Chunk::Mem(self.cur.split().freeze()));
                    self.chunks.push(b.clone());
                }
            }
        }
    }
}

/// Encodes the response body (without size prefix and response header) as chunks.
pub fn encode(resp: &FetchOut, version: i16) -> Vec<Chunk> {
    let mut w = Writer {
        chunks: Vec::new(),
        cur: BytesMut::with_capacity(256),
        flexible: version >= 12,
    };
    w.cur.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        w.cur.put_i16(resp.error_code);
        w.cur.put_i32(resp.session_id);
    }
    w.array_len(resp.topics.len());
    for t in &resp.topics {
        if version >= 13 {
            w.cur.put_u128(t.topic_id);
        } else {
            w.string(&t.name);
        }
        w.array_len(t.partitions.len());
        for p in &t.partitions {
            w.cur.put_i32(p.partition_index);
            w.cur.put_i16(p.error_code);
            w.cur.put_i64(p.high_watermark);
            w.cur.put_i64(p.last_stable_offset);
            if version >= 5 {
                w.cur.put_i64(p.log_start_offset);
            }
            w.nullable_array_len(p.aborted_transactions.as_ref().map(Vec::len));
            for (pid, first) in p.aborted_transactions.iter().flatten() {
                w.cur.put_i64(*pid);
                w.cur.put_i64(*first);
                w.tagged_fields();
            }
            if version >= 11 {
                w.cur.put_i32(p.preferred_read_replica);
            }
            w.records(&p.records);
            match p.diverging_epoch {
                Some((epoch, end)) if w.flexible => {
                    // One tagged field: tag 0, 13 bytes (EpochEndOffset: epoch, end offset,
                    // no tagged fields of its own).
                    uvarint(&mut w.cur, 1);
                    uvarint(&mut w.cur, 0);
                    uvarint(&mut w.cur, 13);
                    w.cur.put_i32(epoch);
                    w.cur.put_i64(end);
                    uvarint(&mut w.cur, 0);
                }
                _ => w.tagged_fields(),
            }
        }
        w.tagged_fields();
    }
    w.tagged_fields();
    if !w.cur.is_empty() {
        w.chunks.push(Chunk::Mem(w.cur.freeze()));
    }
    w.chunks
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn sample(seed: u64) -> FetchOut {
        let mut topics = Vec::new();
        for t in 0..(seed % 3 + 1) {
            let mut partitions = Vec::new();
            for p in 0..(seed % 4) {
                let len = ((seed * 31 + p * 7) % 300) as usize;
                partitions.push(PartitionOut {
                    partition_index: p as i32,
                    error_code: (p % 2) as i16,
                    high_watermark: (seed * 1000 + p) as i64,
                    last_stable_offset: (seed * 1000 + p) as i64,
                    log_start_offset: p as i64,
                    aborted_transactions: match p % 3 {
                        0 => None,
                        1 => Some(vec![]),
                        _ => Some(vec![(5, 6), (7, 8)]),
                    },
                    preferred_read_replica: -1,
                    records: match p % 3 {
                        0 => None,
                        1 => Some(Chunk::Mem(Bytes::new())),
                        _ => Some(Chunk::Mem(Bytes::from(vec![(seed % 251) as u8; len]))),
                    },
                    diverging_epoch: (p % 2 == 1)
                        .then(|| ((seed % 7) as i32, (seed * 13 + p) as i64)),
                });
            }
            topics.push(TopicOut {
                name: format!("topic-{seed}-{t}"),
                topic_id: u128::from(seed) << 64 | u128::from(t) | 1 << 100,
                partitions,
            });
        }
        FetchOut {
            throttle_time_ms: seed as i32,
            error_code: 0,
            session_id: 0,
            topics,
        }
    }

    fn to_crate(o: &FetchOut, version: i16) -> FetchResponse {
        FetchResponse::default()
            .with_throttle_time_ms(o.throttle_time_ms)
            .with_error_code(o.error_code)
            .with_session_id(o.session_id)
            .with_responses(
                o.topics
                    .iter()
                    .map(|t| {
                        let r = FetchableTopicResponse::default();
                        if version >= 13 {
                            r.with_topic_id(::uuid::Uuid::from_u128(t.topic_id))
                        } else {
                            r.with_topic(TopicName(StrBytes::from_string(t.name.clone())))
                        }
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(p.error_code)
                                        .with_high_watermark(p.high_watermark)
                                        .with_last_stable_offset(p.last_stable_offset)
                                        .with_log_start_offset(p.log_start_offset)
                                        .with_aborted_transactions(
                                            p.aborted_transactions.as_ref().map(|v| {
                                                v.iter()
                                                    .map(|(a, b)| {
                                                        AbortedTransaction::default()
                                                            .with_producer_id(ProducerId(*a))
                                                            .with_first_offset(*b)
                                                    })
                                                    .collect()
                                            }),
                                        )
                                        .with_preferred_read_replica(BrokerId(
                                            p.preferred_read_replica,
                                        ))
                                        .with_records(p.records.as_ref().map(Chunk::to_bytes))
                                        .with_diverging_epoch(match p.diverging_epoch {
                                            // A tagged field: only flexible versions carry it.
                                            Some((e, o)) if version >= 12 => {
                                                kafka_protocol::messages::fetch_response::EpochEndOffset::default()
                                                    .with_epoch(e)
                                                    .with_end_offset(o)
                                            }
                                            _ => Default::default(),
                                        })
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
    }

    #[test]
    fn chunks_equal_the_crate_encoding_for_every_advertised_version() {
        for version in MIN_VERSION..=MAX_VERSION {
            for seed in 0..40 {
                let ours = sample(seed);
                let chunks = encode(&ours, version);
                let flat: Vec<u8> = chunks.iter().flat_map(|c| c.to_bytes().to_vec()).collect();
                let theirs = to_crate(&ours, version);
                let mut buf = BytesMut::new();
                theirs.encode(&mut buf, version).unwrap();
                assert_eq!(flat, buf.to_vec(), "version {version} seed {seed}");
                let back = FetchResponse::decode(&mut Bytes::from(flat), version).unwrap();
                assert_eq!(back.responses.len(), ours.topics.len());
            }
        }
    }

    #[test]
    fn records_are_passed_through_not_copied() {
        let records = Bytes::from(vec![7u8; 4096]);
        let out = FetchOut {
            topics: vec![TopicOut {
                name: "t".into(),
                topic_id: 1,
                partitions: vec![PartitionOut {
                    records: Some(Chunk::Mem(records.clone())),
                    ..PartitionOut::default()
                }],
            }],
            ..FetchOut::default()
        };
        let chunks = encode(&out, 11);
        assert!(
            chunks
                .iter()
                .any(|c| matches!(c, Chunk::Mem(b) if b.as_ptr() == records.as_ptr() && b.len() == records.len())),
            "the records chunk must be the very same memory"
        );
    }
}
