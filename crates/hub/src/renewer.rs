//! The ticket renewer: runs `kinit` from each user's keytab into that user's credential cache.
//!
//! Triggers (see [`Trigger`]): login, spawn, and every notebook open and save the proxy sees.
//! Per user at most one kinit runs at a time: an event that arrives while one runs is
//! coalesced into it (skipped, with a debug event). A renewal never blocks the request that
//! triggered it; a failure is logged with kinit's own message and kept for the home page.
//!
//! File rules: kinit writes into a fresh, unguessable temporary file next to the live ccache;
//! the hub then `chown`s it to the user, sets mode 0600 and `rename`s it over the live path,
//! so a reader (a Spark job) never sees a half-written cache. The ccache directory is created
//! root-owned, mode 0711 (users can reach their own file, not list others). A keytab that is a
//! symlink, not a regular file, owned by someone other than the user or root, or readable by
//! group or others, is refused and kinit is not run.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::process::Command;

use crate::config::{KerberosConfig, TemplateVars};

/// What caused a renewal; logged with each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The user logged in.
    Login,
    /// The user's server is about to start.
    Spawn,
    /// The proxy saw a notebook opened (`GET .../api/contents/X.ipynb` with content).
    Open,
    /// The proxy saw a notebook saved (`PUT .../api/contents/X.ipynb` answered 200/201).
    Save,
}

impl Trigger {
    /// Lower-case name for logs: `login`, `spawn`, `open`, `save`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Login => "login",
            Trigger::Spawn => "spawn",
            Trigger::Open => "open",
            Trigger::Save => "save",
        }
    }
}

/// The Linux identity a ticket is written for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketOwner {
    /// Hub user name.
    pub username: String,
    /// Linux UID the ccache is chowned to.
    pub uid: u32,
    /// Linux primary GID the ccache is chowned to.
    pub gid: u32,
}

/// What the hub knows of a user's last renewal, for the home page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketStatus {
    /// When the last kinit succeeded.
    pub last_success: Option<SystemTime>,
    /// kinit's message (or the hub's reason) for the last failure, cleared by a success.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
}

/// Paths and principal for one user, expanded from the `[kerberos]` templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKerberos {
    /// `principal`, e.g. `ann@EXAMPLE.COM`.
    pub principal: String,
    /// `keytab`, e.g. `/home/ann/ann.keytab`.
    pub keytab: PathBuf,
    /// `ccache` (a plain path; prefix `FILE:` for `KRB5CCNAME`).
    pub ccache: PathBuf,
}

/// A failed renewal.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The keytab is missing or unsafe; kinit was not run.
    #[error("keytab {path}: {problem}")]
    Keytab {
        /// The keytab path.
        path: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// kinit ran and failed; `stderr` is its own message.
    #[error("kinit for {principal} failed ({status}): {stderr}")]
    Kinit {
        /// The principal.
        principal: String,
        /// Exit status, or "timed out after N s".
        status: String,
        /// kinit's stderr, trimmed.
        stderr: String,
    },
    /// A file operation on the ccache failed.
    #[error("credential cache {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

#[derive(Default)]
struct UserState {
    /// Held while a kinit runs for the user (single-flight).
    running: Arc<tokio::sync::Mutex<()>>,
    status: TicketStatus,
}

/// Runs kinit for users; see the module documentation.
pub struct Renewer {
    cfg: KerberosConfig,
    users: Mutex<HashMap<String, UserState>>,
}

impl Renewer {
    /// A renewer for the `[kerberos]` section.
    pub fn new(cfg: KerberosConfig) -> Self {
        Self { cfg, users: Mutex::new(HashMap::new()) }
    }

    /// Whether renewal is on (`[kerberos] enabled`).
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// The principal, keytab and ccache for `owner`, from the templates.
    pub fn paths(&self, owner: &TicketOwner) -> UserKerberos {
        let v =
            TemplateVars { username: &owner.username, uid: owner.uid, realm: &self.cfg.realm, ..Default::default() };
        UserKerberos {
            principal: self.cfg.principal.expand(&v),
            keytab: PathBuf::from(self.cfg.keytab.expand(&v)),
            ccache: PathBuf::from(self.cfg.ccache.expand(&v)),
        }
    }

    /// The `KRB5_CONFIG` the hub passes to kinit and to servers, if configured.
    pub fn krb5_config(&self) -> Option<&Path> {
        self.cfg.krb5_config.as_deref()
    }

    /// The last known state of `username`'s ticket.
    pub fn status(&self, username: &str) -> Option<TicketStatus> {
        self.lock().get(username).map(|u| u.status.clone())
    }

    /// Starts a renewal in the background and returns at once. If one is already running
    /// for the user, this event is coalesced into it.
    pub fn trigger(self: &Arc<Self>, owner: TicketOwner, trigger: Trigger) {
        if !self.cfg.enabled {
            return;
        }
        let running = self.lock().entry(owner.username.clone()).or_default().running.clone();
        let Ok(guard) = running.try_lock_owned() else {
            tracing::debug!(user = %owner.username, trigger = %trigger.as_str(), outcome = %"coalesced", "kinit already running");
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.renew_locked(&owner, trigger).await;
            drop(guard);
        });
    }

    /// Renews now and waits for the outcome, after any renewal already running for the user.
    /// If one finished successfully within the last `fresh` (e.g. the login renewal just
    /// before the spawn), nothing more is run.
    pub async fn renew(&self, owner: &TicketOwner, trigger: Trigger, fresh: Duration) -> Result<(), RenewError> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let running = self.lock().entry(owner.username.clone()).or_default().running.clone();
        let _guard = running.lock().await;
        let recent = self.status(&owner.username).and_then(|s| s.last_success).and_then(|t| t.elapsed().ok());
        if recent.is_some_and(|age| age < fresh) {
            tracing::debug!(user = %owner.username, trigger = %trigger.as_str(), outcome = %"coalesced", "ticket just renewed");
            return Ok(());
        }
        self.renew_locked(owner, trigger).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserState>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn renew_locked(&self, owner: &TicketOwner, trigger: Trigger) -> Result<(), RenewError> {
        let paths = self.paths(owner);
        let started = std::time::Instant::now();
        let result = self.run_kinit(owner, &paths).await;
        let mut users = self.lock();
        let st = &mut users.entry(owner.username.clone()).or_default().status;
        match &result {
            Ok(()) => {
                st.last_success = Some(SystemTime::now());
                st.last_error = None;
                st.consecutive_failures = 0;
                tracing::info!(
                    user = %owner.username, trigger = %trigger.as_str(), outcome = %"renewed",
                    principal = %paths.principal, ccache = %paths.ccache.display(),
                    ms = started.elapsed().as_millis() as u64, "kinit succeeded"
                );
            }
            Err(e) => {
                st.last_error = Some(e.to_string());
                st.consecutive_failures += 1;
                tracing::warn!(
                    user = %owner.username, trigger = %trigger.as_str(), outcome = %"failed",
                    failures = st.consecutive_failures, error = %e, "kinit failed"
                );
            }
        }
        result
    }

    async fn run_kinit(&self, owner: &TicketOwner, p: &UserKerberos) -> Result<(), RenewError> {
        check_keytab(&p.keytab, owner.uid)?;
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| RenewError::Io { path, source }
        };
        let dir = p.ccache.parent().unwrap_or(Path::new("/"));
        ensure_ccache_dir(dir).map_err(io(dir))?;

        let mut suffix = [0u8; 12];
        rand::fill(&mut suffix);
        let file_name = p.ccache.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.{}.tmp", hex::encode(suffix)));

        let mut cmd = Command::new(&self.cfg.kinit);
        cmd.arg("-k")
            .arg("-t")
            .arg(&p.keytab)
            .arg("-c")
            .arg(format!("FILE:{}", tmp.display()))
            .arg(&p.principal)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(k) = &self.cfg.krb5_config {
            cmd.env("KRB5_CONFIG", k);
        }
        let out = match tokio::time::timeout(self.cfg.kinit_timeout, cmd.output()).await {
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(RenewError::Kinit {
                    principal: p.principal.clone(),
                    status: format!("timed out after {} s", self.cfg.kinit_timeout.as_secs()),
                    stderr: String::new(),
                });
            }
            Ok(Err(e)) => {
                return Err(RenewError::Kinit {
                    principal: p.principal.clone(),
                    status: format!("could not run {:?}", self.cfg.kinit),
                    stderr: e.to_string(),
                });
            }
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(RenewError::Kinit {
                principal: p.principal.clone(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let finish = || -> std::io::Result<()> {
            // The temporary file is ours (root created it in a root-owned directory); fix its
            // owner and mode before it becomes visible under the live name.
            std::os::unix::fs::lchown(&tmp, Some(owner.uid), Some(owner.gid))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, &p.ccache)
        };
        finish().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(&p.ccache)(e)
        })
    }

    /// Removes `owner`'s ccache (when their server stops). A missing file is not an error.
    pub fn remove_ccache(&self, owner: &TicketOwner) {
        if !self.cfg.enabled {
            return;
        }
        let p = self.paths(owner).ccache;
        match std::fs::remove_file(&p) {
            Ok(()) => tracing::info!(user = %owner.username, ccache = %p.display(), "credential cache removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(user = %owner.username, ccache = %p.display(), error = %e, "could not remove credential cache")
            }
        }
    }
}

/// Refuses a keytab that kinit must not read for `uid`: see the module documentation.
fn check_keytab(path: &Path, uid: u32) -> Result<(), RenewError> {
    let err = |problem: String| RenewError::Keytab { path: path.display().to_string(), problem };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(
                "does not exist; create it with `ktutil` or `kadmin ktadd -norandkey`, owned by the user, mode 0600"
                    .into(),
            ));
        }
        Err(e) => return Err(err(e.to_string())),
    };
    if meta.file_type().is_symlink() {
        return Err(err("is a symbolic link; the hub does not follow links to keytabs".into()));
    }
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(err(format!("is owned by uid {}, not by the user (uid {uid}) or root", meta.uid())));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!("is readable by group or others (mode {mode:o}); run `chmod 600 {}`", path.display())));
    }
    Ok(())
}

/// Creates the ccache directory (and parents) root-owned with mode 0711 if missing, and
/// refuses one that is a symlink or writable by group or others.
fn ensure_ccache_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(0o711).create(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        }
        Err(e) => Err(e),
        Ok(m) if !m.is_dir() => Err(std::io::Error::other("is not a directory (symlinks are not followed)")),
        Ok(m) if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 => Err(std::io::Error::other(format!(
            "directory is writable by group or others (mode {:o}); use a root-owned directory with mode 0711",
            m.mode() & 0o7777
        ))),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn keytab_rules() {
        let dir = tempfile::tempdir().expect("tmp");
        let kt = dir.path().join("u.keytab");
        let missing = check_keytab(&kt, 1000).expect_err("missing").to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&kt).expect("create");
        check_keytab(&kt, 1000).expect("root-owned 0600 is fine");
        std::fs::set_permissions(&kt, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = check_keytab(&kt, 1000).expect_err("0644 refused").to_string();
        assert!(e.contains("mode 644"), "{e}");
        std::fs::set_permissions(&kt, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::chown(&kt, Some(4242), None).expect("chown");
        let e = check_keytab(&kt, 1000).expect_err("foreign owner refused").to_string();
        assert!(e.contains("uid 4242"), "{e}");
        let link = dir.path().join("link.keytab");
        std::os::unix::fs::symlink(&kt, &link).expect("symlink");
        assert!(check_keytab(&link, 4242).expect_err("symlink refused").to_string().contains("symbolic link"));
    }

    #[test]
    fn ccache_dir_created_0711_and_unsafe_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path().join("a/ccache");
        ensure_ccache_dir(&d).expect("create");
        assert_eq!(std::fs::metadata(&d).expect("meta").mode() & 0o777, 0o711);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(ensure_ccache_dir(&d).is_err());
    }
}
