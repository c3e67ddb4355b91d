//! The REST API under `/hub/api`, following JupyterHub's published REST API (the OpenAPI 3.1
//! document `docs/source/_static/rest-api.yml` of JupyterHub 6): the same paths, methods, JSON
//! shapes and status codes, errors as `{"status": N, "message": "..."}`, and pagination with
//! `offset`/`limit` (the `{"items", "_pagination"}` form when the request accepts
//! `application/jupyterhub-pagination+json`).
//!
//! Callers authenticate with `Authorization: token <T>` or `Authorization: Bearer <T>` (a
//! user's API token, or a service token from `[[services]]`), or with the hub's session cookie
//! (state-changing requests then also need the session's XSRF token in `X-XSRFToken` and an
//! `Origin` from `[hub] public_urls`). What a caller may do is decided by [`scopes`].
//! Hub-specific information, the Kerberos ticket state, is in the extra user-model field
//! `kerberos`.

mod common;
pub mod jobs;
pub mod tokens;

use common::{ApiResult, ListQuery, body, iso, iso_opt, page_bounds, paginate, user_or_404};

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

pub use crate::caller::{Caller, Identity, authenticate};
pub use crate::error::ApiError;
use crate::state::AppState;
use hub_core::LinuxUser;
use hub_core::unix_now;
use hub_core::user::LookupError;
use hub_servers::servers::ServerState;
use hub_store::{GroupRecord, UserRecord};

/// The JupyterHub release whose REST API this follows; `GET /hub/api/` reports it as
/// `version` so that clients which check it (e.g. for the `state` filter, added in 1.3) work.
pub const JUPYTERHUB_API_VERSION: &str = "6.0.0";

/// Longest a spawn or stop request waits before answering 202 (JupyterHub's
/// `slow_spawn_timeout` and `slow_stop_timeout` are both 10 seconds).
const SLOW_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers a request that carries a body (a POST, PATCH, PUT or DELETE with content) with
/// [`authenticate`]'s error before any of the body is read, and closes its connection; an
/// authenticated one goes on. So an unauthenticated client cannot make the hub receive or
/// hold a body (bodies are read by the handlers, which run after this).
async fn credentials_before_body(
    State(app): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut req = req;
    // A node agent's report is authenticated by its signature, which needs the body.
    if req.uri().path().ends_with(hub_net::agent::REPORT_PATH.trim_start_matches("/hub/api")) {
        return next.run(req).await;
    }
    if !hyper::body::Body::is_end_stream(req.body()) {
        match authenticate(&app, req.method(), req.headers()).await {
            // The handler's Caller extractor takes this one: one authentication per request.
            Ok(caller) => {
                req.extensions_mut().insert(caller);
            }
            Err(e) => {
                tracing::info!(method = %req.method(), path = %req.uri().path(), "refused an unauthenticated request body unread");
                let mut r = e.into_response();
                r.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                return r;
            }
        }
    }
    next.run(req).await
}

/// The API's routes, relative to `/hub/api`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/info", get(info))
        .route("/health", get(health))
        .route("/user", get(current_user))
        .route("/users", get(list_users).post(create_users))
        .route("/users/{name}", get(get_user).post(create_user).patch(patch_user).delete(delete_user))
        .route("/users/{name}/server", axum::routing::post(start_server).delete(stop_server))
        .route("/users/{name}/server/progress", get(progress))
        .route("/users/{name}/servers/{server_name}", axum::routing::post(start_named).delete(stop_named))
        .route("/users/{name}/servers/{server_name}/progress", get(progress_named))
        .route("/users/{name}/activity", axum::routing::post(user_activity))
        .route("/users/{name}/tokens", get(tokens::list).post(tokens::create))
        .route("/users/{name}/tokens/{id}", get(tokens::get_one).delete(tokens::delete))
        .route("/users/{name}/jobs", get(jobs::list).post(jobs::create))
        .route("/users/{name}/jobs/{job}", get(jobs::get_one).patch(jobs::patch).delete(jobs::delete))
        .route("/users/{name}/jobs/{job}/runs", get(jobs::runs).post(jobs::run_now))
        .route("/users/{name}/jobs/{job}/runs/{id}", get(jobs::run_one).delete(jobs::cancel))
        .route("/users/{name}/jobs/{job}/runs/{id}/log", get(jobs::log))
        .route("/users/{name}/jobs/{job}/runs/{id}/output", get(jobs::output))
        .route("/groups", get(list_groups))
        .route("/groups/{name}", get(get_group).post(create_group).delete(delete_group))
        .route("/groups/{name}/users", axum::routing::post(add_group_users).delete(remove_group_users))
        .route("/proxy", get(proxy_routes))
        .route("/services", get(list_services))
        .route("/services/{name}", get(get_service))
        .route("/spawner/report", axum::routing::post(spawner_report))
        .fallback(|| async { ApiError::not_found("no such API endpoint; see docs/api.md") })
        .layer(axum::middleware::from_fn_with_state(state, credentials_before_body))
        .layer(axum::middleware::map_response(crate::error::json_errors))
}

/// Parses an RFC 3339 timestamp (any offset) into unix seconds.
fn parse_time(field: &str, s: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map(|t| t.unix_timestamp()).map_err(
        |e| ApiError::bad(format!("{field}: {s:?} is not an RFC 3339 timestamp such as 2026-11-21T14:32:05Z ({e})")),
    )
}

// ---- models --------------------------------------------------------------------------------

/// JupyterHub's `pending` for a state: `"spawn"`, `"stop"` or null.
fn pending_of(st: &ServerState) -> Value {
    match st {
        ServerState::Starting { .. } => json!("spawn"),
        ServerState::Stopping => json!("stop"),
        _ => Value::Null,
    }
}

/// The `Server` model of `name`'s server `server_name` (`""`: the default one), or `None`
/// when it is not active (and stopped servers were not asked for).
fn server_model(app: &AppState, name: &str, server_name: &str, include_stopped: bool) -> Option<Value> {
    let key = hub_core::server::server_key(name, server_name);
    let snap = app.servers.snapshot(&key);
    let (st, since, activity) = (snap.state, snap.ready_since, snap.last_activity);
    let active = st.is_active();
    if !active && !include_stopped {
        return None;
    }
    let url = hub_core::server::server_prefix(name, server_name);
    let progress_url = if server_name.is_empty() {
        format!("/hub/api/users/{name}/server/progress")
    } else {
        format!("/hub/api/users/{name}/servers/{server_name}/progress")
    };
    let full = |p: &str| format!("{}{p}", app.config.hub.public_url.trim_end_matches('/'));
    let options: Value = serde_json::from_str(&app.servers.options(&key)).unwrap_or_else(|_| json!({}));
    let mut m = json!({
        "name": server_name,
        "display_name": server_name,
        "ready": matches!(st, ServerState::Running { .. }),
        "stopped": !active,
        "pending": pending_of(&st),
        "url": url,
        "progress_url": progress_url,
        "full_url": full(&url),
        "full_progress_url": full(&progress_url),
        "started": iso_opt(Some(since).filter(|_| active)),
        "last_activity": iso_opt(Some(activity.max(since))),
        "state": null,
        "user_options": options,
        "hub_state": st.name(),
    });
    if let ServerState::Failed { message, .. } | ServerState::Stopped { message: Some(message) } = &st {
        m["hub_message"] = json!(message);
    }
    // A server on a cluster node: which node (the hub's own field, as `hub_state`).
    if let ServerState::Running { endpoint: hub_core::Endpoint::Tls(r), .. } = &st {
        m["hub_node"] = json!(r.node);
    }
    Some(m)
}

/// The `User` model of `u` as `caller` may see it: `name` always; `admin`, `roles`, `groups`,
/// `created` and the hub's `kerberos` field with `read:users`; `last_activity` with
/// `read:users:activity`; `server`, `pending` and `servers` with `read:servers`.
async fn user_model(app: &AppState, u: &UserRecord, caller: &Caller, include_stopped: bool) -> Value {
    let name = u.name.as_str();
    let mut m = json!({"kind": "user", "name": name});
    let admin = u.admin || app.config.auth.admin_users.iter().any(|a| a == name);
    let snap = app.servers.snapshot(name);
    let (st, activity) = (snap.state, snap.last_activity);
    if caller.scopes.allows("read:users", Some(name)) {
        m["admin"] = json!(admin);
        m["roles"] = if admin { json!(["admin", "user"]) } else { json!(["user"]) };
        m["groups"] = json!(u.groups);
        m["created"] = json!(iso(u.created));
        m["user_info"] = json!({});
        m["auth_state"] = Value::Null;
        m["kerberos"] = kerberos_model(app, name);
    }
    if caller.scopes.allows("read:users:activity", Some(name)) {
        m["last_activity"] = iso_opt(Some(u.last_activity.unwrap_or(0).max(activity)));
    }
    if caller.scopes.allows("read:servers", Some(name)) {
        m["server"] =
            if matches!(st, ServerState::Running { .. }) { json!(format!("/user/{name}/")) } else { Value::Null };
        m["pending"] = pending_of(&st);
        let mut servers = serde_json::Map::new();
        if let Some(s) = server_model(app, name, "", include_stopped) {
            servers.insert(String::new(), s);
        }
        for (server_name, _, _) in app.servers.servers_of(name).into_iter().filter(|(n, _, _)| !n.is_empty()) {
            if let Some(s) = server_model(app, name, &server_name, include_stopped) {
                servers.insert(server_name, s);
            }
        }
        m["servers"] = Value::Object(servers);
    }
    m
}

/// The hub-specific `kerberos` field: the ticket state the renewer last saw (times in RFC
/// 3339), or null when the hub has not handled a ticket for the user.
fn kerberos_model(app: &AppState, name: &str) -> Value {
    match app.renewer.status(name) {
        None => Value::Null,
        Some(t) => json!({
            "principal": t.principal,
            "valid_from": iso_opt(t.valid_from),
            "valid_until": iso_opt(t.valid_until),
            "renew_until": iso_opt(t.renew_until),
            "last_renewal": iso_opt(t.last_success),
            "next_renewal": iso_opt(t.next_renewal),
            "last_error": t.last_error,
            "consecutive_failures": t.consecutive_failures,
            "from_login": t.from_login,
        }),
    }
}

fn group_model(g: &GroupRecord) -> Value {
    json!({"kind": "group", "name": g.name, "users": g.users, "properties": {}, "roles": []})
}

// ---- hub -----------------------------------------------------------------------------------

/// `GET /hub/api/`: the JupyterHub version this API follows (no authentication, as in JupyterHub).
pub async fn root() -> Response {
    axum::Json(json!({"version": JUPYTERHUB_API_VERSION, "hub_version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn info(State(app): State<AppState>, caller: Caller) -> ApiResult {
    caller.require("read:hub", None)?;
    let auth = match app.config.auth.method {
        hub_config::AuthMethod::Pam => "pam",
        hub_config::AuthMethod::Kerberos => "kerberos",
    };
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
    Ok(axum::Json(json!({
        "version": JUPYTERHUB_API_VERSION,
        "hub_version": env!("CARGO_PKG_VERSION"),
        "python": "",
        "sys_executable": exe,
        "authenticator": {"class": format!("hub.auth.{auth}"), "version": env!("CARGO_PKG_VERSION"), "spnego": app.config.auth.spnego},
        "spawner": {"class": "hub.spawner.local", "version": env!("CARGO_PKG_VERSION")},
        "kerberos": {"enabled": app.config.kerberos.enabled, "realm": app.config.kerberos.realm},
    }))
    .into_response())
}

/// `GET /hub/api/health`: 200 `{"status": "ok"}` when the database answers, else 503.
async fn health(State(app): State<AppState>) -> ApiResult {
    match app.store.get_user("").await {
        Ok(_) => Ok(axum::Json(json!({"status": "ok"})).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "health check: the database does not answer");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the hub's database does not answer"))
        }
    }
}

/// Largest report body read (bytes); a report is about 200.
const MAX_REPORT_BYTES: usize = 4096;

/// `POST /hub/api/spawner/report`: a node agent says where its server listens
/// (`hub_net::agent`). No session or token: the `X-Hub-Signature-256` HMAC under the secret the
/// hub put in that server's job script is the authentication. 204 when taken; 403 for a bad
/// signature, 400 for a malformed report, 409 when no start waits for it.
async fn spawner_report(State(app): State<AppState>, req: axum::extract::Request) -> ApiResult {
    use hub_servers::spawner::ReportError;
    let signature =
        req.headers().get(hub_net::agent::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = axum::body::to_bytes(req.into_body(), MAX_REPORT_BYTES)
        .await
        .map_err(|_| ApiError::bad(format!("a report is at most {MAX_REPORT_BYTES} bytes")))?;
    match app.servers.report(&body, signature.as_deref()) {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => {
            tracing::warn!(error = %e, "refused a node agent's report");
            Err(match e {
                ReportError::BadSignature => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
                ReportError::Invalid(_) => ApiError::bad(e.to_string()),
                ReportError::NotExpected => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            })
        }
    }
}

async fn current_user(State(app): State<AppState>, caller: Caller) -> ApiResult {
    let mut m = match &caller.identity {
        Identity::User { name, .. } => {
            let u = user_or_404(&app, name).await?;
            user_model(&app, &u, &caller, false).await
        }
        Identity::Service { name } => json!({"kind": "service", "name": name, "admin": false, "roles": []}),
    };
    m["scopes"] = json!(caller.scopes.strings());
    m["session_id"] = json!(caller.session_id);
    m["token_id"] = json!(caller.token_id);
    Ok(axum::Json(m).into_response())
}

// ---- users ---------------------------------------------------------------------------------

async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    if !caller.scopes.has_any("list:users") {
        return Err(ApiError::forbidden("list:users"));
    }
    let state = q.state.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = state.filter(|s| !["active", "ready", "inactive"].contains(s)) {
        return Err(ApiError::bad(format!("state must be one of active, ready, inactive; not {s:?}")));
    }
    let needle = q.name_filter.as_deref().unwrap_or_default().to_lowercase();
    let sort = q.sort.as_deref().unwrap_or("id");
    // The common case (no state filter, sorted by name, a caller who may list everyone: an
    // admin, idle-culler): the database pages, so each page costs O(limit).
    if state.is_none() && ["id", "name", "-id", "-name"].contains(&sort) && caller.scopes.allows("list:users", None) {
        let (offset, limit) = page_bounds(&app, &q)?;
        let (users, total) = app.store.users_page(&needle, sort.starts_with('-'), offset as i64, limit as i64).await?;
        let mut page = Vec::with_capacity(users.len());
        for u in &users {
            page.push(user_model(&app, u, &caller, q.include_stopped_servers.is_some()).await);
        }
        return paginate(&app, &headers, "/hub/api/users", &q, usize::try_from(total).unwrap_or(0), page);
    }
    let mut users: Vec<UserRecord> = app
        .store
        .list_users()
        .await?
        .into_iter()
        .filter(|u| caller.scopes.allows("list:users", Some(&u.name)))
        .filter(|u| needle.is_empty() || u.name.contains(&needle))
        .filter(|u| {
            let st = app.servers.snapshot(&u.name).state;
            let active = st.is_active();
            match state {
                Some("ready") => matches!(st, ServerState::Running { .. }),
                Some("active") => active,
                Some("inactive") => !active,
                _ => true,
            }
        })
        .collect();
    match sort {
        "id" | "name" => {}
        "-id" | "-name" => users.reverse(),
        s @ ("last_activity" | "-last_activity") => {
            let key = |u: &UserRecord| u.last_activity.unwrap_or(0).max(app.servers.snapshot(&u.name).last_activity);
            users.sort_by_key(key);
            if s.starts_with('-') {
                users.reverse();
            }
        }
        other => {
            return Err(ApiError::bad(format!(
                "sort must be id, name or last_activity (with - for descending), not {other:?}"
            )));
        }
    }
    let stopped = q.include_stopped_servers.is_some();
    // Models only for the page: cheap with many users.
    let (offset, limit) = page_bounds(&app, &q)?;
    let mut page = Vec::new();
    for u in users.iter().skip(offset).take(limit) {
        page.push(user_model(&app, u, &caller, stopped).await);
    }
    paginate(&app, &headers, "/hub/api/users", &q, users.len(), page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUsers {
    usernames: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// Checks a name for a new hub user: a valid, normalised user name with a Linux account (the
/// hub runs each user's server under their account).
async fn new_user_name(raw: &str) -> Result<String, ApiError> {
    let name = hub_core::user::normalize_username(raw).map_err(|e| ApiError::bad(format!("{raw:?}: {e}")))?;
    if name != raw {
        return Err(ApiError::bad(format!("{raw:?} is not in normal form; use {name:?}")));
    }
    match LinuxUser::lookup_async(&name).await {
        Ok(_) => Ok(name),
        Err(LookupError::NoSuchUser(_)) => Err(ApiError::bad(format!(
            "there is no Linux account named {name:?}; create it first (the hub runs each user's server under their own account)"
        ))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

async fn create_users(State(app): State<AppState>, caller: Caller, raw: Bytes) -> ApiResult {
    caller.require("admin:users", None)?;
    let req: CreateUsers = body(&raw)?;
    if req.usernames.is_empty() {
        return Err(ApiError::bad("usernames is empty: list at least one user name"));
    }
    let mut names = Vec::new();
    for raw_name in &req.usernames {
        let n = new_user_name(raw_name).await?;
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let now = unix_now();
    let created = app.store.create_users(&names, req.admin, now).await?;
    if created.is_empty() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("All {} users already exist", names.len())));
    }
    let mut out = Vec::with_capacity(created.len());
    for n in created {
        tracing::info!(user = %n, admin = req.admin, by = %caller.label(), "user created through the API");
        let u = UserRecord { name: n, admin: req.admin, created: now, last_activity: None, groups: Vec::new() };
        out.push(user_model(&app, &u, &caller, false).await);
    }
    Ok((StatusCode::CREATED, axum::Json(Value::Array(out))).into_response())
}

#[derive(Deserialize)]
struct StoppedQuery {
    include_stopped_servers: Option<String>,
}

async fn get_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<StoppedQuery>,
) -> ApiResult {
    if !caller.may_see(&name) {
        return Err(ApiError::not_found(format!("No such user: {name}")));
    }
    let u = user_or_404(&app, &name).await?;
    Ok(axum::Json(user_model(&app, &u, &caller, q.include_stopped_servers.is_some()).await).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    #[serde(default)]
    admin: bool,
}

async fn create_user(State(app): State<AppState>, caller: Caller, Path(name): Path<String>, raw: Bytes) -> ApiResult {
    caller.require("admin:users", None)?;
    let req: CreateUser = body(&raw)?;
    let name = new_user_name(&name).await?;
    if !app.store.create_user(&name, req.admin, unix_now()).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("User {name} already exists")));
    }
    tracing::info!(user = %name, admin = req.admin, by = %caller.label(), "user created through the API");
    let u = user_or_404(&app, &name).await?;
    Ok((StatusCode::CREATED, axum::Json(user_model(&app, &u, &caller, false).await)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    name: Option<String>,
    admin: Option<bool>,
}

async fn patch_user(State(app): State<AppState>, caller: Caller, Path(name): Path<String>, raw: Bytes) -> ApiResult {
    caller.require("admin:users", Some(&name))?;
    let req: PatchUser = body(&raw)?;
    if req.name.is_none() && req.admin.is_none() {
        return Err(ApiError::bad("give at least one of name or admin"));
    }
    user_or_404(&app, &name).await?;
    if req.name.as_ref().is_some_and(|n| n != &name) {
        return Err(ApiError::bad(
            "renaming a user is not supported: a hub user is a Linux account; create the new user instead",
        ));
    }
    if let Some(admin) = req.admin {
        app.store.set_admin(&name, admin).await?;
        app.tokens.revoke_all();
        if !admin && app.config.auth.admin_users.contains(&name) {
            tracing::warn!(user = %name, "admin flag cleared, but [auth] admin_users still lists the user");
        }
        tracing::info!(user = %name, admin, by = %caller.label(), "admin flag changed through the API");
    }
    let u = user_or_404(&app, &name).await?;
    Ok(axum::Json(user_model(&app, &u, &caller, false).await).into_response())
}

async fn delete_user(State(app): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult {
    caller.require("delete:users", Some(&name))?;
    user_or_404(&app, &name).await?;
    if let Identity::User { name: me, .. } = &caller.identity
        && me == &name
    {
        return Err(ApiError::bad("you cannot delete yourself"));
    }
    // Every server of the user: the default one and each named one.
    for (server_name, snap, _) in app.servers.servers_of(&name) {
        if matches!(snap.state, ServerState::Stopped { .. } | ServerState::Failed { .. }) {
            continue;
        }
        match LinuxUser::lookup_async(&name).await {
            Ok(u) => app.servers.stop_server(&u, &server_name).await,
            Err(e) => return Err(ApiError::internal(format!("cannot stop {name}'s server {server_name:?}: {e}"))),
        }
    }
    if let Ok(u) = LinuxUser::lookup_async(&name).await {
        app.renewer.deactivate(&hub_core::TicketOwner::from(&u));
    }
    // Every session and token goes with the user (the store's cascade), and the memory caches
    // with them, so a cookie of the deleted user opens nothing from now on; the second purge
    // catches a session a login made in between.
    let revoked = app.sessions.revoke_all(&name).await?;
    app.store.delete_user(&name).await?;
    app.servers.forget_user(&name);
    app.tokens.revoke_all();
    app.sessions.revoke_all(&name).await?;
    // The record is gone either way; files left behind are the hub's own and harmless, so a
    // failure here is logged rather than answered.
    if let Err(e) = app.servers.remove_user_files(&name).await {
        tracing::warn!(user = %name, error = %e, "could not remove the deleted user's socket directory or kernelspecs");
    }
    tracing::info!(user = %name, by = %caller.label(), revoked_sessions = revoked, "user deleted through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- servers -------------------------------------------------------------------------------

async fn start_server(State(app): State<AppState>, caller: Caller, Path(name): Path<String>, raw: Bytes) -> ApiResult {
    start_common(&app, &caller, &name, "", &raw).await
}

/// `POST /users/{name}/servers/{server_name}`: creates (if new) and starts a named server, with
/// JupyterHub's checks and messages: named servers enabled, a valid new name, the per-user limit.
async fn start_named(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, server_name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    if server_name.is_empty() {
        return start_common(&app, &caller, &name, "", &raw).await;
    }
    caller.require_server("start:servers", &name, &server_name)?;
    app.servers.check_named(&name, &server_name).map_err(ApiError::bad)?;
    start_common(&app, &caller, &name, &server_name, &raw).await
}

/// Starts `name`'s server `server_name` for the API: 201 when it is ready within
/// `SLOW_TIMEOUT`, 202 while it is still starting, 400 when it already runs, 429 at a limit.
async fn start_common(app: &AppState, caller: &Caller, name: &str, server_name: &str, raw: &Bytes) -> ApiResult {
    caller.require_server("start:servers", name, server_name)?;
    let options: serde_json::Map<String, Value> = body(raw)?;
    user_or_404(app, name).await?;
    let key = hub_core::server::server_key(name, server_name);
    let which =
        if server_name.is_empty() { format!("{name}'s server") } else { format!("{name}'s server {server_name}") };
    match app.servers.snapshot(&key).state {
        ServerState::Starting { .. } => return Ok(StatusCode::ACCEPTED.into_response()),
        ServerState::Running { .. } => return Err(ApiError::bad(format!("{which} is already running"))),
        ServerState::Stopping => return Err(ApiError::bad(format!("{which} is pending stop"))),
        _ => {}
    }
    let user = match LinuxUser::lookup_async(name).await {
        Ok(u) => u,
        Err(LookupError::NoSuchUser(_)) => {
            return Err(ApiError::bad(format!("there is no Linux account named {name:?}; the server cannot start")));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let options = user_options(app, &user, &options)?;
    // Subscribed after the start: a new named server's slot is made only by the start,
    // under the lock that enforces named_server_limit_per_user.
    if let Err(refused) = app.servers.start_server(user, server_name, options) {
        let answer = ApiError::new(StatusCode::TOO_MANY_REQUESTS, refused.to_string()).into_response();
        return Ok(crate::error::with_retry_after(answer, refused.retry_after()));
    }
    let mut rx = app.servers.subscribe(&key);
    tracing::info!(user = %name, server = %server_name, by = %caller.label(), "server start requested through the API");
    let outcome = tokio::time::timeout(SLOW_TIMEOUT, async {
        loop {
            let st = rx.borrow_and_update().clone();
            match st {
                ServerState::Running { .. } | ServerState::Failed { .. } | ServerState::Stopped { .. } => return st,
                _ => {}
            }
            if rx.changed().await.is_err() {
                return ServerState::Stopped { message: None };
            }
        }
    })
    .await;
    match outcome {
        Err(_) => Ok(StatusCode::ACCEPTED.into_response()),
        Ok(ServerState::Running { .. }) => Ok(StatusCode::CREATED.into_response()),
        Ok(ServerState::Failed { message, .. }) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Spawn failed: {message}")))
        }
        Ok(_) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the server stopped while it was starting")),
    }
}

/// The `user_options` of a start request for `user`, checked, as the JSON text kept with the
/// server: `{"profile": "<slug>"}` (KubeSpawner's `profile_list` convention) or `{}` without
/// `[[profiles]]`. 400 for an unknown option or profile, 403 for a profile the user may not
/// choose; the message names it and the fix.
fn user_options(
    app: &AppState,
    user: &LinuxUser,
    options: &serde_json::Map<String, Value>,
) -> Result<String, ApiError> {
    let mut requested = None;
    for (k, v) in options {
        match (k.as_str(), v) {
            ("profile", Value::String(p)) => requested = Some(p.as_str()),
            ("profile", _) => return Err(ApiError::bad("user_options.profile must be a string: a profile's slug")),
            _ => {
                return Err(ApiError::bad(format!(
                    "user_options: unknown option {k:?}; this hub takes {{\"profile\": \"<slug>\"}}"
                )));
            }
        }
    }
    use hub_servers::environment::{ProfileRefusal, choose_profile};
    match choose_profile(&app.config, user, requested) {
        Ok(None) => Ok("{}".into()),
        Ok(Some(p)) => Ok(json!({"profile": p.slug}).to_string()),
        Err(ProfileRefusal::Unknown(m)) => Err(ApiError::bad(m)),
        Err(ProfileRefusal::NotAllowed(m)) => Err(ApiError::new(StatusCode::FORBIDDEN, m)),
    }
}

async fn stop_server(State(app): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult {
    stop_common(&app, &caller, &name, "", false).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StopNamed {
    #[serde(default)]
    remove: bool,
}

/// `DELETE /users/{name}/servers/{server_name}`: stops a named server; with `{"remove": true}`
/// also forgets it (JupyterHub's body).
async fn stop_named(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, server_name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let req: StopNamed = if raw.is_empty() { StopNamed::default() } else { body(&raw)? };
    if !server_name.is_empty() && !app.servers.has_named(&name, &server_name) {
        caller.require_server("delete:servers", &name, &server_name)?;
        return Err(ApiError::not_found(format!("{name} has no server named {server_name}")));
    }
    stop_common(&app, &caller, &name, &server_name, req.remove).await
}

/// Stops (and with `remove`, forgets) `name`'s server `server_name` for the API: 204 when done
/// within `SLOW_TIMEOUT`, else 202.
async fn stop_common(app: &AppState, caller: &Caller, name: &str, server_name: &str, remove: bool) -> ApiResult {
    caller.require_server("delete:servers", name, server_name)?;
    user_or_404(app, name).await?;
    let key = hub_core::server::server_key(name, server_name);
    match app.servers.snapshot(&key).state {
        ServerState::Stopping => return Ok(StatusCode::ACCEPTED.into_response()),
        ServerState::Stopped { .. } | ServerState::Failed { .. } if !remove => {
            let which = if server_name.is_empty() {
                format!("{name}'s server")
            } else {
                format!("{name}'s server {server_name}")
            };
            return Err(ApiError::bad(format!("{which} is not running")));
        }
        _ => {}
    }
    let user = LinuxUser::lookup_async(name).await.map_err(ApiError::internal)?;
    tracing::info!(user = %name, server = %server_name, remove, by = %caller.label(), "server stop requested through the API");
    let servers = app.servers.clone();
    let server_name = server_name.to_string();
    let stopping = tokio::spawn(async move {
        if remove && !server_name.is_empty() {
            servers.delete_named(&user, &server_name).await.map(|_| ())
        } else {
            servers.stop_server(&user, &server_name).await;
            Ok(())
        }
    });
    match tokio::time::timeout(SLOW_TIMEOUT, stopping).await {
        Ok(Ok(Err(e))) => Err(ApiError::internal(e)),
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(_) => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

/// Spawn progress as server-sent events in JupyterHub's format (see
/// [`crate::progress::progress_stream`]); needs `read:servers` for the user.
async fn progress(State(app): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult {
    progress_common(&app, &caller, &name, "")
}

async fn progress_named(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, server_name)): Path<(String, String)>,
) -> ApiResult {
    if !server_name.is_empty() && !app.servers.has_named(&name, &server_name) {
        caller.require_server("read:servers", &name, &server_name)?;
        return Err(ApiError::not_found(format!("{name} has no server named {server_name}")));
    }
    progress_common(&app, &caller, &name, &server_name)
}

fn progress_common(app: &AppState, caller: &Caller, name: &str, server_name: &str) -> ApiResult {
    caller.require_server("read:servers", name, server_name)?;
    let url = hub_core::server::server_prefix(name, server_name);
    let rx = app.servers.subscribe(&hub_core::server::server_key(name, server_name));
    let mut closing = app.closing.subscribe();
    let stream = futures_util::StreamExt::take_until(crate::progress::progress_stream(rx, url), async move {
        let _ = closing.wait_for(|c| *c).await;
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activity {
    last_activity: Option<String>,
    #[serde(default)]
    servers: std::collections::BTreeMap<String, ServerActivity>,
}

#[derive(Deserialize)]
struct ServerActivity {
    last_activity: String,
}

async fn user_activity(State(app): State<AppState>, caller: Caller, Path(name): Path<String>, raw: Bytes) -> ApiResult {
    caller.require("users:activity", Some(&name))?;
    let req: Activity = body(&raw)?;
    user_or_404(&app, &name).await?;
    let now = unix_now();
    let mut latest = match &req.last_activity {
        Some(t) => Some(parse_time("last_activity", t)?),
        None => None,
    };
    for (server, a) in &req.servers {
        if !server.is_empty() && !app.servers.has_named(&name, server) {
            return Err(ApiError::not_found(format!("{name} has no server named {server:?}")));
        }
        let t = parse_time(&format!("servers[{server:?}].last_activity"), &a.last_activity)?;
        // Activity from the future is clamped to now, as JupyterHub does.
        app.servers.note_activity(&hub_core::server::server_key(&name, server), t.min(now));
        latest = Some(latest.map_or(t, |l| l.max(t)));
    }
    if let Some(t) = latest {
        app.store.record_activity(&[(name.clone(), t.min(now))]).await?;
    }
    Ok(StatusCode::OK.into_response())
}

// ---- groups --------------------------------------------------------------------------------

fn valid_group_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(ApiError::bad("a group name is 1-255 characters with no '/' or control characters"));
    }
    Ok(())
}

async fn group_or_404(app: &AppState, name: &str) -> Result<GroupRecord, ApiError> {
    app.store
        .list_groups()
        .await?
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| ApiError::not_found(format!("No such group: {name}")))
}

async fn list_groups(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    caller.require("list:groups", None)?;
    let groups = app.store.list_groups().await?;
    let (offset, limit) = page_bounds(&app, &q)?;
    let page = groups.iter().skip(offset).take(limit).map(group_model).collect();
    paginate(&app, &headers, "/hub/api/groups", &q, groups.len(), page)
}

async fn get_group(State(app): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult {
    caller.require("read:groups", None)?;
    Ok(axum::Json(group_model(&group_or_404(&app, &name).await?)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GroupUsers {
    #[serde(default)]
    users: Vec<String>,
}

/// Checks that every name is a hub user (400 naming the unknown ones).
async fn existing_users(app: &AppState, names: &[String]) -> Result<(), ApiError> {
    let mut missing = Vec::new();
    for n in names {
        if app.store.get_user(n).await?.is_none() {
            missing.push(n.as_str());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad(format!("no such users: {}; create them first", missing.join(", "))))
    }
}

async fn create_group(State(app): State<AppState>, caller: Caller, Path(name): Path<String>, raw: Bytes) -> ApiResult {
    caller.require("admin:groups", None)?;
    let req: GroupUsers = body(&raw)?;
    valid_group_name(&name)?;
    existing_users(&app, &req.users).await?;
    if !app.store.create_group(&name, &req.users, unix_now()).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("Group {name} already exists")));
    }
    tracing::info!(group = %name, by = %caller.label(), "group created through the API");
    Ok((StatusCode::CREATED, axum::Json(group_model(&group_or_404(&app, &name).await?))).into_response())
}

async fn delete_group(State(app): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult {
    caller.require("delete:groups", None)?;
    if !app.store.delete_group(&name).await? {
        return Err(ApiError::not_found(format!("No such group: {name}")));
    }
    tracing::info!(group = %name, by = %caller.label(), "group deleted through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn change_group_users(app: AppState, caller: Caller, name: String, raw: Bytes, add: bool) -> ApiResult {
    caller.require("groups", None)?;
    let req: GroupUsers = body(&raw)?;
    if req.users.is_empty() {
        return Err(ApiError::bad("users is empty: list at least one user name"));
    }
    group_or_404(&app, &name).await?;
    if add {
        existing_users(&app, &req.users).await?;
    }
    app.store.change_members(&name, &req.users, add).await?;
    Ok(axum::Json(group_model(&group_or_404(&app, &name).await?)).into_response())
}

async fn add_group_users(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    raw: Bytes,
) -> ApiResult {
    change_group_users(app, caller, name, raw, true).await
}

async fn remove_group_users(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    raw: Bytes,
) -> ApiResult {
    change_group_users(app, caller, name, raw, false).await
}

// ---- services ------------------------------------------------------------------------------

/// A `[[services]]` entry in JupyterHub's service model (`APIHandler.service_model`), with
/// the fields `read:services` may see; a caller with only `read:services:name` gets `kind`,
/// `name` and `admin`. The hub neither launches nor proxies services, so `url`, `prefix` and
/// `command` are empty and `pid` is 0.
fn service_model(s: &hub_auth::service::ServiceToken, full: bool) -> Value {
    let rights = hub_core::scopes::ScopeSet::expand(s.scopes(), None);
    let admin = hub_core::scopes::ADMIN_ROLE.iter().all(|a| rights.allows(a, None));
    if !full {
        return json!({"kind": "service", "name": s.name, "admin": admin});
    }
    json!({"kind": "service", "name": s.name, "admin": admin, "roles": [], "url": "", "prefix": "",
           "command": [], "pid": 0, "info": {}, "display": false})
}

/// `GET /hub/api/services`: `{name: model}` for every configured service (`list:services`).
async fn list_services(State(app): State<AppState>, caller: Caller) -> ApiResult {
    caller.require("list:services", None)?;
    let full = caller.scopes.allows("read:services", None);
    let all: serde_json::Map<String, Value> =
        app.services.iter().map(|s| (s.name.clone(), service_model(s, full))).collect();
    Ok(axum::Json(Value::Object(all)).into_response())
}

/// `GET /hub/api/services/{name}` (`read:services` or `read:services:name`).
async fn get_service(State(app): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult {
    if !caller.scopes.allows("read:services:name", None) {
        caller.require("read:services", None)?;
    }
    let s = app.services.iter().find(|s| s.name == name);
    let s = s.ok_or_else(|| ApiError::not_found(format!("No such service: {name}")))?;
    Ok(axum::Json(service_model(s, caller.scopes.allows("read:services", None))).into_response())
}

// ---- proxy ---------------------------------------------------------------------------------

/// The routing table in configurable-http-proxy's shape: the hub at `/`, each running server
/// at `/user/<name>/` with its target: `http://127.0.0.1:<port>`, or for a server on a Unix
/// socket `http+unix://<percent-encoded path>` (see [`hub_servers::servers::Endpoint::url`]).
async fn proxy_routes(State(app): State<AppState>, caller: Caller) -> ApiResult {
    caller.require("proxy", None)?;
    let mut table = serde_json::Map::new();
    table.insert(
        "/".into(),
        json!({"routespec": "/", "target": match &app.config.hub.bind {
            hub_config::Bind::Tcp(a) => format!("http://{a}"),
            b => b.to_string(),
        }, "data": {"hub": true}}),
    );
    for (key, endpoint) in app.servers.running() {
        let (user, server_name) = hub_core::server::split_server_key(&key);
        let spec = hub_core::server::server_prefix(user, server_name);
        let activity = app.servers.snapshot(&key).last_activity;
        table.insert(
            spec.clone(),
            json!({"routespec": spec, "target": endpoint.url(),
                   "data": {"user": user, "server_name": server_name, "last_activity": iso_opt(Some(activity))}}),
        );
    }
    Ok(axum::Json(Value::Object(table)).into_response())
}
