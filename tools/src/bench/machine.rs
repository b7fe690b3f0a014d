//! What the numbers were measured on: cores, kernel, the data directory's file system, and the
//! load generator's own CPU time (so a reader can tell whether the generator was the bottleneck).

use std::path::Path;

/// The machine a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process (`std::thread::available_parallelism`).
    pub cores: usize,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// File system type of the data directory (from `/proc/mounts`, longest matching mount point).
    pub filesystem: String,
    /// Block device or source of that mount.
    pub device: String,
    /// The engine's write path (`io_uring` or `plain`).
    pub io_backend: String,
}

impl Machine {
    /// Describes this machine for a data directory (which must exist).
    pub fn detect(data_dir: &Path, io_backend: &str) -> Self {
        let (filesystem, device) = filesystem_of(data_dir);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: kernel_release(),
            filesystem,
            device,
            io_backend: io_backend.to_string(),
        }
    }
}

/// The kernel release, or `unknown`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// `(fstype, source)` of the mount that holds `path`, or `("unknown", "unknown")`.
pub fn filesystem_of(path: &Path) -> (String, String) {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mount_for(&mounts, &path.to_string_lossy())
        .unwrap_or_else(|| ("unknown".to_string(), "unknown".to_string()))
}

/// Picks the longest mount point of a `/proc/mounts` text that contains `path`.
pub fn mount_for(mounts: &str, path: &str) -> Option<(String, String)> {
    let mut best: Option<(usize, String, String)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(source), Some(mount_point), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        // /proc/mounts escapes spaces as \040.
        let mount_point = mount_point.replace("\\040", " ");
        let contains = path == mount_point
            || mount_point == "/"
            || path
                .strip_prefix(mount_point.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if contains
            && best
                .as_ref()
                .is_none_or(|(len, _, _)| mount_point.len() >= *len)
        {
            best = Some((mount_point.len(), fstype.to_string(), source.to_string()));
        }
    }
    best.map(|(_, fs, src)| (fs, src))
}

/// User + system CPU seconds this process has used so far, from `/proc/self/stat` (fields 14
/// and 15, in clock ticks of `USER_HZ` = 100 on Linux). Includes every thread, finished or not.
pub fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_ticks_from_stat(&s))
        .map_or(0.0, |ticks| ticks as f64 / USER_HZ)
}

/// User + system CPU seconds of process `pid` so far (`/proc/<pid>/stat`), `None` if it is gone.
pub fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| cpu_ticks_from_stat(&s))
        .map(|ticks| ticks as f64 / USER_HZ)
}

/// Clock ticks per second in `/proc/<pid>/stat` (the kernel's `USER_HZ`, 100 on every Linux ABI).
pub const USER_HZ: f64 = 100.0;

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after the *last* `)`.
pub fn cpu_ticks_from_stat(stat: &str) -> Option<u64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")" comes field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_point_wins() {
        let mounts = "/dev/vda / ext4 rw 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n\
                      /dev/vdb /tmp/data xfs rw 0 0\n\
                      /dev/vdc /tmp/data2 btrfs rw 0 0\n";
        assert_eq!(mount_for(mounts, "/tmp/data/x").unwrap().0, "xfs");
        assert_eq!(mount_for(mounts, "/tmp/data2").unwrap().0, "btrfs");
        assert_eq!(mount_for(mounts, "/tmp/datax").unwrap().0, "tmpfs");
        assert_eq!(
            mount_for(mounts, "/work").unwrap(),
            ("ext4".into(), "/dev/vda".into())
        );
    }

    #[test]
    fn cpu_ticks_survive_a_command_name_with_parentheses() {
        let stat = "1234 (my (weird) cmd) R 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        assert_eq!(cpu_ticks_from_stat(stat), Some(280));
        assert_eq!(cpu_ticks_from_stat("garbage"), None);
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::detect(Path::new("/"), "plain");
        assert!(m.cores >= 1);
        assert_ne!(m.kernel, "");
        assert!(process_cpu_seconds() >= 0.0);
    }
}
