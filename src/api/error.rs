//! API errors: every failure is a JSON body `{"error": "..."}` with a fitting status code.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;
use crate::transport::TransportError;

/// A failed API call: a status and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

/// The JSON body of every error response.
#[derive(Serialize)]
struct ErrorBody<'a> {
    /// What went wrong.
    error: &'a str,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: &self.message,
        });
        (self.status, body).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::ProtocolAlreadyRegistered(_) => StatusCode::CONFLICT,
            Error::ReservedProtocol(_) | Error::InvalidProtocolName(_) | Error::Descriptor(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::NodeNotFound(_) => StatusCode::NOT_FOUND,
            Error::Transport(TransportError::TooLarge { .. }) | Error::PayloadTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::Ban(_) => StatusCode::BAD_REQUEST,
            Error::Transport(TransportError::Banned(_)) => StatusCode::FORBIDDEN,
            Error::Transport(TransportError::Shutdown) | Error::Shutdown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Transport(_) | Error::FindNode(_) => StatusCode::BAD_GATEWAY,
            Error::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Error::NotARequest => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let detail = r.body_text();
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a JSON body with `Content-Type: application/json`".to_owned()
            }
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
                format!("request body too large: {detail}")
            }
            _ => format!("bad JSON body: {detail}"),
        };
        Self::new(status, message)
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s (JSON bodies), not axum's plain-text ones.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_errors_map_to_statuses() {
        let id = crate::identity::Keypair::random().node_id();
        assert_eq!(
            ApiError::from(Error::NodeNotFound(id)).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::from(Error::Timeout).status,
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            ApiError::from(Error::ReservedProtocol("/kadmesh/x".into())).status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::from(Error::Transport(TransportError::TooLarge {
                len: 2,
                max: 1
            }))
            .status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ApiError::from(Error::Shutdown).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(Error::Ban(crate::ban::BanError::OwnId)).status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::from(Error::Transport(TransportError::Banned(
                crate::ban::BanTarget::Id(id)
            )))
            .status,
            StatusCode::FORBIDDEN
        );
    }
}
