//! Scenario: with acks=all and fsync before every acknowledgment (flush.messages=1), the broker
//! is killed with SIGKILL while a producer sends; after a restart every acknowledged record is
//! read back, in order.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn given_acks_all_and_flush_per_message_when_the_broker_is_killed_then_every_acknowledged_record_survives()
 {
    let mut b = Broker::start(&[
        "--set",
        "log.flush.interval.messages=1",
        "--set",
        "log.segment.bytes=65536",
    ]);
    let mut c = b.client();
    create_topic(&mut c, "dur", 2, &[]);
    let acked: Arc<Mutex<Vec<(i32, i64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let addr = b.addr.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let v = format!("p{p}-{i}");
                    // A killed broker shows up as a closed connection: stop there.
                    let Ok(r) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        produce(&mut c, "dur", p, batch(&[&v], None), -1)
                    })) else {
                        return;
                    };
                    let pr = &r.unwrap().responses[0].partition_responses[0];
                    if pr.error_code == 0 {
                        acked.lock().unwrap().push((p, pr.base_offset, v));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // Kill mid-stream once the producers have had a few acknowledgments (how long that takes
    // depends on the machine's load, with an fsync before each one).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() <= 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    b.kill9();
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = p.join();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 10,
        "only {} acknowledged before the kill",
        acked.len()
    );
    let dir = b.dir.clone();
    let b2 = Broker::start_in(&dir, &[]);
    let mut c = b2.client();
    for p in 0..2 {
        let mut stored = Vec::new();
        let mut offset = 0;
        loop {
            let r = fetch(&mut c, "dur", p, offset, 0, 12);
            let vals = values(r.responses[0].partitions[0].records.as_ref().unwrap());
            if vals.is_empty() {
                break;
            }
            offset = vals.last().unwrap().0 + 1;
            stored.extend(vals);
        }
        let mine: Vec<&(i32, i64, String)> = acked.iter().filter(|a| a.0 == p).collect();
        for (_, off, v) in &mine {
            assert_eq!(
                stored.get(*off as usize).map(|s| &s.1),
                Some(v),
                "acknowledged {v} at {off} lost"
            );
        }
        for w in stored.windows(2) {
            assert_eq!(w[0].0 + 1, w[1].0, "offsets contiguous");
        }
    }
    drop(b);
}
