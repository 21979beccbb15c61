//! Issuing: the cluster CA, node and client certificates, written to files
//! with safe permissions.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::*;

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
pub(super) fn addr_san(addr: &str) -> Result<SanType, TlsError> {
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
    // A wildcard, `*.<name of two labels or more>`, names every bucket
    // of a virtual-hosted S3 domain.
    let named = match host.strip_prefix("*.") {
        Some(under) => (under.split('.').count() >= 2).then_some(under),
        None => Some(host),
    };
    if !named.is_some_and(|n| !n.is_empty() && n.len() <= 253 && n.split('.').all(label_ok)) {
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
    let issuer = load_issuer(ca_dir)?;
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
    params.extended_key_usages = match subject {
        Subject::Node { .. } => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Subject::Client { .. } => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    sign_leaf(params, key, &issuer, validity)
}

/// Issues the cluster's receipt signing certificate from the CA in
/// `ca_dir`: common name [`tresor_client::receipt::SIGNER_COMMON_NAME`],
/// extended key usage code signing only (no TLS peer accepts it).
pub fn issue_signer_pem(ca_dir: &Path, validity: Validity) -> Result<IssuedPem, TlsError> {
    if validity.not_after <= validity.not_before {
        return Err(TlsError::Invalid(
            "a certificate must end after it begins".into(),
        ));
    }
    let issuer = load_issuer(ca_dir)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_error)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        tresor_client::receipt::SIGNER_COMMON_NAME,
    );
    dn.push(DnType::OrganizationName, "tresor");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    sign_leaf(params, key, &issuer, validity)
}

/// Signs `params` (a leaf: no CA, digital signatures only) for `key` by
/// `issuer`, valid for `validity`, with a random serial.
fn sign_leaf(
    mut params: CertificateParams,
    key: KeyPair,
    issuer: &Issuer<'static, KeyPair>,
    validity: Validity,
) -> Result<IssuedPem, TlsError> {
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
    params.serial_number = Some(random_serial());
    let cert = params.signed_by(&key, issuer).map_err(generate_error)?;
    Ok(IssuedPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The CA in `ca_dir`, checked to be a CA whose key matches it.
fn load_issuer(ca_dir: &Path) -> Result<Issuer<'static, KeyPair>, TlsError> {
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
    Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| file_error(&files.cert, format!("not a usable CA certificate: {e}")))
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
    let stem = subject.file_stem();
    let files = CertFiles {
        cert: out_dir.join(format!("{stem}.pem")),
        key: out_dir.join(format!("{stem}.key")),
    };
    write_issued(out_dir, &issued, files)
}

/// Issues the receipt signing certificate from the CA in `ca_dir` and
/// writes it to `out_dir` as `signer.pem` and `signer.key` (replacing
/// earlier ones: receipts signed before stay verifiable with the CA).
pub fn issue_signer(
    ca_dir: &Path,
    out_dir: &Path,
    validity: Validity,
) -> Result<CertFiles, TlsError> {
    let issued = issue_signer_pem(ca_dir, validity)?;
    let files = CertFiles {
        cert: out_dir.join(super::SIGNER_CERT_FILE),
        key: out_dir.join(super::SIGNER_KEY_FILE),
    };
    write_issued(out_dir, &issued, files)
}

/// Writes `issued` to `files` in `out_dir` (created if missing), the key
/// first (mode 0600), replacing earlier ones.
fn write_issued(
    out_dir: &Path,
    issued: &IssuedPem,
    files: CertFiles,
) -> Result<CertFiles, TlsError> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| file_error(out_dir, format!("cannot create: {e}")))?;
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
