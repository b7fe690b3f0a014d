//! Small files of the metadata quorum (`raft-state`, `metadata-snapshot`): a magic, a CRC-32C
//! and a length before the body, replaced atomically and synced (`storage/FORMAT.md` §13).
//! A file that does not check out is an error naming it, never a default.

use std::path::Path;

use anyhow::{Context, Result, bail};
use strata_storage::io::IoBackend;

/// Header: magic (4), CRC-32C of the body (u32 BE), body length (u32 BE).
const HEADER: usize = 12;

/// The bytes of a checked file holding `body`.
pub fn encode(magic: &[u8; 4], body: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(body.len()).context("checked file body over 4 GiB")?;
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// The body of a checked file's bytes, or why they are not one.
pub fn decode<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<&'a [u8]> {
    let (Some(m), Some(crc), Some(len), Some(body)) = (
        bytes.get(0..4),
        bytes.get(4..8),
        bytes.get(8..12),
        bytes.get(HEADER..),
    ) else {
        bail!(
            "{} bytes: shorter than its {HEADER}-byte header",
            bytes.len()
        );
    };
    if m != magic {
        bail!("magic {m:?}, expected {magic:?}");
    }
    let be = |b: &[u8]| <[u8; 4]>::try_from(b).map_or(0, u32::from_be_bytes);
    let want_len = be(len) as usize;
    if body.len() != want_len {
        bail!("body of {} bytes, the header says {want_len}", body.len());
    }
    let want_crc = be(crc);
    let got = crc32c::crc32c(body);
    if got != want_crc {
        bail!("CRC-32C {got:#010x}, the header says {want_crc:#010x}");
    }
    Ok(body)
}

/// Replaces `path` with a checked file of `body` durably (tmp, fdatasync, rename, directory
/// fsync) through `backend`.
pub fn write(backend: &dyn IoBackend, path: &Path, magic: &[u8; 4], body: &[u8]) -> Result<()> {
    crate::broker::write_atomic(backend, path, &encode(magic, body)?)
}

/// The body of the checked file at `path` (at most `max` bytes), `None` if there is none.
pub fn read(path: &Path, magic: &[u8; 4], max: u64) -> Result<Option<Vec<u8>>> {
    let Some(bytes) = strata_storage::io::read_small_file(path, max)
        .with_context(|| format!("reading {}", path.display()))?
    else {
        return Ok(None);
    };
    let bytes = bytes
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}", path.display()))?;
    let body = decode(magic, &bytes).with_context(|| format!("{} is damaged", path.display()))?;
    Ok(Some(body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let good = encode(b"TEST", b"hello").unwrap_or_default();
        assert_eq!(decode(b"TEST", &good).ok(), Some(&b"hello"[..]));
        for i in 0..good.len() {
            let mut bad = good.clone();
            if let Some(b) = bad.get_mut(i) {
                *b ^= 1;
            }
            assert!(
                decode(b"TEST", &bad).is_err(),
                "bit flip at byte {i} accepted"
            );
        }
        assert!(decode(b"TEST", good.get(..good.len() - 1).unwrap_or_default()).is_err());
        assert!(decode(b"TEST", &[]).is_err());
    }
}
