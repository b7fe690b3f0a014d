//! (being written) io_uring backend.
use std::io;
/// io_uring backend.
#[derive(Debug)]
pub struct UringBackend;
impl UringBackend {
    /// Probes the kernel.
    pub fn probe() -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "not yet written"))
    }
}
impl super::IoBackend for UringBackend {
    fn kind(&self) -> super::BackendKind { super::BackendKind::IoUring }
    fn create_new(&self, p: &std::path::Path) -> io::Result<Box<dyn super::WritableFile>> { super::plain::PlainBackend.create_new(p) }
    fn open_writable(&self, p: &std::path::Path) -> io::Result<Box<dyn super::WritableFile>> { super::plain::PlainBackend.open_writable(p) }
    fn rename(&self, a: &std::path::Path, b: &std::path::Path) -> io::Result<()> { std::fs::rename(a, b) }
    fn remove_file(&self, p: &std::path::Path) -> io::Result<()> { std::fs::remove_file(p) }
    fn create_dir_all(&self, p: &std::path::Path) -> io::Result<()> { std::fs::create_dir_all(p) }
    fn sync_dir(&self, p: &std::path::Path) -> io::Result<()> { std::fs::File::open(p)?.sync_all() }
}
