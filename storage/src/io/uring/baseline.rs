//! [`direct_baseline`]: what the raw disk does, for `strata bench --baseline`.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use io_uring::{opcode, types};

use super::ring::Ring;
use super::{DIRECT_ALIGN, MAX_SQE_BYTES, check_opcodes};
use crate::io::aligned::AlignedBuf;

/// What the raw disk did in [`direct_baseline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectBaseline {
    /// Time to write every block (O_DIRECT, queue depth 1) plus the final fdatasync.
    pub write: Duration,
    /// Time to read every block back (O_DIRECT, queue depth 1).
    pub read: Duration,
    /// Bytes written and then read (`total_bytes` rounded up to whole blocks).
    pub bytes: u64,
}

/// splitmix64: a tiny deterministic generator, enough to fill a buffer with incompressible bytes.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A cheap order-sensitive hash (FNV-1a) to check the baseline read back what it wrote.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Removes the baseline file however `direct_baseline` ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs one read or write of `len` bytes at `offset` to completion at queue depth 1.
///
/// # Safety
/// `ptr..ptr+len` must be valid for the operation (readable for a write, writable and otherwise
/// unaccessed for a read) until this function returns.
unsafe fn one_io(
    ring: &mut Ring,
    fd: types::Fd,
    read: bool,
    ptr: *mut u8,
    len: u32,
    offset: u64,
) -> io::Result<()> {
    let entry = if read {
        opcode::Read::new(fd, ptr, len).offset(offset).build()
    } else {
        opcode::Write::new(fd, ptr.cast_const(), len)
            .offset(offset)
            .build()
    };
    let mut results = [None];
    // SAFETY: forwarded from this function's contract; `run_round` returns only when the kernel
    // is done with the buffer.
    unsafe { ring.run_round(&mut [entry], &mut results) }?;
    match results {
        [Some(n)] if n >= 0 && n as u32 == len => Ok(()),
        [Some(n)] if n < 0 => Err(io::Error::from_raw_os_error(-n)),
        [other] => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "short O_DIRECT {} at {offset}: {other:?} of {len} bytes",
                if read { "read" } else { "write" }
            ),
        )),
    }
}

/// Measures what the raw disk under `dir` does, for `strata bench --baseline`: writes `total_bytes`
/// (rounded up to whole blocks) sequentially with O_DIRECT in `block_size` blocks through io_uring
/// at queue depth 1, then fdatasync (both timed as `write`), then reads the file back the same way
/// (`read`), then removes it. Comparable to
/// `fio --ioengine=io_uring --direct=1 --bs=<block_size> --iodepth=1 --rw=write` then `--rw=read`.
///
/// `block_size` must be a non-zero multiple of [`DIRECT_ALIGN`]. Fails with a message saying so if
/// the file system refuses O_DIRECT (tmpfs, some overlay set-ups).
pub fn direct_baseline(
    dir: &Path,
    total_bytes: u64,
    block_size: usize,
) -> io::Result<DirectBaseline> {
    if block_size == 0 || !block_size.is_multiple_of(DIRECT_ALIGN) || block_size > MAX_SQE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "baseline block size {block_size} must be a non-zero multiple of {DIRECT_ALIGN} up to {MAX_SQE_BYTES}"
            ),
        ));
    }
    let len = u32::try_from(block_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "block size too large"))?;
    let blocks = total_bytes.div_ceil(block_size as u64);
    let bytes = blocks
        .checked_mul(block_size as u64)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "baseline size overflows"))?;

    let mut ring = Ring::new(4)?;
    check_opcodes(
        &ring.ring,
        &[
            ("IORING_OP_WRITE", opcode::Write::CODE),
            ("IORING_OP_READ", opcode::Read::CODE),
            ("IORING_OP_FSYNC", opcode::Fsync::CODE),
        ],
    )?;

    let mut buf = AlignedBuf::new(block_size, DIRECT_ALIGN)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut seed = nanos as u64 ^ u64::from(std::process::id());
    for chunk in buf.as_mut_slice().chunks_mut(8) {
        let word = splitmix64(&mut seed).to_le_bytes();
        for (dst, src) in chunk.iter_mut().zip(word) {
            *dst = src | 1; // never zero: nothing for a file system to elide
        }
    }

    let written_fingerprint = fingerprint(buf.as_slice());

    let path = dir.join(format!(
        ".strata-direct-baseline-{}-{nanos}.tmp",
        std::process::id()
    ));
    // Create it plainly first, so the guard only ever removes a file this call created.
    drop(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?,
    );
    let _remove = RemoveOnDrop(path.clone());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the file system of {} refuses O_DIRECT ({e}); run the baseline on a directory of a real disk, not tmpfs",
                        dir.display()
                    ),
                )
            } else {
                e
            }
        })?;
    let fd = types::Fd(file.as_raw_fd());

    let start = Instant::now();
    for block in 0..blocks {
        let offset = block * block_size as u64;
        // SAFETY: `buf` is owned here, `block_size` long and not otherwise accessed during the
        // call; `one_io` returns only when the kernel is done with it.
        unsafe {
            one_io(
                &mut ring,
                fd,
                false,
                buf.as_mut_slice().as_mut_ptr(),
                len,
                offset,
            )
        }
        .map_err(|e| io::Error::new(e.kind(), format!("O_DIRECT write at {offset}: {e}")))?;
    }
    let mut sync = [opcode::Fsync::new(fd)
        .flags(types::FsyncFlags::DATASYNC)
        .build()];
    let mut results = [None];
    // SAFETY: an fsync references no memory.
    unsafe { ring.run_round(&mut sync, &mut results) }?;
    if let [Some(r)] = results
        && r < 0
    {
        return Err(io::Error::from_raw_os_error(-r));
    }
    let write = start.elapsed();

    let start = Instant::now();
    for block in 0..blocks {
        let offset = block * block_size as u64;
        // SAFETY: as for the writes; the kernel writes into `buf`, which nothing else touches
        // until `one_io` returns.
        unsafe {
            one_io(
                &mut ring,
                fd,
                true,
                buf.as_mut_slice().as_mut_ptr(),
                len,
                offset,
            )
        }
        .map_err(|e| io::Error::new(e.kind(), format!("O_DIRECT read at {offset}: {e}")))?;
    }
    let read = start.elapsed();
    // Every block holds the same bytes: the last one read must match what was written.
    if blocks > 0 && fingerprint(buf.as_slice()) != written_fingerprint {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "O_DIRECT read-back differs from what was written",
        ));
    }
    drop(file);
    Ok(DirectBaseline { write, read, bytes })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::io::uring::UringBackend;
    fn uring() -> Option<UringBackend> {
        match UringBackend::probe() {
            Ok(b) => Some(b),
            Err(e) => {
                crate::testing::skip("io_uring", &e.to_string());
                None
            }
        }
    }

    /// A directory on a real disk: /tmp if it takes O_DIRECT, else under the working directory.
    fn direct_dir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let probe = tmp.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let ok = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok();
        std::fs::remove_file(&probe).unwrap();
        if ok {
            tmp
        } else {
            tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap()
        }
    }

    #[test]
    fn direct_baseline_writes_and_reads_then_removes_its_file() {
        let Some(_backend) = uring() else { return };
        let dir = direct_dir();
        match direct_baseline(dir.path(), 1 << 20, 64 << 10) {
            Ok(b) => {
                assert_eq!(b.bytes, 1 << 20);
                assert!(b.write > Duration::ZERO && b.read > Duration::ZERO);
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                crate::testing::skip("direct", &e.to_string());
            }
            Err(e) => panic!("baseline failed: {e}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn direct_baseline_rounds_up_to_whole_blocks_and_rejects_bad_sizes() {
        let Some(_backend) = uring() else { return };
        let dir = direct_dir();
        if let Ok(b) = direct_baseline(dir.path(), 5000, 4096) {
            assert_eq!(b.bytes, 8192);
        }
        let err = direct_baseline(dir.path(), 1 << 20, 1000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = direct_baseline(dir.path(), 1 << 20, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
