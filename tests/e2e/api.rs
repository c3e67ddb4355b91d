//! The JupyterHub-compatible REST API against a running hub with real users and real
//! jupyter-server: models, status codes, pagination, tokens and scopes, groups, servers,
//! activity, refusals; and `jupyterhub-idle-culler` from PyPI run as an external service.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use hub::servers::ServerState;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{HubOptions, PamService, TestHub, TestUser, client_for, require_root};

/// Sends an API request with `token` (if any) and a JSON body (if any); returns the status and
/// the parsed body (`Null` when empty).
async fn api(hub: &TestHub, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut req = c.request(method, hub.url(path));
    if let Some(t) = token {
        req = req.header("Authorization", format!("token {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("api request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A root-only file holding a fresh service token; returns (path, token).
fn service_token(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let token = hub::api::tokens::generate();
    let path = dir.join(format!("{name}.token"));
    std::fs::write(&path, format!("{token}\n")).expect("token file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (path, token)
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().expect("a list").iter().map(|u| u["name"].as_str().expect("name").to_string()).collect()
}

async fn wait_state(hub: &TestHub, user: &str, want: &str, secs: u64) {
    for _ in 0..secs * 10 {
        if hub.state.servers.state(user).name() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{user}'s server never became {want}: {:?}", hub.state.servers.state(user));
}

/// The world of the REST API tests: a hub with three real users (ann is an admin) and a
/// `dashboard` service with `list:users` and `read:users:activity`. With `signed_in`, ann has
/// an API token made with her session (`ann_token`) and bob and carl are hub users.
struct ApiWorld {
    hub: TestHub,
    ann: TestUser,
    bob: TestUser,
    carl: TestUser,
    svc_token: String,
    ann_token: String,
    _pam: PamService,
    _keys: tempfile::TempDir,
}

impl ApiWorld {
    async fn start() -> Self {
        require_root();
        let pam = PamService::create();
        let (ann, bob, carl) = (TestUser::create(), TestUser::create(), TestUser::create());
        let keys = tempfile::tempdir().expect("tmp");
        let (svc_file, svc_token) = service_token(keys.path(), "dashboard");
        let opts = HubOptions {
            auth: format!("admin_users = [\"{}\"]", ann.name),
            tail: format!(
                "[[services]]\nname = \"dashboard\"\napi_token_file = \"{}\"\nscopes = [\"list:users\", \"read:users:activity\"]\n",
                svc_file.display()
            ),
            ..Default::default()
        };
        let hub = TestHub::start_with(&pam, None, opts).await;
        ApiWorld { hub, ann, bob, carl, svc_token, ann_token: String::new(), _pam: pam, _keys: keys }
    }

    /// [`start`](Self::start), then ann's token and bob and carl as hub users.
    async fn signed_in() -> Self {
        let mut w = Self::start().await;
        let c = client_for(&w.hub.url(""));
        assert_eq!(w.hub.login(&c, &w.ann.name, &w.ann.password).await.status(), 303);
        let home = c.get(w.hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
        let xsrf = crate::support::xsrf_in(&home).expect("xsrf on the home page");
        let r = c
            .post(w.hub.url(&format!("/hub/api/users/{}/tokens", w.ann.name)))
            .header("X-XSRFToken", &xsrf)
            .json(&json!({"note": "runbook", "expires_in": 3600}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 201);
        w.ann_token = r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_string();
        let (s, v) = api(
            &w.hub,
            Method::POST,
            "/hub/api/users",
            Some(&w.ann_token),
            Some(json!({"usernames": [w.bob.name, w.carl.name]})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        w
    }
}

/// Without credentials: the API version and nothing else, in JupyterHub's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_callers_see_only_the_version() {
    let w = ApiWorld::start().await;
    let hub = &w.hub;
    // -- Unauthenticated: the version only.
    let (s, v) = api(hub, Method::GET, "/hub/api/", None, None).await;
    assert_eq!((s, v["version"].as_str()), (200, Some(hub::api::JUPYTERHUB_API_VERSION)));
    let (s, v) = api(hub, Method::GET, "/hub/api/users", None, None).await;
    assert_eq!((s, v["status"].as_u64()), (403, Some(403)), "{v}");
    assert!(v["message"].as_str().expect("message").contains("Authorization: token"), "{v}");
    let (s, _) = api(hub, Method::GET, "/hub/api/users", Some("0123456789abcdef0123"), None).await;
    assert_eq!(s, 403, "an unknown token is refused");
    w.hub.stop().await;
}

/// ann signs in and makes a token with her session: it needs the XSRF token; the token works as `token` and as `Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_makes_tokens_only_with_its_xsrf_token() {
    let w = ApiWorld::start().await;
    let (hub, ann) = (&w.hub, &w.ann);
    // -- ann (admin) signs in and makes a token with her session: needs the XSRF token.
    let c = client_for(&hub.url(""));
    assert_eq!(hub.login(&c, &ann.name, &ann.password).await.status(), 303);
    let home = c.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    let xsrf = crate::support::xsrf_in(&home).expect("xsrf on the home page");
    let path = format!("/hub/api/users/{}/tokens", ann.name);
    let body = json!({"note": "runbook", "expires_in": 3600});
    let r = c.post(hub.url(&path)).header("X-XSRFToken", "wrong").json(&body).send().await.expect("post");
    assert_eq!(r.status(), 403, "a cookie-authenticated POST needs the session's XSRF token");
    let r = c.post(hub.url(&path)).header("X-XSRFToken", &xsrf).json(&body).send().await.expect("post");
    assert_eq!(r.status(), 201);
    let tok: Value = r.json().await.expect("json");
    let ann_token = tok["token"].as_str().expect("token").to_string();
    assert_eq!((tok["scopes"].clone(), tok["note"].as_str()), (json!(["inherit"]), Some("runbook")));
    assert!(tok["id"].as_str().expect("id").starts_with('a') && tok["expires_at"].is_string(), "{tok}");
    // `Bearer` works as well as `token`.
    let r = reqwest::Client::new().get(hub.url("/hub/api/user")).bearer_auth(&ann_token).send().await.expect("bearer");
    let me: Value = r.json().await.expect("json");
    assert_eq!(
        (me["name"].as_str(), me["kind"].as_str(), me["admin"].as_bool()),
        (Some(&*ann.name), Some("user"), Some(true))
    );
    assert!(names(&json!([me.clone()])) == [ann.name.clone()] && me["token_id"] == tok["id"], "{me}");
    assert!(me["scopes"].as_array().expect("scopes").contains(&json!("admin:users")), "{me}");
    w.hub.stop().await;
}

/// Users: created only for Linux accounts, conflicts and bad names refused, and every refusal (even those made before a handler runs) in JupyterHub's JSON shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_for_linux_accounts_only_and_refusals_are_json() {
    let w = ApiWorld::signed_in().await;
    let (hub, bob, carl) = (&w.hub, &w.bob, &w.carl);
    let ann_token = &w.ann_token;
    let t = Some(ann_token.as_str());
    // -- Users: create (Linux accounts only), conflicts, bad names.
    let (s, v) = api(hub, Method::GET, &format!("/hub/api/users/{}", bob.name), t, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["admin"], json!(false));
    assert_eq!(v["servers"], json!({}));
    let (s, v) = api(hub, Method::POST, "/hub/api/users", t, Some(json!({"usernames": [bob.name]}))).await;
    assert_eq!((s, v["message"].as_str()), (409, Some("All 1 users already exist")));
    let (s, v) = api(hub, Method::POST, "/hub/api/users/nosuchlinuxuser42", t, None).await;
    assert_eq!(s, 400);
    assert!(v["message"].as_str().expect("m").contains("no Linux account"), "{v}");
    let (s, _) = api(hub, Method::POST, "/hub/api/users", t, Some(json!({"usernames": ["../etc"]}))).await;
    assert_eq!(s, 400);
    let (s, v) = api(hub, Method::POST, "/hub/api/users", t, Some(json!({"names": []}))).await;
    assert_eq!(s, 400, "unknown fields are refused: {v}");
    let r = reqwest::Client::new()
        .post(hub.url("/hub/api/users"))
        .header("Authorization", format!("token {ann_token}"))
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    // Refusals made before a handler runs are JSON too: a query that does not deserialize
    // (a repeated parameter), a method the route lacks (with Allow kept), a body over the limit.
    let (s, v) = api(hub, Method::GET, "/hub/api/users?limit=1&limit=2", t, None).await;
    assert_eq!((s, v["status"].as_u64()), (400, Some(400)), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("query")), "{v}");
    let r = reqwest::Client::new()
        .put(hub.url("/hub/api/users"))
        .header("Authorization", format!("token {ann_token}"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 405);
    assert!(r.headers().get("allow").is_some(), "Allow is kept");
    let v: Value = r.json().await.expect("a JSON body for 405");
    assert_eq!(v["status"], json!(405), "{v}");
    let r = reqwest::Client::new()
        .post(hub.url("/hub/api/users"))
        .header("Authorization", format!("token {ann_token}"))
        .body(vec![b' '; 3 << 20])
        .send()
        .await
        .expect("big post");
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.expect("a JSON body for 413");
    assert_eq!(v["status"], json!(413), "{v}");
    let (s, v) = api(hub, Method::PATCH, &format!("/hub/api/users/{}", bob.name), t, Some(json!({"name": "x"}))).await;
    assert_eq!(s, 400);
    assert!(v["message"].as_str().expect("m").contains("renaming"));
    let (s, v) =
        api(hub, Method::PATCH, &format!("/hub/api/users/{}", carl.name), t, Some(json!({"admin": true}))).await;
    assert_eq!((s, v["admin"].as_bool(), v["roles"].clone()), (200, Some(true), json!(["admin", "user"])));
    w.hub.stop().await;
}

/// Pagination: a plain list by default, the paged form on request, with an absolute next URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_paginate_with_an_absolute_next_url() {
    let w = ApiWorld::signed_in().await;
    let (hub, ann, bob, carl) = (&w.hub, &w.ann, &w.bob, &w.carl);
    let ann_token = &w.ann_token;
    let t = Some(ann_token.as_str());
    // -- Pagination: plain list by default, the paged form on request, with an absolute next URL.
    let (s, v) = api(hub, Method::GET, "/hub/api/users?limit=2", t, None).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(2)));
    let paged = |url: String| {
        let tok = ann_token.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .header("Authorization", format!("token {tok}"))
                .header("Accept", "application/jupyterhub-pagination+json")
                .send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let p1 = paged(hub.url("/hub/api/users?limit=2&sort=name")).await;
    assert_eq!(p1["_pagination"]["total"], json!(3));
    let next = p1["_pagination"]["next"]["url"].as_str().expect("next url").to_string();
    assert!(next.starts_with(&hub.url("/hub/api/users?")) && next.contains("offset=2"), "{next}");
    let p2 = paged(next).await;
    assert_eq!(p2["_pagination"]["next"], Value::Null);
    let mut all = names(&p1["items"]);
    all.extend(names(&p2["items"]));
    let mut sorted = vec![ann.name.clone(), bob.name.clone(), carl.name.clone()];
    sorted.sort();
    assert_eq!(all, sorted);
    for bad in ["/hub/api/users?limit=abc", "/hub/api/users?state=sleepy", "/hub/api/users?sort=colour"] {
        let (s, v) = api(hub, Method::GET, bad, t, None).await;
        assert_eq!((s, v["status"].as_u64()), (400, Some(400)), "{bad}: {v}");
    }
    let (s, v) = api(hub, Method::GET, "/hub/api/no/such/thing", t, None).await;
    assert_eq!((s, v["status"].as_u64()), (404, Some(404)));
    w.hub.stop().await;
}

/// Tokens for another user never exceed what that user holds; a scoped token sees only its own user; a service token has its configured scopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_exceed_their_owner_and_services_keep_their_scopes() {
    let w = ApiWorld::signed_in().await;
    let (hub, ann, bob, carl) = (&w.hub, &w.ann, &w.bob, &w.carl);
    let t = Some(w.ann_token.as_str());
    // -- Tokens for another user never exceed what that user holds; a scoped token sees only
    //    its own user.
    let bob_tokens = format!("/hub/api/users/{}/tokens", bob.name);
    let (s, v) = api(hub, Method::POST, &bob_tokens, t, Some(json!({"scopes": ["admin:users"]}))).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["message"].as_str().expect("m").contains("not held by the owner"), "{v}");
    let (s, v) = api(hub, Method::POST, &bob_tokens, t, Some(json!({"scopes": ["read:userz"]}))).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().expect("m").contains("unknown scope"), "{v}");
    // A JupyterHub scope the hub does not implement is named as such, not as unknown.
    for unsupported in ["shares", "access:services", "admin:services", "read:servers!group=team"] {
        let (s, v) = api(hub, Method::POST, &bob_tokens, t, Some(json!({"scopes": [unsupported]}))).await;
        let m = v["message"].as_str().expect("m");
        assert!(s == 400 && m.contains("not supported") && !m.contains("unknown"), "{unsupported}: {v}");
    }
    let (s, v) =
        api(hub, Method::POST, &bob_tokens, t, Some(json!({"scopes": [format!("read:users!user={}", bob.name)]})))
            .await;
    assert_eq!(s, 201, "{v}");
    let bob_token = v["token"].as_str().expect("token").to_string();
    let b = Some(bob_token.as_str());
    let (s, v) = api(hub, Method::GET, &format!("/hub/api/users/{}", bob.name), b, None).await;
    assert_eq!((s, v["admin"].as_bool()), (200, Some(false)), "{v}");
    assert!(v.get("servers").is_none(), "read:users does not show servers: {v}");
    let (s, _) = api(hub, Method::GET, &format!("/hub/api/users/{}", ann.name), b, None).await;
    assert_eq!(s, 404, "another user is invisible to bob's token");
    let (s, _) = api(hub, Method::GET, "/hub/api/users", b, None).await;
    assert_eq!(s, 403, "no list:users");
    let (s, _) = api(hub, Method::POST, &format!("/hub/api/users/{}/server", bob.name), b, None).await;
    assert_eq!(s, 403, "read:users does not start servers");
    let (s, _) = api(hub, Method::DELETE, &format!("/hub/api/users/{}", carl.name), b, None).await;
    assert_eq!(s, 404);

    // -- A service token with its configured scopes.
    let sv = Some(w.svc_token.as_str());
    let (s, v) = api(hub, Method::GET, "/hub/api/user", sv, None).await;
    assert_eq!((s, v["kind"].as_str(), v["name"].as_str()), (200, Some("service"), Some("dashboard")));
    let (s, v) = api(hub, Method::GET, "/hub/api/users", sv, None).await;
    assert_eq!(s, 200);
    assert!(v[0].get("last_activity").is_some() && v[0].get("admin").is_none(), "list + activity only: {v}");
    let (s, _) =
        api(hub, Method::PATCH, &format!("/hub/api/users/{}", bob.name), sv, Some(json!({"admin": true}))).await;
    assert_eq!(s, 403);

    // -- GET /hub/api/services in JupyterHub's service model: an admin reads the models, the
    //    dashboard service (no list:services) is refused, bob's token may not see them.
    let (s, v) = api(hub, Method::GET, "/hub/api/services", t, None).await;
    assert_eq!(s, 200, "{v}");
    let d = &v["dashboard"];
    assert_eq!(
        (d["kind"].as_str(), d["name"].as_str(), d["admin"].as_bool()),
        (Some("service"), Some("dashboard"), Some(false)),
        "{v}"
    );
    for field in ["roles", "url", "prefix", "command", "pid", "info", "display"] {
        assert!(d.get(field).is_some(), "{field} in the service model: {v}");
    }
    let (s, v) = api(hub, Method::GET, "/hub/api/services/dashboard", t, None).await;
    assert_eq!((s, v["name"].as_str()), (200, Some("dashboard")), "{v}");
    let (s, v) = api(hub, Method::GET, "/hub/api/services/nosuch", t, None).await;
    assert_eq!((s, v["message"].as_str()), (404, Some("No such service: nosuch")), "{v}");
    assert_eq!(api(hub, Method::GET, "/hub/api/services", sv, None).await.0, 403);
    assert_eq!(api(hub, Method::GET, "/hub/api/services", b, None).await.0, 403);
    w.hub.stop().await;
}

/// Groups: create, conflicts, members added and removed, listed, deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_managed_through_the_api() {
    let w = ApiWorld::signed_in().await;
    let (hub, bob, carl) = (&w.hub, &w.bob, &w.carl);
    let t = Some(w.ann_token.as_str());
    // -- Groups.
    let (s, v) = api(hub, Method::POST, "/hub/api/groups/team", t, Some(json!({"users": [bob.name]}))).await;
    assert_eq!((s, v["users"].clone()), (201, json!([bob.name])));
    let (s, _) = api(hub, Method::POST, "/hub/api/groups/team", t, None).await;
    assert_eq!(s, 409);
    let (s, v) = api(hub, Method::POST, "/hub/api/groups/team/users", t, Some(json!({"users": ["ghost"]}))).await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = api(hub, Method::POST, "/hub/api/groups/team/users", t, Some(json!({"users": [carl.name]}))).await;
    assert_eq!(s, 200);
    let (s, v) = api(hub, Method::DELETE, "/hub/api/groups/team/users", t, Some(json!({"users": [bob.name]}))).await;
    assert_eq!((s, v["users"].clone()), (200, json!([carl.name])));
    let (_, v) = api(hub, Method::GET, &format!("/hub/api/users/{}", carl.name), t, None).await;
    assert_eq!(v["groups"], json!(["team"]));
    let (s, v) = api(hub, Method::GET, "/hub/api/groups", t, None).await;
    assert_eq!((s, names(&v)), (200, vec!["team".to_string()]));
    let (s, _) = api(hub, Method::DELETE, "/hub/api/groups/team", t, None).await;
    assert_eq!(s, 204);
    let (s, _) = api(hub, Method::GET, "/hub/api/groups/team", t, None).await;
    assert_eq!(s, 404);
    w.hub.stop().await;
}

/// A server through the API: start, progress events, the ready filter, the routing table, stop; deleting its user removes its socket directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starts_reports_progress_and_stops_through_the_api() {
    let w = ApiWorld::signed_in().await;
    let (hub, bob, carl) = (&w.hub, &w.bob, &w.carl);
    let ann_token = &w.ann_token;
    let t = Some(ann_token.as_str());
    // -- A server through the API: start, progress events, ready filter, routing table, stop.
    let server = format!("/hub/api/users/{}/server", bob.name);
    let (s, _) = api(hub, Method::POST, &server, t, None).await;
    assert!(s == 201 || s == 202, "start answers 201 or 202, got {s}");
    let r = reqwest::Client::new()
        .get(hub.url(&format!("{server}/progress")))
        .header("Authorization", format!("token {ann_token}"))
        .send()
        .await
        .expect("progress");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = tokio::time::timeout(Duration::from_secs(90), r.text()).await.expect("stream ends").expect("body");
    let last: Value = serde_json::from_str(
        events.lines().filter_map(|l| l.strip_prefix("data:")).next_back().expect("events").trim(),
    )
    .expect("event json");
    assert_eq!((last["ready"].as_bool(), last["url"].as_str()), (Some(true), Some(&*format!("/user/{}/", bob.name))));
    let (_, v) = api(hub, Method::GET, "/hub/api/users?state=ready", t, None).await;
    assert!(names(&v).contains(&bob.name) && !names(&v).contains(&carl.name), "{v}");
    let bob_model = v.as_array().expect("list").iter().find(|u| u["name"] == json!(bob.name)).expect("bob");
    let m = &bob_model["servers"][""];
    assert_eq!(
        (m["ready"].as_bool(), m["pending"].clone(), m["url"].as_str()),
        (Some(true), Value::Null, Some(&*format!("/user/{}/", bob.name)))
    );
    assert!(m["started"].as_str().expect("started").ends_with('Z'), "{m}");
    let (_, v) = api(hub, Method::GET, "/hub/api/users?state=inactive", t, None).await;
    assert!(!names(&v).contains(&bob.name));
    let (s, v) = api(hub, Method::GET, "/hub/api/proxy", t, None).await;
    assert_eq!(s, 200);
    assert!(
        v[format!("/user/{}/", bob.name)]["target"].as_str().expect("route").starts_with("http+unix://%2F")
            && v[format!("/user/{}/", bob.name)]["target"]
                .as_str()
                .expect("route")
                .ends_with(&format!("%2Fsockets%2F{}%2Fserver.sock", bob.name)),
        "a server on its Unix socket: {v}"
    );
    let (s, v) = api(hub, Method::POST, &server, t, None).await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = api(hub, Method::DELETE, &server, t, None).await;
    assert_eq!(s, 204);
    assert_eq!(hub.state.servers.state(&bob.name).name(), "stopped");
    let (s, _) = api(hub, Method::DELETE, &server, t, None).await;
    assert_eq!(s, 400, "stopping a stopped server");

    // Deleting bob removes the socket directory made for his spawn.
    let bob_sockets = hub.state.config.hub.data_dir.join("sockets").join(&bob.name);
    assert!(bob_sockets.is_dir(), "{} is there before the delete", bob_sockets.display());
    let (s, _) = api(hub, Method::DELETE, &format!("/hub/api/users/{}", bob.name), t, None).await;
    assert_eq!(s, 204);
    assert!(!bob_sockets.exists(), "{} is removed with the user", bob_sockets.display());
    w.hub.stop().await;
}

/// Activity reported by a client moves last_activity; tokens list their last use, expire and can be revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_is_reported_and_tokens_expire_and_are_revoked() {
    let w = ApiWorld::signed_in().await;
    let (hub, ann, bob, carl) = (&w.hub, &w.ann, &w.bob, &w.carl);
    let t = Some(w.ann_token.as_str());
    let path = format!("/hub/api/users/{}/tokens", ann.name);
    // -- Activity reported by a client moves last_activity; a bad timestamp is a 400.
    let activity = format!("/hub/api/users/{}/activity", carl.name);
    let (s, _) =
        api(hub, Method::POST, &activity, t, Some(json!({"servers": {"": {"last_activity": "2026-01-02T03:04:05Z"}}})))
            .await;
    assert_eq!(s, 200);
    let (_, v) = api(hub, Method::GET, &format!("/hub/api/users/{}", carl.name), t, None).await;
    assert_eq!(v["last_activity"], json!("2026-01-02T03:04:05Z"));
    let (s, _) = api(hub, Method::POST, &activity, t, Some(json!({"last_activity": "yesterday"}))).await;
    assert_eq!(s, 400);

    let bob_tokens = format!("/hub/api/users/{}/tokens", bob.name);
    let (s, v) =
        api(hub, Method::POST, &bob_tokens, t, Some(json!({"scopes": [format!("read:users!user={}", bob.name)]})))
            .await;
    assert_eq!(s, 201, "{v}");
    let bob_token = v["token"].as_str().expect("token").to_string();
    let b = Some(bob_token.as_str());
    let (s, _) = api(hub, Method::GET, "/hub/api/user", b, None).await;
    assert_eq!(s, 200, "bob's token works before it is revoked");
    // -- Token listing, last use, revocation and expiry.
    let (s, v) = api(hub, Method::GET, &path, t, None).await;
    assert_eq!(s, 200);
    let listed = &v["api_tokens"][0];
    assert!(listed["last_activity"].is_string() && listed.get("token").is_none(), "{v}");
    let (s, v) = api(hub, Method::POST, &bob_tokens, t, Some(json!({"expires_in": 1, "scopes": []}))).await;
    assert_eq!(s, 201, "{v}");
    let short = v["token"].as_str().expect("t").to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, _) = api(hub, Method::GET, "/hub/api/user", Some(&short), None).await;
    assert_eq!(s, 403, "an expired token is refused");
    let bob_id = {
        let (_, v) = api(hub, Method::GET, &bob_tokens, t, None).await;
        v["api_tokens"][0]["id"].as_str().expect("id").to_string()
    };
    let (s, _) = api(hub, Method::DELETE, &format!("{bob_tokens}/{bob_id}"), t, None).await;
    assert_eq!(s, 204);
    let (s, _) = api(hub, Method::GET, "/hub/api/user", b, None).await;
    assert_eq!(s, 403, "a revoked token is refused");
    w.hub.stop().await;
}

/// Deleting a user; the caller cannot delete themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_deleted_but_not_oneself() {
    let w = ApiWorld::signed_in().await;
    let (hub, ann, carl) = (&w.hub, &w.ann, &w.carl);
    let t = Some(w.ann_token.as_str());
    // -- Deleting a user; ann cannot delete herself.
    let (s, _) = api(hub, Method::DELETE, &format!("/hub/api/users/{}", carl.name), t, None).await;
    assert_eq!(s, 204);
    let (s, _) = api(hub, Method::GET, &format!("/hub/api/users/{}", carl.name), t, None).await;
    assert_eq!(s, 404);
    let (s, _) = api(hub, Method::DELETE, &format!("/hub/api/users/{}", ann.name), t, None).await;
    assert_eq!(s, 400);
    w.hub.stop().await;
}

/// `jupyterhub-idle-culler` (PyPI) as an external service with the scopes its README asks for:
/// it lists users through the paginated API and stops a server idle for longer than 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_culler_from_pypi_stops_an_idle_server() {
    require_root();
    let python =
        Path::new(&std::env::var("HUB_TOOLS_VENV").unwrap_or_else(|_| "/opt/hub/tools-venv".into())).join("bin/python");
    assert!(python.exists(), "{} is missing: run `bash scripts/setup.sh`", python.display());
    let pam = PamService::create();
    let ann = TestUser::create();
    let keys = tempfile::tempdir().expect("tmp");
    let (file, token) = service_token(keys.path(), "idle-culler");
    let opts = HubOptions {
        tail: format!(
            "[[services]]\nname = \"idle-culler\"\napi_token_file = \"{}\"\n\
             scopes = [\"list:users\", \"read:users:activity\", \"read:servers\", \"delete:servers\"]\n",
            file.display()
        ),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let c = client_for(&hub.url(""));
    assert_eq!(hub.login(&c, &ann.name, &ann.password).await.status(), 303);
    wait_state(&hub, &ann.name, "running", 90).await;

    let mut culler = tokio::process::Command::new(&python)
        .args(["-m", "jupyterhub_idle_culler", "--timeout=5", "--cull-every=2", "--api-page-size=10"])
        .arg(format!("--url={}", hub.url("/hub/api")))
        .env("JUPYTERHUB_API_TOKEN", &token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the culler");
    let mut culled = false;
    for _ in 0..300 {
        if matches!(hub.state.servers.state(&ann.name), ServerState::Stopped { .. }) {
            culled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = culler.start_kill();
    let out = culler.wait_with_output().await.expect("culler output");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(culled, "the culler did not stop the idle server:\n{log}");
    assert!(log.contains(&format!("Culling server {}", ann.name)), "{log}");
    assert!(
        crate::support::log_line_with(&["server stop requested through the API", &ann.name, "service:idle-culler"]),
        "the hub logs who stopped the server"
    );
    hub.stop().await;
    assert_eq!(ann.processes(), Vec::<u32>::new());
}

/// `/hub/metrics`: guarded by `read:metrics`, JupyterHub's names, renewer metrics aggregated
/// (no series names a user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_prometheus_format() {
    require_root();
    let pam = PamService::create();
    let kdc = crate::support::Kdc::start();
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let keys = tempfile::tempdir().expect("tmp");
    let (prom_file, prom) = service_token(keys.path(), "prometheus");
    let (other_file, other) = service_token(keys.path(), "dashboard");
    let opts = HubOptions {
        tail: format!(
            "[[services]]\nname = \"prometheus\"\napi_token_file = \"{}\"\nscopes = [\"read:metrics\"]\n\
             [[services]]\nname = \"dashboard\"\napi_token_file = \"{}\"\nscopes = [\"list:users\"]\n",
            prom_file.display(),
            other_file.display()
        ),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, Some(&kdc), opts).await;
    let c = client_for(&hub.url(""));
    assert_eq!(hub.login(&c, &ann.name, &ann.password).await.status(), 303);
    wait_state(&hub, &ann.name, "running", 90).await;

    let scrape = |token: Option<String>| {
        let url = hub.url("/hub/metrics");
        async move {
            let mut r = reqwest::Client::new().get(url);
            if let Some(t) = token {
                r = r.header("Authorization", format!("token {t}"));
            }
            let r = r.send().await.expect("scrape");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    assert_eq!(scrape(None).await.0, 403);
    assert_eq!(scrape(Some(other)).await.0, 403, "list:users is not read:metrics");
    let (s, text) = scrape(Some(prom)).await;
    assert_eq!(s, 200);
    for line in [
        "jupyterhub_total_users 1",
        "jupyterhub_running_servers 1",
        "jupyterhub_active_users{period=\"24h\"} 1",
        "jupyterhub_server_spawn_duration_seconds_count{status=\"success\"} 1",
        "jupyterhub_request_duration_seconds_count{code=\"303\",handler=\"/hub/login\",method=\"POST\"} 1",
        "hub_kerberos_tickets{state=\"valid\"} 1",
        "hub_kerberos_renewal_failures_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    let renewals: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hub_kerberos_renewals_total "))
        .and_then(|v| v.parse().ok())
        .expect("renewals counter");
    assert!(renewals >= 1, "{text}");
    let min: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hub_kerberos_ticket_min_seconds_until_expiry "))
        .and_then(|v| v.parse().ok())
        .expect("expiry gauge");
    assert!(min > 0, "{text}");
    assert!(!text.contains(&ann.name), "no series names a user");
    hub.stop().await;
}

/// `hub --log-format json serve` (or `HUB_LOG_FORMAT=json`) writes one JSON object per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_for_log_shippers() {
    require_root();
    let dir = tempfile::tempdir().expect("tmp");
    // Users' servers must be able to pass through to data_dir (hub migrate checks).
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[hub]\nbind = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[spawner]\ncmd = [\"/bin/true\"]\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .expect("migrate");
    assert!(out.status.success());
    let log = dir.path().join("hub.log");
    let hub = crate::support::HubProcess::start_with_env(&config, &log, &[("HUB_LOG_FORMAT", "json")]);
    let r = reqwest::get(format!("http://127.0.0.1:{port}/hub/api/health")).await.expect("health");
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"status": "ok"}));
    drop(hub);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == json!("hub listening") && l["level"] == json!("INFO")),
        "{text}"
    );
}
