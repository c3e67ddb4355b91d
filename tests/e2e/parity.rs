//! What JupyterHub users reach for every day (issue 25), against the real binary's router,
//! real PAM users and real JupyterLab: a hub API token that reaches the user's server,
//! JupyterLab's Hub menu, kernel-aware culling, the token page and announcements.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{HubOptions, PamService, TestHub, TestUser, client_for, require_root, venv};

/// A new API token of `user` (signed in on `c`) with `scopes`, made with the session and its
/// XSRF token as the browser would.
async fn token_for(hub: &TestHub, c: &reqwest::Client, user: &str, scopes: Value) -> String {
    let home = c.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
    let xsrf = crate::support::xsrf_in(&home).expect("xsrf on the home page");
    let r = c
        .post(hub.url(&format!("/hub/api/users/{user}/tokens")))
        .header("X-XSRFToken", &xsrf)
        .json(&json!({"note": "script", "scopes": scopes}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_string()
}

/// A script with only a hub API token (`access:servers!server=ann/`) uses jupyter_server's
/// REST API and a kernel WebSocket through the hub (tornado's client, no cookie, no Origin);
/// the kernel runs as ann. A token without the scope gets JupyterHub's 403 JSON, and the
/// token never reaches the server (the server answers only to its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_api_token_reaches_the_users_server_and_its_kernels() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let hub = TestHub::start_with(&pam, None, HubOptions::default()).await;
    let c = client_for(&hub.url(""));
    assert_eq!(hub.login(&c, &ann.name, &ann.password).await.status(), 303);
    hub.wait_ready(&c, &ann.name).await;
    let access = token_for(&hub, &c, &ann.name, json!([format!("access:servers!server={}/", ann.name)])).await;
    let read_only = token_for(&hub, &c, &ann.name, json!([format!("read:users!user={}", ann.name)])).await;

    let out = tokio::process::Command::new(venv().join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/token_client.py"))
        .args([hub.url(""), ann.name.clone(), access.clone()])
        .output()
        .await
        .expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(stdout.trim()).expect("the client's JSON");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["status_has_kernels"], true, "jupyter_server's /api/status: {v}");
    assert_eq!(v["save"], 201, "a notebook saved with a token: {v}");
    assert_eq!(v["start_kernel"], 201, "{v}");
    assert_eq!(v["kernel_uid"], ann.uid, "the kernel runs as ann: {v}");
    assert_eq!(v["delete_kernel"], 204, "{v}");

    let plain = reqwest::Client::new();
    let r = plain
        .get(hub.url(&format!("/user/{}/api/status", ann.name)))
        .header("Authorization", format!("token {read_only}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], 403);
    assert!(body["message"].as_str().expect("message").contains("access:servers"), "{body}");
    let r = plain
        .get(hub.url(&format!("/user/{}/api/status", ann.name)))
        .header("Authorization", format!("Bearer {access}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200, "Bearer works too");
    hub.stop().await;
}

/// Kernel-aware culling: with the browser gone and `cull_idle_timeout = 5s`, a server whose
/// kernel sleeps for 40 s (busy, silent: no traffic through the hub) is kept until the cell
/// finishes and culled after; an untouched server is culled at once. Meanwhile the REST API
/// reports the busy server as active (the clock an external jupyterhub-idle-culler reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_kernel_keeps_its_server_until_the_cell_ends() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    require_root();
    let pam = PamService::create();
    let (idle, sleeper) = (TestUser::create(), TestUser::create());
    let opts =
        HubOptions { spawner: "cull_idle_timeout = \"5s\"\ncull_interval = \"1s\"".into(), ..Default::default() };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let (ci, cs) = (client_for(&hub.url("")), client_for(&hub.url("")));
    assert_eq!(hub.login(&ci, &idle.name, &idle.password).await.status(), 303);
    let cookie = hub.login_cookie(&cs, &sleeper).await;
    hub.wait_ready(&cs, &sleeper.name).await;
    let token = token_for(&hub, &cs, &sleeper.name, json!([format!("read:users!user={}", sleeper.name)])).await;
    let kernel_id = hub.start_kernel(&cs, &sleeper.name, "python3").await;
    let (mut ws, session) = crate::kernel_channels(&hub, &sleeper.name, &kernel_id, &cookie).await;
    let msg_id = crate::support::random_hex(16);
    let msg = json!({
        "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": "import time; time.sleep(40)", "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}
    });
    ws.send(Message::text(msg.to_string())).await.expect("send");
    // Wait for the kernel to say it is busy with the cell, then close the "browser".
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("ok");
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t).expect("json");
        if v["parent_header"]["msg_id"] == msg_id.as_str() && v["content"]["execution_state"] == "busy" {
            break;
        }
    }
    let busy_since = std::time::Instant::now();
    let _ = ws.close(None).await;
    drop(ws);

    let running = |name: &str| matches!(hub.state.servers.state(name), hub::servers::ServerState::Running { .. });
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!running(&idle.name), "the untouched server is culled");
    assert!(running(&sleeper.name), "a busy kernel keeps its server although nothing went through the hub for 20 s");
    let r = reqwest::Client::new()
        .get(hub.url(&format!("/hub/api/users/{}", sleeper.name)))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("get user");
    let v: Value = r.json().await.expect("json");
    let reported = humantime::parse_rfc3339(v["last_activity"].as_str().expect("time"))
        .expect("RFC 3339")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    assert!(hub::unix_now() - reported <= 3, "the API reports the busy server as active now: {v}");
    // Culled after the cell ends (40 s after it began), not before.
    let deadline = busy_since + Duration::from_secs(90);
    while running(&sleeper.name) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let culled_after = busy_since.elapsed();
    assert!(!running(&sleeper.name), "culled once idle");
    assert!(culled_after >= Duration::from_secs(40), "not culled while the cell ran ({culled_after:?})");
    assert!(crate::support::log_line_with(&["culling an idle server", &sleeper.name]));
    hub.stop().await;
}

/// `[hub] announcement` on the login, home and spawn pages (escaped; a per-page key
/// overrides it), changed without a restart by SIGHUP to the real `hub serve`; a file that no
/// longer validates changes nothing and says why in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_show_escaped_and_change_on_sighup() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let dir = tempfile::Builder::new().prefix("hub-announce-").tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config = dir.path().join("hub.toml");
    let write = |hub_extra: &str| {
        std::fs::write(
            &config,
            format!(
                "[hub]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{hub_extra}\n\
                 [auth]\npam_service = \"{}\"\n[spawner]\ncmd = [\"{}/bin/jupyter-lab\"]\n[kerberos]\nenabled = false\n",
                dir.path().display(),
                pam.name,
                venv().display()
            ),
        )
        .expect("hub.toml")
    };
    write(
        "announcement = \"Maintenance <b>Saturday</b>\\nSave your work.\"\nannouncement_spawn = \"The GPU queue is long\"",
    );
    let status =
        std::process::Command::new(env!("CARGO_BIN_EXE_hub")).args(["migrate", "--config"]).arg(&config).status();
    assert!(status.expect("migrate").success());
    let log = dir.path().join("hub.log");
    let hub = crate::support::HubProcess::start(&config, &log);
    // `c` signs in; the login page is read by a client without a session (a signed-in one is
    // sent on to /hub/home).
    let (c, anonymous) = (client_for(&hub.base), client_for(&hub.base));
    let get = |c: &reqwest::Client, path: &'static str| {
        let (c, base) = (c.clone(), hub.base.clone());
        async move { c.get(format!("{base}{path}")).send().await.expect("get").text().await.expect("body") }
    };
    let text = |path: &'static str| get(if path == "/hub/login" { &anonymous } else { &c }, path);
    let login = text("/hub/login").await;
    assert!(
        login.contains(r#"id="announcement">Maintenance &lt;b&gt;Saturday&lt;&#x2F;b&gt;<br>Save your work.</div>"#),
        "escaped, with its line break: {login}"
    );
    assert!(!login.contains("<b>Saturday"));
    let r = crate::support::post_login(&hub.base, &c, &ann.name, &ann.password).await;
    assert_eq!(r.status(), 303);
    assert!(text("/hub/home").await.contains("Maintenance &lt;b&gt;Saturday"), "home");
    let spawn = text("/hub/spawn").await;
    assert!(spawn.contains("The GPU queue is long") && !spawn.contains("Maintenance"), "the spawn page's own: {spawn}");

    let hup = || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(hub.child.id() as i32), nix::sys::signal::Signal::SIGHUP)
            .expect("SIGHUP")
    };
    write("announcement = \"Back to normal\"");
    hup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !text("/hub/login").await.contains("Back to normal") {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not change the announcement:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text("/hub/home").await.contains("Back to normal"), "home too");
    // A broken file: nothing changes, and the log says why.
    write("announcement = \"Broken\"\nannouncment_home = \"typo\"");
    hup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let l = std::fs::read_to_string(&log).expect("log");
        if l.contains("SIGHUP: the configuration does not validate") {
            assert!(l.contains("announcment_home"), "the error names the key");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no log line for the broken file:\n{l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text("/hub/login").await.contains("Back to normal"), "unchanged");
}

/// Runs the browser script `script` with the hub's URL, `args` and a screenshot path (copied to
/// `$HUB_TEST_ARTIFACTS/browser-<name>.png` when set); fails the test unless it exits 0, and
/// returns what it printed.
pub(crate) async fn run_browser(hub: &TestHub, script: &std::path::Path, args: &[&str], name: &str) -> String {
    let shot = hub.data_dir.path().join(format!("{name}.png"));
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(hub.url(""))
        .args(args)
        .arg(&shot)
        .output()
        .await
        .expect("run node");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if let Ok(dir) = std::env::var("HUB_TEST_ARTIFACTS") {
        let _ = std::fs::copy(&shot, std::path::Path::new(&dir).join(format!("browser-{name}.png")));
    }
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// The token page in headless Chromium (`tests/browser/token.mjs`): the announcement on the
/// home page, a token made with a note, an expiry and one scope, shown once, used against the
/// user's server, its last use shown, revoked and then refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_page_in_chromium() {
    require_root();
    let script = crate::support::browser_script("token.mjs");
    let pam = PamService::create();
    let ann = TestUser::create();
    let announcement = "Maintenance on Saturday: save your work";
    let opts = HubOptions { hub: format!("announcement = \"{announcement}\""), ..Default::default() };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let stdout = run_browser(&hub, &script, &[&ann.name, &ann.password, announcement], "token").await;
    assert!(stdout.contains("revoked on the page, then refused"), "{stdout}");
    assert!(hub.state.store.tokens_of(&ann.name).await.expect("tokens").is_empty(), "the revoked token is gone");
    hub.stop().await;
}

/// A JSON API call with a token; returns (status, body).
async fn call(hub: &TestHub, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, hub.url(path)).header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.expect("body")).unwrap_or(Value::Null))
}

/// Named servers as JupyterHub has them, against real JupyterLab: created and started through
/// `POST /users/{name}/servers/{server_name}` (progress stream, JupyterHub's model in the
/// user's `servers`), each its own process, socket, log and token at `/user/{name}/{server}/`,
/// a token scoped to one server reaching that one only, JupyterHub 6's name rule and the
/// per-user limit with JupyterHub's messages (also for parallel creations), stop and remove,
/// and re-adoption after a hub restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_servers_as_jupyterhub_has_them() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let opts = || HubOptions {
        spawner: "allow_named_servers = true\nnamed_server_limit_per_user = 1".into(),
        keep_servers: true,
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts()).await;
    let c = client_for(&hub.url(""));
    assert_eq!(hub.login(&c, &ann.name, &ann.password).await.status(), 303);
    hub.wait_ready(&c, &ann.name).await;
    let me = ann.name.clone();
    let t = token_for(&hub, &c, &me, json!(["inherit"])).await;
    use reqwest::Method;

    // Refusals first: a bad name, a reserved one; nothing is created.
    for bad in ["GPU", "a--b", "lab"] {
        let (s, v) = call(&hub, Method::POST, &format!("/hub/api/users/{me}/servers/{bad}"), &t, None).await;
        assert!(s == 400 && v["message"].as_str().expect("m").starts_with("Invalid server_name: "), "{bad}: {v}");
    }
    // Parallel creations of different names: the limit of one holds.
    let (gpu, cpu) = (format!("/hub/api/users/{me}/servers/gpu"), format!("/hub/api/users/{me}/servers/cpu"));
    let (a, b) = tokio::join!(
        call(&hub, Method::POST, &gpu, &t, Some(json!({}))),
        call(&hub, Method::POST, &cpu, &t, Some(json!({}))),
    );
    let ok: Vec<_> = [&a, &b].into_iter().filter(|(s, _)| *s == 201 || *s == 202).collect();
    assert_eq!(ok.len(), 1, "one named server allowed: {a:?} {b:?}");
    let refused = if ok[0] == &a { &b } else { &a };
    assert!(
        refused.1["message"].as_str().expect("m").contains("already has the maximum of 1 named servers"),
        "{refused:?}"
    );
    let name = if ok[0] == &a { "gpu" } else { "cpu" };
    // Its progress stream, in JupyterHub's event format.
    let r = c.get(hub.url(&format!("/hub/api/users/{me}/servers/{name}/progress"))).send().await.expect("progress");
    assert_eq!(r.status(), 200);
    let events = tokio::time::timeout(Duration::from_secs(90), async {
        use futures_util::StreamExt;
        let mut seen = String::new();
        let mut s = r.bytes_stream();
        while let Some(Ok(chunk)) = s.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"ready\":true") || seen.contains("\"failed\":true") {
                break;
            }
        }
        seen
    })
    .await
    .expect("the named server became ready");
    assert!(events.contains("\"ready\":true") && events.contains(&format!("/user/{me}/{name}/")), "{events}");

    // The user model: both servers, in JupyterHub's Server model.
    let (s, u) = call(&hub, Method::GET, &format!("/hub/api/users/{me}"), &t, None).await;
    assert_eq!(s, 200);
    let named = &u["servers"][name];
    for field in [
        "name",
        "ready",
        "pending",
        "url",
        "progress_url",
        "started",
        "last_activity",
        "state",
        "user_options",
        "stopped",
    ] {
        assert!(named.get(field).is_some(), "{field} in {named}");
    }
    assert_eq!((named["name"].as_str(), named["ready"].as_bool()), (Some(name), Some(true)), "{u}");
    assert_eq!(named["url"], format!("/user/{me}/{name}/"));
    assert_eq!(u["servers"][""]["ready"], true, "the default server is there too: {u}");

    // Its own process, socket and log; reached at its own prefix, the default one at its.
    let data = hub.data_dir.path();
    assert!(data.join(format!("sockets/{me}/server@{name}.sock")).exists());
    assert!(data.join(format!("logs/{me}@{name}.log")).exists());
    assert!(ann.processes().len() >= 2, "two servers: {:?}", ann.processes());
    let status = |path: String| {
        let c = c.clone();
        async move { c.get(path).send().await.expect("get").status().as_u16() }
    };
    assert_eq!(status(hub.url(&format!("/user/{me}/{name}/api/status"))).await, 200);
    assert_eq!(status(hub.url(&format!("/user/{me}/api/status"))).await, 200);
    // A token for this server only: it runs a kernel there as ann, and is refused by the
    // default server.
    let only = token_for(&hub, &c, &me, json!([format!("access:servers!server={me}/{name}")])).await;
    let out = tokio::process::Command::new(venv().join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/token_client.py"))
        .args([hub.url(""), format!("{me}/{name}"), only.clone()])
        .output()
        .await
        .expect("run the client");
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
        .unwrap_or_else(|_| panic!("client: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!((v["status"].as_u64(), v["kernel_uid"].as_u64()), (Some(200), Some(u64::from(ann.uid))), "{v}");
    let r = reqwest::Client::new()
        .get(hub.url(&format!("/user/{me}/api/status")))
        .header("Authorization", format!("token {only}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403, "a token for {name} does not reach the default server");

    // Stop: still listed (stopped); remove: gone from the model and the store.
    let (s, _) = call(&hub, Method::DELETE, &format!("/hub/api/users/{me}/servers/{name}"), &t, None).await;
    assert_eq!(s, 204);
    let (_, u) = call(&hub, Method::GET, &format!("/hub/api/users/{me}?include_stopped_servers=1"), &t, None).await;
    assert_eq!(u["servers"][name]["stopped"], true, "{u}");
    let (s, _) =
        call(&hub, Method::DELETE, &format!("/hub/api/users/{me}/servers/{name}"), &t, Some(json!({"remove": true})))
            .await;
    assert_eq!(s, 204);
    let (_, u) = call(&hub, Method::GET, &format!("/hub/api/users/{me}?include_stopped_servers=1"), &t, None).await;
    assert!(u["servers"].get(name).is_none(), "removed: {u}");
    assert!(hub.state.store.get_server(&me, name).await.expect("store").is_none());
    let (s, v) = call(&hub, Method::POST, &format!("/hub/api/users/{me}/servers/other"), &t, None).await;
    assert!(s == 201 || s == 202, "room for a new one after the delete: {v}");
    let key = format!("{me}/other");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !matches!(hub.state.servers.state(&key), hub::servers::ServerState::Running { .. }) {
        assert!(std::time::Instant::now() < deadline, "other did not start: {:?}", hub.state.servers.state(&key));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A hub restart re-adopts the named server: same process, same URL. (Last: the first hub's
    // tasks live on in this test process and would record what they see of its end.)
    let running_pid = |hub: &TestHub| match hub.state.servers.state(&key) {
        hub::servers::ServerState::Running { pid, .. } => Some(pid),
        _ => None,
    };
    let before = running_pid(&hub).expect("other runs");
    let dir = hub.stop_keep_data().await;
    let hub = TestHub::start_in(dir, &pam, None, opts()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(hub.state.servers.state(&key), hub::servers::ServerState::Running { .. }) {
        assert!(std::time::Instant::now() < deadline, "not re-adopted: {:?}", hub.state.servers.state(&key));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(running_pid(&hub), Some(before), "the same process");
    assert_eq!(status(hub.url(&format!("/user/{me}/other/api/status"))).await, 200, "the browser's session goes on");
    let user = hub::core::LinuxUser::lookup(&me).expect("user");
    hub.state.servers.stop_server(&user, "other").await;
    hub.state.servers.stop(&user).await;
    hub.stop().await;
    assert_eq!(ann.processes(), Vec::<u32>::new(), "nothing left");
}

/// The memory limit of the cgroup `pid` runs in (cgroup v1 or v2), in bytes.
fn memory_limit_of(pid: u32) -> u64 {
    let cg = crate::limits::memory_cgroup(pid);
    let text = std::fs::read_to_string(cg.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(cg.join("memory.max")))
        .expect("a memory limit file");
    text.trim().parse().expect("a number")
}

/// Profiles: with two profiles open to ann, signing in starts nothing and the spawn page
/// offers the choice; "large" gives her server the large memory limit in its cgroup and is
/// reported in `user_options`. bob, outside the profile's group, gets the one profile open to
/// him without being asked, and is refused "large" (403 naming who may), an unknown profile
/// and an unknown option (400), with nothing started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_set_the_servers_limits_and_who_may_choose_them() {
    require_root();
    let pam = PamService::create();
    let (ann, bob) = (TestUser::create(), TestUser::create());
    let opts = HubOptions {
        tail: format!(
            "[limits]\nmemory = \"300 MiB\"\n\
             [[profiles]]\nslug = \"small\"\ndisplay_name = \"Small\"\ndescription = \"300 MiB\"\ndefault = true\n\
             [[profiles]]\nslug = \"large\"\ndisplay_name = \"Large\"\ndescription = \"600 MiB\"\ngroups = [\"{}\"]\n\
             limits = {{ memory = \"600 MiB\" }}\nenv = {{ HUB_PROFILE = \"large\" }}\n",
            ann.group
        ),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let (ca, cb) = (client_for(&hub.url("")), client_for(&hub.url("")));
    assert_eq!(hub.login(&ca, &ann.name, &ann.password).await.status(), 303);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        matches!(hub.state.servers.state(&ann.name), hub::servers::ServerState::Stopped { .. }),
        "with a choice to make, signing in starts nothing"
    );
    let page = ca.get(hub.url("/hub/spawn")).send().await.expect("spawn").text().await.expect("body");
    assert!(
        page.contains(r#"<select name="profile">"#)
            && page.contains(r#"<option value="small" selected>Small: 300 MiB</option>"#)
            && page.contains(r#"<option value="large">Large: 600 MiB</option>"#)
            && page.contains(r#"data-autostart="false""#),
        "the choice, not submitted by itself: {page}"
    );
    let xsrf = crate::support::xsrf_in(&page).expect("xsrf");
    let r = ca
        .post(hub.url("/hub/spawn"))
        .form(&[("_xsrf", xsrf.as_str()), ("profile", "large")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    hub.wait_ready(&ca, &ann.name).await;
    let hub::servers::ServerState::Running { pid, .. } = hub.state.servers.state(&ann.name) else {
        panic!("not running")
    };
    assert_eq!(memory_limit_of(pid), 600 << 20, "the large profile's memory limit");
    let env = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    assert!(String::from_utf8_lossy(&env).split('\0').any(|kv| kv == "HUB_PROFILE=large"), "the profile's env");
    let t = token_for(&hub, &ca, &ann.name, json!(["inherit"])).await;
    let (s, u) = call(&hub, reqwest::Method::GET, &format!("/hub/api/users/{}", ann.name), &t, None).await;
    assert_eq!((s, &u["servers"][""]["user_options"]), (200, &json!({"profile": "large"})), "{u}");

    // bob: only "small" is open to him, so his sign-in starts it.
    assert_eq!(hub.login(&cb, &bob.name, &bob.password).await.status(), 303);
    hub.wait_ready(&cb, &bob.name).await;
    let hub::servers::ServerState::Running { pid, .. } = hub.state.servers.state(&bob.name) else {
        panic!("not running")
    };
    assert_eq!(memory_limit_of(pid), 300 << 20, "the default profile");
    let tb = token_for(&hub, &cb, &bob.name, json!(["inherit"])).await;
    let server = format!("/hub/api/users/{}/server", bob.name);
    assert_eq!(call(&hub, reqwest::Method::DELETE, &server, &tb, None).await.0, 204);
    for (options, status, words) in [
        (json!({"profile": "large"}), 403, "is not available to"),
        (json!({"profile": "huge"}), 400, "there is no profile \"huge\""),
        (json!({"colour": "red"}), 400, "unknown option \"colour\""),
    ] {
        let (s, v) = call(&hub, reqwest::Method::POST, &server, &tb, Some(options.clone())).await;
        let m = v["message"].as_str().unwrap_or_default();
        assert!(s == status && m.contains(words), "{options}: {s} {v}");
    }
    let (_, v) = call(&hub, reqwest::Method::POST, &server, &tb, Some(json!({"profile": "large"}))).await;
    assert!(v["message"].as_str().expect("m").contains(&format!("groups {}", ann.group)), "names who may: {v}");
    assert!(matches!(hub.state.servers.state(&bob.name), hub::servers::ServerState::Stopped { .. }), "nothing started");
    assert_eq!(bob.processes(), Vec::<u32>::new());
    hub.stop().await;
}

/// Named servers and profiles on the home page in headless Chromium
/// (`tests/browser/named.mjs`): create one with the "large" profile, land in its JupyterLab,
/// stop and delete it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_servers_and_profiles_in_chromium() {
    require_root();
    let script = crate::support::browser_script("named.mjs");
    let pam = PamService::create();
    let ann = TestUser::create();
    let opts = HubOptions {
        spawner: "allow_named_servers = true".into(),
        tail: "[[profiles]]\nslug = \"small\"\ndefault = true\n[[profiles]]\nslug = \"large\"\nlimits = { memory = \"700 MiB\" }\n"
            .into(),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let stdout = run_browser(&hub, &script, &[&ann.name, &ann.password, "gpu"], "named").await;
    assert!(stdout.contains("stopped and deleted"), "{stdout}");
    assert!(hub.state.store.get_server(&ann.name, "gpu").await.expect("store").is_none(), "forgotten");
    hub.stop().await;
}

/// The server's `KRB5CCNAME` (the path after `FILE:`), from its environment.
fn ccache_of(pid: u32) -> std::path::PathBuf {
    let env = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let env = String::from_utf8_lossy(&env);
    let v = env.split('\0').find_map(|kv| kv.strip_prefix("KRB5CCNAME=")).expect("KRB5CCNAME");
    std::path::PathBuf::from(v.trim_start_matches("FILE:"))
}

/// One Kerberos ticket per user serves all their servers: the default and a named server get
/// the same credential cache, and with `remove_ccache_on_stop` stopping one of them leaves the
/// ticket (valid, on the renewer's timer) to the other; it goes when the last one stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_serves_all_of_a_users_servers() {
    require_root();
    let pam = PamService::create();
    let kdc = crate::support::Kdc::start();
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let opts = HubOptions {
        spawner: "allow_named_servers = true".into(),
        kerberos: "remove_ccache_on_stop = true".into(),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, Some(&kdc), opts).await;
    let c = client_for(&hub.url(""));
    assert_eq!(hub.login(&c, &ann.name, &ann.password).await.status(), 303);
    hub.wait_ready(&c, &ann.name).await;
    let t = token_for(&hub, &c, &ann.name, json!(["inherit"])).await;
    let (s, v) = call(&hub, reqwest::Method::POST, &format!("/hub/api/users/{}/servers/gpu", ann.name), &t, None).await;
    assert!(s == 201 || s == 202, "{v}");
    let key = format!("{}/gpu", ann.name);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let pid_of = |key: &str| match hub.state.servers.state(key) {
        hub::servers::ServerState::Running { pid, .. } => Some(pid),
        _ => None,
    };
    while pid_of(&key).is_none() {
        assert!(std::time::Instant::now() < deadline, "the named server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (default_pid, named_pid) = (pid_of(&ann.name).expect("default runs"), pid_of(&key).expect("named runs"));
    let cc = ccache_of(default_pid);
    assert_eq!(ccache_of(named_pid), cc, "one credential cache for both servers");
    assert!(kdc.klist(&cc).status.success(), "a valid ticket");

    let (s, _) = call(&hub, reqwest::Method::DELETE, &format!("/hub/api/users/{}/server", ann.name), &t, None).await;
    assert_eq!(s, 204);
    assert!(cc.exists() && kdc.klist(&cc).status.success(), "the named server still has its ticket");
    assert!(
        hub.state.renewer.status(&ann.name).is_some_and(|st| st.next_renewal.is_some()),
        "still on the renewer's timer"
    );
    let (s, _) =
        call(&hub, reqwest::Method::DELETE, &format!("/hub/api/users/{}/servers/gpu", ann.name), &t, None).await;
    assert_eq!(s, 204);
    assert!(!cc.exists(), "the last server stopped: the ticket goes (remove_ccache_on_stop)");
    hub.stop().await;
}
