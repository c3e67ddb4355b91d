//! Slurm spawner: each server is a batch job submitted **as the user**, running on a cluster
//! node under the user's UID by Slurm's own mechanism (munge credentials), with the hub's node
//! agent (`hub node-agent`) as the job's program.
//!
//! The flow of one start ([`SlurmSpawner::start`]):
//!
//! 1. The hub renders the job script (`[spawner.slurm] script`; every value shell-quoted) with
//!    the server's environment, a fresh 32-byte report secret and the agent's command line,
//!    and pipes it into `sbatch --parsable` run under the user's UID and groups (the script
//!    never touches a disk on the login host). Resources come from the user's limits and
//!    profile: `--mem` (MiB), `--cpus-per-task`, `--partition`, `--time`, `extra_options`.
//! 2. A poller asks `squeue` for the job's state every `poll_interval`; pending reasons and the
//!    node it runs on become [`ServerProcess::status`] (the progress bar).
//! 3. On the node, the agent makes a TLS key and certificate for this server, listens, starts
//!    jupyter-server on a Unix socket in its own 0700 directory in the node's `/tmp`, and
//!    reports `{port, pin}` signed with the secret (`hub_net::agent`). The hub takes the node's
//!    address from Slurm (`sinfo`'s NodeAddr), not from the report, and pins the certificate:
//!    [`ServerProcess::endpoint`] becomes an [`Endpoint::Tls`].
//! 4. The hub delivers the user's credential cache over the pinned channel
//!    ([`ServerProcess::deliver_ccache`]) at start and after every renewal; the agent writes it
//!    0600 and atomically and points `KRB5CCNAME` at it.
//! 5. Stop: the node's ccache is removed over the channel, then `scancel`. A job that ends by
//!    itself (time limit, node failure, cancelled by someone else) ends the server, with
//!    Slurm's state and reason in the message.
//!
//! State names and reasons are Slurm's (squeue(1), "JOB STATE CODES" and "JOB REASON CODES").

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use super::{ReportError, ServerProcess, SpawnError, SpawnSpec, Spawner};
use hub_config::SlurmConfig;
use hub_core::{Endpoint, LinuxUser, Recover, RemoteEndpoint, ServerToken};

/// How long one Slurm command may take (seconds) before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the job's output shown when its server fails.
const LOG_TAIL_LINES: &str = "25";
/// How long the hub waits for the node agent to confirm a control request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// Submits servers as Slurm jobs. See the module documentation.
pub struct SlurmSpawner {
    cfg: Arc<SlurmConfig>,
    /// The `hub` binary as the nodes see it.
    agent: PathBuf,
    /// Jobs by server unit (`user` or `user@server`), while they run.
    jobs: Arc<Mutex<HashMap<String, Arc<Job>>>>,
}

impl std::fmt::Debug for SlurmSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmSpawner").field("agent", &self.agent).finish_non_exhaustive()
    }
}

/// What `squeue` says of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobView {
    /// Slurm's state name: `PENDING`, `RUNNING`, `COMPLETED`, `CANCELLED`, `TIMEOUT`, ...
    pub state: String,
    /// Slurm's reason code (`Resources`, `Priority`, `TimeLimit`, `NodeDown`, `None`).
    pub reason: String,
    /// The node(s) it runs or ran on (empty while pending).
    pub nodes: String,
    /// The job's user.
    pub user: String,
}

impl JobView {
    /// Parses one line of `squeue -h -o %T|%r|%N|%u`.
    pub fn parse(line: &str) -> Option<JobView> {
        let mut f = line.trim().splitn(4, '|');
        let (state, reason, nodes, user) = (f.next()?, f.next()?, f.next()?, f.next()?);
        if state.is_empty() {
            return None;
        }
        Some(JobView { state: state.into(), reason: reason.into(), nodes: nodes.into(), user: user.into() })
    }

    /// Whether the job has ended (any state but pending, configuring, running, suspended,
    /// completing, requeued or resizing).
    pub fn ended(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "CONFIGURING"
                | "RUNNING"
                | "SUSPENDED"
                | "COMPLETING"
                | "REQUEUED"
                | "RESIZING"
                | "RESV_DEL_HOLD"
        )
    }
}

/// Slurm's reason code in plain words (squeue(1), "JOB REASON CODES"), with the code kept.
pub fn explain_reason(reason: &str) -> String {
    let (code, rest) = reason.split_once(',').unwrap_or((reason, ""));
    let words = match code {
        "Resources" => "waiting for resources (every node that fits is busy)",
        "Priority" => "waiting behind jobs with a higher priority",
        "ReqNodeNotAvail" => "the nodes it may run on are not available",
        "BeginTime" => "waiting for its start time",
        "Dependency" => "waiting for another job",
        "JobHeldUser" => "held by the user",
        "JobHeldAdmin" => "held by an administrator",
        "PartitionDown" => "its partition is down",
        "PartitionInactive" => "its partition is inactive",
        "PartitionNodeLimit" | "PartitionTimeLimit" => "it asks for more than its partition allows",
        "QOSMaxJobsPerUserLimit" | "AssocMaxJobsLimit" | "AssocGrpJobsLimit" => {
            "the user already runs as many jobs as allowed"
        }
        "NodeDown" => "a node it ran on went down",
        "TimeLimit" => "it reached its time limit",
        "None" | "" => return String::new(),
        _ => return reason.to_string(),
    };
    if rest.is_empty() { format!("{words} ({code})") } else { format!("{words} ({code},{rest})") }
}

/// The message for a job that ended: Slurm's state and reason, in words.
pub fn describe_end(id: u32, v: &JobView) -> String {
    let why = explain_reason(&v.reason);
    let on = if v.nodes.is_empty() { String::new() } else { format!(" on {}", v.nodes) };
    let what = match v.state.as_str() {
        "COMPLETED" => "ended".to_string(),
        "CANCELLED" => "was cancelled".to_string(),
        "TIMEOUT" => "reached its time limit and was stopped by Slurm".to_string(),
        "NODE_FAIL" => format!("failed because its node{on} failed or lost contact with Slurm"),
        "FAILED" => "failed".to_string(),
        "OUT_OF_MEMORY" => "ran out of memory".to_string(),
        "PREEMPTED" => "was preempted by another job".to_string(),
        "BOOT_FAIL" => "could not start: its node failed to boot".to_string(),
        other => format!("ended ({other})"),
    };
    let on = if v.state == "NODE_FAIL" { String::new() } else { on };
    if why.is_empty() {
        format!("Slurm job {id}{on} {what} [{}]", v.state)
    } else {
        format!("Slurm job {id}{on} {what} [{}: {why}]", v.state)
    }
}

/// One server job.
struct Job {
    id: u32,
    unit: String,
    user: LinuxUser,
    /// The report secret (never leaves the hub but inside the job script).
    secret: [u8; 32],
    /// The server's token, for control requests to its agent.
    token: ServerToken,
    /// The first verified report (port, pin): the only one this job's server may make; a
    /// different one later, or at the same time, is refused.
    reported: Mutex<Option<(u16, hub_net::tls::Pin)>>,
    /// A verified report whose node address the poller has yet to look up.
    pending_report: Mutex<Option<(u16, hub_net::tls::Pin)>>,
    view: Mutex<JobView>,
    endpoint: Mutex<Option<Arc<RemoteEndpoint>>>,
    exited: watch::Sender<Option<String>>,
    /// The job's output file on the shared filesystem (the user's home).
    output: PathBuf,
    /// Wakes the poller early (a stop in progress).
    poke: Notify,
    stopping: std::sync::atomic::AtomicBool,
}

impl Job {
    /// Sets the endpoint from a verified report: the node Slurm runs the job on, its address
    /// from Slurm, the reported port and pin. A job not running yet as far as Slurm says, or
    /// on more than one node, keeps waiting for the next report (the agent repeats it).
    async fn resolve(&self, cfg: &SlurmConfig, v: &JobView, port: u16, pin: hub_net::tls::Pin) {
        if v.state != "RUNNING" || v.nodes.is_empty() || v.nodes.contains([',', '[']) {
            tracing::info!(job = self.id, state = %v.state, nodes = %v.nodes, "report before Slurm shows the job running on one node; waiting");
            return;
        }
        match node_address(cfg, &v.nodes, port).await {
            Ok(addr) => {
                tracing::info!(job = self.id, unit = %self.unit, node = %v.nodes, %addr, pin = %hub_net::tls::hex_pin(&pin), "server job reported its endpoint");
                *self.endpoint.lock().recover() = Some(Arc::new(RemoteEndpoint { addr, node: v.nodes.clone(), pin }));
            }
            Err(e) => tracing::warn!(job = self.id, error = %e, "cannot find the node's address"),
        }
    }
}

/// A job as the servers manager holds it.
struct SlurmProcess {
    job: Arc<Job>,
    cfg: Arc<SlurmConfig>,
    jobs: Arc<Mutex<HashMap<String, Arc<Job>>>>,
}

impl SlurmSpawner {
    /// A spawner with `[spawner.slurm]` `cfg`; `agent` is the `hub` binary as the nodes see it
    /// (`cfg.agent`, else the running hub's own path).
    pub fn new(cfg: SlurmConfig, agent: PathBuf) -> Self {
        SlurmSpawner { cfg: Arc::new(cfg), agent, jobs: Arc::default() }
    }
}

/// A Slurm command (`bin_dir/<name>`) with a clean environment: `PATH` and `SLURM_CONF`.
fn slurm_command(cfg: &SlurmConfig, name: &str) -> std::process::Command {
    let mut c = std::process::Command::new(cfg.bin_dir.join(name));
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").stdin(std::process::Stdio::null());
    if let Some(conf) = &cfg.slurm_conf {
        c.env("SLURM_CONF", conf);
    }
    c
}

/// Makes `cmd` run as `user` ([`crate::identity::drop_to`]) in their home, with their `HOME`,
/// `USER` and `LOGNAME`.
fn as_user(cmd: &mut std::process::Command, user: &LinuxUser) {
    cmd.env("HOME", &user.home).env("USER", &user.name).env("LOGNAME", &user.name).current_dir(&user.home);
    crate::identity::drop_to(cmd, user);
}

/// Runs `cmd` (stdin from `input` if given) within [`COMMAND_TIMEOUT`]; `Ok(stdout)` on exit 0,
/// else `Err(stderr or status)`.
async fn run(cmd: std::process::Command, input: Option<Vec<u8>>) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    if input.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let program = format!("{:?}", cmd.as_std().get_program());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {program}: {e}"))?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        stdin.write_all(&input).await.map_err(|e| format!("cannot write to {program}: {e}"))?;
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} did not finish within {COMMAND_TIMEOUT:?}"))?
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if err.is_empty() { format!("{program} {}", out.status) } else { err })
    }
}

/// `squeue`'s view of job `id`: `Ok(None)` when Slurm no longer knows it.
async fn query(cfg: &SlurmConfig, id: u32) -> Result<Option<JobView>, String> {
    let mut c = slurm_command(cfg, "squeue");
    c.args(["-h", "-t", "all", "-o", "%T|%r|%N|%u", "-j", &id.to_string()]);
    match run(c, None).await {
        Ok(out) => Ok(out.lines().find_map(JobView::parse)),
        Err(e) if e.contains("Invalid job id") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The address Slurm has for `node` (`sinfo`'s `%o`, NodeAddr), resolved with `port`.
async fn node_address(cfg: &SlurmConfig, node: &str, port: u16) -> Result<std::net::SocketAddr, String> {
    let mut c = slurm_command(cfg, "sinfo");
    c.args(["-h", "-N", "-n", node, "-o", "%o"]);
    let out = run(c, None).await?;
    let addr = out
        .lines()
        .next()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("Slurm has no address for node {node}"))?;
    tokio::net::lookup_host((addr, port))
        .await
        .map_err(|e| format!("cannot resolve node {node}'s address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("node {node}'s address {addr} resolves to nothing"))
}

/// `value` quoted for a POSIX shell; `None` if it holds a NUL byte.
fn quote(value: &str) -> Option<String> {
    shlex::try_quote(value).ok().map(|q| q.into_owned())
}

/// Whether `name` can be `export`ed by a POSIX shell.
fn is_shell_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// The job script for `spec`: the template with every value quoted. `secret` is the report
/// secret (hex). Errors name the value that cannot be quoted.
fn render_script(cfg: &SlurmConfig, agent: &std::path::Path, spec: &SpawnSpec, secret: &str) -> Result<String, String> {
    let mut env = String::new();
    let mut ours = vec![(hub_net::agent::SECRET_ENV.to_string(), secret.to_string())];
    // The kernelspecs the hub wrote are on the login host's disk: they travel in the script,
    // and the agent puts them on the server's JUPYTER_PATH on the node.
    if let Some(dir) = &spec.kernelspecs {
        ours.push((hub_net::agent::KERNELSPECS_ENV.to_string(), kernelspecs_json(dir)?));
    }
    for (k, v) in spec
        .env
        .iter()
        // The hub's ccache path means nothing on the node (the agent sets its own), nor does
        // the hub's kernelspec directory when the kernelspecs travel in the script.
        .filter(|(k, _)| k != "KRB5CCNAME" && !(k == "JUPYTER_PATH" && spec.kernelspecs.is_some()))
        .chain(ours.iter())
    {
        if !is_shell_name(k) {
            tracing::warn!(variable = %k.escape_debug(), "not passed to the Slurm job: not a shell variable name");
            continue;
        }
        let q = quote(v).ok_or_else(|| format!("the value of {k} has a NUL byte"))?;
        env.push_str(&format!("export {k}={q}\n"));
    }
    let report_url = format!("{}{}", cfg.hub_url, hub_net::agent::REPORT_PATH);
    let mut words = vec![
        agent.display().to_string(),
        "node-agent".into(),
        "--report-url".into(),
        report_url,
        "--server".into(),
        spec.unit.clone(),
        "--".into(),
    ];
    words.extend(spec.argv.iter().cloned());
    let cmd = words
        .iter()
        .map(|w| quote(w).ok_or_else(|| format!("the argument {w:?} has a NUL byte")))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    let (user, server) = spec.unit.split_once('@').unwrap_or((&spec.unit, ""));
    let vars = [
        ("username", quote(user)),
        ("server_name", quote(server)),
        ("job_name", quote(&job_name(&spec.unit))),
        ("env", Some(env.trim_end().to_string())),
        ("cmd", Some(cmd)),
    ];
    Ok(cfg.script.expand_with(|name| vars.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.clone())))
}

/// The kernelspecs in `dir` (`kernels/<name>/kernel.json`, written by the hub, root's) as one
/// JSON object of name to content, for [`hub_net::agent::KERNELSPECS_ENV`]. Errors name the
/// file.
fn kernelspecs_json(dir: &std::path::Path) -> Result<String, String> {
    let kernels = dir.join("kernels");
    let mut specs = serde_json::Map::new();
    let entries = match std::fs::read_dir(&kernels) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok("{}".into()),
        Err(e) => return Err(format!("cannot read the kernelspecs in {}: {e}", kernels.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read the kernelspecs in {}: {e}", kernels.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let file = entry.path().join("kernel.json");
        let text = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let spec: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
        specs.insert(name, spec);
    }
    Ok(serde_json::Value::Object(specs).to_string())
}

/// The job's name in Slurm: `hub-<unit>`.
fn job_name(unit: &str) -> String {
    format!("hub-{unit}")
}

/// sbatch's arguments for `spec`: the hub's own, the resources (the profile's partition and
/// time limit over the config's), then `extra_options` and the profile's.
fn sbatch_args(cfg: &SlurmConfig, spec: &SpawnSpec) -> Vec<String> {
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name={}", job_name(&spec.unit)),
        format!("--output={}", cfg.output),
        format!("--chdir={}", spec.user.home.display()),
        "--export=NONE".into(),
        // A job whose node fails ends (NODE_FAIL) rather than waiting to run again somewhere
        // else with a server nobody is waiting for; the user starts a new one.
        "--no-requeue".into(),
    ];
    // The profile's partition and time limit replace the config's; its options come after.
    let profile = spec.profile.as_ref().map(|p| &p.slurm);
    if let Some(p) = profile.and_then(|p| p.partition.as_ref()).or(cfg.partition.as_ref()) {
        a.push(format!("--partition={p}"));
    }
    if let Some(m) = spec.limits.memory {
        a.push(format!("--mem={}M", m.div_ceil(1024 * 1024).max(1)));
    }
    if let Some(c) = spec.limits.cpu {
        a.push(format!("--cpus-per-task={}", (c.ceil() as u64).max(1)));
    }
    if let Some(t) = profile.and_then(|p| p.time_limit).or(cfg.time_limit) {
        a.push(format!("--time={}", t.as_secs() / 60));
    }
    a.extend(cfg.extra_options.iter().cloned());
    a.extend(profile.into_iter().flat_map(|p| p.extra_options.iter().cloned()));
    a
}

/// Watches job `job` until it ends: its state every `poll_interval` (every 250 ms while
/// stopping), published in `job.view`; at the end, `job.exited` says how.
fn watch_job(cfg: Arc<SlurmConfig>, jobs: Arc<Mutex<HashMap<String, Arc<Job>>>>, job: Arc<Job>) {
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let interval = if job.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                Duration::from_millis(250)
            } else {
                cfg.poll_interval
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = job.poke.notified() => {}
            }
            let end = match query(&cfg, job.id).await {
                Ok(Some(v)) => {
                    failures = 0;
                    let ended = v.ended().then(|| describe_end(job.id, &v));
                    let report = job.pending_report.lock().recover().take();
                    if let (None, Some((port, pin))) = (&ended, report) {
                        job.resolve(&cfg, &v, port, pin).await;
                    }
                    *job.view.lock().recover() = v;
                    ended
                }
                Ok(None) => Some(format!("Slurm job {} is no longer known to Slurm", job.id)),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(job = job.id, error = %e, failures, "cannot ask Slurm for the job's state");
                    None
                }
            };
            if let Some(how) = end {
                tracing::info!(job = job.id, unit = %job.unit, how = %how, "server job ended");
                let mut jobs = jobs.lock().recover();
                if jobs.get(&job.unit).is_some_and(|j| Arc::ptr_eq(j, &job)) {
                    jobs.remove(&job.unit);
                }
                drop(jobs);
                let _ = job.exited.send(Some(how));
                return;
            }
        }
    });
}

#[async_trait]
impl Spawner for SlurmSpawner {
    async fn start(&self, spec: SpawnSpec) -> Result<Box<dyn ServerProcess>, SpawnError> {
        let u = &spec.user;
        if u.uid == 0 {
            return Err(SpawnError::Root(u.name.clone()));
        }
        let token = spec
            .env
            .iter()
            .find(|(k, _)| k == "JUPYTER_TOKEN")
            .and_then(|(_, v)| ServerToken::new(v))
            .ok_or_else(|| SpawnError::Submit("internal error: the server has no token".into()))?;
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let script = render_script(&self.cfg, &self.agent, &spec, &hex::encode(secret)).map_err(SpawnError::Submit)?;
        let mut c = slurm_command(&self.cfg, "sbatch");
        c.args(sbatch_args(&self.cfg, &spec));
        as_user(&mut c, u);
        let out = run(c, Some(script.into_bytes())).await.map_err(SpawnError::Submit)?;
        // --parsable: "<job id>" or "<job id>;<cluster>".
        let id: u32 = out
            .trim()
            .split(';')
            .next()
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| SpawnError::Submit(format!("sbatch printed {:?}, not a job id", out.trim())))?;
        tracing::info!(user = %u.name, unit = %spec.unit, job = id, "server job submitted");
        let output = u.home.join(self.cfg.output.replace("%j", &id.to_string()));
        let job = Arc::new(Job {
            id,
            unit: spec.unit.clone(),
            user: u.clone(),
            secret,
            token,
            reported: Mutex::new(None),
            pending_report: Mutex::new(None),
            view: Mutex::new(JobView { state: "PENDING".into(), ..Default::default() }),
            endpoint: Mutex::new(None),
            exited: watch::channel(None).0,
            output,
            poke: Notify::new(),
            stopping: Default::default(),
        });
        self.jobs.lock().recover().insert(spec.unit.clone(), job.clone());
        watch_job(self.cfg.clone(), self.jobs.clone(), job.clone());
        job.poke.notify_one();
        Ok(Box::new(SlurmProcess { job, cfg: self.cfg.clone(), jobs: self.jobs.clone() }))
    }

    async fn adopt(&self, _unit: &str, _pid: u32, _uid: u32, _start_ticks: i64) -> Option<Box<dyn ServerProcess>> {
        None
    }

    fn is_remote(&self) -> bool {
        true
    }

    async fn adopt_remote(
        &self,
        unit: &str,
        user: &LinuxUser,
        state: &str,
        token: &ServerToken,
    ) -> Option<Box<dyn ServerProcess>> {
        let st: RecordedJob = serde_json::from_str(state).ok()?;
        let (Some(node), Some(port), Some(pin)) =
            (st.node, st.port, st.pin.as_deref().and_then(hub_net::tls::parse_pin))
        else {
            // Submitted but never reported (still queued, or starting, when the hub went
            // away): nobody waits for it any more, so it must not run on unseen.
            tracing::info!(
                job = st.job_id,
                unit,
                "cancelling a server job that had not reported when the hub restarted"
            );
            let mut c = slurm_command(&self.cfg, "scancel");
            c.arg(st.job_id.to_string());
            if let Err(e) = run(c, None).await {
                tracing::warn!(job = st.job_id, error = %e, "scancel failed");
            }
            return None;
        };
        let view = match query(&self.cfg, st.job_id).await {
            Ok(Some(v)) => v,
            other => {
                tracing::info!(job = st.job_id, unit, answer = ?other, "recorded server job is gone");
                return None;
            }
        };
        if view.state != "RUNNING" || view.user != user.name || view.nodes != node {
            tracing::warn!(job = st.job_id, unit, state = %view.state, user = %view.user, node = %view.nodes,
                "recorded server job is not running as the user where it was; not adopted");
            return None;
        }
        let addr = node_address(&self.cfg, &node, port).await.ok()?;
        let job = Arc::new(Job {
            id: st.job_id,
            unit: unit.to_string(),
            user: user.clone(),
            // The secret went with the hub that started the job; a fresh one nobody knows
            // refuses every report (an adopted server has reported already).
            secret: rand::random(),
            token: token.clone(),
            reported: Mutex::new(Some((port, pin))),
            pending_report: Mutex::new(None),
            view: Mutex::new(view),
            endpoint: Mutex::new(Some(Arc::new(RemoteEndpoint { addr, node, pin }))),
            exited: watch::channel(None).0,
            output: user.home.join(self.cfg.output.replace("%j", &st.job_id.to_string())),
            poke: Notify::new(),
            stopping: Default::default(),
        });
        self.jobs.lock().recover().insert(unit.to_string(), job.clone());
        watch_job(self.cfg.clone(), self.jobs.clone(), job.clone());
        Some(Box::new(SlurmProcess { job, cfg: self.cfg.clone(), jobs: self.jobs.clone() }))
    }

    fn report(&self, body: &[u8], signature: Option<&str>) -> Result<(), ReportError> {
        let report: hub_net::agent::Report =
            serde_json::from_slice(body).map_err(|e| ReportError::Invalid(e.to_string()))?;
        let job = self.jobs.lock().recover().get(&report.server).cloned().ok_or(ReportError::NotExpected)?;
        if !hub_net::agent::verify(&job.secret, body, signature.unwrap_or_default()) {
            return Err(ReportError::BadSignature);
        }
        if report.protocol != hub_net::agent::PROTOCOL {
            return Err(ReportError::Invalid(format!(
                "the node agent speaks protocol {}, this hub {}: install this hub's own build on the nodes ([spawner.slurm] agent)",
                report.protocol,
                hub_net::agent::PROTOCOL
            )));
        }
        if report.job_id != job.id.to_string() {
            return Err(ReportError::Invalid(format!("job {} is not this server's job ({})", report.job_id, job.id)));
        }
        let pin = hub_net::tls::parse_pin(&report.pin)
            .ok_or_else(|| ReportError::Invalid("pin is not 64 hex digits".into()))?;
        {
            // One server, one endpoint, one key: the first report is the only one. The agent
            // repeats it until the hub has the endpoint, so the same one is fine (and looked
            // up again while the endpoint is not known yet); any other is refused, also when
            // it races the first.
            let mut first = job.reported.lock().recover();
            match *first {
                Some((port, p)) if port != report.port || p != pin => return Err(ReportError::NotExpected),
                Some(_) if job.endpoint.lock().recover().is_some() => return Ok(()),
                _ => *first = Some((report.port, pin)),
            }
        }
        *job.pending_report.lock().recover() = Some((report.port, pin));
        job.poke.notify_one();
        Ok(())
    }
}

/// What is recorded of a job ([`ServerProcess::state`]): the job id from the submission on,
/// the node, port and pin once the server has reported.
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordedJob {
    job_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
}

#[async_trait]
impl ServerProcess for SlurmProcess {
    /// The Slurm job id.
    fn pid(&self) -> u32 {
        self.job.id
    }

    fn exited(&self) -> watch::Receiver<Option<String>> {
        self.job.exited.subscribe()
    }

    fn start_ticks(&self) -> Option<i64> {
        None
    }

    fn endpoint(&self) -> Option<Endpoint> {
        self.job.endpoint.lock().recover().clone().map(Endpoint::Tls)
    }

    fn status(&self) -> Option<String> {
        let v = self.job.view.lock().recover().clone();
        let id = self.job.id;
        Some(match v.state.as_str() {
            "PENDING" => {
                let why = explain_reason(&v.reason);
                if why.is_empty() {
                    format!("Slurm job {id} is waiting in the queue")
                } else {
                    format!("Slurm job {id} is waiting in the queue: {why}")
                }
            }
            "CONFIGURING" => format!("Slurm job {id} is being set up on {}", v.nodes),
            "RUNNING" if self.job.endpoint.lock().recover().is_some() => {
                format!("Slurm job {id} is running on {}; waiting for the server to answer", v.nodes)
            }
            "RUNNING" => format!("Slurm job {id} is running on {}; waiting for the server to report", v.nodes),
            other => format!("Slurm job {id}: {other}"),
        })
    }

    fn state(&self) -> Option<String> {
        let e = self.job.endpoint.lock().recover().clone();
        serde_json::to_string(&RecordedJob {
            job_id: self.job.id,
            node: e.as_ref().map(|e| e.node.clone()),
            port: e.as_ref().map(|e| e.addr.port()),
            pin: e.as_ref().map(|e| hub_net::tls::hex_pin(&e.pin)),
        })
        .ok()
    }

    async fn deliver_ccache(&self, ccache: Vec<u8>) -> Result<(), String> {
        let Some(e) = self.job.endpoint.lock().recover().clone() else {
            return Err("the server has not reported where it listens yet".into());
        };
        hub_net::agent::control(&e, &self.job.token, hyper::Method::PUT, ccache, CONTROL_TIMEOUT).await
    }

    async fn log_tail(&self) -> Option<String> {
        let mut c = std::process::Command::new("tail");
        c.env_clear().env("PATH", "/usr/bin:/bin").args(["-n", LOG_TAIL_LINES, "--"]).arg(&self.job.output);
        as_user(&mut c, &self.job.user);
        run(c, None).await.ok()
    }

    async fn stop(&self, term_timeout: Duration) -> String {
        let job = &self.job;
        if job.exited.borrow().is_none() {
            job.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
            // The node's copy of the ticket goes first, while the agent still answers.
            let endpoint = job.endpoint.lock().recover().clone();
            if let Some(e) = endpoint
                && let Err(err) =
                    hub_net::agent::control(&e, &job.token, hyper::Method::DELETE, Vec::new(), CONTROL_TIMEOUT).await
            {
                tracing::warn!(job = job.id, error = %err, "could not remove the credential cache on the node");
            }
            let mut c = slurm_command(&self.cfg, "scancel");
            c.arg(job.id.to_string());
            if let Err(e) = run(c, None).await {
                tracing::warn!(job = job.id, error = %e, "scancel failed");
            }
            job.poke.notify_one();
            // Slurm sends SIGTERM, then SIGKILL after its KillWait; the poller sees the end.
            let mut exited = job.exited.subscribe();
            let wait = term_timeout + Duration::from_secs(60);
            if tokio::time::timeout(wait, exited.wait_for(|e| e.is_some())).await.is_err() {
                tracing::warn!(job = job.id, "the job did not end within {wait:?} of scancel");
            }
        }
        let mut jobs = self.jobs.lock().recover();
        if jobs.get(&job.unit).is_some_and(|j| Arc::ptr_eq(j, job)) {
            jobs.remove(&job.unit);
        }
        drop(jobs);
        job.exited.borrow().clone().unwrap_or_else(|| format!("Slurm job {} was cancelled", job.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_and_reasons() {
        let v = JobView::parse("PENDING|Resources||ann\n").expect("line");
        assert_eq!(
            (v.state.as_str(), v.reason.as_str(), v.nodes.as_str(), v.user.as_str()),
            ("PENDING", "Resources", "", "ann")
        );
        assert!(!v.ended());
        assert_eq!(explain_reason("Resources"), "waiting for resources (every node that fits is busy) (Resources)");
        assert_eq!(
            explain_reason("ReqNodeNotAvail, UnavailableNodes:node2"),
            "the nodes it may run on are not available (ReqNodeNotAvail, UnavailableNodes:node2)"
        );
        assert_eq!(explain_reason("None"), "");
        assert_eq!(explain_reason("SomethingNew"), "SomethingNew", "unknown codes are shown as Slurm wrote them");
        let t = JobView::parse("TIMEOUT|TimeLimit|node1|ann").expect("line");
        assert!(t.ended());
        assert_eq!(
            describe_end(7, &t),
            "Slurm job 7 on node1 reached its time limit and was stopped by Slurm [TIMEOUT: it reached its time limit (TimeLimit)]"
        );
        let n = JobView::parse("NODE_FAIL|NodeDown|node2|ann").expect("line");
        assert_eq!(
            describe_end(8, &n),
            "Slurm job 8 failed because its node on node2 failed or lost contact with Slurm [NODE_FAIL: a node it ran on went down (NodeDown)]"
        );
        assert!(JobView::parse("").is_none());
        assert!(JobView::parse("RUNNING|None").is_none());
    }

    fn spec(env: Vec<(&str, &str)>, argv: Vec<&str>) -> SpawnSpec {
        SpawnSpec {
            user: LinuxUser {
                name: "ann".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![1000],
                home: PathBuf::from("/home/ann"),
                shell: PathBuf::from("/bin/sh"),
            },
            argv: argv.into_iter().map(String::from).collect(),
            env: env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            log_path: PathBuf::from("/dev/null"),
            limits: hub_config::limits::Limits { memory: Some(1536 * 1024 * 1024 + 1), cpu: Some(1.5), tasks: None },
            unit: "ann@gpu".into(),
            profile: None,
            kernelspecs: None,
        }
    }

    fn config(extra: &str) -> SlurmConfig {
        let text = format!(
            "[spawner]\ncmd = [\"/opt/j/bin/jupyter-lab\"]\nkind = \"slurm\"\n[spawner.slurm]\nhub_url = \"http://10.0.0.1:8000\"\n{extra}"
        );
        match hub_config::Config::parse(std::path::Path::new("hub.toml"), &text).expect("config").spawner.kind {
            hub_config::SpawnerKind::Slurm(c) => *c,
            other => panic!("not slurm: {other:?}"),
        }
    }

    /// A job as `start` makes it, without Slurm: for the report checks, which need no poller.
    fn job(unit: &str, secret: [u8; 32]) -> Arc<Job> {
        Arc::new(Job {
            id: 7,
            unit: unit.into(),
            user: spec(vec![], vec!["/j"]).user,
            secret,
            token: ServerToken::new("t0k").expect("token"),
            reported: Mutex::new(None),
            pending_report: Mutex::new(None),
            view: Mutex::new(JobView::default()),
            endpoint: Mutex::new(None),
            exited: watch::channel(None).0,
            output: PathBuf::from("/dev/null"),
            poke: Notify::new(),
            stopping: Default::default(),
        })
    }

    fn signed(secret: &[u8], port: u16, pin: &str) -> (Vec<u8>, String) {
        let body = serde_json::to_vec(&hub_net::agent::Report {
            protocol: hub_net::agent::PROTOCOL,
            server: "ann@gpu".into(),
            job_id: "7".into(),
            port,
            pin: pin.into(),
        })
        .expect("json");
        let sig = hub_net::agent::sign(secret, &body);
        (body, sig)
    }

    #[test]
    fn a_job_takes_one_report_even_when_they_race() {
        let secret = [9u8; 32];
        let spawner = SlurmSpawner::new(config(""), PathBuf::from("/usr/local/bin/hub"));
        let j = job("ann@gpu", secret);
        spawner.jobs.lock().recover().insert("ann@gpu".into(), j.clone());
        // Sixteen validly signed reports with sixteen different endpoints, all at once (as
        // only someone holding the job's secret could send): exactly one is taken.
        let barrier = std::sync::Barrier::new(16);
        let accepted: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16u16)
                .map(|i| {
                    let (spawner, barrier) = (&spawner, &barrier);
                    s.spawn(move || {
                        let (body, sig) = signed(&secret, 40000 + i, &format!("{:064x}", i + 1));
                        barrier.wait();
                        spawner.report(&body, Some(&sig)).is_ok().then_some(40000 + i)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(accepted.len(), 1, "one report wins: {accepted:?}");
        let winner = accepted[0];
        let pin = hub_net::tls::parse_pin(&format!("{:064x}", winner - 40000 + 1)).expect("pin");
        assert_eq!(*j.reported.lock().recover(), Some((winner, pin)));
        assert_eq!(*j.pending_report.lock().recover(), Some((winner, pin)), "the winner, for the poller");
        // The agent repeats its report until the hub has the endpoint: the same one is taken
        // again (and looked up again), any other is still refused.
        j.pending_report.lock().recover().take();
        let (body, sig) = signed(&secret, winner, &hub_net::tls::hex_pin(&pin));
        assert!(spawner.report(&body, Some(&sig)).is_ok());
        assert_eq!(*j.pending_report.lock().recover(), Some((winner, pin)));
        let (body, sig) = signed(&secret, winner + 1, &hub_net::tls::hex_pin(&pin));
        assert!(matches!(spawner.report(&body, Some(&sig)), Err(ReportError::NotExpected)));
        // Wrong secret, no signature, a body altered after signing.
        let (body, sig) = signed(&[1u8; 32], winner, &hub_net::tls::hex_pin(&pin));
        assert!(matches!(spawner.report(&body, Some(&sig)), Err(ReportError::BadSignature)));
        assert!(matches!(spawner.report(&body, None), Err(ReportError::BadSignature)));
        let (mut body, sig) = signed(&secret, winner, &hub_net::tls::hex_pin(&pin));
        let at = body.len() - 3;
        body[at] ^= 1;
        assert!(spawner.report(&body, Some(&sig)).is_err());
        // Another build's agent (another protocol version) is told what to install.
        let mut other: serde_json::Value = serde_json::from_slice(&signed(&secret, winner, "00").0).expect("json");
        other["protocol"] = serde_json::json!(hub_net::agent::PROTOCOL + 1);
        let body = other.to_string().into_bytes();
        let sig = hub_net::agent::sign(&secret, &body);
        match spawner.report(&body, Some(&sig)) {
            Err(ReportError::Invalid(m)) => assert!(m.contains("install this hub's own build on the nodes"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A report for a server with no job is not expected.
        spawner.jobs.lock().recover().clear();
        let (body, sig) = signed(&secret, winner, &hub_net::tls::hex_pin(&pin));
        assert!(matches!(spawner.report(&body, Some(&sig)), Err(ReportError::NotExpected)));
    }

    #[test]
    fn every_value_in_the_script_is_quoted() {
        let cfg = config("");
        let s = spec(
            vec![
                ("JUPYTER_TOKEN", "t0k"),
                ("EVIL", "$(touch /tmp/x)'\"; rm -rf ~"),
                ("KRB5CCNAME", "FILE:/tmp/krb5cc_1000"),
                ("bad-name", "x"),
            ],
            vec!["/opt/j/bin/jupyter-lab", "--ServerApp.base_url=/user/ann/gpu/", "--x=a b"],
        );
        let script = render_script(&cfg, std::path::Path::new("/usr/local/bin/hub"), &s, "ab12").expect("script");
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(script.contains("export JUPYTER_TOKEN=t0k\n"), "{script}");
        assert!(script.contains("export HUB_AGENT_SECRET=ab12\n"), "{script}");
        assert!(!script.contains("KRB5CCNAME"), "the hub's ccache path means nothing on the node: {script}");
        assert!(!script.contains("bad-name"), "{script}");
        // Run the script's environment part through a real shell: the hostile value comes
        // back as it was, and nothing ran.
        let env_part: String = script.lines().filter(|l| l.starts_with("export ")).map(|l| format!("{l}\n")).collect();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{env_part}printf %s \"$EVIL\""))
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "$(touch /tmp/x)'\"; rm -rf ~");
        assert!(script.contains(
            "exec /usr/local/bin/hub node-agent --report-url http://10.0.0.1:8000/hub/api/spawner/report --server ann@gpu -- /opt/j/bin/jupyter-lab '--ServerApp.base_url=/user/ann/gpu/' '--x=a b'\n"
        ), "{script}");
        assert!(script.contains("# hub-ann@gpu: the hub's server for ann\n"), "{script}");
        let nul = spec(vec![("A", "x\0y")], vec!["/j"]);
        assert!(render_script(&cfg, std::path::Path::new("/h"), &nul, "s").is_err());
    }

    #[test]
    fn the_kernelspecs_travel_in_the_script() {
        let dir = tempfile::tempdir().expect("tmp");
        let spark = dir.path().join("kernels/spark");
        std::fs::create_dir_all(&spark).expect("mkdir");
        let kernel = serde_json::json!({"argv": ["python", "-f", "{connection_file}"], "display_name": "Spark 'prod'", "language": "python", "env": {"A": "$(id)"}});
        std::fs::write(spark.join("kernel.json"), kernel.to_string()).expect("write");
        let here = dir.path().display().to_string();
        let s = SpawnSpec {
            kernelspecs: Some(dir.path().to_path_buf()),
            ..spec(vec![("JUPYTER_PATH", &here), ("JUPYTER_TOKEN", "t")], vec!["/j"])
        };
        let script = render_script(&config(""), std::path::Path::new("/h"), &s, "ab").expect("script");
        assert!(!script.contains("JUPYTER_PATH"), "the hub's directory is not on the node: {script}");
        let env_part: String = script.lines().filter(|l| l.starts_with("export ")).map(|l| format!("{l}\n")).collect();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{env_part}printf %s \"$HUB_KERNELSPECS\""))
            .output()
            .expect("sh");
        let shipped: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json through the shell");
        assert_eq!(shipped, serde_json::json!({ "spark": kernel }));
        // A kernelspec the hub cannot read back fails the start, saying which.
        std::fs::write(spark.join("kernel.json"), "{").expect("write");
        let err = render_script(&config(""), std::path::Path::new("/h"), &s, "ab").expect_err("bad json");
        assert!(err.contains("spark/kernel.json is not JSON"), "{err}");
    }

    #[test]
    fn resources_come_from_the_limits_and_the_config() {
        let cfg = config("partition = \"debug\"\ntime_limit = \"8h\"\nextra_options = [\"--qos=interactive\"]\n");
        let a = sbatch_args(&cfg, &spec(vec![], vec!["/j"]));
        for want in [
            "--parsable",
            "--job-name=hub-ann@gpu",
            "--output=.hub-slurm-%j.log",
            "--chdir=/home/ann",
            "--export=NONE",
            "--no-requeue",
            "--partition=debug",
            "--mem=1537M",
            "--cpus-per-task=2",
            "--time=480",
            "--qos=interactive",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        // A profile's [profiles.slurm] replaces partition and time, and adds its options last.
        let text = "[spawner]\ncmd = [\"/j\"]\nkind = \"slurm\"\n[spawner.slurm]\nhub_url = \"http://h:1\"\npartition = \"debug\"\ntime_limit = \"8h\"\nextra_options = [\"--qos=interactive\"]\n\
                    [[profiles]]\nslug = \"big\"\n[profiles.slurm]\npartition = \"large\"\ntime_limit = \"2h\"\nextra_options = [\"--qos=big\", \"--gres=gpu:1\"]\n";
        let parsed = hub_config::Config::parse(std::path::Path::new("hub.toml"), text).expect("config");
        let hub_config::SpawnerKind::Slurm(cfg) = parsed.spawner.kind else { panic!("not slurm") };
        let s = SpawnSpec { profile: parsed.profiles.first().cloned(), ..spec(vec![], vec!["/j"]) };
        let a = sbatch_args(&cfg, &s);
        assert!(a.contains(&"--partition=large".to_string()) && !a.contains(&"--partition=debug".to_string()), "{a:?}");
        assert!(a.contains(&"--time=120".to_string()) && !a.contains(&"--time=480".to_string()), "{a:?}");
        let tail: Vec<&str> = a.iter().rev().take(3).rev().map(String::as_str).collect();
        assert_eq!(tail, ["--qos=interactive", "--qos=big", "--gres=gpu:1"]);
    }

    /// The error `text` gets as hub.toml.
    fn refused(text: &str) -> String {
        match hub_config::Config::parse(std::path::Path::new("hub.toml"), text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_config_refuses_what_sbatch_would_misread() {
        let bad = |extra: &str, needle: &str| {
            let text = format!(
                "[spawner]\ncmd = [\"/j\"]\nkind = \"slurm\"\n[spawner.slurm]\nhub_url = \"http://h:1\"\n{extra}"
            );
            let e = refused(&text);
            assert!(e.contains(needle), "{extra}: {e}");
        };
        bad("extra_options = [\"--uid=0\"]", "which the hub sets itself");
        bad("extra_options = [\"qos\"]", "not an sbatch option");
        bad("partition = \"a b\"", "one word");
        bad("time_limit = \"30s\"", "at least one minute");
        bad("script = \"#!/bin/sh\\necho hi\"", "must contain {cmd}");
        bad("script = \"{cmd} {nope}\"", "unknown placeholder {nope}");
        bad("output = \"out.log\"", "%j");
        bad("output = \"%u-%j.log\"", "no other % pattern");
        bad("agent = \"hub\"", "absolute path");
        bad(
            "[[profiles]]\nslug = \"p\"\n[profiles.slurm]\nextra_options = [\"--chdir=/\"]",
            "profiles.p.slurm.extra_options",
        );
        bad("[[profiles]]\nslug = \"p\"\n[profiles.slurm]\ntime_limit = \"5s\"", "profiles.p.slurm.time_limit");
        let no_url = "[spawner]\ncmd = [\"/j\"]\nkind = \"slurm\"\n[spawner.slurm]\n";
        let e = refused(no_url);
        assert!(e.contains("hub_url` is missing"), "{e}");
        let https = "[spawner]\ncmd = [\"/j\"]\nkind = \"slurm\"\n[spawner.slurm]\nhub_url = \"https://h:1\"\n";
        assert!(refused(https).contains("https is not supported yet"));
        let path = "[spawner]\ncmd = [\"/j\"]\nkind = \"slurm\"\n[spawner.slurm]\nhub_url = \"http://h:1/hub\"\n";
        assert!(refused(path).contains("no path"));
        let no_section = "[spawner]\ncmd = [\"/j\"]\nkind = \"slurm\"\n";
        let e = refused(no_section);
        assert!(e.contains("[spawner.slurm]"), "{e}");
        let e = refused("[spawner]\ncmd = [\"/j\"]\nkind = \"k8s\"\n");
        assert!(e.contains("\"local\" or \"slurm\""), "{e}");
    }
}
