//! The spawn progress stream: a server's state changes as server-sent events, for the spawn
//! page and `GET /hub/api/users/{name}/server/progress`.

use std::convert::Infallible;

use axum::response::sse::Event;
use futures_util::Stream;

use hub_servers::servers::ServerState;

/// Spawn progress as server-sent events, in JupyterHub's format: each event's data is
/// `{"progress": 0-100, "message": "...", "ready": bool, "failed"?: true, "url"?: "..."}`;
/// the stream ends after `ready` or `failed` (JupyterHub REST API,
/// `GET /users/{name}/server/progress`, served by the API and the spawn page).
pub fn progress_stream(
    rx: tokio::sync::watch::Receiver<ServerState>,
    url: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((rx, false, true), move |(mut rx, done, first)| {
        let url = url.clone();
        async move {
            if done {
                return None;
            }
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let st = rx.borrow_and_update().clone();
            let (data, end) = match st {
                ServerState::Running { .. } => (
                    serde_json::json!({"progress": 100, "ready": true, "message": format!("Server ready at {url}"), "url": url}),
                    true,
                ),
                ServerState::Starting { progress, message } => {
                    (serde_json::json!({"progress": progress, "ready": false, "message": message}), false)
                }
                ServerState::Failed { message, log_tail } => (
                    serde_json::json!({"progress": 100, "ready": false, "failed": true, "message": format!("Spawn failed: {message}"), "log_tail": log_tail}),
                    true,
                ),
                ServerState::Stopping => {
                    (serde_json::json!({"progress": 0, "ready": false, "message": "Stopping"}), false)
                }
                ServerState::Stopped { message } => (
                    serde_json::json!({"progress": 100, "ready": false, "failed": true, "message": message.unwrap_or_else(|| "The server is not running".into())}),
                    true,
                ),
            };
            Some((Ok(Event::default().data(data.to_string())), (rx, end, false)))
        }
    })
}
