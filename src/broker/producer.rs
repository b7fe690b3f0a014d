//! Idempotent producers, the broker's part: producer ids unique across restarts. The sequence
//! rules and the per-partition snapshot file are the engine's
//! ([`strata_storage::log::producer_state`]); the broker checks and records batches with them and
//! decides when the snapshot is written (at a clean close unless current, and after every
//! `segment.bytes` appended) and read (at start, then brought up to date from the batch headers
//! past it; without a usable snapshot, from the headers of the last segment only).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use parking_lot::Mutex;

pub use strata_storage::log::producer_state::{
    ProducerStates, SNAPSHOT_FILE, SeqCheck, read as read_snapshot,
};

/// Hands out producer ids that are unique across restarts: ids are reserved in blocks, and the
/// end of the reserved block is persisted (atomic replace) before any id of it is handed out.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    state: Mutex<(i64, i64)>,
    backend: std::sync::Arc<dyn strata_storage::io::IoBackend>,
}

const BLOCK: i64 = 1000;

impl ProducerIdAllocator {
    pub fn open(
        data_dir: &Path,
        backend: std::sync::Arc<dyn strata_storage::io::IoBackend>,
    ) -> Result<Self> {
        let path = data_dir.join("producer-ids");
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse::<i64>()
                .with_context(|| format!("{}: not a number", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(ProducerIdAllocator {
            path,
            state: Mutex::new((next, next)),
            backend,
        })
    }

    /// The next unused producer id.
    pub fn allocate(&self) -> Result<i64> {
        let mut s = self.state.lock();
        if s.0 >= s.1 {
            let end = s.1 + BLOCK;
            crate::broker::write_atomic(
                self.backend.as_ref(),
                &self.path,
                end.to_string().as_bytes(),
            )?;
            s.1 = end;
        }
        let id = s.0;
        s.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIdAllocator::open(
            dir.path(),
            std::sync::Arc::new(strata_storage::io::plain::PlainBackend::new()),
        )
        .unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(first, [0, 1, 2], "distinct, in order");
        drop(a);
        let b = ProducerIdAllocator::open(
            dir.path(),
            std::sync::Arc::new(strata_storage::io::plain::PlainBackend::new()),
        )
        .unwrap();
        let next = b.allocate().unwrap();
        assert!(first.iter().all(|id| *id < next), "{first:?} then {next}");
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_fresh_start() {
        // Starting again at 0 would hand out ids already given.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("producer-ids")).unwrap();
        let opened = ProducerIdAllocator::open(
            dir.path(),
            std::sync::Arc::new(strata_storage::io::plain::PlainBackend::new()),
        );
        assert!(opened.is_err());
    }
}
