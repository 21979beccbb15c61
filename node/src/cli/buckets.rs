//! `tresor-node bucket`: create and list buckets.

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
    },
    /// List buckets.
    Ls,
}

/// Runs one `bucket` command through `endpoint`.
pub async fn run(command: BucketCmd, endpoint: &str, output: Output) -> anyhow::Result<()> {
    match command {
        BucketCmd::Create { name, data, parity } => {
            let r = admin(endpoint)
                .await?
                .create_bucket(pb::CreateBucketRequest { name, data, parity })
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
                    println!("{:<32} {:>5} {:>7}", "NAME", "DATA", "PARITY");
                    for b in &r.buckets {
                        println!("{:<32} {:>5} {:>7}", b.name, b.data, b.parity);
                    }
                }
            }
        }
    }
    Ok(())
}
