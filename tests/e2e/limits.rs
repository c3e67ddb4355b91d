//! Resource limits with the real kernel: a kernel that allocates without bound is killed by
//! the OOM killer inside its server's memory cgroup (200 MiB), the user's home page says so,
//! the server itself and another user's server keep answering, and stop removes the cgroup.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::SinkExt;
use hub::servers::ServerState;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{HubOptions, PamService, TestHub, TestUser, random_hex, require_root};

/// The memory cgroup directory of `pid` (cgroup v2 `0::` line, else the v1 `memory` line).
pub(crate) fn memory_cgroup(pid: u32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    for l in text.lines() {
        let mut p = l.splitn(3, ':');
        let (_, ctrl, path) = (p.next().unwrap_or(""), p.next().unwrap_or(""), p.next().unwrap_or(""));
        if ctrl.split(',').any(|c| c == "memory") {
            return PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
        }
    }
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup line");
    PathBuf::from("/sys/fs/cgroup").join(v2.trim_start_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_ends_a_runaway_kernel_not_the_neighbours() {
    require_root();
    let pam = PamService::create();
    let ann = TestUser::create();
    let bob = TestUser::create();
    let opts = HubOptions {
        tail: format!("[limits]\nmemory = \"200 MiB\"\ntasks = 512\n[limits.users.{}]\ncpu = 0.5\n", ann.name),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let (ca, cb) = (hub.client(), hub.client());
    let cookie = hub.login_cookie(&ca, &ann).await;
    hub.login_cookie(&cb, &bob).await;
    hub.wait_ready(&ca, &ann.name).await;
    hub.wait_ready(&cb, &bob.name).await;

    // The server runs in its own memory cgroup with the configured limit.
    let ServerState::Running { pid, .. } = hub.state.servers.state(&ann.name) else { panic!("not running") };
    let cg = memory_cgroup(pid);
    assert!(cg.ends_with(&ann.name), "ann's server is in a cgroup of its own: {}", cg.display());
    let limit = std::fs::read_to_string(cg.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(cg.join("memory.max")))
        .expect("a memory limit file");
    assert_eq!(limit.trim(), (200u64 << 20).to_string());
    // CPU (ann's own entry) and tasks, in whichever hierarchy holds them.
    let cgroup_file = |ctrl: &str, v1: &str, v2: &str| -> String {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
        let path = text
            .lines()
            .find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, c, path) = (p.next()?, p.next()?, p.next()?);
                c.split(',').any(|x| x == ctrl).then(|| format!("/sys/fs/cgroup/{ctrl}{path}/{v1}"))
            })
            .unwrap_or_else(|| cg.join(v2).display().to_string());
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_string()
    };
    let cpu = cgroup_file("cpu", "cpu.cfs_quota_us", "cpu.max");
    assert!(cpu == "50000" || cpu == "50000 100000", "half a core: {cpu}");
    assert_eq!(cgroup_file("pids", "pids.max", "pids.max"), "512");

    // A kernel that allocates (and touches) 50 MiB at a time, for ever.
    let kernel_id = hub.start_kernel(&ca, &ann.name, "python3").await;
    let (mut ws, session) = crate::kernel_channels(&hub, &ann.name, &kernel_id, &cookie).await;
    let msg = serde_json::json!({
        "header": {"msg_id": random_hex(16), "username": "test", "session": session, "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": "x = []\nwhile True:\n    x.append(bytearray(50 * 1024 * 1024))", "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}
    });
    ws.send(Message::text(msg.to_string())).await.expect("send");

    // The home page says it ran out of memory.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let home = ca.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("body");
        if home.contains("id=\"oom\"") {
            assert!(
                home.contains("killed for going over its memory limit") && home.contains("data-state=\"running\""),
                "the out-of-memory note, with the server still running: {home}"
            );
            break;
        }
        let usage = |f: &str| std::fs::read_to_string(cg.join(f)).unwrap_or_default().trim().to_string();
        assert!(
            tokio::time::Instant::now() < deadline,
            "no out-of-memory note on the home page after 120 s (cgroup usage {} bytes, peak {}, failcnt {}, {} OOM kills)\nserver log:\n{}\nhome page: {home}",
            usage("memory.usage_in_bytes"),
            usage("memory.max_usage_in_bytes"),
            usage("memory.failcnt"),
            oom_kills(&cg),
            hub::servers::log_tail(&hub.state.servers.log_path(&ann.name))
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // ann's server and bob's server still answer.
    for (c, u) in [(&ca, &ann), (&cb, &bob)] {
        let r = c.get(hub.url(&format!("/user/{}/api/status", u.name))).send().await.expect("status");
        assert_eq!(
            r.status(),
            200,
            "{}'s server answers after the OOM kill; its log:\n{}",
            u.name,
            hub::servers::log_tail(&hub.state.servers.log_path(&u.name))
        );
    }
    assert!(oom_kills(&cg) > 0, "the kernel counted the OOM kill in ann's cgroup");
    let ServerState::Running { pid: bob_pid, .. } = hub.state.servers.state(&bob.name) else { panic!("bob's server") };
    assert_eq!(oom_kills(&memory_cgroup(bob_pid)), 0, "bob's server was not touched");

    // Stop: nothing of ann's is left and her cgroup is gone.
    assert_eq!(hub.post_form(&ca, "/hub/home/stop").await.status(), 303);
    let left: Vec<String> = ann
        .processes()
        .into_iter()
        .map(|p| format!("{p}: {}", std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default()))
        .collect();
    assert!(left.is_empty(), "ann's processes outlived the stop: {left:?}");
    assert!(!cg.exists(), "the cgroup is removed with the server: {}", cg.display());
    hub.stop().await;
}

/// The `oom_kill` count of a memory cgroup (`memory.oom_control` on v1, `memory.events` on v2).
fn oom_kills(cg: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(cg.join("memory.oom_control"))
        .or_else(|_| std::fs::read_to_string(cg.join("memory.events")))
        .unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}
