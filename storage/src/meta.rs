//! Topic metadata files and the data directory's layout around the partitions (FORMAT.md §10):
//! one JSON file per topic, `<data-dir>/topics/<name>.json`, written by atomic replace through
//! the configured [`IoBackend`] (so the fault-injecting backends see topic creation and
//! deletion), and the `<topic>-<n>` partition directories beside them.
//!
//! The broker reads and writes these files; `strata verify` checks them with the same
//! [`read_topic`], so nothing parses them twice.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::io::{IoBackend, write_file_atomic};

/// Directory of the topic metadata files, under the data directory.
pub const TOPICS_DIR: &str = "topics";

/// Largest topic metadata file read: a name, an id and a few configs fit in a kilobyte.
pub const MAX_TOPIC_FILE_BYTES: u64 = 1 << 20;

/// Most partitions a topic may have (CreateTopics and topic files alike).
pub const MAX_PARTITIONS: i32 = 100_000;

/// One topic's metadata: what `topics/<name>.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Partition count: partitions are `<name>-0` to `<name>-(partitions - 1)`.
    pub partitions: i32,
    /// The topic id (a UUID), 32 lowercase hex digits; changes when a topic is re-created.
    pub id: String,
    /// Topic-level config overrides (Kafka's names).
    pub configs: BTreeMap<String, String>,
    /// In a cluster: the partitions this broker holds (the others are on other brokers and
    /// have no directory here). Absent: every partition, as a single broker holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted: Option<Vec<i32>>,
}

impl TopicMeta {
    /// Whether this broker holds partition `p` (see [`TopicMeta::hosted`]).
    pub fn hosts(&self, p: i32) -> bool {
        self.hosted.as_ref().is_none_or(|h| h.contains(&p))
    }

    /// The topic id as a number (checked by [`read_topic`]).
    pub fn id_value(&self) -> u128 {
        u128::from_str_radix(&self.id, 16).unwrap_or(0)
    }
}

/// Why a topic metadata file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", .path.display())]
pub struct TopicFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// The file of topic `name`.
pub fn topic_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(TOPICS_DIR).join(format!("{name}.json"))
}

/// Reads and checks `path`, the file of topic `name`: bounded in size, valid JSON of the
/// [`TopicMeta`] shape, naming its own topic, with a partition count in 1..=[`MAX_PARTITIONS`]
/// and a hex id.
pub fn read_topic(path: &Path, name: &str) -> std::result::Result<TopicMeta, TopicFileError> {
    let bad = |reason: String| TopicFileError {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let mut text = String::new();
    file.take(MAX_TOPIC_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_TOPIC_FILE_BYTES {
        return Err(bad(format!("more than {MAX_TOPIC_FILE_BYTES} bytes")));
    }
    let meta: TopicMeta =
        serde_json::from_str(&text).map_err(|e| bad(format!("does not parse: {e}")))?;
    if meta.name != name {
        return Err(bad(format!("names topic {:?}, not {name:?}", meta.name)));
    }
    if !(1..=MAX_PARTITIONS).contains(&meta.partitions) {
        return Err(bad(format!(
            "{} partitions, outside 1..={MAX_PARTITIONS}",
            meta.partitions
        )));
    }
    if meta.id.len() != 32 || u128::from_str_radix(&meta.id, 16).is_err() {
        return Err(bad(format!("topic id {:?} is not 32 hex digits", meta.id)));
    }
    Ok(meta)
}

/// Every topic file under `data_dir/topics`, as `(topic name, path)`, sorted.
pub fn list_topics(data_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let dir = data_dir.join(TOPICS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read dir", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.ctx("read dir", &dir)?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Some(name) = path.file_stem().and_then(|n| n.to_str())
        {
            out.push((name.to_string(), path.clone()));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a topic's file durably: atomic replace, then a sync of the topics directory.
pub fn write_topic(backend: &dyn IoBackend, data_dir: &Path, meta: &TopicMeta) -> Result<()> {
    let dir = data_dir.join(TOPICS_DIR);
    backend.create_dir_all(&dir).ctx("create dir", &dir)?;
    let json = serde_json::to_vec_pretty(meta)
        .map_err(|e| Error::Config(format!("encoding topic metadata: {e}")))?;
    write_file_atomic(backend, &topic_path(data_dir, &meta.name), &json)?;
    backend.sync_dir(&dir).ctx("fsync dir", &dir)
}

/// Removes a topic's file durably (a missing file is not an error).
pub fn remove_topic(backend: &dyn IoBackend, data_dir: &Path, name: &str) -> Result<()> {
    let path = topic_path(data_dir, name);
    match backend.remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", path, e)),
    }
    let dir = data_dir.join(TOPICS_DIR);
    backend.sync_dir(&dir).ctx("fsync dir", &dir)
}

/// Kafka's `replication-offset-checkpoint` in the data directory: the high watermark of each
/// replicated partition this broker holds (FORMAT.md §10), written every
/// `replica.high.watermark.checkpoint.interval.ms` and at a clean stop, read at start so that
/// a restarted replica does not show consumers what was never acknowledged.
pub const HW_CHECKPOINT: &str = "replication-offset-checkpoint";

/// Largest checkpoint file read: 100,000 partitions of 249-byte names fit in 32 MiB.
pub const MAX_HW_CHECKPOINT_BYTES: u64 = 32 << 20;

/// High watermarks by (topic, partition).
pub type HighWatermarks = BTreeMap<(String, i32), u64>;

/// Kafka's text layout: the version (`0`), the number of entries, then one
/// `<topic> <partition> <offset>` line per entry.
pub fn encode_high_watermarks(hw: &HighWatermarks) -> Vec<u8> {
    let mut out = format!("0\n{}\n", hw.len());
    for ((topic, p), offset) in hw {
        out.push_str(&format!("{topic} {p} {offset}\n"));
    }
    out.into_bytes()
}

/// Decodes [`encode_high_watermarks`]' layout, refusing anything else: another version, a
/// count that is not the number of lines, a last line without its newline, a name with a space or longer than a topic name may
/// be, a negative partition or offset.
pub fn decode_high_watermarks(bytes: &[u8]) -> std::result::Result<HighWatermarks, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    if !text.ends_with('\n') {
        return Err("does not end with a newline (cut short?)".into());
    }
    let mut lines = text.lines();
    match lines.next() {
        Some("0") => {}
        other => return Err(format!("version {other:?}, expected \"0\"")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("no entry count on line 2")?;
    let mut out = HighWatermarks::new();
    for (i, line) in lines.enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 3);
        let mut f = line.split(' ');
        let (Some(topic), Some(p), Some(offset), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(bad("expected <topic> <partition> <offset>"));
        };
        if topic.is_empty() || topic.len() > 249 {
            return Err(bad("topic name of 1 to 249 bytes expected"));
        }
        let p: i32 = p
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| bad("bad partition"))?;
        let offset: u64 = offset.parse().map_err(|_| bad("bad offset"))?;
        if out.insert((topic.to_string(), p), offset).is_some() {
            return Err(bad("partition listed twice"));
        }
    }
    if out.len() != count {
        return Err(format!("{} entries, the header says {count}", out.len()));
    }
    Ok(out)
}

/// Reads the data directory's checkpoint: `Ok(None)` when there is none, `Err` (with the
/// reason) when it does not read or decode.
pub fn read_high_watermarks(
    data_dir: &Path,
) -> std::result::Result<Option<HighWatermarks>, String> {
    let path = data_dir.join(HW_CHECKPOINT);
    let bytes = match crate::io::read_small_file(&path, MAX_HW_CHECKPOINT_BYTES) {
        Ok(None) => return Ok(None),
        Ok(Some(Ok(bytes))) => bytes,
        Ok(Some(Err(why))) => return Err(format!("{}: {why}", path.display())),
        Err(e) => return Err(e.to_string()),
    };
    decode_high_watermarks(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the checkpoint durably (atomic replace through `backend`, then a sync of the data
/// directory).
pub fn write_high_watermarks(
    backend: &dyn IoBackend,
    data_dir: &Path,
    hw: &HighWatermarks,
) -> Result<()> {
    write_file_atomic(
        backend,
        &data_dir.join(HW_CHECKPOINT),
        &encode_high_watermarks(hw),
    )?;
    backend.sync_dir(data_dir).ctx("fsync dir", data_dir)
}

/// The directory of partition `index` of `topic` (named by [`crate::log::name`]).
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

/// `<topic>-<n>` as a topic and a partition index: [`crate::log::name::parse_partition_dir_name`]
/// with the index as Kafka types it.
pub fn parse_partition_dir(name: &str) -> Option<(&str, i32)> {
    let (topic, index) = crate::log::name::parse_partition_dir_name(name)?;
    Some((topic, i32::try_from(index).ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn high_watermark_checkpoints_roundtrip_and_refuse_damage() {
        let mut hw = HighWatermarks::new();
        hw.insert(("orders".into(), 0), 42);
        hw.insert(("__consumer_offsets".into(), 17), 0);
        let bytes = encode_high_watermarks(&hw);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "0\n2\n__consumer_offsets 17 0\norders 0 42\n"
        );
        assert_eq!(decode_high_watermarks(&bytes).unwrap(), hw);
        assert_eq!(
            decode_high_watermarks(b"0\n0\n").unwrap(),
            HighWatermarks::new()
        );
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n",
            b"0\n2\norders 0 42\n",
            b"0\n1\norders 0\n",
            b"0\n1\norders 0 42 7\n",
            b"0\n1\norders -1 42\n",
            b"0\n1\norders 0 -42\n",
            b"0\n2\norders 0 1\norders 0 2\n",
            b"0\n1\n 0 1\n",
            b"\xff\n",
        ] {
            assert!(decode_high_watermarks(bad).is_err(), "{bad:?}");
        }
        // Every cut of a valid file is refused.
        for cut in 0..bytes.len() {
            assert!(
                decode_high_watermarks(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn partition_directory_names_need_an_index_kafka_can_type() {
        assert_eq!(parse_partition_dir("a-b-12"), Some(("a-b", 12)));
        assert_eq!(parse_partition_dir("t-3000000000"), None, "above i32::MAX");
        assert_eq!(parse_partition_dir("t-0.quarantine.5"), None);
    }

    #[test]
    fn a_topic_file_is_refused_unless_it_names_its_topic_with_a_valid_count_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let good = TopicMeta {
            name: "t".into(),
            partitions: 3,
            id: format!("{:032x}", 7u128),
            configs: BTreeMap::new(),
            hosted: None,
        };
        let write = |m: &TopicMeta| std::fs::write(&path, serde_json::to_vec(m).unwrap()).unwrap();
        write(&good);
        assert_eq!(read_topic(&path, "t").unwrap(), good);
        assert!(read_topic(&path, "u").is_err(), "another topic's file");
        for bad in [
            TopicMeta {
                partitions: 0,
                ..good.clone()
            },
            TopicMeta {
                id: "xyz".into(),
                ..good.clone()
            },
        ] {
            write(&bad);
            assert!(read_topic(&path, "t").is_err(), "{bad:?}");
        }
        std::fs::write(&path, b"{\"name\": \"t\", \"parti").unwrap();
        assert!(
            read_topic(&path, "t")
                .unwrap_err()
                .reason
                .contains("does not parse")
        );
    }

    fn meta(name: &str, partitions: i32) -> TopicMeta {
        TopicMeta {
            name: name.into(),
            partitions,
            id: format!("{:032x}", 9u128),
            configs: BTreeMap::new(),
            hosted: None,
        }
    }

    #[test]
    fn a_written_topic_survives_a_crash_and_a_removed_one_stays_gone() {
        use crate::io::faulty::{ForgetfulBackend, TornMode};
        let dir = tempfile::tempdir().unwrap();
        let disk = ForgetfulBackend::new();
        write_topic(&disk, dir.path(), &meta("t", 2)).unwrap();
        write_topic(&disk, dir.path(), &meta("u", 1)).unwrap();
        // A replace keeps the old file until the new one is durable.
        write_topic(&disk, dir.path(), &meta("t", 5)).unwrap();
        disk.crash(TornMode::Clean);
        let listed = list_topics(dir.path()).unwrap();
        let names: Vec<_> = listed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["t", "u"]);
        assert_eq!(
            read_topic(&topic_path(dir.path(), "t"), "t").unwrap(),
            meta("t", 5)
        );

        remove_topic(&disk, dir.path(), "u").unwrap();
        remove_topic(&disk, dir.path(), "never-existed").unwrap();
        disk.crash(TornMode::Clean);
        let names: Vec<_> = list_topics(dir.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["t"]);
    }

    #[test]
    fn a_failed_removal_is_reported_not_ignored() {
        use crate::io::faulty::{FailMode, FailingBackend};
        use crate::io::plain::PlainBackend;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let plain: Arc<dyn IoBackend> = Arc::new(PlainBackend::new());
        write_topic(plain.as_ref(), dir.path(), &meta("t", 1)).unwrap();
        let disk = FailingBackend::with_mode(plain, FailMode::EveryOp("remove_file"));
        assert!(remove_topic(&disk, dir.path(), "t").is_err());
        assert!(topic_path(dir.path(), "t").exists());
        // The atomic replace removes a leftover temporary first; failing that is an error too.
        assert!(write_topic(&disk, dir.path(), &meta("t", 3)).is_err());
        assert_eq!(
            read_topic(&topic_path(dir.path(), "t"), "t").unwrap(),
            meta("t", 1)
        );
    }
}
