//! Connections: Kafka framing, version gating, dispatch, in-order responses, shutdown.
//!
//! Each connection processes one request at a time, in the order they arrived, so responses
//! leave in request order and a producer's batches are appended in the order it sent them
//! (clients pipeline; Kafka does the same). A reader task reads the next request while the
//! current one is processed, handing over at most one whole frame ahead. Memory per
//! connection is bounded by three frames of `socket.request.max.bytes` (one being read, one
//! waiting, one in process); a frame's buffer is allocated whole up to
//! 8 MiB (so produced batches are never moved in user space) and grows beyond that only as bytes
//! actually arrive, so a huge length prefix followed by silence costs little. A frame that is
//! too large, too short, names an unknown API or an unsupported version (other than
//! ApiVersions), or does not decode closes the connection; the broker keeps serving everyone else.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use strata_storage::log::ReadSlice;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::Broker;
use super::groups::handlers as groups;
use super::handlers;

/// The APIs and versions we implement, and therefore advertise in ApiVersions.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 10),
    (
        ApiKey::Fetch,
        super::fetch_encode::MIN_VERSION,
        super::fetch_encode::MAX_VERSION,
    ),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// What a handler produced for one request.
#[derive(Debug)]
pub enum Reply {
    /// The response body, as chunks (records stay zero-copy).
    Body(Vec<Chunk>),
    /// No response at all (Produce with acks=0).
    Nothing,
    /// Close the connection (malformed request); the reason is logged.
    Close(String),
}

/// A piece of a response body.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Bytes in memory (framing, and every response but Fetch's records).
    Mem(Bytes),
    /// Record batches in a segment file, sent with `sendfile`: no copy in user space, and no
    /// page is mapped, so no page fault can stall the network thread on a page that writeback
    /// holds locked. Pages not in memory must be read in first, off the network threads
    /// ([`ReadSlice::prefault`]).
    File(ReadSlice),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Mem(b) => b.len(),
            Chunk::File(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, for tests and tools (a file chunk reads them through its mapping).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Chunk::Mem(b) => b.clone(),
            Chunk::File(s) => Bytes::from_owner(s.clone()),
        }
    }
}

/// Encodes a response struct at `version` into one chunk.
pub fn encode_body<R: Encodable>(r: &R, version: i16) -> Reply {
    let mut buf = BytesMut::new();
    match r.encode(&mut buf, version) {
        Ok(()) => Reply::Body(vec![Chunk::Mem(buf.freeze())]),
        Err(e) => Reply::Close(format!("cannot encode the response at v{version}: {e}")),
    }
}

/// Accepts connections until `shutdown` turns true, then waits for open connections to finish
/// the request they are in.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let pool = Arc::new(FramePool::default());
    let max_frame = broker.config.max_frame_bytes();
    let budget = broker
        .config
        .queued_request_budget()?
        .map(|n| Arc::new(RequestBudget::new(n, max_frame)));
    let max_connections = broker.config.max_connections()?;
    let connections = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    let idle = broker.config.connections_max_idle()?;
    let read_timeout = broker.config.request_read_timeout()?;
    let processing = Arc::new(ProcessingMemory::new(
        broker.config.request_processing_memory()?,
    ));
    loop {
        // At `max.connections`, stop accepting: new connections wait in the listen backlog.
        let slot = tokio::select! {
            p = connections.clone().acquire_owned() => p.ok(),
            _ = shutdown.changed() => None,
        };
        let Some(slot) = slot else {
            break;
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    let frames = Frames {
                        pool: pool.clone(),
                        budget: budget.clone(),
                        idle,
                        read_timeout,
                        processing: processing.clone(),
                    };
                    tasks.spawn(async move {
                        let _slot = slot;
                        if let Err(e) = connection(broker, stream, peer, shutdown, frames).await {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(
        connections = tasks.len(),
        "stopped accepting; finishing in-flight requests"
    );
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections did not finish within 30 s; closing them");
    }
    Ok(())
}

async fn connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    frames: Frames,
) -> Result<()> {
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let max = broker.config.max_frame_bytes();
    // The next request is read while this one is answered (clients pipeline), but requests
    // are still processed one at a time, in order: at most READ_AHEAD whole frames wait.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(READ_AHEAD);
    let in_process = Arc::new(AtomicUsize::new(0));
    let processing = frames.processing.clone();
    let _reader = AbortOnDrop(tokio::spawn(read_requests(
        rd,
        max,
        peer,
        shutdown.clone(),
        tx,
        frames,
        in_process.clone(),
    )));
    while let Some(frame) = rx.recv().await {
        // Handed over but not yet answered: the connection is not idle meanwhile.
        let _answering = InProcess(&in_process);
        let correlation_id = frame
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, i32::from_be_bytes);
        // What decoding and answering it may cost, reserved before it is decoded and held
        // until its answer is written.
        let _memory = processing.reserve(&frame).await;
        let (reply, header_version) = dispatch(&broker, frame, &shutdown).await;
        match reply {
            Reply::Nothing => {}
            Reply::Close(reason) => {
                FRAME_WARNINGS.warn(&format!("closing connection from {peer}: {reason}"));
                return Ok(());
            }
            Reply::Body(chunks) => {
                let mut head = BytesMut::with_capacity(16);
                let header = ResponseHeader::default().with_correlation_id(correlation_id);
                if let Err(e) = header.encode(&mut head, header_version) {
                    tracing::error!(error = %e, "cannot encode response header");
                    return Ok(());
                }
                let len: usize = head.len() + chunks.iter().map(Chunk::len).sum::<usize>();
                let mut size = BytesMut::with_capacity(4);
                size.extend_from_slice(&(len as i32).to_be_bytes());
                let mut all = Vec::with_capacity(chunks.len() + 2);
                all.push(Chunk::Mem(size.freeze()));
                all.push(Chunk::Mem(head.freeze()));
                all.extend(chunks);
                write_chunks(&mut wr, &all).await?;
            }
        }
    }
    // The reader stopped: the peer closed, sent a bad frame, or the broker is shutting down.
    // Every request it had read was answered above.
    Ok(())
}

/// Request frames read ahead of the one being processed, per connection. With the frame being
/// read and the one in process, a connection holds at most `READ_AHEAD + 2` frames.
const READ_AHEAD: usize = 1;

/// Counts a request the reader handed over until its answer is written (or dropped).
struct InProcess<'a>(&'a AtomicUsize);

impl Drop for InProcess<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Aborts a task when dropped (the connection's reader, when the connection ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads request frames and hands them to the connection in order. Stops (dropping `tx`) when
/// the peer closes, when a frame's size is out of bounds (the connection is closed after the
/// requests before it are answered), when the connection has been idle for
/// `connections.max.idle.ms` or a frame did not arrive whole within
/// `strata.request.read.timeout.ms`, or when shutdown begins between two frames.
async fn read_requests(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    max: usize,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    frames: Frames,
    in_process: Arc<AtomicUsize>,
) {
    loop {
        let size = tokio::select! {
            r = read_length(&mut rd, frames.idle, &in_process) => match r {
                Ok(Some(n)) => n,
                Ok(None) => {
                    tracing::debug!(%peer, "closing an idle connection (connections.max.idle.ms)");
                    return;
                }
                Err(_) => return, // peer closed
            },
            _ = shutdown.changed() => return,
        };
        if size < 8 || size as usize > max {
            FRAME_WARNINGS.warn(&format!(
                "closing connection from {peer}: frame size {size} outside 8..={max} (socket.request.max.bytes)"
            ));
            return;
        }
        let read = read_frame(&mut rd, size as usize, &frames.pool, frames.budget.as_ref());
        let read = async {
            match frames.read_timeout {
                Some(t) => tokio::time::timeout(t, read).await.map_err(|_| ()),
                None => Ok(read.await),
            }
        };
        let frame = tokio::select! {
            r = read => r,
            _ = shutdown.changed() => return,
        };
        match frame {
            Ok(Ok(Some(frame))) => {
                in_process.fetch_add(1, Ordering::AcqRel);
                if tx.send(frame).await.is_err() {
                    return; // the connection ended
                }
            }
            Ok(Ok(None)) => return, // truncated frame: the peer went away mid-request
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "reading a request failed");
                return;
            }
            Err(()) => {
                FRAME_WARNINGS.warn(&format!(
                    "closing connection from {peer}: a {size}-byte request did not arrive within strata.request.read.timeout.ms"
                ));
                return;
            }
        }
    }
}

/// Reads a frame's 4-byte length. `None` once the connection has been idle for `idle` (no byte
/// received, and no request in process: a long-polling fetch keeps it busy). Cancel-safe: the
/// bytes of a length read so far are never lost to a timeout (they live across the loop).
async fn read_length(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    idle: Option<std::time::Duration>,
    in_process: &AtomicUsize,
) -> std::io::Result<Option<i32>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let Some(rest) = prefix.get_mut(got..) else {
            break;
        };
        let n = match idle {
            None => rd.read(rest).await?,
            Some(idle) => match tokio::time::timeout(idle, rd.read(rest)).await {
                Ok(r) => r?,
                Err(_) if got == 0 && in_process.load(Ordering::Acquire) == 0 => return Ok(None),
                Err(_) => continue,
            },
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(Some(i32::from_be_bytes(prefix)))
}

/// A frame's buffer is allocated whole, up to this size, as soon as its length is known: one
/// allocation, and the body is never moved, so produced batches reach the log without a copy
/// in user space. Only pages that bytes arrive into are touched, and a larger frame's buffer
/// grows as its bytes arrive, so a huge length prefix followed by silence costs little.
const EAGER_FRAME_BYTES: usize = 8 << 20;

/// Frame buffers from this size up are recycled through a [`FramePool`]: a fresh buffer of a
/// megabyte costs a page fault and a page clearing per 4 KiB when the socket data is copied in,
/// which profiling showed to be a tenth of the broker's CPU under produce load.
const POOLED_MIN_BYTES: usize = 64 << 10;

/// At most this many bytes of idle frame buffers are kept for reuse, broker-wide.
const POOL_MAX_BYTES: usize = 64 << 20;

/// What the connections share for reading frames.
#[derive(Debug, Clone)]
struct Frames {
    pool: Arc<FramePool>,
    /// `queued.max.request.bytes`, taken as a frame's bytes arrive and held until its last
    /// slice is dropped; `None` when unlimited.
    budget: Option<Arc<RequestBudget>>,
    /// `connections.max.idle.ms`.
    idle: Option<std::time::Duration>,
    /// `strata.request.read.timeout.ms`.
    read_timeout: Option<std::time::Duration>,
    /// `strata.request.processing.memory.bytes`.
    processing: Arc<ProcessingMemory>,
}

/// `strata.request.processing.memory.bytes`: what requests being decoded and answered may hold
/// together. A request reserves an estimate before it is decoded (Redpanda's approach): a fixed
/// 8 KiB plus its size times what one byte of it can decode into, for its kind. kafka-protocol
/// decodes every array element into a struct of 30 to 100 bytes, from as little as 2 to 6 bytes
/// on the wire, and the answer holds one more per element; records and other byte fields are
/// slices of the frame, not copies. A request whose estimate exceeds the whole amount reserves
/// all of it and runs alone. Waiting holds no reservation, and a holder waits for nothing
/// else, so every reservation is eventually granted.
#[derive(Debug)]
struct ProcessingMemory {
    permits: Arc<Semaphore>,
    total: usize,
}

/// The fixed part of every request's estimate.
const PROCESSING_BASE: usize = 8 << 10;

impl ProcessingMemory {
    fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        ProcessingMemory {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Bytes of memory per request byte, worst case, by API key, with a margin over what
    /// `scripts/hostile-memory` measured (PERFORMANCE.md, "Hostile clients": up to 48x for
    /// arrays of names, 38x for Produce).
    fn factor(api_key: i16) -> usize {
        match ApiKey::try_from(api_key) {
            // Records stay slices of the frame, but an entry with no records (refused) is 6
            // bytes on the wire for a decoded struct and a 40-byte answer (measured: 34-38x).
            Ok(ApiKey::Produce) => 48,
            // Byte fields (metadata, assignments) stay slices of the frame.
            Ok(ApiKey::JoinGroup | ApiKey::SyncGroup) => 4,
            // Partition entries of 30 bytes or more on the wire.
            Ok(ApiKey::Fetch) => 8,
            Ok(ApiKey::OffsetCommit | ApiKey::ListOffsets) => 16,
            // Arrays of names: a few bytes each on the wire, a struct each in the request and
            // in the answer.
            _ => 64,
        }
    }

    fn estimate(&self, frame: &[u8]) -> usize {
        let key = frame
            .get(0..2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(-1, i16::from_be_bytes);
        frame
            .len()
            .saturating_mul(Self::factor(key))
            .saturating_add(PROCESSING_BASE)
            .min(self.total)
    }

    async fn reserve(&self, frame: &[u8]) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(self.estimate(frame)).unwrap_or(u32::MAX);
        self.permits.clone().acquire_many_owned(n).await.ok()
    }
}

/// Budget a frame takes before its first body bytes are read; it doubles each time the frame
/// has received all it held, so a large frame takes a few steps and a small one one.
const BUDGET_STEP: usize = 64 << 10;

/// `queued.max.request.bytes`, as permits of one byte, in two parts so that frames taking their
/// budget in steps can never all wait for each other. A frame grows in steps from the **pool**
/// (the budget less one largest frame). When the pool has no room for its next step, a frame
/// that holds nothing yet waits for the pool (holding nothing, it blocks nobody); one that
/// holds part of its bytes takes the **lane** (one largest frame's worth) for all it still
/// needs. Whoever holds the lane needs nothing more, so it finishes (or its client stalls and
/// `strata.request.read.timeout.ms` closes it) and hands the lane on: some frame always
/// progresses, and all of them together never hold more than the budget.
#[derive(Debug)]
struct RequestBudget {
    pool: Arc<Semaphore>,
    pool_size: usize,
    lane: Arc<Semaphore>,
}

impl RequestBudget {
    /// `total` is at least `max_frame` (checked at start-up).
    fn new(total: usize, max_frame: usize) -> Self {
        let lane = max_frame.min(total);
        let pool_size = (total - lane).min(Semaphore::MAX_PERMITS);
        RequestBudget {
            pool: Arc::new(Semaphore::new(pool_size)),
            pool_size,
            lane: Arc::new(Semaphore::new(lane.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Budget for the next bytes of a frame of `size` bytes that holds `held`: a step from the
    /// pool, or the rest of the frame from the lane. Returns the permit and how many bytes it
    /// covers.
    async fn next(
        &self,
        held: usize,
        size: usize,
    ) -> std::io::Result<(OwnedSemaphorePermit, usize)> {
        let closed = |_| std::io::Error::other("the request budget is closed");
        let step = held.max(BUDGET_STEP).min(size - held);
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        if let Ok(p) = self.pool.clone().try_acquire_many_owned(n(step)) {
            return Ok((p, step));
        }
        BUDGET_NOTICES.info(
            "the request budget (queued.max.request.bytes) is in use: connections wait before reading more (back-pressure)",
        );
        if held == 0 && step <= self.pool_size {
            let p = self
                .pool
                .clone()
                .acquire_many_owned(n(step))
                .await
                .map_err(closed)?;
            return Ok((p, step));
        }
        let rest = size - held;
        let p = self
            .lane
            .clone()
            .acquire_many_owned(n(rest))
            .await
            .map_err(closed)?;
        Ok((p, rest))
    }
}

/// Idle frame buffers, reused for the next large request.
#[derive(Debug, Default)]
pub struct FramePool {
    free: parking_lot::Mutex<(Vec<Vec<u8>>, usize)>,
}

impl FramePool {
    /// An empty buffer with room for `capacity` bytes: a recycled one when one is big enough.
    fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity >= POOLED_MIN_BYTES {
            let mut free = self.free.lock();
            let (bufs, bytes) = &mut *free;
            if let Some(i) = bufs.iter().position(|b| b.capacity() >= capacity) {
                let mut b = bufs.swap_remove(i);
                *bytes -= b.capacity();
                b.clear();
                return b;
            }
        }
        Vec::with_capacity(capacity)
    }

    /// Keeps `buf` for reuse if it is large enough to be worth it and the pool has room.
    fn put(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if !(POOLED_MIN_BYTES..=EAGER_FRAME_BYTES).contains(&cap) {
            return;
        }
        let mut free = self.free.lock();
        let (bufs, bytes) = &mut *free;
        if *bytes + cap <= POOL_MAX_BYTES {
            *bytes += cap;
            bufs.push(buf);
        }
    }
}

/// A frame's bytes; when the last `Bytes` slice of it is dropped (after the batches in it are
/// appended), the buffer goes back to the pool and its share of the request budget is released.
struct PooledFrame {
    buf: Vec<u8>,
    pool: Arc<FramePool>,
    _permits: Vec<OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

/// Reads the `size` bytes of a frame's body. `None` if the peer closed before sending them all.
///
/// A frame holds request budget only for bytes it has received (or is about to read into
/// room it has reserved): the budget is taken in steps as the body arrives, never for a length
/// prefix alone, so connections that announce large frames and then send nothing hold nothing
/// and cannot starve the others. Nor do they hold a buffer: one is taken only once the body
/// starts to arrive.
async fn read_frame(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    size: usize,
    pool: &Arc<FramePool>,
    budget: Option<&Arc<RequestBudget>>,
) -> std::io::Result<Option<Bytes>> {
    rd.readable().await?;
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::new();
    let mut held = 0usize;
    let mut buf = pool.take(size.min(EAGER_FRAME_BYTES));
    while buf.len() < size {
        let left = size - buf.len();
        let room = match budget {
            None => left,
            Some(budget) => {
                if held == buf.len() {
                    let (more, bytes) = budget.next(held, size).await?;
                    match permits.last_mut() {
                        Some(p) if Arc::ptr_eq(p.semaphore(), more.semaphore()) => p.merge(more),
                        _ => permits.push(more),
                    }
                    held += bytes;
                }
                held - buf.len()
            }
        };
        if buf.capacity() == buf.len() {
            buf.reserve(left.min(buf.len().max(EAGER_FRAME_BYTES)));
        }
        // `take` keeps the read inside this frame's budgeted part even when the buffer has
        // room beyond it.
        if (&mut *rd).take(room as u64).read_buf(&mut buf).await? == 0 {
            pool.put(buf);
            return Ok(None);
        }
    }
    Ok(Some(Bytes::from_owner(PooledFrame {
        buf,
        pool: pool.clone(),
        _permits: permits,
    })))
}

/// Warnings about what clients send that are rate-limited: at most one line per
/// [`WARN_INTERVAL`], with how many were left out, so a client cannot flood the log.
static FRAME_WARNINGS: RateLimitedWarn = RateLimitedWarn::new();

/// Back-pressure on the request budget, at most one line per [`WARN_INTERVAL`].
static BUDGET_NOTICES: RateLimitedWarn = RateLimitedWarn::new();

/// The least time between two rate-limited warnings.
const WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A warning logged at most once per [`WARN_INTERVAL`]; the next one says how many were
/// suppressed meanwhile. Every one is logged at debug level.
#[derive(Debug)]
pub struct RateLimitedWarn {
    state: parking_lot::Mutex<Option<(std::time::Instant, u64)>>,
}

impl RateLimitedWarn {
    pub const fn new() -> Self {
        RateLimitedWarn {
            state: parking_lot::const_mutex(None),
        }
    }

    pub fn warn(&self, message: &str) {
        self.log(tracing::Level::WARN, message);
    }

    /// As [`RateLimitedWarn::warn`], at info level (normal operation worth seeing).
    pub fn info(&self, message: &str) {
        self.log(tracing::Level::INFO, message);
    }

    fn log(&self, level: tracing::Level, message: &str) {
        let now = std::time::Instant::now();
        let mut state = self.state.lock();
        match &mut *state {
            Some((last, suppressed)) if now.duration_since(*last) < WARN_INTERVAL => {
                *suppressed += 1;
                tracing::debug!("{message}");
            }
            _ => {
                let suppressed = state.map_or(0, |(_, n)| n);
                *state = Some((now, 0));
                drop(state);
                let line = if suppressed > 0 {
                    format!("{message} (and {suppressed} more like it since the last such line)")
                } else {
                    message.to_string()
                };
                if level == tracing::Level::WARN {
                    tracing::warn!("{line}");
                } else {
                    tracing::info!("{line}");
                }
            }
        }
    }
}

impl Default for RateLimitedWarn {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes every chunk, in order: runs of in-memory chunks with vectored writes, file chunks
/// with `sendfile`.
async fn write_chunks(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    chunks: &[Chunk],
) -> std::io::Result<()> {
    let mut mem: Vec<Bytes> = Vec::new();
    for chunk in chunks {
        match chunk {
            Chunk::Mem(b) => mem.push(b.clone()),
            Chunk::File(slice) => {
                write_all_vectored(wr, &mem).await?;
                mem.clear();
                send_file(wr.as_ref(), slice).await?;
            }
        }
    }
    write_all_vectored(wr, &mem).await
}

/// Sends a whole slice of a segment file with `sendfile`, waiting for room in the socket.
async fn send_file(socket: &TcpStream, slice: &ReadSlice) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < slice.len() {
        socket.writable().await?;
        match socket.try_io(Interest::WRITABLE, || slice.send_to(socket.as_fd(), sent)) {
            // The file ended early: the frame's length is already promised, so the
            // connection cannot go on. (Published bytes are never truncated; this is a bug.)
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes every chunk, in order, with as few system calls as the kernel allows.
async fn write_all_vectored(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    chunks: &[Bytes],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| IoSlice::new(c))
        .collect();
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        // At most 64 buffers per call, well under the kernel's limit of 1024.
        let window = rest.get(..rest.len().min(64)).unwrap_or_default();
        let n = wr.write_vectored(window).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// A request frame, decoded.
#[derive(Debug)]
pub enum Decoded {
    /// A request we implement, at a version we implement.
    Request {
        key: ApiKey,
        version: i16,
        request: Box<kafka_protocol::messages::RequestKind>,
    },
    /// ApiVersions at a version we do not know: answer error 35 in the v0 layout.
    ApiVersionsUnsupported,
}

/// Decodes one frame (everything after the 4-byte size). Never panics, whatever the bytes; an
/// `Err` means "close the connection" and says why.
pub fn decode_frame(frame: Bytes) -> Result<Decoded, String> {
    if frame.len() < 8 {
        return Err(format!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let field = |at: usize| {
        frame
            .get(at..at + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, i16::from_be_bytes)
    };
    let (api_key, version) = (field(0), field(2));
    let key = ApiKey::try_from(api_key).map_err(|_| format!("unknown API key {api_key}"))?;
    let (lo, hi) = supported_range(key).ok_or_else(|| format!("API {key:?} is not supported"))?;
    if version < lo || version > hi {
        if key == ApiKey::ApiVersions {
            return Ok(Decoded::ApiVersionsUnsupported);
        }
        return Err(format!(
            "{key:?} v{version} is not supported (v{lo}..=v{hi})"
        ));
    }
    let mut body = frame;
    kafka_protocol::messages::RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(|e| format!("bad request header: {e}"))?;
    let request = kafka_protocol::messages::RequestKind::decode(key, &mut body, version)
        .map_err(|e| format!("malformed {key:?} v{version} request: {e}"))?;
    Ok(Decoded::Request {
        key,
        version,
        request: Box::new(request),
    })
}

/// Decodes the request and calls its handler. Returns the reply and the response header
/// version to use.
async fn dispatch(
    broker: &Arc<Broker>,
    frame: Bytes,
    shutdown: &watch::Receiver<bool>,
) -> (Reply, i16) {
    use kafka_protocol::messages::RequestKind as R;
    let client_id = super::groups::client_id_of(&frame);
    let (key, version, request) = match decode_frame(frame) {
        Ok(Decoded::Request {
            key,
            version,
            request,
        }) => (key, version, request),
        Ok(Decoded::ApiVersionsUnsupported) => return (handlers::api_versions_unsupported(), 0),
        Err(reason) => return (Reply::Close(reason), 0),
    };
    let reply = match *request {
        R::ApiVersions(_) => handlers::api_versions(version),
        R::Metadata(r) => handlers::metadata(broker, r, version).await,
        R::Produce(r) => handlers::produce(broker, r, version).await,
        R::Fetch(r) => handlers::fetch(broker, r, version, shutdown.clone()).await,
        R::ListOffsets(r) => handlers::list_offsets(broker, r, version).await,
        R::InitProducerId(r) => handlers::init_producer_id(broker, r, version),
        R::CreateTopics(r) => handlers::create_topics(broker, r, version).await,
        R::DeleteTopics(r) => handlers::delete_topics(broker, r, version).await,
        R::DescribeConfigs(r) => handlers::describe_configs(broker, r, version),
        R::FindCoordinator(r) => groups::find_coordinator(broker, r, version),
        R::JoinGroup(r) => {
            groups::join_group(broker, r, version, client_id, shutdown.clone()).await
        }
        R::SyncGroup(r) => groups::sync_group(broker, r, version, shutdown.clone()).await,
        R::Heartbeat(r) => groups::heartbeat(broker, r, version),
        R::LeaveGroup(r) => groups::leave_group(broker, r, version),
        R::OffsetCommit(r) => groups::offset_commit(broker, r, version).await,
        R::OffsetFetch(r) => groups::offset_fetch(broker, r, version),
        R::ListGroups(r) => groups::list_groups(broker, r, version),
        R::DescribeGroups(r) => groups::describe_groups(broker, r, version),
        R::DeleteGroups(r) => groups::delete_groups(broker, r, version).await,
        other => Reply::Close(format!(
            "API {key:?} is not supported ({:?})",
            std::mem::discriminant(&other)
        )),
    };
    (reply, key.response_header_version(version))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn frame_pool_reuses_large_buffers_up_to_its_byte_limit_and_never_small_ones() {
        let pool = Arc::new(FramePool::default());
        let big = pool.take(1 << 20);
        let ptr = big.as_ptr();
        pool.put(big);
        let again = pool.take(512 << 10);
        assert_eq!(again.as_ptr(), ptr, "a buffer big enough is reused");
        assert!(again.is_empty());
        pool.put(again);
        assert!(
            pool.take(2 << 20).capacity() >= 2 << 20,
            "too small: a new one"
        );

        let small = pool.take(1000);
        pool.put(small);
        assert_eq!(pool.free.lock().0.len(), 1, "small buffers are not kept");

        for _ in 0..(POOL_MAX_BYTES / EAGER_FRAME_BYTES + 3) {
            pool.put(Vec::with_capacity(EAGER_FRAME_BYTES));
        }
        assert!(pool.free.lock().1 <= POOL_MAX_BYTES);
        assert!(pool.free.lock().1 > POOL_MAX_BYTES - EAGER_FRAME_BYTES);

        let empty = FramePool::default();
        empty.put(Vec::with_capacity(EAGER_FRAME_BYTES + 1));
        assert!(
            empty.free.lock().0.is_empty(),
            "oversized ones are not kept"
        );
        empty.put(Vec::with_capacity(EAGER_FRAME_BYTES));
        assert_eq!(empty.free.lock().0.len(), 1);
    }

    #[tokio::test]
    async fn given_a_request_budget_when_frames_are_held_then_the_reader_stops_until_one_is_released()
     {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let (rd, _wr) = server.into_split();
        // Room for exactly three 100 KB frames in the pool, and one more in the lane.
        let frame_len = 100_000usize;
        let budget = Arc::new(RequestBudget::new(4 * frame_len, frame_len));
        let frames = Frames {
            pool: Arc::new(FramePool::default()),
            budget: Some(budget.clone()),
            idle: None,
            read_timeout: None,
            processing: Arc::new(ProcessingMemory::new(1 << 30)),
        };
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (tx, mut rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let reader = AbortOnDrop(tokio::spawn(read_requests(
            rd,
            1 << 20,
            peer,
            stop_rx,
            tx,
            frames,
            Arc::new(AtomicUsize::new(0)),
        )));
        for i in 0..5u8 {
            let mut f = (frame_len as i32).to_be_bytes().to_vec();
            f.extend(std::iter::repeat_n(i, frame_len));
            client.write_all(&f).await.unwrap();
        }
        let wait = std::time::Duration::from_secs(20);
        let mut held = Vec::new();
        for i in 0..3u8 {
            let f = tokio::time::timeout(wait, rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!((f.len(), f[0]), (frame_len, i));
            held.push(f);
        }
        assert_eq!(
            budget.pool.available_permits(),
            0,
            "three frames use the whole pool"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "a fourth frame does not fit");
        // A slice keeps its frame's share; dropping the last one releases it.
        let slice = held.remove(0).slice(0..10);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "a slice still holds the budget");
        drop(slice);
        let f = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f[0], 3);
        drop(held);
        drop(f);
        let f = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f[0], 4);
        drop(f);
        drop(reader);
    }

    #[test]
    fn a_frame_returns_to_the_pool_when_its_last_slice_is_dropped() {
        let pool = Arc::new(FramePool::default());
        let mut buf = pool.take(100 << 10);
        buf.extend_from_slice(&[7u8; 100 << 10]);
        let frame = Bytes::from_owner(PooledFrame {
            buf,
            pool: pool.clone(),
            _permits: Vec::new(),
        });
        let records = frame.slice(10..20);
        drop(frame);
        assert!(pool.free.lock().0.is_empty(), "a slice still uses it");
        assert_eq!(&records[..], &[7u8; 10]);
        drop(records);
        assert_eq!(pool.free.lock().0.len(), 1);
    }
}
