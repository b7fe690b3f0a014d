//! `strata verify --compare-replicas DIR...`: the replicas of one partition, from different
//! brokers' data directories, compared batch by batch and byte for byte (a replica copies its
//! leader's batches exactly: offsets, leader epochs, producer fields, CRCs) up to the end of
//! the shortest one. Replicas may end at different offsets (a follower behind its leader, a
//! tail beyond the high watermark); they must not differ below that. Read-only, streamed: one
//! batch of each replica in memory at a time.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use strata_storage::batch::header::{BatchHeader, HEADER_LEN};

use super::target;

/// The batches of one replica, in offset order across its segments.
struct Batches {
    segments: std::vec::IntoIter<PathBuf>,
    current: Option<BufReader<File>>,
    max_batch: usize,
}

impl Batches {
    fn open(dir: &Path, max_batch: usize) -> Result<Self> {
        let l =
            target::list_partition(dir).with_context(|| format!("listing {}", dir.display()))?;
        let segments: Vec<PathBuf> = l.logs.values().map(|(p, _)| p.clone()).collect();
        Ok(Batches {
            segments: segments.into_iter(),
            current: None,
            max_batch,
        })
    }

    /// The next batch's bytes, `None` at the end of the data (the end of the last segment,
    /// or zeros and garbage after it: a preallocated or torn tail, which `verify` reports).
    fn next_batch(&mut self) -> Result<Option<Vec<u8>>> {
        // Bounded by the number of segments.
        loop {
            let Some(r) = self.current.as_mut() else {
                match self.segments.next() {
                    Some(p) => {
                        self.current = Some(BufReader::new(
                            File::open(&p).with_context(|| format!("opening {}", p.display()))?,
                        ));
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            let mut head = [0u8; HEADER_LEN];
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.current = None;
                    continue;
                }
                Err(e) => return Err(e).context("reading a batch header"),
            }
            let Ok(h) = BatchHeader::parse(&head) else {
                self.current = None;
                continue;
            };
            let len = h.total_len();
            if h.batch_length <= 0 || len < HEADER_LEN || len > self.max_batch {
                // The end of this segment's data.
                self.current = None;
                continue;
            }
            let mut batch = head.to_vec();
            batch.resize(len, 0);
            let body = batch.get_mut(HEADER_LEN..).unwrap_or_default();
            r.read_exact(body).context("reading a batch")?;
            return Ok(Some(batch));
        }
    }
}

/// Compares the replicas in `dirs`; prints the outcome. Exit 0 when they agree up to the
/// shortest's end, 1 at the first difference.
pub fn compare_replicas(dirs: &[PathBuf], max_batch: usize, json: bool) -> Result<ExitCode> {
    anyhow::ensure!(
        dirs.len() >= 2,
        "--compare-replicas needs two replicas or more"
    );
    let mut replicas: Vec<Batches> = dirs
        .iter()
        .map(|d| Batches::open(d, max_batch))
        .collect::<Result<_>>()?;
    let mut batches = 0u64;
    let mut next_offset: i64 = -1;
    // Bounded: every round consumes one batch of each replica, or ends.
    loop {
        let mut round: Vec<Option<Vec<u8>>> = Vec::with_capacity(replicas.len());
        for r in &mut replicas {
            round.push(r.next_batch()?);
        }
        if round.iter().any(Option::is_none) {
            let ends: Vec<String> = dirs
                .iter()
                .zip(&round)
                .map(|(d, b)| {
                    format!(
                        "{}: {}",
                        d.display(),
                        if b.is_some() { "longer" } else { "ends here" }
                    )
                })
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"type": "replicas", "identical": true, "batches": batches, "up_to_offset": next_offset, "ends": ends})
                );
            } else {
                println!(
                    "replicas identical for {batches} batches, up to offset {next_offset} ({})",
                    ends.join("; ")
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        let first = round.first().and_then(Option::as_ref);
        let differs = round.iter().any(|b| b.as_ref() != first);
        if differs {
            let describe: Vec<String> = dirs
                .iter()
                .zip(&round)
                .map(|(d, b)| {
                    let h = b.as_deref().and_then(|b| BatchHeader::parse(b).ok());
                    match h {
                        Some(h) => format!(
                            "{}: batch at offset {} (epoch {}, {} bytes, crc {:#010x})",
                            d.display(),
                            h.base_offset,
                            h.partition_leader_epoch,
                            h.total_len(),
                            h.crc
                        ),
                        None => format!("{}: no batch", d.display()),
                    }
                })
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"type": "replicas", "identical": false, "batches": batches, "after_offset": next_offset, "differ": describe})
                );
            } else {
                println!(
                    "replicas differ after {batches} identical batches (next offset {}):",
                    next_offset + 1
                );
                for d in describe {
                    println!("  {d}");
                }
            }
            return Ok(ExitCode::from(1));
        }
        if let Some(h) = first.and_then(|b| BatchHeader::parse(b).ok()) {
            next_offset = h.last_offset();
        }
        batches += 1;
    }
}
