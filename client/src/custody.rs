//! Chain-of-custody bundles and audit checkpoints: what the cluster signs
//! about one object's history, and their offline checks with nothing but
//! the cluster CA's certificate (and optionally the footage).
//!
//! A bundle is JSON of the same three strings as a receipt (`body`,
//! `signature`, `certificate`; see [`crate::receipt`]), signed by the
//! cluster's signer. Its body holds the ingest record, every audit entry
//! naming the object's key with its chain hashes, the holds and retention,
//! the deletion receipt if it was deleted, and the audit head when it was
//! made. The check recomputes every entry's hash from its fields and the
//! hash before it (the same SHA-256 the cluster chains with), checks that
//! entries with consecutive numbers link, and that the cluster's signer
//! signed the whole; the cluster's own `audit verify` checks the chain in
//! between. A bundle anchored to a signed checkpoint also proves that each
//! of its entries is in the history that checkpoint published (see
//! [`crate::anchor`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::anchor::{verify_anchor, Anchor, AnchorReport, SignedCheckpoint};
use crate::receipt::{verify_signed, ReceiptError, SignedReceipt};

/// The bytes an audit entry's hash covers: its fields in a fixed order as
/// JSON (`hash` excluded).
fn canonical(e: &CustodyEntry) -> Vec<u8> {
    serde_json::json!([
        e.seq,
        e.time_ms,
        e.node,
        e.principal,
        e.action,
        e.bucket,
        e.key,
        e.object_sha256,
        e.outcome,
        e.prev_hash,
    ])
    .to_string()
    .into_bytes()
}

/// One entry of the cluster's audit chain, as a bundle carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Unix milliseconds, when the node saw the event.
    pub time_ms: u64,
    /// The node that served the call.
    pub node: u64,
    /// Who made the call.
    pub principal: String,
    /// What was done (`put`, `get`, `delete`, `hold place`, ...).
    pub action: String,
    /// Bucket named.
    pub bucket: String,
    /// Key named.
    pub key: String,
    /// SHA-256 of the object concerned, when known.
    pub object_sha256: String,
    /// `ok` or the refusal.
    pub outcome: String,
    /// Hash of the entry before.
    pub prev_hash: String,
    /// SHA-256(prev_hash ‖ canonical entry), hex.
    pub hash: String,
}

impl CustodyEntry {
    /// The hash the entry's fields and `prev_hash` give.
    pub fn computed_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(canonical(self));
        hex::encode(h.finalize())
    }
}

/// The object as ingested and kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyObject {
    /// Object id, hex.
    pub object_id: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// MIME type given at ingest.
    pub content_type: String,
    /// Metadata given at ingest (device and officer ids, ...).
    pub metadata: BTreeMap<String, String>,
    /// When it was ingested, Unix milliseconds.
    pub ingested_ms: u64,
    /// Who ingested it.
    pub ingested_by: String,
    /// Its retention policy, `keep_until` and `delete_at` (Unix ms).
    pub retention_policy: Option<String>,
    /// No delete before this.
    pub keep_until_ms: Option<u64>,
    /// Deleted then unless held.
    pub delete_at_ms: Option<u64>,
}

/// A legal hold covering the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyHold {
    /// The case.
    pub case_id: String,
    /// The key or `prefix*` it covers.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Who placed it.
    pub placed_by: String,
    /// When, Unix milliseconds.
    pub placed_ms: u64,
}

/// What a bundle states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyBody {
    /// Format (2: with `anchor`).
    pub version: u32,
    /// The cluster.
    pub cluster_id: String,
    /// The object's bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// The object while it exists; `None` once deleted (see `receipt`).
    pub object: Option<CustodyObject>,
    /// The signed deletion receipt (its JSON), once deleted.
    pub receipt: Option<String>,
    /// Holds covering it when the bundle was made.
    pub holds: Vec<CustodyHold>,
    /// Every audit entry naming the key, in order (the first
    /// `max_entries` if there are more, see `entries_complete`).
    pub entries: Vec<CustodyEntry>,
    /// False if there were more entries than the bundle carries.
    pub entries_complete: bool,
    /// The audit chain's head when the bundle was made: seq and hash.
    pub head_seq: u64,
    /// See `head_seq`.
    pub head_hash: String,
    /// Proofs that the entries up to a signed checkpoint are in its
    /// history; `None` before the cluster's first checkpoint.
    #[serde(default)]
    pub anchor: Option<Anchor>,
    /// Who asked for the bundle.
    pub exported_by: String,
    /// When it was signed, Unix milliseconds.
    pub exported_ms: u64,
}

/// A signed bundle, as written to a file.
pub type SignedBundle = SignedReceipt;

/// Why a bundle does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CustodyError {
    /// The signature or the signer's certificate failed (or the file is
    /// not a bundle).
    #[error("{0}")]
    Signed(#[from] ReceiptError),
    /// An audit entry's fields do not give its hash.
    #[error("audit entry {seq}: its hash does not match its fields (altered)")]
    Entry {
        /// The entry.
        seq: u64,
    },
    /// Two consecutive entries do not link, or entries are out of order.
    #[error("audit entry {seq}: {why}")]
    Chain {
        /// The later entry.
        seq: u64,
        /// What is wrong.
        why: String,
    },
    /// An entry is about another object.
    #[error("audit entry {seq} names {named}, not the bundle's object")]
    OtherObject {
        /// The entry.
        seq: u64,
        /// What it names.
        named: String,
    },
    /// The anchor to a checkpoint does not hold.
    #[error("anchor: {0}")]
    Anchor(String),
    /// The deletion receipt inside does not verify or is another object's.
    #[error("deletion receipt: {0}")]
    Receipt(String),
    /// The footage given does not have the recorded SHA-256.
    #[error("footage: SHA-256 {found} is not the recorded {recorded}")]
    Footage {
        /// What the file hashes to.
        found: String,
        /// What the bundle records.
        recorded: String,
    },
}

/// A bundle that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBundle {
    /// What it states.
    pub body: CustodyBody,
    /// What its anchor proved, if it has one.
    pub anchor: Option<AnchorReport>,
}

/// Checks `bundle` against the CA in `ca_pem`, its anchor if it has one
/// (to the `published` checkpoint, if given: then it must have one), and,
/// if given, the SHA-256 of the footage (`footage_sha256`, hex). The error
/// names the first thing that failed.
pub fn verify_bundle(
    bundle: &SignedBundle,
    ca_pem: &str,
    footage_sha256: Option<&str>,
    published: Option<&SignedCheckpoint>,
) -> Result<VerifiedBundle, CustodyError> {
    if bundle.signature.is_empty() || bundle.certificate.is_empty() {
        return Err(ReceiptError::Unsigned.into());
    }
    let body: CustodyBody = serde_json::from_str(&bundle.body)
        .map_err(|e| ReceiptError::Malformed(format!("bundle body: {e}")))?;
    verify_signed(
        &bundle.body,
        &bundle.signature,
        &bundle.certificate,
        ca_pem,
        body.exported_ms,
    )?;
    let mut before: Option<&CustodyEntry> = None;
    for e in &body.entries {
        if e.bucket != body.bucket || e.key != body.key {
            return Err(CustodyError::OtherObject {
                seq: e.seq,
                named: format!("{}/{}", e.bucket, e.key),
            });
        }
        if e.computed_hash() != e.hash {
            return Err(CustodyError::Entry { seq: e.seq });
        }
        if let Some(b) = before {
            let why = if e.seq <= b.seq {
                Some(format!("comes after entry {}", b.seq))
            } else if e.seq == b.seq + 1 && e.prev_hash != b.hash {
                Some(format!("does not follow entry {}'s hash", b.seq))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(CustodyError::Chain { seq: e.seq, why });
            }
        }
        if e.seq > body.head_seq {
            return Err(CustodyError::Chain {
                seq: e.seq,
                why: format!("is past the head, entry {}", body.head_seq),
            });
        }
        before = Some(e);
    }
    let anchor = match (&body.anchor, published) {
        (Some(a), _) => {
            let entries: Vec<(u64, &str)> = body
                .entries
                .iter()
                .map(|e| (e.seq, e.hash.as_str()))
                .collect();
            let report = verify_anchor(a, &entries, &body.cluster_id, ca_pem, published)
                .map_err(|e| CustodyError::Anchor(e.0))?;
            Some(report)
        }
        (None, Some(_)) => {
            return Err(CustodyError::Anchor(
                "the bundle has no anchor: it was made before the cluster's first checkpoint"
                    .into(),
            ))
        }
        (None, None) => None,
    };
    let recorded = match (&body.object, &body.receipt) {
        (Some(o), None) => o.sha256.clone(),
        (None, Some(text)) => {
            let receipt = SignedReceipt::from_json(text)
                .and_then(|r| r.verify(ca_pem))
                .map_err(|e| CustodyError::Receipt(e.to_string()))?;
            if (receipt.bucket.as_str(), receipt.key.as_str()) != (&body.bucket, &body.key) {
                return Err(CustodyError::Receipt(format!(
                    "it is the receipt of {}/{}",
                    receipt.bucket, receipt.key
                )));
            }
            receipt.sha256
        }
        _ => {
            return Err(
                ReceiptError::Malformed("a bundle has an object or a receipt".into()).into(),
            )
        }
    };
    if let Some(found) = footage_sha256 {
        if !found.eq_ignore_ascii_case(&recorded) {
            return Err(CustodyError::Footage {
                found: found.to_string(),
                recorded,
            });
        }
    }
    Ok(VerifiedBundle { body, anchor })
}
