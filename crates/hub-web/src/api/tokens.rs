//! API tokens: users' tokens in the store (only a SHA-256 hash and a 4-character lookup
//! prefix are kept, the norm for high-entropy tokens), and service tokens from `[[services]]`
//! (read once at start from a root-only file or an environment variable).
//!
//! A token is 48 hex characters (192 random bits). Its expiry is checked on every use; its
//! last use is written at most once a minute.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::common::{body, token_model, user_or_404};
use crate::caller::{Caller, PREFIX_LEN, hash};
use crate::error::ApiError;

/// Longest accepted expiry of a new token: ten years, in seconds.
const MAX_EXPIRES_IN: i64 = 10 * 365 * 86_400;

use crate::state::AppState;
use hub_core::scopes::{self, ScopeSet};
use hub_core::unix_now;
use hub_store::TokenRecord;

/// A new random token: 48 lower-case hex characters.
pub fn generate() -> String {
    let mut b = [0u8; 24];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

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
    if !app.store.delete_token(&name, id).await? {
        return Err(ApiError::not_found(format!("No such token: a{id}")));
    }
    app.tokens.revoke_all();
    tracing::info!(user = %name, token = %format!("a{id}"), by = %caller.label(), "API token revoked");
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
    let expires_at = match req.expires_in {
        None => None,
        Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => Some(unix_now() + s),
        Some(s) => return Err(ApiError::bad(format!("expires_in must be 1 to {MAX_EXPIRES_IN} seconds, not {s}"))),
    };
    let note = req.note.unwrap_or_default();
    if note.len() > 1000 || note.chars().any(char::is_control) {
        return Err(ApiError::bad("note must be at most 1000 characters with no control characters"));
    }
    let written = req.scopes.unwrap_or_else(|| vec!["inherit".into()]);
    let requested = scopes::parse_all(&written).map_err(|e| ApiError::bad(e.to_string()))?;
    // JupyterHub's rule: a token may hold only what both its owner and its requester hold.
    let owner_admin = owner.admin || app.config.auth.admin_users.contains(&owner.name);
    let owner_rights = ScopeSet::for_user(&owner.name, owner_admin);
    let wanted = if requested.iter().any(|r| r.name == "inherit") {
        owner_rights.clone()
    } else {
        ScopeSet::expand(&requested, Some(&owner.name))
    };
    for s in wanted.strings() {
        let scope = scopes::parse(&s).map_err(ApiError::internal)?;
        let scope = scopes::Scope { name: scope.name, filter: scope.filter };
        if !owner_rights.covers(&scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Not assigning requested scope {s}: not held by the owner {name}"),
            ));
        }
        if !caller.scopes.covers(&scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Not assigning requested scope {s}: not held by the requester"),
            ));
        }
    }
    let token = generate();
    let mut rec = TokenRecord {
        id: 0,
        prefix: token[..PREFIX_LEN].to_string(),
        hash: hash(&token),
        username: name.clone(),
        scopes: written,
        note,
        created: unix_now(),
        expires_at,
        last_activity: None,
    };
    rec.id = app.store.insert_token(&rec).await?;
    tracing::info!(user = %name, token = %format!("a{}", rec.id), scopes = ?rec.scopes, by = %caller.label(), "API token created");
    let mut m = token_model(&rec);
    m["token"] = json!(token);
    Ok((StatusCode::CREATED, axum::Json(m)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hashes_are_sha256() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 48);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
