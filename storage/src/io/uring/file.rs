//! [`UringFile`]: a file whose writes and syncs go through the backend's shared rings.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use super::MAX_SQE_BYTES;
use super::ring::RingPool;
use crate::io::WritableFile;
use crate::io::plain::preallocate_keep_size;

/// One write as handed to the kernel: a borrowed slice and its file position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece<'a> {
    buf: &'a [u8],
    offset: u64,
}

/// What an entry of a round was.
#[derive(Debug, Clone, Copy)]
enum Slot<'a> {
    Write(Piece<'a>),
    Sync,
}

/// What the completions of one round leave to do.
#[derive(Debug, Default)]
struct Settled<'a> {
    /// Writes to issue again (remainders of short writes, writes cancelled by a broken chain).
    requeue: Vec<Piece<'a>>,
    /// The round's datasync completed and covered every byte of every write before it.
    synced: bool,
    /// The first real error; it ends the call once the round is over.
    error: Option<io::Error>,
}

/// Interprets one round's results. Pure, so the chain-breaking cases are unit tested without a
/// kernel that misbehaves on demand.
fn settle<'a>(slots: &[Slot<'a>], results: &[Option<i32>], linked: bool) -> Settled<'a> {
    let mut out = Settled::default();
    let mut sync_ok = false;
    let missing = || io::Error::other("io_uring completion missing (internal error)");
    for (index, slot) in slots.iter().enumerate() {
        let result = match results.get(index).copied().flatten() {
            Some(r) => r,
            None => {
                out.error.get_or_insert_with(missing);
                continue;
            }
        };
        match *slot {
            Slot::Write(piece) => {
                if result < 0 {
                    if linked && result == -libc::ECANCELED {
                        out.requeue.push(piece);
                    } else {
                        out.error
                            .get_or_insert_with(|| io::Error::from_raw_os_error(-result));
                    }
                    continue;
                }
                let written = result as usize;
                if written == 0 {
                    out.error.get_or_insert_with(|| {
                        io::Error::new(io::ErrorKind::WriteZero, "io_uring write wrote 0 bytes")
                    });
                } else if written < piece.buf.len() {
                    out.requeue.push(Piece {
                        buf: piece.buf.get(written..).unwrap_or_default(),
                        offset: piece.offset.saturating_add(written as u64),
                    });
                } else if written > piece.buf.len() {
                    out.error.get_or_insert_with(|| {
                        io::Error::other(format!(
                            "io_uring write reported {written} bytes for a {} byte buffer",
                            piece.buf.len()
                        ))
                    });
                }
            }
            Slot::Sync => {
                if result >= 0 {
                    sync_ok = true;
                } else if !(linked && result == -libc::ECANCELED) {
                    out.error
                        .get_or_insert_with(|| io::Error::from_raw_os_error(-result));
                }
            }
        }
    }
    // A sync only counts if nothing before it has to be written again.
    out.synced = sync_ok && out.requeue.is_empty() && out.error.is_none();
    out
}

/// Splits `bufs` (written back to back from `offset`) into non-empty pieces of at most `max`.
fn split<'a>(bufs: &[&'a [u8]], mut offset: u64, max: usize) -> io::Result<VecDeque<Piece<'a>>> {
    let mut pieces = VecDeque::with_capacity(bufs.len());
    for buf in bufs {
        for chunk in buf.chunks(max.max(1)) {
            pieces.push_back(Piece { buf: chunk, offset });
            offset = offset.checked_add(chunk.len() as u64).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "write extends past u64::MAX")
            })?;
        }
    }
    Ok(pieces)
}

/// A file written through the backend's shared rings.
#[derive(Debug)]
pub struct UringFile {
    file: File,
    pool: Arc<RingPool>,
    max_piece: usize,
}

impl UringFile {
    /// Wraps an already-open file; its calls borrow rings from `pool`.
    pub(crate) fn new(file: File, pool: Arc<RingPool>) -> Self {
        UringFile {
            file,
            pool,
            max_piece: MAX_SQE_BYTES,
        }
    }

    /// Writes `bufs` from `offset`, then (if `sync`) makes them durable.
    fn write_and_maybe_sync(&self, bufs: &[&[u8]], offset: u64, sync: bool) -> io::Result<()> {
        let mut queue = split(bufs, offset, self.max_piece)?;
        let mut sync_pending = sync;
        if queue.is_empty() && !sync_pending {
            return Ok(());
        }
        let mut ring = self.pool.acquire();
        if ring.poisoned.is_some() {
            return self.plain_fallback(queue, sync_pending);
        }
        let capacity = ring.capacity().max(2);
        let fd = types::Fd(self.file.as_raw_fd());
        let mut slots: Vec<Slot<'_>> = Vec::with_capacity(capacity.min(queue.len() + 1));
        let mut entries: Vec<squeue::Entry> = Vec::with_capacity(slots.capacity());
        let mut results: Vec<Option<i32>> = Vec::with_capacity(slots.capacity());
        while !queue.is_empty() || sync_pending {
            // The sync joins only the round that ends the call.
            let with_sync = sync_pending && queue.len() < capacity;
            let writes = queue
                .len()
                .min(if with_sync { capacity - 1 } else { capacity });
            slots.clear();
            entries.clear();
            for piece in queue.drain(..writes) {
                let len = u32::try_from(piece.buf.len()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "write piece too large")
                })?;
                entries.push(
                    opcode::Write::new(fd, piece.buf.as_ptr(), len)
                        .offset(piece.offset)
                        .build(),
                );
                slots.push(Slot::Write(piece));
            }
            if with_sync {
                entries.push(
                    opcode::Fsync::new(fd)
                        .flags(types::FsyncFlags::DATASYNC)
                        .build(),
                );
                slots.push(Slot::Sync);
            }
            // Every entry of a round is linked to the next (`IOSQE_IO_LINK`): the kernel runs them
            // in order, each only after the one before it completed in full, so whatever stops a
            // call part-way (an error, a short write, the process being killed) leaves the file
            // holding a prefix of what was asked, never a later piece without an earlier one.
            // Recovery counts on that after a process crash (FORMAT.md §7). Unlinked, a write the
            // kernel could not issue at once is handed to a worker while the next one completes.
            let linked = entries.len() > 1;
            if let Some((_, chained)) = entries.split_last_mut() {
                for entry in chained {
                    *entry = entry.clone().flags(squeue::Flags::IO_LINK);
                }
            }
            results.clear();
            results.resize(entries.len(), None);
            // SAFETY: every write entry points into a slice borrowed from `bufs`, which the caller
            // keeps alive for this whole call; `run_round` returns only when the kernel no longer
            // uses any of them. The fd belongs to `self.file`, alive for `&self`.
            unsafe { ring.run_round(&mut entries, &mut results) }?;
            let settled = settle(&slots, &results, linked);
            if let Some(e) = settled.error {
                return Err(e);
            }
            if settled.synced {
                sync_pending = false;
            }
            for piece in settled.requeue.into_iter().rev() {
                queue.push_front(piece);
            }
        }
        Ok(())
    }

    /// `pwrite`/`fdatasync` when the pool's ring was poisoned and could not be replaced.
    fn plain_fallback(&self, queue: VecDeque<Piece<'_>>, sync: bool) -> io::Result<()> {
        for piece in queue {
            self.file.write_all_at(piece.buf, piece.offset)?;
        }
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

impl WritableFile for UringFile {
    fn write_all_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_and_maybe_sync(bufs, offset, false)
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        // A plain system call: it returns at once, so a ring round trip would only add work.
        crate::io::plain::start_writeback_range(&self.file, offset, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.write_and_maybe_sync(&[], 0, true)
    }

    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_and_maybe_sync(bufs, offset, true)
    }

    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        preallocate_keep_size(&self.file, offset, len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::io::IoBackend;
    use crate::io::plain::open_options;
    use crate::io::uring::{RING_ENTRIES, UringBackend};
    use std::path::Path;
    fn uring() -> Option<UringBackend> {
        match UringBackend::probe() {
            Ok(b) => Some(b),
            Err(e) => {
                crate::testing::skip("io_uring", &e.to_string());
                None
            }
        }
    }

    /// A file on a pool of one ring.
    fn pooled(file: File) -> UringFile {
        UringFile::new(file, Arc::new(RingPool::new(1).unwrap()))
    }

    fn read_all(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn many_buffers_read_back_exactly() {
        let Some(backend) = uring() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = backend.create_new(&path).unwrap();
        let owned: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) * 3 + 1]).collect();
        let bufs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        file.write_all_at(&bufs, 0).unwrap();
        assert_eq!(read_all(&path), owned.concat());
    }

    #[test]
    fn writes_land_at_their_offset() {
        let Some(backend) = uring() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = backend.create_new(&path).unwrap();
        file.write_all_at(&[b"hello"], 10).unwrap();
        file.write_all_at(&[b"ab", b"cd"], 2).unwrap();
        let mut expected = vec![0u8; 15];
        expected[2..6].copy_from_slice(b"abcd");
        expected[10..15].copy_from_slice(b"hello");
        assert_eq!(read_all(&path), expected);
    }

    #[test]
    fn write_and_sync_in_one_submission_reads_back() {
        let Some(backend) = uring() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = backend.create_new(&path).unwrap();
        file.write_all_at_and_sync(&[b"one", b"two"], 0).unwrap();
        file.sync_data().unwrap();
        file.write_all_at_and_sync(&[b"three"], 6).unwrap();
        assert_eq!(read_all(&path), b"onetwothree");
    }

    #[test]
    fn more_buffers_than_ring_slots_are_chunked() {
        let Some(_backend) = uring() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = pooled(open_options(true).open(&path).unwrap());
        let n = RING_ENTRIES as usize * 3 + 5;
        let owned: Vec<Vec<u8>> = (0..n).map(|i| (i as u32).to_le_bytes().to_vec()).collect();
        let bufs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        file.write_all_at(&bufs, 0).unwrap();
        assert_eq!(read_all(&path), owned.concat());
        // The same with the linked sync at the end.
        file.write_all_at_and_sync(&bufs, 4 * n as u64).unwrap();
        assert_eq!(read_all(&path), [owned.concat(), owned.concat()].concat());
    }

    #[test]
    fn buffers_above_the_per_entry_cap_are_split() {
        let Some(_backend) = uring() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = pooled(open_options(true).open(&path).unwrap());
        file.max_piece = 7;
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        file.write_all_at_and_sync(&[&data, b"tail"], 3).unwrap();
        let got = read_all(&path);
        assert_eq!(&got[3..1003], &data[..]);
        assert_eq!(&got[1003..], b"tail");
    }

    #[test]
    fn empty_buffer_list_and_empty_buffers_are_no_ops() {
        let Some(backend) = uring() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = backend.create_new(&path).unwrap();
        file.write_all_at(&[], 0).unwrap();
        file.write_all_at(&[b"", b""], 5).unwrap();
        file.write_all_at_and_sync(&[], 0).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn writing_to_a_read_only_fd_is_an_error_not_a_panic() {
        let Some(_backend) = uring() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = pooled(File::open(&path).unwrap());
        let err = file.write_all_at(&[b"abc", b"def"], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        let err = file.write_all_at_and_sync(&[b"abc"], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        // The ring is still usable afterwards.
        assert!(file.pool.acquire().poisoned.is_none());
        assert_eq!(read_all(&path), b"x");
    }

    #[test]
    fn preallocate_and_set_len_behave_like_plain() {
        let Some(backend) = uring() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = backend.create_new(&path).unwrap();
        file.preallocate(0, 1 << 20).unwrap();
        assert_eq!(file.file().metadata().unwrap().len(), 0);
        file.write_all_at(&[b"abcdef"], 0).unwrap();
        file.set_len(3).unwrap();
        assert_eq!(read_all(&path), b"abc");
    }

    fn piece(buf: &[u8], offset: u64) -> Piece<'_> {
        Piece { buf, offset }
    }

    #[test]
    fn settle_requeues_the_remainder_of_a_short_write() {
        let data = b"abcdefgh";
        let slots = [Slot::Write(piece(data, 100))];
        let s = settle(&slots, &[Some(3)], false);
        assert!(s.error.is_none());
        assert_eq!(s.requeue, vec![piece(b"defgh", 103)]);
    }

    #[test]
    fn settle_broken_chain_requeues_cancelled_writes_and_keeps_sync_pending() {
        let (a, b) = (b"aaaa", b"bbbb");
        let slots = [
            Slot::Write(piece(a, 0)),
            Slot::Write(piece(b, 4)),
            Slot::Sync,
        ];
        let s = settle(
            &slots,
            &[Some(2), Some(-libc::ECANCELED), Some(-libc::ECANCELED)],
            true,
        );
        assert!(s.error.is_none());
        assert!(!s.synced);
        assert_eq!(s.requeue, vec![piece(b"aa", 2), piece(b, 4)]);
    }

    #[test]
    fn settle_real_error_wins_over_cancellations() {
        let slots = [Slot::Write(piece(b"aa", 0)), Slot::Sync];
        let s = settle(&slots, &[Some(-libc::ENOSPC), Some(-libc::ECANCELED)], true);
        assert_eq!(s.error.unwrap().raw_os_error(), Some(libc::ENOSPC));
        assert!(!s.synced);
    }

    #[test]
    fn settle_sync_after_a_short_write_does_not_count() {
        // Even if a kernel ran the sync despite a short linked write, the remainder is not covered.
        let slots = [Slot::Write(piece(b"aaaa", 0)), Slot::Sync];
        let s = settle(&slots, &[Some(1), Some(0)], true);
        assert!(!s.synced);
        assert_eq!(s.requeue.len(), 1);
    }

    #[test]
    fn settle_never_panics_on_odd_results() {
        let slots = [Slot::Write(piece(b"aa", 0)), Slot::Sync];
        assert!(settle(&slots, &[Some(0), Some(0)], false).error.is_some());
        assert!(settle(&slots, &[Some(9), Some(0)], false).error.is_some());
        assert!(settle(&slots, &[None], false).error.is_some());
        let ok = settle(&slots, &[Some(2), Some(0)], true);
        assert!(ok.synced && ok.error.is_none() && ok.requeue.is_empty());
        // Unlinked, ECANCELED is a real error.
        let s = settle(&slots, &[Some(-libc::ECANCELED), Some(0)], false);
        assert_eq!(s.error.unwrap().raw_os_error(), Some(libc::ECANCELED));
    }

    #[test]
    fn split_caps_pieces_and_drops_empty_buffers() {
        let q = split(&[b"abcde", b"", b"fg"], 10, 2).unwrap();
        let got: Vec<_> = q.into_iter().collect();
        assert_eq!(
            got,
            vec![
                piece(b"ab", 10),
                piece(b"cd", 12),
                piece(b"e", 14),
                piece(b"fg", 15)
            ]
        );
        assert!(split(&[b"ab"], u64::MAX, 8).is_err());
    }
}
