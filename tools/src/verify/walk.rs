//! Streaming a segment file through the engine's [`BatchScanner`] in constant memory.
//!
//! The file is read with positional reads into one reusable buffer (no `mmap`: this crate has no
//! `unsafe`, and a file another process truncates cannot fault a read). The scanner runs over
//! whatever the buffer holds; a batch cut by the end of the *buffer* (not of the file) is read
//! again after the buffer is refilled, so the scanner only ever reports damage that is really on
//! disk. The buffer starts at 8 MiB and grows to hold the largest batch actually met (never
//! beyond what the file still holds), so any batch the engine accepted fits, and a damaged
//! length field costs nothing.

use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;

use strata_storage::batch::BatchError;
use strata_storage::batch::header::HEADER_LEN;
use strata_storage::log::scan::{BatchScanner, ScanProblem, ScanStop, ScannedBatch};

/// Smallest read buffer: large reads keep the per-read cost far below the CRC's.
const MIN_BUFFER: usize = 8 << 20;

/// How to walk a segment.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    /// Bound on a batch's size (`max.message.bytes`).
    pub max_batch_bytes: usize,
    /// Check each batch's CRC-32C (otherwise lengths and magic only: a header walk).
    pub verify_crc: bool,
    /// Require the first batch to start at this offset and each later one to continue the last.
    pub expect_offset: Option<u64>,
    /// Byte position to start at.
    pub start: u64,
}

/// Where a walk ended.
#[derive(Debug, Clone)]
pub struct WalkEnd {
    /// Position after the last batch handed to the callback.
    pub end: u64,
    /// Why the walk stopped before the end of the file (positions are absolute).
    pub stop: Option<ScanStop>,
}

/// A reusable read buffer: allocate once per run, not per segment.
#[derive(Debug, Default)]
pub struct Buffer(Vec<u8>);

impl Buffer {
    fn ensure(&mut self, want: usize) -> &mut Vec<u8> {
        let want = MIN_BUFFER.max(want);
        if self.0.len() < want {
            self.0.resize(want, 0);
        }
        &mut self.0
    }
}

/// Walks the batches of `file` from `opts.start`, calling `on_batch` with each good batch (its
/// absolute position and its bytes) until the end of the file, the first problem, or `Break`.
pub fn walk(
    file: &File,
    opts: WalkOptions,
    buffer: &mut Buffer,
    mut on_batch: impl FnMut(&ScannedBatch, &[u8]) -> ControlFlow<()>,
) -> std::io::Result<WalkEnd> {
    let file_len = file.metadata()?.len();
    let mut buf = std::mem::take(buffer.ensure(0));
    let res = walk_in(file, file_len, opts, &mut buf, &mut on_batch);
    buffer.0 = buf;
    res
}

fn walk_in(
    file: &File,
    file_len: u64,
    opts: WalkOptions,
    buf: &mut Vec<u8>,
    on_batch: &mut impl FnMut(&ScannedBatch, &[u8]) -> ControlFlow<()>,
) -> std::io::Result<WalkEnd> {
    let mut cap = buf.len();
    let mut file_pos = opts.start;
    let mut filled = 0usize;
    let mut eof = false;
    let mut expect = opts.expect_offset;
    loop {
        while filled < cap && !eof {
            let dst = buf.get_mut(filled..).unwrap_or_default();
            let n = match file.read_at(dst, file_pos + filled as u64) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                eof = true;
            }
            filled += n;
        }
        let data = buf.get(..filled).unwrap_or_default();
        let mut scanner = BatchScanner::new(data, opts.max_batch_bytes, opts.verify_crc);
        if let Some(e) = expect {
            scanner = scanner.expecting_offset(e);
        }
        for b in scanner.by_ref() {
            let bytes = data
                .get(b.position as usize..b.end() as usize)
                .unwrap_or_default();
            let abs = ScannedBatch {
                position: file_pos + b.position,
                header: b.header,
            };
            if expect.is_some() {
                expect = Some(b.header.next_offset() as u64);
            }
            if on_batch(&abs, bytes).is_break() {
                return Ok(WalkEnd {
                    end: abs.end(),
                    stop: None,
                });
            }
        }
        let consumed = scanner.position() as usize;
        match scanner.stop() {
            None if eof => {
                return Ok(WalkEnd {
                    end: file_pos + consumed as u64,
                    stop: None,
                });
            }
            None => {}
            Some(stop) => {
                let left = filled.saturating_sub(stop.position as usize);
                let needed = match stop.problem {
                    ScanProblem::Batch(BatchError::Truncated { needed, .. }) => Some(needed),
                    _ => None,
                };
                let cut_by_buffer = needed.is_some() || left < HEADER_LEN;
                // One batch larger than the whole buffer: grow it, if the file holds the batch
                // (a length running past the end of the file is damage, reported below).
                if !eof
                    && consumed == 0
                    && filled == cap
                    && let Some(needed) = needed
                    && needed > cap
                    && file_pos + needed as u64 <= file_len
                {
                    buf.resize(needed, 0);
                    cap = needed;
                    continue;
                }
                if eof || !cut_by_buffer || (consumed == 0 && filled == cap) {
                    return Ok(WalkEnd {
                        end: file_pos + consumed as u64,
                        stop: Some(ScanStop {
                            position: file_pos + stop.position,
                            problem: stop.problem.clone(),
                        }),
                    });
                }
            }
        }
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
        file_pos += consumed as u64;
    }
}

/// Whether `log`'s bytes from `position` to its end (`len`) are a direct write's zero padding
/// ([`strata_storage::log::scan::is_block_padding`]); `false` when they cannot be read.
pub fn is_padding(log: &std::path::Path, position: u64, len: u64) -> bool {
    let Some(n) = len
        .checked_sub(position)
        .filter(|n| *n < strata_storage::io::DIRECT_ALIGN as u64)
    else {
        return false;
    };
    let mut tail = vec![0u8; n as usize];
    File::open(log)
        .and_then(|f| f.read_exact_at(&mut tail, position))
        .is_ok()
        && strata_storage::log::scan::is_block_padding(&tail, len)
}
