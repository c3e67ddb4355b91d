//! What the API's endpoint modules share: the JSON body reader, time formats, the token
//! model, the 404 for an unknown user, the caller's name for logs.

use std::time::Duration;

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use hub_store::{TokenRecord, UserRecord};

use crate::caller::{Caller, Identity};
use crate::error::ApiError;
use crate::state::AppState;

pub(super) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad(format!("the request body is not valid JSON for this endpoint: {e}")))
}

/// RFC 3339 UTC with seconds, as JupyterHub's timestamps (`2026-11-21T14:32:05Z`).
pub fn iso(unix: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)).to_string()
}

pub(super) fn iso_opt(unix: Option<i64>) -> Value {
    unix.filter(|t| *t > 0).map_or(Value::Null, |t| Value::String(iso(t)))
}

pub(super) async fn user_or_404(app: &AppState, name: &str) -> Result<UserRecord, ApiError> {
    app.store.get_user(name).await?.ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))
}

pub(super) fn caller_name(c: &Caller) -> String {
    match &c.identity {
        Identity::User { name, .. } => name.clone(),
        Identity::Service { name } => format!("service:{name}"),
    }
}

/// For [`tokens`]: a token's API model (`"a<id>"` ids, RFC 3339 times).
pub(super) fn token_model(t: &TokenRecord) -> Value {
    json!({
        "id": format!("a{}", t.id),
        "kind": "api_token",
        "user": t.username,
        "roles": [],
        "scopes": t.scopes,
        "note": t.note,
        "created": iso(t.created),
        "expires_at": iso_opt(t.expires_at),
        "last_activity": iso_opt(t.last_activity),
        "session_id": null,
    })
}
