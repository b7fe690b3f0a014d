//! Scenario: one damaged partition (or topic metadata file) never stops the broker. It starts,
//! serves every healthy partition, and reports the damaged one offline: KAFKA_STORAGE_ERROR to
//! produce, fetch and ListOffsets, and in Metadata, with the file and byte position in its log.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use common::*;
use kafka_protocol::messages::*;

const KAFKA_STORAGE_ERROR: i16 = 56;

/// A broker with topic `a` (2 partitions of several small segments each) and topic `b`, stopped
/// cleanly. Returns the data dir's owner and path.
fn stopped_broker_with_data() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut b = Broker::start_in(&dir, &[]);
    let mut c = b.client();
    create_topic(&mut c, "a", 2, &[("segment.bytes", "2048")]);
    create_topic(&mut c, "b", 1, &[]);
    for i in 0..20 {
        for p in 0..2 {
            let v = format!("a{p}-{i}-{}", "x".repeat(200));
            let r = produce(&mut c, "a", p, batch(&[&v], None), -1).unwrap();
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
        produce(&mut c, "b", 0, batch(&[&format!("b{i}")], None), -1).unwrap();
    }
    drop(c);
    assert_eq!(b.stop(), 0);
    (tmp, dir)
}

fn segments(partition_dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

fn metadata(c: &mut Client, topics: &[&str]) -> MetadataResponse {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    c.call(
        &MetadataRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic(t))))
                .collect(),
        )),
        12,
    )
}

fn list_offset(c: &mut Client, t: &str, p: i32) -> i16 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let r = c.call(
        &ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic(t))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(p)
                        .with_timestamp(-1),
                ]),
        ]),
        7,
    );
    r.topics[0].partitions[0].error_code
}

/// Starts on the damaged dir and checks that `a-1` is offline and everything else serves.
/// Returns the broker's log.
fn assert_only_a1_offline(dir: &Path, log: &Path) -> String {
    let b = Broker::start_logged(dir, &[], log);
    let mut c = b.client();
    // Healthy partitions serve as before, and take new writes.
    for (t, p, n) in [("a", 0, 20), ("b", 0, 20)] {
        let r = fetch(&mut c, t, p, 0, 0, 12);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        assert_eq!(r.responses[0].partitions[0].high_watermark, n);
        let r = produce(&mut c, t, p, batch(&["more"], None), -1).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    // The damaged one answers KAFKA_STORAGE_ERROR everywhere, with a message saying why.
    let r = produce(&mut c, "a", 1, batch(&["lost?"], None), -1).unwrap();
    let pr = &r.responses[0].partition_responses[0];
    assert_eq!(pr.error_code, KAFKA_STORAGE_ERROR);
    let message = pr.error_message.as_ref().unwrap().to_string();
    assert!(message.contains("a-1 is offline"), "{message}");
    let r = fetch(&mut c, "a", 1, 0, 0, 12);
    assert_eq!(r.responses[0].partitions[0].error_code, KAFKA_STORAGE_ERROR);
    assert_eq!(list_offset(&mut c, "a", 1), KAFKA_STORAGE_ERROR);
    let md = metadata(&mut c, &["a", "b"]);
    let a = &md.topics[0].partitions;
    assert_eq!((a[0].error_code, a[1].error_code), (0, KAFKA_STORAGE_ERROR));
    assert_eq!(a[1].offline_replicas, vec![BrokerId(0)]);
    assert_eq!(md.topics[1].partitions[0].error_code, 0);
    drop(c);
    let log = b.log_text();
    assert!(
        log.contains("partition offline") && log.contains("a-1"),
        "{log}"
    );
    log
}

#[test]
fn given_a_bad_batch_header_in_a_sealed_segment_when_the_broker_starts_then_only_that_partition_is_offline()
 {
    let (tmp, dir) = stopped_broker_with_data();
    let segs = segments(&dir.join("a-1"));
    assert!(segs.len() >= 3, "{segs:?}");
    // batchLength of the second batch of the first (sealed) segment: one no reader can follow.
    let first_len = {
        let bytes = std::fs::read(&segs[0]).unwrap();
        12 + i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as u64
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap();
    f.seek(SeekFrom::Start(first_len + 8)).unwrap();
    f.write_all(&0x7fff_0000i32.to_be_bytes()).unwrap();
    drop(f);
    let log = assert_only_a1_offline(&dir, &tmp.path().join("broker.log"));
    let file = segs[0].display().to_string();
    assert!(
        log.contains(&file) && log.contains(&format!("position {first_len}")),
        "the log names the file and byte position: {log}"
    );
}

#[test]
fn given_a_missing_middle_segment_when_the_broker_starts_then_only_that_partition_is_offline() {
    let (tmp, dir) = stopped_broker_with_data();
    let segs = segments(&dir.join("a-1"));
    assert!(segs.len() >= 3, "{segs:?}");
    std::fs::remove_file(&segs[1]).unwrap();
    let log = assert_only_a1_offline(&dir, &tmp.path().join("broker.log"));
    assert!(log.contains(&segs[2].display().to_string()), "{log}");
}

#[test]
fn given_the_last_segment_cut_short_after_a_clean_stop_when_the_broker_starts_then_only_that_partition_is_offline()
 {
    let (tmp, dir) = stopped_broker_with_data();
    let segs = segments(&dir.join("a-1"));
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    assert_only_a1_offline(&dir, &tmp.path().join("broker.log"));
}

#[test]
fn given_a_corrupt_topic_metadata_file_when_the_broker_starts_then_that_topic_is_offline_and_can_be_deleted()
 {
    let (tmp, dir) = stopped_broker_with_data();
    let meta = dir.join("topics").join("a.json");
    std::fs::write(&meta, b"{\"name\": \"a\", \"partit").unwrap();
    let b = Broker::start_logged(&dir, &[], &tmp.path().join("broker.log"));
    let mut c = b.client();
    let md = metadata(&mut c, &["a", "b"]);
    assert_eq!(md.topics[0].error_code, KAFKA_STORAGE_ERROR);
    assert_eq!(md.topics[1].error_code, 0);
    assert_eq!(
        fetch(&mut c, "b", 0, 0, 0, 12).responses[0].partitions[0].high_watermark,
        20
    );
    // Listed among all topics too, so an operator sees it.
    let all = c.call(&MetadataRequest::default().with_topics(None), 12);
    assert!(
        all.topics
            .iter()
            .any(|t| t.name.as_ref().unwrap().0.as_str() == "a"
                && t.error_code == KAFKA_STORAGE_ERROR)
    );
    assert!(b.log_text().contains(&meta.display().to_string()));
    // Creating it again is refused with the reason; deleting it removes the file and its data.
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let r = c.call(
        &CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(topic("a"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]),
        7,
    );
    assert_eq!(r.topics[0].error_code, KAFKA_STORAGE_ERROR);
    let r = c.call(
        &DeleteTopicsRequest::default().with_topic_names(vec![topic("a")]),
        5,
    );
    assert_eq!(r.responses[0].error_code, 0);
    assert!(!meta.exists() && !dir.join("a-0").exists() && !dir.join("a-1").exists());
    create_topic(&mut c, "a", 1, &[]);
    assert_eq!(
        fetch(&mut c, "a", 0, 0, 0, 12).responses[0].partitions[0].high_watermark,
        0
    );
}

#[test]
fn given_a_partition_directory_of_no_topic_when_the_broker_starts_then_it_is_reported_and_left_alone()
 {
    let (tmp, dir) = stopped_broker_with_data();
    let ghost = dir.join("ghost-3");
    std::fs::create_dir(&ghost).unwrap();
    std::fs::write(ghost.join("00000000000000000000.log"), b"").unwrap();
    let b = Broker::start_logged(&dir, &[], &tmp.path().join("broker.log"));
    let log = b.log_text();
    assert!(
        log.contains("partition directory of no topic") && log.contains("ghost-3"),
        "{log}"
    );
    assert!(ghost.exists());
    // A topic whose partition directory is in the way is not created over it.
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let mut c = b.client();
    let r = c.call(
        &CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(topic("ghost"))
                .with_num_partitions(5)
                .with_replication_factor(1),
        ]),
        7,
    );
    assert_eq!(r.topics[0].error_code, KAFKA_STORAGE_ERROR);
    assert!(
        r.topics[0]
            .error_message
            .as_ref()
            .unwrap()
            .contains("ghost-3"),
        "{:?}",
        r.topics[0].error_message
    );
    // All or nothing: the partitions made before the one in the way are gone again.
    for p in 0..3 {
        assert!(
            !dir.join(format!("ghost-{p}")).exists(),
            "ghost-{p} left behind"
        );
    }
    assert!(!dir.join("topics").join("ghost.json").exists());
}

fn strata_verify(args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn given_an_offline_partition_when_verify_cuts_it_at_its_damage_then_the_broker_serves_it_again() {
    let (tmp, dir) = stopped_broker_with_data();
    let segs = segments(&dir.join("a-1"));
    std::fs::remove_file(&segs[1]).unwrap(); // a missing middle segment
    let data = dir.to_str().unwrap();
    // Plain --repair refuses, and says how to go further.
    let (code, out) = strata_verify(&["--repair", data]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refused") && out.contains("--truncate-at-damage"),
        "{out}"
    );
    let (code, out) = strata_verify(&["--repair", "--truncate-at-damage", data]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the partition now ends at offset"), "{out}");
    let b = Broker::start_logged(&dir, &[], &tmp.path().join("broker.log"));
    let mut c = b.client();
    let md = metadata(&mut c, &["a"]);
    assert!(md.topics[0].partitions.iter().all(|p| p.error_code == 0));
    let r = fetch(&mut c, "a", 1, 0, 0, 12);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    let kept = r.responses[0].partitions[0].high_watermark;
    assert!(kept > 0 && kept < 20, "{kept}");
    let r = produce(&mut c, "a", 1, batch(&["again"], None), -1).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].base_offset, kept);
}

#[test]
fn given_damaged_topic_files_and_stray_directories_when_the_data_dir_is_verified_then_each_is_reported()
 {
    let (_tmp, dir) = stopped_broker_with_data();
    std::fs::write(dir.join("topics").join("a.json"), b"not json").unwrap();
    std::fs::remove_dir_all(dir.join("b-0")).unwrap();
    std::fs::create_dir(dir.join("ghost-0")).unwrap();
    let (code, out) = strata_verify(&[dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a.json: topic_metadata:"), "{out}");
    assert!(out.contains("b-0: partition_missing:"), "{out}");
    assert!(out.contains("ghost-0: partition_orphan:"), "{out}");
    // a-0 and a-1 belong to the topic whose file is damaged: not orphans.
    assert!(!out.contains("a-0: partition_orphan"), "{out}");
}
