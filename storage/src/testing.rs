//! Support for the workspace's test suites: skips that show, and that fail where they must not
//! happen.
//!
//! A test that cannot run on this machine (no io_uring, a file system that keeps every page
//! cached, one that cannot preallocate) calls [`skip`] and returns. The skip is recorded in the
//! file `$STRATA_SKIP_LOG` names, which `scripts/test-all` lists in its summary (cargo's own
//! summary would count it as a pass), and when `$STRATA_REQUIRE` names the feature — test-all
//! sets it to what it found this machine supports — the skip fails the test instead, so a
//! suite that should have run cannot silently pass.

use std::io::Write;

/// Whether `$STRATA_REQUIRE` (comma-separated) names `feature`.
pub fn required(feature: &str) -> bool {
    std::env::var("STRATA_REQUIRE").is_ok_and(|v| v.split(',').any(|f| f.trim() == feature))
}

/// Records that the calling test skips because `feature` is unavailable (`reason` says why),
/// or panics if `$STRATA_REQUIRE` says this machine has it. The caller returns after it.
///
/// # Panics
/// When the feature is required: that is the point.
pub fn skip(feature: &str, reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed)")
        .to_string();
    assert!(
        !required(feature),
        "{test}: {feature} is required on this machine (STRATA_REQUIRE) but is unavailable: {reason}"
    );
    println!("skipped ({feature}): {reason}");
    if let Ok(path) = std::env::var("STRATA_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        // One write per line, so concurrent tests do not interleave.
        let _ = f.write_all(format!("{feature}\t{test}\t{reason}\n").as_bytes());
    }
}

/// How many segment files (`<20 digits>.log`, FORMAT.md §1) the partition directory `dir`
/// holds, for tests that check what a roll, retention or recovery left.
///
/// # Panics
/// If `dir` cannot be read (a broken test setup).
pub fn segment_files(dir: &std::path::Path) -> usize {
    #[allow(clippy::expect_used)]
    std::fs::read_dir(dir)
        .expect("reading a partition directory")
        .filter_map(|e| e.ok())
        .filter(|e| {
            matches!(
                crate::log::name::parse_file_name(&e.file_name().to_string_lossy()),
                Some((_, crate::log::name::FileKind::Log))
            )
        })
        .count()
}
