//! Who is calling the REST API (or `/hub/metrics`): the authenticated [`Caller`], found from an
//! API token (a user's, in the store, or a service's from `[[services]]`) or the session
//! cookie, with the scopes it holds (`hub_core::scopes`).
//!
//! API tokens: users' tokens are kept in the store as a SHA-256 hash and a 4-character lookup
//! prefix (the norm for high-entropy tokens); service tokens are read once at start from a
//! root-only file or an environment variable. A token's expiry is checked on every use; its
//! last use is written at most once a minute.
//!
//! Users' tokens are cached in memory ([`crate::token_cache::TokenCache`]) as sessions are.

use axum::http::{HeaderMap, Method, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use hub_core::scopes::{self, ScopeSet};
use hub_core::unix_now;

use crate::error::ApiError;
use crate::guard::{self, XsrfProof};
use crate::state::AppState;

/// Characters of a token kept in clear to narrow the lookup.
pub const PREFIX_LEN: usize = 4;
/// A token's last use is written at most this often (seconds).
const TOUCH_INTERVAL: i64 = crate::token_cache::FRESH_FOR;
/// The token of an `Authorization: token <T>` or `Authorization: Bearer <T>` header; `None`
/// without the header, `Some(Err)` for another form.
pub fn token_in(headers: &HeaderMap) -> Option<Result<&str, ApiError>> {
    let value = headers.get(header::AUTHORIZATION)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer")).then(|| rest.trim())
            })
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "the Authorization header must be `token <API token>` or `Bearer <API token>`",
                )
            }),
    )
}

/// The hex SHA-256 of `token`.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A hub user (by token or session).
    User {
        /// User name.
        name: String,
        /// Whether they are an admin now.
        admin: bool,
    },
    /// A `[[services]]` entry.
    Service {
        /// Service name.
        name: String,
    },
}

/// An authenticated caller and what it may do.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub identity: Identity,
    /// Effective scopes (a token's own scopes within its owner's rights).
    pub scopes: ScopeSet,
    /// `"a<id>"` of the user token used, if any.
    pub token_id: Option<String>,
    /// The session id, for cookie-authenticated requests.
    pub session_id: Option<String>,
}

impl Caller {
    /// Who, for log lines: the user's name, or `service:<name>`.
    pub fn label(&self) -> String {
        match &self.identity {
            Identity::User { name, .. } => name.clone(),
            Identity::Service { name } => format!("service:{name}"),
        }
    }

    /// `Ok` if the caller holds `scope` (for `user`, if given); else 404 when the caller may
    /// not even see `user`, 403 otherwise.
    pub fn require(&self, scope: &str, user: Option<&str>) -> Result<(), ApiError> {
        if self.scopes.allows(scope, user) {
            return Ok(());
        }
        // A caller that may see the user but not do this gets 403; one that may not even see
        // the user gets 404, as JupyterHub answers, so names do not leak.
        match user {
            Some(u) if !self.may_see(u) => Err(ApiError::not_found(format!("No such user: {u}"))),
            Some(u) => Err(ApiError::forbidden(&format!("{scope}!user={u}"))),
            None => Err(ApiError::forbidden(scope)),
        }
    }

    /// As [`Caller::require`], for `scope` on `user`'s server `server` (`""`: the default one):
    /// a grant for the user or for that very server (`!server=user/server`) will do.
    pub fn require_server(&self, scope: &str, user: &str, server: &str) -> Result<(), ApiError> {
        if self.scopes.allows_server(scope, user, server) {
            return Ok(());
        }
        if !self.may_see(user) && !self.scopes.allows_server("read:servers", user, server) {
            return Err(ApiError::not_found(format!("No such user: {user}")));
        }
        Err(ApiError::forbidden(&format!("{scope}!server={user}/{server}")))
    }

    /// Whether the caller may see that `user` exists.
    pub fn may_see(&self, user: &str) -> bool {
        ["read:users:name", "list:users", "read:users:activity", "read:servers", "read:tokens", "users:activity"]
            .iter()
            .any(|s| self.scopes.allows(s, Some(user)))
    }
}

/// The authenticated caller of an API handler: [`authenticate`]'s answer for the request, or
/// the one [`credentials_before_body`] already found for a request with a body. Rejects with
/// the same 403 `ApiError` (JupyterHub's JSON shape).
impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &AppState) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.remove::<Caller>() {
            return Ok(caller);
        }
        authenticate(app, &parts.method, &parts.headers).await
    }
}

/// Authenticates an API request: a token in `Authorization`, else the session cookie (with
/// the XSRF and origin checks for state-changing methods). Errors are 403, as JupyterHub's.
pub async fn authenticate(app: &AppState, method: &Method, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if let Some(token) = token_in(headers) {
        return caller_for_token(app, token?).await;
    }
    let Some(session) = app.session_of(headers).await else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Missing or invalid credentials: send `Authorization: token <API token>` (create one with POST /hub/api/users/<name>/tokens)",
        ));
    };
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let sent = headers.get("x-xsrftoken").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let proof = XsrfProof::Session { session: &session, sent };
        guard::check(app, headers, proof, format_args!("a cookie-authenticated API request"))
            .map_err(|r| ApiError::new(StatusCode::FORBIDDEN, r.message()))?;
    }
    let admin = app.is_admin(&session.username).await;
    Ok(Caller {
        scopes: ScopeSet::for_user(&session.username, admin),
        identity: Identity::User { name: session.username.clone(), admin },
        token_id: None,
        session_id: Some(session.id.clone()),
    })
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
        if s.matches(&digest) {
            return Ok(Caller {
                identity: Identity::Service { name: s.name.clone() },
                scopes: ScopeSet::expand(s.scopes(), None),
                token_id: None,
                session_id: None,
            });
        }
    }
    let now = unix_now();
    match app.tokens.get(&digest, now) {
        Some(Some(e)) => {
            return Ok(Caller {
                identity: Identity::User { name: e.user, admin: e.admin },
                scopes: e.scopes,
                token_id: Some(e.token_id),
                session_id: None,
            });
        }
        Some(None) => return Err(invalid()),
        None => {}
    }
    let epoch = app.tokens.epoch();
    let hex_digest = hex::encode(digest);
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
    let admin = app.is_admin(&t.username).await;
    let owner = ScopeSet::for_user(&t.username, admin);
    let requested = scopes::parse_all(&t.scopes).map_err(ApiError::internal)?;
    let entry = crate::token_cache::Entry {
        user: t.username.clone(),
        admin,
        scopes: ScopeSet::for_token(&requested, &t.username, &owner),
        token_id: format!("a{}", t.id),
        expires_at: t.expires_at,
    };
    app.tokens.put(digest, &entry, now, epoch);
    Ok(Caller {
        identity: Identity::User { name: entry.user, admin },
        scopes: entry.scopes,
        token_id: Some(entry.token_id),
        session_id: None,
    })
}
