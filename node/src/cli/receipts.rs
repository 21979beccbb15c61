//! `tresor-node receipts ls|get`: deletion receipts. A receipt written
//! with `get -o FILE` is checked offline with `tresor receipt verify FILE
//! --ca ca.pem`.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Subcommand;
use serde_json::json;
use tresor_proto::v1 as pb;

use super::retention::split_object;
use super::{admin, print_json, rpc_error, Output};

/// `receipts` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReceiptsCmd {
    /// List receipts, by bucket and key.
    Ls {
        /// Only this bucket's.
        #[arg(long)]
        bucket: Option<String>,
        /// With --bucket: only keys under this prefix.
        #[arg(long, requires = "bucket", default_value = "")]
        prefix: String,
    },
    /// Print the signed receipt of the object deleted at BUCKET/KEY (or
    /// write it to a file).
    Get {
        /// BUCKET/KEY.
        object: String,
        /// Write the receipt here instead of printing it.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn receipt_json(r: &pb::Receipt) -> serde_json::Value {
    json!({
        "bucket": r.bucket,
        "key": r.key,
        "object_id": r.object_id,
        "deleted_ms": r.deleted_ms,
        "deleted_by": r.deleted_by,
        "reason": r.reason,
        "shard_files_removed": r.shard_files_removed,
        "signed": r.signed,
    })
}

/// Runs a `receipts` subcommand.
pub async fn run(command: ReceiptsCmd, endpoint: &str, output: Output) -> anyhow::Result<()> {
    let mut admin = admin(endpoint).await?;
    match command {
        ReceiptsCmd::Ls { bucket, prefix } => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            // Bounded: at most a hundred pages of a thousand.
            for _ in 0..100 {
                let r = admin
                    .list_receipts(pb::ListReceiptsRequest {
                        bucket: bucket.clone().unwrap_or_default(),
                        prefix: prefix.clone(),
                        page_size: 0,
                        page_token,
                    })
                    .await
                    .map_err(|s| rpc_error("receipts ls", s))?
                    .into_inner();
                all.extend(r.receipts);
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            match output {
                Output::Json => print_json(serde_json::Value::Array(
                    all.iter().map(receipt_json).collect(),
                )),
                Output::Table => {
                    println!(
                        "{:<40} {:<15} {:<20} {:>6} {:<6} REASON",
                        "BUCKET/KEY", "DELETED_MS", "BY", "FILES", "SIGNED"
                    );
                    for r in &all {
                        println!(
                            "{:<40} {:<15} {:<20} {:>6} {:<6} {}",
                            format!("{}/{}", r.bucket, r.key),
                            r.deleted_ms,
                            r.deleted_by,
                            r.shard_files_removed,
                            if r.signed { "yes" } else { "no" },
                            r.reason
                        );
                    }
                }
            }
        }
        ReceiptsCmd::Get { object, out } => {
            let (bucket, key) = split_object(&object)?;
            let r = admin
                .get_receipt(pb::GetReceiptRequest { bucket, key })
                .await
                .map_err(|s| rpc_error("receipts get", s))?
                .into_inner()
                .receipt
                .ok_or_else(|| anyhow!("receipts get: empty answer"))?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{}\n", r.receipt_json))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    match output {
                        Output::Json => print_json(receipt_json(&r)),
                        Output::Table => println!(
                            "wrote the receipt of {}/{} to {}",
                            r.bucket,
                            r.key,
                            path.display()
                        ),
                    }
                }
                None => println!("{}", r.receipt_json),
            }
        }
    }
    Ok(())
}
