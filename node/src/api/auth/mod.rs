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

mod actions;
#[cfg(test)]
mod tests;
mod tokens;

pub use actions::{allows, role_allows, visible_buckets, Action};
pub use tokens::{new_token, parse_token, secret_sha256, token_matches};

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Status};

use super::audit::AuditSink;
use super::{outcome_of, store_status, to_status};
use crate::meta::audit::{is_reserved_bucket, AUDIT_BUCKET};
use crate::meta::{Grant, NodeState, BOOTSTRAP_ADMIN};
use crate::raft::{CaughtUp, Cluster};
use crate::tls::{peer_identity, PeerIdentity};

/// Set by a node that forwards a call to the leader: the principal it
/// authenticated. Trusted only from a node certificate of a current member.
pub const PRINCIPAL_HEADER: &str = "x-tresor-principal";

/// How long a diagnostic call (see [`Action::answers_locally`]) waits to
/// catch up with the leader before it is answered from local state.
const LOCAL_CATCH_UP: Duration = Duration::from_secs(2);

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

    /// Proof that this node caught up during the request: the one taken
    /// while checking this caller, or a fresh one where it answered locally.
    pub async fn caught_up_with(&self, cluster: &crate::raft::Cluster) -> Result<CaughtUp, Status> {
        match self.caught_up {
            Some(caught_up) => Ok(caught_up),
            None => cluster
                .linearizable_read()
                .await
                .map_err(|e| super::object_status(e.into())),
        }
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
        // A caller refused too often this interval is refused at once,
        // before its credentials cost a look-up.
        let peer = peer_name(request);
        if self.audit.refusing(&peer) {
            return Err(refusing(&peer));
        }
        let in_cluster = self.in_cluster()?;
        let caught_up = match in_cluster {
            true => self.catch_up(action).await?,
            false => None,
        };
        let mut caller = self.identify(request, action, in_cluster)?;
        if self.audit.refusing(&caller.name) {
            return Err(refusing(&caller.name));
        }
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
        let authenticated = self.authenticate(request, action).await;
        self.admit(authenticated, &peer_name(request), action, bucket, key)
            .await
    }

    /// Authenticates and authorises an S3 request for `action` on
    /// `bucket`, recording a refusal like [`Authorizer::check`]. s3s has
    /// verified its signature with the secret of `access_key` (`None`: an
    /// unsigned request, allowed only in insecure mode, as `peer`).
    pub async fn check_s3(
        &self,
        access_key: Option<&str>,
        peer: &str,
        action: Action,
        bucket: Option<&str>,
        key: &str,
    ) -> Result<Caller, Status> {
        let authenticated = self.authenticate_s3(access_key, peer, action).await;
        self.admit(authenticated, peer, action, bucket, key).await
    }

    /// Like [`Authorizer::check_s3`], for a call any of `also` allows as
    /// well as `action` (S3's HeadBucket: any role that reads or writes
    /// the bucket's objects). A refusal is recorded as `action`'s.
    pub async fn check_s3_any(
        &self,
        access_key: Option<&str>,
        peer: &str,
        (action, also): (Action, &[Action]),
        bucket: Option<&str>,
    ) -> Result<Caller, Status> {
        let authenticated = self.authenticate_s3(access_key, peer, action).await;
        if let Ok(caller) = &authenticated {
            if also
                .iter()
                .any(|a| self.authorize(caller, *a, bucket).is_ok())
            {
                return authenticated;
            }
        }
        self.admit(authenticated, peer, action, bucket, "").await
    }

    /// Resolves the principal of an S3 request. The signature was checked
    /// against this node's state before it caught up with the leader, so
    /// the key is looked up again afterwards: a key revoked anywhere is
    /// refused on the very next request, on any node.
    async fn authenticate_s3(
        &self,
        access_key: Option<&str>,
        peer: &str,
        action: Action,
    ) -> Result<Caller, Status> {
        if self.audit.refusing(peer) {
            return Err(refusing(peer));
        }
        let caught_up = match self.in_cluster()? {
            true => self.catch_up(action).await?,
            false => None,
        };
        if self.insecure() {
            return Ok(Caller {
                name: peer.to_string(),
                kind: Kind::Anonymous,
                caught_up,
            });
        }
        let Some(id) = access_key else {
            return Err(Status::unauthenticated(
                "unsigned S3 request: sign it with an access key (tresor-node s3-key create)",
            ));
        };
        let Some(key) = self.cluster.meta().s3_key(id).map_err(store_status)? else {
            return Err(Status::unauthenticated(format!(
                "S3 access key {id} is unknown or revoked"
            )));
        };
        if self.audit.refusing(&key.principal) {
            return Err(refusing(&key.principal));
        }
        Ok(Caller {
            name: key.principal,
            kind: Kind::Principal,
            caught_up,
        })
    }

    /// Authorises an authenticated (or refused) caller for `action`,
    /// recording a refusal in the audit log under the caller's name, or
    /// under `peer` when it was not authenticated.
    async fn admit(
        &self,
        authenticated: Result<Caller, Status>,
        peer: &str,
        action: Action,
        bucket: Option<&str>,
        key: &str,
    ) -> Result<Caller, Status> {
        let caller = match authenticated {
            Ok(c) => c,
            Err(status) => {
                self.record_refusal(peer, action, bucket, key, &status)
                    .await;
                return Err(status);
            }
        };
        let reserved = bucket.filter(|b| action.is_object_call() && is_reserved_bucket(b));
        if let Some(bucket) = reserved {
            return self.admit_reserved(caller, action, bucket, key).await;
        }
        match self.authorize(&caller, action, bucket) {
            Ok(()) => Ok(caller),
            Err(status) => {
                self.record_refusal(caller.name(), action, bucket, key, &status)
                    .await;
                Err(status)
            }
        }
    }

    /// The buckets the cluster keeps for itself: the sealed audit log is
    /// read with the right to read the audit log; nobody writes in any of
    /// them, or reads the others (parts of S3 multipart uploads).
    async fn admit_reserved(
        &self,
        caller: Caller,
        action: Action,
        bucket: &str,
        key: &str,
    ) -> Result<Caller, Status> {
        let refused = match self.authorize(&caller, Action::AuditLog, None) {
            Err(status) => Some((Action::AuditLog, None, status)),
            Ok(())
                if bucket == AUDIT_BUCKET
                    && matches!(action, Action::Get | Action::Stat | Action::List) =>
            {
                None
            }
            Ok(()) => Some((action, Some(bucket), kept_by_cluster(bucket))),
        };
        match refused {
            None => Ok(caller),
            Some((action, bucket, status)) => {
                let key = if bucket.is_some() { key } else { "" };
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
        tracing::debug!(principal, %action, bucket, outcome, reason = status.message(), "refused");
        // On record with the caller's other refusals of this interval.
        self.audit
            .refused(principal, action.name(), bucket, key, &outcome);
    }
}

/// The refusal of a write into a bucket the cluster keeps for itself.
pub fn kept_by_cluster(bucket: &str) -> Status {
    Status::permission_denied(format!(
        "bucket {bucket} is kept by the cluster: nobody writes or deletes in it (the sealed audit \
         log in tresor.audit can be read with the audit role)"
    ))
}

/// The refusal of a caller past its limit of refusals for this interval.
fn refusing(caller: &str) -> Status {
    let wait = super::refusals::REFUSAL_INTERVAL.as_millis() as u64;
    let mut status = Status::resource_exhausted(format!(
        "{caller} was refused too often in the last second; retry in {wait} ms"
    ));
    if let Ok(value) = wait.to_string().parse() {
        status
            .metadata_mut()
            .insert(super::admission::RETRY_PUSHBACK, value);
    }
    status
}
