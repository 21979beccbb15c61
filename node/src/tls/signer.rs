//! The receipt signer: the cluster's signing certificate (issued by the CA
//! with `tresor-node ca issue --signer`) and its private key, read from the
//! files `[security] signer_cert` and `signer_key` name. Every node holds
//! them, like the master key, so that any leader can sign; they are never
//! in the replicated state.

use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use tresor_client::receipt::SignedReceipt;

use super::{file_error, TlsError};

/// File names `tresor-node ca issue --signer` writes.
pub const SIGNER_CERT_FILE: &str = "signer.pem";
/// See [`SIGNER_CERT_FILE`].
pub const SIGNER_KEY_FILE: &str = "signer.key";

/// Signs deletion receipts.
pub struct ReceiptSigner {
    key: EcdsaKeyPair,
    cert_pem: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSigner").finish_non_exhaustive()
    }
}

impl ReceiptSigner {
    /// Reads the certificate and its PKCS#8 key (PEM) and checks that they
    /// belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| file_error(p, format!("cannot read: {e}")))
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        Self::from_pem(&cert_pem, &key_pem).map_err(|m| file_error(key, m))
    }

    /// From PEM text; the error says what is wrong.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("not a PKCS#8 PEM private key: {e}"))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| format!("not an ECDSA P-256 key: {e}"))?;
        let cert_der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("the signer certificate is not PEM: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der.as_ref())
            .map_err(|e| format!("the signer certificate is not X.509: {e}"))?;
        use ring::signature::KeyPair as _;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key().as_ref() {
            return Err("the signer key does not belong to the signer certificate".into());
        }
        Ok(Self {
            key,
            cert_pem: cert_pem.to_string(),
            rng,
        })
    }

    /// Signs `body` (a receipt, a custody bundle) as its JSON text.
    pub fn sign<T: serde::Serialize>(&self, body: &T) -> Result<SignedReceipt, String> {
        let text = serde_json::to_string(body).map_err(|e| e.to_string())?;
        let signature = self
            .key
            .sign(&self.rng, text.as_bytes())
            .map_err(|e| format!("signing failed: {e}"))?;
        Ok(SignedReceipt {
            body: text,
            signature: hex::encode(signature.as_ref()),
            certificate: self.cert_pem.clone(),
        })
    }
}

/// A receipt or bundle of a cluster without a signer (`insecure = true`).
pub fn unsigned<T: serde::Serialize>(body: &T) -> Result<SignedReceipt, String> {
    Ok(SignedReceipt {
        body: serde_json::to_string(body).map_err(|e| e.to_string())?,
        signature: String::new(),
        certificate: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{init_ca, issue_pem, issue_signer_pem, Subject, Validity};
    use tresor_client::receipt::{ReceiptBody, ReceiptError};

    fn body() -> ReceiptBody {
        ReceiptBody {
            version: 1,
            cluster_id: "c".into(),
            bucket: "footage".into(),
            key: "cam-1/clip.mp4".into(),
            object_id: "00".repeat(16),
            size: 4096,
            sha256: "ab".repeat(32),
            ingested_ms: 1,
            ingested_by: "ingest".into(),
            deleted_ms: 2,
            deleted_by: "system:retention".into(),
            reason: "retention policy bodycam".into(),
            audit_seq: 7,
            shard_files_removed: 6,
            holders_unreached: vec![],
            data_key_removed: true,
            key_epoch: Some("e:0123456789abcdef".into()),
            key_destroyed_ms: Some(1_700_000_000_500),
            issued_ms: crate::meta::now_ms(),
        }
    }

    fn ca_pem(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(crate::tls::CA_CERT_FILE)).expect("ca")
    }

    /// A signed receipt verifies against its CA; a changed body, a changed
    /// signature, another CA and a node certificate used as signer fail,
    /// each naming what failed.
    #[test]
    fn receipts_verify_and_tampering_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
        init_ca(&ours).expect("ca");
        init_ca(&theirs).expect("ca");
        let validity = Validity::days(1);
        let issued = issue_signer_pem(&ours, validity).expect("signer");
        let signer = ReceiptSigner::from_pem(&issued.cert_pem, &issued.key_pem).expect("load");
        let signed = signer.sign(&body()).expect("sign");
        assert_eq!(signed.verify(&ca_pem(&ours)), Ok(body_with(&signed)));
        // One byte of the body changed.
        let mut altered = signed.clone();
        altered.body = altered.body.replace("\"size\":4096", "\"size\":4097");
        assert_ne!(altered.body, signed.body);
        assert_eq!(altered.verify(&ca_pem(&ours)), Err(ReceiptError::Signature));
        // The signature changed.
        let mut forged = signed.clone();
        let last = forged.signature.pop().expect("hex");
        forged.signature.push(if last == '0' { '1' } else { '0' });
        assert_eq!(forged.verify(&ca_pem(&ours)), Err(ReceiptError::Signature));
        // Another cluster's CA.
        assert!(matches!(
            signed.verify(&ca_pem(&theirs)),
            Err(ReceiptError::Certificate(m)) if m.contains("not issued by this CA")
        ));
        // Signed by another cluster's signer, checked against ours.
        let other = issue_signer_pem(&theirs, validity).expect("signer");
        let other = ReceiptSigner::from_pem(&other.cert_pem, &other.key_pem).expect("load");
        let foreign = other.sign(&body()).expect("sign");
        assert!(matches!(
            foreign.verify(&ca_pem(&ours)),
            Err(ReceiptError::Certificate(_))
        ));
        // A node certificate of the same CA is not a signer.
        let node = issue_pem(
            &ours,
            &Subject::Node {
                id: 1,
                addrs: vec!["127.0.0.1".into()],
            },
            validity,
        )
        .expect("node");
        let node = ReceiptSigner::from_pem(&node.cert_pem, &node.key_pem).expect("load");
        assert!(matches!(
            node.sign(&body()).expect("sign").verify(&ca_pem(&ours)),
            Err(ReceiptError::Certificate(m)) if m.contains("not a receipt signing")
        ));
        // Unsigned receipts say so.
        assert_eq!(
            unsigned(&body()).expect("body").verify(&ca_pem(&ours)),
            Err(ReceiptError::Unsigned)
        );
        // A key that is not the certificate's.
        assert!(ReceiptSigner::from_pem(&issued.cert_pem, &other_key(&theirs)).is_err());
    }

    /// A custody bundle verifies; an altered entry, a broken link, an
    /// entry of another object, other footage and another CA fail, each
    /// named.
    #[test]
    fn custody_bundles_verify_and_tampering_is_named() {
        use crate::meta::audit::{chain, AuditRecord};
        use tresor_client::custody::{verify_bundle, CustodyBody, CustodyError, CustodyObject};
        let dir = tempfile::tempdir().expect("tempdir");
        let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
        init_ca(&ours).expect("ca");
        init_ca(&theirs).expect("ca");
        let issued = issue_signer_pem(&ours, Validity::days(1)).expect("signer");
        let signer = ReceiptSigner::from_pem(&issued.cert_pem, &issued.key_pem).expect("load");
        let record = |action: &str, key: &str| AuditRecord {
            time_ms: 5,
            node: 1,
            principal: "investigator-7".into(),
            action: action.into(),
            bucket: "footage".into(),
            key: key.into(),
            object_sha256: "ab".repeat(32),
            outcome: "ok".into(),
        };
        let first = chain(7, record("put", "clip"), &"11".repeat(32));
        let second = chain(8, record("get", "clip"), &first.hash);
        let later = chain(12, record("stat", "clip"), &"22".repeat(32));
        let body = CustodyBody {
            version: 1,
            cluster_id: "c".into(),
            bucket: "footage".into(),
            key: "clip".into(),
            object: Some(CustodyObject {
                object_id: "00".repeat(16),
                size: 10,
                sha256: "ab".repeat(32),
                content_type: "video/mp4".into(),
                metadata: [("officer".to_string(), "4711".to_string())].into(),
                ingested_ms: 5,
                ingested_by: "cam-gateway".into(),
                retention_policy: None,
                keep_until_ms: None,
                delete_at_ms: None,
            }),
            receipt: None,
            holds: vec![],
            entries: vec![first.custody(), second.custody(), later.custody()],
            entries_complete: true,
            head_seq: 20,
            head_hash: "33".repeat(32),
            anchor: None,
            exported_by: "custodian".into(),
            exported_ms: crate::meta::now_ms(),
        };
        let ca = ca_pem(&ours);
        let sign = |b: &CustodyBody| signer.sign(b).expect("sign");
        let ok = verify_bundle(&sign(&body), &ca, Some(&"AB".repeat(32)), None).expect("verifies");
        assert_eq!((ok.body, ok.anchor), (body.clone(), None));
        // An entry's field altered after it was chained.
        let mut altered = body.clone();
        altered.entries[1].principal = "someone-else".into();
        assert_eq!(
            verify_bundle(&sign(&altered), &ca, None, None),
            Err(CustodyError::Entry { seq: 8 })
        );
        // Consecutive entries that do not link.
        let mut unlinked = body.clone();
        unlinked.entries[1] = chain(8, record("get", "clip"), &"44".repeat(32)).custody();
        assert!(matches!(
            verify_bundle(&sign(&unlinked), &ca, None, None),
            Err(CustodyError::Chain { seq: 8, .. })
        ));
        // Another object's entry.
        let mut foreign = body.clone();
        foreign
            .entries
            .push(chain(13, record("get", "other"), &later.hash).custody());
        assert!(matches!(
            verify_bundle(&sign(&foreign), &ca, None, None),
            Err(CustodyError::OtherObject { seq: 13, .. })
        ));
        // Other footage.
        assert!(matches!(
            verify_bundle(&sign(&body), &ca, Some(&"cd".repeat(32)), None),
            Err(CustodyError::Footage { .. })
        ));
        // The signed text changed after signing.
        let mut edited = sign(&body);
        edited.body = edited.body.replace("investigator-7", "investigator-8");
        assert_eq!(
            verify_bundle(&edited, &ca, None, None),
            Err(CustodyError::Signed(ReceiptError::Signature))
        );
        // Another cluster's CA.
        assert!(matches!(
            verify_bundle(&sign(&body), &ca_pem(&theirs), None, None),
            Err(CustodyError::Signed(ReceiptError::Certificate(_)))
        ));
    }

    fn body_with(signed: &SignedReceipt) -> ReceiptBody {
        signed.parsed_body().expect("body")
    }

    fn other_key(ca: &Path) -> String {
        issue_signer_pem(ca, Validity::days(1))
            .expect("signer")
            .key_pem
    }
}
