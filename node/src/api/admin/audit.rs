//! Reading and verifying the audit log, across its sealed segments (objects
//! of the audit bucket) and the unsealed tail in the replicated state.
//! Both hold one segment, or one page of the tail, at a time.

use tonic::{Request, Response, Status};
use tresor_proto::v1 as pb;

use super::convert::*;
use super::AdminService;
use crate::api::auth::Action;
use crate::api::{object_status, store_status};
use tresor_client::merkle::{self, Perfect};

use crate::meta::audit::anchor::{history_leaf, segment_root};
use crate::meta::audit::{AuditEntry, ChainBreak, ChainWalker, Field, SealedSegment};
use crate::raft::CaughtUp;

/// Tail entries read per page.
const TAIL_PAGE: usize = 10_000;
/// Index records of sealed segments read per page.
const SEGMENT_PAGE: usize = 64;

/// What `audit log` asks for.
struct Filter {
    request: pb::AuditLogRequest,
}

impl Filter {
    fn matches(&self, e: &AuditEntry) -> bool {
        let (q, r) = (&self.request, &e.record);
        e.seq > q.after_seq
            && (q.bucket.is_empty() || r.bucket == q.bucket)
            && (q.key.is_empty() || r.key == q.key)
            && (q.principal.is_empty() || r.principal == q.principal)
            && r.time_ms >= q.since_ms
    }

    /// Adds the matches among `entries` to `out`, up to `limit`; whether
    /// there is room for more.
    fn take(&self, entries: Vec<AuditEntry>, out: &mut Vec<AuditEntry>, limit: usize) -> bool {
        for e in entries.into_iter().filter(|e| self.matches(e)) {
            if out.len() >= limit {
                return false;
            }
            out.push(e);
        }
        out.len() < limit
    }

    /// Whether a sealed segment may hold a match (from its summary alone).
    fn may_match(&self, s: &SealedSegment) -> bool {
        let (q, sum) = (&self.request, &s.summary);
        let named = |field, value: &str| value.is_empty() || sum.may_contain(field, value);
        sum.max_time_ms >= q.since_ms
            && named(Field::Bucket, &q.bucket)
            && named(Field::Key, &q.key)
            && named(Field::Principal, &q.principal)
    }
}

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
        let caught_up = self.catch_up(&caller).await?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => 1000,
            n => n.min(100_000) as usize,
        };
        let entries = self
            .audit_entries(caught_up, request, limit, |_, _| {})
            .await?;
        Ok(Response::new(pb::AuditLogResponse {
            entries: entries.iter().map(entry_pb).collect(),
        }))
    }

    /// Up to `limit` audit entries matching `request`'s filters, in order,
    /// across the sealed segments (those whose summaries may match) and
    /// the tail. `on_segment` sees every sealed segment read, whole.
    pub(super) async fn audit_entries(
        &self,
        caught_up: CaughtUp,
        request: pb::AuditLogRequest,
        limit: usize,
        mut on_segment: impl FnMut(&SealedSegment, &[AuditEntry]),
    ) -> Result<Vec<AuditEntry>, Status> {
        let filter = Filter { request };
        let meta = self.cluster.meta();
        let mut out = Vec::new();
        let mut after = filter.request.after_seq;
        'sealed: loop {
            let page = meta
                .sealed_segments(after, SEGMENT_PAGE)
                .map_err(store_status)?;
            for segment in &page {
                after = segment.last_seq;
                if !filter.may_match(segment) {
                    continue;
                }
                let read = self
                    .plane
                    .read_sealed(caught_up, segment)
                    .await
                    .map_err(object_status)?;
                let entries = read.entries.map_err(|e| {
                    Status::data_loss(format!(
                        "sealed audit segment {}..={} is unreadable: {e} (run `audit verify`)",
                        segment.first_seq, segment.last_seq
                    ))
                })?;
                on_segment(segment, &entries);
                if !filter.take(entries, &mut out, limit) {
                    break 'sealed;
                }
            }
            if page.len() < SEGMENT_PAGE {
                break;
            }
        }
        let mut next = after.saturating_add(1);
        while out.len() < limit {
            let page = meta.audit_entries(next, TAIL_PAGE).map_err(store_status)?;
            let Some(last) = page.last() else { break };
            next = last.seq + 1;
            if !filter.take(page, &mut out, limit) {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn audit_verify(
        &self,
        request: Request<pb::AuditVerifyRequest>,
    ) -> Result<Response<pb::AuditVerifyResponse>, Status> {
        let caller = self
            .auth
            .check(&request, Action::AuditVerify, None, "")
            .await?;
        let caught_up = self.catch_up(&caller).await?;
        let mut walker = ChainWalker::default();
        let (checked, sealed) = self.verify_log(caught_up, &mut walker).await?;
        let node_id = self.cluster.config().node_id;
        let (head_seq, head_hash) = self.cluster.meta().audit_head().map_err(store_status)?;
        let broken = checked.err().or_else(|| {
            (walker.count() != head_seq || walker.head_hash() != head_hash).then(|| ChainBreak {
                seq: walker.next_seq(),
                reason: format!(
                    "the chain ends at entry {} but its recorded head is entry {head_seq}",
                    walker.count()
                ),
            })
        });
        let response = match broken {
            None => pb::AuditVerifyResponse {
                node_id,
                intact: true,
                entries: walker.count(),
                head_hash: walker.head_hash().to_string(),
                broken_seq: None,
                reason: String::new(),
                sealed_segments: sealed,
            },
            Some(b) => pb::AuditVerifyResponse {
                node_id,
                intact: false,
                entries: b.seq.saturating_sub(1),
                head_hash: String::new(),
                broken_seq: Some(b.seq),
                reason: b.reason,
                sealed_segments: sealed,
            },
        };
        Ok(Response::new(response))
    }

    /// Walks the whole chain: every sealed segment, then the tail. The
    /// outer error is a failure to read the local state; the inner one the
    /// first break found, and the count is the sealed segments checked.
    async fn verify_log(
        &self,
        caught_up: CaughtUp,
        walker: &mut ChainWalker,
    ) -> Result<(Result<(), ChainBreak>, u64), Status> {
        let meta = self.cluster.meta();
        let mut sealed = 0;
        let mut after = 0;
        loop {
            let page = meta
                .sealed_segments(after, SEGMENT_PAGE)
                .map_err(store_status)?;
            for segment in &page {
                after = segment.last_seq;
                if let Err(b) = self.verify_sealed(caught_up, segment, sealed, walker).await {
                    return Ok((Err(b), sealed));
                }
                sealed += 1;
            }
            if page.len() < SEGMENT_PAGE {
                break;
            }
        }
        if let Some(c) = meta.latest_checkpoint().map_err(store_status)? {
            let root = meta.history_root(c.segments).map_err(store_status)?;
            if merkle::to_hex(&root) != c.root {
                return Ok((
                    Err(ChainBreak {
                        seq: c.last_seq,
                        reason: format!(
                            "the history of {} sealed segments no longer has the root its \
                             signed checkpoint states",
                            c.segments
                        ),
                    }),
                    sealed,
                ));
            }
        }
        let mut next = walker.next_seq();
        loop {
            let page = meta.audit_entries(next, TAIL_PAGE).map_err(store_status)?;
            let Some(last) = page.last() else { break };
            next = last.seq + 1;
            for e in &page {
                if let Err(b) = walker.push(e) {
                    return Ok((Err(b), sealed));
                }
            }
        }
        Ok((Ok(()), sealed))
    }

    /// Checks one sealed segment (the `ordinal`-th): readable, a valid
    /// chain going on from where the log stood, covering exactly its range,
    /// ending at the hash recorded when it was sealed, with the bytes that
    /// were sealed, the root recorded, and its leaf in the history tree.
    async fn verify_sealed(
        &self,
        caught_up: CaughtUp,
        segment: &SealedSegment,
        ordinal: u64,
        walker: &mut ChainWalker,
    ) -> Result<(), ChainBreak> {
        let (first, last) = (segment.first_seq, segment.last_seq);
        let at_start = |reason: String| ChainBreak {
            seq: first,
            reason: format!(
                "sealed segment {first}..={last} ({}): {reason}",
                segment.key
            ),
        };
        let read = self
            .plane
            .read_sealed(caught_up, segment)
            .await
            .map_err(|e| at_start(format!("cannot be read: {e}")))?;
        let entries = read
            .entries
            .map_err(|e| at_start(format!("is not a valid segment: {e}")))?;
        for e in &entries {
            walker.push(e)?;
        }
        if walker.next_seq() != last + 1 {
            return Err(ChainBreak {
                seq: walker.next_seq(),
                reason: format!(
                    "sealed segment {first}..={last} ends at entry {}",
                    walker.count()
                ),
            });
        }
        if walker.head_hash() != segment.last_hash {
            return Err(at_start(
                "its chain does not end at the hash recorded when it was sealed".into(),
            ));
        }
        if !read.digest_matches {
            return Err(at_start(
                "its bytes differ from those recorded when it was sealed".into(),
            ));
        }
        if segment_root(&entries).ok().flatten().as_ref() != Some(&segment.root) {
            return Err(at_start(
                "its entries do not give the Merkle root recorded when it was sealed".into(),
            ));
        }
        let in_history = self.cluster.meta().perfect(0, ordinal).ok();
        if segment.ordinal != ordinal || history_leaf(segment).ok() != in_history {
            return Err(at_start(format!(
                "it is not leaf {ordinal} of the history tree checkpoints sign"
            )));
        }
        Ok(())
    }
}
