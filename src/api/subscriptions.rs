//! Protocols registered through the API and their Server-Sent-Event streams.
//!
//! `POST /v1/protocols` registers a protocol with the swarm; a forwarder task (owned by the API server)
//! turns each inbound [`Message`] into a JSON event once and fans it out to every open
//! `GET /v1/protocols/{name}/messages` stream over a bounded broadcast channel. A message that arrives
//! while nobody is subscribed, or that a lagging subscriber misses, is counted in
//! `kadmesh_api_messages_dropped_total` (the lagging stream also gets a `lagged` event): never silent.
//! Inbound requests are kept (bounded, for [`PENDING_TTL`]) so `POST /v1/respond` can answer them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::ApiState;
use super::error::ApiError;
use crate::metrics::NodeMetrics;
use crate::swarm::Message;

/// Most inbound requests kept for `POST /v1/respond`; the oldest is forgotten first.
pub const MAX_PENDING: usize = 4096;
/// How long an inbound request can be answered through the API.
pub const PENDING_TTL: Duration = Duration::from_secs(300);

/// One inbound message as the SSE stream sends it (`event: message`).
#[derive(Serialize)]
struct InboundJson<'a> {
    /// Sender's node id (base58).
    from: String,
    /// The protocol.
    protocol: &'a str,
    /// The payload, base64.
    payload: String,
    /// The request id if the sender awaits a response (`POST /v1/respond`), else null.
    req_id: Option<String>,
    /// True if it came by gossip.
    gossip: bool,
    /// The author's node id (the sender for direct messages).
    author: String,
    /// Authoring time, unix milliseconds.
    timestamp_ms: i64,
}

fn to_json(m: &Message) -> Arc<str> {
    let body = InboundJson {
        from: m.sender().id.to_string(),
        protocol: m.protocol(),
        payload: BASE64.encode(m.data()),
        req_id: m.req_id().map(|id| id.to_string()),
        gossip: m.is_gossip(),
        author: m.author().to_string(),
        timestamp_ms: m.timestamp_ms(),
    };
    serde_json::to_string(&body)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode message: {e}\"}}"))
        .into()
}

/// Inbound requests that `POST /v1/respond` may still answer.
#[derive(Default)]
pub struct PendingRequests {
    /// Request id to (arrival, message).
    map: Mutex<HashMap<Uuid, (Instant, Message)>>,
}

impl PendingRequests {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, (Instant, Message)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `message` (a request) for answering; forgets expired and, when full, the oldest ones.
    pub fn insert(&self, req_id: Uuid, message: Message) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_PENDING {
            map.retain(|_, (at, _)| now.duration_since(*at) < PENDING_TTL);
        }
        if map.len() >= MAX_PENDING
            && let Some(oldest) = map.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(req_id, (now, message));
    }

    /// Takes the request `req_id` if it is still answerable.
    pub fn take(&self, req_id: &Uuid) -> Option<Message> {
        let (at, message) = self.lock().remove(req_id)?;
        (at.elapsed() < PENDING_TTL).then_some(message)
    }
}

/// The protocols registered through the API.
pub struct ApiProtocols {
    /// Protocol name to the fan-out of its JSON-encoded messages.
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>,
    /// Inbound requests awaiting a response.
    pub pending: PendingRequests,
    /// Capacity of each fan-out channel.
    capacity: usize,
    /// Where drops are counted.
    metrics: Arc<NodeMetrics>,
}

impl ApiProtocols {
    /// No protocols yet; each fan-out channel holds `capacity` messages.
    pub fn new(capacity: usize, metrics: Arc<NodeMetrics>) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            pending: PendingRequests::default(),
            capacity: capacity.max(1),
            metrics,
        }
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<str>>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names registered through the API, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.channels().keys().cloned().collect();
        names.sort();
        names
    }

    /// A new subscription to `name`'s messages, if the API registered it.
    pub fn subscribe(&self, name: &str) -> Option<broadcast::Receiver<Arc<str>>> {
        self.channels().get(name).map(broadcast::Sender::subscribe)
    }

    /// Registers `name` with the swarm and starts its forwarder on `state`'s task tracker.
    pub fn register(self: &Arc<Self>, state: &ApiState, name: &str) -> Result<(), ApiError> {
        let (tx, rx) = {
            let mut channels = self.channels();
            if channels.contains_key(name) {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    format!("protocol {name:?} is already registered with the API"),
                ));
            }
            let rx = state.swarm.register_protocol(name)?;
            let (tx, _) = broadcast::channel(self.capacity);
            channels.insert(name.to_owned(), tx.clone());
            (tx, rx)
        };
        let this = Arc::clone(self);
        let cancel = state.cancel.clone();
        let name = name.to_owned();
        state
            .tasks
            .spawn(async move { this.forward(name, rx, tx, cancel).await });
        Ok(())
    }

    /// Hands every message of one protocol to its subscribers until the swarm or the API stops.
    async fn forward(
        self: Arc<Self>,
        name: String,
        mut rx: mpsc::Receiver<Message>,
        tx: broadcast::Sender<Arc<str>>,
        cancel: CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => break,
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            let json = to_json(&message);
            if let Some(req_id) = message.req_id() {
                self.pending.insert(req_id, message);
            }
            if tx.send(json).is_err() {
                self.metrics.api_dropped("no_subscriber", 1);
                tracing::debug!(protocol = %name, "API message dropped: no subscriber");
            }
        }
        // Subscribers see the end of their stream once the last sender is gone.
        self.channels().remove(&name);
    }
}

/// `GET /v1/protocols/{name}/messages`: the protocol's inbound messages as Server-Sent Events. The first
/// event is `subscribed`; then one `message` event per message (JSON: `from`, `protocol`, `payload`
/// (base64), `req_id`, `gossip`, `author`, `timestamp_ms`); `lagged` (`{"missed": n}`) if this client fell
/// behind. The stream ends when the node shuts down.
pub async fn messages(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = state.protocols.subscribe(&name).ok_or_else(|| {
        ApiError::not_found(format!(
            "protocol {name:?} is not registered with the API (POST /v1/protocols first)"
        ))
    })?;
    let subscribed = Event::default()
        .event("subscribed")
        .data(serde_json::json!({ "protocol": name }).to_string());
    let metrics = Arc::clone(&state.metrics);
    let cancel = state.cancel.clone();
    let rest = futures::stream::unfold(
        (rx, cancel, metrics),
        |(mut rx, cancel, metrics)| async move {
            let next = tokio::select! {
                _ = cancel.cancelled() => return None,
                r = rx.recv() => r,
            };
            let event = match next {
                Ok(json) => Event::default().event("message").data(&*json),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics.api_dropped("subscriber_lagged", n);
                    Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{n}}}"))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), (rx, cancel, metrics)))
        },
    );
    let stream = futures::StreamExt::chain(futures::stream::iter([Ok(subscribed)]), rest);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
