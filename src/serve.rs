//! `strata serve`: run the broker until SIGINT/SIGTERM, then shut down cleanly.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::broker::Broker;
use crate::broker::config::BrokerConfig;

/// Arguments of `strata serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// A Kafka-style properties file (server.properties names: log.dirs, num.partitions, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (log.dirs). Default ./strata-data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (listeners). Default 127.0.0.1:9092; port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<String>,
    /// HOST:PORT advertised to clients in Metadata (advertised.listeners).
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// Any broker setting, KEY=VALUE, repeatable; wins over the config file.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ServeArgs {
    /// Defaults, then the file, then `--set`, then the dedicated flags.
    pub fn resolve(&self) -> Result<BrokerConfig> {
        let mut c = BrokerConfig::default();
        if let Some(f) = &self.config {
            c.load_file(f)?;
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
            c.set(k.trim(), v.trim())
                .with_context(|| format!("--set {kv}"))?;
        }
        if let Some(d) = &self.data_dir {
            c.set("log.dirs", &d.to_string_lossy())?;
        }
        if let Some(l) = &self.listen {
            c.set_client_listener(l)?;
        }
        if let Some(a) = &self.advertised_listener {
            c.set("advertised.listeners", a)?;
        }
        Ok(c)
    }
}

/// Runs the broker. Prints `listening on ADDR` (the real port when 0 was asked) once ready.
pub fn run(args: ServeArgs) -> Result<()> {
    let config = args.resolve()?;
    crate::broker::check_data_dir(&config.data_dir())?;
    match strata_storage::io::raise_open_file_limit() {
        Ok((before, now)) => tracing::info!(
            open_files = now,
            raised_from = before,
            partitions_in_use = now / crate::broker::FDS_PER_PARTITION,
            "open-file limit: about this many partitions can be written and read at once (idle ones hold no descriptor)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
    // Settings that depend on each other are checked once all are known.
    config.queued_request_budget()?;
    // A fixed set of threads whatever the number of partitions (PERFORMANCE.md, "Threads and
    // files"): the connections' workers, at most num.io.threads for blocking work, and the
    // storage engine's shared runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-net")
        .worker_threads(config.network_threads()?)
        .max_blocking_threads(config.io_threads()?)
        .build()
        .context("starting the async runtime")?;
    let cluster = crate::cluster::ClusterSettings::from_config(&config)?;
    runtime.block_on(async move {
        match cluster {
            None => single(config).await,
            Some(settings) => clustered(config, settings).await,
        }
    })
}

/// The single-node broker (no `process.roles`): what `strata serve` always was.
async fn single(mut config: BrokerConfig) -> Result<()> {
    let addr = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    if config.get("advertised.listeners").is_empty() {
        config.set_bound_addr(bound);
    }
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .context("opening the data directory")??;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tracing::info!(%bound, cluster_id = %broker.cluster_id, "strata broker ready");
    println!("listening on {bound}");
    let health = tokio::spawn(crate::broker::heal_loop(broker.clone(), stop_rx.clone()));
    let server = tokio::spawn(crate::kafka::server::serve(
        broker.clone(),
        listener,
        stop_rx,
    ));
    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    server.await.context("server task")??;
    health.await.context("health task")?;
    close_broker(broker).await?;
    tracing::info!("clean shutdown complete");
    Ok(())
}

async fn close_broker(broker: Arc<Broker>) -> Result<()> {
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .context("closing logs")?
}

/// A node of a cluster (`process.roles` set): the metadata quorum's voter, and with the
/// `broker` role also a broker that registers with the active controller and serves the
/// partitions placed on it.
async fn clustered(
    mut config: BrokerConfig,
    settings: crate::cluster::ClusterSettings,
) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let backend = strata_storage::io::select_backend(config.io_backend()?)
        .context("opening the io backend")?;
    let broker_role = settings.broker;
    let heartbeat = settings.heartbeat_interval;
    let (fetcher, replica_lag_max) = (settings.fetcher, settings.replica_lag_max);
    let listener = if broker_role {
        let addr = config.listen_addr()?;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        if config.get("advertised.listeners").is_empty() {
            config.set_bound_addr(l.local_addr()?);
        }
        Some(l)
    } else {
        None
    };
    // The broker first: it takes the data directory's lock, so a second process on the same
    // directory stops here, before it could touch the metadata log.
    let broker = match &listener {
        Some(_) => {
            let (c, b) = (config.clone(), backend.clone());
            Some(
                tokio::task::spawn_blocking(move || Broker::open_with_backend(c, b))
                    .await
                    .context("opening the data directory")??,
            )
        }
        None => None,
    };
    let node_id = settings.node_id;
    let mut tasks = Vec::new();
    let (node, remote) = if settings.controller {
        let node =
            crate::cluster::node::ClusterNode::start(settings, &data_dir, backend, stop_rx.clone())
                .await?;
        println!("controller listening on {}", node.controller_addr);
        (Some(node), None)
    } else {
        // A broker-only node: no quorum here; the image comes from the active controller.
        let (link, feed) = crate::cluster::link::Link::remote(
            i32::try_from(settings.node_id).context("node.id out of range")?,
            settings.voters.clone(),
        );
        tasks.push(tokio::spawn(
            link.clone().follow_controller(feed, stop_rx.clone()),
        ));
        (None, Some(link))
    };
    let mut server = None;
    let mut link_kept = None;
    if let (Some(broker), Some(listener)) = (&broker, listener) {
        let link = match (&node, remote) {
            (Some(n), _) => n.link(),
            (None, Some(l)) => l,
            (None, None) => anyhow::bail!("a broker without a link to the quorum"),
        };
        link_kept = Some(link.clone());
        broker.set_cluster(link.clone());
        broker
            .groups
            .offsets
            .set_writer(Arc::new(crate::cluster::offsets::Writer::new(
                broker,
                tokio::runtime::Handle::current(),
                config.offsets_commit_timeout()?,
            )));
        let (host, port) = config.advertised()?;
        let b = broker.clone();
        let offline: Arc<dyn Fn() -> Vec<(String, i32)> + Send + Sync> =
            Arc::new(move || b.offline_partitions());
        tasks.push(tokio::spawn(link.clone().run(
            host,
            port,
            heartbeat,
            offline,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::cluster::follow::follow(
            broker.clone(),
            link.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::cluster::fetcher::run(
            broker.clone(),
            link.clone(),
            fetcher,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::cluster::follow::isr_loop(
            broker.clone(),
            link,
            replica_lag_max,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::broker::heal_loop(
            broker.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::broker::high_watermark_checkpoint_loop(
            broker.clone(),
            config.high_watermark_checkpoint_interval()?,
            stop_rx.clone(),
        )));
        let bound = listener.local_addr()?;
        tracing::info!(%bound, node = node_id, "strata broker ready (cluster)");
        println!("listening on {bound}");
        server = Some(tokio::spawn(crate::kafka::server::serve(
            broker.clone(),
            listener,
            stop_rx.clone(),
        )));
    }
    // A signal, or this node's metadata log failing (then it stops, and says why).
    let mut failed = None;
    match &node {
        Some(n) => tokio::select! {
            r = wait_for_signal() => r?,
            why = n.fatal() => {
                tracing::error!(reason = %why, "the metadata log failed: this node stops (restart it once its disk is healthy)");
                failed = Some(why);
            }
        },
        None => wait_for_signal().await?,
    }
    tracing::info!("shutting down");
    // Fenced first, while this node's own controller listener still answers (it may be the
    // active controller).
    if let Some(link) = &link_kept {
        link.shut_down(std::time::Duration::from_secs(2)).await;
    }
    let _ = stop_tx.send(true);
    if let Some(s) = server {
        s.await.context("server task")??;
    }
    for t in tasks {
        t.await.context("cluster task")?;
    }
    if let Some(node) = node {
        node.shutdown().await?;
    }
    if let Some(b) = broker {
        close_broker(b).await?;
    }
    if let Some(why) = failed {
        anyhow::bail!("stopped: the metadata log failed: {why}");
    }
    tracing::info!("clean shutdown complete");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
