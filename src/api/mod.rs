//! The operator HTTP API (`kadmesh node --api ADDR`): JSON in and out, errors as `{"error": "..."}`.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/node` | id, DHT id, descriptor, network id, client version, uptime, table size, connections |
//! | `GET /v1/peers` | connected peers |
//! | `GET /v1/table` | routing table buckets with entries and last-seen ages |
//! | `POST /v1/lookup` `{"id"}` | iterative lookup: the node, rounds, FindNode RPCs, elapsed ms |
//! | `POST /v1/send` `{"to","protocol","payload"}` | one-way message (payload base64) |
//! | `POST /v1/request` `{"to","protocol","payload","timeout_ms"?}` | request; returns the response |
//! | `POST /v1/respond` `{"req_id","payload"}` | answers a request received on an API protocol |
//! | `POST /v1/broadcast` `{"protocol","payload"}` | gossip to every node; returns the message id and peers |
//! | `GET /v1/protocols`, `POST /v1/protocols` `{"name"}` | protocols registered for the API |
//! | `GET /v1/protocols/{name}/messages` | the protocol's inbound messages as Server-Sent Events |
//! | `GET /v1/bans`, `POST /v1/bans` `{"id"|"ip","duration"?,"reason"?}` | bans ([`bans`]) |
//! | `DELETE /v1/bans/{id-or-ip}` | lifts a ban |
//! | `GET /metrics` | Prometheus text format ([`crate::metrics`]) |
//!
//! Status codes: 400 malformed input (bad base58 id, bad base64, bad JSON syntax, invalid protocol name,
//! bad ban target or duration), 403 the peer is banned, 404 unknown route / node not found / unregistered
//! protocol / no such ban, 405 wrong method, 409 protocol already
//! registered, 413 payload or body too large, 415 missing JSON content type, 422 JSON of the wrong shape
//! (missing or unknown field), 502 the peer could not be reached, 503 shutting down, 504 request timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::NodeMetrics;
use crate::swarm::Swarm;

pub mod bans;
pub mod error;
pub mod routes;
pub mod subscriptions;

pub use error::ApiError;
use subscriptions::ApiProtocols;

/// Room left in a frame for the envelope's metadata and the session's framing.
const ENVELOPE_HEADROOM: usize = 1024;

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the API on {addr}: {source}")]
pub struct ApiStartError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The node.
    pub swarm: Swarm,
    /// Its metrics.
    pub metrics: Arc<NodeMetrics>,
    /// Protocols registered through the API.
    pub protocols: Arc<ApiProtocols>,
    /// Cancelled when the API shuts down.
    pub cancel: CancellationToken,
    /// The server task and the protocol forwarders.
    pub tasks: TaskTracker,
    /// Largest payload accepted, bytes.
    pub payload_limit: usize,
}

impl ApiState {
    /// Runs `fut` unless the API shuts down first (then 503).
    pub async fn guard<T>(&self, fut: impl Future<Output = T>) -> Result<T, ApiError> {
        tokio::select! {
            r = fut => Ok(r),
            _ = self.cancel.cancelled() => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the node is shutting down",
            )),
        }
    }
}

/// The routes, with their state.
pub fn router(state: ApiState) -> Router {
    // Base64 is 4/3 of the payload; leave room for the rest of the JSON.
    let body_limit = state.payload_limit / 3 * 4 + 64 * 1024;
    Router::new()
        .route("/v1/node", get(routes::node))
        .route("/v1/peers", get(routes::peers))
        .route("/v1/table", get(routes::table))
        .route("/v1/lookup", post(routes::lookup))
        .route("/v1/send", post(routes::send))
        .route("/v1/request", post(routes::request))
        .route("/v1/respond", post(routes::respond))
        .route("/v1/broadcast", post(routes::broadcast))
        .route(
            "/v1/protocols",
            get(routes::protocols).post(routes::register_protocol),
        )
        .route(
            "/v1/protocols/{name}/messages",
            get(subscriptions::messages),
        )
        .route("/v1/bans", get(bans::list).post(bans::add))
        .route("/v1/bans/{target}", delete(bans::remove))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// A running API server. Stop it with [`ApiServer::shutdown`].
pub struct ApiServer {
    /// The bound address.
    addr: SocketAddr,
    /// Shared with the handlers.
    state: ApiState,
}

impl ApiServer {
    /// Binds `addr` (port 0 picks a free port) and serves the API for `swarm`.
    pub async fn start(
        addr: SocketAddr,
        swarm: Swarm,
        metrics: Arc<NodeMetrics>,
    ) -> Result<ApiServer, ApiStartError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ApiStartError { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ApiStartError { addr, source })?;
        let config = swarm.config();
        let state = ApiState {
            payload_limit: config.net.max_frame_len.saturating_sub(ENVELOPE_HEADROOM),
            protocols: Arc::new(ApiProtocols::new(
                config.swarm.protocol_queue,
                Arc::clone(&metrics),
            )),
            swarm,
            metrics,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let app = router(state.clone());
        let stop = state.cancel.clone();
        state.tasks.spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "API server failed");
            }
        });
        tracing::info!(addr = %local, "API listening");
        Ok(ApiServer { addr: local, state })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends every SSE stream and in-flight call (503), and joins every task.
    pub async fn shutdown(&self) {
        self.state.cancel.cancel();
        self.state.tasks.close();
        self.state.tasks.wait().await;
    }
}
