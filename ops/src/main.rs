//! `tresor-ops`: operations tooling. `demo` is the newcomer's tour of a local
//! cluster. `node …` runs the node command line (the demo starts its nodes
//! with it, so `cargo run -p tresor-ops` needs no other binary).

mod bench;
mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tresor operations tooling.
#[derive(Debug, Parser)]
#[command(name = "tresor-ops", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A guided tour: start a local six-node, three-zone cluster, use it,
    /// lose a zone, recover, shut down.
    Demo {
        /// Keep the cluster's files here instead of a temporary directory.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Measure PUT/GET throughput and latency, node memory, and an
    /// in-process baseline from the same run.
    Bench {
        /// A benchmark other than throughput (`scale`).
        #[command(subcommand)]
        what: Option<BenchCmd>,
        /// Benchmark this cluster (comma-separated endpoints) instead of a
        /// local one started for the run.
        #[arg(long, env = "TRESOR_ENDPOINT")]
        endpoint: Option<String>,
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
        /// Size in MiB of one object uploaded while node memory is sampled
        /// (0 skips it).
        #[arg(long, default_value_t = 1024)]
        big_object_mib: usize,
        /// Keep the local cluster and baseline files here.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// The `tresor-node` command line (used by the demo to start nodes).
    #[command(hide = true, disable_help_flag = true)]
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Retention expiry on a local cluster of `--objects` synthetic
    /// objects, `--due-percent` of them due: deletes per second, and 64 MiB
    /// put throughput during expiry against before and after it.
    Expiry {
        /// Objects in the cluster (metadata only).
        #[arg(long, default_value_t = 100_000)]
        objects: u64,
        /// Percentage of them that is due.
        #[arg(long, default_value_t = 10)]
        due_percent: u64,
        /// The nodes' `[retention] expiry_objects_per_sec`.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
        /// Keep the local cluster here.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Resumable upload sessions against single-stream Puts in the same
    /// run (64 MiB and 1 GiB), the time a cut upload takes to send again,
    /// and a node's peak memory while `--clients` upload through it.
    Uploads {
        /// Rounds of the 64 MiB comparison (medians are reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Clients uploading 64 MiB each at once through one node.
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
        /// Keep the local cluster here.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// How the cluster behaves as its metadata grows: real 4 KiB puts to
    /// `--objects`, a row at each decade (put rate and p99, status and
    /// list latency, node memory, metadata and disk bytes per object,
    /// snapshot size), then a new node's catch-up time.
    Scale {
        /// Benchmark this cluster (comma-separated endpoints) instead of a
        /// local one (memory and disk are measured on a local one only).
        #[arg(long, env = "TRESOR_ENDPOINT")]
        endpoint: Option<String>,
        /// Objects to reach.
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        /// Audit entries to reach afterwards with stat calls (0: none).
        #[arg(long, default_value_t = 0)]
        audit: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
        /// Keep the local cluster here.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The local nodes' `[shards] packed_shard_bytes` (0: a file per
        /// shard, to compare).
        #[arg(long)]
        packed_shard_bytes: Option<u64>,
        /// Objects past this many are metadata-only (local cluster only):
        /// synthetic manifests with no shard files, written into the
        /// stopped nodes' state, and `--audit` entries likewise; each row
        /// above it times a burst of real puts on the filled cluster.
        #[arg(long)]
        metadata_only_above: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Node { args } => {
            let mut all = vec![std::ffi::OsString::from("tresor-node")];
            all.extend(args);
            tresor_node::cli::main_with_args(all)
        }
        Cmd::Bench {
            what:
                Some(BenchCmd::Scale {
                    endpoint,
                    objects,
                    audit,
                    clients,
                    output,
                    dir,
                    packed_shard_bytes,
                    metadata_only_above,
                }),
            ..
        } => run_async(bench::scale::run(bench::scale::ScaleOptions {
            endpoint,
            objects,
            audit,
            clients,
            json: output == "json",
            dir,
            packed_shard_bytes,
            metadata_only_above,
        })),
        Cmd::Bench {
            what:
                Some(BenchCmd::Expiry {
                    objects,
                    due_percent,
                    rate,
                    output,
                    dir,
                }),
            ..
        } => run_async(bench::expiry::run(bench::expiry::ExpiryOptions {
            objects,
            due_percent,
            rate,
            json: output == "json",
            dir,
        })),
        Cmd::Bench {
            what:
                Some(BenchCmd::Uploads {
                    rounds,
                    clients,
                    output,
                    dir,
                }),
            ..
        } => run_async(bench::uploads::run(bench::uploads::UploadsOptions {
            rounds,
            clients,
            json: output == "json",
            dir,
        })),
        Cmd::Bench {
            what: None,
            endpoint,
            output,
            big_object_mib,
            dir,
        } => run_async(bench::run(bench::BenchOptions {
            endpoint,
            json: output == "json",
            big_object_mib,
            dir,
        })),
        Cmd::Demo { dir } => run_async(demo::run(dir)),
    }
}

fn run_async(task: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
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
    match runtime.block_on(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
