//! Per-server resource limits: memory (bytes), CPU (cores) and tasks (processes and threads).
//!
//! [`LimitsConfig::for_user`] resolves the `[limits]` table of hub.toml for one user (a
//! per-user entry wins, then the largest value among the user's Unix groups' entries, then
//! the default). An [`Enforcer`], chosen once when the hub starts, applies them:
//!
//! - **cgroup v2** (`/sys/fs/cgroup` is the unified hierarchy with the `memory`, `cpu` and
//!   `pids` controllers): one cgroup per server, `<hub's cgroup>/servers/<user>`, with
//!   `memory.max` (and `memory.swap.max = 0`), `cpu.max` (`quota period` in microseconds per
//!   100 000), `pids.max`; out-of-memory kills are read from `memory.events` (`oom_kill`), and
//!   stop uses `cgroup.kill` (kernel documentation, `Documentation/admin-guide/cgroup-v2.rst`).
//! - **cgroup v1** (hybrid hosts where those controllers are bound to v1 hierarchies): the same
//!   per server under `<hub's cgroup>/hub-servers/<user>` in each controller's hierarchy:
//!   `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes`), `cpu.cfs_quota_us` /
//!   `cpu.cfs_period_us`, `pids.max`; `memory.oom_control` (`oom_kill`) for OOM kills.
//! - **rlimits** when no cgroup hierarchy is writable (a warning is logged once):
//!   `RLIMIT_DATA` for memory (an allocation beyond it fails instead of the OOM killer ending
//!   the process), `RLIMIT_NPROC` for tasks (counted per UID, so it covers all of the user's
//!   processes), and no CPU limit.
//!
//! The server process joins its cgroups between `fork` and `exec` ([`Placement::apply_in_child`],
//! while still root), so every kernel and terminal it starts is inside them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use hub_config::limits::{Limits, LimitsConfig};

/// The CFS period the hub uses, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone)]
enum Mechanism {
    V2 { base: PathBuf },
    V1 { memory: Option<PathBuf>, cpu: Option<PathBuf>, pids: Option<PathBuf> },
    Rlimit,
}

/// Applies [`Limits`] to servers with the best mechanism this host offers (see the module
/// documentation). One per hub process.
#[derive(Debug, Clone)]
pub struct Enforcer {
    mech: Mechanism,
}

/// What a starting server must do between `fork` and `exec`: join its cgroups and set its
/// rlimits. Prepared in the parent (files opened, limits written) so the child only makes
/// async-signal-safe calls.
#[derive(Debug, Default)]
pub struct Placement {
    procs: Vec<OwnedFd>,
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
}

impl Placement {
    /// Joins the cgroups (writes "0", meaning "this process", to each `cgroup.procs`) and sets
    /// the rlimits. Call in the child before dropping privileges: it only uses `write(2)` and
    /// `setrlimit(2)`, which are async-signal-safe, and allocates nothing.
    pub fn apply_in_child(&self) -> io::Result<()> {
        for fd in &self.procs {
            // SAFETY: a valid open descriptor and a 1-byte buffer that outlives the call.
            if unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        for &(resource, value) in &self.rlimits {
            let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
            // SAFETY: a plain syscall with a pointer to a live struct.
            if unsafe { libc::setrlimit(resource, &lim) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Enforcer {
    /// Picks the mechanism: cgroup v2, else cgroup v1, else rlimits. Logs which, once; with
    /// rlimits and `limits_configured`, a warning that says what is not enforced.
    pub fn detect(limits_configured: bool) -> Self {
        let mech = match detect_v2() {
            Ok(m) => m,
            Err(v2) => match detect_v1() {
                Ok(m) => {
                    tracing::info!(why_not_v2 = %v2, "resource limits use cgroup v1 (this host has no usable cgroup v2)");
                    m
                }
                Err(v1) => {
                    if limits_configured {
                        tracing::warn!(
                            cgroup_v2 = %v2,
                            cgroup_v1 = %v1,
                            "no writable cgroup hierarchy: [limits] fall back to rlimits (memory as RLIMIT_DATA, \
                             tasks as RLIMIT_NPROC per user); CPU limits are not enforced and out-of-memory kills \
                             are not reported"
                        );
                    }
                    Mechanism::Rlimit
                }
            },
        };
        if let Mechanism::V2 { base } = &mech {
            tracing::info!(base = %base.display(), "resource limits use cgroup v2");
        }
        Self { mech }
    }

    /// An enforcer that only uses rlimits (for hosts, or tests, without cgroups).
    pub fn rlimits_only() -> Self {
        Self { mech: Mechanism::Rlimit }
    }

    /// "cgroup v2", "cgroup v1" or "rlimits".
    pub fn mechanism(&self) -> &'static str {
        match self.mech {
            Mechanism::V2 { .. } => "cgroup v2",
            Mechanism::V1 { .. } => "cgroup v1",
            Mechanism::Rlimit => "rlimits",
        }
    }

    /// The cgroup directories of `user`'s server (one for v2; one per controller for v1).
    pub fn cgroup_dirs(&self, user: &str) -> Vec<PathBuf> {
        match &self.mech {
            Mechanism::V2 { base } => vec![base.join(user)],
            Mechanism::V1 { memory, cpu, pids } => {
                [memory, cpu, pids].into_iter().flatten().map(|b| b.join(user)).collect()
            }
            Mechanism::Rlimit => Vec::new(),
        }
    }

    /// Creates `user`'s cgroups (fresh, so counters start at zero), writes `limits` into them,
    /// and opens what the child needs. Errors name the file that could not be written.
    pub fn prepare(&self, user: &str, limits: &Limits) -> io::Result<Placement> {
        let mut p = Placement::default();
        let named = |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let write = |path: PathBuf, value: String| fs::write(&path, value).map_err(|e| named(&path, e));
        let fresh = |dir: PathBuf| -> io::Result<PathBuf> {
            if dir.exists() && fs::remove_dir(&dir).is_err() {
                // Processes of an earlier server are still inside: keep it (counters included).
                return Ok(dir);
            }
            fs::create_dir_all(&dir).map_err(|e| named(&dir, e))?;
            Ok(dir)
        };
        let open_procs = |dir: &Path| -> io::Result<OwnedFd> {
            let path = dir.join("cgroup.procs");
            let f = fs::OpenOptions::new().write(true).open(&path).map_err(|e| named(&path, e))?;
            Ok(f.into())
        };
        match &self.mech {
            Mechanism::V2 { base } => {
                let dir = fresh(base.join(user))?;
                write(dir.join("memory.max"), limits.memory.map_or("max".into(), |m| m.to_string()))?;
                if limits.memory.is_some() {
                    // Without swap the limit is real; some kernels have no swap accounting.
                    let _ = fs::write(dir.join("memory.swap.max"), "0");
                }
                let quota = limits.cpu.map_or("max".into(), |c| cpu_quota(c).to_string());
                write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))?;
                write(dir.join("pids.max"), limits.tasks.map_or("max".into(), |t| t.to_string()))?;
                p.procs.push(open_procs(&dir)?);
            }
            Mechanism::V1 { memory, cpu, pids } => {
                if let Some(b) = memory {
                    let dir = fresh(b.join(user))?;
                    let value = limits.memory.map_or("-1".into(), |m| m.to_string());
                    write(dir.join("memory.limit_in_bytes"), value.clone())?;
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(memsw, value)?;
                    }
                    p.procs.push(open_procs(&dir)?);
                } else if let Some(m) = limits.memory {
                    p.rlimits.push((libc::RLIMIT_DATA, m));
                }
                if let Some(b) = cpu {
                    let dir = fresh(b.join(user))?;
                    write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                    let quota = limits.cpu.map_or("-1".into(), |c| cpu_quota(c).to_string());
                    write(dir.join("cpu.cfs_quota_us"), quota)?;
                    p.procs.push(open_procs(&dir)?);
                }
                if let Some(b) = pids {
                    let dir = fresh(b.join(user))?;
                    write(dir.join("pids.max"), limits.tasks.map_or("max".into(), |t| t.to_string()))?;
                    p.procs.push(open_procs(&dir)?);
                } else if let Some(t) = limits.tasks {
                    p.rlimits.push((libc::RLIMIT_NPROC, t));
                }
            }
            Mechanism::Rlimit => {
                if let Some(m) = limits.memory {
                    p.rlimits.push((libc::RLIMIT_DATA, m));
                }
                if let Some(t) = limits.tasks {
                    p.rlimits.push((libc::RLIMIT_NPROC, t));
                }
            }
        }
        Ok(p)
    }

    /// How many processes of `user`'s server the kernel's OOM killer has ended under its
    /// memory limit (0 without a memory cgroup).
    pub fn oom_kills(&self, user: &str) -> u64 {
        let (file, dir) = match &self.mech {
            Mechanism::V2 { base } => ("memory.events", base.join(user)),
            Mechanism::V1 { memory: Some(b), .. } => ("memory.oom_control", b.join(user)),
            _ => return 0,
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// SIGKILLs every process left in `user`'s cgroups (`cgroup.kill` on v2; each pid in
    /// `cgroup.procs` otherwise, until none is left). Returns how many pids were signalled.
    pub fn kill_all(&self, user: &str) -> usize {
        let dirs = self.cgroup_dirs(user);
        if let (Mechanism::V2 { .. }, Some(dir)) = (&self.mech, dirs.first())
            && fs::write(dir.join("cgroup.kill"), "1").is_ok()
        {
            return 0;
        }
        let mut signalled = 0;
        for _ in 0..50 {
            let pids: Vec<i32> = dirs
                .iter()
                .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
                .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                    signalled += 1;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        signalled
    }

    /// Removes `user`'s cgroups once they are empty (errors ignored: a busy cgroup stays).
    pub fn remove(&self, user: &str) {
        for d in self.cgroup_dirs(user) {
            let _ = fs::remove_dir(d);
        }
    }
}

/// CFS quota in microseconds per [`CPU_PERIOD_US`] for `cores` (at least 1 ms, the kernel's
/// minimum).
fn cpu_quota(cores: f64) -> u64 {
    ((cores * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// The controllers the hub needs.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// The hub's cgroup path in hierarchy `id` ("0" for v2, else the controller list of a v1
/// line), from `/proc/self/cgroup`.
fn own_cgroup(matches: impl Fn(&str) -> bool) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
        matches(ctrl).then(|| path.to_string())
    })
}

/// Why a cgroup hierarchy cannot be used for servers' limits (logged when the hub falls back).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unavailable(String);

impl From<String> for Unavailable {
    fn from(why: String) -> Self {
        Unavailable(why)
    }
}

impl From<&str> for Unavailable {
    fn from(why: &str) -> Self {
        Unavailable(why.to_string())
    }
}

fn detect_v2() -> Result<Mechanism, Unavailable> {
    let root = Path::new("/sys/fs/cgroup");
    let available = fs::read_to_string(root.join("cgroup.controllers"))
        .map_err(|_| "/sys/fs/cgroup is not a cgroup v2 (unified) hierarchy".to_string())?;
    let missing: Vec<&str> =
        CONTROLLERS.iter().copied().filter(|c| !available.split_whitespace().any(|a| a == *c)).collect();
    if !missing.is_empty() {
        return Err(format!("cgroup v2 lacks the controllers {missing:?} (bound to cgroup v1?)").into());
    }
    let own = own_cgroup(|c| c.is_empty()).ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
    let own_dir = root.join(own.trim_start_matches('/'));
    let enable = CONTROLLERS.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
    let err = |what: &str, e: io::Error| format!("{what}: {e} (is the hub's cgroup delegated to it?)");
    let base = if own == "/" {
        // The root cgroup may hold processes and have controllers enabled.
        fs::write(root.join("cgroup.subtree_control"), &enable).map_err(|e| err("enabling controllers", e))?;
        root.join("hub-servers")
    } else {
        // "No internal processes": the hub moves into a leaf of its own before its cgroup
        // can enable controllers for the servers' sibling subtree.
        let leaf = own_dir.join("hub");
        fs::create_dir_all(&leaf).map_err(|e| err("creating the hub's leaf cgroup", e))?;
        fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| err("moving the hub into its leaf cgroup", e))?;
        fs::write(own_dir.join("cgroup.subtree_control"), &enable).map_err(|e| err("enabling controllers", e))?;
        own_dir.join("servers")
    };
    fs::create_dir_all(&base).map_err(|e| err("creating the servers' cgroup", e))?;
    fs::write(base.join("cgroup.subtree_control"), &enable).map_err(|e| err("enabling controllers", e))?;
    Ok(Mechanism::V2 { base })
}

fn detect_v1() -> Result<Mechanism, Unavailable> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    // proc(5): "... mount-point ... - fstype source super-options"
    let mount_of = |controller: &str| -> Option<PathBuf> {
        mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let (fstype, _, opts) = (r.next()?, r.next()?, r.next()?);
            if fstype != "cgroup" || !opts.split(',').any(|o| o == controller) {
                return None;
            }
            left.split_whitespace().nth(4).map(PathBuf::from)
        })
    };
    let mut found: BTreeMap<&str, PathBuf> = BTreeMap::new();
    let mut problems = Vec::new();
    for c in CONTROLLERS {
        let Some(mount) = mount_of(c) else {
            problems.push(format!("no cgroup v1 hierarchy has {c}"));
            continue;
        };
        let own = own_cgroup(|ctrls| ctrls.split(',').any(|x| x == c)).unwrap_or_else(|| "/".into());
        let base = mount.join(own.trim_start_matches('/')).join("hub-servers");
        match fs::create_dir_all(&base) {
            Ok(()) => {
                found.insert(c, base);
            }
            Err(e) => problems.push(format!("{}: {e}", base.display())),
        }
    }
    if found.is_empty() {
        return Err(problems.join("; ").into());
    }
    for p in &problems {
        tracing::warn!(problem = %p, "a cgroup v1 controller is not usable; its limit falls back to an rlimit or is not enforced");
    }
    Ok(Mechanism::V1 { memory: found.remove("memory"), cpu: found.remove("cpu"), pids: found.remove("pids") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(memory: Option<u64>, cpu: Option<f64>, tasks: Option<u64>) -> Limits {
        Limits { memory, cpu, tasks }
    }

    #[test]
    fn user_beats_groups_beats_default() {
        let c = LimitsConfig {
            default: lim(Some(100), Some(1.0), Some(50)),
            users: [("ann".to_string(), lim(Some(1000), None, None))].into(),
            groups: [
                ("spark".to_string(), lim(Some(400), Some(4.0), None)),
                ("big".to_string(), lim(Some(800), Some(2.0), Some(10))),
            ]
            .into(),
        };
        assert_eq!(c.for_user("bob", &[]), lim(Some(100), Some(1.0), Some(50)));
        // The largest value of each key among the user's groups.
        assert_eq!(c.for_user("bob", &["spark".into(), "big".into()]), lim(Some(800), Some(4.0), Some(10)));
        // A user entry wins for the keys it sets; the rest comes from groups and default.
        assert_eq!(c.for_user("ann", &["spark".into()]), lim(Some(1000), Some(4.0), Some(50)));
        assert!(c.any() && !LimitsConfig::default().any());
        assert_eq!(lim(Some(200 << 20), Some(1.5), None).describe(), "memory 200.0 MiB, cpu 1.5");
        assert_eq!(cpu_quota(1.5), 150_000);
        assert_eq!(cpu_quota(0.001), 1000, "at least the kernel's minimum quota");
    }

    /// The cgroup v2 file protocol, against a FAKE cgroupfs (a temporary directory): this host
    /// has its memory, cpu and pids controllers on cgroup v1, so no real v2 hierarchy can be
    /// written here. The user's directory already holds a `cgroup.procs` and another file, as
    /// a busy cgroup would, so `prepare` keeps it and writes the limits into it.
    #[test]
    fn cgroup_v2_files_on_a_fake_hierarchy() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("ann");
        fs::create_dir(&dir).expect("dir");
        fs::write(dir.join("cgroup.procs"), "").expect("procs");
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n").expect("events");
        let e = Enforcer { mech: Mechanism::V2 { base: base.path().to_path_buf() } };
        assert_eq!(e.mechanism(), "cgroup v2");
        let p = e.prepare("ann", &lim(Some(200 << 20), Some(1.5), Some(512))).expect("prepare");
        assert_eq!(p.procs.len(), 1, "the child joins one cgroup");
        let read = |f: &str| fs::read_to_string(dir.join(f)).expect(f);
        assert_eq!(read("memory.max"), (200u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("pids.max"), "512");
        assert_eq!(e.oom_kills("ann"), 2);
        assert_eq!(e.kill_all("ann"), 0, "cgroup.kill does the killing");
        assert_eq!(read("cgroup.kill"), "1");
        e.prepare("ann", &Limits::default()).expect("unlimited");
        assert_eq!(
            (read("memory.max"), read("cpu.max"), read("pids.max")),
            ("max".into(), "max 100000".into(), "max".into())
        );
    }

    /// Under the rlimit fallback the child gets RLIMIT_DATA and RLIMIT_NPROC, as
    /// /proc/PID/limits shows.
    #[test]
    fn rlimit_fallback_reaches_the_child() {
        use std::os::unix::process::CommandExt;
        let p = Enforcer::rlimits_only()
            .prepare("nobody-here", &lim(Some(300 << 20), Some(2.0), Some(4096)))
            .expect("prepare");
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("5");
        // SAFETY: apply_in_child only makes async-signal-safe calls.
        unsafe { cmd.pre_exec(move || p.apply_in_child()) };
        let mut child = cmd.spawn().expect("spawn");
        let limits = fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("limits");
        let _ = child.kill();
        let _ = child.wait();
        let line = |name: &str| limits.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
        assert!(line("Max data size").contains(&(300u64 << 20).to_string()), "{limits}");
        assert!(line("Max processes").contains("4096"), "{limits}");
        assert_eq!(Enforcer::rlimits_only().oom_kills("x"), 0);
    }
}
