//! Single object calls as an ingest client makes them, bounded in time and
//! with errors turned into what a fault test needs to classify outcomes.

use std::time::Duration;

use tresor_client::{Credentials, Transport};
use tresor_proto::v1 as pb;
use tresor_proto::v1::objects_client::ObjectsClient;

use crate::{header, sha256_hex};

/// An Objects client to `endpoint`, connected now.
pub async fn objects_client(
    endpoint: &str,
    credentials: &Credentials,
) -> anyhow::Result<ObjectsClient<Transport>> {
    let channel = tresor_client::connect_with(endpoint, credentials).await?;
    Ok(ObjectsClient::new(tresor_client::channel::transport(
        channel,
        credentials,
    )))
}

/// Whether a put's error leaves its outcome open: the answer was lost (the
/// coordinator or the link died, the client gave up waiting), or the
/// coordinator said it could not tell. Any other error means not stored.
pub fn outcome_unknown(why: &str) -> bool {
    why.starts_with("transport:")
        || why.contains("timed out")
        || why.contains("outcome")
        || why.starts_with("Cancelled")
        || why.starts_with("Unknown")
}

/// One small put of `data` to `footage/<key>` through `endpoint`, in one
/// message, bounded by `within`; the error says what the client saw.
pub async fn put_once(
    endpoint: &str,
    credentials: &Credentials,
    key: &str,
    data: &[u8],
    within: Duration,
) -> Result<(), String> {
    let attempt = async {
        let mut client = objects_client(endpoint, credentials)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let messages = vec![
            pb::PutRequest {
                msg: Some(pb::put_request::Msg::Header(header("footage", key))),
            },
            pb::PutRequest {
                msg: Some(pb::put_request::Msg::Data(data.to_vec())),
            },
        ];
        let stored = client
            .put(futures::stream::iter(messages))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        if stored.sha256 != sha256_hex(data) {
            return Err(format!(
                "acknowledged with the wrong SHA-256 {}",
                stored.sha256
            ));
        }
        Ok(())
    };
    tokio::time::timeout(within, attempt)
        .await
        .unwrap_or_else(|_| Err("put timed out".into()))
}

/// A status as text, `transport:` first when the connection failed rather
/// than the server answering.
pub fn describe(status: &tonic::Status) -> String {
    use std::error::Error as _;
    if status.source().is_some() {
        format!("transport: {:?}: {}", status.code(), status.message())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

/// Stat of `footage/<key>` through `endpoint`, bounded by `within`: the
/// object's SHA-256, `None` when there is no such object, or what failed.
pub async fn stat_once(
    endpoint: &str,
    credentials: &Credentials,
    key: &str,
    within: Duration,
) -> Result<Option<String>, String> {
    let attempt = async {
        let mut client = objects_client(endpoint, credentials)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let stat = client
            .stat(pb::StatRequest {
                bucket: "footage".into(),
                key: key.into(),
            })
            .await;
        match stat {
            Ok(info) => Ok(Some(info.into_inner().sha256)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(describe(&s)),
        }
    };
    tokio::time::timeout(within, attempt)
        .await
        .unwrap_or_else(|_| Err("stat timed out".into()))
}
