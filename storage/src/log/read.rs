//! Zero-copy read results.

use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;

/// Whole batches read from a segment: a view into the segment's shared mapping. Holding it keeps
/// the mapping alive, even if retention deletes the segment meanwhile. Cheap to clone, `Send`,
/// and `AsRef<[u8]>` so it can back a `bytes::Bytes` (`Bytes::from_owner`) without a copy.
#[derive(Clone)]
pub struct ReadSlice {
    map: Option<Arc<Mmap>>,
    start: usize,
    end: usize,
}

impl ReadSlice {
    pub(crate) fn new(map: Arc<Mmap>, start: usize, end: usize) -> Self {
        let end = end.min(map.len());
        let start = start.min(end);
        ReadSlice {
            map: Some(map),
            start,
            end,
        }
    }

    /// No batches (a read at the log end).
    pub fn empty() -> Self {
        ReadSlice {
            map: None,
            start: 0,
            end: 0,
        }
    }

    /// Position of the first byte within its segment file.
    pub fn file_position(&self) -> usize {
        self.start
    }
}

impl Deref for ReadSlice {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.map {
            Some(m) => m.get(self.start..self.end).unwrap_or(&[]),
            None => &[],
        }
    }
}

impl AsRef<[u8]> for ReadSlice {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for ReadSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSlice")
            .field("start", &self.start)
            .field("len", &(self.end - self.start))
            .finish()
    }
}
