//! `strata dump` of the clean golden fixture, byte for byte (regenerated with the verify
//! fixtures, see tests/fixtures/verify/README.md), and of a damaged one.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "verify_common/mod.rs"]
mod common;

use common::*;

#[test]
fn given_the_clean_fixture_when_dumped_deep_then_output_matches_the_golden_file() {
    let o = strata(&["dump", "--deep", "clean-0"], &fixtures());
    assert_eq!(o.status.code(), Some(0));
    let expected = std::fs::read_to_string(fixtures().join("clean.dump.txt")).unwrap();
    assert_eq!(stdout(&o), expected);
}

#[test]
fn given_the_clean_fixture_indexes_when_dumped_then_every_entry_is_valid() {
    let o = strata(
        &[
            "dump",
            "clean-0/00000000000000000000.index",
            "clean-0/00000000000000000000.timeindex",
        ],
        &fixtures(),
    );
    assert_eq!(o.status.code(), Some(0));
    let expected = std::fs::read_to_string(fixtures().join("clean.dump-index.txt")).unwrap();
    assert_eq!(stdout(&o), expected);
}

#[test]
fn given_a_flipped_crc_when_dumped_then_good_batches_then_a_problem_and_exit_1() {
    let o = strata(
        &["dump", "flipped-crc-0/00000000000000000000.log"],
        &fixtures(),
    );
    assert_eq!(o.status.code(), Some(1));
    let s = stdout(&o);
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[1].starts_with("baseOffset: 0 ") && lines[1].contains("crc: valid"),
        "{s}"
    );
    assert!(
        lines[2].starts_with("baseOffset: 3 ") && lines[2].contains("crc: invalid"),
        "{s}"
    );
    assert!(
        lines[3].starts_with(
            "problem: flipped-crc-0/00000000000000000000.log position: 228 reason: CRC-32C mismatch"
        ),
        "{s}"
    );
    assert!(lines[3].ends_with("undecoded: 744 bytes"), "{s}");
    assert!(lines[4].ends_with("problems: 1"), "{s}");
}

#[test]
fn given_a_print_data_dump_then_keys_values_and_headers_are_printed() {
    let o = strata(
        &["dump", "--print-data", "--max-batches", "1", "clean-0"],
        &fixtures(),
    );
    let s = stdout(&o);
    assert!(
        s.contains("headers: [trace=t0] key: key-0 value: value-0-"),
        "{s}"
    );
}

#[test]
fn given_a_missing_path_then_exit_2() {
    let o = strata(&["dump", "no-such-dir"], &fixtures());
    assert_eq!(o.status.code(), Some(2));
    let o = strata(&["verify", "no-such-dir"], &fixtures());
    assert_eq!(o.status.code(), Some(2));
    let o = strata(&["verify"], &fixtures());
    assert_eq!(o.status.code(), Some(2));
}
