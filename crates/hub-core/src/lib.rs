//! `hub-core`: the hub's plain types, shared by every other crate of the workspace and
//! depending on none of them.
//!
//! - [`user`]: the rule for hub user names ([`user::normalize_username`]), the Linux account
//!   a user maps to ([`LinuxUser`]) and the identity a ticket is written for ([`TicketOwner`]).
//! - [`server`]: where a single-user server listens ([`Endpoint`]) and its token
//!   ([`ServerToken`]).
//! - [`scopes`]: JupyterHub's scopes, parsed and expanded.
//! - [`process`]: processes through `/proc`: identity, state, the tree.
//! - here: the clock ([`unix_now`]), URL helpers, and [`Recover`], the one lock-poison policy.

pub mod process;
pub mod scopes;
pub mod server;
pub mod user;

pub use server::{Endpoint, RemoteEndpoint, ServerToken};
pub use user::{LinuxUser, TicketOwner};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Percent-encodes `s` for use as a query-string value (RFC 3986: everything but
/// unreserved characters and `/` is encoded).
pub fn percent_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// `url` with its password (if any) replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Cannot fail: the URL has a password, so it has an authority to put one in.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The address the hub's accept loop reports for a client on its Unix socket (`[::]:0`): a
/// Unix peer has no IP address, and this one matches no client a TCP listener can see.
pub const UNIX_PEER: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0);

/// The hub's one lock-poison policy: a lock whose holder panicked is used as it is.
///
/// Every value the hub keeps behind a `std::sync` lock (server slots, session caches, the
/// login throttle, a connection's kept upstream) is left consistent at every point a panic
/// could happen (single assignments and map inserts), so recovering the guard loses nothing,
/// while propagating the poison would turn one panicked request into every later one failing.
pub trait Recover {
    /// The guard type.
    type Guard;
    /// The guard, whether or not the lock is poisoned.
    fn recover(self) -> Self::Guard;
}

impl<G> Recover for std::sync::LockResult<G> {
    type Guard = G;
    fn recover(self) -> G {
        self.unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
