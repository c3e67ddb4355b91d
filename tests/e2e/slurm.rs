//! The Slurm spawner against a real cluster: slurmctld, munge and two slurmd nodes, each in its
//! own network namespace (tests/cluster/slurm.sh), with a real KDC, PAM users, JupyterLab and a
//! GSSAPI PostgreSQL on the login host. The cluster is started once per test process and
//! stopped when it exits; the tests that use it take turns (one lock), since they fill,
//! cancel and break its nodes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{GssPostgres, HubOptions, Kdc, PamService, TestHub, TestUser, require_root};
use crate::{execute, kernel_channels, next_second};
use hub::servers::ServerState;

/// The shared cluster.
pub struct Cluster {
    /// Its shared directory (slurm.conf, munge, the hub binary the nodes run).
    pub dir: PathBuf,
    env: HashMap<String, String>,
    /// The login host's address on the cluster network.
    pub login: IpAddr,
    /// The hub binary as the nodes see it.
    pub hub_bin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static CLUSTER_DIR: OnceLock<PathBuf> = OnceLock::new();
/// One Slurm test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

extern "C" fn stop_cluster() {
    if let Some(dir) = CLUSTER_DIR.get() {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(dir).status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cluster/slurm.sh")
}

/// The cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = PathBuf::from(format!("/var/tmp/hub-slurm-{}", std::process::id()));
        let out = Command::new("bash").arg(script()).arg("start").arg(&dir).output().expect("slurm.sh");
        assert!(
            out.status.success(),
            "the test cluster did not start: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        CLUSTER_DIR.set(dir.clone()).expect("once");
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe { libc::atexit(stop_cluster) };
        let env: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        // The nodes run the hub binary from the shared filesystem, as a site installs it.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let hub_bin = bin.join("hub");
        std::fs::copy(env!("CARGO_BIN_EXE_hub"), &hub_bin).expect("copy hub");
        let login = env["HUB_SLURM_LOGIN_ADDR"].parse().expect("login address");
        Cluster { dir, env, login, hub_bin }
    })
}

impl Cluster {
    fn slurm_conf(&self) -> &str {
        &self.env["SLURM_CONF"]
    }

    /// A Slurm command as root, with the cluster's slurm.conf.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.slurm_conf());
        c
    }

    /// `squeue` for job `id`: (state, reason, nodes, user), or `None` once Slurm forgot it.
    pub fn job(&self, id: u32) -> Option<(String, String, String, String)> {
        let out = self
            .command("squeue")
            .args(["-h", "-t", "all", "-o", "%T|%r|%N|%u", "-j", &id.to_string()])
            .output()
            .expect("squeue");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut f = text.trim().splitn(4, '|');
        Some((f.next()?.into(), f.next()?.into(), f.next()?.into(), f.next()?.into()))
            .filter(|(s, ..): &(String, _, _, _)| !s.is_empty())
    }

    /// Waits until job `id`'s state is one of `states`.
    pub async fn wait_job(&self, id: u32, states: &[&str], within: Duration) -> (String, String, String, String) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let j = self.job(id);
            if let Some(j) = &j
                && states.contains(&j.0.as_str())
            {
                return j.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "job {id} is {j:?}, not one of {states:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node's own /tmp, as the login host sees it.
    pub fn node_tmp(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node).join("tmp")
    }

    /// The `[spawner]` lines of a hub whose servers run on this cluster.
    pub fn spawner_lines(&self) -> String {
        format!(
            "kind = \"slurm\"\n[spawner.slurm]\nhub_url = \"http://{{HUB_ADDR}}\"\nagent = \"{}\"\nslurm_conf = \"{}\"\npoll_interval = \"500ms\"\n",
            self.hub_bin.display(),
            self.slurm_conf()
        )
    }

    /// Submits a root job that takes a whole node (4 CPUs) until cancelled; returns its id.
    pub fn fill(&self, node: &str) -> u32 {
        let out = self
            .command("sbatch")
            .args(["--parsable", "-c", "4", "-w", node, "-o", "/dev/null", "--chdir=/", "--wrap", "sleep 600"])
            .output()
            .expect("sbatch");
        assert!(out.status.success(), "sbatch: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("job id")
    }

    pub fn cancel(&self, id: u32) {
        let _ = self.command("scancel").arg(id.to_string()).status();
    }

    /// Ids and states of the jobs named `hub-<unit>` (the hub's for that user's servers; a test
    /// user's name is unique, while its UID may be an earlier test user's), finished ones too.
    pub fn jobs_of(&self, user: &str) -> Vec<(u32, String)> {
        let names = format!("hub-{user},hub-{user}@gpu");
        let out =
            self.command("squeue").args(["-h", "-t", "all", "--name", &names, "-o", "%i|%T"]).output().expect("squeue");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|').and_then(|(i, st)| Some((i.parse().ok()?, st.to_string()))))
            .collect()
    }

    /// Brings the cluster back to empty and whole, whatever an earlier test left (a failed
    /// test's blockers, a killed node): every active job cancelled, every node idle.
    async fn reset(&self) {
        let out = self.command("squeue").args(["-h", "-o", "%i"]).output().expect("squeue");
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.command("scancel").arg(id).status();
        }
        for node in ["node1", "node2"] {
            let pid = std::fs::read_to_string(self.dir.join(format!("pids/slurmd-{node}"))).unwrap_or_default();
            let alive = pid.trim().parse::<i32>().is_ok_and(|p| {
                std::fs::read_to_string(format!("/proc/{p}/status"))
                    .is_ok_and(|s| !s.lines().any(|l| l.starts_with("State:") && (l.contains('Z') || l.contains('X'))))
            });
            if !alive {
                let out = Command::new("bash")
                    .arg(script())
                    .arg("restart-node")
                    .arg(&self.dir)
                    .arg(node)
                    .output()
                    .expect("restart");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let jobs = self.command("squeue").args(["-h", "-o", "%i"]).output().expect("squeue");
            let nodes = self.command("sinfo").args(["-h", "-N", "-o", "%T"]).output().expect("sinfo");
            let states: std::collections::BTreeSet<String> =
                String::from_utf8_lossy(&nodes.stdout).lines().map(str::to_string).collect();
            if jobs.stdout.is_empty() && states.len() == 1 && states.contains("idle") {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the cluster did not come back: nodes {states:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The cluster for one test: its turn (one test at a time), starting from an empty, whole
/// cluster.
async fn turn() -> (&'static Cluster, tokio::sync::MutexGuard<'static, ()>) {
    let c = cluster();
    let guard = SERIAL.lock().await;
    c.reset().await;
    (c, guard)
}

/// The running server's Slurm job id and node.
fn job_of(hub: &TestHub, user: &str) -> (u32, String) {
    match hub.state.servers.state(user) {
        ServerState::Running { pid, endpoint: hub::core::Endpoint::Tls(r), .. } => (pid, r.node.clone()),
        other => panic!("{user}'s server is not running on a node: {other:?}"),
    }
}

/// Runs `code` on the server's kernel and returns its result's text.
async fn on_node(hub: &TestHub, c: &reqwest::Client, user: &str, cookie: &str, code: &str) -> String {
    let kernel = hub.start_kernel(c, user, "python3").await;
    let (mut ws, session) = kernel_channels(hub, user, &kernel, cookie).await;
    execute(&mut ws, &session, code).await
}

/// Case 1, 2 (one ticket lifetime; the three lifetimes are in the renewer's test below) and
/// the report's refusals: the server starts on a node as the user, the browser's API and a
/// kernel over the WebSocket reach it through the hub over pinned TLS, the kernel has a
/// ticket on the node and reaches the Kerberos-secured PostgreSQL as the user, a renewal on
/// the hub reaches the node, and a stop cancels the job and removes the node's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_runs_on_a_node_as_its_user_with_the_ticket_delivered() {
    require_root();
    let (c, _turn) = turn().await;
    let kdc = Kdc::start_for_nodes(&c.dir, c.login, None);
    let pg = GssPostgres::start_on(&kdc, Some(c.login));
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    pg.create_role(&ann.name);
    let pam = PamService::create();
    let hub = TestHub::start_with(
        &pam,
        Some(&kdc),
        HubOptions {
            spawner: c.spawner_lines(),
            kerberos: "event_min_interval = \"0s\"\n".into(),
            bind: Some(format!("{}:0", c.login)),
            // A kernelspec of the hub's: written on the login host, it must reach the node.
            tail: format!(
                "[[kernelspec]]\nname = \"node-python\"\ndisplay_name = \"Python (hub)\"\n\
                 argv = [\"{}/bin/python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{{connection_file}}\"]\n\
                 env = {{ HUB_KS_MARK = \"for {{username}}\", KRB5CCNAME = \"FILE:{{ccache}}\" }}\n",
                crate::support::venv().display()
            ),
            ..Default::default()
        },
    )
    .await;
    let client = hub.client();
    let cookie = hub.login_cookie(&client, &ann).await;
    hub.wait_ready(&client, &ann.name).await;
    let (job, node) = job_of(&hub, &ann.name);
    assert!(node == "node1" || node == "node2", "{node}");
    let (state, _, nodes, owner) = c.job(job).expect("the job is known to Slurm");
    assert_eq!((state.as_str(), nodes.as_str(), owner.as_str()), ("RUNNING", node.as_str(), ann.name.as_str()));

    let home = client.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("text");
    assert!(home.contains(&format!("Your server is running on {node} (Slurm job {job}).")), "{home}");
    // The REST API (the admin page's data) names the node.
    let r = client.get(hub.url(&format!("/hub/api/users/{}", ann.name))).send().await.expect("user model");
    assert_eq!(r.status(), 200);
    let model: serde_json::Value = r.json().await.expect("json");
    assert_eq!(model["servers"][""]["hub_node"], node.as_str(), "{model}");
    // Through the hub: the REST API and a kernel over the WebSocket, on the node, as ann.
    let r = client.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("status");
    assert_eq!(r.status(), 200);
    let got = on_node(
        &hub,
        &client,
        &ann.name,
        &cookie,
        "import os, socket, subprocess\n(os.getuid(), socket.gethostname(), os.environ['KRB5CCNAME'], subprocess.run(['klist', '-s']).returncode)",
    )
    .await;
    let want_prefix = format!("({}, '{node}', 'FILE:/tmp/hub-agent-{job}-", ann.uid);
    assert!(got.starts_with(&want_prefix) && got.ends_with("/krb5cc', 0)"), "{got}");
    let node_ccache = got.split('\'').nth(3).expect("path").to_string();
    // The hub's [[kernelspec]] is offered on the node and runs there with its environment,
    // and with the node's ticket where it names one.
    let r = client.get(hub.url(&format!("/user/{}/api/kernelspecs", ann.name))).send().await.expect("kernelspecs");
    let specs: serde_json::Value = r.json().await.expect("json");
    assert_eq!(specs["kernelspecs"]["node-python"]["spec"]["display_name"], "Python (hub)", "{specs}");
    let kernel = hub.start_kernel(&client, &ann.name, "node-python").await;
    let (mut ws, session) = kernel_channels(&hub, &ann.name, &kernel, &cookie).await;
    let code = "import os, socket, subprocess\n'|'.join([socket.gethostname(), os.environ['HUB_KS_MARK'], os.environ['KRB5CCNAME'], str(subprocess.run(['klist', '-s']).returncode)])";
    let ks = execute(&mut ws, &session, code).await;
    assert_eq!(ks, format!("'{node}|for {}|{node_ccache}|0'", ann.name), "the hub's kernelspec on the node");
    drop(ws);
    // The ccache is in the node's own /tmp (the login host's /tmp does not have it), 0600, ann's.
    let node_path = got.split('\'').nth(3).expect("path").trim_start_matches("FILE:").to_string();
    assert!(!Path::new(&node_path).exists(), "{node_path} must not be on the login host");
    let seen_from_host = c.node_tmp(&node).join(node_path.trim_start_matches("/tmp/"));
    let meta = std::fs::metadata(&seen_from_host).expect("the node's ccache");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (ann.uid, 0o600));

    // A Kerberos-secured service on the login host, from the node, as ann.
    let psql = format!(
        "import subprocess\nr = subprocess.run(['psql', {:?}, '-tAc', 'select current_user, inet_client_addr()'], capture_output=True, text=True)\nr.stdout.strip() + r.stderr.strip()",
        pg.conninfo_from_nodes(&ann.name)
    );
    let got = on_node(&hub, &client, &ann.name, &cookie, &psql).await;
    let node_addr = &c.env[if node == "node1" { "HUB_SLURM_NODE1_ADDR" } else { "HUB_SLURM_NODE2_ADDR" }];
    assert_eq!(got, format!("'{}|{node_addr}'", ann.name), "psql from the node");

    // A renewal on the hub (a notebook save the proxy sees) reaches the node.
    let before = std::fs::read(&seen_from_host).expect("read");
    next_second().await;
    let nb = crate::notebook("1 + 1");
    let r =
        client.put(hub.url(&format!("/user/{}/api/contents/n.ipynb", ann.name))).json(&nb).send().await.expect("save");
    assert!(r.status().is_success(), "save: {}", r.status());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read(&seen_from_host).ok().as_ref() == Some(&before) {
        assert!(tokio::time::Instant::now() < deadline, "the renewed ticket did not reach the node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hub_copy = hub
        .state
        .renewer
        .ccache_bytes(&hub::core::TicketOwner { username: ann.name.clone(), uid: ann.uid, gid: ann.gid })
        .expect("hub ccache");
    assert_eq!(std::fs::read(&seen_from_host).expect("read"), hub_copy, "the node has the hub's new ticket");

    // Reports: a forged one (no or a wrong signature), a malformed one, one nobody waits for.
    let report = |body: &str, sig: Option<&str>| {
        let mut rq = client.post(hub.url("/hub/api/spawner/report")).body(body.to_string());
        if let Some(s) = sig {
            rq = rq.header("x-hub-signature-256", s);
        }
        rq.send()
    };
    let forged =
        format!(r#"{{"protocol":1,"server":"{}","job_id":"{job}","port":1,"pin":"{}"}}"#, ann.name, "ab".repeat(32));
    assert_eq!(report(&forged, None).await.expect("post").status(), 403, "no signature");
    let wrong = format!("sha256={}", "0".repeat(64));
    assert_eq!(report(&forged, Some(&wrong)).await.expect("post").status(), 403, "a wrong signature");
    let nobody = forged.replace(&format!("\"server\":\"{}\"", ann.name), "\"server\":\"nobody\"");
    assert_eq!(report(&nobody, Some(&wrong)).await.expect("post").status(), 409, "no start waits for it");
    assert_eq!(report("{", Some(&wrong)).await.expect("post").status(), 400);
    // The forged reports changed nothing: the server still answers where it did.
    assert_eq!(job_of(&hub, &ann.name), (job, node.clone()));
    let r = client.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("status");
    assert_eq!(r.status(), 200);

    // Stop: the job is cancelled, the node's private directory (and ticket) is gone.
    let r = hub.post_form(&client, "/hub/home/stop").await;
    assert_eq!(r.status(), 303, "stop");
    c.wait_job(job, &["CANCELLED", "COMPLETED"], Duration::from_secs(30)).await;
    let agent_dir = seen_from_host.parent().expect("dir").to_path_buf();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while agent_dir.exists() {
        assert!(tokio::time::Instant::now() < deadline, "{} is still on the node", agent_dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.stop().await;
}

/// Case 4: with every node busy, the job waits in the queue and the user sees Slurm's reason
/// (the home page and the progress stream); a hub restarted meanwhile cancels the job it can
/// no longer wait for (no orphan in the queue); cancelling from the home page cancels the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_job_shows_slurms_reason_and_cancelling_cancels_it() {
    require_root();
    let (c, _turn) = turn().await;
    let blockers = [c.fill("node1"), c.fill("node2")];
    for b in blockers {
        c.wait_job(b, &["RUNNING"], Duration::from_secs(30)).await;
    }
    let ann = TestUser::create();
    let pam = PamService::create();
    let options = || HubOptions {
        spawner: c.spawner_lines(),
        bind: Some(format!("{}:0", c.login)),
        keep_servers: true,
        ..Default::default()
    };
    // Waits until ann's spawn shows Slurm's pending reason; returns the message and job id.
    let pending = |hub: &TestHub| {
        let state = hub.state.servers.clone();
        let name = ann.name.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let ServerState::Starting { message, .. } = state.state(&name)
                    && message.contains("(Resources)")
                {
                    let job: u32 = message
                        .split_whitespace()
                        .nth(2)
                        .and_then(|w| w.parse().ok())
                        .unwrap_or_else(|| panic!("no job id in {message:?}"));
                    return (message, job);
                }
                assert!(tokio::time::Instant::now() < deadline, "no pending reason: {:?}", state.state(&name));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let hub = TestHub::start_with(&pam, None, options()).await;
    let client = hub.client();
    hub.login_cookie(&client, &ann).await;
    let (message, job) = pending(&hub).await;
    assert!(message.contains("waiting in the queue: waiting for resources"), "{message}");
    let home = client.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("text");
    assert!(home.contains("waiting for resources (every node that fits is busy) (Resources)"), "{home}");
    assert_eq!(c.job(job).map(|j| (j.0, j.1)), Some(("PENDING".to_string(), "Resources".to_string())));

    // The hub restarts while the job waits: the new hub cancels it rather than leave it queued.
    let data = hub.stop_keep_data().await;
    let hub = TestHub::start_in(data, &pam, None, options()).await;
    c.wait_job(job, &["CANCELLED"], Duration::from_secs(30)).await;

    // Waiting again, and cancelled from the home page.
    let client = hub.client();
    hub.login_cookie(&client, &ann).await;
    let (_, job) = pending(&hub).await;
    let r = hub.post_form(&client, "/hub/home/stop").await;
    assert_eq!(r.status(), 303);
    c.wait_job(job, &["CANCELLED"], Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hub.state.servers.state(&ann.name).is_active() {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", hub.state.servers.state(&ann.name));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for b in blockers {
        c.cancel(b);
    }
    hub.stop().await;
}

/// Case 3: a listener of another user on the node's port (the user's node agent is gone, the
/// job still runs) gets no token and no request: the hub's TLS handshake wants the pinned key,
/// fails, and the browser gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_listener_on_the_servers_port_gets_nothing() {
    require_root();
    let (c, _turn) = turn().await;
    let (ann, mallory) = (TestUser::create(), TestUser::create());
    let pam = PamService::create();
    // The job outlives its agent (a site's script may do more after the server), so the port
    // is free for someone else while Slurm still says RUNNING.
    let spawner = format!("{}script = \"#!/bin/sh\\n{{env}}\\n{{cmd}}\\nsleep 300\\n\"\n", c.spawner_lines());
    let hub = TestHub::start_with(
        &pam,
        None,
        HubOptions { spawner, bind: Some(format!("{}:0", c.login)), ..Default::default() },
    )
    .await;
    let client = hub.client();
    hub.login_cookie(&client, &ann).await;
    hub.wait_ready(&client, &ann.name).await;
    let (job, node) = job_of(&hub, &ann.name);
    let addr = match hub.state.servers.state(&ann.name) {
        ServerState::Running { endpoint: hub::core::Endpoint::Tls(r), .. } => r.addr,
        other => panic!("{other:?}"),
    };
    let token = hub.state.servers.route(&ann.name).expect("route").token.as_str().to_string();
    // ann's agent dies; the port is free.
    let status = Command::new("pkill").args(["-KILL", "-u", &ann.name, "-f", "node-agent"]).status().expect("pkill");
    assert!(status.success(), "no node agent of ann's to kill");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the agent's port is still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.job(job).map(|j| j.0), Some("RUNNING".to_string()));

    // mallory listens there with a key of her own, on the same node.
    let dir = tempfile::Builder::new().prefix("impostor-").tempdir_in(&c.dir).expect("tmp");
    let d = dir.path();
    std::os::unix::fs::chown(d, Some(mallory.uid), Some(mallory.gid)).expect("chown");
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=hub-node-agent", "-keyout"])
        .arg(d.join("key.pem"))
        .arg("-out")
        .arg(d.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    for f in ["key.pem", "cert.pem"] {
        std::os::unix::fs::chown(d.join(f), Some(mallory.uid), Some(mallory.gid)).expect("chown");
    }
    let record = d.join("received");
    let ns = format!("/run/netns/{}-{}", c.env["HUB_SLURM_PREFIX"], if node == "node1" { "n1" } else { "n2" });
    let mut impostor = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .args(["setpriv", &format!("--reuid={}", mallory.uid), &format!("--regid={}", mallory.gid), "--init-groups"])
        .arg(crate::support::venv().join("bin/python3"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/impostor_tls.py"))
        .arg(addr.port().to_string())
        .arg(d.join("cert.pem"))
        .arg(d.join("key.pem"))
        .arg(&record)
        .spawn()
        .expect("impostor");
    let ready = record.with_extension("ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(tokio::time::Instant::now() < deadline, "the impostor did not start listening");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The browser's request: refused by the hub before anything is sent.
    let r = client.get(hub.url(&format!("/user/{}/api/status", ann.name))).send().await.expect("request");
    assert_eq!(r.status(), 502, "the impostor's answer must not come back");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let errors = std::fs::read_to_string(record.with_extension("errors")).unwrap_or_default();
    assert!(!errors.is_empty(), "the hub did try the port (the impostor saw a handshake)");
    let got = std::fs::read(&record).unwrap_or_default();
    assert!(got.is_empty(), "the impostor received {} bytes: {:?}", got.len(), String::from_utf8_lossy(&got));
    assert!(!String::from_utf8_lossy(&got).contains(&token));
    assert!(
        crate::support::log_line_with(&["proxy request to the server failed", "not the pinned one"]),
        "the hub's log says why"
    );

    let _ = impostor.kill();
    let _ = impostor.wait();
    let r = hub.post_form(&client, "/hub/home/stop").await;
    assert_eq!(r.status(), 303, "stop");
    c.wait_job(job, &["CANCELLED"], Duration::from_secs(30)).await;
    hub.stop().await;
}

/// Follows `base`'s progress stream for `user` until ready.
async fn wait_ready_at(base: &str, c: &reqwest::Client, user: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let r = c.get(format!("{base}/user/{user}/api/status")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{user}'s server never answered through {base}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Case 5: kill -9 of the hub; the job goes on; the restarted hub re-adopts it (checked with
/// Slurm and over the pinned channel), the browser's session reaches the same server, and the
/// node gets the ticket the hub has now (here one obtained while the hub was down, as after a
/// renewal the killed hub never delivered, or a ticket that expired meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_hub_and_the_job_is_re_adopted() {
    require_root();
    let (c, _turn) = turn().await;
    let kdc = Kdc::start_for_nodes(&c.dir, c.login, None);
    let ann = TestUser::create();
    let keytab = kdc.add_user_with_keytab(&ann);
    let pam = PamService::create();
    let dir = tempfile::Builder::new().prefix("hub-slurm-restart-").tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
    let port = std::net::TcpListener::bind((c.login, 0)).expect("bind").local_addr().expect("addr").port();
    let bind = format!("{}:{port}", c.login);
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[hub]\nbind = \"{bind}\"\npublic_url = \"http://{bind}\"\ndata_dir = \"{}\"\nstop_servers_on_shutdown = false\n\
             [auth]\npam_service = \"{}\"\n[spawner]\ncmd = [\"{}/bin/jupyter-lab\"]\n{}\n\
             [kerberos]\nenabled = true\nrealm = \"{}\"\nkrb5_config = \"{}\"\n",
            dir.path().display(),
            pam.name,
            crate::support::venv().display(),
            c.spawner_lines().replace("{HUB_ADDR}", &bind),
            kdc.realm,
            kdc.krb5_conf().display(),
        ),
    )
    .expect("hub.toml");
    let status = Command::new(env!("CARGO_BIN_EXE_hub")).args(["migrate", "--config"]).arg(&config).status();
    assert!(status.expect("migrate").success());
    let log = dir.path().join("hub.log");
    let mut hub = crate::support::HubProcess::start(&config, &log);
    let base = hub.base.clone();
    let client = crate::support::client_for(&base);
    let r = crate::support::post_login(&base, &client, &ann.name, &ann.password).await;
    assert_eq!(r.status(), 303);
    wait_ready_at(&base, &client, &ann.name).await;
    let jobs = || {
        let name = format!("hub-{}", ann.name);
        let out = c.command("squeue").args(["-h", "--name", &name, "-o", "%i|%T|%N"]).output().expect("squeue");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = jobs();
    assert!(before.contains("|RUNNING|node"), "{before}");
    let mut fields = before.split('|');
    let (job, node) = (fields.next().expect("id").to_string(), fields.nth(1).expect("node").to_string());
    // The node's copy of the ticket (in the agent's directory in the node's own /tmp) is the
    // hub's.
    let hub_ccache = dir.path().join(format!("ccache/krb5cc_{}", ann.uid));
    let agent_dir = std::fs::read_dir(c.node_tmp(&node))
        .expect("node tmp")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("hub-agent-{job}-"))))
        .expect("the agent's directory on the node");
    let node_ccache = agent_dir.join("krb5cc");
    assert_eq!(std::fs::read(&node_ccache).expect("node ccache"), std::fs::read(&hub_ccache).expect("hub ccache"));

    hub.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(jobs(), before, "the job goes on without the hub");
    // While the hub is down, its copy of ann's ticket changes: a new one from her keytab, put
    // in place as the renewer does (ann's, 0600, renamed over the old one).
    next_second().await;
    let staged = dir.path().join("ccache/staged");
    let out = Command::new("kinit")
        .args(["-k", "-t"])
        .arg(&keytab)
        .arg("-c")
        .arg(format!("FILE:{}", staged.display()))
        .arg(format!("{}@{}", ann.name, kdc.realm))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .output()
        .expect("kinit");
    assert!(out.status.success(), "kinit: {}", String::from_utf8_lossy(&out.stderr));
    std::os::unix::fs::chown(&staged, Some(ann.uid), Some(ann.gid)).expect("chown");
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    std::fs::rename(&staged, &hub_ccache).expect("rename");
    let fresh = std::fs::read(&hub_ccache).expect("hub ccache");
    assert_ne!(std::fs::read(&node_ccache).expect("node ccache"), fresh);
    hub = crate::support::HubProcess::start(&config, &log);
    wait_ready_at(&base, &client, &ann.name).await;
    assert_eq!(jobs(), before, "the same job, re-adopted, and no second one");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("re-adopted a running server job"), "{text}");
    // The re-adopted server's node gets the hub's ticket without waiting for the next renewal
    // (hours away with this KDC's 10-hour tickets).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read(&node_ccache).ok().as_ref() != Some(&fresh) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the re-adopted server's node did not get the hub's ticket: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let r = crate::support::post_form(&base, &client, "/hub/home/stop").await;
    assert_eq!(r.status(), 303);
    let id: u32 = before.split('|').next().and_then(|i| i.parse().ok()).expect("job id");
    c.wait_job(id, &["CANCELLED"], Duration::from_secs(30)).await;
    hub.kill9();
}

/// Case 6: the server's node dies (its slurmd and every process on it); Slurm fails the job
/// (NODE_FAIL), the user is told so, and starting again lands on the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_fails_the_server_and_a_new_start_lands_elsewhere() {
    require_root();
    let (c, _turn) = turn().await;
    let ann = TestUser::create();
    let pam = PamService::create();
    let hub = TestHub::start_with(
        &pam,
        None,
        HubOptions { spawner: c.spawner_lines(), bind: Some(format!("{}:0", c.login)), ..Default::default() },
    )
    .await;
    let client = hub.client();
    hub.login_cookie(&client, &ann).await;
    hub.wait_ready(&client, &ann.name).await;
    let (job, node) = job_of(&hub, &ann.name);
    let out = Command::new("bash").arg(script()).args(["kill-node"]).arg(&c.dir).arg(&node).output().expect("kill");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Slurm notices in 24-36 s (SlurmdTimeout=10); the hub within a poll after that.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let message = loop {
        if let ServerState::Failed { message, .. } = hub.state.servers.state(&ann.name) {
            break message;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", hub.state.servers.state(&ann.name));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        message.contains(&format!("Slurm job {job}")) && message.contains(&node) && message.contains("NODE_FAIL"),
        "{message}"
    );
    let home = client.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("text");
    assert!(home.contains("failed or lost contact with Slurm"), "{home}");

    let r = hub.post_form(&client, "/hub/home/start").await;
    assert_eq!(r.status(), 303);
    hub.wait_ready(&client, &ann.name).await;
    let (job2, node2) = job_of(&hub, &ann.name);
    assert!(job2 != job && node2 != node, "started again as job {job2} on {node2}");
    let r = hub.post_form(&client, "/hub/home/stop").await;
    assert_eq!(r.status(), 303);
    c.wait_job(job2, &["CANCELLED"], Duration::from_secs(30)).await;
    hub.stop().await;
    let out =
        Command::new("bash").arg(script()).args(["restart-node"]).arg(&c.dir).arg(&node).output().expect("restart");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Case 2 over time: with 2-minute tickets and nobody touching anything, the hub's timer renews
/// the ticket from the keytab and delivers each new one to the node, so a kernel on the node
/// keeps passing `klist -s` and reaching the Kerberos-secured PostgreSQL as the user for three
/// lifetimes and more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticket_on_the_node_stays_valid_for_three_lifetimes() {
    require_root();
    let (c, _turn) = turn().await;
    let life = crate::support::short_life();
    let kdc = Kdc::start_for_nodes(&c.dir, c.login, Some(life));
    let pg = GssPostgres::start_on(&kdc, Some(c.login));
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    pg.create_role(&ann.name);
    let pam = PamService::create();
    let hub = TestHub::start_with(
        &pam,
        Some(&kdc),
        HubOptions {
            spawner: c.spawner_lines(),
            kerberos: "min_remaining = \"10s\"\n".into(),
            bind: Some(format!("{}:0", c.login)),
            ..Default::default()
        },
    )
    .await;
    let client = hub.client();
    let cookie = hub.login_cookie(&client, &ann).await;
    hub.wait_ready(&client, &ann.name).await;
    let (_, node) = job_of(&hub, &ann.name);
    let kernel = hub.start_kernel(&client, &ann.name, "python3").await;
    let (mut ws, session) = kernel_channels(&hub, &ann.name, &kernel, &cookie).await;
    let code = format!(
        "import os, subprocess\nk = subprocess.run(['klist', '-s']).returncode\n\
         r = subprocess.run(['psql', {:?}, '-tAc', 'select current_user'], capture_output=True, text=True)\n\
         f'{{k}}|{{r.stdout.strip()}}|{{r.stderr.strip()}}|' + os.environ['KRB5CCNAME']",
        pg.conninfo_from_nodes(&ann.name)
    );
    let end = tokio::time::Instant::now() + life * 3 + Duration::from_secs(10);
    let (mut checks, mut tickets) = (0, std::collections::HashSet::new());
    while tokio::time::Instant::now() < end {
        let got = execute(&mut ws, &session, &code).await;
        assert!(got.starts_with(&format!("'0|{}||FILE:/tmp/hub-agent-", ann.name)), "check {checks}: {got}");
        let path =
            got.trim_matches('\'').rsplit('|').next().expect("path").trim_start_matches("FILE:/tmp/").to_string();
        if let Ok(bytes) = std::fs::read(c.node_tmp(&node).join(path)) {
            tickets.insert(bytes);
        }
        checks += 1;
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    assert!(tickets.len() >= 3, "{} tickets reached the node in {checks} checks", tickets.len());
    assert!(crate::support::log_line_with(&[&ann.name, "trigger=timer", "kinit succeeded"]), "timer renewals");
    let r = hub.post_form(&client, "/hub/home/stop").await;
    assert_eq!(r.status(), 303);
    hub.stop().await;
}

/// Waits until `user`'s server (key) is failed or stopped; returns the state.
async fn wait_ended(hub: &TestHub, key: &str, within: Duration) -> ServerState {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let st = hub.state.servers.state(key);
        if matches!(st, ServerState::Failed { .. } | ServerState::Stopped { .. }) {
            return st;
        }
        assert!(tokio::time::Instant::now() < deadline, "{key}: {st:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Case 2's endings: a server that fails to start, a job cancelled by someone else and a job
/// that reaches its time limit each end the server with Slurm's state and reason, and the
/// spawn's failure shows the tail of the job's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_cancelled_and_timed_out_jobs_say_why() {
    require_root();
    let (c, _turn) = turn().await;
    let (ann, bob, cid) = (TestUser::create(), TestUser::create(), TestUser::create());
    let pam = PamService::create();
    let options = |extra: &str, cmd: Option<&str>| HubOptions {
        spawner: format!("{}time_limit = \"1m\"\n{extra}", c.spawner_lines()),
        cmd: cmd.map(str::to_string),
        bind: Some(format!("{}:0", c.login)),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, options("", None)).await;
    let broken = TestHub::start_with(&pam, None, options("", Some("[\"/bin/false\"]"))).await;

    // A server that cannot start: the job fails, and the spawn shows the job's output.
    let cc = broken.client();
    broken.login_cookie(&cc, &cid).await;
    match wait_ended(&broken, &cid.name, Duration::from_secs(60)).await {
        ServerState::Failed { message, log_tail } => {
            assert!(message.contains("during start-up") && message.contains("[FAILED"), "{message}");
            assert!(log_tail.contains("hub node-agent: the server ended (exit status: 1)"), "{log_tail}");
        }
        other => panic!("{other:?}"),
    }

    // Two servers; bob's job is cancelled by an admin of the cluster; ann's runs out of time.
    let (ca, cb) = (hub.client(), hub.client());
    hub.login_cookie(&ca, &ann).await;
    hub.login_cookie(&cb, &bob).await;
    hub.wait_ready(&ca, &ann.name).await;
    hub.wait_ready(&cb, &bob.name).await;
    let (bob_job, _) = job_of(&hub, &bob.name);
    c.cancel(bob_job);
    match wait_ended(&hub, &bob.name, Duration::from_secs(30)).await {
        ServerState::Failed { message, .. } => {
            assert!(
                message.contains(&format!("Slurm job {bob_job}")) && message.contains("was cancelled [CANCELLED]"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Slurm checks limits about every 30 s: a one-minute limit ends within ~100 s.
    let (ann_job, _) = job_of(&hub, &ann.name);
    match wait_ended(&hub, &ann.name, Duration::from_secs(150)).await {
        ServerState::Failed { message, .. } => assert!(
            message.contains(&format!("Slurm job {ann_job}"))
                && message.contains("reached its time limit")
                && message.contains("TIMEOUT"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let home = ca.get(hub.url("/hub/home")).send().await.expect("home").text().await.expect("text");
    assert!(home.contains("reached its time limit and was stopped by Slurm"), "{home}");
    hub.stop().await;
    broken.stop().await;
}

/// Lifecycle as with the local spawner: a named server is a job of its own (`hub-<user>@<name>`)
/// reached at `/user/<user>/<name>/`, and the culler stops idle servers on nodes (scancel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_servers_and_culling_work_on_the_cluster() {
    require_root();
    let (c, _turn) = turn().await;
    let ann = TestUser::create();
    let pam = PamService::create();
    let spawner = format!(
        "allow_named_servers = true\ncull_idle_timeout = \"20s\"\ncull_interval = \"5s\"\n{}",
        c.spawner_lines()
    );
    let profile = "[[profiles]]\nslug = \"big\"\nlimits = { memory = \"300 MiB\", cpu = 2 }\n\
                   slurm = { time_limit = \"2h\", extra_options = [\"--comment=big-profile\"] }\n";
    let hub = TestHub::start_with(
        &pam,
        None,
        HubOptions { spawner, tail: profile.into(), bind: Some(format!("{}:0", c.login)), ..Default::default() },
    )
    .await;
    let client = hub.client();
    hub.login_cookie(&client, &ann).await;
    hub.wait_ready(&client, &ann.name).await;
    let user = hub::core::LinuxUser::lookup(&ann.name).expect("user");
    hub.state.servers.start_server(user, "gpu", r#"{"profile":"big"}"#.into()).expect("named start");
    let key = hub::core::server::server_key(&ann.name, "gpu");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !matches!(hub.state.servers.state(&key), ServerState::Running { .. }) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", hub.state.servers.state(&key));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both jobs carry the profile (the only one, so sign-in chose it too): its time limit,
    // comment, memory and CPUs.
    let both = format!("hub-{0},hub-{0}@gpu", ann.name);
    let names = c.command("squeue").args(["-h", "--name", &both, "-o", "%j|%l|%k|%m|%C"]).output().expect("squeue");
    let mut names: Vec<String> = String::from_utf8_lossy(&names.stdout).lines().map(str::to_string).collect();
    names.sort();
    let want = |j: &str| format!("{j}|2:00:00|big-profile|300M|2");
    let mut wanted = vec![want(&format!("hub-{}", ann.name)), want(&format!("hub-{}@gpu", ann.name))];
    wanted.sort();
    assert_eq!(names, wanted);
    let r = client.get(hub.url(&format!("/user/{}/gpu/api/status", ann.name))).send().await.expect("status");
    assert_eq!(r.status(), 200, "the named server through its own route");

    // Nobody uses either: both are culled, and their jobs end.
    for k in [ann.name.clone(), key.clone()] {
        // "Stopped (how)" first, then the culler's own word.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            match hub.state.servers.state(&k) {
                ServerState::Stopped { message: Some(m) } if m.contains("cull_idle_timeout") => break,
                st @ ServerState::Failed { .. } => panic!("{k}: {st:?}"),
                st => assert!(tokio::time::Instant::now() < deadline, "{k}: {st:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let active: Vec<_> =
            c.jobs_of(&ann.name).into_iter().filter(|j| j.1 == "RUNNING" || j.1 == "COMPLETING").collect();
        if active.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{active:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hub.stop().await;
}

/// Cases 1 and 4 in Chromium: with every node busy, the spawn page shows Slurm's reason and the
/// home page's Cancel cancels the job; with a node free, signing in opens JupyterLab running on
/// the node, and a cell runs (tests/browser/slurm.mjs, then tests/browser/lab.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_queue_and_runs_jupyterlab_on_a_node() {
    require_root();
    let (c, _turn) = turn().await;
    let blockers = [c.fill("node1"), c.fill("node2")];
    for b in blockers {
        c.wait_job(b, &["RUNNING"], Duration::from_secs(30)).await;
    }
    let ann = TestUser::create();
    let pam = PamService::create();
    let hub = TestHub::start_with(
        &pam,
        None,
        HubOptions { spawner: c.spawner_lines(), bind: Some(format!("{}:0", c.login)), ..Default::default() },
    )
    .await;
    let out = crate::parity::run_browser(
        &hub,
        &crate::support::browser_script("slurm.mjs"),
        &[&ann.name, &ann.password],
        "slurm-pending",
    )
    .await;
    assert!(out.contains("pending: Slurm job") && out.contains("cancelled:"), "{out}");
    let jobs: Vec<String> = c.jobs_of(&ann.name).into_iter().map(|j| j.1).collect();
    assert_eq!(jobs, ["CANCELLED"], "the job the page cancelled");

    c.cancel(blockers[1]);
    c.wait_job(blockers[1], &["CANCELLED"], Duration::from_secs(30)).await;
    let out = crate::parity::run_browser(
        &hub,
        &crate::support::browser_script("lab.mjs"),
        &[&ann.name, &ann.password],
        "slurm-lab",
    )
    .await;
    assert!(out.contains("JupyterLab opened, 1+1 gave") && out.contains("File → Log Out signed out"), "{out}");
    let (_, node) = job_of(&hub, &ann.name);
    assert_eq!(node, "node2", "the only free node");
    c.cancel(blockers[0]);
    for (id, _) in c.jobs_of(&ann.name) {
        c.cancel(id);
    }
    hub.stop().await;
}
