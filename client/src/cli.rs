//! The `tresor` user command line: put, get, ls, stat, rm and verify.
//!
//! Results go to stdout (a table for people, `--output json` for scripts);
//! progress bars and errors go to stderr. Every failure prints `error: ...`
//! and exits with status 1; a command line that does not parse exits with
//! status 2.

mod parse;
mod progress;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::channel::Credentials;
use crate::objects::{Client, ObjectInfo, PutOptions};
use parse::{ByteRange, ListTarget, ObjectPath};
use progress::TransferBar;
use render::{format_rfc3339_ms, print_fields, print_json, print_table};

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
}

async fn run(cli: Cli) -> anyhow::Result<()> {
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
        } => {
            let opts = PutOptions {
                content_type,
                metadata: metadata.into_iter().collect(),
                expected_sha256: sha256,
                progress: None,
            };
            put(&client, output, &object, &file, opts).await
        }
        Command::Get { object, out, range } => {
            get(&client, output, &object, out.as_deref(), range).await
        }
        Command::Ls { target } => ls(&client, output, &target).await,
        Command::Stat { object } => stat(&client, output, &object).await,
        Command::Rm { object } => rm(&client, output, &object).await,
        Command::Verify { object } => verify(&client, output, &object).await,
    }
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

async fn put(
    client: &Client,
    output: Output,
    object: &ObjectPath,
    file: &Path,
    mut opts: PutOptions,
) -> anyhow::Result<()> {
    let context = || format!("uploading {object}");
    let show_bar = progress::wanted(false);
    let stored = if is_stdio(file) {
        let bar = TransferBar::new(show_bar, None);
        opts.progress = bar.callback();
        let stdin = tokio::io::stdin();
        let result = client.put(&object.bucket, &object.key, stdin, opts).await;
        bar.finish(&result);
        result.with_context(context)?
    } else {
        let total = if show_bar {
            tokio::fs::metadata(file).await.ok().map(|m| m.len())
        } else {
            None
        };
        let bar = TransferBar::new(show_bar, total);
        opts.progress = bar.callback();
        let result = client
            .put_file(&object.bucket, &object.key, file, opts)
            .await;
        bar.finish(&result);
        result.with_context(context)?
    };
    match output {
        Output::Json => print_json(&serde_json::to_value(&stored)?),
        Output::Table => {
            print_fields(&[
                ("bucket", stored.bucket.clone()),
                ("key", stored.key.clone()),
                ("size", stored.size.to_string()),
                ("sha256", stored.sha256.clone()),
            ]);
            Ok(())
        }
    }
}

async fn get(
    client: &Client,
    output: Output,
    object: &ObjectPath,
    out: Option<&Path>,
    range: Option<ByteRange>,
) -> anyhow::Result<()> {
    let context = || format!("downloading {object}");
    let out = out.filter(|path| !is_stdio(path));
    let show_bar = progress::wanted(out.is_none());
    // The stream states the size only once it has begun; a bar needs it first.
    let total = if show_bar {
        let info = client
            .stat(&object.bucket, &object.key)
            .await
            .with_context(context)?;
        Some(range.map_or(info.size, |range| range.len_within(info.size)))
    } else {
        None
    };
    let bar = TransferBar::new(show_bar, total);
    let range_tuple = range.map(ByteRange::as_tuple);
    let Some(path) = out else {
        let stdout = tokio::io::stdout();
        let result = client
            .get(
                &object.bucket,
                &object.key,
                range_tuple,
                stdout,
                bar.callback(),
            )
            .await;
        bar.finish(&result);
        result.with_context(context)?;
        return Ok(());
    };
    let result = client
        .get_file(
            &object.bucket,
            &object.key,
            range_tuple,
            path,
            bar.callback(),
        )
        .await;
    bar.finish(&result);
    let (info, written) = result.with_context(context)?;
    // The library checks the SHA-256 whenever the bytes are the whole object.
    let verified = written == info.size && range.is_none_or(|r| r.start == 0);
    match output {
        Output::Json => print_json(&json!({
            "bucket": info.bucket,
            "key": info.key,
            "file": path.display().to_string(),
            "bytes": written,
            "size": info.size,
            "sha256": info.sha256,
            "verified": verified,
        })),
        Output::Table => {
            print_fields(&[
                ("object", object.to_string()),
                ("file", path.display().to_string()),
                ("bytes", written.to_string()),
                (
                    "sha256",
                    if verified {
                        format!("{} (verified)", info.sha256)
                    } else {
                        format!("{} (partial read, not checked)", info.sha256)
                    },
                ),
            ]);
            Ok(())
        }
    }
}

async fn ls(client: &Client, output: Output, target: &ListTarget) -> anyhow::Result<()> {
    let objects = client
        .list(&target.bucket, &target.prefix)
        .await
        .with_context(|| format!("listing {}", target.bucket))?;
    match output {
        Output::Json => {
            let list: Vec<_> = objects
                .iter()
                .map(|o| json!({ "key": o.key, "size": o.size, "sha256": o.sha256 }))
                .collect();
            print_json(&serde_json::Value::Array(list))
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = objects
                .iter()
                .map(|o| vec![o.key.clone(), o.size.to_string(), o.sha256.clone()])
                .collect();
            print_table(&["KEY", "SIZE", "SHA256"], &rows);
            Ok(())
        }
    }
}

async fn stat(client: &Client, output: Output, object: &ObjectPath) -> anyhow::Result<()> {
    let info = client
        .stat(&object.bucket, &object.key)
        .await
        .with_context(|| format!("stat {object}"))?;
    match output {
        Output::Json => print_json(&json!({
            "bucket": info.bucket,
            "key": info.key,
            "size": info.size,
            "sha256": info.sha256,
            "content_type": info.content_type,
            "metadata": info.metadata,
            "data": info.data,
            "parity": info.parity,
            "stripes": info.stripes,
            "missing_shards": info.missing_shards,
            "created": format_rfc3339_ms(info.created_ms),
            "created_ms": info.created_ms,
        })),
        Output::Table => {
            print_fields(&info_fields(&info));
            Ok(())
        }
    }
}

fn info_fields(info: &ObjectInfo) -> Vec<(&'static str, String)> {
    let mut metadata: Vec<String> = info
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    metadata.sort();
    vec![
        ("bucket", info.bucket.clone()),
        ("key", info.key.clone()),
        ("size", info.size.to_string()),
        ("sha256", info.sha256.clone()),
        ("content type", info.content_type.clone()),
        ("metadata", metadata.join(", ")),
        ("scheme", format!("{}+{}", info.data, info.parity)),
        ("stripes", info.stripes.to_string()),
        ("missing shards", info.missing_shards.to_string()),
        ("created", format_rfc3339_ms(info.created_ms)),
    ]
}

async fn rm(client: &Client, output: Output, object: &ObjectPath) -> anyhow::Result<()> {
    client
        .delete(&object.bucket, &object.key)
        .await
        .with_context(|| format!("deleting {object}"))?;
    match output {
        Output::Json => print_json(&json!({
            "bucket": object.bucket,
            "key": object.key,
            "deleted": true,
        })),
        Output::Table => {
            println!("deleted {object}");
            Ok(())
        }
    }
}

async fn verify(client: &Client, output: Output, object: &ObjectPath) -> anyhow::Result<()> {
    let context = || format!("verifying {object}");
    let show_bar = progress::wanted(false);
    let total = if show_bar {
        let info = client
            .stat(&object.bucket, &object.key)
            .await
            .with_context(context)?;
        Some(info.size)
    } else {
        None
    };
    let bar = TransferBar::new(show_bar, total);
    let result = client
        .verify(&object.bucket, &object.key, bar.callback())
        .await;
    bar.finish(&result);
    let (info, computed, matches) = result.with_context(context)?;
    match output {
        Output::Json => print_json(&json!({
            "bucket": info.bucket,
            "key": info.key,
            "size": info.size,
            "sha256": info.sha256,
            "computed_sha256": computed,
            "missing_shards": info.missing_shards,
            "ok": matches,
        }))?,
        Output::Table => print_fields(&[
            ("object", object.to_string()),
            ("size", info.size.to_string()),
            ("stored sha256", info.sha256.clone()),
            ("read sha256", computed.clone()),
            ("missing shards", info.missing_shards.to_string()),
            (
                "result",
                if matches { "OK" } else { "MISMATCH" }.to_string(),
            ),
        ]),
    }
    if !matches {
        bail!(
            "{object} does not match its SHA-256: stored {}, read back {computed}",
            info.sha256
        );
    }
    Ok(())
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
