//! The node's HTTP port (`http_listen`): `/health` for load balancers and
//! `/metrics` for Prometheus.

use std::sync::Arc;

use tokio::net::TcpListener;

/// Serves `/health` (of `store`) and `/metrics` (of `metrics`) on
/// `listener` until `stop` turns true.
pub(super) fn spawn(
    listener: TcpListener,
    store: Arc<crate::shards::ShardStore>,
    metrics: crate::metrics::Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let app = axum::Router::new()
            .route(
                "/health",
                axum::routing::get(move || {
                    let store = store.clone();
                    async move { shard_store_health(&store) }
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let metrics = metrics.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                crate::metrics::CONTENT_TYPE,
                            )],
                            metrics.render(),
                        )
                    }
                }),
            );
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
}

/// `/health`: 200 `ok`, or 503 with the reason when this node's shard
/// storage takes no new files (full, or its directories gone).
fn shard_store_health(store: &crate::shards::ShardStore) -> (axum::http::StatusCode, String) {
    match store.health() {
        Ok(_) => (axum::http::StatusCode::OK, "ok\n".into()),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {e}\n"),
        ),
    }
}
