//! Users' API tokens: making and revoking them, for the REST API (`/hub/api/users/{name}/tokens`)
//! and the token page (`/hub/token`) alike. Only a SHA-256 hash and a 4-character lookup
//! prefix are kept (the norm for high-entropy tokens); the token itself is shown once.
//!
//! A token is 48 hex characters (192 random bits). JupyterHub's rule for its scopes: a token
//! holds only what both its owner and its requester hold (`jupyterhub/scopes.py`,
//! `_check_token_scopes`).

use axum::http::StatusCode;

use crate::caller::{PREFIX_LEN, hash};
use crate::error::ApiError;
use crate::state::App;
use hub_core::scopes::{self, ScopeSet};
use hub_core::unix_now;
use hub_store::{TokenRecord, UserRecord};

/// Longest accepted expiry of a new token: ten years, in seconds.
pub const MAX_EXPIRES_IN: i64 = 10 * 365 * 86_400;
/// Longest note, in bytes.
pub const MAX_NOTE: usize = 1000;

/// A new random token: 48 lower-case hex characters.
pub fn generate() -> String {
    let mut b = [0u8; 24];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

/// What a new token should be.
#[derive(Debug, Default)]
pub struct NewToken {
    /// What it is for (at most [`MAX_NOTE`] bytes, no control characters).
    pub note: String,
    /// Seconds until it expires (1 to [`MAX_EXPIRES_IN`]); `None`: never.
    pub expires_in: Option<i64>,
    /// Its scopes as written; empty means `inherit` (everything the owner may do).
    pub scopes: Vec<String>,
}

/// Makes a token of `owner` for a requester holding `requester` (`by` names it in the log);
/// returns the record and the token, which is never stored.
///
/// Errors: 400 for a bad note, expiry or scope (the message names it; a scope the hub does not
/// implement says so), 403 for a scope the owner or the requester lacks.
pub async fn issue(
    app: &App,
    owner: &UserRecord,
    requester: &ScopeSet,
    by: &str,
    req: NewToken,
) -> Result<(TokenRecord, String), ApiError> {
    let name = &owner.name;
    let expires_at = match req.expires_in {
        None => None,
        Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => Some(unix_now() + s),
        Some(s) => return Err(ApiError::bad(format!("expires_in must be 1 to {MAX_EXPIRES_IN} seconds, not {s}"))),
    };
    if req.note.len() > MAX_NOTE || req.note.chars().any(char::is_control) {
        return Err(ApiError::bad(format!("note must be at most {MAX_NOTE} characters with no control characters")));
    }
    let written = if req.scopes.is_empty() { vec!["inherit".to_string()] } else { req.scopes };
    let requested = scopes::parse_all(&written).map_err(|e| ApiError::bad(e.to_string()))?;
    let owner_admin = owner.admin || app.config.auth.admin_users.contains(name);
    let owner_rights = ScopeSet::for_user(name, owner_admin);
    // Each scope as written, with everything it includes, must be held by both; the refusal
    // names the scope as it was written.
    let each: Vec<(String, ScopeSet)> = if requested.iter().any(|r| r.name == "inherit") {
        vec![("inherit".to_string(), owner_rights.clone())]
    } else {
        requested.iter().map(|r| (r.to_string(), ScopeSet::expand(std::slice::from_ref(r), Some(name)))).collect()
    };
    for (as_written, expanded) in &each {
        for s in expanded.strings() {
            let scope = scopes::parse(&s).map_err(ApiError::internal)?;
            let scope = scopes::Scope { name: scope.name, filter: scope.filter };
            if !owner_rights.covers(&scope) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Not assigning requested scope {as_written}: not held by the owner {name} (it includes {s})"
                    ),
                ));
            }
            if !requester.covers(&scope) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("Not assigning requested scope {as_written}: not held by the requester (it includes {s})"),
                ));
            }
        }
    }
    let token = generate();
    let mut rec = TokenRecord {
        id: 0,
        prefix: token[..PREFIX_LEN].to_string(),
        hash: hash(&token),
        username: name.clone(),
        scopes: written,
        note: req.note,
        created: unix_now(),
        expires_at,
        last_activity: None,
    };
    rec.id = app.store.insert_token(&rec).await?;
    tracing::info!(user = %name, token = %format!("a{}", rec.id), scopes = ?rec.scopes, by = %by, "API token created");
    Ok((rec, token))
}

/// Revokes `name`'s token `id`; `false` if there is no such token of theirs. The token cache
/// is emptied, so the token stops working at once, in the proxy too.
pub async fn revoke(app: &App, name: &str, id: i64, by: &str) -> Result<bool, ApiError> {
    if !app.store.delete_token(name, id).await? {
        return Ok(false);
    }
    app.tokens.revoke_all();
    tracing::info!(user = %name, token = %format!("a{id}"), by = %by, "API token revoked");
    Ok(true)
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
