//! The public views of the metadata on the wire: objects, their retention
//! and holds, upload sessions.

use tresor_proto::v1 as pb;

use crate::meta::{ObjectManifest, UploadRecord, UploadSession};

/// The public view of a manifest.
pub fn object_info(m: &ObjectManifest) -> pb::ObjectInfo {
    pb::ObjectInfo {
        bucket: m.bucket.clone(),
        key: m.key.clone(),
        size: m.size,
        sha256: m.sha256.clone(),
        content_type: m.content_type.clone(),
        metadata: m.metadata.clone().into_iter().collect(),
        data: m.data,
        parity: m.parity,
        stripes: m.stripes(),
        created_ms: m.created_ms,
        missing_shards: m.missing_shards() as u32,
        retention: m.retention.as_ref().map(retention_pb),
        holds: Vec::new(),
    }
}

/// An object's retention on the wire.
pub fn retention_pb(r: &crate::meta::ObjectRetention) -> pb::ObjectRetention {
    pb::ObjectRetention {
        policy: r.policy.clone(),
        keep_until_ms: r.keep_until_ms,
        delete_at_ms: r.delete_at_ms,
    }
}

/// A hold on the wire.
pub fn hold_pb(h: &crate::meta::Hold) -> pb::Hold {
    use crate::meta::HoldTarget;
    pb::Hold {
        case_id: h.case_id.clone(),
        bucket: h.bucket.clone(),
        target: Some(match &h.target {
            HoldTarget::Key(k) => pb::hold::Target::Key(k.clone()),
            HoldTarget::Prefix(p) => pb::hold::Target::Prefix(p.clone()),
        }),
        reason: h.reason.clone(),
        placed_by: h.placed_by.clone(),
        placed_ms: h.placed_ms,
    }
}

/// A session on the wire.
pub fn upload_info(upload: &UploadRecord, session: &UploadSession) -> pb::UploadInfo {
    pb::UploadInfo {
        upload_id: upload.object_id.to_hex(),
        bucket: upload.bucket.clone(),
        key: upload.key.clone(),
        part_bytes: session.part_bytes,
        durable_bytes: session.durable_bytes(),
        parts: session.parts.len() as u32,
        finished: session.finished,
        principal: session.principal.clone(),
        started_ms: upload.started_ms,
        touched_ms: upload.touched_ms,
    }
}
