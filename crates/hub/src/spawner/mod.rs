//! Spawners: start and stop a user's single-user server.
//!
//! A [`Spawner`] turns a [`SpawnSpec`] (argv, environment, Linux identity, log file) into a
//! running [`ServerProcess`]. [`local::LocalSpawner`] runs it as a local process under the
//! user's UID; other spawners (Kubernetes) plug in behind the same trait. What to run and
//! when is decided by [`crate::servers`]; this module only knows processes.

pub mod local;

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

/// A Linux account, as read from the passwd and group databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxUser {
    /// Login name.
    pub name: String,
    /// UID.
    pub uid: u32,
    /// Primary GID.
    pub gid: u32,
    /// Every group the user is in, primary included (`getgrouplist(3)`).
    pub groups: Vec<u32>,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
}

/// Errors looking up or starting a server.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// No passwd entry for the name.
    #[error("there is no Linux account named {0:?} on this host; ask an admin to create it")]
    NoSuchUser(String),
    /// The account is root (or another UID 0 account); user code never runs as root.
    #[error("refusing to start a server for {0:?}: it has UID 0, and user code never runs as root")]
    Root(String),
    /// The passwd/group lookup failed.
    #[error("looking up the Linux account {name:?} failed: {source}")]
    Lookup {
        /// The user name.
        name: String,
        /// The errno from getpwnam_r/getgrouplist.
        source: nix::Error,
    },
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

impl LinuxUser {
    /// Looks `name` up with `getpwnam_r(3)` and `getgrouplist(3)`. Runs in the calling thread
    /// (NSS may block briefly; callers on the async runtime use `spawn_blocking`).
    pub fn lookup(name: &str) -> Result<Self, SpawnError> {
        let lookup = |source| SpawnError::Lookup { name: name.to_string(), source };
        let u = nix::unistd::User::from_name(name)
            .map_err(lookup)?
            .ok_or_else(|| SpawnError::NoSuchUser(name.to_string()))?;
        let cname = CString::new(name).map_err(|_| SpawnError::NoSuchUser(name.to_string()))?;
        let groups = nix::unistd::getgrouplist(&cname, u.gid).map_err(lookup)?;
        Ok(Self {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
            home: u.dir,
            shell: u.shell,
        })
    }

    /// Like [`lookup`](Self::lookup), off the async runtime's worker threads.
    pub async fn lookup_async(name: &str) -> Result<Self, SpawnError> {
        let n = name.to_string();
        // The blocking pool only fails when the runtime is shutting down (or the lookup
        // panicked); report it as an I/O error of the lookup.
        tokio::task::spawn_blocking(move || Self::lookup(&n))
            .await
            .unwrap_or_else(|_| Err(SpawnError::Lookup { name: name.to_string(), source: nix::Error::EIO }))
    }
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
    pub limits: crate::limits::Limits,
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
    /// Takes over a server started by an earlier hub process: `None` unless `pid` is alive,
    /// runs as `uid` and started at `start_ticks` (so a reused pid is never adopted, nor
    /// signalled).
    async fn adopt(&self, user: &str, pid: u32, uid: u32, start_ticks: i64) -> Option<Box<dyn ServerProcess>>;
}
