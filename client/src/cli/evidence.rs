//! Evidence documents: `tresor receipt verify FILE` checks a deletion
//! receipt, `tresor custody BUCKET/KEY -o FILE` exports a chain-of-custody
//! bundle and `tresor custody verify FILE [--file CLIP]` checks one — the
//! checks offline, with nothing but the cluster CA's certificate (`--ca`).

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use sha2::{Digest, Sha256};
use tresor_proto::v1 as pb;

use super::parse::ObjectPath;
use super::Output;
use crate::custody::verify_bundle;
use crate::receipt::SignedReceipt;

/// The CA certificate's PEM, from `--ca`.
fn ca_pem(ca: Option<&Path>, what: &str) -> anyhow::Result<String> {
    let Some(ca) = ca else {
        bail!("{what} needs the cluster CA's certificate: --ca FILE");
    };
    std::fs::read_to_string(ca).with_context(|| format!("cannot read {}", ca.display()))
}

/// Verifies the receipt in `file` against the CA in `ca`; prints what it
/// states. An error names what failed.
pub(super) fn verify(file: &Path, ca: Option<&Path>, output: Output) -> anyhow::Result<()> {
    let ca_pem = ca_pem(ca, "receipt verify")?;
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
                "{} shard file(s) removed{}; data key destroyed: {}{}",
                body.shard_files_removed,
                match body.holders_unreached.is_empty() {
                    true => String::new(),
                    false => format!(
                        " (unreached then, removed later by garbage collection: nodes {:?})",
                        body.holders_unreached
                    ),
                },
                body.data_key_removed,
                match (&body.key_epoch, body.key_destroyed_ms) {
                    (Some(e), Some(at)) => format!(" (key epoch {e} destroyed at {at} ms)"),
                    _ => String::new(),
                }
            );
        }
    }
    Ok(())
}

/// Writes the custody bundle of `object` to `out`, from the first of
/// `endpoints` that answers.
pub(super) async fn export(
    endpoints: &[String],
    object: &ObjectPath,
    out: &Path,
    checkpoint: Option<u64>,
    output: Output,
) -> anyhow::Result<()> {
    let mut last = None;
    for endpoint in endpoints {
        let mut admin = match crate::admin(endpoint).await {
            Ok(a) => a,
            Err(e) => {
                last = Some(anyhow!(e));
                continue;
            }
        };
        let got = admin
            .export_custody(pb::ExportCustodyRequest {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                checkpoint_segments: checkpoint.unwrap_or(0),
            })
            .await;
        match got {
            Ok(r) => {
                let bundle = r.into_inner().bundle_json;
                std::fs::write(out, format!("{bundle}\n"))
                    .with_context(|| format!("cannot write {}", out.display()))?;
                match output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({"object": object.to_string(), "bundle": out})
                    ),
                    Output::Table => {
                        println!("wrote the custody bundle of {object} to {}", out.display())
                    }
                }
                return Ok(());
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                last = Some(anyhow!("{endpoint}: {}", s.message()))
            }
            Err(s) => bail!("custody {object}: {}", s.message()),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no endpoint given")))
        .with_context(|| format!("custody {object}"))
}

/// SHA-256 of the file at `path`, hex, read in 1 MiB pieces.
fn file_sha256(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(hex::encode(hash.finalize()));
        }
        hash.update(&buf[..n]);
    }
}

/// The files `custody verify` checks.
pub(super) struct CustodyFiles<'a> {
    /// The bundle.
    pub bundle: &'a Path,
    /// The footage, to check its SHA-256.
    pub footage: Option<&'a Path>,
    /// A published checkpoint the bundle must be anchored to.
    pub checkpoint: Option<&'a Path>,
}

/// A signed document (bundle, checkpoint) from `path`.
fn read_signed(path: &Path, what: &str) -> anyhow::Result<SignedReceipt> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    SignedReceipt::from_json(&text).with_context(|| format!("{} is not a {what}", path.display()))
}

/// Checks a custody bundle (and the footage, and its anchor to a
/// published checkpoint).
pub(super) fn verify_custody(
    files: CustodyFiles<'_>,
    ca: Option<&Path>,
    output: Output,
) -> anyhow::Result<()> {
    let ca_pem = ca_pem(ca, "custody verify")?;
    let footage = files.footage;
    let bundle = read_signed(files.bundle, "bundle")?;
    let published = files
        .checkpoint
        .map(|p| read_signed(p, "checkpoint"))
        .transpose()?;
    let sha = footage.map(file_sha256).transpose()?;
    let verified = verify_bundle(&bundle, &ca_pem, sha.as_deref(), published.as_ref())
        .with_context(|| format!("{} does not verify", files.bundle.display()))?;
    let (body, anchor) = (verified.body, verified.anchor);
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "verified": true,
                "object": format!("{}/{}", body.bucket, body.key),
                "entries": body.entries.len(),
                "entries_complete": body.entries_complete,
                "footage_checked": footage.is_some(),
                "deleted": body.receipt.is_some(),
                "anchor": anchor.as_ref().map(|a| serde_json::json!({
                    "checkpoint_segments": a.checkpoint.segments,
                    "checkpoint_last_seq": a.checkpoint.last_seq,
                    "checkpoint_root": a.checkpoint.root,
                    "checkpoint_made_ms": a.checkpoint.made_ms,
                    "entries_anchored": a.anchored,
                    "entries_after": a.after,
                    "published_checked": files.checkpoint.is_some(),
                })),
            })
        ),
        Output::Table => {
            println!(
                "verified: custody of {}/{} signed by cluster {} at {} (Unix ms) for {}",
                body.bucket, body.key, body.cluster_id, body.exported_ms, body.exported_by
            );
            if let Some(o) = &body.object {
                println!(
                    "ingested at {} by {}: {} bytes, sha256 {}",
                    o.ingested_ms, o.ingested_by, o.size, o.sha256
                );
            }
            if body.receipt.is_some() {
                println!("deleted: its signed deletion receipt is inside and verifies");
            }
            println!(
                "{} audit entries naming it{}, each matching its chain hash; audit head {}",
                body.entries.len(),
                if body.entries_complete {
                    ""
                } else {
                    " (the first; more exist)"
                },
                body.head_seq
            );
            for e in &body.entries {
                println!(
                    "  {:>8} {:>14} {:<20} {:<16} {}",
                    e.seq, e.time_ms, e.principal, e.action, e.outcome
                );
            }
            for h in &body.holds {
                println!(
                    "held by case {} ({}), placed by {}",
                    h.case_id, h.reason, h.placed_by
                );
            }
            match &anchor {
                Some(a) => println!(
                    "anchored: {} entries proven in the history of the checkpoint of {} sealed \
                     segments (to entry {}, root {}, signed at {} Unix ms){}; {} later entries \
                     not yet in a checkpoint",
                    a.anchored,
                    a.checkpoint.segments,
                    a.checkpoint.last_seq,
                    a.checkpoint.root,
                    a.checkpoint.made_ms,
                    if files.checkpoint.is_some() {
                        ", the published one given"
                    } else {
                        ""
                    },
                    a.after
                ),
                None => println!("not anchored: made before the cluster's first checkpoint"),
            }
            if footage.is_some() {
                println!("the footage file has the recorded SHA-256");
            }
        }
    }
    Ok(())
}
