//! Broker settings, named as Kafka names them (`server.properties` reads naturally).
//!
//! Sources, later wins: built-in defaults, the `--config` file (Java properties syntax:
//! `key=value` or `key: value`, `#`/`!` comments), `--set key=value`, then `--data-dir`,
//! `--listen` and `--advertised-listener`. Unknown keys are an error (a typo must not silently
//! fall back to a default).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use strata_storage::batch::Compression;
use strata_storage::io::BackendChoice;
use strata_storage::log::{FsyncPolicy, LogConfig, WriteMode};

/// Every broker-level key Strata understands, its default and what it means. `strata serve
/// --help-config` prints this table; README.md documents it.
pub const BROKER_KEYS: &[(&str, &str, &str)] = &[
    (
        "log.dirs",
        "./strata-data",
        "Data directory (one; `log.dir` is an alias).",
    ),
    (
        "listeners",
        "PLAINTEXT://127.0.0.1:9092",
        "Address to listen on.",
    ),
    (
        "advertised.listeners",
        "",
        "Address clients are told to connect to (default: the listener).",
    ),
    (
        "node.id",
        "0",
        "This broker's id in Metadata (`broker.id` is an alias).",
    ),
    (
        "process.roles",
        "",
        "Cluster roles: `broker,controller` (combined), `controller` or `broker`; empty: a single broker, no quorum.",
    ),
    (
        "controller.quorum.voters",
        "",
        "The metadata quorum's voters, `ID@HOST:PORT,...` (their controller listeners).",
    ),
    (
        "controller.listener.names",
        "CONTROLLER",
        "Names of the listeners in `listeners` that serve the metadata quorum.",
    ),
    (
        "controller.quorum.election.timeout.ms",
        "1000",
        "A voter that hears no leader for this long (to twice it) starts an election.",
    ),
    (
        "strata.metadata.snapshot.entries",
        "1000",
        "Metadata log entries between two snapshots of the metadata image (older entries are then purged).",
    ),
    (
        "broker.heartbeat.interval.ms",
        "2000",
        "How often a broker heartbeats to the active controller.",
    ),
    (
        "broker.session.timeout.ms",
        "9000",
        "A broker without a heartbeat for this long is fenced.",
    ),
    (
        "default.replication.factor",
        "1",
        "Replication factor of a topic created without one.",
    ),
    (
        "min.insync.replicas",
        "1",
        "Default `min.insync.replicas`: in-sync replicas an acks=all produce needs.",
    ),
    (
        "replica.lag.time.max.ms",
        "30000",
        "A follower that has not caught up with its leader for this long leaves the ISR.",
    ),
    (
        "replica.fetch.max.bytes",
        "1048576",
        "Bytes a follower asks per partition in one fetch (at least one batch comes).",
    ),
    (
        "replica.fetch.wait.max.ms",
        "500",
        "How long a follower's fetch waits at the leader for new data.",
    ),
    (
        "num.replica.fetchers",
        "1",
        "Fetcher connections per leader broker a follower uses (1 only: one connection per broker pair).",
    ),
    (
        "unclean.leader.election.enable",
        "false",
        "Elect a replica outside the ISR when none is left (false only: acknowledged data is never given up).",
    ),
    (
        "replica.high.watermark.checkpoint.interval.ms",
        "5000",
        "In a cluster, how often each broker writes its partitions' high watermarks to `replication-offset-checkpoint` (read at start, so a restarted replica does not show what was never acknowledged).",
    ),
    (
        "auto.leader.rebalance.enable",
        "true",
        "In a cluster, the active controller moves each partition's leadership back to its preferred replica (the first of its replicas) once that one is live and in the ISR.",
    ),
    (
        "leader.imbalance.check.interval.seconds",
        "300",
        "How often the active controller looks for partitions to give back to their preferred replica.",
    ),
    (
        "offsets.topic.num.partitions",
        "50",
        "Partitions of `__consumer_offsets` in a cluster: a group's coordinator leads its partition.",
    ),
    (
        "offsets.topic.replication.factor",
        "3",
        "Replicas of each `__consumer_offsets` partition in a cluster; the topic is not created (FindCoordinator answers COORDINATOR_NOT_AVAILABLE) until that many brokers are live.",
    ),
    (
        "offsets.commit.timeout.ms",
        "5000",
        "In a cluster, how long an offset commit waits for every in-sync replica of its `__consumer_offsets` partition (then REQUEST_TIMED_OUT).",
    ),
    (
        "num.partitions",
        "1",
        "Partitions of an auto-created topic or a CreateTopics with -1.",
    ),
    (
        "auto.create.topics.enable",
        "true",
        "Create unknown topics on Metadata requests that allow it.",
    ),
    (
        "log.segment.bytes",
        "1073741824",
        "Default `segment.bytes`.",
    ),
    (
        "log.roll.ms",
        "604800000",
        "Default `segment.ms` (`log.roll.hours` also accepted).",
    ),
    (
        "log.retention.ms",
        "604800000",
        "Default `retention.ms`; -1 keeps forever (`log.retention.minutes`/`.hours` also accepted).",
    ),
    (
        "log.retention.bytes",
        "-1",
        "Default `retention.bytes` per partition; -1 = unlimited.",
    ),
    (
        "log.retention.check.interval.ms",
        "300000",
        "How often retention runs.",
    ),
    (
        "log.flush.interval.messages",
        "9223372036854775807",
        "Default `flush.messages`; 1 means fsync before every acknowledgment (`always`).",
    ),
    (
        "log.flush.interval.ms",
        "",
        "Default `flush.ms`: background fsync interval (unset: the OS flushes).",
    ),
    (
        "log.index.interval.bytes",
        "4096",
        "Bytes between offset-index entries.",
    ),
    (
        "log.preallocate",
        "true",
        "Reserve the active segment's disk blocks 32 MiB ahead of its data.",
    ),
    (
        "message.max.bytes",
        "1048588",
        "Default `max.message.bytes`: largest batch accepted.",
    ),
    (
        "compression.type",
        "producer",
        "Default topic `compression.type`.",
    ),
    (
        "log.message.timestamp.type",
        "CreateTime",
        "Default `message.timestamp.type`.",
    ),
    (
        "socket.request.max.bytes",
        "104857600",
        "Largest request frame; a larger length prefix closes the connection.",
    ),
    (
        "queued.max.request.bytes",
        "536870912",
        "Request bytes read but not yet fully processed, summed over all connections; a connection waits (back-pressure) before reading a frame that would exceed it. At least `socket.request.max.bytes`; -1 = unlimited (Kafka's default; ours is bounded).",
    ),
    (
        "connections.max.idle.ms",
        "600000",
        "Close a connection that has neither sent a byte nor had a request in process for this long (Kafka's name and default); -1 never.",
    ),
    (
        "strata.request.read.timeout.ms",
        "30000",
        "A request frame must arrive whole within this long of its 4-byte length, else the connection is closed and the bytes it held released (a client that stalls mid-frame cannot hold the request budget); -1 never.",
    ),
    (
        "strata.request.processing.memory.bytes",
        "1073741824",
        "Memory requests being decoded and answered may hold together, broker-wide: each reserves an estimate from its size and kind before it is decoded (8 KiB plus, per request byte, 64 bytes for admin requests, whose arrays of names decode into larger structures, 48 for Produce, 16 for ListOffsets and OffsetCommit, 8 for Fetch, 4 for JoinGroup and SyncGroup), and waits for room; a request larger than the whole runs alone.",
    ),
    (
        "max.connections",
        "2147483647",
        "Most client connections open at once; further ones wait in the listen backlog until one closes (as in Kafka).",
    ),
    (
        "num.network.threads",
        "0",
        "Threads serving connections (the async runtime's workers); 0 = one per core. Kafka's name; its default is 3.",
    ),
    (
        "num.io.threads",
        "8",
        "Threads for blocking work (appends, fsyncs, timestamp lookups, topic creation and deletion), at most this many at once; more requests wait. Kafka's name and default.",
    ),
    (
        "strata.log.file.idle.ms",
        "30000",
        "Close a partition's files (after an fsync) once nothing wrote or read it for this long; they reopen on demand, so idle partitions hold no file descriptors. -1 keeps them open.",
    ),
    (
        "group.consumer.session.timeout.ms",
        "45000",
        "Consumer groups of the next-generation protocol (KIP-848): a member silent this long is removed. Kafka's name and default.",
    ),
    (
        "group.consumer.heartbeat.interval.ms",
        "5000",
        "Consumer groups of the next-generation protocol (KIP-848): how often members heartbeat. Kafka's name and default.",
    ),
    (
        "producer.id.expiration.ms",
        "86400000",
        "Forget an idempotent producer's sequence state when its last batch is older than this.",
    ),
    (
        "group.initial.rebalance.delay.ms",
        "3000",
        "How long the first rebalance of an empty consumer group waits for more members to join.",
    ),
    (
        "group.min.session.timeout.ms",
        "6000",
        "Smallest session timeout a group member may ask for (else INVALID_SESSION_TIMEOUT).",
    ),
    (
        "group.max.session.timeout.ms",
        "1800000",
        "Largest session timeout a group member may ask for (else INVALID_SESSION_TIMEOUT).",
    ),
    (
        "offsets.topic.segment.bytes",
        "104857600",
        "Segment size of the committed-offsets log; once the log is larger than this (and than twice its last snapshot) it is compacted to a snapshot of the live offsets.",
    ),
    (
        "strata.decompressed.batch.max.bytes",
        "67108864",
        "Most bytes a produced batch may decompress to when the broker looks inside it (a topic whose compression.type re-encodes); a batch that expands past it is refused with CORRUPT_MESSAGE as soon as it does, or before if its zstd frame declares its size.",
    ),
    (
        "strata.decompression.memory.bytes",
        "134217728",
        "Memory all re-encodings in progress may hold together, broker-wide: each holds its codec's working memory (at most about 10 MiB) plus the topic's max.message.bytes, and waits for its share.",
    ),
    (
        "strata.io.backend",
        "auto",
        "Write path: auto (io_uring if the kernel allows, else plain), io_uring, plain.",
    ),
    (
        "strata.log.write.mode",
        "buffered",
        "How appends reach the segment files: buffered (through the page cache, Kafka's model) or direct (O_DIRECT from the engine's own buffers, which also answer reads of the newest batches; needs a file system with O_DIRECT).",
    ),
    (
        "strata.log.direct.cache.bytes",
        "4194304",
        "With strata.log.write.mode=direct: bytes of each partition's newest batches kept in memory to answer reads (at least one staging buffer, 1 to 8 MiB, is always kept). Direct writes come from the same memory: larger serves lagging consumers from memory but writes slower (PERFORMANCE.md) and costs that much memory per partition.",
    ),
];

/// Topic-level keys (CreateTopics configs, DescribeConfigs), with the broker key they default to.
pub const TOPIC_KEYS: &[(&str, &str)] = &[
    ("retention.ms", "log.retention.ms"),
    ("retention.bytes", "log.retention.bytes"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("compression.type", "compression.type"),
    ("max.message.bytes", "message.max.bytes"),
    ("message.timestamp.type", "log.message.timestamp.type"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("cleanup.policy", ""),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("preallocate", "log.preallocate"),
    ("min.insync.replicas", "min.insync.replicas"),
];

/// A config's type, as DescribeConfigs (v3+) reports it (Kafka's `ConfigDef.Type` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic config as Kafka 4.x defines it.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    /// The broker setting that supplies its default (Kafka's synonym), or "" if none.
    pub broker_key: &'static str,
    /// Kafka's default (for the configs Strata does not implement, the value it reports).
    pub kafka_default: &'static str,
    pub kind: ConfigType,
    /// `None`: implemented ([`TOPIC_KEYS`]). Otherwise why not: it is listed with Kafka's
    /// default, read-only, and a change is refused with this reason.
    pub unsupported: Option<&'static str>,
    pub doc: &'static str,
}

const NO_COMPACTION: &str = "log compaction is not implemented (cleanup.policy=delete only)";
const NO_UNCLEAN: &str =
    "unclean leader election is not supported: a replica outside the ISR is never elected";
const NO_THROTTLE: &str = "replication throttling is not implemented";
const NO_TIERED: &str = "tiered storage is not implemented";

/// Every topic config Kafka 4.x lists, in name order: what DescribeConfigs answers.
pub const KAFKA_TOPIC_CONFIGS: &[TopicConfigDef] = &{
    use ConfigType as T;
    const fn d(
        name: &'static str,
        broker_key: &'static str,
        kafka_default: &'static str,
        kind: ConfigType,
        unsupported: Option<&'static str>,
        doc: &'static str,
    ) -> TopicConfigDef {
        TopicConfigDef {
            name,
            broker_key,
            kafka_default,
            kind,
            unsupported,
            doc,
        }
    }
    [
        d(
            "cleanup.policy",
            "log.cleanup.policy",
            "delete",
            T::List,
            None,
            "How old segments are retired: delete (compaction is not implemented).",
        ),
        d(
            "compression.gzip.level",
            "compression.gzip.level",
            "-1",
            T::Int,
            Some("codec levels are not configurable (each codec's default level)"),
            "Level of gzip compression when the broker compresses.",
        ),
        d(
            "compression.lz4.level",
            "compression.lz4.level",
            "9",
            T::Int,
            Some("codec levels are not configurable (each codec's default level)"),
            "Level of lz4 compression when the broker compresses.",
        ),
        d(
            "compression.type",
            "compression.type",
            "producer",
            T::String,
            None,
            "Codec of stored batches: producer keeps the client's; none, gzip, snappy, lz4, zstd re-encode.",
        ),
        d(
            "compression.zstd.level",
            "compression.zstd.level",
            "3",
            T::Int,
            Some("codec levels are not configurable (each codec's default level)"),
            "Level of zstd compression when the broker compresses.",
        ),
        d(
            "delete.retention.ms",
            "log.cleaner.delete.retention.ms",
            "86400000",
            T::Long,
            Some(NO_COMPACTION),
            "How long delete tombstones are kept by compaction.",
        ),
        d(
            "file.delete.delay.ms",
            "log.segment.delete.delay.ms",
            "60000",
            T::Long,
            Some("segments are unlinked at once; readers keep their mappings"),
            "Delay before a deleted segment's file is removed.",
        ),
        d(
            "flush.messages",
            "log.flush.interval.messages",
            "9223372036854775807",
            T::Long,
            None,
            "fsync once this many messages were appended since the last (1: before every acknowledgement).",
        ),
        d(
            "flush.ms",
            "log.flush.interval.ms",
            "9223372036854775807",
            T::Long,
            None,
            "fsync at least this often (0: before every acknowledgement).",
        ),
        d(
            "follower.replication.throttled.replicas",
            "follower.replication.throttled.replicas",
            "",
            T::List,
            Some(NO_THROTTLE),
            "Replicas whose replication is throttled on the follower side.",
        ),
        d(
            "index.interval.bytes",
            "log.index.interval.bytes",
            "4096",
            T::Int,
            None,
            "Bytes between offset-index entries.",
        ),
        d(
            "leader.replication.throttled.replicas",
            "leader.replication.throttled.replicas",
            "",
            T::List,
            Some(NO_THROTTLE),
            "Replicas whose replication is throttled on the leader side.",
        ),
        d(
            "local.retention.bytes",
            "log.local.retention.bytes",
            "-2",
            T::Long,
            Some(NO_TIERED),
            "Bytes kept locally when tiered storage is on.",
        ),
        d(
            "local.retention.ms",
            "log.local.retention.ms",
            "-2",
            T::Long,
            Some(NO_TIERED),
            "Time kept locally when tiered storage is on.",
        ),
        d(
            "max.compaction.lag.ms",
            "log.cleaner.max.compaction.lag.ms",
            "9223372036854775807",
            T::Long,
            Some(NO_COMPACTION),
            "Longest a record stays uncompacted.",
        ),
        d(
            "max.message.bytes",
            "message.max.bytes",
            "1048588",
            T::Int,
            None,
            "Largest batch accepted.",
        ),
        d(
            "message.timestamp.after.max.ms",
            "log.message.timestamp.after.max.ms",
            "3600000",
            T::Long,
            Some("record timestamps are not bounded"),
            "Most a record's timestamp may be ahead of the broker's clock.",
        ),
        d(
            "message.timestamp.before.max.ms",
            "log.message.timestamp.before.max.ms",
            "9223372036854775807",
            T::Long,
            Some("record timestamps are not bounded"),
            "Most a record's timestamp may be behind the broker's clock.",
        ),
        d(
            "message.timestamp.type",
            "log.message.timestamp.type",
            "CreateTime",
            T::String,
            None,
            "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's.",
        ),
        d(
            "min.cleanable.dirty.ratio",
            "log.cleaner.min.cleanable.ratio",
            "0.5",
            T::Double,
            Some(NO_COMPACTION),
            "Dirty ratio that starts compaction.",
        ),
        d(
            "min.compaction.lag.ms",
            "log.cleaner.min.compaction.lag.ms",
            "0",
            T::Long,
            Some(NO_COMPACTION),
            "Shortest a record stays uncompacted.",
        ),
        d(
            "min.insync.replicas",
            "min.insync.replicas",
            "1",
            T::Int,
            None,
            "In-sync replicas an acks=all produce needs.",
        ),
        d(
            "preallocate",
            "log.preallocate",
            "false",
            T::Boolean,
            None,
            "Reserve the active segment's blocks ahead of its data (32 MiB steps).",
        ),
        d(
            "remote.log.copy.disable",
            "",
            "false",
            T::Boolean,
            Some(NO_TIERED),
            "Stop copying segments to remote storage.",
        ),
        d(
            "remote.log.delete.on.disable",
            "",
            "false",
            T::Boolean,
            Some(NO_TIERED),
            "Delete remote segments when tiered storage is turned off.",
        ),
        d(
            "remote.storage.enable",
            "",
            "false",
            T::Boolean,
            Some(NO_TIERED),
            "Tiered storage for this topic.",
        ),
        d(
            "retention.bytes",
            "log.retention.bytes",
            "-1",
            T::Long,
            None,
            "Bytes kept per partition before old segments are deleted (-1: no limit).",
        ),
        d(
            "retention.ms",
            "log.retention.ms",
            "604800000",
            T::Long,
            None,
            "How long segments are kept (-1: forever).",
        ),
        d(
            "segment.bytes",
            "log.segment.bytes",
            "1073741824",
            T::Int,
            None,
            "Segment size.",
        ),
        d(
            "segment.index.bytes",
            "log.index.size.max.bytes",
            "10485760",
            T::Int,
            Some("index files grow with their segment; no fixed size"),
            "Size of a segment's index files.",
        ),
        d(
            "segment.jitter.ms",
            "log.roll.jitter.ms",
            "0",
            T::Long,
            Some("segments roll at segment.ms exactly"),
            "Random jitter subtracted from segment.ms.",
        ),
        d(
            "segment.ms",
            "log.roll.ms",
            "604800000",
            T::Long,
            None,
            "Roll the active segment after this long.",
        ),
        d(
            "unclean.leader.election.enable",
            "unclean.leader.election.enable",
            "false",
            T::Boolean,
            Some(NO_UNCLEAN),
            "Elect an out-of-sync replica as leader.",
        ),
    ]
};

/// Aliases Kafka also accepts, mapped to the key we store, with a unit multiplier.
const ALIASES: &[(&str, &str, i64)] = &[
    ("log.dir", "log.dirs", 1),
    ("broker.id", "node.id", 1),
    ("log.roll.hours", "log.roll.ms", 3_600_000),
    ("log.retention.hours", "log.retention.ms", 3_600_000),
    ("log.retention.minutes", "log.retention.ms", 60_000),
];

/// The broker's settings as raw Kafka key/values, with typed accessors.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    values: BTreeMap<String, String>,
    /// Keys set explicitly (file or `--set`), for DescribeConfigs' `config_source`.
    explicit: std::collections::BTreeSet<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            values: BROKER_KEYS
                .iter()
                .map(|(k, v, _)| (k.to_string(), v.to_string()))
                .collect(),
            explicit: Default::default(),
        }
    }
}

/// Parses Java-properties text into key/value pairs (no line continuations or escapes beyond
/// trimming; Kafka's own files need none).
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(i) = line.find(['=', ':']) else {
            bail!("line {}: expected key=value, got {line:?}", n + 1);
        };
        let (k, v) = line.split_at(i);
        out.push((
            k.trim().to_string(),
            v.get(1..).unwrap_or("").trim().to_string(),
        ));
    }
    Ok(out)
}

impl BrokerConfig {
    /// Sets one key (resolving aliases), checking that the key is known and the value parses.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let (key, value) = match ALIASES.iter().find(|(a, _, _)| *a == key) {
            Some((_, target, 1)) => (*target, value.to_string()),
            Some((_, target, mult)) => {
                let n: i64 = value
                    .parse()
                    .with_context(|| format!("{key}: expected a whole number, got {value:?}"))?;
                (
                    *target,
                    if n < 0 {
                        n.to_string()
                    } else {
                        (n * mult).to_string()
                    },
                )
            }
            None => (key, value.to_string()),
        };
        if !BROKER_KEYS.iter().any(|(k, _, _)| *k == key) {
            bail!("unknown setting {key:?} (see README.md: Broker settings)");
        }
        self.values.insert(key.to_string(), value);
        self.explicit.insert(key.to_string());
        self.validate_key(key)
    }

    /// Loads a properties file.
    pub fn load_file(&mut self, path: &std::path::Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        for (k, v) in parse_properties(&text).with_context(|| format!("in {}", path.display()))? {
            self.set(&k, &v)
                .with_context(|| format!("in {}", path.display()))?;
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("", String::as_str)
    }

    pub fn is_explicit(&self, key: &str) -> bool {
        self.explicit.contains(key)
    }

    fn i64(&self, key: &str) -> Result<i64> {
        let v = self.get(key);
        v.parse()
            .with_context(|| format!("{key}: expected a whole number, got {v:?}"))
    }

    fn validate_key(&self, key: &str) -> Result<()> {
        match key {
            // Each entry must parse; which is the client one is known once
            // controller.listener.names is (either may be set first).
            "listeners" => self
                .listener_entries(key)
                .iter()
                .try_for_each(|(_, a)| parse_listener(a).map(drop)),
            "process.roles" | "controller.listener.names" => Ok(()),
            "unclean.leader.election.enable" => match self.get(key) {
                "false" => Ok(()),
                v => bail!(
                    "unclean.leader.election.enable={v}: only false is supported (a replica outside the ISR is never elected: it could lose acknowledged records)"
                ),
            },
            "num.replica.fetchers" => match self.i64(key)? {
                1 => Ok(()),
                v => bail!(
                    "num.replica.fetchers={v}: only 1 is supported (one fetcher connection per leader broker)"
                ),
            },
            "controller.quorum.voters" => crate::cluster::parse_voters(self.get(key)).map(drop),
            "advertised.listeners" => self.advertised().map(drop),
            "strata.io.backend" => self.io_backend().map(drop),
            "strata.log.write.mode" => self.write_mode().map(drop),
            "strata.log.direct.cache.bytes" => self.direct_cache_bytes().map(drop),
            "compression.type" => parse_topic_compression(self.get(key)).map(drop),
            "log.message.timestamp.type" => parse_timestamp_type(self.get(key)).map(drop),
            "auto.create.topics.enable" | "log.preallocate" | "auto.leader.rebalance.enable" => {
                self.bool(key).map(drop)
            }
            "leader.imbalance.check.interval.seconds" => match self.i64(key)? {
                v if v >= 1 => Ok(()),
                v => bail!("leader.imbalance.check.interval.seconds must be at least 1, got {v}"),
            },
            "log.dirs" => Ok(()),
            "log.flush.interval.ms" if self.get(key).is_empty() => Ok(()),
            "max.connections" => self.max_connections().map(drop),
            "num.network.threads" => self.network_threads().map(drop),
            "num.io.threads" => self.io_threads().map(drop),
            "strata.log.file.idle.ms" => self.file_idle().map(drop),
            "strata.decompressed.batch.max.bytes" => self.decompressed_batch_max().map(drop),
            "strata.request.processing.memory.bytes" => self.request_processing_memory().map(drop),
            "strata.decompression.memory.bytes" => self.decompression_memory().map(drop),
            "connections.max.idle.ms" | "strata.request.read.timeout.ms" => {
                self.optional_millis(key).map(drop)
            }
            "producer.id.expiration.ms" => self.producer_id_expiration_ms().map(drop),
            "offsets.topic.replication.factor" => self.offsets_replication_factor().map(drop),
            "offsets.commit.timeout.ms" => self.offsets_commit_timeout().map(drop),
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.high_watermark_checkpoint_interval().map(drop)
            }
            // Each positive here; that the interval is below the session timeout is checked
            // when the broker opens (either may be set first).
            "group.consumer.session.timeout.ms" | "group.consumer.heartbeat.interval.ms" => {
                match self.millis(key)? {
                    d if d.is_zero() => bail!("{key} must be positive"),
                    _ => Ok(()),
                }
            }
            "socket.request.max.bytes" => {
                let v = self.i64(key)?;
                if !(8..=i64::from(i32::MAX)).contains(&v) {
                    bail!(
                        "socket.request.max.bytes must be in 8..={}, got {v}",
                        i32::MAX
                    );
                }
                Ok(())
            }
            _ => self.i64(key).map(drop),
        }
    }

    fn bool(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            "true" => Ok(true),
            "false" => Ok(false),
            v => bail!("{key}: expected true or false, got {v:?}"),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(self.get("log.dirs"))
    }

    /// `listeners` as (name, value): `NAME://host:port` entries, or one bare `host:port`
    /// (named PLAINTEXT).
    fn listener_entries(&self, key: &str) -> Vec<(String, String)> {
        self.get(key)
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once("://") {
                Some((name, addr)) => (name.to_string(), addr.to_string()),
                None => ("PLAINTEXT".to_string(), e.to_string()),
            })
            .collect()
    }

    fn is_controller_listener(&self, name: &str) -> bool {
        self.get("controller.listener.names")
            .split(',')
            .any(|n| n.trim() == name)
    }

    /// The client listener: the first entry of `listeners` that is not a controller listener
    /// (`PLAINTEXT://host:port` or `host:port`).
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        let entries = self.listener_entries("listeners");
        let client = entries
            .iter()
            .find(|(n, _)| !self.is_controller_listener(n))
            .with_context(|| {
                format!(
                    "listeners {:?}: no client listener (only controller ones)",
                    self.get("listeners")
                )
            })?;
        parse_listener(&client.1)
    }

    /// Sets the client listener (`--listen`), keeping the controller listeners of
    /// `listeners`.
    pub fn set_client_listener(&mut self, addr: &str) -> Result<()> {
        let v = self.with_client_listener(addr.strip_prefix("PLAINTEXT://").unwrap_or(addr));
        self.set("listeners", &v)
    }

    /// `listeners` with its client entry replaced by `PLAINTEXT://addr`, its controller
    /// entries kept.
    fn with_client_listener(&self, addr: &str) -> String {
        let mut entries: Vec<String> = self
            .listener_entries("listeners")
            .into_iter()
            .filter(|(n, _)| self.is_controller_listener(n))
            .map(|(n, a)| format!("{n}://{a}"))
            .collect();
        entries.insert(0, format!("PLAINTEXT://{addr}"));
        entries.join(",")
    }

    /// The controller listener of `listeners`, if one is named there.
    pub fn controller_listener(&self) -> Result<Option<SocketAddr>> {
        self.listener_entries("listeners")
            .iter()
            .find(|(n, _)| self.is_controller_listener(n))
            .map(|(_, a)| parse_listener(a))
            .transpose()
    }

    /// The host and port advertised in Metadata.
    pub fn advertised(&self) -> Result<(String, u16)> {
        let v = self.get("advertised.listeners");
        let v = if v.is_empty() {
            self.get("listeners")
        } else {
            v
        };
        let entries = if self.get("advertised.listeners").is_empty() {
            self.listener_entries("listeners")
        } else {
            self.listener_entries("advertised.listeners")
        };
        let v = entries
            .iter()
            .find(|(n, _)| !self.is_controller_listener(n))
            .map_or(v, |(_, a)| a.as_str());
        let (host, port) = v
            .rsplit_once(':')
            .with_context(|| format!("advertised listener {v:?}: expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("advertised listener {v:?}: bad port"))?;
        Ok((host.to_string(), port))
    }

    /// Once the real listening address is known (port 0 in tests), advertise it unless told otherwise.
    pub fn set_bound_addr(&mut self, addr: SocketAddr) {
        let v = self.with_client_listener(&addr.to_string());
        self.values.insert("listeners".into(), v);
    }

    pub fn node_id(&self) -> Result<i32> {
        let v = self.i64("node.id")?;
        i32::try_from(v).context("node.id out of range")
    }

    pub fn num_partitions(&self) -> Result<i32> {
        let v = self.i64("num.partitions")?;
        if !(1..=100_000).contains(&v) {
            bail!("num.partitions must be in 1..=100000, got {v}");
        }
        Ok(v as i32)
    }

    pub fn auto_create_topics(&self) -> bool {
        self.bool("auto.create.topics.enable").unwrap_or(true)
    }

    /// `queued.max.request.bytes`: `None` when unlimited (-1). Must admit the largest frame.
    pub fn queued_request_budget(&self) -> Result<Option<usize>> {
        let v = self.i64("queued.max.request.bytes")?;
        if v == -1 {
            return Ok(None);
        }
        let frame = self.max_frame_bytes();
        match usize::try_from(v) {
            Ok(n) if n >= frame => Ok(Some(n)),
            _ => bail!(
                "queued.max.request.bytes must be -1 or at least socket.request.max.bytes ({frame}), got {v}"
            ),
        }
    }

    /// `max.connections`.
    pub fn max_connections(&self) -> Result<usize> {
        let v = self.i64("max.connections")?;
        match usize::try_from(v) {
            Ok(n) if n >= 1 => Ok(n),
            _ => bail!("max.connections must be at least 1, got {v}"),
        }
    }

    /// `num.network.threads` (0: one per core).
    pub fn network_threads(&self) -> Result<usize> {
        let v = self.i64("num.network.threads")?;
        match usize::try_from(v) {
            Ok(0) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
            Ok(n) if n <= 256 => Ok(n),
            _ => bail!("num.network.threads must be 0 to 256, got {v}"),
        }
    }

    /// `num.io.threads`.
    pub fn io_threads(&self) -> Result<usize> {
        let v = self.i64("num.io.threads")?;
        match usize::try_from(v) {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => bail!("num.io.threads must be 1 to 1024, got {v}"),
        }
    }

    /// `strata.log.file.idle.ms` (`None`: never close).
    pub fn file_idle(&self) -> Result<Option<Duration>> {
        match self.i64("strata.log.file.idle.ms")? {
            -1 => Ok(None),
            v if v >= 1 => Ok(Some(Duration::from_millis(v as u64))),
            v => bail!("strata.log.file.idle.ms must be -1 or at least 1, got {v}"),
        }
    }

    /// `strata.request.processing.memory.bytes`.
    pub fn request_processing_memory(&self) -> Result<usize> {
        let v = self.i64("strata.request.processing.memory.bytes")?;
        match usize::try_from(v) {
            Ok(n) if n >= 1 << 20 => Ok(n),
            _ => bail!("strata.request.processing.memory.bytes must be at least 1048576, got {v}"),
        }
    }

    /// `strata.decompressed.batch.max.bytes`.
    pub fn decompressed_batch_max(&self) -> Result<usize> {
        let v = self.i64("strata.decompressed.batch.max.bytes")?;
        match usize::try_from(v) {
            Ok(n) if n >= 1024 => Ok(n),
            _ => bail!("strata.decompressed.batch.max.bytes must be at least 1024, got {v}"),
        }
    }

    /// `strata.decompression.memory.bytes`.
    pub fn decompression_memory(&self) -> Result<usize> {
        let v = self.i64("strata.decompression.memory.bytes")?;
        let min = strata_storage::batch::stream::RECODE_WORKING_BYTES;
        match usize::try_from(v) {
            Ok(n) if n >= min => Ok(n),
            _ => bail!("strata.decompression.memory.bytes must be at least {min}, got {v}"),
        }
    }

    /// `connections.max.idle.ms`: `None` for -1 (never).
    pub fn connections_max_idle(&self) -> Result<Option<Duration>> {
        self.optional_millis("connections.max.idle.ms")
    }

    /// `strata.request.read.timeout.ms`: `None` for -1 (never).
    pub fn request_read_timeout(&self) -> Result<Option<Duration>> {
        self.optional_millis("strata.request.read.timeout.ms")
    }

    /// A positive number of milliseconds, or -1 for none.
    fn optional_millis(&self, key: &str) -> Result<Option<Duration>> {
        match self.i64(key)? {
            -1 => Ok(None),
            v if v > 0 => Ok(Some(Duration::from_millis(v as u64))),
            v => bail!("{key} must be > 0 or -1, got {v}"),
        }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.i64("socket.request.max.bytes")
            .ok()
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(104_857_600)
    }

    pub fn io_backend(&self) -> Result<BackendChoice> {
        self.get("strata.io.backend")
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))
    }

    pub fn write_mode(&self) -> Result<WriteMode> {
        self.get("strata.log.write.mode")
            .parse()
            .map_err(|e: String| anyhow::anyhow!("strata.log.write.mode: {e}"))
    }

    pub fn direct_cache_bytes(&self) -> Result<usize> {
        let v = self.i64("strata.log.direct.cache.bytes")?;
        usize::try_from(v)
            .map_err(|_| anyhow::anyhow!("strata.log.direct.cache.bytes must be >= 0, got {v}"))
    }

    pub fn retention_check_interval(&self) -> Result<Option<Duration>> {
        let v = self.i64("log.retention.check.interval.ms")?;
        Ok((v > 0).then(|| Duration::from_millis(v as u64)))
    }

    pub fn preallocate(&self) -> bool {
        self.bool("log.preallocate").unwrap_or(true)
    }

    fn millis(&self, key: &str) -> Result<Duration> {
        let v = self.i64(key)?;
        if v < 0 {
            bail!("{key} must be >= 0, got {v}");
        }
        Ok(Duration::from_millis(v as u64))
    }

    /// `group.consumer.session.timeout.ms`.
    pub fn consumer_session_timeout(&self) -> Result<Duration> {
        let d = self.millis("group.consumer.session.timeout.ms")?;
        if d.is_zero() {
            bail!("group.consumer.session.timeout.ms must be positive");
        }
        Ok(d)
    }

    /// `group.consumer.heartbeat.interval.ms`.
    pub fn consumer_heartbeat_interval(&self) -> Result<Duration> {
        let d = self.millis("group.consumer.heartbeat.interval.ms")?;
        if d.is_zero() || d > self.consumer_session_timeout()? {
            bail!(
                "group.consumer.heartbeat.interval.ms must be positive and below the session timeout"
            );
        }
        Ok(d)
    }

    /// `producer.id.expiration.ms`, in ms (> 0).
    pub fn producer_id_expiration_ms(&self) -> Result<i64> {
        let v = self.i64("producer.id.expiration.ms")?;
        if v <= 0 {
            bail!("producer.id.expiration.ms must be > 0, got {v}");
        }
        Ok(v)
    }

    pub fn group_initial_rebalance_delay(&self) -> Result<Duration> {
        self.millis("group.initial.rebalance.delay.ms")
    }

    pub fn group_min_session_timeout(&self) -> Result<Duration> {
        self.millis("group.min.session.timeout.ms")
    }

    pub fn group_max_session_timeout(&self) -> Result<Duration> {
        self.millis("group.max.session.timeout.ms")
    }

    /// `offsets.topic.replication.factor` (1..=32767).
    pub fn offsets_replication_factor(&self) -> Result<i16> {
        match i16::try_from(self.i64("offsets.topic.replication.factor")?) {
            Ok(v) if v >= 1 => Ok(v),
            _ => bail!("offsets.topic.replication.factor must be in 1..=32767"),
        }
    }

    /// `replica.high.watermark.checkpoint.interval.ms` (positive).
    pub fn high_watermark_checkpoint_interval(&self) -> Result<Duration> {
        match self.millis("replica.high.watermark.checkpoint.interval.ms")? {
            d if d.is_zero() => {
                bail!("replica.high.watermark.checkpoint.interval.ms must be positive")
            }
            d => Ok(d),
        }
    }

    /// `offsets.commit.timeout.ms` (positive).
    pub fn offsets_commit_timeout(&self) -> Result<Duration> {
        match self.millis("offsets.commit.timeout.ms")? {
            d if d.is_zero() => bail!("offsets.commit.timeout.ms must be positive"),
            d => Ok(d),
        }
    }

    pub fn offsets_segment_bytes(&self) -> Result<u64> {
        let v = self.i64("offsets.topic.segment.bytes")?;
        if !(4096..=i64::from(i32::MAX)).contains(&v) {
            bail!("offsets.topic.segment.bytes must be in 4096..=2147483647, got {v}");
        }
        Ok(v as u64)
    }

    /// The default value of a topic key, from the broker setting it maps to.
    pub fn topic_default(&self, topic_key: &str) -> String {
        match TOPIC_KEYS.iter().find(|(k, _)| *k == topic_key) {
            Some((_, "")) => "delete".into(),
            Some((_, b)) => self.get(b).to_string(),
            None => String::new(),
        }
    }
}

fn parse_listener(v: &str) -> Result<SocketAddr> {
    let v = v.strip_prefix("PLAINTEXT://").unwrap_or(v);
    v.parse()
        .with_context(|| format!("listener {v:?}: expected IP:PORT, e.g. 127.0.0.1:9092"))
}

/// `compression.type`: `producer` keeps the client's codec, anything else re-encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    Producer,
    Codec(Compression),
}

pub fn parse_topic_compression(v: &str) -> Result<TopicCompression> {
    if v == "producer" {
        return Ok(TopicCompression::Producer);
    }
    v.parse()
        .map(TopicCompression::Codec)
        .map_err(|e: String| anyhow::anyhow!("compression.type: {e} or producer"))
}

pub fn parse_timestamp_type(v: &str) -> Result<bool> {
    match v {
        "CreateTime" => Ok(false),
        "LogAppendTime" => Ok(true),
        _ => bail!("message.timestamp.type must be CreateTime or LogAppendTime, got {v:?}"),
    }
}

/// The effective settings of one topic: broker defaults overlaid with the topic's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
    pub log: LogConfig,
    pub compression: TopicCompression,
    pub log_append_time: bool,
    /// `strata.decompressed.batch.max.bytes` (a broker setting every topic uses).
    pub max_decompressed: usize,
    /// `min.insync.replicas`: an `acks=all` produce needs this many in-sync replicas.
    pub min_insync_replicas: usize,
}

impl TopicConfig {
    /// Validates `overrides` and computes the engine settings.
    pub fn resolve(broker: &BrokerConfig, overrides: BTreeMap<String, String>) -> Result<Self> {
        for k in overrides.keys() {
            if TOPIC_KEYS.iter().any(|(t, _)| t == k) {
                continue;
            }
            match KAFKA_TOPIC_CONFIGS.iter().find(|d| d.name == k) {
                Some(TopicConfigDef {
                    unsupported: Some(why),
                    ..
                }) => bail!("{k} is not supported by Strata: {why}"),
                _ => bail!("unknown topic config {k:?}"),
            }
        }
        let get = |k: &str| -> String {
            overrides
                .get(k)
                .cloned()
                .unwrap_or_else(|| broker.topic_default(k))
        };
        let num = |k: &str| -> Result<i64> {
            let v = get(k);
            v.parse()
                .with_context(|| format!("{k}: expected a whole number, got {v:?}"))
        };
        let ms = |k: &str| -> Result<Option<Duration>> {
            let v = num(k)?;
            Ok((v >= 0).then(|| Duration::from_millis(v as u64)))
        };
        if get("cleanup.policy") != "delete" {
            bail!("cleanup.policy: only \"delete\" is supported");
        }
        // Kafka's flush.messages: sync once this many messages are appended since the last
        // sync (1: before every acknowledgement; Long.MAX_VALUE, the default: never by count).
        let flush_messages = num("flush.messages")?;
        if flush_messages < 1 {
            bail!("flush.messages must be at least 1, got {flush_messages}");
        }
        // Kafka's flush.ms: sync when the oldest unsynced message is this old (0: before every
        // acknowledgement, as Strata cannot sync more often; Long.MAX_VALUE or unset: never by
        // time).
        let flush_ms = get("flush.ms");
        let interval = if flush_ms.is_empty() {
            None
        } else {
            let v: i64 = flush_ms
                .parse()
                .with_context(|| format!("flush.ms: expected milliseconds, got {flush_ms:?}"))?;
            if v < 0 {
                bail!("flush.ms must be at least 0, got {v}");
            }
            (v != i64::MAX).then(|| Duration::from_millis(v as u64))
        };
        let fsync = match interval {
            _ if flush_messages == 1 => FsyncPolicy::Always,
            Some(d) if d.is_zero() => FsyncPolicy::Always,
            Some(d) => FsyncPolicy::Interval(d),
            None => FsyncPolicy::Never,
        };
        let flush_messages =
            (flush_messages > 1 && flush_messages != i64::MAX).then_some(flush_messages as u64);
        let retention_bytes = num("retention.bytes")?;
        let segment_bytes = num("segment.bytes")?;
        let max_message_bytes = num("max.message.bytes")?;
        let log = LogConfig {
            segment_bytes: u64::try_from(segment_bytes)
                .context("segment.bytes must be positive")?,
            segment_ms: ms("segment.ms")?,
            retention_ms: ms("retention.ms")?,
            retention_bytes: (retention_bytes >= 0).then_some(retention_bytes as u64),
            retention_check_interval: broker.retention_check_interval()?,
            fsync,
            flush_messages,
            index_interval_bytes: u32::try_from(num("index.interval.bytes")?)
                .ok()
                .filter(|n| *n >= 1)
                .context("index.interval.bytes must be in 1..=4294967295")?,
            max_batch_bytes: usize::try_from(max_message_bytes)
                .context("max.message.bytes must be positive")?,
            preallocate: match get("preallocate").as_str() {
                "true" => true,
                "false" => false,
                v => bail!("preallocate must be true or false, got {v:?}"),
            },
            write_mode: broker.write_mode()?,
            direct_cache_bytes: broker.direct_cache_bytes()?,
            // The broker locks its data directory (one descriptor), not every partition's.
            lock_dir: false,
            idle_file_close: broker.file_idle()?,
            // In a cluster the high watermark is what replication says, not the log end.
            replicated: !broker.get("process.roles").trim().is_empty(),
            ..LogConfig::default()
        };
        log.validate()?;
        let min_isr = num("min.insync.replicas")?;
        if min_isr < 1 {
            bail!("min.insync.replicas must be at least 1, got {min_isr}");
        }
        Ok(TopicConfig {
            min_insync_replicas: usize::try_from(min_isr).unwrap_or(usize::MAX),
            compression: parse_topic_compression(&get("compression.type"))?,
            log_append_time: parse_timestamp_type(&get("message.timestamp.type"))?,
            overrides,
            log,
            max_decompressed: broker.decompressed_batch_max()?,
        })
    }

    /// The effective value of a topic key and whether the topic overrides it: Kafka's
    /// default for the configs Strata does not implement, and Kafka's "never" for an unset
    /// `flush.ms`.
    pub fn value(&self, broker: &BrokerConfig, key: &str) -> (String, bool) {
        if let Some(v) = self.overrides.get(key) {
            return (v.clone(), true);
        }
        let def = KAFKA_TOPIC_CONFIGS.iter().find(|d| d.name == key);
        if let Some(d) = def.filter(|d| d.unsupported.is_some()) {
            return (d.kafka_default.to_string(), false);
        }
        let v = broker.topic_default(key);
        if v.is_empty()
            && let Some(d) = def
        {
            return (d.kafka_default.to_string(), false);
        }
        (v, false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_properties_with_kafka_names_and_aliases_load() {
        let text = "# a Kafka file\nlog.dir=/tmp/x\nnum.partitions = 3\nlog.retention.hours=2\nbroker.id: 7\n";
        let mut c = BrokerConfig::default();
        for (k, v) in parse_properties(text).unwrap() {
            c.set(&k, &v).unwrap();
        }
        assert_eq!(c.data_dir(), PathBuf::from("/tmp/x"));
        assert_eq!(c.num_partitions().unwrap(), 3);
        assert_eq!(c.get("log.retention.ms"), "7200000");
        assert_eq!(c.node_id().unwrap(), 7);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let mut c = BrokerConfig::default();
        assert!(c.set("log.retention.msx", "1").is_err());
        assert!(c.set("num.partitions", "many").is_err());
        assert!(c.set("listeners", "nowhere").is_err());
        assert!(c.set("strata.io.backend", "floppy").is_err());
        assert!(c.set("strata.log.write.mode", "sideways").is_err());
        assert!(c.set("strata.log.direct.cache.bytes", "-1").is_err());
        assert!(c.set("producer.id.expiration.ms", "0").is_err());
        assert!(parse_properties("novalue").is_err());
    }

    #[test]
    fn flush_settings_map_to_fsync_policies() {
        let b = BrokerConfig::default();
        let t = |pairs: &[(&str, &str)]| {
            TopicConfig::resolve(
                &b,
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
            .unwrap()
            .log
            .fsync
        };
        assert_eq!(t(&[]), FsyncPolicy::Never);
        assert_eq!(t(&[("flush.messages", "1")]), FsyncPolicy::Always);
        assert_eq!(
            t(&[("flush.ms", "250")]),
            FsyncPolicy::Interval(Duration::from_millis(250))
        );
        assert_eq!(t(&[("flush.ms", "0")]), FsyncPolicy::Always);
        let count = |v: &str| {
            TopicConfig::resolve(&b, [("flush.messages".to_string(), v.to_string())].into())
                .map(|c| (c.log.fsync, c.log.flush_messages))
        };
        assert_eq!(count("1").unwrap(), (FsyncPolicy::Always, None));
        assert_eq!(count("500").unwrap(), (FsyncPolicy::Never, Some(500)));
        assert_eq!(
            count("9223372036854775807").unwrap(),
            (FsyncPolicy::Never, None)
        );
        for bad in ["0", "-3"] {
            assert!(count(bad).is_err(), "flush.messages={bad}");
        }
        assert!(
            TopicConfig::resolve(&b, [("flush.ms".to_string(), "-1".to_string())].into()).is_err()
        );
        assert!(TopicConfig::resolve(&b, [("bogus".to_string(), "1".to_string())].into()).is_err());
        assert!(
            TopicConfig::resolve(
                &b,
                [("cleanup.policy".to_string(), "compact".to_string())].into()
            )
            .is_err()
        );
    }
}
