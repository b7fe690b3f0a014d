//! File and directory names: `{base_offset:020}.log|.index|.timeindex` inside `<topic>-<partition>/`.
//!
//! Zero-padded to 20 digits (the width of `u64::MAX`) so that names sort by base offset.

use std::path::{Path, PathBuf};

/// Digits in a segment file name: enough for any u64.
pub const OFFSET_DIGITS: usize = 20;
pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Suffix of a file being written for an atomic replace; leftovers are removed on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// What kind of segment file a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Log,
    Index,
    TimeIndex,
}

impl FileKind {
    pub fn suffix(self) -> &'static str {
        match self {
            FileKind::Log => LOG_SUFFIX,
            FileKind::Index => INDEX_SUFFIX,
            FileKind::TimeIndex => TIME_INDEX_SUFFIX,
        }
    }
}

/// `00000000000000001234.log` for base offset 1234.
pub fn file_name(base_offset: u64, kind: FileKind) -> String {
    format!(
        "{base_offset:0width$}{}",
        kind.suffix(),
        width = OFFSET_DIGITS
    )
}

/// The path of a segment file inside a partition directory.
pub fn segment_path(dir: &Path, base_offset: u64, kind: FileKind) -> PathBuf {
    dir.join(file_name(base_offset, kind))
}

/// Parses a segment file name; `None` for anything that is not exactly 20 digits and a known suffix.
pub fn parse_file_name(name: &str) -> Option<(u64, FileKind)> {
    let (digits, kind) = [FileKind::Log, FileKind::Index, FileKind::TimeIndex]
        .into_iter()
        .find_map(|k| name.strip_suffix(k.suffix()).map(|d| (d, k)))?;
    if digits.len() != OFFSET_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|o| (o, kind))
}

/// `<topic>-<partition>`.
pub fn partition_dir_name(topic: &str, partition: u32) -> String {
    format!("{topic}-{partition}")
}

/// Splits `<topic>-<partition>` at the last `-` (topics may contain dashes).
pub fn parse_partition_dir_name(name: &str) -> Option<(&str, u32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic, partition.parse().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_sort_by_offset() {
        for o in [0, 1, 99, 1234567890, u64::MAX] {
            for k in [FileKind::Log, FileKind::Index, FileKind::TimeIndex] {
                let n = file_name(o, k);
                assert_eq!(parse_file_name(&n), Some((o, k)));
            }
        }
        assert_eq!(file_name(1234, FileKind::Log), "00000000000000001234.log");
        let mut names: Vec<String> = [10u64, 9, 100, 2]
            .iter()
            .map(|o| file_name(*o, FileKind::Log))
            .collect();
        names.sort();
        let parsed: Vec<u64> = names
            .iter()
            .map(|n| parse_file_name(n).unwrap().0)
            .collect();
        assert_eq!(parsed, vec![2, 9, 10, 100]);
    }

    #[test]
    fn malformed_names_are_not_segments() {
        for bad in [
            "1234.log",
            "0000000000000000123a.log",
            "00000000000000001234.log.tmp",
            "00000000000000001234.idx",
            "99999999999999999999.log", // > u64::MAX
            "checkpoint",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn partition_dirs_split_at_the_last_dash() {
        assert_eq!(parse_partition_dir_name("orders-3"), Some(("orders", 3)));
        assert_eq!(
            parse_partition_dir_name("my-topic-12"),
            Some(("my-topic", 12))
        );
        assert_eq!(partition_dir_name("my-topic", 12), "my-topic-12");
        for bad in ["orders", "-3", "orders-", "orders-x"] {
            assert_eq!(parse_partition_dir_name(bad), None, "{bad}");
        }
    }
}
