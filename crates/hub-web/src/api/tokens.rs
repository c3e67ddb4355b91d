//! `/hub/api/users/{name}/tokens`: users' API tokens in JupyterHub's model; the making and
//! revoking is [`crate::user_tokens`]', shared with the token page.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

pub use crate::user_tokens::generate;

use super::common::{body, token_model, user_or_404};
use crate::caller::Caller;
use crate::error::ApiError;

use crate::state::AppState;

/// `"a12"` → 12; anything else is "no such token".
fn token_id(raw: &str) -> Result<i64, ApiError> {
    raw.strip_prefix('a')
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| ApiError::not_found(format!("No such token: {raw}")))
}

pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require("read:tokens", Some(&name))?;
    user_or_404(&app, &name).await?;
    let tokens: Vec<_> = app.store.tokens_of(&name).await?.iter().map(token_model).collect();
    Ok(axum::Json(json!({"api_tokens": tokens})).into_response())
}

pub(super) async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require("read:tokens", Some(&name))?;
    let id = token_id(&id)?;
    let t = app.store.tokens_of(&name).await?.into_iter().find(|t| t.id == id);
    let t = t.ok_or_else(|| ApiError::not_found(format!("No such token: a{id}")))?;
    Ok(axum::Json(token_model(&t)).into_response())
}

pub(super) async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require("tokens", Some(&name))?;
    let id = token_id(&id)?;
    if !crate::user_tokens::revoke(&app, &name, id, &caller.label()).await? {
        return Err(ApiError::not_found(format!("No such token: a{id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewToken {
    expires_in: Option<i64>,
    note: Option<String>,
    scopes: Option<Vec<String>>,
    /// Deprecated in JupyterHub 3 (roles became scopes); refused with a message.
    roles: Option<Vec<String>>,
}

pub(super) async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    caller.require("tokens", Some(&name))?;
    let req: NewToken = body(&raw)?;
    let owner = user_or_404(&app, &name).await?;
    if req.roles.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad(
            "roles are not supported on tokens (JupyterHub 3 replaced them with scopes); use scopes",
        ));
    }
    let new = crate::user_tokens::NewToken {
        note: req.note.unwrap_or_default(),
        expires_in: req.expires_in,
        scopes: req.scopes.unwrap_or_else(|| vec!["inherit".into()]),
    };
    let (rec, token) = crate::user_tokens::issue(&app, &owner, &caller.scopes, &caller.label(), new).await?;
    let mut m = token_model(&rec);
    m["token"] = json!(token);
    Ok((StatusCode::CREATED, axum::Json(m)).into_response())
}
