//! The io_uring backend: the default write path.
//!
//! A backend owns a fixed set of rings, whatever the number of files (issue "house" §3):
//! * [`ring::RingPool`]: small rings (64 entries) that the synchronous calls of every
//!   [`UringFile`] borrow one at a time. `write_all_at` turns the caller's buffers into one
//!   `IORING_OP_WRITE` per buffer (buffers above [`MAX_SQE_BYTES`] are split), pushes as many as
//!   the ring holds and submits them with a single `io_uring_enter`; `write_all_at_and_sync`
//!   links the writes (`IOSQE_IO_LINK`) to a final `IORING_OP_FSYNC` with
//!   `IORING_FSYNC_DATASYNC`, so a produce request with `acks=all` costs one system call in the
//!   common case.
//! * [`direct::DirectRings`]: a few rings, each with one thread of its own, that carry the
//!   O_DIRECT writes of every direct-mode segment ([`UringDirect`]) and tell their owners when
//!   they complete.
//!
//! # Memory safety: the one rule
//! The kernel reads the caller's `&[u8]` buffers asynchronously, after `io_uring_enter` returned.
//! A borrowed slice only lives as long as the call that received it, so **no synchronous call
//! returns — on any path, including errors — while a submission queue entry it pushed may still
//! be used by the kernel**. [`ring::Ring::run_round`] is the only place those entries are pushed
//! and it returns only when either
//! * every entry it pushed has had its completion reaped (the kernel is done with every buffer), or
//! * the entries the kernel never consumed are still in the submission ring and nothing that was
//!   consumed is outstanding; the ring is then *poisoned*: it is never entered again (we do not use
//!   `SQPOLL`, so without `io_uring_enter` the kernel never reads the submission ring), the pool
//!   replaces it, and dropping it only unmaps it.
//!
//! Direct writes own their buffers instead (see [`direct`]): the ring's thread holds them from
//! before the kernel can see the entry until its completion was reaped.
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
//! Calls take `&self`. A synchronous call holds one ring of the pool for its duration; calls on
//! one file are serialised by the engine (one writer per log), calls on different files run on
//! different rings, up to the pool's size, and wait for a free ring beyond it.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use io_uring::{IoUring, Probe, opcode};

use super::plain::{PlainBackend, open_options};
use super::{BackendKind, DirectFile, IoBackend, WritableFile};

mod baseline;
mod direct;
mod file;
mod ring;

pub use baseline::{DirectBaseline, direct_baseline};
pub use direct::UringDirect;
pub use file::UringFile;

/// Submission ring size of each ring of the pool: enough for a produce request of many batches
/// plus the linked fsync.
pub const RING_ENTRIES: u32 = 64;

/// Largest single write handed to the kernel. `IORING_OP_WRITE` takes a `u32` length and Linux
/// caps one write at `MAX_RW_COUNT` (just under 2 GiB) anyway; larger buffers are split.
pub const MAX_SQE_BYTES: usize = 1 << 30;

pub use super::DIRECT_ALIGN;

/// After this many `io_uring_enter` calls in a row that neither submitted nor completed anything,
/// while nothing is in the kernel's hands, the ring is given up on (poisoned).
const MAX_STALLED_ENTERS: u32 = 10_000;

/// The io_uring backend. Obtain it with [`UringBackend::probe`], which checks the kernel first.
/// Its rings are created on first use and shared by every file it opens.
#[derive(Debug)]
pub struct UringBackend {
    pool: OnceLock<Arc<ring::RingPool>>,
    direct: OnceLock<Arc<direct::DirectRings>>,
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
        let mut ring = ring::Ring::new(4)?;
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
            [Some(0)] => Ok(UringBackend {
                pool: OnceLock::new(),
                direct: OnceLock::new(),
            }),
            other => Err(unsupported(format!(
                "io_uring unavailable: a no-op completed with {other:?} instead of 0"
            ))),
        }
    }
}

impl UringBackend {
    /// The rings synchronous writes borrow, created on first use.
    fn pool(&self) -> io::Result<Arc<ring::RingPool>> {
        if let Some(p) = self.pool.get() {
            return Ok(p.clone());
        }
        let p = Arc::new(ring::RingPool::new(ring::pool_size())?);
        Ok(self.pool.get_or_init(|| p).clone())
    }

    /// The rings (and their threads) direct writes go through, started on first use.
    fn direct_rings(&self) -> io::Result<Arc<direct::DirectRings>> {
        if let Some(d) = self.direct.get() {
            return Ok(d.clone());
        }
        let d = Arc::new(direct::DirectRings::start(direct::rings_wanted())?);
        Ok(self.direct.get_or_init(|| d).clone())
    }

    /// Threads this backend runs (the direct rings' threads, once started).
    pub fn threads(&self) -> usize {
        self.direct.get().map_or(0, |d| d.threads())
    }
}

impl IoBackend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        // The pool first: if no ring can be created, no empty file is left behind.
        let pool = self.pool()?;
        let file = open_options(true).open(path)?;
        Ok(Box::new(UringFile::new(file, pool)))
    }

    fn open_writable(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let pool = self.pool()?;
        let file = open_options(false).open(path)?;
        Ok(Box::new(UringFile::new(file, pool)))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn DirectFile>> {
        let rings = self.direct_rings()?;
        let file = super::plain::open_direct_file(path)?;
        Ok(Box::new(rings.open(file)))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
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
}
