//! Reading request frames: buffers allocated whole up to a size and recycled through a pool,
//! and the request budget (`queued.max.request.bytes`) taken as a frame's bytes arrive.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::OwnedSemaphorePermit;

use super::budget::RequestBudget;

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

/// Idle frame buffers, reused for the next large request.
#[derive(Debug, Default)]
pub struct FramePool {
    free: parking_lot::Mutex<(Vec<Vec<u8>>, usize)>,
}

impl FramePool {
    /// An empty buffer with room for `capacity` bytes: a recycled one when one is big enough.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
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
    pub(crate) fn put(&self, buf: Vec<u8>) {
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
pub(crate) struct PooledFrame {
    pub(crate) buf: Vec<u8>,
    pub(crate) pool: Arc<FramePool>,
    pub(crate) _permits: Vec<OwnedSemaphorePermit>,
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
pub(crate) async fn read_frame(
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
