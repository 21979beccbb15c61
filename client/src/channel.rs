//! Building gRPC channels to tresor nodes.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Largest gRPC message either side accepts. Data moves in messages of 1 MiB
/// or less; this leaves room for framing and metadata-heavy responses.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// HTTP/2 window of one stream. tonic's defaults halve streaming throughput
/// on loopback; 8 MiB per stream and 16 MiB per connection do not.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// How long a connection attempt may take before the node counts as unreachable.
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
}

/// Turns `host:port` or a URL into the URL form tonic expects.
pub fn endpoint_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

fn endpoint(url: &str) -> Result<Endpoint, ClientError> {
    let url = endpoint_url(url);
    let endpoint =
        Endpoint::from_shared(url.clone()).map_err(|e| ClientError::InvalidEndpoint {
            endpoint: url.clone(),
            reason: e.to_string(),
        })?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10)))
}

/// Opens a channel to one node, failing if it cannot be reached now.
pub async fn connect(url: &str) -> Result<Channel, ClientError> {
    let endpoint = endpoint(url)?;
    endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            endpoint: endpoint_url(url),
            source,
        })
}

/// A channel that connects on first use and reconnects after failures; for
/// long-lived peers such as other nodes.
pub fn connect_lazy(url: &str) -> Result<Channel, ClientError> {
    Ok(endpoint(url)?.connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_http_scheme() {
        assert_eq!(endpoint_url("127.0.0.1:7001"), "http://127.0.0.1:7001");
        assert_eq!(endpoint_url(" http://n1:7001 "), "http://n1:7001");
        assert_eq!(endpoint_url("https://n1:7001"), "https://n1:7001");
    }

    #[test]
    fn garbage_endpoint_is_refused() {
        assert!(matches!(
            endpoint("http://exa mple:1"),
            Err(ClientError::InvalidEndpoint { .. })
        ));
    }
}
