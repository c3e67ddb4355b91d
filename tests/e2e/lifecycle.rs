//! Server lifecycle across hub restarts, with the real `hub` binary: `kill -9` the hub with
//! servers running and one half-started, restart it, and every user is back at the same URL
//! with the same cookie, with no orphans; a reused pid is neither adopted nor signalled.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hub::store::sqlite::SqliteStore;
use hub::store::{ServerRecord, Store};

use crate::support::{HubProcess, Kdc, PamService, TestUser, require_root, venv};

pub(crate) fn client_of(base: &str) -> reqwest::Client {
    crate::support::client_for(base)
}

pub(crate) async fn login(base: &str, c: &reqwest::Client, u: &TestUser) {
    let r = c
        .post(format!("{base}/hub/login"))
        .form(&[("username", u.name.as_str()), ("password", u.password.as_str()), ("next", "")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303, "login of {}", u.name);
}

/// Polls `api/status` through the hub until 200.
pub(crate) async fn wait_status(base: &str, c: &reqwest::Client, u: &TestUser, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = c.get(format!("{base}/user/{}/api/status", u.name)).header("accept", "application/json").send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} never answered through the hub", u.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The home page, and the server pid it shows ("running (pid N)").
pub(crate) async fn home(base: &str, c: &reqwest::Client) -> (String, Option<u32>) {
    let body = c.get(format!("{base}/hub/home")).send().await.expect("home").text().await.expect("body");
    let pid = body.split("(pid ").nth(1).and_then(|r| r.split(')').next()).and_then(|p| p.parse().ok());
    (body, pid)
}

fn write_config(dir: &Path, pam: &PamService, kdc: &Kdc) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let text = format!(
        "[hub]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ndata_dir = \"{d}\"\n\
         [auth]\npam_service = \"{pam}\"\n[spawner]\ncmd = [\"{venv}/bin/jupyter-lab\"]\nstart_timeout = \"60s\"\n\
         [kerberos]\nenabled = true\nrealm = \"{realm}\"\nkrb5_config = \"{conf}\"\n",
        d = dir.display(),
        pam = pam.name,
        venv = venv().display(),
        realm = kdc.realm,
        conf = kdc.krb5_conf().display(),
    );
    let path = dir.join("hub.toml");
    std::fs::write(&path, text).expect("hub.toml");
    let out =
        Command::new(env!("CARGO_BIN_EXE_hub")).args(["migrate", "--config"]).arg(&path).output().expect("migrate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

/// Records `user`'s server as running as `pid` (started at `ticks`) on port 1 with `token`,
/// as a hub that was killed would have left it.
async fn record_running(store: &SqliteStore, user: &TestUser, pid: u32, ticks: i64, token: &str) {
    store.upsert_user(&user.name, false, 0).await.expect("user");
    store
        .put_server(&ServerRecord {
            username: user.name.clone(),
            state: "running".into(),
            pid: Some(i64::from(pid)),
            port: Some(1),
            token: Some(token.into()),
            pid_start: Some(ticks),
            uid: Some(i64::from(user.uid)),
            gid: Some(i64::from(user.gid)),
            ..Default::default()
        })
        .await
        .expect("server record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_readopts_servers() {
    require_root();
    let pam = PamService::create();
    let kdc = Kdc::start();
    let users: Vec<TestUser> = (0..3).map(|_| TestUser::create()).collect();
    let late = TestUser::create(); // logs in just before the kill: its spawn is cut short
    let reused = TestUser::create(); // its recorded pid now belongs to another process
    let damaged = TestUser::create(); // its live server's recorded token cannot be read back
    for u in users.iter().chain([&late]) {
        kdc.add_user_with_keytab(u);
    }
    let dir = tempfile::Builder::new().prefix("hub-lifecycle-").tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
    let config = write_config(dir.path(), &pam, &kdc);
    let log = dir.path().join("hub.log");

    let mut hub = HubProcess::start(&config, &log);
    let base = hub.base.clone();
    let clients: Vec<reqwest::Client> = users.iter().map(|_| client_of(&base)).collect();
    for (u, c) in users.iter().zip(&clients) {
        login(&base, c, u).await;
    }
    let mut pids = Vec::new();
    for (u, c) in users.iter().zip(&clients) {
        wait_status(&base, c, u, Duration::from_secs(90)).await;
        pids.push(home(&base, c).await.1.expect("pid on the home page"));
    }
    let late_client = client_of(&base);
    login(&base, &late_client, &late).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the spawn is under way, not done
    hub.kill9();

    // A recorded "running" server whose pid is now someone else's process.
    let impostor = Command::new("sleep").arg("300").uid(reused.uid).gid(reused.gid).spawn().expect("sleep as the user");
    // A live process of the user, recorded right, except for a token no header can carry.
    let mut unreachable = Command::new("sleep")
        .arg("300")
        .uid(damaged.uid)
        .gid(damaged.gid)
        .process_group(0)
        .spawn()
        .expect("sleep as the user");
    {
        let store =
            SqliteStore::open(&format!("sqlite://{}/hub.sqlite", dir.path().display()), false).await.expect("db");
        let ticks = |pid| hub::spawner::local::start_ticks(pid).expect("ticks");
        record_running(&store, &damaged, unreachable.id(), ticks(unreachable.id()), "bad\ntoken").await;
        // The recorded process started at another time.
        record_running(&store, &reused, impostor.id(), ticks(impostor.id()) - 1, "x").await;
    }

    let _hub2 = HubProcess::start(&config, &log);
    // Same URL, same cookies, same processes.
    for ((u, c), pid) in users.iter().zip(&clients).zip(&pids) {
        wait_status(&base, c, u, Duration::from_secs(20)).await;
        let (body, now) = home(&base, c).await;
        assert_eq!(now, Some(*pid), "{} kept the same server process", u.name);
        assert!(body.contains("next renewal"), "{}'s ticket is back on the renewer's timer: {body}", u.name);
        let mut tree = hub::spawner::local::descendants(*pid);
        tree.push(*pid);
        for p in u.processes() {
            assert!(tree.contains(&p), "process {p} of {} is not part of its server (an orphan)", u.name);
        }
    }
    // The half-started server either finished and was adopted, or was cleaned up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (body, pid) = home(&base, &late_client).await;
        if body.contains("data-state=\"running\"") {
            wait_status(&base, &late_client, &late, Duration::from_secs(5)).await;
            let mut tree = hub::spawner::local::descendants(pid.expect("pid"));
            tree.push(pid.expect("pid"));
            assert!(late.processes().iter().all(|p| tree.contains(p)), "no orphan of the half-started spawn");
            break;
        }
        if body.contains("data-state=\"stopped\"") || body.contains("data-state=\"failed\"") {
            assert_eq!(late.processes(), Vec::<u32>::new(), "a cleaned-up spawn leaves no process");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the half-started server was neither adopted nor cleaned: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The server the hub could not reach again was stopped, not left running unseen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while unreachable.try_wait().expect("wait").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "a server with an unreadable record was left running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let store =
            SqliteStore::open(&format!("sqlite://{}/hub.sqlite", dir.path().display()), false).await.expect("db");
        let rec = store.get_server(&damaged.name, "").await.expect("db").expect("record");
        assert_eq!(rec.state, "stopped");
        assert!(rec.message.as_deref().unwrap_or_default().contains("record was unreadable"), "{:?}", rec.message);
    }
    // The impostor was neither adopted nor signalled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hub::spawner::local::owner_uid(impostor.id()).is_some(), "a reused pid must not be killed");
    let logs = std::fs::read_to_string(&log).expect("log");
    assert!(
        logs.lines().any(|l| l.contains(&reused.name) && l.contains("not adopted")),
        "the reused pid is reported as not adopted"
    );
    let mut impostor = impostor;
    let _ = impostor.kill();
    let _ = impostor.wait();
}

/// A server killed from outside is noticed and shown as stopped, with how it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_from_outside_is_shown() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let hub = crate::support::TestHub::start(&pam, None, "").await;
    let c = hub.client();
    login(&format!("http://{}", hub.addr), &c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    let (_, pid) = home(&format!("http://{}", hub.addr), &c).await;
    let pid = pid.expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (body, _) = home(&format!("http://{}", hub.addr), &c).await;
        if body.contains("data-state=\"failed\"") {
            assert!(body.contains("killed by signal 9 (SIGKILL) unexpectedly"), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dead server is still shown as running: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("status");
    assert_eq!(r.status(), 503, "a dead server is not proxied");
    hub.stop().await;
}

/// Culling: with a 5 s idle timeout an untouched server is stopped, while a server whose
/// only activity is WebSocket traffic to a kernel keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn culling_stops_idle_servers_but_not_busy_ones() {
    require_root();
    let pam = PamService::create();
    let (idle, busy) = (TestUser::create(), TestUser::create());
    let opts = crate::support::HubOptions {
        spawner: "cull_idle_timeout = \"5s\"\ncull_interval = \"1s\"".into(),
        ..Default::default()
    };
    let hub = crate::support::TestHub::start_with(&pam, None, opts).await;
    let (ci, cb) = (hub.client(), hub.client());
    let base = format!("http://{}", hub.addr);
    login(&base, &ci, &idle).await;
    let cookie = hub.login_cookie(&cb, &busy).await;
    hub.wait_ready(&ci, &idle.name).await;
    hub.wait_ready(&cb, &busy.name).await;
    let kernel_id = hub.start_kernel(&cb, &busy.name, "python3").await;
    let (mut ws, session) = crate::kernel_channels(&hub, &busy.name, &kernel_id, &cookie).await;

    // Keep the busy user's kernel talking for 10 s; touch nothing of the idle user's.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < until {
        crate::execute_reply_time(&mut ws, &session, "1").await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (body, _) = home(&base, &ci).await;
    assert!(
        body.contains("data-state=\"stopped\"") && body.contains("cull_idle_timeout"),
        "idle server culled: {body}"
    );
    assert_eq!(idle.processes(), Vec::<u32>::new(), "a culled server leaves no process");
    assert!(
        matches!(hub.state.servers.state(&busy.name), hub::servers::ServerState::Running { .. }),
        "WebSocket traffic counts as activity"
    );
    hub.stop().await;
}

/// Spawn limits answer 429 with Retry-After, as JupyterHub does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_limit_answers_429() {
    require_root();
    let pam = PamService::create();
    let (a, b) = (TestUser::create(), TestUser::create());
    // A "server" that never answers, so the first spawn stays in progress.
    let opts = crate::support::HubOptions {
        cmd: Some(r#"["/bin/sh", "-c", "sleep 60"]"#.into()),
        spawner: "concurrent_spawn_limit = 1".into(),
        ..Default::default()
    };
    let hub = crate::support::TestHub::start_with(&pam, None, opts).await;
    let base = format!("http://{}", hub.addr);
    let (ca, cb) = (client_of(&base), client_of(&base));
    login(&base, &ca, &a).await;
    login(&base, &cb, &b).await;
    let r = cb.get(format!("{base}/hub/spawn")).send().await.expect("spawn page");
    assert!(
        r.text().await.expect("body").contains("Start my server"),
        "a GET starts nothing; the page offers a button"
    );
    let r = crate::support::post_form(&base, &cb, "/hub/spawn").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "5");
    assert!(r.text().await.expect("body").contains("concurrent_spawn_limit"));
    // Once the first spawn is cancelled, the second may start.
    let r = crate::support::post_form(&base, &ca, "/hub/home/stop").await;
    assert_eq!(r.status(), 303);
    let r = crate::support::post_form(&base, &cb, "/hub/spawn").await;
    assert_eq!(r.status(), 200, "the spawn page, now that there is room");
    hub.stop().await;
}

/// SIGTERM-style shutdown: open WebSockets are closed at once (not after the 30 s
/// shutdown_timeout), and with `stop_servers_on_shutdown = false` the server keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_and_keeps_servers() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    // A short header_read_timeout: an upgraded connection (the WebSocket) is not subject to it.
    let opts = crate::support::HubOptions {
        keep_servers: true,
        hub: "header_read_timeout = \"1s\"".into(),
        ..Default::default()
    };
    let hub = crate::support::TestHub::start_with(&pam, None, opts).await;
    let c = hub.client();
    let cookie = hub.login_cookie(&c, &ann).await;
    hub.wait_ready(&c, &ann.name).await;
    let (_, pid) = home(&format!("http://{}", hub.addr), &c).await;
    let kernel_id = hub.start_kernel(&c, &ann.name, "python3").await;
    let (mut ws, session) = crate::kernel_channels(&hub, &ann.name, &kernel_id, &cookie).await;
    crate::execute_reply_time(&mut ws, &session, "1").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    crate::execute_reply_time(&mut ws, &session, "2").await;

    let t0 = std::time::Instant::now();
    hub.stop().await;
    assert!(t0.elapsed() < Duration::from_secs(10), "shutdown waited {:?} (WebSockets must not hold it)", t0.elapsed());
    use futures_util::StreamExt;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the WebSocket was closed by the shutdown");
    let pid = pid.expect("pid");
    assert_eq!(hub::spawner::local::owner_uid(pid), Some(ann.uid), "the server outlives the hub");
}

/// Admins read a user's server log from the hub; other users may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_read_server_logs() {
    require_root();
    let pam = PamService::create();
    let (admin, ann) = (TestUser::create(), TestUser::create());
    let opts = crate::support::HubOptions {
        cmd: Some(r#"["/bin/sh", "-c", "echo 'hello from the server'; exit 1"]"#.into()),
        auth: format!("admin_users = [\"{}\"]", admin.name),
        ..Default::default()
    };
    let hub = crate::support::TestHub::start_with(&pam, None, opts).await;
    let base = format!("http://{}", hub.addr);
    let (ca, cn) = (client_of(&base), client_of(&base));
    login(&base, &ca, &admin).await;
    login(&base, &cn, &ann).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !home(&base, &cn).await.0.contains("data-state=\"failed\"") {
        assert!(tokio::time::Instant::now() < deadline, "the spawn should fail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = ca.get(format!("{base}/hub/admin/logs/{}", ann.name)).send().await.expect("log");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("hello from the server"));
    let r = cn.get(format!("{base}/hub/admin/logs/{}", admin.name)).send().await.expect("log");
    assert_eq!(r.status(), 403, "a non-admin may not read logs");
    let r = ca.get(format!("{base}/hub/admin/logs/..%2Fetc")).send().await.expect("log");
    assert_eq!(r.status(), 400);
    hub.stop().await;
}
