//! The plain-file backend: `pwritev` and `fdatasync`, for kernels without io_uring.
//!
//! Thread-safety: every call takes `&self` and uses positional I/O, so concurrent callers never
//! share a cursor. The engine still serialises writes to one file (one writer per log).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use parking_lot::Mutex;

use super::{BackendKind, DirectBuf, DirectFile, IoBackend, WritableFile};

/// `pwrite`/`fdatasync` through `std::fs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainBackend;

impl PlainBackend {
    pub fn new() -> Self {
        PlainBackend
    }
}

/// A file written with positional writes.
#[derive(Debug)]
pub struct PlainFile {
    file: File,
}

impl PlainFile {
    /// Wraps an already-open file.
    pub fn new(file: File) -> Self {
        PlainFile { file }
    }
}

pub(crate) fn open_options(create_new: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).custom_flags(libc::O_CLOEXEC);
    if create_new {
        o.create_new(true);
    }
    o
}

/// Opens an existing file for O_DIRECT writes (see [`IoBackend::open_direct`]).
pub(crate) fn open_direct_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_DIRECT)
        .open(path)
}

impl IoBackend for PlainBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Plain
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(PlainFile::new(open_options(true).open(path)?)))
    }

    fn open_writable(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(PlainFile::new(open_options(false).open(path)?)))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn DirectFile>> {
        Ok(Box::new(PlainDirect {
            file: open_direct_file(path)?,
            done: Mutex::new(Vec::new()),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Shared by the backends: `fallocate(FALLOC_FL_KEEP_SIZE)`, treating "not supported by this
/// file system" as success (preallocation is an optimisation, never a correctness need).
pub(crate) fn preallocate_keep_size(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let too_large = |_| io::Error::new(io::ErrorKind::InvalidInput, "preallocation too large");
    let offset = libc::off_t::try_from(offset).map_err(too_large)?;
    let len = libc::off_t::try_from(len).map_err(too_large)?;
    // SAFETY: `fallocate` only reads its integer arguments; the fd is owned by `file`, which the
    // borrow keeps open for the duration of the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(err),
    }
}

/// Shared by the backends: `sync_file_range(SYNC_FILE_RANGE_WRITE)`, which queues writeback of
/// the range and returns without waiting for it.
pub(crate) fn start_writeback_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range too large",
        ));
    };
    // SAFETY: `sync_file_range` only reads its integer arguments; the fd is owned by `file`,
    // which the borrow keeps open for the duration of the call.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// O_DIRECT writes with `pwritev`, performed inside `submit` (one at a time: the caller's thread
/// waits for the device).
#[derive(Debug)]
pub struct PlainDirect {
    file: File,
    /// Outcomes not yet collected by `complete`.
    done: Mutex<Vec<(u64, io::Result<()>)>>,
}

impl DirectFile for PlainDirect {
    fn submit(&self, id: u64, bufs: Vec<DirectBuf>, offset: u64) -> io::Result<()> {
        let slices: Vec<&[u8]> = bufs.iter().map(DirectBuf::as_slice).collect();
        let res = pwritev_all(&self.file, &slices, offset);
        self.done.lock().push((id, res));
        Ok(())
    }

    fn submit_sync(&self, id: u64) -> io::Result<()> {
        let res = self.file.sync_data();
        self.done.lock().push((id, res));
        Ok(())
    }

    fn complete(&self, _min: usize) -> io::Result<Vec<(u64, io::Result<()>)>> {
        Ok(std::mem::take(&mut *self.done.lock()))
    }

    fn is_async(&self) -> bool {
        false
    }
}

/// At most this many buffers per `pwritev` (Linux's `UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;

/// Writes every buffer, in order, from `offset`: one `pwritev` per up to [`MAX_IOVECS`]
/// buffers, continuing after short writes and `EINTR`.
pub(crate) fn pwritev_all(file: &File, bufs: &[&[u8]], mut offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut slices: Vec<IoSlice<'_>> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| IoSlice::new(b))
        .collect();
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        let count = rest.len().min(MAX_IOVECS);
        let at = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "write offset too large"))?;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the first `count` entries
        // point into slices of `bufs`, borrowed for this whole call, and `pwritev` only reads
        // them. The fd is owned by `file`, which the borrow keeps open. `count` is at most
        // MAX_IOVECS, so it fits a c_int.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                rest.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                at,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        offset += n as u64;
        IoSlice::advance_slices(&mut rest, n as usize);
    }
    Ok(())
}

impl WritableFile for PlainFile {
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        start_writeback_range(&self.file, offset, len)
    }

    fn write_all_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        pwritev_all(&self.file, bufs, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        preallocate_keep_size(&self.file, offset, len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::io::{DIRECT_ALIGN, DirectBuf};

    /// The plain backend's O_DIRECT file performs each write and sync inside the call and
    /// reports both, in order, to the next `complete` (the direct write path relies on it: a
    /// sync never reported would leave an `always` append waiting forever).
    #[test]
    fn plain_direct_writes_and_syncs_complete_in_the_call_and_are_reported_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        drop(std::fs::File::create(&path).unwrap());
        let file = match PlainBackend::new().open_direct(&path) {
            Ok(f) => f,
            Err(e) => {
                crate::testing::skip("direct", &format!("O_DIRECT refused: {e}"));
                return;
            }
        };
        assert!(
            !file.is_async(),
            "the caller's thread waits: nothing stays in flight"
        );
        file.submit(7, vec![DirectBuf::filled(b'x', DIRECT_ALIGN).unwrap()], 0)
            .unwrap();
        file.submit_sync(8).unwrap();
        let done: Vec<(u64, bool)> = file
            .complete(0)
            .unwrap()
            .into_iter()
            .map(|(id, r)| (id, r.is_ok()))
            .collect();
        assert_eq!(done, vec![(7, true), (8, true)]);
        assert!(file.complete(0).unwrap().is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; DIRECT_ALIGN]);
    }
}
