//! The token page, `/hub/token`, as JupyterHub has it: the signed-in user's API tokens (note,
//! scopes, created, last used, expiry) with a Revoke button each, and a form for a new one
//! (note, expiry, and optionally scopes, offered only as far as the user holds them). A new
//! token is shown once, on the page that answers the form, never in a URL. The work is
//! [`crate::user_tokens`]', as for the REST API; forms post with the session's XSRF token.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::guard::{XsrfForm, form_allowed};
use crate::html::{clock, error_page, esc, page_with_user, xsrf_field};
use crate::state::{AppState, CurrentUser};
use crate::user_tokens::{self, NewToken};
use hub_auth::session::Session;
use hub_core::scopes::{self, ScopeSet};

/// The token page's routes.
pub fn pages() -> Router<AppState> {
    Router::new().route("/hub/token", get(show).post(create)).route("/hub/token/{id}/revoke", post(revoke))
}

/// The expiry choices of the form: (seconds, label); 0 is "never".
const EXPIRIES: &[(i64, &str)] = &[
    (0, "Never"),
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "1 week"),
    (30 * 86_400, "30 days"),
    (365 * 86_400, "1 year"),
];

/// The scopes `me` may put on a token, as they would be written: unfiltered where the user
/// holds the scope for everyone (an admin), `!user=me` where only for themselves.
fn offered_scopes(me: &str, rights: &ScopeSet) -> Vec<(String, &'static str)> {
    scopes::TABLE
        .iter()
        .filter_map(|d| {
            if rights.allows(d.name, None) {
                Some((d.name.to_string(), d.description))
            } else if rights.allows(d.name, Some(me)) {
                Some((format!("{}!user={me}", d.name), d.description))
            } else {
                None
            }
        })
        .collect()
}

async fn rights(app: &AppState, me: &str) -> ScopeSet {
    ScopeSet::for_user(me, app.is_admin(me).await)
}

async fn show(State(app): State<AppState>, CurrentUser(s): CurrentUser) -> Response {
    render(&app, &s, StatusCode::OK, "").await
}

/// The page, with `notice` (HTML, already escaped) above the form.
async fn render(app: &AppState, s: &Session, status: StatusCode, notice: &str) -> Response {
    let me = &s.username;
    let tokens = match app.store.tokens_of(me).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(user = %me, error = %e, "cannot list tokens");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Tokens",
                "Your tokens cannot be read now; try again.",
            );
        }
    };
    let x = xsrf_field(app, s);
    let rows: String = tokens
        .iter()
        .map(|t| {
            format!(
                r#"<tr data-token="a{id}"><td>{note}</td><td><code>{scopes}</code></td><td>{created}</td><td>{used}</td><td>{expires}</td>
<td><form method="post" action="/hub/token/a{id}/revoke">{x}<button class="secondary">Revoke</button></form></td></tr>"#,
                id = t.id,
                note = if t.note.is_empty() { "<em>no note</em>".to_string() } else { esc(&t.note).into_owned() },
                scopes = esc(&t.scopes.join(", ")),
                created = clock(t.created),
                used = t.last_activity.map_or_else(|| "never".to_string(), clock),
                expires = t.expires_at.map_or_else(|| "never".to_string(), clock),
            )
        })
        .collect();
    let table = if tokens.is_empty() {
        r#"<p class="muted" id="no-tokens">You have no API tokens.</p>"#.to_string()
    } else {
        format!(
            r#"<table id="tokens"><thead><tr><th>Note</th><th>Scopes</th><th>Created</th><th>Last used</th><th>Expires</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#
        )
    };
    let expiries: String =
        EXPIRIES.iter().map(|(secs, label)| format!(r#"<option value="{secs}">{label}</option>"#)).collect();
    let scope_boxes: String = offered_scopes(me, &rights(app, me).await)
        .iter()
        .map(|(value, description)| {
            format!(
                r#"<label class="scope"><input type="checkbox" name="scopes" value="{v}"> <code>{v}</code> <span class="muted">{d}</span></label>"#,
                v = esc(value),
                d = esc(description)
            )
        })
        .collect();
    let body = format!(
        r#"<h1>API tokens</h1>{notice}
<section class="card"><h2>New token</h2>
<p>A token lets a script, a scheduler or an editor act as you: call the hub's REST API
(<code>Authorization: token …</code>) or reach your server at <code>/user/{n}/</code> (that needs
<code>access:servers</code>).</p>
<form method="post" action="/hub/token" id="new-token">{x}
<label>Note <input name="note" maxlength="{max_note}" placeholder="what it is for"></label>
<label>Expires <select name="expires_in">{expiries}</select></label>
<details><summary>Limit its scopes (by default it can do everything you can)</summary>{scope_boxes}</details>
<button type="submit">Request new API token</button>
</form></section>
<section class="card"><h2>Your tokens</h2>{table}</section>"#,
        n = esc(me),
        max_note = user_tokens::MAX_NOTE,
    );
    (status, page_with_user(app, "API tokens", &body, s)).into_response()
}

async fn create(State(app): State<AppState>, headers: HeaderMap, CurrentUser(s): CurrentUser, raw: Bytes) -> Response {
    let (mut xsrf, mut new) = (String::new(), NewToken::default());
    let mut bad_expiry = None;
    for (k, v) in url::form_urlencoded::parse(&raw) {
        match &*k {
            "_xsrf" => xsrf = v.into_owned(),
            "note" => new.note = v.trim().to_string(),
            "scopes" => new.scopes.push(v.into_owned()),
            "expires_in" => match v.parse::<i64>() {
                Ok(0) => new.expires_in = None,
                Ok(n) => new.expires_in = Some(n),
                Err(_) => bad_expiry = Some(v.into_owned()),
            },
            _ => {}
        }
    }
    if let Some(refused) = form_allowed(&app, &headers, &s, &xsrf, "a token creation") {
        return refused;
    }
    if let Some(v) = bad_expiry {
        let msg = format!("The expiry {v:?} is not a number of seconds; pick one from the list.");
        return render(
            &app,
            &s,
            StatusCode::BAD_REQUEST,
            &format!(r#"<p class="error" role="alert">{}</p>"#, esc(&msg)),
        )
        .await;
    }
    let me = s.username.clone();
    let owner = match app.store.get_user(&me).await {
        Ok(Some(u)) => u,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "Tokens", "Your account is not in the hub any more."),
        Err(e) => {
            tracing::error!(user = %me, error = %e, "cannot read the user");
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Tokens", "Try again in a moment.");
        }
    };
    let requester = rights(&app, &me).await;
    match user_tokens::issue(&app, &owner, &requester, &me, new).await {
        Ok((_, token)) => {
            let notice = format!(
                r#"<section class="card ok" id="new-token-value"><h2>Your new API token</h2>
<p>Copy it now: it is not shown again.</p><p><code id="token-value">{}</code></p></section>"#,
                esc(&token)
            );
            render(&app, &s, StatusCode::OK, &notice).await
        }
        Err(e) => {
            let notice = format!(r#"<p class="error" role="alert">{}</p>"#, esc(&e.message));
            render(&app, &s, e.status, &notice).await
        }
    }
}

async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<XsrfForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a token revocation") {
        return refused;
    }
    let Some(n) = id.strip_prefix('a').and_then(|n| n.parse::<i64>().ok()) else {
        return error_page(StatusCode::NOT_FOUND, "Tokens", "There is no such token.");
    };
    match user_tokens::revoke(&app, &s.username, n, &s.username).await {
        Ok(true) => Redirect::to("/hub/token").into_response(),
        Ok(false) => error_page(StatusCode::NOT_FOUND, "Tokens", "There is no such token of yours."),
        Err(e) => {
            tracing::error!(user = %s.username, error = %e.message, "cannot revoke a token");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Tokens", "The token could not be revoked; try again.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_offered_only_scopes_on_themselves() {
        let ann = offered_scopes("ann", &ScopeSet::for_user("ann", false));
        let values: Vec<&str> = ann.iter().map(|(v, _)| v.as_str()).collect();
        assert!(values.contains(&"access:servers!user=ann") && values.contains(&"read:users!user=ann"));
        assert!(values.iter().all(|v| v.ends_with("!user=ann")), "{values:?}");
        assert!(!values.iter().any(|v| v.starts_with("admin:")), "{values:?}");
        let admin = offered_scopes("root1", &ScopeSet::for_user("root1", true));
        assert!(admin.iter().any(|(v, _)| v == "admin:users"));
    }
}
