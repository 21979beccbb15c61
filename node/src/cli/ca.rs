//! `tresor-node ca init|issue`, and the credential flags every command that
//! talks to a node takes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{print_json, Output};
use crate::tls::{Subject, Validity, DEFAULT_VALIDITY_DAYS};

/// `--ca`, `--cert`, `--key`, `--token` (or `TRESOR_CA`, `TRESOR_CERT`,
/// `TRESOR_KEY`, `TRESOR_TOKEN`). They go before the subcommand
/// (`tresor-node --ca ca.pem status`): they are not global because
/// `audit log --key` means an object key.
#[derive(Debug, Clone, Default, Args)]
pub struct CredentialArgs {
    /// PEM file of the cluster CA; turns TLS on (a bare host:port then
    /// means https).
    #[arg(long, env = "TRESOR_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// PEM file of a client certificate issued by the cluster CA.
    #[arg(long, env = "TRESOR_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, env = "TRESOR_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Bearer token (instead of a client certificate).
    #[arg(
        long,
        env = "TRESOR_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

impl CredentialArgs {
    /// Reads the files named.
    pub fn load(&self) -> anyhow::Result<tresor_client::Credentials> {
        Ok(tresor_client::Credentials::from_files(
            self.ca.as_deref(),
            self.cert.as_deref(),
            self.key.as_deref(),
            self.token.clone(),
        )?)
    }
}

/// `ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key (keep the key
    /// offline if you can). Refuses to replace an existing CA.
    Init {
        /// Directory of the CA.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue a node certificate (DIR/node-ID.pem, .key), a client
    /// certificate (DIR/client-NAME.pem, .key) or the cluster's receipt
    /// signing certificate (DIR/signer.pem, .key) from the CA in DIR.
    #[command(group(
        clap::ArgGroup::new("subject").required(true).args(["node", "client", "signer"])
    ))]
    Issue {
        /// Directory of the CA; the certificate and key are written there.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Issue for node ID (as in its config's node_id).
        #[arg(long, value_name = "ID", requires = "addr")]
        node: Option<u64>,
        /// Address(es) others reach the node at: host or host:port, IP or
        /// DNS name; repeat or separate with commas.
        #[arg(
            long,
            value_name = "HOST",
            num_args = 1..,
            value_delimiter = ',',
            requires = "node"
        )]
        addr: Vec<String>,
        /// Issue for client principal NAME (1-64 of a-z 0-9 . _ -).
        #[arg(long, value_name = "NAME")]
        client: Option<String>,
        /// Issue the receipt signing certificate (give it to every node as
        /// `[security] signer_cert` and `signer_key`).
        #[arg(long)]
        signer: bool,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS,
              value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: u32,
    },
}

/// Runs a `ca` subcommand.
pub fn run(command: CaCmd, output: Output) -> anyhow::Result<()> {
    match command {
        CaCmd::Init { dir } => {
            let files = crate::tls::init_ca(&dir).context("ca init")?;
            match output {
                Output::Json => print_json(json!({
                    "ca": display(&files.cert),
                    "key": display(&files.key),
                })),
                Output::Table => {
                    println!("created cluster CA {}", files.cert.display());
                    println!(
                        "its private key is {} (mode 0600): anyone holding it can join nodes and make clients",
                        files.key.display()
                    );
                }
            }
        }
        CaCmd::Issue {
            dir,
            signer: true,
            days,
            ..
        } => {
            let files = crate::tls::issue_signer(&dir, &dir, Validity::days(days))
                .context("ca issue --signer")?;
            match output {
                Output::Json => print_json(json!({
                    "signer": display(&files.cert),
                    "key": display(&files.key),
                    "days": days,
                })),
                Output::Table => {
                    println!(
                        "issued receipt signer {}, valid {days} days",
                        files.cert.display()
                    );
                    println!(
                        "private key {} (mode 0600): copy both to every node, like the master key",
                        files.key.display()
                    );
                }
            }
        }
        CaCmd::Issue {
            dir,
            node,
            addr,
            client,
            signer: false,
            days,
        } => {
            let subject = match (node, client) {
                (Some(id), None) => Subject::Node { id, addrs: addr },
                (None, Some(name)) => Subject::Client { name },
                _ => bail!("give either --node ID --addr HOST... or --client NAME"),
            };
            let files = crate::tls::issue(&dir, &dir, &subject, Validity::days(days))
                .context("ca issue")?;
            let identity = subject.identity().uri();
            match output {
                Output::Json => print_json(json!({
                    "identity": identity,
                    "cert": display(&files.cert),
                    "key": display(&files.key),
                    "days": days,
                })),
                Output::Table => {
                    println!(
                        "issued {} ({identity}), valid {days} days",
                        files.cert.display()
                    );
                    println!("private key {} (mode 0600)", files.key.display());
                }
            }
        }
    }
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::super::Cli;
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tresor-node").chain(args.iter().copied()))
    }

    #[test]
    fn issue_needs_exactly_one_subject() {
        assert!(parse(&["ca", "issue", "--dir", "d"]).is_err());
        assert!(parse(&["ca", "issue", "--dir", "d", "--node", "1"]).is_err());
        assert!(parse(&["ca", "issue", "--dir", "d", "--addr", "h"]).is_err());
        assert!(parse(&[
            "ca", "issue", "--dir", "d", "--node", "1", "--addr", "h", "--client", "c"
        ])
        .is_err());
        assert!(parse(&["ca", "issue", "--dir", "d", "--client", "c", "--days", "0"]).is_err());
        let cli = parse(&[
            "ca",
            "issue",
            "--dir",
            "d",
            "--node",
            "2",
            "--addr",
            "10.0.0.2:7001",
            "--addr",
            "n2,n2.example",
        ])
        .expect("node");
        let super::super::Cmd::Ca {
            command: CaCmd::Issue { node, addr, .. },
        } = cli.command
        else {
            panic!("not ca issue")
        };
        assert_eq!(node, Some(2));
        assert_eq!(addr, ["10.0.0.2:7001", "n2", "n2.example"]);
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn credential_flags_go_before_the_subcommand() {
        let cli = parse(&[
            "--ca", "ca.pem", "--key", "c.key", "--token", "t", "audit", "log", "--key", "cam/1",
        ])
        .expect("parses");
        assert_eq!(cli.credentials.key, Some(PathBuf::from("c.key")));
        assert_eq!(cli.credentials.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(cli.credentials.token.as_deref(), Some("t"));
    }

    #[test]
    fn init_then_issue_writes_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf-8");
        run(
            match parse(&["ca", "init", "--dir", d]).expect("init").command {
                super::super::Cmd::Ca { command } => command,
                _ => panic!("not ca"),
            },
            Output::Table,
        )
        .expect("init");
        let issue = parse(&["ca", "issue", "--dir", d, "--client", "cam-1"]).expect("issue");
        let super::super::Cmd::Ca { command } = issue.command else {
            panic!("not ca")
        };
        run(command, Output::Json).expect("issue");
        assert!(dir.path().join("client-cam-1.pem").exists());
        assert!(dir.path().join("client-cam-1.key").exists());
        let bad = parse(&["ca", "issue", "--dir", d, "--client", "../../etc"]).expect("parses");
        let super::super::Cmd::Ca { command } = bad.command else {
            panic!("not ca")
        };
        let err = run(command, Output::Table).expect_err("bad name");
        assert!(format!("{err:#}").contains("principal name"), "{err:#}");
    }
}
