//! Plain data types of the replicated metadata.

use serde::{Deserialize, Serialize};

/// Lifecycle of a node in the cluster records.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Serving and eligible for new data.
    Active,
    /// Having its data moved off before removal.
    Draining,
    /// Not heard from for too long.
    Down,
    /// Gone for good. The record stays so the id is never reused.
    Removed,
}

impl NodeState {
    /// The name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Down => "down",
            NodeState::Removed => "removed",
        }
    }
}

/// One node as the cluster knows it.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Never reused.
    pub id: u64,
    /// `host:port` of its gRPC port.
    pub addr: String,
    /// Failure domain.
    pub zone: String,
    /// Bytes offered for shards.
    pub capacity: u64,
    /// Lifecycle state.
    pub state: NodeState,
    /// When it was added, Unix milliseconds (chosen by the proposer).
    pub added_ms: u64,
    /// When `state` last changed, Unix milliseconds.
    #[serde(default)]
    pub state_since_ms: u64,
    /// Random id of the node's data dir, created with it. A node that comes
    /// back with another one (a wiped disk) is not the node the cluster
    /// knew, and is kept out of Raft.
    #[serde(default)]
    pub incarnation: String,
}

/// A bucket and its erasure scheme.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// 3–63 characters of `a-z 0-9 - .`.
    pub name: String,
    /// Data shards per stripe (`k`).
    pub data: u32,
    /// Parity shards per stripe (`m`).
    pub parity: u32,
    /// Unix milliseconds (chosen by the proposer).
    pub created_ms: u64,
}

/// What a principal may do. A [`Grant`] gives a role cluster-wide or on one
/// bucket.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Put objects, nothing else: cannot list, read, stat or delete.
    Ingest,
    /// Get, stat and list objects; list buckets.
    Read,
    /// Read and verify the audit log.
    Audit,
    /// Everything: objects, buckets, cluster operations, access management.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Read, Role::Audit, Role::Admin];

    /// The name operators type and see.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Audit => "audit",
            Role::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Result<Role, MetaError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| {
                MetaError::InvalidArgument(format!(
                    "unknown role {name:?}: roles are ingest, read, audit and admin"
                ))
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Someone who may be granted roles: a person or a system, authenticated by
/// a client certificate with its name or by one of its tokens.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// See [`validate_principal_name`].
    pub name: String,
    /// Unix milliseconds (chosen by the proposer).
    pub created_ms: u64,
}

/// A role given to a principal, on one bucket or (`bucket: None`) on all.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The principal's name.
    pub principal: String,
    /// The role.
    pub role: Role,
    /// The one bucket it applies to, or all buckets.
    pub bucket: Option<String>,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.bucket {
            Some(b) => write!(f, "{} {} on bucket {b}", self.principal, self.role),
            None => write!(f, "{} {} on all buckets", self.principal, self.role),
        }
    }
}

/// A bearer token of a principal. Only the SHA-256 of its secret is stored;
/// the token itself (`tresor_<id>_<secret>`) is shown once, when created.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// 16 lowercase hex digits (8 random bytes); names the token in
    /// listings and revocations.
    pub id: String,
    /// Whose token it is.
    pub principal: String,
    /// Lowercase hex SHA-256 of the secret's 32 bytes.
    pub secret_sha256: String,
    /// Unix milliseconds (chosen by the proposer).
    pub created_ms: u64,
}

/// Name of the principal every new cluster starts with, holding `admin` on
/// all buckets. The operator's first credential is a client certificate
/// with this name.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// A change to the metadata, proposed through Raft.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// First entry of a new cluster: its id and its first node.
    InitCluster {
        /// Random id naming this cluster.
        cluster_id: String,
        /// The node that initialised it.
        node: NodeRecord,
    },
    /// Records a new node. Refused if its id was ever used.
    AddNode {
        /// The node.
        node: NodeRecord,
    },
    /// Marks a node removed; its id stays reserved.
    RemoveNode {
        /// Node id.
        id: u64,
    },
    /// Creates a bucket. Refused if the name exists.
    CreateBucket {
        /// The bucket.
        bucket: Bucket,
    },
    /// Records an upload in progress: its shard files are not orphans
    /// while the record lives. Refused if the object id is in use.
    BeginUpload {
        /// The upload.
        upload: UploadRecord,
    },
    /// Shows an upload is still making progress, so it does not expire.
    TouchUpload {
        /// The upload's object id.
        object_id: super::ObjectId,
        /// When, Unix milliseconds (chosen by the proposer).
        touched_ms: u64,
    },
    /// Ends an upload without an object: from this commit on its
    /// `CreateObject` can never succeed, and its shard files are garbage.
    /// Refused with `AlreadyExists` if the object was committed — so the
    /// answer tells a coordinator that lost track which way it went.
    AbortUpload {
        /// The upload's object id.
        object_id: super::ObjectId,
    },
    /// Makes an object visible and ends its upload. Refused if the bucket
    /// is unknown, the key exists (keys are immutable) or the upload was
    /// aborted or expired. Idempotent: the same object committed again (a
    /// retried proposal) succeeds without change.
    CreateObject {
        /// Its manifest, shards already durable.
        manifest: Box<super::ObjectManifest>,
        /// The put's audit record, appended to the audit log in the same
        /// commit: an object is never stored without its record.
        #[serde(default)]
        audit: Option<super::audit::AuditRecord>,
    },
    /// Changes a node's liveness or drain state (never to or from `Removed`).
    SetNodeState {
        /// Node id.
        id: u64,
        /// New state.
        state: NodeState,
        /// When, Unix milliseconds (chosen by the proposer).
        since_ms: u64,
    },
    /// Moves or clears shard locations of one segment, if they are still
    /// what the proposer saw (compare-and-set): repair commits rebuilt
    /// shards this way, and scrub and reads report bad ones.
    UpdateShards {
        /// Bucket of the object.
        bucket: String,
        /// Key of the object.
        key: String,
        /// The object the proposer saw under that key.
        object_id: super::ObjectId,
        /// Segment index.
        segment: u32,
        /// `(shard index, location expected now, new location)`.
        changes: Vec<(u32, super::ShardLocation, super::ShardLocation)>,
    },
    /// Appends audit records to the hash-chained audit log.
    AppendAudit {
        /// The records, in the order the node saw them.
        records: Vec<super::audit::AuditRecord>,
    },
    /// Re-wraps data keys under another master key (`keys rotate`). Each
    /// change applies only if the object is still the same one and its key
    /// is still wrapped by `from_key_id`; others are skipped.
    RewrapKeys {
        /// The new wrappings.
        rewraps: Vec<KeyRewrap>,
    },
    /// Removes an object's manifest; its shards become garbage.
    DeleteObject {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The delete's audit record, appended in the same commit.
        #[serde(default)]
        audit: Option<super::audit::AuditRecord>,
    },
    /// Creates a principal, without roles. Refused if the name exists.
    CreatePrincipal {
        /// The principal.
        principal: Principal,
    },
    /// Deletes a principal with its grants and tokens. Refused if it would
    /// leave no principal with `admin` on all buckets.
    DeletePrincipal {
        /// Its name.
        name: String,
    },
    /// Gives a role. Refused for an unknown principal or bucket; granting a
    /// role held already changes nothing.
    Grant {
        /// The grant.
        grant: Grant,
    },
    /// Takes a role back. Refused if the principal does not hold it, or if
    /// it would leave no principal with `admin` on all buckets.
    Revoke {
        /// The grant to remove.
        grant: Grant,
    },
    /// Stores a new token (its secret's hash). Refused for an unknown
    /// principal or an id in use.
    CreateToken {
        /// The token.
        token: Token,
    },
    /// Deletes a token: it stops working at once.
    RevokeToken {
        /// The token's id.
        id: String,
    },
}

/// An upload in progress, from its first shard file to its commit or
/// abort.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The object id its shard files are named after.
    pub object_id: super::ObjectId,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The node coordinating it.
    pub coordinator: u64,
    /// Unix milliseconds (chosen by the proposer).
    pub started_ms: u64,
    /// Last sign of progress, Unix milliseconds: an upload silent for longer
    /// than the expiry is aborted by the leader.
    pub touched_ms: u64,
}

/// One object's data key, wrapped anew.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRewrap {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The object the key belongs to.
    pub object_id: super::ObjectId,
    /// The master key id the current wrapping must have.
    pub from_key_id: String,
    /// The new wrapping.
    pub wrapped: super::WrappedKey,
}

/// Why a command or request was refused. Carried through Raft as the
/// command's result, so it must be serialisable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetaError {
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is well-formed but the cluster's state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
}

/// The result of applying one command: the application's response type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult(pub Result<(), MetaError>);

/// Bucket names: 3–63 characters of `a-z 0-9 - .`, starting and ending with a
/// letter or digit (so they are safe in paths, URLs and logs).
pub fn validate_bucket_name(name: &str) -> Result<(), MetaError> {
    let bad = |why: &str| {
        Err(MetaError::InvalidArgument(format!(
            "invalid bucket name {name:?}: {why}"
        )))
    };
    if name.len() < 3 || name.len() > 63 {
        return bad("must be 3 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return bad("may only contain a-z, 0-9, '-' and '.'");
    }
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge_ok(name.as_bytes()[0]) || !edge_ok(name.as_bytes()[name.len() - 1]) {
        return bad("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not contain '..'");
    }
    Ok(())
}

/// Principal names (and so client certificate names): 1–64 characters of
/// lowercase letters, digits, `.`, `_` and `-`, starting with a letter or
/// digit.
pub fn validate_principal_name(name: &str) -> Result<(), MetaError> {
    let bad = |why: &str| {
        Err(MetaError::InvalidArgument(format!(
            "invalid principal name {name:?}: {why}"
        )))
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !name.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
    }) {
        return bad("may only contain a-z, 0-9, '.', '_' and '-'");
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return bad("must start with a letter or digit");
    }
    Ok(())
}

/// Erasure schemes: `data` 1–16 and `parity` 1–8 shards per stripe.
pub fn validate_scheme(data: u32, parity: u32) -> Result<(), MetaError> {
    if !(1..=16).contains(&data) {
        return Err(MetaError::InvalidArgument(format!(
            "invalid scheme: data must be 1 to 16 shards, got {data}"
        )));
    }
    if !(1..=8).contains(&parity) {
        return Err(MetaError::InvalidArgument(format!(
            "invalid scheme: parity must be 1 to 8 shards, got {parity}"
        )));
    }
    Ok(())
}

/// Wall-clock Unix milliseconds, for proposers to stamp commands with.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        let ok = ["abc", "bodycam-2026", "a.b.c", "000", &"a".repeat(63)];
        for name in ok {
            assert_eq!(validate_bucket_name(name), Ok(()), "{name}");
        }
        let bad = [
            "",
            "ab",
            "ABC",
            "a_b",
            "a b",
            "-abc",
            "abc-",
            ".abc",
            "abc.",
            "a..b",
            "../../etc",
            "ab/c",
            "abcé",
            &"a".repeat(64),
        ];
        for name in bad {
            assert!(
                matches!(
                    validate_bucket_name(name),
                    Err(MetaError::InvalidArgument(_))
                ),
                "{name:?} should be refused"
            );
        }
    }

    #[test]
    fn principal_names() {
        let ok = [
            "a",
            "admin",
            "0",
            "alice.smith",
            "cam_ingest-7",
            &"a".repeat(64),
        ];
        for name in ok {
            assert_eq!(validate_principal_name(name), Ok(()), "{name}");
        }
        let bad = [
            "",
            "Admin",
            "-a",
            ".a",
            "_a",
            "a b",
            "a/b",
            "a:b",
            "a@b",
            "node:1",
            "ä",
            &"a".repeat(65),
        ];
        for name in bad {
            assert!(
                matches!(
                    validate_principal_name(name),
                    Err(MetaError::InvalidArgument(_))
                ),
                "{name:?} should be refused"
            );
        }
    }

    #[test]
    fn roles_parse_and_print() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
            assert_eq!(
                serde_json::to_string(&role).expect("json"),
                format!("\"{role}\"")
            );
        }
        assert!(Role::parse("root").is_err());
        assert!(Role::parse("Admin").is_err());
    }

    #[test]
    fn schemes() {
        for (d, p) in [(1, 1), (4, 2), (16, 8), (10, 4)] {
            assert_eq!(validate_scheme(d, p), Ok(()), "{d}+{p}");
        }
        for (d, p) in [(0, 1), (17, 2), (4, 0), (4, 9)] {
            assert!(validate_scheme(d, p).is_err(), "{d}+{p}");
        }
    }
}
