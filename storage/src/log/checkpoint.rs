//! The partition checkpoint: how far the log is known durable, and whether it was shut down cleanly.
//!
//! Written by atomic replace (`checkpoint.tmp`, fdatasync, rename, fsync dir), so a crash leaves
//! either the old or the new checkpoint, never a mix. A checkpoint with a bad CRC is treated as
//! absent (the log then recovers every segment, which is slow but safe).

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::io::IoBackend;

pub const FILE_NAME: &str = "checkpoint";

/// Byte layout (FORMAT.md §5), big-endian.
pub mod layout {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: Range<usize> = 4..6;
    pub const FLAGS: Range<usize> = 6..8;
    pub const RECOVERY_POINT: Range<usize> = 8..16;
    pub const LOG_END_OFFSET: Range<usize> = 16..24;
    pub const ACTIVE_SEGMENT_LEN: Range<usize> = 24..32;
    pub const CRC: Range<usize> = 32..36;
    pub const LEN: usize = 36;
    /// `b"STCP"`: STrata CheckPoint.
    pub const MAGIC_BYTES: [u8; 4] = *b"STCP";
    pub const VERSION_1: u16 = 1;
    /// Set only by a clean shutdown, cleared (durably) before the first write after open.
    pub const FLAG_CLEAN: u16 = 1;
}

/// Decoded checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log was closed cleanly: segments, indexes and `active_segment_len` are exact.
    pub clean: bool,
    /// Every segment whose base offset is below this was sealed, synced and indexed; recovery
    /// after a crash scans only segments at or above it.
    pub recovery_point: u64,
    /// The next offset at clean shutdown (meaningful only if `clean`).
    pub log_end_offset: u64,
    /// Length of the last segment at clean shutdown (meaningful only if `clean`).
    pub active_segment_len: u64,
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; layout::LEN] {
        let mut b = [0u8; layout::LEN];
        b[layout::MAGIC].copy_from_slice(&layout::MAGIC_BYTES);
        b[layout::VERSION].copy_from_slice(&layout::VERSION_1.to_be_bytes());
        let flags = if self.clean { layout::FLAG_CLEAN } else { 0 };
        b[layout::FLAGS].copy_from_slice(&flags.to_be_bytes());
        b[layout::RECOVERY_POINT].copy_from_slice(&self.recovery_point.to_be_bytes());
        b[layout::LOG_END_OFFSET].copy_from_slice(&self.log_end_offset.to_be_bytes());
        b[layout::ACTIVE_SEGMENT_LEN].copy_from_slice(&self.active_segment_len.to_be_bytes());
        let crc = crc32c::crc32c(&b[..layout::CRC.start]);
        b[layout::CRC].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes a checkpoint; the error says what is wrong.
    #[expect(
        clippy::indexing_slicing,
        reason = "`b` is a [u8; LEN] and every range is a constant inside LEN (tested by layout_tiles_36_bytes)"
    )]
    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        let b: &[u8; layout::LEN] = buf.try_into().map_err(|_| {
            format!(
                "checkpoint is {} bytes, expected {}",
                buf.len(),
                layout::LEN
            )
        })?;
        if b[layout::MAGIC] != layout::MAGIC_BYTES {
            return Err("bad magic".into());
        }
        let crc = u32::from_be_bytes([b[32], b[33], b[34], b[35]]);
        let got = crc32c::crc32c(&b[..layout::CRC.start]);
        if crc != got {
            return Err(format!(
                "CRC-32C mismatch: stored {crc:#010x}, computed {got:#010x}"
            ));
        }
        let version = u16::from_be_bytes([b[4], b[5]]);
        if version != layout::VERSION_1 {
            return Err(format!("unknown version {version}"));
        }
        let flags = u16::from_be_bytes([b[6], b[7]]);
        let u64_at = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[r]);
            u64::from_be_bytes(a)
        };
        Ok(Checkpoint {
            clean: flags & layout::FLAG_CLEAN != 0,
            recovery_point: u64_at(layout::RECOVERY_POINT),
            log_end_offset: u64_at(layout::LOG_END_OFFSET),
            active_segment_len: u64_at(layout::ACTIVE_SEGMENT_LEN),
        })
    }
}

/// Reads the checkpoint of `dir`. `Ok(None)` if there is none or it is damaged (logged).
pub fn read(dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::Error::io("read checkpoint", path, e)),
    };
    match Checkpoint::decode(&bytes) {
        Ok(c) => Ok(Some(c)),
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "ignoring damaged checkpoint; every segment will be recovered");
            Ok(None)
        }
    }
}

/// [`write`] without syncing the new bytes, for the clean close, whose data files are synced
/// before it: the file is overwritten in place ([`crate::io::overwrite_file_unsynced`]), and a
/// checkpoint a crash leaves torn fails its CRC and is ignored (the next open scans every
/// segment); whole, it is exactly what was written, or the one before, which the log's first
/// write since its open made unclean (the next open then recovers, losing nothing).
/// `dir_sync: true` fsyncs the directory after (the file's name, should this call have created
/// it); `false` leaves it to the caller, who syncs the whole file system once for thousands of
/// logs ([`IoBackend::sync_filesystem`], which also writes the new bytes).
pub fn write_unsynced(
    backend: &dyn IoBackend,
    dir: &Path,
    cp: &Checkpoint,
    dir_sync: bool,
) -> Result<()> {
    crate::io::overwrite_file_unsynced(backend, &dir.join(FILE_NAME), &cp.encode())?;
    if dir_sync {
        backend.sync_dir(dir).ctx("fsync dir", dir)?;
    }
    Ok(())
}

/// Writes `cp` durably by atomic replace.
pub fn write(backend: &dyn IoBackend, dir: &Path, cp: &Checkpoint) -> Result<()> {
    crate::io::write_file_atomic(backend, &dir.join(FILE_NAME), &cp.encode())?;
    backend.sync_dir(dir).ctx("fsync dir", dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_roundtrips_and_every_flipped_byte_is_refused() {
        let cp = Checkpoint {
            clean: true,
            recovery_point: 1234,
            log_end_offset: 5678,
            active_segment_len: 91011,
        };
        let b = cp.encode();
        assert_eq!(Checkpoint::decode(&b).unwrap(), cp);
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(Checkpoint::decode(&bad).is_err(), "byte {i}");
        }
        assert!(Checkpoint::decode(&b[..35]).is_err());
    }

    #[test]
    fn an_unclean_checkpoint_decodes_as_unclean() {
        let cp = Checkpoint {
            clean: false,
            recovery_point: 7,
            log_end_offset: 9,
            active_segment_len: 11,
        };
        assert_eq!(Checkpoint::decode(&cp.encode()).unwrap(), cp);
    }

    #[test]
    fn layout_tiles_36_bytes() {
        use layout::*;
        let mut at = 0;
        for r in [
            MAGIC,
            VERSION,
            FLAGS,
            RECOVERY_POINT,
            LOG_END_OFFSET,
            ACTIVE_SEGMENT_LEN,
            CRC,
        ] {
            assert_eq!(r.start, at);
            at = r.end;
        }
        assert_eq!(at, LEN);
    }
}
