//! Test harness: the real `strata` binary on a free loopback port, and the project's Kafka
//! client (`strata-client`) for exact protocol-level assertions.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};

/// A running broker; killed (SIGKILL) on drop unless stopped.
pub struct Broker {
    pub child: Option<Child>,
    pub addr: String,
    pub dir: PathBuf,
    /// Where its stderr goes when started with [`Broker::start_logged`].
    pub log: Option<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

impl Broker {
    pub fn start(extra: &[&str]) -> Broker {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut b = Broker::start_in(&dir, extra);
        b._tmp = Some(tmp);
        b
    }

    /// Starts on an existing data dir (restarts).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Broker {
        Broker::spawn(dir, extra, None)
    }

    /// [`Broker::start_in`] with the broker's log (RUST_LOG=info) written to `log`, for tests
    /// that check what it reports.
    pub fn start_logged(dir: &Path, extra: &[&str], log: &Path) -> Broker {
        Broker::spawn(dir, extra, Some(log))
    }

    /// Everything the broker logged so far (started with [`Broker::start_logged`]).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// [`Broker::start_logged`] under an open-file limit of `nofile` (soft and hard, set by
    /// `sh`'s `ulimit -n` before it execs the broker).
    pub fn start_with_open_file_limit(
        dir: &Path,
        extra: &[&str],
        log: &Path,
        nofile: u32,
    ) -> Broker {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_strata"));
        Broker::spawn_cmd(cmd, dir, extra, Some(log))
    }

    fn spawn(dir: &Path, extra: &[&str], log: Option<&Path>) -> Broker {
        Broker::spawn_cmd(Command::new(env!("CARGO_BIN_EXE_strata")), dir, extra, log)
    }

    fn spawn_cmd(mut cmd: Command, dir: &Path, extra: &[&str], log: Option<&Path>) -> Broker {
        cmd.arg("serve");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.arg("--data-dir").arg(dir);
        // The suite runs once per write backend and write mode (scripts/test-all sets
        // STRATA_TEST_BACKEND and STRATA_TEST_WRITE_MODE).
        if let Ok(backend) = std::env::var("STRATA_TEST_BACKEND") {
            cmd.arg("--set").arg(format!("strata.io.backend={backend}"));
        }
        if let Ok(mode) = std::env::var("STRATA_TEST_WRITE_MODE") {
            cmd.arg("--set")
                .arg(format!("strata.log.write.mode={mode}"));
        }
        cmd.args(extra).stdout(Stdio::piped());
        match log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                cmd.env("RUST_LOG", "info").stderr(Stdio::from(f));
            }
            None => {
                cmd.env("RUST_LOG", "warn").stderr(Stdio::inherit());
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // A node of a cluster first says where its controller listener is.
        if line.starts_with("controller listening on ") {
            line.clear();
            out.read_line(&mut line).unwrap();
        }
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Broker {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
            log: log.map(Path::to_path_buf),
            _tmp: None,
        }
    }

    /// A process started by the caller (`addr` empty when it serves no clients).
    pub fn from_child(child: Child, addr: String, dir: &Path) -> Broker {
        Broker {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
            log: None,
            _tmp: None,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr)
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        child.wait().unwrap().code().unwrap_or(-1)
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The project's Kafka client ([`strata_client::Conn`]) with test-friendly calls: every failure
/// panics, and `stream` is the socket itself for tests that write raw bytes.
pub struct Client {
    pub stream: TcpStream,
    conn: strata_client::Conn,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let conn = strata_client::Conn::over(TcpStream::connect(addr).unwrap(), "strata-test");
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let stream = conn.try_clone_stream().unwrap();
        Client { stream, conn }
    }

    /// Sends a raw frame body (size prefix added).
    pub fn send_raw(&mut self, body: &[u8]) {
        self.conn.send_frame(body).unwrap();
    }

    /// A request's header and body, encoded (no size prefix), and its correlation id.
    pub fn encode_request<R: Request>(&mut self, req: &R, version: i16) -> (i32, Vec<u8>) {
        self.conn.encode_request(req, version).unwrap()
    }

    /// Reads one response frame; `None` if the broker closed the connection (or the read
    /// timed out).
    pub fn read_frame(&mut self) -> Option<Bytes> {
        self.conn.read_frame().ok()
    }

    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        self.conn
            .call(req, version)
            .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", R::KEY))
    }

    /// Whether the broker closed the connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        self.conn.is_closed()
    }
}

pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn create_topic(c: &mut Client, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    let resp = c.call(&req, 7);
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

/// An uncompressed batch of `values` built with the engine's builder (producer fields optional).
pub fn batch(values: &[&str], producer: Option<(i64, i16, i32)>) -> Bytes {
    batch_at(values, producer, 1_700_000_000_000)
}

/// Wall-clock milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// [`batch`] with every record stamped `timestamp` (ms).
pub fn batch_at(values: &[&str], producer: Option<(i64, i16, i32)>, timestamp: i64) -> Bytes {
    use strata_storage::batch::{BatchBuilder, Compression, NewRecord};
    let mut b = BatchBuilder::new(Compression::None);
    if let Some((id, epoch, seq)) = producer {
        b = b.producer(id, epoch, seq);
    }
    for v in values {
        b.push(NewRecord::new(v.as_bytes().to_vec()).with_timestamp(timestamp))
            .unwrap();
    }
    Bytes::from(b.build().unwrap())
}

pub fn produce(
    c: &mut Client,
    name: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> Option<ProduceResponse> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic(name))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    if acks == 0 {
        let (_, body) = c.encode_request(&req, 9);
        c.send_raw(&body);
        return None;
    }
    Some(c.call(&req, 9))
}

pub fn fetch(
    c: &mut Client,
    name: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    version: i16,
) -> FetchResponse {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    c.call(&req, version)
}

/// Fetch v12 of one partition from `offset` through a [`strata_client::Conn`], without
/// panicking: the records (offset, value), or `None` on any error.
pub fn fetch_with(
    k: &mut strata_client::Conn,
    name: &str,
    partition: i32,
    offset: i64,
) -> Option<Vec<(i64, String)>> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let resp = k.call(&req, 12).ok()?;
    let p = resp.responses.first()?.partitions.first()?;
    if p.error_code != 0 {
        return None;
    }
    Some(p.records.as_ref().map(values).unwrap_or_default())
}

/// Record values of every batch in a fetch response partition.
pub fn values(records: &Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut rest: &[u8] = records;
    while !rest.is_empty() {
        let h = strata_storage::batch::header::check_batch(rest, usize::MAX).unwrap();
        let (b, tail) = rest.split_at(h.total_len());
        for r in strata_storage::batch::decode_records(&h, b).unwrap() {
            out.push((r.offset, String::from_utf8(r.value.unwrap()).unwrap()));
        }
        rest = tail;
    }
    out
}

// --- consumer groups ---------------------------------------------------------------------------

/// Broker settings for group tests: no initial rebalance delay, short sessions allowed.
pub const GROUP_SETTINGS: &[&str] = &[
    "--set",
    "group.initial.rebalance.delay.ms=0",
    "--set",
    "group.min.session.timeout.ms=100",
];

pub fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A JoinGroup request with one protocol per `(name, metadata)`.
pub fn join_request(
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    session_ms: i32,
    rebalance_ms: i32,
    protocols: &[(&str, &[u8])],
) -> JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(rebalance_ms)
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|(n, m)| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(n))
                        .with_metadata(Bytes::copy_from_slice(m))
                })
                .collect(),
        )
}

/// Joins at v7, answering MEMBER_ID_REQUIRED by rejoining with the given id.
pub fn join(
    c: &mut Client,
    group: &str,
    instance: Option<&str>,
    session_ms: i32,
    protocols: &[(&str, &[u8])],
) -> JoinGroupResponse {
    join_with_rebalance(c, group, instance, session_ms, 5000, protocols)
}

/// [`join`] with a chosen rebalance timeout (how long the join barrier may wait for others).
pub fn join_with_rebalance(
    c: &mut Client,
    group: &str,
    instance: Option<&str>,
    session_ms: i32,
    rebalance_ms: i32,
    protocols: &[(&str, &[u8])],
) -> JoinGroupResponse {
    let r = c.call(
        &join_request(group, "", instance, session_ms, rebalance_ms, protocols),
        7,
    );
    if r.error_code != 79 {
        return r;
    }
    let id = r.member_id.to_string();
    c.call(
        &join_request(group, &id, instance, session_ms, rebalance_ms, protocols),
        7,
    )
}

/// Polls DescribeGroups (at most 20 s) until `group` is in `state`.
pub fn wait_for_group_state(c: &mut Client, group: &str, state: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.call(
            &DescribeGroupsRequest::default().with_groups(vec![group_id(group)]),
            5,
        );
        if r.groups[0].group_state.as_str() == state {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "group {group} never reached {state} (it is {})",
            r.groups[0].group_state.as_str()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn sync(
    c: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &[u8])],
) -> SyncGroupResponse {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    c.call(
        &SyncGroupRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::copy_from_slice(a))
                    })
                    .collect(),
            ),
        5,
    )
}

pub fn heartbeat(c: &mut Client, group: &str, generation: i32, member: &str) -> i16 {
    c.call(
        &HeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(s(member)),
        4,
    )
    .error_code
}

/// Commits `(topic, partition, offset, metadata)` at OffsetCommit v8; returns the error codes.
pub fn commit(
    c: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64, Option<&str>)],
) -> Vec<i16> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let topics = offsets
        .iter()
        .map(|(t, p, o, m)| {
            OffsetCommitRequestTopic::default()
                .with_name(topic(t))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*o)
                        .with_committed_metadata(m.map(s)),
                ])
        })
        .collect();
    let r = c.call(
        &OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(topics),
        8,
    );
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// OffsetFetch v7 of `(topic, partition)`: `(offset, metadata)` each.
pub fn fetch_offsets(
    c: &mut Client,
    group: &str,
    parts: &[(&str, i32)],
) -> Vec<(i64, Option<String>)> {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let r = c.call(
        &OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(Some(
                parts
                    .iter()
                    .map(|(t, p)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(topic(t))
                            .with_partition_indexes(vec![*p])
                    })
                    .collect(),
            )),
        7,
    );
    assert_eq!(r.error_code, 0);
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    p.committed_offset,
                    p.metadata.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect()
}
