//! What a caller may ask for (every [`Action`] of the API) and which roles
//! allow it.

use std::collections::BTreeSet;

use crate::meta::{Grant, Role};

/// Every operation of the public and admin APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Objects.Put.
    Put,
    /// Objects.Get.
    Get,
    /// Objects.Stat.
    Stat,
    /// Objects.List.
    List,
    /// Objects.Delete.
    Delete,
    /// Admin.Init.
    Init,
    /// Admin.NodeInfo.
    NodeInfo,
    /// Admin.AddNode.
    AddNode,
    /// Admin.RemoveNode.
    RemoveNode,
    /// Admin.DrainNode.
    DrainNode,
    /// Admin.Status.
    Status,
    /// Admin.CreateBucket.
    CreateBucket,
    /// Admin.ListBuckets.
    ListBuckets,
    /// Admin.Workers.
    Workers,
    /// Admin.RunWorker.
    RunWorker,
    /// Admin.AuditLog.
    AuditLog,
    /// Admin.AuditVerify.
    AuditVerify,
    /// Admin.AuditCheckpoint.
    AuditCheckpoint,
    /// Admin.CreatePrincipal.
    CreatePrincipal,
    /// Admin.DeletePrincipal.
    DeletePrincipal,
    /// Admin.ListPrincipals.
    ListPrincipals,
    /// Admin.Grant.
    Grant,
    /// Admin.Revoke.
    Revoke,
    /// Admin.CreateToken.
    CreateToken,
    /// Admin.RevokeToken.
    RevokeToken,
    /// Admin.KeysRotate (re-wrap every data key with the current master key).
    KeysRotate,
    /// Admin.CreateRetention.
    CreateRetention,
    /// Admin.ListRetention.
    ListRetention,
    /// Admin.SetBucketRetention.
    SetBucketRetention,
    /// Admin.ExtendRetention.
    ExtendRetention,
    /// Admin.PlaceHold.
    PlaceHold,
    /// Admin.ReleaseHold.
    ReleaseHold,
    /// Admin.ListHolds.
    ListHolds,
    /// Admin.ListReceipts.
    ListReceipts,
    /// Admin.GetReceipt.
    GetReceipt,
    /// Admin.ExportCustody.
    ExportCustody,
    /// Admin.ListUploads.
    ListUploads,
    /// Admin.CreateS3Key.
    CreateS3Key,
    /// Admin.ListS3Keys.
    ListS3Keys,
    /// Admin.RevokeS3Key.
    RevokeS3Key,
    /// Admin.DeleteBucket (and S3 DeleteBucket).
    DeleteBucket,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 41] = [
        Action::Put,
        Action::Get,
        Action::Stat,
        Action::List,
        Action::Delete,
        Action::Init,
        Action::NodeInfo,
        Action::AddNode,
        Action::RemoveNode,
        Action::DrainNode,
        Action::Status,
        Action::CreateBucket,
        Action::ListBuckets,
        Action::Workers,
        Action::RunWorker,
        Action::AuditLog,
        Action::AuditVerify,
        Action::AuditCheckpoint,
        Action::CreatePrincipal,
        Action::DeletePrincipal,
        Action::ListPrincipals,
        Action::Grant,
        Action::Revoke,
        Action::CreateToken,
        Action::RevokeToken,
        Action::KeysRotate,
        Action::CreateRetention,
        Action::ListRetention,
        Action::SetBucketRetention,
        Action::ExtendRetention,
        Action::PlaceHold,
        Action::ReleaseHold,
        Action::ListHolds,
        Action::ListReceipts,
        Action::GetReceipt,
        Action::ExportCustody,
        Action::ListUploads,
        Action::CreateS3Key,
        Action::ListS3Keys,
        Action::RevokeS3Key,
        Action::DeleteBucket,
    ];

    /// The name in the audit log and in refusals (the CLI's words).
    pub fn name(self) -> &'static str {
        match self {
            Action::Put => "put",
            Action::Get => "get",
            Action::Stat => "stat",
            Action::List => "list",
            Action::Delete => "delete",
            Action::Init => "init",
            Action::NodeInfo => "node info",
            Action::AddNode => "nodes add",
            Action::RemoveNode => "nodes remove",
            Action::DrainNode => "nodes drain",
            Action::Status => "status",
            Action::CreateBucket => "bucket create",
            Action::ListBuckets => "bucket ls",
            Action::Workers => "workers",
            Action::RunWorker => "run worker",
            Action::AuditLog => "audit log",
            Action::AuditVerify => "audit verify",
            Action::AuditCheckpoint => "audit checkpoint",
            Action::CreatePrincipal => "principal create",
            Action::DeletePrincipal => "principal delete",
            Action::ListPrincipals => "principal ls",
            Action::Grant => "grant",
            Action::Revoke => "revoke",
            Action::CreateToken => "token create",
            Action::RevokeToken => "token revoke",
            Action::KeysRotate => "keys rotate",
            Action::CreateRetention => "retention create",
            Action::ListRetention => "retention ls",
            Action::SetBucketRetention => "bucket set-retention",
            Action::ExtendRetention => "retention extend",
            Action::PlaceHold => "hold place",
            Action::ReleaseHold => "hold release",
            Action::ListHolds => "hold ls",
            Action::ListReceipts => "receipts ls",
            Action::GetReceipt => "receipts get",
            Action::ExportCustody => "custody export",
            Action::ListUploads => "uploads ls",
            Action::CreateS3Key => "s3-key create",
            Action::ListS3Keys => "s3-key ls",
            Action::RevokeS3Key => "s3-key revoke",
            Action::DeleteBucket => "bucket delete",
        }
    }

    /// A call of the Objects service (never forwarded between nodes).
    pub fn is_object_call(self) -> bool {
        matches!(
            self,
            Action::Put | Action::Get | Action::Stat | Action::List | Action::Delete
        )
    }

    /// Diagnostics about the receiving node itself. When the cluster has
    /// no reachable leader they are still answered, checked against the
    /// node's own (possibly stale) copy of the grants, so an operator can
    /// see what is wrong with a node cut off from its quorum. Every other
    /// action fails `Unavailable` then.
    pub fn answers_locally(self) -> bool {
        matches!(
            self,
            Action::NodeInfo | Action::Status | Action::Workers | Action::AuditVerify
        )
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `role` covers `action` (where its grant applies).
pub fn role_allows(role: Role, action: Action) -> bool {
    match role {
        Role::Admin => true,
        Role::Ingest => action == Action::Put,
        Role::Read => matches!(
            action,
            Action::Get | Action::Stat | Action::List | Action::ListBuckets | Action::ListRetention
        ),
        Role::Audit => matches!(
            action,
            Action::AuditLog
                | Action::AuditVerify
                | Action::AuditCheckpoint
                | Action::ListHolds
                | Action::ListRetention
                | Action::ListReceipts
                | Action::GetReceipt
                | Action::ExportCustody
        ),
        Role::Custodian => matches!(
            action,
            Action::PlaceHold
                | Action::ReleaseHold
                | Action::ListHolds
                | Action::ExtendRetention
                | Action::ListRetention
                | Action::ListReceipts
                | Action::GetReceipt
                | Action::ExportCustody
                | Action::AuditCheckpoint
        ),
    }
}

/// Whether `grants` allow `action`, on `bucket` when the call concerns one
/// bucket (`None` for cluster-wide calls). A grant on one bucket applies to
/// calls on that bucket only; a grant without a bucket applies everywhere.
/// Listing buckets is allowed to any `read` or `admin` grant: the listing
/// shows only the buckets they cover ([`visible_buckets`]); listing
/// retention policies to any grant of a role that may.
pub fn allows(grants: &[Grant], action: Action, bucket: Option<&str>) -> bool {
    grants.iter().any(|g| {
        let applies = match (&g.bucket, bucket) {
            (None, _) => true,
            (Some(b), Some(wanted)) => b == wanted,
            // Listings of the cluster's buckets and policies (not secret).
            (Some(_), None) => matches!(action, Action::ListBuckets | Action::ListRetention),
        };
        applies && role_allows(g.role, action)
    })
}

/// The buckets a bucket listing shows to a holder of `grants` (who may list
/// buckets, see [`allows`]): every bucket it holds any role on; `None`
/// (all of them) if it holds a role on all buckets.
pub fn visible_buckets(grants: &[Grant]) -> Option<BTreeSet<String>> {
    let mut some = BTreeSet::new();
    for g in grants {
        match &g.bucket {
            None => return None,
            Some(b) => {
                some.insert(b.clone());
            }
        }
    }
    Some(some)
}
