//! O_DIRECT writes kept in flight through a few shared rings, each driven by a thread of its own.
//!
//! [`DirectRings`] holds one ring per core, at most four, whatever the number of files. Each
//! [`UringDirect`] (one per active segment of a direct-mode log) is given one of them, round
//! robin. [`DirectFile::submit`] hands the write to that ring's thread (an inbox, and an
//! `eventfd` the thread always keeps a read armed on, so it wakes) and returns. The thread pushes
//! the entry; when the write completes it records the outcome with the file and calls the
//! file's [`DirectWaker`], which collects it with `complete(0)` and may submit more.
//!
//! Only a ring's own thread enters the ring: the kernel cancels a request that has not started
//! yet when the thread that submitted it exits, which an appender's thread may do at any time;
//! a ring's thread lives as long as the backend.
//!
//! **Order.** The thread keeps at most one write per file in the kernel and submits the next one
//! the moment the previous completed, so the writes of a file run one after another in
//! submission order (what [`DirectFile`] promises), while different files' writes run together.
//!
//! **Memory safety.** A write's buffers and its iovec array are moved into the thread's table of
//! writes in flight before the entry is pushed, and leave it only once the completion was
//! reaped; the `eventfd` read's 8-byte buffer is owned by the thread and leaked when it exits
//! with the read armed. Dropping a file does not wait for its writes (the kernel holds its own
//! reference to the open file). If the ring stops working, the buffers of every write the
//! kernel may still read are leaked, never freed, and every write is reported failed.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use io_uring::{IoUring, opcode, types};
use parking_lot::{Condvar, Mutex};

use super::{MAX_SQE_BYTES, new_ring};
use crate::io::{DirectBuf, DirectFile, DirectWaker};

/// Most buffers in one direct write (the engine uses two: whole blocks and a tail block).
const MAX_DIRECT_BUFS: usize = 8;

/// Entries of each direct ring: one write per file in flight, so this bounds nothing but how
/// many files' writes one `io_uring_enter` submits.
const DIRECT_RING_ENTRIES: u32 = 256;

/// `user_data` of the `eventfd` read that wakes a ring's thread; writes use keys from 1.
const WAKE: u64 = 0;

/// After this many failed `io_uring_enter` calls in a row, 10 ms apart, the ring is given up on.
const MAX_ENTER_FAILURES: u32 = 1000;

/// How many direct rings a backend starts: one per core, at most four.
pub(super) fn rings_wanted() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
}

/// The direct rings of a backend and their threads.
pub(crate) struct DirectRings {
    rings: Vec<Arc<RingShared>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for DirectRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectRings")
            .field("rings", &self.rings.len())
            .finish()
    }
}

/// What the files of a ring share with its thread.
struct RingShared {
    inbox: Mutex<Inbox>,
    /// Written to wake the thread.
    eventfd: OwnedFd,
}

#[derive(Default)]
struct Inbox {
    writes: VecDeque<Request>,
    stop: bool,
    /// Set when the ring stopped working: every later write fails with this.
    dead: Option<String>,
}

/// A write (or, with no buffers, an fdatasync) handed to a ring's thread.
struct Request {
    file: Arc<FileState>,
    id: u64,
    bufs: Vec<DirectBuf>,
    offset: u64,
    sync: bool,
}

/// A direct file as its ring's thread and its owner both see it.
struct FileState {
    file: File,
    done: Mutex<Done>,
    done_cv: Condvar,
    waker: Mutex<Option<Weak<dyn DirectWaker>>>,
}

#[derive(Default)]
struct Done {
    /// Outcomes not yet collected by `complete`.
    results: Vec<(u64, io::Result<()>)>,
    /// Writes submitted whose outcome is not recorded yet.
    outstanding: usize,
}

impl FileState {
    fn finish(&self, id: u64, res: io::Result<()>) {
        let mut d = self.done.lock();
        d.results.push((id, res));
        d.outstanding = d.outstanding.saturating_sub(1);
    }

    /// Wakes whoever waits in `complete`, then the owner's waker (outside every lock).
    fn notify(&self) {
        self.done_cv.notify_all();
        let waker = self.waker.lock().as_ref().and_then(Weak::upgrade);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

fn wake_thread(shared: &RingShared) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 initialised bytes from a live local to an eventfd this struct owns. A
    // failure (only a counter overflow, after 2^64 - 2 wakes nobody read) loses nothing: the
    // thread is awake anyway.
    let _ = unsafe { libc::write(shared.eventfd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

impl DirectRings {
    /// Starts `n` rings (at least one) and their threads.
    pub(super) fn start(n: usize) -> io::Result<Self> {
        let mut rings = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let ring = new_ring(DIRECT_RING_ENTRIES)?;
            // SAFETY: eventfd takes two integers and returns a new descriptor or -1.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just returned by eventfd and is owned by nothing else.
            let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
            let shared = Arc::new(RingShared {
                inbox: Mutex::new(Inbox::default()),
                eventfd,
            });
            let thread_shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("strata-direct-{i}"))
                .spawn(move || RingThread::new(ring, thread_shared).run())?;
            rings.push(shared);
            threads.push(handle);
        }
        Ok(DirectRings {
            rings,
            threads: Mutex::new(threads),
            next: AtomicUsize::new(0),
        })
    }

    /// How many threads the rings run.
    pub(super) fn threads(&self) -> usize {
        self.rings.len()
    }

    /// A direct file on the next ring.
    pub(super) fn open(&self, file: File) -> UringDirect {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.rings.len().max(1);
        let ring = self.rings.get(i).cloned();
        UringDirect {
            state: Arc::new(FileState {
                file,
                done: Mutex::new(Done::default()),
                done_cv: Condvar::new(),
                waker: Mutex::new(None),
            }),
            ring,
        }
    }
}

impl Drop for DirectRings {
    fn drop(&mut self) {
        for r in &self.rings {
            r.inbox.lock().stop = true;
            wake_thread(r);
        }
        let me = std::thread::current().id();
        for h in self.threads.get_mut().drain(..) {
            // The last owner may be a waker running on a ring's thread: never join oneself.
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}

/// O_DIRECT writes through one of the backend's direct rings (see the module docs).
pub struct UringDirect {
    state: Arc<FileState>,
    /// `None` only if the backend has no ring at all, which `DirectRings::start` prevents.
    ring: Option<Arc<RingShared>>,
}

impl std::fmt::Debug for UringDirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringDirect")
            .field("outstanding", &self.state.done.lock().outstanding)
            .finish()
    }
}

impl UringDirect {
    /// Hands a request to the ring's thread.
    fn send(&self, id: u64, bufs: Vec<DirectBuf>, offset: u64, sync: bool) -> io::Result<()> {
        let ring = self
            .ring
            .as_ref()
            .ok_or_else(|| io::Error::other("no direct ring"))?;
        {
            let mut inbox = ring.inbox.lock();
            if let Some(why) = &inbox.dead {
                return Err(io::Error::other(format!("direct ring unusable: {why}")));
            }
            if inbox.stop {
                return Err(io::Error::other("direct ring stopped"));
            }
            // Counted before the thread can record the outcome.
            self.state.done.lock().outstanding += 1;
            inbox.writes.push_back(Request {
                file: self.state.clone(),
                id,
                bufs,
                offset,
                sync,
            });
        }
        wake_thread(ring);
        Ok(())
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
        let len: usize = bufs.iter().map(|b| b.as_slice().len()).sum();
        if len > MAX_SQE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "direct write too large",
            ));
        }
        self.send(id, bufs, offset, false)
    }

    fn submit_sync(&self, id: u64) -> io::Result<()> {
        self.send(id, Vec::new(), 0, true)
    }

    fn complete(&self, min: usize) -> io::Result<Vec<(u64, io::Result<()>)>> {
        let mut d = self.state.done.lock();
        while d.results.len() < min {
            if d.results.len() + d.outstanding < min {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "waiting for more direct writes than are in flight",
                ));
            }
            self.state.done_cv.wait(&mut d);
        }
        Ok(std::mem::take(&mut d.results))
    }

    fn is_async(&self) -> bool {
        true
    }

    fn set_waker(&self, waker: Weak<dyn DirectWaker>) {
        *self.state.waker.lock() = Some(waker);
    }

    fn wait_idle(&self) {
        let mut d = self.state.done.lock();
        while d.outstanding > 0 {
            self.state.done_cv.wait(&mut d);
        }
    }
}

/// A write the kernel may be reading.
struct InFlight {
    file: Arc<FileState>,
    id: u64,
    /// Held, never read here: the kernel reads them until the completion is reaped.
    #[expect(dead_code, reason = "kept alive for the kernel, which reads it")]
    bufs: Vec<DirectBuf>,
    /// The iovec array the entry points to; its entries point into `bufs`.
    iovecs: Iovecs,
    len: usize,
    /// An fdatasync, not a write.
    sync: bool,
}

/// An iovec array for the kernel.
struct Iovecs(Box<[libc::iovec]>);

// SAFETY: the iovecs point into buffers owned by the same `InFlight` (immutable, `Send + Sync`
// memory); the array itself is only read, by the kernel, so moving it between threads is sound.
unsafe impl Send for Iovecs {}

/// A file's writes waiting behind the one in the kernel.
struct FileQueue {
    waiting: VecDeque<Request>,
    /// A write of this file is in the kernel.
    busy: bool,
}

/// The state a ring's thread owns.
struct RingThread {
    ring: IoUring,
    shared: Arc<RingShared>,
    inflight: HashMap<u64, InFlight>,
    /// Per file with a write in the kernel or waiting, keyed by its address (those writes hold
    /// the file alive, so the address cannot be reused meanwhile).
    files: HashMap<usize, FileQueue>,
    next_key: u64,
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
}

fn file_key(f: &Arc<FileState>) -> usize {
    Arc::as_ptr(f) as usize
}

impl RingThread {
    fn new(ring: IoUring, shared: Arc<RingShared>) -> Self {
        RingThread {
            ring,
            shared,
            inflight: HashMap::new(),
            files: HashMap::new(),
            next_key: WAKE + 1,
            wake_buf: Box::new([0u8; 8]),
            wake_armed: false,
        }
    }

    fn run(mut self) {
        let mut failures = 0u32;
        loop {
            if !self.wake_armed {
                self.arm_wake();
            }
            let (requests, stop) = {
                let mut inbox = self.shared.inbox.lock();
                (std::mem::take(&mut inbox.writes), inbox.stop)
            };
            let mut notify = Vec::new();
            for r in requests {
                self.accept(r, &mut notify);
            }
            notify_all(&mut notify);
            if stop && self.inflight.is_empty() {
                self.exit();
                return;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => failures = 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Completion queue busy or no kernel resources: reap below and retry.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {}
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::error!(error = %e, "io_uring_enter failing on a direct ring; retrying");
                    }
                    if failures >= MAX_ENTER_FAILURES {
                        self.die(&format!("io_uring_enter keeps failing: {e}"));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            self.reap(&mut notify);
            notify_all(&mut notify);
        }
    }

    /// Arms the `eventfd` read that wakes this thread.
    fn arm_wake(&mut self) {
        let entry = opcode::Read::new(
            types::Fd(self.shared.eventfd.as_raw_fd()),
            self.wake_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(WAKE);
        // SAFETY: the entry points to `wake_buf`, heap memory this thread owns, which nothing
        // else reads or writes, kept until the read completed or leaked at exit.
        if self.push(&entry) {
            self.wake_armed = true;
        }
    }

    /// Pushes an entry, making room by submitting if the queue is full. `false` if there is no
    /// room even then (the entry was not pushed).
    fn push(&mut self, entry: &io_uring::squeue::Entry) -> bool {
        for _ in 0..2 {
            // SAFETY: every entry pushed here points to memory kept alive until its completion
            // is reaped (see the callers); only this thread touches the submission queue.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return true;
            }
            let _ = self.ring.submit();
        }
        false
    }

    /// Takes a write: into the kernel if its file has none there, else behind the one that is.
    fn accept(&mut self, r: Request, notify: &mut Vec<Arc<FileState>>) {
        if let Some(why) = self.shared.inbox.lock().dead.clone() {
            r.file.finish(
                r.id,
                Err(io::Error::other(format!("direct ring unusable: {why}"))),
            );
            notify.push(r.file);
            return;
        }
        let key = file_key(&r.file);
        let q = self.files.entry(key).or_insert_with(|| FileQueue {
            waiting: VecDeque::new(),
            busy: false,
        });
        if q.busy {
            q.waiting.push_back(r);
            return;
        }
        self.start(r, notify);
    }

    /// Pushes a write's entry; its file is busy until the completion is reaped.
    fn start(&mut self, r: Request, notify: &mut Vec<Arc<FileState>>) {
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1).max(WAKE + 1);
        let iovecs: Box<[libc::iovec]> = r
            .bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_slice().as_ptr().cast_mut().cast(),
                iov_len: b.as_slice().len(),
            })
            .collect();
        let len: usize = r.bufs.iter().map(|b| b.as_slice().len()).sum();
        let sync = r.sync;
        let fd = types::Fd(r.file.file.as_raw_fd());
        let file = r.file.clone();
        // Registered before the kernel can see the entry, built from the registered array.
        let w = self.inflight.entry(key).insert_entry(InFlight {
            file: r.file,
            id: r.id,
            bufs: r.bufs,
            iovecs: Iovecs(iovecs),
            len,
            sync,
        });
        let iov = &w.get().iovecs.0;
        let entry = if sync {
            opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(key)
        } else {
            opcode::Writev::new(fd, iov.as_ptr(), iov.len() as u32)
                .offset(r.offset)
                .build()
                .user_data(key)
        };
        // SAFETY (for `push`): the entry points to the iovec array and, through it, to the
        // buffers just moved into `inflight` (heap memory that moving does not move), which stay
        // there until its completion is reaped.
        if self.push(&entry) {
            if let Some(q) = self.files.get_mut(&file_key(&file)) {
                q.busy = true;
            }
        } else {
            // Nothing was pushed: the kernel never saw these buffers.
            self.inflight.remove(&key);
            file.finish(
                r.id,
                Err(io::Error::other("direct ring submission queue full")),
            );
            notify.push(file);
        }
    }

    /// Records every available completion; starts each file's next write.
    fn reap(&mut self, notify: &mut Vec<Arc<FileState>>) {
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (key, result) in cqes {
            if key == WAKE {
                self.wake_armed = false;
                continue;
            }
            // The kernel is done with this write: its buffers may go.
            let Some(w) = self.inflight.remove(&key) else {
                continue;
            };
            let outcome = if result < 0 {
                Err(io::Error::from_raw_os_error(-result))
            } else if !w.sync && result as usize != w.len {
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short O_DIRECT write: {result} of {} bytes", w.len),
                ))
            } else {
                Ok(())
            };
            w.file.finish(w.id, outcome);
            let fk = file_key(&w.file);
            notify.push(w.file);
            let next = match self.files.get_mut(&fk) {
                Some(q) => {
                    q.busy = false;
                    q.waiting.pop_front()
                }
                None => None,
            };
            match next {
                Some(r) => self.start(r, notify),
                None => {
                    // Idle: forget the file (its owner may drop it).
                    if self
                        .files
                        .get(&fk)
                        .is_some_and(|q| !q.busy && q.waiting.is_empty())
                    {
                        self.files.remove(&fk);
                    }
                }
            }
        }
    }

    /// The ring stopped working: every write fails, and the buffers of those the kernel may
    /// hold are leaked.
    fn die(mut self, why: &str) {
        tracing::error!(
            reason = why,
            "direct io_uring ring given up; direct writes now fail"
        );
        self.shared.inbox.lock().dead = Some(why.to_string());
        let mut notify = Vec::new();
        for (_, w) in std::mem::take(&mut self.inflight) {
            w.file.finish(w.id, Err(io::Error::other(why.to_string())));
            notify.push(w.file.clone());
            // The kernel may still read these buffers: never free them.
            std::mem::forget(w);
        }
        for (_, q) in std::mem::take(&mut self.files) {
            for r in q.waiting {
                r.file.finish(r.id, Err(io::Error::other(why.to_string())));
                notify.push(r.file);
            }
        }
        let late = std::mem::take(&mut self.shared.inbox.lock().writes);
        for r in late {
            r.file.finish(r.id, Err(io::Error::other(why.to_string())));
            notify.push(r.file);
        }
        notify_all(&mut notify);
        self.exit();
    }

    /// Leaves the wake buffer to the kernel if a read may still target it.
    fn exit(self) {
        if self.wake_armed {
            Box::leak(self.wake_buf);
        }
    }
}

fn notify_all(files: &mut Vec<Arc<FileState>>) {
    files.sort_by_key(file_key);
    files.dedup_by_key(|f| file_key(f));
    for f in files.drain(..) {
        f.notify();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::io::DIRECT_ALIGN;
    use std::sync::atomic::AtomicUsize;

    struct Counter(AtomicUsize);
    impl DirectWaker for Counter {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn rings() -> Option<DirectRings> {
        match DirectRings::start(2) {
            Ok(r) => Some(r),
            Err(e) => {
                crate::testing::skip("io_uring", &e.to_string());
                None
            }
        }
    }

    fn direct_file(dir: &std::path::Path, name: &str) -> Option<File> {
        let path = dir.join(name);
        std::fs::write(&path, b"").unwrap();
        match crate::io::plain::open_direct_file(&path) {
            Ok(f) => Some(f),
            Err(e) => {
                crate::testing::skip("direct", &e.to_string());
                None
            }
        }
    }

    #[test]
    fn writes_of_many_files_complete_in_order_per_file_and_wake_their_owner() {
        let Some(rings) = rings() else { return };
        let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let waker: Arc<Counter> = Arc::new(Counter(AtomicUsize::new(0)));
        let mut files = Vec::new();
        for i in 0..5 {
            let Some(f) = direct_file(dir.path(), &format!("f{i}")) else {
                return;
            };
            let d = rings.open(f);
            let w: Arc<dyn DirectWaker> = waker.clone();
            d.set_waker(Arc::downgrade(&w));
            files.push((d, w));
        }
        for (i, (d, _)) in files.iter().enumerate() {
            for block in 0..4u64 {
                let byte = (i as u8) * 16 + block as u8;
                let buf = DirectBuf::filled(byte, DIRECT_ALIGN).unwrap();
                d.submit(block, vec![buf], block * DIRECT_ALIGN as u64)
                    .unwrap();
            }
        }
        for (i, (d, _)) in files.iter().enumerate() {
            let mut got = Vec::new();
            while got.len() < 4 {
                got.extend(d.complete(1).unwrap());
            }
            let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
            assert_eq!(ids, [0, 1, 2, 3], "in submission order");
            assert!(got.iter().all(|(_, r)| r.is_ok()));
            let bytes = std::fs::read(dir.path().join(format!("f{i}"))).unwrap();
            assert_eq!(bytes.len(), 4 * DIRECT_ALIGN);
            for block in 0..4 {
                assert_eq!(bytes[block * DIRECT_ALIGN], (i as u8) * 16 + block as u8);
            }
        }
        assert!(waker.0.load(Ordering::SeqCst) > 0, "owners were woken");
        assert_eq!(rings.threads(), 2);
    }

    #[test]
    fn a_failed_write_is_reported_and_waiting_for_more_than_in_flight_is_refused() {
        let Some(rings) = rings() else { return };
        let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let Some(f) = direct_file(dir.path(), "f") else {
            return;
        };
        let d = rings.open(f);
        // An offset that is not block-aligned: the kernel refuses it (EINVAL).
        d.submit(7, vec![DirectBuf::filled(1, DIRECT_ALIGN).unwrap()], 1)
            .unwrap();
        let got = d.complete(1).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].1.is_err());
        assert!(d.complete(1).is_err(), "nothing in flight");
        assert!(d.submit(8, Vec::new(), 0).is_err(), "no buffers");
    }
}
