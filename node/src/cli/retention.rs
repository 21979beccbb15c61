//! `tresor-node retention` and `tresor-node hold`: retention policies,
//! extending an object's retention, legal holds.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::json;
use tresor_proto::v1 as pb;

use super::{admin, print_json, rpc_error, Output};
use crate::meta::retention::{format_duration, parse_duration};

/// `retention` subcommands.
#[derive(Debug, Subcommand)]
pub enum RetentionCmd {
    /// Create a policy (policies never change once created).
    Create {
        /// 1–64 characters of a-z 0-9 - _ .
        name: String,
        /// No one may delete an object before this long after its ingest
        /// (e.g. 10y).
        #[arg(long, value_parser = duration)]
        keep_min: Option<u64>,
        /// Objects are deleted this long after their ingest unless held
        /// (e.g. 30d).
        #[arg(long, value_parser = duration)]
        delete_after: Option<u64>,
    },
    /// List policies.
    Ls,
    /// Move an object to a policy that keeps it at least as long.
    Extend {
        /// BUCKET/KEY.
        object: String,
        /// The new policy.
        #[arg(long)]
        policy: String,
    },
}

/// `hold` subcommands.
#[derive(Debug, Subcommand)]
pub enum HoldCmd {
    /// Place a legal hold on a key or on every key under a prefix (also
    /// keys uploaded later).
    Place {
        /// The case it is for.
        case_id: String,
        /// Where.
        #[command(flatten)]
        target: Target,
        /// Why (recorded with the hold).
        #[arg(long)]
        reason: String,
    },
    /// Release a case's hold.
    Release {
        /// The case.
        case_id: String,
        /// What it holds.
        #[command(flatten)]
        target: Target,
    },
    /// List holds.
    Ls {
        /// Only this case's.
        #[arg(long = "case")]
        case_id: Option<String>,
        /// Only those in this bucket.
        #[arg(long)]
        bucket: Option<String>,
    },
}

/// A hold's bucket and key or prefix.
#[derive(Debug, Args)]
pub struct Target {
    /// The bucket.
    #[arg(long)]
    bucket: String,
    /// One key.
    #[arg(long, required_unless_present = "prefix", conflicts_with = "prefix")]
    key: Option<String>,
    /// Every key starting with this.
    #[arg(long)]
    prefix: Option<String>,
}

fn duration(text: &str) -> Result<u64, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn shown(ms: Option<u64>) -> String {
    ms.map(format_duration).unwrap_or_else(|| "-".into())
}

/// `BUCKET/KEY` split at its first slash.
pub fn split_object(object: &str) -> anyhow::Result<(String, String)> {
    match object.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.into(), k.into())),
        _ => Err(anyhow!("expected BUCKET/KEY, got {object:?}")),
    }
}

/// A hold as JSON.
pub fn hold_json(h: &pb::Hold) -> serde_json::Value {
    let (kind, target) = match &h.target {
        Some(pb::hold::Target::Key(k)) => ("key", k.as_str()),
        Some(pb::hold::Target::Prefix(p)) => ("prefix", p.as_str()),
        None => ("key", ""),
    };
    json!({
        "case_id": h.case_id,
        "bucket": h.bucket,
        kind: target,
        "reason": h.reason,
        "placed_by": h.placed_by,
        "placed_ms": h.placed_ms,
    })
}

fn policy_json(p: &pb::RetentionPolicy) -> serde_json::Value {
    json!({
        "name": p.name,
        "keep_min_ms": p.keep_min_ms,
        "delete_after_ms": p.delete_after_ms,
        "created_ms": p.created_ms,
    })
}

/// Runs one `retention` command through `endpoint`.
pub async fn run_retention(
    command: RetentionCmd,
    endpoint: &str,
    output: Output,
) -> anyhow::Result<()> {
    let mut admin = admin(endpoint).await?;
    match command {
        RetentionCmd::Create {
            name,
            keep_min,
            delete_after,
        } => {
            let r = admin
                .create_retention(pb::CreateRetentionRequest {
                    name,
                    keep_min_ms: keep_min,
                    delete_after_ms: delete_after,
                })
                .await
                .map_err(|s| rpc_error("retention create", s))?
                .into_inner();
            let p = r
                .policy
                .ok_or_else(|| anyhow!("retention create: empty answer"))?;
            match output {
                Output::Json => print_json(policy_json(&p)),
                Output::Table => println!(
                    "created retention policy {} (keep-min {}, delete-after {})",
                    p.name,
                    shown(p.keep_min_ms),
                    shown(p.delete_after_ms)
                ),
            }
        }
        RetentionCmd::Ls => {
            let r = admin
                .list_retention(pb::ListRetentionRequest {})
                .await
                .map_err(|s| rpc_error("retention ls", s))?
                .into_inner();
            match output {
                Output::Json => print_json(serde_json::Value::Array(
                    r.policies.iter().map(policy_json).collect(),
                )),
                Output::Table => {
                    println!("{:<32} {:>10} {:>13}", "NAME", "KEEP-MIN", "DELETE-AFTER");
                    for p in &r.policies {
                        println!(
                            "{:<32} {:>10} {:>13}",
                            p.name,
                            shown(p.keep_min_ms),
                            shown(p.delete_after_ms)
                        );
                    }
                }
            }
        }
        RetentionCmd::Extend { object, policy } => {
            let (bucket, key) = split_object(&object)?;
            let r = admin
                .extend_retention(pb::ExtendRetentionRequest {
                    bucket,
                    key,
                    policy,
                })
                .await
                .map_err(|s| rpc_error("retention extend", s))?
                .into_inner();
            let r = r
                .retention
                .ok_or_else(|| anyhow!("retention extend: empty answer"))?;
            match output {
                Output::Json => print_json(json!({
                    "policy": r.policy,
                    "keep_until_ms": r.keep_until_ms,
                    "delete_at_ms": r.delete_at_ms,
                })),
                Output::Table => println!(
                    "{object}: policy {}, kept until {}, deleted at {}",
                    r.policy,
                    r.keep_until_ms.map_or("-".into(), |t| t.to_string()),
                    r.delete_at_ms.map_or("never".into(), |t| t.to_string())
                ),
            }
        }
    }
    Ok(())
}

/// Runs one `hold` command through `endpoint`.
pub async fn run_hold(command: HoldCmd, endpoint: &str, output: Output) -> anyhow::Result<()> {
    let mut admin = admin(endpoint).await?;
    match command {
        HoldCmd::Place {
            case_id,
            target,
            reason,
        } => {
            let r = admin
                .place_hold(pb::PlaceHoldRequest {
                    case_id,
                    bucket: target.bucket,
                    target: Some(match (target.key, target.prefix) {
                        (Some(k), _) => pb::place_hold_request::Target::Key(k),
                        (None, p) => pb::place_hold_request::Target::Prefix(p.unwrap_or_default()),
                    }),
                    reason,
                })
                .await
                .map_err(|s| rpc_error("hold place", s))?
                .into_inner();
            let h = r.hold.ok_or_else(|| anyhow!("hold place: empty answer"))?;
            match output {
                Output::Json => print_json(hold_json(&h)),
                Output::Table => println!("placed hold of case {} in {}", h.case_id, h.bucket),
            }
        }
        HoldCmd::Release { case_id, target } => {
            admin
                .release_hold(pb::ReleaseHoldRequest {
                    case_id: case_id.clone(),
                    bucket: target.bucket.clone(),
                    target: Some(match (target.key, target.prefix) {
                        (Some(k), _) => pb::release_hold_request::Target::Key(k),
                        (None, p) => {
                            pb::release_hold_request::Target::Prefix(p.unwrap_or_default())
                        }
                    }),
                })
                .await
                .map_err(|s| rpc_error("hold release", s))?;
            match output {
                Output::Json => print_json(json!({"released": case_id})),
                Output::Table => println!("released hold of case {case_id} in {}", target.bucket),
            }
        }
        HoldCmd::Ls { case_id, bucket } => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            // Bounded: at most a hundred pages of a thousand.
            for _ in 0..100 {
                let r = admin
                    .list_holds(pb::ListHoldsRequest {
                        case_id: case_id.clone().unwrap_or_default(),
                        bucket: bucket.clone().unwrap_or_default(),
                        page_size: 0,
                        page_token,
                    })
                    .await
                    .map_err(|s| rpc_error("hold ls", s))?
                    .into_inner();
                all.extend(r.holds);
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            match output {
                Output::Json => print_json(serde_json::Value::Array(
                    all.iter().map(hold_json).collect(),
                )),
                Output::Table => {
                    println!(
                        "{:<20} {:<20} {:<32} {:<12} REASON",
                        "CASE", "BUCKET", "KEY OR PREFIX", "BY"
                    );
                    for h in &all {
                        let target = match &h.target {
                            Some(pb::hold::Target::Key(k)) => k.clone(),
                            Some(pb::hold::Target::Prefix(p)) => format!("{p}*"),
                            None => String::new(),
                        };
                        println!(
                            "{:<20} {:<20} {:<32} {:<12} {}",
                            h.case_id, h.bucket, target, h.placed_by, h.reason
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
