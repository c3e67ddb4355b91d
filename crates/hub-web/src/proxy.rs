//! The proxy's routing: `/user/<name>/...` → the user's single-user server at its
//! [`hub_core::Endpoint`] (the server's Unix socket by default, or a loopback port with
//! `transport = "tcp"`). The bytes themselves move in `hub_net::upstream`.
//!
//! Invariant: a request reaches `<name>`'s server only if it carries a valid session for
//! `<name>`, or a hub API token whose scopes hold `access:servers` for `<name>`'s server (as
//! JupyterHub's single-user servers accept; the token is never forwarded); otherwise: another
//! user's session 403, a token without the scope 403 in JSON, nothing: a redirect to the login
//! page with `next`. The
//! hub's session cookie is removed and the server's token injected (`Authorization: token`),
//! hop-by-hop headers (RFC 9110 §7.6.1) are stripped both ways, `X-Forwarded-For/-Proto/-Host`
//! are set, and bodies stream through unbuffered on the browser connection's own upstream
//! connection ([`ConnUpstream`]); a large response body to a GET (`hub_net::splice::MIN_BODY`
//! bytes or more, framed by `Content-Length`) is moved with splice(2) instead of copied.
//! A WebSocket upgrade gets its own upstream connection and, after
//! the 101, a plain byte tunnel, so frames, close codes and large messages pass untouched.
//!
//! Taps: a notebook open (`GET .../api/contents/<path>.ipynb`, content requested, answered
//! 200) or save (`PUT .../api/contents/<path>.ipynb`, answered 200/201) triggers a ticket
//! renewal in the background; the response is never held for it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::guard::{self, XsrfProof};
use crate::html::error_page;
use crate::state::AppState;
use hub_auth::session::SessionCheck;
use hub_core::{percent_encode, unix_now};
use hub_net::upstream::{ConnUpstream, ip_header, is_upgrade, strip_hop_by_hop, websocket};
use hub_servers::renewer::Trigger;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Handles a request under `/user/` that came through the router (`/user` itself); the
/// server's hot path is [`forward`] with the browser connection's [`ConnUpstream`].
pub async fn handle(State(app): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    forward(&app, peer, req, None).await
}

/// Handles every request under `/user/`; with `conn`, plain requests go on that browser
/// connection's upstream connection, otherwise on a connection of their own (the same
/// mechanism, kept for no one).
pub async fn forward(app: &AppState, peer: SocketAddr, req: Request, conn: Option<&ConnUpstream>) -> Response {
    // Shared, not copied (a reference count): its parts are borrowed below while the request
    // itself is taken apart.
    let uri = req.uri().clone();
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/user/") else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "There is nothing here.");
    };
    let (name, has_slash) = match rest.split_once('/') {
        Some((name, _)) => (name, true),
        None => (rest, false),
    };
    if name.is_empty() {
        return Redirect::to("/hub/home").into_response();
    }
    if !has_slash {
        let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        return Redirect::to(&format!("/user/{name}/{q}")).into_response();
    }
    if has_dot_segment(&rest[name.len()..]) {
        tracing::warn!(route = %name, path = %path, "refused: a dot-segment in the path");
        return json_error(
            StatusCode::BAD_REQUEST,
            "the request path contains a dot-segment (`.` or `..`, perhaps percent-encoded); send the path without it",
        );
    }
    let next = uri.path_and_query().map_or(path, |p| p.as_str());
    // `/user/<name>/<server_name>/...` is a named server when the user has one of that name
    // (a name can never be one of the default server's own paths: RESERVED_SERVER_NAMES).
    let after_name = &rest[name.len() + 1..];
    let first = after_name.split('/').next().unwrap_or_default();
    let named = app.config.spawner.allow_named_servers && app.servers.has_named(name, first);
    let server_name = if named { first } else { "" };
    let in_server = if server_name.is_empty() { after_name } else { &after_name[server_name.len()..] };
    if !server_name.is_empty() && in_server.is_empty() {
        let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        return Redirect::to(&format!("/user/{name}/{server_name}/{q}")).into_response();
    }
    let in_server = in_server.trim_start_matches('/');
    // JupyterLab's File → Log Out goes to the server's own `logout`; as under JupyterHub, that
    // means signing out of the hub.
    if in_server == "logout" {
        return Redirect::to("/hub/logout").into_response();
    }

    let check = match req.headers().get(header::COOKIE).and_then(|c| c.to_str().ok()) {
        Some(c) => app.sessions.check_cookie_header(c, unix_now(), name).await,
        None => SessionCheck::NoSession,
    };
    // Not the owner's browser: an API token with `access:servers` for this server will do
    // (JupyterHub's single-user servers accept them), checked against the store through the
    // token cache and never forwarded. Such a request is not a browser's: no XSRF or Origin.
    let mut by_token = false;
    if check != SessionCheck::Owner
        && let Some(token) = crate::caller::token_in(req.headers())
    {
        let caller = match token {
            Ok(t) => crate::caller::caller_for_token(app, t).await,
            Err(e) => Err(e),
        };
        match caller {
            Ok(c) if c.scopes.allows_server("access:servers", name, server_name) => by_token = true,
            Ok(c) => {
                tracing::warn!(caller = %c.label(), route = %name, server = %server_name, path = %path,
                    "refused: a token without access:servers for this server");
                return json_error(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "this token does not hold access:servers!server={name}/{server_name}; create a token with that scope"
                    ),
                );
            }
            Err(e) => {
                tracing::warn!(route = %name, path = %path, "refused: an invalid API token");
                return e.into_response();
            }
        }
    }
    match check {
        _ if by_token => {}
        SessionCheck::Owner => {}
        SessionCheck::NoSession => {
            if matches!(*req.method(), Method::GET | Method::HEAD) && !is_upgrade(req.headers()) {
                return Redirect::to(&format!("/hub/login?next={}", percent_encode(next))).into_response();
            }
            return json_error(StatusCode::UNAUTHORIZED, "not logged in: log in at /hub/login");
        }
        SessionCheck::OtherUser(user) => {
            tracing::warn!(user = %user, route = %name, path = %path, "refused: another user's server");
            return error_page(StatusCode::FORBIDDEN, "Forbidden", "This server belongs to another user.");
        }
    }
    let state_changing = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !by_token && (state_changing || is_upgrade(req.headers())) {
        let proof = if state_changing { XsrfProof::DoubleSubmit { query: uri.query() } } else { XsrfProof::OriginOnly };
        let what = format_args!("{} {path} (user {name})", req.method());
        if let Err(refusal) = guard::check(app, req.headers(), proof, what) {
            return refusal.json();
        }
    }
    // The default server's key is the user's name: no key to build on the hot path.
    let route = if named {
        app.servers.route(&hub_core::server::server_key(name, server_name))
    } else {
        app.servers.route(name)
    };
    let Some(up) = route else {
        let wants_html =
            req.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/html"));
        if *req.method() == Method::GET && wants_html {
            let spawn = if server_name.is_empty() {
                "/hub/spawn".to_string()
            } else {
                format!("/hub/spawn/{name}/{server_name}")
            };
            return Redirect::to(&format!("{spawn}?next={}", percent_encode(next))).into_response();
        }
        let which =
            if server_name.is_empty() { "your server".to_string() } else { format!("your server {server_name:?}") };
        return json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("{which} is not running: start it at /hub/home"));
    };

    up.activity.store(unix_now(), std::sync::atomic::Ordering::Relaxed);
    let tap = notebook_event(req.method(), in_server, uri.query());
    let upgrade = is_upgrade(req.headers());
    let mut req = req;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // Origin-form (`GET /path HTTP/1.1`, RFC 9112 §3.2.1): every upstream connection is
    // one of our own. The browser sends that form already; an absolute-form target (RFC 9112
    // §3.2.2) loses its scheme and authority.
    let upstream_uri = if uri.scheme().is_none() && uri.authority().is_none() {
        uri.clone()
    } else {
        let mut origin_form = axum::http::uri::Parts::default();
        origin_form.path_and_query = uri.path_and_query().cloned();
        match Uri::from_parts(origin_form) {
            Ok(u) => u,
            Err(_) => return json_error(StatusCode::BAD_REQUEST, "malformed request path"),
        }
    };
    let mut headers = std::mem::take(&mut parts.headers);
    let peer_header = match conn {
        Some(conn) => conn.peer_header(peer.ip()),
        None => ip_header(peer.ip()),
    };
    prepare_request_headers(&mut headers, app, peer.ip(), peer_header, up.token.authorization().clone(), upgrade);
    let mut builder =
        hyper::Request::builder().method(parts.method.clone()).uri(upstream_uri).version(hyper::Version::HTTP_11);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    let Ok(upstream_req) = builder.body(body) else {
        return json_error(StatusCode::BAD_REQUEST, "malformed request");
    };

    let resp = if let Some(client_upgrade) = client_upgrade {
        // Boxed: the upgrade's state is large and rare; keeping it out of this future keeps
        // every plain request's future small (fewer bytes moved per poll).
        match Box::pin(websocket(
            &up.endpoint,
            up.owner.uid,
            upstream_req,
            client_upgrade,
            up.activity.clone(),
            app.closing.subscribe(),
        ))
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(user = %name, error = %e, "WebSocket upgrade to the server failed");
                return error_page(
                    StatusCode::BAD_GATEWAY,
                    "Bad gateway",
                    "Your server did not accept the connection.",
                );
            }
        }
    } else {
        let plain_get = parts.method == Method::GET && hyper::body::Body::is_end_stream(upstream_req.body());
        let fresh;
        let conn = match conn {
            Some(conn) => conn,
            None => {
                fresh = ConnUpstream::default();
                &fresh
            }
        };
        let sent = conn
            .request(&up.endpoint, &up.token, up.owner.uid, upstream_req, plain_get, |n| app.metrics.spliced(n))
            .await;
        match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(user = %name, error = %e, "proxy request to the server failed");
                return error_page(
                    StatusCode::BAD_GATEWAY,
                    "Bad gateway",
                    "Your server is not answering. Try again, or stop and start it from the home page.",
                );
            }
        }
    };

    if let Some(trigger) = tap {
        let ok = match trigger {
            Trigger::Open => resp.status() == StatusCode::OK,
            _ => matches!(resp.status(), StatusCode::OK | StatusCode::CREATED),
        };
        if ok {
            app.renewer.trigger(up.owner, trigger);
        }
    }
    let (mut parts, body) = resp.into_parts();
    if parts.status != StatusCode::SWITCHING_PROTOCOLS {
        strip_hop_by_hop(&mut parts.headers);
    }
    Response::from_parts(parts, body)
}

fn json_error(status: StatusCode, message: &str) -> Response {
    crate::error::json(status, message)
}

/// Whether a path has a segment that is `.` or `..` once percent-decoded (RFC 3986 §3.3 and
/// §5.2.4: such segments are removed by whoever normalises the path, so `/user/ann/../bob/`
/// would mean another route to the server behind it). A decoded segment that itself holds a
/// `/` or `\` (from `%2F`, `%5C`) is split there too, so `..%2F` is caught as well.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        if !seg.contains('.') && !seg.contains('%') {
            return false;
        }
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        decoded.split(['/', '\\']).any(|p| p == "." || p == "..")
    })
}

/// Which renewal, if any, a request to a user's server stands for; `path` is the part after
/// the server's prefix (`api/contents/x.ipynb` of `/user/ann/gpu/api/contents/x.ipynb`).
pub fn notebook_event(method: &Method, path: &str, query: Option<&str>) -> Option<Trigger> {
    let file = path.strip_prefix("api/contents/")?;
    if !file.ends_with(".ipynb") {
        return None;
    }
    match *method {
        Method::PUT => Some(Trigger::Save),
        Method::GET => {
            // jupyter-server's contents API returns content unless `content=0`.
            let no_content = query.unwrap_or_default().split('&').any(|kv| kv == "content=0");
            (!no_content).then_some(Trigger::Open)
        }
        _ => None,
    }
}

fn prepare_request_headers(
    h: &mut HeaderMap,
    app: &AppState,
    peer: IpAddr,
    peer_header: Option<HeaderValue>,
    authorization: HeaderValue,
    upgrade: bool,
) {
    let upgrade_value = h.get(header::UPGRADE).cloned();
    strip_hop_by_hop(h);
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = upgrade_value {
            h.insert(header::UPGRADE, u);
        }
    }
    // The hub's session cookie is the hub's business, not the server's.
    let is_hub_cookie = |c: &str| {
        [hub_auth::session::COOKIE_NAME, hub_auth::session::SECURE_COOKIE_NAME]
            .iter()
            .any(|n| c.strip_prefix(n).is_some_and(|rest| rest.starts_with('=')))
    };
    let mut kept = String::new();
    for v in h.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        for c in v.split(';').map(str::trim).filter(|c| !c.is_empty() && !is_hub_cookie(c)) {
            if !kept.is_empty() {
                kept.push_str("; ");
            }
            kept.push_str(c);
        }
    }
    h.remove(header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&kept)
        && !kept.is_empty()
    {
        h.insert(header::COOKIE, v);
    }
    // A browser's own Authorization header never reaches the server: the hub's token does.
    h.insert(header::AUTHORIZATION, authorization);
    // A client-sent X-Forwarded-For is kept (and the peer appended) only when the peer is one
    // of [hub] trusted_proxies; otherwise the peer address replaces it.
    let trusted = app.config.hub.trusts(peer);
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if trusted && peer == hub_core::UNIX_PEER.ip() => HeaderValue::from_str(prev).ok(),
        Some(prev) if trusted => HeaderValue::from_str(&format!("{prev}, {peer}")).ok(),
        _ if peer == hub_core::UNIX_PEER.ip() => None,
        _ => peer_header,
    };
    match xff {
        Some(v) => h.insert(&X_FORWARDED_FOR, v),
        None => h.remove(&X_FORWARDED_FOR),
    };
    let proto = if app.config.secure_cookies() { "https" } else { "http" };
    h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(&X_FORWARDED_HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_in_every_spelling() {
        for bad in ["/..", "/./x", "/a/../b", "/%2e%2e/x", "/%2E./x", "/.%2e", "/a/..%2Fb", "/a/%2e%2e%5cb", "/%2e"] {
            assert!(has_dot_segment(bad), "{bad}");
        }
        for ok in ["/", "/lab", "/api/contents/a.ipynb", "/files/.hidden", "/x/...", "/%2e%2e%2e", "/a..b"] {
            assert!(!has_dot_segment(ok), "{ok}");
        }
    }

    #[test]
    fn recognises_open_and_save() {
        let p = "api/contents/work/x.ipynb";
        assert_eq!(notebook_event(&Method::GET, p, Some("type=notebook&content=1&hash=0")), Some(Trigger::Open));
        assert_eq!(notebook_event(&Method::GET, p, None), Some(Trigger::Open));
        assert_eq!(notebook_event(&Method::GET, p, Some("content=0")), None);
        assert_eq!(notebook_event(&Method::PUT, p, None), Some(Trigger::Save));
        assert_eq!(notebook_event(&Method::PUT, "api/contents/x.py", None), None);
        assert_eq!(notebook_event(&Method::DELETE, p, None), None);
        assert_eq!(notebook_event(&Method::GET, "files/x.ipynb", None), None);
    }
}
