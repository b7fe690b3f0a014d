//! Every write the engine makes goes through [`IoBackend`] and [`WritableFile`].
//!
//! Two production backends exist: [`uring`] (io_uring, the default where the kernel allows it) and
//! [`plain`] (`pwrite`/`fdatasync`, for kernels without io_uring). [`select_backend`] probes the
//! kernel once at start-up. Tests plug in [`faulty`] backends that fail after N operations or that
//! forget every byte not yet synced, to prove that recovery loses nothing acknowledged.
//!
//! Reads do not go through this trait: segments are read through `mmap` of the real file
//! ([`WritableFile::file`]), which is what makes reads zero-copy.
//!
//! Durability contract, which every backend honours and the forgetful test backend enforces:
//! * bytes written by `write_all_at` survive a crash only after a later `sync_data` on that file
//!   returns `Ok`;
//! * a file created, renamed or removed is durable only after `sync_dir` of its parent returns `Ok`.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub(crate) mod aligned;
pub mod faulty;
pub mod plain;
pub mod uring;

/// Alignment of every O_DIRECT write (buffer address, length and file offset): the largest
/// logical block size in common use, so direct writes work on any device (this machine's disk
/// has 512-byte blocks; 4Kn drives need 4096).
pub const DIRECT_ALIGN: usize = 4096;

/// Which backend a log writes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// io_uring submissions (several writes per submission).
    IoUring,
    /// Plain `pwrite`/`fdatasync` system calls.
    Plain,
    /// A test backend (fault injection or crash simulation).
    Test,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::IoUring => "io_uring",
            BackendKind::Plain => "plain",
            BackendKind::Test => "test",
        })
    }
}

/// What the operator asked for; `Auto` probes the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// io_uring if the kernel offers it, otherwise plain.
    #[default]
    Auto,
    /// io_uring, or an error if the kernel refuses it.
    IoUring,
    /// Plain system calls.
    Plain,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "io_uring" | "io-uring" | "uring" => Ok(BackendChoice::IoUring),
            "plain" | "sync" => Ok(BackendChoice::Plain),
            other => Err(format!(
                "unknown io backend {other:?} (expected auto, io_uring or plain)"
            )),
        }
    }
}

/// File-system operations the engine performs. Implementations must be usable from many threads.
pub trait IoBackend: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Creates a new file (failing if it exists) open for writing and reading.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for writing and reading (never creates it).
    fn open_writable(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file a second time, for writes that bypass the page cache (`O_DIRECT`),
    /// which may stay in flight across calls (see [`DirectFile`]). A write through it is durable
    /// under the same contract as any other: once a later `sync_data` of a [`WritableFile`] of
    /// the same file returned `Ok`. File systems without O_DIRECT (tmpfs) fail here with
    /// `EINVAL`.
    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn DirectFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists. Durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Durable after `sync_dir`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes everything written to the file system holding `dir` durable, every file's data and
    /// every directory's entries, in one go (`syncfs`): one journal commit where thousands of
    /// directory fsyncs would each be one (a broker closing thousands of partitions).
    fn sync_filesystem(&self, dir: &Path) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let d = File::open(dir)?;
        // SAFETY: `syncfs` only reads the descriptor, which `d` keeps open for the call.
        let rc = unsafe { libc::syncfs(d.as_raw_fd()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    /// An id of the running boot of the machine the files live on, or `None` if unknown. Two
    /// opens that see the same id saw the same page cache: nothing written between them can have
    /// been lost or torn by a power cut, only by a failed write. Recovery uses it to tell what a
    /// machine crash may leave (a torn, even garbled, unsynced tail) from damage (FORMAT.md §7).
    /// Default: Linux's `/proc/sys/kernel/random/boot_id`.
    fn boot_id(&self) -> Option<String> {
        machine_boot_id()
    }
}

/// Linux's id of the running boot (`/proc/sys/kernel/random/boot_id`), `None` if unreadable.
pub fn machine_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 64)
}

/// A file open for writing. All positions are absolute; nothing keeps a cursor.
pub trait WritableFile: Send + Sync + fmt::Debug {
    /// Writes `bufs` back to back starting at `offset`, retrying short writes, and returns once
    /// every byte is in the page cache or an error occurred. Backends may issue the buffers as one
    /// submission; the bytes are not durable until [`WritableFile::sync_data`].
    fn write_all_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()>;
    /// `fdatasync`: every byte written before this call is durable once it returns `Ok`.
    fn sync_data(&self) -> io::Result<()>;
    /// Writes then syncs; backends that can chain the two (io_uring links) do it in one submission.
    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_all_at(bufs, offset)?;
        self.sync_data()
    }
    /// Starts writeback of `len` bytes at `offset` without waiting for it
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). A hint that keeps the disk busy while the
    /// writer goes on; it makes nothing durable. Default: do nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Reserves disk blocks for `len` bytes at `offset` without changing the file's length
    /// (`fallocate(FALLOC_FL_KEEP_SIZE)`); a no-op where the file system cannot.
    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Sets the file's length (`ftruncate`). Also releases blocks preallocated past the end.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The underlying file, for `mmap` and reads. Writing through it bypasses the backend: don't.
    fn file(&self) -> &File;
}

/// Whole [`DIRECT_ALIGN`] blocks of memory to write with O_DIRECT, owned by the write until it
/// completes: a block-aligned range of one of the engine's staging buffers, or a block of its
/// own. Only the engine makes them; other backends pass them along.
#[derive(Debug)]
pub struct DirectBuf(pub(crate) aligned::Owned);

impl DirectBuf {
    /// A buffer of its own holding `len` bytes of `byte` (for probes and tests); `len` must be a
    /// non-zero multiple of [`DIRECT_ALIGN`].
    pub fn filled(byte: u8, len: usize) -> io::Result<DirectBuf> {
        let mut block = aligned::AlignedBuf::new(len, DIRECT_ALIGN)?;
        block.as_mut_slice().fill(byte);
        aligned::Owned::block(block).map(DirectBuf).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes is not a whole number of {DIRECT_ALIGN}-byte blocks"),
            )
        })
    }

    /// The bytes to write: a multiple of [`DIRECT_ALIGN`] long, starting at an aligned address.
    pub fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// A file open for writes that bypass the page cache (`O_DIRECT`).
///
/// Writes are submitted with an id and reported by [`DirectFile::complete`]. An asynchronous
/// backend (io_uring) returns from `submit` while the write is in flight, owning its buffers
/// until it completes, and tells the file's [`DirectWaker`] when completions are ready; a
/// synchronous one (plain `pwritev`) performs the write inside `submit`.
///
/// **Order:** the writes of one file are performed one after another, in submission order: a
/// write starts only once every write submitted before it has completed, and completions are
/// reported in that order. So consecutive writes may overlap (the engine's do, by one block),
/// and a write can be queued behind the one at the device without waiting for it. Dropping the
/// file does not wait: writes in flight complete at the device, their buffers owned by the
/// backend until then, and their outcomes are lost; [`DirectFile::wait_idle`] waits for them.
///
/// Concurrency: every method may be called from any thread, at the same time as the others.
pub trait DirectFile: Send + Sync + fmt::Debug {
    /// Starts writing `bufs` back to back from `offset`, a multiple of [`DIRECT_ALIGN`]. The
    /// outcome is reported under `id` by a later [`DirectFile::complete`]. An `Err` here means
    /// the write was not started.
    fn submit(&self, id: u64, bufs: Vec<DirectBuf>, offset: u64) -> io::Result<()>;
    /// Starts an `fdatasync` of the file that runs once every write submitted before it
    /// completed (the order above), reported under `id` like a write. Bytes those writes put in
    /// the file are durable once it completed successfully.
    fn submit_sync(&self, id: u64) -> io::Result<()>;
    /// Writes completed since the last call, waiting until at least `min` are available (`min`
    /// must not exceed the writes in flight, and must be 0 inside [`DirectWaker::wake`]). A
    /// write that failed or wrote fewer bytes than submitted reports an error.
    fn complete(&self, min: usize) -> io::Result<Vec<(u64, io::Result<()>)>>;
    /// Whether writes stay in flight after `submit` returns, so that someone must collect them
    /// with `complete` (when the waker says so).
    fn is_async(&self) -> bool;
    /// Who to tell when completions are ready (asynchronous files; the others never call it).
    fn set_waker(&self, waker: std::sync::Weak<dyn DirectWaker>) {
        let _ = waker;
    }
    /// Blocks until no write submitted so far is at the device (their outcomes stay to be
    /// collected). Not from inside [`DirectWaker::wake`].
    fn wait_idle(&self) {}
}

/// Told by an asynchronous [`DirectFile`] that writes completed. `wake` runs on one of the
/// backend's own threads, shared by many files: it collects the completions
/// (`complete(0)`), may submit more, and must not wait for anything that needs that thread.
pub trait DirectWaker: Send + Sync {
    fn wake(&self);
}

/// Replaces `path` with `bytes` atomically: writes `<path>.tmp`, fdatasyncs it, renames it over
/// `path`. A crash leaves the old file or the new one, never a mix (a leftover `.tmp` is
/// garbage). The rename is durable once the caller syncs the directory, which callers that
/// replace several files do once for all of them.
pub fn write_file_atomic(backend: &dyn IoBackend, path: &Path, bytes: &[u8]) -> crate::Result<()> {
    use crate::error::{Error, IoContext};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(crate::log::name::TMP_SUFFIX);
    let tmp = std::path::PathBuf::from(tmp);
    match backend.remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", tmp, e)),
    }
    let f = backend.create_new(&tmp).ctx("create", &tmp)?;
    f.write_all_at_and_sync(&[bytes], 0).ctx("write", &tmp)?;
    drop(f);
    backend.rename(&tmp, path).ctx("rename", &tmp)?;
    Ok(())
}

/// Reads a small file the engine keeps beside its segments, never more than `max` bytes:
/// `Ok(None)` if there is none, `Ok(Some(Err(reason)))` if it is longer than `max`.
pub fn read_small_file(
    path: &Path,
    max: u64,
) -> crate::Result<Option<std::result::Result<Vec<u8>, String>>> {
    use crate::error::{Error, IoContext};
    use std::io::Read;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .ctx("read", path)?;
    if bytes.len() as u64 > max {
        return Ok(Some(Err(format!("larger than {max} bytes"))));
    }
    Ok(Some(Ok(bytes)))
}

/// Overwrites `path` in place with `bytes` (creating it if there is none), without any sync, for
/// files whose reader checks them (a CRC over an exact length) and falls back to what the log
/// itself says when they do not check out: after a crash the file holds the old bytes, the new
/// ones, or a mix or a cut that fails the check, never a mix that passes (the new bytes are
/// written first and the file cut to their length after, so a crash in between leaves the old
/// file's tail behind the new bytes, which no such check accepts). No temporary file and no
/// rename: a clean stop writes thousands of these, and on ext4 each new inode, and each rename
/// over a file (which starts the renamed file's writeback), cost an order of magnitude more than
/// overwriting a file in place (PERFORMANCE.md, "The house"). A directory entry the call created
/// is durable once the caller syncs the directory.
pub fn overwrite_file_unsynced(
    backend: &dyn IoBackend,
    path: &Path,
    bytes: &[u8],
) -> crate::Result<()> {
    use crate::error::{Error, IoContext};
    let f = match backend.open_writable(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            backend.create_new(path).ctx("create", path)?
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    f.write_all_at(&[bytes], 0).ctx("write", path)?;
    f.set_len(bytes.len() as u64).ctx("truncate", path)?;
    Ok(())
}

/// Opens the backend the operator chose. `Auto` probes io_uring once (a ring is created and the
/// opcodes the write path needs are checked) and falls back to plain I/O with a log line.
pub fn select_backend(choice: BackendChoice) -> io::Result<Arc<dyn IoBackend>> {
    match choice {
        BackendChoice::Plain => Ok(Arc::new(plain::PlainBackend::new())),
        BackendChoice::IoUring => Ok(Arc::new(uring::UringBackend::probe()?)),
        BackendChoice::Auto => match uring::UringBackend::probe() {
            Ok(b) => Ok(Arc::new(b)),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unavailable, using the plain-file backend");
                Ok(Arc::new(plain::PlainBackend::new()))
            }
        },
    }
}

/// Checks that `backend` can write files under `dir` with O_DIRECT (a direct-mode log needs it):
/// creates a scratch file, writes one block through [`IoBackend::open_direct`], removes the file.
/// Fails with the error the file system gave (`EINVAL` on tmpfs and others without O_DIRECT).
pub fn probe_direct(backend: &dyn IoBackend, dir: &Path) -> io::Result<()> {
    let path = dir.join(format!(".strata-direct-probe-{}.tmp", std::process::id()));
    drop(std::fs::File::create(&path)?);
    let res = (|| {
        let file = backend.open_direct(&path)?;
        file.submit(0, vec![DirectBuf::filled(0, DIRECT_ALIGN)?], 0)?;
        file.submit_sync(1)?;
        let mut done = 0;
        while done < 2 {
            let min = if file.is_async() { 1 } else { 0 };
            let got = file.complete(min)?;
            if got.is_empty() {
                return Err(io::Error::other("the direct write never completed"));
            }
            for (_, res) in got {
                res?;
                done += 1;
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    res
}

/// The backend tests run on: `STRATA_TEST_BACKEND=plain|io_uring|auto` (default `auto`), so the
/// whole suite can be run once per backend.
pub fn backend_from_env() -> Arc<dyn IoBackend> {
    let choice = std::env::var("STRATA_TEST_BACKEND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BackendChoice::Auto);
    match select_backend(choice) {
        Ok(b) => b,
        Err(e) => panic!("STRATA_TEST_BACKEND={choice:?} is not available here: {e}"),
    }
}

/// Asks the kernel to drop `path`'s clean pages from the page cache
/// (`posix_fadvise(DONTNEED)`), so the next read comes from the disk: for cold-read tests and
/// benchmarks. Dirty or mapped pages stay; on tmpfs nothing is dropped.
pub fn evict_page_cache(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    file.sync_data()?;
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is owned by `file`, open
    // for the duration of the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Raises the process's open-file soft limit (`RLIMIT_NOFILE`) to its hard limit, as Kafka's
/// and Redpanda's packaging do: every open partition holds several descriptors. Returns the
/// limit before and after.
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit, read by the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok((before, lim.rlim_cur))
}

/// Bytes an unprivileged writer may still allocate on the file system holding `path`
/// (`statvfs`: available blocks times the fragment size).
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    space(path).map(|(_, available)| available)
}

/// The size of the file system holding `path` and the bytes an unprivileged writer may still
/// allocate on it (`statvfs`: total and available blocks times the fragment size).
pub fn space(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string and `st` a writable struct, both alive for the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        st.f_blocks.saturating_mul(st.f_frsize),
        st.f_bavail.saturating_mul(st.f_frsize),
    ))
}

/// How many of `path`'s bytes are in the page cache (`mincore` over a read-only mapping), so a
/// cold-read benchmark can say how cold it really was.
pub fn resident_bytes(path: &Path) -> io::Result<u64> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: the mapping is read-only and only its address is used (no byte is read), so a
    // concurrent truncation cannot fault here.
    let map = unsafe { memmap2::Mmap::map(&file) }?;
    let resident = mincore(&map, 0, map.len())?
        .iter()
        .filter(|p| *p & 1 == 1)
        .count() as u64;
    Ok((resident * page_size() as u64).min(len))
}

/// `mincore` over the pages of `map` that hold bytes `[start, end)`: one byte per page, bit 0
/// set when the page is in memory.
pub(crate) fn mincore(map: &memmap2::Mmap, start: usize, end: usize) -> io::Result<Vec<u8>> {
    let end = end.min(map.len());
    if start >= end {
        return Ok(Vec::new());
    }
    let page = page_size();
    let base = map.as_ptr() as usize;
    // mincore wants a page-aligned start; the page holding `start` is part of the mapping.
    let first = (base + start) & !(page - 1);
    let len = base + end - first;
    let mut pages = vec![0u8; len.div_ceil(page)];
    // SAFETY: [first, first + len) lies within the mapping (its base is page-aligned, and `end`
    // is at most its length), which the borrow of `map` keeps alive for the call; `pages` has
    // one byte per page of that range, as mincore requires, and is only written by it.
    let rc = unsafe { libc::mincore(first as *mut libc::c_void, len, pages.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pages)
}

/// The system's page size (4 KiB unless the kernel says otherwise).
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf only reads its integer argument.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n)
            .ok()
            .filter(|n| n.is_power_of_two())
            .unwrap_or(4096)
    })
}
