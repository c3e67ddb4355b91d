//! Connections to users' servers: every byte the hub sends to a single-user server leaves
//! through here.
//!
//! [`open`] connects to a server's [`Endpoint`] and checks, before anything is sent, that the
//! listener runs as the server's owner (`peer.rs`). [`ConnUpstream`] is one browser
//! connection's kept HTTP/1.1 connection to a server, with splice(2) for large response
//! bodies (`splice.rs`); [`websocket`] sends an upgrade on a connection of its own and tunnels
//! bytes after the 101. This module knows nothing of users, sessions or routes: it is given an
//! endpoint, a token and a UID.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use hub_core::{Endpoint, Recover, ServerToken, unix_now};

use crate::peer::PeerError;
use crate::splice;

/// Why a request to a user's server got no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server's socket or port could not be connected to.
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        /// Where.
        endpoint: String,
        /// The connect(2) error.
        source: std::io::Error,
    },
    /// The listener is not the server's owner's (a squatter, or a socket a user linked in).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The HTTP exchange failed (handshake, a broken connection, a malformed response).
    #[error("HTTP to the server: {0}")]
    Http(#[from] hyper::Error),
    /// The server's response broke its own framing.
    #[error("the server's response is malformed: {0}")]
    Framing(&'static str),
}

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
/// With a [`splice::SpliceSlot`] (the hub's own accept loop gives every browser connection one),
/// large response bodies are moved with splice(2) instead of copied (see `splice.rs`); the
/// server connection then comes back through the slot.
#[derive(Default)]
pub struct ConnUpstream {
    kept: std::sync::Mutex<Option<Kept>>,
    /// The browser's address as an `X-Forwarded-For` value, made on the connection's first
    /// request.
    peer_header: std::sync::OnceLock<Option<HeaderValue>>,
    splice: Option<std::sync::Arc<splice::SpliceSlot>>,
}

/// The reply to a takeover request: the server connection and the bytes hyper had read from
/// it but not yet used.
type Taken = (splice::SocketStream, bytes::Bytes);

struct Kept {
    endpoint: Endpoint,
    token: ServerToken,
    sender: hyper::client::conn::http1::SendRequest<Body>,
    /// Asks the task driving the connection to hand its socket back ([`attach`]).
    takeover: tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<Taken>>,
}

impl ConnUpstream {
    /// For a browser connection whose responses may be spliced through `slot`.
    pub fn with_splice(slot: std::sync::Arc<splice::SpliceSlot>) -> Self {
        ConnUpstream { splice: Some(slot), ..ConnUpstream::default() }
    }

    /// Sends `req` (origin-form URI) to the server at `endpoint` whose listener must run as
    /// `owner` ([`open`]), and answers with its response. `plain_get` (a GET without a body)
    /// lets a large, length-framed response body be spliced through this connection's slot
    /// instead of copied; `on_spliced` is told how many bytes were handed to splice(2).
    pub async fn request(
        &self,
        endpoint: &Endpoint,
        token: &ServerToken,
        owner: u32,
        req: hyper::Request<Body>,
        plain_get: bool,
        on_spliced: impl FnOnce(u64),
    ) -> Result<Response, UpstreamError> {
        let resp = self.send(endpoint, token, owner, req).await?;
        let plain_get = plain_get && endpoint.is_local();
        match (self.splice.as_deref(), splice_length(plain_get, resp.status(), resp.headers())) {
            (Some(slot), Some(len)) if slot.is_idle() => {
                self.splice_response(slot, (endpoint, token), resp, len, on_spliced).await
            }
            _ => Ok(resp.map(Body::new)),
        }
    }

    /// The kept connection if it is to `endpoint` with `token` and still open.
    fn take(&self, endpoint: &Endpoint, token: &ServerToken) -> Option<Kept> {
        let mut kept = self.kept.lock().recover();
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
            *self.kept.lock().recover() = Some(k);
        }
    }

    /// `peer` as an `X-Forwarded-For` value; the same for every request of the connection.
    pub fn peer_header(&self, peer: IpAddr) -> Option<HeaderValue> {
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
    ) -> Result<hyper::Response<hyper::body::Incoming>, UpstreamError> {
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
                        None => return Err(e.into_error().into()),
                    },
                },
                Err(_) => req,
            },
            None => req,
        };
        let mut k = attach(open(endpoint, owner).await?, endpoint, token).await?;
        let resp = k.sender.send_request(req).await?;
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
            let mut kept = self.kept.lock().recover();
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
        slot: &splice::SpliceSlot,
        server: (&Endpoint, &ServerToken),
        resp: hyper::Response<hyper::body::Incoming>,
        len: u64,
        on_spliced: impl FnOnce(u64),
    ) -> Result<Response, UpstreamError> {
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
                Err(e) => return Err(e.into()),
            };
            if let Ok(data) = frame.into_data() {
                have += data.len() as u64;
                prefix.push_back(data);
            }
        }
        let rest = len.checked_sub(have).ok_or(UpstreamError::Framing("more body than its Content-Length"))?;
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
        on_spliced(rest);
        Ok(Response::from_parts(parts, Body::new(splice::SpliceBody::new(prefix, rest))))
    }
}

/// Connects to the server at `endpoint` (TCP_NODELAY on a TCP connection) and checks, before
/// anything is sent, that its listener runs as `owner` (the server's UID; see `peer.rs`). Every
/// upstream connection the hub makes (readiness probe, proxied requests, WebSocket tunnels)
/// comes from here, so no byte, and no token, reaches a squatter or a socket a user linked in.
/// A server on another machine ([`Endpoint::Tls`]) cannot be asked for its UID: there, the TLS
/// handshake must prove the key pinned for that server (`crate::tls`), or nothing is sent.
pub async fn open(endpoint: &Endpoint, owner: u32) -> Result<splice::SocketStream, UpstreamError> {
    let connect = |source| UpstreamError::Connect { endpoint: endpoint.to_string(), source };
    Ok(match endpoint {
        Endpoint::Tcp(port) => {
            let stream = TcpStream::connect(("127.0.0.1", *port)).await.map_err(connect)?;
            crate::peer::check_tcp(&stream, owner).await?;
            let _ = stream.set_nodelay(true);
            splice::SocketStream::Tcp(stream)
        }
        Endpoint::Unix(path) => {
            let stream = UnixStream::connect(path).await.map_err(connect)?;
            crate::peer::check_unix(&stream, owner, &endpoint.to_string())?;
            splice::SocketStream::Unix(stream)
        }
        Endpoint::Tls(remote) => match crate::tls::connect(remote.addr, &remote.pin, crate::tls::ALPN_HTTP).await {
            Ok(tls) => splice::SocketStream::Tls(Box::new(tls)),
            Err(crate::tls::TlsError::Connect { source, .. }) => return Err(connect(source)),
            Err(e @ crate::tls::TlsError::NotPinned { .. }) => {
                return Err(UpstreamError::Peer(crate::peer::PeerError::NotPinned(e.to_string())));
            }
        },
    })
}

/// An HTTP/1.1 client connection over `upstream`, driven by a task of its own until both
/// ends are done with it, or until [`Kept::takeover`] asks for the socket back: the task
/// then stops driving it and replies with the socket and hyper's unused read bytes
/// (`Connection::into_parts`). Requests on it use the origin form (RFC 9112 §3.2.1).
async fn attach(
    upstream: splice::SocketStream,
    endpoint: &Endpoint,
    token: &ServerToken,
) -> Result<Kept, UpstreamError> {
    let (sender, mut conn) = hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await?;
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
pub async fn connect(
    endpoint: &Endpoint,
    owner: u32,
) -> Result<hyper::client::conn::http1::SendRequest<Body>, UpstreamError> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(open(endpoint, owner).await?)).await?;
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

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && connection_has(h, "upgrade")
}

/// Whether a `Connection` field lists `option` (case-insensitive; RFC 9110 §7.6.1).
pub fn connection_has(h: &HeaderMap, option: &str) -> bool {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(option)))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): the fixed list and every name the
/// `Connection` field lists.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
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
pub fn ip_header(ip: IpAddr) -> Option<HeaderValue> {
    HeaderValue::try_from(ip.to_string()).ok()
}

/// Sends an upgrade request on a fresh connection and, on 101, tunnels bytes both ways.
pub async fn websocket(
    endpoint: &Endpoint,
    owner: u32,
    req: hyper::Request<Body>,
    client: hyper::upgrade::OnUpgrade,
    activity: std::sync::Arc<std::sync::atomic::AtomicI64>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> Result<Response, UpstreamError> {
    let mut sender = connect(endpoint, owner).await?;
    let mut resp = sender.send_request(req).await?;
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
    // The upstream connection is ours (hyper::client::conn over TokioIo<SocketStream>, see
    // `connect`), so it can be taken back as that stream, with whatever hyper had already read.
    let Ok(parts) = upstream.downcast::<TokioIo<splice::SocketStream>>() else {
        return Err(std::io::Error::other("upstream is not a connection the proxy opened"));
    };
    match parts.io.into_inner() {
        splice::SocketStream::Tcp(tcp) => {
            let _ = tcp.set_nodelay(true);
            let (r, w) = tcp.into_split();
            pump(client, r, w, parts.read_buf, |r| quickack(r.as_ref()), activity).await
        }
        splice::SocketStream::Unix(unix) => {
            let (r, w) = unix.into_split();
            pump(client, r, w, parts.read_buf, |_| {}, activity).await
        }
        splice::SocketStream::Tls(tls) => {
            let (r, w) = tokio::io::split(*tls);
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
