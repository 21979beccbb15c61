//! `tresor-node uploads ls|abort`: the resumable upload sessions still
//! open, and ending one.

use clap::Subcommand;
use serde_json::json;
use tresor_proto::v1 as pb;

use super::{admin, print_json, rpc_error, Output};
use crate::meta::now_ms;

/// `uploads` subcommands.
#[derive(Debug, Subcommand)]
pub enum UploadsCmd {
    /// List the open sessions: principal, bytes durably stored, age.
    Ls,
    /// End a session without an object and delete its stored parts (one
    /// whose client lost its id, say). Needs the right to delete in its
    /// bucket, unless it is the caller's own.
    Abort {
        /// The session, as `uploads ls` shows it.
        upload_id: String,
    },
}

/// Runs an `uploads` subcommand.
pub async fn run(command: UploadsCmd, endpoint: &str, output: Output) -> anyhow::Result<()> {
    if let UploadsCmd::Abort { upload_id } = command {
        let client = tresor_client::Client::connect(&[endpoint.to_string()]).await?;
        client
            .abort_upload(&upload_id)
            .await
            .map_err(|e| anyhow::anyhow!("uploads abort: {e}"))?;
        match output {
            Output::Json => print_json(json!({ "upload_id": upload_id, "aborted": true })),
            Output::Table => println!("upload {upload_id} aborted; its parts are deleted"),
        }
        return Ok(());
    }
    let mut admin = admin(endpoint).await?;
    let mut all = Vec::new();
    let mut page_token = String::new();
    // Bounded: at most a hundred pages of a thousand.
    for _ in 0..100 {
        let r = admin
            .list_uploads(pb::ListUploadsRequest {
                page_size: 1000,
                page_token,
            })
            .await
            .map_err(|s| rpc_error("uploads ls", s))?
            .into_inner();
        all.extend(r.uploads);
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    let now = now_ms();
    let age = |u: &pb::UploadInfo| now.saturating_sub(u.started_ms) / 1000;
    match output {
        Output::Json => print_json(serde_json::Value::Array(
            all.iter()
                .map(|u| {
                    json!({
                        "upload_id": u.upload_id,
                        "bucket": u.bucket,
                        "key": u.key,
                        "principal": u.principal,
                        "durable_bytes": u.durable_bytes,
                        "parts": u.parts,
                        "part_bytes": u.part_bytes,
                        "finished": u.finished,
                        "started_ms": u.started_ms,
                        "touched_ms": u.touched_ms,
                        "age_secs": age(u),
                    })
                })
                .collect(),
        )),
        Output::Table => {
            println!(
                "{:<32} {:<16} {:>14} {:>6} {:>8}  BUCKET/KEY",
                "UPLOAD", "PRINCIPAL", "DURABLE_BYTES", "PARTS", "AGE_S"
            );
            for u in &all {
                println!(
                    "{:<32} {:<16} {:>14} {:>6} {:>8}  {}/{}",
                    u.upload_id,
                    u.principal,
                    u.durable_bytes,
                    u.parts,
                    age(u),
                    u.bucket,
                    u.key
                );
            }
        }
    }
    Ok(())
}
