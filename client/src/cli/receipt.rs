//! `tresor receipt verify FILE --ca ca.pem`: checks a deletion receipt
//! offline, with nothing but the cluster CA's certificate.

use std::path::Path;

use anyhow::{bail, Context};

use super::Output;
use crate::receipt::SignedReceipt;

/// Verifies the receipt in `file` against the CA in `ca`; prints what it
/// states. An error names what failed.
pub(super) fn verify(file: &Path, ca: Option<&Path>, output: Output) -> anyhow::Result<()> {
    let Some(ca) = ca else {
        bail!("receipt verify needs the cluster CA's certificate: --ca FILE");
    };
    let ca_pem =
        std::fs::read_to_string(ca).with_context(|| format!("cannot read {}", ca.display()))?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let body = SignedReceipt::from_json(&text)
        .and_then(|r| r.verify(&ca_pem))
        .with_context(|| format!("{} does not verify", file.display()))?;
    match output {
        Output::Json => println!("{}", serde_json::json!({"verified": true, "receipt": body})),
        Output::Table => {
            println!(
                "verified: {}/{} (object {}, {} bytes, sha256 {})",
                body.bucket, body.key, body.object_id, body.size, body.sha256
            );
            println!(
                "ingested at {} (Unix ms) by {}; deleted at {} by {} ({}); audit seq {}",
                body.ingested_ms,
                body.ingested_by,
                body.deleted_ms,
                body.deleted_by,
                body.reason,
                body.audit_seq
            );
            println!(
                "{} shard file(s) removed{}; data key removed: {}",
                body.shard_files_removed,
                match body.holders_unreached.is_empty() {
                    true => String::new(),
                    false => format!(
                        " (unreached then, removed later by garbage collection: nodes {:?})",
                        body.holders_unreached
                    ),
                },
                body.data_key_removed
            );
        }
    }
    Ok(())
}
