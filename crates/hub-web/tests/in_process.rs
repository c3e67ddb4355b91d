//! In-process tests of the HTTP surface: pages, API scopes, sessions and proxy routing, with
//! plain `cargo test` (no root, no PAM, no KDC, no JupyterLab) in about a second.
//!
//! Two FAKES stand in for the parts that need the real system, and are named as such: the
//! [`FakeAuthenticator`] (a fixed table of passwords instead of PAM or a KDC) and the
//! [`FakeSpawner`] (an in-process HTTP server on the socket the hub asks for, answering like
//! jupyter-server's token check, instead of a JupyterLab process under the user's UID). The
//! store is the real SQLite store in a temporary directory; sessions, scopes, the guard, the
//! router and the proxy are the hub's own. The real-parts end-to-end tests in `tests/e2e`
//! remain the proof that the real PAM, KDC and JupyterLab behave the same.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use hub_auth::{AuthError, Authenticated, Authenticator};
use hub_core::LinuxUser;
use hub_servers::servers::{ServerState, Servers};
use hub_servers::spawner::{ServerProcess, SpawnError, SpawnSpec, Spawner};
use hub_store::Store;
use hub_web::state::{App, AppState};

/// FAKE authenticator: accepts exactly the passwords in its table.
struct FakeAuthenticator(HashMap<&'static str, &'static str>);

#[async_trait]
impl Authenticator for FakeAuthenticator {
    async fn authenticate(&self, username: &str, password: &str) -> Result<Authenticated, AuthError> {
        match self.0.get(username) {
            Some(p) if *p == password => Ok(Authenticated { username: username.to_string(), credentials: None }),
            _ => Err(AuthError::Rejected("FakeAuthenticator: wrong password".into())),
        }
    }
}

/// FAKE spawner: serves HTTP in this process on the Unix socket the hub asks the server to
/// listen on (`--ServerApp.sock=`), refusing any request without `Authorization: token
/// <JUPYTER_TOKEN>` (jupyter-server's token check) and answering others with a JSON echo of
/// what arrived, so the tests see what the proxy forwarded.
struct FakeSpawner;

struct FakeProcess {
    task: tokio::task::JoinHandle<()>,
    exited: tokio::sync::watch::Sender<Option<String>>,
}

#[async_trait]
impl ServerProcess for FakeProcess {
    fn pid(&self) -> u32 {
        std::process::id()
    }
    fn exited(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.exited.subscribe()
    }
    async fn stop(&self, _term_timeout: Duration) -> String {
        self.task.abort();
        self.exited.send_replace(Some("stopped by the hub".into()));
        "stopped by the hub".into()
    }
    fn start_ticks(&self) -> Option<i64> {
        None
    }
}

#[async_trait]
impl Spawner for FakeSpawner {
    async fn start(&self, spec: SpawnSpec) -> Result<Box<dyn ServerProcess>, SpawnError> {
        let sock = spec
            .argv
            .iter()
            .find_map(|a| a.strip_prefix("--ServerApp.sock="))
            .expect("the fake serves Unix-socket servers only")
            .to_string();
        let token = spec.env.iter().find(|(k, _)| k == "JUPYTER_TOKEN").map(|(_, v)| v.clone()).unwrap_or_default();
        let listener = listen_as(&sock, spec.user.uid, spec.user.gid)
            .map_err(|source| SpawnError::Exec { program: "FakeSpawner".into(), source })?;
        let expected = format!("token {token}");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let expected = expected.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let authorized = req
                            .headers()
                            .get(header::AUTHORIZATION)
                            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
                        let echo = serde_json::json!({
                            "method": req.method().as_str(),
                            "path": req.uri().path(),
                            "cookie": req.headers().get(header::COOKIE).and_then(|v| v.to_str().ok()),
                            "forwarded_for": req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
                        });
                        async move {
                            let status = if authorized { StatusCode::OK } else { StatusCode::FORBIDDEN };
                            let mut resp =
                                hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(echo.to_string())));
                            *resp.status_mut() = status;
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Ok(Box::new(FakeProcess { task, exited: tokio::sync::watch::channel(None).0 }))
    }

    async fn adopt(&self, _user: &str, _pid: u32, _uid: u32, _start_ticks: i64) -> Option<Box<dyn ServerProcess>> {
        None
    }
}

/// Binds and listens on `path` as `uid`/`gid`, so the hub's owner check (SO_PEERCRED) sees
/// the server's owner. Without root that is the current user and nothing changes; as root
/// (the hub never accepts a root-owned server) a short-lived thread drops to `uid` with the
/// raw setresuid/setresgid system calls, which change that thread only, listens, and ends.
fn listen_as(path: &str, uid: u32, gid: u32) -> std::io::Result<tokio::net::UnixListener> {
    let path = path.to_string();
    let std_listener = std::thread::spawn(move || {
        if nix::unistd::geteuid().is_root() {
            // SAFETY: plain system calls with integer arguments; they affect only this thread,
            // which does nothing else and ends right after.
            let ok = unsafe {
                libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                    && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
        }
        let l = std::os::unix::net::UnixListener::bind(&path)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .join()
    .map_err(|_| std::io::Error::other("the listening thread panicked"))??;
    tokio::net::UnixListener::from_std(std_listener)
}

/// The UID/GID the fake servers run as: the current user's, or nobody's (65534) as root.
fn server_ids() -> (u32, u32) {
    if nix::unistd::geteuid().is_root() {
        (65534, 65534)
    } else {
        (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    }
}

/// A hub built in-process around the fakes, with its data in a temporary directory.
struct TestHub {
    state: AppState,
    _dir: tempfile::TempDir,
}

const PUBLIC_URL: &str = "http://hub.test";
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)), 40000);

impl TestHub {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = format!(
            "[hub]\ndata_dir = \"{}\"\npublic_url = \"{PUBLIC_URL}\"\n[spawner]\ncmd = [\"fake-server\"]\n[auth]\nmax_failed_logins = 3\nfailure_delay = \"0s\"\n",
            dir.path().display()
        );
        let config = hub_config::Config::parse(std::path::Path::new("hub.toml"), &toml).expect("config");
        let store: Arc<dyn Store> = hub_store::open(&config.hub.database_url, true).await.expect("store");
        store.migrate().await.expect("migrate");
        let sessions = hub_auth::session::Sessions::new(&[7u8; 32], &[], store.clone(), 3600, false);
        let renewer = Arc::new(hub_servers::renewer::Renewer::new(config.kerberos.clone(), Some(store.clone())));
        let servers = Arc::new(Servers::new(config.clone(), Arc::new(FakeSpawner), renewer.clone(), store.clone()));
        // The scheduler is built but not run: these tests start no notebook runs.
        let jobs = hub_jobs::Jobs::new(
            config.clone(),
            store.clone(),
            renewer.clone(),
            Arc::new(FakeSpawner),
            "/nonexistent".into(),
        );
        let metrics = hub_web::metrics::Metrics::new(&servers.spawn_duration, jobs.metrics.collectors());
        let throttle = hub_auth::throttle::Throttle::new(
            config.auth.max_failed_logins,
            config.auth.max_failed_logins_per_address,
            config.auth.failed_login_window,
        );
        let auth = Arc::new(FakeAuthenticator([("ann", "right-password")].into()));
        let state = AppState(Arc::new(App {
            metrics,
            announcements: std::sync::RwLock::new(config.hub.announcement.clone()),
            tokens: Default::default(),
            services: Vec::new(),
            config,
            store,
            sessions,
            auth,
            spnego: None,
            throttle,
            servers,
            renewer,
            jobs,
            closing: tokio::sync::watch::channel(false).0,
            adoption: std::sync::Mutex::new(None),
        }));
        TestHub { state, _dir: dir }
    }

    /// A user in the store with a session; returns the `Cookie` header value.
    async fn session(&self, name: &str, admin: bool) -> String {
        let now = hub_core::unix_now();
        self.state.store.upsert_user(name, false, now).await.expect("user");
        if admin {
            self.state.store.set_admin(name, true).await.expect("admin");
        }
        let (_, set_cookie) = self.state.sessions.create(name, now).await.expect("session");
        set_cookie.split(';').next().expect("cookie pair").to_string()
    }

    /// Starts `name`'s server through the fake spawner (as [`server_ids`], which the proxy's
    /// owner check then expects) and waits until it is running.
    async fn running_server(&self, name: &str) {
        let (uid, gid) = server_ids();
        let user = LinuxUser {
            name: name.into(),
            uid,
            gid,
            groups: vec![gid],
            home: self._dir.path().into(),
            shell: "/bin/sh".into(),
        };
        let mut rx = self.state.servers.subscribe(name);
        self.state.servers.start(user).expect("start");
        let st = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let st = rx.borrow_and_update().clone();
                if matches!(st, ServerState::Running { .. } | ServerState::Failed { .. }) {
                    return st;
                }
                rx.changed().await.expect("state channel");
            }
        })
        .await
        .expect("the fake server starts");
        assert!(matches!(st, ServerState::Running { .. }), "{st:?}");
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut req = req;
        req.extensions_mut().insert(ConnectInfo(PEER));
        let resp = hub_web::router(self.state.clone()).oneshot(req).await.expect("infallible");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn get(uri: &str) -> axum::http::request::Builder {
    Request::get(uri)
}

#[tokio::test]
async fn a_page_without_a_session_redirects_to_the_login_page_and_back() {
    let hub = TestHub::new().await;
    let (status, headers, _) = hub.send(get("/hub/home").body(Body::empty()).expect("a valid request")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/hub/login?next=/hub/home");
}

#[tokio::test]
async fn a_wrong_password_gets_the_uniform_refusal_then_the_throttle() {
    let hub = TestHub::new().await;
    let login = |password: &str| {
        Request::post("/hub/login")
            .header(header::ORIGIN, PUBLIC_URL)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("username=ann&password={password}")))
            .expect("a valid request")
    };
    for _ in 0..3 {
        let (status, _, body) = hub.send(login("wrong")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains(hub_auth::LOGIN_REFUSED), "{body}");
    }
    // max_failed_logins = 3: the fourth attempt is not checked, even with the right password.
    let (status, headers, _) = hub.send(login("right-password")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER), "a 429 always says when to come back");
}

#[tokio::test]
async fn a_login_form_from_another_site_is_refused_before_the_password_is_checked() {
    let hub = TestHub::new().await;
    let req = Request::post("/hub/login")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("username=ann&password=right-password"))
        .expect("a valid request");
    let (status, _, body) = hub.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("cross-origin request refused"), "{body}");
}

#[tokio::test]
async fn api_scopes_follow_the_user_filter() {
    let hub = TestHub::new().await;
    let ann = hub.session("ann", false).await;
    hub.session("bob", false).await;
    let api = |path: &str, cookie: &str| {
        get(path).header(header::COOKIE, cookie).body(Body::empty()).expect("a valid request")
    };
    let (status, _, body) = hub.send(api("/hub/api/users/ann", &ann)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("a JSON body")["name"], "ann");
    // Another user's model: ann cannot even see that bob exists (404, as JupyterHub answers).
    let (status, _, body) = hub.send(api("/hub/api/users/bob", &ann)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("a JSON body")["status"], 404);
    // A plain user may not list users (JupyterHub's `self` has no list:users).
    let (status, _, body) = hub.send(api("/hub/api/users", &ann)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("list:users"), "{body}");
    // An admin sees both.
    let admin = hub.session("root-admin", true).await;
    let (status, _, body) = hub.send(api("/hub/api/users", &admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<_> = serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .expect("a JSON body")
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert!(names.contains(&"ann".into()) && names.contains(&"bob".into()), "{names:?}");
}

#[tokio::test]
async fn a_cookie_authenticated_api_write_needs_origin_and_xsrf() {
    let hub = TestHub::new().await;
    let ann = hub.session("ann", false).await;
    let post = |origin: &str, xsrf: &str| {
        Request::post("/hub/api/users/ann/tokens")
            .header(header::COOKIE, &ann)
            .header(header::ORIGIN, origin)
            .header("x-xsrftoken", xsrf)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .expect("a valid request")
    };
    let (status, _, body) = hub.send(post("https://evil.example", "x")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("cross-origin"), "{body}");
    let (status, _, body) = hub.send(post(PUBLIC_URL, "wrong")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("XSRF"), "{body}");
    let session = hub.state.sessions.from_cookie_header(&ann, hub_core::unix_now()).await.expect("session");
    let xsrf = hub.state.sessions.xsrf_token(&session);
    let (status, _, body) = hub.send(post(PUBLIC_URL, &xsrf)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).expect("a JSON body")["token"].is_string());
}

#[tokio::test]
async fn the_proxy_routes_only_the_owner_to_the_server() {
    let hub = TestHub::new().await;
    let ann = hub.session("ann", false).await;
    let bob = hub.session("bob", false).await;
    hub.running_server("ann").await;
    let to_ann = |cookie: Option<&str>| {
        let mut b = get("/user/ann/api/contents/x.ipynb");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::empty()).expect("a valid request")
    };
    // The owner reaches the server; the hub's own cookie is not forwarded, the token is.
    let (status, _, body) = hub.send(to_ann(Some(&format!("{ann}; theme=dark")))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(echo["path"], "/user/ann/api/contents/x.ipynb");
    assert_eq!(echo["cookie"], "theme=dark", "only the server's own cookies go through");
    assert_eq!(echo["forwarded_for"], PEER.ip().to_string());
    // Another user: 403, nothing forwarded.
    let (status, _, _) = hub.send(to_ann(Some(&bob))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // No session: to the login page and back.
    let (status, headers, _) = hub.send(to_ann(None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[header::LOCATION].to_str().expect("a text header").starts_with("/hub/login?next="));
    // A dot-segment never reaches a route.
    let req = get("/user/ann/%2e%2e/bob/").header(header::COOKIE, &ann).body(Body::empty()).expect("a valid request");
    let (status, _, _) = hub.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

impl TestHub {
    /// A new API token of `user` made with their session `cookie` through the REST API;
    /// returns `(id, token)`.
    async fn token(&self, cookie: &str, user: &str, body: serde_json::Value) -> (String, String) {
        let session = self.state.sessions.from_cookie_header(cookie, hub_core::unix_now()).await.expect("session");
        let req = Request::post(format!("/hub/api/users/{user}/tokens"))
            .header(header::COOKIE, cookie)
            .header(header::ORIGIN, PUBLIC_URL)
            .header("x-xsrftoken", self.state.sessions.xsrf_token(&session))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("a valid request");
        let (status, _, body) = self.send(req).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        (v["id"].as_str().expect("id").into(), v["token"].as_str().expect("token").into())
    }
}

/// JupyterHub's single-user servers accept an API token with `access:servers` for them; so
/// does the proxy: without a cookie, without XSRF or Origin, never forwarding the token
/// (the fake server answers only to its own token), and honouring scope, revocation and
/// expiry at once despite the token cache.
#[tokio::test]
async fn the_proxy_accepts_api_tokens_with_access_servers_for_that_server() {
    let hub = TestHub::new().await;
    let ann = hub.session("ann", false).await;
    let bob = hub.session("bob", false).await;
    hub.running_server("ann").await;
    let (access_id, access) =
        hub.token(&ann, "ann", serde_json::json!({"scopes": ["access:servers!server=ann/"]})).await;
    let (_, read_only) = hub.token(&ann, "ann", serde_json::json!({"scopes": ["read:users!user=ann"]})).await;
    let (_, bobs) = hub.token(&bob, "bob", serde_json::json!({})).await;
    let (_, short) =
        hub.token(&ann, "ann", serde_json::json!({"expires_in": 1, "scopes": ["access:servers!user=ann"]})).await;
    let with = |method: &str, scheme: &str, token: &str| {
        Request::builder()
            .method(method)
            .uri("/user/ann/api/contents/x.ipynb")
            .header(header::AUTHORIZATION, format!("{scheme} {token}"))
            .body(Body::from(if method == "PUT" { "{}" } else { "" }))
            .expect("a valid request")
    };
    for (method, scheme) in [("GET", "token"), ("GET", "Bearer"), ("PUT", "token")] {
        let (status, _, body) = hub.send(with(method, scheme, &access)).await;
        assert_eq!(status, StatusCode::OK, "{method} {scheme}: {body}");
        let echo: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(
            (echo["method"].as_str(), echo["path"].as_str()),
            (Some(method), Some("/user/ann/api/contents/x.ipynb"))
        );
    }
    let (status, _, body) = hub.send(with("GET", "token", &short)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Without the scope, another user's token, a token that is no token: 403 in JSON.
    for (token, why) in [
        (&read_only, "access:servers!server=ann/"),
        (&bobs, "access:servers!server=ann/"),
        (&"f".repeat(48), "invalid"),
    ] {
        let (status, _, body) = hub.send(with("GET", "token", token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert!(v["status"] == 403 && v["message"].as_str().expect("message").contains(why), "{v}");
    }
    // Revoked: refused on the next request, although the answer was cached.
    let req = Request::delete(format!("/hub/api/users/ann/tokens/{access_id}"))
        .header(header::AUTHORIZATION, format!("token {access}"))
        .body(Body::empty())
        .expect("a valid request");
    let (status, _, body) = hub.send(req).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "access:servers alone cannot revoke tokens (or see ann): {body}");
    let session = hub.state.sessions.from_cookie_header(&ann, hub_core::unix_now()).await.expect("session");
    let req = Request::delete(format!("/hub/api/users/ann/tokens/{access_id}"))
        .header(header::COOKIE, &ann)
        .header(header::ORIGIN, PUBLIC_URL)
        .header("x-xsrftoken", hub.state.sessions.xsrf_token(&session))
        .body(Body::empty())
        .expect("a valid request");
    assert_eq!(hub.send(req).await.0, StatusCode::NO_CONTENT);
    assert_eq!(hub.send(with("GET", "token", &access)).await.0, StatusCode::FORBIDDEN, "revoked");
    // Expired: refused although it was cached a moment ago.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(hub.send(with("GET", "token", &short)).await.0, StatusCode::FORBIDDEN, "expired");
}

#[tokio::test]
async fn a_write_through_the_proxy_needs_the_double_submitted_xsrf_cookie() {
    let hub = TestHub::new().await;
    let ann = hub.session("ann", false).await;
    hub.running_server("ann").await;
    let put = |xsrf_header: Option<&str>| {
        let mut b = Request::put("/user/ann/api/contents/x.ipynb")
            .header(header::COOKIE, format!("{ann}; _xsrf=abc"))
            .header(header::ORIGIN, PUBLIC_URL);
        if let Some(x) = xsrf_header {
            b = b.header("x-xsrftoken", x);
        }
        b.body(Body::from("{}")).expect("a valid request")
    };
    let (status, _, body) = hub.send(put(None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("XSRF"), "{body}");
    let (status, _, body) = hub.send(put(Some("abc"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("a JSON body")["method"], "PUT");
}

#[tokio::test]
async fn a_stopped_server_sends_the_browser_to_the_spawn_page() {
    let hub = TestHub::new().await;
    let ann = hub.session("ann", false).await;
    let req = get("/user/ann/lab")
        .header(header::COOKIE, &ann)
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .expect("a valid request");
    let (status, headers, _) = hub.send(req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/hub/spawn?next=/user/ann/lab");
}

/// The token page's refusals: no XSRF token, a scope beyond the owner's, another user's
/// token; nothing is made or revoked by any of them.
#[tokio::test]
async fn the_token_page_refuses_what_it_must() {
    let hub = TestHub::new().await;
    let ann = hub.session("ann", false).await;
    let bob = hub.session("bob", false).await;
    let form = |cookie: &str, body: String| {
        Request::post("/hub/token")
            .header(header::COOKIE, cookie)
            .header(header::ORIGIN, PUBLIC_URL)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("a valid request")
    };
    let ann_session = hub.state.sessions.from_cookie_header(&ann, hub_core::unix_now()).await.expect("session");
    let ann_xsrf = hub.state.sessions.xsrf_token(&ann_session);
    let (status, _, body) = hub.send(form(&ann, "note=x&expires_in=0".into())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no XSRF token: {body}");
    let (status, _, body) =
        hub.send(form(&ann, format!("_xsrf={ann_xsrf}&note=x&expires_in=0&scopes=admin%3Ausers"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("Not assigning requested scope admin:users"), "{body}");
    let (status, _, body) = hub.send(form(&ann, format!("_xsrf={ann_xsrf}&note=x&expires_in=0&scopes=shares"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("not supported"), "{body}");
    let (status, _, body) = hub.send(form(&ann, format!("_xsrf={ann_xsrf}&note=x&expires_in=soon"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(hub.state.store.tokens_of("ann").await.expect("tokens").is_empty(), "nothing was made");
    let (status, _, body) = hub.send(form(&ann, format!("_xsrf={ann_xsrf}&note=mine&expires_in=3600"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"id="token-value""#), "{body}");
    let id = hub.state.store.tokens_of("ann").await.expect("tokens")[0].id;
    // bob cannot revoke ann's token, even with his own valid form.
    let bob_session = hub.state.sessions.from_cookie_header(&bob, hub_core::unix_now()).await.expect("session");
    let req = Request::post(format!("/hub/token/a{id}/revoke"))
        .header(header::COOKIE, &bob)
        .header(header::ORIGIN, PUBLIC_URL)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("_xsrf={}", hub.state.sessions.xsrf_token(&bob_session))))
        .expect("a valid request");
    assert_eq!(hub.send(req).await.0, StatusCode::NOT_FOUND);
    assert_eq!(hub.state.store.tokens_of("ann").await.expect("tokens").len(), 1, "ann's token stays");
}
