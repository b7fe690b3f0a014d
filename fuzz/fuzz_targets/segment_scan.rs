//! Arbitrary bytes as the contents of a segment and its index files: the scanner, the index and
//! checkpoint decoders, and full recovery (`PartitionLog::open`) must never panic, and whatever
//! recovery keeps must read back as valid batches.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use strata_storage::io::plain::PlainBackend;
use strata_storage::log::checkpoint::Checkpoint;
use strata_storage::log::index::{OffsetIndex, TimeIndex};
use strata_storage::log::name::{FileKind, segment_path};
use strata_storage::log::scan::{BatchScanner, scan_segment};
use strata_storage::log::{LogConfig, PartitionLog};

fuzz_target!(|data: &[u8]| {
    let max = 1 << 20;
    for verify in [true, false] {
        let s = scan_segment(data, 0, max, verify, 64);
        assert!(s.valid_len as usize <= data.len());
    }
    let _ = OffsetIndex::decode(data, 0, data.len() as u64);
    let _ = TimeIndex::decode(data, 0, u64::MAX);
    let _ = Checkpoint::decode(data);

    // Recovery of a directory whose only segment holds these bytes.
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::write(segment_path(dir.path(), 0, FileKind::Log), data).is_err() {
        return;
    }
    let config = LogConfig {
        preallocate: false,
        retention_check_interval: None,
        max_batch_bytes: max,
        ..LogConfig::default()
    };
    let Ok(log) = PartitionLog::open(dir.path(), config, Arc::new(PlainBackend::new())) else {
        return;
    };
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let Ok(slice) = log.read(next, max) else { panic!("read of a recovered log failed") };
        let mut scanner = BatchScanner::new(&slice, max, true);
        let before = next;
        for b in scanner.by_ref() {
            next = b.header.next_offset() as u64;
        }
        assert!(scanner.stop().is_none(), "recovery kept a bad batch");
        assert!(next > before, "no progress");
    }
});
