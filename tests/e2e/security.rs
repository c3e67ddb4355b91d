//! Tests that try to break in: forged sessions, another user's server, cross-site requests,
//! hostile user names, brute force, request smuggling, oversized requests, allow-lists.
//! Every refusal is checked, and after each group the hub must still answer.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{HubOptions, PamService, TestHub, TestUser, client_for, post_form, require_root};

/// One request per connection on a raw socket; returns everything the hub sent back until it
/// closed the connection (or 5 s passed).
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

async fn assert_alive(hub: &TestHub) {
    let r = reqwest::get(hub.url("/hub/health")).await.expect("health");
    assert_eq!(r.status(), 200, "the hub must keep answering");
}

/// A WebSocket handshake to `path` with the given headers; returns the HTTP status it got.
async fn ws_status(hub: &TestHub, path: &str, headers: &[(&'static str, &str)]) -> u16 {
    let mut req = format!("ws://{}{path}", hub.addr).into_client_request().expect("ws request");
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, resp)) => {
            let _ = ws.close(None).await;
            resp.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected WebSocket error: {e}"),
    }
}

/// A client that does not follow redirects (to see the hub's 303s).
fn plain() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The world of the attack tests: two signed-in users, A and B, whose servers are a stand-in
/// that never becomes ready, so every check here happens before the proxy would forward
/// anything.
struct AttackWorld {
    hub: TestHub,
    a: TestUser,
    b: TestUser,
    base: String,
    ca: reqwest::Client,
    cb: reqwest::Client,
    cookie_a: String,
    _pam: PamService,
}

impl AttackWorld {
    async fn start() -> Self {
        require_root();
        let pam = PamService::create();
        let (a, b) = (TestUser::create(), TestUser::create());
        let opts = HubOptions { cmd: Some(r#"["/bin/sleep", "600"]"#.into()), ..Default::default() };
        let hub = TestHub::start_with(&pam, None, opts).await;
        let base = hub.url("");
        let ca = client_for(&base);
        let cookie_a = hub.login_cookie(&ca, &a).await;
        let cb = client_for(&base);
        hub.login_cookie(&cb, &b).await;
        AttackWorld { hub, a, b, base, ca, cb, cookie_a, _pam: pam }
    }
}

/// Hub pages carry a strict Content-Security-Policy and the other security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_on_hub_pages() {
    let w = AttackWorld::start().await;
    let hub = &w.hub;
    // -- Security headers on hub pages.
    let r = reqwest::get(hub.url("/hub/login")).await.expect("login page");
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    w.hub.stop().await;
}

/// Forged, altered, expired, unsigned and foreign-key session tokens, and a real session id under another name, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_altered_and_foreign_session_tokens_are_refused() {
    let w = AttackWorld::start().await;
    let (hub, a, b, cookie_a) = (&w.hub, &w.a, &w.b, w.cookie_a.clone());
    // -- Forged, altered, expired, unsigned and foreign-key session tokens.
    let token_a = cookie_a.split_once('=').expect("pair").1.to_string();
    let key = std::fs::read(hub.data_dir.path().join("jwt.key")).expect("key");
    let sid = {
        let payload = token_a.split('.').nth(1).expect("payload");
        let json = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).expect("b64");
        serde_json::from_slice::<serde_json::Value>(&json).expect("claims")["sid"].as_str().expect("sid").to_string()
    };
    let sign = |claims: serde_json::Value, key: &[u8]| {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(key))
            .expect("sign")
    };
    let now = hub::unix_now();
    let b64 = |v: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v);
    let mut parts: Vec<String> = token_a.split('.').map(str::to_string).collect();
    parts[1] = b64(format!(r#"{{"sub":"{}","sid":"{sid}","iat":{now},"exp":{}}}"#, b.name, now + 3600).as_bytes());
    let forged = [
        ("altered payload", parts.join(".")),
        ("alg none", format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), token_a.split('.').nth(1).expect("p"))),
        (
            "foreign key",
            sign(
                serde_json::json!({"sub": a.name, "sid": sid, "iat": now, "exp": now + 3600}),
                b"k".repeat(64).as_slice(),
            ),
        ),
        (
            "expired",
            sign(
                serde_json::json!({"sub": a.name, "sid": sid, "iat": now - 7200, "exp": now - 3600}),
                key.trim_ascii(),
            ),
        ),
        (
            "unknown sid",
            sign(serde_json::json!({"sub": a.name, "sid": "00", "iat": now, "exp": now + 3600}), key.trim_ascii()),
        ),
        ("garbage", "x.y.z".to_string()),
    ];
    for (what, token) in &forged {
        for path in ["/hub/home".to_string(), format!("/user/{}/api/status", a.name)] {
            let r =
                plain().get(hub.url(&path)).header("cookie", format!("hub-session={token}")).send().await.expect("req");
            assert_eq!(r.status(), 303, "{what} token on {path} must be refused (redirect to login)");
            assert!(r.headers()["location"].to_str().expect("loc").starts_with("/hub/login"), "{what}");
        }
    }
    // The real key, the real sid, but another user's name: refused (sub must match the row).
    let swapped = sign(serde_json::json!({"sub": b.name, "sid": sid, "iat": now, "exp": now + 3600}), key.trim_ascii());
    let r =
        plain().get(hub.url("/hub/home")).header("cookie", format!("hub-session={swapped}")).send().await.expect("r");
    assert_eq!(r.status(), 303, "a session id under another user's name");
    assert_alive(hub).await;
    w.hub.stop().await;
}

/// A's cookie on B's server: HTTP and WebSocket get 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_cookie_does_not_open_another_users_server() {
    let w = AttackWorld::start().await;
    let (hub, b, base, ca, cookie_a) = (&w.hub, &w.b, w.base.clone(), &w.ca, w.cookie_a.clone());
    // -- A's cookie on B's server: HTTP and WebSocket.
    for path in ["/", "/api/status", "/api/contents"] {
        let r = ca.get(hub.url(&format!("/user/{}{path}", b.name))).send().await.expect("cross-user");
        assert_eq!(r.status(), 403, "A on B's {path}");
    }
    let r = ca.post(hub.url(&format!("/user/{}/api/kernels", b.name))).send().await.expect("cross-user post");
    assert_eq!(r.status(), 403);
    let ws_path = format!("/user/{}/api/kernels/k/channels", b.name);
    assert_eq!(ws_status(hub, &ws_path, &[("cookie", &cookie_a), ("origin", &base)]).await, 403, "A's WebSocket to B");
    w.hub.stop().await;
}

/// Cross-origin and origin-less WebSockets and writes to A's own server, and same-origin writes without the XSRF double-submit, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_to_ones_own_server_are_refused() {
    let w = AttackWorld::start().await;
    let (hub, a, base, cookie_a) = (&w.hub, &w.a, w.base.clone(), w.cookie_a.clone());
    // -- Cross-origin and origin-less WebSockets and POSTs to A's own server.
    let own_ws = format!("/user/{}/api/kernels/k/channels", a.name);
    assert_eq!(ws_status(hub, &own_ws, &[("cookie", &cookie_a), ("origin", "http://evil.example")]).await, 403);
    assert_eq!(ws_status(hub, &own_ws, &[("cookie", &cookie_a)]).await, 403, "no Origin");
    let evil = |m: reqwest::Method, origin: Option<&str>| {
        let mut r = plain()
            .request(m, hub.url(&format!("/user/{}/api/contents/x.ipynb", a.name)))
            .header("cookie", format!("{cookie_a}; _xsrf=t"))
            .header("x-xsrftoken", "t");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r
    };
    for (m, origin) in [
        (reqwest::Method::PUT, Some("http://evil.example")),
        (reqwest::Method::POST, Some("null")),
        (reqwest::Method::DELETE, None),
    ] {
        let r = evil(m.clone(), origin).send().await.expect("cross-site");
        assert_eq!(r.status(), 403, "{m} from {origin:?}");
    }
    assert!(crate::support::log_line_with(&["not one of [hub] public_urls", &a.name]), "the refusal names the list");
    // -- Same origin but no XSRF double-submit.
    let r = plain()
        .put(hub.url(&format!("/user/{}/api/contents/x.ipynb", a.name)))
        .header("cookie", &cookie_a)
        .header("origin", &base)
        .send()
        .await
        .expect("no xsrf");
    assert_eq!(r.status(), 403, "PUT without X-XSRFToken");
    assert!(r.text().await.expect("body").contains("XSRF"));
    let r = plain()
        .put(hub.url(&format!("/user/{}/api/contents/x.ipynb", a.name)))
        .header("cookie", format!("{cookie_a}; _xsrf=right"))
        .header("x-xsrftoken", "wrong")
        .header("origin", &base)
        .send()
        .await
        .expect("wrong xsrf");
    assert_eq!(r.status(), 403, "PUT with a mismatched X-XSRFToken");
    w.hub.stop().await;
}

/// Hub forms: no token, a wrong token, another origin, another session's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_forms_need_the_sessions_token_and_origin() {
    let w = AttackWorld::start().await;
    let (hub, ca, cb, cookie_a) = (&w.hub, &w.ca, &w.cb, w.cookie_a.clone());
    // -- Hub forms: no token, a wrong token, another origin.
    let r = ca.post(hub.url("/hub/home/stop")).form(&[("_xsrf", "")]).send().await.expect("no token");
    assert_eq!(r.status(), 403);
    let r = ca.post(hub.url("/hub/home/stop")).form(&[("_xsrf", "0".repeat(64))]).send().await.expect("bad token");
    assert_eq!(r.status(), 403);
    let home = ca.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    let token = crate::support::xsrf_in(&home).expect("token on the home page");
    let r = plain()
        .post(hub.url("/hub/home/stop"))
        .header("cookie", &cookie_a)
        .header("origin", "http://evil.example")
        .form(&[("_xsrf", token.as_str())])
        .send()
        .await
        .expect("cross-site form");
    assert_eq!(r.status(), 403, "right token, wrong origin");
    let r =
        cb.post(hub.url("/hub/home/stop")).form(&[("_xsrf", token.as_str())]).send().await.expect("b with a's token");
    assert_eq!(r.status(), 403, "A's token does not work in B's session");
    assert_alive(hub).await;
    w.hub.stop().await;
}

/// Request smuggling attempts: both framings, and conflicting lengths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_is_refused() {
    let w = AttackWorld::start().await;
    let (hub, a, b, cookie_a) = (&w.hub, &w.a, &w.b, w.cookie_a.clone());
    // -- Request smuggling attempts: both framings, and conflicting lengths.
    let path = format!("/user/{}/api/contents", a.name);
    let attempts = [
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nCookie: {cookie_a}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hub/admin/logs/{} HTTP/1.1\r\nHost: x\r\n\r\n",
            b.name
        ),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    ];
    for req in &attempts {
        let out = raw(hub.addr, req.as_bytes());
        let status = out.split(' ').nth(1).unwrap_or("none");
        assert!(
            status.starts_with('4') || out.is_empty(),
            "a smuggling attempt must be refused, got {status:?} for {req:?}:\n{out}"
        );
        assert!(out.matches("HTTP/1.1 ").count() <= 1, "no second (smuggled) response: {out}");
    }
    assert_alive(hub).await;
    w.hub.stop().await;
}

/// Size limits: a huge header, a huge login body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused() {
    let w = AttackWorld::start().await;
    let (hub, a, ca) = (&w.hub, &w.a, &w.ca);
    // -- Size limits: a huge header, a huge login body.
    let big_header = format!("GET /hub/login HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1024 * 1024));
    let out = raw(hub.addr, big_header.as_bytes());
    let status = out.split(' ').nth(1).unwrap_or("closed");
    assert!(status == "431" || out.is_empty(), "a 1 MiB header is refused, got {status}");
    let r = ca
        .post(hub.url("/hub/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username={}&password={}", a.name, "p".repeat(3 << 20)))
        .send()
        .await
        .expect("big body");
    assert_eq!(r.status(), 413, "a 3 MiB login body");
    assert_alive(hub).await;
    w.hub.stop().await;
}

/// Log out everywhere: a second session of A ends too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_ends_every_session() {
    let w = AttackWorld::start().await;
    let (hub, a, base, ca, cookie_a) = (&w.hub, &w.a, w.base.clone(), &w.ca, w.cookie_a.clone());
    // -- Log out everywhere: a second session of A ends too.
    let ca2 = client_for(&base);
    let cookie_a2 = hub.login_cookie(&ca2, a).await;
    let r = post_form(&base, ca, "/hub/logout/everywhere").await;
    assert_eq!(r.status(), 303);
    for c in [&cookie_a, &cookie_a2] {
        let r = plain().get(hub.url("/hub/home")).header("cookie", c).send().await.expect("after");
        assert_eq!(r.status(), 303, "every session of A is revoked");
    }
    w.hub.stop().await;
}

/// User names that try to escape, brute force per name and per address, and the same answer
/// and the same minimum time for a wrong password and an unknown user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refusals_are_uniform_and_rate_limited() {
    require_root();
    let pam = PamService::create();
    let (a, b) = (TestUser::create(), TestUser::create());
    let opts = HubOptions {
        cmd: Some(r#"["/bin/sleep", "600"]"#.into()),
        hub: "trusted_proxies = [\"127.0.0.1\"]".into(),
        auth: "failure_delay = \"400ms\"\nmax_failed_logins = 3\nmax_failed_logins_per_address = 5\nfailed_login_window = \"10m\"".into(),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let c = hub.client();
    // Each attempt comes "through the proxy" from its own address unless stated.
    let attempt = |user: String, password: String, from: String| {
        let c = c.clone();
        let url = hub.url("/hub/login");
        async move {
            let t = Instant::now();
            let r = c
                .post(url)
                .header("x-forwarded-for", from)
                .form(&[("username", user.as_str()), ("password", password.as_str()), ("next", "")])
                .send()
                .await
                .expect("login");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"), t.elapsed())
        }
    };
    let message =
        |body: &str| body.split(r#"role="alert">"#).nth(1).and_then(|r| r.split('<').next()).map(str::to_string);

    // -- Hostile names: refused with the same message as a wrong password, and in no less time.
    let (wrong_status, wrong_body, wrong_t) = attempt(a.name.clone(), "nope".into(), "192.0.2.1".into()).await;
    assert_eq!(wrong_status, 403);
    let (_, unknown_body, unknown_t) = attempt("nosuchuser42".into(), "nope".into(), "192.0.2.2".into()).await;
    assert_eq!(message(&wrong_body), message(&unknown_body), "wrong password and unknown user read the same");
    assert!(
        wrong_t >= Duration::from_millis(400) && unknown_t >= Duration::from_millis(400),
        "{wrong_t:?} {unknown_t:?}"
    );
    for (i, name) in ["../../etc", "root", "a\nb", &"x".repeat(10_000), "ann/../../root", "%2e%2e"].iter().enumerate() {
        let (status, body, t) = attempt(name.to_string(), "pw".into(), format!("192.0.2.{}", 10 + i)).await;
        assert_eq!(status, 403, "{name:?}");
        assert_eq!(message(&body), message(&wrong_body), "{name:?} gets the same answer");
        assert!(t >= Duration::from_millis(400), "{name:?} answered in {t:?}");
    }
    assert!(!std::path::Path::new("/etc/hub-test-escape").exists());

    // -- Per user name: 3 failures from 3 addresses, then even the right password waits.
    for i in 0..2 {
        attempt(b.name.clone(), "wrong".into(), format!("198.51.100.{i}")).await;
    }
    let (s, _, _) = attempt(b.name.clone(), "wrong".into(), "198.51.100.2".into()).await;
    assert_eq!(s, 403);
    let r = c
        .post(hub.url("/hub/login"))
        .header("x-forwarded-for", "198.51.100.3")
        .form(&[("username", b.name.as_str()), ("password", b.password.as_str()), ("next", "")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 429, "b is rate-limited by name");
    let retry: u64 = r.headers()["retry-after"].to_str().expect("ascii").parse().expect("secs");
    assert!(retry > 0 && retry <= 600, "{retry}");
    assert!(crate::support::log_line_with(&["too many failed attempts", &b.name, "user name"]));
    // A is not affected by b's lock.
    let (s, _, _) = attempt(a.name.clone(), a.password.clone(), "198.51.100.4".into()).await;
    assert_eq!(s, 303, "a logs in");

    // -- Per address: 5 failures with different names from one address, then a is refused there.
    for i in 0..5 {
        attempt(format!("guess{i}"), "x".into(), "203.0.113.7".into()).await;
    }
    let (s, _, _) = attempt(a.name.clone(), a.password.clone(), "203.0.113.7".into()).await;
    assert_eq!(s, 429, "the address is rate-limited");
    let (s, _, _) = attempt(a.name.clone(), a.password.clone(), "203.0.113.8".into()).await;
    assert_eq!(s, 303, "another address is not");
    let logs = crate::support::logs();
    assert!(!logs.contains(&a.password) && !logs.contains(&b.password), "passwords are never logged");
    hub.stop().await;
}

/// `allowed_users` / `allowed_groups` / `admin_groups`, with real groups from /etc/group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_lists_and_admin_groups() {
    require_root();
    let pam = PamService::create();
    let (a, b, c) = (TestUser::create(), TestUser::create(), TestUser::create());
    let opts = HubOptions {
        cmd: Some(r#"["/bin/sleep", "600"]"#.into()),
        auth: format!(
            "allowed_groups = [\"{}\"]\nallowed_users = [\"{}\"]\nadmin_groups = [\"{}\"]",
            a.group, c.name, a.group
        ),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let base = hub.url("");
    let (ca, cb, cc) = (client_for(&base), client_for(&base), client_for(&base));
    assert_eq!(hub.login(&ca, &a.name, &a.password).await.status(), 303, "a is in an allowed group");
    assert_eq!(hub.login(&cc, &c.name, &c.password).await.status(), 303, "c is an allowed user");
    let r = hub.login(&cb, &b.name, &b.password).await;
    assert_eq!(r.status(), 403, "b is in neither list");
    assert!(r.text().await.expect("body").contains("not allowed to use this hub"));
    assert!(crate::support::log_line_with(&["login refused: not allowed", &b.name]));
    // a is an admin through admin_groups; c is not.
    let r = ca.get(hub.url(&format!("/hub/admin/logs/{}", c.name))).send().await.expect("admin");
    assert_ne!(r.status(), 403, "a (admin group) may read logs");
    let r = cc.get(hub.url(&format!("/hub/admin/logs/{}", a.name))).send().await.expect("not admin");
    assert_eq!(r.status(), 403);
    // An admin logs c out everywhere.
    let home = ca.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    let token = crate::support::xsrf_in(&home).expect("token");
    let r = ca
        .post(hub.url(&format!("/hub/admin/users/{}/logout", c.name)))
        .form(&[("_xsrf", token.as_str())])
        .send()
        .await
        .expect("admin logout");
    assert_eq!(r.status(), 200);
    let r = cc.get(hub.url("/hub/home")).send().await.expect("c after");
    assert_eq!(r.status(), 303, "c's session is gone");
    let home_c = cc.get(hub.url("/hub/login")).send().await.expect("c");
    assert_eq!(home_c.status(), 200);
    let r = cc.post(hub.url(&format!("/hub/admin/users/{}/logout", a.name))).form(&[("_xsrf", "x")]).send().await;
    assert_eq!(r.expect("non-admin").status(), 303, "no session: sent to log in");
    hub.stop().await;
}

/// Slow clients (slowloris): a connection that trickles its request head, sends nothing, or
/// sits idle after a response is closed once `hub.header_read_timeout` passes, while a
/// response that takes longer than that (the spawn progress stream) is not cut, and other
/// clients keep being answered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_at_header_read_timeout() {
    require_root();
    let pam = PamService::create();
    let a = TestUser::create();
    // A server that never becomes ready, so the progress stream stays open (sh ignores the
    // arguments the hub appends).
    let opts = HubOptions {
        cmd: Some(r#"["/bin/sh", "-c", "sleep 600"]"#.into()),
        hub: "header_read_timeout = \"2s\"".into(),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let addr = hub.addr;

    /// How long until the hub closed `s` (it must, within 30 s), and what it sent first.
    fn until_closed(mut s: std::net::TcpStream, trickle: &[u8]) -> (Duration, String) {
        let t0 = Instant::now();
        s.set_read_timeout(Some(Duration::from_millis(250))).expect("timeout");
        let mut got = Vec::new();
        let mut to_send = trickle.iter();
        loop {
            assert!(t0.elapsed() < Duration::from_secs(30), "the hub kept a slow connection open for 30 s");
            // One byte per 250 ms: never a complete head, but never silent either.
            if let Some(b) = to_send.next()
                && s.write_all(&[*b]).is_err()
            {
                return (t0.elapsed(), String::from_utf8_lossy(&got).into_owned());
            }
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => return (t0.elapsed(), String::from_utf8_lossy(&got).into_owned()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return (t0.elapsed(), String::from_utf8_lossy(&got).into_owned()),
            }
        }
    }
    let connect = move || std::net::TcpStream::connect(addr).expect("connect");

    // A trickled head, a silent connection, and an idle kept-alive one, all at once.
    let trickle = b"GET /hub/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".repeat(4);
    let trickled = tokio::task::spawn_blocking(move || until_closed(connect(), &trickle));
    let silent = tokio::task::spawn_blocking(move || until_closed(connect(), b""));
    let idle = tokio::task::spawn_blocking(move || {
        let mut s = connect();
        s.write_all(b"GET /hub/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
        until_closed(s, b"")
    });
    // Meanwhile the hub answers others, and a spawn progress stream outlives the timeout.
    let c = client_for(&hub.url(""));
    hub.login_cookie(&c, &a).await;
    assert_eq!(c.get(hub.url("/hub/spawn")).send().await.expect("spawn").status(), 200, "spawn page");
    let progress =
        c.get(hub.url(&format!("/hub/api/users/{}/server/progress", a.name))).send().await.expect("progress");
    assert_eq!(progress.status(), 200);
    use futures_util::StreamExt;
    let mut events = progress.bytes_stream();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        match tokio::time::timeout(Duration::from_millis(500), events.next()).await {
            Err(_) | Ok(Some(Ok(_))) => {}
            Ok(end) => panic!("the progress stream ended after {:?}: {end:?}", t0.elapsed()),
        }
        assert_alive(&hub).await;
    }

    for (what, task) in [("trickled head", trickled), ("silent connection", silent), ("idle keep-alive", idle)] {
        let (after, sent) = task.await.expect("join");
        // Not before the timeout: the hub cannot know sooner that the client is slow.
        assert!(after >= Duration::from_millis(1500), "{what} closed after only {after:?}");
        if what == "idle keep-alive" {
            assert!(sent.starts_with("HTTP/1.1 200"), "its one request was answered: {sent:?}");
            assert_eq!(sent.matches("HTTP/1.1").count(), 1, "{sent:?}");
        } else {
            assert!(sent.is_empty(), "{what}: no response to an incomplete request: {sent:?}");
        }
    }
    assert_alive(&hub).await;
    hub.stop().await;
}

/// HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3) is not served: the hub speaks HTTP/1.1
/// only (`accept.rs`). A client that opens with the HTTP/2 connection preface gets no HTTP/2
/// answer and its connection is closed at once, not held until `hub.header_read_timeout`
/// (30 s here, the default); other clients keep being answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_is_refused_and_closed() {
    require_root();
    let pam = PamService::create();
    let hub = TestHub::start_with(&pam, None, HubOptions::default()).await;
    let addr = hub.addr;
    let (ended, sent, after) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let t0 = Instant::now();
        // The client connection preface (RFC 9113 §3.4): the magic, then an empty SETTINGS frame
        // (length 0, type 0x4, flags 0, stream 0).
        let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let mut out = Vec::new();
        // A close with our SETTINGS frame unread arrives as a reset; both are the hub's doing.
        let ended = match s.read_to_end(&mut out) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        (ended, out, t0.elapsed())
    })
    .await
    .expect("join");
    assert!(ended, "the hub kept an HTTP/2 prior-knowledge connection open for {after:?}");
    let text = String::from_utf8_lossy(&sent);
    // An HTTP/2 server would answer with its own SETTINGS frame (binary, type 0x4 at byte 3).
    assert!(sent.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"), "{text:?}");
    assert_alive(&hub).await;
    hub.stop().await;
}
