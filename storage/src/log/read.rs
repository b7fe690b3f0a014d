//! Zero-copy read results: a slice of a segment's shared mapping, or of a staging buffer that
//! still holds freshly written batches in memory (the direct write path's tail cache).

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use memmap2::Mmap;

use crate::io::aligned::StagingBuf;

/// A segment's read-only mapping and a handle to the same file (its own descriptor), so that a
/// slice can be mapped *and* sent with `sendfile` for as long as it lives, even after the
/// segment closed its handles or retention deleted it.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub map: Mmap,
    pub file: File,
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// Whole batches read from a segment: a view into the segment's shared mapping, or into a
/// staging buffer of the direct write path that still holds them in memory (the same bytes the
/// file holds). Holding it keeps the mapping (and a handle to the file) or the buffer alive,
/// even if retention deletes the segment meanwhile. Cheap to clone, `Send`, and `AsRef<[u8]>`
/// so it can back a `bytes::Bytes` (`Bytes::from_owner`) without a copy;
/// [`ReadSlice::send_to`] hands it to a socket without mapping file pages at all.
#[derive(Clone)]
pub struct ReadSlice {
    backing: Backing,
    start: usize,
    end: usize,
}

#[derive(Clone)]
enum Backing {
    Empty,
    Mapped(Arc<Mapped>),
    /// `buf` holds the file's bytes from position `file_start`; `start..end` index `buf`.
    Staged {
        buf: Arc<StagingBuf>,
        file_start: usize,
    },
}

impl ReadSlice {
    pub(crate) fn new(map: Arc<Mapped>, start: usize, end: usize) -> Self {
        let end = end.min(map.len());
        let start = start.min(end);
        ReadSlice {
            backing: Backing::Mapped(map),
            start,
            end,
        }
    }

    /// Bytes `start..end` of a staging buffer that holds the file from `file_start`; only bytes
    /// the buffer has filled are ever served.
    pub(crate) fn staged(
        buf: Arc<StagingBuf>,
        file_start: usize,
        start: usize,
        end: usize,
    ) -> Self {
        let end = end.min(buf.filled());
        let start = start.min(end);
        ReadSlice {
            backing: Backing::Staged { buf, file_start },
            start,
            end,
        }
    }

    /// No batches (a read at the log end).
    pub fn empty() -> Self {
        ReadSlice {
            backing: Backing::Empty,
            start: 0,
            end: 0,
        }
    }

    /// Position of the first byte within its segment file.
    pub fn file_position(&self) -> usize {
        match &self.backing {
            Backing::Staged { file_start, .. } => file_start + self.start,
            _ => self.start,
        }
    }

    /// Whether the bytes come from memory the engine holds (the direct write path's recent
    /// batches) rather than from the file's pages.
    pub fn is_staged(&self) -> bool {
        matches!(self.backing, Backing::Staged { .. })
    }

    /// Sends bytes `[from, len)` of the slice to `socket`; returns how many went (fewer when the
    /// socket's buffer fills; `WouldBlock` when none could). A mapped slice goes with
    /// `sendfile(2)`: the kernel copies pages that are in memory without mapping them into this
    /// process and without waiting for the page lock writeback holds, which a fault through the
    /// mapping would. A page that is not in memory is read from the disk first, blocking the
    /// caller: see [`ReadSlice::is_resident`]. A staged slice is written from memory (`write(2)`).
    pub fn send_to(&self, socket: BorrowedFd<'_>, from: usize) -> io::Result<usize> {
        let count = (self.end - self.start).saturating_sub(from);
        if count == 0 {
            return Ok(0);
        }
        let n = match &self.backing {
            Backing::Empty => return Ok(0),
            Backing::Mapped(m) => {
                let mut offset = libc::off_t::try_from(self.start + from)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
                // SAFETY: both descriptors are open for the call (`socket` is borrowed, `m.file`
                // is owned by the mapping this slice holds); `offset` is a valid, exclusively
                // borrowed off_t the kernel updates. sendfile reads the file, never our memory.
                unsafe {
                    libc::sendfile(socket.as_raw_fd(), m.file.as_raw_fd(), &mut offset, count)
                }
            }
            Backing::Staged { .. } => {
                let bytes = self.get(from..).unwrap_or(&[]);
                // SAFETY: `bytes` is a live borrow of `bytes.len()` initialised bytes, which
                // write(2) only reads; `socket` is open for the call.
                unsafe { libc::write(socket.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) }
            }
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Whether every page of the slice is in memory (`mincore`); `false` when the kernel cannot
    /// tell. A slice that is not can be read in with [`ReadSlice::prefault`] on a thread that may
    /// block, before [`ReadSlice::send_to`] runs where it must not. Staged slices always are.
    pub fn is_resident(&self) -> bool {
        match &self.backing {
            Backing::Mapped(m) => crate::io::mincore(&m.map, self.start, self.end)
                .is_ok_and(|pages| pages.iter().all(|p| p & 1 == 1)),
            Backing::Empty | Backing::Staged { .. } => true,
        }
    }

    /// Brings every page of the slice into memory by reading a byte of each. May wait for the
    /// disk: call it from a thread that is allowed to block, not from an async runtime.
    pub fn prefault(&self) {
        if !matches!(self.backing, Backing::Mapped(_)) {
            return;
        }
        for chunk in self.chunks(crate::io::page_size()) {
            std::hint::black_box(chunk.first().copied());
        }
        // Chunks start mid-page when the slice does, so the last page may not be touched yet.
        std::hint::black_box(self.last().copied());
    }
}

impl Deref for ReadSlice {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.backing {
            Backing::Empty => &[],
            Backing::Mapped(m) => m.get(self.start..self.end).unwrap_or(&[]),
            Backing::Staged { buf, .. } => buf.get(self.start..self.end).unwrap_or(&[]),
        }
    }
}

impl AsRef<[u8]> for ReadSlice {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for ReadSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSlice")
            .field("start", &self.start)
            .field("len", &(self.end - self.start))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// `data` written to a file whose pages are then dropped from the page cache, mapped with
    /// readahead off (a fault reads only its own page, so an untouched page stays cold), and
    /// sliced at `start..end`. `None` when the file system keeps the pages cached (tmpfs).
    fn cold_slice(data: &[u8], start: usize, end: usize) -> Option<ReadSlice> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        std::fs::write(&path, data).unwrap();
        crate::io::evict_page_cache(&path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: the test owns the file and nothing truncates it while mapped.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        map.advise(memmap2::Advice::Random).unwrap();
        let slice = ReadSlice::new(Arc::new(Mapped { map, file }), start, end);
        if slice.is_resident() {
            crate::testing::skip(
                "page_cache_eviction",
                "this file system kept the pages cached (tmpfs?)",
            );
            return None;
        }
        Some(slice)
    }

    #[test]
    fn a_slice_evicted_from_the_page_cache_is_not_resident_until_prefaulted() {
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        // Mid-page start and end, so the first and last pages are partial.
        let Some(slice) = cold_slice(&data, 5000, 700_001) else {
            return;
        };
        slice.prefault();
        assert!(
            slice.is_resident(),
            "every page is in memory after prefault"
        );
        assert_eq!(&slice[..], &data[5000..700_001]);
        assert!(ReadSlice::empty().is_resident());
    }

    #[test]
    fn prefault_touches_the_last_page_of_a_slice_shorter_than_a_page_that_crosses_a_boundary() {
        let Some(slice) = cold_slice(&[7u8; 3 * 4096], 4000, 4200) else {
            return;
        };
        slice.prefault();
        assert!(slice.is_resident());
    }
}
