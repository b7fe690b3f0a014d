//! Checked files (FORMAT.md §13): a magic, a CRC-32C and a length before the body. The
//! metadata quorum keeps its vote and snapshots in them; `strata verify` checks them with the
//! same [`decode`].

/// The metadata quorum's directory under a data directory (FORMAT.md §13).
pub const CLUSTER_DIR: &str = "cluster";
/// `cluster/raft-state`: the Raft vote, committed and purged log ids.
pub const RAFT_STATE_FILE: &str = "raft-state";
pub const RAFT_STATE_MAGIC: &[u8; 4] = b"SRST";
/// `cluster/metadata-snapshot`: the last snapshot of the metadata image.
pub const SNAPSHOT_FILE: &str = "metadata-snapshot";
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"SMSN";

/// Header: magic (4), CRC-32C of the body (u32 BE), body length (u32 BE).
pub const HEADER: usize = 12;

/// Why bytes are not a checked file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckedError {
    #[error("{0} bytes: shorter than the 12-byte header")]
    Short(usize),
    #[error("magic {got:?}, expected {want:?}")]
    Magic { got: Vec<u8>, want: [u8; 4] },
    #[error("body of {got} bytes, the header says {want}")]
    Length { got: usize, want: usize },
    #[error("CRC-32C {got:#010x}, the header says {want:#010x}")]
    Crc { got: u32, want: u32 },
    #[error("body over 4 GiB")]
    TooLarge,
}

/// The bytes of a checked file holding `body`.
pub fn encode(magic: &[u8; 4], body: &[u8]) -> Result<Vec<u8>, CheckedError> {
    let len = u32::try_from(body.len()).map_err(|_| CheckedError::TooLarge)?;
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// The body of a checked file's bytes, or why they are not one.
pub fn decode<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<&'a [u8], CheckedError> {
    let (Some(m), Some(crc), Some(len), Some(body)) = (
        bytes.get(0..4),
        bytes.get(4..8),
        bytes.get(8..12),
        bytes.get(HEADER..),
    ) else {
        return Err(CheckedError::Short(bytes.len()));
    };
    if m != magic {
        return Err(CheckedError::Magic {
            got: m.to_vec(),
            want: *magic,
        });
    }
    let be = |b: &[u8]| <[u8; 4]>::try_from(b).map_or(0, u32::from_be_bytes);
    let want = be(len) as usize;
    if body.len() != want {
        return Err(CheckedError::Length {
            got: body.len(),
            want,
        });
    }
    let (got, want) = (crc32c::crc32c(body), be(crc));
    if got != want {
        return Err(CheckedError::Crc { got, want });
    }
    Ok(body)
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
