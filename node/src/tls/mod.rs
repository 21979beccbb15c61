//! Transport security: the cluster CA, node and client certificates, and
//! who is at the other end of a connection.
//!
//! A cluster trusts exactly one CA (`security.ca` in each node's config).
//! `tresor-node ca init` makes one ([`init_ca`]); `tresor-node ca issue`
//! issues node and client certificates from it ([`issue`]). Keys are ECDSA
//! P-256, signatures ECDSA with SHA-256 (BSI TR-02102-1); TLS itself is
//! configured in `tresor_client::channel` (TLS 1.3, 1.2 fallback, AES-GCM).
//!
//! # Bringing your own PKI
//!
//! Operators may issue certificates from their own CA instead. tresor reads
//! the identity of a caller from a URI subject alternative name, so every
//! certificate must carry exactly one of:
//!
//! - `urn:tresor:node:<ID>` for node `<ID>` (the `node_id` of its config).
//!   A node certificate also needs a DNS or IP SAN for every address other
//!   nodes and clients use to reach it, and the extended key usages
//!   serverAuth and clientAuth (it serves, and it calls other nodes).
//! - `urn:tresor:client:<NAME>` for principal `<NAME>` (1–64 characters of
//!   `a-z 0-9 . _ -`, starting with a letter or digit), with extended key
//!   usage clientAuth.
//!
//! Node and client certificates must chain to the CA named in the nodes'
//! `security.ca`. A certificate without such a URI is accepted by TLS but
//! identifies no one: internal RPCs refuse it, and public calls then need a
//! bearer token.

#[cfg(test)]
mod anchor_tests;
mod pki;
mod signer;
#[cfg(test)]
mod tests;

pub use pki::*;
pub use signer::{unsigned, ReceiptSigner, SIGNER_CERT_FILE, SIGNER_KEY_FILE};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::SecurityConfig;

/// URI SAN prefix naming a node: `urn:tresor:node:<ID>`.
pub const NODE_URI_PREFIX: &str = "urn:tresor:node:";
/// URI SAN prefix naming a client principal: `urn:tresor:client:<NAME>`.
pub const CLIENT_URI_PREFIX: &str = "urn:tresor:client:";
/// Days a node or client certificate is valid unless told otherwise.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;
/// Days the cluster CA's certificate is valid.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// File name of the CA certificate in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Why a certificate could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read, written or parsed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An argument (name, address, validity) is refused.
    #[error("{0}")]
    Invalid(String),
    /// Key generation or signing failed.
    #[error("cannot make the certificate: {0}")]
    Generate(String),
}

fn file_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Who a verified peer certificate says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A node of the cluster (certificate issued with `ca issue --node ID`).
    Node(u64),
    /// A client (certificate issued with `ca issue --client NAME`); the name
    /// is the principal.
    Client(String),
}

impl PeerIdentity {
    /// The URI SAN that names this identity in a certificate.
    pub fn uri(&self) -> String {
        match self {
            PeerIdentity::Node(id) => format!("{NODE_URI_PREFIX}{id}"),
            PeerIdentity::Client(name) => format!("{CLIENT_URI_PREFIX}{name}"),
        }
    }

    /// The identity a URI names, if it is a well-formed tresor URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        if let Some(id) = uri.strip_prefix(NODE_URI_PREFIX) {
            let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
            return match id.parse::<u64>() {
                Ok(id) if valid && id > 0 => Some(PeerIdentity::Node(id)),
                _ => None,
            };
        }
        let name = uri.strip_prefix(CLIENT_URI_PREFIX)?;
        validate_principal_name(name).ok()?;
        Some(PeerIdentity::Client(name.to_string()))
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Node(id) => write!(f, "node {id}"),
            PeerIdentity::Client(name) => write!(f, "client {name}"),
        }
    }
}

/// Checks a principal (client) name: 1–64 characters of lowercase letters,
/// digits, `.`, `_` and `-`, starting with a letter or digit — the rule of
/// principals in the replicated state, so a certificate can name any
/// principal and nothing else.
pub fn validate_principal_name(name: &str) -> Result<(), String> {
    crate::meta::validate_principal_name(name).map_err(|e| e.to_string())
}

/// The identity in a DER certificate's URI SANs: the one `urn:tresor:…`
/// URI it holds. `None` without one, or with several (ambiguous).
pub fn identity_of_certificate(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("urn:tresor:") => {
                Some(PeerIdentity::from_uri(uri))
            }
            _ => None,
        });
    let first = found.next()??;
    match found.next() {
        None => Some(first),
        Some(_) => None,
    }
}

/// The identity in the caller's verified certificate, if it presented one.
/// The TLS layer has already checked that the certificate chains to the
/// cluster CA; requests over plaintext have none.
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<PeerIdentity> {
    let certs = request.peer_certs()?;
    identity_of_certificate(certs.first()?.as_ref())
}

/// A node's TLS material, read and checked at start.
#[derive(Clone)]
pub struct NodeTls {
    /// The cluster CA, PEM.
    pub ca_pem: Vec<u8>,
    /// The node's certificate, PEM.
    pub cert_pem: Vec<u8>,
    /// The node's private key, PEM.
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTls").finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Reads `security.ca`, `security.cert` and `security.key`, and checks
    /// that they parse, that the certificate is valid now and that it names
    /// node `node_id`. Errors name the file and the config field.
    pub fn load(security: &SecurityConfig, node_id: u64) -> Result<Self, TlsError> {
        let path = |field: &str, p: &Option<PathBuf>| {
            p.clone().ok_or_else(|| {
                TlsError::Invalid(format!(
                    "security.{field} is required unless security.insecure = true"
                ))
            })
        };
        let ca_path = path("ca", &security.ca)?;
        let cert_path = path("cert", &security.cert)?;
        let key_path = path("key", &security.key)?;
        let read = |field: &str, p: &Path| {
            std::fs::read(p)
                .map_err(|e| file_error(p, format!("security.{field}: cannot read: {e}")))
        };
        let ca_pem = read("ca", &ca_path)?;
        let cert_pem = read("cert", &cert_path)?;
        let key_pem = read("key", &key_path)?;
        let certs = |p: &Path, pem: &[u8], field: &str| {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(p, format!("security.{field}: not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(file_error(
                    p,
                    format!("security.{field}: holds no PEM certificate"),
                ));
            }
            Ok(certs)
        };
        certs(&ca_path, &ca_pem, "ca")?;
        let own = certs(&cert_path, &cert_pem, "cert")?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            file_error(
                &key_path,
                format!("security.key: not a PEM private key: {e}"),
            )
        })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(own[0].as_ref())
            .map_err(|e| file_error(&cert_path, format!("security.cert: not X.509: {e}")))?;
        if !parsed.validity().is_valid() {
            return Err(file_error(
                &cert_path,
                format!(
                    "security.cert: not valid now (valid from {} to {}); issue a new one with `tresor-node ca issue`",
                    parsed.validity().not_before,
                    parsed.validity().not_after
                ),
            ));
        }
        match identity_of_certificate(own[0].as_ref()) {
            Some(PeerIdentity::Node(id)) if id == node_id => {}
            other => {
                return Err(file_error(
                    &cert_path,
                    format!(
                        "security.cert: names {}, but this is node {node_id} (it needs the URI SAN {NODE_URI_PREFIX}{node_id})",
                        other.map_or("no tresor identity".to_string(), |i| i.to_string())
                    ),
                ))
            }
        }
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// The server side: this node's certificate, client certificates
    /// verified against the CA when presented. Presenting one is optional,
    /// because public callers may authenticate with a bearer token instead;
    /// internal services check for a node certificate themselves.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tresor_client::channel::install_crypto_provider();
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(true)
            .timeout(Duration::from_secs(10))
    }

    /// The S3 port's side: this node's certificate, HTTP/2 or HTTP/1.1,
    /// no client certificates (S3 requests carry a SigV4 signature).
    pub fn s3_server_config(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Invalid(format!("security.cert: not PEM: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| TlsError::Invalid(format!("security.key: not a PEM private key: {e}")))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Invalid(format!("security.cert and security.key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(std::sync::Arc::new(config))
    }

    /// The client side: what this node presents when it calls other nodes.
    pub fn credentials(&self) -> Result<tresor_client::Credentials, tresor_client::ClientError> {
        tresor_client::Credentials::new(
            Some(self.ca_pem.clone()),
            Some((self.cert_pem.clone(), self.key_pem.clone())),
            None,
        )
    }
}

/// The node's `ServerTlsConfig` from its security config (see
/// [`NodeTls::server_config`]).
pub fn server_tls_config(
    security: &SecurityConfig,
    node_id: u64,
) -> Result<tonic::transport::ServerTlsConfig, TlsError> {
    Ok(NodeTls::load(security, node_id)?.server_config())
}
