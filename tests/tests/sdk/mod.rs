//! What `t56_s3_sdk` needs around the AWS SDK for Rust: a client of a
//! node's S3 port, error codes and statuses, digests as S3 wants them, a
//! body cut off mid-way, a bare HTTPS request for presigned URLs, and the
//! refusals tools act on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use base64::Engine as _;
use bytes::Bytes;
use md5::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tresor_proto::v1 as pb;
use tresor_tests::s3::s3_key;
use tresor_tests::Harness;

/// An access key: (id, secret).
pub type Key<'a> = (&'a str, &'a str);

/// An SDK client of node `via`'s S3 port signing with `key`: the
/// cluster's CA, path-style, no retries, a deadline on every call.
pub fn client(h: &Harness, via: u64, (id, secret): Key) -> anyhow::Result<Client> {
    let ca = std::fs::read(h.ca_dir().expect("a secure cluster").join("ca.pem"))?;
    let trust = TrustStore::empty().with_pem_certificate(ca.as_slice());
    let tls_context = TlsContext::builder().with_trust_store(trust).build()?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(Duration::from_secs(120))
        .build();
    let config = aws_sdk_s3::Config::builder()
        .http_client(http)
        .credentials_provider(Credentials::new(id, secret, None, None, "tresor-test"))
        .region(Region::new("us-east-1"))
        .endpoint_url(h.s3_endpoint(via))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts)
        .behavior_version(BehaviorVersion::latest())
        .build();
    Ok(Client::from_conf(config))
}

/// The S3 error code of a failed call (`"ok"` when it succeeded).
pub fn code<T, E: ProvideErrorMetadata, R>(result: Result<T, SdkError<E, R>>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => e.code().unwrap_or("(no code)").to_string(),
    }
}

/// The HTTP status of a failed call.
pub fn status<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> Option<u16> {
    result
        .err()
        .and_then(|e| e.raw_response().map(|r| r.status().as_u16()))
}

pub fn md5_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

pub fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", hex::encode(md5::Md5::digest(data)))
}

/// A body that sends `sent` bytes of zeros, then fails: the connection of
/// a camera cut off mid-part.
pub struct CutBody {
    pub left: usize,
}

impl http_body::Body for CutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "link cut");
            return Poll::Ready(Some(Err(cut)));
        }
        let n = self.left.min(64 * 1024);
        self.left -= n;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![0u8; n])))))
    }
}

/// One HTTPS request of `method` to `url` (a presigned URL) with `body`,
/// trusting the cluster's CA: its status and body.
pub async fn fetch(
    h: &Harness,
    method: &str,
    url: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    use rustls::pki_types::pem::PemObject;
    let ca_pem = std::fs::read(h.ca_dir().expect("a secure cluster").join("ca.pem"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(&ca_pem)?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let uri: http::Uri = url.parse()?;
    let authority = uri.authority().ok_or_else(|| anyhow::anyhow!("no host"))?;
    let host = authority.host().to_string();
    let port = authority.port_u16().unwrap_or(443);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut tls = connector.connect(name, tcp).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(body).await?;
        let mut answer = Vec::new();
        // A peer that closes without close_notify still sent its answer.
        let _ = tls.read_to_end(&mut answer).await;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), exchange).await??;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP answer"))?;
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line: {head}"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut rest = answer[split + 4..].to_vec();
    if chunked {
        rest = dechunk(&rest);
    }
    Ok((code, rest))
}

/// The bytes of a chunked HTTP/1.1 body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

pub async fn body(
    out: aws_sdk_s3::operation::get_object::GetObjectOutput,
) -> anyhow::Result<Vec<u8>> {
    Ok(out.body.collect().await?.into_bytes().to_vec())
}

/// A wrong secret, an unknown key, and an ingest-only key reading.
pub async fn refusals(h: &Harness, (id, secret): Key<'_>) -> anyhow::Result<()> {
    let wrong = format!("{}x", &secret[1..]);
    let forged = client(h, 3, (id, &wrong))?;
    assert_eq!(
        code(forged.list_buckets().send().await),
        "SignatureDoesNotMatch"
    );
    let unknown = client(h, 4, ("TRSNOSUCHKEY00000000", secret))?;
    assert_eq!(
        code(unknown.list_buckets().send().await),
        "InvalidAccessKeyId"
    );

    let mut admin = h.admin(1).await?;
    let name = "camera-9".to_string();
    admin
        .create_principal(pb::CreatePrincipalRequest { name: name.clone() })
        .await?;
    admin
        .grant(pb::GrantRequest {
            principal: name.clone(),
            role: "ingest".into(),
            bucket: Some("footage".into()),
        })
        .await?;
    let camera_key = s3_key(h, &name).await?;
    let camera = client(h, 5, (&camera_key.0, &camera_key.1))?;
    camera
        .put_object()
        .bucket("footage")
        .key("cam/9.bin")
        .body(ByteStream::from(b"from the camera".to_vec()))
        .send()
        .await?;
    let read = camera
        .get_object()
        .bucket("footage")
        .key("cam/9.bin")
        .send()
        .await;
    assert_eq!(code(read), "AccessDenied");
    Ok(())
}
