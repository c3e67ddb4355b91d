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
    /// A server on another machine (a cluster node), reached over TCP with TLS pinned to the
    /// certificate its own job made (`hub_net::tls`). Shared, as `Unix` is.
    Tls(Arc<RemoteEndpoint>),
}

/// Where a server on another machine listens, and the certificate the hub accepts there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEndpoint {
    /// The node's address (as the scheduler reports it) and the port the server's node agent
    /// listens on.
    pub addr: std::net::SocketAddr,
    /// The node's name (`node1`), for messages and the admin page.
    pub node: String,
    /// SHA-256 of the DER certificate the node agent made for this server (32 bytes).
    pub pin: [u8; 32],
}

impl Endpoint {
    /// Whether the server runs on this machine (a Unix socket or loopback TCP): then the hub
    /// checks the listener's owner on every connection and may splice(2) bodies.
    pub fn is_local(&self) -> bool {
        !matches!(self, Endpoint::Tls(_))
    }
}

impl std::fmt::Display for Endpoint {
    /// `127.0.0.1:<port>` or `unix:<path>`, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(port) => write!(f, "127.0.0.1:{port}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tls(r) => write!(f, "tls://{} (on {})", r.addr, r.node),
        }
    }
}

impl Endpoint {
    /// The endpoint as a URL: `http://127.0.0.1:<port>`, or `http+unix://<percent-encoded
    /// path>` (the form jupyter-server prints for `ServerApp.sock`, its
    /// `urlencode_unix_socket_path`: Python's `quote(path, safe="")`, which leaves letters,
    /// digits and `-._~` as they are; requests-unixsocket reads it), or `https://<addr>` for a
    /// server on another machine (its certificate is self-signed: only the hub can check it).
    pub fn url(&self) -> String {
        const QUOTE: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
        match self {
            Endpoint::Tcp(port) => format!("http://127.0.0.1:{port}"),
            Endpoint::Unix(path) => {
                format!("http+unix://{}", percent_encoding::utf8_percent_encode(&path.to_string_lossy(), QUOTE))
            }
            Endpoint::Tls(r) => format!("https://{}", r.addr),
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

/// Longest server name (JupyterHub 6's safe-slug rule).
pub const MAX_SERVER_NAME: usize = 30;

/// Top-level paths of jupyter-server and JupyterLab under a server's base URL. A named server
/// called one of these would hide that path of the user's default server
/// (`/user/ann/lab/` would mean the named server "lab"), so such names are refused.
pub const RESERVED_SERVER_NAMES: &[&str] = &[
    "api",
    "custom",
    "doc",
    "edit",
    "files",
    "kernelspecs",
    "lab",
    "login",
    "logout",
    "nbconvert",
    "nbextensions",
    "notebooks",
    "static",
    "terminals",
    "tree",
    "view",
    "voila",
];

/// Checks a new named server's name by JupyterHub 6's rule (`is_valid_safe_slug` in
/// `jupyterhub/slugs.py`: 1-30 characters of `a-z`, `0-9` and `-`, starting with a letter,
/// ending with a letter or digit, no `--`), with JupyterHub's message, plus the
/// [`RESERVED_SERVER_NAMES`].
pub fn check_server_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.contains("--");
    let shown = crate::percent_encode(name);
    if !valid {
        return Err(format!(
            "Invalid server_name: {shown} (use 1-{MAX_SERVER_NAME} lower-case letters, digits and single hyphens, \
             starting with a letter and ending with a letter or digit)"
        ));
    }
    if RESERVED_SERVER_NAMES.contains(&name) {
        return Err(format!(
            "Invalid server_name: {shown} (it is a path of the default server, /user/<name>/{shown}/; choose another name)"
        ));
    }
    Ok(())
}

/// The key the hub keeps a server under: the user's name for the default server (`""`),
/// `user/server_name` for a named one. User names never contain `/`.
pub fn server_key(user: &str, server_name: &str) -> String {
    if server_name.is_empty() { user.to_string() } else { format!("{user}/{server_name}") }
}

/// The `(user, server_name)` of a [`server_key`].
pub fn split_server_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((key, ""))
}

/// The URL prefix of a server: `/user/<user>/` or `/user/<user>/<server_name>/`.
pub fn server_prefix(user: &str, server_name: &str) -> String {
    if server_name.is_empty() { format!("/user/{user}/") } else { format!("/user/{user}/{server_name}/") }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn server_names_follow_jupyterhub_6() {
        for ok in ["gpu", "big-memory", "a", "x1", &"a".repeat(30)] {
            assert!(check_server_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "GPU", "1gpu", "gpu-", "a--b", "a/b", "a b", "ü", "../x", &"a".repeat(31)] {
            let e = check_server_name(bad).expect_err(bad);
            assert!(e.starts_with("Invalid server_name: "), "{e}");
        }
        assert!(check_server_name("lab").expect_err("reserved").contains("path of the default server"));
        assert_eq!(server_key("ann", ""), "ann");
        assert_eq!(server_key("ann", "gpu"), "ann/gpu");
        assert_eq!(split_server_key("ann/gpu"), ("ann", "gpu"));
        assert_eq!(split_server_key("ann"), ("ann", ""));
        assert_eq!(server_prefix("ann", "gpu"), "/user/ann/gpu/");
    }
}
