//! What a partition costs a running broker (issue "house" §3): threads and file descriptors of
//! a broker holding thousands of partitions, idle, written, and after the idle sweep; and how
//! long a clean stop and a start take. Run by `scripts/partition-scale`, which builds the
//! broker first; the results go in PERFORMANCE.md ("Threads and files").
//!
//! ```text
//! cargo run --release --example partition_scale -- target/release/strata 2000
//! ```
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_storage::batch::{BatchBuilder, Compression, NewRecord};

/// How long the broker keeps an unused partition's files open in this run (the default is
/// 30 s; shorter so the run does not wait for it).
const FILE_IDLE_MS: u64 = 2_000;

struct Broker {
    child: Child,
    addr: String,
    started_in: Duration,
}

fn start(bin: &str, dir: &Path) -> Broker {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--set", &format!("strata.log.file.idle.ms={FILE_IDLE_MS}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started_in = t.elapsed();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Broker {
        child,
        addr,
        started_in,
    }
}

/// SIGTERM, then the time until the process exited.
fn stop(mut b: Broker) -> Duration {
    let t = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = b.child.wait().unwrap();
    assert!(status.success(), "clean stop failed: {status}");
    t.elapsed()
}

/// `(threads, of which io_uring workers, file descriptors)` of a process.
fn census(pid: u32) -> (usize, usize, usize) {
    let mut threads = 0;
    let mut iou = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        threads += 1;
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with("iou-wrk") {
            iou += 1;
        }
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (threads, iou, fds)
}

fn row(what: &str, pid: u32) {
    let (threads, iou, fds) = census(pid);
    println!("| {what} | {} | {iou} | {fds} |", threads - iou);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .unwrap_or_else(|| "target/release/strata".into());
    let partitions: i32 = args.next().map_or(2000, |n| n.parse().unwrap());
    let dir = tempfile::tempdir_in(".").unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{partitions} partitions, {cores} cores (goal: at most {} threads, under 1000 descriptors, start and clean stop under 1 s)\n",
        4 * cores + 16
    );
    println!(
        "| state | threads (without io_uring workers) | io_uring workers | file descriptors |"
    );
    println!("|---|---|---|---|");

    let b = start(&bin, dir.path());
    let pid = b.child.id();
    row("fresh broker", pid);
    let mut c = strata_client::Conn::connect(&b.addr, "partition-scale").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    let r = c
        .call(
            &CreateTopicsRequest::default()
                .with_timeout_ms(600_000)
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("wide")))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                        .with_configs(vec![
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_static_str("segment.bytes"))
                                .with_value(Some(StrBytes::from_static_str("1048576"))),
                        ]),
                ]),
            7,
        )
        .unwrap();
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    row(&format!("{partitions} partitions created, idle"), pid);
    let topic = strata_client::topic_name("wide");
    let batch = {
        let mut bb = BatchBuilder::new(Compression::None);
        bb.push(NewRecord::new(vec![b'x'; 1000])).unwrap();
        Bytes::from(bb.build().unwrap())
    };
    for p in 0..partitions {
        let r = c
            .call(
                &strata_client::produce_request(&topic, p, -1, batch.clone()),
                8,
            )
            .unwrap();
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "partition {p}"
        );
    }
    row("every partition written once", pid);
    std::thread::sleep(Duration::from_millis(3 * FILE_IDLE_MS));
    row(&format!("{} ms later (idle sweep)", 3 * FILE_IDLE_MS), pid);
    drop(c);
    let stop_written = stop(b);

    let b = start(&bin, dir.path());
    let start_after_clean = b.started_in;
    row("restarted", b.child.id());
    let stop_idle = stop(b);
    println!();
    println!("| step | time |");
    println!("|---|---|");
    println!(
        "| clean stop, every partition written since start | {:.2} s |",
        stop_written.as_secs_f64()
    );
    println!(
        "| start after that clean stop | {:.2} s |",
        start_after_clean.as_secs_f64()
    );
    println!(
        "| clean stop, nothing written since start | {:.2} s |",
        stop_idle.as_secs_f64()
    );
}
