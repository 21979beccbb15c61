//! `tresor put` and `tresor get`: moving footage in and out, with
//! progress bars, SHA-256 checks and ranges.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::parse::{ByteRange, ObjectPath};
use super::progress::{self, TransferBar};
use super::render::{print_fields, print_json};
use super::Output;
use crate::objects::{Client, PutOptions};

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

pub(super) async fn put(
    client: &Client,
    output: Output,
    object: &ObjectPath,
    file: &Path,
    mut opts: PutOptions,
) -> anyhow::Result<()> {
    let context = || format!("uploading {object}");
    let show_bar = progress::wanted(false);
    let stored = if is_stdio(file) {
        let bar = TransferBar::new(show_bar, None);
        opts.progress = bar.callback();
        let stdin = tokio::io::stdin();
        let result = client.put(&object.bucket, &object.key, stdin, opts).await;
        bar.finish(&result);
        result.with_context(context)?
    } else {
        let total = if show_bar {
            tokio::fs::metadata(file).await.ok().map(|m| m.len())
        } else {
            None
        };
        let bar = TransferBar::new(show_bar, total);
        opts.progress = bar.callback();
        let result = client
            .put_file(&object.bucket, &object.key, file, opts)
            .await;
        bar.finish(&result);
        result.with_context(context)?
    };
    match output {
        Output::Json => print_json(&serde_json::to_value(&stored)?),
        Output::Table => {
            print_fields(&[
                ("bucket", stored.bucket.clone()),
                ("key", stored.key.clone()),
                ("size", stored.size.to_string()),
                ("sha256", stored.sha256.clone()),
            ]);
            Ok(())
        }
    }
}

pub(super) async fn get(
    client: &Client,
    output: Output,
    object: &ObjectPath,
    out: Option<&Path>,
    range: Option<ByteRange>,
) -> anyhow::Result<()> {
    let context = || format!("downloading {object}");
    let out = out.filter(|path| !is_stdio(path));
    let show_bar = progress::wanted(out.is_none());
    // The stream states the size only once it has begun; a bar needs it first.
    let total = if show_bar {
        let info = client
            .stat(&object.bucket, &object.key)
            .await
            .with_context(context)?;
        Some(range.map_or(info.size, |range| range.len_within(info.size)))
    } else {
        None
    };
    let bar = TransferBar::new(show_bar, total);
    let range_tuple = range.map(ByteRange::as_tuple);
    let Some(path) = out else {
        let stdout = tokio::io::stdout();
        let result = client
            .get(
                &object.bucket,
                &object.key,
                range_tuple,
                stdout,
                bar.callback(),
            )
            .await;
        bar.finish(&result);
        result.with_context(context)?;
        return Ok(());
    };
    let result = client
        .get_file(
            &object.bucket,
            &object.key,
            range_tuple,
            path,
            bar.callback(),
        )
        .await;
    bar.finish(&result);
    let (info, written) = result.with_context(context)?;
    // The library checks the SHA-256 whenever the bytes are the whole object.
    let verified = written == info.size && range.is_none_or(|r| r.start == 0);
    match output {
        Output::Json => print_json(&json!({
            "bucket": info.bucket,
            "key": info.key,
            "file": path.display().to_string(),
            "bytes": written,
            "size": info.size,
            "sha256": info.sha256,
            "verified": verified,
        })),
        Output::Table => {
            print_fields(&[
                ("object", object.to_string()),
                ("file", path.display().to_string()),
                ("bytes", written.to_string()),
                (
                    "sha256",
                    if verified {
                        format!("{} (verified)", info.sha256)
                    } else {
                        format!("{} (partial read, not checked)", info.sha256)
                    },
                ),
            ]);
            Ok(())
        }
    }
}
