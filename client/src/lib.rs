//! A small blocking Kafka client: one `TcpStream`, requests encoded with `kafka-protocol`,
//! frames read into a reused buffer. The one client of the project: `strata groups`, the
//! benchmark's load generator and the end-to-end tests all speak through it.
//!
//! * [`Conn`]: connect (bounded), send and receive requests in order, one call at a time or
//!   pipelined ([`Conn::send`] then [`Conn::recv`] in the same order).
//! * Produce requests can go out without copying the batch ([`Conn::send_produce`]).
//! * Raw frames for tests that speak malformed protocol ([`Conn::send_frame`],
//!   [`Conn::read_frame`]).
//! * [`consumer`]: the consumer protocol's assignment bytes (what SyncGroup carries).
//!
//! Responses are bounded ([`MAX_FRAME`]) and checked against the request's correlation id.

use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

pub mod consumer;

/// How long a connection attempt may take before the broker counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for any response by default (long polls are 500 ms; produce under fsync
/// `always` is slower).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Produce version [`Conn::send_produce`] uses (non-flexible: the records field ends the
/// request).
pub const PRODUCE_VERSION: i16 = 8;
/// ApiVersions version used for the handshake.
pub const API_VERSIONS_VERSION: i16 = 3;
/// Largest response frame accepted.
pub const MAX_FRAME: usize = 256 << 20;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No broker answered at this address.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The socket failed (the broker closed the connection, a timeout, ...).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A request or response did not encode or decode, or does not belong to the request.
    #[error("{0}")]
    Protocol(String),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
    let what = what.into();
    move |source| ClientError::Io { what, source }
}

/// Resolves `addr` and connects within [`CONNECT_TIMEOUT`], with `TCP_NODELAY` and a
/// [`READ_TIMEOUT`] on reads.
pub fn connect(addr: &str) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| ClientError::Unreachable {
            addr: addr.to_string(),
            reason: format!("cannot resolve: {e}"),
        })?
        .collect();
    let mut last = String::from("no address");
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
                s.set_read_timeout(Some(READ_TIMEOUT))
                    .map_err(io("socket read timeout"))?;
                return Ok(s);
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(ClientError::Unreachable {
        addr: addr.to_string(),
        reason: last,
    })
}

/// One connection to a broker.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    next_id: i32,
    client_id: String,
    /// Reused encode buffer.
    out: BytesMut,
    /// Reused receive buffer.
    inbuf: BytesMut,
}

impl Conn {
    /// Connects ([`connect`]) under the given client id.
    pub fn connect(addr: &str, client_id: &str) -> Result<Conn> {
        Ok(Conn::over(connect(addr)?, client_id))
    }

    /// A client on an already connected socket.
    pub fn over(stream: TcpStream, client_id: &str) -> Conn {
        Conn {
            stream,
            next_id: 1,
            client_id: client_id.to_string(),
            out: BytesMut::with_capacity(4096),
            inbuf: BytesMut::new(),
        }
    }

    /// Asks ApiVersions and checks that the broker speaks every `(api, version)` given.
    pub fn check_versions(&mut self, needed: &[(ApiKey, i16)]) -> Result<ApiVersionsResponse> {
        let versions: ApiVersionsResponse = self.call(
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_string(self.client_id.clone()))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION"))),
            API_VERSIONS_VERSION,
        )?;
        if versions.error_code != 0 {
            return Err(ClientError::Protocol(format!(
                "ApiVersions: {}",
                error_name(versions.error_code)
            )));
        }
        for (key, v) in needed {
            let ok = versions
                .api_keys
                .iter()
                .any(|k| k.api_key == *key as i16 && k.min_version <= *v && *v <= k.max_version);
            if !ok {
                return Err(ClientError::Protocol(format!(
                    "the broker does not support {key:?} v{v}"
                )));
            }
        }
        Ok(versions)
    }

    /// The socket (to set timeouts, or to clone a reader half).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// A second handle on the same socket (a producer's response reader).
    pub fn try_clone_stream(&self) -> Result<TcpStream> {
        self.stream.try_clone().map_err(io("cloning the socket"))
    }

    /// Sets how long a read may wait.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> Result<()> {
        self.stream
            .set_read_timeout(t)
            .map_err(io("socket read timeout"))
    }

    /// A request's header and body, encoded (no length prefix), and its correlation id.
    pub fn encode_request<R: Request>(&mut self, req: &R, version: i16) -> Result<(i32, Vec<u8>)> {
        let id = self.encode(req, version)?;
        Ok((id, self.out.get(4..).unwrap_or_default().to_vec()))
    }

    /// Encodes `req` into the reused buffer with a 4-byte length prefix; returns its
    /// correlation id.
    fn encode<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        self.out.clear();
        self.out.extend_from_slice(&[0; 4]);
        header
            .encode(&mut self.out, R::header_version(version))
            .map_err(|e| ClientError::Protocol(format!("encoding a {:?} header: {e}", R::KEY)))?;
        req.encode(&mut self.out, version).map_err(|e| {
            ClientError::Protocol(format!("encoding a {:?} v{version} request: {e}", R::KEY))
        })?;
        let len = i32::try_from(self.out.len() - 4)
            .map_err(|_| ClientError::Protocol("request too large".into()))?;
        if let Some(prefix) = self.out.get_mut(..4) {
            prefix.copy_from_slice(&len.to_be_bytes());
        }
        Ok(id)
    }

    /// Sends `req` without waiting for the response; returns its correlation id.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let id = self.encode(req, version)?;
        self.stream
            .write_all(&self.out)
            .map_err(io(format!("sending a {:?} request", R::KEY)))?;
        Ok(id)
    }

    /// Reads the response to `id` (the next frame: a broker answers in order).
    pub fn recv<R: Request>(&mut self, id: i32, version: i16) -> Result<R::Response> {
        let mut frame = read_frame(&mut self.stream, &mut self.inbuf)?;
        decode_response::<R>(&mut frame, id, version)
    }

    /// One request, one response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let id = self.send(req, version)?;
        self.recv::<R>(id, version)
    }

    /// Sends a raw frame body (the length prefix is added): for tests that speak malformed
    /// protocol.
    pub fn send_frame(&mut self, body: &[u8]) -> Result<()> {
        let len = i32::try_from(body.len())
            .map_err(|_| ClientError::Protocol("frame too large".into()))?;
        let mut f = len.to_be_bytes().to_vec();
        f.extend_from_slice(body);
        self.stream.write_all(&f).map_err(io("sending a frame"))
    }

    /// Reads one response frame (without its length prefix).
    pub fn read_frame(&mut self) -> Result<Bytes> {
        read_frame(&mut self.stream, &mut self.inbuf)
    }

    /// Whether the broker closed the connection (a read sees EOF within the read timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
    }

    /// Sends one batch to one partition (Produce v8) without copying it; returns the
    /// correlation id. With `acks = 0` the broker sends no response.
    pub fn send_produce(
        &mut self,
        topic: &TopicName,
        partition: i32,
        acks: i16,
        batch: &[u8],
    ) -> Result<i32> {
        let req = produce_request(topic, partition, acks, Bytes::new());
        let id = self.encode(&req, PRODUCE_VERSION)?;
        let too_large = || ClientError::Protocol("batch too large".into());
        let batch_len = i32::try_from(batch.len()).map_err(|_| too_large())?;
        let total = i32::try_from(self.out.len() - 4 + batch.len()).map_err(|_| too_large())?;
        let n = self.out.len();
        // The length prefix covers the batch too; the empty records field was encoded as its
        // i32 length 0: patch it to the batch's length.
        if let Some(prefix) = self.out.get_mut(..4) {
            prefix.copy_from_slice(&total.to_be_bytes());
        }
        if let Some(tail) = self.out.get_mut(n - 4..) {
            tail.copy_from_slice(&batch_len.to_be_bytes());
        }
        write_all_vectored(&mut self.stream, &self.out, batch).map_err(io("sending a produce"))?;
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
pub fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Result<Bytes> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size)
        .map_err(io("reading a response (connection closed or timed out)"))?;
    let n = usize::try_from(i32::from_be_bytes(size))
        .map_err(|_| ClientError::Protocol("negative frame size".into()))?;
    if n > MAX_FRAME {
        return Err(ClientError::Protocol(format!(
            "response frame of {n} bytes is larger than {MAX_FRAME}"
        )));
    }
    buf.clear();
    buf.resize(n, 0);
    s.read_exact(&mut buf[..])
        .map_err(io("reading a response body"))?;
    Ok(buf.split().freeze())
}

/// Decodes a response frame, checking its correlation id.
pub fn decode_response<R: Request>(
    frame: &mut Bytes,
    id: i32,
    version: i16,
) -> Result<R::Response> {
    let header =
        ResponseHeader::decode(frame, R::Response::header_version(version)).map_err(|e| {
            ClientError::Protocol(format!("decoding a {:?} response header: {e}", R::KEY))
        })?;
    if header.correlation_id != id {
        return Err(ClientError::Protocol(format!(
            "{:?} response has correlation id {}, expected {id}",
            R::KEY,
            header.correlation_id
        )));
    }
    R::Response::decode(frame, version).map_err(|e| {
        ClientError::Protocol(format!("decoding a {:?} v{version} response: {e}", R::KEY))
    })
}

/// Reads and decodes one Produce response from a producer's reader half.
pub fn recv_produce(s: &mut TcpStream, buf: &mut BytesMut, id: i32) -> Result<ProduceResponse> {
    let mut frame = read_frame(s, buf)?;
    decode_response::<ProduceRequest>(&mut frame, id, PRODUCE_VERSION)
}

/// A topic name for requests.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A Kafka error code as its name (`UnknownTopicOrPartition (3)`).
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(kafka_protocol::ResponseError::Unknown(_)) | None => format!("error {code}"),
        Some(e) => format!("{e:?} ({code})"),
    }
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
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(connect("no-such-host.invalid:9092").is_err());
    }

    #[test]
    fn error_codes_have_names() {
        assert_eq!(error_name(3), "UnknownTopicOrPartition (3)");
        assert_eq!(error_name(-12345), "error -12345");
    }
}
