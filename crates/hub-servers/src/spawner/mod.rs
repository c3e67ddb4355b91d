//! Spawners: start and stop a user's single-user server.
//!
//! A [`Spawner`] turns a [`SpawnSpec`] (argv, environment, Linux identity, log file) into a
//! running [`ServerProcess`]. [`local::LocalSpawner`] runs it as a local process under the
//! user's UID; [`slurm::SlurmSpawner`] submits it as a Slurm batch job that runs on a cluster
//! node; other spawners (Kubernetes, YARN) plug in behind the same trait
//! (docs/spawners.md says what one implements). What to run and when is decided by
//! [`crate::servers`]; this module only knows processes and jobs.

pub mod local;
pub mod slurm;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use hub_core::{Endpoint, LinuxUser};

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
    /// The scheduler refused the job (sbatch's own message).
    #[error("Slurm refused the job: {0}")]
    Submit(String),
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
    /// The profile the server was started with (`[[profiles]]`; `None` for none, and for a
    /// notebook run). Its limits, environment and command are already in the fields above;
    /// a spawner reads what else concerns it (the Slurm spawner: `[profiles.slurm]`).
    pub profile: Option<hub_config::profiles::ProfileConfig>,
    /// The directory with the server's `[[kernelspec]]`s, as the hub wrote them on its own
    /// disk (`<dir>/kernels/<name>/kernel.json`, and `JUPYTER_PATH` in `env`); `None` for none.
    /// A spawner whose servers run where that disk is not (Slurm) ships their contents.
    pub kernelspecs: Option<PathBuf>,
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
    /// For a server on another machine: where it listens, once its node agent has reported
    /// (`None` until then). `None` for a local server, whose endpoint the hub chose.
    fn endpoint(&self) -> Option<Endpoint> {
        None
    }
    /// What the scheduler says of it now, for the progress bar ("Waiting in Slurm's queue:
    /// waiting for resources (Resources)"); `None` when there is nothing to add.
    fn status(&self) -> Option<String> {
        None
    }
    /// What a later hub process needs to adopt it (a JSON object: job id, node, port, pin),
    /// recorded with the server; JupyterHub's `Spawner.get_state`. `None` for a local process,
    /// which the pid and its start time identify.
    fn state(&self) -> Option<String> {
        None
    }
    /// Delivers the bytes of the owner's credential cache to the machine the server runs on
    /// (replacing the copy there atomically). A local server reads the hub's copy itself:
    /// nothing to do. Errors are messages for the log.
    async fn deliver_ccache(&self, _ccache: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
    /// The last lines of the server's log when it is not the hub's log file (a batch job's
    /// output in the user's home); `None` to use the hub's.
    async fn log_tail(&self) -> Option<String> {
        None
    }
}

/// Why a node agent's report was refused (the answer to `POST /hub/api/spawner/report`).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No spawn in progress expects it (the spawner runs servers locally, the server was
    /// stopped, or it already reported).
    #[error("no server start is waiting for this report")]
    NotExpected,
    /// The body is not a report.
    #[error("the report is not valid: {0}")]
    Invalid(String),
    /// The signature is missing or wrong: not from the job the hub submitted.
    #[error("the report's signature is not valid")]
    BadSignature,
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
    /// Whether servers run on other machines: then the hub does not choose the endpoint, and
    /// learns it from [`ServerProcess::endpoint`], and delivers credential caches.
    fn is_remote(&self) -> bool {
        false
    }
    /// Takes over a remote server (job) started by an earlier hub process for `user`, from its
    /// recorded [`ServerProcess::state`] and `unit`: `None` unless the scheduler says the job
    /// is still running as that user where it was; `token` is the server's. The caller then
    /// checks that the server answers with its token over the pinned channel.
    async fn adopt_remote(
        &self,
        _unit: &str,
        _user: &LinuxUser,
        _state: &str,
        _token: &hub_core::ServerToken,
    ) -> Option<Box<dyn ServerProcess>> {
        None
    }
    /// A node agent's report of where its server listens (`body`, JSON) with its signature
    /// (the `X-Hub-Signature-256` header).
    /// Only checks and records it: the endpoint appears in [`ServerProcess::endpoint`] once
    /// the spawner has confirmed it with the scheduler.
    fn report(&self, _body: &[u8], _signature: Option<&str>) -> Result<(), ReportError> {
        Err(ReportError::NotExpected)
    }
}
