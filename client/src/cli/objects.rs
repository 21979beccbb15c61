//! `tresor ls`, `stat`, `rm` and `verify`: looking at stored objects,
//! removing them, and proving one is unaltered.

use anyhow::{bail, Context};
use serde_json::json;

use super::parse::{ListTarget, ObjectPath};
use super::progress::{self, TransferBar};
use super::render::{format_rfc3339_ms, print_fields, print_json, print_table};
use super::Output;
use crate::objects::{Client, ObjectInfo};

pub(super) async fn ls(client: &Client, output: Output, target: &ListTarget) -> anyhow::Result<()> {
    let objects = client
        .list(&target.bucket, &target.prefix)
        .await
        .with_context(|| format!("listing {}", target.bucket))?;
    match output {
        Output::Json => {
            let list: Vec<_> = objects
                .iter()
                .map(|o| {
                    json!({
                        "key": o.key,
                        "size": o.size,
                        "sha256": o.sha256,
                        "created": format_rfc3339_ms(o.created_ms),
                        "retention": retention_json(o),
                    })
                })
                .collect();
            print_json(&serde_json::Value::Array(list))
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = objects
                .iter()
                .map(|o| vec![o.key.clone(), o.size.to_string(), o.sha256.clone()])
                .collect();
            print_table(&["KEY", "SIZE", "SHA256"], &rows);
            Ok(())
        }
    }
}

pub(super) async fn stat(
    client: &Client,
    output: Output,
    object: &ObjectPath,
) -> anyhow::Result<()> {
    let info = client
        .stat(&object.bucket, &object.key)
        .await
        .with_context(|| format!("stat {object}"))?;
    match output {
        Output::Json => print_json(&json!({
            "bucket": info.bucket,
            "key": info.key,
            "size": info.size,
            "sha256": info.sha256,
            "content_type": info.content_type,
            "metadata": info.metadata,
            "data": info.data,
            "parity": info.parity,
            "stripes": info.stripes,
            "missing_shards": info.missing_shards,
            "created": format_rfc3339_ms(info.created_ms),
            "created_ms": info.created_ms,
            "retention": retention_json(&info),
            "holds": info.holds.iter().map(|h| json!({
                "case_id": h.case_id,
                "key": match &h.target { Some(tresor_proto::v1::hold::Target::Key(k)) => Some(k), _ => None },
                "prefix": match &h.target { Some(tresor_proto::v1::hold::Target::Prefix(p)) => Some(p), _ => None },
                "reason": h.reason,
                "placed_by": h.placed_by,
                "placed_ms": h.placed_ms,
            })).collect::<Vec<_>>(),
        })),
        Output::Table => {
            print_fields(&info_fields(&info));
            Ok(())
        }
    }
}

/// An object's retention as JSON (`null` without a policy). Holds are
/// shown by `stat` only: a listing does not look them up.
fn retention_json(info: &ObjectInfo) -> serde_json::Value {
    match &info.retention {
        Some(r) => json!({
            "policy": r.policy,
            "keep_until_ms": r.keep_until_ms,
            "keep_until": r.keep_until_ms.map(format_rfc3339_ms),
            "delete_at_ms": r.delete_at_ms,
            "delete_at": r.delete_at_ms.map(format_rfc3339_ms),
        }),
        None => serde_json::Value::Null,
    }
}

fn info_fields(info: &ObjectInfo) -> Vec<(&'static str, String)> {
    let mut metadata: Vec<String> = info
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    metadata.sort();
    vec![
        ("bucket", info.bucket.clone()),
        ("key", info.key.clone()),
        ("size", info.size.to_string()),
        ("sha256", info.sha256.clone()),
        ("content type", info.content_type.clone()),
        ("metadata", metadata.join(", ")),
        ("scheme", format!("{}+{}", info.data, info.parity)),
        ("stripes", info.stripes.to_string()),
        ("missing shards", info.missing_shards.to_string()),
        ("created", format_rfc3339_ms(info.created_ms)),
        (
            "retention",
            info.retention
                .as_ref()
                .map_or("-".into(), |r| r.policy.clone()),
        ),
        (
            "keep until",
            info.retention
                .as_ref()
                .and_then(|r| r.keep_until_ms)
                .map_or("-".into(), format_rfc3339_ms),
        ),
        (
            "delete at",
            info.retention
                .as_ref()
                .and_then(|r| r.delete_at_ms)
                .map_or("-".into(), format_rfc3339_ms),
        ),
        (
            "holds",
            info.holds
                .iter()
                .map(|h| h.case_id.clone())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ]
}

pub(super) async fn rm(client: &Client, output: Output, object: &ObjectPath) -> anyhow::Result<()> {
    client
        .delete(&object.bucket, &object.key)
        .await
        .with_context(|| format!("deleting {object}"))?;
    match output {
        Output::Json => print_json(&json!({
            "bucket": object.bucket,
            "key": object.key,
            "deleted": true,
        })),
        Output::Table => {
            println!("deleted {object}");
            Ok(())
        }
    }
}

pub(super) async fn verify(
    client: &Client,
    output: Output,
    object: &ObjectPath,
) -> anyhow::Result<()> {
    let context = || format!("verifying {object}");
    let show_bar = progress::wanted(false);
    let total = if show_bar {
        let info = client
            .stat(&object.bucket, &object.key)
            .await
            .with_context(context)?;
        Some(info.size)
    } else {
        None
    };
    let bar = TransferBar::new(show_bar, total);
    let result = client
        .verify(&object.bucket, &object.key, bar.callback())
        .await;
    bar.finish(&result);
    let (info, computed, matches) = result.with_context(context)?;
    match output {
        Output::Json => print_json(&json!({
            "bucket": info.bucket,
            "key": info.key,
            "size": info.size,
            "sha256": info.sha256,
            "computed_sha256": computed,
            "missing_shards": info.missing_shards,
            "ok": matches,
        }))?,
        Output::Table => print_fields(&[
            ("object", object.to_string()),
            ("size", info.size.to_string()),
            ("stored sha256", info.sha256.clone()),
            ("read sha256", computed.clone()),
            ("missing shards", info.missing_shards.to_string()),
            (
                "result",
                if matches { "OK" } else { "MISMATCH" }.to_string(),
            ),
        ]),
    }
    if !matches {
        bail!(
            "{object} does not match its SHA-256: stored {}, read back {computed}",
            info.sha256
        );
    }
    Ok(())
}
