//! The server manager: one single-user server per user, from "starting" to "stopped".
//!
//! [`Servers`] keeps each user's [`ServerState`] in a `watch` channel (the spawn page's
//! progress events follow it), starts servers through the [`Spawner`], waits until
//! `GET /user/<name>/api/status` answers 200 with the server's token, notices a server that
//! exits by itself, and stops servers. The proxy reads the server's [`Endpoint`] and token
//! with [`Servers::upstream`], a read lock and a clone, without touching the database.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, watch};

use crate::environment::{UserEnvironment, user_environment};
use crate::renewer::{Renewer, Trigger};
use crate::spawner::{ServerProcess, SpawnSpec, Spawner};
use hub_config::{Config, Transport};
use hub_core::server::{server_key, server_prefix, split_server_key};
use hub_core::unix_now;
use hub_core::{Endpoint, LinuxUser, Recover, ServerToken, TicketOwner};
use hub_net::probe::{Probe, probe};
use hub_store::{ServerRecord, Store};

/// Milliseconds between readiness polls of a starting server's `api/status`.
const READY_POLL_MS: u64 = 10;

/// Lines of the server log shown when a spawn fails.
const LOG_TAIL_LINES: usize = 25;

/// Where a user's server is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Not running. `message` says how the last one ended, if the hub knows.
    Stopped {
        /// How the last server ended.
        message: Option<String>,
    },
    /// Being started.
    Starting {
        /// Percent, 0-100, for the progress bar.
        progress: u8,
        /// What is happening now.
        message: String,
    },
    /// Answering on `endpoint`.
    Running {
        /// Where it listens.
        endpoint: Endpoint,
        /// The server's token and the `Authorization` value the proxy injects; shared, so
        /// that the proxy's per-request copy is a reference count.
        token: ServerToken,
        /// Process id.
        pid: u32,
        /// The server's owner, for ticket renewals the proxy triggers.
        owner: TicketOwner,
    },
    /// Being stopped.
    Stopping,
    /// The spawn failed, or the server died by itself.
    Failed {
        /// Why, in plain words.
        message: String,
        /// The last lines of the server's log.
        log_tail: String,
    },
}

impl ServerState {
    /// Whether the server is active as JupyterHub counts it (its `active` field and the
    /// `state=active` filter): starting, running or stopping.
    pub fn is_active(&self) -> bool {
        matches!(self, ServerState::Starting { .. } | ServerState::Running { .. } | ServerState::Stopping)
    }

    /// Short name: `stopped`, `starting`, `running`, `stopping`, `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            ServerState::Stopped { .. } => "stopped",
            ServerState::Starting { .. } => "starting",
            ServerState::Running { .. } => "running",
            ServerState::Stopping => "stopping",
            ServerState::Failed { .. } => "failed",
        }
    }
}

/// Most servers the culler asks for their activity at once.
const POLL_CONCURRENCY: usize = 8;
/// How long the culler waits for one server's answer (connect included).
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest answer the culler reads from `api/status` or `api/kernels` (bytes).
const POLL_MAX_BYTES: usize = 1 << 20;

/// What a jupyter-server reports of its own activity: the latest `last_activity` of
/// `GET /api/status` and of each kernel in `GET /api/kernels` (unix seconds; 0 if none), and
/// whether any kernel's `execution_state` is `busy` (jupyter-server's REST API,
/// `jupyter_server/services/api/api.yaml`; times are ISO 8601 in UTC with `Z`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportedActivity {
    /// Unix seconds of the latest activity reported; 0 if none could be read.
    pub last_activity: i64,
    /// Whether a kernel is busy now.
    pub busy: bool,
}

impl ReportedActivity {
    /// From the bodies of the two answers (either may be missing or malformed: it then adds
    /// nothing).
    pub fn parse(status: Option<&[u8]>, kernels: Option<&[u8]>) -> Self {
        let time = |v: &serde_json::Value| -> i64 {
            v.get("last_activity")
                .and_then(|t| t.as_str())
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64)
        };
        let mut out = ReportedActivity::default();
        if let Some(v) = status.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok()) {
            out.last_activity = time(&v);
        }
        if let Some(serde_json::Value::Array(list)) = kernels.and_then(|b| serde_json::from_slice(b).ok()) {
            for k in &list {
                out.last_activity = out.last_activity.max(time(k));
                out.busy |= k.get("execution_state").and_then(|s| s.as_str()) == Some("busy");
            }
        }
        out
    }

    /// The time to move the server's activity clock to at `now`: `now` while a kernel is
    /// busy (unless `cull_busy`), else the latest reported activity, never past `now`.
    pub fn clock(&self, now: i64, cull_busy: bool) -> i64 {
        if self.busy && !cull_busy { now } else { self.last_activity.min(now) }
    }
}

/// A running server's route: what the proxy needs for one request, from one read of the
/// server's slot ([`Servers::route`]).
#[derive(Debug, Clone)]
pub struct Route {
    /// Where the server listens.
    pub endpoint: Endpoint,
    /// The server's token and its `Authorization: token ...` value.
    pub token: ServerToken,
    /// The server's activity clock: the proxy stores the current unix time in it on every
    /// request and every WebSocket read (an atomic store: no lock, no database write).
    pub activity: Arc<AtomicI64>,
    /// The server's owner: every upstream connection checks that its listener runs as
    /// `owner.uid` before sending anything (`hub_net::peer`), and a notebook open or save
    /// the proxy sees renews this owner's ticket.
    pub owner: TicketOwner,
}

/// What the REST API and the admin page show of a user's server ([`Servers::snapshot`]).
#[derive(Debug, Clone)]
pub struct ServerSnapshot {
    /// Its state now.
    pub state: ServerState,
    /// Unix seconds it became ready (or was re-adopted); 0 if it never has.
    pub ready_since: i64,
    /// Unix seconds of its last proxied request or WebSocket traffic; 0 if none.
    pub last_activity: i64,
}

/// One user's server as the manager keeps it: its state, the lock that serialises starts
/// and stops, and its process and clocks.
struct ServerSlot {
    state: watch::Sender<ServerState>,
    /// Held for the whole of a start or a stop, so they never interleave.
    op: Mutex<()>,
    /// Set by `stop` to make a start in progress give up.
    cancel: AtomicBool,
    process: Mutex<Option<Box<dyn ServerProcess>>>,
    /// Unix seconds of the last proxied request or WebSocket traffic (the culler's clock).
    activity: Arc<AtomicI64>,
    /// Unix seconds the running server became ready (or was re-adopted).
    running_since: AtomicI64,
    /// The `user_options` JSON object the server was (or is being) started with.
    options: std::sync::Mutex<String>,
}

impl ServerSlot {
    fn new() -> Self {
        ServerSlot {
            state: watch::channel(ServerState::Stopped { message: None }).0,
            op: Mutex::new(()),
            cancel: AtomicBool::new(false),
            process: Mutex::new(None),
            activity: Arc::new(AtomicI64::new(0)),
            running_since: AtomicI64::new(0),
            options: std::sync::Mutex::new("{}".into()),
        }
    }
}

/// Why a spawn failed: the message for the user (the spawn page, the API, the admin page) and
/// the last lines of the server's log, if it got as far as writing one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
struct SpawnFailure {
    message: String,
    log_tail: String,
}

impl SpawnFailure {
    fn new(message: impl Into<String>, log_tail: String) -> Self {
        SpawnFailure { message: message.into(), log_tail }
    }
}

/// Why a spawn was refused (HTTP 429, as JupyterHub answers).
#[derive(Debug, thiserror::Error)]
pub enum SpawnRefused {
    /// `concurrent_spawn_limit` spawns are already in progress.
    #[error("{0} servers are starting right now (spawner.concurrent_spawn_limit); try again in a few seconds")]
    TooManySpawns(usize),
    /// `active_server_limit` servers are starting or running.
    #[error(
        "the hub is at its limit of {0} active servers (spawner.active_server_limit); try again later or ask an admin"
    )]
    TooManyActive(usize),
    /// A new named server refused ([`Servers::check_named`]'s message), checked again under
    /// the lock that creates it, so parallel requests cannot pass the per-user limit together.
    #[error("{0}")]
    Named(String),
}

impl SpawnRefused {
    /// Seconds for the `Retry-After` header.
    pub fn retry_after(&self) -> u64 {
        match self {
            SpawnRefused::TooManySpawns(_) => 5,
            SpawnRefused::TooManyActive(_) | SpawnRefused::Named(_) => 60,
        }
    }
}

/// Starts, watches and stops users' servers. See the module documentation.
pub struct Servers {
    config: Config,
    spawner: Arc<dyn Spawner>,
    renewer: Arc<Renewer>,
    store: Arc<dyn Store>,
    slots: RwLock<HashMap<String, Arc<ServerSlot>>>,
    /// Seconds from spawn request to ready (or failure), labelled `status` = `success` or
    /// `failure`: JupyterHub's `jupyterhub_server_spawn_duration_seconds`.
    pub spawn_duration: prometheus::HistogramVec,
}

impl Servers {
    /// A manager using `spawner`, renewing tickets with `renewer` and recording state in
    /// `store`.
    pub fn new(config: Config, spawner: Arc<dyn Spawner>, renewer: Arc<Renewer>, store: Arc<dyn Store>) -> Self {
        let spawn_duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "jupyterhub_server_spawn_duration_seconds",
                "Time from a spawn request to the server answering, or to the spawn failing",
            )
            .buckets(vec![0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
            &["status"],
        )
        .expect("valid histogram options");
        Self { config, spawner, renewer, store, slots: RwLock::new(HashMap::new()), spawn_duration }
    }

    fn slot(&self, name: &str) -> Arc<ServerSlot> {
        if let Some(s) = self.slots.read().recover().get(name) {
            return s.clone();
        }
        self.slots.write().recover().entry(name.to_string()).or_insert_with(|| Arc::new(ServerSlot::new())).clone()
    }

    /// The current state of `name`'s server.
    pub fn state(&self, name: &str) -> ServerState {
        match self.slots.read().recover().get(name) {
            Some(s) => s.state.borrow().clone(),
            None => ServerState::Stopped { message: None },
        }
    }

    /// A receiver that sees every state change of `name`'s server.
    pub fn subscribe(&self, name: &str) -> watch::Receiver<ServerState> {
        self.slot(name).state.subscribe()
    }

    /// The route to `name`'s server if it is running: endpoint, token, activity clock and
    /// owner, from one read of its slot. The proxy's hot path: every part is shared (reference
    /// counts), so this copies no bytes of them.
    pub fn route(&self, name: &str) -> Option<Route> {
        let slots = self.slots.read().recover();
        let slot = slots.get(name)?;
        match &*slot.state.borrow() {
            ServerState::Running { endpoint, token, owner, .. } => Some(Route {
                endpoint: endpoint.clone(),
                token: token.clone(),
                activity: slot.activity.clone(),
                owner: owner.clone(),
            }),
            _ => None,
        }
    }

    /// What the REST API shows of `name`'s server, without creating any state for a user the
    /// manager has not seen.
    pub fn snapshot(&self, name: &str) -> ServerSnapshot {
        let slots = self.slots.read().recover();
        match slots.get(name) {
            None => ServerSnapshot { state: ServerState::Stopped { message: None }, ready_since: 0, last_activity: 0 },
            Some(s) => ServerSnapshot {
                state: s.state.borrow().clone(),
                ready_since: s.running_since.load(Ordering::Relaxed),
                last_activity: s.activity.load(Ordering::Relaxed),
            },
        }
    }

    /// Every running server as `(user, endpoint)`, sorted by user: the proxy's routing table.
    pub fn running(&self) -> Vec<(String, Endpoint)> {
        let slots = self.slots.read().recover();
        let mut out: Vec<(String, Endpoint)> = slots
            .iter()
            .filter_map(|(n, s)| match &*s.state.borrow() {
                ServerState::Running { endpoint, .. } => Some((n.clone(), endpoint.clone())),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Moves `name`'s activity clock forward to `at` (unix seconds), as activity reported
    /// through the REST API does; never backwards, and not for a user with no server state.
    pub fn note_activity(&self, name: &str, at: i64) {
        if let Some(s) = self.slots.read().recover().get(name) {
            s.activity.fetch_max(at, Ordering::Relaxed);
        }
    }

    /// The server log file of the server with key `key` ([`hub_core::server::server_key`]):
    /// `<data_dir>/logs/<user>.log` for a default server, `<user>@<server_name>.log` for a
    /// named one (`@` is in neither a user name nor a server name).
    pub fn log_path(&self, key: &str) -> PathBuf {
        self.config.hub.data_dir.join("logs").join(format!("{}.log", unit_name(key)))
    }

    /// The user's servers the manager knows (the default one, as `""`, only if it has state),
    /// as `(server_name, snapshot, user_options JSON)`, sorted by name.
    pub fn servers_of(&self, user: &str) -> Vec<(String, ServerSnapshot, String)> {
        let slots = self.slots.read().recover();
        let mut out: Vec<_> = slots
            .iter()
            .filter_map(|(key, slot)| {
                let (u, server) = split_server_key(key);
                (u == user).then(|| {
                    let snap = ServerSnapshot {
                        state: slot.state.borrow().clone(),
                        ready_since: slot.running_since.load(Ordering::Relaxed),
                        last_activity: slot.activity.load(Ordering::Relaxed),
                    };
                    (server.to_string(), snap, slot.options.lock().recover().clone())
                })
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The `user_options` JSON object of the server with key `key` (`{}` if none).
    pub fn options(&self, key: &str) -> String {
        self.slots.read().recover().get(key).map_or_else(|| "{}".into(), |s| s.options.lock().recover().clone())
    }

    /// Whether `user` may start their server `server_name` (`""`: the default one, always),
    /// with JupyterHub's checks and messages: named servers enabled
    /// (`[spawner] allow_named_servers`), and for a new one a valid name
    /// ([`hub_core::server::check_server_name`]) and room under `named_server_limit_per_user`.
    pub fn check_named(&self, user: &str, server_name: &str) -> Result<(), String> {
        if server_name.is_empty() {
            return Ok(());
        }
        let sc = &self.config.spawner;
        if !sc.allow_named_servers {
            return Err("Named servers are not enabled. (an admin sets [spawner] allow_named_servers = true)".into());
        }
        if self.has_named(user, server_name) {
            return Ok(());
        }
        hub_core::server::check_server_name(server_name)?;
        let limit = sc.named_server_limit_per_user;
        if limit > 0 && self.named_count(user) >= limit {
            return Err(format!(
                "User {user} already has the maximum of {limit} named servers.  One must be deleted before a new server can be created"
            ));
        }
        Ok(())
    }

    /// Forgets every server of a deleted `user` (call it once they are stopped).
    pub fn forget_user(&self, user: &str) {
        self.slots.write().recover().retain(|k, _| split_server_key(k).0 != user);
    }

    /// Whether `user` has a named server `server_name` (running or not).
    pub fn has_named(&self, user: &str, server_name: &str) -> bool {
        !server_name.is_empty() && self.slots.read().recover().contains_key(&server_key(user, server_name))
    }

    /// How many named servers `user` has (running or not).
    pub fn named_count(&self, user: &str) -> usize {
        self.slots
            .read()
            .recover()
            .keys()
            .filter(|k| matches!(split_server_key(k), (u, n) if u == user && !n.is_empty()))
            .count()
    }

    /// Whether another server of `key`'s user than `key` is starting, running or stopping
    /// (then the user's ticket stays on the renewer's timer).
    fn others_active(&self, key: &str) -> bool {
        let (user, _) = split_server_key(key);
        self.slots
            .read()
            .recover()
            .iter()
            .any(|(k, s)| k != key && split_server_key(k).0 == user && s.state.borrow().is_active())
    }

    /// Takes `owner` off the renewer's timer unless another of their servers is active.
    fn deactivate_unless_others(&self, key: &str, owner: &TicketOwner) {
        if !self.others_active(key) {
            self.renewer.deactivate(owner);
        }
    }

    /// Starts `user`'s server in the background unless it is already starting or running.
    /// Progress is published on the state channel.
    ///
    /// Refused (and nothing started) when `concurrent_spawn_limit` spawns are in progress or
    /// `active_server_limit` servers are active.
    pub fn start(self: &Arc<Self>, user: LinuxUser) -> Result<(), SpawnRefused> {
        self.start_server(user, "", "{}".into())
    }

    /// Starts `user`'s server `server_name` (`""`: the default one) with `user_options` (a
    /// JSON object, kept with the server), as [`Servers::start`] does. Checking the name and
    /// the named-server limit is the caller's ([`hub_core::server::check_server_name`]).
    pub fn start_server(
        self: &Arc<Self>,
        user: LinuxUser,
        server_name: &str,
        user_options: String,
    ) -> Result<(), SpawnRefused> {
        let key = server_key(&user.name, server_name);
        if !server_name.is_empty() && !self.has_named(&user.name, server_name) {
            // A new named server: its checks and its slot under one write lock, so parallel
            // creations cannot pass named_server_limit_per_user together.
            let mut slots = self.slots.write().recover();
            if !slots.contains_key(&key) {
                let mine = slots
                    .keys()
                    .filter(|k| matches!(split_server_key(k), (u, n) if u == user.name && !n.is_empty()))
                    .count();
                let limit = self.config.spawner.named_server_limit_per_user;
                if !self.config.spawner.allow_named_servers || (limit > 0 && mine >= limit) {
                    drop(slots);
                    return Err(SpawnRefused::Named(
                        self.check_named(&user.name, server_name)
                            .err()
                            .unwrap_or_else(|| "named server refused".into()),
                    ));
                }
                slots.insert(key.clone(), Arc::new(ServerSlot::new()));
            }
        }
        let slot = self.slot(&key);
        {
            // The limits are checked and the slot claimed under the slots lock, so two
            // concurrent requests cannot both squeeze under a limit.
            let slots = self.slots.write().recover();
            if slot.state.borrow().is_active() {
                return Ok(());
            }
            let (mut starting, mut active) = (0, 0);
            for s in slots.values() {
                match *s.state.borrow() {
                    ServerState::Starting { .. } => {
                        starting += 1;
                        active += 1;
                    }
                    ServerState::Running { .. } | ServerState::Stopping => active += 1,
                    _ => {}
                }
            }
            let sc = &self.config.spawner;
            if sc.concurrent_spawn_limit > 0 && starting >= sc.concurrent_spawn_limit {
                return Err(SpawnRefused::TooManySpawns(starting));
            }
            if sc.active_server_limit > 0 && active >= sc.active_server_limit {
                return Err(SpawnRefused::TooManyActive(active));
            }
            slot.state.send_replace(ServerState::Starting { progress: 5, message: "Spawn requested".into() });
            *slot.options.lock().recover() = user_options;
        }
        let this = self.clone();
        let server_name = server_name.to_string();
        tokio::spawn(async move {
            let _op = slot.op.lock().await;
            slot.cancel.store(false, Ordering::SeqCst);
            let name = key;
            let started = Instant::now();
            let outcome = this.spawn_and_wait(&slot, user, &server_name).await;
            let secs = started.elapsed().as_secs_f64();
            let status = if outcome.is_ok() { "success" } else { "failure" };
            this.spawn_duration.with_label_values(&[status]).observe(secs);
            match outcome {
                Ok(()) => tracing::info!(user = %name, secs, "server ready"),
                Err(SpawnFailure { message, log_tail }) => {
                    tracing::warn!(user = %name, reason = %message, "spawn failed");
                    slot.state.send_replace(ServerState::Failed { message: message.clone(), log_tail });
                    this.record(&name, "failed", None, Some(message)).await;
                }
            }
        });
        Ok(())
    }

    async fn spawn_and_wait(
        self: &Arc<Self>,
        slot: &Arc<ServerSlot>,
        user: LinuxUser,
        server_name: &str,
    ) -> Result<(), SpawnFailure> {
        let name = server_key(&user.name, server_name);
        let owner = TicketOwner::from(&user);
        let progress = |p: u8, m: &str| {
            slot.state.send_replace(ServerState::Starting { progress: p, message: m.to_string() });
        };
        if self.renewer.enabled() {
            progress(10, "Getting a Kerberos ticket");
            if let Err(e) = self.renewer.renew(&owner, Trigger::Spawn).await {
                // Never blocks the spawn: the server starts without a fresh ticket.
                tracing::warn!(user = %name, error = %e, "starting the server without a fresh Kerberos ticket");
            }
        }
        progress(30, "Starting the server process");
        let logs = self.config.hub.data_dir.join("logs");
        if let Err(e) = std::fs::DirBuilder::new().recursive(true).mode(0o750).create(&logs) {
            return Err(SpawnFailure::new(
                format!("cannot create the log directory {}: {e}", logs.display()),
                String::new(),
            ));
        }
        let log_path = self.log_path(&name);
        // A spawner that runs servers elsewhere learns the endpoint from the server itself.
        let chosen = if self.spawner.is_remote() { None } else { Some(self.endpoint_for(&user, server_name)?) };
        let mut token = [0u8; 32];
        rand::fill(&mut token);
        let token = hex::encode(token);
        let Some(server_token) = ServerToken::new(&token) else {
            return Err(SpawnFailure::new(
                "internal error: the new server token is not a valid header value",
                String::new(),
            ));
        };
        let spec = self.spawn_spec(&user, server_name, chosen.as_ref(), &token, log_path.clone());
        let process = match self.spawner.start(spec).await {
            Ok(p) => p,
            Err(e) => return Err(SpawnFailure::new(e.to_string(), log_tail(&log_path))),
        };
        let pid = process.pid();
        let start_ticks = process.start_ticks();
        let mut exited = process.exited();
        let remote = chosen.is_none();
        *slot.process.lock().await = Some(process);
        if let Some(endpoint) = &chosen {
            let live = Live { pid, endpoint: Some(endpoint), token: &token, start_ticks, owner: &owner, state: None };
            self.record(&name, "starting", Some(live), None).await;
            progress(50, &format!("Server process started (pid {pid}); waiting for it to answer"));
        } else {
            // The job id goes on record at once, so that a hub restarted while the job waits
            // in the queue finds it (and cancels it, `adopt_remote`) instead of orphaning it.
            let state = slot.process.lock().await.as_ref().and_then(|p| p.state());
            let live = Live { pid, endpoint: None, token: &token, start_ticks, owner: &owner, state };
            self.record(&name, "starting", Some(live), None).await;
        }

        let deadline = Instant::now() + self.config.spawner.start_timeout;
        let path = format!("{}api/status", server_prefix(&user.name, server_name));
        let mut step = 0u32;
        let endpoint = loop {
            if slot.cancel.load(Ordering::SeqCst) {
                // The process stays in the slot: the stop that cancelled the spawn stops it.
                return Err(SpawnFailure::new("The spawn was cancelled", log_tail(&log_path)));
            }
            let how = exited.borrow().clone();
            if let Some(how) = how {
                let p = slot.process.lock().await.take();
                let tail = self.tail(p.as_deref(), &log_path).await;
                let what = if remote { "server's job" } else { "server" };
                return Err(SpawnFailure::new(format!("The {what} {how} during start-up"), tail));
            }
            if Instant::now() >= deadline {
                let p = slot.process.lock().await.take();
                let tail = self.tail(p.as_deref(), &log_path).await;
                if let Some(p) = p {
                    p.stop(self.config.spawner.term_timeout).await;
                }
                return Err(SpawnFailure::new(
                    format!(
                        "The server did not answer within {} (spawner.start_timeout)",
                        humantime::format_duration(self.config.spawner.start_timeout)
                    ),
                    tail,
                ));
            }
            // Where it listens: chosen by the hub, or (elsewhere) reported by the server and
            // confirmed by the spawner; until then, what the scheduler says.
            let (endpoint, status) = match &chosen {
                Some(e) => (Some(e.clone()), None),
                None => match slot.process.lock().await.as_ref() {
                    Some(p) => (p.endpoint(), p.status()),
                    None => (None, None),
                },
            };
            let Some(endpoint) = endpoint else {
                progress(35, status.as_deref().unwrap_or("Waiting for the scheduler"));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = exited.changed() => {}
                }
                continue;
            };
            match probe(&endpoint, owner.uid, &path, &server_token).await {
                Probe::Ready => break endpoint,
                Probe::NotYet => {}
                Probe::Impostor(why) => {
                    tracing::error!(user = %name, endpoint = %endpoint, reason = %why, "refused a listener that is not the user's server");
                    let p = slot.process.lock().await.take();
                    let tail = self.tail(p.as_deref(), &log_path).await;
                    if let Some(p) = p {
                        p.stop(self.config.spawner.term_timeout).await;
                    }
                    return Err(SpawnFailure::new(
                        format!(
                            "The server could not be reached safely: {why}. Start it again (it gets a new address)"
                        ),
                        tail,
                    ));
                }
            }
            step += 1;
            // The bar creeps from 50 % to 95 % over the first 4.5 s of waiting, whatever the
            // poll interval; a poll every 10 ms is a refused connect until the server listens,
            // and finds it ready within 5 ms on average. A remote server is asked every 100 ms
            // (each ask is a TLS handshake).
            let every = if remote { 100 } else { READY_POLL_MS };
            let waited = u64::from(step) * every / 100;
            let message = match status {
                Some(s) => s,
                None => format!("Waiting for the server (pid {pid}) to answer"),
            };
            progress((50 + waited.min(45)) as u8, &message);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(every)) => {}
                _ = exited.changed() => {}
            }
        };
        if remote && self.renewer.enabled() {
            progress(96, "Delivering your Kerberos ticket to the server's node");
            if let Some(p) = slot.process.lock().await.as_ref() {
                self.deliver(p.as_ref(), &owner, &name).await;
            }
        }
        let state = slot.process.lock().await.as_ref().and_then(|p| p.state());
        let live = Live { pid, endpoint: Some(&endpoint), token: &token, start_ticks, owner: &owner, state };
        self.record(&name, "running", Some(live), None).await;
        slot.running_since.store(unix_now(), Ordering::Relaxed);
        slot.activity.store(unix_now(), Ordering::Relaxed);
        self.renewer.activate(&owner);
        slot.state.send_replace(ServerState::Running { endpoint, token: server_token, pid, owner: owner.clone() });
        self.watch_exit(name, slot.clone(), pid, exited, log_path);
        Ok(())
    }

    /// The last lines of a server's log: the spawner's (a batch job's output on another
    /// machine) if it has one, else the hub's log file at `log_path`.
    async fn tail(&self, process: Option<&dyn ServerProcess>, log_path: &Path) -> String {
        if let Some(p) = process
            && let Some(t) = p.log_tail().await
        {
            return t;
        }
        log_tail(log_path)
    }

    /// Delivers `owner`'s credential cache from this host to the machine `process` runs on;
    /// a failure is logged (the server keeps running with the copy it has).
    async fn deliver(&self, process: &dyn ServerProcess, owner: &TicketOwner, key: &str) {
        let renewer = self.renewer.clone();
        let o = owner.clone();
        let bytes = match tokio::task::spawn_blocking(move || renewer.ccache_bytes(&o)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(user = %key, error = %e, "no credential cache to deliver to the server's node");
                return;
            }
            Err(e) => {
                tracing::warn!(user = %key, error = %e, "could not read the credential cache");
                return;
            }
        };
        let len = bytes.len();
        match process.deliver_ccache(bytes).await {
            Ok(()) => tracing::info!(user = %key, bytes = len, "credential cache delivered to the server's node"),
            Err(e) => {
                tracing::warn!(user = %key, error = %e, "could not deliver the credential cache to the server's node")
            }
        }
    }

    /// For a spawner whose servers run elsewhere: after every renewal of a user's ticket (on
    /// the renewer's timer, at sign-in, or on a notebook open or save the proxy saw), delivers
    /// the new credential cache to each of that user's running servers. Runs until `shutdown`
    /// resolves.
    ///
    /// It subscribes to the renewals when called, not when first polled: call it before the
    /// renewer's timer starts, so that no renewal falls between the two.
    pub fn run_delivery(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let renewed = self.spawner.is_remote().then(|| self.renewer.subscribe_renewals());
        async move {
            if let Some(renewed) = renewed {
                self.deliver_renewals(renewed, shutdown).await;
            }
        }
    }

    async fn deliver_renewals(
        &self,
        mut renewed: tokio::sync::broadcast::Receiver<String>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        tokio::pin!(shutdown);
        loop {
            let who = tokio::select! {
                _ = &mut shutdown => return,
                r = renewed.recv() => match r {
                    Ok(user) => Some(user),
                    // Fell behind: deliver to everyone's servers.
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                },
            };
            let targets: Vec<(String, Arc<ServerSlot>, TicketOwner)> = self
                .slots
                .read()
                .recover()
                .iter()
                .filter(|(k, _)| who.as_deref().is_none_or(|u| split_server_key(k).0 == u))
                .filter_map(|(k, slot)| match &*slot.state.borrow() {
                    ServerState::Running { endpoint, owner, .. } if !endpoint.is_local() => {
                        Some((k.clone(), slot.clone(), owner.clone()))
                    }
                    _ => None,
                })
                .collect();
            for (key, slot, owner) in targets {
                if let Some(p) = slot.process.lock().await.as_ref() {
                    self.deliver(p.as_ref(), &owner, &key).await;
                }
            }
        }
    }

    /// A node agent's report of where its server listens (`POST /hub/api/spawner/report`),
    /// checked by the spawner ([`Spawner::report`]).
    pub fn report(&self, body: &[u8], signature: Option<&str>) -> Result<(), crate::spawner::ReportError> {
        self.spawner.report(body, signature)
    }

    /// Whether servers run on other machines ([`Spawner::is_remote`]).
    pub fn is_remote(&self) -> bool {
        self.spawner.is_remote()
    }

    /// Marks the server failed if its process exits while it is meant to be running.
    fn watch_exit(
        self: &Arc<Self>,
        name: String,
        slot: Arc<ServerSlot>,
        pid: u32,
        mut exited: watch::Receiver<Option<String>>,
        log: PathBuf,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(how) = exited.wait_for(|e| e.is_some()).await.map(|e| e.clone().unwrap_or_default()) else { return };
            let owner = match &*slot.state.borrow() {
                ServerState::Running { pid: p, owner, .. } if *p == pid => Some(owner.clone()),
                _ => None,
            };
            if let Some(owner) = owner {
                this.deactivate_unless_others(&name, &owner);
                let message = if this.spawner.is_remote() {
                    format!("The server's job ended: {how}")
                } else {
                    format!("The server {how} unexpectedly")
                };
                tracing::warn!(user = %name, pid, how = %how, "server exited by itself");
                // Clean up what it left: kernels that outlived it, its cgroups.
                let p = slot.process.lock().await.take();
                let tail = this.tail(p.as_deref(), &log).await;
                if let Some(p) = p {
                    p.stop(this.config.spawner.term_timeout).await;
                }
                slot.state.send_replace(ServerState::Failed { message: message.clone(), log_tail: tail });
                this.record(&name, "failed", None, Some(message)).await;
            }
        });
    }

    /// Where `user`'s next server will listen. For a Unix socket, makes
    /// `<data_dir>/sockets/<user>/` (root's `sockets` 0711; the user's own directory 0700,
    /// owned by the user, so only the user's processes can create the socket there and only
    /// they and root can reach it) and removes a socket an earlier server left behind.
    /// Errors name the path and the cause.
    fn endpoint_for(&self, user: &LinuxUser, server_name: &str) -> Result<Endpoint, SpawnFailure> {
        match self.config.spawner.transport {
            Transport::Tcp => free_port()
                .map(Endpoint::Tcp)
                .map_err(|e| SpawnFailure::new(format!("no free port on 127.0.0.1: {e}"), String::new())),
            Transport::Unix => {
                let path = self.config.hub.server_socket_for(&user.name, server_name);
                let dir = path.parent().unwrap_or(Path::new("/"));
                let prepare = || -> std::io::Result<()> {
                    if let Some(base) = dir.parent() {
                        std::fs::DirBuilder::new().recursive(true).mode(0o711).create(base)?;
                    }
                    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        other => other?,
                    }
                    // Whatever was there before (another owner, looser mode), it is the
                    // user's own 0700 directory from now on.
                    let meta = std::fs::symlink_metadata(dir)?;
                    if !meta.is_dir() {
                        return Err(std::io::Error::other("exists and is not a directory"));
                    }
                    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
                    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    }
                };
                prepare().map_err(|e| {
                    SpawnFailure::new(
                        format!("cannot prepare the server's socket directory {}: {e}", dir.display()),
                        String::new(),
                    )
                })?;
                Ok(Endpoint::Unix(Arc::from(path.as_path())))
            }
        }
    }

    fn spawn_spec(
        &self,
        user: &LinuxUser,
        server_name: &str,
        endpoint: Option<&Endpoint>,
        token: &str,
        log_path: PathBuf,
    ) -> SpawnSpec {
        let sc = &self.config.spawner;
        // The profile the server was started with (`user_options.profile`, checked by
        // `choose_profile` before the start).
        let options: serde_json::Value =
            serde_json::from_str(&self.options(&server_key(&user.name, server_name))).unwrap_or_default();
        let profile = options
            .get("profile")
            .and_then(|p| p.as_str())
            .and_then(|slug| self.config.profiles.iter().find(|p| p.slug == slug));
        let UserEnvironment { mut env, limits, kernelspecs } =
            user_environment(&self.config, &self.renewer, user, profile);
        env.retain(|(k, _)| k != "JUPYTER_TOKEN");
        env.push(("JUPYTER_TOKEN".into(), token.to_string()));
        let mut argv = profile.and_then(|p| p.cmd.clone()).unwrap_or_else(|| sc.cmd.clone());
        argv.push(format!("--ServerApp.base_url={}", server_prefix(&user.name, server_name)));
        match endpoint {
            // A server elsewhere: its node agent adds where it listens.
            None | Some(Endpoint::Tls(_)) => {}
            Some(Endpoint::Tcp(port)) => argv.extend([
                "--ServerApp.ip=127.0.0.1".into(),
                format!("--ServerApp.port={port}"),
                "--ServerApp.port_retries=0".into(),
            ]),
            Some(Endpoint::Unix(path)) => {
                argv.extend([format!("--ServerApp.sock={}", path.display()), "--ServerApp.sock_mode=0600".into()])
            }
        }
        // JupyterLab's Hub menu (`@jupyterlab/hub-extension`: File → Hub Control Panel, Log
        // Out, and Restart when the connection is lost) appears when the page config has the
        // hub's values; labapp copies them from these tornado settings (`hub_prefix`,
        // `hub_host`, `user`) as jupyterhub-singleuser sets them, with no JupyterHub package
        // in the user's venv. `quit_button` off: the hub, not the Lab, stops the server.
        let page_config = serde_json::json!({
            "hub_prefix": "/hub/",
            "hub_host": "",
            "user": user.name,
            "page_config_data": {"hubPrefix": "/hub/", "hubHost": "", "hubUser": user.name, "hubServerName": server_name},
        });
        argv.extend([
            format!("--ServerApp.tornado_settings={page_config}"),
            "--ServerApp.quit_button=False".into(),
            "--ServerApp.open_browser=False".into(),
            // The hub forwards the browser's Host header (so that jupyter-server's WebSocket
            // origin check sees the public host); the token and the loopback bind are the
            // access control (and, for a Unix socket, its mode), not the Host check.
            "--ServerApp.allow_remote_access=True".into(),
        ]);
        argv.extend(sc.args.iter().cloned());
        SpawnSpec {
            user: user.clone(),
            argv,
            env,
            log_path,
            limits,
            unit: unit_name(&server_key(&user.name, server_name)),
            profile: profile.cloned(),
            kernelspecs,
        }
    }

    /// Removes what the hub made on disk for `name`'s servers: the socket directory
    /// (`<data_dir>/sockets/<name>/`) and the kernelspecs (`<data_dir>/jupyter/<name>/`), for
    /// a deleted user; server logs stay. Call it with no server running. Neither directory
    /// can be a link the user planted (both parents are root's, 0711), and `remove_dir_all`
    /// does not follow links inside. Errors other than "not there" are returned with the path.
    pub async fn remove_user_files(&self, name: &str) -> std::io::Result<()> {
        let socket_dir = self.config.hub.server_socket(name).parent().map(Path::to_path_buf);
        let kernelspecs = self.config.hub.kernelspec_root(name);
        tokio::task::spawn_blocking(move || {
            for dir in socket_dir.into_iter().chain([kernelspecs]) {
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(std::io::Error::new(e.kind(), format!("cannot remove {}: {e}", dir.display())));
                    }
                    _ => {}
                }
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// How many processes of `name`'s current server the OOM killer ended at its memory limit
    /// (0 when no server runs or the host cannot tell).
    pub async fn oom_kills(&self, name: &str) -> u64 {
        let slot = self.slots.read().recover().get(name).cloned();
        match slot {
            Some(s) => s.process.lock().await.as_ref().map_or(0, |p| p.oom_kills()),
            None => 0,
        }
    }

    /// Stops `name`'s server (or a spawn in progress) and waits until it is gone. Stopping a
    /// stopped server does nothing. Removes the user's credential cache.
    pub async fn stop(&self, user: &LinuxUser) {
        self.stop_server(user, "").await;
    }

    /// Stops `user`'s server `server_name` (`""`: the default one), as [`Servers::stop`].
    pub async fn stop_server(&self, user: &LinuxUser, server_name: &str) {
        let key = server_key(&user.name, server_name);
        let slot = self.slot(&key);
        slot.cancel.store(true, Ordering::SeqCst);
        let _op = slot.op.lock().await;
        let Some(process) = slot.process.lock().await.take() else {
            if !matches!(*slot.state.borrow(), ServerState::Failed { .. }) {
                slot.state.send_replace(ServerState::Stopped { message: None });
            }
            return;
        };
        let endpoint = match &*slot.state.borrow() {
            ServerState::Running { endpoint, .. } => Some(endpoint.clone()),
            _ => None,
        };
        slot.state.send_replace(ServerState::Stopping);
        let how = process.stop(self.config.spawner.term_timeout).await;
        tracing::info!(user = %user.name, server = %server_name, pid = process.pid(), how = %how, "server stopped");
        // jupyter-server leaves its socket file behind when it exits.
        if let Some(Endpoint::Unix(path)) = endpoint
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(user = %user.name, path = %path.display(), error = %e, "could not remove the server's socket");
        }
        self.deactivate_unless_others(&key, &TicketOwner::from(user));
        slot.state.send_replace(ServerState::Stopped { message: Some(format!("Stopped ({how})")) });
        self.record(&key, "stopped", None, Some(how)).await;
    }

    /// Stops `user`'s named server `server_name` and forgets it (JupyterHub's
    /// `DELETE /users/{name}/servers/{server_name}` with `remove`); `false` if there was none.
    pub async fn delete_named(&self, user: &LinuxUser, server_name: &str) -> Result<bool, hub_store::StoreError> {
        let key = server_key(&user.name, server_name);
        if server_name.is_empty() || !self.slots.read().recover().contains_key(&key) {
            return Ok(false);
        }
        self.stop_server(user, server_name).await;
        self.store.delete_server(&user.name, server_name).await?;
        self.slots.write().recover().remove(&key);
        Ok(true)
    }

    /// Asks every running server what it has seen (jupyter-server's `GET /api/status`:
    /// `last_activity`; `GET /api/kernels`: each kernel's `last_activity` and
    /// `execution_state`), at most [`POLL_CONCURRENCY`] at a time with a [`POLL_TIMEOUT`]
    /// each, and moves each server's activity clock forward to the latest of them; a busy
    /// kernel counts as activity now unless `[spawner] cull_busy`. `no_track_activity` keeps
    /// these questions from counting as activity themselves. A server that does not answer
    /// keeps its clock. Nothing is written to the database here.
    async fn poll_reported_activity(&self, now: i64) {
        use futures_util::StreamExt;
        let routes: Vec<(String, Route)> =
            self.running().into_iter().filter_map(|(name, _)| self.route(&name).map(|r| (name, r))).collect();
        let cull_busy = self.config.spawner.cull_busy;
        futures_util::stream::iter(routes)
            .for_each_concurrent(POLL_CONCURRENCY, |(name, route)| async move {
                let ask = |what: &str| {
                    let (user, server) = split_server_key(&name);
                    let path = format!("{}api/{what}?no_track_activity=1", server_prefix(user, server));
                    let (endpoint, token) = (route.endpoint.clone(), route.token.clone());
                    async move {
                        hub_net::probe::get_body(
                            &endpoint,
                            route.owner.uid,
                            &path,
                            &token,
                            POLL_MAX_BYTES,
                            POLL_TIMEOUT,
                        )
                        .await
                    }
                };
                let (status, kernels) = tokio::join!(ask("status"), ask("kernels"));
                let reported = ReportedActivity::parse(status.as_deref(), kernels.as_deref());
                let at = reported.clock(now, cull_busy);
                if at > 0 {
                    route.activity.fetch_max(at, Ordering::Relaxed);
                }
                tracing::debug!(user = %name, last_activity = at, busy = reported.busy, "activity the server reports");
            })
            .await;
    }

    /// Every `cull_interval`: asks the running servers for their own activity
    /// ([`Servers::poll_reported_activity`]), writes the activity seen since the last round to
    /// the database in one transaction, and stops servers idle longer than `cull_idle_timeout`
    /// or older than `cull_max_age` (gracefully, as the Stop button does). Runs until
    /// `shutdown` resolves.
    pub async fn run_culler(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let sc = self.config.spawner.clone();
        let mut flushed: HashMap<String, i64> = HashMap::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(sc.cull_interval) => {}
            }
            let now = unix_now();
            // Always, not only when the hub culls: the REST API reports this clock to an
            // external jupyterhub-idle-culler too.
            self.poll_reported_activity(now).await;
            let mut changed = Vec::new();
            let mut cull = Vec::new();
            for (name, slot) in self.slots.read().recover().iter() {
                let last = slot.activity.load(Ordering::Relaxed);
                if last > 0 && flushed.get(name) != Some(&last) {
                    changed.push((name.clone(), last));
                }
                if !matches!(*slot.state.borrow(), ServerState::Running { .. }) {
                    continue;
                }
                let since = slot.running_since.load(Ordering::Relaxed);
                let idle = now - last.max(since);
                if !sc.cull_idle_timeout.is_zero() && idle >= sc.cull_idle_timeout.as_secs() as i64 {
                    cull.push((name.clone(), format!("idle for {idle} s (spawner.cull_idle_timeout)")));
                } else if !sc.cull_max_age.is_zero() && now - since >= sc.cull_max_age.as_secs() as i64 {
                    cull.push((name.clone(), format!("running for {} s (spawner.cull_max_age)", now - since)));
                }
            }
            if sc.log_max_mib > 0 {
                let names: Vec<String> = self.slots.read().recover().keys().cloned().collect();
                for name in names {
                    let path = self.log_path(&name);
                    match rotate_log(&path, sc.log_max_mib * 1024 * 1024) {
                        Ok(true) => tracing::info!(user = %name, log = %path.display(), "server log rotated"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(user = %name, error = %e, "could not rotate the server log"),
                    }
                }
            }
            if !changed.is_empty() {
                match self.store.record_activity(&changed).await {
                    Ok(()) => flushed.extend(changed),
                    Err(e) => tracing::warn!(error = %e, "could not record activity"),
                }
            }
            for (name, why) in cull {
                let (user_name, server_name) = split_server_key(&name);
                tracing::info!(user = %user_name, server = %server_name, reason = %why, "culling an idle server");
                match LinuxUser::lookup_async(user_name).await {
                    Ok(user) => {
                        self.stop_server(&user, server_name).await;
                        let slot = self.slot(&name);
                        slot.state
                            .send_replace(ServerState::Stopped { message: Some(format!("Stopped by the hub: {why}")) });
                    }
                    Err(e) => tracing::warn!(user = %name, error = %e, "cannot cull: account lookup failed"),
                }
            }
        }
    }

    /// After a hub restart: every server the database records as starting or running is
    /// marked "reconnecting" at once (so nothing spawns a second one), then checked in the
    /// background, at most 32 at a time: a live process of the same owner with the same start
    /// time that answers `api/status` with its token is re-adopted (same endpoint and token, so
    /// the user's URL and cookie keep working, and its ticket goes back on the renewer's
    /// timer); a half-started one gets until its start timeout to answer; anything else is
    /// stopped if it is still that process, and recorded as stopped. A reused pid is never
    /// signalled. Returns the task doing the checks.
    pub async fn adopt_recorded(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let recs = match self.store.active_servers().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "could not read the recorded servers; none re-adopted");
                Vec::new()
            }
        };
        // Named servers exist while stopped too: make each known, so the proxy and the home
        // page see them.
        match self.store.named_servers().await {
            Ok(named) => {
                for (user, server) in named {
                    self.slot(&server_key(&user, &server));
                }
            }
            Err(e) => tracing::error!(error = %e, "could not read the recorded named servers"),
        }
        for r in &recs {
            let slot = self.slot(&server_key(&r.username, &r.server_name));
            *slot.options.lock().recover() = r.user_options.clone();
            slot.state.send_replace(ServerState::Starting {
                progress: 50,
                message: "Reconnecting to your server after a hub restart".into(),
            });
        }
        let this = self.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let n = recs.len();
            let started = Instant::now();
            futures_util::stream::iter(recs)
                .for_each_concurrent(32, |r| {
                    let this = this.clone();
                    async move { this.adopt_one(r).await }
                })
                .await;
            if n > 0 {
                tracing::info!(servers = n, secs = started.elapsed().as_secs_f64(), "recorded servers checked");
            }
        })
    }

    async fn adopt_one(self: &Arc<Self>, r: ServerRecord) {
        let name = server_key(&r.username, &r.server_name);
        let slot = self.slot(&name);
        let _op = slot.op.lock().await;
        let gone = |why: &str| format!("Your server was not running any more when the hub restarted ({why})");
        if self.spawner.is_remote() {
            return self.adopt_remote(&slot, &name, r).await;
        }
        let endpoint = match (&r.socket, r.port.and_then(|p| u16::try_from(p).ok())) {
            (Some(path), _) => Some(Endpoint::Unix(Arc::from(Path::new(path)))),
            (None, port) => port.map(Endpoint::Tcp),
        };
        let (Some(pid), Some(ticks), Some(uid), Some(gid)) = (
            r.pid.and_then(|p| u32::try_from(p).ok()),
            r.pid_start,
            r.uid.and_then(|u| u32::try_from(u).ok()),
            r.gid.and_then(|g| u32::try_from(g).ok()),
        ) else {
            return self.mark_stopped(&slot, &name, None, gone("incomplete record")).await;
        };
        let owner = TicketOwner { username: r.username.clone(), uid, gid };
        let Some(process) = self.spawner.adopt(&unit_name(&name), pid, uid, ticks).await else {
            tracing::info!(user = %name, pid, "recorded server is gone (or its pid was reused); not adopted");
            return self.mark_stopped(&slot, &name, Some(&owner), gone("process gone")).await;
        };
        // The process is the server's, but without its address and token the hub cannot
        // reach it: stop it rather than leave it running unseen.
        let (Some(endpoint), Some(token)) = (endpoint, r.token.as_deref().and_then(ServerToken::new)) else {
            let told = "Your server's record was unreadable when the hub restarted, so it was stopped";
            return self.stop_adopted(&slot, &name, &owner, process, "has no usable endpoint or token", told).await;
        };
        // A server that was still starting gets the rest of its start timeout.
        let deadline = match (r.state.as_str(), r.started) {
            ("starting", Some(t)) => {
                let left = (t + self.config.spawner.start_timeout.as_secs() as i64 - unix_now()).max(5);
                Instant::now() + Duration::from_secs(left as u64)
            }
            _ => Instant::now() + Duration::from_secs(5),
        };
        self.finish_adoption(
            &slot,
            &name,
            process,
            endpoint,
            token,
            owner,
            r.started,
            deadline,
            Duration::from_millis(100),
        )
        .await;
    }

    /// [`Servers::adopt_one`] for a server on another machine: the spawner checks the
    /// recorded job with the scheduler ([`Spawner::adopt_remote`]), then the server must
    /// answer `api/status` with its token over the pinned channel within 10 s.
    async fn adopt_remote(self: &Arc<Self>, slot: &Arc<ServerSlot>, name: &str, r: ServerRecord) {
        let gone = |why: &str| format!("Your server was not running any more when the hub restarted ({why})");
        let user = match LinuxUser::lookup_async(&r.username).await {
            Ok(u) => u,
            Err(e) => return self.mark_stopped(slot, name, None, gone(&format!("account lookup failed: {e}"))).await,
        };
        let owner = TicketOwner::from(&user);
        let (Some(state), Some(token)) = (r.spawner_state.as_deref(), r.token.as_deref().and_then(ServerToken::new))
        else {
            return self.mark_stopped(slot, name, Some(&owner), gone("incomplete record")).await;
        };
        let Some(process) = self.spawner.adopt_remote(&unit_name(name), &user, state, &token).await else {
            return self.mark_stopped(slot, name, Some(&owner), gone("its job is no longer running")).await;
        };
        let Some(endpoint) = process.endpoint() else {
            let told = "Your server's record was unreadable when the hub restarted, so it was stopped";
            return self.stop_adopted(slot, name, &owner, process, "has no endpoint", told).await;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Each ask is a TLS handshake with the node: not as often as a local socket's.
        self.finish_adoption(
            slot,
            name,
            process,
            endpoint,
            token,
            owner,
            r.started,
            deadline,
            Duration::from_millis(200),
        )
        .await;
    }

    /// The end of a re-adoption, local or remote: the server must answer `api/status` with its
    /// token (asked every `every`) before `deadline`, or it is stopped and recorded so; then it
    /// is recorded running, its owner's ticket goes back on the timer, and its exit is watched.
    #[allow(clippy::too_many_arguments)]
    async fn finish_adoption(
        self: &Arc<Self>,
        slot: &Arc<ServerSlot>,
        name: &str,
        process: Box<dyn ServerProcess>,
        endpoint: Endpoint,
        token: ServerToken,
        owner: TicketOwner,
        started: Option<i64>,
        deadline: Instant,
        every: Duration,
    ) {
        let (user, server) = split_server_key(name);
        let path = format!("{}api/status", server_prefix(user, server));
        let exited = process.exited();
        let mut ready = false;
        while Instant::now() < deadline && exited.borrow().is_none() {
            match probe(&endpoint, owner.uid, &path, &token).await {
                Probe::Ready => {
                    ready = true;
                    break;
                }
                Probe::NotYet => {}
                Probe::Impostor(why) => {
                    tracing::error!(user = %name, endpoint = %endpoint, reason = %why, "refused a listener that is not the user's server");
                    break;
                }
            }
            tokio::time::sleep(every).await;
        }
        if !ready {
            let told = "Your server did not answer after the hub restarted and was stopped";
            return self.stop_adopted(slot, name, &owner, process, "did not answer", told).await;
        }
        let pid = process.pid();
        let live_state = process.state();
        let start_ticks = process.start_ticks();
        *slot.process.lock().await = Some(process);
        let live = Live {
            pid,
            endpoint: Some(&endpoint),
            token: token.as_str(),
            start_ticks,
            owner: &owner,
            state: live_state,
        };
        self.record(name, "running", Some(live), None).await;
        self.renewer.restore(std::slice::from_ref(&owner)).await;
        slot.running_since.store(started.unwrap_or_else(unix_now), Ordering::Relaxed);
        slot.activity.fetch_max(unix_now(), Ordering::Relaxed);
        if endpoint.is_local() {
            tracing::info!(user = %name, pid, endpoint = %endpoint, "re-adopted a running server");
        } else {
            tracing::info!(user = %name, job = pid, endpoint = %endpoint, "re-adopted a running server job");
        }
        let remote = !endpoint.is_local();
        slot.state.send_replace(ServerState::Running { endpoint, token, pid, owner: owner.clone() });
        if remote && self.renewer.enabled() {
            // The node still has the ticket delivered before the hub went away, which may have
            // expired since; one renewed at the hub's start may have been published before
            // this server was running again. Deliver what the hub has now; a renewal from here
            // on reaches it through run_delivery.
            if let Some(p) = slot.process.lock().await.as_ref() {
                self.deliver(p.as_ref(), &owner, name).await;
            }
        }
        let log = self.log_path(name);
        self.watch_exit(name.to_string(), slot.clone(), pid, exited, log);
    }

    /// Stops a re-adopted server process the hub cannot use and records it stopped: `why`
    /// goes to the log, `told` to the user, each followed by how the process ended.
    async fn stop_adopted(
        &self,
        slot: &ServerSlot,
        name: &str,
        owner: &TicketOwner,
        process: Box<dyn ServerProcess>,
        why: &str,
        told: &str,
    ) {
        let how = process.stop(self.config.spawner.term_timeout).await;
        tracing::warn!(user = %name, pid = process.pid(), how = %how, "recorded server {why}; stopped it");
        self.mark_stopped(slot, name, Some(owner), format!("{told} ({how})")).await;
    }

    async fn mark_stopped(&self, slot: &ServerSlot, name: &str, owner: Option<&TicketOwner>, message: String) {
        if let Some(o) = owner {
            self.deactivate_unless_others(name, o);
        }
        slot.state.send_replace(ServerState::Stopped { message: Some(message.clone()) });
        self.record(name, "stopped", None, Some(message)).await;
    }

    /// Stops every server (when the hub shuts down with `stop_servers_on_shutdown = true`).
    pub async fn stop_all(&self) {
        let names: Vec<String> = self.slots.read().recover().keys().cloned().collect();
        let mut tasks = Vec::new();
        for name in names {
            let (user_name, server_name) = split_server_key(&name);
            let server_name = server_name.to_string();
            if let Ok(user) = LinuxUser::lookup_async(user_name).await {
                tasks.push(async move { self.stop_server(&user, &server_name).await });
            }
        }
        futures_util::future::join_all(tasks).await;
    }

    async fn record(&self, name: &str, state: &str, live: Option<Live<'_>>, message: Option<String>) {
        let now = unix_now();
        let (user, server_name) = split_server_key(name);
        let prev = self.store.get_server(user, server_name).await.ok().flatten();
        let started = if state == "starting" { Some(now) } else { prev.and_then(|p| p.started) };
        let user_options =
            self.slots.read().recover().get(name).map_or_else(|| "{}".into(), |s| s.options.lock().recover().clone());
        let rec = ServerRecord {
            username: user.to_string(),
            server_name: server_name.to_string(),
            user_options,
            state: state.to_string(),
            pid: live.as_ref().map(|l| i64::from(l.pid)),
            port: live.as_ref().and_then(|l| match l.endpoint? {
                Endpoint::Tcp(port) => Some(i64::from(*port)),
                Endpoint::Unix(_) | Endpoint::Tls(_) => None,
            }),
            socket: live.as_ref().and_then(|l| match l.endpoint? {
                Endpoint::Unix(path) => Some(path.to_string_lossy().into_owned()),
                Endpoint::Tcp(_) | Endpoint::Tls(_) => None,
            }),
            started,
            stopped: matches!(state, "stopped" | "failed").then_some(now),
            message,
            token: live.as_ref().map(|l| l.token.to_string()),
            pid_start: live.as_ref().and_then(|l| l.start_ticks),
            uid: live.as_ref().map(|l| i64::from(l.owner.uid)),
            gid: live.as_ref().map(|l| i64::from(l.owner.gid)),
            spawner_state: live.as_ref().and_then(|l| l.state.clone()),
        };
        if let Err(e) = self.store.put_server(&rec).await {
            tracing::error!(user = %name, error = %e, "could not record the server's state");
        }
    }
}

/// The name of a server's cgroup and log file for its key: the user's name for the default
/// server, `<user>@<server_name>` for a named one.
pub fn unit_name(key: &str) -> String {
    key.replacen('/', "@", 1)
}

/// What the database needs to find a live server again.
struct Live<'a> {
    pid: u32,
    /// `None` for a remote server that has not reported yet.
    endpoint: Option<&'a Endpoint>,
    token: &'a str,
    start_ticks: Option<i64>,
    owner: &'a TicketOwner,
    /// The spawner's state ([`crate::spawner::ServerProcess::state`]) for a remote server.
    state: Option<String>,
}

/// A port that was free on 127.0.0.1 a moment ago (the kernel picks it). The server is
/// started with `port_retries=0`, so a race shows as a failed spawn, never a wrong port.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// If `path` is larger than `max` bytes, copies it to `<path>.1` (replacing an older one) and
/// truncates it, so at most about 2 × `max` bytes are kept. The server keeps writing through
/// its own `O_APPEND` descriptor, which survives hub restarts; lines written between the copy
/// and the truncation are lost (logrotate's `copytruncate` has the same window). Returns
/// whether it rotated.
pub fn rotate_log(path: &Path, max: u64) -> std::io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max {
        return Ok(false);
    }
    let old = PathBuf::from(format!("{}.1", path.display()));
    std::fs::copy(path, &old)?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// The last [`LOG_TAIL_LINES`] lines of a log file (at most the last 8 KiB), or "".
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_token_carries_its_header_and_never_shows_it() {
        let t = ServerToken::new("0123abcd").expect("hex fits a header");
        assert_eq!(t.as_str(), "0123abcd");
        assert_eq!(t.authorization(), "token 0123abcd");
        assert!(t.authorization().is_sensitive());
        let shown = format!(
            "{t:?} {:?}",
            ServerState::Running {
                endpoint: Endpoint::Tcp(1),
                token: t.clone(),
                pid: 1,
                owner: TicketOwner { username: "ann".into(), uid: 1000, gid: 1000 },
            }
        );
        assert!(!shown.contains("0123abcd"), "{shown}");
        // A token read back from a damaged database row cannot become a header.
        assert!(ServerToken::new("abc\ndef").is_none());
        assert!(ServerToken::new("abc\u{7f}").is_none());
        assert_eq!(ServerToken::new("abc"), ServerToken::new("abc"));
        assert_ne!(ServerToken::new("abc"), ServerToken::new("abd"));
    }

    #[test]
    fn reported_activity_is_read_from_jupyter_servers_answers() {
        let status = br#"{"started": "2026-12-01T10:00:00.000000Z", "last_activity": "2026-12-01T10:05:00.250000Z", "connections": 0, "kernels": 2}"#;
        let kernels = br#"[{"id": "a", "name": "python3", "last_activity": "2026-12-01T10:07:30.5Z", "execution_state": "idle", "connections": 0},
                           {"id": "b", "name": "python3", "last_activity": "2026-12-01T10:06:00Z", "execution_state": "busy", "connections": 0}]"#;
        let r = ReportedActivity::parse(Some(status), Some(kernels));
        assert_eq!(r, ReportedActivity { last_activity: 1_796_119_650, busy: true });
        assert_eq!(r.clock(1_796_200_000, false), 1_796_200_000, "busy counts as now");
        assert_eq!(r.clock(1_796_200_000, true), 1_796_119_650, "cull_busy: only what was reported");
        assert_eq!(r.clock(1_796_119_000, true), 1_796_119_000, "a server clock ahead of the hub's is capped");
        let r = ReportedActivity::parse(Some(status), Some(b"[]"));
        assert_eq!(r, ReportedActivity { last_activity: 1_796_119_500, busy: false });
        // Missing or malformed answers add nothing, and never panic.
        assert_eq!(ReportedActivity::parse(None, Some(b"{not json")), ReportedActivity::default());
        assert_eq!(
            ReportedActivity::parse(Some(br#"{"last_activity": 7}"#), Some(br#"{"a": 1}"#)),
            ReportedActivity::default()
        );
    }

    #[test]
    fn endpoint_urls_are_the_ones_jupyter_server_prints() {
        assert_eq!(Endpoint::Tcp(8888).url(), "http://127.0.0.1:8888");
        // jupyter_server.utils.urlencode_unix_socket_path("/var/lib/hub/sockets/a-b_c/server.sock")
        let unix = Endpoint::Unix(Arc::from(Path::new("/var/lib/hub/sockets/a-b_c/server.sock")));
        assert_eq!(unix.url(), "http+unix://%2Fvar%2Flib%2Fhub%2Fsockets%2Fa-b_c%2Fserver.sock");
    }

    #[test]
    fn log_rotates_past_its_cap() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("x.log");
        assert!(!rotate_log(&p, 10).expect("missing is fine"));
        std::fs::write(&p, "0123456789").expect("write");
        assert!(!rotate_log(&p, 10).expect("at the cap"));
        // A writer with O_APPEND, as the server has, keeps writing at the new end.
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).expect("open");
        std::io::Write::write_all(&mut w, b"AB").expect("write");
        assert!(rotate_log(&p, 10).expect("over the cap"));
        assert_eq!(std::fs::read_to_string(dir.path().join("x.log.1")).expect("old"), "0123456789AB");
        std::io::Write::write_all(&mut w, b"new").expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("current"), "new");
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("x.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).expect("write");
        let tail = log_tail(&p);
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.ends_with("line 99"));
        assert_eq!(log_tail(&dir.path().join("missing")), "");
    }
}
