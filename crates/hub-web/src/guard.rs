//! The one cross-site request check: Origin, then XSRF.
//!
//! A state-changing request authenticated by the hub's session cookie (a hub form, a REST API
//! call from the admin page, a request to the user's server) or a WebSocket upgrade must come
//! from one of the hub's own pages: its `Origin` header (or, if absent, its `Referer`'s
//! origin) must be one of `[hub] public_urls` (RFC 6454 comparison: scheme, host and port),
//! and it must carry proof that the page was the hub's ([`XsrfProof`]). A request with neither
//! header is refused too: browsers always send `Origin` on cross-site POSTs and WebSocket
//! upgrades, so a missing one means a non-browser client, which can send it.
//!
//! Every refusal is logged here, once, with the request's claimed origin (escaped: these are
//! client-supplied values) and what was being attempted. The answer's text is
//! [`Refusal::message`], the same on every surface; a page answers it as HTML
//! ([`Refusal::page`]), the API and the proxy as JupyterHub's JSON ([`Refusal::json`]).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use hub_auth::session::Session;

use crate::state::App;

/// What proves that a request came from the hub's own page, besides its `Origin`.
#[derive(Debug, Clone, Copy)]
pub enum XsrfProof<'a> {
    /// The session's XSRF token ([`hub_auth::session::Sessions::xsrf_token`]), sent as the
    /// `_xsrf` field of a hub form or in an `X-XSRFToken` header by an API client.
    Session {
        /// The cookie's session.
        session: &'a Session,
        /// The token the request sent (empty if none).
        sent: &'a str,
    },
    /// A request to a user's server: jupyter-server's `_xsrf` cookie, double-submitted in an
    /// `X-XSRFToken` header or an `_xsrf` query parameter ([`xsrf_double_submit`]).
    DoubleSubmit {
        /// The request's query string.
        query: Option<&'a str>,
    },
    /// Only the origin is checked: the login form (no session yet) and WebSocket upgrades
    /// (which carry no token; the server checks its own).
    OriginOnly,
}

/// Why a request was refused as cross-site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `Origin` (or `Referer`) is missing or not one of `[hub] public_urls`.
    #[error(
        "cross-origin request refused: the Origin header is missing or not one of the hub's public URLs ([hub] public_urls); open the hub at its own address and try again"
    )]
    CrossOrigin,
    /// The request's XSRF proof is missing or wrong.
    #[error(
        "XSRF check failed: the request did not carry this session's XSRF token (hub forms send it as _xsrf, JupyterLab and API clients in an X-XSRFToken header); reload the page and try again"
    )]
    Xsrf,
}

impl Refusal {
    /// The answer's text (also the `Display` text).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// 403 as a hub page.
    pub fn page(&self) -> Response {
        crate::html::error_page(StatusCode::FORBIDDEN, "Forbidden", &self.message())
    }

    /// 403 in JupyterHub's JSON error shape.
    pub fn json(&self) -> Response {
        crate::error::json(StatusCode::FORBIDDEN, &self.message())
    }
}

/// Checks that a cookie-authenticated request comes from the hub's own page (see the module
/// documentation); `what` names the attempt in the log ("a logout", "PUT /user/ann/..."). It
/// is formatted only when a refusal is logged, so an allowed request (the proxy's hot path)
/// builds no string for it.
pub fn check(
    app: &App,
    headers: &HeaderMap,
    proof: XsrfProof<'_>,
    what: std::fmt::Arguments<'_>,
) -> Result<(), Refusal> {
    if !origin_allowed(app, headers) {
        tracing::warn!(
            origin = ?headers.get(header::ORIGIN), referer = ?headers.get(header::REFERER),
            public_urls = ?app.config.hub.public_origins,
            "refused {what}: the request's Origin is not one of [hub] public_urls"
        );
        return Err(Refusal::CrossOrigin);
    }
    let proven = match proof {
        XsrfProof::Session { session, sent } => app.sessions.check_xsrf(session, sent),
        XsrfProof::DoubleSubmit { query } => xsrf_double_submit(headers, query),
        XsrfProof::OriginOnly => true,
    };
    if !proven {
        let user = match proof {
            XsrfProof::Session { session, .. } => session.username.as_str(),
            _ => "",
        };
        tracing::warn!(user = %user, "refused {what}: missing or wrong XSRF token");
        return Err(Refusal::Xsrf);
    }
    Ok(())
}

/// Whether the request's `Origin` (or, if absent, its `Referer`'s origin) is one of
/// `[hub] public_urls`.
fn origin_allowed(app: &App, h: &HeaderMap) -> bool {
    let claimed = h.get(header::ORIGIN).or_else(|| h.get(header::REFERER)).and_then(|v| v.to_str().ok());
    match claimed.and_then(hub_config::origin_of) {
        Some(o) => app.config.hub.public_origins.contains(&o),
        None => false,
    }
}

/// The double-submit XSRF check for a cookie-authenticated, state-changing request to a
/// user's server: the `_xsrf` cookie (set by jupyter-server, Tornado's XSRF cookie) must be
/// present and equal to the `X-XSRFToken` header (what JupyterLab sends) or to an `_xsrf`
/// query parameter. A cross-site page can make the browser send the cookie but can neither
/// read it nor set a custom header. This is needed because jupyter-server skips its own XSRF
/// check for requests authenticated by token, and the hub adds the token.
pub fn xsrf_double_submit(h: &HeaderMap, query: Option<&str>) -> bool {
    let Some(cookie) = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == "_xsrf")
        .map(|c| c.value().to_string())
    else {
        return false;
    };
    if cookie.is_empty() {
        return false;
    }
    let header = h.get("x-xsrftoken").or_else(|| h.get("x-csrftoken")).and_then(|v| v.to_str().ok());
    let from_query = || {
        query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "_xsrf").map(|(_, v)| v.into_owned())
        })
    };
    match header {
        Some(v) => v == cookie,
        None => from_query().is_some_and(|v| v == cookie),
    }
}

#[derive(serde::Deserialize, Default)]
/// A hub form with only the session's XSRF token.
pub struct XsrfForm {
    /// The `_xsrf` field.
    #[serde(default)]
    pub _xsrf: String,
}

/// Checks a hub form post: Origin from the hub's own addresses and the session's XSRF token.
pub fn form_allowed(
    app: &crate::state::AppState,
    headers: &axum::http::HeaderMap,
    s: &hub_auth::session::Session,
    xsrf: &str,
    what: &str,
) -> Option<axum::response::Response> {
    check(app, headers, XsrfProof::Session { session: s, sent: xsrf }, format_args!("{what}")).err().map(|r| r.page())
}
