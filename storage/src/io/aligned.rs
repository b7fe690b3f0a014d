//! Memory aligned for O_DIRECT: [`AlignedBuf`], a plain owned buffer, and [`StagingBuf`], the
//! buffer the direct write path copies batches into and readers read them back from.
//!
//! O_DIRECT moves bytes between the device and user memory without the page cache, so the kernel
//! requires the buffer address, the length and the file offset of every write to be multiples of
//! the device's block size; [`super::DIRECT_ALIGN`] (4096) satisfies every device in common use.
//!
//! # One writer, many readers, no locks
//! A [`StagingBuf`] is filled front to back. Bytes below [`StagingBuf::filled`] never change
//! again, so anyone holding the buffer may borrow them ([`StagingBuf::get`]) for as long as they
//! like: the kernel (a direct write reading them), consumers (a fetch answered from memory).
//! The only writer is the unique [`StagingWriter`], which writes strictly past `filled` and then
//! moves `filled` forward with a release store; readers load it with acquire before borrowing.
//! Every access is therefore either a read of frozen bytes or the writer's write to bytes nobody
//! can borrow yet, and the two never overlap.

use std::alloc::Layout;
use std::io;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::DIRECT_ALIGN;

/// A zero-initialised heap buffer aligned to `align`, freed on drop.
#[derive(Debug)]
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `AlignedBuf` owns its allocation exclusively (like a `Box<[u8]>`); `&self` only reads it
// and `&mut self` is needed to write it, so moving or sharing it between threads is sound.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `len` zero bytes aligned to `align` (a power of two); `len` must not be 0.
    pub(crate) fn new(len: usize, align: usize) -> io::Result<Self> {
        let layout = Layout::from_size_align(len, align)
            .ok()
            .filter(|l| l.size() > 0)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "bad aligned buffer size")
            })?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            io::Error::new(io::ErrorKind::OutOfMemory, "cannot allocate aligned buffer")
        })?;
        Ok(AlignedBuf { ptr, layout })
    }

    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed at allocation) bytes owned by `self`;
        // the shared borrow of `self` excludes writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and the exclusive borrow of `self` excludes every other access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout, freed only here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A [`DIRECT_ALIGN`]-aligned buffer of fixed capacity, filled front to back by its one
/// [`StagingWriter`] and read by anyone who holds it (see the module docs for why that is sound).
#[derive(Debug)]
pub(crate) struct StagingBuf {
    /// Never borrowed whole: bytes are reached through raw pointers, below `filled` for readers
    /// and at or past it for the writer.
    buf: AlignedBuf,
    filled: AtomicUsize,
}

/// The one writer of a [`StagingBuf`]. Not `Clone`: its existence is what makes the bytes past
/// `filled` private to it.
#[derive(Debug)]
pub(crate) struct StagingWriter {
    shared: Arc<StagingBuf>,
}

impl StagingBuf {
    /// An empty buffer of `capacity` bytes (rounded up to [`DIRECT_ALIGN`]) and its writer.
    pub(crate) fn with_capacity(capacity: usize) -> io::Result<StagingWriter> {
        let capacity = capacity
            .max(1)
            .checked_next_multiple_of(DIRECT_ALIGN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "staging too large"))?;
        Ok(StagingWriter {
            shared: Arc::new(StagingBuf {
                buf: AlignedBuf::new(capacity, DIRECT_ALIGN)?,
                filled: AtomicUsize::new(0),
            }),
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes written so far; they never change again.
    pub(crate) fn filled(&self) -> usize {
        self.filled.load(Ordering::Acquire)
    }

    /// Bytes `range` if every one of them is filled, else `None`.
    pub(crate) fn get(&self, range: Range<usize>) -> Option<&[u8]> {
        if range.start > range.end || range.end > self.filled() {
            return None;
        }
        // SAFETY: `range` lies within the allocation (filled <= capacity) and below `filled`,
        // which the acquire load above shows was published by the writer after it wrote those
        // bytes; the writer never writes below `filled` again, so the bytes are initialised and
        // immutable for as long as `self` (and so the allocation) is borrowed.
        Some(unsafe {
            std::slice::from_raw_parts(self.buf.ptr.as_ptr().add(range.start), range.len())
        })
    }

    /// Takes back an empty writer for a buffer nobody else holds any more (for reuse without a
    /// new allocation); `None` while a reader or a write still holds it.
    pub(crate) fn recycle(this: Arc<StagingBuf>) -> Option<StagingWriter> {
        let buf = Arc::into_inner(this)?;
        buf.filled.store(0, Ordering::Relaxed);
        Some(StagingWriter {
            shared: Arc::new(buf),
        })
    }
}

impl StagingWriter {
    /// The buffer, to hand to readers and writes.
    pub(crate) fn shared(&self) -> &Arc<StagingBuf> {
        &self.shared
    }

    /// Bytes that can still be appended.
    pub(crate) fn remaining(&self) -> usize {
        self.shared.capacity() - self.shared.filled.load(Ordering::Relaxed)
    }

    /// Appends `parts` back to back, all or nothing: `false` (and nothing written) if they do not
    /// fit.
    pub(crate) fn append(&mut self, parts: &[&[u8]]) -> bool {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.remaining() {
            return false;
        }
        // Only this writer stores `filled`, so a relaxed load reads its own last store.
        let mut at = self.shared.filled.load(Ordering::Relaxed);
        for part in parts {
            // SAFETY: `at + part.len() <= capacity` (checked above for the whole); the bytes at
            // and past `filled` are reachable by no reader (`get` refuses them) and by no other
            // writer (this one is unique), so nothing else accesses them during the copy. `part`
            // is a separate borrow and cannot overlap them: readers only ever borrow bytes below
            // `filled`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    self.shared.buf.ptr.as_ptr().add(at),
                    part.len(),
                );
            }
            at += part.len();
        }
        self.shared.filled.store(at, Ordering::Release);
        true
    }
}

/// Memory a direct write owns until it completes (see [`super::DirectBuf`]): whole blocks at an
/// aligned address, which nobody writes while the write holds them.
#[derive(Debug)]
pub(crate) enum Owned {
    /// Filled bytes `start..end` of a staging buffer (frozen: see [`StagingBuf`]).
    Staged {
        buf: Arc<StagingBuf>,
        start: usize,
        end: usize,
    },
    /// A block of its own (a zero-padded copy of a partial last block).
    Block(AlignedBuf),
}

impl Owned {
    /// Bytes `range` of `buf`, if they are filled and whole aligned blocks.
    pub(crate) fn staged(buf: Arc<StagingBuf>, range: Range<usize>) -> Option<Owned> {
        let aligned = range.start.is_multiple_of(DIRECT_ALIGN)
            && range.end.is_multiple_of(DIRECT_ALIGN)
            && range.start < range.end;
        (aligned && buf.get(range.clone()).is_some()).then_some(Owned::Staged {
            buf,
            start: range.start,
            end: range.end,
        })
    }

    /// A buffer of its own, if it is whole aligned blocks.
    pub(crate) fn block(buf: AlignedBuf) -> Option<Owned> {
        let aligned = buf.len().is_multiple_of(DIRECT_ALIGN)
            && (buf.ptr.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN);
        aligned.then_some(Owned::Block(buf))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            // Checked filled at construction; filled bytes never change or go away.
            Owned::Staged { buf, start, end } => buf.get(*start..*end).unwrap_or(&[]),
            Owned::Block(b) => b.as_slice(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffer_is_aligned_and_zeroed() {
        let buf = AlignedBuf::new(8192, DIRECT_ALIGN).unwrap();
        assert_eq!(buf.ptr.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert!(buf.as_slice().iter().all(|&b| b == 0));
        assert!(AlignedBuf::new(0, DIRECT_ALIGN).is_err());
    }

    #[test]
    fn staging_appends_all_or_nothing_and_serves_only_filled_bytes() {
        let mut w = StagingBuf::with_capacity(5000).unwrap();
        let buf = w.shared().clone();
        assert_eq!(buf.capacity(), 8192, "rounded up to whole blocks");
        assert_eq!(buf.get(0..0), Some(&[][..]));
        assert!(buf.get(0..1).is_none());
        assert!(w.append(&[b"head", b"-body"]));
        assert_eq!(buf.filled(), 9);
        assert_eq!(buf.get(0..9), Some(&b"head-body"[..]));
        assert_eq!(buf.get(4..9), Some(&b"-body"[..]));
        assert!(buf.get(5..10).is_none(), "past filled");
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..4;
        assert!(buf.get(backwards).is_none());
        let big = vec![7u8; 8192 - 9 + 1];
        assert!(!w.append(&[&big]), "one byte too many");
        assert_eq!(buf.filled(), 9, "nothing written");
        assert!(w.append(&[&big[1..]]));
        assert_eq!(w.remaining(), 0);
        assert_eq!(buf.get(0..1).unwrap().as_ptr() as usize % DIRECT_ALIGN, 0);
    }

    #[test]
    fn owned_write_memory_is_whole_filled_aligned_blocks_or_nothing() {
        let mut w = StagingBuf::with_capacity(3 * DIRECT_ALIGN).unwrap();
        assert!(w.append(&[&[1u8; 2 * DIRECT_ALIGN + 10]]));
        let buf = w.shared().clone();
        let ok = Owned::staged(buf.clone(), DIRECT_ALIGN..2 * DIRECT_ALIGN).unwrap();
        assert_eq!(ok.as_slice().len(), DIRECT_ALIGN);
        assert!(
            Owned::staged(buf.clone(), 0..3 * DIRECT_ALIGN).is_none(),
            "not filled"
        );
        assert!(
            Owned::staged(buf.clone(), 1..DIRECT_ALIGN).is_none(),
            "unaligned start"
        );
        assert!(
            Owned::staged(buf.clone(), 0..100).is_none(),
            "unaligned end"
        );
        assert!(Owned::staged(buf, 0..0).is_none(), "empty");
        assert!(Owned::block(AlignedBuf::new(DIRECT_ALIGN, DIRECT_ALIGN).unwrap()).is_some());
        assert!(Owned::block(AlignedBuf::new(100, DIRECT_ALIGN).unwrap()).is_none());
    }

    #[test]
    fn a_staging_buffer_is_recycled_only_when_nobody_holds_it() {
        let mut w = StagingBuf::with_capacity(4096).unwrap();
        assert!(w.append(&[b"abc"]));
        let reader = w.shared().clone();
        let shared = w.shared().clone();
        drop(w);
        assert!(StagingBuf::recycle(shared).is_none(), "a reader holds it");
        let again = StagingBuf::recycle(reader).unwrap();
        assert_eq!(again.shared().filled(), 0);
        assert_eq!(again.remaining(), 4096);
    }

    #[test]
    fn readers_on_other_threads_see_every_byte_the_writer_published() {
        let mut w = StagingBuf::with_capacity(1 << 20).unwrap();
        let buf = w.shared().clone();
        let reader = std::thread::spawn(move || {
            let mut seen = 0;
            while seen < 1 << 20 {
                let filled = buf.filled();
                let bytes = buf.get(0..filled).unwrap();
                for (i, b) in bytes.iter().enumerate().skip(seen) {
                    assert_eq!(*b, (i % 251) as u8, "byte {i}");
                }
                seen = filled;
            }
        });
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(777) {
            assert!(w.append(&[piece]));
        }
        reader.join().unwrap();
    }
}
