//! Scenario: a data directory written by the running broker (several topics, codecs, producers,
//! segment rolls, a crash) verifies clean and dumps every batch.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;

use common::*;
use strata_storage::batch::{BatchBuilder, Compression, NewRecord};

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn given_a_data_dir_written_by_the_broker_when_verified_then_it_is_clean_after_shutdown_and_after_a_crash()
 {
    let mut b = Broker::start(&["--set", "log.segment.bytes=8192"]);
    let mut c = b.client();
    create_topic(&mut c, "plain", 2, &[]);
    create_topic(&mut c, "squeezed", 1, &[("compression.type", "zstd")]);
    for i in 0..60 {
        produce(
            &mut c,
            "plain",
            i % 2,
            batch(&[&format!("value {i}"), "x"], None),
            -1,
        )
        .unwrap();
        let mut bb = BatchBuilder::new(Compression::Gzip);
        bb.push(
            NewRecord::new(format!("log line {i} ").repeat(20).into_bytes())
                .with_timestamp(i64::from(i)),
        )
        .unwrap();
        produce(
            &mut c,
            "squeezed",
            0,
            bytes::Bytes::from(bb.build().unwrap()),
            1,
        )
        .unwrap();
    }
    drop(c);
    assert_eq!(b.stop(), 0);
    let dir = b.dir.to_str().unwrap().to_string();
    let out = strata(&["verify", &dir]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let dump = strata(&["dump", &format!("{dir}/squeezed-0"), "--json"]);
    assert_eq!(dump.status.code(), Some(0));
    let text = String::from_utf8_lossy(&dump.stdout);
    let codecs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"type\":\"batch\""))
        .map(|l| {
            if l.contains("\"codec\":\"zstd\"") {
                "zstd"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(codecs.len(), 60);
    assert!(
        codecs.iter().all(|c| *c == "zstd"),
        "topic compression.type=zstd re-encoded every batch"
    );

    // Crash the broker mid-life: the directory still verifies (no torn batch can exist after
    // a process kill; the engine's own recovery on restart is what verify checks against).
    let mut b = Broker::start_in(&b.dir.clone(), &["--set", "log.segment.bytes=8192"]);
    let mut c = b.client();
    for i in 0..20 {
        produce(
            &mut c,
            "plain",
            0,
            batch(&[&format!("after {i}")], None),
            -1,
        )
        .unwrap();
    }
    b.kill9();
    let out = strata(&["verify", &dir]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
