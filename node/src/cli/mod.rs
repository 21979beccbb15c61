//! The `tresor-node` command line: `serve` runs a node; every other command
//! talks to a node's admin service, like any other client.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use tresor_proto::v1 as pb;

use crate::config::NodeConfig;
use crate::devcluster::{LocalCluster, LocalClusterSpec, NodeLauncher};
use audit::AuditCmd;
use buckets::BucketCmd;
use nodes::NodesCmd;

pub mod access;
pub mod audit;
pub mod buckets;
pub mod ca;
pub mod keys;
pub mod nodes;
pub mod receipts;
pub mod retention;
pub mod uploads;
mod workers;

/// Default admin endpoint when neither `--endpoint` nor `TRESOR_ENDPOINT` is
/// set; https when a CA is given, else http.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7001";

/// tresor-node: run a tresor node and operate a cluster.
#[derive(Debug, Parser)]
#[command(name = "tresor-node", version, about)]
pub struct Cli {
    /// Node to talk to (any node; calls are forwarded to the leader).
    #[arg(long, global = true, env = "TRESOR_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Deadline of each call to a node (`30s`, `2m`): past it the command
    /// fails with DEADLINE_EXCEEDED instead of waiting.
    #[arg(long, global = true, env = "TRESOR_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Credentials for talking to nodes (CA, client certificate, token).
    #[command(flatten)]
    pub credentials: ca::CredentialArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Output format of operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Table,
    /// For scripts: one JSON document on stdout.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a node.
    Serve {
        /// The node's TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// Stop when standard input closes (used by `dev` and tests so that
        /// nodes never outlive the process that started them).
        #[arg(long, hide = true)]
        watch_stdin: bool,
    },
    /// Make the node the first voter of a new cluster.
    Init,
    /// Show the cluster: leader, term, commit index, nodes.
    Status {
        /// Show the contacted node's own view instead of the leader's.
        #[arg(long)]
        local: bool,
    },
    /// Add or remove nodes.
    Nodes {
        /// What to do.
        #[command(subcommand)]
        command: NodesCmd,
    },
    /// Create or list buckets.
    Bucket {
        /// What to do.
        #[command(subcommand)]
        command: BucketCmd,
    },
    /// Retention policies: `retention create|ls|extend`.
    Retention {
        /// What to do.
        #[command(subcommand)]
        command: retention::RetentionCmd,
    },
    /// Legal holds: `hold place|release|ls`.
    Hold {
        /// What to do.
        #[command(subcommand)]
        command: retention::HoldCmd,
    },
    /// Deletion receipts: `receipts ls|get`.
    Receipts {
        /// What to do.
        #[command(subcommand)]
        command: receipts::ReceiptsCmd,
    },
    /// Resumable upload sessions still open: `uploads ls`.
    Uploads {
        /// What to do.
        #[command(subcommand)]
        command: uploads::UploadsCmd,
    },
    /// Show every node's background workers: state, progress, counters.
    Workers,
    /// Verify every shard file on every node against its manifest.
    Scrub {
        /// Start a pass now (otherwise scrub runs on its schedule).
        #[arg(long)]
        now: bool,
    },
    /// Rebuild missing or damaged shards.
    Repair {
        /// Start a pass now (otherwise repair runs on its schedule).
        #[arg(long)]
        now: bool,
    },
    /// Read or verify the hash-chained audit log.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Principals, roles and tokens: `principal`, `grant`, `revoke`, `token`.
    #[command(flatten)]
    Access(access::AccessCmd),
    /// Master keys of encryption at rest: `keys rotate`, `keys new`.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: keys::KeysCmd,
    },
    /// The cluster CA: create it, issue node and client certificates.
    Ca {
        /// What to do.
        #[command(subcommand)]
        command: ca::CaCmd,
    },
    /// Start a local cluster of real node processes on 127.0.0.1.
    Dev {
        /// Number of nodes.
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        /// Number of zones.
        #[arg(long, default_value_t = 3)]
        zones: usize,
        /// Directory for configs, data and logs (kept). Without it a
        /// temporary directory is used and removed afterwards.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Entry point of the `tresor-node` binary.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// Runs the command line with `args` (the first is the program name).
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A blocked read of stdin (`--watch-stdin`) must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves when SIGTERM or SIGINT arrives (or, with `watch_stdin`, when
/// standard input closes).
pub async fn shutdown_signal(watch_stdin: bool) {
    let stdin_closed = async {
        if !watch_stdin {
            return std::future::pending::<()>().await;
        }
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = stdin_closed => {}
    }
}

/// Formats a gRPC error for a person.
fn rpc_error(what: &str, status: tonic::Status) -> anyhow::Error {
    let code = match status.code() {
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::NotFound => "not found",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "unauthenticated",
        _ => "failed",
    };
    anyhow!("{what}: {code}: {}", status.message())
}

async fn admin(endpoint: &str) -> anyhow::Result<tresor_client::AdminClient> {
    tresor_client::admin(endpoint).await.with_context(|| {
        format!("cannot reach a node at {endpoint} (set --endpoint or TRESOR_ENDPOINT)")
    })
}

fn print_json(value: serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
    );
}

fn node_json(n: &pb::NodeStatus) -> serde_json::Value {
    json!({
        "id": n.id,
        "addr": n.addr,
        "zone": n.zone,
        "role": n.role,
        "state": n.state,
        "last_contact_ms": n.last_contact_ms,
        "shards": n.shards,
    })
}

/// Status as the JSON document scripts read.
pub fn status_json(s: &pb::StatusResponse) -> serde_json::Value {
    json!({
        "cluster_id": s.cluster_id,
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "nodes": s.nodes.iter().map(node_json).collect::<Vec<_>>(),
        "degraded_segments": s.degraded_segments,
        "degraded_by_missing": s.degraded_by_missing.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "repair": s.repair.as_ref().map(|r| json!({
            "state": r.state,
            "progress": r.progress,
            "segments_total": r.segments_total,
            "segments_to_repair": r.segments_to_repair,
            "segments_repaired": r.segments_repaired,
            "bytes_rebuilt": r.bytes_rebuilt,
        })),
    })
}

fn print_status_table(s: &pb::StatusResponse) {
    let leader = s
        .leader_id
        .map(|l| l.to_string())
        .unwrap_or_else(|| "none".into());
    println!(
        "cluster {}  leader {}  term {}  commit {}",
        if s.cluster_id.is_empty() {
            "(not initialised)"
        } else {
            &s.cluster_id
        },
        leader,
        s.term,
        s.commit_index
    );
    let missing: Vec<String> = s
        .degraded_by_missing
        .iter()
        .map(|(k, v)| format!("{v} missing {k}"))
        .collect();
    println!(
        "degraded segments {}{}",
        s.degraded_segments,
        if missing.is_empty() {
            String::new()
        } else {
            format!(" ({})", missing.join(", "))
        }
    );
    if let Some(r) = &s.repair {
        println!("repair: {} — {}", r.state, r.progress);
    }
    println!(
        "{:>4}  {:<22} {:<10} {:<8} {:<9} {:>12} {:>8}",
        "ID", "ADDR", "ZONE", "ROLE", "STATE", "LAST CONTACT", "SHARDS"
    );
    for n in &s.nodes {
        let contact = match n.last_contact_ms {
            Some(ms) => format!("{ms} ms"),
            None if Some(n.id) == s.leader_id => "leader".into(),
            None => "-".into(),
        };
        println!(
            "{:>4}  {:<22} {:<10} {:<8} {:<9} {:>12} {:>8}",
            n.id, n.addr, n.zone, n.role, n.state, contact, n.shards
        );
    }
}

/// `--since`: an RFC 3339 time or Unix milliseconds, as Unix milliseconds.
fn parse_since(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|e| {
        format!("{e}: expected an RFC 3339 time such as 2026-11-26T08:00:00Z, or Unix milliseconds")
    })?;
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| "times before 1970 are not in the log".to_string())
}

/// A bucket as JSON; `retention` is `null` when it has no policy.
fn bucket_json(b: &pb::Bucket) -> serde_json::Value {
    let retention = (!b.retention.is_empty()).then_some(&b.retention);
    json!({"name": b.name, "data": b.data, "parity": b.parity, "retention": retention})
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = cli.output;
    // `serve` and `dev` take their identity from their configs, `ca` and
    // `keys new` need none.
    if !matches!(
        cli.command,
        Cmd::Serve { .. }
            | Cmd::Dev { .. }
            | Cmd::Ca { .. }
            | Cmd::Keys {
                command: keys::KeysCmd::New { .. }
            }
    ) {
        tresor_client::set_default_credentials(cli.credentials.load()?);
        tresor_client::channel::set_admin_timeout(cli.timeout);
    }
    match cli.command {
        Cmd::Serve {
            config,
            watch_stdin,
        } => {
            init_tracing();
            let config = NodeConfig::load(&config)?;
            let data_dir = config.data_dir.clone();
            match crate::server::run(config, shutdown_signal(watch_stdin)).await {
                Err(crate::server::ServeError::StorageFailed(_)) => {
                    crate::server::restart_when_writable(&data_dir, shutdown_signal(watch_stdin))
                        .await?
                }
                served => served?,
            }
        }
        Cmd::Init => {
            let r = admin(&cli.endpoint)
                .await?
                .init(pb::InitRequest {})
                .await
                .map_err(|s| rpc_error("init", s))?
                .into_inner();
            match output {
                Output::Json => {
                    print_json(json!({"cluster_id": r.cluster_id, "node_id": r.node_id}))
                }
                Output::Table => {
                    println!("initialised cluster {} on node {}", r.cluster_id, r.node_id)
                }
            }
        }
        Cmd::Status { local } => {
            let s = admin(&cli.endpoint)
                .await?
                .status(pb::StatusRequest { local })
                .await
                .map_err(|s| rpc_error("status", s))?
                .into_inner();
            match output {
                Output::Json => print_json(status_json(&s)),
                Output::Table => print_status_table(&s),
            }
        }
        Cmd::Scrub { now } | Cmd::Repair { now } if !now => {
            anyhow::bail!("these run on their schedule; pass --now to start a pass at once");
        }
        Cmd::Scrub { .. } => workers::run_everywhere(&cli.endpoint, "scrub", output).await?,
        Cmd::Repair { .. } => workers::run_everywhere(&cli.endpoint, "repair", output).await?,
        Cmd::Nodes { command } => nodes::run(command, &cli.endpoint, output).await?,
        Cmd::Bucket { command } => buckets::run(command, &cli.endpoint, output).await?,
        Cmd::Retention { command } => {
            retention::run_retention(command, &cli.endpoint, output).await?
        }
        Cmd::Hold { command } => retention::run_hold(command, &cli.endpoint, output).await?,
        Cmd::Receipts { command } => receipts::run(command, &cli.endpoint, output).await?,
        Cmd::Uploads { command } => uploads::run(command, &cli.endpoint, output).await?,
        Cmd::Workers => workers::list(&cli.endpoint, output).await?,
        Cmd::Audit { command } => audit::run(command, &cli.endpoint, output).await?,
        Cmd::Access(command) => access::run(command, admin(&cli.endpoint).await?, output).await?,
        Cmd::Ca { command } => ca::run(command, output)?,
        Cmd::Keys { command } => keys::run(command, &cli.endpoint, output).await?,
        Cmd::Dev { nodes, zones, dir } => {
            init_tracing();
            dev(nodes, zones, dir).await?;
        }
    }
    Ok(())
}

/// The cluster's status, as the leader sees it.
async fn cluster_status(endpoint: &str) -> anyhow::Result<pb::StatusResponse> {
    Ok(admin(endpoint)
        .await?
        .status(pb::StatusRequest { local: false })
        .await
        .map_err(|s| rpc_error("status", s))?
        .into_inner())
}

async fn dev(nodes: usize, zones: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let temp;
    let dir = match dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new().prefix("tresor-dev-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let spec = LocalClusterSpec {
        nodes,
        zones,
        ..LocalClusterSpec::default()
    };
    let mut cluster = LocalCluster::create(&dir, spec, NodeLauncher::current_exe_serve()?)?;
    tresor_client::set_default_credentials(cluster.credentials().clone());
    let started = async {
        cluster.start_all(Duration::from_secs(30)).await?;
        cluster.form(Duration::from_secs(60)).await?;
        cluster.write_endpoints()
    };
    let endpoints = match started.await {
        Ok(p) => p,
        Err(e) => {
            cluster.stop_all(Duration::from_secs(5)).await;
            return Err(e);
        }
    };
    println!(
        "tresor dev cluster: {nodes} nodes in {zones} zones, in {}",
        dir.display()
    );
    for node in &cluster.nodes {
        println!(
            "  node {} ({}): {}",
            node.config.node_id,
            node.config.zone,
            node.endpoint()
        );
    }
    println!("endpoints written to {}", endpoints.display());
    // Users of a dev cluster authenticate with an admin token (the admin
    // client certificate stays in the certs directory as the fallback).
    let access = match cluster.create_admin_access().await {
        Ok(access) => access,
        Err(e) => {
            cluster.stop_all(Duration::from_secs(5)).await;
            return Err(e);
        }
    };
    let env = cluster.write_env(&access)?;
    println!();
    println!("to use it from a shell (or `source {}`):", env.display());
    print!("{}", cluster.env_lines(&access));
    println!();
    println!("try:");
    println!("  tresor-node status");
    println!("  tresor-node bucket create footage --data 4 --parity 2");
    if access.s3_key.is_some() {
        println!("  aws s3 cp ./clip.mp4 s3://footage/clip.mp4   # the S3 port, as admin");
    }
    println!();
    println!("Ctrl-C stops every node.");
    shutdown_signal(false).await;
    println!("stopping…");
    cluster.stop_all(Duration::from_secs(10)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_rfc3339_or_unix_ms() {
        assert_eq!(parse_since("1795732898540"), Ok(1_795_732_898_540));
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_since("2026-11-26T08:00:00Z"), Ok(1_795_680_000_000));
        let err = parse_since("yesterday").expect_err("not a time");
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
