//! Jobs and runs: `/hub/api/users/{name}/jobs[/{job}[/runs[/{id}[/log|/output]]]]`.
//!
//! JupyterHub has no jobs; these endpoints follow its conventions: JSON models with RFC 3339
//! times, `offset`/`limit` pagination (the `{"items", "_pagination"}` form on request), errors
//! as `{"status", "message"}`, 404 for what the caller may not see, and the scopes
//! `custom:jobs` (manage) and `custom:jobs:read` (read), named by JupyterHub's rule for scopes
//! it does not define, which take the `!user=` filter and are part of `self` and `admin`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::common::{ApiResult, ListQuery, iso, iso_opt, page_bounds, paginate, user_or_404};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use hub_core::LinuxUser;
use hub_core::scopes::{JOBS, READ_JOBS};
use hub_core::unix_now;
use hub_jobs::JobError;
use hub_jobs::definition::{self, JobDefinition};
use hub_store::{JobRecord, RunRecord};

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Field(f) => ApiError::bad(f.to_string()),
            JobError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            JobError::Store(s) => ApiError::internal(s),
        }
    }
}

/// The job's API model.
pub fn job_model(app: &AppState, j: &JobRecord) -> Value {
    let def: Value = serde_json::from_str(&j.definition).unwrap_or_else(|_| json!({}));
    let parsed = JobDefinition::from_json(def.clone()).ok();
    let describe = parsed
        .as_ref()
        .and_then(|d| d.schedule.as_deref().map(|s| definition::Schedule::parse(s, &d.timezone)))
        .and_then(Result::ok)
        .map(|s| s.describe());
    let mut m = json!({
        "name": j.name,
        "user": j.username,
        "paused": j.paused,
        "created": iso(j.created),
        "updated": iso(j.updated),
        "next_run": iso_opt(j.next_due),
        "schedule_description": describe,
        "url": format!("/hub/api/users/{}/jobs/{}", j.username, j.name),
    });
    // The definition's fields, with their defaults filled in (what the hub will do).
    if let (Some(d), Some(obj)) = (parsed, m.as_object_mut()) {
        if let Ok(Value::Object(fields)) = serde_json::to_value(&d) {
            for (k, v) in fields {
                obj.insert(k, v);
            }
        }
        obj.entry("timeout")
            .or_insert_with(|| json!(humantime::format_duration(app.config.jobs.default_timeout).to_string()));
        obj.entry("keep_runs").or_insert_with(|| json!(app.config.jobs.default_keep_runs));
        obj.entry("output").or_insert_with(|| json!(definition::DEFAULT_OUTPUT));
    }
    m
}

/// A run's API model.
pub fn run_model(job: &str, home: Option<&std::path::Path>, r: &RunRecord) -> Value {
    let base = format!("/hub/api/users/{}/jobs/{job}/runs/{}", r.username, r.id);
    let error: Value = r.error.as_deref().and_then(|e| serde_json::from_str(e).ok()).unwrap_or(Value::Null);
    let duration = match (r.started, r.ended) {
        (Some(s), Some(e)) => json!(e - s),
        (Some(s), None) => json!(unix_now() - s),
        _ => Value::Null,
    };
    let lab = r.output_path.as_deref().zip(home).and_then(|(p, h)| {
        std::path::Path::new(p).strip_prefix(h).ok().map(|rel| {
            format!("/user/{}/lab/tree/{}", r.username, hub_core::percent_encode(&rel.display().to_string()))
        })
    });
    json!({
        "id": r.id,
        "job": job,
        "user": r.username,
        "state": r.state,
        "reason": r.reason,
        "attempt": r.attempt,
        "occurrence": iso_opt(r.occurrence),
        "created": iso(r.created),
        "started": iso_opt(r.started),
        "ended": iso_opt(r.ended),
        "duration_seconds": duration,
        "ticket": r.ticket_valid_until.map(|v| json!({"valid_until": iso(v), "renew_until": iso_opt(r.ticket_renew_until)})),
        "failed_cell": r.failed_cell,
        "error": error,
        "message": r.message,
        "output_path": r.output_path,
        "output_lab_url": lab,
        "output_url": r.output_path.as_ref().map(|_| format!("{base}/output")),
        "log_url": r.log_path.as_ref().map(|_| format!("{base}/log")),
        "url": base,
    })
}

async fn home_of(name: &str) -> Result<LinuxUser, ApiError> {
    LinuxUser::lookup_async(name)
        .await
        .map_err(|e| ApiError::bad(format!("user {name} has no usable Linux account, so no job can run as them: {e}")))
}

async fn job_or_404(app: &AppState, name: &str, job: &str) -> Result<JobRecord, ApiError> {
    app.store.get_job(name, job).await?.ok_or_else(|| ApiError::not_found(format!("No such job: {job}")))
}

async fn run_or_404(app: &AppState, job: &JobRecord, id: &str) -> Result<RunRecord, ApiError> {
    let not_found = || ApiError::not_found(format!("No such run: {id}"));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    app.store.get_run(id).await?.filter(|r| r.job_id == job.id).ok_or_else(not_found)
}

fn object(bytes: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad(format!("the request body is not valid JSON: {e}"))),
    }
}

fn enabled(app: &AppState) -> Result<(), ApiError> {
    if app.config.jobs.enabled {
        Ok(())
    } else {
        Err(ApiError::not_found("jobs are disabled on this hub ([jobs] enabled = false)"))
    }
}

/// `GET /users/{name}/jobs`.
pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(READ_JOBS, Some(&name))?;
    user_or_404(&app, &name).await?;
    let jobs = app.store.list_jobs(Some(&name)).await?;
    let (offset, limit) = page_bounds(&app, &q)?;
    let page: Vec<Value> = jobs.iter().skip(offset).take(limit).map(|j| job_model(&app, j)).collect();
    paginate(&app, &headers, &format!("/hub/api/users/{name}/jobs"), &q, jobs.len(), page)
}

/// `POST /users/{name}/jobs`: `{"name": ..., "notebook": ..., ...}` → 201 and the model.
pub(super) async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    enabled(&app)?;
    caller.require(JOBS, Some(&name))?;
    user_or_404(&app, &name).await?;
    let mut fields = object(&bytes)?;
    let job_name = match fields.remove("name") {
        Some(Value::String(s)) => s,
        _ => return Err(ApiError::bad("name: the job needs a name (1-64 letters, digits, '.', '_' or '-')")),
    };
    let user = home_of(&name).await?;
    let job = app.jobs.create(&user, &job_name, fields).await?;
    tracing::info!(by = %caller.label(), user = %name, job = %job_name, "job created");
    Ok((StatusCode::CREATED, axum::Json(job_model(&app, &job))).into_response())
}

/// `GET /users/{name}/jobs/{job}`.
pub(super) async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, job)): Path<(String, String)>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(READ_JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    Ok(axum::Json(job_model(&app, &job)).into_response())
}

/// `PATCH /users/{name}/jobs/{job}`: the fields given replace the definition's (`null`
/// clears one); `paused` pauses or resumes.
pub(super) async fn patch(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, job)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    enabled(&app)?;
    caller.require(JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    let changes = object(&bytes)?;
    let user = home_of(&name).await?;
    let job = app.jobs.update(&user, job, changes).await?;
    tracing::info!(by = %caller.label(), user = %name, job = %job.name, paused = job.paused, "job changed");
    Ok(axum::Json(job_model(&app, &job)).into_response())
}

/// `DELETE /users/{name}/jobs/{job}`: cancels its runs, deletes it and its run records
/// (output notebooks stay in the home) → 204.
pub(super) async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, job)): Path<(String, String)>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    app.jobs.delete(&job).await?;
    tracing::info!(by = %caller.label(), user = %name, job = %job.name, "job deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{name}/jobs/{job}/runs`: run now → 201 and the queued run; 409 while a run
/// is queued, or going under overlap `skip`.
pub(super) async fn run_now(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, job)): Path<(String, String)>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    let run = app.jobs.run_now(&job).await?;
    tracing::info!(by = %caller.label(), user = %name, job = %job.name, run_id = run.id, "run requested");
    let home = LinuxUser::lookup_async(&name).await.ok().map(|u| u.home);
    Ok((StatusCode::CREATED, axum::Json(run_model(&job.name, home.as_deref(), &run))).into_response())
}

/// `GET /users/{name}/jobs/{job}/runs`: newest first, paginated.
pub(super) async fn runs(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((name, job)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(READ_JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    let (offset, limit) = page_bounds(&app, &q)?;
    let (runs, total) = app.store.runs_of_job(job.id, offset as i64, limit as i64).await?;
    let home = LinuxUser::lookup_async(&name).await.ok().map(|u| u.home);
    let page = runs.iter().map(|r| run_model(&job.name, home.as_deref(), r)).collect();
    paginate(&app, &headers, &format!("/hub/api/users/{name}/jobs/{}/runs", job.name), &q, total.max(0) as usize, page)
}

/// `GET /users/{name}/jobs/{job}/runs/{id}`.
pub(super) async fn run_one(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, job, id)): Path<(String, String, String)>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(READ_JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    let run = run_or_404(&app, &job, &id).await?;
    let home = LinuxUser::lookup_async(&name).await.ok().map(|u| u.home);
    Ok(axum::Json(run_model(&job.name, home.as_deref(), &run)).into_response())
}

/// `DELETE /users/{name}/jobs/{job}/runs/{id}`: cancels the run (202 while a running one
/// stops; 200 for a queued or finished one) and returns its model.
pub(super) async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, job, id)): Path<(String, String, String)>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    let run = run_or_404(&app, &job, &id).await?;
    let was_running = run.state == hub_jobs::scheduler::state::RUNNING;
    let run = app.jobs.cancel(run).await?;
    tracing::info!(by = %caller.label(), user = %name, job = %job.name, run_id = run.id, "run cancel requested");
    let home = LinuxUser::lookup_async(&name).await.ok().map(|u| u.home);
    let status = if was_running { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, axum::Json(run_model(&job.name, home.as_deref(), &run))).into_response())
}

/// The most of a run log returned, in bytes (its end).
const MAX_LOG_BYTES: u64 = 1 << 20;

/// `GET /users/{name}/jobs/{job}/runs/{id}/log`: the run's log as text (its last MiB).
pub(super) async fn log(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, job, id)): Path<(String, String, String)>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(READ_JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    let run = run_or_404(&app, &job, &id).await?;
    let path = run.log_path.ok_or_else(|| ApiError::not_found("this run has no log (it never started)"))?;
    // The log is the hub's own file (root's, under data_dir), written by the runner through a
    // descriptor the hub opened.
    let text = tokio::task::spawn_blocking(move || {
        hub_servers::runs::read_log_tail(std::path::Path::new(&path), MAX_LOG_BYTES)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::not_found(format!("the run's log cannot be read: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /users/{name}/jobs/{job}/runs/{id}/output`: the output notebook, read as its owner
/// (never as root), as a download.
pub(super) async fn output(
    State(app): State<AppState>,
    caller: Caller,
    Path((name, job, id)): Path<(String, String, String)>,
) -> ApiResult {
    enabled(&app)?;
    caller.require(READ_JOBS, Some(&name))?;
    let job = job_or_404(&app, &name, &job).await?;
    let run = run_or_404(&app, &job, &id).await?;
    let path = run.output_path.ok_or_else(|| ApiError::not_found("this run has no output (it never started)"))?;
    let user = home_of(&name).await?;
    let bytes = hub_servers::runs::read_as_user(app.jobs.runner_exe(), &user, std::path::Path::new(&path))
        .await
        .map_err(|e| ApiError::not_found(format!("the output notebook cannot be read: {e}")))?;
    let file =
        std::path::Path::new(&path).file_name().and_then(|f| f.to_str()).unwrap_or("output.ipynb").replace('"', "");
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ipynb+json".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
        ],
        bytes,
    )
        .into_response())
}
