//! API tokens: users' tokens in the store (only a SHA-256 hash and a 4-character lookup
//! prefix are kept, the norm for high-entropy tokens), and service tokens from `[[services]]`
//! (read once at start from a root-only file or an environment variable).
//!
//! A token is 48 hex characters (192 random bits). Its expiry is checked on every use; its
//! last use is written at most once a minute.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, Caller, Identity, body, caller_name, token_model, user_or_404};
use crate::web::AppState;
use hub_config::{ServiceConfig, TokenSource};
use hub_core::scopes::{self, Requested, ScopeSet};
use hub_core::unix_now;
use hub_store::TokenRecord;

/// Characters of a token kept in clear to narrow the lookup.
pub const PREFIX_LEN: usize = 4;
/// Longest accepted expiry of a new token: ten years, in seconds.
const MAX_EXPIRES_IN: i64 = 10 * 365 * 86_400;
/// A token's last use is written at most this often (seconds).
const TOUCH_INTERVAL: i64 = 60;

/// The hex SHA-256 of `token`.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: 48 lower-case hex characters.
pub fn generate() -> String {
    let mut b = [0u8; 24];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

/// A service whose token has been read.
#[derive(Debug, Clone)]
pub struct ServiceToken {
    /// The service's name.
    pub name: String,
    hash: [u8; 32],
    scopes: Vec<Requested>,
}

/// Reads each service's token. Errors name the service and the fix: a missing or empty
/// token, a token file readable by group or others, a token shorter than 32 characters.
pub fn load_services(services: &[ServiceConfig]) -> anyhow::Result<Vec<ServiceToken>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for s in services {
        let token = match &s.token {
            TokenSource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| {
                    anyhow::anyhow!("[[services]] {}: cannot read api_token_file {}: {e}", s.name, path.display())
                })?;
                if meta.uid() != 0 {
                    anyhow::bail!(
                        "[[services]] {}: api_token_file {} is owned by uid {}, not root; run `chown root {}` (its owner could change the token)",
                        s.name,
                        path.display(),
                        meta.uid(),
                        path.display()
                    );
                }
                if meta.mode() & 0o077 != 0 {
                    anyhow::bail!(
                        "[[services]] {}: api_token_file {} is readable by others (mode {:o}); chmod 600 it",
                        s.name,
                        path.display(),
                        meta.mode() & 0o777
                    );
                }
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("[[services]] {}: cannot read {}: {e}", s.name, path.display()))?
            }
            TokenSource::Env(var) => std::env::var(var).map_err(|_| {
                anyhow::anyhow!("[[services]] {}: the environment variable {var} (api_token_env) is not set", s.name)
            })?,
        };
        let token = token.trim();
        if token.len() < 32 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            anyhow::bail!(
                "[[services]] {}: the token must be at least 32 characters with no spaces; generate one with `openssl rand -hex 32`",
                s.name
            );
        }
        let scopes = scopes::parse_all(&s.scopes).map_err(|e| anyhow::anyhow!("[[services]] {}: {e}", s.name))?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        out.push(ServiceToken { name: s.name.clone(), hash, scopes });
    }
    Ok(out)
}

fn invalid() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "invalid or expired API token")
}

/// The caller a token stands for: a service, or a user whose token is known and unexpired.
pub async fn caller_for_token(app: &AppState, token: &str) -> Result<Caller, ApiError> {
    if token.len() < 8 || token.len() > 256 || !token.is_ascii() {
        return Err(invalid());
    }
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    for s in &app.services {
        if bool::from(s.hash.ct_eq(&digest)) {
            return Ok(Caller {
                identity: Identity::Service { name: s.name.clone() },
                scopes: ScopeSet::expand(&s.scopes, None),
                token_id: None,
                session_id: None,
            });
        }
    }
    let hex_digest = hex::encode(digest);
    let now = unix_now();
    let found = app
        .store
        .tokens_with_prefix(&token[..PREFIX_LEN])
        .await?
        .into_iter()
        .find(|t| bool::from(t.hash.as_bytes().ct_eq(hex_digest.as_bytes())));
    let Some(t) = found else { return Err(invalid()) };
    if t.expires_at.is_some_and(|e| e <= now) {
        return Err(invalid());
    }
    if t.last_activity.is_none_or(|l| now - l >= TOUCH_INTERVAL) {
        app.store.touch_token(t.id, now).await?;
    }
    let admin = crate::web::is_admin_name(app, &t.username).await;
    let owner = ScopeSet::for_user(&t.username, admin);
    let requested = scopes::parse_all(&t.scopes).map_err(ApiError::internal)?;
    Ok(Caller {
        scopes: ScopeSet::for_token(&requested, &t.username, &owner),
        identity: Identity::User { name: t.username.clone(), admin },
        token_id: Some(format!("a{}", t.id)),
        session_id: None,
    })
}

/// `"a12"` → 12; anything else is "no such token".
fn token_id(raw: &str) -> Result<i64, ApiError> {
    raw.strip_prefix('a')
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| ApiError::not_found(format!("No such token: {raw}")))
}

pub(super) async fn list(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let caller = super::authenticate(&app, &method, &headers).await?;
    caller.require("read:tokens", Some(&name))?;
    user_or_404(&app, &name).await?;
    let tokens: Vec<_> = app.store.tokens_of(&name).await?.iter().map(token_model).collect();
    Ok(axum::Json(json!({"api_tokens": tokens})).into_response())
}

pub(super) async fn get_one(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = super::authenticate(&app, &method, &headers).await?;
    caller.require("read:tokens", Some(&name))?;
    let id = token_id(&id)?;
    let t = app.store.tokens_of(&name).await?.into_iter().find(|t| t.id == id);
    let t = t.ok_or_else(|| ApiError::not_found(format!("No such token: a{id}")))?;
    Ok(axum::Json(token_model(&t)).into_response())
}

pub(super) async fn delete(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = super::authenticate(&app, &method, &headers).await?;
    caller.require("tokens", Some(&name))?;
    let id = token_id(&id)?;
    if !app.store.delete_token(&name, id).await? {
        return Err(ApiError::not_found(format!("No such token: a{id}")));
    }
    tracing::info!(user = %name, token = %format!("a{id}"), by = %caller_name(&caller), "API token revoked");
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
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let caller = super::authenticate(&app, &method, &headers).await?;
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
    let requested = scopes::parse_all(&written).map_err(ApiError::bad)?;
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
    tracing::info!(user = %name, token = %format!("a{}", rec.id), scopes = ?rec.scopes, by = %caller_name(&caller), "API token created");
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

    #[test]
    fn service_tokens_must_be_private_and_long() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t");
        std::fs::write(&path, format!("{}\n", "x".repeat(40))).expect("write");
        let svc = |scopes: &[&str]| ServiceConfig {
            name: "culler".into(),
            token: TokenSource::File(path.clone()),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_services(&[svc(&["list:users"])]).expect_err("world-readable");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let loaded = load_services(&[svc(&["list:users"])]).expect("private file");
        assert_eq!(loaded[0].name, "culler");
        // Private but not root's: its owner could change the token.
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown (tests run as root)");
        let e = load_services(&[svc(&["list:users"])]).expect_err("not root's");
        assert!(e.to_string().contains("not root") && e.to_string().contains("chown root"), "{e}");
        std::os::unix::fs::chown(&path, Some(0), None).expect("chown back");
        std::fs::write(&path, "short").expect("write");
        assert!(load_services(&[svc(&[])]).expect_err("short").to_string().contains("at least 32"));
        let env = ServiceConfig {
            name: "e".into(),
            token: TokenSource::Env("HUB_TEST_UNSET_TOKEN_VAR".into()),
            scopes: vec![],
        };
        assert!(load_services(&[env]).expect_err("unset").to_string().contains("is not set"));
    }
}
