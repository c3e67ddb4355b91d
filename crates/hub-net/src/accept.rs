//! The hub's HTTP/1.1 accept loop: hyper's server connection with a header-read timeout,
//! TCP_NODELAY on every browser connection, WebSocket upgrades, and graceful shutdown.
//!
//! `axum::serve` would do all of this except the timeout: it gives hyper no timer, so a client
//! that opens a connection and never finishes its request head (slowloris) holds the
//! connection and its task forever. Serving HTTP/1.1 only (RFC 9112) is deliberate: browsers
//! use HTTP/2 only over TLS, which the hub leaves to the reverse proxy in front of it, and the
//! HTTP/2 preface sniffing of hyper-util's auto builder has no timeout of its own.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UnixListener};

use crate::splice::{BrowserIo, SocketStream, SpliceSlot};

/// The peer address given for connections on the hub's Unix socket (`bind = "unix:PATH"`):
/// the unspecified address `[::]:0`, which no TCP peer can have. Whoever may connect to that
/// socket (its mode and group) is the reverse proxy, so its `X-Forwarded-For` is believed
/// (`hub_config::HubConfig::trusts`).
pub use hub_core::UNIX_PEER;

/// Where `hub serve` accepts browser connections: a TCP address, or a Unix socket that only
/// the reverse proxy in front of the hub can connect to.
pub enum Listener {
    /// `bind = "ADDRESS:PORT"`.
    Tcp(TcpListener),
    /// `bind = "unix:PATH"`.
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Self {
        Listener::Unix(l)
    }
}

impl Listener {
    /// The next connection and its peer ([`UNIX_PEER`] on the Unix socket); TCP_NODELAY is
    /// set on a TCP one (small WebSocket frames and response heads must not wait for Nagle).
    async fn accept(&self) -> std::io::Result<(SocketStream, SocketAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (tcp, peer) = l.accept().await?;
                let _ = tcp.set_nodelay(true);
                Ok((SocketStream::Tcp(tcp), peer))
            }
            Listener::Unix(l) => Ok((SocketStream::Unix(l.accept().await?.0), UNIX_PEER)),
        }
    }

    /// What the listener is bound to, for the log.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_else(|e| e.to_string()),
            Listener::Unix(l) => match l.local_addr() {
                Ok(a) => a.as_pathname().map(|p| format!("unix:{}", p.display())).unwrap_or_else(|| "unix".into()),
                Err(e) => e.to_string(),
            },
        }
    }
}

/// Accepts connections on `listener` and serves each with the service `make(peer, slot)`
/// returns (`slot`: the connection's [`SpliceSlot`] for spliced bodies, shared with its [`BrowserIo`]),
/// until `shutdown` resolves. Then it stops accepting, asks every open connection to finish its
/// in-flight request and close, and returns once all have closed (callers bound that wait).
///
/// `header_read_timeout` is how long a connection may take to deliver a complete request head,
/// counted from when the hub starts waiting for one: a new connection's first request, or the
/// next request on a kept-alive connection. A connection that misses it is closed without a
/// response, which also bounds how long an idle kept-alive connection stays open. Upgraded
/// connections (WebSockets) are not subject to it.
///
/// Accept errors: per-connection ones (the peer reset before accept) are skipped; others
/// (EMFILE, ENFILE, ENOMEM) are logged and retried after 1 s, as `axum::serve` does.
pub async fn serve<M, S, F>(listener: Listener, header_read_timeout: Duration, mut make: M, shutdown: F)
where
    M: FnMut(SocketAddr, Arc<SpliceSlot>) -> S,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = axum::response::Response, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    // writev(true): hyper's queued write strategy, which hands body buffers to the connection
    // uncopied; spliced bodies depend on it (see `splice.rs`).
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout).writev(true);
    // Each connection task holds a receiver: a send asks it to shut down gracefully, and
    // `closed()` resolves when the last one is gone.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = Arc::new(SpliceSlot::default());
        let io = TokioIo::new(BrowserIo::new(tcp, slot.clone()));
        let conn = builder.serve_connection(io, make(peer, slot)).with_upgrades();
        let mut signal = signal_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = signal.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    tracing::debug!(%peer, "closed a connection that sent no complete request head within hub.header_read_timeout");
                } else {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    drop(signal_rx);
    let _ = signal_tx.send(());
    signal_tx.closed().await;
}

/// Errors that concern one connection only; the listener itself is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}
