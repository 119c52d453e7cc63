//! The ban endpoints: `GET /v1/bans`, `POST /v1/bans`, `DELETE /v1/bans/{id-or-ip}` ([`crate::ban`]).

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson};
use super::routes::parse_id;
use crate::ban::{Ban, BanTarget};
use crate::transport::tcp::connection::unix_ms;

/// A ban as the API shows it.
#[derive(Serialize)]
pub struct BanJson {
    /// The banned node id (base58) or IP address.
    target: String,
    /// `id` or `ip`.
    kind: &'static str,
    /// Why: `mac_failure`, `protocol_violation`, `rate_limit`, `invalid_signature`, `ip_threshold` or
    /// `manual`.
    reason: &'static str,
    /// The operator's reason, or what crossed the IP threshold.
    note: String,
    /// When the ban was made, unix ms.
    since_ms: i64,
    /// When it ends, unix ms.
    until_ms: i64,
    /// Seconds left.
    remaining_secs: f64,
}

impl From<&Ban> for BanJson {
    fn from(b: &Ban) -> Self {
        Self {
            target: b.target.to_string(),
            kind: b.target.kind(),
            reason: b.reason.label(),
            note: b.note.clone(),
            since_ms: b.since_ms,
            until_ms: b.until_ms,
            remaining_secs: b.remaining(unix_ms()).as_secs_f64(),
        }
    }
}

/// `GET /v1/bans` body.
#[derive(Serialize)]
pub struct BansJson {
    /// Active bans, oldest first.
    bans: Vec<BanJson>,
}

/// `GET /v1/bans`: the active bans.
pub async fn list(State(state): State<ApiState>) -> Json<BansJson> {
    Json(BansJson {
        bans: state.swarm.bans().iter().map(BanJson::from).collect(),
    })
}

/// `POST /v1/bans` body: exactly one of `id` and `ip`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// A node id to ban, base58.
    id: Option<String>,
    /// An IP address to ban.
    ip: Option<String>,
    /// How long, e.g. `"10m"`, `"2h"`, `"7days"` (default `bans.ban_duration`).
    duration: Option<String>,
    /// Why (kept as the ban's note, one line, at most 200 characters).
    reason: Option<String>,
}

/// `POST /v1/bans`: bans a node id or an IP (201 with the ban); open connections it covers are closed.
pub async fn add(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<BanRequest>,
) -> Result<(StatusCode, Json<BanJson>), ApiError> {
    let target = match (&req.id, &req.ip) {
        (Some(id), None) => BanTarget::Id(parse_id("id", id)?),
        (None, Some(ip)) => BanTarget::ip(
            ip.parse::<IpAddr>()
                .map_err(|_| ApiError::bad_request(format!("`ip`: invalid IP address {ip:?}")))?,
        ),
        _ => return Err(ApiError::bad_request("give exactly one of `id` and `ip`")),
    };
    let duration = match &req.duration {
        None => None,
        Some(text) => Some(
            humantime_serde::re::humantime::parse_duration(text).map_err(|e| {
                ApiError::bad_request(format!("`duration`: invalid duration {text:?}: {e}"))
            })?,
        ),
    };
    let ban = state
        .swarm
        .ban(target, duration, req.reason.as_deref().unwrap_or(""))?;
    Ok((StatusCode::CREATED, Json((&ban).into())))
}

/// `DELETE /v1/bans/{target}`: lifts the ban on a node id or an IP (the lifted ban; 404 if none).
pub async fn remove(
    State(state): State<ApiState>,
    Path(target): Path<String>,
) -> Result<Json<BanJson>, ApiError> {
    let parsed: BanTarget = target
        .parse()
        .map_err(|e: crate::ban::BanError| ApiError::bad_request(e.to_string()))?;
    let lifted = state
        .swarm
        .unban(&parsed)
        .ok_or_else(|| ApiError::not_found(format!("no active ban on {target}")))?;
    Ok(Json((&lifted).into()))
}
