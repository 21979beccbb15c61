//! `principal`, `grant`, `revoke`, `token` and `s3-key`: who may do what.

use clap::Subcommand;
use serde_json::json;
use tresor_proto::v1 as pb;

use super::{print_json, rpc_error, Output};

/// The role names, for the command line's own checking.
const ROLES: [&str; 5] = ["ingest", "read", "audit", "custodian", "admin"];

/// Access management commands (top-level commands of `tresor-node`).
#[derive(Debug, Subcommand)]
pub enum AccessCmd {
    /// Create, delete or list principals (people and systems that may be
    /// given roles).
    Principal {
        /// What to do.
        #[command(subcommand)]
        command: PrincipalCmd,
    },
    /// Give a principal a role: ingest (put only), read (get, stat, list),
    /// audit (read the audit log), custodian (legal holds and retention
    /// extension) or admin (everything).
    Grant {
        /// The principal.
        name: String,
        /// The role.
        #[arg(value_parser = ROLES)]
        role: String,
        /// Only on this bucket (default: on all buckets).
        #[arg(long)]
        bucket: Option<String>,
    },
    /// Take a role back from a principal (effective on its next call).
    Revoke {
        /// The principal.
        name: String,
        /// The role.
        #[arg(value_parser = ROLES)]
        role: String,
        /// The bucket the role was granted on (default: the grant on all
        /// buckets).
        #[arg(long)]
        bucket: Option<String>,
    },
    /// Create or revoke bearer tokens.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Create, list or revoke S3 access keys (the S3 port's credentials).
    S3Key {
        /// What to do.
        #[command(subcommand)]
        command: S3KeyCmd,
    },
}

/// `s3-key` subcommands.
#[derive(Debug, Subcommand)]
pub enum S3KeyCmd {
    /// Create an S3 access key for a principal: S3 requests signed with it
    /// act as the principal, with its roles. The secret is printed once.
    Create {
        /// The principal.
        name: String,
    },
    /// List S3 access keys (ids and principals, never secrets).
    Ls,
    /// Revoke an S3 access key: requests signed with it are refused from
    /// the next one on.
    Revoke {
        /// The access key id.
        id: String,
    },
}

/// `principal` subcommands.
#[derive(Debug, Subcommand)]
pub enum PrincipalCmd {
    /// Create a principal, without roles. Its name is also the name of its
    /// client certificate (`tresor-node ca issue --client NAME`).
    Create {
        /// 1–64 characters of a-z 0-9 . _ -, starting with a letter or digit.
        name: String,
    },
    /// Delete a principal with its grants and tokens.
    Delete {
        /// The principal.
        name: String,
    },
    /// List principals with their roles and token ids.
    Ls,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a bearer token for a principal. It is printed once; only its
    /// hash is stored.
    Create {
        /// The principal.
        name: String,
    },
    /// Revoke a token: it is refused from its next call on.
    Revoke {
        /// The token's id (shown by `token create` and `principal ls`).
        id: String,
    },
}

fn grant_json(g: &pb::RoleGrant) -> serde_json::Value {
    json!({"role": g.role, "bucket": g.bucket})
}

fn grant_text(g: &pb::RoleGrant) -> String {
    match &g.bucket {
        Some(b) => format!("{} on {b}", g.role),
        None => g.role.clone(),
    }
}

fn scope(bucket: &Option<String>) -> String {
    match bucket {
        Some(b) => format!("on bucket {b}"),
        None => "on all buckets".to_string(),
    }
}

/// Runs an access command against `admin`.
pub async fn run(
    command: AccessCmd,
    mut admin: tresor_client::AdminClient,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        AccessCmd::Principal {
            command: PrincipalCmd::Create { name },
        } => {
            let r = admin
                .create_principal(pb::CreatePrincipalRequest { name: name.clone() })
                .await
                .map_err(|s| rpc_error("principal create", s))?
                .into_inner();
            let created = r.principal.map(|p| p.created_ms).unwrap_or_default();
            match output {
                Output::Json => print_json(json!({"name": name, "created_ms": created})),
                Output::Table => println!(
                    "created principal {name}; give it roles with `tresor-node grant {name} ROLE`"
                ),
            }
        }
        AccessCmd::Principal {
            command: PrincipalCmd::Delete { name },
        } => {
            admin
                .delete_principal(pb::DeletePrincipalRequest { name: name.clone() })
                .await
                .map_err(|s| rpc_error("principal delete", s))?;
            match output {
                Output::Json => print_json(json!({"deleted": name})),
                Output::Table => println!("deleted principal {name}, its grants and its tokens"),
            }
        }
        AccessCmd::Principal {
            command: PrincipalCmd::Ls,
        } => {
            let r = admin
                .list_principals(pb::ListPrincipalsRequest {})
                .await
                .map_err(|s| rpc_error("principal ls", s))?
                .into_inner();
            match output {
                Output::Json => print_json(serde_json::Value::Array(
                    r.principals
                        .iter()
                        .map(|p| {
                            json!({
                                "name": p.name,
                                "created_ms": p.created_ms,
                                "grants": p.grants.iter().map(grant_json).collect::<Vec<_>>(),
                                "tokens": p.tokens.iter().map(|t| json!({"id": t.id, "created_ms": t.created_ms})).collect::<Vec<_>>(),
                            })
                        })
                        .collect(),
                )),
                Output::Table => {
                    println!(
                        "{:<24} {:>14} {:<32} TOKENS",
                        "NAME", "CREATED_MS", "ROLES"
                    );
                    for p in &r.principals {
                        let roles: Vec<String> = p.grants.iter().map(grant_text).collect();
                        let tokens: Vec<&str> = p.tokens.iter().map(|t| t.id.as_str()).collect();
                        println!(
                            "{:<24} {:>14} {:<32} {}",
                            p.name,
                            p.created_ms,
                            if roles.is_empty() {
                                "-".to_string()
                            } else {
                                roles.join(", ")
                            },
                            if tokens.is_empty() {
                                "-".to_string()
                            } else {
                                tokens.join(", ")
                            }
                        );
                    }
                }
            }
        }
        AccessCmd::Grant { name, role, bucket } => {
            admin
                .grant(pb::GrantRequest {
                    principal: name.clone(),
                    role: role.clone(),
                    bucket: bucket.clone(),
                })
                .await
                .map_err(|s| rpc_error("grant", s))?;
            match output {
                Output::Json => print_json(
                    json!({"granted": {"principal": name, "role": role, "bucket": bucket}}),
                ),
                Output::Table => println!("granted {role} to {name} {}", scope(&bucket)),
            }
        }
        AccessCmd::Revoke { name, role, bucket } => {
            admin
                .revoke(pb::RevokeRequest {
                    principal: name.clone(),
                    role: role.clone(),
                    bucket: bucket.clone(),
                })
                .await
                .map_err(|s| rpc_error("revoke", s))?;
            match output {
                Output::Json => print_json(
                    json!({"revoked": {"principal": name, "role": role, "bucket": bucket}}),
                ),
                Output::Table => println!("revoked {role} from {name} {}", scope(&bucket)),
            }
        }
        AccessCmd::Token {
            command: TokenCmd::Create { name },
        } => {
            let r = admin
                .create_token(pb::CreateTokenRequest { principal: name })
                .await
                .map_err(|s| rpc_error("token create", s))?
                .into_inner();
            match output {
                Output::Json => print_json(json!({
                    "principal": r.principal,
                    "id": r.id,
                    "token": r.token,
                })),
                Output::Table => {
                    println!("token {} for {}:", r.id, r.principal);
                    println!("{}", r.token);
                    println!(
                        "It will not be shown again: store it now (only its hash is kept). \
                         Use it as TRESOR_TOKEN; revoke it with `tresor-node token revoke {}`.",
                        r.id
                    );
                }
            }
        }
        AccessCmd::S3Key { command } => s3_key(command, admin, output).await?,
        AccessCmd::Token {
            command: TokenCmd::Revoke { id },
        } => {
            admin
                .revoke_token(pb::RevokeTokenRequest { id: id.clone() })
                .await
                .map_err(|s| rpc_error("token revoke", s))?;
            match output {
                Output::Json => print_json(json!({"revoked_token": id})),
                Output::Table => println!("revoked token {id}"),
            }
        }
    }
    Ok(())
}

async fn s3_key(
    command: S3KeyCmd,
    mut admin: tresor_client::AdminClient,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        S3KeyCmd::Create { name } => {
            let r = admin
                .create_s3_key(pb::CreateS3KeyRequest { principal: name })
                .await
                .map_err(|s| rpc_error("s3-key create", s))?
                .into_inner();
            match output {
                Output::Json => print_json(json!({
                    "principal": r.principal,
                    "access_key_id": r.access_key_id,
                    "secret_access_key": r.secret_access_key,
                })),
                Output::Table => {
                    println!("S3 access key for {}:", r.principal);
                    println!("AWS_ACCESS_KEY_ID={}", r.access_key_id);
                    println!("AWS_SECRET_ACCESS_KEY={}", r.secret_access_key);
                    println!(
                        "The secret will not be shown again: store it now. Revoke the key with \
                         `tresor-node s3-key revoke {}`.",
                        r.access_key_id
                    );
                }
            }
        }
        S3KeyCmd::Ls => {
            let r = admin
                .list_s3_keys(pb::ListS3KeysRequest {})
                .await
                .map_err(|s| rpc_error("s3-key ls", s))?
                .into_inner();
            match output {
                Output::Json => print_json(serde_json::Value::Array(
                    r.keys
                        .iter()
                        .map(|k| {
                            json!({
                                "access_key_id": k.access_key_id,
                                "principal": k.principal,
                                "created_ms": k.created_ms,
                            })
                        })
                        .collect(),
                )),
                Output::Table => {
                    println!("{:<22} {:<24} CREATED_MS", "ACCESS_KEY_ID", "PRINCIPAL");
                    for k in &r.keys {
                        println!(
                            "{:<22} {:<24} {}",
                            k.access_key_id, k.principal, k.created_ms
                        );
                    }
                }
            }
        }
        S3KeyCmd::Revoke { id } => {
            admin
                .revoke_s3_key(pb::RevokeS3KeyRequest {
                    access_key_id: id.clone(),
                })
                .await
                .map_err(|s| rpc_error("s3-key revoke", s))?;
            match output {
                Output::Json => print_json(json!({"revoked_s3_key": id})),
                Output::Table => println!("revoked S3 access key {id}"),
            }
        }
    }
    Ok(())
}
