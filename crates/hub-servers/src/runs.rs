//! Notebook runs as processes: the runner (`hub runner`, [`hub_runner`]) started through the
//! spawner under the owner's UID, GID and groups, with the environment and `[limits]` their
//! server gets ([`crate::environment`]), in a cgroup of its own (`<user>.run-<id>`), after a
//! ticket renewal (trigger `job`). The runner's stdout and stderr are the run's log; its
//! [`Event`] lines in it say how far it got and how it ended, so a restarted hub can read the
//! outcome of a run that ended while it was down.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ccache;
use crate::environment::{UserEnvironment, user_environment};
use crate::renewer::{Renewer, Trigger};
use crate::spawner::{ServerProcess, SpawnError, SpawnSpec, Spawner};
use hub_config::Config;
use hub_core::{LinuxUser, TicketOwner, unix_now};
use hub_runner::spec::{Event, RunSpec, SPEC_ENV};

/// A run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunStartError {
    /// The owner's ticket cannot carry the run.
    #[error("{0}")]
    Ticket(String),
    /// The runner process could not start.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// The owner's ticket when a run started (unix seconds), recorded with the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketValidity {
    /// End of the ticket.
    pub valid_until: i64,
    /// Last time it can be renewed (0: not renewable).
    pub renew_until: i64,
}

/// A started run.
pub struct StartedRun {
    /// The runner process.
    pub process: Box<dyn ServerProcess>,
    /// Its log (stdout and stderr, events included).
    pub log_path: PathBuf,
    /// The ticket at the start, with `[kerberos] enabled`.
    pub ticket: Option<TicketValidity>,
}

/// Starts runs; one per hub process (or per `hub run`).
pub struct RunLauncher {
    config: Config,
    renewer: Arc<Renewer>,
    spawner: Arc<dyn Spawner>,
    exe: PathBuf,
}

impl RunLauncher {
    /// A launcher that starts `exe runner` (`exe` is normally the running `hub` binary) with
    /// `spawner`, renewing tickets with `renewer`.
    pub fn new(config: Config, renewer: Arc<Renewer>, spawner: Arc<dyn Spawner>, exe: PathBuf) -> Self {
        Self { config, renewer, spawner, exe }
    }

    /// The `hub` binary started as the runner.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The renewer the launcher uses.
    pub fn renewer(&self) -> &Arc<Renewer> {
        &self.renewer
    }

    /// Checks and renews `user`'s ticket for a run of at most `timeout_s` seconds (`None`:
    /// no limit), then starts the runner for `spec` in cgroup `unit`, logging to `log_path`
    /// (appended). On success the user is on the renewer's timer until [`RunLauncher::finish`].
    pub async fn start(
        &self,
        user: &LinuxUser,
        spec: &RunSpec,
        unit: &str,
        log_path: &Path,
    ) -> Result<StartedRun, RunStartError> {
        let owner = TicketOwner::from(user);
        let ticket = self.ticket_for(&owner, spec.timeout_s).await?;
        let UserEnvironment { mut env, mut limits, kernelspecs } =
            user_environment(&self.config, &self.renewer, user, None);
        // [jobs.limits] over the user's own.
        let jl = &self.config.jobs.limits;
        limits.memory = jl.memory.or(limits.memory);
        limits.cpu = jl.cpu.or(limits.cpu);
        limits.tasks = jl.tasks.or(limits.tasks);
        let mut spec = spec.clone();
        if spec.jupyter_prefix.is_none() {
            spec.jupyter_prefix = jupyter_prefix(&self.config);
        }
        if spec.info.principal.is_none() && self.renewer.enabled() {
            spec.info.principal = Some(self.renewer.paths(&owner).principal);
        }
        env.push((SPEC_ENV.into(), serde_json::to_string(&spec).unwrap_or_default()));
        let spawn = SpawnSpec {
            user: user.clone(),
            argv: vec![self.exe.display().to_string(), "runner".into()],
            env,
            log_path: log_path.to_path_buf(),
            limits,
            unit: unit.to_string(),
            profile: None,
            kernelspecs,
        };
        self.renewer.hold(&owner);
        match self.spawner.start(spawn).await {
            Ok(process) => Ok(StartedRun { process, log_path: log_path.to_path_buf(), ticket }),
            Err(e) => {
                self.renewer.release(&owner);
                Err(e.into())
            }
        }
    }

    /// After a run's process ended (or was adopted and then ended): takes the owner off the
    /// renewer's timer for it.
    pub fn finish(&self, user: &LinuxUser) {
        self.renewer.release(&TicketOwner::from(user));
    }

    /// A renewal for the run (trigger `job`). Without a keytab, the login ticket must be valid
    /// now and renewable past the run's time limit, or the run is refused with a message that
    /// says so. Returns the ticket's times, or `None` with `[kerberos]` off.
    pub async fn ticket_for(
        &self,
        owner: &TicketOwner,
        timeout_s: Option<f64>,
    ) -> Result<Option<TicketValidity>, RunStartError> {
        if !self.renewer.enabled() {
            return Ok(None);
        }
        let paths = self.renewer.paths(owner);
        let keytab = self.renewer.has_keytab(owner);
        let renewed = self.renewer.renew(owner, Trigger::Job).await;
        let now = unix_now();
        let times = ccache::read(&paths.ccache).ok().filter(|t| t.end > now);
        match (&renewed, times) {
            (_, Some(t)) if keytab => Ok(Some(TicketValidity { valid_until: t.end, renew_until: t.renew_until })),
            (Err(e), _) if keytab => Err(RunStartError::Ticket(format!(
                "cannot get a Kerberos ticket for {} from the keytab {}: {e}",
                paths.principal,
                paths.keytab.display()
            ))),
            (_, None) => Err(RunStartError::Ticket(format!(
                "{} has no valid Kerberos ticket and no keytab at {}: sign in to the hub to get a ticket, or ask an admin for a keytab so that runs can get their own",
                paths.principal,
                paths.keytab.display()
            ))),
            (_, Some(t)) => {
                let last = if t.renew_until > t.end { t.renew_until } else { t.end };
                match timeout_s {
                    Some(s) if now + s.ceil() as i64 > last => Err(RunStartError::Ticket(format!(
                        "the ticket of {} can be kept valid only until {} (it was obtained at sign-in and there is no keytab at {}), before the run's time limit of {} would end; sign in again, shorten the timeout, or ask an admin for a keytab",
                        paths.principal,
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + std::time::Duration::from_secs(last.max(0) as u64)
                        ),
                        paths.keytab.display(),
                        humantime::format_duration(std::time::Duration::from_secs(s.ceil() as u64)),
                    ))),
                    _ => Ok(Some(TicketValidity { valid_until: t.end, renew_until: t.renew_until })),
                }
            }
        }
    }
}

/// Reads `path` (inside `user`'s home) with `user`'s credentials, never as root: the hub binary
/// (`hub runner --cat PATH`) runs as the user with their groups and reads it through the
/// runner's home-confined open ([`hub_runner::home`]). Errors are the runner's message.
pub async fn read_as_user(exe: &Path, user: &LinuxUser, path: &Path) -> Result<Vec<u8>, String> {
    if user.uid == 0 {
        return Err("refusing to read a file for UID 0".into());
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["runner", "--cat"])
        .arg(path)
        .env_clear()
        .env("HOME", &user.home)
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(std::process::Stdio::null());
    crate::identity::drop_to(&mut cmd, user);
    let out = tokio::process::Command::from(cmd).output().await.map_err(|e| format!("cannot start the reader: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().trim_start_matches("hub runner: ").to_string())
    }
}

/// The Python environment JupyterLab runs from: `[spawner] cmd`'s program is
/// `<prefix>/bin/<name>`, and `<prefix>/bin/python` exists.
pub fn jupyter_prefix(config: &Config) -> Option<PathBuf> {
    let program = Path::new(config.spawner.cmd.first()?);
    let prefix = program.parent()?.parent()?;
    prefix.join("bin/python").exists().then(|| prefix.to_path_buf())
}

/// Reads the events in the run log `path` from byte `offset`: the events on complete lines,
/// the other complete lines, and the offset after the last complete line (so a caller can
/// follow a growing log). A missing log is no events.
pub fn read_events(path: &Path, offset: u64) -> (Vec<Event>, Vec<String>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else { return (Vec::new(), Vec::new(), offset) };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), Vec::new(), offset);
    }
    let mut reader = std::io::BufReader::new(f);
    let (mut events, mut other, mut at) = (Vec::new(), Vec::new(), offset);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) if line.last() == Some(&b'\n') => {
                at += n as u64;
                let text = String::from_utf8_lossy(&line);
                match Event::parse_line(&text) {
                    Some(e) => events.push(e),
                    None => other.push(text.trim_end_matches('\n').to_string()),
                }
            }
            // A line still being written: read it next time.
            Ok(_) => break,
        }
    }
    (events, other, at)
}

/// The last `max` bytes of the run log at `path` (all of it when shorter), as text (invalid
/// UTF-8 replaced). The log is the hub's own file, root's, under `data_dir`.
pub fn read_log_tail(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_runner::spec::Outcome;
    use std::io::Write;

    #[test]
    fn events_are_read_from_a_growing_log() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("run.log");
        let mut f = std::fs::File::create(&p).expect("create");
        let started = Event::Started { kernel: "python3".into(), cells: 2, output: "/h/o.ipynb".into() };
        writeln!(f, "kernel noise").expect("write");
        writeln!(f, "{}", started.to_line()).expect("write");
        write!(f, "@hub-run {{\"event\":\"fin").expect("write");
        let (events, other, at) = read_events(&p, 0);
        assert_eq!(events, vec![started]);
        assert_eq!(other, vec!["kernel noise".to_string()]);
        let done = Event::Finished {
            outcome: Outcome::Succeeded,
            message: String::new(),
            failed_cell: None,
            ename: None,
            evalue: None,
            traceback: vec![],
            cells_run: 2,
            duration_ms: 5,
            runner_cpu_ms: 1,
            kernel_cpu_ms: 2,
        };
        // The half-written line is finished later; reading on from `at` gets it whole.
        let full = done.to_line();
        writeln!(f, "{}", &full["@hub-run {\"event\":\"fin".len()..]).expect("write");
        let (events, other, _) = read_events(&p, at);
        assert_eq!(events, vec![done]);
        assert!(other.is_empty());
        assert_eq!(read_events(&dir.path().join("missing"), 7).2, 7);
        let all = std::fs::read_to_string(&p).expect("read");
        assert_eq!(read_log_tail(&p, 1 << 20).expect("tail"), all);
        assert_eq!(read_log_tail(&p, 5).expect("tail"), all[all.len() - 5..]);
    }
}
