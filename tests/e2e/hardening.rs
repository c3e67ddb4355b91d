//! The outside review's attacks (issue 22), each performed against the hub and each refused:
//! port squatting, a socket swapped for a link, dot-segments, parallel password guessing,
//! trickled bodies, a deleted user's cookie, admin rights from a group left, a keytab swapped
//! for a link, renewal storms, forged `X-Forwarded-For`, made-up methods, forged log lines, a
//! GET that starts a server, and ambiguous framing. Users' servers are the real JupyterLab
//! from the test venv; the binary-hub tests never start one.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hub::servers::ServerState;

use crate::support::{
    HubOptions, Kdc, PamService, TestHub, TestUser, client_for, post_form, random_hex, require_root, venv,
};

/// A directory every test user can read and write (for scripts and hand-over files).
fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("hub-hard-").tempdir().expect("tmp");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    d
}

/// `[spawner] cmd` for the venv's real JupyterLab (jupyter-server), as a TOML array.
fn lab_cmd() -> String {
    format!(r#"["{}/bin/jupyter-lab"]"#, venv().display())
}

/// A hub (with `kdc`, if given) whose servers are the venv's real JupyterLab, with `o`'s other
/// settings, and a directory every test user can write, kept as long as the hub.
async fn lab_hub(pam: &PamService, kdc: Option<&Kdc>, o: HubOptions) -> (TestHub, tempfile::TempDir) {
    let dir = shared_dir();
    let hub = TestHub::start_with(pam, kdc, HubOptions { cmd: Some(lab_cmd()), ..o }).await;
    (hub, dir)
}

/// One request on a fresh connection; everything the hub sent until it closed (or 5 s).
fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let _ = s.write_all(request.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Follows `user`'s progress stream to its end; returns the events' text.
async fn progress_events(hub: &TestHub, c: &reqwest::Client, user: &str) -> String {
    use futures_util::StreamExt;
    let resp = c.get(hub.url(&format!("/hub/api/users/{user}/server/progress"))).send().await.expect("progress");
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("\"ready\":true") || seen.contains("\"failed\":true") {
            break;
        }
    }
    seen
}

/// A root-owned token file for a `[[services]]` entry; returns (path, token).
fn service_token(dir: &Path) -> (PathBuf, String) {
    let token = random_hex(32);
    let path = dir.join(format!("svc-{}", random_hex(3)));
    std::fs::write(&path, &token).expect("token");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (path, token)
}

/// Defect 1: a process of another UID that binds the server's port first gets no token and no
/// browser traffic; the spawn fails and says why; the next spawn, without the squatter, works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_squatter_gets_nothing() {
    require_root();
    let pam = PamService::create();
    let (ann, mallory) = (TestUser::create(), TestUser::create());
    let dir = shared_dir();
    // The spawner runs this wrapper as ann: it says which port it was given, then waits for
    // the test's go-ahead, so the squatter can take the port first.
    let wrapper = dir.path().join("wrap.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" > {d}/args\nwhile [ ! -e {d}/go ]; do sleep 0.05; done\nexec {lab}/bin/jupyter-lab \"$@\"\n",
            d = dir.path().display(),
            lab = venv().display()
        ),
    )
    .expect("wrapper");
    let opts = HubOptions {
        cmd: Some(format!(r#"["/bin/sh", "{}"]"#, wrapper.display())),
        spawner: "transport = \"tcp\"".into(),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let c = hub.client();
    hub.login_cookie(&c, &ann).await;
    let args = dir.path().join("args");
    let deadline = Instant::now() + Duration::from_secs(20);
    let port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(&args)
            .ok()
            .and_then(|a| a.split_whitespace().find_map(|w| w.strip_prefix("--ServerApp.port=")?.parse().ok()))
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the server never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The squatter, as mallory: takes the port, prints how many bytes each connection sent.
    let squat = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.settimeout(1.0); n = 0
    try:
        while True:
            b = c.recv(65536)
            if not b: break
            n += len(b)
    except Exception:
        pass
    c.close(); print("conn", n, flush=True)
"#;
    let mut squatter = tokio::process::Command::new("runuser")
        .args(["-u", &mallory.name, "--", "/usr/bin/python3", "-c", squat, &port.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("squatter");
    let mut out = tokio::io::BufReader::new(squatter.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line).await.expect("ready line");
    assert_eq!(line.trim(), "ready");
    std::fs::write(dir.path().join("go"), "").expect("go");

    let events = progress_events(&hub, &c, &ann.name).await;
    assert!(events.contains("\"failed\":true"), "the spawn must fail: {events}");
    assert!(
        events.contains(&format!("belongs to uid {}", mallory.uid)) && events.contains("nothing was sent"),
        "the reason names the squatter's uid: {events}"
    );
    let r = c.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("proxy");
    assert_ne!(r.status(), 200, "no route to the squatter");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // runuser's child is the squatter itself: end every process of mallory's.
    let _ = Command::new("pkill").args(["-KILL", "-u", &mallory.name]).status();
    let _ = squatter.wait().await;
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut out, &mut rest).await.expect("squatter output");
    let conns: Vec<u64> =
        rest.lines().filter_map(|l| l.strip_prefix("conn ")).map(|n| n.parse().expect("count")).collect();
    assert!(!conns.is_empty(), "the hub did connect to the squatter: {rest}");
    assert!(conns.iter().all(|n| *n == 0), "the squatter received bytes: {rest}");

    // Honestly again: without the squatter the next spawn (a new port) works, as ann.
    let r = post_form(&hub.url(""), &c, "/hub/spawn").await;
    assert_eq!(r.status(), 200);
    hub.wait_ready(&c, &ann.name).await;
    let r = c.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("status");
    assert_eq!(r.status(), 200, "the real server answers through the hub");
    let ServerState::Running { pid, .. } = hub.state.servers.state(&ann.name) else { panic!("not running") };
    assert_eq!(hub::spawner::local::owner_uid(pid), Some(ann.uid), "the server runs as ann");
    hub.stop().await;
}

/// Defect 2: the user replaces their server's socket with a link to a root-only socket; the
/// hub connects (as root) but sends nothing there and answers 502. Dot-segments under
/// `/user/<name>/`, in every spelling, are refused before anything is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_socket_and_dot_segments_are_refused() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let (hub, _dir) = lab_hub(&pam, None, HubOptions::default()).await;
    let c = hub.client();
    let cookie = hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    let r = c.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("status");
    assert_eq!(r.status(), 200);

    // -- Dot-segments, raw (a client library would normalise them away).
    for path in ["/../hub/api/users", "/./api/status", "/%2e%2e/x", "/api/%2E%2E/x", "/a/..%2Fb", "/.%2e/x"] {
        let req = format!(
            "GET /user/{}{path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            ann.name, hub.addr
        );
        let resp = raw(hub.addr, &req);
        assert!(resp.starts_with("HTTP/1.1 400") && resp.contains("dot-segment"), "{path}: {resp}");
    }

    // -- A root-only socket that answers as if it were the server, and counts what it got.
    let root_dir = tempfile::tempdir().expect("tmp"); // 0700, root's
    let root_sock = root_dir.path().join("root.sock");
    let listener = std::os::unix::net::UnixListener::bind(&root_sock).expect("bind root socket");
    std::fs::set_permissions(&root_sock, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (received, accepted) = (received.clone(), accepted.clone());
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    received.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nROOT-SECRET");
                }
            }
        });
    }
    let ServerState::Running { endpoint: hub::core::Endpoint::Unix(sock), .. } = hub.state.servers.state(&ann.name)
    else {
        panic!("not running on a Unix socket")
    };
    let st = Command::new("runuser")
        .args(["-u", &ann.name, "--", "ln", "-sfn"])
        .arg(&root_sock)
        .arg(&*sock)
        .status()
        .expect("ln");
    assert!(st.success(), "ann replaces her socket with a link");
    let fresh = client_for(&hub.url(""));
    let r = fresh
        .get(hub.url(&format!("/user/{}/api/status", ann.name)))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("through the link");
    let status = r.status();
    let body = r.text().await.expect("body");
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("ROOT-SECRET"), "{body}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the hub did connect through the link");
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing was sent to the root socket");
    assert!(crate::support::log_line_with(&["proxy request to the server failed", "belongs to uid 0"]));
    hub.stop().await;
}

/// Defect 3: 30 parallel wrong passwords against a limit of 5 are checked 5 times, the rest
/// refused unchecked, and the right password after them is refused too. IPv6 clients (here
/// through a trusted proxy's `X-Forwarded-For`) count by /64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_beat_the_login_limit() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let opts = HubOptions {
        cmd: Some(r#"["/bin/sleep", "600"]"#.into()),
        auth: "max_failed_logins = 5\nmax_failed_logins_per_address = 5\nfailure_delay = \"400ms\"".into(),
        hub: "trusted_proxies = [\"127.0.0.1\"]".into(),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let base = hub.url("");
    let guesses = (0..30).map(|i| {
        let c = client_for(&base);
        let (url, name) = (hub.url("/hub/login"), ann.name.clone());
        async move {
            let pw = format!("wrong-{i}");
            c.post(url)
                .form(&[("username", name.as_str()), ("password", pw.as_str())])
                .send()
                .await
                .expect("login")
                .status()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| s.as_u16() == 403).count();
    let refused = statuses.iter().filter(|s| s.as_u16() == 429).count();
    assert_eq!((checked, refused), (5, 25), "{statuses:?}");
    let r = hub.login(&client_for(&base), &ann.name, &ann.password).await;
    assert_eq!(r.status(), 429, "the right password after the limit is refused unchecked");

    // IPv6 by /64: five names from one /64 reach its limit; a sixth address there is refused,
    // one in the next /64 is not.
    let from = |xff: &str, name: &str| {
        let c = client_for(&base);
        let (url, xff, name) = (hub.url("/hub/login"), xff.to_string(), name.to_string());
        async move {
            c.post(url)
                .header("x-forwarded-for", xff)
                .form(&[("username", name.as_str()), ("password", "nope")])
                .send()
                .await
                .expect("login")
                .status()
                .as_u16()
        }
    };
    for i in 1..=5 {
        assert_eq!(from(&format!("2001:db8:7:1::{i}"), &format!("nobody{i}")).await, 403);
    }
    assert_eq!(from("2001:db8:7:1:ffff::9", "nobody6").await, 429, "same /64");
    assert_eq!(from("2001:db8:7:2::1", "nobody7").await, 403, "the next /64 has its own count");
    assert!(crate::support::log_line_with(&[
        "too many failed attempts",
        "by=\"client address\"",
        "2001:db8:7:1:ffff::9"
    ]));
    hub.stop().await;
}

/// Writes hub.toml for the `hub` binary (`extra_hub` in `[hub]`) with a stand-in server,
/// migrates, and returns (config path, port).
fn binary_config(dir: &Path, pam: &PamService, extra_hub: &str, tail: &str) -> (PathBuf, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let text = format!(
        "[hub]\nbind = \"127.0.0.1:{port}\"\ndata_dir = \"{d}\"\n{extra_hub}\n[auth]\npam_service = \"{pam}\"\nfailure_delay = \"50ms\"\n\
         [spawner]\ncmd = {cmd}\n[kerberos]\nenabled = false\n{tail}\n",
        d = dir.join("data").display(),
        pam = pam.name,
        cmd = lab_cmd(),
    );
    let path = dir.join("hub.toml");
    std::fs::write(&path, text).expect("hub.toml");
    let out =
        Command::new(env!("CARGO_BIN_EXE_hub")).args(["migrate", "--config"]).arg(&path).output().expect("migrate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (path, port)
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Defect 4: 40 unauthenticated connections that announce 1.9 MB bodies to the REST API are
/// answered at once, unread, and closed; the hub does not grow. A body trickled to the login
/// form (which needs no credentials) is cut off at `body_min_rate`.
#[test]
fn bodies_wait_for_credentials_and_a_minimum_rate() {
    require_root();
    let pam = PamService::create();
    let dir = shared_dir();
    let (config, port) = binary_config(dir.path(), &pam, "header_read_timeout = \"1s\"\nbody_min_rate = 1024", "");
    let log = dir.path().join("hub.log");
    let hub = crate::support::HubProcess::start(&config, &log);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let pid = hub.child.id();
    let before = rss_kib(pid);
    let trickle = |i: usize| {
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            let head = format!(
                "POST /hub/api/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1900000\r\n\r\n{{\"usernames\": [\"u{i}\""
            );
            s.write_all(head.as_bytes()).expect("head");
            let started = Instant::now();
            let mut got = Vec::new();
            let chunk = [b' '; 4096];
            // Keep sending until the hub answers and closes, or 10 s pass.
            while started.elapsed() < Duration::from_secs(10) {
                let mut buf = [0u8; 4096];
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
            (started.elapsed(), String::from_utf8_lossy(&got).into_owned())
        })
    };
    let threads: Vec<_> = (0..40).map(trickle).collect();
    for t in threads {
        let (took, resp) = t.join().expect("thread");
        assert!(resp.starts_with("HTTP/1.1 403"), "answered before the body: {resp}");
        assert!(took < Duration::from_secs(5), "and closed, not held ({took:?})");
    }
    let after = rss_kib(pid);
    assert!(after < before + 20 * 1024, "the hub grew from {before} KiB to {after} KiB");

    // The login form may be posted without credentials, but not slowly: 10 bytes per 200 ms
    // falls behind 1024 bytes per second after the 1 s grace.
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    s.write_all(
        format!("POST /hub/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n")
            .as_bytes(),
    )
    .expect("head");
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(15) {
        if s.write_all(b"username=x").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(0) = s.read(&mut buf) {
            closed = true;
            break;
        }
    }
    assert!(
        closed && started.elapsed() < Duration::from_secs(8),
        "a trickled body is cut off ({:?})",
        started.elapsed()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("refused an unauthenticated request body unread"), "{text}");
}

/// Defect 5: once an admin deletes a user, the user's cookie and API token open nothing: not
/// the home page, not the spawn form, not the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_keeps_no_session() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let keys = tempfile::tempdir().expect("tmp");
    let (svc_file, svc) = service_token(keys.path());
    let opts = HubOptions {
        tail: format!(
            "[[services]]\nname = \"admin-tool\"\napi_token_file = \"{}\"\nscopes = [\"admin:users\", \"tokens\", \"admin:servers\"]\n",
            svc_file.display()
        ),
        ..Default::default()
    };
    let (hub, _dir) = lab_hub(&pam, None, opts).await;
    let c = hub.client();
    hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    let api = reqwest::Client::new();
    let t: serde_json::Value = api
        .post(hub.url(&format!("/hub/api/users/{}/tokens", ann.name)))
        .header("authorization", format!("token {svc}"))
        .json(&serde_json::json!({"note": "ann's script", "scopes": [format!("read:users!user={}", ann.name)]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let ann_token = t["token"].as_str().unwrap_or_else(|| panic!("no token: {t}")).to_string();
    let me = |token: String| {
        let (api, url) = (api.clone(), hub.url("/hub/api/user"));
        async move { api.get(url).header("authorization", format!("token {token}")).send().await.expect("me").status() }
    };
    assert_eq!(me(ann_token.clone()).await, 200);
    assert_eq!(c.get(hub.url("/hub/home")).send().await.expect("home").status(), 200, "cached session");

    let r = api
        .delete(hub.url(&format!("/hub/api/users/{}", ann.name)))
        .header("authorization", format!("token {svc}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = c.get(hub.url("/hub/home")).send().await.expect("home");
    assert_eq!(r.status(), 303, "the home page sends the deleted user to log in");
    assert!(r.headers()["location"].to_str().expect("loc").starts_with("/hub/login"));
    let r = c.post(hub.url("/hub/spawn")).form(&[("_xsrf", "x")]).send().await.expect("spawn");
    assert_eq!(r.status(), 303, "no spawn for a deleted user");
    let r = c.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("proxy");
    assert!(r.status().is_redirection(), "the proxy sends them to log in: {}", r.status());
    assert_eq!(me(ann_token).await, 403, "the user's API token went with them");
    assert!(matches!(hub.state.servers.state(&ann.name), ServerState::Stopped { .. }));
    hub.stop().await;
}

/// Defect 6: a user who leaves the admin group is no admin after their next login, in that
/// session and in the one they already had; an admin granted through the API stays one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_admin_group_takes_admin_away() {
    require_root();
    let pam = PamService::create();
    let (ann, bob) = (TestUser::create(), TestUser::create());
    let opts = HubOptions {
        cmd: Some(r#"["/bin/sleep", "600"]"#.into()),
        auth: format!("admin_groups = [\"{}\"]", ann.group),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let first = hub.client();
    hub.login_cookie(&first, &ann).await;
    assert_eq!(first.get(hub.url("/hub/admin")).send().await.expect("admin").status(), 200);
    assert!(Command::new("gpasswd").args(["-d", &ann.name, &ann.group]).status().expect("gpasswd").success());
    let second = hub.client();
    hub.login_cookie(&second, &ann).await;
    assert_eq!(second.get(hub.url("/hub/admin")).send().await.expect("admin").status(), 403, "the new session");
    assert_eq!(first.get(hub.url("/hub/admin")).send().await.expect("admin").status(), 403, "the old session too");
    // The API's own grant is kept apart and survives logins.
    hub.state.store.upsert_user(&bob.name, false, hub::unix_now()).await.expect("bob");
    hub.state.store.set_admin(&bob.name, true).await.expect("grant");
    let b = hub.client();
    hub.login_cookie(&b, &bob).await;
    assert_eq!(b.get(hub.url("/hub/admin")).send().await.expect("admin").status(), 200);
    hub.stop().await;
}

/// Defect 7: while the user swaps their keytab path between a file of their own and a link to
/// another user's keytab (which holds the user's keys), root's kinit never reads the other
/// file; once the path is the user's own keytab, renewal works (through the descriptor).
/// Defect 8 on the same hub: while renewals fail, 60 notebook opens start at most a few kinits.
/// Also: credential caches that real `kinit` writes in versions 3 and 4 are read right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keytab_swaps_reach_nothing_and_failures_back_off() {
    require_root();
    let pam = PamService::create();
    let kdc = Kdc::start();
    let (ann, bob) = (TestUser::create(), TestUser::create());
    let keytab = kdc.add_user_with_keytab(&ann);
    let good = std::fs::read(&keytab).expect("keytab");
    // bob's private file with ann's keys: only root could read it for ann.
    let stolen = bob.home.join("stolen.keytab");
    std::fs::write(&stolen, &good).expect("stolen");
    std::os::unix::fs::chown(&stolen, Some(bob.uid), Some(bob.gid)).expect("chown");
    std::fs::set_permissions(&stolen, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let opts = HubOptions {
        kerberos: "event_min_interval = \"0s\"\nretry_min = \"60s\"\nretry_max = \"120s\"".into(),
        ..Default::default()
    };
    let (hub, dir) = lab_hub(&pam, Some(&kdc), opts).await;
    let owner = hub::core::TicketOwner { username: ann.name.clone(), uid: ann.uid, gid: ann.gid };

    // -- The swap race, as ann would run it: rename a junk file or a link over the path.
    // The race starts from the junk file, not from ann's good keytab.
    std::fs::write(keytab.with_extension("junk"), b"\x05\x02not a keytab").expect("junk");
    std::fs::rename(keytab.with_extension("junk"), &keytab).expect("junk in place");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, path, stolen, uid, gid) = (stop.clone(), keytab.clone(), stolen.clone(), ann.uid, ann.gid);
        std::thread::spawn(move || {
            let (junk, link) = (path.with_extension("junk"), path.with_extension("link"));
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::fs::write(&junk, b"\x05\x02not a keytab").expect("junk");
                std::os::unix::fs::chown(&junk, Some(uid), Some(gid)).expect("chown");
                std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).expect("chmod");
                std::fs::rename(&junk, &path).expect("junk in place");
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&stolen, &link).expect("link");
                std::fs::rename(&link, &path).expect("link in place");
            }
        })
    };
    let mut successes = 0;
    for _ in 0..150 {
        // The timer's trigger: no backoff or coalescing, a kinit attempt every time.
        if hub.state.renewer.renew(&owner, hub::renewer::Trigger::Timer).await.is_ok() {
            successes += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    swapper.join().expect("swapper");
    assert_eq!(successes, 0, "a renewal succeeded: root read bob's file through the link");
    let _ = std::fs::remove_file(&keytab);
    std::fs::write(&keytab, &good).expect("ann's own keytab back");
    std::os::unix::fs::chown(&keytab, Some(ann.uid), Some(ann.gid)).expect("chown");
    std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    hub.state.renewer.renew(&owner, hub::renewer::Trigger::Timer).await.expect("kinit through the descriptor");
    let ccache = hub.state.renewer.paths(&owner).ccache;
    let times = hub::ccache::read(&ccache).expect("the hub reads the ccache it made");
    assert_eq!(times.principal, format!("{}@{}", ann.name, kdc.realm));

    // -- Defect 8: a failing renewal, then 60 notebook opens through the proxy.
    std::fs::write(&keytab, b"\x05\x02not a keytab").expect("break the keytab");
    let _ = hub.state.renewer.renew(&owner, hub::renewer::Trigger::Timer).await;
    assert!(hub.state.renewer.status(&ann.name).is_some_and(|s| s.consecutive_failures > 0));
    let c = hub.client();
    hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    // A notebook to open (saving it is itself an event, backed off like the rest).
    let nb = serde_json::json!({"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}});
    let url = hub.url(&format!("/user/{}/api/contents/n.ipynb", ann.name));
    let r = c.put(&url).json(&nb).send().await.expect("save");
    assert!(r.status().is_success(), "save: {}", r.status());
    let (kinits_before, _) = hub.state.renewer.kinit_counts();
    for _ in 0..60 {
        let r = c.get(format!("{url}?type=notebook&content=1")).send().await.expect("open");
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (kinits_after, _) = hub.state.renewer.kinit_counts();
    assert!(
        kinits_after - kinits_before <= 2,
        "{} kinits for 60 opens while backing off",
        kinits_after - kinits_before
    );

    // -- ccache versions 3 and 4, as real kinit writes them.
    let conf = std::fs::read_to_string(kdc.krb5_conf()).expect("krb5.conf");
    std::fs::write(&keytab, &good).expect("keytab");
    for version in [3u8, 4] {
        let cfg = dir.path().join(format!("krb5-v{version}.conf"));
        std::fs::write(&cfg, conf.replace("[libdefaults]\n", &format!("[libdefaults]\n ccache_type = {version}\n")))
            .expect("conf");
        let cc = dir.path().join(format!("cc-v{version}"));
        let out = Command::new("kinit")
            .args(["-k", "-t"])
            .arg(&keytab)
            .arg("-c")
            .arg(format!("FILE:{}", cc.display()))
            .arg(format!("{}@{}", ann.name, kdc.realm))
            .env("KRB5_CONFIG", &cfg)
            .output()
            .expect("kinit");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&cc).expect("ccache");
        assert_eq!(bytes[..2], [5, version], "kinit wrote version {version}");
        let t = hub::ccache::read(&cc).unwrap_or_else(|e| panic!("version {version}: {e}"));
        assert_eq!(t.principal, format!("{}@{}", ann.name, kdc.realm), "version {version}");
        let now = hub::unix_now();
        assert!(t.start <= now + 5 && t.end > now && t.end - t.start <= 25 * 3600, "version {version}: {t:?}");
    }
    hub.stop().await;
}

/// Defect 12: a cross-site GET of the spawn page starts nothing; the page's form (POST with
/// the session's XSRF token) does. The page submits it by itself only for the hub's own
/// navigations (`Sec-Fetch-Site: same-origin` or `none`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_starts_no_server() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let (hub, _dir) = lab_hub(&pam, None, HubOptions::default()).await;
    let c = hub.client();
    hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    let r = post_form(&hub.url(""), &c, "/hub/home/stop").await;
    assert_eq!(r.status(), 303);
    let spawn_page = |site: &'static str| {
        let (c, url) = (c.clone(), hub.url("/hub/spawn"));
        async move {
            let r = c.get(url).header("sec-fetch-site", site).send().await.expect("spawn page");
            r.text().await.expect("body")
        }
    };
    for _ in 0..5 {
        let page = spawn_page("cross-site").await;
        assert!(page.contains("Start my server") && page.contains(r#"data-autostart="false""#), "{page}");
    }
    let page = spawn_page("same-origin").await;
    assert!(page.contains(r#"data-autostart="true""#), "{page}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(hub.state.servers.state(&ann.name), ServerState::Stopped { .. }), "no GET started it");
    let r = c.post(hub.url("/hub/spawn")).form(&[("_xsrf", "forged")]).send().await.expect("post");
    assert_eq!(r.status(), 403, "a POST without the session's XSRF token is refused");
    let r = post_form(&hub.url(""), &c, "/hub/spawn").await;
    assert_eq!(r.status(), 200);
    hub.wait_ready(&c, &ann.name).await;
    hub.stop().await;
}

/// Defects 9, 10 and 11, framing, and the systemd readiness, on the `hub` binary: a loopback
/// trusted proxy is warned about; made-up methods are counted as `other`; a user name with a
/// newline cannot forge a log line; a request with both Content-Length and Transfer-Encoding
/// (or chunked alone) gets 411 and reaches nothing; READY=1 reaches NOTIFY_SOCKET.
#[test]
fn binary_hub_warns_escapes_counts_and_refuses_ambiguous_framing() {
    require_root();
    let pam = PamService::create();
    let dir = shared_dir();
    let (config, port) =
        binary_config(dir.path(), &pam, "trusted_proxies = [\"127.0.0.1\"]", "[api]\nauthenticate_metrics = false\n");
    let notify = dir.path().join("notify.sock");
    let notify_sock = std::os::unix::net::UnixDatagram::bind(&notify).expect("notify socket");
    notify_sock.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let log = dir.path().join("hub.log");
    let _hub =
        crate::support::HubProcess::start_with_env(&config, &log, &[("NOTIFY_SOCKET", notify.to_str().expect("p"))]);
    let mut buf = [0u8; 512];
    let n = notify_sock.recv(&mut buf).expect("a notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg}");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text().contains("trusted_proxies has a loopback address"), "{}", text());

    // -- Made-up methods.
    for i in 0..200 {
        let _ = raw(addr, &format!("BREW{i} /hub/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    }
    let metrics = raw(addr, "GET /hub/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(!metrics.contains("BREW"), "made-up methods are no labels");
    assert!(metrics.len() < 100_000, "metrics stay small: {} bytes", metrics.len());

    // -- A forged log line in the user name.
    let forged = "mallory\n2026-12-01T00:00:00.000000Z  INFO hub::web: logged in method=\"pam\" user=root admin=true";
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("username", forged)
        .append_pair("password", "x")
        .finish();
    // Refused as an invalid name five times, then throttled: the throttle's log line names
    // the user name as it was typed.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let resp = raw(
            addr,
            &format!(
                "POST /hub/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        statuses.push(resp.get(9..12).unwrap_or_default().to_string());
    }
    assert_eq!(statuses.last().map(String::as_str), Some("429"), "{statuses:?}");
    std::thread::sleep(Duration::from_millis(300));
    let logged = text();
    assert!(
        !logged.lines().any(|l| l.to_ascii_lowercase().starts_with("2026-12-01t00:00:00")),
        "a forged line got in: {logged}"
    );
    assert!(logged.contains("user=mallory\\n2026-12-01t00:00:00"), "the name is logged escaped: {logged}");

    // -- Content-Length and Transfer-Encoding together (and chunked alone): 411 before any
    //    handler or server sees it, and the bytes after the body are no second request.
    for framing in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 4",
        "Transfer-Encoding: chunked",
    ] {
        let resp = raw(
            addr,
            &format!(
                "POST /hub/api/users HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n0\r\n\r\nGET /hub/health HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
        );
        assert!(resp.starts_with("HTTP/1.1 411") && resp.contains("Transfer-Encoding"), "{framing}: {resp}");
        assert_eq!(resp.matches("HTTP/1.1").count(), 1, "no second response: {resp}");
    }
}

/// Defect 9: the hub on a Unix socket for its reverse proxy: the socket has the configured
/// group and mode, and `X-Forwarded-For` sent over it is the client address in the log.
#[test]
fn the_hub_listens_on_a_unix_socket_for_its_proxy() {
    require_root();
    let pam = PamService::create();
    let dir = shared_dir();
    let proxy_group = TestUser::create(); // its group stands in for nginx's
    let sock = dir.path().join("hub.sock");
    let (config, _port) = binary_config(dir.path(), &pam, "public_url = \"http://hub.test\"", "");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("bind = ") {
                format!(
                    "bind = \"unix:{}\"\nbind_mode = \"0660\"\nbind_group = \"{}\"",
                    sock.display(),
                    proxy_group.group
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).expect("config");
    let log = dir.path().join("hub.log");
    let logf = std::fs::File::create(&log).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(logf)
        .spawn()
        .expect("hub serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&sock).expect("socket");
    let group = nix::unistd::Group::from_name(&proxy_group.group).expect("lookup").expect("group");
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, group.gid.as_raw()));
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-i", "--max-time", "10", "--unix-socket"])
            .arg(&sock)
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(curl(&["http://hub.test/hub/health"]).starts_with("HTTP/1.1 200"));
    let resp = curl(&[
        "-H",
        "Origin: http://hub.test",
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "--data",
        "username=nobody-here&password=x",
        "http://hub.test/hub/login",
    ]);
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    std::thread::sleep(Duration::from_millis(300));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.lines().any(|l| l.contains("login refused") && l.contains("client=203.0.113.9")), "{logged}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The systemd unit in the repository: `systemd-analyze verify` finds nothing wrong, and it has
/// what the hub needs (readiness, servers outliving a restart, cgroup delegation, restarts).
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/hub.service"))
        .expect("config/hub.service");
    for line in ["Type=notify", "KillMode=process", "Delegate=yes", "Restart=on-failure", "RuntimeDirectory=hub"] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("hub.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/hub", env!("CARGO_BIN_EXE_hub"))).expect("unit");
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
}

/// `hub check-config` prints every section, with the secrets an admin may put in hub.toml
/// redacted; `hub migrate` refuses a data_dir that users' servers could not reach.
#[test]
fn check_config_shows_every_section_but_no_secret() {
    require_root();
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("svc.token");
    let cfg = dir.path().join("hub.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hub]\ndata_dir = \"{d}/data\"\ndatabase_url = \"postgres://hub:pg-secret-1@db.example.com/hub\"\n\
             [spawner]\ncmd = [\"/bin/true\"]\nenv = {{ SPARK_TOKEN = \"env-secret-2\" }}\n\
             [limits]\nmemory = \"2G\"\n[api]\npage_default_limit = 7\n\
             [[services]]\nname = \"culler\"\napi_token_file = \"{t}\"\nscopes = [\"list:users\"]\n\
             [[kernelspec]]\nname = \"py\"\ndisplay_name = \"Py\"\nargv = [\"python3\"]\nenv = {{ KS_TOKEN = \"ks-secret-3\" }}\n",
            d = dir.path().display(),
            t = tokens.display()
        ),
    )
    .expect("config");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out =
        Command::new(env!("CARGO_BIN_EXE_hub")).args(["check-config", "--config"]).arg(&cfg).output().expect("run");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for part in
        ["api:", "page_default_limit: 7", "services:", "culler", "limits:", "spawner:", "SPARK_TOKEN", "KS_TOKEN"]
    {
        assert!(shown.contains(part), "check-config lacks {part}: {shown}");
    }
    for secret in ["pg-secret-1", "env-secret-2", "ks-secret-3"] {
        assert!(!shown.contains(secret), "check-config shows {secret}: {shown}");
    }

    // A data_dir under a directory others cannot pass through.
    let hidden = dir.path().join("hidden");
    std::fs::create_dir(&hidden).expect("dir");
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(
        &cfg,
        format!("[hub]\ndata_dir = \"{}/data\"\n[spawner]\ncmd = [\"/bin/true\"]\n", hidden.display()),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_hub")).args(["migrate", "--config"]).arg(&cfg).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{} has mode 700", hidden.display())) && err.contains("chmod o+x"), "{err}");
}
