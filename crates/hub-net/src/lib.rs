//! `hub-net`: bytes to and from users' servers, and the accept loop for browsers.
//!
//! Plain values only: this crate is given endpoints, tokens, UIDs and timeouts; it never sees
//! the app state, the configuration or the metrics, so the proxy's hot path can be read (and
//! benchmarked) on its own.
//!
//! - [`accept`]: the hub's listener (TCP or Unix socket) and HTTP/1.1 accept loop.
//! - [`upstream`]: connections to a server, checked against its owner before anything is sent.
//! - [`peer`]: who is listening on a socket (SO_PEERCRED, `/proc/net/tcp`).
//! - [`splice`]: large response bodies moved with splice(2).
//! - [`probe`]: the readiness probe.
//! - [`body`]: the minimum-rate body wrapper against slow uploads.
//! - [`agent`]: the node agent's report and control protocol (servers on cluster nodes).
//! - [`tls`]: TLS to a server on another machine, pinned to the key it made.

pub mod accept;
pub mod agent;
pub mod body;
pub mod peer;
pub mod probe;
pub mod splice;
pub mod tls;
pub mod upstream;
