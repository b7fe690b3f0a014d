//! Test backends that break on purpose, to prove the engine loses nothing it acknowledged.
//!
//! * [`FailingBackend`] counts mutating operations and makes them fail with an injected `EIO`:
//!   all of them after the first N ([`FailMode::AfterN`]), only the Nth ([`FailMode::OnlyNth`]), or
//!   only syncs ([`FailMode::SyncsAfterN`], for "after a failed fsync the log refuses writes").
//!   A test first runs its workload with [`FailMode::Never`] to count the operations, then reruns
//!   it once per N in `0..count`.
//! * [`ForgetfulBackend`] is a fake disk in the manner of redb's `crash_consistency` tests: it does
//!   real I/O on real files (the engine reads through `mmap`, so the files must be real) and keeps,
//!   beside them, what would survive a power cut under the [`super`] durability contract.
//!   [`ForgetfulBackend::crash`] rewrites the directory tree to exactly that (optionally with a torn
//!   tail), after which the test reopens the log and checks that every acknowledged record is there.
//!
//! Both are `Clone`; clones share their state, so a test hands one clone to the engine (as an
//! `Arc<dyn IoBackend>`) and keeps another to count, heal or crash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::plain::PlainBackend;
use super::{BackendKind, DirectBuf, DirectFile, IoBackend, WritableFile};

// ------------------------------------------------------------------------------------------------
// FailingBackend
// ------------------------------------------------------------------------------------------------

/// When a [`FailingBackend`] injects failures. Operation indices count from 0 and cover every
/// mutating call: `create_new`, `open_writable`, `open_direct`, a direct write's `submit`
/// (`direct_write`) and `submit_sync` (`direct_sync`), `write_all_at`, `write_all_at_and_sync`,
/// `sync_data`, `rename`, `remove_file`, `sync_dir`, `set_len`, `preallocate` (not
/// `create_dir_all`, not reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// The first `n` operations succeed; every later one fails (a disk that died).
    AfterN(u64),
    /// Only operation number `n` fails; the ones before and after succeed (a transient error).
    OnlyNth(u64),
    /// Only syncs (`sync_data`, `write_all_at_and_sync`, `direct_sync`) fail, all of them after the first `n`
    /// syncs. A failing `write_all_at_and_sync` still performs its write, like a real fsync error.
    SyncsAfterN(u64),
    /// Every call of the named operation fails (`"preallocate"`, `"create_new"`, …; the names
    /// are those listed above), everything else succeeds: a file system that refuses one kind
    /// of call, such as `fallocate` on a full disk.
    EveryOp(&'static str),
    /// Every data write (`write_all_at`, `write_all_at_and_sync`, `direct_write`) fails as on
    /// a full disk (`ErrorKind::StorageFull`, which the engine treats as `ENOSPC`), everything
    /// else succeeds.
    DiskFull,
    /// Nothing fails: counts the operations of a workload.
    Never,
}

/// The error a [`FailingBackend`] injects, wrapped in an `io::Error` (see [`is_injected`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFailure {
    /// How many operations the backend had seen before the one that failed.
    pub after_ops: u64,
    /// Which call failed.
    pub op: &'static str,
}

impl fmt::Display for InjectedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "injected failure after {} operations ({} failed with EIO)",
            self.after_ops, self.op
        )
    }
}

impl std::error::Error for InjectedFailure {}

/// Whether `err` (or an `io::Error` it wraps) was injected by a [`FailingBackend`].
pub fn is_injected(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<InjectedFailure>().is_some())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpClass {
    Other,
    Sync,
}

#[derive(Debug)]
struct FailState {
    mode: FailMode,
    ops: u64,
    syncs: u64,
    injected: u64,
    /// The first [`FIRST_OPS_KEPT`] operations' names, for a test's failure message.
    first_ops: Vec<&'static str>,
}

/// How many operation names a [`FailingBackend`] keeps (see [`FailingBackend::first_ops`]).
const FIRST_OPS_KEPT: usize = 32;

impl FailState {
    /// Counts one operation and decides whether it fails.
    fn admit(&mut self, class: OpClass, op: &'static str) -> io::Result<()> {
        let index = self.ops;
        self.ops += 1;
        if self.first_ops.len() < FIRST_OPS_KEPT {
            self.first_ops.push(op);
        }
        let sync_index = self.syncs;
        if class == OpClass::Sync {
            self.syncs += 1;
        }
        let fail = match self.mode {
            FailMode::AfterN(n) => index >= n,
            FailMode::OnlyNth(n) => index == n,
            FailMode::SyncsAfterN(n) => class == OpClass::Sync && sync_index >= n,
            FailMode::EveryOp(name) => op == name,
            FailMode::DiskFull => {
                matches!(
                    op,
                    "write_all_at" | "write_all_at_and_sync" | "direct_write"
                )
            }
            FailMode::Never => false,
        };
        if fail {
            self.injected += 1;
            let kind = match self.mode {
                FailMode::DiskFull => io::ErrorKind::StorageFull,
                _ => io::ErrorKind::Other,
            };
            Err(io::Error::new(
                kind,
                InjectedFailure {
                    after_ops: index,
                    op,
                },
            ))
        } else {
            Ok(())
        }
    }
}

/// Wraps a backend and makes its mutating operations fail on schedule (see [`FailMode`]).
#[derive(Debug, Clone)]
pub struct FailingBackend {
    inner: Arc<dyn IoBackend>,
    state: Arc<Mutex<FailState>>,
}

impl FailingBackend {
    /// The first `fail_after` mutating operations succeed; every later one fails.
    pub fn new(inner: Arc<dyn IoBackend>, fail_after: u64) -> Self {
        Self::with_mode(inner, FailMode::AfterN(fail_after))
    }

    /// Fails according to `mode`.
    pub fn with_mode(inner: Arc<dyn IoBackend>, mode: FailMode) -> Self {
        FailingBackend {
            inner,
            state: Arc::new(Mutex::new(FailState {
                mode,
                ops: 0,
                syncs: 0,
                injected: 0,
                first_ops: Vec::new(),
            })),
        }
    }

    /// Never fails; use [`FailingBackend::ops`] afterwards to learn how many operations ran.
    pub fn counting(inner: Arc<dyn IoBackend>) -> Self {
        Self::with_mode(inner, FailMode::Never)
    }

    /// Mutating operations attempted so far (including the ones that failed).
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// The names of the first operations attempted (at most 32), to say in a failed
    /// assertion which call ran.
    pub fn first_ops(&self) -> Vec<&'static str> {
        self.state.lock().first_ops.clone()
    }

    /// Syncs (`sync_data`, `write_all_at_and_sync`) attempted so far.
    pub fn syncs(&self) -> u64 {
        self.state.lock().syncs
    }

    /// Failures injected so far.
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    /// The current mode.
    pub fn mode(&self) -> FailMode {
        self.state.lock().mode
    }

    /// Changes the mode, e.g. to [`FailMode::Never`] to let the disk "recover". Counts continue.
    pub fn set_mode(&self, mode: FailMode) {
        self.state.lock().mode = mode;
    }

    /// Shorthand for `set_mode(FailMode::Never)`.
    pub fn heal(&self) {
        self.set_mode(FailMode::Never);
    }

    fn admit(&self, class: OpClass, op: &'static str) -> io::Result<()> {
        self.state.lock().admit(class, op)
    }

    fn wrap(&self, inner: Box<dyn WritableFile>) -> Box<dyn WritableFile> {
        Box::new(FailingFile {
            inner,
            state: Arc::clone(&self.state),
        })
    }
}

impl IoBackend for FailingBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Test
    }

    fn boot_id(&self) -> Option<String> {
        self.inner.boot_id()
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.admit(OpClass::Other, "create_new")?;
        Ok(self.wrap(self.inner.create_new(path)?))
    }

    fn open_writable(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.admit(OpClass::Other, "open_writable")?;
        Ok(self.wrap(self.inner.open_writable(path)?))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn DirectFile>> {
        self.admit(OpClass::Other, "open_direct")?;
        Ok(Box::new(FailingDirect {
            inner: self.inner.open_direct(path)?,
            state: Arc::clone(&self.state),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.admit(OpClass::Other, "rename")?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.admit(OpClass::Other, "remove_file")?;
        self.inner.remove_file(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.admit(OpClass::Other, "sync_dir")?;
        self.inner.sync_dir(dir)
    }

    fn sync_filesystem(&self, dir: &Path) -> io::Result<()> {
        self.admit(OpClass::Sync, "sync_filesystem")?;
        self.inner.sync_filesystem(dir)
    }
}

/// A file of a [`FailingBackend`].
#[derive(Debug)]
struct FailingFile {
    inner: Box<dyn WritableFile>,
    state: Arc<Mutex<FailState>>,
}

impl FailingFile {
    fn admit(&self, class: OpClass, op: &'static str) -> io::Result<()> {
        self.state.lock().admit(class, op)
    }
}

impl WritableFile for FailingFile {
    fn write_all_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.admit(OpClass::Other, "write_all_at")?;
        self.inner.write_all_at(bufs, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.admit(OpClass::Sync, "sync_data")?;
        self.inner.sync_data()
    }

    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let admitted = self.admit(OpClass::Sync, "write_all_at_and_sync");
        match admitted {
            Ok(()) => self.inner.write_all_at_and_sync(bufs, offset),
            Err(e) => {
                if matches!(self.state.lock().mode, FailMode::SyncsAfterN(_)) {
                    // Only the sync fails: the bytes reach the page cache, as with a real error.
                    self.inner.write_all_at(bufs, offset)?;
                }
                Err(e)
            }
        }
    }

    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.admit(OpClass::Other, "preallocate")?;
        self.inner.preallocate(offset, len)
    }

    /// A hint that changes no durable state: passed through, not counted.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.start_writeback(offset, len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.admit(OpClass::Other, "set_len")?;
        self.inner.set_len(len)
    }

    fn file(&self) -> &File {
        self.inner.file()
    }
}

/// A direct file of a [`FailingBackend`]: each `submit` is one operation (`direct_write`); an
/// injected failure means the write was not started.
#[derive(Debug)]
struct FailingDirect {
    inner: Box<dyn DirectFile>,
    state: Arc<Mutex<FailState>>,
}

impl DirectFile for FailingDirect {
    fn submit(&self, id: u64, bufs: Vec<DirectBuf>, offset: u64) -> io::Result<()> {
        self.state.lock().admit(OpClass::Other, "direct_write")?;
        self.inner.submit(id, bufs, offset)
    }

    fn submit_sync(&self, id: u64) -> io::Result<()> {
        self.state.lock().admit(OpClass::Sync, "direct_sync")?;
        self.inner.submit_sync(id)
    }

    fn complete(&self, min: usize) -> io::Result<Vec<(u64, io::Result<()>)>> {
        self.inner.complete(min)
    }

    fn is_async(&self) -> bool {
        self.inner.is_async()
    }

    fn set_waker(&self, waker: std::sync::Weak<dyn super::DirectWaker>) {
        self.inner.set_waker(waker);
    }

    fn wait_idle(&self) {
        self.inner.wait_idle();
    }
}

// ------------------------------------------------------------------------------------------------
// ForgetfulBackend
// ------------------------------------------------------------------------------------------------

/// What [`ForgetfulBackend::crash`] does with bytes written past a file's durable content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornMode {
    /// Every file gets exactly its durable content; unsynced bytes vanish.
    Clean,
    /// A torn write: each file keeps a pseudo-random prefix (possibly empty, possibly all) of the
    /// bytes written past its durable length, and part of that kept prefix may be overwritten with
    /// garbage. Deterministic for a given `seed` and set of file names.
    PartialTail {
        /// Seed of the generator choosing prefix lengths and garbage.
        seed: u64,
    },
    /// Like [`TornMode::PartialTail`] but the kept prefix is never garbled (bytes are lost, not
    /// damaged).
    PrefixOnly {
        /// Seed of the generator choosing prefix lengths.
        seed: u64,
    },
}

/// splitmix64: a tiny deterministic generator (no dependency needed for test randomness).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..=max`.
    fn up_to(&mut self, max: usize) -> usize {
        let bound = (max as u64).saturating_add(1);
        if bound == 0 {
            return self.next_u64() as usize;
        }
        (self.next_u64() % bound) as usize
    }
}

type Ino = u64;

/// One file the fake disk knows, independent of its names (renames keep it).
#[derive(Debug)]
struct Inode {
    /// Content as of the last successful sync (or when the backend first saw the file).
    durable: Vec<u8>,
    /// A read handle on the real inode: follows renames and survives unlinks, so a crash can see
    /// what was written past the durable content.
    live: Option<File>,
}

/// Simulated boots, numbered across every [`ForgetfulBackend`] of the process.
static BOOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_boot() -> u64 {
    BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[derive(Debug, Default)]
struct Model {
    /// Bumped by every crash; files opened before it no longer update the model.
    epoch: u64,
    /// The simulated boot (see [`ForgetfulBackend::boot_id`]): new for each backend and crash.
    boot: u64,
    next_ino: Ino,
    inodes: HashMap<Ino, Inode>,
    /// Directory entries as the running system sees them.
    names: BTreeMap<PathBuf, Ino>,
    /// Directory entries that would survive a crash (as of each directory's last `sync_dir`).
    durable_names: BTreeMap<PathBuf, Ino>,
}

impl Model {
    fn insert_inode(&mut self, inode: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, inode);
        ino
    }

    /// If `path` names a regular file the model does not know, it predates the backend: it counts
    /// as durable, under that name, with its current content.
    fn adopt(&mut self, key: &Path, path: &Path) -> io::Result<()> {
        if self.names.contains_key(key) {
            return Ok(());
        }
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if !file.metadata()?.is_file() {
            return Ok(());
        }
        let durable = read_whole(&file)?;
        let ino = self.insert_inode(Inode {
            durable,
            live: Some(file),
        });
        self.names.insert(key.to_path_buf(), ino);
        self.durable_names.insert(key.to_path_buf(), ino);
        Ok(())
    }

    /// A directory was renamed: the files the model knows under it move along. Directory entries
    /// of directories are not modelled, so this move counts as durable at once.
    fn move_tree(&mut self, from: &Path, to: &Path) {
        for map in [&mut self.names, &mut self.durable_names] {
            let moved: Vec<(PathBuf, Ino)> = map
                .iter()
                .filter(|(p, _)| p.starts_with(from))
                .map(|(p, ino)| (p.clone(), *ino))
                .collect();
            for (old, ino) in moved {
                map.remove(&old);
                if let Ok(rest) = old.strip_prefix(from) {
                    map.insert(to.join(rest), ino);
                }
            }
        }
    }
}

/// Reads a whole file by position (never moving a cursor another handle may share).
fn read_whole(file: &File) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| io::Error::other("file too large for the forgetful backend"))?;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        match file.read_at(rest, done as u64) {
            Ok(0) => break, // shrank meanwhile
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// The model's name for `path`: its parent directory canonicalised, so `a/./b` and `/abs/a/b` are
/// one entry. Falls back to the path as given when the parent does not exist.
fn key(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent
                .canonicalize()
                .map(|p| p.join(name))
                .unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

fn dir_key(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// A fake disk that forgets every write, creation, rename and removal not yet made durable.
///
/// Durability rules (the contract of [`super`]):
/// * a file's content is durable as of its last successful `sync_data` / `write_all_at_and_sync`
///   (the backend then reads the file and keeps that copy, so keep test files small);
/// * a directory entry (creation, rename, removal) is durable once `sync_dir` of its parent
///   directory succeeded; files are tracked by an inode id, so a synced file renamed and then
///   dir-synced is durable under its new name;
/// * a file the backend had not seen before (opened, renamed or removed through it while it
///   already existed) is durable with its content and name at that moment;
/// * directories themselves are not modelled: they are never removed by a crash, and renaming one
///   moves the files under it at once.
///
/// Content tracking is per file, not per byte: a crash restores the durable copy, so unsynced
/// overwrites inside the durable range vanish too; [`TornMode`] only tears the tail past it.
#[derive(Debug, Clone)]
pub struct ForgetfulBackend {
    inner: Arc<dyn IoBackend>,
    model: Arc<Mutex<Model>>,
}

impl Default for ForgetfulBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl ForgetfulBackend {
    /// Does its real I/O through [`PlainBackend`].
    pub fn new() -> Self {
        Self::wrapping(Arc::new(PlainBackend::new()))
    }

    /// Does its real I/O through `inner` (e.g. the io_uring backend).
    pub fn wrapping(inner: Arc<dyn IoBackend>) -> Self {
        ForgetfulBackend {
            inner,
            model: Arc::new(Mutex::new(Model {
                boot: next_boot(),
                ..Model::default()
            })),
        }
    }

    /// What `path` would contain after a [`TornMode::Clean`] crash now, or `None` if it would
    /// not exist (as far as this backend knows).
    pub fn durable_content(&self, path: &Path) -> Option<Vec<u8>> {
        let model = self.model.lock();
        let ino = model.durable_names.get(&key(path))?;
        model.inodes.get(ino).map(|i| i.durable.clone())
    }

    /// Simulates a power cut: rewrites the real files to their durable state (see
    /// [`ForgetfulBackend::try_crash`]).
    ///
    /// # Panics
    /// If the real files cannot be rewritten (a broken test environment, not an engine bug).
    pub fn crash(&self, torn: TornMode) {
        if let Err(e) = self.try_crash(torn) {
            panic!("ForgetfulBackend::crash could not rewrite the files: {e}");
        }
    }

    /// Simulates a power cut. Every file the backend knows is removed, then every durable name is
    /// recreated with its inode's durable content (plus, with a torn mode, part of the unsynced
    /// tail). The backend then forgets everything: files opened before the crash no longer count,
    /// and the recreated files are treated as pre-existing when next seen, so the test can reopen
    /// through this backend or a fresh one. Drop the engine's handles before crashing.
    pub fn try_crash(&self, torn: TornMode) -> io::Result<()> {
        let mut model = self.model.lock();
        let mut rng = match torn {
            TornMode::Clean => None,
            TornMode::PartialTail { seed } => Some((SplitMix64(seed), true)),
            TornMode::PrefixOnly { seed } => Some((SplitMix64(seed), false)),
        };

        // 1. Decide every surviving file's content while the live handles still see the writes.
        let mut plan: Vec<(PathBuf, Vec<u8>)> = Vec::with_capacity(model.durable_names.len());
        for (path, ino) in &model.durable_names {
            let Some(inode) = model.inodes.get(ino) else {
                continue;
            };
            let mut content = inode.durable.clone();
            if let (Some((rng, garble)), Some(live)) = (rng.as_mut(), inode.live.as_ref()) {
                let now = read_whole(live)?;
                if let Some(tail) = now.get(content.len()..).filter(|t| !t.is_empty()) {
                    let keep = rng.up_to(tail.len());
                    let start = content.len();
                    content.extend_from_slice(tail.get(..keep).unwrap_or_default());
                    if *garble && keep > 0 && rng.next_u64() % 2 == 0 {
                        let from = start + rng.up_to(keep - 1);
                        let to = from + 1 + rng.up_to(start + keep - from - 1);
                        if let Some(region) = content.get_mut(from..to) {
                            for byte in region {
                                *byte = rng.next_u64() as u8;
                            }
                        }
                    }
                }
            }
            plan.push((path.clone(), content));
        }

        // 2. Remove every file the backend knows, under any name.
        let known: BTreeSet<&PathBuf> = model
            .names
            .keys()
            .chain(model.durable_names.keys())
            .collect();
        for path in known {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }

        // 3. Recreate the durable names.
        for (path, content) in plan {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &content)?;
        }

        // 4. Forget everything.
        let epoch = model.epoch + 1;
        *model = Model {
            epoch,
            boot: next_boot(),
            ..Model::default()
        };
        Ok(())
    }

    fn wrap(&self, inner: Box<dyn WritableFile>, ino: Ino, epoch: u64) -> Box<dyn WritableFile> {
        Box::new(ForgetfulFile {
            inner,
            ino,
            epoch,
            model: Arc::clone(&self.model),
        })
    }
}

impl IoBackend for ForgetfulBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Test
    }

    /// A fresh id for every simulated boot: each backend starts its own, and every
    /// [`ForgetfulBackend::crash`] is a reboot. (A real boot id would tell recovery that the page
    /// cache survived, which is exactly what a simulated power cut denies.)
    fn boot_id(&self) -> Option<String> {
        Some(format!("forgetful-{}", self.model.lock().boot))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut model = self.model.lock();
        let file = self.inner.create_new(path)?;
        let live = file.file().try_clone()?;
        let ino = model.insert_inode(Inode {
            durable: Vec::new(),
            live: Some(live),
        });
        model.names.insert(key(path), ino);
        let epoch = model.epoch;
        Ok(self.wrap(file, ino, epoch))
    }

    fn open_writable(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut model = self.model.lock();
        let k = key(path);
        model.adopt(&k, path)?;
        let file = self.inner.open_writable(path)?;
        let ino = match model.names.get(&k) {
            Some(ino) => *ino,
            None => {
                // Appeared between the adoption check and the open (not through this backend).
                model.adopt(&k, path)?;
                model
                    .names
                    .get(&k)
                    .copied()
                    .ok_or_else(|| io::Error::other("file vanished while being opened"))?
            }
        };
        let epoch = model.epoch;
        Ok(self.wrap(file, ino, epoch))
    }

    /// Direct writes change the file's content like any other write, and a sync through the
    /// direct handle captures the durable copy like a writable handle's. The handle is always
    /// synchronous (plain `pwritev` and `fdatasync` inside `submit`), whatever the inner
    /// backend: the copy is then taken exactly when the sync returns.
    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn DirectFile>> {
        let mut model = self.model.lock();
        let k = key(path);
        model.adopt(&k, path)?;
        let ino =
            model.names.get(&k).copied().ok_or_else(|| {
                io::Error::other("a direct file the forgetful disk does not know")
            })?;
        let file = super::plain::open_direct_file(path)?;
        let read = File::open(path)?;
        Ok(Box::new(ForgetfulDirect {
            file,
            read,
            ino,
            epoch: model.epoch,
            model: self.model.clone(),
            done: Mutex::new(Vec::new()),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut model = self.model.lock();
        let (kf, kt) = (key(from), key(to));
        if from.is_dir() {
            self.inner.rename(from, to)?;
            model.move_tree(&kf, &kt);
            return Ok(());
        }
        model.adopt(&kf, from)?;
        model.adopt(&kt, to)?;
        self.inner.rename(from, to)?;
        match model.names.remove(&kf) {
            Some(ino) => {
                model.names.insert(kt, ino);
            }
            None => {
                model.names.remove(&kt);
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut model = self.model.lock();
        let k = key(path);
        model.adopt(&k, path)?;
        self.inner.remove_file(path)?;
        model.names.remove(&k);
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut model = self.model.lock();
        self.inner.sync_dir(dir)?;
        let dir = dir_key(dir);
        let in_dir: BTreeSet<PathBuf> = model
            .names
            .keys()
            .chain(model.durable_names.keys())
            .filter(|p| p.parent() == Some(dir.as_path()))
            .cloned()
            .collect();
        for path in in_dir {
            match model.names.get(&path).copied() {
                Some(ino) => model.durable_names.insert(path, ino),
                None => model.durable_names.remove(&path),
            };
        }
        Ok(())
    }

    /// Everything the fake disk knows becomes durable: every file's content as it is now, every
    /// directory entry (the whole disk is one file system).
    fn sync_filesystem(&self, dir: &Path) -> io::Result<()> {
        let mut model = self.model.lock();
        self.inner.sync_filesystem(dir)?;
        for inode in model.inodes.values_mut() {
            if let Some(f) = &inode.live {
                inode.durable = read_whole(f)?;
            }
        }
        model.durable_names = model.names.clone();
        Ok(())
    }
}

/// A file of a [`ForgetfulBackend`]: real writes, and a durable copy taken at every sync.
#[derive(Debug)]
struct ForgetfulFile {
    inner: Box<dyn WritableFile>,
    ino: Ino,
    epoch: u64,
    model: Arc<Mutex<Model>>,
}

impl ForgetfulFile {
    /// Records the file's current content as durable (called after a successful sync).
    fn capture(&self) -> io::Result<()> {
        let content = read_whole(self.inner.file())?;
        let mut model = self.model.lock();
        if model.epoch != self.epoch {
            return Ok(()); // a handle from before a crash: the model no longer knows its inode
        }
        if let Some(inode) = model.inodes.get_mut(&self.ino) {
            inode.durable = content;
        }
        Ok(())
    }
}

impl WritableFile for ForgetfulFile {
    fn write_all_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(bufs, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()?;
        self.capture()
    }

    fn write_all_at_and_sync(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.inner.write_all_at_and_sync(bufs, offset)?;
        self.capture()
    }

    fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.preallocate(offset, len)
    }

    /// Writeback makes nothing durable (only `sync_data` does), so the model is unaffected.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.start_writeback(offset, len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn file(&self) -> &File {
        self.inner.file()
    }
}

/// A direct file of a [`ForgetfulBackend`] (see its `open_direct`).
#[derive(Debug)]
struct ForgetfulDirect {
    file: File,
    /// A plain read handle, for the durable copy.
    read: File,
    ino: Ino,
    epoch: u64,
    model: Arc<Mutex<Model>>,
    done: Mutex<Vec<(u64, io::Result<()>)>>,
}

impl DirectFile for ForgetfulDirect {
    fn submit(&self, id: u64, bufs: Vec<DirectBuf>, offset: u64) -> io::Result<()> {
        let slices: Vec<&[u8]> = bufs.iter().map(DirectBuf::as_slice).collect();
        let res = super::plain::pwritev_all(&self.file, &slices, offset);
        self.done.lock().push((id, res));
        Ok(())
    }

    fn submit_sync(&self, id: u64) -> io::Result<()> {
        let res = self.file.sync_data().and_then(|()| {
            let content = read_whole(&self.read)?;
            let mut model = self.model.lock();
            if model.epoch == self.epoch
                && let Some(inode) = model.inodes.get_mut(&self.ino)
            {
                inode.durable = content;
            }
            Ok(())
        });
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_bounded() {
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        for _ in 0..100 {
            let x = a.up_to(10);
            assert_eq!(x, b.up_to(10));
            assert!(x <= 10);
        }
        assert_eq!(SplitMix64(1).up_to(0), 0);
    }

    #[test]
    fn key_canonicalises_the_parent() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(&dir.path().join("x"));
        let b = key(&dir.path().join(".").join("x"));
        assert_eq!(a, b);
        assert_eq!(a.parent(), Some(dir_key(dir.path()).as_path()));
    }

    #[test]
    fn injected_errors_are_recognisable() {
        let mut s = FailState {
            mode: FailMode::OnlyNth(1),
            ops: 0,
            syncs: 0,
            injected: 0,
            first_ops: Vec::new(),
        };
        assert!(s.admit(OpClass::Other, "a").is_ok());
        let e = s.admit(OpClass::Other, "b").unwrap_err();
        assert!(is_injected(&e));
        assert!(
            e.to_string()
                .contains("injected failure after 1 operations"),
            "{e}"
        );
        assert!(!is_injected(&io::Error::from_raw_os_error(libc::EIO)));
    }
}
