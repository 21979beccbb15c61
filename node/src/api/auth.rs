//! Who is calling, and may they: authentication and authorisation of every
//! public and admin RPC.
//!
//! A call is resolved to a [`Caller`] in this order:
//!
//! 1. `security.insecure = true`: nobody is authenticated; every call is
//!    allowed and recorded as `anonymous@<peer IP>` (bearer tokens are
//!    ignored: over plaintext they could be sniffed, so insecure mode does
//!    not pretend to authenticate).
//! 2. A bearer token (`authorization: Bearer tresor_<id>_<secret>`): the
//!    token's principal, if the token exists and its secret hashes to the
//!    stored hash.
//! 3. A client certificate from the cluster CA: the principal it names.
//! 4. A node certificate of a current member: on admin calls, the
//!    principal named in the [`PRINCIPAL_HEADER`] (a follower forwarding a
//!    call to the leader); otherwise the node itself, which may only call
//!    `NodeInfo`.
//! 5. Nothing: `Unauthenticated`.
//!
//! Before resolving, the node catches up with the leader
//! ([`Cluster::linearizable_read`]), so a grant, revocation or token
//! revocation committed anywhere applies to the very next call on any
//! node; the [`Caller`] carries the proof ([`CaughtUp`]) on to the data
//! plane, so the call's own reads need no second round trip. The caller's
//! grants are then checked with [`allows`]: a refusal
//! is `PermissionDenied` naming principal, action and bucket. [`Authorizer::check`]
//! records every refusal in the audit log.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use super::audit::AuditSink;
use super::{outcome_of, store_status, to_status};
use crate::meta::{now_ms, Grant, NodeState, Role, Token, BOOTSTRAP_ADMIN};
use crate::raft::{CaughtUp, Cluster};
use crate::tls::{peer_identity, PeerIdentity};

/// Set by a node that forwards a call to the leader: the principal it
/// authenticated. Trusted only from a node certificate of a current member.
pub const PRINCIPAL_HEADER: &str = "x-tresor-principal";

/// How long a diagnostic call (see [`Action::answers_locally`]) waits to
/// catch up with the leader before it is answered from local state.
const LOCAL_CATCH_UP: Duration = Duration::from_secs(2);

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
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 25] = [
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
        Action::CreatePrincipal,
        Action::DeletePrincipal,
        Action::ListPrincipals,
        Action::Grant,
        Action::Revoke,
        Action::CreateToken,
        Action::RevokeToken,
        Action::KeysRotate,
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
            Action::CreatePrincipal => "principal create",
            Action::DeletePrincipal => "principal delete",
            Action::ListPrincipals => "principal ls",
            Action::Grant => "grant",
            Action::Revoke => "revoke",
            Action::CreateToken => "token create",
            Action::RevokeToken => "token revoke",
            Action::KeysRotate => "keys rotate",
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
            Action::Get | Action::Stat | Action::List | Action::ListBuckets
        ),
        Role::Audit => matches!(action, Action::AuditLog | Action::AuditVerify),
    }
}

/// Whether `grants` allow `action`, on `bucket` when the call concerns one
/// bucket (`None` for cluster-wide calls). A grant on one bucket applies to
/// calls on that bucket only; a grant without a bucket applies everywhere.
/// Listing buckets is allowed to any `read` or `admin` grant: the listing
/// shows only the buckets they cover ([`visible_buckets`]).
pub fn allows(grants: &[Grant], action: Action, bucket: Option<&str>) -> bool {
    grants.iter().any(|g| {
        let applies = match (&g.bucket, bucket) {
            (None, _) => true,
            (Some(b), Some(wanted)) => b == wanted,
            (Some(_), None) => action == Action::ListBuckets,
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

/// Lowercase hex SHA-256 of a token secret.
pub fn secret_sha256(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// A new token for `principal`: the record to store (holding only the
/// secret's hash) and the token string, to be shown once.
pub fn new_token(principal: &str) -> (Token, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let text = format!("tresor_{id}_{}", hex::encode(secret));
    let token = Token {
        id,
        principal: principal.to_string(),
        secret_sha256: secret_sha256(&secret),
        created_ms: now_ms(),
    };
    (token, text)
}

/// Splits `tresor_<16 hex id>_<64 hex secret>` into id and secret bytes.
pub fn parse_token(text: &str) -> Option<(&str, Vec<u8>)> {
    let rest = text.strip_prefix("tresor_")?;
    let (id, secret) = rest.split_once('_')?;
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if id.len() != 16 || secret.len() != 64 || !lower_hex(id) || !lower_hex(secret) {
        return None;
    }
    Some((id, hex::decode(secret).ok()?))
}

/// Whether `secret` is `token`'s secret (compared in constant time).
pub fn token_matches(token: &Token, secret: &[u8]) -> bool {
    let got = secret_sha256(secret);
    let want = token.secret_sha256.as_bytes();
    got.len() == want.len()
        && got
            .as_bytes()
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// `anonymous@<peer IP>`: how an unauthenticated caller is recorded.
pub fn peer_name<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| format!("anonymous@{}", a.ip()))
        .unwrap_or_else(|| "anonymous".to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Insecure mode: not authenticated, allowed everything.
    Anonymous,
    /// A principal, by token or its own client certificate.
    Principal,
    /// A principal vouched for by member node `.0`, which forwarded its call.
    Forwarded(u64),
    /// A node of the cluster acting for itself.
    Node(u64),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    name: String,
    kind: Kind,
    caught_up: Option<CaughtUp>,
}

impl Caller {
    /// The name the audit log records: a principal's name, `node:<id>`, or
    /// `anonymous@<peer IP>` in insecure mode.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Proof that the node caught up with the leader before checking this
    /// caller (`None` where it answered from local state).
    pub fn caught_up(&self) -> Option<CaughtUp> {
        self.caught_up
    }

    /// The name a node puts in [`PRINCIPAL_HEADER`] when it forwards this
    /// caller's call to the leader (`None` for a node acting for itself).
    pub fn forwarded_name(&self) -> Option<&str> {
        match self.kind {
            Kind::Node(_) => None,
            _ => Some(&self.name),
        }
    }
}

/// Authenticates and authorises calls against the cluster's principals.
#[derive(Clone)]
pub struct Authorizer {
    cluster: Arc<Cluster>,
    audit: AuditSink,
}

impl Authorizer {
    /// Checks calls to `cluster`'s node, recording refusals in `audit`.
    pub fn new(cluster: Arc<Cluster>, audit: AuditSink) -> Self {
        Self { cluster, audit }
    }

    fn insecure(&self) -> bool {
        self.cluster.config().security.insecure
    }

    /// Whether this node holds a cluster's state (grants, tokens).
    fn in_cluster(&self) -> Result<bool, Status> {
        Ok(self
            .cluster
            .meta()
            .cluster_id()
            .map_err(store_status)?
            .is_some())
    }

    /// Catches up with the leader, so the grants read next are current.
    async fn catch_up(&self, action: Action) -> Result<Option<CaughtUp>, Status> {
        if !action.answers_locally() {
            return self
                .cluster
                .linearizable_read()
                .await
                .map(Some)
                .map_err(to_status);
        }
        if self.cluster.leader().is_none() {
            tracing::debug!(%action, "no leader: checking against local grants");
            return Ok(None);
        }
        match tokio::time::timeout(LOCAL_CATCH_UP, self.cluster.linearizable_read()).await {
            Ok(Ok(caught_up)) => return Ok(Some(caught_up)),
            Ok(Err(e)) => tracing::debug!(%action, error = %e, "checking against local grants"),
            Err(_) => tracing::debug!(%action, "leader slow: checking against local grants"),
        }
        Ok(None)
    }

    /// Resolves who makes `request` (see the module docs for the order),
    /// after catching up with the leader. Fails `Unauthenticated` without
    /// valid credentials. Does not audit.
    pub async fn authenticate<T>(
        &self,
        request: &Request<T>,
        action: Action,
    ) -> Result<Caller, Status> {
        let in_cluster = self.in_cluster()?;
        let caught_up = match in_cluster {
            true => self.catch_up(action).await?,
            false => None,
        };
        let mut caller = self.identify(request, action, in_cluster)?;
        caller.caught_up = caught_up;
        Ok(caller)
    }

    /// Who makes `request`, from its credentials and this node's state.
    fn identify<T>(
        &self,
        request: &Request<T>,
        action: Action,
        in_cluster: bool,
    ) -> Result<Caller, Status> {
        let metadata = request.metadata();
        if self.insecure() {
            // A forwarding node passes on the address of the original
            // caller; nothing else is believed.
            let name = metadata
                .get(PRINCIPAL_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.starts_with("anonymous@"))
                .map(str::to_string)
                .unwrap_or_else(|| peer_name(request));
            return Ok(Caller {
                name,
                kind: Kind::Anonymous,
                caught_up: None,
            });
        }
        if let Some(value) = metadata.get("authorization") {
            return self.by_token(value, in_cluster);
        }
        match peer_identity(request) {
            Some(PeerIdentity::Client(name)) => Ok(Caller {
                name,
                kind: Kind::Principal,
                caught_up: None,
            }),
            Some(PeerIdentity::Node(id)) => {
                if in_cluster {
                    let member = self.cluster.meta().node(id).map_err(store_status)?;
                    if !member.is_some_and(|n| n.state != NodeState::Removed) {
                        return Err(Status::unauthenticated(format!(
                            "node {id} is not a member of this cluster"
                        )));
                    }
                }
                let forwarded = metadata
                    .get(PRINCIPAL_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| crate::meta::validate_principal_name(v).is_ok());
                // Nodes forward admin calls only; an object call claiming
                // to act for someone is the node acting for itself.
                match forwarded {
                    Some(name) if in_cluster && !action.is_object_call() => Ok(Caller {
                        name: name.to_string(),
                        kind: Kind::Forwarded(id),
                        caught_up: None,
                    }),
                    _ => Ok(Caller {
                        name: format!("node:{id}"),
                        kind: Kind::Node(id),
                        caught_up: None,
                    }),
                }
            }
            None => Err(Status::unauthenticated(
                "no credentials: present a client certificate from the cluster CA \
                 or a bearer token (authorization: Bearer tresor_...)",
            )),
        }
    }

    fn by_token(
        &self,
        value: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        in_cluster: bool,
    ) -> Result<Caller, Status> {
        let text = value.to_str().unwrap_or("");
        let token = match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Status::unauthenticated(
                    "malformed authorization header: expected `Bearer tresor_<id>_<secret>`",
                ))
            }
        };
        let Some((id, secret)) = parse_token(token) else {
            return Err(Status::unauthenticated(
                "malformed bearer token: expected tresor_<id>_<secret>",
            ));
        };
        if !in_cluster {
            return Err(Status::unauthenticated(
                "this node is not part of a cluster yet, so it knows no tokens",
            ));
        }
        match self.cluster.meta().token(id).map_err(store_status)? {
            Some(stored) if token_matches(&stored, &secret) => Ok(Caller {
                name: stored.principal,
                kind: Kind::Principal,
                caught_up: None,
            }),
            _ => Err(Status::unauthenticated(format!(
                "token {id} is unknown, revoked or wrong"
            ))),
        }
    }

    /// The roles `caller` holds (all, in effect, for an anonymous caller in
    /// insecure mode: `None`).
    pub fn grants(&self, caller: &Caller) -> Result<Option<Vec<Grant>>, Status> {
        match caller.kind {
            Kind::Anonymous => Ok(None),
            Kind::Node(_) => Ok(Some(Vec::new())),
            Kind::Principal | Kind::Forwarded(_) => Ok(Some(
                self.cluster
                    .meta()
                    .grants_of(&caller.name)
                    .map_err(store_status)?,
            )),
        }
    }

    /// Whether `caller` may do `action` (on `bucket`): `PermissionDenied`
    /// naming principal, action and bucket if not. Reads local state:
    /// call after [`Authorizer::authenticate`], which caught up.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        bucket: Option<&str>,
    ) -> Result<(), Status> {
        let on = bucket
            .map(|b| format!(" on bucket {b}"))
            .unwrap_or_default();
        match caller.kind {
            Kind::Anonymous => return Ok(()),
            Kind::Node(id) => {
                if action == Action::NodeInfo {
                    return Ok(());
                }
                return Err(Status::permission_denied(format!(
                    "node {id} may not {action}{on} on its own account"
                )));
            }
            Kind::Principal | Kind::Forwarded(_) => {}
        }
        if !self.in_cluster()? {
            // No grants exist yet (and nothing to protect): only the
            // operator's first credential, a client certificate named
            // `admin`, may use the node, to initialise it or look at it.
            if caller.kind == Kind::Principal && caller.name == BOOTSTRAP_ADMIN {
                return Ok(());
            }
            return Err(Status::permission_denied(format!(
                "{} may not {action}: this node is not part of a cluster yet; \
                 only the {BOOTSTRAP_ADMIN} client certificate may use it",
                caller.name
            )));
        }
        let grants = self.grants(caller)?.unwrap_or_default();
        if allows(&grants, action, bucket) {
            return Ok(());
        }
        let held = if grants.is_empty() {
            "no roles".to_string()
        } else {
            grants
                .iter()
                .map(|g| match &g.bucket {
                    Some(b) => format!("{} on {b}", g.role),
                    None => g.role.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(Status::permission_denied(format!(
            "principal {} may not {action}{on} (holds {held})",
            caller.name
        )))
    }

    /// Authenticates and authorises `request` for `action` on `bucket`,
    /// recording a refusal in the audit log (with `key`, when the call
    /// names one).
    pub async fn check<T>(
        &self,
        request: &Request<T>,
        action: Action,
        bucket: Option<&str>,
        key: &str,
    ) -> Result<Caller, Status> {
        let caller = match self.authenticate(request, action).await {
            Ok(c) => c,
            Err(status) => {
                self.record_refusal(&peer_name(request), action, bucket, key, &status)
                    .await;
                return Err(status);
            }
        };
        match self.authorize(&caller, action, bucket) {
            Ok(()) => Ok(caller),
            Err(status) => {
                self.record_refusal(caller.name(), action, bucket, key, &status)
                    .await;
                Err(status)
            }
        }
    }

    /// Records a refused call. A node outside any cluster has no log to
    /// record it in: it logs the refusal instead.
    pub async fn record_refusal(
        &self,
        principal: &str,
        action: Action,
        bucket: Option<&str>,
        key: &str,
        status: &Status,
    ) {
        let outcome = outcome_of::<()>(&Err(status.clone()));
        let bucket = bucket.unwrap_or("");
        if !self.in_cluster().unwrap_or(false) {
            tracing::warn!(principal, %action, bucket, outcome, reason = status.message(), "refused (not in a cluster: not audited)");
            return;
        }
        tracing::info!(principal, %action, bucket, outcome, reason = status.message(), "refused");
        if let Err(e) = self
            .audit
            .record(principal, action.name(), bucket, key, "", &outcome)
            .await
        {
            tracing::error!(principal, %action, bucket, key, outcome, error = %e, "AUDIT RECORD LOST");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, bucket: Option<&str>) -> Grant {
        Grant {
            principal: "p".into(),
            role,
            bucket: bucket.map(Into::into),
        }
    }

    /// The role table, spelled out: which actions each role allows where
    /// its grant applies.
    fn expected(role: Role, action: Action) -> bool {
        use Action::*;
        match role {
            Role::Admin => true,
            Role::Ingest => matches!(action, Put),
            Role::Read => matches!(action, Get | Stat | List | ListBuckets),
            Role::Audit => matches!(action, AuditLog | AuditVerify),
        }
    }

    /// Actions that name a bucket when they are checked.
    fn names_bucket(action: Action) -> bool {
        use Action::*;
        matches!(action, Put | Get | Stat | List | Delete | AuditLog)
    }

    #[test]
    fn every_role_and_every_action() {
        let ingest_only = [Action::Put];
        for action in Action::ALL {
            assert_eq!(
                role_allows(Role::Ingest, action),
                ingest_only.contains(&action)
            );
            for role in Role::ALL {
                let want = expected(role, action);
                assert_eq!(role_allows(role, action), want, "{role} × {action}");
                // Cluster-wide grant: applies to every bucket and to
                // cluster-wide calls.
                let wide = [grant(role, None)];
                assert_eq!(allows(&wide, action, None), want, "{role} × {action}");
                assert_eq!(
                    allows(&wide, action, Some("cams")),
                    want,
                    "{role} × {action} on cams"
                );
                // Grant on one bucket: that bucket's calls only.
                let scoped = [grant(role, Some("cams"))];
                if names_bucket(action) {
                    assert_eq!(allows(&scoped, action, Some("cams")), want);
                    assert!(!allows(&scoped, action, Some("other")), "{role} × {action}");
                }
                let cluster_wide = action == Action::ListBuckets && want;
                assert_eq!(
                    allows(&scoped, action, None),
                    cluster_wide,
                    "scoped {role} × {action} without a bucket"
                );
            }
            assert!(!allows(&[], action, None), "no grants × {action}");
            assert!(!allows(&[], action, Some("cams")), "no grants × {action}");
        }
        // Ingest may neither list, read, stat nor delete.
        let ingest = [grant(Role::Ingest, None)];
        for action in [Action::List, Action::Get, Action::Stat, Action::Delete] {
            assert!(!allows(&ingest, action, Some("cams")));
        }
        assert!(!allows(&ingest, Action::ListBuckets, None));
        // Roles add up.
        let both = [grant(Role::Ingest, Some("a")), grant(Role::Read, Some("b"))];
        assert!(allows(&both, Action::Put, Some("a")));
        assert!(!allows(&both, Action::Put, Some("b")));
        assert!(allows(&both, Action::Get, Some("b")));
        assert!(!allows(&both, Action::Get, Some("a")));
    }

    #[test]
    fn action_names_are_distinct() {
        let names: BTreeSet<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), Action::ALL.len());
    }

    #[test]
    fn bucket_listing_follows_the_grants() {
        assert_eq!(visible_buckets(&[grant(Role::Read, None)]), None);
        assert_eq!(visible_buckets(&[grant(Role::Admin, None)]), None);
        assert_eq!(
            visible_buckets(&[grant(Role::Read, Some("a")), grant(Role::Ingest, None)]),
            None
        );
        let some = visible_buckets(&[
            grant(Role::Read, Some("a")),
            grant(Role::Admin, Some("b")),
            grant(Role::Ingest, Some("c")),
            grant(Role::Audit, Some("a")),
        ]);
        let names = ["a", "b", "c"].map(String::from);
        assert_eq!(some, Some(names.into_iter().collect()));
        assert_eq!(visible_buckets(&[]), Some(BTreeSet::new()));
    }

    #[test]
    fn tokens_hash_parse_and_match() {
        let (token, text) = new_token("alice");
        assert_eq!(token.principal, "alice");
        assert_eq!(token.id.len(), 16);
        assert_eq!(token.secret_sha256.len(), 64);
        assert!(!text.contains(&token.secret_sha256));
        let (id, secret) = parse_token(&text).expect("parses");
        assert_eq!(id, token.id);
        assert_eq!(secret.len(), 32);
        assert!(token_matches(&token, &secret));
        assert_eq!(token.secret_sha256, secret_sha256(&secret));
        // Another secret does not match.
        let mut wrong = secret.clone();
        wrong[0] ^= 1;
        assert!(!token_matches(&token, &wrong));
        // Two tokens differ.
        let (other, other_text) = new_token("alice");
        assert_ne!(other.id, token.id);
        assert_ne!(other_text, text);
        // Malformed tokens are refused.
        let bad = [
            String::new(),
            "tresor_".into(),
            text.replacen("tresor_", "tresor-", 1),
            text.to_uppercase(),
            format!("{text}0"),
            text[..text.len() - 1].to_string(),
            format!("tresor_{}_{}", "0".repeat(15), "0".repeat(64)),
            format!("tresor_{}_{}", "g".repeat(16), "0".repeat(64)),
            format!("tresor_{}_{}_", "0".repeat(16), "0".repeat(64)),
        ];
        for b in bad {
            assert!(parse_token(&b).is_none(), "{b:?}");
        }
    }
}
