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

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
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

/// Paths of a certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (mode 0600).
    pub key: PathBuf,
}

/// Where the CA certificate and key of CA directory `dir` are.
pub fn ca_files(dir: &Path) -> CertFiles {
    CertFiles {
        cert: dir.join(CA_CERT_FILE),
        key: dir.join(CA_KEY_FILE),
    }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before this time.
    pub not_before: SystemTime,
    /// Not valid after this time.
    pub not_after: SystemTime,
}

impl Validity {
    /// From five minutes ago (for clocks slightly behind) for `days` days.
    pub fn days(days: u32) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - Duration::from_secs(300),
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }
}

/// What a certificate is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Node `id`, reachable at `addrs` (`host` or `host:port`; IP addresses
    /// become IP SANs, names DNS SANs).
    Node {
        /// The node id.
        id: u64,
        /// Addresses others use to reach it.
        addrs: Vec<String>,
    },
    /// Client principal `name`.
    Client {
        /// The principal name.
        name: String,
    },
}

impl Subject {
    /// The identity the certificate will carry.
    pub fn identity(&self) -> PeerIdentity {
        match self {
            Subject::Node { id, .. } => PeerIdentity::Node(*id),
            Subject::Client { name } => PeerIdentity::Client(name.clone()),
        }
    }

    /// File name stem: `node-<ID>` or `client-<NAME>`.
    pub fn file_stem(&self) -> String {
        match self {
            Subject::Node { id, .. } => format!("node-{id}"),
            Subject::Client { name } => format!("client-{name}"),
        }
    }

    fn check(&self) -> Result<Vec<SanType>, TlsError> {
        let uri = |u: String| -> Result<SanType, TlsError> {
            Ok(SanType::URI(u.try_into().map_err(|_| {
                TlsError::Invalid("identity URI is not ASCII".into())
            })?))
        };
        match self {
            Subject::Node { id, addrs } => {
                if *id == 0 {
                    return Err(TlsError::Invalid("node ids start at 1".into()));
                }
                if addrs.is_empty() {
                    return Err(TlsError::Invalid(
                        "a node certificate needs at least one --addr".into(),
                    ));
                }
                let mut sans = addrs
                    .iter()
                    .map(|a| addr_san(a))
                    .collect::<Result<Vec<_>, _>>()?;
                sans.dedup();
                sans.push(uri(self.identity().uri())?);
                Ok(sans)
            }
            Subject::Client { name } => {
                validate_principal_name(name).map_err(TlsError::Invalid)?;
                Ok(vec![uri(self.identity().uri())?])
            }
        }
    }
}

/// The SAN for `host` or `host:port` (`[v6]:port` too): IP or DNS name.
fn addr_san(addr: &str) -> Result<SanType, TlsError> {
    let bad = |why: &str| TlsError::Invalid(format!("address {addr:?}: {why}"));
    let addr = addr.trim();
    let host = if let Some(rest) = addr.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port)) {
            return Err(bad("expected [IPv6] or [IPv6]:port"));
        }
        host
    } else if addr.parse::<IpAddr>().is_ok() {
        addr
    } else {
        match addr.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return Err(bad("the part after ':' is not a port")),
            None => addr,
        }
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad("not an IP address or DNS name"));
    }
    Ok(SanType::DnsName(
        host.to_ascii_lowercase()
            .try_into()
            .map_err(|_| bad("not a DNS name"))?,
    ))
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.parse::<u16>().is_ok()
}

fn random_serial() -> SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and of full length
    SerialNumber::from_slice(&bytes)
}

fn generate_error(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// Creates a new cluster CA in `dir` (created if missing): `ca.pem` and
/// `ca.key` (mode 0600). Refuses if either file exists: replacing a CA
/// would lock every node and client out.
pub fn init_ca(dir: &Path) -> Result<CertFiles, TlsError> {
    let files = ca_files(dir);
    for path in [&files.cert, &files.key] {
        if path.exists() {
            return Err(file_error(
                path,
                "already exists; refusing to replace the cluster CA",
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, format!("cannot create: {e}")))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_error)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tresor cluster CA");
    dn.push(DnType::OrganizationName, "tresor");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let validity = Validity::days(CA_VALIDITY_DAYS);
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(generate_error)?;
    // The key first: a CA certificate without its key is useless, a key
    // without a certificate is cleaned up by hand.
    write_file(&files.key, key.serialize_pem().as_bytes(), 0o600, false)?;
    write_file(&files.cert, cert.pem().as_bytes(), 0o644, false)?;
    Ok(files)
}

/// A certificate and key, PEM, in memory.
#[derive(Clone)]
pub struct IssuedPem {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for IssuedPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Issues a certificate for `subject` from the CA in `ca_dir`, valid for
/// `validity` (which may lie in the past, for tests of expiry).
pub fn issue_pem(
    ca_dir: &Path,
    subject: &Subject,
    validity: Validity,
) -> Result<IssuedPem, TlsError> {
    if validity.not_after <= validity.not_before {
        return Err(TlsError::Invalid(
            "a certificate must end after it begins".into(),
        ));
    }
    let sans = subject.check()?;
    let files = ca_files(ca_dir);
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            file_error(
                path,
                format!("cannot read ({e}); create a CA with `tresor-node ca init`"),
            )
        })
    };
    let ca_pem = read(&files.cert)?;
    let ca_key_pem = read(&files.key)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| file_error(&files.key, format!("not a usable private key: {e}")))?;
    check_key_matches(&files.cert, &ca_pem, &ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| file_error(&files.cert, format!("not a usable CA certificate: {e}")))?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_error)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        match subject {
            Subject::Node { id, .. } => format!("tresor node {id}"),
            Subject::Client { name } => format!("tresor client {name}"),
        },
    );
    dn.push(DnType::OrganizationName, "tresor");
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match subject {
        Subject::Node { .. } => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Subject::Client { .. } => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
    params.serial_number = Some(random_serial());
    let cert = params.signed_by(&key, &issuer).map_err(generate_error)?;
    Ok(IssuedPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Refuses a CA key that does not belong to the CA certificate: every
/// certificate it signed would fail to verify.
fn check_key_matches(cert_path: &Path, cert_pem: &str, key: &KeyPair) -> Result<(), TlsError> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| file_error(cert_path, format!("not a PEM certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| file_error(cert_path, format!("not an X.509 certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(file_error(cert_path, "is not a CA certificate"));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(file_error(
            cert_path,
            format!("does not belong to the key in {CA_KEY_FILE}"),
        ));
    }
    Ok(())
}

/// Issues a certificate for `subject` from the CA in `ca_dir` and writes it
/// to `out_dir` as `<stem>.pem` and `<stem>.key` (see
/// [`Subject::file_stem`]), replacing earlier ones.
pub fn issue(
    ca_dir: &Path,
    out_dir: &Path,
    subject: &Subject,
    validity: Validity,
) -> Result<CertFiles, TlsError> {
    let issued = issue_pem(ca_dir, subject, validity)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| file_error(out_dir, format!("cannot create: {e}")))?;
    let stem = subject.file_stem();
    let files = CertFiles {
        cert: out_dir.join(format!("{stem}.pem")),
        key: out_dir.join(format!("{stem}.key")),
    };
    write_file(&files.key, issued.key_pem.as_bytes(), 0o600, true)?;
    write_file(&files.cert, issued.cert_pem.as_bytes(), 0o644, true)?;
    Ok(files)
}

/// Writes `bytes` to `path` with `mode`, atomically (temp file and rename)
/// so a reader never sees half a key; `replace` false refuses an existing
/// file.
fn write_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| file_error(path, format!("cannot write: {e}"));
    // Created 0600, so a key is never readable by others, not even briefly.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    if replace {
        tmp.persist(path).map_err(|e| fail(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| fail(e.error))?;
    }
    // The rename is durable only once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .as_ref()
            .to_vec()
    }

    #[test]
    fn principal_names() {
        for ok in ["admin", "cam-01", "a", "0.b_c-d", &"x".repeat(64)] {
            validate_principal_name(ok).expect(ok);
        }
        for bad in [
            "",
            "Admin",
            "../../etc",
            "-x",
            ".x",
            "_x",
            "a b",
            "a/b",
            &"x".repeat(65),
        ] {
            assert!(validate_principal_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identity_uris() {
        assert_eq!(
            PeerIdentity::from_uri("urn:tresor:node:7"),
            Some(PeerIdentity::Node(7))
        );
        assert_eq!(
            PeerIdentity::from_uri("urn:tresor:client:cam-1"),
            Some(PeerIdentity::Client("cam-1".into()))
        );
        for bad in [
            "urn:tresor:node:0",
            "urn:tresor:node:+7",
            "urn:tresor:node:",
            "urn:tresor:client:../x",
            "urn:other:node:1",
        ] {
            assert_eq!(PeerIdentity::from_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn addresses_become_sans() {
        let ip = |s: &str| SanType::IpAddress(s.parse().expect("ip"));
        assert_eq!(addr_san("127.0.0.1:7001").expect("v4"), ip("127.0.0.1"));
        assert_eq!(addr_san("10.0.0.2").expect("v4"), ip("10.0.0.2"));
        assert_eq!(addr_san("[::1]:7001").expect("v6"), ip("::1"));
        assert_eq!(addr_san("::1").expect("v6"), ip("::1"));
        assert_eq!(
            addr_san("Node1.example:7001").expect("dns"),
            SanType::DnsName("node1.example".try_into().expect("ia5"))
        );
        for bad in ["", "a b", "host:port", "-x.example", "[::1", "x:99999"] {
            assert!(addr_san(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ca_issues_node_and_client_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = init_ca(dir.path()).expect("init");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ca.key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = init_ca(dir.path()).expect_err("second init");
        assert!(err.to_string().contains("refusing to replace"), "{err}");

        let node = Subject::Node {
            id: 3,
            addrs: vec!["127.0.0.1:7003".into(), "n3.example".into()],
        };
        let files = issue(dir.path(), dir.path(), &node, Validity::days(1)).expect("node");
        assert_eq!(files.cert, dir.path().join("node-3.pem"));
        let mode = std::fs::metadata(&files.key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = std::fs::read_to_string(&files.cert).expect("read");
        assert_eq!(
            identity_of_certificate(&der(&pem)),
            Some(PeerIdentity::Node(3))
        );
        let node_der = der(&pem);
        let (_, parsed) = x509_parser::parse_x509_certificate(&node_der).expect("parse");
        let sans = format!("{:?}", parsed.subject_alternative_name());
        assert!(
            sans.contains("127.0.0.1") || sans.contains("[127, 0, 0, 1]"),
            "{sans}"
        );
        assert!(sans.contains("n3.example"), "{sans}");
        let eku = parsed
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value;
        assert!(eku.server_auth && eku.client_auth);

        let client = Subject::Client {
            name: "cam-1".into(),
        };
        let issued = issue_pem(dir.path(), &client, Validity::days(1)).expect("client");
        assert_eq!(
            identity_of_certificate(&der(&issued.cert_pem)),
            Some(PeerIdentity::Client("cam-1".into()))
        );
        let bad = Subject::Client {
            name: "../../etc".into(),
        };
        assert!(issue(dir.path(), dir.path(), &bad, Validity::days(1)).is_err());
        assert!(!dir.path().join("client-../../etc.pem").exists());
    }

    #[test]
    fn expired_validity_is_allowed_for_tests() {
        let dir = tempfile::tempdir().expect("tempdir");
        init_ca(dir.path()).expect("init");
        let now = SystemTime::now();
        let past = Validity {
            not_before: now - Duration::from_secs(2 * 86_400),
            not_after: now - Duration::from_secs(86_400),
        };
        let client = Subject::Client { name: "old".into() };
        let issued = issue_pem(dir.path(), &client, past).expect("issue");
        let old_der = der(&issued.cert_pem);
        let (_, parsed) = x509_parser::parse_x509_certificate(&old_der).expect("parse");
        assert!(!parsed.validity().is_valid());
    }

    #[test]
    fn node_tls_checks_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = init_ca(dir.path()).expect("init");
        let node = Subject::Node {
            id: 2,
            addrs: vec!["127.0.0.1".into()],
        };
        let files = issue(dir.path(), dir.path(), &node, Validity::days(1)).expect("node");
        let security = SecurityConfig {
            insecure: false,
            ca: Some(ca.cert.clone()),
            cert: Some(files.cert.clone()),
            key: Some(files.key.clone()),
            ..Default::default()
        };
        NodeTls::load(&security, 2).expect("own cert");
        let err = NodeTls::load(&security, 5).expect_err("other node");
        assert!(err.to_string().contains("names node 2"), "{err}");
        let missing = SecurityConfig {
            key: Some(dir.path().join("nope.key")),
            ..security
        };
        let err = NodeTls::load(&missing, 2).expect_err("missing key");
        assert!(err.to_string().contains("nope.key"), "{err}");
    }

    #[test]
    fn mismatched_ca_key_is_refused() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        init_ca(a.path()).expect("a");
        init_ca(b.path()).expect("b");
        std::fs::copy(b.path().join(CA_KEY_FILE), a.path().join(CA_KEY_FILE)).expect("copy");
        let client = Subject::Client { name: "x".into() };
        let err = issue_pem(a.path(), &client, Validity::days(1)).expect_err("mismatch");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }
}
