//! Spawners: start and stop a user's single-user server.
//!
//! A [`Spawner`] turns a [`SpawnSpec`] (argv, environment, Linux identity, log file) into a
//! running [`ServerProcess`]. [`local::LocalSpawner`] runs it as a local process under the
//! user's UID; other spawners (Kubernetes) plug in behind the same trait. What to run and
//! when is decided by [`crate::servers`]; this module only knows processes.

pub mod local;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use hub_core::LinuxUser;

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The account is root (or another UID 0 account); user code never runs as root.
    #[error("refusing to start a server for {0:?}: it has UID 0, and user code never runs as root")]
    Root(String),
    /// The process could not be started.
    #[error("could not start {program:?}: {source}")]
    Exec {
        /// argv\[0\].
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server's resource limits could not be set up (a cgroup file could not be written).
    #[error("could not apply the resource limits ({limits}): {source}")]
    Limits {
        /// What was asked for.
        limits: String,
        /// Which file and why.
        source: std::io::Error,
    },
    /// The log file could not be opened.
    #[error("could not open the server log {path}: {source}")]
    Log {
        /// The log path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Everything needed to start one single-user server.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Whose server, with UID/GID/groups to run as.
    pub user: LinuxUser,
    /// Full argv; `argv[0]` is the program.
    pub argv: Vec<String>,
    /// The complete environment (nothing is inherited from the hub).
    pub env: Vec<(String, String)>,
    /// File that receives the server's stdout and stderr (appended).
    pub log_path: PathBuf,
    /// Resource limits for the server and everything it starts.
    pub limits: hub_config::limits::Limits,
    /// The name of the process's cgroup (under the hub's base): the user's name for their
    /// server, `<user>.run-<id>` for a notebook run, so that stopping one never kills the
    /// other.
    pub unit: String,
}

/// A started server process.
#[async_trait]
pub trait ServerProcess: Send + Sync {
    /// Process id of the server (its process group id too).
    fn pid(&self) -> u32;
    /// Becomes `Some(description)` ("exited with status 1", "killed by signal 9") when the
    /// process ends.
    fn exited(&self) -> watch::Receiver<Option<String>>;
    /// Stops the server: SIGTERM to its process group, SIGKILL after `term_timeout`, then
    /// SIGKILL to any descendant (kernels, terminals) that outlived it. Returns how it exited.
    async fn stop(&self, term_timeout: Duration) -> String;
    /// The process's start time (clock ticks after boot), recorded to tell a reused pid.
    fn start_ticks(&self) -> Option<i64>;
    /// How many of the server's processes (kernels included) the kernel's OOM killer ended
    /// under its memory limit; 0 where that cannot be known.
    fn oom_kills(&self) -> u64 {
        0
    }
}

/// Starts servers.
#[async_trait]
pub trait Spawner: Send + Sync + 'static {
    /// Starts the server described by `spec`. Returns once the process exists; readiness is
    /// checked by the caller.
    async fn start(&self, spec: SpawnSpec) -> Result<Box<dyn ServerProcess>, SpawnError>;
    /// Takes over a server (or run) started by an earlier hub process, in the cgroup named
    /// `unit` ([`SpawnSpec::unit`]): `None` unless `pid` is alive,
    /// runs as `uid` and started at `start_ticks` (so a reused pid is never adopted, nor
    /// signalled).
    async fn adopt(&self, unit: &str, pid: u32, uid: u32, start_ticks: i64) -> Option<Box<dyn ServerProcess>>;
}
