//! Helpers shared by the `bench_*` end-to-end tests: running the real `strata` binary and
//! checking the JSON report of `strata bench`.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::{Command, Output};

use serde_json::Value;

pub fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("the strata binary runs")
}

/// Runs `strata ARGS...`, which must exit with `code` (2: clap refused the arguments; 1: the
/// run refused or failed), print nothing on stdout and name every one of `needles` on stderr.
pub fn assert_fails(args: &[&str], code: i32, needles: &[&str]) {
    let out = strata(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "strata {args:?}: {err}");
    assert!(out.stdout.is_empty(), "strata {args:?} printed on stdout");
    for needle in needles {
        assert!(
            err.contains(needle),
            "strata {args:?}: {needle:?} not in {err}"
        );
    }
}

/// `strata bench --mode MODE --json EXTRA...`, which must succeed and print one JSON object.
pub fn bench_json(mode: &str, extra: &[&str]) -> Value {
    let mut args = vec!["bench", "--mode", mode, "--json"];
    args.extend_from_slice(extra);
    let out = strata(&args);
    assert!(
        out.status.success(),
        "strata {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn assert_phase(v: &Value, phase: &str, messages: u64, bytes: u64) {
    let p = &v[phase];
    assert!(p.is_object(), "phase {phase} missing: {v}");
    assert_eq!(p["messages"].as_u64(), Some(messages), "{phase}.messages");
    assert_eq!(p["bytes"].as_u64(), Some(bytes), "{phase}.bytes");
    for k in ["mb_per_s", "msgs_per_s"] {
        let x = p[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{phase}.{k} missing"));
        assert!(x > 0.0, "{phase}.{k} = {x}");
    }
    let l = &p["latency_us"];
    let mut last = 0.0;
    for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        let x = l[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{phase}.latency_us.{k} missing"));
        assert!(x >= last, "{phase}.latency_us.{k} = {x} < {last}");
        last = x;
    }
    assert!(last > 0.0, "{phase}: max latency must be positive");
}

/// [`assert_phase`] for each of produce, consume and e2e.
pub fn assert_every_phase(v: &Value, messages: u64, bytes: u64) {
    for phase in ["produce", "consume", "e2e"] {
        assert_phase(v, phase, messages, bytes);
    }
}
