//! What the API's endpoint modules share: the JSON body reader, pagination, time formats,
//! the token model, the 404 for an unknown user, the caller's name for logs.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use hub_store::{TokenRecord, UserRecord};

use crate::error::ApiError;
use crate::state::AppState;

/// Media type that asks for the paginated list form.
pub(super) const PAGINATION_MEDIA_TYPE: &str = "application/jupyterhub-pagination+json";

/// What an API handler returns.
pub(super) type ApiResult = Result<axum::response::Response, ApiError>;

// ---- pagination ----------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    pub(super) offset: Option<String>,
    pub(super) limit: Option<String>,
    pub(super) state: Option<String>,
    pub(super) include_stopped_servers: Option<String>,
    pub(super) name_filter: Option<String>,
    pub(super) sort: Option<String>,
}

fn parse_count(name: &str, v: &Option<String>) -> Result<Option<usize>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<usize>()
            .map(Some)
            .map_err(|_| ApiError::bad(format!("{name} must be a whole number of 0 or more, not {s:?}"))),
    }
}

/// `(offset, limit)` of the requested page: `limit` defaults to `[api] page_default_limit`
/// and is clamped to 1..=`page_max_limit`, as JupyterHub does.
pub(super) fn page_bounds(app: &AppState, q: &ListQuery) -> Result<(usize, usize), ApiError> {
    let offset = parse_count("offset", &q.offset)?.unwrap_or(0);
    let limit = parse_count("limit", &q.limit)?
        .unwrap_or(app.config.api.page_default_limit)
        .clamp(1, app.config.api.page_max_limit);
    Ok((offset, limit))
}

/// Wraps `page` (the items at [`page_bounds`] out of `total`) the way the request asked for.
pub(super) fn paginate(
    app: &AppState,
    headers: &HeaderMap,
    path: &str,
    q: &ListQuery,
    total: usize,
    page: Vec<Value>,
) -> ApiResult {
    let (offset, limit) = page_bounds(app, q)?;
    let wants_pages =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains(PAGINATION_MEDIA_TYPE));
    if !wants_pages {
        return Ok(axum::Json(Value::Array(page)).into_response());
    }
    let next = if offset + limit < total {
        let mut query: Vec<(String, String)> = vec![];
        for (k, v) in [("state", &q.state), ("name_filter", &q.name_filter), ("sort", &q.sort)] {
            if let Some(v) = v {
                query.push((k.to_string(), v.clone()));
            }
        }
        if q.include_stopped_servers.is_some() {
            query.push(("include_stopped_servers".into(), String::new()));
        }
        query.push(("offset".into(), (offset + limit).to_string()));
        query.push(("limit".into(), limit.to_string()));
        let qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", hub_core::percent_encode(v))).collect();
        json!({"offset": offset + limit, "limit": limit, "url": format!("{}{path}?{}", public_base(app, headers), qs.join("&"))})
    } else {
        Value::Null
    };
    let body = json!({"items": page, "_pagination": {"offset": offset, "limit": limit, "total": total, "next": next}});
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(PAGINATION_MEDIA_TYPE));
    Ok(r)
}

/// The origin a client reached the hub by, if it is one of `[hub] public_urls` (an absolute
/// `next.url` must work for the client that follows it), else the first public URL.
fn public_base(app: &AppState, headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    app.config
        .hub
        .public_origins
        .iter()
        .find(|o| o.split_once("://").is_some_and(|(_, h)| h.eq_ignore_ascii_case(host)))
        .cloned()
        .unwrap_or_else(|| app.config.hub.public_url.trim_end_matches('/').to_string())
}

pub(super) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad(format!("the request body is not valid JSON for this endpoint: {e}")))
}

/// RFC 3339 UTC with seconds, as JupyterHub's timestamps (`2026-11-21T14:32:05Z`).
pub fn iso(unix: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)).to_string()
}

pub(super) fn iso_opt(unix: Option<i64>) -> Value {
    unix.filter(|t| *t > 0).map_or(Value::Null, |t| Value::String(iso(t)))
}

pub(super) async fn user_or_404(app: &AppState, name: &str) -> Result<UserRecord, ApiError> {
    app.store.get_user(name).await?.ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))
}

/// For [`tokens`]: a token's API model (`"a<id>"` ids, RFC 3339 times).
pub(super) fn token_model(t: &TokenRecord) -> Value {
    json!({
        "id": format!("a{}", t.id),
        "kind": "api_token",
        "user": t.username,
        "roles": [],
        "scopes": t.scopes,
        "note": t.note,
        "created": iso(t.created),
        "expires_at": iso_opt(t.expires_at),
        "last_activity": iso_opt(t.last_activity),
        "session_id": null,
    })
}
