//! What a handler answers: a response body as chunks (record batches stay in their files), no
//! response, or "close the connection".

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;
use strata_storage::log::ReadSlice;

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
