//! The one router: it names every feature module (the pages, the Jobs page, the REST API, the
//! proxy, the metrics) and nothing else does.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get};

use crate::state::AppState;
use crate::{api, jobs_page, metrics, proxy, token_page, web};

/// Builds the router: the hub's pages and API under `/hub/` (request durations recorded for
/// `/hub/metrics`), the proxy under `/user/` (not timed: it is the hot path).
pub fn router(state: AppState) -> Router {
    let hub = web::pages()
        .merge(jobs_page::pages())
        .merge(token_page::pages())
        .route("/hub/metrics", get(metrics::handler))
        // Hub forms are small; the login form is the one body an unauthenticated client may
        // send, so this is all such a client can make the hub hold per request.
        .layer(axum::extract::DefaultBodyLimit::max(web::FORM_BODY_LIMIT))
        .route("/hub/api/", get(api::root))
        .nest("/hub/api", api::router(state.clone()))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track_requests));
    Router::new()
        .merge(hub)
        .route("/user", any(proxy::handle))
        .route("/user/", any(proxy::handle))
        .route("/user/{*rest}", any(proxy::handle))
        .fallback(|| async { crate::html::error_page(StatusCode::NOT_FOUND, "Not found", "There is no page here.") })
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(state)
}
