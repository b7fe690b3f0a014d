//! `strata cluster status`: the quorum, the brokers and the partitions without a leader, as
//! the active controller (or, failing that, the node asked) sees them. Kafka's
//! `kafka-metadata-quorum --bootstrap-controller ... describe --status` plays this part.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::rpc::{self, Request, Response, Status};

/// Arguments of `strata cluster`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// Print the metadata quorum (leader, voters, their replication), the brokers (alive or
    /// fenced) and the partitions without a leader.
    Status {
        /// A controller listener, HOST:PORT (any voter: the active controller is asked next).
        #[arg(long)]
        bootstrap_controller: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

async fn ask(addr: &str) -> Result<Status> {
    let timeout = Duration::from_secs(5);
    let mut s = rpc::connect(addr, timeout).await?;
    match rpc::call(&mut s, "", &Request::Status, timeout).await? {
        Response::Status(st) => Ok(*st),
        other => bail!("{addr} answered {other:?}"),
    }
}

/// Runs `strata cluster`.
pub fn run(args: &ClusterArgs) -> Result<std::process::ExitCode> {
    let ClusterCommand::Status {
        bootstrap_controller,
        json,
    } = &args.command;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    rt.block_on(async {
        let mut status = ask(bootstrap_controller).await?;
        // The leader knows how far every voter's log is: ask it when the first node is not it.
        if let Some(addr) = status
            .leader
            .filter(|l| *l != status.node_id)
            .and_then(|l| status.voter_addrs.get(&l).cloned())
            && let Ok(s) = ask(&addr).await
        {
            status = s;
        }
        if *json {
            println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
        } else {
            print!("{}", render(&status));
        }
        Ok(std::process::ExitCode::SUCCESS)
    })
}

fn status_json(s: &Status) -> serde_json::Value {
    serde_json::json!({
        "node": s.node_id,
        "state": s.state,
        "term": s.term,
        "leader": s.leader,
        "voters": s.voters,
        "last_log_index": s.last_log_index,
        "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index,
        "purged_index": s.purged_index,
        "replication": s.replication.iter().map(|(id, m)| serde_json::json!({"voter": id, "matched": m})).collect::<Vec<_>>(),
        "cluster_id": s.cluster_id,
        "brokers": s.brokers.iter().map(|(id, h, p, fenced, epoch)| serde_json::json!({"id": id, "host": h, "port": p, "fenced": fenced, "epoch": epoch})).collect::<Vec<_>>(),
        "topics": s.topics,
        "partitions": s.partitions,
        "leaderless": s.leaderless.iter().map(|(t, p)| format!("{t}-{p}")).collect::<Vec<_>>(),
        "under_replicated": s.under_replicated.iter().map(|(t, p, r, i)| serde_json::json!({"partition": format!("{t}-{p}"), "replicas": r, "isr": i})).collect::<Vec<_>>(),
    })
}

/// The text report.
pub fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
    let _ = writeln!(
        o,
        "cluster id: {}",
        if s.cluster_id.is_empty() {
            "(not yet written)"
        } else {
            &s.cluster_id
        }
    );
    let _ = writeln!(
        o,
        "asked node {}: {} in term {}",
        s.node_id, s.state, s.term
    );
    let _ = writeln!(o, "quorum leader: {leader}");
    let _ = writeln!(o, "voters: {:?}", s.voters);
    let _ = writeln!(
        o,
        "log: last index {}, applied {}, snapshot {}",
        opt(s.last_log_index),
        opt(s.applied_index),
        opt(s.snapshot_index)
    );
    if !s.replication.is_empty() {
        let last = s.last_log_index.unwrap_or(0);
        let _ = writeln!(o, "replication (voter: matched index, lag):");
        for (id, m) in &s.replication {
            let lag = m.map_or("all".to_string(), |m| last.saturating_sub(m).to_string());
            let _ = writeln!(o, "  {id}: {}, lag {lag}", opt(*m));
        }
    }
    let _ = writeln!(o, "brokers:");
    for (id, host, port, fenced, epoch) in &s.brokers {
        let state = if *fenced { "fenced" } else { "alive" };
        let _ = writeln!(o, "  {id} {host}:{port} {state} (epoch {epoch})");
    }
    let _ = writeln!(o, "topics: {}, partitions: {}", s.topics, s.partitions);
    if s.leaderless.is_empty() {
        let _ = writeln!(o, "partitions without a leader: none");
    } else {
        let _ = writeln!(o, "partitions without a leader: {}", s.leaderless.len());
        for (t, p) in &s.leaderless {
            let _ = writeln!(o, "  {t}-{p}");
        }
    }
    if s.under_replicated.is_empty() {
        let _ = writeln!(o, "under-replicated partitions: none");
    } else {
        let _ = writeln!(
            o,
            "under-replicated partitions: {}",
            s.under_replicated.len()
        );
        for (t, p, r, i) in &s.under_replicated {
            let _ = writeln!(o, "  {t}-{p} replicas {r:?} isr {i:?}");
        }
    }
    o
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}
