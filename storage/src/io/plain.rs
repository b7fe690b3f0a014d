//! The plain-file backend: `pwrite` and `fdatasync`, for kernels without io_uring.
//!
//! Thread-safety: every call takes `&self` and uses positional I/O, so concurrent callers never
//! share a cursor. The engine still serialises writes to one file (one writer per log).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{BackendKind, IoBackend, WritableFile};

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
pub(crate) fn preallocate_keep_size(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "preallocation too large"))?;
    // SAFETY: `fallocate` only reads its integer arguments; the fd is owned by `file`, which the
    // borrow keeps open for the duration of the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
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

impl WritableFile for PlainFile {
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        start_writeback_range(&self.file, offset, len)
    }

    fn write_all_at(&self, bufs: &[&[u8]], mut offset: u64) -> io::Result<()> {
        for buf in bufs {
            self.file.write_all_at(buf, offset)?;
            offset += buf.len() as u64;
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn preallocate(&self, len: u64) -> io::Result<()> {
        preallocate_keep_size(&self.file, len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn file(&self) -> &File {
        &self.file
    }
}
