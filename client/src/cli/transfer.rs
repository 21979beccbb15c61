//! `tresor put` and `tresor get`: moving footage in and out, with
//! progress bars, SHA-256 checks and ranges.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::parse::{ByteRange, ObjectPath};
use super::progress::{self, TransferBar};
use super::render::{print_fields, print_json};
use super::resume;
use super::Output;
use crate::objects::{Client, PutOptions, PutResult, ResumeOptions};

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Files at least this large go through a resumable session.
const RESUMABLE_FROM: u64 = 64 * 1024 * 1024;

pub(super) async fn put(
    client: &Client,
    output: Output,
    object: &ObjectPath,
    file: &Path,
    mut opts: PutOptions,
    resume: bool,
) -> anyhow::Result<()> {
    let context = || format!("uploading {object}");
    let show_bar = progress::wanted(false);
    if is_stdio(file) {
        if resume {
            anyhow::bail!("--resume needs the file itself, not stdin");
        }
        let bar = TransferBar::new(show_bar, None);
        opts.progress = bar.callback();
        let stdin = tokio::io::stdin();
        let result = client.put(&object.bucket, &object.key, stdin, opts).await;
        bar.finish(&result);
        return print_stored(output, &result.with_context(context)?);
    }
    let size = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let bar = TransferBar::new(show_bar, Some(size).filter(|_| show_bar));
    opts.progress = bar.callback();
    if !resume && size < RESUMABLE_FROM {
        let result = client
            .put_file(&object.bucket, &object.key, file, opts)
            .await;
        bar.finish(&result);
        return print_stored(output, &result.with_context(context)?);
    }
    let upload_id = if resume {
        let pending = resume::recall(&object.bucket, &object.key, file, async |id| {
            Ok(client.get_upload(id).await?.part_bytes)
        })
        .await?;
        pending.upload_id
    } else {
        let session = client
            .create_upload(&object.bucket, &object.key, &opts)
            .await
            .with_context(context)?;
        resume::remember(&session, file).await?;
        session.upload_id
    };
    let resume_opts = ResumeOptions {
        upload_id: Some(upload_id),
        on_session: None,
        on_resume: Some(bar.on_resume()),
    };
    let result = client
        .put_file_resumable(&object.bucket, &object.key, file, opts, resume_opts)
        .await;
    bar.finish(&result);
    match &result {
        Ok(_) => resume::forget(&object.bucket, &object.key),
        Err(_) => eprintln!(
            "the parts stored so far are kept: continue with `tresor put --resume {object} {}`",
            file.display()
        ),
    }
    let stored = result.with_context(context)?;
    match output {
        Output::Json => print_json(&serde_json::to_value(&stored)?),
        Output::Table => {
            print_fields(&[
                ("bucket", stored.stored.bucket.clone()),
                ("key", stored.stored.key.clone()),
                ("size", stored.stored.size.to_string()),
                ("sha256", stored.stored.sha256.clone()),
                ("resumed", format!("{} times", stored.resumes)),
            ]);
            Ok(())
        }
    }
}

fn print_stored(output: Output, stored: &PutResult) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&serde_json::to_value(stored)?),
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
