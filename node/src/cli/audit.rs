//! `tresor-node audit`: read and verify the audit log.

use clap::Subcommand;
use serde_json::json;
use tresor_proto::v1 as pb;

use super::{admin, parse_since, print_json, rpc_error, Output};

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Show entries, oldest first.
    Log {
        /// Only entries about this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Only entries about this key.
        #[arg(long)]
        key: Option<String>,
        /// Only entries by this principal.
        #[arg(long)]
        principal: Option<String>,
        /// Only entries at or after this time: RFC 3339
        /// (`2026-11-26T08:00:00Z`) or Unix milliseconds.
        #[arg(long, value_parser = parse_since)]
        since: Option<u64>,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Walk the contacted node's copy of the chain: names the first broken
    /// entry, or says it is intact with the head hash. Exit status 1 when
    /// broken.
    Verify,
    /// A signed checkpoint of the audit history, to publish: custody
    /// bundles prove their entries are in it (`tresor custody verify
    /// --checkpoint FILE`). Without `--segments` a new one covering the log
    /// as it is now (the unsealed tail is sealed first).
    Checkpoint {
        /// Fetch the checkpoint made when this many segments were sealed.
        #[arg(long)]
        segments: Option<u64>,
        /// Write the signed checkpoint to this file.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
}

/// Runs one `audit` command through `endpoint`.
pub async fn run(command: AuditCmd, endpoint: &str, output: Output) -> anyhow::Result<()> {
    match command {
        AuditCmd::Log {
            bucket,
            key,
            principal,
            since,
            limit,
        } => {
            let r = admin(endpoint)
                .await?
                .audit_log(pb::AuditLogRequest {
                    bucket: bucket.unwrap_or_default(),
                    key: key.unwrap_or_default(),
                    principal: principal.unwrap_or_default(),
                    since_ms: since.unwrap_or(0),
                    limit,
                    after_seq: 0,
                })
                .await
                .map_err(|s| rpc_error("audit log", s))?
                .into_inner();
            match output {
                Output::Json => print_json(serde_json::Value::Array(
                    r.entries
                        .iter()
                        .map(|e| {
                            json!({
                                "seq": e.seq, "time": e.time_ms, "node": e.node, "principal": e.principal,
                                "action": e.action, "bucket": e.bucket, "key": e.key,
                                "object_sha256": e.object_sha256, "outcome": e.outcome,
                                "prev_hash": e.prev_hash, "hash": e.hash,
                            })
                        })
                        .collect(),
                )),
                Output::Table => {
                    println!("{:>6} {:>14} {:>4} {:<24} {:<14} {:<20} {:<12}", "SEQ", "TIME_MS", "NODE", "PRINCIPAL", "ACTION", "BUCKET/KEY", "OUTCOME");
                    for e in &r.entries {
                        let what = if e.key.is_empty() { e.bucket.clone() } else { format!("{}/{}", e.bucket, e.key) };
                        println!(
                            "{:>6} {:>14} {:>4} {:<24} {:<14} {:<20} {:<12}",
                            e.seq, e.time_ms, e.node, e.principal, e.action, what, e.outcome
                        );
                    }
                }
            }
        }
        AuditCmd::Verify => {
            let r = admin(endpoint)
                .await?
                .audit_verify(pb::AuditVerifyRequest {})
                .await
                .map_err(|s| rpc_error("audit verify", s))?
                .into_inner();
            match output {
                Output::Json => print_json(json!({
                    "node": r.node_id,
                    "intact": r.intact,
                    "entries": r.entries,
                    "head_hash": r.head_hash,
                    "broken_seq": r.broken_seq,
                    "reason": r.reason,
                    "sealed_segments": r.sealed_segments,
                })),
                Output::Table if r.intact => println!(
                    "audit log intact on node {}: {} entries ({} sealed segments read back), head {}",
                    r.node_id, r.entries, r.sealed_segments, r.head_hash
                ),
                Output::Table => println!(
                    "audit log BROKEN on node {} at entry {}: {}",
                    r.node_id,
                    r.broken_seq.unwrap_or(0),
                    r.reason
                ),
            }
            if !r.intact {
                anyhow::bail!("audit chain broken at entry {}", r.broken_seq.unwrap_or(0));
            }
        }
        AuditCmd::Checkpoint { segments, out } => {
            let r = admin(endpoint)
                .await?
                .audit_checkpoint(pb::AuditCheckpointRequest {
                    segments: segments.unwrap_or(0),
                })
                .await
                .map_err(|s| rpc_error("audit checkpoint", s))?
                .into_inner();
            if let Some(out) = &out {
                std::fs::write(out, format!("{}\n", r.checkpoint_json))
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            }
            match output {
                Output::Json => print_json(json!({
                    "segments": r.segments,
                    "last_seq": r.last_seq,
                    "root": r.root,
                    "file": out,
                })),
                Output::Table => println!(
                    "audit checkpoint: {} sealed segments, to entry {}, root {}{}",
                    r.segments,
                    r.last_seq,
                    r.root,
                    out.map(|o| format!(" (written to {})", o.display()))
                        .unwrap_or_default()
                ),
            }
        }
    }
    Ok(())
}
