//! The demo's evidence-lifecycle act: a 20-second retention policy, a
//! legal hold, a receipt that verifies with the CA alone, and a custody
//! bundle anchored to a signed audit checkpoint.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use tresor_client::{Client, PutOptions};
use tresor_proto::v1 as pb;

use super::footage;

/// One clip expires by its policy and leaves a receipt that verifies with
/// the CA alone; a clip under a hold survives, and even the admin's
/// delete of it is refused.
pub(super) async fn lifecycle(endpoint: &str) -> anyhow::Result<()> {
    let mut admin = tresor_client::admin(endpoint).await?;
    let rpc = |what: &'static str| move |s: tonic::Status| anyhow!("{what}: {}", s.message());
    admin
        .create_retention(pb::CreateRetentionRequest {
            name: "demo-20s".into(),
            keep_min_ms: None,
            delete_after_ms: Some(20_000),
        })
        .await
        .map_err(rpc("retention create"))?;
    admin
        .create_bucket(pb::CreateBucketRequest {
            name: "patrol".into(),
            data: 4,
            parity: 2,
            retention: "demo-20s".into(),
        })
        .await
        .map_err(rpc("bucket create"))?;
    let client = Client::connect(&[endpoint.to_string()]).await?;
    let uploaded = Instant::now();
    for key in ["clip-1.mp4", "clip-2.mp4"] {
        let clip = std::io::Cursor::new(footage(1 << 20));
        client
            .put("patrol", key, clip, PutOptions::default())
            .await
            .map_err(|e| anyhow!("upload {key}: {e}"))?;
    }
    admin
        .place_hold(pb::PlaceHoldRequest {
            case_id: "DEMO-2026-1".into(),
            bucket: "patrol".into(),
            target: Some(pb::place_hold_request::Target::Key("clip-2.mp4".into())),
            reason: "assault reported; prosecution pending".into(),
        })
        .await
        .map_err(rpc("hold place"))?;
    println!("    uploaded patrol/clip-1.mp4 and clip-2.mp4; case DEMO-2026-1 holds clip-2");
    match client.delete("patrol", "clip-2.mp4").await {
        Err(e) => println!("    the admin's delete of clip-2 is refused: {e}"),
        Ok(()) => bail!("a held clip was deleted"),
    }
    let started = Instant::now();
    let receipt = loop {
        let got = admin
            .get_receipt(pb::GetReceiptRequest {
                bucket: "patrol".into(),
                key: "clip-1.mp4".into(),
            })
            .await;
        match got {
            Ok(r) => break r.into_inner().receipt,
            Err(s) if s.code() == tonic::Code::NotFound && started.elapsed().as_secs() < 90 => {
                tokio::time::sleep(Duration::from_secs(1)).await
            }
            Err(s) => bail!("no receipt for clip-1 after 90 s: {}", s.message()),
        }
    };
    let receipt = receipt.ok_or_else(|| anyhow!("receipts get: empty answer"))?;
    let ca = tresor_client::default_credentials()
        .ca_pem()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .ok_or_else(|| anyhow!("the demo cluster has a CA"))?;
    let body = tresor_client::receipt::SignedReceipt::from_json(&receipt.receipt_json)
        .and_then(|r| r.verify(&ca))
        .map_err(|e| anyhow!("the receipt does not verify: {e}"))?;
    println!(
        "    clip-1 expired and its receipt was issued {} s after upload (the policy says 20 s; \
         expiry looks every 5 s, and the receipt waits until the key epoch that could decrypt \
         the clip is destroyed); the receipt verifies with the CA alone:",
        uploaded.elapsed().as_secs()
    );
    println!(
        "      deleted by {} ({}), audit seq {}, {} shard files removed, key epoch {} destroyed: {}",
        body.deleted_by,
        body.reason,
        body.audit_seq,
        body.shard_files_removed,
        body.key_epoch.as_deref().unwrap_or("-"),
        body.data_key_removed && body.key_destroyed_ms.is_some()
    );
    let held = client
        .stat("patrol", "clip-2.mp4")
        .await
        .map_err(|e| anyhow!("the held clip is gone: {e}"))?;
    println!(
        "    clip-2 is still there past its delete_at (held by {})",
        held.holds.first().map_or("?", |h| h.case_id.as_str())
    );
    anchored_custody(&mut admin, &ca).await
}

/// A signed checkpoint of the audit history (what a data-protection
/// officer would publish), and clip-2's custody bundle proven against it.
async fn anchored_custody(admin: &mut tresor_client::AdminClient, ca: &str) -> anyhow::Result<()> {
    let rpc = |what: &'static str| move |s: tonic::Status| anyhow!("{what}: {}", s.message());
    let checkpoint = admin
        .audit_checkpoint(pb::AuditCheckpointRequest { segments: 0 })
        .await
        .map_err(rpc("audit checkpoint"))?
        .into_inner();
    let bundle = admin
        .export_custody(pb::ExportCustodyRequest {
            bucket: "patrol".into(),
            key: "clip-2.mp4".into(),
            checkpoint_segments: checkpoint.segments,
        })
        .await
        .map_err(rpc("custody export"))?
        .into_inner();
    let published = tresor_client::receipt::SignedReceipt::from_json(&checkpoint.checkpoint_json)?;
    let bundle = tresor_client::receipt::SignedReceipt::from_json(&bundle.bundle_json)?;
    let verified = tresor_client::custody::verify_bundle(&bundle, ca, None, Some(&published))
        .map_err(|e| anyhow!("clip-2's custody bundle does not verify: {e}"))?;
    let anchored = verified.anchor.map_or(0, |a| a.anchored);
    println!(
        "    signed audit checkpoint of {} sealed segment(s) to entry {}, root {}…; clip-2's \
         custody bundle proves {anchored} of its {} audit entries are in that published history",
        checkpoint.segments,
        checkpoint.last_seq,
        &checkpoint.root[..16.min(checkpoint.root.len())],
        verified.body.entries.len()
    );
    Ok(())
}
