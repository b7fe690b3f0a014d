//! Produce v0-v2: advertised, as Kafka 4.0 advertises them (KAFKA-18659), and answered with
//! UNSUPPORTED_VERSION for every partition. librdkafka before 2.x (Debian's kcat and
//! confluent-kafka-go on librdkafka 2.0.2) decides from the advertised Produce range whether
//! the broker takes compressed batches, and without v0-v2 sends gzip, snappy and lz4 batches
//! uncompressed (librdkafka #4956). A client that really sends v0-v2 learns that it must not.
//!
//! The kafka-protocol crate decodes Produce from v3, so the v0-v2 request is read here: every
//! length is checked against the bytes present before anything is taken, and the answer names
//! the topics and partitions asked, the request's own bytes.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;

use crate::kafka::reply::{Chunk, Reply};

/// One topic of the request: its name's bytes (i16 length included) and its partitions.
struct Topic<'a> {
    name: &'a [u8],
    partitions: Vec<i32>,
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err(format!(
                "needs {n} more bytes, {} are left",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| "short read".to_string())?;
        Ok(i32::from_be_bytes(b))
    }

    /// A non-null string: its i16 length and bytes, returned together.
    fn string(&mut self) -> Result<&'a [u8], String> {
        let start = self.rest;
        let len = self.i16()?;
        let len = usize::try_from(len).map_err(|_| format!("string length {len}"))?;
        self.take(len)?;
        Ok(start.get(..2 + len).unwrap_or_default())
    }

    /// An array length, refused when the bytes left cannot hold that many elements of at
    /// least `min` bytes (nothing is allocated for a count the request cannot back).
    fn array(&mut self, min: usize) -> Result<usize, String> {
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| format!("array length {n}"))?;
        if n > self.rest.len() / min.max(1) {
            return Err(format!(
                "{n} elements do not fit in {} bytes",
                self.rest.len()
            ));
        }
        Ok(n)
    }
}

/// `body` is the request after its header. The answer at `version` (0-2), every partition
/// UNSUPPORTED_VERSION; `Close` for acks=0 (no answer is expected, and the client must notice)
/// or a request that does not parse.
pub fn produce_unsupported_version(body: &[u8], version: i16) -> Reply {
    let mut c = Cursor { rest: body };
    fn parse<'a>(c: &mut Cursor<'a>) -> Result<(i16, Vec<Topic<'a>>), String> {
        let acks = c.i16()?;
        let _timeout = c.i32()?;
        // Each topic takes at least a 2-byte name length and a 4-byte partition count.
        let n = c.array(6)?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = c.string()?;
            // Each partition: index (4) and a records length (4).
            let m = c.array(8)?;
            let mut partitions = Vec::with_capacity(m);
            for _ in 0..m {
                partitions.push(c.i32()?);
                let len = c.i32()?;
                if len > 0 {
                    c.take(len as usize)?;
                }
            }
            topics.push(Topic { name, partitions });
        }
        Ok((acks, topics))
    }
    let (acks, topics) = match parse(&mut c) {
        Ok(p) => p,
        Err(e) => return Reply::Close(format!("malformed Produce v{version} request: {e}")),
    };
    if acks == 0 {
        return Reply::Close(format!(
            "Produce v{version} is not supported (v3+), and acks=0 gets no answer to say so"
        ));
    }
    let code = ResponseError::UnsupportedVersion.code();
    let mut out = BytesMut::new();
    out.put_i32(topics.len() as i32);
    for t in &topics {
        out.put_slice(t.name);
        out.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            out.put_i32(*p);
            out.put_i16(code);
            out.put_i64(-1); // base_offset
            if version >= 2 {
                out.put_i64(-1); // log_append_time_ms
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle_time_ms
    }
    Reply::Body(vec![Chunk::Mem(Bytes::from(out))])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn request(acks: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_i16(acks);
        b.put_i32(1000);
        b.put_i32(1);
        b.put_i16(3);
        b.put_slice(b"abc");
        b.put_i32(2);
        for p in [0, 7] {
            b.put_i32(p);
            b.put_i32(5);
            b.put_slice(b"12345");
        }
        b.to_vec()
    }

    #[test]
    fn every_partition_is_answered_unsupported_in_the_version_asked() {
        for v in 0..=2 {
            let Reply::Body(chunks) = produce_unsupported_version(&request(1), v) else {
                panic!("v{v}: no body");
            };
            let body: Vec<u8> = chunks.iter().flat_map(|c| c.to_bytes().to_vec()).collect();
            let per_partition = 4 + 2 + 8 + if v >= 2 { 8 } else { 0 };
            let expected_len = 4 + 2 + 3 + 4 + 2 * per_partition + if v >= 1 { 4 } else { 0 };
            assert_eq!(body.len(), expected_len, "v{v}");
            assert_eq!(&body[4..9], b"\x00\x03abc");
            assert_eq!(&body[13..17], &0i32.to_be_bytes());
            assert_eq!(&body[17..19], &35i16.to_be_bytes());
        }
    }

    #[test]
    fn acks_zero_and_malformed_requests_close() {
        assert!(matches!(
            produce_unsupported_version(&request(0), 1),
            Reply::Close(_)
        ));
        let full = request(1);
        for cut in 0..full.len() {
            assert!(
                matches!(
                    produce_unsupported_version(&full[..cut], 1),
                    Reply::Close(_)
                ),
                "cut at {cut}"
            );
        }
        // A count larger than the request could hold is refused before anything is allocated.
        let mut huge = BytesMut::new();
        huge.put_i16(1);
        huge.put_i32(0);
        huge.put_i32(i32::MAX);
        assert!(matches!(
            produce_unsupported_version(&huge, 0),
            Reply::Close(_)
        ));
    }
}
