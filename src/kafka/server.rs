//! Connections: Kafka framing, in-order responses, budgets, shutdown.
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
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Encodable;
use strata_storage::log::ReadSlice;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::budget::{ProcessingMemory, RequestBudget};
use super::dispatch::dispatch;
use super::frames::{FramePool, read_frame};
use super::reply::{Chunk, Reply};
use super::warn::FRAME_WARNINGS;
use crate::broker::Broker;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

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
}
