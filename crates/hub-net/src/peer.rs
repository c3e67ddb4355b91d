//! Who is at the other end of an upstream connection.
//!
//! The hub runs as root and connects to users' servers at addresses a user can influence: a
//! Unix socket in a directory the user owns (which they can replace with a link to any socket
//! on the host), or a loopback port that any local process may bind first. Before the hub sends
//! anything on such a connection (the server's token above all), it checks that the listener
//! belongs to the server's owner:
//!
//! - **Unix socket**: `SO_PEERCRED` (unix(7)) gives the credentials the listening process had
//!   when it called `listen(2)`; its UID must be the owner's. A link to a root-only socket or to
//!   another user's server answers with another UID and is refused.
//! - **TCP on 127.0.0.1**: the kernel's socket table (`/proc/net/tcp`, read with the `procfs`
//!   crate; proc(5)) lists the server side of our connection (local address = the port we
//!   connected to, remote address = our own) with the UID of the socket that accepted it,
//!   which is the listener's. A squatter of another UID on the port is refused.
//!
//! Root (UID 0) is never accepted as a server's owner: the spawner refuses UID 0 accounts.

use std::net::SocketAddr;

use tokio::net::{TcpStream, UnixStream};

/// Why a connection's peer is not the server the hub started.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The listener runs as another user.
    #[error(
        "the listener at {endpoint} belongs to uid {found}, not to the server's owner (uid {expected}); another process holds the server's address, so nothing was sent to it"
    )]
    WrongOwner {
        /// The address, for the message.
        endpoint: String,
        /// The owner's UID.
        expected: u32,
        /// The listener's UID.
        found: u32,
    },
    /// The kernel did not say who the listener is.
    #[error("cannot tell who listens at {endpoint}: {why}; nothing was sent to it")]
    Unknown {
        /// The address, for the message.
        endpoint: String,
        /// What failed.
        why: String,
    },
    /// A server on another machine answered with a TLS key other than the pinned one
    /// ([`crate::tls::TlsError::NotPinned`]'s message); nothing was sent to it.
    #[error("{0}; nothing was sent to it")]
    NotPinned(String),
}

/// Checks that the process listening on the other end of `stream` runs as `uid`.
pub fn check_unix(stream: &UnixStream, uid: u32, endpoint: &str) -> Result<(), PeerError> {
    let cred =
        stream.peer_cred().map_err(|e| PeerError::Unknown { endpoint: endpoint.to_string(), why: e.to_string() })?;
    if cred.uid() != uid || uid == 0 {
        return Err(PeerError::WrongOwner { endpoint: endpoint.to_string(), expected: uid, found: cred.uid() });
    }
    Ok(())
}

/// Checks that the socket that accepted `stream` (a connection to 127.0.0.1) belongs to
/// `uid`. The server side of a new connection may still be a request socket (`SYN_RECV`) for
/// a moment after `connect` returns; the kernel lists those with the listener's UID too. If
/// the entry is not there at all, the table is read again a few times over ~50 ms.
pub async fn check_tcp(stream: &TcpStream, uid: u32) -> Result<(), PeerError> {
    let unknown = |endpoint: String, why: String| PeerError::Unknown { endpoint, why };
    let (ours, theirs) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(e), _) | (_, Err(e)) => return Err(unknown("the server's port".into(), e.to_string())),
    };
    let endpoint = theirs.to_string();
    for attempt in 0..6u32 {
        let found = tokio::task::spawn_blocking(move || accepting_uid(ours, theirs))
            .await
            .map_err(|e| unknown(endpoint.clone(), e.to_string()))?
            .map_err(|e| unknown(endpoint.clone(), format!("reading /proc/net/tcp: {e}")))?;
        match found {
            Some(found) if found == uid && uid != 0 => return Ok(()),
            Some(found) => return Err(PeerError::WrongOwner { endpoint, expected: uid, found }),
            None => tokio::time::sleep(std::time::Duration::from_millis(2u64 << attempt)).await,
        }
    }
    Err(unknown(endpoint, "the kernel lists no socket for this connection".into()))
}

/// The UID of the server-side socket of the connection from `ours` to `theirs`, if the
/// kernel's IPv4 TCP table has it.
fn accepting_uid(ours: SocketAddr, theirs: SocketAddr) -> Result<Option<u32>, procfs::ProcError> {
    let table = procfs::net::tcp()?;
    Ok(table.into_iter().find(|e| e.local_address == theirs && e.remote_address == ours).map(|e| e.uid))
}
