//! Who may do what: principals, their roles (cluster-wide or on one
//! bucket) and their bearer tokens.

use serde::{Deserialize, Serialize};

use super::MetaError;

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
    /// Place and release legal holds, extend retention, export custody.
    Custodian,
    /// Everything: objects, buckets, cluster operations, access management.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 5] = [
        Role::Ingest,
        Role::Read,
        Role::Audit,
        Role::Custodian,
        Role::Admin,
    ];

    /// The name operators type and see.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Audit => "audit",
            Role::Custodian => "custodian",
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
                    "unknown role {name:?}: roles are ingest, read, audit, custodian and admin"
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

/// An S3 access key of a principal: the id S3 clients send in the clear,
/// and the secret they sign requests with. Verifying a signature needs the
/// secret itself, so it is kept wrapped by the master key (see
/// `crypto::seal_s3_secret`), never in plain; it is shown once, when
/// created.
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Key {
    /// The access key id: `TRS` and 17 upper-case letters or digits (20
    /// characters, the shape S3 tools expect).
    pub id: String,
    /// Whose key it is: S3 calls made with it act as this principal.
    pub principal: String,
    /// The secret, wrapped by the master key with the id as associated
    /// data (a wrapped secret moved to another id does not open).
    pub secret: super::WrappedKey,
    /// Unix milliseconds (chosen by the proposer).
    pub created_ms: u64,
}

/// Whether `id` has the shape of an access key id this cluster issues.
pub fn is_s3_key_id(id: &str) -> bool {
    id.len() == 20
        && id.starts_with("TRS")
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Name of the principal every new cluster starts with, holding `admin` on
/// all buckets. The operator's first credential is a client certificate
/// with this name.
pub const BOOTSTRAP_ADMIN: &str = "admin";

#[cfg(test)]
mod tests {
    use super::*;

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
}
