//! The JSON handlers of the API (the SSE stream lives in [`super::subscriptions`]).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson};
use crate::dht::lookup::LookupReport;
use crate::identity::NodeId;
use crate::peer::NodeInfo;

/// Default of `timeout_ms` in `POST /v1/request`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest accepted `timeout_ms`.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A node as the API shows it.
#[derive(Serialize)]
pub struct NodeJson {
    /// Node id, base58.
    id: String,
    /// Address, `ip:port`.
    addr: String,
    /// Descriptor, `ip:port/base58`.
    descriptor: String,
}

impl From<&NodeInfo> for NodeJson {
    fn from(n: &NodeInfo) -> Self {
        Self {
            id: n.id.to_string(),
            addr: n.addr.to_string(),
            descriptor: n.to_string(),
        }
    }
}

/// A lookup's statistics.
#[derive(Serialize)]
pub struct LookupJson {
    /// Hops (rounds) until the result.
    rounds: u32,
    /// FindNode requests sent.
    rpcs: u32,
    /// FindNode requests that failed or timed out.
    failures: u32,
    /// Duration, milliseconds.
    elapsed_ms: f64,
    /// Whether the overall timeout ended it.
    timed_out: bool,
}

impl From<&LookupReport> for LookupJson {
    fn from(r: &LookupReport) -> Self {
        Self {
            rounds: r.rounds,
            rpcs: r.rpcs,
            failures: r.failures,
            elapsed_ms: millis(r.elapsed),
            timed_out: r.timed_out,
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) fn parse_id(field: &str, text: &str) -> Result<NodeId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_request(format!("`{field}`: invalid node id {text:?}: {e}")))
}

fn decode_payload(text: &str, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = |len: usize| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("`payload` is {len} bytes; the limit is {limit} bytes"),
        )
    };
    // Reject before decoding what cannot fit.
    let estimate = text.len() / 4 * 3;
    if estimate > limit + 3 {
        return Err(too_large(estimate));
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|e| ApiError::bad_request(format!("`payload` is not valid base64: {e}")))?;
    if bytes.len() > limit {
        return Err(too_large(bytes.len()));
    }
    Ok(Bytes::from(bytes))
}

/// `GET /v1/node`.
#[derive(Serialize)]
pub struct NodeStatus {
    /// Node id, base58.
    id: String,
    /// DHT id (SHA-256 of the key), hex.
    dht_id: String,
    /// Descriptor, `ip:port/base58`.
    descriptor: String,
    /// Listen address.
    listen: String,
    /// Network id.
    network_id: i32,
    /// Network id as 32-bit hex.
    network_id_hex: String,
    /// Client version announced to peers.
    client_version: String,
    /// Seconds since start.
    uptime_secs: f64,
    /// Nodes in the routing table.
    table_size: usize,
    /// Open peer connections.
    connections: usize,
    /// Protocols registered through the API.
    protocols: Vec<String>,
}

/// `GET /v1/node`: who this node is and how it is doing.
pub async fn node(State(state): State<ApiState>) -> Json<NodeStatus> {
    let swarm = &state.swarm;
    let local = swarm.local_node();
    let config = swarm.config();
    Json(NodeStatus {
        id: local.id.to_string(),
        dht_id: local.id.dht_id().to_hex(),
        descriptor: local.to_string(),
        listen: local.addr.to_string(),
        network_id: config.network_id,
        network_id_hex: format!("{:#010x}", config.network_id),
        client_version: config.client_version.clone(),
        uptime_secs: state.metrics.uptime().as_secs_f64(),
        table_size: swarm.table_len(),
        connections: swarm.connected_peers().len(),
        protocols: state.protocols.names(),
    })
}

/// A connected peer.
#[derive(Serialize)]
pub struct PeerJson {
    /// The peer.
    #[serde(flatten)]
    node: NodeJson,
    /// Whether it is in the routing table.
    in_table: bool,
}

/// `GET /v1/peers` body.
#[derive(Serialize)]
pub struct PeersJson {
    /// Peers with an open connection.
    peers: Vec<PeerJson>,
}

/// `GET /v1/peers`: the peers with an open authenticated connection.
pub async fn peers(State(state): State<ApiState>) -> Json<PeersJson> {
    let mut peers = state.swarm.connected_peers();
    peers.sort_by_key(|p| p.id.to_string());
    Json(PeersJson {
        peers: peers
            .iter()
            .map(|p| PeerJson {
                node: p.into(),
                in_table: state.swarm.table_contains(&p.id),
            })
            .collect(),
    })
}

/// A routing-table entry.
#[derive(Serialize)]
pub struct EntryJson {
    /// The node.
    #[serde(flatten)]
    node: NodeJson,
    /// Milliseconds since it was last seen.
    last_seen_ms_ago: u64,
}

/// A non-empty k-bucket.
#[derive(Serialize)]
pub struct BucketJson {
    /// Bucket index (common-prefix length with our DHT id).
    index: usize,
    /// Entries, most recently seen first.
    entries: Vec<EntryJson>,
}

/// `GET /v1/table` body.
#[derive(Serialize)]
pub struct TableJson {
    /// Nodes in the table.
    size: usize,
    /// Number of buckets.
    bucket_count: usize,
    /// Capacity of each bucket (k).
    bucket_size: usize,
    /// The non-empty buckets.
    buckets: Vec<BucketJson>,
}

/// `GET /v1/table`: the routing table, bucket by bucket, with last-seen ages.
pub async fn table(State(state): State<ApiState>) -> Json<TableJson> {
    let dht = &state.swarm.config().dht;
    let buckets: Vec<BucketJson> = state
        .swarm
        .table_ages()
        .into_iter()
        .map(|(index, entries)| BucketJson {
            index,
            entries: entries
                .iter()
                .map(|(node, age)| EntryJson {
                    node: node.into(),
                    last_seen_ms_ago: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
        })
        .collect();
    Json(TableJson {
        size: buckets.iter().map(|b| b.entries.len()).sum(),
        bucket_count: dht.bucket_count,
        bucket_size: dht.bucket_size,
        buckets,
    })
}

/// `POST /v1/lookup` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The node id to find, base58.
    id: String,
}

/// `POST /v1/lookup` response.
#[derive(Serialize)]
pub struct LookupResponse {
    /// The node found.
    node: NodeJson,
    /// The lookup's statistics.
    #[serde(flatten)]
    report: LookupJson,
}

/// `POST /v1/lookup`: an iterative FindNode lookup of a node id (404 if not found).
pub async fn lookup(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<Json<LookupResponse>, ApiError> {
    let id = parse_id("id", &req.id)?;
    let (node, report) = state.guard(state.swarm.lookup(&id)).await??;
    Ok(Json(LookupResponse {
        node: (&node).into(),
        report: (&report).into(),
    }))
}

/// `POST /v1/send` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The recipient's node id, base58.
    to: String,
    /// The protocol.
    protocol: String,
    /// The payload, base64.
    payload: String,
}

/// `POST /v1/send` response.
#[derive(Serialize)]
pub struct SendResponse {
    /// Where the message went.
    to: NodeJson,
    /// The lookup that found the address, or null if the node was known.
    lookup: Option<LookupJson>,
}

/// `POST /v1/send`: a one-way message, delivered to the peer's transport (found by lookup if unknown).
pub async fn send(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    let to = parse_id("to", &req.to)?;
    let payload = decode_payload(&req.payload, state.payload_limit)?;
    let delivery = state
        .guard(state.swarm.send_message(&to, &req.protocol, payload))
        .await??;
    Ok(Json(SendResponse {
        to: (&delivery.to).into(),
        lookup: delivery.lookup.as_ref().map(LookupJson::from),
    }))
}

/// `POST /v1/request` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRequest {
    /// The recipient's node id, base58.
    to: String,
    /// The protocol.
    protocol: String,
    /// The payload, base64.
    payload: String,
    /// How long to wait for the response, milliseconds (default 10,000; at most 300,000).
    timeout_ms: Option<u64>,
}

/// `POST /v1/request` response.
#[derive(Serialize)]
pub struct RequestResponse {
    /// The responder's node id.
    from: String,
    /// The response payload, base64.
    payload: String,
    /// Time from sending to the response, milliseconds (a lookup before it is included).
    elapsed_ms: f64,
}

/// `POST /v1/request`: a request; waits for the response (504 on timeout).
pub async fn request(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<RequestRequest>,
) -> Result<Json<RequestResponse>, ApiError> {
    let to = parse_id("to", &req.to)?;
    let timeout = match req.timeout_ms {
        None => DEFAULT_REQUEST_TIMEOUT,
        Some(0) => return Err(ApiError::bad_request("`timeout_ms` must be at least 1")),
        Some(ms) => Duration::from_millis(ms),
    };
    if timeout > MAX_REQUEST_TIMEOUT {
        return Err(ApiError::bad_request(format!(
            "`timeout_ms` must be at most {}",
            MAX_REQUEST_TIMEOUT.as_millis()
        )));
    }
    let payload = decode_payload(&req.payload, state.payload_limit)?;
    let started = Instant::now();
    let response = state
        .guard(state.swarm.request(&to, &req.protocol, payload, timeout))
        .await??;
    Ok(Json(RequestResponse {
        from: response.sender().id.to_string(),
        payload: BASE64.encode(response.data()),
        elapsed_ms: millis(started.elapsed()),
    }))
}

/// `POST /v1/respond` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondRequest {
    /// The `req_id` of a request received on an API protocol's stream.
    req_id: String,
    /// The response payload, base64.
    payload: String,
}

/// `POST /v1/respond` response.
#[derive(Serialize)]
pub struct RespondResponse {
    /// The node the response went to.
    to: NodeJson,
}

/// `POST /v1/respond`: answers a request received on an API protocol (404 if unknown or expired).
pub async fn respond(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<RespondRequest>,
) -> Result<Json<RespondResponse>, ApiError> {
    let req_id: uuid::Uuid = req.req_id.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "`req_id`: invalid request id {:?}: {e}",
            req.req_id
        ))
    })?;
    let payload = decode_payload(&req.payload, state.payload_limit)?;
    let message = state.protocols.pending.take(&req_id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no pending request {req_id} (already answered, expired, or never received)"
        ))
    })?;
    state.guard(message.respond(payload)).await??;
    Ok(Json(RespondResponse {
        to: message.sender().into(),
    }))
}

/// `POST /v1/broadcast` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// The protocol.
    protocol: String,
    /// The payload, base64.
    payload: String,
}

/// `POST /v1/broadcast` response.
#[derive(Serialize)]
pub struct BroadcastResponse {
    /// The gossip message id (hex of the signed digest).
    id: String,
    /// Peers the message was handed to.
    sent_to: Vec<NodeJson>,
    /// Peers a send to failed.
    failed: Vec<NodeJson>,
}

/// `POST /v1/broadcast`: an author-signed gossip message to every node (each delivers it once to the
/// protocol's subscribers, with `gossip: true` and this node as `author`).
pub async fn broadcast(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<BroadcastRequest>,
) -> Result<Json<BroadcastResponse>, ApiError> {
    let payload = decode_payload(&req.payload, state.payload_limit)?;
    let report = state
        .guard(state.swarm.broadcast(&req.protocol, payload))
        .await??;
    Ok(Json(BroadcastResponse {
        id: report.id.to_string(),
        sent_to: report.sent_to.iter().map(NodeJson::from).collect(),
        failed: report.failed.iter().map(NodeJson::from).collect(),
    }))
}

/// `POST /v1/protocols` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolRequest {
    /// The protocol name (1 to 128 bytes; not starting with `/kadmesh/`).
    name: String,
}

/// `GET /v1/protocols` body and `POST /v1/protocols` response.
#[derive(Serialize)]
pub struct ProtocolsJson {
    /// Protocols registered through the API.
    protocols: Vec<String>,
}

/// `POST /v1/protocols`: registers a protocol whose messages the API streams (201; 409 if registered).
pub async fn register_protocol(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<ProtocolRequest>,
) -> Result<(StatusCode, Json<ProtocolsJson>), ApiError> {
    state.protocols.register(&state, &req.name)?;
    Ok((
        StatusCode::CREATED,
        Json(ProtocolsJson {
            protocols: state.protocols.names(),
        }),
    ))
}

/// `GET /v1/protocols`: the protocols registered through the API.
pub async fn protocols(State(state): State<ApiState>) -> Json<ProtocolsJson> {
    Json(ProtocolsJson {
        protocols: state.protocols.names(),
    })
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text))
}

/// Any other path: 404 as JSON.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// A known path with another method: 405 as JSON.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_checked() {
        assert_eq!(
            decode_payload("aGk=", 10).unwrap(),
            Bytes::from_static(b"hi")
        );
        assert_eq!(
            decode_payload("!!", 10).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let big = BASE64.encode([0u8; 12]);
        assert_eq!(
            decode_payload(&big, 11).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert!(decode_payload(&big, 12).is_ok());
        assert_eq!(
            decode_payload(&"A".repeat(1000), 10).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            parse_id("to", "0OIl").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
