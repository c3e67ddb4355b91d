//! The application state every handler reaches: [`App`] behind a cheap [`AppState`] handle,
//! and the questions about a request that every surface asks (whose session is this, is this
//! name an admin).

use axum::response::{IntoResponse, Response};
use std::ops::Deref;
use std::sync::Arc;

use axum::http::{HeaderMap, header};

use hub_auth::Authenticator;
use hub_auth::session::{Session, Sessions};
use hub_config::Config;
use hub_core::unix_now;
use hub_servers::renewer::Renewer;
use hub_servers::servers::Servers;
use hub_store::Store;

/// Everything a request handler can reach.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Session issuing and checking.
    pub sessions: Sessions,
    /// Password checking (PAM or Kerberos).
    pub auth: Arc<dyn Authenticator>,
    /// SPNEGO settings when `[auth] spnego = true`.
    pub spnego: Option<hub_auth::kerberos::KerberosSettings>,
    /// Failed-login limits.
    pub throttle: hub_auth::throttle::Throttle,
    /// Users' servers.
    pub servers: Arc<Servers>,
    /// Kerberos ticket renewals.
    pub renewer: Arc<Renewer>,
    /// Users' notebook jobs and their runs.
    pub jobs: Arc<hub_jobs::Jobs>,
    /// Becomes `true` when the hub shuts down: WebSocket tunnels and progress streams close.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// Prometheus collectors for `/hub/metrics`.
    pub metrics: crate::collectors::Metrics,
    /// The banners of the login, home and spawn pages: `[hub] announcement*`, replaced when
    /// `hub serve` re-reads them on SIGHUP.
    pub announcements: std::sync::RwLock<hub_config::Announcements>,
    /// Users' API tokens recently found in the store.
    pub tokens: crate::token_cache::TokenCache,
    /// `[[services]]` with their tokens read (hashed).
    pub services: Vec<hub_auth::service::ServiceToken>,
    /// The background check of the servers a previous hub left running; `serve_state`
    /// reports readiness to systemd once it is done.
    pub adoption: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Shared application state: a cheap handle to [`App`].
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    /// The session the request's cookie carries, if it is valid now.
    pub async fn session_of(&self, headers: &HeaderMap) -> Option<Session> {
        let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
        self.sessions.from_cookie_header(cookie, unix_now()).await
    }

    /// Whether `name` is an admin: listed in `[auth] admin_users`, or recorded as one (by an
    /// `admin_groups` login or the REST API). A database error counts as "no". The one admin
    /// check of every page, API call and token.
    pub async fn is_admin(&self, name: &str) -> bool {
        if self.config.auth.admin_users.iter().any(|a| a == name) {
            return true;
        }
        self.store.is_admin(name).await.unwrap_or(false)
    }
}

/// The logged-in user of a hub page. Rejects with a redirect to the login page that comes
/// back to the same URL.
pub struct CurrentUser(pub hub_auth::session::Session);

impl axum::extract::FromRequestParts<AppState> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &AppState) -> Result<Self, Response> {
        if let Some(s) = app.session_of(&parts.headers).await {
            return Ok(CurrentUser(s));
        }
        let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/hub/home");
        Err(axum::response::Redirect::to(&format!("/hub/login?next={}", hub_core::percent_encode(next)))
            .into_response())
    }
}
