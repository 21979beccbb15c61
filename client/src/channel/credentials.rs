//! What a connection presents: the cluster CA, an optional client
//! certificate and an optional bearer token — read from files or the
//! environment, checked before use, and the process-wide default.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::metadata::{Ascii, MetadataValue};

use super::ClientError;

/// Environment variable naming the cluster CA's PEM file.
pub const ENV_CA: &str = "TRESOR_CA";
/// Environment variable naming the client certificate's PEM file.
pub const ENV_CERT: &str = "TRESOR_CERT";
/// Environment variable naming the client certificate's private key file.
pub const ENV_KEY: &str = "TRESOR_KEY";
/// Environment variable holding a bearer token.
pub const ENV_TOKEN: &str = "TRESOR_TOKEN";

/// What a connection presents: the CA that a node's certificate must be
/// issued by, an optional client certificate, an optional bearer token.
///
/// `Debug` never shows the private key or the token.
#[derive(Clone, Default)]
pub struct Credentials {
    pub(super) ca_pem: Option<Vec<u8>>,
    pub(super) identity: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Credentials {
    /// No TLS and no authentication: for clusters run with `insecure = true`.
    pub fn none() -> Self {
        Self::default()
    }

    /// Credentials from PEM bytes already in memory. A client certificate or
    /// a token needs the CA (they are only ever sent over TLS); the
    /// certificate and key must parse.
    pub fn new(
        ca_pem: Option<Vec<u8>>,
        identity: Option<(Vec<u8>, Vec<u8>)>,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let fail = |m: &str| Err(ClientError::Credentials(m.to_string()));
        if let Some(ca) = &ca_pem {
            check_certificates(ca).map_err(|e| ClientError::Credentials(format!("CA: {e}")))?;
        }
        if let Some((cert, key)) = &identity {
            check_certificates(cert)
                .map_err(|e| ClientError::Credentials(format!("client certificate: {e}")))?;
            check_key(key).map_err(|e| ClientError::Credentials(format!("client key: {e}")))?;
        }
        if let Some(token) = &token {
            bearer_value(token)?;
        }
        if ca_pem.is_none() && identity.is_some() {
            return fail("a client certificate needs the cluster CA as well (--ca or TRESOR_CA)");
        }
        if ca_pem.is_none() && token.is_some() {
            return fail(
                "a token is only sent over TLS: give the cluster CA as well (--ca or TRESOR_CA)",
            );
        }
        Ok(Self {
            ca_pem,
            identity,
            token,
        })
    }

    /// Reads the CA, client certificate and key from PEM files; `cert` and
    /// `key` go together. Errors name the file.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let read = |what: &str, path: &Path| -> Result<Vec<u8>, ClientError> {
            let bytes = std::fs::read(path).map_err(|e| {
                ClientError::Credentials(format!("cannot read {what} {}: {e}", path.display()))
            })?;
            let checked = if what.ends_with("key") {
                check_key(&bytes)
            } else {
                check_certificates(&bytes)
            };
            checked
                .map_err(|e| ClientError::Credentials(format!("{what} {}: {e}", path.display())))?;
            Ok(bytes)
        };
        let ca_pem = ca.map(|p| read("CA file", p)).transpose()?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => {
                Some((read("client certificate", cert)?, read("client key", key)?))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ClientError::Credentials(
                    "a client certificate needs its key (--key or TRESOR_KEY)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ClientError::Credentials(
                    "a client key needs its certificate (--cert or TRESOR_CERT)".into(),
                ))
            }
        };
        Self::new(ca_pem, identity, token)
    }

    /// Reads `TRESOR_CA`, `TRESOR_CERT`, `TRESOR_KEY` (file names) and
    /// `TRESOR_TOKEN`; unset or empty variables are left out.
    pub fn from_env() -> Result<Self, ClientError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let token = match var(ENV_TOKEN) {
            Some(t) => Some(t.into_string().map_err(|_| {
                ClientError::Credentials(format!("{ENV_TOKEN} is not valid UTF-8"))
            })?),
            None => None,
        };
        let ca = var(ENV_CA);
        let cert = var(ENV_CERT);
        let key = var(ENV_KEY);
        Self::from_files(
            ca.as_deref().map(Path::new),
            cert.as_deref().map(Path::new),
            key.as_deref().map(Path::new),
            token,
        )
    }

    /// These credentials with `token` as the bearer token instead.
    pub fn with_token(self, token: impl Into<String>) -> Result<Self, ClientError> {
        Self::new(self.ca_pem, self.identity, Some(token.into()))
    }

    /// These credentials without a client certificate.
    pub fn without_identity(self) -> Self {
        Self {
            identity: None,
            ..self
        }
    }

    /// Whether connections use TLS (a CA is set).
    pub fn uses_tls(&self) -> bool {
        self.ca_pem.is_some()
    }

    /// The CA certificate(s), PEM.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// Whether a client certificate is presented.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

fn check_certificates(pem: &[u8]) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(())
}

fn check_key(pem: &[u8]) -> Result<(), String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map(|_| ())
        .map_err(|e| format!("not a PEM private key: {e}"))
}

pub(super) fn bearer_value(token: &str) -> Result<MetadataValue<Ascii>, ClientError> {
    if token.is_empty() {
        return Err(ClientError::Credentials("the token is empty".into()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::Credentials(
            "the token must be printable ASCII without spaces".into(),
        ));
    }
    format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::Credentials("the token cannot be sent in a header".into()))
}

static DEFAULT_CREDENTIALS: RwLock<Option<Arc<Credentials>>> = RwLock::new(None);

/// Sets the credentials that [`connect`], [`connect_lazy`], [`crate::admin`]
/// and [`crate::Client::connect`] use from now on, in this whole process.
pub fn set_default_credentials(credentials: Credentials) {
    let mut slot = DEFAULT_CREDENTIALS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *slot = Some(Arc::new(credentials));
}

/// The process-wide default credentials ([`Credentials::none`] until set).
pub fn default_credentials() -> Arc<Credentials> {
    DEFAULT_CREDENTIALS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
        .unwrap_or_default()
}
