//! `/hub/metrics`: Prometheus text format (the `prometheus` crate), with JupyterHub's metric
//! names where the meaning is the same and `hub_`-prefixed ones for the Kerberos renewer.
//!
//! | metric | type | meaning |
//! | --- | --- | --- |
//! | `jupyterhub_total_users` | gauge | users in the database |
//! | `jupyterhub_running_servers` | gauge | servers answering |
//! | `jupyterhub_pending_servers` | gauge | servers starting or stopping |
//! | `jupyterhub_active_users{period="24h|7d|30d"}` | gauge | users active within the period |
//! | `jupyterhub_server_spawn_duration_seconds{status}` | histogram | spawn request to ready / failure |
//! | `jupyterhub_request_duration_seconds{method,handler,code}` | histogram | hub requests (not proxied ones) |
//! | `hub_kerberos_renewals_total` / `hub_kerberos_renewal_failures_total` | counter | kinit attempts / failures since start |
//! | `hub_kerberos_tickets{state="valid|expiring_1h|expired|unknown"}` | gauge | tickets by state |
//! | `hub_kerberos_ticket_min_seconds_until_expiry` | gauge | the soonest expiry among valid tickets |
//! | `hub_proxy_spliced_bytes_total` | counter | proxied response body bytes moved with splice(2) rather than copied (`splice.rs`) |
//!
//! Gauges are computed when scraped; nothing is kept per user (no per-user series).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::Encoder;

pub use crate::collectors::Metrics;
use crate::state::AppState;
use hub_core::unix_now;
use hub_servers::servers::ServerState;

/// The `method` label of a request: one of the methods of RFC 9110 §9 and PATCH (RFC 5789),
/// else `other`, so that made-up methods cannot create new series.
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    const KNOWN: [(M, &str); 9] = [
        (M::GET, "GET"),
        (M::HEAD, "HEAD"),
        (M::POST, "POST"),
        (M::PUT, "PUT"),
        (M::DELETE, "DELETE"),
        (M::CONNECT, "CONNECT"),
        (M::OPTIONS, "OPTIONS"),
        (M::TRACE, "TRACE"),
        (M::PATCH, "PATCH"),
    ];
    KNOWN.iter().find(|(k, _)| k == m).map_or("other", |(_, s)| s)
}

/// Records the duration of each hub request under its route pattern (never the raw path,
/// which would make a series per user).
pub async fn track_requests(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let handler = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    app.metrics
        .request_duration
        .with_label_values(&[method, &handler, resp.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// `GET /hub/metrics`: needs `read:metrics` unless `[api] authenticate_metrics = false`.
pub async fn handler(State(app): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    if app.config.api.authenticate_metrics {
        match crate::caller::authenticate(&app, &method, &headers).await {
            Ok(c) if c.scopes.allows("read:metrics", None) => {}
            Ok(_) => {
                return crate::error::ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Action is not authorized with current scopes; requires read:metrics",
                )
                .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    match render(&app).await {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => crate::error::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("metrics unavailable: {e}"))
            .into_response(),
    }
}

async fn render(app: &AppState) -> anyhow::Result<String> {
    let m = &app.metrics;
    let now = unix_now();
    let users = app.store.list_users().await?;
    m.total_users.set(users.len() as i64);
    let (mut running, mut pending) = (0, 0);
    let mut last = Vec::with_capacity(users.len());
    for u in &users {
        let snap = app.servers.snapshot(&u.name);
        let (st, activity) = (snap.state, snap.last_activity);
        match st {
            ServerState::Running { .. } => running += 1,
            ServerState::Starting { .. } | ServerState::Stopping => pending += 1,
            _ => {}
        }
        last.push(u.last_activity.unwrap_or(0).max(activity));
    }
    m.running.set(running);
    m.pending.set(pending);
    for (period, secs) in [("24h", 86_400), ("7d", 7 * 86_400), ("30d", 30 * 86_400)] {
        m.active_users.with_label_values(&[period]).set(last.iter().filter(|t| now - **t <= secs).count() as i64);
    }
    let (attempts, failures) = app.renewer.renewal_counts();
    m.renewals.inc_by(attempts.saturating_sub(m.renewals.get()));
    m.renewal_failures.inc_by(failures.saturating_sub(m.renewal_failures.get()));
    let (mut valid, mut expiring, mut expired, mut unknown, mut min) = (0, 0, 0, 0, i64::MAX);
    for t in app.renewer.statuses() {
        match t.valid_until {
            None => unknown += 1,
            Some(end) if end <= now => expired += 1,
            Some(end) => {
                valid += 1;
                if end - now <= 3600 {
                    expiring += 1;
                }
                min = min.min(end - now);
            }
        }
    }
    m.tickets.with_label_values(&["valid"]).set(valid);
    m.tickets.with_label_values(&["expiring_1h"]).set(expiring);
    m.tickets.with_label_values(&["expired"]).set(expired);
    m.tickets.with_label_values(&["unknown"]).set(unknown);
    m.min_expiry.set(if min == i64::MAX { 0 } else { min });
    let mut out = Vec::new();
    prometheus::TextEncoder::new().encode(&m.registry.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}
