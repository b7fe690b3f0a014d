//! Harness for cluster tests: N `strata serve` nodes in combined mode (`broker,controller`)
//! on loopback, each with its own data directory, their controller listeners on fixed free
//! ports, and optionally a fault-injecting TCP proxy on every link between two nodes so that
//! a test can cut one node off from the others (a network partition) and heal it.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::common::{Broker, Client};

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP proxy from a local port to `target` that can be cut (existing connections shut
/// down, new ones closed at once) and healed.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (c, s, cs) = (cut.clone(), stop.clone(), conns.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let (client, _) = match listener.accept() {
                    Ok(a) => a,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).ok();
                if c.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                let Ok(server) =
                    TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(1))
                else {
                    continue;
                };
                client.set_nodelay(true).ok();
                server.set_nodelay(true).ok();
                {
                    let mut g = cs.lock();
                    g.retain(|x: &TcpStream| x.peer_addr().is_ok());
                    g.push(client.try_clone().unwrap());
                    g.push(server.try_clone().unwrap());
                }
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    c.clone(),
                );
                pipe(server, client, c.clone());
            }
        });
        Proxy {
            port,
            cut,
            conns,
            stop,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts the link: open connections are shut down, new ones closed on accept.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for c in self.conns.lock().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cut.load(Ordering::Acquire) || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Cluster tests of one test binary run one at a time: their nodes' ports are picked free
/// before the nodes bind them, and two clusters starting together could pick the same.
static ONE_AT_A_TIME: AtomicBool = AtomicBool::new(false);

/// A cluster's turn (see [`ONE_AT_A_TIME`]); released on drop.
struct Turn;

impl Turn {
    fn take() -> Turn {
        // Bounded by the other tests' own bounds (each ends, passing or failing).
        while ONE_AT_A_TIME
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        ONE_AT_A_TIME.store(false, Ordering::Release);
    }
}

/// A cluster of combined-mode nodes, ids 1..=n.
pub struct Cluster {
    pub nodes: Vec<Option<Broker>>,
    pub dirs: Vec<PathBuf>,
    /// Each node's real controller listener.
    pub controllers: Vec<String>,
    /// Each node's client listener (fixed, so a restarted broker is where it was).
    pub listeners: Vec<String>,
    /// proxies[from][to]: node `from`'s link to node `to` (when started with proxies).
    pub proxies: Vec<Vec<Option<Proxy>>>,
    /// With proxies: one in front of each node's client listener, which is what the node
    /// advertises (so other brokers' replica fetchers go through it; tests connect directly).
    pub client_proxies: Vec<Option<Proxy>>,
    extra: Vec<String>,
    /// Each node's `process.roles`.
    pub roles: Vec<String>,
    /// Each node's ports, held until it first starts.
    reserved: Vec<Vec<TcpListener>>,
    _tmp: tempfile::TempDir,
    _turn: Turn,
}

impl Cluster {
    /// Starts `n` nodes; `proxied`: every node reaches the others through a [`Proxy`].
    pub fn start(n: usize, proxied: bool, extra: &[&str]) -> Cluster {
        Cluster::start_roles(&vec!["broker,controller"; n], proxied, extra)
    }

    /// Starts one node per entry of `roles` (`process.roles` of each; the voters are the nodes
    /// with the controller role).
    pub fn start_roles(roles: &[&str], proxied: bool, extra: &[&str]) -> Cluster {
        let n = roles.len();
        let turn = Turn::take();
        let tmp = tempfile::tempdir().unwrap();
        // Every node's ports are held (bound) until the node starts, so the proxies bound
        // meanwhile cannot be handed one of them.
        let mut reserved: Vec<Vec<TcpListener>> = (0..n).map(|_| Vec::new()).collect();
        let mut reserve = |i: usize| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = format!("127.0.0.1:{}", l.local_addr().unwrap().port());
            reserved[i].push(l);
            addr
        };
        let controllers: Vec<String> = (0..n).map(&mut reserve).collect();
        let listeners: Vec<String> = (0..n).map(&mut reserve).collect();
        let proxies: Vec<Vec<Option<Proxy>>> = (0..n)
            .map(|from| {
                (0..n)
                    .map(|to| {
                        (proxied && from != to).then(|| Proxy::start(controllers[to].clone()))
                    })
                    .collect()
            })
            .collect();
        let dirs = (0..n)
            .map(|i| tmp.path().join(format!("node{}", i + 1)))
            .collect();
        let client_proxies = listeners
            .iter()
            .map(|l| proxied.then(|| Proxy::start(l.clone())))
            .collect();
        let mut c = Cluster {
            nodes: (0..n).map(|_| None).collect(),
            dirs,
            controllers,
            listeners,
            client_proxies,
            proxies,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            reserved,
            _tmp: tmp,
            _turn: turn,
        };
        for i in 0..n {
            c.start_node(i);
        }
        c
    }

    fn is_voter(&self, i: usize) -> bool {
        self.roles[i].contains("controller")
    }

    /// Node `i`'s voters: itself directly, the others through its proxies if any.
    fn voters_for(&self, i: usize) -> String {
        (0..self.controllers.len())
            .filter(|j| self.is_voter(*j))
            .map(|j| {
                let addr = match &self.proxies[i][j] {
                    Some(p) => p.addr(),
                    None => self.controllers[j].clone(),
                };
                format!("{}@{addr}", j + 1)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn_args(&self, i: usize) -> (PathBuf, Vec<String>) {
        let mut args = vec![
            "--set".to_string(),
            format!("process.roles={}", self.roles[i]),
            "--set".to_string(),
            format!("node.id={}", i + 1),
            "--set".to_string(),
            format!("controller.quorum.voters={}", self.voters_for(i)),
        ];
        if self.is_voter(i) {
            args.push("--set".to_string());
            args.push(format!("listeners=CONTROLLER://{}", self.controllers[i]));
        }
        if self.roles[i].contains("broker") {
            args.push("--listen".to_string());
            args.push(self.listeners[i].clone());
            if let Some(p) = &self.client_proxies[i] {
                args.push("--advertised-listener".to_string());
                args.push(p.addr());
            }
        }
        args.extend([
            "--set".to_string(),
            "broker.heartbeat.interval.ms=500".to_string(),
            "--set".to_string(),
            "broker.session.timeout.ms=3000".to_string(),
        ]);
        args.extend(self.extra.iter().cloned());
        (self.dirs[i].clone(), args)
    }

    /// (Re)starts node `i` (0-based) on its data directory.
    pub fn start_node(&mut self, i: usize) {
        self.reserved[i].clear();
        let (dir, args) = self.spawn_args(i);
        if self.roles[i].contains("broker") {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.nodes[i] = Some(Broker::start_in(&dir, &args));
            return;
        }
        // A controller alone serves no clients: ready once its controller listener is.
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&dir)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.starts_with("controller listening on"), "{line:?}");
        self.nodes[i] = Some(Broker::from_child(child, String::new(), &dir));
    }

    /// Whether node `i`'s process is still running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .as_mut()
            .and_then(|b| b.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut b) = self.nodes[i].take() {
            b.kill9();
        }
    }

    pub fn stop(&mut self, i: usize) -> i32 {
        self.nodes[i].take().map_or(0, |mut b| b.stop())
    }

    pub fn client(&self, i: usize) -> Client {
        self.nodes[i].as_ref().unwrap().client()
    }

    pub fn addr(&self, i: usize) -> String {
        self.nodes[i].as_ref().unwrap().addr.clone()
    }

    /// `strata cluster status --json` asked of node `i`'s controller listener.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["cluster", "status", "--json", "--bootstrap-controller"])
            .arg(&self.controllers[i])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The node (0-based) that says it is the quorum's leader, among the live ones.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some() && self.is_voter(*i))
            .find(|i| self.status(*i).is_some_and(|s| s["state"] == "Leader"))
    }

    /// Waits (at most `timeout`) for a leader among the live nodes.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(l) = self.leader() {
                return l;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no quorum leader within {timeout:?}");
    }

    /// The real client address of broker `id` (1-based node id), not the advertised proxy.
    pub fn broker_addr(&self, id: i32) -> String {
        self.listeners[usize::try_from(id - 1).unwrap()].clone()
    }

    /// Cuts node `i` (0-based) off from every other node, both ways (and other brokers'
    /// fetches from it).
    pub fn isolate(&self, i: usize) {
        if let Some(p) = &self.client_proxies[i] {
            p.cut();
        }
        for j in 0..self.nodes.len() {
            if let Some(p) = &self.proxies[i][j] {
                p.cut();
            }
            if let Some(p) = &self.proxies[j][i] {
                p.cut();
            }
        }
    }

    pub fn heal(&self) {
        for row in &self.proxies {
            for p in row.iter().flatten() {
                p.heal();
            }
        }
        for p in self.client_proxies.iter().flatten() {
            p.heal();
        }
    }
}

/// Waits up to `timeout` for `f` to return `Some`, polling every 100 ms.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= end {
            panic!("not within {timeout:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
