//! End-to-end tests on real parts: PAM with real Linux users, a real MIT KDC, a real
//! JupyterLab from PyPI, the hub on a loopback port. Run as root after `scripts/setup.sh`
//! (`bash tests/run.sh` does both).

mod admin;
mod api;
mod hardening;
mod jobs;
mod kerberos_login;
mod lifecycle;
mod limits;
mod nginx;
mod parity;
mod postgres;
mod renewer;
mod runs;
mod security;
mod slurm;
mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hub::core::Endpoint;
use hub::servers::ServerState;
use support::{HubOptions, Kdc, PamService, TestHub, TestUser, random_hex, require_root};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `(uid, gid, groups)` of a live process, from `/proc/PID/status` (real IDs).
fn proc_ids(pid: u32) -> (u32, u32, Vec<u32>) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> Vec<u32> {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    (field("Uid:")[0], field("Gid:")[0], field("Groups:"))
}

/// The "Valid starting" time of the TGT in a ccache, as klist prints it.
fn ticket_start(kdc: &Kdc, ccache: &Path) -> String {
    let out = kdc.klist(ccache);
    assert!(out.status.success(), "klist failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains("krbtgt/")).unwrap_or_else(|| panic!("no TGT in {text}"));
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Waits (polling, up to 15 s) until the ticket in `ccache` has a start time other than `old`.
async fn wait_new_ticket(kdc: &Kdc, ccache: &Path, old: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = ticket_start(kdc, ccache);
        if now != old {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ticket was not renewed (still starts {old})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sleeps into the next wall-clock second, so that a new ticket's start time (one-second
/// resolution) differs from the current one.
async fn next_second() {
    let sub = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").subsec_millis();
    tokio::time::sleep(Duration::from_millis(1010 - u64::from(sub))).await;
}

fn notebook(source: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "notebook",
        "format": "json",
        "content": {
            "nbformat": 4, "nbformat_minor": 5, "metadata": {},
            "cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": null, "outputs": [], "source": source}]
        }
    })
}

/// Kernel WebSocket type used by the tests.
type KernelWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/user/<user>/api/kernels/<id>/channels` through the hub with the session `cookie`
/// ("hub-session=..."); returns the socket and the Jupyter session id used.
pub(crate) async fn kernel_channels(hub: &TestHub, user: &str, kernel_id: &str, cookie: &str) -> (KernelWs, String) {
    let session = random_hex(16);
    let mut req = format!("ws://{}/user/{user}/api/kernels/{kernel_id}/channels?session_id={session}", hub.addr)
        .into_client_request()
        .expect("ws request");
    req.headers_mut().insert("cookie", cookie.parse().expect("cookie"));
    req.headers_mut().insert("origin", hub.url("").parse().expect("origin"));
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => (ws, session),
        Err(e) => panic!(
            "WebSocket through the hub: {e}\nserver log:\n{}",
            hub::servers::log_tail(&hub.state.servers.log_path(user))
        ),
    }
}

/// Runs `code` in a kernel over the hub's WebSocket tunnel and returns the `text/plain` of its
/// `execute_result` (Jupyter messaging spec 5.3, JSON over WebSocket as jupyter-server speaks it).
async fn execute(ws: &mut KernelWs, session: &str, code: &str) -> String {
    let msg_id = random_hex(16);
    let msg = serde_json::json!({
        "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}
    });
    ws.send(Message::text(msg.to_string())).await.expect("send execute_request");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("kernel reply in time")
            .expect("open")
            .expect("frame");
        let Message::Text(t) = m else { continue };
        let v: serde_json::Value = serde_json::from_str(&t).expect("json");
        if v["parent_header"]["msg_id"] != msg_id {
            continue;
        }
        match v["header"]["msg_type"].as_str() {
            Some("execute_result") => {
                return v["content"]["data"]["text/plain"].as_str().unwrap_or_default().to_string();
            }
            Some("error") => panic!("kernel error: {}", v["content"]),
            _ => {}
        }
    }
}

/// The world of the main job: a KDC, ann (with a keytab) and bob (without one: login and
/// spawn must still work), and a hub where every notebook open and save renews
/// (`event_min_interval = 0`), as in the field report.
struct MainWorld {
    hub: TestHub,
    kdc: Kdc,
    ann: TestUser,
    bob: TestUser,
    _pam: PamService,
}

impl MainWorld {
    async fn start() -> Self {
        require_root();
        let pam = PamService::create();
        let kdc = Kdc::start();
        let ann = TestUser::create();
        let bob = TestUser::create();
        kdc.add_user_with_keytab(&ann);
        let opts = HubOptions { kerberos: "event_min_interval = \"0s\"".into(), ..Default::default() };
        let hub = TestHub::start_with(&pam, Some(&kdc), opts).await;
        MainWorld { hub, kdc, ann, bob, _pam: pam }
    }

    /// ann signed in with her server ready: her client and her session's cookie pair.
    async fn ann_ready(&self) -> (reqwest::Client, String) {
        let c = self.hub.client();
        let cookie_pair = self.hub.login_cookie(&c, &self.ann).await;
        self.hub.wait_ready(&c, &self.ann.name).await;
        (c, cookie_pair)
    }

    /// ann's credential cache.
    fn ccache(&self) -> std::path::PathBuf {
        self.hub.data_dir.path().join(format!("ccache/krb5cc_{}", self.ann.uid))
    }

    /// Stops the hub; no password may have reached the log. Hands back ann and bob (whose
    /// accounts are removed when they are dropped).
    async fn stop(self) -> (TestUser, TestUser) {
        self.hub.stop().await;
        let logs = support::logs();
        assert!(
            !logs.contains(&self.ann.password) && !logs.contains(&self.bob.password),
            "passwords must never be logged"
        );
        (self.ann, self.bob)
    }
}

/// Login as ann (the cookie's flags, the spawn page), the spawn through the proxy, and a server that runs as ann (uid, gid, groups) on a socket only she can reach, refusing requests without the hub's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ann_logs_in_and_her_server_runs_as_her_on_a_private_socket() {
    let w = MainWorld::start().await;
    let (hub, ann, bob) = (&w.hub, &w.ann, &w.bob);
    // -- Login as ann: a session cookie, a redirect to the spawn page.
    let c = hub.client();
    let r = hub.login(&c, &ann.name, &ann.password).await;
    assert_eq!(r.status(), 303, "login must redirect");
    assert_eq!(r.headers()["location"], "/hub/spawn");
    let set_cookie = r.headers()["set-cookie"].to_str().expect("ascii").to_string();
    for flag in ["hub-session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(flag), "{set_cookie} lacks {flag}");
    }
    assert!(!set_cookie.contains("Secure"), "http public_url must not set Secure");
    let r = c.get(hub.url("/hub/spawn")).send().await.expect("spawn page");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("<progress"), "spawn page shows progress");

    // -- Spawn: progress events until ready, then api/status through the proxy.
    hub.wait_ready(&c, &ann.name).await;
    let r = c.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("status");
    assert_eq!(r.status(), 200, "api/status through the hub");
    let r = c.get(hub.url("/hub/spawn")).send().await.expect("spawn when running");
    assert_eq!(r.headers()["location"].to_str().expect("loc"), format!("/user/{}/lab", ann.name));

    // -- The server runs as ann: uid, primary gid and supplementary groups.
    let ServerState::Running { pid, endpoint, .. } = hub.state.servers.state(&ann.name) else { panic!("not running") };
    let (uid, gid, groups) = proc_ids(pid);
    assert_eq!((uid, gid), (ann.uid, ann.gid));
    let extra_gid = nix::unistd::Group::from_name(&ann.group).expect("getgrnam").expect("group").gid.as_raw();
    assert!(groups.contains(&extra_gid) && groups.contains(&ann.gid), "groups {groups:?}");
    assert!(!groups.contains(&0), "root's group must not be kept: {groups:?}");
    // The server listens on a Unix socket (the default transport) that only ann and root can
    // reach: ann's 0600 socket in ann's 0700 directory, recorded for re-adoption.
    let Endpoint::Unix(sock) = endpoint else { panic!("default transport is unix: {endpoint:?}") };
    assert_eq!(*sock, *hub.data_dir.path().join(format!("sockets/{}/server.sock", ann.name)));
    let dir_meta = std::fs::symlink_metadata(sock.parent().expect("dir")).expect("socket dir");
    assert_eq!((dir_meta.uid(), dir_meta.mode() & 0o7777), (ann.uid, 0o700), "socket directory");
    let sock_meta = std::fs::symlink_metadata(&sock).expect("socket");
    assert!(sock_meta.file_type().is_socket());
    assert_eq!((sock_meta.uid(), sock_meta.mode() & 0o777), (ann.uid, 0o600), "socket");
    let rec = hub.state.store.get_server(&ann.name, "").await.expect("db").expect("record");
    assert_eq!((rec.port, rec.socket.as_deref()), (None, sock.to_str()), "recorded endpoint");
    // bob, another local user, cannot even connect to it.
    let probe = |uid: u32, gid: u32| {
        std::process::Command::new("/usr/bin/python3")
            .args(["-c", "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"])
            .arg(&*sock)
            .uid(uid)
            .gid(gid)
            .output()
            .expect("python3")
    };
    let refused = probe(bob.uid, bob.gid);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("PermissionError"),
        "another user must not reach ann's socket: {refused:?}"
    );
    assert!(probe(ann.uid, ann.gid).status.success(), "ann herself can connect");
    // And the server refuses a request without the hub's token.
    let raw = raw_unix_request(&sock, &format!("GET /user/{}/api/contents HTTP/1.1\r\nHost: x\r\n\r\n", ann.name));
    assert!(
        raw.starts_with("HTTP/1.1 403"),
        "the server must refuse requests that did not come through the hub: {raw}"
    );
    w.stop().await;
}

/// Login ran kinit into ann's 0600 ccache; each notebook save and open through the hub renews the ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_and_opens_renew_the_ticket() {
    let w = MainWorld::start().await;
    let (hub, kdc, ann) = (&w.hub, &w.kdc, &w.ann);
    let (c, _) = w.ann_ready().await;
    let ccache = w.ccache();
    // -- Login ran kinit: the ccache is ann's, 0600, and holds her principal.
    let meta = std::fs::metadata(&ccache).expect("ccache exists after login");
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (ann.uid, ann.gid, 0o600));
    let klist = String::from_utf8_lossy(&kdc.klist(&ccache).stdout).into_owned();
    assert!(klist.contains(&format!("{}@{}", ann.name, kdc.realm)), "{klist}");
    let t0 = ticket_start(kdc, &ccache);

    // -- Save a notebook through the hub: the file is ann's, and the save renews the ticket.
    next_second().await;
    let nb_url = hub.url(&format!("/user/{}/api/contents/x.ipynb", ann.name));
    let r = c.put(&nb_url).json(&notebook("1+1")).send().await.expect("save");
    assert_eq!(r.status(), 201, "new notebook");
    let file = ann.home.join("x.ipynb");
    assert_eq!(std::fs::metadata(&file).expect("notebook on disk").uid(), ann.uid);
    let t1 = wait_new_ticket(kdc, &ccache, &t0).await;
    next_second().await;
    let r = c.put(&nb_url).json(&notebook("2+2")).send().await.expect("second save");
    assert_eq!(r.status(), 200, "overwrite");
    let t2 = wait_new_ticket(kdc, &ccache, &t1).await;
    // -- Opening the notebook (as JupyterLab does) renews it too.
    next_second().await;
    let r = c.get(format!("{nb_url}?type=notebook&content=1&hash=0")).send().await.expect("open");
    assert_eq!(r.status(), 200);
    wait_new_ticket(kdc, &ccache, &t2).await;
    let meta = std::fs::metadata(&ccache).expect("ccache");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (ann.uid, 0o600), "still ann's and 0600 after renewals");
    w.stop().await;
}

/// A kernel over the WebSocket tunnel: it computes, sees ann's ccache, runs as ann, and a large message passes untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_runs_over_the_websocket_tunnel_as_ann_with_her_ticket() {
    let w = MainWorld::start().await;
    let (hub, ann) = (&w.hub, &w.ann);
    let (c, cookie_pair) = w.ann_ready().await;
    let ccache = w.ccache();
    // -- A kernel over the WebSocket tunnel: 1+1, and it sees the ccache and runs as ann.
    let kernel_id = hub.start_kernel(&c, &ann.name, "python3").await;
    let (mut ws, session) = kernel_channels(hub, &ann.name, &kernel_id, &cookie_pair).await;
    assert_eq!(execute(&mut ws, &session, "1+1").await, "2");
    let env = execute(&mut ws, &session, "import os; (os.environ.get('KRB5CCNAME'), os.getuid())").await;
    assert_eq!(env, format!("('FILE:{}', {})", ccache.display(), ann.uid));
    // A large message passes the tunnel untouched.
    let big = execute(&mut ws, &session, "len('x' * 3_000_000 + 'y')").await;
    assert_eq!(big, "3000001");
    ws.close(None).await.expect("close");
    w.stop().await;
}

/// bob (no keytab) logs in and spawns; the kinit failure is logged and shown; he cannot reach ann's server, and without a session the proxy sends to the login page; shutting the hub down stops his server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_without_a_keytab_spawns_and_cannot_reach_anns_server() {
    let w = MainWorld::start().await;
    let (hub, ann, bob) = (&w.hub, &w.ann, &w.bob);
    // -- Bob (no keytab) logs in: spawn works, the kinit failure is logged and shown.
    let cb = hub.client();
    assert_eq!(hub.login(&cb, &bob.name, &bob.password).await.status(), 303);
    hub.wait_ready(&cb, &bob.name).await;
    let r = cb.get(hub.url(&format!("/user/{}/api/status", bob.name))).send().await.expect("bob status");
    assert_eq!(r.status(), 200);
    let status = hub.state.renewer.status(&bob.name).expect("bob has a renewal status");
    assert!(status.last_error.as_deref().unwrap_or_default().contains("does not exist"), "{status:?}");
    assert!(support::log_line_with(&[&bob.name, "login", "kinit failed", "does not exist"]), "kinit failure logged");
    let home = cb.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    assert!(home.contains("The last renewal failed") && home.contains("check your keytab"), "{home}");

    // -- Bob cannot reach ann's server, by page, API or WebSocket.
    for path in ["/", "/api/status", "/api/contents/x.ipynb"] {
        let r = cb.get(hub.url(&format!("/user/{}{path}", ann.name))).send().await.expect("cross-user");
        assert_eq!(r.status(), 403, "bob on ann's {path}");
    }
    // -- No session: redirect to the login page with a way back.
    let anon = hub.client();
    let r = anon.get(hub.url(&format!("/user/{}/lab?reset", ann.name))).send().await.expect("anon");
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"].to_str().expect("loc"),
        format!("/hub/login?next=/user/{}/lab%3Freset", ann.name)
    );

    // -- Shutting the hub down stops bob's server too.
    let (_ann, bob) = w.stop().await;
    assert_eq!(bob.processes(), Vec::<u32>::new(), "no process of bob may remain after shutdown");
}

/// Home shows the running server; Stop ends it and every process of ann's (ccache and socket removed); logout revokes the session, even for a copied cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_every_process_of_the_server_and_logout_revokes_the_session() {
    let w = MainWorld::start().await;
    let (hub, ann) = (&w.hub, &w.ann);
    let (c, cookie_pair) = w.ann_ready().await;
    let ccache = w.ccache();
    let sock = hub.data_dir.path().join(format!("sockets/{}/server.sock", ann.name));
    // -- Home shows the running server; Stop ends it and every process of ann's.
    let home = c.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    assert!(home.contains("data-state=\"running\"") && home.contains("valid until"), "{home}");
    assert!(home.contains("next renewal"), "the timer has ann scheduled: {home}");
    let r = hub.post_form(&c, "/hub/home/stop").await;
    assert_eq!(r.status(), 303);
    assert!(matches!(hub.state.servers.state(&ann.name), ServerState::Stopped { .. }));
    assert_eq!(ann.processes(), Vec::<u32>::new(), "no process of ann may remain after stop");
    assert!(!ccache.exists(), "the ccache is removed when the server stops");
    assert!(!sock.exists(), "the socket jupyter-server leaves behind is removed when the server stops");
    let r = c.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("after stop");
    assert_eq!(r.status(), 503, "a stopped server is not proxied");

    // -- Logout revokes the session, even for a copied cookie.
    let r = hub.post_form(&c, "/hub/logout").await;
    assert_eq!(r.status(), 303);
    let r = hub.client().get(hub.url("/hub/home")).header("cookie", &cookie_pair).send().await.expect("old cookie");
    assert_eq!(r.status(), 303, "a logged-out session must not work");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refusals() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let hub = TestHub::start(&pam, None, "").await;
    let c = hub.client();

    let wrong = hub.login(&c, &ann.name, "not-the-password").await;
    assert_eq!(wrong.status(), 403);
    assert!(wrong.headers().get("set-cookie").is_none(), "no session on a wrong password");
    let wrong_body = wrong.text().await.expect("body");
    assert!(wrong_body.contains("Invalid user name or password."));
    assert!(wrong_body.contains(&format!("value=\"{}\"", ann.name)), "the form keeps the user name");

    let ghost = format!("nouser{}", random_hex(4));
    let unknown = hub.login(&c, &ghost, "whatever-pw").await;
    assert_eq!(unknown.status(), 403);
    assert!(unknown.headers().get("set-cookie").is_none());
    assert!(
        unknown.text().await.expect("body").contains("Invalid user name or password."),
        "same message for an unknown user"
    );

    let bad = hub.login(&c, "../../etc/passwd", "x").await;
    assert_eq!(bad.status(), 403);
    let empty = hub.login(&c, "", "").await;
    assert_eq!(empty.status(), 400);

    let logs = support::logs();
    assert!(
        support::log_line_with(&[&ann.name, "login refused", "PAM", "refused the password"]),
        "the log says PAM refused ann"
    );
    assert!(support::log_line_with(&[&ghost, "login refused", "PAM"]), "the log says PAM refused the unknown user");
    assert!(logs.contains("invalid user name"), "the log says the name was invalid");
    assert!(!logs.contains("not-the-password") && !logs.contains("whatever-pw"), "passwords are never logged");
    // No one is logged in.
    let r = c.get(hub.url("/hub/home")).send().await.expect("home");
    assert_eq!(r.status(), 303);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_spawn_shows_reason_and_log_tail() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    // A "server" that writes to stderr and exits: the hub appends its own arguments, which
    // sh receives as $0.. and ignores.
    let hub =
        TestHub::start_with_cmd(&pam, &["/bin/sh", "-c", "echo \"boom: cannot import jupyterlab\" >&2; exit 3"]).await;
    let c = hub.client();
    assert_eq!(hub.login(&c, &ann.name, &ann.password).await.status(), 303);
    use futures_util::StreamExt;
    let resp = c.get(hub.url(&format!("/hub/api/users/{}/server/progress", ann.name))).send().await.expect("progress");
    let mut events = String::new();
    let mut stream = resp.bytes_stream();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        events.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(events.contains("\"failed\":true"), "{events}");
    assert!(events.contains("exited with status 3"), "{events}");
    assert!(events.contains("boom: cannot import jupyterlab"), "the log tail is in the event: {events}");
    let home = c.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    assert!(home.contains("Your server failed") && home.contains("boom: cannot import jupyterlab"), "{home}");
    hub.stop().await;
}

/// The `hub` binary's own checks: bad hub.toml, serve before migrate, migrate twice.
#[test]
fn cli_refuses_bad_config_and_unmigrated_database() {
    let hub = env!("CARGO_BIN_EXE_hub");
    let dir = tempfile::tempdir().expect("tmp");
    // Users' servers must be able to pass through to data_dir (hub migrate checks).
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
    let cfg = dir.path().join("hub.toml");
    std::fs::write(&cfg, "[hub]\nbind = \"127.0.0.1:0\"\n\n[spawner]\ncmd = [\"/bin/true\"]\nstart_timout = \"5s\"\n")
        .expect("write");
    let out = Command::new(hub).args(["check-config", "--config"]).arg(&cfg).output().expect("run hub");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 6") && err.contains("start_timout"), "names line and key: {err}");

    std::fs::write(
        &cfg,
        format!(
            "[hub]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[spawner]\ncmd = [\"/bin/true\"]\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let out = Command::new(hub).arg("serve").env("HUB_CONFIG", &cfg).output().expect("run hub");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not exist") && err.contains("hub migrate"), "{err}");

    let out = Command::new(hub).args(["migrate", "--config"]).arg(&cfg).output().expect("migrate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied"));
    let out = Command::new(hub).args(["migrate", "--config"]).arg(&cfg).output().expect("migrate again");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"), "second migrate is a no-op");

    let out = Command::new(hub).args(["--config", "/nonexistent/hub.toml", "serve"]).output().expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file /nonexistent/hub.toml"));
}

/// A person's path in a real browser: headless Chromium signs in with the form, follows the
/// spawn page into JupyterLab, opens a notebook from the launcher and runs `1+1`; then the
/// Lab's Hub menu (File → Hub Control Panel opens /hub/home, File → Log Out ends the hub
/// session: the old cookie no longer works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_opens_lab_and_runs_a_cell() {
    require_root();
    let script = crate::support::browser_script("lab.mjs");
    let pam = PamService::create();
    let kdc = Kdc::start();
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let opts = HubOptions { kerberos: "event_min_interval = \"0s\"".into(), ..Default::default() };
    let hub = TestHub::start_with(&pam, Some(&kdc), opts).await;
    let shot = hub.data_dir.path().join("lab.png");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(hub.url(""))
        .arg(&ann.name)
        .arg(&ann.password)
        .arg(&shot)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Ok(dir) = std::env::var("HUB_TEST_ARTIFACTS") {
        let _ = std::fs::copy(&shot, Path::new(&dir).join("browser-lab.png"));
    }
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        hub::servers::log_tail(&hub.state.servers.log_path(&ann.name))
    );
    assert!(stdout.contains("1+1 gave"), "{stdout}");
    assert!(
        stdout.contains("Hub Control Panel opened /hub/home") && stdout.contains("old cookie is refused"),
        "{stdout}"
    );
    // The browser's notebook work renewed the ticket through the proxy's taps (the launcher
    // creates and opens Untitled.ipynb).
    assert!(support::log_line_with(&[&ann.name, "trigger=open", "kinit succeeded"]), "an open was seen");
    hub.stop().await;
    assert_eq!(ann.processes(), Vec::<u32>::new());
}

/// Sends `execute_request` for `code` and returns the time until its `execute_reply`.
pub(crate) async fn execute_reply_time(ws: &mut KernelWs, session: &str, code: &str) -> Duration {
    let msg_id = random_hex(16);
    let msg = serde_json::json!({
        "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}
    });
    let t0 = std::time::Instant::now();
    ws.send(Message::text(msg.to_string())).await.expect("send");
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("reply in time")
            .expect("open")
            .expect("frame");
        let Message::Text(t) = m else { continue };
        let v: serde_json::Value = serde_json::from_str(&t).expect("json");
        if v["parent_header"]["msg_id"] == msg_id && v["header"]["msg_type"] == "execute_reply" {
            return t0.elapsed();
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// WebSocket replies through the hub are not held back by Nagle's algorithm: jupyter-server
/// re-enables Nagle after the upgrade, so a direct client waits for its delayed ACK (~40 ms)
/// on every `execute_reply`; the hub's tunnel (TCP_NODELAY, TCP_QUICKACK re-armed on every
/// upstream read) does not. Compared as a ratio against the direct path in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_replies_are_not_nagle_bound() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    // Nagle and delayed ACKs are TCP's: this is the TCP transport's test (a Unix socket has
    // neither).
    let hub = TestHub::start(&pam, None, "transport = \"tcp\"").await;
    let c = hub.client();
    let cookie = hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    let ServerState::Running { endpoint: Endpoint::Tcp(port), token, .. } = hub.state.servers.state(&ann.name) else {
        panic!("not running on TCP")
    };
    let kernel_id = hub.start_kernel(&c, &ann.name, "python3").await;
    let id = &kernel_id;
    let (mut via_hub, hub_session) = kernel_channels(&hub, &ann.name, id, &cookie).await;
    let direct_session = random_hex(16);
    let mut req =
        format!("ws://127.0.0.1:{port}/user/{}/api/kernels/{id}/channels?session_id={direct_session}", ann.name)
            .into_client_request()
            .expect("req");
    req.headers_mut().insert("authorization", token.authorization().clone());
    // The direct client disables Nagle on its side, as browsers do.
    let (mut direct, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await.expect("direct ws");
    // Warm up both paths, then alternate.
    execute_reply_time(&mut via_hub, &hub_session, "1").await;
    execute_reply_time(&mut direct, &direct_session, "1").await;
    let (mut h, mut d) = (Vec::new(), Vec::new());
    for i in 0..15 {
        h.push(execute_reply_time(&mut via_hub, &hub_session, &format!("{i}+1")).await);
        d.push(execute_reply_time(&mut direct, &direct_session, &format!("{i}+1")).await);
    }
    let (h, d) = (median(h), median(d));
    eprintln!("execute_reply median: through the hub {h:?}, direct {d:?}");
    assert!(
        h.as_secs_f64() < 0.5 * d.as_secs_f64(),
        "through the hub {h:?} should be well under the Nagle-bound direct path {d:?}"
    );
    hub.stop().await;
}

/// Requests through the proxy read sessions and routes from memory and never write to the
/// database: activity is kept in memory and batched into the store every `cull_interval`
/// (one hour here, so no batch falls inside the window). Checked with SQLite's
/// `PRAGMA data_version` on one read-only connection, which changes whenever another
/// connection commits (https://sqlite.org/pragma.html#pragma_data_version); a login at the
/// end shows that the probe does see the hub's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_requests_write_nothing_to_the_database() {
    use sqlx::Connection;
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let hub = TestHub::start(&pam, None, "cull_interval = \"1h\"").await;
    let c = hub.client();
    let cookie_pair = hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    let status_url = hub.url(&format!("/user/{}/api/status", ann.name));
    assert_eq!(c.get(&status_url).send().await.expect("status").status(), 200);
    let activity_before = hub.state.servers.snapshot(&ann.name).last_activity;

    let db_path = hub.data_dir.path().join("hub.sqlite");
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&db_path).read_only(true);
    let mut db = sqlx::SqliteConnection::connect_with(&opts).await.expect("open the hub's database read-only");
    let v0 = version(&mut db).await;

    for _ in 0..200 {
        assert_eq!(c.get(&status_url).send().await.expect("status").status(), 200);
    }
    // A notebook save and open (the renewal taps; Kerberos is off here), a kernel over the
    // WebSocket tunnel.
    let nb_url = hub.url(&format!("/user/{}/api/contents/w.ipynb", ann.name));
    assert_eq!(c.put(&nb_url).json(&notebook("1+1")).send().await.expect("save").status(), 201);
    let opened = c.get(format!("{nb_url}?type=notebook&content=1")).send().await.expect("open");
    assert_eq!(opened.status(), 200);
    let kernel_id = hub.start_kernel(&c, &ann.name, "python3").await;
    let (mut ws, session) = kernel_channels(&hub, &ann.name, &kernel_id, &cookie_pair).await;
    assert_eq!(execute(&mut ws, &session, "6*7").await, "42");
    drop(ws);
    assert_eq!(version(&mut db).await, v0, "a proxied request committed to the database");
    let activity_after = hub.state.servers.snapshot(&ann.name).last_activity;
    assert!(activity_after >= activity_before && activity_after > 0, "activity is still noted, in memory");

    // The probe sees the hub's writes: a second login stores a session row.
    hub.login_cookie(&hub.client(), &ann).await;
    assert_ne!(version(&mut db).await, v0, "PRAGMA data_version did not see the login's commit");
    db.close().await.expect("close");
    hub.stop().await;
}

async fn version(db: &mut sqlx::SqliteConnection) -> i64 {
    sqlx::query_scalar::<_, i64>("PRAGMA data_version").fetch_one(db).await.expect("data_version")
}

/// One HTTP/1.1 request on the raw browser connection `sender`: `(status, body)`.
async fn on_connection(
    sender: &mut hyper::client::conn::http1::SendRequest<String>,
    hub: &TestHub,
    path: &str,
    cookie: &str,
) -> (u16, String) {
    let (status, _, body) = fetch(sender, hub, "GET", path, cookie, &[("accept", "application/json")]).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The proxy keeps one upstream connection per browser connection (no pool). On a single
/// keep-alive browser connection: ann's cookie reaches ann's server; ann's cookie on bob's
/// route is refused; bob's cookie reaches bob's server, not the connection kept for ann's;
/// after ann's server is stopped (503) and started again (a new process and token),
/// the same browser connection reaches the new server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_browser_connection_reaches_each_users_own_server() {
    require_root();
    let pam = PamService::create();
    let (ann, bob) = (TestUser::create(), TestUser::create());
    std::fs::write(ann.home.join("only-ann.txt"), "ann's").expect("write ann's file");
    std::os::unix::fs::chown(ann.home.join("only-ann.txt"), Some(ann.uid), Some(ann.gid)).expect("chown");
    let hub = TestHub::start(&pam, None, "").await;
    let (ca, cb) = (hub.client(), hub.client());
    let ann_cookie = hub.login_cookie(&ca, &ann).await;
    let bob_cookie = hub.login_cookie(&cb, &bob).await;
    hub.wait_ready(&ca, &ann.name).await;
    hub.wait_ready(&cb, &bob.name).await;

    let stream = tokio::net::TcpStream::connect(hub.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let ann_file = format!("/user/{}/api/contents/only-ann.txt?content=0", ann.name);
    let bob_file = format!("/user/{}/api/contents/only-ann.txt?content=0", bob.name);

    let (status, body) = on_connection(&mut sender, &hub, &ann_file, &ann_cookie).await;
    assert_eq!(status, 200, "ann's file through ann's server: {body}");
    let (status, _) = on_connection(&mut sender, &hub, &bob_file, &ann_cookie).await;
    assert_eq!(status, 403, "ann's session on bob's route");
    let (status, body) = on_connection(&mut sender, &hub, &bob_file, &bob_cookie).await;
    assert_eq!(status, 404, "bob's server (bob's home has no such file), not ann's kept connection: {body}");
    let (status, _) = on_connection(&mut sender, &hub, &ann_file, &ann_cookie).await;
    assert_eq!(status, 200, "back to ann's server");

    let old_token = hub.state.servers.route(&ann.name).expect("ann's server runs").token;
    assert_eq!(hub.post_form(&ca, "/hub/home/stop").await.status(), 303);
    let (status, _) = on_connection(&mut sender, &hub, &ann_file, &ann_cookie).await;
    assert_eq!(status, 503, "a stopped server is not proxied");
    hub.login_cookie(&ca, &ann).await;
    hub.wait_ready(&ca, &ann.name).await;
    let new = hub.state.servers.route(&ann.name).expect("ann's server runs again");
    assert_ne!(new.token, old_token, "a new server, with a new token (and a port of its own)");
    let (status, body) = on_connection(&mut sender, &hub, &ann_file, &ann_cookie).await;
    assert_eq!(status, 200, "the same browser connection reaches ann's new server: {body}");
    drop(sender);
    hub.stop().await;
}

/// Large downloads from a real jupyter-server (its `/files/` handler, tornado's
/// StaticFileHandler) arrive whole on one kept-alive browser connection: the proxy moves their
/// bodies with splice(2) (`splice.rs`, counted in `hub_proxy_spliced_bytes_total`), and the
/// server connection it took back from hyper serves the requests after them. Interleaved:
/// a small JSON request, a range (206), a HEAD (no body, not spliced) and a conditional GET
/// answered 304 (whose Content-Length, if any, describes no body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_downloads_arrive_whole_on_one_connection() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    // Bytes that differ at every offset, so a shifted, reordered or zero-filled body fails.
    let pattern =
        |len: usize| -> Vec<u8> { (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i as u8)).collect() };
    let (big, mid) = (pattern(3 * 1024 * 1024 + 7), pattern(200_003));
    for (name, data) in [("big.bin", &big), ("mid.bin", &mid)] {
        std::fs::write(ann.home.join(name), data).expect("write");
        std::os::unix::fs::chown(ann.home.join(name), Some(ann.uid), Some(ann.gid)).expect("chown");
    }
    let hub = TestHub::start(&pam, None, "").await;
    let c = hub.client();
    let cookie = hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    let stream = tokio::net::TcpStream::connect(hub.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let before = hub.state.metrics.spliced_bytes();
    let big_path = format!("/user/{}/files/big.bin", ann.name);

    let (status, headers, body) = fetch(&mut sender, &hub, "GET", &big_path, &cookie, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], big.len().to_string().as_str());
    assert!(body.as_ref() == big.as_slice(), "3 MiB arrived intact ({} bytes)", body.len());
    let modified = headers.get("last-modified").expect("tornado sends Last-Modified").clone();
    let (status, _, body) =
        fetch(&mut sender, &hub, "GET", &format!("/user/{}/api/status", ann.name), &cookie, &[]).await;
    assert_eq!(status, 200, "a small request after a spliced body, on the same connection");
    assert!(String::from_utf8_lossy(&body).contains("started"), "api/status JSON");
    let (status, _, body) =
        fetch(&mut sender, &hub, "GET", &big_path, &cookie, &[("range", "bytes=1000-400999")]).await;
    assert_eq!(status, 206, "a range");
    assert!(body.as_ref() == &big[1000..401_000], "the range arrived intact ({} bytes)", body.len());
    let (status, headers, body) = fetch(&mut sender, &hub, "HEAD", &big_path, &cookie, &[]).await;
    assert_eq!((status, body.len()), (200, 0), "HEAD has no body");
    assert_eq!(headers["content-length"], big.len().to_string().as_str());
    let modified = modified.to_str().expect("ascii");
    let (status, _, body) =
        fetch(&mut sender, &hub, "GET", &big_path, &cookie, &[("if-modified-since", modified)]).await;
    assert_eq!((status, body.len()), (304, 0), "not modified: no body");
    let (status, _, body) = fetch(&mut sender, &hub, "GET", &big_path, &cookie, &[]).await;
    assert_eq!(status, 200);
    assert!(body.as_ref() == big.as_slice(), "again, intact");
    let (status, _, body) =
        fetch(&mut sender, &hub, "GET", &format!("/user/{}/files/mid.bin", ann.name), &cookie, &[]).await;
    assert_eq!(status, 200);
    assert!(body.as_ref() == mid.as_slice(), "200 KB, just over the splice threshold, intact");

    // Each spliced body is its length less what hyper had read with the head (at most its
    // read buffer, ~400 KiB); three bodies of this size cannot all have been copied.
    let moved = hub.state.metrics.spliced_bytes() - before;
    let total = (2 * big.len() + 400_000 + mid.len()) as u64;
    assert!(moved >= big.len() as u64 && moved <= total, "{moved} of {total} body bytes spliced");
    hub.stop().await;
}

/// Sends `method path` with `cookie` and `extra` headers on `sender`'s connection; returns
/// the status, headers and whole body.
async fn fetch(
    sender: &mut hyper::client::conn::http1::SendRequest<String>,
    hub: &TestHub,
    method: &str,
    path: &str,
    cookie: &str,
    extra: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, bytes::Bytes) {
    use http_body_util::BodyExt;
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", hub.addr.to_string())
        .header("cookie", cookie);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    sender.ready().await.expect("connection still open");
    let resp =
        sender.send_request(req.body(String::new()).expect("request")).await.expect("response on the same connection");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

/// Sends `request` (a whole HTTP/1.1 request) on a new connection to the Unix socket `path`
/// and returns what came back before the server closed or 5 s passed.
fn raw_unix_request(path: &Path, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).expect("connect to the server's socket");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
