//! Reading and verifying the audit log.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::convert::*;
use super::AdminService;
use crate::api::auth::Action;
use crate::api::store_status;
use crate::meta::audit::verify_chain;

impl AdminService {
    pub(super) async fn audit_log(
        &self,
        request: Request<pb::AuditLogRequest>,
    ) -> Result<Response<pb::AuditLogResponse>, Status> {
        // Filtered to one bucket, the log is that bucket's business: an
        // audit grant on the bucket suffices.
        let bucket = Some(request.get_ref().bucket.clone()).filter(|b| !b.is_empty());
        let caller = self
            .auth
            .check(&request, Action::AuditLog, bucket.as_deref(), "")
            .await?;
        let req = request.into_inner();
        self.catch_up(&caller).await?;
        let limit = match req.limit {
            0 => 1000,
            n => n.min(100_000) as usize,
        };
        let meta = self.cluster.meta();
        let mut out = Vec::new();
        let mut next = req.after_seq.saturating_add(1);
        'pages: loop {
            let page = meta.audit_entries(next, 10_000).map_err(store_status)?;
            if page.is_empty() {
                break;
            }
            for e in page {
                next = e.seq + 1;
                let r = &e.record;
                let matches = (req.bucket.is_empty() || r.bucket == req.bucket)
                    && (req.key.is_empty() || r.key == req.key)
                    && (req.principal.is_empty() || r.principal == req.principal)
                    && r.time_ms >= req.since_ms;
                if matches {
                    out.push(entry_pb(&e));
                    if out.len() >= limit {
                        break 'pages;
                    }
                }
            }
        }
        Ok(Response::new(pb::AuditLogResponse { entries: out }))
    }

    pub(super) async fn audit_verify(
        &self,
        request: Request<pb::AuditVerifyRequest>,
    ) -> Result<Response<pb::AuditVerifyResponse>, Status> {
        self.auth
            .check(&request, Action::AuditVerify, None, "")
            .await?;
        let meta = self.cluster.meta();
        let mut entries = Vec::new();
        let mut next = 1;
        loop {
            let page = meta.audit_entries(next, 10_000).map_err(store_status)?;
            let Some(last) = page.last() else { break };
            next = last.seq + 1;
            entries.extend(page);
        }
        let node_id = self.cluster.config().node_id;
        let (head_seq, head_hash) = meta.audit_head().map_err(store_status)?;
        let response = match verify_chain(entries) {
            Ok((count, hash)) if count == head_seq && hash == head_hash => {
                pb::AuditVerifyResponse {
                    node_id,
                    intact: true,
                    entries: count,
                    head_hash: hash,
                    broken_seq: None,
                    reason: String::new(),
                }
            }
            Ok((count, _)) => pb::AuditVerifyResponse {
                node_id,
                intact: false,
                entries: count,
                head_hash: String::new(),
                broken_seq: Some(count + 1),
                reason: format!(
                    "the chain ends at entry {count} but its recorded head is entry {head_seq}"
                ),
            },
            Err(b) => pb::AuditVerifyResponse {
                node_id,
                intact: false,
                entries: b.seq.saturating_sub(1),
                head_hash: String::new(),
                broken_seq: Some(b.seq),
                reason: b.reason,
            },
        };
        Ok(Response::new(response))
    }
}
