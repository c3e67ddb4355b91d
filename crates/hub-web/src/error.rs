//! The one error policy of the HTTP surface.
//!
//! - **Libraries** (every crate below this one) return `thiserror` enums that name the
//!   problem and the fix, with the failing value; none returns `Result<_, String>`. A store
//!   error stays a [`hub_store::StoreError`] (it is never dressed up as something else), and
//!   an error of one layer that reaches another is wrapped (`#[from]`), not re-worded.
//! - **Handlers** answer an error in one of two shapes. The REST API and the proxy's answers to
//!   API clients use JupyterHub's JSON body, `{"status": N, "message": "..."}` ([`json`],
//!   [`ApiError`]); the hub's pages use an HTML error page (`crate::html::error_page`). Both
//!   have the same status codes and words for the same refusal (`crate::guard::Refusal`).
//! - **Internal detail goes to the log, never to the client**: an unexpected error (a store
//!   error, an I/O error) becomes a 500 whose message says only that the hub could not do it
//!   and to see the log ([`ApiError::internal`]), and the log line has the error itself.
//!   Messages about what the client sent name the problem and the fix.
//! - **A 429 always carries `Retry-After`** in seconds ([`with_retry_after`]).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// JupyterHub's error body, `{"status": N, "message": "..."}`, with status N.
pub fn json(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"status": status.as_u16(), "message": message}))).into_response()
}

/// `resp` with `Retry-After: secs` (RFC 9110 §10.2.3), for a 429 or a 503.
pub fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
    resp
}

/// An API error: answered as `{"status": N, "message": "..."}` with status N.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong and, where there is one, the fix.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    /// 400 with `message`.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404 with `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
    /// 403 naming the `scope` the caller lacks (JupyterHub wording).
    pub fn forbidden(scope: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, format!("Action is not authorized with current scopes; requires {scope}"))
    }
    /// 500: `e` goes to the log, the client gets a plain sentence.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "REST API request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the hub could not complete the request; see the hub's log")
    }
}

impl From<hub_store::StoreError> for ApiError {
    fn from(e: hub_store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.status, &self.message)
    }
}

/// Gives every API error JupyterHub's `{"status", "message"}` body, including the ones axum
/// answers before a handler runs (a query string or path segment that cannot be decoded, a
/// body over the size limit, a method the route does not have), which come as plain text.
pub async fn json_errors(r: Response) -> Response {
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    let mut out = ApiError::new(status, message).into_response();
    // Keep headers such as Allow (405) and Retry-After.
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}
