//! Deletion receipts: listed and fetched for custodians, auditors and
//! admins (and checked offline with `tresor receipt verify`).

use tonic::{Request, Response, Status};
use tresor_client::receipt::SignedReceipt;
use tresor_proto::v1 as pb;

use super::AdminService;
use crate::api::auth::Action;
use crate::api::{meta_status, store_status};
use crate::meta::{validate_bucket_name, validate_key, MetaError, StoredReceipt};

/// Most receipts one page shows.
const MAX_RECEIPTS_PAGE: usize = 1_000;

/// The listing form of a stored receipt. A receipt whose JSON does not
/// parse (it never should) is shown with its text and empty fields.
fn receipt_pb(r: &StoredReceipt) -> pb::Receipt {
    let signed = SignedReceipt::from_json(&r.signed).ok();
    let body = signed.as_ref().and_then(|s| s.parsed_body().ok());
    pb::Receipt {
        bucket: r.bucket.clone(),
        key: r.key.clone(),
        object_id: body
            .as_ref()
            .map(|b| b.object_id.clone())
            .unwrap_or_default(),
        deleted_ms: body.as_ref().map(|b| b.deleted_ms).unwrap_or_default(),
        deleted_by: body
            .as_ref()
            .map(|b| b.deleted_by.clone())
            .unwrap_or_default(),
        reason: body.as_ref().map(|b| b.reason.clone()).unwrap_or_default(),
        shard_files_removed: body
            .as_ref()
            .map(|b| b.shard_files_removed)
            .unwrap_or_default(),
        signed: signed.is_some_and(|s| !s.signature.is_empty()),
        receipt_json: r.signed.clone(),
    }
}

impl AdminService {
    pub(super) async fn list_receipts(
        &self,
        request: Request<pb::ListReceiptsRequest>,
    ) -> Result<Response<pb::ListReceiptsResponse>, Status> {
        let bucket = Some(request.get_ref().bucket.clone()).filter(|b| !b.is_empty());
        let caller = self
            .auth
            .check(&request, Action::ListReceipts, bucket.as_deref(), "")
            .await?;
        self.catch_up(&caller).await?;
        let req = request.into_inner();
        if let Some(b) = &bucket {
            validate_bucket_name(b).map_err(meta_status)?;
        } else if !req.prefix.is_empty() {
            return Err(meta_status(MetaError::InvalidArgument(
                "a prefix needs a bucket".into(),
            )));
        }
        let limit = match req.page_size {
            0 => MAX_RECEIPTS_PAGE,
            n => (n as usize).min(MAX_RECEIPTS_PAGE),
        };
        // The token is the last receipt shown: bucket and key, NUL-separated.
        let after = match req.page_token.split_once('\0') {
            _ if req.page_token.is_empty() => None,
            Some((b, k)) => Some((b.to_string(), k.to_string())),
            None => {
                return Err(meta_status(MetaError::InvalidArgument(
                    "malformed page token".into(),
                )))
            }
        };
        let receipts = self
            .cluster
            .meta()
            .receipts(
                bucket.as_deref(),
                &req.prefix,
                after.as_ref().map(|(b, k)| (b.as_str(), k.as_str())),
                limit,
            )
            .map_err(store_status)?;
        let next_page_token = match receipts.last() {
            Some(r) if receipts.len() == limit => format!("{}\0{}", r.bucket, r.key),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListReceiptsResponse {
            receipts: receipts.iter().map(receipt_pb).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::GetReceiptResponse>, Status> {
        let bucket = request.get_ref().bucket.clone();
        validate_bucket_name(&bucket).map_err(meta_status)?;
        let caller = self
            .auth
            .check(&request, Action::GetReceipt, Some(&bucket), "")
            .await?;
        self.catch_up(&caller).await?;
        let key = request.into_inner().key;
        validate_key(&key).map_err(meta_status)?;
        let meta = self.cluster.meta();
        let Some(signed) = meta.receipt(&bucket, &key).map_err(store_status)? else {
            let why = match meta.tombstone(&bucket, &key).map_err(store_status)? {
                Some(t) => format!(
                    "the receipt of the deletion of {bucket}/{key} (object {}) is still being \
                     issued: try again in a few seconds",
                    t.object_id
                ),
                None => format!("nothing was deleted at {bucket}/{key}"),
            };
            return Err(meta_status(MetaError::NotFound(why)));
        };
        Ok(Response::new(pb::GetReceiptResponse {
            receipt: Some(receipt_pb(&StoredReceipt {
                bucket,
                key,
                signed,
            })),
        }))
    }
}
