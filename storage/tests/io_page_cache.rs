//! Scenario: a benchmark evicts a file from the page cache and asks how much of it is still
//! cached, to say how cold a cold read was.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};

use strata_storage::io::{evict_page_cache, resident_bytes};

#[test]
fn given_a_cached_file_when_evicted_then_resident_bytes_drop_from_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let len = (1 << 20) + 123;
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&vec![7u8; len])
        .unwrap();
    std::fs::File::open(&path)
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap();
    assert_eq!(resident_bytes(&path).unwrap(), len as u64, "just read");

    evict_page_cache(&path).unwrap();
    let left = resident_bytes(&path).unwrap();
    if left == len as u64 {
        strata_storage::testing::skip(
            "page_cache_eviction",
            "this file system keeps every page cached (tmpfs?)",
        );
        return;
    }
    assert!(left < len as u64 / 4, "{left} of {len} bytes still cached");

    let empty = dir.path().join("empty");
    std::fs::File::create(&empty).unwrap();
    assert_eq!(resident_bytes(&empty).unwrap(), 0);
    assert!(resident_bytes(&dir.path().join("missing")).is_err());
}
