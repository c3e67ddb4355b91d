//! The Jobs page: `/hub/jobs` lists the signed-in user's jobs and has a form for a new one;
//! `/hub/jobs/{job}` shows one job (its settings, an edit form, its runs with their state,
//! progress through the cells, the failing cell, the output to open in JupyterLab or
//! download, the log) with buttons to run now, pause or resume, cancel a run and delete. Forms
//! post with the session's XSRF token; the work is [`hub_jobs::Jobs`]', as for the REST API.

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::guard::{XsrfForm, form_allowed};
use crate::html::{error_page, esc, page_with_user, xsrf_field};
use crate::state::{AppState, CurrentUser};
use hub_auth::session::Session;
use hub_core::{LinuxUser, unix_now};
use hub_jobs::JobError;
use hub_jobs::definition::{DEFAULT_OUTPUT, JobDefinition, Schedule};
use hub_jobs::scheduler::state;
use hub_runner::spec::Event;
use hub_store::{JobRecord, RunRecord};

/// The Jobs page's routes.
pub fn pages() -> Router<AppState> {
    Router::new()
        .route("/hub/jobs", get(list).post(create))
        .route("/hub/jobs/{job}", get(detail).post(edit))
        .route("/hub/jobs/{job}/run", post(run_now))
        .route("/hub/jobs/{job}/pause", post(pause))
        .route("/hub/jobs/{job}/resume", post(resume))
        .route("/hub/jobs/{job}/delete", post(delete))
        .route("/hub/jobs/{job}/runs/{id}/cancel", post(cancel))
        .route("/hub/jobs/{job}/runs/{id}/log", get(log))
        .route("/hub/jobs/{job}/runs/{id}/output", get(output))
}

/// The job form's fields, as posted (empty means "the default").
#[derive(Deserialize, Default)]
struct JobForm {
    #[serde(default)]
    _xsrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    notebook: String,
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    parameters: String,
    #[serde(default)]
    kernel: String,
    #[serde(default)]
    timeout: String,
    #[serde(default)]
    cell_timeout: String,
    #[serde(default)]
    retries: String,
    #[serde(default)]
    overlap: String,
    #[serde(default)]
    catch_up: String,
    #[serde(default)]
    output: String,
    #[serde(default)]
    keep_runs: String,
}

impl JobForm {
    /// The definition's JSON fields; an empty field is `null` (the default).
    fn fields(&self) -> Result<Map<String, Value>, String> {
        let text = |s: &str| if s.trim().is_empty() { Value::Null } else { json!(s.trim()) };
        let number = |name: &str, s: &str| -> Result<Value, String> {
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            s.trim().parse::<u32>().map(|n| json!(n)).map_err(|_| format!("{name}: {s:?} is not a whole number"))
        };
        let mut parameters = Map::new();
        for line in self.parameters.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = hub_runner::params::parse_cli(line).map_err(|e| format!("parameters: {e}"))?;
            parameters.insert(k, v);
        }
        let mut m = Map::new();
        m.insert("notebook".into(), json!(self.notebook.trim()));
        m.insert("schedule".into(), text(&self.schedule));
        m.insert("timezone".into(), text(&self.timezone));
        m.insert("parameters".into(), Value::Object(parameters));
        m.insert("kernel".into(), text(&self.kernel));
        m.insert("timeout".into(), text(&self.timeout));
        m.insert("cell_timeout".into(), text(&self.cell_timeout));
        m.insert("retries".into(), number("retries", &self.retries)?);
        m.insert("overlap".into(), text(&self.overlap));
        m.insert("catch_up".into(), text(&self.catch_up));
        m.insert("output".into(), text(&self.output));
        m.insert("keep_runs".into(), number("keep_runs", &self.keep_runs)?);
        Ok(m)
    }
}

/// For a new job, nulls are simply left out.
fn without_nulls(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter().filter(|(_, v)| !v.is_null()).collect()
}

fn disabled(app: &AppState) -> Option<Response> {
    (!app.config.jobs.enabled).then(|| {
        error_page(
            StatusCode::NOT_FOUND,
            "Jobs are off",
            "This hub does not run notebook jobs ([jobs] enabled = false).",
        )
    })
}

async fn account(s: &Session) -> Result<LinuxUser, Response> {
    LinuxUser::lookup_async(&s.username)
        .await
        .map_err(|e| error_page(StatusCode::BAD_REQUEST, "No Linux account", &format!("No job can run as you: {e}")))
}

fn job_error(title: &str, e: JobError) -> Response {
    match e {
        JobError::Field(f) => error_page(StatusCode::BAD_REQUEST, title, &f.to_string()),
        JobError::Conflict(m) => error_page(StatusCode::CONFLICT, title, &m),
        JobError::Store(e) => {
            tracing::error!(error = %e, "jobs page: store error");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                title,
                "The hub could not complete the request; see the hub's log.",
            )
        }
    }
}

async fn own_job(app: &AppState, s: &Session, job: &str) -> Result<JobRecord, Response> {
    match app.store.get_job(&s.username, job).await {
        Ok(Some(j)) => Ok(j),
        Ok(None) => Err(error_page(StatusCode::NOT_FOUND, "No such job", &format!("You have no job named {job}."))),
        Err(e) => Err(job_error("Cannot read the job", e.into())),
    }
}

async fn own_run(app: &AppState, job: &JobRecord, id: &str) -> Result<RunRecord, Response> {
    let none = || error_page(StatusCode::NOT_FOUND, "No such run", &format!("Job {} has no run {id}.", job.name));
    let id: i64 = id.parse().map_err(|_| none())?;
    match app.store.get_run(id).await {
        Ok(Some(r)) if r.job_id == job.id => Ok(r),
        Ok(_) => Err(none()),
        Err(e) => Err(job_error("Cannot read the run", e.into())),
    }
}

fn when(t: Option<i64>) -> String {
    t.filter(|t| *t > 0)
        .map(|t| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64))
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
}

fn badge(st: &str) -> String {
    format!(r#"<span class="state state-{0}" data-state="{0}">{1}</span>"#, esc(st), esc(&st.replace('_', " ")))
}

fn definition(job: &JobRecord) -> Option<JobDefinition> {
    serde_json::from_str::<Value>(&job.definition).ok().and_then(|v| JobDefinition::from_json(v).ok())
}

/// The fields of the job form, filled from `d` (a new job: defaults).
fn form_fields(app: &AppState, d: Option<&JobDefinition>, name: Option<&str>) -> String {
    let v = |f: fn(&JobDefinition) -> Option<String>| d.and_then(f).map(|s| esc(&s).into_owned()).unwrap_or_default();
    let params = d
        .map(|d| {
            d.parameters
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let sel = |current: &str, opts: &[(&str, &str)]| {
        opts.iter()
            .map(|(val, label)| {
                format!(r#"<option value="{val}"{}>{label}</option>"#, if *val == current { " selected" } else { "" })
            })
            .collect::<String>()
    };
    let overlap = d.map(|d| format!("{:?}", d.overlap).to_lowercase()).unwrap_or_else(|| "skip".into());
    let catch_up = d.map(|d| format!("{:?}", d.catch_up).to_lowercase()).unwrap_or_else(|| "latest".into());
    let name_field = match name {
        None => r#"<label>Name <input name="name" required pattern="[A-Za-z0-9_][A-Za-z0-9._\-]{0,63}" placeholder="daily-report"></label>"#.to_string(),
        Some(_) => String::new(),
    };
    format!(
        r#"{name_field}
<label>Notebook <input name="notebook" required value="{nb}" placeholder="reports/daily.ipynb"> <small>in your home</small></label>
<label>Schedule <input name="schedule" value="{sched}" placeholder="0 6 * * *"> <small>cron: minute hour day month weekday; empty for on demand only</small></label>
<label>Time zone <input name="timezone" value="{tz}" placeholder="UTC"></label>
<label>Parameters <textarea name="parameters" rows="3" placeholder="date=2026-12-01&#10;limit=100">{params}</textarea> <small>one name=value per line</small></label>
<label>Kernel <input name="kernel" value="{kernel}" placeholder="the notebook's own"></label>
<label>Time limit <input name="timeout" value="{timeout}" placeholder="{default_timeout}"></label>
<label>Cell time limit <input name="cell_timeout" value="{cell_timeout}" placeholder="none"></label>
<label>Retries <input name="retries" value="{retries}" placeholder="0" inputmode="numeric"></label>
<label>If the previous run is still going <select name="overlap">{overlap}</select></label>
<label>Occurrences missed while the hub was down <select name="catch_up">{catch_up}</select></label>
<label>Output <input name="output" value="{output}" placeholder="{DEFAULT_OUTPUT}"></label>
<label>Runs to keep <input name="keep_runs" value="{keep}" placeholder="{default_keep}" inputmode="numeric"></label>"#,
        nb = v(|d| Some(d.notebook.clone())),
        sched = v(|d| d.schedule.clone()),
        tz = v(|d| Some(d.timezone.clone())),
        params = esc(&params),
        kernel = v(|d| d.kernel.clone()),
        timeout = v(|d| d.timeout.clone()),
        default_timeout = humantime::format_duration(app.config.jobs.default_timeout),
        cell_timeout = v(|d| d.cell_timeout.clone()),
        retries = v(|d| (d.retries > 0).then(|| d.retries.to_string())),
        overlap = sel(&overlap, &[("skip", "skip the new run"), ("queue", "queue the new run")]),
        catch_up = sel(&catch_up, &[("latest", "run the latest once"), ("none", "run none")]),
        output = v(|d| d.output.clone()),
        keep = v(|d| d.keep_runs.map(|n| n.to_string())),
        default_keep = app.config.jobs.default_keep_runs,
    )
}

/// `GET /hub/jobs`.
async fn list(State(app): State<AppState>, CurrentUser(s): CurrentUser) -> Response {
    if let Some(r) = disabled(&app) {
        return r;
    }
    let jobs = match app.store.list_jobs(Some(&s.username)).await {
        Ok(j) => j,
        Err(e) => return job_error("Cannot list your jobs", e.into()),
    };
    let mut rows = String::new();
    let mut active = false;
    for j in &jobs {
        let last = app.store.runs_of_job(j.id, 0, 1).await.ok().and_then(|(r, _)| r.into_iter().next());
        active |= last.as_ref().is_some_and(|r| r.state == state::QUEUED || r.state == state::RUNNING);
        let d = definition(j);
        let sched = d
            .as_ref()
            .and_then(|d| d.schedule.clone())
            .map_or_else(|| "on demand".to_string(), |s| format!("<code>{}</code>", esc(&s)));
        rows.push_str(&format!(
            r#"<tr data-job="{name}"><td><a href="/hub/jobs/{name}">{name}</a></td><td><code>{nb}</code></td><td>{sched}{paused}</td><td>{next}</td><td>{last}</td></tr>"#,
            name = esc(&j.name),
            nb = esc(&d.map(|d| d.notebook).unwrap_or_default()),
            paused = if j.paused { " <em>(paused)</em>" } else { "" },
            next = when(j.next_due),
            last = last.map(|r| format!("{} {}", badge(&r.state), when(r.started.or(Some(r.created))))).unwrap_or_else(|| "never run".into()),
        ));
    }
    let table = if jobs.is_empty() {
        "<p>You have no jobs yet. A job runs one of your notebooks as you, on a schedule or when you ask, with a fresh Kerberos ticket, even when your server is stopped.</p>".to_string()
    } else {
        format!(
            "<table class=\"jobs\"><thead><tr><th>Job</th><th>Notebook</th><th>Schedule</th><th>Next run</th><th>Last run</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let body = format!(
        r#"{refresh}<h1>Jobs</h1>{table}
<h2>New job</h2><form method="post" action="/hub/jobs" class="card job-form">{xsrf}{fields}<button>Create job</button></form>"#,
        refresh = if active { r#"<meta http-equiv="refresh" content="3">"# } else { "" },
        xsrf = xsrf_field(&app, &s),
        fields = form_fields(&app, None, None),
    );
    page_with_user(&app, "Jobs", &body, &s).into_response()
}

/// `POST /hub/jobs`: creates the job, then shows it.
async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Form(f): Form<JobForm>,
) -> Response {
    if let Some(r) = disabled(&app) {
        return r;
    }
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a job creation") {
        return refused;
    }
    let user = match account(&s).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let fields = match f.fields() {
        Ok(m) => without_nulls(m),
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Cannot create the job", &e),
    };
    match app.jobs.create(&user, f.name.trim(), fields).await {
        Ok(job) => {
            tracing::info!(user = %s.username, job = %job.name, "job created on the Jobs page");
            Redirect::to(&format!("/hub/jobs/{}", job.name)).into_response()
        }
        Err(e) => job_error("Cannot create the job", e),
    }
}

/// `POST /hub/jobs/{job}`: saves the edit form.
async fn edit(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path(job): Path<String>,
    Form(f): Form<JobForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a job change") {
        return refused;
    }
    let job = match own_job(&app, &s, &job).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let (user, fields) = match (account(&s).await, f.fields()) {
        (Ok(u), Ok(m)) => (u, m),
        (Err(r), _) => return r,
        (_, Err(e)) => return error_page(StatusCode::BAD_REQUEST, "Cannot change the job", &e),
    };
    let name = job.name.clone();
    match app.jobs.update(&user, job, fields).await {
        Ok(_) => Redirect::to(&format!("/hub/jobs/{name}")).into_response(),
        Err(e) => job_error("Cannot change the job", e),
    }
}

/// The job's page: settings, edit form, runs.
async fn detail(State(app): State<AppState>, CurrentUser(s): CurrentUser, Path(job): Path<String>) -> Response {
    if let Some(r) = disabled(&app) {
        return r;
    }
    let job = match own_job(&app, &s, &job).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let d = definition(&job);
    let (runs, total) = match app.store.runs_of_job(job.id, 0, 50).await {
        Ok(r) => r,
        Err(e) => return job_error("Cannot list the runs", e.into()),
    };
    let home = LinuxUser::lookup_async(&s.username).await.ok().map(|u| u.home);
    let xsrf = xsrf_field(&app, &s);
    let name = esc(&job.name).into_owned();
    let mut active = false;
    let mut rows = String::new();
    for r in &runs {
        let going = r.state == state::QUEUED || r.state == state::RUNNING;
        active |= going;
        let progress = if r.state == state::RUNNING { progress(r) } else { String::new() };
        let failed = match (r.failed_cell, r.error.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok())) {
            (Some(c), Some(e)) => format!(
                r#"<details><summary>cell {c}: {} {}</summary><pre class="traceback">{}</pre></details>"#,
                esc(e["ename"].as_str().unwrap_or_default()),
                esc(e["evalue"].as_str().unwrap_or_default()),
                esc(&strip_ansi(
                    &e["traceback"]
                        .as_array()
                        .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
                        .unwrap_or_default()
                )),
            ),
            _ => String::new(),
        };
        let lab = r
            .output_path
            .as_deref()
            .zip(home.as_deref())
            .and_then(|(p, h)| std::path::Path::new(p).strip_prefix(h).ok().map(|rel| rel.display().to_string()));
        let mut links = Vec::new();
        if let (Some(rel), false) = (&lab, r.state == state::QUEUED || r.state == state::SKIPPED || r.started.is_none())
        {
            links.push(format!(
                r#"<a href="/user/{}/lab/tree/{}" target="_blank" rel="noopener">Open in JupyterLab</a>"#,
                esc(&s.username),
                esc(&hub_core::percent_encode(rel))
            ));
            links.push(format!(r#"<a href="/hub/jobs/{name}/runs/{}/output">Download</a>"#, r.id));
        }
        if r.log_path.is_some() {
            links.push(format!(r#"<a href="/hub/jobs/{name}/runs/{}/log">Log</a>"#, r.id));
        }
        if going {
            links.push(format!(r#"<form method="post" action="/hub/jobs/{name}/runs/{}/cancel" class="inline">{xsrf}<button class="link">Cancel</button></form>"#, r.id));
        }
        let duration = match (r.started, r.ended) {
            (Some(a), Some(b)) => format!("{} s", b - a),
            (Some(a), None) => format!("{} s so far", unix_now() - a),
            _ => "—".into(),
        };
        rows.push_str(&format!(
            r#"<tr data-run="{id}"><td>{id}</td><td>{state}{progress}</td><td>{reason}{attempt}</td><td>{started}</td><td>{duration}</td><td>{ticket}</td><td>{message}{failed}</td><td>{links}</td></tr>"#,
            id = r.id,
            state = badge(&r.state),
            reason = esc(&r.reason),
            attempt = if r.attempt > 1 { format!(" (try {})", r.attempt) } else { String::new() },
            started = when(r.started.or(r.occurrence)),
            ticket = when(r.ticket_valid_until),
            message = esc(r.message.as_deref().unwrap_or_default()),
            links = links.join(" · "),
        ));
    }
    let sched = d
        .as_ref()
        .and_then(|d| d.schedule.as_deref().map(|x| (x, d.timezone.as_str())))
        .map(|(x, tz)| {
            let words = Schedule::parse(x, tz).map(|s| s.describe()).unwrap_or_default();
            format!("<code>{}</code> ({}) in {}", esc(x), esc(&words), esc(tz))
        })
        .unwrap_or_else(|| "on demand only".into());
    let toggle = if job.paused {
        format!(
            r#"<form method="post" action="/hub/jobs/{name}/resume" class="inline">{xsrf}<button>Resume</button></form>"#
        )
    } else {
        format!(
            r#"<form method="post" action="/hub/jobs/{name}/pause" class="inline">{xsrf}<button>Pause</button></form>"#
        )
    };
    let body = format!(
        r#"{refresh}<h1>Job {name}</h1>
<p class="card">Notebook <code>{nb}</code> · schedule {sched}{paused} · next run {next}</p>
<p><form method="post" action="/hub/jobs/{name}/run" class="inline">{xsrf}<button id="run-now">Run now</button></form> {toggle}
· <a href="/hub/jobs">All jobs</a></p>
<details class="delete"><summary>Delete…</summary><form method="post" action="/hub/jobs/{name}/delete" class="card">{xsrf}<p>Delete job {name} and its run history? Output notebooks stay in your home.</p><button class="danger">Delete job {name}</button></form></details>
<h2>Runs</h2>{runs}
<details><summary>Edit</summary><form method="post" action="/hub/jobs/{name}" class="card job-form">{xsrf}{fields}<button>Save</button></form></details>"#,
        refresh = if active { r#"<meta http-equiv="refresh" content="2">"# } else { "" },
        nb = esc(&d.as_ref().map(|d| d.notebook.clone()).unwrap_or_default()),
        paused = if job.paused { " <em>(paused)</em>" } else { "" },
        next = when(job.next_due),
        runs = if runs.is_empty() {
            "<p>No runs yet.</p>".to_string()
        } else {
            format!(
                "<table class=\"runs\"><thead><tr><th>Run</th><th>State</th><th>Why</th><th>Started</th><th>Took</th><th>Ticket valid until</th><th>What happened</th><th></th></tr></thead><tbody>{rows}</tbody></table>{more}",
                more = if total > 50 {
                    format!("<p>The newest 50 of {total} runs; the REST API pages through all of them.</p>")
                } else {
                    String::new()
                }
            )
        },
        fields = form_fields(&app, d.as_ref(), Some(&job.name)),
    );
    page_with_user(&app, &format!("Job {}", job.name), &body, &s).into_response()
}

/// A running run's progress through its cells, from the events in its log.
fn progress(r: &RunRecord) -> String {
    let Some(log) = &r.log_path else { return String::new() };
    let (events, _, _) = hub_servers::runs::read_events(std::path::Path::new(log), 0);
    let total = events.iter().find_map(|e| if let Event::Started { cells, .. } = e { Some(*cells) } else { None });
    let done = events.iter().filter(|e| matches!(e, Event::Cell { .. })).count();
    match total {
        Some(t) if t > 0 => format!(
            r#" <progress value="{done}" max="{t}"></progress> <small>cell {} of {t}</small>"#,
            (done + 1).min(t)
        ),
        _ => " <small>starting the kernel…</small>".into(),
    }
}

/// The traceback without the terminal colour codes (ESC `[` ... `m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn with_job<F, Fut>(
    app: AppState,
    headers: HeaderMap,
    s: Session,
    job: String,
    xsrf: String,
    what: &str,
    f: F,
) -> Response
where
    F: FnOnce(AppState, JobRecord) -> Fut,
    Fut: std::future::Future<Output = Result<(), JobError>>,
{
    if let Some(refused) = form_allowed(&app, &headers, &s, &xsrf, what) {
        return refused;
    }
    let job = match own_job(&app, &s, &job).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let name = job.name.clone();
    match f(app, job).await {
        Ok(()) => Redirect::to(&format!("/hub/jobs/{name}")).into_response(),
        Err(e) => job_error(&format!("Cannot do {what}"), e),
    }
}

async fn run_now(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path(job): Path<String>,
    Form(f): Form<XsrfForm>,
) -> Response {
    with_job(app, headers, s, job, f._xsrf, "a run", |app, job| async move { app.jobs.run_now(&job).await.map(|_| ()) })
        .await
}

async fn set_paused(app: AppState, s: &Session, job: JobRecord, paused: bool) -> Result<(), JobError> {
    let user =
        LinuxUser::lookup_async(&s.username).await.map_err(|e| JobError::Conflict(format!("no Linux account: {e}")))?;
    let mut changes = Map::new();
    changes.insert("paused".into(), json!(paused));
    app.jobs.update(&user, job, changes).await.map(|_| ())
}

async fn pause(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path(job): Path<String>,
    Form(f): Form<XsrfForm>,
) -> Response {
    let s2 = s.clone();
    with_job(app, headers, s, job, f._xsrf, "a pause", |app, job| async move { set_paused(app, &s2, job, true).await })
        .await
}

async fn resume(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path(job): Path<String>,
    Form(f): Form<XsrfForm>,
) -> Response {
    let s2 = s.clone();
    with_job(
        app,
        headers,
        s,
        job,
        f._xsrf,
        "a resume",
        |app, job| async move { set_paused(app, &s2, job, false).await },
    )
    .await
}

async fn delete(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path(job): Path<String>,
    Form(f): Form<XsrfForm>,
) -> Response {
    if let Some(refused) = form_allowed(&app, &headers, &s, &f._xsrf, "a job deletion") {
        return refused;
    }
    let job = match own_job(&app, &s, &job).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    match app.jobs.delete(&job).await {
        Ok(_) => Redirect::to("/hub/jobs").into_response(),
        Err(e) => job_error("Cannot delete the job", e),
    }
}

async fn cancel(
    State(app): State<AppState>,
    headers: HeaderMap,
    CurrentUser(s): CurrentUser,
    Path((job, id)): Path<(String, String)>,
    Form(f): Form<XsrfForm>,
) -> Response {
    with_job(app, headers, s, job, f._xsrf, "a cancel", |app, job| async move {
        let Ok(id) = id.parse::<i64>() else { return Ok(()) };
        match app.store.get_run(id).await? {
            Some(r) if r.job_id == job.id => app.jobs.cancel(r).await.map(|_| ()),
            _ => Ok(()),
        }
    })
    .await
}

async fn log(
    State(app): State<AppState>,
    CurrentUser(s): CurrentUser,
    Path((job, id)): Path<(String, String)>,
) -> Response {
    let job = match own_job(&app, &s, &job).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let run = match own_run(&app, &job, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(path) = run.log_path else {
        return error_page(StatusCode::NOT_FOUND, "No log", "This run never started, so it has no log.");
    };
    // Its last MiB, as the REST API gives it.
    let read =
        tokio::task::spawn_blocking(move || hub_servers::runs::read_log_tail(std::path::Path::new(&path), 1 << 20))
            .await;
    match read {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Ok(Err(e)) => error_page(StatusCode::NOT_FOUND, "No log", &format!("The run's log cannot be read: {e}")),
        Err(e) => {
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "No log", &format!("The run's log cannot be read: {e}"))
        }
    }
}

async fn output(
    State(app): State<AppState>,
    CurrentUser(s): CurrentUser,
    Path((job, id)): Path<(String, String)>,
) -> Response {
    let job = match own_job(&app, &s, &job).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let run = match own_run(&app, &job, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (Some(path), Ok(user)) = (run.output_path, LinuxUser::lookup_async(&s.username).await) else {
        return error_page(StatusCode::NOT_FOUND, "No output", "This run has no output notebook.");
    };
    match hub_servers::runs::read_as_user(app.jobs.runner_exe(), &user, std::path::Path::new(&path)).await {
        Ok(bytes) => {
            let file = std::path::Path::new(&path)
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("output.ipynb")
                .replace('"', "");
            (
                [
                    (header::CONTENT_TYPE, "application/x-ipynb+json".to_string()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => error_page(StatusCode::NOT_FOUND, "No output", &format!("The output notebook cannot be read: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_a_definition() {
        let f = JobForm {
            notebook: " reports/a.ipynb ".into(),
            schedule: "0 6 * * *".into(),
            parameters: "date=2026-12-01\n\nlimit=100\n".into(),
            retries: "2".into(),
            ..Default::default()
        };
        let m = without_nulls(f.fields().expect("fields"));
        assert_eq!(m["notebook"], "reports/a.ipynb");
        assert_eq!(m["parameters"], json!({"date": "2026-12-01", "limit": 100}));
        assert_eq!(m["retries"], 2);
        assert!(!m.contains_key("timeout"), "empty fields take the default");
        let bad = JobForm { retries: "two".into(), ..Default::default() };
        assert!(bad.fields().expect_err("not a number").contains("retries"));
        let bad = JobForm { parameters: "1x=2".into(), ..Default::default() };
        assert!(bad.fields().expect_err("bad name").starts_with("parameters:"));
    }

    #[test]
    fn tracebacks_lose_their_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[31mZeroDivisionError\u{1b}[39m: division by zero"),
            "ZeroDivisionError: division by zero"
        );
    }
}
