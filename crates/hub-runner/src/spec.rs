//! What the hub tells a runner ([`RunSpec`], in the environment) and what the runner tells
//! the hub back ([`Event`], one line each on its stdout, which is the run's log).
//!
//! The runner is the `hub` binary itself (`hub runner`), started by the hub under the
//! owner's UID. The spec holds no secret: the kernel's key is made by the runner.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The environment variable that carries the [`RunSpec`] as JSON. The runner removes it
/// from its environment before starting the kernel.
pub const SPEC_ENV: &str = "HUB_RUN_SPEC";

/// The prefix of an [`Event`] line in the run's log; the rest of the line is the event as
/// JSON. Lines without it are the kernel's or the runner's own output.
pub const EVENT_PREFIX: &str = "@hub-run ";

/// One run of one notebook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSpec {
    /// The input notebook: relative to the owner's home, or absolute inside it.
    pub notebook: PathBuf,
    /// Where the executed notebook is written (replaced atomically after each cell): relative
    /// to the owner's home, or absolute inside it. Missing directories under the home are
    /// created.
    pub output: PathBuf,
    /// Parameters, injected papermill-style, in this order: `(name, value)`.
    #[serde(default)]
    pub parameters: Vec<(String, Value)>,
    /// The kernelspec's name; `None` for the notebook's own (`metadata.kernelspec.name`), or
    /// `python3` when it names none.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Limit for the whole run, in seconds (`None`: no limit).
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Limit for each cell, in seconds (`None`: no limit).
    #[serde(default)]
    pub cell_timeout_s: Option<f64>,
    /// How long the kernel may take to answer its first `kernel_info_request`, in seconds.
    #[serde(default = "default_startup_timeout")]
    pub startup_timeout_s: f64,
    /// The Python environment JupyterLab runs from (`sys.prefix`, e.g. `/opt/jupyter`): its
    /// `share/jupyter` is searched for kernelspecs, and a kernelspec whose program is `python`
    /// or `python3` runs its `bin/python`, as jupyter_client does for the native kernel.
    #[serde(default)]
    pub jupyter_prefix: Option<PathBuf>,
    /// What the run is, recorded in the output's metadata.
    #[serde(default)]
    pub info: RunInfo,
}

fn default_startup_timeout() -> f64 {
    60.0
}

/// The run's identity, recorded in the output notebook's `metadata.hub`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// The job's name, for a job's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The run's id in the hub's store, for a job's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    /// Why it started: `cli`, `manual`, `schedule`, `retry`, `catch-up`.
    #[serde(default)]
    pub reason: String,
    /// The owner's Kerberos principal, when the hub renews tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every code cell ran without an error.
    Succeeded,
    /// A cell raised an error, the kernel died, or the run could not start.
    Failed,
    /// The run or a cell went past its time limit.
    TimedOut,
    /// The run was cancelled (SIGTERM to the runner).
    Cancelled,
}

impl Outcome {
    /// `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// The runner's exit status for this outcome: 0, 1, 3, 4 (2 is a run refused before
    /// anything ran, which is also [`Outcome::Failed`]).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed => 1,
            Outcome::TimedOut => 3,
            Outcome::Cancelled => 4,
        }
    }
}

/// How one code cell ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// `execute_reply` with `status: ok`.
    Ok,
    /// `execute_reply` with `status: error`.
    Error,
    /// Interrupted at the time limit.
    TimedOut,
    /// Interrupted by a cancel.
    Cancelled,
}

/// What the runner reports, one JSON object per line after [`EVENT_PREFIX`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The notebook was read and the output path is writable; the kernel is starting.
    Started {
        /// The kernelspec's name.
        kernel: String,
        /// Number of code cells to run (the injected-parameters cell included).
        cells: usize,
        /// The output notebook, absolute.
        output: PathBuf,
    },
    /// The kernel answered `kernel_info_request`.
    KernelReady {
        /// The kernel's process id.
        pid: u32,
        /// From starting the process to the `kernel_info_reply`, in milliseconds.
        startup_ms: u64,
    },
    /// A code cell finished; the output notebook on disk includes it.
    Cell {
        /// 1-based number among the code cells.
        number: usize,
        /// Number of code cells.
        of: usize,
        /// 0-based index among all the notebook's cells.
        index: usize,
        /// How it ended.
        status: CellStatus,
        /// Wall time, in milliseconds.
        duration_ms: u64,
        /// The source's first non-blank line, shortened to 60 characters.
        #[serde(default)]
        first_line: String,
    },
    /// The run is over; this is the runner's last line.
    Finished {
        /// How it ended.
        outcome: Outcome,
        /// What went wrong, in a sentence (empty on success).
        #[serde(default)]
        message: String,
        /// 0-based index of the cell that failed or timed out, among all cells.
        #[serde(default)]
        failed_cell: Option<usize>,
        /// The error's name (`ZeroDivisionError`), for a cell error.
        #[serde(default)]
        ename: Option<String>,
        /// The error's value, for a cell error.
        #[serde(default)]
        evalue: Option<String>,
        /// The traceback lines (with the kernel's ANSI colours), for a cell error.
        #[serde(default)]
        traceback: Vec<String>,
        /// Code cells that ran.
        cells_run: usize,
        /// Wall time of the whole run, in milliseconds.
        duration_ms: u64,
        /// CPU time (user + system) of the runner itself, in milliseconds.
        #[serde(default)]
        runner_cpu_ms: u64,
        /// CPU time of the kernel and what it started (the runner's waited-for children), in
        /// milliseconds.
        #[serde(default)]
        kernel_cpu_ms: u64,
    },
}

impl Event {
    /// The event as one log line (prefix, JSON, no newline).
    pub fn to_line(&self) -> String {
        format!("{EVENT_PREFIX}{}", serde_json::to_string(self).unwrap_or_default())
    }

    /// The event on `line`, if it is an event line.
    pub fn parse_line(line: &str) -> Option<Event> {
        serde_json::from_str(line.strip_prefix(EVENT_PREFIX)?.trim_end()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_a_log_line() {
        let e = Event::Finished {
            outcome: Outcome::Failed,
            message: "cell 3 raised ZeroDivisionError".into(),
            failed_cell: Some(3),
            ename: Some("ZeroDivisionError".into()),
            evalue: Some("division by zero".into()),
            traceback: vec!["line".into()],
            cells_run: 3,
            duration_ms: 12,
            runner_cpu_ms: 3,
            kernel_cpu_ms: 9,
        };
        let line = e.to_line();
        assert!(line.starts_with("@hub-run {\"event\":\"finished\""), "{line}");
        assert_eq!(Event::parse_line(&line), Some(e));
        assert_eq!(Event::parse_line("Traceback (most recent call last):"), None);
        assert_eq!(Event::parse_line("@hub-run {not json"), None);
    }

    #[test]
    fn a_spec_needs_only_the_two_paths() {
        let s: RunSpec = serde_json::from_str(r#"{"notebook":"a.ipynb","output":"b.ipynb"}"#).expect("spec");
        assert_eq!(s.startup_timeout_s, 60.0);
        assert!(s.parameters.is_empty() && s.kernel.is_none() && s.timeout_s.is_none());
    }
}
