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
