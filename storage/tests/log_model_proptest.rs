//! Property: any sequence of appends, reads, rolls, retention passes, clean closes and crashes
//! leaves the log agreeing with a simple in-memory model.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;
use proptest::prelude::*;
use strata_storage::log::{LogConfig, PartitionLog};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        value_len: usize,
    },
    /// Several appends started before the first is awaited (`start_append`).
    Pipelined {
        batches: Vec<(usize, usize)>,
    },
    Read {
        at: u16,
        max: u16,
    },
    Roll,
    Retain,
    CloseReopen,
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, 0usize..700).prop_map(|(records, value_len)| Op::Append { records, value_len }),
        2 => proptest::collection::vec((1usize..5, 0usize..700), 2..5)
            .prop_map(|batches| Op::Pipelined { batches }),
        3 => (any::<u16>(), any::<u16>()).prop_map(|(at, max)| Op::Read { at, max }),
        1 => Just(Op::Roll),
        1 => Just(Op::Retain),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        retention_bytes: Some(8192),
        index_interval_bytes: 512,
        ..small_config()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(open(dir.path(), config()));
        // Model: base offset -> (record count, batch bytes after baseOffset).
        let mut model: std::collections::BTreeMap<u64, (u32, Vec<u8>)> = Default::default();
        let mut next = 0u64;
        let mut start = 0u64;
        for (i, op) in ops.into_iter().enumerate() {
            let l = log.as_ref().unwrap();
            match op {
                Op::Append { records, value_len } => {
                    let b = numbered_batch(i as u64, records, value_len, i as i64);
                    let info = l.append_batch(b.clone()).unwrap();
                    prop_assert_eq!(info.base_offset, next);
                    model.insert(next, (records as u32, b[8..].to_vec()));
                    next += records as u64;
                }
                Op::Pipelined { batches } => {
                    let mut started = Vec::new();
                    for (k, &(records, value_len)) in batches.iter().enumerate() {
                        let no = (i * 10 + k) as u64;
                        let b = numbered_batch(no, records, value_len, no as i64);
                        let p = l.start_append(b.clone()).unwrap();
                        prop_assert_eq!(p.info().base_offset, next);
                        model.insert(next, (records as u32, b[8..].to_vec()));
                        next += records as u64;
                        started.push(p);
                    }
                    for p in started {
                        let want = p.info();
                        prop_assert_eq!(p.wait().unwrap(), want);
                    }
                    prop_assert_eq!(l.log_end_offset(), next);
                }
                Op::Read { at, max } => {
                    if next == start {
                        prop_assert!(l.read(start, 10).unwrap().is_empty());
                        continue;
                    }
                    let off = start + u64::from(at) % (next - start);
                    let s = l.read(off, usize::from(max)).unwrap();
                    let (&base, (count, bytes)) = model.range(..=off).next_back().unwrap();
                    let h = strata_storage::batch::BatchHeader::parse(&s).unwrap();
                    prop_assert_eq!(h.base_offset as u64, base);
                    prop_assert!(off < base + u64::from(*count));
                    prop_assert_eq!(&s[8..h.total_len()], &bytes[..]);
                }
                Op::Roll => l.roll().unwrap(),
                Op::Retain => {
                    let r = l.enforce_retention().unwrap();
                    prop_assert!(r.log_start_offset >= start);
                    start = r.log_start_offset;
                    model = model.split_off(&start);
                }
                Op::CloseReopen => {
                    log.take().unwrap().close().unwrap();
                    log = Some(open(dir.path(), config()));
                    prop_assert!(log.as_ref().unwrap().recovery_report().clean);
                }
                Op::CrashReopen => {
                    drop(log.take());
                    log = Some(PartitionLog::open(dir.path(), config(), backend()).unwrap());
                }
            }
            let l = log.as_ref().unwrap();
            prop_assert_eq!(l.log_end_offset(), next);
            prop_assert_eq!(l.log_start_offset(), start);
        }
        let l = log.as_ref().unwrap();
        let all = read_all(l, start);
        prop_assert_eq!(all.len(), model.len());
        for ((b, c, bytes), (mb, (mc, mbytes))) in all.iter().zip(model.iter()) {
            prop_assert_eq!(b, mb);
            prop_assert_eq!(c, mc);
            prop_assert_eq!(&bytes[8..], &mbytes[..]);
        }
    }
}
