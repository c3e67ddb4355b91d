//! Local-process spawner: the server runs on this host under the user's UID.
//!
//! Privileges are dropped in the child between `fork` and `exec` (`pre_exec`), in the order
//! that works for a root parent: `setsid` (own session and process group, so the whole tree
//! can be signalled), `setgroups` (the supplementary groups, looked up in the parent because
//! `initgroups` is not async-signal-safe), `setgid`, `setuid`, then a check that UID 0 cannot
//! be regained. `Command::uid/gid` are not used: std would clear the supplementary groups.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::{ServerProcess, SpawnError, SpawnSpec, Spawner};
use crate::limits::Enforcer;
use hub_core::process::proc_state;
pub use hub_core::process::{descendants, is_same_process, owner_uid, start_ticks};
use std::sync::Arc;

/// Starts servers as local processes, each in its own cgroups (or under rlimits) from
/// [`Enforcer`]. See the module documentation.
#[derive(Debug)]
pub struct LocalSpawner {
    enforcer: Arc<Enforcer>,
}

impl LocalSpawner {
    /// A spawner that applies limits with `enforcer`.
    pub fn new(enforcer: Enforcer) -> Self {
        Self { enforcer: Arc::new(enforcer) }
    }
}

struct LocalProcess {
    /// The cgroup name ([`SpawnSpec::unit`]).
    unit: String,
    pid: u32,
    uid: u32,
    start_ticks: Option<i64>,
    exited: watch::Receiver<Option<String>>,
    enforcer: Arc<Enforcer>,
}

#[async_trait]
impl Spawner for LocalSpawner {
    async fn start(&self, spec: SpawnSpec) -> Result<Box<dyn ServerProcess>, SpawnError> {
        let u = &spec.user;
        if u.uid == 0 {
            return Err(SpawnError::Root(u.name.clone()));
        }
        let log_err = |source| SpawnError::Log { path: spec.log_path.display().to_string(), source };
        let mut log = OpenOptions::new().create(true).append(true).mode(0o640).open(&spec.log_path).map_err(log_err)?;
        writeln!(
            log,
            "---- hub: starting {:?} for {} (uid {}) at {} ----",
            spec.argv,
            u.name,
            u.uid,
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        )
        .map_err(log_err)?;
        let log2 = log.try_clone().map_err(log_err)?;

        let (uid, gid) = (u.uid, u.gid);
        let groups: Vec<libc::gid_t> = u.groups.clone();
        let placement = self
            .enforcer
            .prepare(&spec.unit, &spec.limits)
            .map_err(|source| SpawnError::Limits { limits: spec.limits.describe(), source })?;
        let mut cmd = std::process::Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..])
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&u.home)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: the closure only calls async-signal-safe functions (setsid, write and
        // setrlimit in `apply_in_child`, setgroups, setgid, setuid, getuid, setuid) on data
        // prepared before fork, and allocates nothing. Limits are applied while still root.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                placement.apply_in_child()?;
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Paranoia: if setuid(0) succeeds now, privileges were not dropped.
                if libc::setuid(0) == 0 || libc::getuid() == 0 || libc::geteuid() == 0 {
                    return Err(std::io::Error::from_raw_os_error(libc::EPERM));
                }
                Ok(())
            });
        }
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| SpawnError::Exec { program: spec.argv[0].clone(), source })?;
        let pid = child.id().unwrap_or_default();
        let start_ticks = start_ticks(pid);
        let (tx, rx) = watch::channel(None);
        let (enforcer, name) = (self.enforcer.clone(), spec.unit.clone());
        tokio::spawn(async move {
            let mut how = match child.wait().await {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => format!("exited with status {c}"),
                    (None, Some(sig)) => format!(
                        "killed by signal {sig} ({})",
                        Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("unknown")
                    ),
                    _ => s.to_string(),
                },
                Err(e) => format!("could not be waited for: {e}"),
            };
            let ooms = enforcer.oom_kills(&name);
            if ooms > 0 {
                how.push_str(&format!(" (out of memory: {ooms} process(es) killed at the memory limit)"));
            }
            let _ = tx.send(Some(how));
        });
        Ok(Box::new(LocalProcess {
            unit: spec.unit.clone(),
            pid,
            uid,
            start_ticks,
            exited: rx,
            enforcer: self.enforcer.clone(),
        }))
    }

    async fn adopt(&self, user: &str, pid: u32, uid: u32, ticks: i64) -> Option<Box<dyn ServerProcess>> {
        if !is_same_process(pid, uid, ticks) {
            return None;
        }
        // A pidfd (pidfd_open(2), Linux 5.3) refers to this very process even if the pid is
        // reused later, and becomes readable when it exits: a way to wait for a process that
        // is not our child. Check the identity again after opening it, to close the race.
        // SAFETY: a plain syscall with integer arguments; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 || !is_same_process(pid, uid, ticks) {
            if fd >= 0 {
                // SAFETY: fd is a descriptor we own and have not shared.
                unsafe { libc::close(fd as i32) };
            }
            return None;
        }
        // SAFETY: fd is a fresh descriptor owned by nothing else.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: `owned` is an open descriptor that the AsyncFd owns for its whole life.
        let afd =
            unsafe { tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }.ok()?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let _ = afd.readable().await;
            let _ = tx.send(Some("exited (status unknown: adopted after a hub restart)".to_string()));
        });
        Some(Box::new(LocalProcess {
            unit: user.to_string(),
            pid,
            uid,
            start_ticks: Some(ticks),
            exited: rx,
            enforcer: self.enforcer.clone(),
        }))
    }
}

#[async_trait]
impl ServerProcess for LocalProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn exited(&self) -> watch::Receiver<Option<String>> {
        self.exited.clone()
    }

    fn start_ticks(&self) -> Option<i64> {
        self.start_ticks
    }

    fn oom_kills(&self) -> u64 {
        self.enforcer.oom_kills(&self.unit)
    }

    async fn stop(&self, term_timeout: Duration) -> String {
        let mut exited = self.exited.clone();
        let pgid = Pid::from_raw(self.pid as i32);
        // Kernels start their own sessions, so they are not in the server's process group:
        // remember the whole tree now, while the parent links still exist.
        let mut tree = descendants(self.pid);
        let running = exited.borrow().is_none();
        if running {
            let _ = killpg(pgid, Signal::SIGTERM);
            let done = tokio::time::timeout(term_timeout, exited.wait_for(|e| e.is_some())).await.is_ok();
            if !done {
                tree.extend(descendants(self.pid));
                tracing::warn!(pid = self.pid, "server ignored SIGTERM for {term_timeout:?}; sending SIGKILL");
                let _ = killpg(pgid, Signal::SIGKILL);
                let _ = exited.wait_for(|e| e.is_some()).await.is_ok();
            }
        }
        // Whatever of the tree is still alive and still belongs to the user goes too.
        for pid in tree {
            if owner_uid(pid) == Some(self.uid) && !matches!(proc_state(pid), Some('Z' | 'X') | None) {
                tracing::info!(pid, "killing a leftover process of the server");
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        // Anything still in the server's cgroups (a daemon that left the tree) goes too.
        let (enforcer, user) = (self.enforcer.clone(), self.unit.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let n = enforcer.kill_all(&user);
            if n > 0 {
                tracing::info!(user = %user, processes = n, "killed processes left in the server's cgroup");
            }
            enforcer.remove(&user);
        })
        .await;
        let how = exited.borrow().clone();
        how.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::process::parent_pid;

    #[test]
    fn finds_own_children() {
        let mut c = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let me = std::process::id();
        assert!(descendants(me).contains(&c.id()));
        assert_eq!(parent_pid(c.id()), Some(me));
        let uid = nix::unistd::getuid().as_raw();
        assert_eq!(owner_uid(c.id()), Some(uid));
        let ticks = start_ticks(c.id()).expect("start time");
        assert!(is_same_process(c.id(), uid, ticks));
        assert!(!is_same_process(c.id(), uid, ticks + 1), "another start time is another process");
        assert!(!is_same_process(c.id(), uid + 1, ticks), "another owner is another process");
        c.kill().expect("kill");
        // A zombie is not a live server.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!is_same_process(c.id(), uid, ticks));
        c.wait().expect("wait");
    }
}
