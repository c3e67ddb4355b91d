//! A single-user server's address and token: the values every part that talks to a server
//! (the proxy, the readiness probe, the spawner) passes around.

use std::path::Path;
use std::sync::Arc;

/// Where a single-user server listens (`spawner.transport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `127.0.0.1:<port>`.
    Tcp(u16),
    /// A Unix socket at this path (shared, so that the proxy's per-request copy is cheap).
    Unix(Arc<Path>),
}

impl std::fmt::Display for Endpoint {
    /// `127.0.0.1:<port>` or `unix:<path>`, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(port) => write!(f, "127.0.0.1:{port}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Endpoint {
    /// The endpoint as a URL: `http://127.0.0.1:<port>`, or `http+unix://<percent-encoded
    /// path>` (the form jupyter-server prints for `ServerApp.sock`, its
    /// `urlencode_unix_socket_path`: Python's `quote(path, safe="")`, which leaves letters,
    /// digits and `-._~` as they are; requests-unixsocket reads it).
    pub fn url(&self) -> String {
        const QUOTE: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
        match self {
            Endpoint::Tcp(port) => format!("http://127.0.0.1:{port}"),
            Endpoint::Unix(path) => {
                format!("http+unix://{}", percent_encoding::utf8_percent_encode(&path.to_string_lossy(), QUOTE))
            }
        }
    }
}

/// A single-user server's API token and the `Authorization: token <token>` header value that
/// goes with it (jupyter-server's token scheme: its `IdentityProvider` reads a header of that
/// form). Made once when a server starts or is re-adopted, so the proxy's per-request copy is
/// two reference counts. The header value is marked sensitive, and `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerToken {
    token: Arc<str>,
    authorization: http::HeaderValue,
}

impl ServerToken {
    /// `None` if `token` has bytes a header value cannot carry (RFC 9110 §5.5: visible ASCII,
    /// space and tab); the hex tokens the hub makes always fit, a token read back from the
    /// database might not.
    pub fn new(token: &str) -> Option<Self> {
        let mut authorization = http::HeaderValue::try_from(format!("token {token}")).ok()?;
        authorization.set_sensitive(true);
        Some(ServerToken { token: token.into(), authorization })
    }

    /// The token itself (64 hex characters for a server the hub started).
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// `Authorization: token <token>`, sensitive (not shown by `Debug`, not indexed by HPACK).
    pub fn authorization(&self) -> &http::HeaderValue {
        &self.authorization
    }
}

impl std::fmt::Debug for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerToken(..)")
    }
}
