//! Deletion receipts: what a node signs when an object is deleted, and the
//! offline check of one with nothing but the cluster CA's certificate.
//!
//! A receipt is a JSON file of three strings: `body` (the JSON text of a
//! [`ReceiptBody`], exactly as signed), `signature` (hex of an ECDSA P-256
//! SHA-256 signature over the body's bytes, ASN.1 DER) and `certificate`
//! (PEM of the signing certificate). The signing certificate is issued by
//! the cluster CA (`tresor-node ca issue --signer`) with extended key usage
//! code signing only, so no TLS peer accepts it; its private key stays on
//! the nodes like the master key, never in the replicated state.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

/// Common name of receipt signing certificates.
pub const SIGNER_COMMON_NAME: &str = "tresor receipt signer";

/// What a receipt states about one deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// Format of this body (1).
    pub version: u32,
    /// The cluster that held the object.
    pub cluster_id: String,
    /// Its bucket.
    pub bucket: String,
    /// Its key (never used again: a put to it is refused).
    pub key: String,
    /// Its object id, hex.
    pub object_id: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// When it was ingested, Unix milliseconds.
    pub ingested_ms: u64,
    /// Who ingested it.
    pub ingested_by: String,
    /// When it was deleted (cluster time), Unix milliseconds.
    pub deleted_ms: u64,
    /// Who deleted it: a principal, or `system:retention` for an expiry.
    pub deleted_by: String,
    /// Why: `retention policy NAME` or `deleted by PRINCIPAL`.
    pub reason: String,
    /// Sequence number of the deletion's entry in the audit log.
    pub audit_seq: u64,
    /// Shard files the holders removed when the receipt was made (files
    /// a holder had already lost, or that garbage collection removed
    /// earlier, are not counted).
    pub shard_files_removed: u64,
    /// Holders that could not be reached then: their files are removed by
    /// garbage collection when they return.
    pub holders_unreached: Vec<u64>,
    /// The object was encrypted and nothing that opens its data key is
    /// left: its manifest is gone and, for a key wrapped by a key epoch,
    /// the epoch key was destroyed on every node (false for objects stored
    /// unencrypted).
    pub data_key_removed: bool,
    /// The key epoch that wrapped its data key (`e:<16 hex digits>`).
    /// (Never skipped when empty: the node also stores bodies in a binary
    /// format where every field must be present.)
    #[serde(default)]
    pub key_epoch: Option<String>,
    /// When that epoch key was destroyed, Unix milliseconds: the receipt
    /// is issued only after.
    #[serde(default)]
    pub key_destroyed_ms: Option<u64>,
    /// When the receipt was signed, Unix milliseconds.
    pub issued_ms: u64,
}

/// A receipt as stored, listed and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// The JSON text of a [`ReceiptBody`], exactly as signed.
    pub body: String,
    /// Hex of the ECDSA P-256 SHA-256 signature (DER) over `body`; empty on
    /// a cluster run with `insecure = true`, which has no signer.
    pub signature: String,
    /// PEM of the signing certificate; empty when unsigned.
    pub certificate: String,
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    /// The file is not a receipt.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// No signature (made by a cluster without a signer).
    #[error("the receipt is not signed (its cluster runs with insecure = true)")]
    Unsigned,
    /// The CA file is unusable.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// The signing certificate is not one of this CA's receipt signers.
    #[error("signing certificate: {0}")]
    Certificate(String),
    /// The signature does not match the body.
    #[error("signature: does not match the receipt's body (altered, or signed by another key)")]
    Signature,
}

fn parse_pem(pem: &str, what: &str) -> Result<Vec<u8>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| format!("{what} is not a PEM certificate: {e}"))
}

impl SignedReceipt {
    /// Parses a receipt file's JSON.
    pub fn from_json(text: &str) -> Result<Self, ReceiptError> {
        serde_json::from_str(text).map_err(|e| ReceiptError::Malformed(e.to_string()))
    }

    /// The body, parsed (not verified).
    pub fn parsed_body(&self) -> Result<ReceiptBody, ReceiptError> {
        serde_json::from_str(&self.body).map_err(|e| ReceiptError::Malformed(format!("body: {e}")))
    }

    /// Checks that the signing certificate was issued by the CA in `ca_pem`
    /// as a receipt signer, valid when the receipt was signed, and that
    /// its key signed the body; returns the body.
    pub fn verify(&self, ca_pem: &str) -> Result<ReceiptBody, ReceiptError> {
        if self.signature.is_empty() || self.certificate.is_empty() {
            return Err(ReceiptError::Unsigned);
        }
        let body = self.parsed_body()?;
        verify_signed(
            &self.body,
            &self.signature,
            &self.certificate,
            ca_pem,
            body.issued_ms,
        )?;
        Ok(body)
    }
}

/// Checks a document the cluster's signer signed: `certificate` was issued
/// by the CA in `ca_pem` as the cluster's signer and was valid at
/// `signed_ms`, and `signature` (hex, ECDSA P-256 SHA-256, DER) is its
/// key's over `body`.
pub fn verify_signed(
    body: &str,
    signature: &str,
    certificate: &str,
    ca_pem: &str,
    signed_ms: u64,
) -> Result<(), ReceiptError> {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
    let ca_der = parse_pem(ca_pem, "the CA file").map_err(ReceiptError::Ca)?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| ReceiptError::Ca(format!("not an X.509 certificate: {e}")))?;
    let signer_der =
        parse_pem(certificate, "the signing certificate").map_err(ReceiptError::Certificate)?;
    let (_, signer) = x509_parser::parse_x509_certificate(&signer_der)
        .map_err(|e| ReceiptError::Certificate(format!("not an X.509 certificate: {e}")))?;
    let cert_err = |m: &str| ReceiptError::Certificate(m.to_string());
    // Issued by this CA: the CA's key signed the certificate.
    let ca_key = ca.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, ca_key)
        .verify(
            signer.tbs_certificate.as_ref(),
            signer.signature_value.data.as_ref(),
        )
        .map_err(|_| cert_err("not issued by this CA"))?;
    // The cluster's signer, not a node or client certificate.
    let cn = signer
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok());
    let eku = signer
        .extended_key_usage()
        .map_err(|e| ReceiptError::Certificate(e.to_string()))?;
    let signs_code_only = eku.is_some_and(|e| {
        let e = e.value;
        e.code_signing && !e.server_auth && !e.client_auth && !e.any
    });
    if cn != Some(SIGNER_COMMON_NAME) || !signs_code_only || signer.is_ca() {
        return Err(cert_err("not a receipt signing certificate"));
    }
    let signed_s = i64::try_from(signed_ms / 1000).unwrap_or(i64::MAX);
    let validity = signer.validity();
    if signed_s < validity.not_before.timestamp() || signed_s > validity.not_after.timestamp() {
        return Err(cert_err("not valid when the document was signed"));
    }
    let signature = hex::decode(signature)
        .map_err(|_| ReceiptError::Malformed("signature is not hex".into()))?;
    let key = signer.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
        .verify(body.as_bytes(), &signature)
        .map_err(|_| ReceiptError::Signature)
}
