//! HTML helpers of the hub's pages: the page frame, the error page, escaping.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use hub_auth::session::Session;

use crate::state::App;

/// `s` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_safe(s)
}

/// 429 Too Many Requests with `Retry-After`, for a refused spawn.
pub fn too_many(refused: &hub_servers::servers::SpawnRefused) -> Response {
    let page =
        error_page(StatusCode::TOO_MANY_REQUESTS, "Please wait", &format!("Your server cannot start yet: {refused}."));
    crate::error::with_retry_after(page, refused.retry_after())
}

/// A plain error page with `status`.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let e = esc;
    let body = format!(r#"<h1>{}</h1><p class="card">{}</p><p><a href="/hub/home">Home</a></p>"#, e(title), e(message));
    (status, page(title, &body)).into_response()
}

/// A hub page for the signed-in `s`: the navigation bar (name, Home, Sign out) above `body`.
pub fn page_with_user(app: &App, title: &str, body: &str, s: &Session) -> Html<String> {
    let nav = format!(
        r#"<nav><span>{}</span> · <a href="/hub/home">Home</a>{}{} · <form method="post" action="/hub/logout" class="inline">{}<button class="link">Sign out</button></form></nav>"#,
        html_escape::encode_safe(&s.username),
        if app.config.jobs.enabled { r#" · <a href="/hub/jobs">Jobs</a>"# } else { "" },
        r#" · <a href="/hub/token">Token</a>"#,
        xsrf_field(app, s)
    );
    page(title, &format!("{nav}{body}"))
}

/// A hub page: `title` (escaped) and `body` (HTML, already escaped by the caller).
pub fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · hub</title><link rel="stylesheet" href="/hub/static/hub.css"></head><body><header><strong>hub</strong></header><main>{body}</main></body></html>"#,
        html_escape::encode_safe(title)
    ))
}

/// The announcement banner for `page` (`[hub] announcement*`), escaped, newlines kept; empty
/// when there is none.
pub fn announcement(app: &App, page: hub_config::AnnouncementPage) -> String {
    use hub_core::Recover;
    let a = app.announcements.read().recover();
    match a.for_page(page) {
        Some(text) => format!(
            r#"<div class="announcement" role="status" id="announcement">{}</div>"#,
            esc(text).replace('\n', "<br>")
        ),
        None => String::new(),
    }
}

/// A time for people: `14:32 UTC` today, `2026-11-21 14:32 UTC` on another day.
pub fn clock(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    let full = humantime::format_rfc3339_seconds(t).to_string(); // 2026-11-21T14:32:05Z
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (date, time) = (&full[..10], &full[11..16]);
    if now.starts_with(date) { format!("{time} UTC") } else { format!("{date} {time} UTC") }
}

/// The hidden XSRF field of a hub form for `session`.
pub fn xsrf_field(app: &App, session: &Session) -> String {
    format!(r#"<input type="hidden" name="_xsrf" value="{}">"#, app.sessions.xsrf_token(session))
}
