//! The scheduler: turns due occurrences into runs, starts queued runs within the limits,
//! watches them to the end, retries, prunes, and re-adopts runs after a hub restart.
//!
//! Every run is a row in the store before anything starts ([`Store::insert_run`] refuses a
//! doubled occurrence and a second queued run of a job, so the guarantee holds across
//! restarts and concurrent requests). Runs are started from one task only (the loop in
//! [`Jobs::run`]), so the concurrency limits are checked and acted on without races. A run is
//! a separate process (the runner, see [`hub_servers::runs`]): a hub restart, `kill -9`
//! included, neither stops nor forgets it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hub_config::Config;
use hub_core::{LinuxUser, Recover, TicketOwner, unix_now};
use hub_runner::spec::{Event, RunInfo, RunSpec};
use hub_servers::renewer::Renewer;
use hub_servers::runs::{RunLauncher, RunStartError, read_events};
use hub_servers::spawner::{ServerProcess, Spawner};
use hub_store::{JobRecord, RunRecord, Store, StoreError};
use tokio::sync::Notify;

use crate::definition::{CatchUp, Checked, DEFAULT_OUTPUT, FieldError, JobDefinition, Overlap, expand_output};

/// A request about jobs that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A field is wrong (400).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The request conflicts with a run (409): one is queued, or one is going and the job
    /// skips overlapping runs.
    #[error("{0}")]
    Conflict(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Takes `paused` out of a job's fields: `Some(bool)`, `None` when absent.
fn take_paused(fields: &mut serde_json::Map<String, serde_json::Value>) -> Result<Option<bool>, FieldError> {
    match fields.remove("paused") {
        None => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(FieldError { field: "paused".into(), message: "must be true or false".into() }),
    }
}

/// The run states.
pub mod state {
    /// Waiting for a free slot.
    pub const QUEUED: &str = "queued";
    /// The runner is going.
    pub const RUNNING: &str = "running";
    /// Every cell succeeded.
    pub const SUCCEEDED: &str = "succeeded";
    /// A cell failed, the kernel died, or the run could not start.
    pub const FAILED: &str = "failed";
    /// Past its time limit.
    pub const TIMED_OUT: &str = "timed_out";
    /// Cancelled by its owner or an admin.
    pub const CANCELLED: &str = "cancelled";
    /// Not run: the previous run was still going (overlap `skip`).
    pub const SKIPPED: &str = "skipped";
}

/// Prometheus metrics of the jobs.
pub struct JobMetrics {
    /// `hub_job_runs_total{outcome}`: runs that ended, by state.
    pub runs: prometheus::IntCounterVec,
    /// `hub_job_run_duration_seconds{outcome}`: how long runs took.
    pub duration: prometheus::HistogramVec,
    /// `hub_job_runs_queued`: runs waiting for a slot.
    pub queued: prometheus::IntGauge,
    /// `hub_job_runs_running`: runs going.
    pub running: prometheus::IntGauge,
    /// `hub_job_missed_occurrences_total`: scheduled occurrences that did not run because the
    /// hub was down (the one a `latest` catch-up runs is not counted).
    pub missed: prometheus::IntCounter,
}

impl JobMetrics {
    fn new() -> Self {
        let runs = prometheus::IntCounterVec::new(
            prometheus::Opts::new("hub_job_runs_total", "Notebook job runs that ended, by outcome"),
            &["outcome"],
        )
        .expect("valid counter");
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("hub_job_run_duration_seconds", "Wall time of notebook job runs")
                .buckets(vec![1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0, 12.0 * 3600.0]),
            &["outcome"],
        )
        .expect("valid histogram");
        Self {
            runs,
            duration,
            queued: prometheus::IntGauge::new("hub_job_runs_queued", "Job runs waiting for a slot").expect("gauge"),
            running: prometheus::IntGauge::new("hub_job_runs_running", "Job runs going").expect("gauge"),
            missed: prometheus::IntCounter::new(
                "hub_job_missed_occurrences_total",
                "Scheduled occurrences missed while the hub was down and not caught up",
            )
            .expect("counter"),
        }
    }

    /// Every metric, for registering.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.runs.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.queued.clone()),
            Box::new(self.running.clone()),
            Box::new(self.missed.clone()),
        ]
    }
}

/// The jobs of every user; one per hub process.
pub struct Jobs {
    config: Config,
    store: Arc<dyn Store>,
    launcher: RunLauncher,
    spawner: Arc<dyn Spawner>,
    /// Runs this hub process watches: run id → runner pid.
    watched: Mutex<HashMap<i64, u32>>,
    /// Running runs whose cancel was asked for (a runner stopped before it could say so itself
    /// is then recorded as cancelled, not failed).
    cancelling: Mutex<std::collections::HashSet<i64>>,
    wake: Notify,
    /// The metrics.
    pub metrics: JobMetrics,
}

impl Jobs {
    /// The scheduler for `config`, starting runners (`exe runner`) with `spawner`.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        renewer: Arc<Renewer>,
        spawner: Arc<dyn Spawner>,
        exe: PathBuf,
    ) -> Arc<Self> {
        let launcher = RunLauncher::new(config.clone(), renewer, spawner.clone(), exe);
        Arc::new(Self {
            config,
            store,
            launcher,
            spawner,
            watched: Mutex::new(HashMap::new()),
            cancelling: Mutex::new(std::collections::HashSet::new()),
            wake: Notify::new(),
            metrics: JobMetrics::new(),
        })
    }

    /// Checks `def` for a user whose home is `home`, with the `[jobs]` defaults.
    pub fn check(&self, def: &JobDefinition, home: &str) -> Result<Checked, FieldError> {
        def.check(home, self.config.jobs.default_timeout, self.config.jobs.default_keep_runs)
    }

    /// Computes `job.next_due` from its (checked) definition and pause flag, as of now.
    pub fn set_next_due(job: &mut JobRecord, checked: &Checked) {
        job.next_due = match (&checked.schedule, job.paused) {
            (Some(s), false) => s.next_after(unix_now()),
            _ => None,
        };
    }

    /// The `hub` binary runs start (also used to read a user's files as that user).
    pub fn runner_exe(&self) -> &Path {
        self.launcher.exe()
    }

    /// Creates job `name` of `user` from a definition's JSON `fields` (plus `paused`), as the
    /// REST API and the Jobs page take them. Errors: a wrong field (naming it), a name taken
    /// (conflict).
    pub async fn create(
        &self,
        user: &LinuxUser,
        name: &str,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<JobRecord, JobError> {
        crate::definition::check_name(name)?;
        let mut fields = fields;
        let paused = take_paused(&mut fields)?.unwrap_or(false);
        let def = JobDefinition::from_json(serde_json::Value::Object(fields))?;
        let checked = self.check(&def, &user.home.display().to_string())?;
        let now = unix_now();
        let mut job = JobRecord {
            username: user.name.clone(),
            name: name.to_string(),
            definition: serde_json::to_string(&def).unwrap_or_default(),
            paused,
            created: now,
            updated: now,
            ..Default::default()
        };
        Self::set_next_due(&mut job, &checked);
        if !self.store.create_job(&job).await? {
            return Err(JobError::Conflict(format!("{} already has a job named {name}", user.name)));
        }
        self.wake.notify_one();
        let created = self.store.get_job(&user.name, name).await?;
        created.ok_or_else(|| JobError::Conflict(format!("job {name} was deleted while it was being created")))
    }

    /// Changes `job`: each field in `changes` replaces the definition's (`null` removes it, so
    /// the default applies); `paused` pauses or resumes; `name` cannot change. The schedule's
    /// next run is recomputed.
    pub async fn update(
        &self,
        user: &LinuxUser,
        mut job: JobRecord,
        mut changes: serde_json::Map<String, serde_json::Value>,
    ) -> Result<JobRecord, JobError> {
        if changes.remove("name").is_some_and(|n| n.as_str() != Some(job.name.as_str())) {
            return Err(FieldError {
                field: "name".into(),
                message: "a job cannot be renamed; create a new one".into(),
            }
            .into());
        }
        if let Some(p) = take_paused(&mut changes)? {
            job.paused = p;
        }
        let mut def: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&job.definition).unwrap_or_default();
        for (k, v) in changes {
            if v.is_null() {
                def.remove(&k);
            } else {
                def.insert(k, v);
            }
        }
        let def = JobDefinition::from_json(serde_json::Value::Object(def))?;
        let checked = self.check(&def, &user.home.display().to_string())?;
        job.definition = serde_json::to_string(&def).unwrap_or_default();
        job.updated = unix_now();
        Self::set_next_due(&mut job, &checked);
        if !self.store.update_job(&job).await? {
            return Err(JobError::Conflict(format!("job {} was deleted meanwhile", job.name)));
        }
        self.wake.notify_one();
        Ok(job)
    }

    /// Wakes the loop (a job changed, a run was queued).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Re-adopts runs an earlier hub process started, then schedules and dispatches until
    /// `shutdown` resolves. Runs keep going after it returns.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        if !self.config.jobs.enabled {
            return;
        }
        self.adopt().await;
        tokio::pin!(shutdown);
        loop {
            let next = match self.schedule_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "the job scheduler cannot read the store; retrying in 5 s");
                    Some(unix_now() + 5)
                }
            };
            if let Err(e) = self.dispatch().await {
                tracing::error!(error = %e, "the job scheduler cannot start queued runs; retrying in 5 s");
            }
            // Wake at the next occurrence's second (due runs start within a second), at a poke,
            // or every 30 s to pick up changes made by another path.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            let wait_ms = next.map_or(30_000, |n| (n * 1000 - now_ms).clamp(0, 30_000));
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }

    /// Records a run for every job whose occurrence has come; returns the earliest next one.
    async fn schedule_due(&self) -> Result<Option<i64>, StoreError> {
        let now = unix_now();
        let mut earliest: Option<i64> = None;
        for mut job in self.store.list_jobs(None).await? {
            let Some(due) = job.next_due else { continue };
            if job.paused {
                continue;
            }
            let checked = match self.checked(&job) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(user = %job.username, job = %job.name, error = %e, "a stored job no longer checks; it is not scheduled");
                    continue;
                }
            };
            let Some(schedule) = &checked.schedule else { continue };
            if due > now {
                earliest = Some(earliest.map_or(due, |e: i64| e.min(due)));
                continue;
            }
            let (latest, count) = schedule.due_between(due - 1, now);
            let late = now - due > self.config.jobs.missed_after.as_secs() as i64;
            let (run, reason, missed) = match (late, checked.definition.catch_up) {
                (false, _) => (latest, "schedule", count.saturating_sub(1)),
                (true, CatchUp::Latest) => (latest, "catch-up", count.saturating_sub(1)),
                (true, CatchUp::None) => (None, "", count),
            };
            if missed > 0 {
                self.metrics.missed.inc_by(missed);
                tracing::warn!(user = %job.username, job = %job.name, missed, policy = ?checked.definition.catch_up, "scheduled occurrences were missed (the hub was down)");
            }
            if let Some(occurrence) = run {
                self.enqueue(&job, &checked, Some(occurrence), reason, 1).await?;
            }
            job.last_occurrence = latest.or(job.last_occurrence);
            job.next_due = schedule.next_after(now);
            self.store.update_job(&job).await?;
            if let Some(n) = job.next_due {
                earliest = Some(earliest.map_or(n, |e| e.min(n)));
            }
        }
        Ok(earliest)
    }

    fn checked(&self, job: &JobRecord) -> Result<Checked, FieldError> {
        let v: serde_json::Value = serde_json::from_str(&job.definition)
            .map_err(|e| FieldError { field: "definition".into(), message: e.to_string() })?;
        let def = JobDefinition::from_json(v)?;
        // The home is checked again by the runner; here only the definition's own rules.
        self.check(&def, "/")
    }

    /// Records a run of `job` (queued, or skipped under overlap `skip` while one is going).
    /// `Ok(None)` when the store refused a double.
    async fn enqueue(
        &self,
        job: &JobRecord,
        checked: &Checked,
        occurrence: Option<i64>,
        reason: &str,
        attempt: i64,
    ) -> Result<Option<RunRecord>, StoreError> {
        let active = self.store.active_runs().await?;
        let going = active.iter().find(|r| r.job_id == job.id && r.state == state::RUNNING);
        let mut run = RunRecord {
            job_id: job.id,
            username: job.username.clone(),
            occurrence,
            reason: reason.into(),
            attempt,
            state: state::QUEUED.into(),
            created: unix_now(),
            ..Default::default()
        };
        if let (Some(g), Overlap::Skip) = (going, checked.definition.overlap) {
            run.state = state::SKIPPED.into();
            run.ended = Some(run.created);
            run.message = Some(format!("skipped: run {} was still going (overlap = skip)", g.id));
        }
        let Some(id) = self.store.insert_run(&run).await? else {
            tracing::info!(user = %job.username, job = %job.name, ?occurrence, reason, "not recorded: that run exists already, or one is queued");
            return Ok(None);
        };
        run.id = id;
        tracing::info!(user = %job.username, job = %job.name, run_id = id, reason, state = %run.state, ?occurrence, "run recorded");
        if run.state == state::SKIPPED {
            self.metrics.runs.with_label_values(&[state::SKIPPED]).inc();
        }
        self.wake.notify_one();
        Ok(Some(run))
    }

    /// "Run now": a manual run of `job`, queued at once. Refused (409) while a run is queued,
    /// or while one is going and the job skips overlapping runs.
    pub async fn run_now(&self, job: &JobRecord) -> Result<RunRecord, JobError> {
        let checked = self.checked(job)?;
        let active = self.store.active_runs().await?;
        if let Some(q) = active.iter().find(|r| r.job_id == job.id && r.state == state::QUEUED) {
            return Err(JobError::Conflict(format!("run {} of job {} is already queued", q.id, job.name)));
        }
        if checked.definition.overlap == Overlap::Skip
            && let Some(g) = active.iter().find(|r| r.job_id == job.id && r.state == state::RUNNING)
        {
            return Err(JobError::Conflict(format!(
                "run {} of job {} is still going; wait for it, cancel it, or set overlap to \"queue\"",
                g.id, job.name
            )));
        }
        match self.enqueue(job, &checked, None, "manual", 1).await? {
            Some(r) => Ok(r),
            None => Err(JobError::Conflict(format!("a run of job {} is already queued", job.name))),
        }
    }

    /// Cancels a run: a queued one at once; a running one by SIGTERM to its runner, which
    /// interrupts the kernel and records the output (the state becomes `cancelled` when it
    /// ends). Finished runs are returned unchanged.
    pub async fn cancel(&self, mut run: RunRecord) -> Result<RunRecord, JobError> {
        match run.state.as_str() {
            state::QUEUED => {
                run.state = state::CANCELLED.into();
                run.ended = Some(unix_now());
                run.message = Some("cancelled before it started".into());
                self.store.update_run(&run).await?;
                self.metrics.runs.with_label_values(&[state::CANCELLED]).inc();
            }
            state::RUNNING => {
                let pid = self.watched.lock().recover().get(&run.id).copied();
                if let Some(pid) = pid {
                    self.cancelling.lock().recover().insert(run.id);
                    tracing::info!(user = %run.username, run_id = run.id, pid, "cancelling a run");
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            _ => {}
        }
        Ok(run)
    }

    /// Deletes a job: cancels its runs, then removes it and its run records.
    pub async fn delete(&self, job: &JobRecord) -> Result<bool, JobError> {
        for r in self.store.active_runs().await?.into_iter().filter(|r| r.job_id == job.id) {
            self.cancel(r).await?;
        }
        Ok(self.store.delete_job(&job.username, &job.name).await?)
    }

    /// Starts queued runs, oldest first, while `[jobs] max_concurrent_runs` and
    /// `max_runs_per_user` allow.
    async fn dispatch(self: &Arc<Self>) -> Result<(), StoreError> {
        let active = self.store.active_runs().await?;
        let mut total = active.iter().filter(|r| r.state == state::RUNNING).count();
        let mut per_user: HashMap<String, usize> = HashMap::new();
        for r in active.iter().filter(|r| r.state == state::RUNNING) {
            *per_user.entry(r.username.clone()).or_default() += 1;
        }
        let mut waiting = 0;
        for run in active.into_iter().filter(|r| r.state == state::QUEUED) {
            let mine = per_user.get(&run.username).copied().unwrap_or(0);
            if total >= self.config.jobs.max_concurrent_runs || mine >= self.config.jobs.max_runs_per_user {
                waiting += 1;
                continue;
            }
            if self.start(run.clone()).await? {
                total += 1;
                *per_user.entry(run.username.clone()).or_default() += 1;
            }
        }
        self.metrics.queued.set(waiting);
        self.metrics.running.set(total as i64);
        Ok(())
    }

    /// Starts one queued run; `Ok(false)` when it failed to start (it is recorded as failed).
    async fn start(self: &Arc<Self>, mut run: RunRecord) -> Result<bool, StoreError> {
        let Some(job) = self.store.get_job_by_id(run.job_id).await? else { return Ok(false) };
        let now = unix_now();
        let fail = |run: &mut RunRecord, message: String| {
            run.state = state::FAILED.into();
            run.started = Some(now);
            run.ended = Some(now);
            run.message = Some(message);
        };
        let prepared = async {
            let checked = self.checked(&job).map_err(|e| format!("the job's definition no longer checks: {e}"))?;
            let user = LinuxUser::lookup_async(&job.username).await.map_err(|e| e.to_string())?;
            let def = &checked.definition;
            let template = def.output.as_deref().unwrap_or(DEFAULT_OUTPUT);
            let stem = Path::new(&def.notebook).file_stem().and_then(|s| s.to_str()).unwrap_or("notebook").to_string();
            let tz =
                checked.schedule.as_ref().map(|s| s.tz).or_else(|| def.timezone.parse().ok()).unwrap_or(chrono_tz::UTC);
            let output =
                expand_output(template, &job.name, run.id, now, tz, &user.name, &stem).map_err(|e| e.to_string())?;
            Ok::<_, String>((checked, user, output))
        };
        let (checked, user, output) = match prepared.await {
            Ok(p) => p,
            Err(message) => {
                fail(&mut run, message);
                self.store.update_run(&run).await?;
                self.metrics.runs.with_label_values(&[state::FAILED]).inc();
                return Ok(false);
            }
        };
        let def = &checked.definition;
        let spec = RunSpec {
            notebook: def.notebook.clone().into(),
            output: output.clone().into(),
            parameters: def.parameters.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            kernel: def.kernel.clone(),
            timeout_s: Some(checked.timeout.as_secs_f64()),
            cell_timeout_s: checked.cell_timeout.map(|d| d.as_secs_f64()),
            startup_timeout_s: self.config.spawner.start_timeout.as_secs_f64(),
            jupyter_prefix: None,
            info: RunInfo {
                job: Some(job.name.clone()),
                run_id: Some(run.id),
                reason: run.reason.clone(),
                principal: None,
            },
        };
        let dir = self.config.hub.data_dir.join("runs");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            fail(&mut run, format!("cannot create {}: {e}", dir.display()));
            self.store.update_run(&run).await?;
            return Ok(false);
        }
        let log_path = dir.join(format!("{}.log", run.id));
        let unit = format!("{}.run-{}", user.name, run.id);
        run.log_path = Some(log_path.display().to_string());
        run.output_path = Some(
            if Path::new(&output).is_absolute() { PathBuf::from(&output) } else { user.home.join(&output) }
                .display()
                .to_string(),
        );
        match self.launcher.start(&user, &spec, &unit, &log_path).await {
            Err(e) => {
                let message = match &e {
                    RunStartError::Ticket(m) => m.clone(),
                    RunStartError::Spawn(s) => format!("the runner could not start: {s}"),
                };
                tracing::warn!(user = %user.name, job = %job.name, run_id = run.id, error = %message, "run not started");
                fail(&mut run, message);
                self.store.update_run(&run).await?;
                self.metrics.runs.with_label_values(&[state::FAILED]).inc();
                Ok(false)
            }
            Ok(started) => {
                run.state = state::RUNNING.into();
                run.started = Some(now);
                run.pid = Some(i64::from(started.process.pid()));
                run.pid_start = started.process.start_ticks();
                run.uid = Some(i64::from(user.uid));
                run.ticket_valid_until = started.ticket.map(|t| t.valid_until);
                run.ticket_renew_until = started.ticket.map(|t| t.renew_until);
                self.store.update_run(&run).await?;
                tracing::info!(user = %user.name, job = %job.name, run_id = run.id, pid = started.process.pid(), reason = %run.reason, "run started");
                self.watch(run, user, started.process);
                Ok(true)
            }
        }
    }

    /// Follows a run's process to its end, then records the outcome.
    fn watch(self: &Arc<Self>, run: RunRecord, user: LinuxUser, process: Box<dyn ServerProcess>) {
        self.watched.lock().recover().insert(run.id, process.pid());
        let this = self.clone();
        tokio::spawn(async move {
            let mut exited = process.exited();
            let how = exited.wait_for(Option::is_some).await.map(|h| h.clone().unwrap_or_default()).unwrap_or_default();
            // Leftovers (its cgroup, stray processes) go.
            let _ = process.stop(this.config.spawner.term_timeout).await;
            this.launcher.finish(&user);
            this.watched.lock().recover().remove(&run.id);
            if let Err(e) = this.conclude(run, &how).await {
                tracing::error!(error = %e, "cannot record a run's end");
            }
            this.wake.notify_one();
        });
    }

    /// Records how a run ended, from the `finished` event in its log; retries and prunes.
    async fn conclude(&self, mut run: RunRecord, how: &str) -> Result<(), StoreError> {
        let log = run.log_path.clone().map(PathBuf::from).unwrap_or_default();
        let finished = tokio::task::spawn_blocking(move || read_events(&log, 0).0)
            .await
            .unwrap_or_default()
            .into_iter()
            .rev()
            .find(|e| matches!(e, Event::Finished { .. }));
        match finished {
            Some(Event::Finished { outcome, message, failed_cell, ename, evalue, traceback, .. }) => {
                run.state = outcome.as_str().into();
                run.message = (!message.is_empty()).then_some(message);
                run.failed_cell = failed_cell.map(|c| c as i64);
                if ename.is_some() || !traceback.is_empty() {
                    run.error =
                        Some(serde_json::json!({"ename": ename, "evalue": evalue, "traceback": traceback}).to_string());
                }
            }
            // SIGTERM reached the runner before it could handle it (just after its start).
            _ if self.cancelling.lock().recover().contains(&run.id) => {
                run.state = state::CANCELLED.into();
                run.message = Some(format!("cancelled as it was starting (the runner {how})"));
            }
            _ => {
                run.state = state::FAILED.into();
                run.message = Some(format!("the runner ended without a result ({how}); see the run's log"));
            }
        }
        self.cancelling.lock().recover().remove(&run.id);
        run.ended = Some(unix_now());
        run.pid = None;
        self.store.update_run(&run).await?;
        let seconds = (run.ended.unwrap_or_default() - run.started.unwrap_or_default()).max(0) as f64;
        self.metrics.runs.with_label_values(&[run.state.as_str()]).inc();
        self.metrics.duration.with_label_values(&[run.state.as_str()]).observe(seconds);
        tracing::info!(user = %run.username, run_id = run.id, state = %run.state, seconds, "run ended");
        let Some(job) = self.store.get_job_by_id(run.job_id).await? else { return Ok(()) };
        let Ok(checked) = self.checked(&job) else { return Ok(()) };
        if matches!(run.state.as_str(), state::FAILED | state::TIMED_OUT)
            && run.attempt <= i64::from(checked.definition.retries)
        {
            self.enqueue(&job, &checked, run.occurrence, "retry", run.attempt + 1).await?;
        }
        for old in self.store.prune_runs(job.id, i64::from(checked.keep_runs)).await? {
            if let Some(log) = old.log_path {
                let _ = std::fs::remove_file(log);
            }
        }
        Ok(())
    }

    /// After a restart: re-adopts each run recorded as running whose runner is still the same
    /// process (pid, start time and UID checked); records the outcome of those that ended
    /// while the hub was down.
    async fn adopt(self: &Arc<Self>) {
        let runs = match self.store.active_runs().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the runs to re-adopt");
                return;
            }
        };
        for run in runs.into_iter().filter(|r| r.state == state::RUNNING) {
            let unit = format!("{}.run-{}", run.username, run.id);
            let process = match (run.pid, run.uid, run.pid_start) {
                (Some(pid), Some(uid), Some(ticks)) => self.spawner.adopt(&unit, pid as u32, uid as u32, ticks).await,
                _ => None,
            };
            match (process, LinuxUser::lookup_async(&run.username).await) {
                (Some(p), Ok(user)) => {
                    tracing::info!(user = %run.username, run_id = run.id, pid = p.pid(), "re-adopted a run");
                    self.launcher.renewer().hold(&TicketOwner::from(&user));
                    self.watch(run, user, p);
                }
                _ => {
                    tracing::info!(user = %run.username, run_id = run.id, "a run ended while the hub was down");
                    if let Err(e) = self.conclude(run, "it ended while the hub was down").await {
                        tracing::error!(error = %e, "cannot record a run's end");
                    }
                }
            }
        }
    }
}
