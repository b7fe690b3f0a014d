//! Scenario: a process appending with `fsync=always` is killed with SIGKILL at random moments;
//! after each kill the log reopens and every batch the process reported acknowledged is there,
//! intact, at the offset it was acknowledged with.
//!
//! The test re-runs its own binary as the child (`child_appender`, active only when
//! `STRATA_KILL9_DIR` is set), which prints `ack <base_offset> <batch_no>` after each append returns
//! (in odd rounds it keeps three appends in flight and reports each when its `wait` returns).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::*;
use strata_storage::log::{FsyncPolicy, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Always,
        segment_bytes: 64 * 1024,
        ..small_config()
    }
}

#[test]
fn child_appender() {
    let Ok(dir) = std::env::var("STRATA_KILL9_DIR") else {
        return; // only meaningful as the child of the test below
    };
    let start: u64 = std::env::var("STRATA_KILL9_FIRST")
        .unwrap()
        .parse()
        .unwrap();
    let in_flight: usize = std::env::var("STRATA_KILL9_IN_FLIGHT")
        .unwrap()
        .parse()
        .unwrap();
    let log = open(std::path::Path::new(&dir), config());
    let out = std::io::stdout();
    let ack = |base: u64, n: u64| {
        use std::io::Write;
        let mut o = out.lock();
        writeln!(o, "ack {base} {n}").unwrap();
        o.flush().unwrap();
    };
    if in_flight <= 1 {
        for n in start.. {
            let info = log
                .append_batch(numbered_batch(n, 3, 300, n as i64))
                .unwrap();
            ack(info.base_offset, n);
        }
    }
    // Several appends in flight: each is reported once its `wait` returned, oldest first.
    let mut flying = std::collections::VecDeque::new();
    for n in start.. {
        if flying.len() == in_flight {
            let (p, m): (strata_storage::log::PendingAppend<'_>, u64) = flying.pop_front().unwrap();
            ack(p.wait().unwrap().base_offset, m);
        }
        let p = log
            .start_append(numbered_batch(n, 3, 300, n as i64))
            .unwrap();
        flying.push_back((p, n));
    }
}

#[test]
fn given_an_appender_killed_with_sigkill_when_the_log_reopens_then_every_acknowledged_batch_is_intact()
 {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut next_batch_no = 0u64;
    for round in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = Duration::from_millis(50 + seed % 400);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("STRATA_KILL9_DIR", dir.path())
            .env("STRATA_KILL9_FIRST", next_batch_no.to_string())
            // Odd rounds keep 3 appends in flight (`start_append`), even ones one at a time.
            .env(
                "STRATA_KILL9_IN_FLIGHT",
                if round % 2 == 1 { "3" } else { "1" },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, acks) = std::sync::mpsc::channel::<(u64, u64)>();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let mut it = l.strip_prefix("ack ")?.split(' ');
                    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
                })
                .for_each(|ack| {
                    let _ = tx.send(ack);
                });
        });
        // Kill at a random moment while the child is appending: count from its first ack, not
        // from the spawn (starting the process and opening the log take a while under load).
        let first = acks
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| {
                let _ = child.kill();
                panic!("round {round}: the child acknowledged nothing within 60 s: {e}")
            });
        std::thread::sleep(kill_after);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let round_acks: Vec<(u64, u64)> = std::iter::once(first).chain(acks.try_iter()).collect();
        if let Some((_, n)) = round_acks.last() {
            next_batch_no = n + 1;
        }
        acked.extend(round_acks);

        let log = open(dir.path(), config());
        let stored = read_all(&log, 0);
        let by_offset: std::collections::HashMap<u64, &Vec<u8>> =
            stored.iter().map(|(b, _, bytes)| (*b, bytes)).collect();
        for (base, n) in &acked {
            let bytes = by_offset.get(base).unwrap_or_else(|| {
                panic!("round {round}: acknowledged batch {n} at {base} is missing")
            });
            let want = numbered_batch(*n, 3, 300, *n as i64);
            assert_eq!(
                bytes[8..],
                want[8..],
                "round {round}: batch at {base} differs"
            );
        }
        // Unacknowledged batches may or may not be there, but offsets stay contiguous.
        for w in stored.windows(2) {
            assert_eq!(w[0].0 + u64::from(w[0].1), w[1].0);
        }
        drop(log);
    }
    assert!(
        acked.len() > 6,
        "the child acknowledged almost nothing: {}",
        acked.len()
    );
}
