//! The ticket renewer: runs `kinit` from each user's keytab into that user's credential cache,
//! so that a ticket never lapses while its user works.
//!
//! **Triggers** ([`Trigger`]): login, spawn, every notebook open and save the proxy sees, and a
//! **timer** for every user whose server runs. The timer reads the ticket's start and end from
//! the ccache ([`crate::ccache`]) and renews at `renew_at` of its lifetime, never later than
//! `min_remaining` before it ends, with jitter so that many users do not hit the KDC in the
//! same second (see [`next_renewal`]).
//!
//! **Coalescing.** Per user at most one kinit runs at a time (single-flight); an event that
//! arrives while one runs, or within `event_min_interval` of the last success, is folded into
//! it. Hub-wide at most `max_concurrent_kinit` kinit processes run at once; waiting renewals
//! queue fairly (FIFO, tokio's semaphore).
//!
//! **Failure.** kinit's stderr is kept. A failed renewal is retried with exponential backoff
//! and jitter from `retry_min` to `retry_max` ([`retry_delay`]); nothing else happens to the
//! user's server. Failures are counted, logged and shown on the home page.
//!
//! **Files.** kinit writes into a fresh, unguessable temporary file next to the live ccache
//! (in a root-owned directory nobody else can write, so no one can pre-create or swap it);
//! the hub then sets its owner to the user and its mode to 0600 (`lchown`, never following a
//! link) and `rename`s it over the live path, so a reader such as a Spark job never sees a
//! half-written cache. The ccache directory is created root-owned, mode 0711. A keytab that is
//! a symlink, not a regular file, owned by someone other than the user or root, or readable by
//! group or others, is refused and kinit is not run.
//!
//! **Users without a keytab.** When a user's keytab does not exist but a Kerberos password
//! login gave a TGT, that TGT becomes the ccache ([`Renewer::install_login_ccache`]) and is
//! renewed with `kinit -R` (on a copy, renamed into place the same way) until its
//! renew-until time; after that the user must sign in again, and the home page says when.
//!
//! **State.** Each user's [`TicketStatus`] is kept in memory and written to the store after
//! every attempt (never per proxied request), and read back by [`Renewer::restore`].

use hub_core::Recover;
use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::{Notify, Semaphore};

use crate::ccache::{self, TicketTimes};
use hub_config::{KerberosConfig, TemplateVars};
use hub_core::TicketOwner;
use hub_core::unix_now;
use hub_store::{Store, TicketRecord};

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
    /// The renewal timer (ticket near its end, or a retry after a failure).
    Timer,
    /// A notebook run of the user's is about to start.
    Job,
}

impl Trigger {
    /// Lower-case name for logs: `login`, `spawn`, `open`, `save`, `timer`, `job`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Login => "login",
            Trigger::Spawn => "spawn",
            Trigger::Open => "open",
            Trigger::Save => "save",
            Trigger::Timer => "timer",
            Trigger::Job => "job",
        }
    }
}

/// What the hub knows of a user's ticket. Times are unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketStatus {
    /// The principal kinit is run for.
    pub principal: String,
    /// The ccache path.
    pub ccache: String,
    /// Start of the current ticket, from the ccache.
    pub valid_from: Option<i64>,
    /// End of the current ticket.
    pub valid_until: Option<i64>,
    /// Last time the ticket can be renewed (0 or `None`: not renewable).
    pub renew_until: Option<i64>,
    /// When the last kinit succeeded.
    pub last_success: Option<i64>,
    /// kinit's message (or the hub's reason) for the last failure, cleared by a success.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// When the timer renews next (only while the user's server runs).
    pub next_renewal: Option<i64>,
    /// Renewal attempts for this user since the hub started (kinit runs, and refusals before
    /// kinit such as an unsafe keytab); coalesced events are not counted.
    pub kinit_runs: u64,
    /// The ticket came from the user's sign-in (no keytab): it lapses at `renew_until`.
    pub from_login: bool,
}

impl TicketStatus {
    fn record(&self, username: &str) -> TicketRecord {
        TicketRecord {
            username: username.to_string(),
            principal: self.principal.clone(),
            ccache: self.ccache.clone(),
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            renew_until: self.renew_until,
            last_success: self.last_success,
            last_error: self.last_error.clone(),
            consecutive_failures: i64::from(self.consecutive_failures),
            next_renewal: self.next_renewal,
        }
    }
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

/// Writes login credentials into the given (new, temporary) ccache path; blocking.
pub type LoginWriter = Box<dyn FnOnce(&Path) -> Result<(), LoginWriteError> + Send + 'static>;

/// Why a login's credentials could not be written (the writer's own error, e.g. GSS-API's).
pub type LoginWriteError = Box<dyn std::error::Error + Send + Sync>;

/// A failed renewal.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The login credentials could not be written.
    #[error("keeping the login ticket: {0}")]
    Login(String),
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
    /// An event came while the backoff after a failure runs; kinit was not run.
    #[error("not retried before {until} (unix seconds) after the last failure: {last_error}")]
    BackingOff {
        /// When the next attempt may run, unix seconds.
        until: i64,
        /// The last failure's message.
        last_error: String,
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

// ---- scheduling (pure; unit-tested with injected times) -------------------------------------

/// The timer's knobs, from `[kerberos]`.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Fraction of the lifetime after which to renew (0 < renew_at < 1).
    pub renew_at: f64,
    /// Renew no later than this many seconds before the end.
    pub min_remaining: i64,
    /// First retry delay after a failure, seconds.
    pub retry_min: f64,
    /// Longest retry delay, seconds.
    pub retry_max: f64,
}

/// When the timer should renew ticket `t` (unix seconds), given `now` and `u`, a uniform
/// random number in `[0, 1)` for jitter.
///
/// Rule: `min(start + renew_at × life, end − min_remaining)`, moved *earlier* by up to 10 % of
/// the lifetime (`u` × 0.1 × life) so that renewals spread out and never land later than the
/// rule says; then never before the middle of the ticket's life (so a `min_remaining` larger
/// than the lifetime cannot make renewals spin) and never before `now`.
pub fn next_renewal(t: &TicketTimes, now: i64, p: &Policy, u: f64) -> i64 {
    let life = (t.end - t.start).max(0) as f64;
    let by_fraction = t.start as f64 + p.renew_at * life;
    let by_margin = (t.end - p.min_remaining) as f64;
    let at = by_fraction.min(by_margin) - u.clamp(0.0, 1.0) * 0.1 * life;
    let at = at.max(t.start as f64 + life / 2.0).round() as i64;
    at.max(now)
}

/// Seconds to wait before retry number `failures` (1 = the first retry): `retry_min` doubled
/// per failure, capped at `retry_max`, then scaled by a jitter factor in `[0.8, 1.2)` from
/// `u` (and capped at `retry_max` again).
pub fn retry_delay(failures: u32, p: &Policy, u: f64) -> f64 {
    let exp = failures.saturating_sub(1).min(30);
    let base = (p.retry_min * f64::from(1u32 << exp)).min(p.retry_max);
    (base * (0.8 + 0.4 * u.clamp(0.0, 1.0))).min(p.retry_max)
}

fn jitter() -> f64 {
    rand::random::<f64>()
}

// ---- the renewer -----------------------------------------------------------------------------

#[derive(Default)]
struct UserState {
    /// Held while a kinit runs for the user (single-flight).
    running: Arc<tokio::sync::Mutex<()>>,
    status: TicketStatus,
    /// Set while the user's server or one of their runs is going: the timer keeps this
    /// user's ticket fresh.
    owner: Option<TicketOwner>,
    /// The user's server is running ([`Renewer::activate`]).
    server: bool,
    /// How many of the user's notebook runs are going ([`Renewer::hold`]).
    runs: usize,
    /// The user's entry in the timer queue.
    scheduled: Option<i64>,
    /// After a failure: no event starts another kinit before this time (unix seconds), the
    /// same backoff the timer keeps ([`retry_delay`]). `None` after a success.
    retry_at: Option<i64>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, UserState>,
    /// (when, user): the timer's queue, earliest first.
    queue: BTreeSet<(i64, String)>,
}

/// Runs kinit for users; see the module documentation.
pub struct Renewer {
    cfg: KerberosConfig,
    policy: Policy,
    store: Option<Arc<dyn Store>>,
    inner: Mutex<Inner>,
    wake: Notify,
    slots: Semaphore,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    kinit_total: AtomicU64,
    renewal_failures: AtomicU64,
    /// The user name after each successful renewal (for delivering the new ticket to servers
    /// on other machines, [`Renewer::subscribe_renewals`]).
    renewed: tokio::sync::broadcast::Sender<String>,
}

impl Renewer {
    /// A renewer for the `[kerberos]` section, recording ticket state in `store` if given.
    pub fn new(cfg: KerberosConfig, store: Option<Arc<dyn Store>>) -> Self {
        let policy = Policy {
            renew_at: cfg.renew_at,
            min_remaining: cfg.min_remaining.as_secs() as i64,
            retry_min: cfg.retry_min.as_secs_f64(),
            retry_max: cfg.retry_max.as_secs_f64(),
        };
        let slots = Semaphore::new(cfg.max_concurrent_kinit.max(1));
        Self {
            cfg,
            policy,
            store,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            slots,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            kinit_total: AtomicU64::new(0),
            renewal_failures: AtomicU64::new(0),
            renewed: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// A receiver of the user names whose ticket was just renewed (or installed from a
    /// sign-in), in order. A receiver that falls more than 1024 behind gets `Lagged` and should
    /// treat every user as renewed.
    pub fn subscribe_renewals(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.renewed.subscribe()
    }

    /// The bytes of `owner`'s credential cache on this host (at most 1 MiB), opened without
    /// following a link and only if it is a regular file owned by `owner`: what is delivered
    /// to their servers on other machines.
    pub fn ccache_bytes(&self, owner: &TicketOwner) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = self.paths(owner).ccache;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)?;
        let meta = f.metadata()?;
        if !meta.is_file() || meta.uid() != owner.uid {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file owned by {}",
                path.display(),
                owner.username
            )));
        }
        let mut bytes = Vec::new();
        f.take(ccache::MAX_CCACHE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > ccache::MAX_CCACHE_BYTES {
            return Err(std::io::Error::other(format!("{} is larger than 1 MiB", path.display())));
        }
        Ok(bytes)
    }

    /// `(renewal attempts, failed attempts)` since the hub started: the metrics' counters.
    pub fn renewal_counts(&self) -> (u64, u64) {
        (self.kinit_total.load(Ordering::Relaxed), self.renewal_failures.load(Ordering::Relaxed))
    }

    /// The state of every ticket the renewer knows.
    pub fn statuses(&self) -> Vec<TicketStatus> {
        self.lock().users.values().map(|u| u.status.clone()).collect()
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

    /// Whether `owner`'s keytab exists (then kinit uses it; otherwise the login ticket is kept
    /// and renewed with `kinit -R`).
    pub fn has_keytab(&self, owner: &TicketOwner) -> bool {
        std::fs::symlink_metadata(self.paths(owner).keytab).is_ok()
    }

    /// Makes a login's credentials the user's ccache: `write` fills a fresh temporary file,
    /// which then gets the user's ownership and mode 0600 and is renamed over the live path.
    /// Waits for any renewal running for the user. The state is recorded as for a kinit.
    pub async fn install_login_ccache(
        &self,
        owner: &TicketOwner,
        write: impl FnOnce(&Path) -> Result<(), LoginWriteError> + Send + 'static,
    ) -> Result<(), RenewError> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let running = self.lock().users.entry(owner.username.clone()).or_default().running.clone();
        let _guard = running.lock().await;
        self.renew_with(owner, Trigger::Login, Some(Box::new(write))).await
    }

    /// The `KRB5_CONFIG` the hub passes to kinit and to servers, if configured.
    pub fn krb5_config(&self) -> Option<&Path> {
        self.cfg.krb5_config.as_deref()
    }

    /// The last known state of `username`'s ticket.
    pub fn status(&self, username: &str) -> Option<TicketStatus> {
        self.lock().users.get(username).map(|u| u.status.clone())
    }

    /// `(kinit processes run in total, most that ran at once)` since the hub started.
    pub fn kinit_counts(&self) -> (u64, usize) {
        (self.kinit_total.load(Ordering::Relaxed), self.peak.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().recover()
    }

    /// Starts a renewal in the background for an event and returns at once. Coalesced (no
    /// kinit) if one is already running for the user or the last success is younger than
    /// `event_min_interval`.
    pub fn trigger(self: &Arc<Self>, owner: TicketOwner, trigger: Trigger) {
        if !self.cfg.enabled {
            return;
        }
        let (running, last_success, retry_at) = {
            let mut inner = self.lock();
            let u = inner.users.entry(owner.username.clone()).or_default();
            (u.running.clone(), u.status.last_success, u.retry_at)
        };
        if trigger != Trigger::Timer
            && let Some(age) = self.fresh(last_success)
        {
            tracing::debug!(user = %owner.username, trigger = %trigger.as_str(), outcome = %"coalesced", age_s = age, "ticket renewed recently");
            return;
        }
        if trigger != Trigger::Timer && Self::backing_off(retry_at, &owner.username, trigger) {
            return;
        }
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
    /// Skipped (`Ok`) if the last success is younger than `event_min_interval`.
    pub async fn renew(&self, owner: &TicketOwner, trigger: Trigger) -> Result<(), RenewError> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let running = self.lock().users.entry(owner.username.clone()).or_default().running.clone();
        let _guard = running.lock().await;
        let last = self.status(&owner.username).and_then(|s| s.last_success);
        if let Some(age) = self.fresh(last) {
            tracing::debug!(user = %owner.username, trigger = %trigger.as_str(), outcome = %"coalesced", age_s = age, "ticket renewed recently");
            return Ok(());
        }
        let retry_at = self.lock().users.get(&owner.username).and_then(|u| u.retry_at);
        if trigger != Trigger::Timer && Self::backing_off(retry_at, &owner.username, trigger) {
            let last_error = self.status(&owner.username).and_then(|s| s.last_error).unwrap_or_default();
            return Err(RenewError::BackingOff { until: retry_at.unwrap_or_default(), last_error });
        }
        self.renew_locked(owner, trigger).await
    }

    /// Whether an event must wait for the backoff after a failure (`retry_at`, unix seconds);
    /// logs the skipped event at debug level.
    fn backing_off(retry_at: Option<i64>, user: &str, trigger: Trigger) -> bool {
        let now = unix_now();
        match retry_at {
            Some(at) if at > now => {
                tracing::debug!(user = %user, trigger = %trigger.as_str(), outcome = %"backing off", retry_in_s = at - now, "the last renewal failed; not retrying yet");
                true
            }
            _ => false,
        }
    }

    /// `Some(age)` if a success at `last` is within `event_min_interval` of now.
    fn fresh(&self, last: Option<i64>) -> Option<i64> {
        let interval = self.cfg.event_min_interval.as_secs_f64();
        let age = unix_now() - last?;
        (interval > 0.0 && (age as f64) < interval).then_some(age)
    }

    /// Puts `owner` on the timer (their server is running). Schedules from the ccache's
    /// times, or at once if there is no valid ticket.
    pub fn activate(&self, owner: &TicketOwner) {
        self.put_on_timer(owner, |u| u.server = true);
    }

    /// Puts `owner` on the timer for one notebook run, as [`Renewer::activate`] does for a
    /// server; each `hold` is matched by one [`Renewer::release`] when the run ends.
    pub fn hold(&self, owner: &TicketOwner) {
        self.put_on_timer(owner, |u| u.runs += 1);
    }

    fn put_on_timer(&self, owner: &TicketOwner, mark: impl FnOnce(&mut UserState)) {
        if !self.cfg.enabled {
            return;
        }
        let paths = self.paths(owner);
        let now = unix_now();
        let at = match ccache::read(&paths.ccache) {
            Ok(t) if t.end > now => next_renewal(&t, now, &self.policy, jitter()),
            _ => now,
        };
        let mut inner = self.lock();
        let u = inner.users.entry(owner.username.clone()).or_default();
        mark(u);
        u.owner = Some(owner.clone());
        // Keep an earlier renewal already queued (a run joining a running server).
        let at = u.scheduled.map_or(at, |s| s.min(at));
        Self::schedule_locked(&mut inner, &owner.username, Some(at));
        drop(inner);
        self.wake.notify_one();
    }

    /// Takes `owner`'s server off the timer (it stopped). Once none of their runs is going
    /// either, the user leaves the timer and the ccache is removed if
    /// `remove_ccache_on_stop`.
    pub fn deactivate(&self, owner: &TicketOwner) {
        self.take_off_timer(owner, |u| u.server = false);
    }

    /// Ends one [`Renewer::hold`]: as [`Renewer::deactivate`], for a run.
    pub fn release(&self, owner: &TicketOwner) {
        self.take_off_timer(owner, |u| u.runs = u.runs.saturating_sub(1));
    }

    fn take_off_timer(&self, owner: &TicketOwner, unmark: impl FnOnce(&mut UserState)) {
        if !self.cfg.enabled {
            return;
        }
        {
            let mut inner = self.lock();
            if let Some(u) = inner.users.get_mut(&owner.username) {
                unmark(u);
                if u.server || u.runs > 0 {
                    return;
                }
                u.owner = None;
            }
            Self::schedule_locked(&mut inner, &owner.username, None);
        }
        if self.cfg.remove_ccache_on_stop {
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

    /// After a hub restart: reads each owner's recorded state (failure count, last error,
    /// last success) from the store and puts them on the timer, scheduled from their ccache.
    pub async fn restore(&self, owners: &[TicketOwner]) {
        for owner in owners {
            if let Some(store) = &self.store
                && let Ok(Some(rec)) = store.get_ticket(&owner.username).await
            {
                let mut inner = self.lock();
                let st = &mut inner.users.entry(owner.username.clone()).or_default().status;
                st.principal = rec.principal;
                st.ccache = rec.ccache;
                st.last_success = rec.last_success;
                st.last_error = rec.last_error;
                st.consecutive_failures = rec.consecutive_failures.clamp(0, i64::from(u32::MAX)) as u32;
                st.valid_from = rec.valid_from;
                st.valid_until = rec.valid_until;
                st.renew_until = rec.renew_until;
            }
            self.activate(owner);
            let next = self.status(&owner.username).and_then(|s| s.next_renewal);
            tracing::info!(user = %owner.username, next_renewal = ?next, "renewal schedule restored");
        }
    }

    fn schedule_locked(inner: &mut Inner, user: &str, at: Option<i64>) {
        let Some(u) = inner.users.get_mut(user) else { return };
        let old = u.scheduled.take();
        u.scheduled = at;
        u.status.next_renewal = at;
        if let Some(old) = old {
            inner.queue.remove(&(old, user.to_string()));
        }
        if let Some(at) = at {
            inner.queue.insert((at, user.to_string()));
        }
    }

    /// The timer: renews every active user's ticket when due. Runs until `shutdown` resolves.
    pub async fn run_timer(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        if !self.cfg.enabled {
            return;
        }
        tokio::pin!(shutdown);
        loop {
            let now = unix_now();
            let (due, next) = {
                let mut inner = self.lock();
                let mut due = Vec::new();
                while let Some((at, user)) = inner.queue.first().cloned() {
                    if at > now {
                        break;
                    }
                    inner.queue.pop_first();
                    if let Some(u) = inner.users.get_mut(&user) {
                        u.scheduled = None;
                        if let Some(o) = &u.owner {
                            due.push(o.clone());
                        }
                    }
                }
                (due, inner.queue.first().map(|(at, _)| *at))
            };
            for owner in due {
                self.trigger(owner, Trigger::Timer);
            }
            let sleep = match next {
                Some(at) => Duration::from_secs((at - unix_now()).clamp(0, 3600) as u64),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep.max(Duration::from_millis(200))) => {}
            }
        }
    }

    async fn renew_locked(&self, owner: &TicketOwner, trigger: Trigger) -> Result<(), RenewError> {
        self.renew_with(owner, trigger, None).await
    }

    async fn renew_with(
        &self,
        owner: &TicketOwner,
        trigger: Trigger,
        login: Option<LoginWriter>,
    ) -> Result<(), RenewError> {
        let paths = self.paths(owner);
        let started = std::time::Instant::now();
        let from_login = login.is_some() || !self.has_keytab(owner);
        let result = match login {
            Some(write) => self.install(owner, &paths, write).await,
            None => {
                // Fair, hub-wide bound on kinit processes.
                let _permit = self.slots.acquire().await;
                let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(n, Ordering::SeqCst);
                let r = self.run_kinit(owner, &paths).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                r
            }
        };
        let now = unix_now();
        let times = result.as_ref().ok().and_then(|_| ccache::read(&paths.ccache).ok());
        if result.is_ok() {
            let _ = self.renewed.send(owner.username.clone());
        }
        let record = {
            let mut inner = self.lock();
            let u = inner.users.entry(owner.username.clone()).or_default();
            let active = u.owner.is_some();
            let st = &mut u.status;
            st.principal = paths.principal.clone();
            st.ccache = paths.ccache.display().to_string();
            st.kinit_runs += 1;
            st.from_login = from_login;
            let next = match (&result, &times) {
                (Ok(()), Some(t)) => {
                    st.valid_from = Some(t.start);
                    st.valid_until = Some(t.end);
                    st.renew_until = (t.renew_until > 0).then_some(t.renew_until);
                    st.last_success = Some(now);
                    st.last_error = None;
                    st.consecutive_failures = 0;
                    next_renewal(t, now, &self.policy, jitter())
                }
                (Ok(()), None) => {
                    st.last_success = Some(now);
                    st.last_error = Some("kinit succeeded but the new credential cache could not be read".into());
                    st.consecutive_failures += 1;
                    now + retry_delay(st.consecutive_failures, &self.policy, jitter()) as i64
                }
                (Err(e), _) => {
                    st.last_error = Some(e.to_string());
                    st.consecutive_failures += 1;
                    now + retry_delay(st.consecutive_failures, &self.policy, jitter()).ceil() as i64
                }
            };
            let failures = st.consecutive_failures;
            u.retry_at = (failures > 0).then_some(next);
            if failures > 0 {
                self.renewal_failures.fetch_add(1, Ordering::Relaxed);
            }
            match &result {
                Ok(()) => tracing::info!(
                    user = %owner.username, trigger = %trigger.as_str(), outcome = %"renewed",
                    principal = %paths.principal, valid_until = ?times.as_ref().map(|t| t.end),
                    next_renewal = next, ms = started.elapsed().as_millis() as u64, "kinit succeeded"
                ),
                Err(e) => tracing::warn!(
                    user = %owner.username, trigger = %trigger.as_str(), outcome = %"failed",
                    failures, retry_at = next, error = %e, "kinit failed"
                ),
            }
            if active {
                Self::schedule_locked(&mut inner, &owner.username, Some(next));
            }
            inner.users.get(&owner.username).map(|u| u.status.record(&owner.username))
        };
        self.wake.notify_one();
        if let (Some(store), Some(rec)) = (&self.store, record)
            && let Err(e) = store.put_ticket(&rec).await
        {
            tracing::warn!(user = %owner.username, error = %e, "could not record the ticket state");
        }
        result
    }

    /// A fresh temporary path next to the live ccache (in its checked, root-owned directory).
    fn temp_ccache(p: &UserKerberos) -> Result<PathBuf, RenewError> {
        let dir = p.ccache.parent().unwrap_or(Path::new("/"));
        ensure_ccache_dir(dir).map_err(|source| RenewError::Io { path: dir.display().to_string(), source })?;
        let mut suffix = [0u8; 12];
        rand::fill(&mut suffix);
        let file_name = p.ccache.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(dir.join(format!(".{file_name}.{}.tmp", hex::encode(suffix))))
    }

    /// Gives `tmp` to the user (lchown, 0600) and renames it over the live ccache.
    fn publish(owner: &TicketOwner, tmp: &Path, live: &Path) -> Result<(), RenewError> {
        let finish = || -> std::io::Result<()> {
            // Fix owner and mode before the file becomes visible under the live name.
            std::os::unix::fs::lchown(tmp, Some(owner.uid), Some(owner.gid))?;
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(tmp, live)
        };
        finish().map_err(|source| {
            let _ = std::fs::remove_file(tmp);
            RenewError::Io { path: live.display().to_string(), source }
        })
    }

    async fn install(&self, owner: &TicketOwner, p: &UserKerberos, write: LoginWriter) -> Result<(), RenewError> {
        let tmp = Self::temp_ccache(p)?;
        let t = tmp.clone();
        let written = tokio::task::spawn_blocking(move || write(&t)).await;
        match written {
            Ok(Ok(())) => Self::publish(owner, &tmp, &p.ccache),
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&tmp);
                Err(RenewError::Login(e.to_string()))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(RenewError::Login(e.to_string()))
            }
        }
    }

    async fn run_kinit(&self, owner: &TicketOwner, p: &UserKerberos) -> Result<(), RenewError> {
        // No keytab but a ccache from the user's sign-in: renew that ticket (kinit -R).
        let renew_login_ticket = matches!(std::fs::symlink_metadata(&p.keytab), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            && p.ccache.is_file();
        // The keytab is opened once, here, without following links, and checked on the open
        // descriptor; kinit reads that descriptor (`FILE:/proc/self/fd/3`), never the path,
        // which the user could swap between a check and kinit's own open.
        let keytab = if renew_login_ticket { None } else { Some(open_keytab(&p.keytab, owner.uid)?) };
        let tmp = Self::temp_ccache(p)?;
        self.kinit_total.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(&self.cfg.kinit);
        if renew_login_ticket {
            // The same for the login ccache: read through a checked descriptor into the
            // root-owned temporary file that kinit -R then renews.
            copy_ccache(&p.ccache, &tmp, owner.uid)
                .map_err(|source| RenewError::Io { path: p.ccache.display().to_string(), source })?;
            cmd.arg("-R").arg("-c").arg(format!("FILE:{}", tmp.display()));
        } else {
            cmd.arg("-k")
                .arg("-t")
                .arg(format!("FILE:/proc/self/fd/{KEYTAB_FD}"))
                .arg("-c")
                .arg(format!("FILE:{}", tmp.display()))
                .arg(&p.principal);
        }
        if let Some(fd) = &keytab {
            let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
            // SAFETY: dup2 and fcntl are async-signal-safe; `raw` is a descriptor this process
            // holds open until the child has started (`keytab` lives past `output()`).
            unsafe {
                cmd.pre_exec(move || {
                    if raw == KEYTAB_FD {
                        let flags = libc::fcntl(raw, libc::F_GETFD);
                        if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(raw, KEYTAB_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
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
                let _ = std::fs::remove_file(&tmp);
                return Err(RenewError::Kinit {
                    principal: p.principal.clone(),
                    status: format!("could not run {:?}", self.cfg.kinit),
                    stderr: e.to_string(),
                });
            }
            Ok(Ok(out)) => out,
        };
        drop(keytab);
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if renew_login_ticket {
                stderr.push_str(
                    " (no keytab: the ticket from the user's sign-in can no longer be renewed; sign in again, or ask an admin for a keytab)",
                );
            }
            return Err(RenewError::Kinit { principal: p.principal.clone(), status: out.status.to_string(), stderr });
        }
        Self::publish(owner, &tmp, &p.ccache)
    }
}

/// The descriptor number kinit finds the keytab at (`-t FILE:/proc/self/fd/3`).
const KEYTAB_FD: std::os::fd::RawFd = 3;

/// Opens `path` for reading as root without following a link in its last component
/// (`O_NOFOLLOW`) and without blocking on a FIFO or taking a terminal.
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY).open(path)
}

/// Opens the keytab that kinit may read for `uid`, checking what was opened: a regular file
/// (not a link: `O_NOFOLLOW`), owned by the user or root, readable by nobody else. The checks
/// are made on the descriptor (`fstat`), so what was checked is what kinit reads; a link
/// further up the path only leads to a file whose owner is checked the same way.
fn open_keytab(path: &Path, uid: u32) -> Result<std::fs::File, RenewError> {
    let err = |problem: String| RenewError::Keytab { path: path.display().to_string(), problem };
    let f = match open_no_follow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(
                "does not exist; create it with `ktutil` or `kadmin ktadd -norandkey`, owned by the user, mode 0600"
                    .into(),
            ));
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(err("is a symbolic link; the hub does not follow links to keytabs".into()));
        }
        Err(e) => return Err(err(e.to_string())),
    };
    let meta = f.metadata().map_err(|e| err(e.to_string()))?;
    check_owner_and_mode(&meta, uid, path).map_err(|e| err(e.to_string()))?;
    Ok(f)
}

/// The rules for a file root reads on a user's behalf: a regular file owned by `uid` or root
/// with no group or other permission bits. The error names the fix.
fn check_owner_and_mode(meta: &std::fs::Metadata, uid: u32, path: &Path) -> Result<(), UnsafeFile> {
    if !meta.is_file() {
        return Err(UnsafeFile::NotRegular);
    }
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(UnsafeFile::WrongOwner { found: meta.uid(), uid, path: path.to_path_buf() });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(UnsafeFile::TooOpen { mode, path: path.to_path_buf() });
    }
    Ok(())
}

/// Why root will not read a file on a user's behalf; the text completes "<path> ...".
#[derive(Debug, thiserror::Error)]
enum UnsafeFile {
    #[error("is not a regular file")]
    NotRegular,
    #[error("is owned by uid {found}, not by the user (uid {uid}) or root; run `chown {uid} {}`", path.display())]
    WrongOwner { found: u32, uid: u32, path: PathBuf },
    #[error("is readable by group or others (mode {mode:o}); run `chmod 600 {}`", path.display())]
    TooOpen { mode: u32, path: PathBuf },
}

/// Copies the user's login ccache at `live` into the new root-owned file `tmp` (mode 0600,
/// created exclusively), reading it through a descriptor opened without following links and
/// checked to be the user's (or root's) private regular file, at most
/// [`ccache::MAX_CCACHE_BYTES`] bytes.
fn copy_ccache(live: &Path, tmp: &Path, uid: u32) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = open_no_follow(live)?;
    check_owner_and_mode(&f.metadata()?, uid, live).map_err(std::io::Error::other)?;
    let mut bytes = Vec::new();
    f.take(ccache::MAX_CCACHE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > ccache::MAX_CCACHE_BYTES {
        return Err(std::io::Error::other(format!("is larger than {} bytes", ccache::MAX_CCACHE_BYTES)));
    }
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
    std::io::Write::write_all(&mut out, &bytes)
}

/// Creates the ccache directory (and parents) root-owned with mode 0711 if missing, and
/// refuses one that is a symlink, not owned by root, or writable by group or others.
fn ensure_ccache_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(0o711).create(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        }
        Err(e) => Err(e),
        Ok(m) if !m.is_dir() => Err(std::io::Error::other("is not a directory (symlinks are not followed)")),
        Ok(m) if m.uid() != 0 => Err(std::io::Error::other(format!(
            "directory is owned by uid {}, not root; use a root-owned directory with mode 0711",
            m.uid()
        ))),
        Ok(m) if m.mode() & 0o022 != 0 => Err(std::io::Error::other(format!(
            "directory is writable by group or others (mode {:o}); use a root-owned directory with mode 0711 (not /tmp)",
            m.mode() & 0o7777
        ))),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    const HOUR: i64 = 3600;

    fn policy() -> Policy {
        Policy { renew_at: 0.75, min_remaining: 600, retry_min: 10.0, retry_max: 300.0 }
    }

    fn ticket(start: i64, life: i64) -> TicketTimes {
        TicketTimes { principal: "ann@R".into(), start, end: start + life, renew_until: 0 }
    }

    #[test]
    fn renews_at_the_fraction_of_the_lifetime() {
        let t = ticket(1_000_000, 10 * HOUR);
        // No jitter: exactly 75 % of 10 h.
        assert_eq!(next_renewal(&t, 1_000_000, &policy(), 0.0), 1_000_000 + 27_000);
        // Jitter only moves it earlier, by at most 10 % of the life.
        let early = next_renewal(&t, 1_000_000, &policy(), 0.999);
        assert!((1_000_000 + 23_400..1_000_000 + 27_000).contains(&early), "{early}");
        let hadoop = Policy { renew_at: 0.8, ..policy() };
        assert_eq!(next_renewal(&t, 1_000_000, &hadoop, 0.0), 1_000_000 + 28_800);
    }

    #[test]
    fn min_remaining_wins_for_short_tickets_but_never_before_half_life() {
        // 1 h ticket, min_remaining 20 min: 75 % would leave 15 min, so renew at 40 min.
        let p = Policy { min_remaining: 1200, ..policy() };
        assert_eq!(next_renewal(&ticket(0, HOUR), 0, &p, 0.0), 2400);
        // 2 min ticket with the default 10 min margin: the margin cannot make it spin;
        // the renewal lands at half-life.
        assert_eq!(next_renewal(&ticket(0, 120), 0, &policy(), 0.0), 60);
    }

    #[test]
    fn never_schedules_in_the_past() {
        let t = ticket(0, HOUR);
        assert_eq!(next_renewal(&t, 3000, &policy(), 0.0), 3000);
        assert_eq!(next_renewal(&t, 99_999, &policy(), 0.5), 99_999);
    }

    #[test]
    fn jitter_spreads_many_users() {
        let t = ticket(0, 10 * HOUR);
        let mut seen = BTreeSet::new();
        for i in 0..1000 {
            seen.insert(next_renewal(&t, 0, &policy(), f64::from(i) / 1000.0));
        }
        // 1,000 users over a one-hour window: no second holds more than a handful.
        assert!(seen.len() > 900, "only {} distinct seconds", seen.len());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let p = policy();
        assert_eq!(retry_delay(1, &p, 0.5), 10.0);
        assert_eq!(retry_delay(2, &p, 0.5), 20.0);
        assert_eq!(retry_delay(3, &p, 0.5), 40.0);
        assert_eq!(retry_delay(10, &p, 0.5), 300.0);
        assert_eq!(retry_delay(u32::MAX, &p, 0.999), 300.0);
        let lo = retry_delay(1, &p, 0.0);
        let hi = retry_delay(1, &p, 0.999);
        assert!((8.0..=8.0).contains(&lo) && hi > 11.9 && hi < 12.0, "{lo} {hi}");
    }

    #[test]
    fn keytab_rules() {
        let dir = tempfile::tempdir().expect("tmp");
        let kt = dir.path().join("u.keytab");
        let missing = open_keytab(&kt, 1000).expect_err("missing").to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&kt).expect("create");
        open_keytab(&kt, 1000).expect("root-owned 0600 is fine");
        std::fs::set_permissions(&kt, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = open_keytab(&kt, 1000).expect_err("0644 refused").to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&kt, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::chown(&kt, Some(4242), None).expect("chown");
        let e = open_keytab(&kt, 1000).expect_err("foreign owner refused").to_string();
        assert!(e.contains("uid 4242"), "{e}");
        let link = dir.path().join("link.keytab");
        std::os::unix::fs::symlink(&kt, &link).expect("symlink");
        assert!(open_keytab(&link, 4242).expect_err("symlink refused").to_string().contains("symbolic link"));
    }

    #[test]
    fn ccache_dir_created_0711_and_unsafe_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path().join("a/ccache");
        ensure_ccache_dir(&d).expect("create");
        assert_eq!(std::fs::metadata(&d).expect("meta").mode() & 0o777, 0o711);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(ensure_ccache_dir(&d).is_err());
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        std::os::unix::fs::chown(&d, Some(4242), None).expect("chown");
        assert!(ensure_ccache_dir(&d).expect_err("not root-owned").to_string().contains("uid 4242"));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).expect("symlink");
        assert!(ensure_ccache_dir(&link).is_err());
    }

    #[test]
    fn a_run_keeps_the_ticket_on_the_timer_after_the_server_stops() {
        let dir = tempfile::tempdir().expect("tmp");
        let toml = format!(
            "[spawner]\ncmd = [\"/bin/true\"]\n[kerberos]\nenabled = true\nrealm = \"R\"\nccache = \"{}/{{username}}.cc\"\nremove_ccache_on_stop = true\n",
            dir.path().display()
        );
        let cfg = hub_config::Config::parse(Path::new("hub.toml"), &toml).expect("config").kerberos;
        let r = Renewer::new(cfg, None);
        let ann = TicketOwner { username: "ann".into(), uid: 4242, gid: 4242 };
        let cc = dir.path().join("ann.cc");
        let on_timer =
            |r: &Renewer| r.lock().users.get("ann").is_some_and(|u| u.owner.is_some() && u.scheduled.is_some());
        // Server, then a run; the server stops first: the run still needs the ticket.
        std::fs::write(&cc, "ticket").expect("write");
        r.activate(&ann);
        r.hold(&ann);
        r.deactivate(&ann);
        assert!(on_timer(&r) && cc.exists());
        r.release(&ann);
        assert!(!on_timer(&r) && !cc.exists(), "nothing of ann's runs: off the timer, ccache removed");
        // Two runs and no server: on the timer until the last one ends.
        std::fs::write(&cc, "ticket").expect("write");
        r.hold(&ann);
        r.hold(&ann);
        r.release(&ann);
        assert!(on_timer(&r) && cc.exists());
        r.release(&ann);
        assert!(!on_timer(&r) && !cc.exists());
    }
}
