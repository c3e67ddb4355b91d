//! `[spawner]`: how a user's single-user server is started, limited and culled.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};

use crate::hub::MAX_SOCKET_PATH;
use crate::template::Template;

/// `[spawner]`: how a user's single-user server is started.
#[derive(Clone, Debug)]
pub struct SpawnerConfig {
    /// Program and leading arguments (`cmd`), e.g. `["/opt/jupyter/bin/jupyter-lab"]`.
    pub cmd: Vec<String>,
    /// Extra arguments appended after the hub's own (`args`).
    pub args: Vec<String>,
    /// Extra environment for the server (`env`); values are templates.
    pub env: BTreeMap<String, Template>,
    /// `PATH` given to the server (`path`).
    pub path: String,
    /// How long a server may take to answer `api/status` (`start_timeout`, default 60 s).
    pub start_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when stopping (`term_timeout`, default 5 s).
    pub term_timeout: Duration,
    /// Where the browser lands in the server after it starts (`default_url`, default `/lab`).
    pub default_url: String,
    /// Most spawns in progress at once (`concurrent_spawn_limit`, default 100, JupyterHub's
    /// default); beyond it a spawn request gets 429 with `Retry-After`. 0 = no limit.
    pub concurrent_spawn_limit: usize,
    /// Most servers starting or running at once (`active_server_limit`, default 0 = no limit).
    pub active_server_limit: usize,
    /// Stop a server after this long without activity (`cull_idle_timeout`; 0 = never).
    /// Activity is any proxied request or WebSocket traffic in either direction, and what the
    /// server itself reports each `cull_interval` (`GET /api/status` and `/api/kernels`).
    pub cull_idle_timeout: Duration,
    /// Whether a server whose kernel is busy may be culled (`cull_busy`, default `false`, as
    /// jupyter-server's `MappingKernelManager.cull_busy`): with `false`, a kernel in
    /// `execution_state: busy` counts as activity now.
    pub cull_busy: bool,
    /// Stop a server this long after it started, active or not (`cull_max_age`; 0 = never).
    pub cull_max_age: Duration,
    /// How often the culler looks, and how often activity is written to the database
    /// (`cull_interval`, default 60 s).
    pub cull_interval: Duration,
    /// A server log larger than this many MiB is rotated to `<name>.log.1` (checked every
    /// `cull_interval`; `log_max_mib`, default 10).
    pub log_max_mib: u64,
    /// How the hub reaches each server (`transport`, default `unix`).
    pub transport: Transport,
    /// Whether users may have named servers besides their default one
    /// (`allow_named_servers`, default false, as JupyterHub's `JupyterHub.allow_named_servers`).
    pub allow_named_servers: bool,
    /// Most named servers per user, running or not (`named_server_limit_per_user`, default 0 =
    /// no limit; the default server does not count).
    pub named_server_limit_per_user: usize,
    /// Where servers run (`kind`, default `"local"`).
    pub kind: SpawnerKind,
}

/// Where users' servers run (`spawner.kind`).
#[derive(Clone, Debug)]
pub enum SpawnerKind {
    /// On this machine, as local processes under each user's UID (`"local"`).
    Local,
    /// On cluster nodes, as Slurm batch jobs submitted as the user (`"slurm"`), with
    /// `[spawner.slurm]`.
    Slurm(Box<crate::slurm::SlurmConfig>),
}

/// How the hub reaches a single-user server (`spawner.transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A Unix socket, `<data_dir>/sockets/<user>/server.sock` (jupyter-server's
    /// `ServerApp.sock`), mode 0600 in a 0700 directory owned by the user: no other local
    /// user can connect to it, and a request costs the proxy about a third less CPU than over
    /// loopback TCP (docs/benchmarks.md).
    Unix,
    /// A free port on 127.0.0.1 (`ServerApp.port`): any local user can connect to it, and
    /// the server's token is the only access control.
    Tcp,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSpawner {
    pub(crate) cmd: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(crate) args: Vec<String>,
    #[serde(default)]
    pub(crate) env: BTreeMap<String, Spanned<String>>,
    pub(crate) path: Option<String>,
    pub(crate) start_timeout: Option<Spanned<String>>,
    pub(crate) concurrent_spawn_limit: Option<Spanned<i64>>,
    pub(crate) active_server_limit: Option<Spanned<i64>>,
    pub(crate) cull_idle_timeout: Option<Spanned<String>>,
    pub(crate) cull_max_age: Option<Spanned<String>>,
    pub(crate) cull_interval: Option<Spanned<String>>,
    pub(crate) cull_busy: Option<bool>,
    pub(crate) allow_named_servers: Option<bool>,
    pub(crate) named_server_limit_per_user: Option<Spanned<i64>>,
    pub(crate) log_max_mib: Option<Spanned<i64>>,
    pub(crate) transport: Option<Spanned<String>>,
    pub(crate) term_timeout: Option<Spanned<String>>,
    pub(crate) default_url: Option<Spanned<String>>,
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) slurm: Option<crate::slurm::FileSlurm>,
}

/// Validates `[spawner]`; `data_dir` is `[hub] data_dir` (the servers' sockets live under it).
pub(crate) fn parse(src: &Source<'_>, f: FileSpawner, data_dir: &Path) -> Result<SpawnerConfig, ConfigError> {
    let path = src.path;
    // [spawner]
    let cmd = match &f.cmd {
        None => {
            return Err(ConfigError(format!(
                "{}: `spawner.cmd` is missing; set it to the single-user server, e.g. cmd = [\"/opt/jupyter/bin/jupyter-lab\"]",
                path.display()
            )));
        }
        Some(c) if c.get_ref().is_empty() || c.get_ref()[0].is_empty() => {
            return Err(src.err("spawner.cmd", c, "must name a program, e.g. [\"/opt/jupyter/bin/jupyter-lab\"]"));
        }
        Some(c) => c.get_ref().clone(),
    };
    let spawner_vars = ["username", "uid", "realm", "principal", "ccache", "keytab"];
    let mut env = BTreeMap::new();
    for (k, v) in &f.env {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err(src.err("spawner.env", v, format!("has an invalid variable name {k:?}")));
        }
        env.insert(k.clone(), src.template(&format!("spawner.env.{k}"), v, &spawner_vars)?);
    }
    let start_timeout = src.duration("spawner.start_timeout", &f.start_timeout, Duration::from_secs(60))?;
    let term_timeout = src.duration("spawner.term_timeout", &f.term_timeout, Duration::from_secs(5))?;
    let count = |key: &str, v: &Option<Spanned<i64>>, default: usize| -> Result<usize, ConfigError> {
        match v {
            None => Ok(default),
            Some(n) if (0..=1_000_000).contains(n.get_ref()) => Ok(*n.get_ref() as usize),
            Some(n) => Err(src.err(key, n, "must be between 0 (no limit) and 1000000")),
        }
    };
    let concurrent_spawn_limit = count("spawner.concurrent_spawn_limit", &f.concurrent_spawn_limit, 100)?;
    let active_server_limit = count("spawner.active_server_limit", &f.active_server_limit, 0)?;
    let cull_idle_timeout = src.duration("spawner.cull_idle_timeout", &f.cull_idle_timeout, Duration::ZERO)?;
    let cull_max_age = src.duration("spawner.cull_max_age", &f.cull_max_age, Duration::ZERO)?;
    let cull_interval = src.duration("spawner.cull_interval", &f.cull_interval, Duration::from_secs(60))?;
    if let (true, Some(v)) = (cull_interval.is_zero(), &f.cull_interval) {
        return Err(src.err("spawner.cull_interval", v, "must be more than 0, e.g. \"60s\""));
    }
    let transport = match &f.transport {
        None => Transport::Unix,
        Some(t) if t.get_ref() == "unix" => Transport::Unix,
        Some(t) if t.get_ref() == "tcp" => Transport::Tcp,
        Some(t) => return Err(src.err("spawner.transport", t, "must be \"unix\" or \"tcp\"")),
    };
    let allow_named_servers = f.allow_named_servers.unwrap_or(false);
    let kind_slurm = match &f.kind {
        None => false,
        Some(k) if k.get_ref() == "local" => false,
        Some(k) if k.get_ref() == "slurm" => true,
        Some(k) => return Err(src.err("spawner.kind", k, "must be \"local\" or \"slurm\"")),
    };
    let kind = match crate::slurm::parse(src, f.slurm, kind_slurm)? {
        Some(slurm) if kind_slurm => SpawnerKind::Slurm(Box::new(slurm)),
        _ => SpawnerKind::Local,
    };
    if transport == Transport::Unix {
        // The longest user name the hub accepts (and, with named servers, the longest server
        // name) makes the longest socket path.
        let longest_server =
            if allow_named_servers { "s".repeat(hub_core::server::MAX_SERVER_NAME) } else { String::new() };
        let longest =
            crate::hub::server_socket_in(data_dir, &"u".repeat(hub_core::user::MAX_USERNAME_LEN), &longest_server);
        let len = longest.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(ConfigError(format!(
                "{}: `hub.data_dir` {} is too long for the servers' Unix sockets: \
                 <data_dir>/sockets/<user>/server.sock would be up to {len} bytes, over the {MAX_SOCKET_PATH}-byte \
                 limit of a socket path (unix(7)); choose a data_dir of at most {} bytes, or set \
                 spawner.transport = \"tcp\"",
                src.path.display(),
                data_dir.display(),
                data_dir.as_os_str().len() - (len - MAX_SOCKET_PATH),
            )));
        }
    }
    let default_url = match &f.default_url {
        None => "/lab".to_string(),
        Some(u) if u.get_ref().starts_with('/') && !u.get_ref().starts_with("//") => u.get_ref().clone(),
        Some(u) => {
            return Err(src.err("spawner.default_url", u, "must be a path starting with '/', e.g. \"/lab\""));
        }
    };
    Ok(SpawnerConfig {
        cmd,
        args: f.args,
        env,
        path: f.path.unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        start_timeout,
        term_timeout,
        default_url,
        concurrent_spawn_limit,
        active_server_limit,
        cull_idle_timeout,
        cull_max_age,
        cull_interval,
        cull_busy: f.cull_busy.unwrap_or(false),
        log_max_mib: count("spawner.log_max_mib", &f.log_max_mib, 10)? as u64,
        transport,
        allow_named_servers,
        named_server_limit_per_user: count("spawner.named_server_limit_per_user", &f.named_server_limit_per_user, 0)?,
        kind,
    })
}
