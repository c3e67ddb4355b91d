//! The proxy: `/user/<name>/...` → the user's single-user server on `127.0.0.1:<port>`.
//!
//! Invariant: a request reaches `<name>`'s server only if it carries a valid session for
//! `<name>` (another user: 403; no session: a redirect to the login page with `next`). The
//! hub's session cookie is removed and the server's token injected (`Authorization: token`),
//! hop-by-hop headers (RFC 9110 §7.6.1) are stripped both ways, `X-Forwarded-For/-Proto/-Host`
//! are set, and bodies stream through unbuffered on the browser connection's own upstream
//! connection ([`ConnUpstream`]) to the server's [`Endpoint`] (a Unix socket, or a loopback
//! port with TCP_NODELAY); a large response body to a GET ([`splice::MIN_BODY`] bytes or more,
//! framed by `Content-Length`) is moved with splice(2) instead of copied (`splice.rs`).
//! A WebSocket upgrade gets its own upstream connection and, after
//! the 101, a plain byte tunnel, so frames, close codes and large messages pass untouched.
//!
//! Taps: a notebook open (`GET .../api/contents/<path>.ipynb`, content requested, answered
//! 200) or save (`PUT .../api/contents/<path>.ipynb`, answered 200/201) triggers a ticket
//! renewal in the background; the response is never held for it.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use crate::renewer::Trigger;
use crate::servers::{Endpoint, ServerToken};
use crate::session::SessionCheck;
use crate::splice;
use crate::web::{AppState, error_page, origin_allowed};
use crate::{percent_encode, unix_now};

/// Headers that apply to one connection only and are never forwarded (RFC 9110 §7.6.1,
/// plus `Proxy-Connection` and `Keep-Alive` from RFC 7230's list). Names, not strings: a
/// lookup by string parses and classifies the name first, twice per request per header.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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

/// The upstream connection of one browser connection.
///
/// HTTP/1.1 requests on a browser connection come one at a time (RFC 9112 §9.3), so they can
/// share one connection to the user's server without a pool: no lock held across requests, no
/// checkout, no connector. The connection is kept with the server's endpoint and token, so a
/// request for another server (another user's, or a restarted one) opens its own; it closes
/// when the browser connection does (the [`hyper::client::conn::http1::SendRequest`] is
/// dropped). The hub serves HTTP/1.1 only (see `accept.rs`), so requests never overlap here;
/// if they did, each would take it or open another, and one would be kept.
///
/// With a [`splice::Slot`] (the hub's own accept loop gives every browser connection one),
/// large response bodies are moved with splice(2) instead of copied (see `splice.rs`); the
/// server connection then comes back through the slot.
#[derive(Default)]
pub struct ConnUpstream {
    kept: std::sync::Mutex<Option<Kept>>,
    /// The browser's address as an `X-Forwarded-For` value, made on the connection's first
    /// request.
    peer_header: std::sync::OnceLock<Option<HeaderValue>>,
    splice: Option<std::sync::Arc<splice::Slot>>,
}

/// The reply to a takeover request: the server connection and the bytes hyper had read from
/// it but not yet used.
type Taken = (splice::Upstream, bytes::Bytes);

struct Kept {
    endpoint: Endpoint,
    token: ServerToken,
    sender: hyper::client::conn::http1::SendRequest<Body>,
    /// Asks the task driving the connection to hand its socket back ([`attach`]).
    takeover: tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<Taken>>,
}

impl ConnUpstream {
    /// For a browser connection whose responses may be spliced through `slot`.
    pub fn with_splice(slot: std::sync::Arc<splice::Slot>) -> Self {
        ConnUpstream { splice: Some(slot), ..ConnUpstream::default() }
    }

    /// The kept connection if it is to `endpoint` with `token` and still open.
    fn take(&self, endpoint: &Endpoint, token: &ServerToken) -> Option<Kept> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        match kept.take() {
            Some(k) if k.endpoint == *endpoint && k.token.as_str() == token.as_str() && !k.sender.is_closed() => {
                Some(k)
            }
            other => {
                *kept = other.filter(|k| !k.sender.is_closed());
                None
            }
        }
    }

    /// Keeps `k` for the next request unless its connection has closed. The kept entry moves
    /// back and forth, so a request on the kept connection allocates nothing here.
    fn keep(&self, k: Kept) {
        if !k.sender.is_closed() {
            *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(k);
        }
    }

    /// `peer` as an `X-Forwarded-For` value; the same for every request of the connection.
    fn peer_header(&self, peer: IpAddr) -> Option<HeaderValue> {
        self.peer_header.get_or_init(|| ip_header(peer)).clone()
    }

    /// Sends `req` (origin-form URI) to the server at `endpoint`: on the kept connection if
    /// it is that server's and still open (or on the one a spliced body gave back), else on a
    /// new one ([`open`]). A request the kept connection closed before sending is sent once
    /// more on a new connection; one that was sent is never repeated.
    async fn send(
        &self,
        endpoint: &Endpoint,
        token: &ServerToken,
        owner: u32,
        req: hyper::Request<Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let mut reused = self.take(endpoint, token);
        if reused.is_none()
            && let Some(up) = self.splice.as_ref().and_then(|s| s.reclaim(endpoint, token))
        {
            reused = attach(up, endpoint, token).await.ok();
        }
        let req = match reused {
            Some(mut k) => match std::future::poll_fn(|cx| k.sender.poll_ready(cx)).await {
                Ok(()) => match k.sender.try_send_request(req).await {
                    Ok(resp) => {
                        self.keep(k);
                        return Ok(resp);
                    }
                    Err(mut e) => match e.take_message() {
                        Some(req) => req,
                        None => return Err(e.into_error().to_string()),
                    },
                },
                Err(_) => req,
            },
            None => req,
        };
        let mut k = attach(open(endpoint, owner).await?, endpoint, token).await?;
        let resp = k.sender.send_request(req).await.map_err(|e| e.to_string())?;
        self.keep(k);
        Ok(resp)
    }

    /// Takes the kept connection's socket back from hyper, with the bytes hyper had read
    /// from it but not yet used; `None` if there is none or its task has ended.
    /// Only a kept connection to `endpoint` with `token` is taken: [`Self::send`] keeps the
    /// connection it used, so that one is the connection the response came on (a kept
    /// connection to another server stays kept).
    async fn take_socket(&self, endpoint: &Endpoint, token: &ServerToken) -> Option<(Endpoint, ServerToken, Taken)> {
        let k = {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            match kept.take() {
                Some(k) if k.endpoint == *endpoint && k.token.as_str() == token.as_str() => k,
                other => {
                    *kept = other;
                    return None;
                }
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        k.takeover.send(tx).ok()?;
        let taken = rx.await.ok()?;
        Some((k.endpoint, k.token, taken))
    }

    /// Answers with `resp`, whose body (`len` bytes, from `Content-Length`) is moved with
    /// splice(2) rather than copied: the kept connection's socket is taken back from hyper
    /// and the browser connection's slot armed with it. If the socket cannot be taken back,
    /// the body is copied as usual. An error means the response broke off before its body
    /// could be handed over.
    async fn splice_response(
        &self,
        slot: &splice::Slot,
        server: (&Endpoint, &ServerToken),
        resp: hyper::Response<hyper::body::Incoming>,
        len: u64,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Response, String> {
        use http_body_util::BodyExt;
        let Some((endpoint, token, (upstream, mut unread))) = self.take_socket(server.0, server.1).await else {
            return Ok(resp.map(Body::new));
        };
        // The connection's task has ended (into_parts), so the body yields what hyper had
        // already decoded, then the "incomplete message" error hyper sends when a connection
        // is dropped mid-body.
        let (parts, mut body) = resp.into_parts();
        let mut prefix = std::collections::VecDeque::new();
        let mut have = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) if e.is_incomplete_message() => break,
                Err(e) => return Err(e.to_string()),
            };
            if let Ok(data) = frame.into_data() {
                have += data.len() as u64;
                prefix.push_back(data);
            }
        }
        let rest = len.checked_sub(have).ok_or("the server sent more than its Content-Length")?;
        // After `Connection: close` (RFC 9112 §9.6) the server closes the socket after the
        // body; it serves no further request.
        let reuse = !connection_has(&parts.headers, "close");
        if (unread.len() as u64) >= rest {
            // The whole body is already here. Bytes past it mean the server does not frame
            // its responses as it says, so its connection is not reused.
            let extra = unread.len() as u64 > rest;
            prefix.push_back(unread.split_to(rest as usize));
            if reuse && !extra {
                slot.give_back(upstream, endpoint, token);
            }
            return Ok(Response::from_parts(parts, Body::new(splice::SpliceBody::new(prefix, 0))));
        }
        let rest = rest - unread.len() as u64;
        if !unread.is_empty() {
            prefix.push_back(unread);
        }
        slot.arm(splice::Job::new(upstream, endpoint, token, rest, reuse));
        metrics.spliced(rest);
        Ok(Response::from_parts(parts, Body::new(splice::SpliceBody::new(prefix, rest))))
    }
}

/// Connects to the server at `endpoint` (TCP_NODELAY on a TCP connection) and checks, before
/// anything is sent, that its listener runs as `owner` (the server's UID; see `peer.rs`). Every
/// upstream connection the hub makes (readiness probe, proxied requests, WebSocket tunnels)
/// comes from here, so no byte, and no token, reaches a squatter or a socket a user linked in.
pub async fn open(endpoint: &Endpoint, owner: u32) -> Result<splice::Upstream, String> {
    Ok(match endpoint {
        Endpoint::Tcp(port) => {
            let stream = TcpStream::connect(("127.0.0.1", *port)).await.map_err(|e| e.to_string())?;
            crate::peer::check_tcp(&stream, owner).await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            splice::Upstream::Tcp(stream)
        }
        Endpoint::Unix(path) => {
            let stream = UnixStream::connect(path).await.map_err(|e| e.to_string())?;
            crate::peer::check_unix(&stream, owner, &endpoint.to_string()).map_err(|e| e.to_string())?;
            splice::Upstream::Unix(stream)
        }
    })
}

/// An HTTP/1.1 client connection over `upstream`, driven by a task of its own until both
/// ends are done with it, or until [`Kept::takeover`] asks for the socket back: the task
/// then stops driving it and replies with the socket and hyper's unused read bytes
/// (`Connection::into_parts`). Requests on it use the origin form (RFC 9112 §3.2.1).
async fn attach(upstream: splice::Upstream, endpoint: &Endpoint, token: &ServerToken) -> Result<Kept, String> {
    let (sender, mut conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await.map_err(|e| e.to_string())?;
    let (takeover, asked) = tokio::sync::oneshot::channel::<tokio::sync::oneshot::Sender<Taken>>();
    tokio::spawn(async move {
        tokio::select! {
            biased;
            Ok(reply) = asked => {
                let parts = conn.into_parts();
                let _ = reply.send((parts.io.into_inner(), parts.read_buf));
            }
            r = &mut conn => if let Err(e) = r {
                tracing::debug!(error = %e, "upstream connection ended");
            },
        }
    });
    Ok(Kept { endpoint: endpoint.clone(), token: token.clone(), sender, takeover })
}

/// A new HTTP/1.1 connection to a server ([`open`]) for a WebSocket upgrade, driven by a
/// task of its own until both ends are done with it or, after a 101, until the upgraded stream
/// is handed over. Errors are the connect's or the handshake's.
/// `owner` is the server's UID, checked by [`open`].
pub async fn connect(endpoint: &Endpoint, owner: u32) -> Result<hyper::client::conn::http1::SendRequest<Body>, String> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(open(endpoint, owner).await?))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// The body length of a response (`status`, `headers`) if it should be spliced (see `splice.rs`): a response to a GET
/// without a body (`plain_get`), not 1xx, 204 or 304 (which have no body whatever their
/// headers say, RFC 9110 §6.4.1), framed by one `Content-Length` (no `Transfer-Encoding`,
/// RFC 9112 §6.3) of at least [`splice::MIN_BODY`] bytes.
fn splice_length(plain_get: bool, status: StatusCode, headers: &HeaderMap) -> Option<u64> {
    if !plain_get
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || headers.contains_key(header::TRANSFER_ENCODING)
    {
        return None;
    }
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let (Some(v), None) = (values.next(), values.next()) else { return None };
    let len: u64 = v.to_str().ok()?.parse().ok()?;
    (len >= splice::MIN_BODY).then_some(len)
}

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

    let check = match req.headers().get(header::COOKIE).and_then(|c| c.to_str().ok()) {
        Some(c) => app.sessions.check_cookie_header(c, unix_now(), name).await,
        None => SessionCheck::NoSession,
    };
    match check {
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
    if (state_changing || is_upgrade(req.headers())) && !origin_allowed(app, req.headers()) {
        tracing::warn!(
            user = %name, path = %path, origin = ?req.headers().get(header::ORIGIN),
            referer = ?req.headers().get(header::REFERER), public_urls = ?app.config.hub.public_origins,
            "refused: the request's Origin is not one of [hub] public_urls"
        );
        return json_error(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: the Origin header is missing or not one of the hub's public URLs",
        );
    }
    if state_changing && !xsrf_double_submit(req.headers(), uri.query()) {
        tracing::warn!(user = %name, path = %path, method = %req.method(), "refused: no XSRF token");
        return json_error(
            StatusCode::FORBIDDEN,
            "XSRF check failed: send the _xsrf cookie's value in an X-XSRFToken header (JupyterLab does this itself)",
        );
    }
    let Some(up) = app.servers.upstream(name) else {
        let wants_html =
            req.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/html"));
        if *req.method() == Method::GET && wants_html {
            return Redirect::to(&format!("/hub/spawn?next={}", percent_encode(next))).into_response();
        }
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "your server is not running: start it at /hub/home");
    };

    up.activity.store(unix_now(), std::sync::atomic::Ordering::Relaxed);
    let tap = notebook_event(req.method(), path, uri.query());
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
            up.uid,
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
        let sent = match conn {
            Some(conn) => match conn.send(&up.endpoint, &up.token, up.uid, upstream_req).await {
                Ok(r) => match (conn.splice.as_deref(), splice_length(plain_get, r.status(), r.headers())) {
                    (Some(slot), Some(len)) if slot.is_idle() => {
                        conn.splice_response(slot, (&up.endpoint, &up.token), r, len, &app.metrics).await
                    }
                    _ => Ok(r.map(Body::new)),
                },
                Err(e) => Err(e),
            },
            None => ConnUpstream::default()
                .send(&up.endpoint, &up.token, up.uid, upstream_req)
                .await
                .map(|r| r.map(Body::new)),
        };
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
        if ok && let Some(owner) = app.servers.running_owner(name) {
            app.renewer.trigger(owner, trigger);
        }
    }
    let (mut parts, body) = resp.into_parts();
    if parts.status != StatusCode::SWITCHING_PROTOCOLS {
        strip_hop_by_hop(&mut parts.headers);
    }
    Response::from_parts(parts, body)
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "status": status.as_u16(), "message": message });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
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

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && connection_has(h, "upgrade")
}

/// Whether a `Connection` field lists `option` (case-insensitive; RFC 9110 §7.6.1).
fn connection_has(h: &HeaderMap, option: &str) -> bool {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(option)))
}

/// Which renewal, if any, a request to the user's server stands for.
pub fn notebook_event(method: &Method, path: &str, query: Option<&str>) -> Option<Trigger> {
    let rest = path.strip_prefix("/user/")?;
    let (_, rest) = rest.split_once('/')?;
    let file = rest.strip_prefix("api/contents/")?;
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

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Names the Connection header lists (RFC 9110 §7.6.1), other than its usual options
    // (`keep-alive`, `close`, `upgrade`), which are removed below anyway or name no header.
    let mut listed: Vec<HeaderName> = Vec::new();
    for v in h.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()) {
        for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if t.eq_ignore_ascii_case("close") || HOP_BY_HOP.iter().any(|n| t.eq_ignore_ascii_case(n.as_str())) {
                continue;
            }
            // from_bytes lower-cases the name.
            if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                listed.push(n);
            }
        }
    }
    for n in listed {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

/// `ip` as a header value (`X-Forwarded-For`, RFC 7239 §5.2's predecessor: a plain address).
fn ip_header(ip: IpAddr) -> Option<HeaderValue> {
    HeaderValue::try_from(ip.to_string()).ok()
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
        [crate::session::COOKIE_NAME, crate::session::SECURE_COOKIE_NAME]
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
        Some(prev) if trusted && peer == crate::accept::UNIX_PEER.ip() => HeaderValue::from_str(prev).ok(),
        Some(prev) if trusted => HeaderValue::from_str(&format!("{prev}, {peer}")).ok(),
        _ if peer == crate::accept::UNIX_PEER.ip() => None,
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

/// Sends an upgrade request on a fresh connection and, on 101, tunnels bytes both ways.
async fn websocket(
    endpoint: &Endpoint,
    owner: u32,
    req: hyper::Request<Body>,
    client: hyper::upgrade::OnUpgrade,
    activity: std::sync::Arc<std::sync::atomic::AtomicI64>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> Result<Response, String> {
    let mut sender = connect(endpoint, owner).await?;
    let mut resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (c, u) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade did not complete");
                    return;
                }
            };
            tokio::select! {
                r = tunnel(c, u, &activity) => if let Err(e) = r {
                    tracing::debug!(error = %e, "WebSocket tunnel closed");
                },
                // Hub shutting down: dropping both ends closes them (TCP FIN); JupyterLab
                // reconnects to the next hub, which re-adopts the server.
                _ = closing.wait_for(|c| *c) => tracing::debug!("WebSocket tunnel closed for shutdown"),
            }
        });
    }
    Ok(resp.map(Body::new))
}

/// Size of each read in the WebSocket tunnel, in bytes.
const TUNNEL_BUF: usize = 64 * 1024;

/// Copies bytes both ways between the browser's upgraded connection and the server's until
/// both sides have closed; a side's EOF is passed on as a write shutdown (TCP FIN).
///
/// Over TCP, jupyter-server turns Nagle back on after the upgrade (tornado's
/// `set_nodelay(False)`), so a small reply that follows another within a few ms waits for our
/// delayed ACK (~40 ms on Linux). TCP_NODELAY is on for both our sockets; in addition, the
/// upstream socket re-arms TCP_QUICKACK after every read (Linux clears it again by itself,
/// see tcp(7)), so our ACKs go out at once and the server's second write is not held back.
/// Measured here: ~5 ms per `execute_reply` instead of ~48 ms (docs/benchmarks.md). A Unix
/// socket has no Nagle and no ACKs, so none of this applies to it.
/// Every read in either direction stores the time in `activity` (for culling).
async fn tunnel(
    client: hyper::upgrade::Upgraded,
    upstream: hyper::upgrade::Upgraded,
    activity: &std::sync::atomic::AtomicI64,
) -> std::io::Result<()> {
    // The upstream connection is ours (hyper::client::conn over TokioIo<Upstream>, see
    // `connect`), so it can be taken back as that stream, with whatever hyper had already read.
    let Ok(parts) = upstream.downcast::<TokioIo<splice::Upstream>>() else {
        return Err(std::io::Error::other("upstream is not a connection the proxy opened"));
    };
    match parts.io.into_inner() {
        splice::Upstream::Tcp(tcp) => {
            let _ = tcp.set_nodelay(true);
            let (r, w) = tcp.into_split();
            pump(client, r, w, parts.read_buf, |r| quickack(r.as_ref()), activity).await
        }
        splice::Upstream::Unix(unix) => {
            let (r, w) = unix.into_split();
            pump(client, r, w, parts.read_buf, |_| {}, activity).await
        }
    }
}

/// [`tunnel`]'s copy loops: `early` (bytes hyper read past the 101) goes to the client first;
/// `after_read` runs after every read from the server.
async fn pump<R, W>(
    client: hyper::upgrade::Upgraded,
    mut u_read: R,
    mut u_write: W,
    early: bytes::Bytes,
    after_read: impl Fn(&R),
    activity: &std::sync::atomic::AtomicI64,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let touch = || activity.store(unix_now(), std::sync::atomic::Ordering::Relaxed);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut c_read, mut c_write) = tokio::io::split(TokioIo::new(client));
    let down = async {
        if !early.is_empty() {
            c_write.write_all(&early).await?;
        }
        let mut buf = vec![0u8; TUNNEL_BUF];
        loop {
            let n = u_read.read(&mut buf).await?;
            after_read(&u_read);
            touch();
            if n == 0 {
                return c_write.shutdown().await;
            }
            c_write.write_all(&buf[..n]).await?;
        }
    };
    let up = async {
        let mut buf = vec![0u8; TUNNEL_BUF];
        loop {
            let n = c_read.read(&mut buf).await?;
            touch();
            if n == 0 {
                return u_write.shutdown().await;
            }
            u_write.write_all(&buf[..n]).await?;
        }
    };
    tokio::try_join!(down, up).map(|_| ())
}

/// Sets TCP_QUICKACK on `s` (a no-op if it fails: only latency depends on it).
fn quickack(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket descriptor we hold, with a pointer to a live c_int and
    // its exact size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
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
        let p = "/user/ann/api/contents/work/x.ipynb";
        assert_eq!(notebook_event(&Method::GET, p, Some("type=notebook&content=1&hash=0")), Some(Trigger::Open));
        assert_eq!(notebook_event(&Method::GET, p, None), Some(Trigger::Open));
        assert_eq!(notebook_event(&Method::GET, p, Some("content=0")), None);
        assert_eq!(notebook_event(&Method::PUT, p, None), Some(Trigger::Save));
        assert_eq!(notebook_event(&Method::PUT, "/user/ann/api/contents/x.py", None), None);
        assert_eq!(notebook_event(&Method::DELETE, p, None), None);
        assert_eq!(notebook_event(&Method::GET, "/user/ann/files/x.ipynb", None), None);
    }

    #[test]
    fn only_large_length_framed_get_bodies_are_spliced() {
        let cl = |v: &str| {
            let mut h = HeaderMap::new();
            h.append(header::CONTENT_LENGTH, HeaderValue::from_str(v).expect("value"));
            h
        };
        let min = splice::MIN_BODY;
        assert_eq!(splice_length(true, StatusCode::OK, &cl(&min.to_string())), Some(min));
        assert_eq!(splice_length(true, StatusCode::PARTIAL_CONTENT, &cl("3145735")), Some(3_145_735));
        assert_eq!(splice_length(true, StatusCode::OK, &cl(&(min - 1).to_string())), None, "small: copied");
        assert_eq!(splice_length(false, StatusCode::OK, &cl("3145735")), None, "HEAD, or a request with a body");
        for status in [StatusCode::CONTINUE, StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            assert_eq!(splice_length(true, status, &cl("3145735")), None, "{status} has no body");
        }
        let mut chunked = cl("3145735");
        chunked.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert_eq!(splice_length(true, StatusCode::OK, &chunked), None, "Transfer-Encoding wins over Content-Length");
        let mut two = cl("3145735");
        two.append(header::CONTENT_LENGTH, HeaderValue::from_static("3145735"));
        assert_eq!(splice_length(true, StatusCode::OK, &two), None, "two Content-Length fields");
        for bad in ["", "-1", "1e6", "3145735, 3145735", " 3145735"] {
            assert_eq!(splice_length(true, StatusCode::OK, &cl(bad)), None, "{bad:?}");
        }
        assert_eq!(splice_length(true, StatusCode::OK, &HeaderMap::new()), None, "close-delimited");
    }

    #[test]
    fn strips_hop_by_hop_and_listed_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive, close, X-Secret, , x-other"));
        h.insert("x-other", HeaderValue::from_static("2"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }
}
