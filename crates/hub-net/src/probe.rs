//! The readiness probe: is a starting (or re-adopted) server answering, and is it the one
//! the hub started?

use std::time::Duration;

use axum::body::Body;
use hub_core::{Endpoint, ServerToken};

use crate::upstream::UpstreamError;

/// What a readiness probe found.
pub enum Probe {
    /// `GET <path>` answered 200.
    Ready,
    /// Nothing listens yet, or the server answered something else: ask again.
    NotYet,
    /// Something listens at the server's address that is not the owner's (a squatter on
    /// the port, or a link to another socket): nothing was sent to it.
    Impostor(String),
}

/// Asks `GET <path>` with `Authorization: token <token>` on `endpoint` within 2 seconds
/// (connect included). The connection is [`crate::upstream::open`]'s, so the token is sent only
/// to a listener that runs as `owner`.
pub async fn probe(endpoint: &Endpoint, owner: u32, path: &str, token: &ServerToken) -> Probe {
    let Ok(req) = hyper::Request::get(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .header(hyper::header::AUTHORIZATION, token.authorization().clone())
        .body(Body::empty())
    else {
        return Probe::NotYet;
    };
    let ask = async {
        let upstream = match crate::upstream::open(endpoint, owner).await {
            Ok(u) => u,
            Err(e @ UpstreamError::Peer(_)) => return Err(Probe::Impostor(e.to_string())),
            Err(_) => return Err(Probe::NotYet),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(upstream))
            .await
            .map_err(|_| Probe::NotYet)?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|_| Probe::NotYet)
    };
    match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(resp)) if resp.status() == hyper::StatusCode::OK => Probe::Ready,
        Ok(Err(impostor @ Probe::Impostor(_))) => impostor,
        _ => Probe::NotYet,
    }
}

/// Asks `GET <path>` with the server's token on `endpoint` (through [`crate::upstream::open`],
/// so only to a listener that runs as `owner`) and returns the body of a 200 answer, at most
/// `max_bytes` long; `None` for anything else, or after `timeout` (connect included). For the
/// culler's questions to a running server (`api/status`, `api/kernels`).
pub async fn get_body(
    endpoint: &Endpoint,
    owner: u32,
    path: &str,
    token: &ServerToken,
    max_bytes: usize,
    timeout: Duration,
) -> Option<bytes::Bytes> {
    use http_body_util::BodyExt;
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .header(hyper::header::AUTHORIZATION, token.authorization().clone())
        .body(Body::empty())
        .ok()?;
    let ask = async {
        let upstream = crate::upstream::open(endpoint, owner).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(upstream)).await.ok()?;
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.ok()?;
        if resp.status() != hyper::StatusCode::OK {
            return None;
        }
        let body = http_body_util::Limited::new(resp.into_body(), max_bytes);
        body.collect().await.ok().map(|b| b.to_bytes())
    };
    tokio::time::timeout(timeout, ask).await.ok().flatten()
}
