//! The threads every partition log shares (issue "house" §3): a small pool that runs each log's
//! background work, and one timer thread that says when that work is due. However many logs a
//! process opens, the engine runs [`Runtime::workers`] + 1 threads (plus the io_uring backend's
//! direct rings, see [`crate::io::uring`]); before, every log had two or three of its own.
//!
//! * **Work** ([`Runtime::submit`]): a closure run once on a pool thread. A log submits one
//!   job per burst of work (seals, syncs, preallocation, writeback, retention, closing idle
//!   files) and that job drains the log's queue, so a log's work runs in order, one item at a
//!   time, while different logs' work runs in parallel. Jobs may block on the disk, never on
//!   another job.
//! * **Timers** ([`Runtime::wake_at`]): the timer thread calls [`Timed::fire`] when a deadline
//!   passes; `fire` only marks work due and submits a job, and returns its next deadline.
//!
//! One process-wide runtime ([`Runtime::global`]) serves every log; its size follows the
//! machine's cores.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// A job for the pool.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Something with deadlines: the timer thread calls `fire` once `Instant::now()` passed the
/// deadline it was registered with.
pub(crate) trait Timed: Send + Sync {
    /// Runs on the timer thread: must be quick (mark work due, submit a job). Returns the next
    /// deadline, or `None` to be forgotten.
    fn fire(&self, now: Instant) -> Option<Instant>;
}

struct TimerEntry {
    at: Instant,
    seq: u64,
    target: Weak<dyn Timed>,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Work {
    jobs: VecDeque<Job>,
    stop: bool,
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<TimerEntry>>,
    seq: u64,
    stop: bool,
}

struct Shared {
    work: Mutex<Work>,
    work_cv: Condvar,
    timers: Mutex<Timers>,
    timers_cv: Condvar,
}

/// A worker pool and a timer thread (see the module docs).
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers)
            .finish()
    }
}

impl Runtime {
    /// The process-wide runtime every log uses: two workers per core, between 2 and 8.
    pub fn global() -> &'static Runtime {
        static GLOBAL: OnceLock<Runtime> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            match Runtime::new((cores * 2).clamp(2, 8)) {
                Ok(r) => r,
                // Without threads no log can run; there is no way to go on.
                Err(e) => panic!("cannot start the storage engine's threads: {e}"),
            }
        })
    }

    /// A runtime of `workers` pool threads (at least one) and a timer thread.
    pub fn new(workers: usize) -> std::io::Result<Runtime> {
        let shared = Arc::new(Shared {
            work: Mutex::new(Work::default()),
            work_cv: Condvar::new(),
            timers: Mutex::new(Timers::default()),
            timers_cv: Condvar::new(),
        });
        let workers = workers.max(1);
        let mut threads = Vec::with_capacity(workers + 1);
        for i in 0..workers {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("strata-log-{i}"))
                    .spawn(move || worker(&s))?,
            );
        }
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("strata-log-timer".into())
                .spawn(move || timer(&s))?,
        );
        Ok(Runtime {
            shared,
            threads: Mutex::new(threads),
            workers,
        })
    }

    /// Pool threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Every thread this runtime runs (the pool and the timer).
    pub fn threads(&self) -> usize {
        self.workers + 1
    }

    /// Runs `job` once on a pool thread.
    pub(crate) fn submit(&self, job: Job) {
        let mut w = self.shared.work.lock();
        if w.stop {
            return;
        }
        w.jobs.push_back(job);
        drop(w);
        self.shared.work_cv.notify_one();
    }

    /// Calls `target.fire` at `at` (and then at whatever it returns) until it returns `None` or
    /// is dropped.
    pub(crate) fn wake_at(&self, at: Instant, target: Weak<dyn Timed>) {
        let mut t = self.shared.timers.lock();
        t.seq += 1;
        let seq = t.seq;
        let earliest = t.heap.peek().is_none_or(|Reverse(e)| at < e.at);
        t.heap.push(Reverse(TimerEntry { at, seq, target }));
        drop(t);
        if earliest {
            self.shared.timers_cv.notify_one();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.work.lock().stop = true;
        self.shared.work_cv.notify_all();
        self.shared.timers.lock().stop = true;
        self.shared.timers_cv.notify_all();
        for h in self.threads.get_mut().drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(s: &Shared) {
    loop {
        let job = {
            let mut w = s.work.lock();
            loop {
                if let Some(j) = w.jobs.pop_front() {
                    break j;
                }
                if w.stop {
                    return;
                }
                s.work_cv.wait(&mut w);
            }
        };
        job();
    }
}

fn timer(s: &Shared) {
    let mut t = s.timers.lock();
    loop {
        if t.stop {
            return;
        }
        let now = Instant::now();
        let due = t.heap.peek().is_some_and(|Reverse(e)| e.at <= now);
        if due {
            let Some(Reverse(entry)) = t.heap.pop() else {
                continue;
            };
            // Fired without the lock: `fire` may register timers or submit jobs.
            drop(t);
            let next = entry.target.upgrade().and_then(|target| target.fire(now));
            t = s.timers.lock();
            if let Some(at) = next {
                t.seq += 1;
                let seq = t.seq;
                t.heap.push(Reverse(TimerEntry {
                    at,
                    seq,
                    target: entry.target,
                }));
            }
            continue;
        }
        match t.heap.peek().map(|Reverse(e)| e.at) {
            Some(at) => {
                s.timers_cv.wait_until(&mut t, at);
            }
            None => s.timers_cv.wait(&mut t),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn jobs_run_on_the_pool_and_many_logs_share_its_threads() {
        let rt = Runtime::new(2).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..100 {
            let done = done.clone();
            let tx = tx.clone();
            rt.submit(Box::new(move || {
                done.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(std::thread::current().name().map(str::to_string));
            }));
        }
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..100 {
            names.insert(rx.recv_timeout(Duration::from_secs(30)).unwrap());
        }
        assert_eq!(done.load(Ordering::SeqCst), 100);
        assert!(names.len() <= 2, "{names:?}");
        assert_eq!(rt.threads(), 3);
    }

    struct Ticker {
        fired: AtomicUsize,
        times: usize,
        tx: Mutex<std::sync::mpsc::Sender<usize>>,
    }

    impl Timed for Ticker {
        fn fire(&self, now: Instant) -> Option<Instant> {
            let n = self.fired.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = self.tx.lock().send(n);
            (n < self.times).then(|| now + Duration::from_millis(1))
        }
    }

    #[test]
    fn a_timer_fires_until_it_returns_none_and_a_dropped_target_is_forgotten() {
        let rt = Runtime::new(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = Arc::new(Ticker {
            fired: AtomicUsize::new(0),
            times: 3,
            tx: Mutex::new(tx),
        });
        let weak: Weak<dyn Timed> = Arc::downgrade(&(t.clone() as Arc<dyn Timed>));
        rt.wake_at(Instant::now(), weak);
        for expect in 1..=3 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), expect);
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "stopped after returning None"
        );
        // A target dropped before its deadline is never called.
        let (tx2, rx2) = std::sync::mpsc::channel();
        let gone = Arc::new(Ticker {
            fired: AtomicUsize::new(0),
            times: 1,
            tx: Mutex::new(tx2),
        });
        let weak: Weak<dyn Timed> = Arc::downgrade(&(gone.clone() as Arc<dyn Timed>));
        rt.wake_at(Instant::now() + Duration::from_millis(20), weak);
        drop(gone);
        assert!(rx2.recv_timeout(Duration::from_millis(100)).is_err());
    }
}
