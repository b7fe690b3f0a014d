//! A small blocking Kafka client: one `TcpStream`, requests encoded with `kafka-protocol`, frames
//! read into a reused buffer. Only what the benchmark needs; no async, no consumer groups.
//!
//! Produce requests are written without copying the batch: the request is encoded with an empty
//! `records` field (in Produce v8 the records are the last bytes of a one-partition request), the
//! length is patched, and header and batch go out in one vectored write.

use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::super::BenchError;

/// How long a connection attempt may take before the broker counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for any response (long polls are 500 ms; produce under fsync `always` is slower).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Produce version used (non-flexible: the records field ends the request).
pub const PRODUCE_VERSION: i16 = 8;
/// Fetch version used.
pub const FETCH_VERSION: i16 = 11;
/// Metadata version used.
pub const METADATA_VERSION: i16 = 9;
/// CreateTopics version used.
pub const CREATE_TOPICS_VERSION: i16 = 5;
/// ListOffsets version used.
pub const LIST_OFFSETS_VERSION: i16 = 5;
/// ApiVersions version used for the handshake.
pub const API_VERSIONS_VERSION: i16 = 3;
/// Largest response frame accepted.
pub const MAX_FRAME: usize = 256 << 20;

/// The client id the broker sees.
const CLIENT_ID: &str = "strata-bench";

/// One connection to the broker.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    next_id: i32,
    /// Reused encode buffer.
    out: BytesMut,
    /// Reused receive buffer.
    inbuf: BytesMut,
}

/// Resolves `bootstrap` and connects within [`CONNECT_TIMEOUT`]; an unreachable broker is a
/// [`BenchError::Unreachable`].
pub fn connect(bootstrap: &str) -> anyhow::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = bootstrap
        .to_socket_addrs()
        .map_err(|e| BenchError::Unreachable {
            addr: bootstrap.to_string(),
            reason: format!("cannot resolve: {e}"),
        })?
        .collect();
    let mut last = String::from("no address");
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true).context("TCP_NODELAY")?;
                s.set_read_timeout(Some(READ_TIMEOUT))
                    .context("socket read timeout")?;
                return Ok(s);
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(BenchError::Unreachable {
        addr: bootstrap.to_string(),
        reason: last,
    }
    .into())
}

impl Conn {
    /// Connects and checks with ApiVersions that the broker speaks every version this client uses.
    pub fn open(bootstrap: &str) -> anyhow::Result<Conn> {
        let stream = connect(bootstrap)?;
        let mut c = Conn {
            stream,
            next_id: 1,
            out: BytesMut::with_capacity(4096),
            inbuf: BytesMut::new(),
        };
        let versions: ApiVersionsResponse = c
            .call(
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    ))),
                API_VERSIONS_VERSION,
            )
            .with_context(|| format!("ApiVersions handshake with {bootstrap}"))?;
        if versions.error_code != 0 {
            bail!("ApiVersions: error code {}", versions.error_code);
        }
        for (key, v) in [
            (ApiKey::Produce, PRODUCE_VERSION),
            (ApiKey::Fetch, FETCH_VERSION),
            (ApiKey::Metadata, METADATA_VERSION),
            (ApiKey::CreateTopics, CREATE_TOPICS_VERSION),
            (ApiKey::ListOffsets, LIST_OFFSETS_VERSION),
        ] {
            let ok = versions
                .api_keys
                .iter()
                .any(|k| k.api_key == key as i16 && k.min_version <= v && v <= k.max_version);
            if !ok {
                bail!("the broker at {bootstrap} does not support {key:?} v{v}");
            }
        }
        Ok(c)
    }

    /// A second handle on the same socket (a producer's response reader).
    pub fn try_clone_stream(&self) -> anyhow::Result<TcpStream> {
        self.stream.try_clone().context("cloning the socket")
    }

    fn header<R: Request>(&mut self, version: i16) -> (i32, RequestHeader) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let h = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        (id, h)
    }

    /// Encodes `req` into the reused buffer with a 4-byte length prefix; returns its correlation id.
    fn encode<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<i32> {
        let (id, header) = self.header::<R>(version);
        self.out.clear();
        self.out.extend_from_slice(&[0; 4]);
        header
            .encode(&mut self.out, R::header_version(version))
            .map_err(|e| anyhow!("encoding a {:?} header: {e}", R::KEY))?;
        req.encode(&mut self.out, version)
            .map_err(|e| anyhow!("encoding a {:?} request: {e}", R::KEY))?;
        let len = i32::try_from(self.out.len() - 4).context("request too large")?;
        if let Some(prefix) = self.out.get_mut(..4) {
            prefix.copy_from_slice(&len.to_be_bytes());
        }
        Ok(id)
    }

    /// Sends `req` without waiting for the response; returns its correlation id.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<i32> {
        let id = self.encode(req, version)?;
        self.stream
            .write_all(&self.out)
            .with_context(|| format!("sending a {:?} request", R::KEY))?;
        Ok(id)
    }

    /// Reads the response to `id` (the next frame: the broker answers in order).
    pub fn recv<R: Request>(&mut self, id: i32, version: i16) -> anyhow::Result<R::Response> {
        let mut frame = read_frame(&mut self.stream, &mut self.inbuf)?;
        decode_response::<R>(&mut frame, id, version)
    }

    /// One request, one response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<R::Response> {
        let id = self.send(req, version)?;
        self.recv::<R>(id, version)
    }

    /// Sends one batch to one partition (Produce v8) without copying it; returns the correlation
    /// id. With `acks = 0` the broker sends no response.
    pub fn send_produce(
        &mut self,
        topic: &TopicName,
        partition: i32,
        acks: i16,
        batch: &[u8],
    ) -> anyhow::Result<i32> {
        let req = produce_request(topic, partition, acks, Bytes::new());
        let id = self.encode(&req, PRODUCE_VERSION)?;
        let batch_len = i32::try_from(batch.len()).context("batch too large")?;
        let total = i32::try_from(self.out.len() - 4 + batch.len()).context("request too large")?;
        let n = self.out.len();
        // The length prefix covers the batch too; the empty records field was encoded as its i32
        // length 0: patch it to the batch's length.
        if let Some(prefix) = self.out.get_mut(..4) {
            prefix.copy_from_slice(&total.to_be_bytes());
        }
        if let Some(tail) = self.out.get_mut(n - 4..) {
            tail.copy_from_slice(&batch_len.to_be_bytes());
        }
        write_all_vectored(&mut self.stream, &self.out, batch).context("sending a produce")?;
        Ok(id)
    }
}

/// The Produce request for one batch to one partition.
pub fn produce_request(
    topic: &TopicName,
    partition: i32,
    acks: i16,
    batch: Bytes,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic.clone())
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ]),
        ])
}

/// Writes `a` then `b` with as few syscalls as the kernel allows.
fn write_all_vectored(s: &mut TcpStream, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() {
        let n = s.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        if n < a.len() {
            a = a.get(n..).unwrap_or_default();
        } else {
            b = b.get(n - a.len()..).unwrap_or_default();
            a = &[];
        }
    }
    s.write_all(b)
}

/// Reads one size-prefixed frame into `buf` (reusing its allocation when no one else holds it).
pub fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<Bytes> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size)
        .context("reading a response (connection closed or timed out)")?;
    let n = usize::try_from(i32::from_be_bytes(size)).context("negative frame size")?;
    if n > MAX_FRAME {
        bail!("response frame of {n} bytes is larger than {MAX_FRAME}");
    }
    buf.clear();
    buf.reserve(n);
    buf.resize(n, 0);
    s.read_exact(&mut buf[..])
        .context("reading a response body")?;
    Ok(buf.split().freeze())
}

/// Decodes a response frame, checking its correlation id.
pub fn decode_response<R: Request>(
    frame: &mut Bytes,
    id: i32,
    version: i16,
) -> anyhow::Result<R::Response> {
    let header = ResponseHeader::decode(frame, R::Response::header_version(version))
        .map_err(|e| anyhow!("decoding a {:?} response header: {e}", R::KEY))?;
    if header.correlation_id != id {
        bail!(
            "{:?} response has correlation id {}, expected {id}",
            R::KEY,
            header.correlation_id
        );
    }
    R::Response::decode(frame, version)
        .map_err(|e| anyhow!("decoding a {:?} v{version} response: {e}", R::KEY))
}

/// Reads and decodes one Produce response from a producer's reader half.
pub fn recv_produce(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    id: i32,
) -> anyhow::Result<ProduceResponse> {
    let mut frame = read_frame(s, buf)?;
    decode_response::<ProduceRequest>(&mut frame, id, PRODUCE_VERSION)
}

/// A topic name for requests.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_records_field_ends_a_one_partition_produce_v8_request() {
        let t = topic_name("bench");
        let batch = Bytes::from_static(b"0123456789abcdef");
        let mut full = BytesMut::new();
        produce_request(&t, 3, 1, batch.clone())
            .encode(&mut full, PRODUCE_VERSION)
            .unwrap();
        let mut empty = BytesMut::new();
        produce_request(&t, 3, 1, Bytes::new())
            .encode(&mut empty, PRODUCE_VERSION)
            .unwrap();
        let n = empty.len();
        assert_eq!(&empty[n - 4..], &[0, 0, 0, 0]);
        let mut patched = empty[..n - 4].to_vec();
        patched.extend_from_slice(&(batch.len() as i32).to_be_bytes());
        patched.extend_from_slice(&batch);
        assert_eq!(&full[..], &patched[..]);
    }

    #[test]
    fn an_unreachable_address_fails_fast_with_a_typed_error() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let t0 = std::time::Instant::now();
        let e = connect("127.0.0.1:1").unwrap_err();
        assert!(t0.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1));
        assert!(e.downcast_ref::<BenchError>().is_some(), "{e:#}");
        assert!(connect("no-such-host.invalid:9092").is_err());
    }
}
