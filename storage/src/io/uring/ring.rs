//! A ring and the bookkeeping that keeps its use sound, and the pool of rings the synchronous
//! writes of every file share (issue "house" §3: a bounded set of rings, not one per file).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use io_uring::{IoUring, squeue};
use parking_lot::{Mutex, MutexGuard};
use std::io;

use super::{MAX_STALLED_ENTERS, RING_ENTRIES, new_ring};

/// A ring plus the bookkeeping that keeps its use sound.
pub(crate) struct Ring {
    pub(super) ring: IoUring,
    /// Set when the ring was given up on with entries the kernel never consumed still in the
    /// submission queue; such a ring must never be entered again.
    pub(super) poisoned: Option<String>,
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
    pub(super) fn new(entries: u32) -> io::Result<Ring> {
        Ok(Ring {
            ring: new_ring(entries)?,
            poisoned: None,
            round: 0,
        })
    }

    pub(super) fn capacity(&self) -> usize {
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
    pub(super) unsafe fn run_round(
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

/// How many rings a pool holds: two per core, between 4 and 16. A synchronous write holds a
/// ring only while it runs, so this bounds how many run at once, not how many files are open.
pub(super) fn pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).clamp(4, 16)
}

/// The rings every [`super::UringFile`] of a backend borrows for its synchronous calls.
pub(crate) struct RingPool {
    rings: Box<[Mutex<Ring>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for RingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingPool")
            .field("rings", &self.rings.len())
            .finish()
    }
}

impl RingPool {
    /// `n` rings of [`RING_ENTRIES`] entries (at least one).
    pub(super) fn new(n: usize) -> io::Result<Self> {
        let rings = (0..n.max(1))
            .map(|_| Ring::new(RING_ENTRIES).map(Mutex::new))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(RingPool {
            rings: rings.into_boxed_slice(),
            next: AtomicUsize::new(0),
        })
    }

    /// A ring no other call is using: the first free one from a rotating start, else the one
    /// at the start once it is free. A ring a failed call poisoned is replaced by a new one
    /// here; if none can be created the poisoned ring is returned and the caller falls back to
    /// plain system calls.
    pub(super) fn acquire(&self) -> MutexGuard<'_, Ring> {
        let n = self.rings.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut guard = (0..n)
            .find_map(|i| self.rings.get((start + i) % n).and_then(|r| r.try_lock()))
            .unwrap_or_else(|| {
                #[expect(
                    clippy::indexing_slicing,
                    reason = "start is below n, the length of a non-empty slice"
                )]
                self.rings[start].lock()
            });
        if guard.poisoned.is_some()
            && let Ok(fresh) = Ring::new(RING_ENTRIES)
        {
            // Dropping the poisoned ring only unmaps it: its stranded entries were never seen
            // by the kernel, which never reads a ring nobody enters.
            *guard = fresh;
        }
        guard
    }
}
