//! `strata verify`: check every byte of a data directory, partition, segment or index file.
//!
//! Every batch is walked by the engine's [`BatchScanner`] (length bounds, magic, CRC-32C,
//! contiguous offsets from the file name's base), then checked for a known codec and
//! `lastOffsetDelta == recordCount - 1`; segments must continue each other; every offset-index
//! and time-index entry is judged against the batches (see [`index_check`]); file names, orphan
//! indexes, trailing bytes and the checkpoint are checked too. A walk stops at the first batch it
//! cannot frame (nothing after it can be trusted) and says how many bytes it left unchecked.
//!
//! Read-only unless `--repair`, which runs the engine's own recovery ([`repair`]). Memory is
//! constant in the size of the data: segments are streamed through one buffer ([`walk`]).
//! Exit status: 0 clean, 1 problems, 2 usage or I/O error.

pub mod compare;
pub mod index_check;
pub mod repair;
pub mod report;
pub mod target;
pub mod walk;

use std::fs::File;
use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use strata_storage::batch::BatchError;
use strata_storage::log::LogConfig;
use strata_storage::log::checkpoint::Checkpoint;
use strata_storage::log::index::{self, IndexKind, OffsetEntry, TimeEntry};
use strata_storage::log::name::{self, FileKind};
use strata_storage::log::scan::{ScanProblem, ScanStop};

use index_check::{Finding, OffsetIndexCheck, TimeIndexCheck};
use report::{Problem, Reporter};
use target::Target;
use walk::{Buffer, WalkOptions};

/// `strata verify PATH... [--index-only] [--json] [--repair]`
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Segment (`.log`), index (`.index`, `.timeindex`), partition directory or data directory.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Walk batch headers without checking CRCs and report on the indexes only.
    #[arg(long)]
    pub index_only: bool,
    /// One JSON object per line (`"type": "problem" | "repair" | "summary"`).
    #[arg(long)]
    pub json: bool,
    /// Run the engine's crash recovery on each partition (truncate a torn tail, rebuild
    /// indexes), say what it changed, then verify the result. Refuses a locked partition.
    #[arg(long)]
    pub repair: bool,
    /// With --repair: a partition recovery refuses (damage that is not a crash's torn tail) is
    /// cut at its first damaged batch and every later segment dropped, so it serves again; what
    /// is cut is moved, not deleted, into `<partition>.quarantine.<unix-ms>/` beside it, and
    /// the records and offsets lost are printed.
    #[arg(long, requires = "repair")]
    pub truncate_at_damage: bool,
    /// Largest batch considered legal. Default: the largest the engine can store (2 GiB - 1),
    /// so every batch it accepted, whatever `max.message.bytes` it was written under, is
    /// read; lower it to flag batches above a limit.
    #[arg(long, value_name = "BYTES", default_value_t = strata_storage::log::config::MAX_SEGMENT_BYTES as usize)]
    pub max_batch_bytes: usize,
    /// The PATHs are replicas of one partition (its directory in different brokers' data
    /// directories): compare them batch by batch, byte for byte, up to the shortest one's end
    /// (exit 1 at the first difference). A cluster's followers copy their leader exactly.
    #[arg(long, conflicts_with = "repair")]
    pub compare_replicas: bool,
    /// `index.interval.bytes` used when `--repair` rebuilds indexes.
    #[arg(long, value_name = "BYTES", default_value_t = LogConfig::default().index_interval_bytes)]
    pub index_interval_bytes: u32,
}

/// Runs `strata verify`, writing the report to stdout. `Ok` carries the exit status (0 clean,
/// 1 problems); an `Err` is a usage or I/O error (exit 2).
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if args.compare_replicas {
        return compare::compare_replicas(&args.paths, args.max_batch_bytes, args.json);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let summary = run_to(args, &mut out, std::io::stderr().is_terminal())?;
    Ok(if summary.problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// [`run`] writing to `out`; returns the summary.
pub fn run_to(
    args: &VerifyArgs,
    out: &mut dyn std::io::Write,
    progress: bool,
) -> anyhow::Result<report::Summary> {
    let targets = args
        .paths
        .iter()
        .map(|p| target::classify(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut partitions = Vec::new();
    let mut files = Vec::new();
    let mut data_dirs = Vec::new();
    for t in targets {
        match t {
            Target::DataDir(d) => {
                partitions.extend(target::partitions_of(&d)?);
                data_dirs.push(d);
            }
            Target::Partition(p) => partitions.push(p),
            Target::File(f, kind) => files.push((f, kind)),
        }
    }
    if args.repair && !files.is_empty() {
        anyhow::bail!("--repair works on partition or data directories, not on single files");
    }
    let mut rep = Reporter::new(out, args.json);
    if args.repair {
        for dir in &partitions {
            repair::repair_partition(dir, args, &mut rep)?;
        }
    }
    if progress {
        let mut total = 0;
        for dir in &partitions {
            total += target::list_partition(dir)?
                .logs
                .values()
                .map(|(_, len)| len)
                .sum::<u64>();
        }
        for (f, _) in &files {
            total += std::fs::metadata(f).map_or(0, |m| m.len());
        }
        rep.show_progress(total);
    }
    let mut v = Verifier {
        args,
        rep,
        buf: Buffer::default(),
    };
    for d in &data_dirs {
        v.topics(d)?;
    }
    for dir in &partitions {
        v.partition(dir)?;
    }
    for (f, kind) in &files {
        v.file(f, *kind)?;
    }
    Ok(v.rep.finish()?)
}

struct Verifier<'a, 'w> {
    args: &'a VerifyArgs,
    rep: Reporter<'w>,
    buf: Buffer,
}

/// One segment to verify, with whichever index files go with it.
struct SegmentJob<'p> {
    log: &'p Path,
    /// Base offset from the file name (`None` if the name is malformed).
    base: Option<u64>,
    len: u64,
    index: Option<&'p Path>,
    time_index: Option<&'p Path>,
    /// A sealed segment of a partition: its index files must exist and the time index's last
    /// entry must hold the segment's largest timestamp.
    sealed: bool,
    /// Report on indexes only (no CRC, no per-batch field checks).
    index_only: bool,
}

/// What a segment's walk learned.
struct SegmentEnd {
    next_offset: u64,
    /// The walk stopped at damage: where the segment really ends is unknown, so index entries
    /// past the stop and the next segment's base are not judged (one problem, not a cascade).
    damaged: bool,
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

fn problem(
    file: &Path,
    position: Option<u64>,
    check: &'static str,
    expected: impl Into<String>,
    found: impl Into<String>,
    message: impl Into<String>,
) -> Problem {
    Problem {
        file: show(file),
        position,
        check,
        expected: expected.into(),
        found: found.into(),
        message: message.into(),
    }
}

/// Names the check a scan stop failed, with what was expected and found.
pub fn classify_stop(p: &ScanProblem) -> (&'static str, String, String) {
    match p {
        ScanProblem::Zeroed => ("zeroed", "a batch header".into(), "zero bytes".into()),
        ScanProblem::OffsetGap { expected, found } => (
            "offset_gap",
            format!("offset {expected}"),
            format!("offset {found}"),
        ),
        ScanProblem::Batch(e) => match e {
            BatchError::BadLength { length, min, max } => (
                "batch_length",
                format!("batchLength in [{min}, {max}]"),
                format!("batchLength {length}"),
            ),
            BatchError::Truncated { needed, available } => (
                "batch_truncated",
                format!("{needed} bytes"),
                format!("{available} bytes"),
            ),
            BatchError::BadMagic { got } => {
                ("batch_magic", "magic 2".into(), format!("magic {got}"))
            }
            BatchError::BadCrc { expected, got } => (
                "batch_crc",
                format!("crc {expected:#010x} (stored)"),
                format!("crc {got:#010x} (computed)"),
            ),
            BatchError::OffsetDeltaMismatch {
                last_offset_delta,
                record_count,
            } => (
                "batch_offset_delta",
                "baseOffset >= 0 and lastOffsetDelta >= 0".into(),
                format!("lastOffsetDelta {last_offset_delta} recordCount {record_count}"),
            ),
            _ => ("batch", String::new(), String::new()),
        },
    }
}

impl Verifier<'_, '_> {
    /// A data directory's topic metadata files (`topics/<name>.json`, FORMAT.md §10), read as
    /// the broker reads them, against its partition directories: a file that does not read
    /// (the broker lists the topic offline), a partition with no directory (the broker would
    /// start it empty), a partition directory of no topic (left by a crash during a topic's
    /// creation or deletion; the broker leaves it alone and reports it). Only for a broker's
    /// data directory (one with `topics/`).
    fn topics(&mut self, data_dir: &Path) -> anyhow::Result<()> {
        use strata_storage::meta;
        if !data_dir.join(meta::TOPICS_DIR).is_dir() {
            // The engine's partitions without a broker around them: nothing to check.
            return Ok(());
        }
        let mut partitions_of: std::collections::BTreeMap<String, Option<i32>> =
            std::collections::BTreeMap::new();
        for (name, path) in meta::list_topics(data_dir)? {
            match meta::read_topic(&path, &name) {
                Ok(m) => {
                    // In a cluster, only the partitions placed on this broker (`hosted`).
                    for p in (0..m.partitions).filter(|p| m.hosts(*p)) {
                        let dir = meta::partition_dir(data_dir, &name, p);
                        if !dir.is_dir() {
                            self.rep.problem(problem(
                                &dir,
                                None,
                                "partition_missing",
                                format!("partition {p} of topic {name:?}"),
                                "no directory",
                                "the broker would start this partition empty",
                            ));
                        }
                    }
                    partitions_of.insert(name, Some(m.partitions));
                }
                Err(e) => {
                    self.rep.problem(problem(
                        &path,
                        None,
                        "topic_metadata",
                        "a topic metadata file",
                        "",
                        format!("{}: the broker lists this topic offline", e.reason),
                    ));
                    partitions_of.insert(name, None);
                }
            }
        }
        for dir in target::partitions_of(data_dir)? {
            let Some((topic, index)) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(meta::parse_partition_dir)
            else {
                continue;
            };
            // The group coordinator's log, and a cluster's metadata log (FORMAT.md §13).
            if topic == "__consumer_offsets" || topic == "__cluster_metadata" {
                continue;
            }
            let known = match partitions_of.get(topic) {
                Some(Some(n)) => index < *n,
                // A damaged file: its partitions are unknown, not orphans.
                Some(None) => true,
                None => false,
            };
            if !known {
                self.rep.problem(problem(
                    &dir,
                    None,
                    "partition_orphan",
                    "a partition of a topic",
                    format!("no topic {topic:?} with partition {index}"),
                    "partition directory of no topic (a crash during a topic's creation or deletion?): the broker leaves it alone",
                ));
            }
        }
        self.cluster_files(data_dir);
        Ok(())
    }

    /// A cluster node's quorum files (FORMAT.md §13): each must be a checked file whose body
    /// is JSON; the node refuses to start otherwise.
    fn cluster_files(&mut self, data_dir: &Path) {
        use strata_storage::checked;
        let dir = data_dir.join(checked::CLUSTER_DIR);
        for (file, magic) in [
            (checked::RAFT_STATE_FILE, checked::RAFT_STATE_MAGIC),
            (checked::SNAPSHOT_FILE, checked::SNAPSHOT_MAGIC),
        ] {
            let path = dir.join(file);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let why = match checked::decode(magic, &bytes) {
                Err(e) => Some(e.to_string()),
                Ok(body) => serde_json::from_slice::<serde_json::Value>(body)
                    .err()
                    .map(|e| format!("the body is not JSON: {e}")),
            };
            if let Some(why) = why {
                self.rep.problem(problem(
                    &path,
                    None,
                    "cluster_file",
                    "a checked file (FORMAT.md §13)",
                    why,
                    "the node does not start on a damaged quorum file: restore it from a backup (emptying the node's quorum data makes it rejoin empty, which is safe only while the other voters are a healthy majority)",
                ));
            }
        }
        if let Err(why) = strata_storage::meta::read_high_watermarks(data_dir) {
            self.rep.problem(problem(
                &data_dir.join(strata_storage::meta::HW_CHECKPOINT),
                None,
                "hw_checkpoint",
                "Kafka's replication-offset-checkpoint layout (FORMAT.md §10)",
                why,
                "the broker starts every high watermark at its log start instead (nothing lost; consumers wait until the replicas fetch); deleting the file does the same",
            ));
        }
    }

    fn partition(&mut self, dir: &Path) -> anyhow::Result<()> {
        let l = target::list_partition(dir)?;
        self.rep.summary.partitions += 1;
        for (path, kind) in &l.malformed {
            self.rep.problem(problem(
                path,
                None,
                "file_name",
                format!("20 digits then {}", kind.suffix()),
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                "not a segment file name: the engine ignores this file",
            ));
        }
        for (indexes, check) in [
            (&l.indexes, "index_orphan"),
            (&l.time_indexes, "time_index_orphan"),
        ] {
            for (base, path) in indexes {
                if !l.logs.contains_key(base) {
                    self.rep.problem(problem(
                        path,
                        None,
                        check,
                        format!("a segment {}", name::file_name(*base, FileKind::Log)),
                        "no such segment",
                        "index file without a segment (recovery deletes it)",
                    ));
                }
            }
        }
        let mut prev_end: Option<u64> = None;
        let count = l.logs.len();
        let mut last_end = None;
        // The engine seals rolled segments in the background (sync, index files) and only
        // then moves the checkpoint's recovery point past them. After a crash, a valid but
        // unclean checkpoint says which segments were not sealed yet: recovery seals those, so
        // missing index files there are the expected state, not damage.
        let unsealed_from = l
            .checkpoint
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| Checkpoint::decode(&b).ok())
            .filter(|cp| !cp.clean)
            .map(|cp| cp.recovery_point);
        for (i, (base, (path, len))) in l.logs.iter().enumerate() {
            let sealed = i + 1 < count && unsealed_from.is_none_or(|rp| *base < rp);
            if let Some(prev) = prev_end
                && prev != *base
            {
                self.rep.problem(problem(
                    path,
                    Some(0),
                    "segment_gap",
                    format!("base offset {prev}"),
                    format!("base offset {base}"),
                    format!(
                        "segment starts at offset {base}, but the previous segment ends at {prev}"
                    ),
                ));
            }
            let end = self.segment(SegmentJob {
                log: path,
                base: Some(*base),
                len: *len,
                index: l.indexes.get(base).map(PathBuf::as_path),
                time_index: l.time_indexes.get(base).map(PathBuf::as_path),
                sealed,
                index_only: self.args.index_only,
            })?;
            prev_end = (!end.damaged).then_some(end.next_offset);
            last_end = Some((end.next_offset, *len));
        }
        if let Some(cp) = &l.checkpoint
            && !self.args.index_only
        {
            self.checkpoint(cp, last_end)?;
        }
        if !self.args.index_only {
            let log_end = last_end.map(|(next, _)| next);
            if let Some(path) = &l.producer_state {
                self.producer_state(dir, path, log_end)?;
            }
            if let Some(path) = &l.leader_epochs {
                self.leader_epochs(dir, path, log_end)?;
            }
            if let Some(path) = &l.log_start {
                self.log_start(dir, path, log_end)?;
            }
        }
        Ok(())
    }

    /// The broker's idempotent-producer snapshot: it must decode and not be ahead of the log.
    fn producer_state(
        &mut self,
        dir: &Path,
        path: &Path,
        log_end: Option<u64>,
    ) -> anyhow::Result<()> {
        use strata_storage::log::producer_state;
        match producer_state::read(dir).with_context(|| show(path))? {
            Err(reason) => self.rep.problem(problem(
                path,
                None,
                "producer_state",
                "a valid producer-state snapshot",
                "",
                format!(
                    "{reason} (the broker ignores it, rebuilds the state from the last segment and replaces it)"
                ),
            )),
            Ok(Some((end, _))) if log_end.is_some_and(|e| end > e) => {
                self.rep.problem(problem(
                    path,
                    Some(8),
                    "producer_state",
                    format!("end_offset at most the log end {}", log_end.unwrap_or(0)),
                    format!("end_offset {end}"),
                    "producer-state snapshot ahead of the log (its tail was lost in a crash): the broker ignores it and rebuilds the state from the last segment",
                ));
            }
            Ok(_) => {}
        }
        Ok(())
    }

    /// The log start offset file: it must decode and not lie past the log end.
    fn log_start(&mut self, dir: &Path, path: &Path, log_end: Option<u64>) -> anyhow::Result<()> {
        match strata_storage::log::start::read(dir).with_context(|| show(path))? {
            Err(reason) => self.rep.problem(problem(
                path,
                None,
                "log_start",
                "a valid log-start-offset",
                "",
                format!(
                    "{reason} (the next open ignores it: records below the log start offset DeleteRecords set are readable again)"
                ),
            )),
            Ok(Some(o)) if log_end.is_some_and(|e| o > e) => self.rep.problem(problem(
                path,
                None,
                "log_start",
                format!("at most the log end {}", log_end.unwrap_or(0)),
                format!("{o}"),
                "log start offset past the log end (the log lost its tail): the next open clamps it to the end",
            )),
            Ok(_) => {}
        }
        Ok(())
    }

    /// The leader-epoch file: it must decode, and no epoch may start past the log end.
    fn leader_epochs(
        &mut self,
        dir: &Path,
        path: &Path,
        log_end: Option<u64>,
    ) -> anyhow::Result<()> {
        use strata_storage::log::epoch;
        match epoch::read(dir).with_context(|| show(path))? {
            Err(reason) => self.rep.problem(problem(
                path,
                None,
                "leader_epochs",
                "a valid leader-epoch-checkpoint",
                "",
                format!("{reason} (the next open rebuilds it from the batch headers)"),
            )),
            Ok(Some(cache)) => {
                let past = log_end.and_then(|e| {
                    cache
                        .entries()
                        .iter()
                        .find(|x| x.start_offset >= e)
                        .map(|x| (e, *x))
                });
                if let Some((end, entry)) = past {
                    self.rep.problem(problem(
                        path,
                        None,
                        "leader_epochs",
                        format!("epochs starting before the log end {end}"),
                        format!("epoch {} from offset {}", entry.epoch, entry.start_offset),
                        "leader epoch starting at or past the log end (a crash after the epoch was recorded, before its batch was written): the next open drops it",
                    ));
                }
            }
            Ok(None) => {}
        }
        Ok(())
    }

    fn checkpoint(&mut self, path: &Path, last: Option<(u64, u64)>) -> anyhow::Result<()> {
        let bytes = std::fs::read(path).with_context(|| show(path))?;
        match Checkpoint::decode(&bytes) {
            Err(reason) => self.rep.problem(problem(
                path,
                None,
                "checkpoint",
                "a valid checkpoint",
                "",
                format!("{reason} (recovery ignores it and scans every segment)"),
            )),
            Ok(cp) if cp.clean => {
                if let Some((next, len)) = last {
                    if cp.log_end_offset != next {
                        self.rep.problem(problem(
                            path,
                            Some(16),
                            "checkpoint",
                            format!("log_end_offset {next}"),
                            format!("log_end_offset {}", cp.log_end_offset),
                            "clean checkpoint's log end offset differs from the last segment's",
                        ));
                    }
                    if cp.active_segment_len != len {
                        self.rep.problem(problem(
                            path,
                            Some(24),
                            "checkpoint",
                            format!("active_segment_len {len}"),
                            format!("active_segment_len {}", cp.active_segment_len),
                            "clean checkpoint's segment length differs from the last segment's",
                        ));
                    }
                }
            }
            Ok(_) => {}
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, kind: FileKind) -> anyhow::Result<()> {
        let fname = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = name::parse_file_name(&fname).map(|(b, _)| b);
        if base.is_none() {
            self.rep.problem(problem(
                path,
                None,
                "file_name",
                format!("20 digits then {}", kind.suffix()),
                fname.clone(),
                "not a segment file name: the engine ignores this file",
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        match kind {
            FileKind::Log => {
                let len = std::fs::metadata(path).with_context(|| show(path))?.len();
                let idx = base.map(|b| name::segment_path(dir, b, FileKind::Index));
                let tidx = base.map(|b| name::segment_path(dir, b, FileKind::TimeIndex));
                self.segment(SegmentJob {
                    log: path,
                    base,
                    len,
                    index: idx.as_deref().filter(|p| p.exists()),
                    time_index: tidx.as_deref().filter(|p| p.exists()),
                    sealed: false,
                    index_only: self.args.index_only,
                })?;
            }
            FileKind::Index | FileKind::TimeIndex => {
                let Some(base) = base else { return Ok(()) };
                let log = name::segment_path(dir, base, FileKind::Log);
                let Ok(meta) = std::fs::metadata(&log) else {
                    let check = if kind == FileKind::Index {
                        "index_orphan"
                    } else {
                        "time_index_orphan"
                    };
                    self.rep.problem(problem(
                        path,
                        None,
                        check,
                        format!("a segment {}", show(&log)),
                        "no such segment",
                        "index file without a segment (recovery deletes it)",
                    ));
                    return Ok(());
                };
                self.segment(SegmentJob {
                    log: &log,
                    base: Some(base),
                    len: meta.len(),
                    index: (kind == FileKind::Index).then_some(path),
                    time_index: (kind == FileKind::TimeIndex).then_some(path),
                    sealed: false,
                    index_only: true,
                })?;
            }
        }
        Ok(())
    }

    fn load_index(
        &mut self,
        path: Option<&Path>,
        kind: IndexKind,
        base: u64,
        sealed: bool,
        log: &Path,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let (missing, header) = match kind {
            IndexKind::Offset => ("index_missing", "index_header"),
            IndexKind::Time => ("time_index_missing", "time_index_header"),
        };
        let Some(path) = path else {
            if sealed {
                let suffix = match kind {
                    IndexKind::Offset => FileKind::Index,
                    IndexKind::Time => FileKind::TimeIndex,
                };
                self.rep.problem(problem(
                    log,
                    None,
                    missing,
                    format!("a file {}", name::file_name(base, suffix)),
                    "no such file",
                    "sealed segment without its index (recovery rebuilds it)",
                ));
            }
            return Ok(None);
        };
        let bytes = std::fs::read(path).with_context(|| show(path))?;
        if bytes.is_empty() && !sealed {
            // Created with the segment and not written yet, as a power cut leaves it
            // (FORMAT.md §4): the same as no file, which recovery rebuilds.
            return Ok(None);
        }
        match index::check_file(kind, base, &bytes) {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(e) => {
                self.rep.problem(problem(
                    path,
                    Some(e.position),
                    header,
                    "a valid header and CRC",
                    "",
                    format!("{} (recovery rebuilds this index)", e.reason),
                ));
                Ok(None)
            }
        }
    }

    fn segment(&mut self, job: SegmentJob<'_>) -> anyhow::Result<SegmentEnd> {
        self.rep.summary.segments += 1;
        self.rep.summary.bytes += job.len;
        let file = File::open(job.log).with_context(|| show(job.log))?;
        let ibase = job.base.unwrap_or(0);
        let oi = self.load_index(job.index, IndexKind::Offset, ibase, job.sealed, job.log)?;
        let ti = self.load_index(job.time_index, IndexKind::Time, ibase, job.sealed, job.log)?;
        let mut oic = oi.as_ref().map(|b| {
            OffsetIndexCheck::new(
                ibase,
                b.chunks_exact(index::layout::OFFSET_ENTRY_LEN)
                    .map(OffsetEntry::parse),
            )
        });
        let mut tic = ti.as_ref().map(|b| {
            TimeIndexCheck::new(
                ibase,
                b.chunks_exact(index::layout::TIME_ENTRY_LEN)
                    .map(TimeEntry::parse),
            )
        });

        let mut start = 0;
        let mut expect = job.base;
        let mut next_offset = ibase;
        let mut end;
        let mut max_ts = -1i64;
        let mut damaged = false;
        loop {
            let opts = WalkOptions {
                max_batch_bytes: self.args.max_batch_bytes,
                verify_crc: !job.index_only,
                expect_offset: expect,
                start,
            };
            let rep = &mut self.rep;
            let we = walk::walk(&file, opts, &mut self.buf, |b, _bytes| {
                let h = &b.header;
                rep.summary.batches += 1;
                rep.summary.records += u64::try_from(h.record_count).unwrap_or(0);
                rep.advance(h.total_len() as u64);
                if !job.index_only {
                    if let Err(BatchError::UnknownCodec(id)) = h.compression() {
                        rep.problem(problem(
                            job.log,
                            Some(b.position),
                            "batch_codec",
                            "codec id 0..=4",
                            format!("codec id {id}"),
                            format!("unknown compression codec id {id}"),
                        ));
                    }
                    if i64::from(h.last_offset_delta) != i64::from(h.record_count) - 1 {
                        rep.problem(problem(
                            job.log,
                            Some(b.position),
                            "batch_offset_delta",
                            format!("lastOffsetDelta {}", i64::from(h.record_count) - 1),
                            format!("lastOffsetDelta {}", h.last_offset_delta),
                            format!(
                                "lastOffsetDelta {} does not match recordCount {}",
                                h.last_offset_delta, h.record_count
                            ),
                        ));
                    }
                }
                if let Some(c) = oic.as_mut() {
                    c.on_batch(b.position, h.base_offset);
                }
                if let Some(c) = tic.as_mut() {
                    c.on_batch(b.position, h.base_offset, h.last_offset(), h.max_timestamp);
                }
                max_ts = max_ts.max(h.max_timestamp);
                next_offset = h.next_offset() as u64;
                ControlFlow::Continue(())
            })
            .with_context(|| show(job.log))?;
            end = we.end;
            match we.stop {
                None => break,
                Some(ScanStop {
                    position,
                    problem: ScanProblem::OffsetGap { expected, found },
                }) => {
                    let p = if position == 0 {
                        problem(
                            job.log,
                            Some(0),
                            "first_offset",
                            format!("base offset {expected} (the file name)"),
                            format!("base offset {found}"),
                            format!(
                                "first batch starts at offset {found}, but the file is named for {expected}"
                            ),
                        )
                    } else {
                        problem(
                            job.log,
                            Some(position),
                            "offset_gap",
                            format!("base offset {expected}"),
                            format!("base offset {found}"),
                            format!(
                                "batch starts at offset {found}, but the previous batch ends at {}",
                                expected.saturating_sub(1)
                            ),
                        )
                    };
                    self.rep.problem(p);
                    start = position;
                    expect = u64::try_from(found).ok();
                }
                Some(stop) if !job.sealed && walk::is_padding(job.log, stop.position, job.len) => {
                    // A direct write's zero padding, which a seal or a clean close truncates
                    // and recovery cuts: nothing is damaged or lost.
                    let left = job.len.saturating_sub(stop.position);
                    self.rep.summary.padding_bytes += left;
                    self.rep.advance(left);
                    break;
                }
                Some(stop) => {
                    let (check, expected, found) = classify_stop(&stop.problem);
                    let left = job.len.saturating_sub(stop.position);
                    self.rep.problem(problem(
                        job.log,
                        Some(stop.position),
                        check,
                        expected,
                        found,
                        format!(
                            "{}; {left} bytes from here to the end of the file are not checked",
                            stop.problem
                        ),
                    ));
                    self.rep.advance(left);
                    damaged = true;
                    break;
                }
            }
        }

        if let (Some(c), Some(path)) = (oic, job.index) {
            let verdicts = c.finish(end);
            self.rep.summary.index_entries += verdicts.len() as u64;
            for v in verdicts {
                if let Some(f) = v
                    .finding
                    .filter(|f| !(damaged && f.check == "index_past_end"))
                {
                    let at = index::layout::HEADER_LEN + v.entry * index::layout::OFFSET_ENTRY_LEN;
                    self.finding(path, at as u64, v.entry, f);
                }
            }
        }
        if let (Some(c), Some(path)) = (tic, job.time_index) {
            let verdicts = c.finish(next_offset);
            let last = verdicts.last().map(|v| (v.entry, v.value));
            self.rep.summary.index_entries += verdicts.len() as u64;
            for v in verdicts {
                if let Some(f) = v
                    .finding
                    .filter(|f| !(damaged && f.check == "time_index_past_end"))
                {
                    let at = index::layout::HEADER_LEN + v.entry * index::layout::TIME_ENTRY_LEN;
                    self.finding(path, at as u64, v.entry, f);
                }
            }
            if job.sealed
                && !damaged
                && max_ts >= 0
                && last.is_none_or(|(_, e)| e.timestamp != max_ts)
            {
                let at = last.map_or(index::layout::HEADER_LEN, |(i, _)| {
                    index::layout::HEADER_LEN + i * index::layout::TIME_ENTRY_LEN
                });
                self.rep.problem(problem(
                    path,
                    Some(at as u64),
                    "time_index_last",
                    format!("timestamp {max_ts}"),
                    last.map_or("no entry".into(), |(_, e)| format!("timestamp {}", e.timestamp)),
                    "a sealed segment's last time-index entry must hold its largest timestamp (retention reads it)",
                ));
            }
        }
        Ok(SegmentEnd {
            next_offset,
            damaged,
        })
    }

    fn finding(&mut self, path: &Path, at: u64, entry: usize, f: Finding) {
        self.rep.problem(problem(
            path,
            Some(at),
            f.check,
            f.expected,
            f.found,
            format!("entry {entry}: {}", f.message),
        ));
    }
}
