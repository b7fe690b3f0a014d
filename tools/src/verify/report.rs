//! What `strata verify` prints: one line per problem (text or JSON), repair actions, a summary.

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// One finding: which file, where in it, which check failed, what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    /// Byte position in `file` (absent for whole-file problems such as a bad name).
    pub position: Option<u64>,
    pub check: &'static str,
    pub expected: String,
    pub found: String,
    pub message: String,
}

/// A change `--repair` made (or refused to make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairAction {
    /// `truncated`, `rewrote`, `removed`, `created` or `refused`.
    pub action: &'static str,
    pub file: String,
    pub position: Option<u64>,
    pub bytes: Option<u64>,
    pub reason: String,
}

/// Totals of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub partitions: u64,
    pub segments: u64,
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    pub index_entries: u64,
    /// Zero padding past the last batch of segments written with O_DIRECT and not yet
    /// truncated (a crash before a seal or a clean close): not a problem. Shown only when
    /// there is some.
    #[serde(skip_serializing_if = "is_zero")]
    pub padding_bytes: u64,
    pub problems: u64,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Problem(&'a Problem),
    Repair(&'a RepairAction),
    Summary(&'a Summary),
}

/// Writes lines as they are found; remembers the first write error instead of failing the walk.
pub struct Reporter<'w> {
    out: &'w mut dyn Write,
    json: bool,
    pub summary: Summary,
    progress: Option<ProgressBar>,
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for Reporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("json", &self.json)
            .field("summary", &self.summary)
            .finish()
    }
}

impl<'w> Reporter<'w> {
    pub fn new(out: &'w mut dyn Write, json: bool) -> Self {
        Reporter {
            out,
            json,
            summary: Summary::default(),
            progress: None,
            error: None,
        }
    }

    /// Shows a progress bar over `total` bytes on stderr (call only when stderr is a terminal).
    pub fn show_progress(&mut self, total: u64) {
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        self.progress = Some(bar);
    }

    pub fn advance(&self, bytes: u64) {
        if let Some(p) = &self.progress {
            p.inc(bytes);
        }
    }

    fn write_line(&mut self, line: &Line<'_>, text: impl FnOnce() -> String) {
        if self.error.is_some() {
            return;
        }
        let res = if self.json {
            serde_json::to_writer(&mut *self.out, line)
                .map_err(std::io::Error::other)
                .and_then(|()| self.out.write_all(b"\n"))
        } else {
            let s = text();
            match &self.progress {
                Some(p) => p.suspend(|| writeln!(self.out, "{s}")),
                None => writeln!(self.out, "{s}"),
            }
        };
        if let Err(e) = res {
            self.error = Some(e);
        }
    }

    pub fn problem(&mut self, p: Problem) {
        self.summary.problems += 1;
        self.write_line(&Line::Problem(&p), || format_problem(&p));
    }

    pub fn repair(&mut self, a: RepairAction) {
        self.write_line(&Line::Repair(&a), || format_repair(&a));
    }

    /// Prints the summary and returns the first write error, if any.
    pub fn finish(mut self) -> std::io::Result<Summary> {
        if let Some(p) = self.progress.take() {
            p.finish_and_clear();
        }
        let s = self.summary.clone();
        self.write_line(&Line::Summary(&s), || format_summary(&s));
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(s)
    }
}

/// `file:position: check: message (expected E, found F)`, as compilers print diagnostics.
pub fn format_problem(p: &Problem) -> String {
    let mut s = p.file.clone();
    if let Some(pos) = p.position {
        s.push_str(&format!(":{pos}"));
    }
    s.push_str(&format!(": {}: {}", p.check, p.message));
    if !p.expected.is_empty() || !p.found.is_empty() {
        s.push_str(&format!(" (expected {}, found {})", p.expected, p.found));
    }
    s
}

fn format_repair(a: &RepairAction) -> String {
    let mut s = format!("repair: {}: {}", a.file, a.action);
    if let Some(pos) = a.position {
        s.push_str(&format!(" at position {pos}"));
    }
    if let Some(b) = a.bytes {
        s.push_str(&format!(", {b} bytes removed"));
    }
    if !a.reason.is_empty() {
        s.push_str(&format!(" ({})", a.reason));
    }
    s
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn format_summary(s: &Summary) -> String {
    let padding = if s.padding_bytes > 0 {
        format!(" padding_bytes: {}", s.padding_bytes)
    } else {
        String::new()
    };
    format!(
        "summary: partitions: {} segments: {} batches: {} records: {} bytes: {} index_entries: {}{padding} problems: {}",
        s.partitions, s.segments, s.batches, s.records, s.bytes, s.index_entries, s.problems
    )
}
