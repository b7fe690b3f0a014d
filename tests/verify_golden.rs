//! Golden fixtures: partition directories with one known kind of damage each, and the exact
//! report `strata verify` must print for them (tests/fixtures/verify/README.md).
//!
//! Regenerate with `STRATA_REGEN_FIXTURES=1 cargo test --test verify_golden -- --ignored
//! regenerate`, then read the new `*.expected` files before committing them.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "verify_common/mod.rs"]
mod common;

use std::path::Path;

use common::*;
use strata_storage::batch::header;
use strata_storage::log::checkpoint::Checkpoint;
use strata_storage::log::index::{OffsetEntry, OffsetIndex};

const CASES: [&str; 6] = [
    "clean",
    "torn-tail",
    "flipped-crc",
    "wrong-name",
    "stale-index",
    "offset-gap",
];

fn seg(dir: &Path, base: u64, ext: &str) -> std::path::PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// A cleanly closed partition of three segments.
fn clean(dir: &Path) {
    let log = open(dir);
    write_three_segments(&log);
    log.close().unwrap();
}

/// Three segments, then a crash (no close): the last segment has no index files and the
/// checkpoint is not clean.
fn crashed(dir: &Path) {
    let log = open(dir);
    write_three_segments(&log);
    // The two rolled segments are sealed in the background: wait, so they have their index
    // files (the fixtures expect them) and only the last segment is left to recovery.
    log.wait_for_seals().unwrap();
    drop(log);
}

fn generate(case: &str, tmp: &Path, out: &Path) {
    let work = tmp.join(case);
    match case {
        "clean" => clean(&work),
        "torn-tail" => {
            crashed(&work);
            // The first 100 bytes of a batch: a write the crash cut short.
            let whole = std::fs::read(seg(&work, 0, "log")).unwrap();
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(seg(&work, 30, "log"))
                .unwrap();
            std::io::Write::write_all(&mut f, &whole[..100]).unwrap();
        }
        "flipped-crc" => {
            clean(&work);
            let p = seg(&work, 0, "log");
            let mut b = std::fs::read(&p).unwrap();
            let (pos, _) = batch_positions(&b)[1];
            b[pos + header::HEADER_LEN + 5] ^= 0x01;
            std::fs::write(&p, b).unwrap();
        }
        "wrong-name" => {
            clean(&work);
            std::fs::rename(seg(&work, 15, "log"), work.join("0000000000000000015.log")).unwrap();
        }
        "stale-index" => {
            clean(&work);
            let p = seg(&work, 0, "index");
            let len = std::fs::metadata(seg(&work, 0, "log")).unwrap().len();
            let old = OffsetIndex::decode(&std::fs::read(&p).unwrap(), 0, len).unwrap();
            assert!(
                !old.is_empty(),
                "the fixture needs an index entry to damage"
            );
            let mut idx = OffsetIndex::new();
            for (i, e) in old.entries().iter().enumerate() {
                let position = if i == 0 { e.position + 7 } else { e.position };
                idx.push(OffsetEntry { position, ..*e });
            }
            std::fs::write(&p, idx.encode(0)).unwrap();
        }
        "offset-gap" => {
            crashed(&work);
            // From the third batch of the last segment on, offsets jump by 5 (baseOffset lies
            // outside the CRC, so every batch stays valid on its own).
            let p = seg(&work, 30, "log");
            let mut b = std::fs::read(&p).unwrap();
            for (pos, _) in batch_positions(&b).into_iter().skip(2) {
                let h = header::BatchHeader::parse(&b[pos..]).unwrap();
                header::set_base_offset(&mut b[pos..], h.base_offset + 5);
            }
            std::fs::write(&p, b).unwrap();
        }
        other => panic!("unknown case {other}"),
    }
    let dest = out.join(format!("{case}-0"));
    let _ = std::fs::remove_dir_all(&dest);
    copy_partition(&work, &dest);
}

/// Rewrites every fixture directory and expected report. Run it only on purpose.
#[test]
#[ignore = "rewrites tests/fixtures/verify; run with STRATA_REGEN_FIXTURES=1"]
fn regenerate() {
    if std::env::var("STRATA_REGEN_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = fixtures();
    for case in CASES {
        generate(case, tmp.path(), &out);
        let dir = format!("{case}-0");
        let text = strata(&["verify", &dir], &out);
        std::fs::write(out.join(format!("{case}.verify.txt")), &text.stdout).unwrap();
        let json = strata(&["verify", "--json", &dir], &out);
        std::fs::write(out.join(format!("{case}.verify.jsonl")), &json.stdout).unwrap();
    }
    let dump = strata(&["dump", "--deep", "clean-0"], &out);
    std::fs::write(out.join("clean.dump.txt"), &dump.stdout).unwrap();
    let dump = strata(
        &[
            "dump",
            "clean-0/00000000000000000000.index",
            "clean-0/00000000000000000000.timeindex",
        ],
        &out,
    );
    std::fs::write(out.join("clean.dump-index.txt"), &dump.stdout).unwrap();
}

fn check_case(case: &str, exit: i32) {
    let out = fixtures();
    let dir = format!("{case}-0");
    let text = strata(&["verify", &dir], &out);
    let expected = std::fs::read_to_string(out.join(format!("{case}.verify.txt"))).unwrap();
    assert_eq!(stdout(&text), expected, "text report of {case}");
    assert_eq!(text.status.code(), Some(exit), "exit status of {case}");
    let json = strata(&["verify", "--json", &dir], &out);
    let expected = std::fs::read_to_string(out.join(format!("{case}.verify.jsonl"))).unwrap();
    assert_eq!(stdout(&json), expected, "JSON report of {case}");
    for line in stdout(&json).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["type"] == "problem" || v["type"] == "summary", "{line}");
    }
}

#[test]
fn given_a_clean_partition_when_verified_then_no_problem_and_exit_0() {
    check_case("clean", 0);
}

#[test]
fn given_a_torn_tail_when_verified_then_the_cut_batch_is_reported() {
    check_case("torn-tail", 1);
}

#[test]
fn given_a_flipped_byte_in_a_sealed_segment_when_verified_then_the_crc_mismatch_is_reported() {
    check_case("flipped-crc", 1);
}

#[test]
fn given_a_misnamed_segment_when_verified_then_the_name_orphans_and_gap_are_reported() {
    check_case("wrong-name", 1);
}

#[test]
fn given_a_stale_index_entry_when_verified_then_the_entry_is_reported() {
    check_case("stale-index", 1);
}

#[test]
fn given_a_gap_in_offsets_when_verified_then_the_gap_is_reported() {
    check_case("offset-gap", 1);
}

#[test]
fn given_the_fixtures_dir_as_a_data_dir_when_verified_then_every_partition_is_checked() {
    let o = strata(&["verify", "."], &fixtures());
    assert_eq!(o.status.code(), Some(1));
    let s = stdout(&o);
    assert!(s.contains("summary: partitions: 6 "), "{s}");
}

#[test]
fn the_checkpoint_of_the_clean_fixture_is_clean() {
    let b = std::fs::read(fixtures().join("clean-0/checkpoint")).unwrap();
    assert!(Checkpoint::decode(&b).unwrap().clean);
}
