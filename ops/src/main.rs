//! `tresor-ops`: operations tooling. `demo` is the newcomer's tour of a local
//! cluster. `node …` runs the node command line (the demo starts its nodes
//! with it, so `cargo run -p tresor-ops` needs no other binary).

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
    /// The `tresor-node` command line (used by the demo to start nodes).
    #[command(hide = true, disable_help_flag = true)]
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
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
        Cmd::Demo { dir } => {
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
            match runtime.block_on(demo::run(dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
