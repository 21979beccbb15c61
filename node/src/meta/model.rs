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
    /// The retention policy objects committed to it get, if any.
    pub retention: Option<String>,
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
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    real.saturating_add_signed(clock_offset_ms())
}

/// A skew added to this process's clock for the fault tests: the
/// `TRESOR_CLOCK_OFFSET_MS` environment variable (signed milliseconds),
/// read once. Only in builds with crash points.
#[cfg(feature = "crash-points")]
fn clock_offset_ms() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("TRESOR_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

#[cfg(not(feature = "crash-points"))]
fn clock_offset_ms() -> i64 {
    0
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
    fn schemes() {
        for (d, p) in [(1, 1), (4, 2), (16, 8), (10, 4)] {
            assert_eq!(validate_scheme(d, p), Ok(()), "{d}+{p}");
        }
        for (d, p) in [(0, 1), (17, 2), (4, 0), (4, 9)] {
            assert!(validate_scheme(d, p).is_err(), "{d}+{p}");
        }
    }
}
