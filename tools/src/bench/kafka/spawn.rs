//! `--spawn-broker`: start `strata serve` from this very binary on a free loopback port and a
//! temporary (or `--data-dir`) directory, and stop it with SIGTERM at the end.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use strata_storage::io::BackendChoice;
use strata_storage::log::WriteMode;

/// How long the broker may take to print `listening on ADDR` (recovery of a big data dir).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean shutdown may take before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker this process started.
#[derive(Debug)]
pub struct SpawnedBroker {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// Whether `dir` is temporary (removed when this is dropped).
    pub temporary: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl SpawnedBroker {
    /// Starts `strata serve --listen 127.0.0.1:0 --data-dir DIR` and waits for its address.
    pub fn start(
        data_dir: Option<&Path>,
        backend: BackendChoice,
        write_mode: WriteMode,
        direct_cache: Option<u64>,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this binary (current_exe)")?;
        let (tmp, dir) = match data_dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating data dir {}", d.display()))?;
                (None, d.to_path_buf())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("strata-bench-broker-")
                    .tempdir()
                    .context("creating a temporary data dir for the broker")?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let mut cmd = Command::new(&exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir);
        match backend {
            BackendChoice::Auto => {}
            BackendChoice::IoUring => {
                cmd.args(["--set", "strata.io.backend=io_uring"]);
            }
            BackendChoice::Plain => {
                cmd.args(["--set", "strata.io.backend=plain"]);
            }
        }
        cmd.args(["--set", &format!("strata.log.write.mode={write_mode}")]);
        if let Some(bytes) = direct_cache {
            cmd.args(["--set", &format!("strata.log.direct.cache.bytes={bytes}")]);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let first = r.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            // Keep draining, so a later write of the broker never meets a closed pipe.
            let _ = std::io::copy(&mut r.take(u64::MAX), &mut std::io::sink());
        });
        let mut broker = SpawnedBroker {
            child: Some(child),
            addr: String::new(),
            dir,
            temporary: tmp.is_some(),
            _tmp: tmp,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => bail!("reading the spawned broker's address: {e}"),
            Err(_) => bail!(
                "the spawned broker did not print `listening on ADDR` within {START_TIMEOUT:?}"
            ),
        };
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            bail!("the spawned broker printed {line:?} instead of `listening on ADDR`");
        };
        broker.addr = addr.to_string();
        eprintln!(
            "spawned broker pid {} on {} (data dir {})",
            broker.pid().unwrap_or(0),
            broker.addr,
            broker.dir.display()
        );
        Ok(broker)
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then wait for a clean exit (SIGKILL after `STOP_TIMEOUT`).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("waiting for the broker")? {
                if !status.success() {
                    bail!("the spawned broker exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the spawned broker did not stop within {STOP_TIMEOUT:?}; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SpawnedBroker {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(e) = self.stop()
        {
            eprintln!("warning: {e:#}");
        }
    }
}
