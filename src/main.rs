//! The `strata` command.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a Kafka-compatible log broker on an io_uring/mmap storage engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (Kafka protocol) on 127.0.0.1:9092 with ./strata-data by default.
    Serve(strata::serve::ServeArgs),
    /// Print every batch, record and index entry of segments, partitions or data directories.
    Dump(strata_tools::dump::DumpArgs),
    /// Check every batch, offset, index entry and file name; `--repair` runs the engine's recovery.
    Verify(strata_tools::verify::VerifyArgs),
    /// Measure throughput and latency: the engine in-process (`--mode embedded`) or, later, a
    /// broker over the Kafka protocol (`--mode kafka`). Report on stdout, progress on stderr.
    Bench(strata_tools::bench::BenchArgs),
    /// Consumer groups via the Kafka protocol: `list`, or `describe GROUP` (members,
    /// assignments, committed offsets and lag per partition).
    Groups(strata_tools::groups::GroupsArgs),
    /// A cluster's metadata quorum: `status` (leader, voters, brokers, leaderless partitions).
    Cluster(strata::cluster::status::ClusterArgs),
}

/// `RUST_LOG`, or `info`. openraft's own logging is off unless `RUST_LOG` names it: it logs
/// every unreachable peer at error level, and Strata logs what an operator needs (leader
/// changes, fencing, registrations) itself.
fn cli_log_filter() -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let spec = if spec.contains("openraft") {
        spec
    } else {
        format!("{spec},openraft=off")
    };
    tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off"))
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(cli_log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Serve(args) => strata::serve::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Dump(args) => strata_tools::dump::run(&args),
        Command::Verify(args) => strata_tools::verify::run(&args),
        Command::Groups(args) => strata_tools::groups::run(&args),
        Command::Cluster(args) => strata::cluster::status::run(&args),
        Command::Bench(args) => match strata_tools::bench::run(args) {
            Ok(()) => Ok(std::process::ExitCode::SUCCESS),
            // A failed run exits 1; a usage error (a mode that does not exist yet) exits 2.
            Err(e) => {
                eprintln!("error: {e:#}");
                Ok(std::process::ExitCode::from(
                    strata_tools::bench::exit_code(&e),
                ))
            }
        },
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
