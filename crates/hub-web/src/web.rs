//! The hub's own pages and routes: `/hub/login`, `/hub/home`, `/hub/spawn`, `/hub/logout`,
//! `/hub/health`, the spawn progress stream, and the router that puts them together with the
//! proxy.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use serde::Deserialize;

use hub_auth::session::Session;
use hub_auth::{AuthError, LOGIN_REFUSED, normalize_username};
use hub_core::user::LookupError;
use hub_core::{LinuxUser, TicketOwner};
use hub_servers::renewer::Trigger;
use hub_servers::servers::ServerState;

use crate::guard::{self, XsrfForm, XsrfProof, form_allowed};
use crate::html::{announcement, clock, error_page, esc, page, page_with_user, too_many, xsrf_field};
use crate::state::CurrentUser;
use crate::state::{App, AppState};
use hub_config::AnnouncementPage;
use hub_core::{percent_encode, unix_now};

/// Largest hub form body, in bytes (64 KiB; larger ones get 413).
pub const FORM_BODY_LIMIT: usize = 64 * 1024;

/// The hub's own pages under `/hub/` (the router in `crate::router` adds the API, metrics and
/// the proxy).
pub fn pages() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/hub", get(root))
        .route("/hub/", get(root))
        .route("/hub/health", get(health))
        .route("/hub/login", get(login_page).post(login_submit))
        .route("/hub/logout", get(logout_page).post(logout))
        .route("/hub/logout/everywhere", post(logout_everywhere))
        .route("/hub/admin/users/{name}/logout", post(admin_logout_user))
        .route("/hub/home", get(home))
        .route("/hub/home/start", post(home_start))
        .route("/hub/home/stop", post(home_stop))
        .route("/hub/spawn", get(spawn_page).post(spawn_submit))
        .route("/hub/spawn/{user}/{server_name}", get(spawn_named_page))
        .route("/hub/home/servers", post(named_create))
        .route("/hub/home/servers/{server_name}/{action}", post(named_action))
        .route("/hub/static/hub.css", get(static_css))
        .route("/hub/static/spawn.js", get(static_spawn_js))
        .route("/hub/static/admin.js", get(static_admin_js))
        .route("/hub/admin", get(admin_page))
        .route("/hub/admin/logs/{name}", get(admin_log))
}

/// `next` if it is a path on this hub (starts with one `/`, no backslash or control
/// characters), so a login link cannot send the user to another site.
fn safe_next(next: Option<&str>) -> Option<String> {
    let n = next?;
    let ok = n.starts_with('/')
        && !n.starts_with("//")
        && !n.contains('\\')
        && n.len() < 2048
        && !n.chars().any(|c| c.is_control());
    ok.then(|| n.to_string())
}

async fn root(State(app): State<AppState>, headers: HeaderMap) -> Redirect {
    if app.session_of(&headers).await.is_some() { Redirect::to("/hub/home") } else { Redirect::to("/hub/login") }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if app.session_of(&headers).await.is_some() {
        return Redirect::to(next.as_deref().unwrap_or("/hub/home")).into_response();
    }
    if let Some(settings) = &app.spnego {
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Negotiate ").or_else(|| v.strip_prefix("negotiate ")));
        if let Some(token) = offered {
            return spnego_login(&app, settings, token.trim(), next, client_of(&app, peer, &headers)).await;
        }
        // RFC 4559 §4: ask for a token. A browser without a ticket shows this response's body,
        // the password form.
        let mut r = login_form(&app, StatusCode::UNAUTHORIZED, "", next.as_deref().unwrap_or(""), None);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        return r;
    }
    login_form(&app, StatusCode::OK, "", next.as_deref().unwrap_or(""), None)
}

/// The client's address: the peer, or what a trusted proxy says in `X-Forwarded-For`.
fn client_of(app: &AppState, peer: SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
    hub_auth::throttle::client_addr(
        peer.ip(),
        app.config.hub.trusts(peer.ip()),
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        &app.config.hub.trusted_proxies,
    )
}

/// Longest `Authorization: Negotiate` token accepted, in base64 characters (Kerberos tickets
/// with large PACs reach ~12 KB; browsers cap the header near 16 KB).
const MAX_NEGOTIATE_B64: usize = 64 * 1024;

async fn spnego_login(
    app: &AppState,
    settings: &hub_auth::kerberos::KerberosSettings,
    token_b64: &str,
    next: Option<String>,
    client: std::net::IpAddr,
) -> Response {
    use base64::Engine;
    let next_s = next.clone().unwrap_or_default();
    let refuse = |why: String| {
        tracing::info!(method = "spnego", client = %client, reason = %why, "login refused");
        let mut r = login_form(
            app,
            StatusCode::UNAUTHORIZED,
            "",
            &next_s,
            Some("Single sign-on did not work; sign in with your password."),
        );
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        r
    };
    if token_b64.len() > MAX_NEGOTIATE_B64 {
        return refuse(format!("Negotiate token longer than {MAX_NEGOTIATE_B64} bytes"));
    }
    let Ok(token) = base64::engine::general_purpose::STANDARD.decode(token_b64) else {
        return refuse("Negotiate token is not base64".into());
    };
    let keytab = settings.service_keytab.clone();
    let service = settings.service_principal.clone();
    let accepted =
        tokio::task::spawn_blocking(move || hub_auth::kerberos::accept_negotiate(&keytab, &service, &token)).await;
    let (principal, reply, delegated) = match accepted {
        Ok(Ok(hub_auth::kerberos::Negotiated::Done { principal, reply, delegated })) => (principal, reply, delegated),
        Ok(Ok(hub_auth::kerberos::Negotiated::Continue(_))) => {
            return refuse("the SPNEGO exchange needs more than one round trip, which the hub does not support".into());
        }
        Ok(Err(e)) => return refuse(format!("SPNEGO token refused: {e}")),
        Err(e) => return refuse(format!("SPNEGO task failed: {e}")),
    };
    let user = match hub_auth::kerberos::principal_to_username(
        &principal,
        &settings.realm,
        &settings.allowed_realms,
        &settings.principal_map,
    ) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(method = "spnego", principal = %principal, reason = %e, "login refused: principal not admitted");
            return login_form(
                app,
                StatusCode::FORBIDDEN,
                "",
                &next_s,
                Some("Your Kerberos principal may not use this hub; ask an admin."),
            );
        }
    };
    tracing::info!(method = "spnego", principal = %principal, user = %user, delegated = delegated.is_some(), "SPNEGO accepted");
    let mut r = finish_login(app, user, delegated, next, "spnego").await;
    if let Some(reply) = reply
        && r.status().is_redirection()
        && let Ok(v) =
            HeaderValue::from_str(&format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(reply)))
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn login_form(app: &App, status: StatusCode, username: &str, next: &str, error: Option<&str>) -> Response {
    let e = esc;
    let banner = announcement(app, AnnouncementPage::Login);
    let err = error.map(|m| format!(r#"<p class="error" role="alert">{}</p>"#, e(m))).unwrap_or_default();
    let body = format!(
        r#"{banner}<h1>Sign in</h1>{err}
<form method="post" action="/hub/login" class="card">
  <label>User name <input name="username" autocomplete="username" autocapitalize="none" value="{}" required autofocus maxlength="256"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <input type="hidden" name="next" value="{}">
  <button type="submit">Sign in</button>
</form>"#,
        e(username),
        e(next)
    );
    (status, page("Sign in", &body)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// Longest user name or password the login form accepts, in bytes.
const MAX_CREDENTIAL_LEN: usize = 1024;

async fn login_submit(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let started = tokio::time::Instant::now();
    let next = safe_next(Some(&f.next));
    let next_s = next.clone().unwrap_or_default();
    let shown_name: String = f.username.chars().take(64).collect();
    if let Err(refusal) = guard::check(&app, &headers, XsrfProof::OriginOnly, format_args!("a login")) {
        return refusal.page();
    }
    if f.username.trim().is_empty() || f.password.is_empty() {
        return login_form(
            &app,
            StatusCode::BAD_REQUEST,
            &shown_name,
            &next_s,
            Some("Enter your user name and password."),
        );
    }
    let client = client_of(&app, peer, &headers);
    let throttle_key = f.username.trim().to_ascii_lowercase().chars().take(64).collect::<String>();
    // The attempt is counted before the password is checked (and refunded on success), so
    // parallel guesses cannot all slip under the limit while PAM or the KDC answers.
    let reservation = match app.throttle.reserve(&throttle_key, client, std::time::Instant::now()) {
        Ok(r) => r,
        Err(t) => {
            tracing::warn!(user = %throttle_key, client = %client, by = t.by, "login refused: too many failed attempts");
            let form = login_form(
                &app,
                StatusCode::TOO_MANY_REQUESTS,
                &shown_name,
                &next_s,
                Some(&format!("Too many failed sign-ins; try again in {} minute(s).", t.retry_after_secs.div_ceil(60))),
            );
            return crate::error::with_retry_after(form, t.retry_after_secs);
        }
    };
    // Every refusal below takes at least failure_delay and stays counted against the limits
    // (the reservation is dropped unrefunded).
    let fail = |status: StatusCode, message: &str| {
        let r = login_form(&app, status, &shown_name, &next_s, Some(message));
        let until = started + app.config.auth.failure_delay;
        async move {
            tokio::time::sleep_until(until).await;
            r
        }
    };
    let too_long = f.username.len() > MAX_CREDENTIAL_LEN || f.password.len() > MAX_CREDENTIAL_LEN;
    let name = match normalize_username(&f.username) {
        Ok(n) if !too_long => n,
        Ok(_) => {
            tracing::info!(client = %client, reason = "credentials longer than 1024 bytes", "login refused");
            return fail(StatusCode::FORBIDDEN, LOGIN_REFUSED).await;
        }
        Err(e) => {
            tracing::info!(client = %client, reason = %e, "login refused");
            return fail(StatusCode::FORBIDDEN, LOGIN_REFUSED).await;
        }
    };
    let method = match app.config.auth.method {
        hub_config::AuthMethod::Pam => "pam",
        hub_config::AuthMethod::Kerberos => "kerberos",
    };
    let authenticated = match app.auth.authenticate(&name, &f.password).await {
        Ok(a) => a,
        Err(AuthError::Internal(e)) => {
            tracing::error!(user = %name, error = %e, "login failed: authenticator error");
            return fail(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in is not working right now; please tell an admin.")
                .await;
        }
        Err(AuthError::Kerberos { failure, detail }) => {
            use hub_auth::kerberos::KerberosFailure as F;
            let status = match failure {
                F::WrongPassword | F::UnknownPrincipal | F::Locked | F::PasswordExpired => StatusCode::FORBIDDEN,
                F::KdcUnreachable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            match failure {
                F::WrongPassword | F::UnknownPrincipal | F::Locked | F::PasswordExpired => tracing::info!(
                    method, user = %name, client = %client, reason = failure.as_str(), detail = %detail, "login refused"
                ),
                _ => tracing::error!(
                    method, user = %name, client = %client, reason = failure.as_str(), detail = %detail, "login failed"
                ),
            }
            return fail(status, failure.user_message()).await;
        }
        Err(e) => {
            tracing::info!(method, user = %name, client = %client, reason = %e, "login refused");
            return fail(StatusCode::FORBIDDEN, LOGIN_REFUSED).await;
        }
    };
    let r = finish_login(&app, authenticated.username, authenticated.credentials, next, method).await;
    if r.status().is_redirection() {
        reservation.succeeded();
        r
    } else {
        let until = started + app.config.auth.failure_delay;
        tokio::time::sleep_until(until).await;
        r
    }
}

/// After any authenticator said yes: checks the Linux account and the allow-lists, records
/// the user and a session, hands login credentials to the renewer, starts the server and
/// redirects to the spawn page. Refusals render the login form with a message that names the
/// fix.
async fn finish_login(
    app: &AppState,
    user: String,
    credentials: Option<hub_auth::kerberos::LoginCredentials>,
    next: Option<String>,
    method: &str,
) -> Response {
    // A password login is a form post (Origin checked); a SPNEGO login is a GET that a
    // cross-site link can cause, so it never starts a server: the spawn page offers a button.
    let start_server = method != "spnego";
    let next_s = next.clone().unwrap_or_default();
    let refuse = |status: StatusCode, message: &str| login_form(app, status, "", &next_s, Some(message));
    let cfg = app.config.auth.clone();
    let looked_up = tokio::task::spawn_blocking(move || {
        LinuxUser::lookup(&user)
            .map(|u| {
                let access = hub_auth::access::decide(&cfg, &u);
                (u, access)
            })
            .map_err(|e| (user, e))
    })
    .await;
    let (linux, (admin, group_admin)) = match looked_up {
        Ok(Ok((u, _))) if u.uid == 0 => {
            tracing::warn!(method, user = %u.name, "login refused: UID 0 accounts may not use the hub");
            return refuse(StatusCode::FORBIDDEN, "This account may not use the hub (it is a root account).");
        }
        Ok(Ok((u, hub_auth::access::Access::Allowed { admin, group_admin }))) => (u, (admin, group_admin)),
        Ok(Ok((u, hub_auth::access::Access::Denied(why)))) => {
            tracing::warn!(method, user = %u.name, reason = %why, "login refused: not allowed");
            return refuse(StatusCode::FORBIDDEN, "You are not allowed to use this hub; ask an admin to add you.");
        }
        Ok(Err((user, e @ LookupError::NoSuchUser(_)))) => {
            tracing::warn!(method, user = %user, error = %e, "login refused: authenticated but no Linux account");
            return refuse(
                StatusCode::FORBIDDEN,
                "There is no Linux account for this user on the hub's host; ask an admin to create it.",
            );
        }
        Ok(Err((user, e))) => {
            tracing::error!(method, user = %user, error = %e, "login failed: account lookup");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in is not working right now; please tell an admin.",
            );
        }
        Err(e) => {
            tracing::error!(method, error = %e, "login failed: account lookup task");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in is not working right now; please tell an admin.",
            );
        }
    };
    let user = linux.name.clone();
    let now = unix_now();
    let created = async {
        app.store.upsert_user(&user, group_admin, now).await?;
        app.sessions.create(&user, now).await
    }
    .await;
    let set_cookie = match created {
        Ok((_, c)) => c,
        Err(e) => {
            tracing::error!(user = %user, error = %e, "login failed: could not record the session");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in is not working right now; please tell an admin.",
            );
        }
    };
    tracing::info!(method, user = %user, admin, "logged in");
    let owner = TicketOwner::from(&linux);
    match credentials {
        Some(c) if app.renewer.enabled() && !app.renewer.has_keytab(&owner) => {
            // No keytab: the login's own ticket becomes the ccache (before the server starts,
            // so that it starts with it), renewed with kinit -R.
            match app.renewer.install_login_ccache(&owner, move |tmp| c.store(tmp).map_err(Into::into)).await {
                Ok(()) => tracing::info!(user = %user, "the sign-in's ticket is the user's credential cache"),
                Err(e) => tracing::warn!(user = %user, error = %e, "could not keep the login ticket"),
            }
        }
        _ => app.renewer.trigger(owner, Trigger::Login),
    }
    // A hub page as `next` (the admin page, the token page, home): go there without starting
    // a server, as JupyterHub does; anything else goes through the spawn page.
    if let Some(page) = next.as_deref().filter(|n| {
        n.starts_with("/hub/") && !["/hub/spawn", "/hub/login", "/hub/logout"].iter().any(|p| n.starts_with(p))
    }) {
        return ([(header::SET_COOKIE, set_cookie)], Redirect::to(page)).into_response();
    }
    // With a choice of profiles the spawn page asks first (as JupyterHub's options form);
    // otherwise the server starts now, with the one profile the user may use, if any.
    let choice = hub_servers::environment::profiles_for(&app.config, &linux).len() > 1;
    if start_server && !choice {
        match start_options(app, &linux, None) {
            Ok(options) => {
                if let Err(refused) = app.servers.start_server(linux, "", options) {
                    // The spawn page offers to start it again and says why if it is still refused.
                    tracing::info!(user = %user, reason = %refused, "spawn at login refused");
                }
            }
            Err(_) => tracing::info!(user = %user, "no profile for the spawn at login; the spawn page says why"),
        }
    }
    let target = match next {
        Some(n) if !n.starts_with("/hub/login") => format!("/hub/spawn?next={}", percent_encode(&n)),
        _ => "/hub/spawn".to_string(),
    };
    ([(header::SET_COOKIE, set_cookie)], Redirect::to(&target)).into_response()
}

async fn logout_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let Some(s) = app.session_of(&headers).await else {
        return Redirect::to("/hub/login").into_response();
    };
    let body = format!(
        r#"<h1>Sign out</h1><form method="post" action="/hub/logout" class="card">{}<button>Sign out</button></form>"#,
        xsrf_field(&app, &s)
    );
    page_with_user(&app, "Sign out", &body, &s).into_response()
}

async fn logout(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<XsrfForm>) -> Response {
    if let Some(s) = app.session_of(&headers).await {
        if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a logout") {
            return refused;
        }
        if let Err(e) = app.sessions.revoke(&s.id).await {
            tracing::error!(user = %s.username, error = %e, "could not revoke the session");
        }
        tracing::info!(user = %s.username, "logged out");
    }
    ([(header::SET_COOKIE, app.sessions.clear_cookie())], Redirect::to("/hub/login")).into_response()
}

/// `POST /hub/logout/everywhere`: revokes every session of the user (other browsers too).
async fn logout_everywhere(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Form(f): Form<XsrfForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "log out everywhere") {
        return refused;
    }
    match app.sessions.revoke_all(&s.username).await {
        Ok(n) => tracing::info!(user = %s.username, sessions = n, "logged out everywhere"),
        Err(e) => tracing::error!(user = %s.username, error = %e, "could not revoke the sessions"),
    }
    ([(header::SET_COOKIE, app.sessions.clear_cookie())], Redirect::to("/hub/login")).into_response()
}

/// `POST /hub/admin/users/{name}/logout`: an admin revokes every session of `name`.
async fn admin_logout_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path(name): Path<String>,
    Form(f): Form<XsrfForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "an admin logout") {
        return refused;
    }
    if !app.is_admin(&s.username).await {
        tracing::warn!(user = %s.username, target = %name, "refused: not an admin");
        return error_page(StatusCode::FORBIDDEN, "Forbidden", "Only admins can log other users out.");
    }
    match app.sessions.revoke_all(&name).await {
        Ok(n) => {
            tracing::info!(admin = %s.username, user = %name, sessions = n, "admin logged a user out everywhere");
            (StatusCode::OK, Json(serde_json::json!({"user": name, "revoked_sessions": n}))).into_response()
        }
        Err(e) => {
            tracing::error!(user = %name, error = %e, "could not revoke the sessions");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Could not log out", "See the hub's log.")
        }
    }
}

/// Whether the session's user is an admin (`admin_users`, or `admin_groups` at their last
/// login, as recorded in the store).
async fn home(State(app): State<AppState>, CurrentUser(s): CurrentUser) -> Response {
    let e = esc;
    let name = &s.username;
    let x = xsrf_field(&app, &s);
    let choice = profile_choice(&app, name).await;
    let state = app.servers.state(name);
    let server = match &state {
        ServerState::Running { pid, endpoint, .. } => format!(
            r#"<p class="state ok">Your server is running {where_}.</p>
<p><a class="button" href="/user/{n}{url}">Open JupyterLab</a></p>
<form method="post" action="/hub/home/stop">{x}<button class="secondary">Stop my server</button></form>"#,
            n = e(name),
            url = e(&app.config.spawner.default_url),
            where_ = match endpoint {
                hub_core::Endpoint::Tls(r) => format!("on {} (Slurm job {pid})", e(&r.node)),
                _ => format!("(pid {pid})"),
            },
        ),
        ServerState::Starting { message, .. } => format!(
            r#"<p class="state">Your server is starting: {}.</p><p><a class="button" href="/hub/spawn">Show progress</a></p>
<form method="post" action="/hub/home/stop">{x}<button class="secondary">Cancel</button></form>"#,
            e(message)
        ),
        ServerState::Stopping => r#"<p class="state">Your server is stopping.</p>"#.to_string(),
        ServerState::Stopped { message } => format!(
            r#"<p class="state">Your server is not running.{}</p>
<form method="post" action="/hub/home/start">{x}{choice}<button>Start my server</button></form>"#,
            message.as_deref().map(|m| format!(" {}", e(m))).unwrap_or_default()
        ),
        ServerState::Failed { message, log_tail } => format!(
            r#"<p class="state error">Your server failed: {}</p>{}
<form method="post" action="/hub/home/start">{x}{choice}<button>Start my server</button></form>"#,
            e(message),
            log_block(log_tail)
        ),
    };
    let ooms = app.servers.oom_kills(name).await;
    let oom = if ooms > 0 {
        format!(
            r#"<p class="state error" id="oom">Out of memory: {ooms} process(es) of your server were killed for going over its memory limit. A kernel killed this way restarts empty; use less memory, or ask an admin for a higher limit.</p>"#
        )
    } else {
        String::new()
    };
    let ticket = if app.renewer.enabled() { ticket_html(app.renewer.status(name)) } else { String::new() };
    let admin = if app.is_admin(&s.username).await {
        r#"<p><a href="/hub/admin" id="admin-link">Admin: users and servers</a></p>"#
    } else {
        ""
    };
    let named = if app.config.spawner.allow_named_servers { named_section(&app, &s, &choice) } else { String::new() };
    let body = format!(
        r#"{}<h1>Hello, {}</h1><section class="card" id="server" data-state="{}">{server}{oom}</section>{named}<section class="card" id="kerberos">{ticket}</section>{admin}
<form method="post" action="/hub/logout/everywhere" class="muted">{x}<button class="secondary">Sign out everywhere</button> ends every session of yours, in every browser.</form>"#,
        announcement(&app, AnnouncementPage::Home),
        e(name),
        state.name()
    );
    page_with_user(&app, "Home", &body, &s).into_response()
}

async fn home_start(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Form(f): Form<StartForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a server start") {
        return refused;
    }
    match LinuxUser::lookup_async(&s.username).await {
        Ok(u) => match start_options(&app, &u, f.profile.as_deref()).map(|o| app.servers.start_server(u, "", o)) {
            Err(refusal) => *refusal,
            Ok(Ok(())) => Redirect::to("/hub/spawn").into_response(),
            Ok(Err(refused)) => too_many(&refused),
        },
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, "Cannot start", &e.to_string()),
    }
}

async fn home_stop(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Form(f): Form<XsrfForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a server stop") {
        return refused;
    }
    match LinuxUser::lookup_async(&s.username).await {
        Ok(u) => {
            app.servers.stop(&u).await;
            Redirect::to("/hub/home").into_response()
        }
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, "Cannot stop", &e.to_string()),
    }
}

/// The profile choice of a start form for `name`: a `<select name="profile">` of the
/// profiles they may choose (the default one selected) with each one's description, when
/// there is more than one; else nothing (one profile is used without asking).
async fn profile_choice(app: &AppState, name: &str) -> String {
    use hub_servers::environment::{choose_profile, profiles_for};
    if app.config.profiles.len() < 2 {
        return String::new();
    }
    let Ok(user) = LinuxUser::lookup_async(name).await else { return String::new() };
    let mine = profiles_for(&app.config, &user);
    if mine.len() < 2 {
        return String::new();
    }
    let chosen = choose_profile(&app.config, &user, None).ok().flatten().map(|p| p.slug.clone());
    let options: String = mine
        .iter()
        .map(|p| {
            let selected = if Some(&p.slug) == chosen.as_ref() { " selected" } else { "" };
            let label = if p.description.is_empty() {
                esc(&p.display_name).into_owned()
            } else {
                format!("{}: {}", esc(&p.display_name), esc(&p.description))
            };
            format!(r#"<option value="{}"{selected}>{label}</option>"#, esc(&p.slug))
        })
        .collect();
    format!(r#"<label class="profile">Server options <select name="profile">{options}</select></label> "#)
}

/// The `user_options` JSON for starting a server of `user` with the `requested` profile (an
/// empty choice is the default), or the refusal page (400 for an unknown profile, 403 for one
/// the user may not choose); nothing is started on a refusal.
fn start_options(app: &AppState, user: &LinuxUser, requested: Option<&str>) -> Result<String, Box<Response>> {
    use hub_servers::environment::{ProfileRefusal, choose_profile};
    match choose_profile(&app.config, user, requested.filter(|p| !p.is_empty())) {
        Ok(None) => Ok("{}".into()),
        Ok(Some(p)) => Ok(serde_json::json!({"profile": p.slug}).to_string()),
        Err(ProfileRefusal::Unknown(m)) => Err(Box::new(error_page(StatusCode::BAD_REQUEST, "Cannot start", &m))),
        Err(ProfileRefusal::NotAllowed(m)) => Err(Box::new(error_page(StatusCode::FORBIDDEN, "Cannot start", &m))),
    }
}

/// The home page's named servers: each with its state and Open / Start / Stop / Delete, and a
/// form to create one (JupyterHub's home page with `allow_named_servers`).
fn named_section(app: &AppState, s: &Session, choice: &str) -> String {
    let e = esc;
    let me = &s.username;
    let x = xsrf_field(app, s);
    let servers: Vec<_> = app.servers.servers_of(me).into_iter().filter(|(n, _, _)| !n.is_empty()).collect();
    let rows: String = servers
        .iter()
        .map(|(name, snap, _)| {
            let n = e(name);
            let act = |action: &str, label: &str, class: &str| {
                format!(
                    r#"<form method="post" action="/hub/home/servers/{n}/{action}" class="inline">{x}<button class="{class}">{label}</button></form>"#
                )
            };
            let actions = match &snap.state {
                ServerState::Running { .. } => format!(
                    r#"<a class="button" href="/user/{u}/{n}{url}">Open</a> {}"#,
                    act("stop", "Stop", "secondary"),
                    u = e(me),
                    url = e(&app.config.spawner.default_url)
                ),
                ServerState::Starting { .. } => {
                    format!(r#"<a href="/hub/spawn/{u}/{n}">Show progress</a> {}"#, act("stop", "Cancel", "secondary"), u = e(me))
                }
                ServerState::Stopping => String::new(),
                ServerState::Stopped { .. } | ServerState::Failed { .. } => {
                    format!("{} {}", act("start", "Start", ""), act("delete", "Delete", "secondary"))
                }
            };
            let activity = if snap.last_activity > 0 { clock(snap.last_activity) } else { "—".into() };
            format!(
                r#"<tr data-server="{n}" data-state="{st}"><td>{n}</td><td>{st}</td><td>{activity}</td><td>{actions}</td></tr>"#,
                st = snap.state.name()
            )
        })
        .collect();
    let limit = app.config.spawner.named_server_limit_per_user;
    let room = if limit > 0 {
        format!(r#"<p class="muted">{} of {limit} named servers.</p>"#, servers.len())
    } else {
        String::new()
    };
    let table = if servers.is_empty() {
        r#"<p class="muted">You have no named servers.</p>"#.to_string()
    } else {
        format!(
            r#"<table id="named"><thead><tr><th>Name</th><th>State</th><th>Last activity</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#
        )
    };
    format!(
        r#"<section class="card" id="named-servers"><h2>Named servers</h2>{table}{room}
<form method="post" action="/hub/home/servers" id="new-server">{x}<label>Name <input name="server_name" required maxlength="{max}" placeholder="e.g. gpu"></label> {choice}<button>Create and start</button></form></section>"#,
        max = hub_core::server::MAX_SERVER_NAME
    )
}

#[derive(Deserialize, Default)]
struct NamedForm {
    #[serde(default)]
    _xsrf: String,
    #[serde(default)]
    server_name: String,
    #[serde(default)]
    profile: Option<String>,
}

/// A start form: its XSRF token and the chosen profile, if the form offered a choice.
#[derive(Deserialize, Default)]
struct StartForm {
    #[serde(default)]
    _xsrf: String,
    #[serde(default)]
    profile: Option<String>,
}

/// `POST /hub/home/servers`: creates and starts a named server, then follows its progress.
async fn named_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Form(f): Form<NamedForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a named server start") {
        return refused;
    }
    start_named(&app, &s, f.server_name.trim(), f.profile.as_deref()).await
}

async fn start_named(app: &AppState, s: &Session, server_name: &str, profile: Option<&str>) -> Response {
    if server_name.is_empty() {
        return error_page(StatusCode::BAD_REQUEST, "Cannot start", "Give the new server a name.");
    }
    if let Err(why) = app.servers.check_named(&s.username, server_name) {
        return error_page(StatusCode::BAD_REQUEST, "Cannot start", &why);
    }
    let key = hub_core::server::server_key(&s.username, server_name);
    // Starting an existing named server again without a choice keeps its profile.
    let previous: serde_json::Value = serde_json::from_str(&app.servers.options(&key)).unwrap_or_default();
    let profile = profile.or_else(|| previous.get("profile").and_then(|p| p.as_str()));
    match LinuxUser::lookup_async(&s.username).await {
        Ok(u) => match start_options(app, &u, profile).map(|o| app.servers.start_server(u, server_name, o)) {
            Err(refusal) => *refusal,
            Ok(Ok(())) => Redirect::to(&format!("/hub/spawn/{}/{server_name}", s.username)).into_response(),
            Ok(Err(refused)) => too_many(&refused),
        },
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, "Cannot start", &e.to_string()),
    }
}

/// `POST /hub/home/servers/{server_name}/{start|stop|delete}`.
async fn named_action(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path((server_name, action)): Path<(String, String)>,
    Form(f): Form<StartForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a named server action") {
        return refused;
    }
    if !app.servers.has_named(&s.username, &server_name) {
        return error_page(StatusCode::NOT_FOUND, "No such server", "You have no server of that name.");
    }
    if action == "start" {
        return start_named(&app, &s, &server_name, f.profile.as_deref()).await;
    }
    let user = match LinuxUser::lookup_async(&s.username).await {
        Ok(u) => u,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Cannot stop", &e.to_string()),
    };
    match action.as_str() {
        "stop" => app.servers.stop_server(&user, &server_name).await,
        "delete" => {
            if let Err(e) = app.servers.delete_named(&user, &server_name).await {
                tracing::error!(user = %s.username, server = %server_name, error = %e, "cannot delete a named server");
                return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Cannot delete", "Try again in a moment.");
            }
            tracing::info!(user = %s.username, server = %server_name, "named server deleted");
        }
        _ => return error_page(StatusCode::NOT_FOUND, "Not found", "There is no such action."),
    }
    Redirect::to("/hub/home").into_response()
}

/// `GET /hub/spawn/{user}/{server_name}`: a named server's spawn page (JupyterLab's Hub menu
/// sends "Restart Server" here): its progress, the server itself once it runs, or a start
/// button. Only for one's own servers.
async fn spawn_named_page(
    State(app): State<AppState>,
    CurrentUser(s): CurrentUser,
    Path((user, server_name)): Path<(String, String)>,
    Query(q): Query<NextQuery>,
) -> Response {
    if user != s.username {
        return error_page(StatusCode::FORBIDDEN, "Forbidden", "This server belongs to another user.");
    }
    if !app.servers.has_named(&user, &server_name) {
        return error_page(
            StatusCode::NOT_FOUND,
            "No such server",
            "You have no server of that name; create it on the home page.",
        );
    }
    let prefix = hub_core::server::server_prefix(&user, &server_name);
    let target = safe_next(q.next.as_deref())
        .filter(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| format!("{}{}", prefix.trim_end_matches('/'), app.config.spawner.default_url));
    match app.servers.state(&hub_core::server::server_key(&user, &server_name)) {
        ServerState::Running { .. } => Redirect::to(&target).into_response(),
        ServerState::Starting { .. } => progress_page(&app, &s, &target, &server_name),
        _ => {
            let body = format!(
                r#"{banner}<h1>Your server {n} is not running</h1><section class="card"><form method="post" action="/hub/home/servers/{n}/start">{x}<button>Start {n}</button></form></section>"#,
                banner = announcement(&app, AnnouncementPage::Spawn),
                n = esc(&server_name),
                x = xsrf_field(&app, &s),
            );
            page_with_user(&app, "Start your server", &body, &s).into_response()
        }
    }
}

/// `GET /hub/spawn`: the spawn page. It follows a spawn in progress and moves on to the
/// server when it is ready; it never starts a server itself (a cross-site link or image could
/// otherwise start anyone's server and fill `active_server_limit`). A stopped or failed server
/// gets a "Start my server" form that posts to `POST /hub/spawn` with the session's XSRF token.
///
/// The page's script submits that form by itself only when the browser says the navigation
/// did not come from another site (`Sec-Fetch-Site: same-origin` or `none`, W3C Fetch
/// Metadata): after a sign-in, or a bookmark to the user's server, the server starts as in
/// JupyterHub; after a cross-site link (`cross-site`, `same-site`, or no header) the user
/// sees the button.
async fn spawn_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Query(q): Query<NextQuery>,
) -> Response {
    let target = spawn_target(&app, &s.username, q.next.as_deref());
    let own_navigation = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("same-origin") || v.eq_ignore_ascii_case("none"));
    match app.servers.state(&s.username) {
        ServerState::Running { .. } => Redirect::to(&target).into_response(),
        ServerState::Starting { .. } => progress_page(&app, &s, &target, ""),
        ServerState::Stopping | ServerState::Stopped { .. } | ServerState::Failed { .. } => {
            let choice = profile_choice(&app, &s.username).await;
            start_page(&app, &s, &target, own_navigation, &choice)
        }
    }
}

#[derive(Deserialize, Default)]
struct SpawnForm {
    #[serde(default)]
    _xsrf: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    profile: Option<String>,
}

/// `POST /hub/spawn`: starts the user's server (Origin and XSRF checked) and shows the
/// progress page; 429 with `Retry-After` when a spawn limit refuses it.
async fn spawn_submit(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Form(f): Form<SpawnForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a server start") {
        return refused;
    }
    let target = spawn_target(&app, &s.username, f.next.as_deref());
    match LinuxUser::lookup_async(&s.username).await {
        Ok(u) => match start_options(&app, &u, f.profile.as_deref()).map(|o| app.servers.start_server(u, "", o)) {
            Err(refusal) => *refusal,
            Ok(Ok(())) => progress_page(&app, &s, &target, ""),
            Ok(Err(refused)) => too_many(&refused),
        },
        Err(err) => error_page(StatusCode::INTERNAL_SERVER_ERROR, "Cannot start", &err.to_string()),
    }
}

/// Where the spawn page goes once the server is ready: `next` if it is under the user's own
/// route, else the server's `default_url`.
fn spawn_target(app: &AppState, name: &str, next: Option<&str>) -> String {
    safe_next(next)
        .filter(|n| n.starts_with(&format!("/user/{name}/")))
        .unwrap_or_else(|| format!("/user/{name}{}", app.config.spawner.default_url))
}

/// The page with a "Start my server" button (a form posting to `/hub/spawn`), which
/// `spawn.js` submits at once when `autostart`.
fn start_page(app: &AppState, s: &Session, target: &str, autostart: bool, choice: &str) -> Response {
    let e = esc;
    // After a failure the user decides: starting again by itself could loop.
    let (why, autostart) = match app.servers.state(&s.username) {
        ServerState::Failed { message, .. } => {
            (format!(r#"<p class="state error">Your server failed: {}</p>"#, e(&message)), false)
        }
        ServerState::Stopped { message: Some(m) } => (format!(r#"<p class="state">{}</p>"#, e(&m)), autostart),
        _ => (String::new(), autostart),
    };
    // With a choice of profiles, the user chooses: the form is not submitted by itself.
    let autostart = autostart && choice.is_empty();
    let body = format!(
        r#"{banner}<h1>Your server is not running</h1>
<section class="card" id="start" data-autostart="{auto}">{why}
<form method="post" action="/hub/spawn" id="start-form">{x}<input type="hidden" name="next" value="{t}">{choice}<button id="start-button">Start my server</button></form>
</section>
<script src="/hub/static/spawn.js"></script>"#,
        x = xsrf_field(app, s),
        t = e(target),
        auto = autostart,
        banner = announcement(app, AnnouncementPage::Spawn),
    );
    page_with_user(app, "Start your server", &body, s).into_response()
}

/// The page that follows a spawn's progress stream and then opens `target`.
fn progress_page(app: &AppState, s: &Session, target: &str, server_name: &str) -> Response {
    let e = esc;
    let progress_url = if server_name.is_empty() {
        format!("/hub/api/users/{}/server/progress", percent_encode(&s.username))
    } else {
        format!("/hub/api/users/{}/servers/{server_name}/progress", percent_encode(&s.username))
    };
    let body = format!(
        r#"{banner}<h1>Starting your server</h1>
<section class="card" id="spawn" data-progress-url="{p}" data-next="{t}">
<progress id="bar" max="100" value="0"></progress>
<p id="msg" role="status">Waiting for the spawner…</p>
<div id="fail" hidden><p class="error" id="failmsg"></p><pre id="log"></pre><p><a class="button" href="/hub/home">Back to home</a></p></div>
<noscript><p>This page needs JavaScript to follow the progress. <a href="{t}">Open your server</a> once it is ready.</p></noscript>
</section>
<script src="/hub/static/spawn.js"></script>"#,
        t = e(target),
        p = e(&progress_url),
        banner = announcement(app, AnnouncementPage::Spawn),
    );
    page_with_user(app, "Starting", &body, s).into_response()
}

/// The home page's Kerberos section.
fn ticket_html(status: Option<hub_servers::renewer::TicketStatus>) -> String {
    let Some(t) = status else {
        return r#"<p class="state">Kerberos: no ticket requested yet.</p>"#.to_string();
    };
    let now = unix_now();
    let mut out = String::new();
    match t.valid_until {
        Some(end) if end > now => out.push_str(&format!(
            r#"<p class="state ok" id="ticket">Kerberos ticket for {} valid until {}.</p>"#,
            esc(&t.principal),
            clock(end)
        )),
        Some(end) => out.push_str(&format!(
            r#"<p class="state error" id="ticket">Your Kerberos ticket expired at {}. Cluster jobs (Spark, HDFS) will fail until it is renewed.</p>"#,
            clock(end)
        )),
        None => out.push_str(r#"<p class="state" id="ticket">Kerberos: no ticket yet.</p>"#),
    }
    if let Some(err) = &t.last_error {
        out.push_str(&format!(
            r#"<p class="state error">The last renewal failed ({} in a row): {}. {}</p>"#,
            t.consecutive_failures,
            esc(err),
            if err.contains("keytab") {
                "Ask an admin to check your keytab."
            } else {
                "The hub keeps retrying; if this persists, ask an admin to check the KDC."
            }
        ));
    }
    if t.from_login && t.last_error.is_none() {
        match t.renew_until {
            Some(r) => out.push_str(&format!(
                r#"<p class="state" id="lapse">This ticket comes from your sign-in (you have no keytab): the hub renews it until {}. After that, sign in again.</p>"#,
                clock(r)
            )),
            None => out.push_str(
                r#"<p class="state" id="lapse">This ticket comes from your sign-in (you have no keytab) and is not renewable: sign in again when it expires.</p>"#,
            ),
        }
    }
    let mut facts = Vec::new();
    if let Some(s) = t.last_success {
        facts.push(format!("last renewed {}", clock(s)));
    }
    if let Some(n) = t.next_renewal {
        facts.push(format!("next renewal {}", clock(n)));
    }
    if let Some(r) = t.renew_until {
        facts.push(format!("renewable until {}", clock(r)));
    }
    if !facts.is_empty() {
        out.push_str(&format!(r#"<p class="muted">{}; credential cache {}.</p>"#, facts.join(", "), esc(&t.ccache)));
    }
    out
}

fn log_block(tail: &str) -> String {
    if tail.is_empty() {
        return String::new();
    }
    format!(
        "<details open><summary>Last lines of the server log</summary><pre>{}</pre></details>",
        html_escape::encode_safe(tail)
    )
}

/// `GET /hub/admin`: the admin page, for admins only (403 for others). The page is a shell;
/// `admin.js` fills it from the REST API with the admin's session (users a page at a time
/// with `[api] page_default_limit`, searchable; server state and spawn progress; last
/// activity; Kerberos ticket state; start/stop; add and delete users).
async fn admin_page(State(app): State<AppState>, CurrentUser(s): CurrentUser) -> Response {
    if !app.is_admin(&s.username).await {
        tracing::warn!(user = %s.username, "refused the admin page: not an admin");
        return error_page(StatusCode::FORBIDDEN, "Forbidden", "Only admins can open the admin page.");
    }
    let body = format!(
        r#"<h1>Users</h1>
<section class="card wide" id="admin" data-xsrf="{x}" data-me="{me}" data-limit="{limit}">
<form id="search" role="search"><input type="search" id="q" placeholder="Search users by name" aria-label="Search users by name" autocomplete="off"></form>
<p id="status" role="status" class="muted"></p>
<table id="users"><thead><tr><th>User</th><th>Server</th><th>Last activity</th><th>Kerberos ticket</th><th>Actions</th></tr></thead><tbody></tbody></table>
<p id="pager"><button type="button" id="prev" class="secondary">Previous</button> <span id="range"></span> <button type="button" id="next" class="secondary">Next</button></p>
<noscript><p>This page needs JavaScript; the same operations are in the REST API (docs/api.md).</p></noscript>
</section>
<section class="card"><h2>Add users</h2>
<form id="add"><label>User names, separated by spaces or new lines; each needs a Linux account on this machine.<textarea id="names" rows="2"></textarea></label>
<label class="check"><input type="checkbox" id="add-admin"> Make them admins</label><button>Add users</button></form></section>
<script src="/hub/static/admin.js"></script>"#,
        x = esc(&app.sessions.xsrf_token(&s)),
        me = esc(&s.username),
        limit = app.config.api.page_default_limit,
    );
    page_with_user(&app, "Admin", &body, &s).into_response()
}

/// Most of a server log an admin page shows, in bytes (the end of the file).
const ADMIN_LOG_BYTES: u64 = 256 * 1024;

/// `GET /hub/admin/logs/{name}`: the end of a user's server log as text, for admins
/// (`[auth] admin_users`). 403 for others, 404 if there is no log.
async fn admin_log(State(app): State<AppState>, CurrentUser(s): CurrentUser, Path(name): Path<String>) -> Response {
    if !app.is_admin(&s.username).await {
        tracing::warn!(user = %s.username, log_of = %name, "refused: not an admin");
        return error_page(StatusCode::FORBIDDEN, "Forbidden", "Only admins can read server logs.");
    }
    if normalize_username(&name).ok().as_deref() != Some(name.as_str()) {
        return error_page(StatusCode::BAD_REQUEST, "Bad user name", "That is not a valid user name.");
    }
    let path = app.servers.log_path(&name);
    let text = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(ADMIN_LOG_BYTES)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    })
    .await;
    match text {
        Ok(Ok(t)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            error_page(StatusCode::NOT_FOUND, "No log", "This user has no server log.")
        }
        _ => error_page(StatusCode::INTERNAL_SERVER_ERROR, "Cannot read the log", "See the hub's own log."),
    }
}

/// The stylesheet of every hub page, served at `/hub/static/hub.css` (a file, so that the
/// Content-Security-Policy needs no `'unsafe-inline'`).
const CSS: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem}main{max-width:46rem;margin:1.5rem auto;padding:0 1rem}\
nav{margin-bottom:1rem;color:#555}.card{background:#fff;border:1px solid #dde;border-radius:8px;padding:1rem 1.2rem;margin:0 0 1rem}\
form.card label{display:block;margin:.5rem 0}input{display:block;width:100%;box-sizing:border-box;padding:.5rem;font:inherit}\
button,.button{background:#2f6fde;color:#fff;border:0;border-radius:6px;padding:.5rem 1rem;font:inherit;cursor:pointer;text-decoration:none;display:inline-block}\
button.secondary{background:#667}.muted{color:#667;font-size:.9rem}.error{color:#b00020}.ok{color:#17663a}progress{width:100%;height:1.2rem}\
form.inline{display:inline}button.link{background:none;color:#2f6fde;padding:0;text-decoration:underline}\
pre{background:#111;color:#eee;padding:.8rem;overflow:auto;max-height:20rem;font-size:13px}\
main:has(.wide){max-width:72rem}table{width:100%;border-collapse:collapse;font-size:.95rem}\
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e4e6ee;vertical-align:middle}\
td.actions{white-space:nowrap}td.actions button{padding:.25rem .6rem}td.server progress{width:8rem;height:.9rem;margin-right:.4rem}\
button.danger{background:#b00020}button:disabled{opacity:.45;cursor:default}.tag{background:#e8eefc;color:#2f6fde;border-radius:4px;padding:0 .35rem;font-size:.8rem}\
textarea{display:block;width:100%;box-sizing:border-box;font:inherit;padding:.4rem}label.check{display:flex;gap:.4rem;align-items:center}\
label.check input{display:inline;width:auto}#pager{margin:.8rem 0 0}";

/// The spawn page's script, served at `/hub/static/spawn.js`: submits the start form when
/// `#start[data-autostart="true"]`; follows the progress stream (URL in
/// `#spawn[data-progress-url]`), moves the bar, and goes to `data-next` when ready.
const SPAWN_JS: &str = r#"const start = document.getElementById("start");
if (start && start.dataset.autostart === "true") document.getElementById("start-form").submit();
const box = document.getElementById("spawn");
const src = box ? new EventSource(box.dataset.progressUrl) : null;
if (src) src.onmessage = (ev) => {
  const d = JSON.parse(ev.data);
  document.getElementById("bar").value = d.progress;
  document.getElementById("msg").textContent = d.message;
  if (d.ready) { src.close(); window.location.replace(box.dataset.next); }
  if (d.failed) {
    src.close();
    document.getElementById("fail").hidden = false;
    document.getElementById("failmsg").textContent = d.message;
    document.getElementById("log").textContent = d.log_tail || "";
  }
};
"#;

async fn static_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

/// The admin page's script (`web_assets/admin.js`), served at `/hub/static/admin.js`.
const ADMIN_JS: &str = include_str!("web_assets/admin.js");

async fn static_admin_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], ADMIN_JS)
        .into_response()
}

async fn static_spawn_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], SPAWN_JS)
        .into_response()
}

/// The Content-Security-Policy of hub pages: only the hub's own scripts, styles and
/// connections; no framing (clickjacking); forms post only to the hub.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response of the hub's own pages (not to responses
/// proxied from users' servers, which set their own): `Content-Security-Policy` (with
/// `frame-ancestors 'none'`), `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`
/// (for old browsers) and `Referrer-Policy: same-origin`.
pub async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let proxied = req.uri().path().starts_with("/user/");
    let mut r = next.run(req).await;
    if !proxied {
        let h = r.headers_mut();
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_stay_on_the_hub() {
        assert_eq!(safe_next(Some("/user/ann/lab?x=1")).as_deref(), Some("/user/ann/lab?x=1"));
        for bad in ["https://evil.example", "//evil.example/", "/\\evil.example", "/a\nb", "lab"] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
    }
}
