//! `tresor-node bucket`: create, list and delete buckets.

use anyhow::anyhow;
use clap::Subcommand;
use tresor_proto::v1 as pb;

use super::{admin, bucket_json, print_json, rpc_error, Output};

/// `bucket` subcommands.
#[derive(Debug, Subcommand)]
pub enum BucketCmd {
    /// Create a bucket with an erasure scheme of K data + M parity shards.
    Create {
        /// 3–63 characters of a-z 0-9 - .
        name: String,
        /// Data shards per stripe (1–16).
        #[arg(long)]
        data: u32,
        /// Parity shards per stripe (1–8).
        #[arg(long)]
        parity: u32,
        /// The retention policy its objects get (see `retention create`).
        #[arg(long)]
        retention: Option<String>,
    },
    /// Set the retention policy objects committed from now on get (objects
    /// already stored keep theirs); `--none` to stop giving one.
    SetRetention {
        /// The bucket.
        name: String,
        /// The policy.
        #[arg(required_unless_present = "none")]
        policy: Option<String>,
        /// Give no policy.
        #[arg(long, conflicts_with = "policy")]
        none: bool,
    },
    /// List buckets.
    Ls,
    /// Delete an empty bucket (no objects, uploads or legal holds in it).
    Delete {
        /// The bucket.
        name: String,
    },
}

/// Runs one `bucket` command through `endpoint`.
pub async fn run(command: BucketCmd, endpoint: &str, output: Output) -> anyhow::Result<()> {
    match command {
        BucketCmd::Create {
            name,
            data,
            parity,
            retention,
        } => {
            let r = admin(endpoint)
                .await?
                .create_bucket(pb::CreateBucketRequest {
                    name,
                    data,
                    parity,
                    retention: retention.unwrap_or_default(),
                })
                .await
                .map_err(|s| rpc_error("bucket create", s))?
                .into_inner();
            let b = r
                .bucket
                .ok_or_else(|| anyhow!("bucket create: empty answer"))?;
            match output {
                Output::Json => print_json(bucket_json(&b)),
                Output::Table => println!("created bucket {} ({}+{})", b.name, b.data, b.parity),
            }
        }
        BucketCmd::SetRetention { name, policy, .. } => {
            let r = admin(endpoint)
                .await?
                .set_bucket_retention(pb::SetBucketRetentionRequest {
                    bucket: name,
                    policy: policy.unwrap_or_default(),
                })
                .await
                .map_err(|s| rpc_error("bucket set-retention", s))?
                .into_inner();
            let b = r
                .bucket
                .ok_or_else(|| anyhow!("bucket set-retention: empty answer"))?;
            match output {
                Output::Json => print_json(bucket_json(&b)),
                Output::Table if b.retention.is_empty() => {
                    println!("bucket {}: new objects get no retention policy", b.name)
                }
                Output::Table => println!(
                    "bucket {}: new objects get retention policy {}",
                    b.name, b.retention
                ),
            }
        }
        BucketCmd::Delete { name } => {
            admin(endpoint)
                .await?
                .delete_bucket(pb::DeleteBucketRequest { name: name.clone() })
                .await
                .map_err(|s| rpc_error("bucket delete", s))?;
            match output {
                Output::Json => print_json(serde_json::json!({"deleted_bucket": name})),
                Output::Table => println!("deleted bucket {name}"),
            }
        }
        BucketCmd::Ls => {
            let r = admin(endpoint)
                .await?
                .list_buckets(pb::ListBucketsRequest {})
                .await
                .map_err(|s| rpc_error("bucket ls", s))?
                .into_inner();
            match output {
                Output::Json => print_json(serde_json::Value::Array(
                    r.buckets.iter().map(bucket_json).collect(),
                )),
                Output::Table => {
                    println!("{:<32} {:>5} {:>7}  RETENTION", "NAME", "DATA", "PARITY");
                    for b in &r.buckets {
                        let retention = if b.retention.is_empty() {
                            "-"
                        } else {
                            &b.retention
                        };
                        println!("{:<32} {:>5} {:>7}  {retention}", b.name, b.data, b.parity);
                    }
                }
            }
        }
    }
    Ok(())
}
