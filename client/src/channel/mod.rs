//! Building gRPC channels to tresor nodes, and the credentials they carry.
//!
//! Every connection presents [`Credentials`]: the cluster CA that the node's
//! certificate must be issued by, optionally a client certificate, and
//! optionally a bearer token sent as `authorization: Bearer …` on every
//! request. One identity per process is the normal case (a node, a command
//! line), so the plain functions ([`connect`], [`connect_lazy`],
//! [`crate::admin`], [`crate::Client::connect`]) use the process-wide default
//! set with [`set_default_credentials`]; the `_with` variants take explicit
//! credentials, for programs (tests, tools) that act as several principals
//! at once.
//!
//! With a CA configured, a bare `host:port` means `https://host:port`;
//! without one it means `http://host:port` (a cluster run with
//! `insecure = true`). An explicit scheme is kept. A token is never sent over
//! plaintext, and `https://` without a CA is refused rather than trusting
//! anything.
//!
//! TLS follows BSI TR-02102-2: TLS 1.3 (1.2 as fallback) with AES-GCM cipher
//! suites and ECDHE over NIST P-256 or P-384 only (see [`crypto_provider`]).

mod credentials;

use std::fmt;
use std::sync::{Once, RwLock};
use std::time::Duration;

use credentials::bearer_value;
pub use credentials::{
    default_credentials, set_default_credentials, Credentials, ENV_CA, ENV_CERT, ENV_KEY, ENV_TOKEN,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Largest gRPC message either side accepts. Data moves in messages of 1 MiB
/// or less; this leaves room for framing and metadata-heavy responses.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// HTTP/2 window of one stream. tonic's defaults halve streaming throughput
/// on loopback; 8 MiB per stream and 16 MiB per connection do not.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// How long a connection attempt (TCP and TLS handshake) may take before the
/// node counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors from building or opening a connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not a URL or `host:port`.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// What the caller gave.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// The node could not be reached.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint tried.
        endpoint: String,
        /// Transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The CA, certificate, key or token cannot be used.
    #[error("credentials: {0}")]
    Credentials(String),
}

/// Deadline of an admin call unless the process sets another: a node that
/// cannot answer (no leader, a cut link) is given up on, never waited for
/// without end. Membership changes bound their own commit wait below it.
pub const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

static ADMIN_TIMEOUT_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_ADMIN_TIMEOUT.as_millis() as u64);

/// Sets the deadline of every admin call made from now on in this process
/// (the operator CLI's `--timeout`).
pub fn set_admin_timeout(timeout: Duration) {
    ADMIN_TIMEOUT_MS.store(
        timeout.as_millis().clamp(1, u64::MAX as u128) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// The deadline of admin calls in this process.
pub fn admin_timeout() -> Duration {
    Duration::from_millis(ADMIN_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

static SOURCE_IP: RwLock<Option<std::net::IpAddr>> = RwLock::new(None);

/// Sets the local address of every connection this process opens from now
/// on (a node's `source_ip`); `None` lets the OS choose.
pub fn set_source_ip(ip: Option<std::net::IpAddr>) {
    *SOURCE_IP.write().unwrap_or_else(|p| p.into_inner()) = ip;
}

fn source_ip() -> Option<std::net::IpAddr> {
    *SOURCE_IP.read().unwrap_or_else(|p| p.into_inner())
}

/// The rustls crypto provider tresor uses on both sides of every connection:
/// *ring*, restricted to what BSI TR-02102-2 recommends — TLS 1.3 with
/// AES-GCM, TLS 1.2 only with ECDHE and AES-GCM, key exchange over P-256 or
/// P-384.
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::{cipher_suite as cs, default_provider, kx_group};
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    }
}

/// Makes [`crypto_provider`] the process default, once. tonic builds its
/// client and server TLS configs from the process default, so this must run
/// before either; every function here that builds TLS calls it.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first; then that
        // one is used, as the program that installed it intended.
        let _ = crypto_provider().install_default();
    });
}

/// Turns `host:port` or a URL into the URL form tonic expects, for the
/// process-wide default credentials.
pub fn endpoint_url(endpoint: &str) -> String {
    endpoint_url_for(endpoint, default_credentials().uses_tls())
}

/// Turns `host:port` into `https://host:port` when `tls`, else
/// `http://host:port`; a URL with a scheme is kept as it is.
pub fn endpoint_url_for(endpoint: &str, tls: bool) -> String {
    let endpoint = endpoint.trim();
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

fn endpoint(url: &str, credentials: &Credentials) -> Result<Endpoint, ClientError> {
    let url = endpoint_url_for(url, credentials.uses_tls());
    let invalid = |reason: &str| ClientError::InvalidEndpoint {
        endpoint: url.clone(),
        reason: reason.to_string(),
    };
    let https = url.starts_with("https://");
    if https && !credentials.uses_tls() {
        return Err(invalid(
            "an https endpoint needs the cluster CA (--ca or TRESOR_CA)",
        ));
    }
    if !https && credentials.token.is_some() {
        return Err(invalid(
            "refusing to send a token over plaintext; use https:// or a bare host:port",
        ));
    }
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| invalid(&e.to_string()))?;
    if let (true, Some(ca)) = (https, &credentials.ca_pem) {
        install_crypto_provider();
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .timeout(CONNECT_TIMEOUT);
        if let Some((cert, key)) = &credentials.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| ClientError::Credentials(format!("TLS setup for {url}: {e}")))?;
    }
    Ok(endpoint
        .local_address(source_ip())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10)))
}

/// Opens a channel to one node with the default credentials, failing if it
/// cannot be reached now.
pub async fn connect(url: &str) -> Result<Channel, ClientError> {
    connect_with(url, &default_credentials()).await
}

/// Opens a channel to one node with `credentials`.
pub async fn connect_with(url: &str, credentials: &Credentials) -> Result<Channel, ClientError> {
    let endpoint = endpoint(url, credentials)?;
    endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            endpoint: endpoint_url_for(url, credentials.uses_tls()),
            source,
        })
}

/// A channel with the default credentials that connects on first use and
/// reconnects after failures; for long-lived peers such as other nodes.
pub fn connect_lazy(url: &str) -> Result<Channel, ClientError> {
    connect_lazy_with(url, &default_credentials())
}

/// Like [`connect_lazy`], with `credentials`.
pub fn connect_lazy_with(url: &str, credentials: &Credentials) -> Result<Channel, ClientError> {
    Ok(endpoint(url, credentials)?.connect_lazy())
}

/// Adds `authorization: Bearer <token>` to every request, when there is a
/// token, and a deadline (`grpc-timeout`, enforced on both sides) to every
/// request that has none, when the transport has one.
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>, Option<Duration>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(<redacted>)"
        } else {
            "BearerToken(None)"
        })
    }
}

impl BearerToken {
    /// The token of `credentials` (none if they have none).
    pub fn of(credentials: &Credentials) -> Self {
        // `Credentials` only ever holds tokens that make a valid header.
        Self(
            credentials
                .token
                .as_deref()
                .and_then(|t| bearer_value(t).ok()),
            None,
        )
    }

    /// The same, adding `deadline` to requests that have none.
    pub fn with_deadline(self, deadline: Duration) -> Self {
        Self(self.0, Some(deadline))
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(deadline) = self.1 {
            if !request.metadata().contains_key("grpc-timeout") {
                request.set_timeout(deadline);
            }
        }
        Ok(request)
    }
}

/// A channel whose requests carry the bearer token of the credentials it
/// was made with. Generated clients of public and admin services run on it.
pub type Transport = InterceptedService<Channel, BearerToken>;

/// Wraps `channel` so that its requests carry `credentials`' token.
pub fn transport(channel: Channel, credentials: &Credentials) -> Transport {
    InterceptedService::new(channel, BearerToken::of(credentials))
}

/// Like [`transport`], with `deadline` on every request that has none.
pub fn transport_with_deadline(
    channel: Channel,
    credentials: &Credentials,
    deadline: Duration,
) -> Transport {
    InterceptedService::new(
        channel,
        BearerToken::of(credentials).with_deadline(deadline),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn bare_host_port_gets_a_scheme_by_credentials() {
        assert_eq!(
            endpoint_url_for("127.0.0.1:7001", false),
            "http://127.0.0.1:7001"
        );
        assert_eq!(
            endpoint_url_for("127.0.0.1:7001", true),
            "https://127.0.0.1:7001"
        );
        assert_eq!(endpoint_url_for(" http://n1:7001 ", true), "http://n1:7001");
        assert_eq!(
            endpoint_url_for("https://n1:7001", false),
            "https://n1:7001"
        );
    }

    #[test]
    fn garbage_endpoint_is_refused() {
        assert!(matches!(
            endpoint("http://exa mple:1", &Credentials::none()),
            Err(ClientError::InvalidEndpoint { .. })
        ));
    }

    #[test]
    fn https_without_ca_is_refused() {
        let err = endpoint("https://n1:7001", &Credentials::none()).expect_err("no CA");
        assert!(err.to_string().contains("needs the cluster CA"), "{err}");
    }

    #[test]
    fn token_or_certificate_without_ca_is_refused() {
        let err = Credentials::new(None, None, Some("t0k3n".into())).expect_err("no CA");
        assert!(err.to_string().contains("only sent over TLS"), "{err}");
        let err = Credentials::new(Some(b"junk".to_vec()), None, None).expect_err("bad CA");
        assert!(err.to_string().contains("CA"), "{err}");
    }

    #[test]
    fn bad_tokens_are_refused() {
        assert!(bearer_value("").is_err());
        assert!(bearer_value("two words").is_err());
        assert!(bearer_value("line\nbreak").is_err());
        assert!(bearer_value("abc.DEF-123_x").is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let err = Credentials::from_files(Some(Path::new("/nonexistent/ca.pem")), None, None, None)
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let err = Credentials::from_files(None, Some(Path::new("c.pem")), None, None)
            .expect_err("cert without key");
        assert!(err.to_string().contains("needs its key"), "{err}");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials {
            ca_pem: None,
            identity: Some((b"cert".to_vec(), b"SECRET-KEY".to_vec())),
            token: Some("SECRET-TOKEN".into()),
        };
        let shown = format!("{c:?} {:?}", BearerToken::of(&c));
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
