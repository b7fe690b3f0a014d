//! Settings of one partition log.

use std::time::Duration;

use crate::error::{Error, Result};

/// When appended bytes are made durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Never by the engine: the OS writes dirty pages back on its own schedule. An acknowledged
    /// append is in the page cache only; a crash of the *process* loses nothing, a crash of the
    /// *machine* may lose anything not yet written back (segments are synced when they roll and
    /// at clean shutdown).
    #[default]
    Never,
    /// A background thread runs `fdatasync` every interval: a machine crash loses at most the
    /// appends of the last interval (plus the time the sync itself takes).
    Interval(Duration),
    /// An append returns only after an `fdatasync` that covers it; appends that queue up while a
    /// sync runs share the next one (group commit). Nothing acknowledged is ever lost.
    Always,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    /// `never`, `always`, or `interval:MS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "never" => Ok(FsyncPolicy::Never),
            "always" => Ok(FsyncPolicy::Always),
            other => match other.strip_prefix("interval:") {
                Some(ms) => ms
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
                    .ok_or_else(|| format!("bad fsync interval {ms:?}: expected milliseconds > 0")),
                None => Err(format!(
                    "unknown fsync policy {other:?} (never, always, interval:MS)"
                )),
            },
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

/// What recovery does with damage it may not silently drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// A torn tail of the last segment is truncated; any other damage is an error naming the
    /// file and position (the default: nothing acknowledged is dropped without an operator).
    #[default]
    Strict,
    /// Damage anywhere truncates the log at the first bad batch, removing every later segment.
    /// Loses data by design; for operators who prefer availability.
    TruncateAtCorruption,
}

/// How appended batches reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Through the page cache (`write`/`pwritev`, or io_uring writes): an append costs a copy
    /// into the cache and the OS writes it back, with the engine starting writeback every few
    /// MiB. Consumers read the fresh pages from memory. Kafka's model.
    #[default]
    Buffered,
    /// `O_DIRECT` writes from the engine's own aligned staging buffers, which also serve reads of
    /// the newest batches ([`LogConfig::direct_cache_bytes`]); older reads go to the file (page
    /// cache or disk). An append returns once its direct write completed, so it survives a
    /// process crash as under `Buffered` (machine crashes: see [`FsyncPolicy`]). Follows the
    /// disk's own speed where page-cache writeback cannot (storage/FORMAT.md §8,
    /// PERFORMANCE.md). Redpanda's model. Needs a file system with O_DIRECT (not tmpfs).
    Direct,
}

impl std::str::FromStr for WriteMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "buffered" => Ok(WriteMode::Buffered),
            "direct" => Ok(WriteMode::Direct),
            other => Err(format!("unknown write mode {other:?} (buffered or direct)")),
        }
    }
}

impl std::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteMode::Buffered => "buffered",
            WriteMode::Direct => "direct",
        })
    }
}

/// Kafka's defaults where Kafka has one (`log.segment.bytes`, `log.retention.hours`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before one would grow past this (`segment.bytes`, default 1 GiB).
    pub segment_bytes: u64,
    /// Roll when the active segment's first append is older than this (`segment.ms`, default 7 days).
    /// The age is measured from the first append into the segment since the log was opened.
    pub segment_ms: Option<Duration>,
    /// Delete sealed segments whose newest timestamp is older than this (`retention.ms`, default
    /// 7 days; `None` keeps forever).
    pub retention_ms: Option<Duration>,
    /// Delete the oldest sealed segments while the partition is larger than this
    /// (`retention.bytes`, default unlimited).
    pub retention_bytes: Option<u64>,
    /// How often the background thread applies retention (`log.retention.check.interval.ms`,
    /// default 5 minutes; `None` = only on demand).
    pub retention_check_interval: Option<Duration>,
    /// Durability of an acknowledged append.
    pub fsync: FsyncPolicy,
    /// Kafka's `flush.messages` above 1: once this many messages have been appended since the
    /// last sync, the append that reaches the count returns only after an fdatasync that covers
    /// it and everything before it (rolled segments included), as Kafka's flush on the append
    /// path does. `None`: no count (1 is [`FsyncPolicy::Always`]). Combines with `fsync`.
    pub flush_messages: Option<u64>,
    /// Bytes between two offset-index entries (`index.interval.bytes`, default 4096).
    pub index_interval_bytes: u32,
    /// Largest batch accepted (`max.message.bytes`, default 1 MiB + 12 bytes of log overhead, as Kafka).
    pub max_batch_bytes: usize,
    /// Reserve disk blocks for the active segment ahead of its data, [`PREALLOCATE_STEP`] at a
    /// time (`fallocate` keep-size; `log.preallocate`, default on).
    pub preallocate: bool,
    /// What recovery does with damage.
    pub recovery: RecoveryMode,
    /// How appends reach the file (default [`WriteMode::Buffered`]).
    pub write_mode: WriteMode,
    /// Under [`WriteMode::Direct`]: how many bytes of the newest batches stay in the engine's
    /// memory to answer reads without the disk (default 4 MiB per partition; at least one
    /// staging buffer, [`LogConfig::direct_chunk_bytes`], is always kept). The staging buffers
    /// are recycled through this cache, so it is also the memory every direct write comes
    /// from: a larger cache serves consumers further behind from memory, but writes from memory
    /// the CPU caches no longer hold, which measured 10–15% slower on this project's VM
    /// (PERFORMANCE.md, "Latest: direct writes"), and costs that much memory per partition.
    pub direct_cache_bytes: usize,
    /// Lock the partition directory (an `flock` on its `.lock` file, one descriptor per open
    /// log) so no other process opens it. A caller that locks a directory above every log it
    /// opens (the broker locks its data directory) turns it off; two opens of one directory in
    /// one process are refused either way. Default on.
    pub lock_dir: bool,
    /// Close the files of a log nobody wrote or read for this long (checked that often): the
    /// active segment's handles, after a sync, and sealed segments' mappings. They reopen on
    /// the next write or read. `None` keeps them open. Default 30 s.
    pub idle_file_close: Option<Duration>,
    /// The log is a replica: its high watermark is what the owner sets
    /// ([`super::PartitionLog::set_high_watermark`]), not the log end. Default off.
    pub replicated: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(WEEK),
            retention_ms: Some(WEEK),
            retention_bytes: None,
            retention_check_interval: Some(Duration::from_secs(300)),
            fsync: FsyncPolicy::Never,
            flush_messages: None,
            index_interval_bytes: 4096,
            max_batch_bytes: 1_048_588,
            preallocate: true,
            recovery: RecoveryMode::Strict,
            write_mode: WriteMode::Buffered,
            direct_cache_bytes: 4 << 20,
            lock_dir: true,
            idle_file_close: Some(Duration::from_secs(30)),
            replicated: false,
        }
    }
}

/// The most the active segment's blocks are reserved ahead of its data when
/// [`LogConfig::preallocate`] is on (Redpanda's `segment_fallocation_step` defaults to the same
/// 32 MiB). A whole segment up front would hold `segment.bytes` of disk per partition from its
/// first record (6 GiB for an idle six-partition topic at the default 1 GiB).
///
/// The step follows the partition's write rate (FORMAT.md §2): it starts at
/// [`MIN_PREALLOCATE_STEP`], doubles each time the last reservation was made less than
/// [`PREALLOCATE_FAST`] ago, and halves each time it was made more than [`PREALLOCATE_SLOW`]
/// ago. A partition writing tens of MB/s reserves 32 MiB at a time; one that writes a little
/// holds about 1 MiB past its data (640 small partitions reserved 20 GB for 29 MB of data with
/// a fixed 32 MiB step).
pub const PREALLOCATE_STEP: u64 = 32 << 20;

/// The smallest (and first) preallocation step.
pub const MIN_PREALLOCATE_STEP: u64 = 1 << 20;

/// A reservation asked for less than this after the last one doubles the step.
pub const PREALLOCATE_FAST: std::time::Duration = std::time::Duration::from_secs(1);

/// A reservation asked for more than this after the last one halves the step.
pub const PREALLOCATE_SLOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Positions in the offset index are u32, so a segment must stay below 4 GiB; like Kafka's
/// `log.segment.bytes` (an int) the limit is 2 GiB - 1, leaving room for the batch that crosses it.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// The smallest segment that makes sense: one batch header.
pub const MIN_SEGMENT_BYTES: u64 = crate::batch::header::HEADER_LEN as u64;

impl LogConfig {
    /// Rejects settings the engine cannot honour.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(Error::Config(format!(
                "segment.bytes {} is outside [{MIN_SEGMENT_BYTES}, {MAX_SEGMENT_BYTES}]",
                self.segment_bytes
            )));
        }
        if self.max_batch_bytes < crate::batch::header::HEADER_LEN
            || self.max_batch_bytes as u64 > MAX_SEGMENT_BYTES
        {
            return Err(Error::Config(format!(
                "max.message.bytes {} is outside [{}, {MAX_SEGMENT_BYTES}]",
                self.max_batch_bytes,
                crate::batch::header::HEADER_LEN
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::Config("index.interval.bytes must be > 0".into()));
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return Err(Error::Config("fsync interval must be > 0".into()));
        }
        if self.idle_file_close.is_some_and(|d| d.is_zero()) {
            return Err(Error::Config("idle_file_close must be > 0".into()));
        }
        if self.flush_messages.is_some_and(|n| n < 2) {
            return Err(Error::Config(
                "flush_messages must be at least 2 (1 is FsyncPolicy::Always)".into(),
            ));
        }
        Ok(())
    }

    /// Under [`WriteMode::Direct`], the size of one staging buffer: a quarter of the cache,
    /// between 1 and 8 MiB, and room for the largest batch (`max_batch_bytes`, plus the part
    /// of a block a buffer may start with) up to 8 MiB; whole 4 KiB blocks. A batch larger than
    /// that gets a buffer of its own, allocated for it. Reads from memory stop at a buffer's
    /// end, so a fetch there may return less than it asked for (never less than one batch).
    pub fn direct_chunk_bytes(&self) -> usize {
        const MAX: usize = 8 << 20;
        let one_batch = self
            .max_batch_bytes
            .saturating_add(crate::io::DIRECT_ALIGN)
            .min(MAX);
        (self.direct_cache_bytes / 4)
            .clamp(1 << 20, MAX)
            .max(one_batch)
            .next_multiple_of(crate::io::DIRECT_ALIGN)
    }

    /// The largest a segment can become: a batch may start just below `segment_bytes`.
    pub(crate) fn max_segment_len(&self) -> u64 {
        self.segment_bytes + self.max_batch_bytes as u64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_and_prints_back() {
        for s in ["never", "always", "interval:250"] {
            let p: FsyncPolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn defaults_are_valid_and_bad_sizes_are_refused() {
        LogConfig::default().validate().unwrap();
        let c = LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        };
        assert!(matches!(c.validate(), Err(Error::Config(_))));
        let c = LogConfig {
            segment_bytes: 1 << 32,
            ..LogConfig::default()
        };
        assert!(matches!(c.validate(), Err(Error::Config(_))));
    }

    #[test]
    fn a_staging_buffer_is_a_quarter_of_the_cache_within_1_to_8_mib_and_holds_the_largest_batch() {
        let chunk = |cache: usize, max_batch: usize| {
            LogConfig {
                direct_cache_bytes: cache,
                max_batch_bytes: max_batch,
                ..LogConfig::default()
            }
            .direct_chunk_bytes()
        };
        // The defaults: Kafka's largest batch (1 MiB + 12 bytes) and the block it may start in.
        assert_eq!(LogConfig::default().direct_chunk_bytes(), (1 << 20) + 8192);
        assert_eq!(chunk(4 << 20, 64 << 10), 1 << 20);
        assert_eq!(chunk(16 << 20, 64 << 10), 4 << 20);
        assert_eq!(chunk(64 << 20, 64 << 10), 8 << 20);
        assert_eq!(chunk(0, 64 << 10), 1 << 20);
        assert_eq!(chunk(4 << 20, 3 << 20), (3 << 20) + 4096);
        assert_eq!(
            chunk(4 << 20, 20 << 20),
            8 << 20,
            "larger batches get their own"
        );
        assert_eq!(chunk(4 << 20, 5000) % crate::io::DIRECT_ALIGN, 0);
    }
}
