//! Small files of the metadata quorum (`raft-state`, `metadata-snapshot`): checked files
//! ([`strata_storage::checked`], `storage/FORMAT.md` §13), replaced atomically and synced. A
//! file that does not check out is an error naming it, never a default.

use std::path::Path;

use anyhow::{Context, Result};
use strata_storage::checked;
use strata_storage::io::IoBackend;

pub use strata_storage::checked::{RAFT_STATE_MAGIC, SNAPSHOT_MAGIC};

/// Replaces `path` with a checked file of `body` durably (tmp, fdatasync, rename, directory
/// fsync) through `backend`.
pub fn write(backend: &dyn IoBackend, path: &Path, magic: &[u8; 4], body: &[u8]) -> Result<()> {
    crate::broker::write_atomic(backend, path, &checked::encode(magic, body)?)
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
    let body =
        checked::decode(magic, &bytes).with_context(|| format!("{} is damaged", path.display()))?;
    Ok(Some(body.to_vec()))
}
