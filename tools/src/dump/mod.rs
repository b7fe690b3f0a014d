//! `strata dump`: print every batch, record and index entry on disk, decoded by the engine.
//!
//! Segments are streamed batch by batch through one buffer ([`crate::verify::walk`]); each batch
//! is framed by the engine's scanner (lengths, magic), its CRC-32C recomputed with the engine's
//! [`compute_crc`], and its payload decompressed on its own (with the engine's limit) to report
//! the uncompressed size, so memory stays constant whatever the segment's size. The first batch
//! that cannot be framed or fails its CRC ends the file: a `problem` line says where, why, and
//! how many bytes remain undecoded. A batch whose frame is sound but whose records do not decode
//! is reported and the dump goes on. Exit status: 0 everything decoded, 1 damage, 2 usage/I/O.

use std::fs::File;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use strata_storage::batch::header::{BatchHeader, HEADER_LEN, compute_crc};
use strata_storage::batch::{Record, records};
use strata_storage::log::index::{self, IndexKind, OffsetEntry, OffsetIndex, TimeEntry};
use strata_storage::log::name::{self, FileKind};
use strata_storage::log::scan::ScannedBatch;

use crate::verify::index_check::{OffsetIndexCheck, TimeIndexCheck, Verdict};
use crate::verify::target::{self, Target};
use crate::verify::walk::{self, Buffer, WalkOptions};

/// `strata dump PATH... [--deep] [--print-data] [--json] [--from-offset N] [--max-batches N]`
#[derive(Debug, Clone, clap::Args)]
pub struct DumpArgs {
    /// Segment (`.log`), index (`.index`, `.timeindex`), partition directory or data directory.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also list every record: offset, timestamp, key and value sizes, header keys.
    #[arg(long)]
    pub deep: bool,
    /// Also print keys, values and header values (UTF-8 where valid, escaped otherwise).
    /// Implies --deep.
    #[arg(long)]
    pub print_data: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Skip batches whose records all lie below this offset.
    #[arg(long, value_name = "N")]
    pub from_offset: Option<u64>,
    /// Stop after this many batches.
    #[arg(long, value_name = "N")]
    pub max_batches: Option<u64>,
    /// Largest batch considered legal. Default: the largest the engine can store (2 GiB - 1),
    /// so every batch it accepted, whatever `max.message.bytes` it was written under, is
    /// read; lower it to flag batches above a limit.
    #[arg(long, value_name = "BYTES", default_value_t = strata_storage::log::config::MAX_SEGMENT_BYTES as usize)]
    pub max_batch_bytes: usize,
}

/// Totals of one dump.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DumpSummary {
    pub files: u64,
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    /// Zero padding after the last batch of segments written with O_DIRECT and not yet
    /// truncated (not a problem; shown only when there is some).
    #[serde(skip_serializing_if = "is_zero")]
    pub padding_bytes: u64,
    pub problems: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct PaddingLine<'a> {
    file: &'a str,
    position: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct BatchLine<'a> {
    file: &'a str,
    base_offset: i64,
    last_offset: i64,
    record_count: i32,
    position: u64,
    size: usize,
    codec: String,
    uncompressed_size: Option<usize>,
    ratio: Option<f64>,
    crc_valid: bool,
    crc: u32,
    partition_leader_epoch: i32,
    magic: i8,
    base_timestamp: i64,
    max_timestamp: i64,
    timestamp_type: &'static str,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
}

#[derive(Serialize)]
struct HeaderLine {
    key: String,
    value: Option<String>,
}

#[derive(Serialize)]
struct RecordLine<'a> {
    file: &'a str,
    offset: i64,
    timestamp: i64,
    key_size: i64,
    value_size: i64,
    headers: Vec<HeaderLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Option<String>>,
}

#[derive(Serialize)]
struct IndexLine<'a> {
    file: &'a str,
    entry: usize,
    relative_offset: u32,
    offset: u64,
    position: u32,
    valid: Option<bool>,
    reason: Option<String>,
}

#[derive(Serialize)]
struct TimeIndexLine<'a> {
    file: &'a str,
    entry: usize,
    timestamp: i64,
    relative_offset: u32,
    offset: u64,
    batch_position: Option<u64>,
    valid: Option<bool>,
    reason: Option<String>,
}

#[derive(Serialize)]
struct ProblemLine<'a> {
    file: &'a str,
    position: Option<u64>,
    reason: String,
    undecoded_bytes: Option<u64>,
}

#[derive(Serialize)]
struct CheckpointLine<'a> {
    file: &'a str,
    clean: bool,
    recovery_point: u64,
    log_end_offset: u64,
    active_segment_len: u64,
}

#[derive(Serialize)]
struct LogStartLine<'a> {
    file: &'a str,
    log_start_offset: u64,
}

#[derive(Serialize)]
struct LeaderEpochLine<'a> {
    file: &'a str,
    epoch: i32,
    start_offset: u64,
}

#[derive(Serialize)]
struct ProducerBatchLine {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
}

#[derive(Serialize)]
struct ProducerLine<'a> {
    file: &'a str,
    /// The log end offset the snapshot was taken at.
    end_offset: u64,
    producer_id: i64,
    epoch: i16,
    last_timestamp: i64,
    batches: Vec<ProducerBatchLine>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Checkpoint(CheckpointLine<'a>),
    LogStart(LogStartLine<'a>),
    LeaderEpoch(LeaderEpochLine<'a>),
    Producer(ProducerLine<'a>),
    Batch(BatchLine<'a>),
    Record(RecordLine<'a>),
    IndexEntry(IndexLine<'a>),
    TimeIndexEntry(TimeIndexLine<'a>),
    Problem(ProblemLine<'a>),
    Padding(PaddingLine<'a>),
    Summary(&'a DumpSummary),
}

/// Runs `strata dump` to stdout. `Ok` carries the exit status (0 all decoded, 1 damage found).
pub fn run(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match run_to(args, &mut out) {
        Ok(s) => Ok(if s.problems == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        // `strata dump ... | head` closes the pipe: that is the reader's choice, not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
    }
}

/// [`run`] writing to `out`.
pub fn run_to(args: &DumpArgs, out: &mut dyn Write) -> anyhow::Result<DumpSummary> {
    let mut files: Vec<(PathBuf, DumpFile)> = Vec::new();
    for p in &args.paths {
        match target::classify(p)? {
            Target::File(f, k) => files.push((f, DumpFile::Segment(k))),
            Target::Partition(d) => files.extend(partition_files(&d)?),
            Target::DataDir(d) => {
                for part in target::partitions_of(&d)? {
                    files.extend(partition_files(&part)?);
                }
            }
        }
    }
    let mut d = Dumper {
        args,
        out,
        summary: DumpSummary::default(),
        buf: Buffer::default(),
        printed: 0,
    };
    for (f, kind) in &files {
        if d.limit_reached() {
            break;
        }
        d.summary.files += 1;
        match kind {
            DumpFile::Segment(FileKind::Log) => d.log(f)?,
            DumpFile::Segment(FileKind::Index) => d.index(f, IndexKind::Offset)?,
            DumpFile::Segment(FileKind::TimeIndex) => d.index(f, IndexKind::Time)?,
            DumpFile::Checkpoint => d.checkpoint(f)?,
            DumpFile::LogStart => d.log_start(f)?,
            DumpFile::LeaderEpochs => d.leader_epochs(f)?,
            DumpFile::ProducerState => d.producer_state(f)?,
        }
    }
    let s = d.summary.clone();
    d.emit(&Line::Summary(&s), || {
        format!(
            "summary: files: {} batches: {} records: {} bytes: {}{} problems: {}",
            s.files,
            s.batches,
            s.records,
            s.bytes,
            if s.padding_bytes > 0 {
                format!(" padding_bytes: {}", s.padding_bytes)
            } else {
                String::new()
            },
            s.problems
        )
    })?;
    d.out.flush()?;
    Ok(s)
}

/// A file `strata dump` prints.
#[derive(Debug, Clone, Copy)]
enum DumpFile {
    Segment(FileKind),
    Checkpoint,
    LogStart,
    LeaderEpochs,
    ProducerState,
}

/// The segments of a partition, skipping none (`--from-offset` skips inside [`Dumper::log`]),
/// then its checkpoint, leader epochs and producer-state snapshot.
fn partition_files(dir: &Path) -> anyhow::Result<Vec<(PathBuf, DumpFile)>> {
    let l = target::list_partition(dir)?;
    let mut v: Vec<(PathBuf, DumpFile)> = l
        .logs
        .into_values()
        .map(|(p, _)| (p, DumpFile::Segment(FileKind::Log)))
        .collect();
    v.extend(l.checkpoint.map(|p| (p, DumpFile::Checkpoint)));
    v.extend(l.log_start.map(|p| (p, DumpFile::LogStart)));
    v.extend(l.leader_epochs.map(|p| (p, DumpFile::LeaderEpochs)));
    v.extend(l.producer_state.map(|p| (p, DumpFile::ProducerState)));
    Ok(v)
}

/// Key, value or header bytes for a line: UTF-8 where valid (control characters escaped),
/// `\xNN` for every byte that is not.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                s.extend(c.escape_default());
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

fn size_of(b: &Option<Vec<u8>>) -> i64 {
    b.as_ref().map_or(-1, |v| v.len() as i64)
}

struct Dumper<'a, 'w> {
    args: &'a DumpArgs,
    out: &'w mut dyn Write,
    summary: DumpSummary,
    buf: Buffer,
    printed: u64,
}

impl Dumper<'_, '_> {
    fn limit_reached(&self) -> bool {
        self.args.max_batches.is_some_and(|m| self.printed >= m)
    }

    fn emit(&mut self, line: &Line<'_>, text: impl FnOnce() -> String) -> std::io::Result<()> {
        if self.args.json {
            serde_json::to_writer(&mut *self.out, line).map_err(std::io::Error::other)?;
            self.out.write_all(b"\n")
        } else {
            writeln!(self.out, "{}", text())
        }
    }

    fn problem(
        &mut self,
        file: &str,
        position: Option<u64>,
        reason: String,
        undecoded: Option<u64>,
    ) -> std::io::Result<()> {
        self.summary.problems += 1;
        let line = Line::Problem(ProblemLine {
            file,
            position,
            reason: reason.clone(),
            undecoded_bytes: undecoded,
        });
        self.emit(&line, || {
            let mut s = format!("problem: {file}");
            if let Some(p) = position {
                s.push_str(&format!(" position: {p}"));
            }
            s.push_str(&format!(" reason: {reason}"));
            if let Some(u) = undecoded {
                s.push_str(&format!(" undecoded: {u} bytes"));
            }
            s
        })
    }

    /// The checkpoint (FORMAT.md §5).
    fn checkpoint(&mut self, path: &Path) -> anyhow::Result<()> {
        use strata_storage::log::checkpoint::Checkpoint;
        let show = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| show.clone())?;
        match Checkpoint::decode(&bytes) {
            Ok(cp) => {
                let line = Line::Checkpoint(CheckpointLine {
                    file: &show,
                    clean: cp.clean,
                    recovery_point: cp.recovery_point,
                    log_end_offset: cp.log_end_offset,
                    active_segment_len: cp.active_segment_len,
                });
                self.emit(&line, || {
                    format!(
                        "checkpoint: {show} clean: {} recovery_point: {} log_end_offset: {} active_segment_len: {}",
                        cp.clean, cp.recovery_point, cp.log_end_offset, cp.active_segment_len
                    )
                })?;
            }
            Err(reason) => self.problem(&show, None, reason.to_string(), None)?,
        }
        Ok(())
    }

    /// The log start offset DeleteRecords set (FORMAT.md §12).
    fn log_start(&mut self, path: &Path) -> anyhow::Result<()> {
        let show = path.display().to_string();
        let dir = path.parent().unwrap_or(Path::new("."));
        match strata_storage::log::start::read(dir).with_context(|| show.clone())? {
            Ok(Some(o)) => {
                let line = Line::LogStart(LogStartLine {
                    file: &show,
                    log_start_offset: o,
                });
                self.emit(&line, || format!("log_start: {show} offset: {o}"))?;
            }
            Ok(None) => {}
            Err(reason) => self.problem(&show, None, reason, None)?,
        }
        Ok(())
    }

    /// The leader-epoch file (FORMAT.md §11), one line per epoch.
    fn leader_epochs(&mut self, path: &Path) -> anyhow::Result<()> {
        let show = path.display().to_string();
        let dir = path.parent().unwrap_or(Path::new("."));
        match strata_storage::log::epoch::read(dir).with_context(|| show.clone())? {
            Ok(cache) => {
                for e in cache.iter().flat_map(|c| c.entries().iter().copied()) {
                    let line = Line::LeaderEpoch(LeaderEpochLine {
                        file: &show,
                        epoch: e.epoch,
                        start_offset: e.start_offset,
                    });
                    self.emit(&line, || {
                        format!(
                            "leader_epoch: {show} epoch: {} start_offset: {}",
                            e.epoch, e.start_offset
                        )
                    })?;
                }
            }
            Err(reason) => self.problem(&show, None, reason, None)?,
        }
        Ok(())
    }

    /// The producer-state snapshot (FORMAT.md §9), one line per producer.
    fn producer_state(&mut self, path: &Path) -> anyhow::Result<()> {
        let show = path.display().to_string();
        let dir = path.parent().unwrap_or(Path::new("."));
        match strata_storage::log::producer_state::read(dir).with_context(|| show.clone())? {
            Ok(Some((end, states))) => {
                for p in states.producers() {
                    let batches = p
                        .batches
                        .iter()
                        .map(|b| format!("{}..={}@{}", b.first_seq, b.last_seq, b.base_offset))
                        .collect::<Vec<_>>()
                        .join(",");
                    let line = Line::Producer(ProducerLine {
                        file: &show,
                        end_offset: end,
                        producer_id: p.producer_id,
                        epoch: p.epoch,
                        last_timestamp: p.last_timestamp,
                        batches: p
                            .batches
                            .iter()
                            .map(|b| ProducerBatchLine {
                                first_seq: b.first_seq,
                                last_seq: b.last_seq,
                                base_offset: b.base_offset,
                            })
                            .collect(),
                    });
                    self.emit(&line, || {
                        format!(
                            "producer: {show} end_offset: {end} producerId: {} epoch: {} lastTimestamp: {} batches: {batches}",
                            p.producer_id, p.epoch, p.last_timestamp
                        )
                    })?;
                }
            }
            Ok(None) => {}
            Err(reason) => self.problem(&show, None, reason, None)?,
        }
        Ok(())
    }

    fn log(&mut self, path: &Path) -> anyhow::Result<()> {
        let show = path.display().to_string();
        let fname = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = name::parse_file_name(&fname).map(|(b, _)| b);
        let len = std::fs::metadata(path).with_context(|| show.clone())?.len();
        // With --from-offset, start at the offset index's hint when the index is sound.
        let mut start = 0u64;
        if let (Some(from), Some(base)) = (self.args.from_offset, base)
            && from > base
        {
            let idx = name::segment_path(
                path.parent().unwrap_or(Path::new(".")),
                base,
                FileKind::Index,
            );
            if let Ok(bytes) = std::fs::read(&idx)
                && let Ok(i) = OffsetIndex::decode(&bytes, base, len)
            {
                start = u64::from(i.lookup(u32::try_from(from - base).unwrap_or(u32::MAX)));
            }
        }
        if !self.args.json {
            writeln!(self.out, "Dumping {show}")?;
        }
        self.summary.bytes += len;
        let file = File::open(path).with_context(|| show.clone())?;
        let opts = WalkOptions {
            max_batch_bytes: self.args.max_batch_bytes,
            verify_crc: false,
            expect_offset: None,
            start,
        };
        let mut buf = std::mem::take(&mut self.buf);
        let mut failure: Option<anyhow::Error> = None;
        let mut bad_crc: Option<(u64, u32, u32)> = None;
        let we = walk::walk(&file, opts, &mut buf, |b, bytes| {
            if self.limit_reached() {
                return ControlFlow::Break(());
            }
            if self
                .args
                .from_offset
                .is_some_and(|f| b.header.last_offset() < f as i64)
            {
                return ControlFlow::Continue(());
            }
            let crc = compute_crc(bytes);
            if let Err(e) = self.batch(&show, b, bytes, crc == b.header.crc) {
                failure = Some(e);
                return ControlFlow::Break(());
            }
            if crc != b.header.crc {
                bad_crc = Some((b.position, b.header.crc, crc));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        self.buf = buf;
        let we = we.with_context(|| show.clone())?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some((pos, stored, computed)) = bad_crc {
            self.problem(
                &show,
                Some(pos),
                format!(
                    "CRC-32C mismatch: header says {stored:#010x}, data gives {computed:#010x}"
                ),
                Some(len.saturating_sub(pos)),
            )?;
        } else if let Some(stop) = we
            .stop
            .as_ref()
            .filter(|s| !walk::is_padding(path, s.position, len))
        {
            self.problem(
                &show,
                Some(stop.position),
                stop.problem.to_string(),
                Some(len.saturating_sub(stop.position)),
            )?;
        } else if let Some(stop) = we.stop {
            let bytes = len.saturating_sub(stop.position);
            self.summary.padding_bytes += bytes;
            let line = Line::Padding(PaddingLine {
                file: &show,
                position: stop.position,
                bytes,
            });
            self.emit(&line, || {
                format!(
                    "padding: {show} position: {} bytes: {bytes} (zeros ending a direct write's last block; recovery cuts them)",
                    stop.position
                )
            })?;
        }
        Ok(())
    }

    fn batch(
        &mut self,
        file: &str,
        b: &ScannedBatch,
        bytes: &[u8],
        crc_valid: bool,
    ) -> anyhow::Result<()> {
        let h: &BatchHeader = &b.header;
        self.printed += 1;
        self.summary.batches += 1;
        self.summary.records += u64::try_from(h.record_count).unwrap_or(0);
        let deep = self.args.deep || self.args.print_data;
        // Records are decoded only when the CRC vouches for the bytes.
        let iter = if crc_valid {
            Some(records(h, bytes))
        } else {
            None
        };
        let (uncompressed, decode_err) = match &iter {
            Some(Ok(it)) => (Some(HEADER_LEN + it.payload().len()), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        let size = h.total_len();
        let ratio = uncompressed.map(|u| u as f64 / size as f64);
        let codec = h.compression().map_or_else(
            |_| format!("unknown({})", h.attributes & 0b111),
            |c| c.name().to_string(),
        );
        let line = BatchLine {
            file,
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            record_count: h.record_count,
            position: b.position,
            size,
            codec: codec.clone(),
            uncompressed_size: uncompressed,
            ratio: ratio.map(|r| (r * 100.0).round() / 100.0),
            crc_valid,
            crc: h.crc,
            partition_leader_epoch: h.partition_leader_epoch,
            magic: h.magic,
            base_timestamp: h.base_timestamp,
            max_timestamp: h.max_timestamp,
            timestamp_type: if h.is_log_append_time() {
                "log_append_time"
            } else {
                "create_time"
            },
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            transactional: h.is_transactional(),
            control: h.is_control(),
        };
        self.emit(&Line::Batch(line), || {
            format!(
                "baseOffset: {} lastOffset: {} count: {} position: {} size: {} codec: {} uncompressed: {} ratio: {} crc: {} baseTimestamp: {} maxTimestamp: {} producerId: {} producerEpoch: {} baseSequence: {} transactional: {} control: {}",
                h.base_offset,
                h.last_offset(),
                h.record_count,
                b.position,
                size,
                codec,
                uncompressed.map_or("unknown".into(), |u| u.to_string()),
                ratio.map_or("unknown".into(), |r| format!("{r:.2}")),
                if crc_valid { "valid" } else { "invalid" },
                h.base_timestamp,
                h.max_timestamp,
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.is_transactional(),
                h.is_control(),
            )
        })?;
        if let Some(reason) = decode_err {
            self.problem(
                file,
                Some(b.position),
                format!("records do not decode: {reason}"),
                None,
            )?;
            return Ok(());
        }
        if deep && let Some(Ok(it)) = iter {
            for r in it {
                match r {
                    Ok(r) => self.record(file, &r)?,
                    Err(e) => {
                        self.problem(
                            file,
                            Some(b.position),
                            format!("records do not decode: {e}"),
                            None,
                        )?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn record(&mut self, file: &str, r: &Record) -> std::io::Result<()> {
        let data = self.args.print_data;
        let headers = r
            .headers
            .iter()
            .map(|h| HeaderLine {
                key: escape(&h.key),
                value: if data {
                    h.value.as_deref().map(escape)
                } else {
                    None
                },
            })
            .collect::<Vec<_>>();
        let text_headers = headers
            .iter()
            .map(|h| match (&h.value, data) {
                (Some(v), true) => format!("{}={v}", h.key),
                (None, true) => format!("{}=null", h.key),
                _ => h.key.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let key = data.then(|| r.key.as_deref().map(escape));
        let value = data.then(|| r.value.as_deref().map(escape));
        let text = {
            let mut s = format!(
                "| offset: {} timestamp: {} keySize: {} valueSize: {} headers: [{}]",
                r.offset,
                r.timestamp,
                size_of(&r.key),
                size_of(&r.value),
                text_headers
            );
            if let (Some(k), Some(v)) = (&key, &value) {
                s.push_str(&format!(
                    " key: {} value: {}",
                    k.as_deref().unwrap_or("null"),
                    v.as_deref().unwrap_or("null")
                ));
            }
            s
        };
        let line = Line::Record(RecordLine {
            file,
            offset: r.offset,
            timestamp: r.timestamp,
            key_size: size_of(&r.key),
            value_size: size_of(&r.value),
            headers,
            key,
            value,
        });
        self.emit(&line, || text)
    }

    fn index(&mut self, path: &Path, kind: IndexKind) -> anyhow::Result<()> {
        let show = path.display().to_string();
        let fname = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path).with_context(|| show.clone())?;
        self.summary.bytes += bytes.len() as u64;
        if !self.args.json {
            writeln!(self.out, "Dumping {show}")?;
        }
        let Some((base, _)) = name::parse_file_name(&fname) else {
            self.problem(
                &show,
                None,
                "not a segment file name (20 digits and a suffix): base offset unknown".into(),
                None,
            )?;
            return Ok(());
        };
        if let Err(e) = index::check_file(kind, base, &bytes) {
            self.problem(
                &show,
                Some(e.position),
                format!("{}; entries below are shown as stored", e.reason),
                None,
            )?;
        }
        let body = bytes.get(index::layout::HEADER_LEN..).unwrap_or_default();
        let log = name::segment_path(path.parent().unwrap_or(Path::new(".")), base, FileKind::Log);
        let log_file = File::open(&log).ok();
        if log_file.is_none() {
            self.problem(
                &show,
                None,
                format!("no segment {}: entries not checked", log.display()),
                None,
            )?;
        }
        let opts = WalkOptions {
            max_batch_bytes: self.args.max_batch_bytes,
            verify_crc: false,
            expect_offset: None,
            start: 0,
        };
        match kind {
            IndexKind::Offset => {
                let entries: Vec<OffsetEntry> = body
                    .chunks_exact(kind.entry_len())
                    .map(OffsetEntry::parse)
                    .collect();
                let verdicts: Vec<Verdict<OffsetEntry>> = match &log_file {
                    Some(f) => {
                        let mut c = OffsetIndexCheck::new(base, entries.iter().copied());
                        let we = walk::walk(f, opts, &mut self.buf, |b, _| {
                            c.on_batch(b.position, b.header.base_offset);
                            ControlFlow::Continue(())
                        })
                        .with_context(|| log.display().to_string())?;
                        c.finish(we.end)
                    }
                    None => unchecked(entries),
                };
                for v in verdicts {
                    let e = v.value;
                    let valid = log_file.as_ref().map(|_| v.finding.is_none());
                    let reason = v.finding.map(|f| f.message);
                    let offset = base + u64::from(e.relative_offset);
                    self.emit(
                        &Line::IndexEntry(IndexLine {
                            file: &show,
                            entry: v.entry,
                            relative_offset: e.relative_offset,
                            offset,
                            position: e.position,
                            valid,
                            reason: reason.clone(),
                        }),
                        || {
                            entry_text(
                                format!("offset: {offset} position: {}", e.position),
                                valid,
                                reason.as_deref(),
                            )
                        },
                    )?;
                }
            }
            IndexKind::Time => {
                let entries: Vec<TimeEntry> = body
                    .chunks_exact(kind.entry_len())
                    .map(TimeEntry::parse)
                    .collect();
                let verdicts: Vec<Verdict<TimeEntry>> = match &log_file {
                    Some(f) => {
                        let mut c = TimeIndexCheck::new(base, entries.iter().copied());
                        let mut next = base;
                        walk::walk(f, opts, &mut self.buf, |b, _| {
                            let h = &b.header;
                            c.on_batch(b.position, h.base_offset, h.last_offset(), h.max_timestamp);
                            next = h.next_offset() as u64;
                            ControlFlow::Continue(())
                        })
                        .with_context(|| log.display().to_string())?;
                        c.finish(next)
                    }
                    None => unchecked(entries),
                };
                for v in verdicts {
                    let e = v.value;
                    let valid = log_file.as_ref().map(|_| v.finding.is_none());
                    let reason = v.finding.map(|f| f.message);
                    let offset = base + u64::from(e.relative_offset);
                    self.emit(
                        &Line::TimeIndexEntry(TimeIndexLine {
                            file: &show,
                            entry: v.entry,
                            timestamp: e.timestamp,
                            relative_offset: e.relative_offset,
                            offset,
                            batch_position: v.batch_position,
                            valid,
                            reason: reason.clone(),
                        }),
                        || {
                            entry_text(
                                format!("timestamp: {} offset: {offset}", e.timestamp),
                                valid,
                                reason.as_deref(),
                            )
                        },
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn unchecked<E>(entries: Vec<E>) -> Vec<Verdict<E>> {
    entries
        .into_iter()
        .enumerate()
        .map(|(entry, value)| Verdict {
            entry,
            value,
            batch_position: None,
            finding: None,
        })
        .collect()
}

fn entry_text(head: String, valid: Option<bool>, reason: Option<&str>) -> String {
    let mut s = head;
    s.push_str(match valid {
        Some(true) => " valid: true",
        Some(false) => " valid: false",
        None => " valid: unknown",
    });
    if let Some(r) = reason {
        s.push_str(&format!(" reason: {r}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_keeps_utf8_and_escapes_the_rest() {
        assert_eq!(escape(b"h\xc3\xa9llo"), "héllo");
        assert_eq!(escape(b"a\nb"), "a\\nb");
        assert_eq!(escape(b"\xff\x00z"), "\\xff\\u{0}z");
    }
}
