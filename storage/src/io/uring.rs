//! The io_uring backend: the default write path.
//!
//! Every [`UringFile`] owns one small ring (64 entries). `write_all_at` turns the caller's buffers
//! into one `IORING_OP_WRITE` per buffer (buffers above [`MAX_SQE_BYTES`] are split), pushes as many
//! as the ring holds and submits them with a single `io_uring_enter`; `write_all_at_and_sync` links
//! the writes (`IOSQE_IO_LINK`) to a final `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`, so a
//! produce request with `acks=all` costs one system call in the common case.
//!
//! # Memory safety: the one rule
//! The kernel reads the caller's `&[u8]` buffers asynchronously, after `io_uring_enter` returned.
//! A borrowed slice only lives as long as the call that received it, so **no function of this file
//! returns — on any path, including errors — while a submission queue entry it pushed may still be
//! used by the kernel**. [`Ring::run_round`] is the only place entries are pushed and it returns
//! only when either
//! * every entry it pushed has had its completion reaped (the kernel is done with every buffer), or
//! * the entries the kernel never consumed are still in the submission ring and nothing that was
//!   consumed is outstanding; the ring is then *poisoned*: it is never entered again (we do not use
//!   `SQPOLL`, so without `io_uring_enter` the kernel never reads the submission ring), the file
//!   falls back to plain `pwrite`/`fdatasync`, and dropping the ring only unmaps it.
//!
//! `io_uring_enter` errors are handled, never unwrapped: `EINTR` is retried, `EBUSY`/`EAGAIN` reap
//! completions first and retry, anything else is treated as above. No kernel result panics.
//!
//! # Durability
//! Same contract as [`super::plain`]: bytes are durable once `sync_data` (or
//! `write_all_at_and_sync`) returned `Ok`. If a linked chain breaks (a short or failed write cancels
//! the rest with `ECANCELED`), the remainder is written and the sync is issued again, so the result
//! is exactly that of `write_all_at` followed by `sync_data`.
//!
//! # Concurrency
//! Calls take `&self`; the ring sits behind a mutex, so concurrent calls on one file are serialised.
//! The engine has one writer per log anyway.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, opcode, squeue, types};
use parking_lot::Mutex;

use super::aligned::AlignedBuf;
use super::plain::{PlainBackend, open_options, preallocate_keep_size};
use super::{BackendKind, DirectBuf, DirectFile, IoBackend, WritableFile};

/// Submission ring size of each writable file: enough for a produce request of many batches plus
/// the linked fsync, small enough that thousands of open segments cost little locked memory.
pub const RING_ENTRIES: u32 = 64;

/// Largest single write handed to the kernel. `IORING_OP_WRITE` takes a `u32` length and Linux
/// caps one write at `MAX_RW_COUNT` (just under 2 GiB) anyway; larger buffers are split.
pub const MAX_SQE_BYTES: usize = 1 << 30;

pub use super::DIRECT_ALIGN;

/// After this many `io_uring_enter` calls in a row that neither submitted nor completed anything,
/// while nothing is in the kernel's hands, the ring is given up on (poisoned).
const MAX_STALLED_ENTERS: u32 = 10_000;

/// The io_uring backend. Obtain it with [`UringBackend::probe`], which checks the kernel first.
#[derive(Debug)]
pub struct UringBackend {
    _probed: (),
}

fn unsupported(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, msg)
}

/// Names the likely cause of a failed `io_uring_setup`.
fn setup_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => {
            " (io_uring is disabled for this process: see /proc/sys/kernel/io_uring_disabled, or a seccomp filter)"
        }
        Some(libc::ENOSYS) => " (the kernel was built without io_uring)",
        Some(libc::ENOMEM) => " (out of locked memory: check RLIMIT_MEMLOCK)",
        _ => "",
    }
}

/// Creates a ring, mapping the failure to an `Unsupported` error that names the cause.
fn new_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::new(entries).map_err(|e| {
        unsupported(format!(
            "io_uring unavailable: creating a ring failed: {e}{}",
            setup_hint(&e)
        ))
    })
}

/// Checks that the kernel implements `needed` opcodes (name, code).
fn check_opcodes(ring: &IoUring, needed: &[(&str, u8)]) -> io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        unsupported(format!(
            "io_uring unavailable: IORING_REGISTER_PROBE failed ({e}); the kernel is older than 5.6"
        ))
    })?;
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, code)| !probe.is_supported(*code))
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unsupported(format!(
            "io_uring unavailable: the kernel lacks opcode(s) {}",
            missing.join(", ")
        )))
    }
}

impl UringBackend {
    /// Creates a small ring, checks that the kernel supports `IORING_OP_WRITE`,
    /// `IORING_OP_WRITEV` and `IORING_OP_FSYNC`, and proves `io_uring_enter` works with a no-op round trip.
    ///
    /// Returns an `Unsupported` error naming what is missing (ring creation refused, e.g. by
    /// `kernel.io_uring_disabled`; probe unsupported; opcodes missing) — never panics.
    pub fn probe() -> io::Result<Self> {
        let mut ring = Ring::new(4)?;
        check_opcodes(
            &ring.ring,
            &[
                ("IORING_OP_WRITE", opcode::Write::CODE),
                ("IORING_OP_WRITEV", opcode::Writev::CODE),
                ("IORING_OP_FSYNC", opcode::Fsync::CODE),
            ],
        )?;
        let mut entries = [opcode::Nop::new().build()];
        let mut results = [None];
        // SAFETY: a no-op references no memory at all.
        unsafe { ring.run_round(&mut entries, &mut results) }.map_err(|e| {
            unsupported(format!("io_uring unavailable: io_uring_enter failed: {e}"))
        })?;
        match results {
            [Some(0)] => Ok(UringBackend { _probed: () }),
            other => Err(unsupported(format!(
                "io_uring unavailable: a no-op completed with {other:?} instead of 0"
            ))),
        }
    }
}

impl IoBackend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        // The ring first: if it cannot be created, no empty file is left behind.
        let ring = Ring::new(RING_ENTRIES)?;
        let file = open_options(true).open(path)?;
        Ok(Box::new(UringFile::with_ring(file, ring)))
    }

    fn open_writable(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let ring = Ring::new(RING_ENTRIES)?;
        let file = open_options(false).open(path)?;
        Ok(Box::new(UringFile::with_ring(file, ring)))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn DirectFile>> {
        let ring = new_ring(RING_ENTRIES)?;
        let file = super::plain::open_direct_file(path)?;
        Ok(Box::new(UringDirect {
            file,
            ring,
            sq: Mutex::new(DirectState::default()),
            cq: Mutex::new(()),
        }))
    }

    // Directory operations are the plain backend's: they are not on the write path.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        PlainBackend.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        PlainBackend.remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        PlainBackend.create_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        PlainBackend.sync_dir(dir)
    }
}

/// A ring plus the bookkeeping that keeps its use sound.
struct Ring {
    ring: IoUring,
    /// Set when the ring was given up on with entries the kernel never consumed still in the
    /// submission queue; such a ring must never be entered again.
    poisoned: Option<String>,
    /// Tag of the current round, in the high half of every `user_data`, so a completion can never
    /// be mistaken for one of another round.
    round: u32,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("sq_entries", &self.ring.params().sq_entries())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Ring {
    fn new(entries: u32) -> io::Result<Ring> {
        Ok(Ring {
            ring: new_ring(entries)?,
            poisoned: None,
            round: 0,
        })
    }

    fn capacity(&self) -> usize {
        self.ring.params().sq_entries() as usize
    }

    /// Moves every available completion of round `tag` into `results`; returns how many new ones.
    fn reap(&mut self, tag: u32, results: &mut [Option<i32>]) -> usize {
        let mut reaped = 0;
        for cqe in self.ring.completion() {
            let user_data = cqe.user_data();
            if (user_data >> 32) as u32 != tag {
                // Not ours: impossible while every round reaps all of its completions, ignored.
                continue;
            }
            let index = (user_data & u64::from(u32::MAX)) as usize;
            if let Some(slot @ None) = results.get_mut(index) {
                *slot = Some(cqe.result());
                reaped += 1;
            }
        }
        reaped
    }

    /// Pushes `entries` (at most [`Ring::capacity`]; `user_data` is overwritten), submits them and
    /// waits until every one has completed; `results[i]` receives the result of `entries[i]`.
    ///
    /// On `Ok`, every entry has completed and been reaped. On `Err`, the kernel holds none of the
    /// entries any more: those it consumed have been reaped, those it did not are stranded in the
    /// submission queue and the ring is poisoned so they are never submitted.
    ///
    /// # Safety
    /// Every buffer the entries point to must stay valid (and, for reads, not be accessed
    /// otherwise) until this function returns. It does not return earlier, so borrowing the
    /// buffers for the duration of the caller's call is enough.
    unsafe fn run_round(
        &mut self,
        entries: &mut [squeue::Entry],
        results: &mut [Option<i32>],
    ) -> io::Result<()> {
        if let Some(why) = &self.poisoned {
            return Err(io::Error::other(format!("io_uring ring unusable: {why}")));
        }
        if entries.len() != results.len() || entries.len() > self.capacity() {
            return Err(io::Error::other(
                "io_uring round larger than the ring (internal error)",
            ));
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.round = self.round.wrapping_add(1);
        let tag = self.round;
        for (index, entry) in entries.iter_mut().enumerate() {
            entry.set_user_data((u64::from(tag) << 32) | index as u64);
        }
        results.iter_mut().for_each(|r| *r = None);
        {
            let mut sq = self.ring.submission();
            // SAFETY: the caller guarantees the buffers stay valid until we return, and we return
            // only once the kernel is done with every entry (see the loop below). `push_multiple`
            // pushes nothing if they do not all fit; the queue is empty here because every earlier
            // round left it empty (or poisoned the ring, checked above).
            unsafe { sq.push_multiple(entries) }.map_err(|_| {
                io::Error::other("io_uring submission queue unexpectedly full (internal error)")
            })?;
            // Dropping `sq` publishes the new tail to the kernel.
        }

        let mut outstanding = entries.len();
        let mut failure: Option<io::Error> = None;
        let mut stalled = 0u32;
        let mut reported = false;
        loop {
            outstanding = outstanding.saturating_sub(self.reap(tag, results));
            if outstanding == 0 {
                // Every entry completed, even if an earlier enter failed transiently.
                return Ok(());
            }
            let unsubmitted = self.ring.submission().len();
            let in_kernel = outstanding.saturating_sub(unsubmitted);
            if in_kernel == 0
                && let Some(e) = failure.take()
            {
                // Nothing is in the kernel's hands; what is left was never consumed. Strand it
                // for good: this ring is never entered again.
                self.poisoned = Some(format!(
                    "io_uring_enter failed with {unsubmitted} entries unsubmitted: {e}"
                ));
                tracing::warn!(error = %e, "io_uring ring poisoned, falling back to plain I/O");
                return Err(e);
            }
            match self.ring.submit_and_wait(outstanding) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {
                    // Completion queue full or no kernel resources: reap (top of loop) and retry;
                    // the stall count below gives up if this never ends.
                }
                Err(e) => {
                    if in_kernel == 0 {
                        failure = Some(e);
                    } else {
                        // The kernel still uses some buffers: we must not return. Keep waiting;
                        // completions still arrive without a working enter.
                        if !reported {
                            tracing::error!(error = %e, in_kernel, "io_uring_enter failing while writes are in flight; waiting for them");
                            reported = true;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            let after_unsubmitted = self.ring.submission().len();
            if after_unsubmitted == unsubmitted && self.ring.completion().is_empty() {
                stalled += 1;
                if stalled > 16 {
                    std::thread::sleep(Duration::from_micros(100));
                }
                if stalled > MAX_STALLED_ENTERS && in_kernel == 0 && failure.is_none() {
                    failure = Some(io::Error::other(
                        "io_uring_enter makes no progress submitting entries",
                    ));
                }
            } else {
                stalled = 0;
            }
        }
    }
}

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

/// A file written through its own io_uring.
#[derive(Debug)]
pub struct UringFile {
    file: File,
    ring: Mutex<Ring>,
    max_piece: usize,
}

impl UringFile {
    /// Wraps an already-open file, creating its ring.
    pub fn new(file: File) -> io::Result<Self> {
        Ok(Self::with_ring(file, Ring::new(RING_ENTRIES)?))
    }

    fn with_ring(file: File, ring: Ring) -> Self {
        UringFile {
            file,
            ring: Mutex::new(ring),
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
        let mut ring = self.ring.lock();
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

    /// `pwrite`/`fdatasync` for a file whose ring was poisoned.
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
        super::plain::start_writeback_range(&self.file, offset, len)
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

/// Most buffers in one direct write (the engine uses two: whole blocks and a tail block).
const MAX_DIRECT_BUFS: usize = 8;

/// O_DIRECT writes kept in flight through io_uring: [`DirectFile::submit`] pushes one
/// `IORING_OP_WRITEV` and enters the ring without waiting; [`DirectFile::complete`] waits for
/// and reaps completions. The caller's thread is free while the device writes.
///
/// Every write carries `IOSQE_IO_DRAIN`: the kernel starts it only after every earlier entry of
/// the ring completed, which gives the order [`DirectFile`] promises without a round trip
/// through user space between two writes (the next one starts from the kernel's completion of
/// the previous).
///
/// # Memory safety
/// The kernel reads a write's iovec array and buffers after `submit` returned. Both live in
/// `inflight` (owned heap memory: moving them does not move the bytes) from before the entry
/// becomes visible to the kernel until its completion has been reaped; only `complete` removes
/// them, after reading the completion. Dropping the file waits for every write in flight; if
/// the ring cannot be entered any more, the memory of writes still in flight is leaked, never
/// freed.
pub struct UringDirect {
    file: File,
    ring: IoUring,
    /// The submission side: the ring's submission queue and the writes in flight.
    sq: Mutex<DirectState>,
    /// The completion side: serialises access to the ring's completion queue.
    cq: Mutex<()>,
}

#[derive(Debug, Default)]
struct DirectState {
    inflight: std::collections::HashMap<u64, InFlight>,
}

#[derive(Debug)]
struct InFlight {
    /// Held, never read here: the kernel reads them until the completion is reaped.
    #[expect(dead_code, reason = "kept alive for the kernel, which reads it")]
    bufs: Vec<DirectBuf>,
    /// The iovec array the entry points to; its entries point into `bufs`.
    iovecs: Iovecs,
    len: usize,
}

/// An iovec array for the kernel.
#[derive(Debug)]
struct Iovecs(Box<[libc::iovec]>);

// SAFETY: the iovecs point into buffers owned by the same `InFlight` (immutable, `Send + Sync`
// memory); the array itself is only read, by the kernel, so moving or sharing it between
// threads is sound.
unsafe impl Send for Iovecs {}
// SAFETY: as above.
unsafe impl Sync for Iovecs {}

impl std::fmt::Debug for UringDirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringDirect")
            .field("in_flight", &self.sq.lock().inflight.len())
            .finish()
    }
}

impl UringDirect {
    /// Reaps every available completion.
    fn reap(&self) -> Vec<(u64, io::Result<()>)> {
        // SAFETY: the completion queue is only ever borrowed here, under `self.cq`, which every
        // caller holds, so no other `CompletionQueue` exists.
        let cqes: Vec<(u64, i32)> = unsafe { self.ring.completion_shared() }
            .map(|c| (c.user_data(), c.result()))
            .collect();
        let mut done = Vec::new();
        let mut st = self.sq.lock();
        for (id, result) in cqes {
            // The kernel is done with this write: its buffers may go (after this loop).
            let Some(w) = st.inflight.remove(&id) else {
                continue; // not one of ours: impossible, and nothing to free
            };
            let outcome = if result < 0 {
                Err(io::Error::from_raw_os_error(-result))
            } else if result as usize != w.len {
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short O_DIRECT write: {result} of {} bytes", w.len),
                ))
            } else {
                Ok(())
            };
            done.push((id, outcome));
        }
        done
    }
}

impl DirectFile for UringDirect {
    fn submit(&self, id: u64, bufs: Vec<DirectBuf>, offset: u64) -> io::Result<()> {
        if bufs.is_empty() || bufs.len() > MAX_DIRECT_BUFS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a direct write takes 1 to {MAX_DIRECT_BUFS} buffers"),
            ));
        }
        let iovecs: Box<[libc::iovec]> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_slice().as_ptr().cast_mut().cast(),
                iov_len: b.as_slice().len(),
            })
            .collect();
        let len: usize = bufs.iter().map(|b| b.as_slice().len()).sum();
        if len > MAX_SQE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "direct write too large",
            ));
        }
        let mut st = self.sq.lock();
        if st.inflight.contains_key(&id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("direct write {id} is already in flight"),
            ));
        }
        // Registered before the kernel can see the entry, so `reap` always finds it; the entry
        // is built from the registered iovec array, the memory the kernel will read.
        let w = st.inflight.entry(id).insert_entry(InFlight {
            bufs,
            iovecs: Iovecs(iovecs),
            len,
        });
        let iov = &w.get().iovecs.0;
        let entry = opcode::Writev::new(
            types::Fd(self.file.as_raw_fd()),
            iov.as_ptr(),
            iov.len() as u32,
        )
        .offset(offset)
        .build()
        .flags(squeue::Flags::IO_DRAIN)
        .user_data(id);
        {
            // SAFETY: the submission queue is only ever borrowed here, under `self.sq`, so no
            // other `SubmissionQueue` exists.
            let mut sq = unsafe { self.ring.submission_shared() };
            // SAFETY: the entry points to the iovec array and, through it, to the buffers just
            // moved into `inflight` (heap memory that moving does not move), which stay there
            // until its completion is reaped (see the type's docs).
            if unsafe { sq.push(&entry) }.is_err() {
                // Nothing was pushed: the kernel never saw these buffers.
                st.inflight.remove(&id);
                return Err(io::Error::other(
                    "io_uring submission queue full (too many direct writes in flight)",
                ));
            }
            // Dropping `sq` publishes the new tail to the kernel.
        }
        drop(st);
        loop {
            match self.ring.submitter().submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The entries stay queued (and registered): the next enter, by `complete`,
                // submits them. The error tells the caller this write is in doubt.
                Err(e) => return Err(e),
            }
        }
    }

    fn complete(&self, min: usize) -> io::Result<Vec<(u64, io::Result<()>)>> {
        let _cq = self.cq.lock();
        let mut done = self.reap();
        while done.len() < min {
            let in_flight = self.sq.lock().inflight.len();
            if in_flight == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "waiting for more direct writes than are in flight",
                ));
            }
            match self.ring.submitter().submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Completion queue busy: reap (below) and try again.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {}
                Err(e) => return Err(e),
            }
            done.extend(self.reap());
        }
        Ok(done)
    }

    fn is_async(&self) -> bool {
        true
    }
}

impl Drop for UringDirect {
    fn drop(&mut self) {
        let mut failures = 0;
        while !self.sq.get_mut().inflight.is_empty() {
            if let Err(e) = self.complete(1) {
                failures += 1;
                if failures > 100 {
                    // The kernel may still read these buffers: never free them.
                    tracing::error!(error = %e, "io_uring direct writes cannot be reaped; leaking their buffers");
                    std::mem::forget(std::mem::take(&mut self.sq.get_mut().inflight));
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// What the raw disk did in [`direct_baseline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectBaseline {
    /// Time to write every block (O_DIRECT, queue depth 1) plus the final fdatasync.
    pub write: Duration,
    /// Time to read every block back (O_DIRECT, queue depth 1).
    pub read: Duration,
    /// Bytes written and then read (`total_bytes` rounded up to whole blocks).
    pub bytes: u64,
}

/// splitmix64: a tiny deterministic generator, enough to fill a buffer with incompressible bytes.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A cheap order-sensitive hash (FNV-1a) to check the baseline read back what it wrote.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Removes the baseline file however `direct_baseline` ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs one read or write of `len` bytes at `offset` to completion at queue depth 1.
///
/// # Safety
/// `ptr..ptr+len` must be valid for the operation (readable for a write, writable and otherwise
/// unaccessed for a read) until this function returns.
unsafe fn one_io(
    ring: &mut Ring,
    fd: types::Fd,
    read: bool,
    ptr: *mut u8,
    len: u32,
    offset: u64,
) -> io::Result<()> {
    let entry = if read {
        opcode::Read::new(fd, ptr, len).offset(offset).build()
    } else {
        opcode::Write::new(fd, ptr.cast_const(), len)
            .offset(offset)
            .build()
    };
    let mut results = [None];
    // SAFETY: forwarded from this function's contract; `run_round` returns only when the kernel
    // is done with the buffer.
    unsafe { ring.run_round(&mut [entry], &mut results) }?;
    match results {
        [Some(n)] if n >= 0 && n as u32 == len => Ok(()),
        [Some(n)] if n < 0 => Err(io::Error::from_raw_os_error(-n)),
        [other] => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "short O_DIRECT {} at {offset}: {other:?} of {len} bytes",
                if read { "read" } else { "write" }
            ),
        )),
    }
}

/// Measures what the raw disk under `dir` does, for `strata bench --baseline`: writes `total_bytes`
/// (rounded up to whole blocks) sequentially with O_DIRECT in `block_size` blocks through io_uring
/// at queue depth 1, then fdatasync (both timed as `write`), then reads the file back the same way
/// (`read`), then removes it. Comparable to
/// `fio --ioengine=io_uring --direct=1 --bs=<block_size> --iodepth=1 --rw=write` then `--rw=read`.
///
/// `block_size` must be a non-zero multiple of [`DIRECT_ALIGN`]. Fails with a message saying so if
/// the file system refuses O_DIRECT (tmpfs, some overlay set-ups).
pub fn direct_baseline(
    dir: &Path,
    total_bytes: u64,
    block_size: usize,
) -> io::Result<DirectBaseline> {
    if block_size == 0 || !block_size.is_multiple_of(DIRECT_ALIGN) || block_size > MAX_SQE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "baseline block size {block_size} must be a non-zero multiple of {DIRECT_ALIGN} up to {MAX_SQE_BYTES}"
            ),
        ));
    }
    let len = u32::try_from(block_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "block size too large"))?;
    let blocks = total_bytes.div_ceil(block_size as u64);
    let bytes = blocks
        .checked_mul(block_size as u64)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "baseline size overflows"))?;

    let mut ring = Ring::new(4)?;
    check_opcodes(
        &ring.ring,
        &[
            ("IORING_OP_WRITE", opcode::Write::CODE),
            ("IORING_OP_READ", opcode::Read::CODE),
            ("IORING_OP_FSYNC", opcode::Fsync::CODE),
        ],
    )?;

    let mut buf = AlignedBuf::new(block_size, DIRECT_ALIGN)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut seed = nanos as u64 ^ u64::from(std::process::id());
    for chunk in buf.as_mut_slice().chunks_mut(8) {
        let word = splitmix64(&mut seed).to_le_bytes();
        for (dst, src) in chunk.iter_mut().zip(word) {
            *dst = src | 1; // never zero: nothing for a file system to elide
        }
    }

    let written_fingerprint = fingerprint(buf.as_slice());

    let path = dir.join(format!(
        ".strata-direct-baseline-{}-{nanos}.tmp",
        std::process::id()
    ));
    // Create it plainly first, so the guard only ever removes a file this call created.
    drop(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?,
    );
    let _remove = RemoveOnDrop(path.clone());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the file system of {} refuses O_DIRECT ({e}); run the baseline on a directory of a real disk, not tmpfs",
                        dir.display()
                    ),
                )
            } else {
                e
            }
        })?;
    let fd = types::Fd(file.as_raw_fd());

    let start = Instant::now();
    for block in 0..blocks {
        let offset = block * block_size as u64;
        // SAFETY: `buf` is owned here, `block_size` long and not otherwise accessed during the
        // call; `one_io` returns only when the kernel is done with it.
        unsafe {
            one_io(
                &mut ring,
                fd,
                false,
                buf.as_mut_slice().as_mut_ptr(),
                len,
                offset,
            )
        }
        .map_err(|e| io::Error::new(e.kind(), format!("O_DIRECT write at {offset}: {e}")))?;
    }
    let mut sync = [opcode::Fsync::new(fd)
        .flags(types::FsyncFlags::DATASYNC)
        .build()];
    let mut results = [None];
    // SAFETY: an fsync references no memory.
    unsafe { ring.run_round(&mut sync, &mut results) }?;
    if let [Some(r)] = results
        && r < 0
    {
        return Err(io::Error::from_raw_os_error(-r));
    }
    let write = start.elapsed();

    let start = Instant::now();
    for block in 0..blocks {
        let offset = block * block_size as u64;
        // SAFETY: as for the writes; the kernel writes into `buf`, which nothing else touches
        // until `one_io` returns.
        unsafe {
            one_io(
                &mut ring,
                fd,
                true,
                buf.as_mut_slice().as_mut_ptr(),
                len,
                offset,
            )
        }
        .map_err(|e| io::Error::new(e.kind(), format!("O_DIRECT read at {offset}: {e}")))?;
    }
    let read = start.elapsed();
    // Every block holds the same bytes: the last one read must match what was written.
    if blocks > 0 && fingerprint(buf.as_slice()) != written_fingerprint {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "O_DIRECT read-back differs from what was written",
        ));
    }
    drop(file);
    Ok(DirectBaseline { write, read, bytes })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Returns the backend, or prints why io_uring tests are skipped (like io-uring-test does).
    fn uring() -> Option<UringBackend> {
        match UringBackend::probe() {
            Ok(b) => Some(b),
            Err(e) => {
                crate::testing::skip("io_uring", &e.to_string());
                None
            }
        }
    }

    fn read_all(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn probe_succeeds_or_names_what_is_missing() {
        match UringBackend::probe() {
            Ok(b) => assert_eq!(b.kind(), BackendKind::IoUring),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::Unsupported);
                assert!(e.to_string().contains("io_uring"), "{e}");
            }
        }
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
        let file = UringFile::new(open_options(true).open(&path).unwrap()).unwrap();
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
        let mut file = UringFile::new(open_options(true).open(&path).unwrap()).unwrap();
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
        let file = UringFile::new(File::open(&path).unwrap()).unwrap();
        let err = file.write_all_at(&[b"abc", b"def"], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        let err = file.write_all_at_and_sync(&[b"abc"], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        // The ring is still usable afterwards.
        assert!(file.ring.lock().poisoned.is_none());
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

    /// A directory on a real disk: /tmp if it takes O_DIRECT, else under the working directory.
    fn direct_dir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let probe = tmp.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let ok = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok();
        std::fs::remove_file(&probe).unwrap();
        if ok {
            tmp
        } else {
            tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap()
        }
    }

    #[test]
    fn direct_baseline_writes_and_reads_then_removes_its_file() {
        let Some(_backend) = uring() else { return };
        let dir = direct_dir();
        match direct_baseline(dir.path(), 1 << 20, 64 << 10) {
            Ok(b) => {
                assert_eq!(b.bytes, 1 << 20);
                assert!(b.write > Duration::ZERO && b.read > Duration::ZERO);
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                crate::testing::skip("direct", &e.to_string());
            }
            Err(e) => panic!("baseline failed: {e}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn direct_baseline_rounds_up_to_whole_blocks_and_rejects_bad_sizes() {
        let Some(_backend) = uring() else { return };
        let dir = direct_dir();
        if let Ok(b) = direct_baseline(dir.path(), 5000, 4096) {
            assert_eq!(b.bytes, 8192);
        }
        let err = direct_baseline(dir.path(), 1 << 20, 1000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = direct_baseline(dir.path(), 1 << 20, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
