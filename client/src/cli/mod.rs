//! The `tresor` user command line: put, get, ls, stat, rm and verify.
//!
//! Results go to stdout (a table for people, `--output json` for scripts);
//! progress bars and errors go to stderr. Every failure prints `error: ...`
//! and exits with status 1; a command line that does not parse exits with
//! status 2.

mod evidence;
mod objects;
mod parse;
mod progress;
mod render;
mod resume;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};

use crate::channel::Credentials;
use crate::objects::{Client, PutOptions};
use objects::{ls, rm, stat, verify};
use parse::{ByteRange, ListTarget, ObjectPath};
use transfer::{get, put};

/// Runs the `tresor` command line and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out causes that an outer
/// message already quotes.
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Store and fetch evidence objects in a tresor cluster.
#[derive(Debug, Parser)]
#[command(name = "tresor", version)]
struct Cli {
    /// Node(s) to talk to, comma-separated; idempotent commands move to the
    /// next one when a node is unreachable.
    #[arg(
        long,
        global = true,
        env = "TRESOR_ENDPOINT",
        default_value = "127.0.0.1:7001",
        value_delimiter = ',',
        value_name = "URL[,URL...]"
    )]
    endpoint: Vec<String>,

    /// PEM file of the cluster CA; turns TLS on (a bare host:port then
    /// means https).
    #[arg(long, global = true, env = "TRESOR_CA", value_name = "FILE")]
    ca: Option<PathBuf>,

    /// PEM file of a client certificate issued by the cluster CA.
    #[arg(long, global = true, env = "TRESOR_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,

    /// PEM file of the client certificate's private key.
    #[arg(long, global = true, env = "TRESOR_KEY", value_name = "FILE")]
    key: Option<PathBuf>,

    /// Bearer token (instead of a client certificate).
    #[arg(
        long,
        global = true,
        env = "TRESOR_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,

    /// Format of results on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned text for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload FILE (or stdin, with `-`) as BUCKET/KEY.
    Put {
        /// Where to store it; the key may contain further '/'.
        #[arg(value_name = "BUCKET/KEY", value_parser = parse::parse_object_path)]
        object: ObjectPath,
        /// The file to upload, or `-` for stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// MIME type stored with the object, such as video/mp4.
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        /// SHA-256 (hex) the data must have; otherwise nothing is stored.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Metadata stored with the object; repeat for more pairs.
        #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse::parse_metadata)]
        metadata: Vec<(String, String)>,
        /// Continue the interrupted upload of this file to BUCKET/KEY
        /// (files of 64 MiB or more are sent in resumable parts).
        #[arg(long)]
        resume: bool,
    },
    /// Download BUCKET/KEY to a file, or to stdout.
    Get {
        /// The object to download.
        #[arg(value_name = "BUCKET/KEY", value_parser = parse::parse_object_path)]
        object: ObjectPath,
        /// Write to FILE (replaced only once the download is complete and
        /// checked) instead of stdout.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// Only bytes START to END, both included; `START-` reads to the end.
        #[arg(long, value_name = "START-END", value_parser = parse::parse_range)]
        range: Option<ByteRange>,
    },
    /// List the objects of a bucket, optionally only keys with a prefix.
    Ls {
        /// The bucket, and optionally a key prefix after the first '/'.
        #[arg(value_name = "BUCKET[/PREFIX]", value_parser = parse::parse_list_target)]
        target: ListTarget,
    },
    /// Show an object's size, checksum, erasure scheme and creation time.
    Stat {
        /// The object to describe.
        #[arg(value_name = "BUCKET/KEY", value_parser = parse::parse_object_path)]
        object: ObjectPath,
    },
    /// Delete an object.
    Rm {
        /// The object to delete.
        #[arg(value_name = "BUCKET/KEY", value_parser = parse::parse_object_path)]
        object: ObjectPath,
    },
    /// Read an object back in full and check its SHA-256; exits 0 only if it
    /// matches.
    Verify {
        /// The object to verify.
        #[arg(value_name = "BUCKET/KEY", value_parser = parse::parse_object_path)]
        object: ObjectPath,
    },
    /// Deletion receipts (offline: no endpoint is contacted).
    Receipt {
        /// What to do.
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Chain of custody: `custody BUCKET/KEY -o FILE` writes the object's
    /// signed custody bundle; `custody verify FILE` checks one offline.
    #[command(args_conflicts_with_subcommands = true)]
    Custody {
        /// `verify`.
        #[command(subcommand)]
        command: Option<CustodyCommand>,
        /// The object whose bundle to export.
        #[arg(value_name = "BUCKET/KEY", value_parser = parse::parse_object_path)]
        object: Option<ObjectPath>,
        /// Where to write the bundle.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// Anchor the bundle to the signed checkpoint of this many sealed
        /// segments (one already published) instead of the latest.
        #[arg(long, value_name = "SEGMENTS")]
        checkpoint: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum CustodyCommand {
    /// Check a bundle with the cluster CA's certificate (`--ca`): its
    /// signature, every audit entry's hash, the links between consecutive
    /// entries, the deletion receipt inside; exits 0 only if all hold.
    Verify {
        /// The bundle file.
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// Also check that this footage file has the recorded SHA-256.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Also check that the bundle's entries are in the history of this
        /// published checkpoint (from `tresor-node audit checkpoint -o`).
        #[arg(long, value_name = "CHECKPOINT")]
        checkpoint: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ReceiptCommand {
    /// Check a receipt (from `tresor-node receipts get -o FILE`) with the
    /// cluster CA's certificate (`--ca`); exits 0 only if it verifies.
    Verify {
        /// The receipt file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Receipt {
            command: ReceiptCommand::Verify { file },
        } => return evidence::verify(file, cli.ca.as_deref(), cli.output),
        Command::Custody {
            command:
                Some(CustodyCommand::Verify {
                    bundle,
                    file,
                    checkpoint,
                }),
            ..
        } => {
            let files = evidence::CustodyFiles {
                bundle,
                footage: file.as_deref(),
                checkpoint: checkpoint.as_deref(),
            };
            return evidence::verify_custody(files, cli.ca.as_deref(), cli.output);
        }
        _ => {}
    }
    let endpoints: Vec<String> = cli
        .endpoint
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        bail!("no endpoint given (--endpoint or TRESOR_ENDPOINT)");
    }
    let credentials = Credentials::from_files(
        cli.ca.as_deref(),
        cli.cert.as_deref(),
        cli.key.as_deref(),
        cli.token.clone(),
    )?;
    crate::channel::set_default_credentials(credentials);
    let client = match Client::connect(&endpoints).await {
        Ok(client) => client,
        // The error names the last endpoint tried; say the others failed too.
        Err(err) if endpoints.len() > 1 => {
            let tried = endpoints.join(", ");
            return Err(anyhow::Error::new(err)
                .context(format!("none of the endpoints answered ({tried})")));
        }
        Err(err) => return Err(err.into()),
    };
    let output = cli.output;
    match cli.command {
        Command::Put {
            object,
            file,
            content_type,
            sha256,
            metadata,
            resume,
        } => {
            let opts = PutOptions {
                content_type,
                metadata: metadata.into_iter().collect(),
                expected_sha256: sha256,
                progress: None,
            };
            put(&client, output, &object, &file, opts, resume).await
        }
        Command::Get { object, out, range } => {
            get(&client, output, &object, out.as_deref(), range).await
        }
        Command::Ls { target } => ls(&client, output, &target).await,
        Command::Stat { object } => stat(&client, output, &object).await,
        Command::Rm { object } => rm(&client, output, &object).await,
        Command::Verify { object } => verify(&client, output, &object).await,
        // Answered above, before connecting.
        Command::Receipt {
            command: ReceiptCommand::Verify { file },
        } => evidence::verify(&file, cli.ca.as_deref(), output),
        Command::Custody {
            command: Some(CustodyCommand::Verify { .. }),
            ..
        } => bail!("custody verify is answered before connecting"),
        Command::Custody {
            command: None,
            object,
            out,
            checkpoint,
        } => match (object, out) {
            (Some(object), Some(out)) => {
                evidence::export(&endpoints, &object, &out, checkpoint, output).await
            }
            _ => bail!("custody needs BUCKET/KEY and -o FILE (or: custody verify BUNDLE)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from([
            "tresor",
            "--endpoint",
            "http://a:7001,http://b:7001",
            "--output",
            "json",
            "get",
            "footage/2024/cam.mp4",
            "-o",
            "out.mp4",
            "--range",
            "100-",
        ])
        .expect("parses");
        assert_eq!(cli.endpoint, vec!["http://a:7001", "http://b:7001"]);
        assert_eq!(cli.output, Output::Json);
        let Command::Get { object, out, range } = cli.command else {
            panic!("not get")
        };
        assert_eq!(object.key, "2024/cam.mp4");
        assert_eq!(out, Some(PathBuf::from("out.mp4")));
        assert_eq!(
            range,
            Some(ByteRange {
                start: 100,
                end: None
            })
        );
    }

    #[test]
    fn credential_flags_parse() {
        let cli = Cli::try_parse_from([
            "tresor", "--ca", "ca.pem", "--cert", "c.pem", "--key", "c.key", "--token", "t0k",
            "ls", "footage",
        ])
        .expect("parses");
        assert_eq!(cli.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(cli.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(cli.key, Some(PathBuf::from("c.key")));
        assert_eq!(cli.token.as_deref(), Some("t0k"));
    }

    #[test]
    fn bad_object_path_is_a_usage_error() {
        assert!(Cli::try_parse_from(["tresor", "stat", "footage"]).is_err());
        assert!(Cli::try_parse_from(["tresor", "rm", "footage/"]).is_err());
        assert!(Cli::try_parse_from(["tresor", "get", "b/k", "--range", "5-4"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn error_chain_leaves_out_repeats() {
        let inner = std::io::Error::other("connection refused");
        let err = anyhow::Error::new(inner).context("cannot connect to x: connection refused");
        let err = err.context("uploading b/k");
        assert_eq!(
            describe(&err),
            "uploading b/k: cannot connect to x: connection refused"
        );
    }
}
