//! The log start offset a partition was moved to (Kafka's DeleteRecords), and its file,
//! `log-start-offset` (FORMAT.md §12).
//!
//! Kafka keeps a log start offset apart from the first segment's base: DeleteRecords moves it
//! to any offset up to the high watermark, reads below it are out of range at once, and the
//! segments wholly below it are deleted by the next retention pass. Kafka checkpoints it for
//! all partitions of a log directory in `log-start-offset-checkpoint`, asynchronously; Strata
//! keeps one small file per partition, replaced atomically and synced before the move is
//! acknowledged, so a record deleted stays deleted after a crash. The file's text:
//! ```text
//! 0            version
//! 1042         the log start offset
//! ```
//! On open it is clamped to the log: never below the first segment's base (retention went
//! further), never past the log end (a crash cut the log shorter).

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::io::{IoBackend, read_small_file, write_file_atomic};

/// The file's name, in the partition directory.
pub const FILE_NAME: &str = "log-start-offset";

/// Largest file read; a longer one is damage.
const MAX_FILE_BYTES: u64 = 64;

/// The file's bytes for `offset`.
pub fn encode(offset: u64) -> Vec<u8> {
    format!("0\n{offset}\n").into_bytes()
}

/// Parses the file; the error says what is wrong.
pub fn decode(bytes: &[u8]) -> std::result::Result<u64, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some("0") => {}
        Some(v) => return Err(format!("unknown version {v:?}")),
        None => return Err("empty file".into()),
    }
    let offset = lines
        .next()
        .map(str::trim)
        .ok_or("missing offset")?
        .parse::<u64>()
        .map_err(|e| format!("bad offset: {e}"))?;
    if offset > i64::MAX as u64 {
        return Err(format!("offset {offset} is past Kafka's largest"));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("text after the offset".into());
    }
    Ok(offset)
}

/// Reads `dir`'s file: `Ok(Ok(None))` if there is none, the inner error if it is damaged.
pub fn read(dir: &Path) -> Result<std::result::Result<Option<u64>, String>> {
    Ok(
        match read_small_file(&dir.join(FILE_NAME), MAX_FILE_BYTES)? {
            None => Ok(None),
            Some(bytes) => bytes.and_then(|b| decode(&b)).map(Some),
        },
    )
}

/// Replaces `dir`'s file with `offset`, durably.
pub fn write(backend: &dyn IoBackend, dir: &Path, offset: u64) -> Result<()> {
    write_file_atomic(backend, &dir.join(FILE_NAME), &encode(offset))?;
    backend.sync_dir(dir).ctx("fsync dir", dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_one_offset() {
        for o in [0, 1, 1042, i64::MAX as u64] {
            assert_eq!(decode(&encode(o)), Ok(o));
        }
        for bad in [
            &b""[..],
            b"1\n5\n",
            b"0\n",
            b"0\nx\n",
            b"0\n-1\n",
            b"0\n5\n6\n",
            b"0\n18446744073709551615\n",
            b"\xff\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
