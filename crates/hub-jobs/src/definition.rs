//! What a job is: its definition as users write it (the REST API's JSON and the Jobs page's
//! form), checked field by field, and its schedule: a cron expression evaluated by the
//! `croner` crate in an IANA time zone from the `chrono-tz` crate (the tz database).

use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A field that is wrong, and how: the REST API answers 400 with `"{field}: {message}"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's name, as in the JSON model (`schedule`, `timezone`, `parameters.limit`).
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

fn field(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// What to do when a run is due and the previous one is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The new run is recorded as `skipped` (the default).
    #[default]
    Skip,
    /// The new run waits, queued, and starts when the previous one ends (at most one waits).
    Queue,
}

/// What to do about occurrences missed while the hub was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run the latest missed occurrence once, with reason `catch-up` (the default).
    #[default]
    Latest,
    /// Run none of them.
    None,
}

/// The most JSON a job's parameters may take, in bytes (64 KiB).
pub const MAX_PARAMETERS_BYTES: usize = 64 * 1024;

/// The default output path template: under `notebook-runs/` in the owner's home.
pub const DEFAULT_OUTPUT: &str = "notebook-runs/{job}/{job}-{date}T{time}-run{run}.ipynb";

/// A job's definition, stored as JSON with the job. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDefinition {
    /// The notebook, relative to the owner's home (or absolute inside it).
    pub notebook: String,
    /// Parameters, injected papermill-style.
    #[serde(default)]
    pub parameters: serde_json::Map<String, Value>,
    /// The kernelspec (default: the notebook's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// A cron expression (5 fields, or 6 with seconds first; `@daily` and the like), or none
    /// for a job that runs only on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The IANA time zone the schedule is read in (default `UTC`), e.g. `Europe/Berlin`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The run's time limit, e.g. `2h` (default `[jobs] default_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Each cell's time limit, e.g. `10m` (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_timeout: Option<String>,
    /// How many times a failed or timed-out run is tried again (default 0, at most 10).
    #[serde(default)]
    pub retries: u32,
    /// See [`Overlap`].
    #[serde(default)]
    pub overlap: Overlap,
    /// See [`CatchUp`].
    #[serde(default)]
    pub catch_up: CatchUp,
    /// The output path template, relative to the home: `{job}`, `{run}` (the run id),
    /// `{date}` (YYYY-MM-DD) and `{time}` (HHMMSS) in the job's time zone, `{user}`,
    /// `{stem}` (the notebook's file name without `.ipynb`). Default [`DEFAULT_OUTPUT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// How many finished runs to keep (default `[jobs] default_keep_runs`, 1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_runs: Option<u32>,
}

fn utc() -> String {
    "UTC".into()
}

/// A job name: 1 to 64 letters, digits, `.`, `_`, `-`, not starting with `.` (it appears in
/// URLs and output paths).
pub fn check_name(name: &str) -> Result<(), FieldError> {
    if name.is_empty()
        || name.len() > 64
        || name.starts_with('.')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(field("name", "must be 1-64 letters, digits, '.', '_' or '-', not starting with '.'"));
    }
    Ok(())
}

/// A checked definition, with its schedule parsed.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The definition as given.
    pub definition: JobDefinition,
    /// The schedule, if any.
    pub schedule: Option<Schedule>,
    /// The run's limit (the job's or `[jobs] default_timeout`).
    pub timeout: Duration,
    /// Each cell's limit.
    pub cell_timeout: Option<Duration>,
    /// Finished runs to keep.
    pub keep_runs: u32,
}

impl JobDefinition {
    /// Parses a stored or posted definition; the error names the field.
    pub fn from_json(v: Value) -> Result<Self, FieldError> {
        serde_json::from_value(v).map_err(|e| {
            let text = e.to_string();
            // serde names the field in "unknown field `x`" and "missing field `x`".
            let name = text.split('`').nth(1).unwrap_or("body").to_string();
            field(&name, text)
        })
    }

    /// Checks every field for a user whose home is `home`; `default_timeout` and
    /// `default_keep_runs` come from `[jobs]`.
    pub fn check(&self, home: &str, default_timeout: Duration, default_keep_runs: u32) -> Result<Checked, FieldError> {
        let nb = self.notebook.trim();
        if nb.is_empty() || nb.contains('\0') || nb.len() > 4096 {
            return Err(field("notebook", "must be the path of a notebook in your home, e.g. reports/daily.ipynb"));
        }
        if !nb.ends_with(".ipynb") {
            return Err(field("notebook", format!("{nb:?} is not a notebook (.ipynb)")));
        }
        inside_home("notebook", nb, home)?;
        // The run's spec travels in the runner's environment, where one variable may hold at
        // most 128 KiB (MAX_ARG_STRLEN).
        if serde_json::to_string(&self.parameters).map_or(0, |t| t.len()) > MAX_PARAMETERS_BYTES {
            return Err(field(
                "parameters",
                format!("are more than {} KiB of JSON; pass a path to a file instead", MAX_PARAMETERS_BYTES / 1024),
            ));
        }
        for name in self.parameters.keys() {
            if !hub_runner::params::valid_name(name) {
                return Err(field(
                    &format!("parameters.{name}"),
                    "is not an identifier: use letters, digits and '_', not starting with a digit",
                ));
            }
        }
        if let Some(k) = &self.kernel
            && (k.is_empty() || k.len() > 64 || k.contains('/'))
        {
            return Err(field("kernel", "must be a kernelspec name, e.g. python3"));
        }
        let schedule = match self.schedule.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(expr) => Some(Schedule::parse(expr, &self.timezone)?),
        };
        if schedule.is_none() {
            timezone(&self.timezone)?;
        }
        let duration = |name: &str, v: &Option<String>| -> Result<Option<Duration>, FieldError> {
            match v.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => match humantime::parse_duration(s) {
                    Ok(d) if !d.is_zero() => Ok(Some(d)),
                    Ok(_) => Err(field(name, "must be longer than 0s")),
                    Err(e) => Err(field(
                        name,
                        format!("{s:?} is not a duration ({e}); write e.g. \"90s\", \"10m\" or \"2h\""),
                    )),
                },
            }
        };
        let timeout = duration("timeout", &self.timeout)?.unwrap_or(default_timeout);
        let cell_timeout = duration("cell_timeout", &self.cell_timeout)?;
        if self.retries > 10 {
            return Err(field("retries", "must be between 0 and 10"));
        }
        if let Some(out) = &self.output {
            let sample = expand_output(out, "job", 1, 0, chrono_tz::UTC, "user", "stem")?;
            inside_home("output", &sample, home)?;
            if !sample.ends_with(".ipynb") {
                return Err(field("output", "must end with .ipynb"));
            }
            let unique = out.contains("{run}") || (out.contains("{date}") && out.contains("{time}"));
            if !unique {
                return Err(field(
                    "output",
                    "must contain {run} (or {date} and {time}) so that runs do not overwrite each other",
                ));
            }
        }
        let keep_runs = match self.keep_runs {
            None => default_keep_runs,
            Some(n @ 1..=1000) => n,
            Some(_) => return Err(field("keep_runs", "must be between 1 and 1000")),
        };
        Ok(Checked { definition: self.clone(), schedule, timeout, cell_timeout, keep_runs })
    }
}

/// Refuses an absolute path outside `home` and any `..` component; the runner checks again,
/// with the kernel's own path resolution, when it opens the file.
fn inside_home(name: &str, path: &str, home: &str) -> Result<(), FieldError> {
    let p = std::path::Path::new(path);
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(field(name, format!("{path:?} has '..'; give a path inside your home")));
    }
    if p.is_absolute() && !p.starts_with(home) {
        return Err(field(name, format!("{path:?} is outside your home directory {home}")));
    }
    Ok(())
}

/// The output path for run `run` of job `job` started at `at` (unix seconds), from the
/// template (see [`JobDefinition::output`]). Unknown `{names}` are an error.
pub fn expand_output(
    template: &str,
    job: &str,
    run: i64,
    at: i64,
    tz: chrono_tz::Tz,
    user: &str,
    stem: &str,
) -> Result<String, FieldError> {
    let when = chrono::DateTime::from_timestamp(at, 0).unwrap_or_default().with_timezone(&tz);
    let (date, time, run) = (when.format("%Y-%m-%d").to_string(), when.format("%H%M%S").to_string(), run.to_string());
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(field("output", "has a '{' without its '}'"));
        };
        let name = &rest[open + 1..open + close];
        out.push_str(match name {
            "job" => job,
            "run" => &run,
            "date" => &date,
            "time" => &time,
            "user" => user,
            "stem" => stem,
            other => {
                return Err(field(
                    "output",
                    format!("{{{other}}} is not a template variable; use {{job}} {{run}} {{date}} {{time}} {{user}} {{stem}}"),
                ));
            }
        });
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn timezone(name: &str) -> Result<chrono_tz::Tz, FieldError> {
    chrono_tz::Tz::from_str(name.trim()).map_err(|_| {
        field(
            "timezone",
            format!("{name:?} is not an IANA time zone; write e.g. UTC, Europe/Berlin or America/New_York"),
        )
    })
}

/// A parsed schedule: a cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    /// The time zone.
    pub tz: chrono_tz::Tz,
}

impl Schedule {
    /// Parses `expr` in time zone `tz`; errors name the field (`schedule` or `timezone`).
    pub fn parse(expr: &str, tz: &str) -> Result<Self, FieldError> {
        let tz = timezone(tz)?;
        let cron = croner::Cron::from_str(expr).map_err(|e| {
            field(
                "schedule",
                format!("{expr:?} is not a cron expression ({e}); write e.g. \"0 6 * * *\" for 06:00 every day"),
            )
        })?;
        let s = Self { cron, tz };
        // A pattern that never matches (31 February) is refused now, not discovered later.
        if s.next_after(Utc::now().timestamp()).is_none() {
            return Err(field("schedule", format!("{expr:?} never comes")));
        }
        Ok(s)
    }

    /// The first occurrence strictly after `t` (unix seconds), in whole seconds.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let start = self.tz.timestamp_opt(t, 0).single()?;
        self.cron.find_next_occurrence(&start, false).ok().map(|d| d.timestamp())
    }

    /// The latest occurrence at or before `t` that is after `after`, and how many there are
    /// in `(after, t]` (counted up to 10 000).
    pub fn due_between(&self, after: i64, t: i64) -> (Option<i64>, u64) {
        let (mut latest, mut n) = (None, 0u64);
        let mut at = after;
        while n < 10_000 {
            match self.next_after(at) {
                Some(next) if next <= t => {
                    latest = Some(next);
                    n += 1;
                    at = next;
                }
                _ => break,
            }
        }
        (latest, n)
    }

    /// The schedule in words, e.g. "At 06:00 on every day" (croner's description).
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> JobDefinition {
        JobDefinition::from_json(v).expect("parses")
    }

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn checks_name_each_field() {
        let ok = def(json!({"notebook": "reports/daily.ipynb", "schedule": "0 6 * * *", "timezone": "Europe/Berlin"}));
        let c = ok.check("/home/ann", DAY, 20).expect("valid");
        assert_eq!((c.timeout, c.keep_runs), (DAY, 20));
        let err = |v: Value| def(v).check("/home/ann", DAY, 20).expect_err("invalid").to_string();
        assert!(
            err(json!({"notebook": "a.ipynb", "schedule": "61 * * * *"}))
                .starts_with("schedule: \"61 * * * *\" is not a cron expression")
        );
        assert!(
            err(json!({"notebook": "a.ipynb", "schedule": "0 6 * * *", "timezone": "Mars/Olympus"}))
                .starts_with("timezone: \"Mars/Olympus\" is not an IANA")
        );
        assert!(
            err(json!({"notebook": "a.ipynb", "timezone": "Nowhere"})).starts_with("timezone:"),
            "checked without a schedule too"
        );
        assert!(err(json!({"notebook": "a.ipynb", "schedule": "0 0 31 2 *"})).contains("never comes"));
        assert!(err(json!({"notebook": "../bob/a.ipynb"})).starts_with("notebook: \"../bob/a.ipynb\" has '..'"));
        assert!(err(json!({"notebook": "/home/bob/a.ipynb"})).contains("outside your home directory /home/ann"));
        assert!(err(json!({"notebook": "a.txt"})).contains("is not a notebook"));
        assert!(
            err(json!({"notebook": "a.ipynb", "timeout": "soon"})).starts_with("timeout: \"soon\" is not a duration")
        );
        assert!(err(json!({"notebook": "a.ipynb", "retries": 11})).starts_with("retries:"));
        assert!(err(json!({"notebook": "a.ipynb", "parameters": {"1x": 1}})).starts_with("parameters.1x:"));
        assert!(
            err(json!({"notebook": "a.ipynb", "output": "out/{nope}.ipynb"}))
                .contains("{nope} is not a template variable")
        );
        assert!(err(json!({"notebook": "a.ipynb", "output": "out/fixed.ipynb"})).contains("must contain {run}"));
        assert!(err(json!({"notebook": "a.ipynb", "output": "/etc/{run}.ipynb"})).contains("outside your home"));
        assert!(err(json!({"notebook": "a.ipynb", "keep_runs": 0})).starts_with("keep_runs:"));
        assert!(
            err(json!({"notebook": "a.ipynb", "parameters": {"big": "x".repeat(70_000)}}))
                .starts_with("parameters: are more than 64 KiB")
        );
        let e = JobDefinition::from_json(json!({"notebook": "a.ipynb", "shedule": "x"})).expect_err("typo");
        assert_eq!(e.field, "shedule");
        let e = JobDefinition::from_json(json!({"parameters": {}})).expect_err("missing");
        assert_eq!(e.field, "notebook");
        assert!(check_name("daily-report_2").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn schedules_follow_the_time_zone() {
        // 06:00 in Berlin is 05:00 UTC in winter (CET) and 04:00 UTC in summer (CEST).
        let s = Schedule::parse("0 6 * * *", "Europe/Berlin").expect("valid");
        let jan_1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap().timestamp();
        assert_eq!(s.next_after(jan_1), Some(Utc.with_ymd_and_hms(2026, 1, 1, 5, 0, 0).unwrap().timestamp()));
        let jul_1 = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap().timestamp();
        assert_eq!(s.next_after(jul_1), Some(Utc.with_ymd_and_hms(2026, 7, 1, 4, 0, 0).unwrap().timestamp()));
        let every_minute = Schedule::parse("* * * * *", "UTC").expect("valid");
        assert_eq!(every_minute.next_after(120), Some(180), "strictly after");
        assert_eq!(every_minute.due_between(0, 600), (Some(600), 10));
        assert_eq!(every_minute.due_between(600, 659), (None, 0));
        assert!(!s.describe().is_empty());
    }

    #[test]
    fn output_paths() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 6, 0, 5).unwrap().timestamp();
        let p =
            expand_output(DEFAULT_OUTPUT, "daily", 42, at, chrono_tz::Europe::Berlin, "ann", "report").expect("expand");
        assert_eq!(p, "notebook-runs/daily/daily-2026-12-01T070005-run42.ipynb");
        assert_eq!(
            expand_output("{user}/{stem}-{run}.ipynb", "j", 1, 0, chrono_tz::UTC, "ann", "r").expect("x"),
            "ann/r-1.ipynb"
        );
        assert!(expand_output("{job", "j", 1, 0, chrono_tz::UTC, "u", "s").is_err());
    }
}
