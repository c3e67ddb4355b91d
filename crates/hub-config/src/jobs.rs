//! `[jobs]`: notebooks run headless, on a schedule or on demand, as their owner.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};

/// `[jobs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsConfig {
    /// Whether the scheduler runs and the jobs API and page exist (`enabled`, default true).
    pub enabled: bool,
    /// Runs going at once on this hub, all users together (`max_concurrent_runs`, default 4);
    /// more wait, queued.
    pub max_concurrent_runs: usize,
    /// Runs going at once per user (`max_runs_per_user`, default 2); more wait, queued.
    pub max_runs_per_user: usize,
    /// Time limit of a run whose job sets none (`default_timeout`, default 12 h).
    pub default_timeout: Duration,
    /// How late a scheduled occurrence may start and still be on time (`missed_after`,
    /// default 60 s): an occurrence older than this when the hub sees it (the hub was down)
    /// is missed, and the job's catch-up policy decides.
    pub missed_after: Duration,
    /// How many finished runs a job keeps when it says nothing (`default_keep_runs`, default
    /// 20); older run records and their logs are deleted (output notebooks stay).
    pub default_keep_runs: u32,
    /// The `hub` binary that runs notebooks as their owners (`runner`, default: the binary
    /// running the hub). Every user must be able to execute it.
    pub runner: Option<std::path::PathBuf>,
    /// `[jobs.limits]`: `memory`, `cpu`, `tasks` for runs, over the user's `[limits]` (each
    /// one given replaces the user's; the others stay).
    pub limits: crate::limits::Limits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileJobs {
    pub(crate) enabled: Option<bool>,
    pub(crate) max_concurrent_runs: Option<Spanned<i64>>,
    pub(crate) max_runs_per_user: Option<Spanned<i64>>,
    pub(crate) default_timeout: Option<Spanned<String>>,
    pub(crate) missed_after: Option<Spanned<String>>,
    pub(crate) default_keep_runs: Option<Spanned<i64>>,
    pub(crate) runner: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) limits: crate::limits::FileLimits,
}

/// Validates `[jobs]`.
pub(crate) fn parse(src: &Source<'_>, f: &FileJobs) -> Result<JobsConfig, ConfigError> {
    let count = |key: &str, v: &Option<Spanned<i64>>, default: i64, max: i64| -> Result<i64, ConfigError> {
        match v {
            None => Ok(default),
            Some(n) if (1..=max).contains(n.get_ref()) => Ok(*n.get_ref()),
            Some(n) => Err(src.err(key, n, format!("must be between 1 and {max}"))),
        }
    };
    let default_timeout = src.duration("jobs.default_timeout", &f.default_timeout, Duration::from_secs(12 * 3600))?;
    if default_timeout.is_zero() {
        let v = f.default_timeout.as_ref().expect("zero only when set");
        return Err(src.err("jobs.default_timeout", v, "must be longer than 0s"));
    }
    let runner = match &f.runner {
        None => None,
        Some(p) if p.get_ref().starts_with('/') => Some(std::path::PathBuf::from(p.get_ref())),
        Some(p) => return Err(src.err("jobs.runner", p, "must be an absolute path to the hub binary")),
    };
    let limits = crate::limits::parse_one(src, "jobs.limits.", &f.limits.memory, &f.limits.cpu, &f.limits.tasks)?;
    Ok(JobsConfig {
        limits,
        runner,
        enabled: f.enabled.unwrap_or(true),
        max_concurrent_runs: count("jobs.max_concurrent_runs", &f.max_concurrent_runs, 4, 1000)? as usize,
        max_runs_per_user: count("jobs.max_runs_per_user", &f.max_runs_per_user, 2, 1000)? as usize,
        default_timeout,
        missed_after: src.duration("jobs.missed_after", &f.missed_after, Duration::from_secs(60))?,
        default_keep_runs: count("jobs.default_keep_runs", &f.default_keep_runs, 20, 10_000)? as u32,
    })
}
