//! `keys`: master keys of encryption at rest.

use clap::Subcommand;
use serde_json::json;
use tresor_proto::v1 as pb;

use super::{print_json, rpc_error, Output};

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Re-wrap every object's data key with the current (last) key of the
    /// contacted node's master key file. Put the new key in every node's
    /// key file first; once this reports nothing remaining, older keys can
    /// be removed from the files.
    Rotate,
    /// Print a new key file line with a fresh random key, to append to
    /// every node's master key file.
    New {
        /// Its id (1–32 letters, digits, '.', '_' or '-'), unique in the file.
        id: String,
    },
}

/// Runs a `keys` subcommand.
pub async fn run(command: KeysCmd, endpoint: &str, output: Output) -> anyhow::Result<()> {
    match command {
        KeysCmd::New { id } => {
            let line = crate::crypto::MasterKeys::new_line(&id).map_err(anyhow::Error::msg)?;
            print!("{line}");
        }
        KeysCmd::Rotate => {
            let r = super::admin(endpoint)
                .await?
                .rotate_keys(pb::RotateKeysRequest {})
                .await
                .map_err(|s| rpc_error("keys rotate", s))?
                .into_inner();
            match output {
                Output::Json => print_json(json!({
                    "current_key_id": r.current_key_id,
                    "rewrapped": r.rewrapped,
                    "remaining": r.remaining,
                    "unencrypted": r.unencrypted,
                })),
                Output::Table => {
                    println!(
                        "re-wrapped {} epoch key copies and data keys with master key {}",
                        r.rewrapped, r.current_key_id
                    );
                    if r.remaining > 0 {
                        println!(
                            "{} epoch key copies or data keys are still under an older key \
                             (nodes unreachable, or written meanwhile); run again",
                            r.remaining
                        );
                    } else {
                        println!("nothing needs an older master key any more");
                    }
                    if r.unencrypted > 0 {
                        println!(
                            "{} objects are stored unencrypted (written by an insecure cluster)",
                            r.unencrypted
                        );
                    }
                }
            }
            if r.remaining > 0 {
                anyhow::bail!("{} objects still need an older master key", r.remaining);
            }
        }
    }
    Ok(())
}
