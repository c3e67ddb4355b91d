//! One run: read the notebook, inject the parameters, start the kernel, execute the code
//! cells in order, write the output after each, report [`Event`]s on stdout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::home::{Home, OutputFile};
use crate::kernel::{CellError, Interrupted, Kernel, Outputs};
use crate::kernelspec::{self, KernelSpec};
use crate::notebook::{Notebook, RAISES_TAG};
use crate::params;
use crate::spec::{CellStatus, Event, Outcome, RunSpec};

/// The runner's exit status when the run was refused before anything ran (bad notebook,
/// path, kernel name or parameter).
pub const EXIT_REFUSED: u8 = 2;

/// Writes an event line on stdout (the run's log).
pub fn emit(e: &Event) {
    println!("{}", e.to_line());
}

/// Why the cells stopped: outcome, message, failing cell, its error.
type Failure = (Outcome, String, Option<usize>, Option<CellError>);

/// A run, ready to execute: everything checked, the output written once.
struct Prepared {
    notebook: Notebook,
    kernelspec: KernelSpec,
    output: OutputFile,
    cwd: PathBuf,
}

/// Does the run described by `spec` in the environment `env` (the runner's own, which the
/// kernel inherits), stopping early when `cancel` turns true. Returns the `finished` event
/// (already emitted) and the exit status.
pub async fn run(spec: &RunSpec, env: &[(String, String)], mut cancel: watch::Receiver<bool>) -> (Event, u8) {
    let clock = Instant::now();
    let started_at = SystemTime::now();
    let mut p = match prepare(spec, env, started_at) {
        Ok(p) => p,
        Err(message) => {
            let e = finished(Outcome::Failed, message, None, None, 0, clock);
            emit(&e);
            return (e, EXIT_REFUSED);
        }
    };
    let code_cells = p.notebook.code_cells();
    emit(&Event::Started { kernel: p.kernelspec.name.clone(), cells: code_cells.len(), output: p.output.path.clone() });
    let run_deadline = spec.timeout_s.map(|s| clock + Duration::from_secs_f64(s.max(0.0)));
    let runtime_base = env
        .iter()
        .find(|(k, _)| k == "XDG_RUNTIME_DIR")
        .map(|(_, v)| PathBuf::from(v))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let startup = Duration::from_secs_f64(spec.startup_timeout_s.max(1.0));
    let kstart = Instant::now();
    let kernel = tokio::select! {
        k = Kernel::start(&p.kernelspec, &p.cwd, env, &runtime_base, startup) => k,
        _ = cancel.wait_for(|c| *c) => {
            let e = conclude(&mut p, Outcome::Cancelled, "cancelled while the kernel was starting".into(), None, None, 0, clock);
            return (e, Outcome::Cancelled.exit_code());
        }
    };
    let mut kernel = match kernel {
        Ok(k) => k,
        Err(err) => {
            let message = format!("{err} (kernel {:?}; its output is in the run's log)", p.kernelspec.name);
            let e = conclude(&mut p, Outcome::Failed, message, None, None, 0, clock);
            return (e, Outcome::Failed.exit_code());
        }
    };
    emit(&Event::KernelReady { pid: kernel.pid(), startup_ms: kstart.elapsed().as_millis() as u64 });

    let mut displays: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    let mut cells_run = 0;
    let mut failure: Option<Failure> = None;
    for (n, &index) in code_cells.iter().enumerate() {
        let number = n + 1;
        if *cancel.borrow() {
            failure = Some((
                Outcome::Cancelled,
                format!("cancelled before code cell {number} of {}", code_cells.len()),
                None,
                None,
            ));
            break;
        }
        if run_deadline.is_some_and(|d| Instant::now() >= d) {
            let message = format!(
                "the run's time limit ({}) passed before code cell {number} of {}",
                limit(spec.timeout_s),
                code_cells.len()
            );
            failure = Some((Outcome::TimedOut, message, None, None));
            break;
        }
        let source = p.notebook.source(index);
        let cell_clock = Instant::now();
        let cell_started = SystemTime::now();
        let cell_deadline = spec.cell_timeout_s.map(|s| cell_clock + Duration::from_secs_f64(s.max(0.0)));
        let deadline = match (run_deadline, cell_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut outputs = Outputs::default();
        // nbclient leaves empty cells alone: nothing runs, nothing is counted.
        let result = if source.trim().is_empty() {
            Ok(Default::default())
        } else {
            kernel.execute(&source, deadline, &mut cancel, &mut |m| outputs.add(m)).await
        };
        cells_run += 1;
        let (status, execution_count) = match &result {
            Ok(r) if r.status == "ok" || r.status.is_empty() => (CellStatus::Ok, r.execution_count),
            // A cell tagged raises-exception is expected to fail: its error is kept, the run
            // goes on (as nbclient and papermill do).
            Ok(r) if r.status == "error" && p.notebook.has_tag(index, RAISES_TAG) => {
                (CellStatus::Ok, r.execution_count)
            }
            Ok(r) => (CellStatus::Error, r.execution_count),
            Err(Interrupted::TimedOut) => (CellStatus::TimedOut, None),
            Err(Interrupted::Cancelled) => (CellStatus::Cancelled, None),
            Err(Interrupted::Kernel(_)) => (CellStatus::Error, None),
        };
        let hub = json!({
            "status": match status {
                CellStatus::Ok => "succeeded",
                CellStatus::Error => "failed",
                CellStatus::TimedOut => "timed_out",
                CellStatus::Cancelled => "cancelled",
            },
            "start_time": rfc3339(cell_started),
            "end_time": rfc3339(SystemTime::now()),
            "duration_s": cell_clock.elapsed().as_secs_f64(),
        });
        for (id, at) in &outputs.display_ids {
            displays.entry(id.clone()).or_default().push((index, *at));
        }
        let updates = std::mem::take(&mut outputs.updates);
        let cell_error = outputs.error.clone();
        p.notebook.record_cell(index, outputs.list, execution_count, hub);
        for (id, data, metadata) in updates {
            for &(cell, at) in displays.get(&id).map(Vec::as_slice).unwrap_or_default() {
                if let Some(o) = p.notebook.outputs_mut(cell).and_then(|o| o.get_mut(at)) {
                    o["data"] = data.clone();
                    o["metadata"] = metadata.clone();
                }
            }
        }
        let duration_ms = cell_clock.elapsed().as_millis() as u64;
        if let Err(e) = p.output.write(&p.notebook.to_bytes()) {
            failure = Some((
                Outcome::Failed,
                format!("cannot write the output {}: {e}", p.output.path.display()),
                Some(index),
                None,
            ));
            break;
        }
        emit(&Event::Cell {
            number,
            of: code_cells.len(),
            index,
            status,
            duration_ms,
            first_line: first_line(&source),
        });
        failure = match result {
            Ok(_) if status == CellStatus::Ok => None,
            Ok(r) => {
                let err = r.error.or(cell_error);
                let what =
                    err.as_ref().map(|(n, v, _)| format!("{n}: {v}")).unwrap_or_else(|| format!("status {}", r.status));
                Some((
                    Outcome::Failed,
                    format!("code cell {number} of {} raised {what}", code_cells.len()),
                    Some(index),
                    err,
                ))
            }
            Err(Interrupted::TimedOut) => {
                let which = if cell_deadline == deadline && spec.cell_timeout_s.is_some() {
                    format!("the cell time limit ({})", limit(spec.cell_timeout_s))
                } else {
                    format!("the run's time limit ({})", limit(spec.timeout_s))
                };
                Some((
                    Outcome::TimedOut,
                    format!(
                        "code cell {number} of {} did not finish within {which}; it was interrupted",
                        code_cells.len()
                    ),
                    Some(index),
                    cell_error,
                ))
            }
            Err(Interrupted::Cancelled) => Some((
                Outcome::Cancelled,
                format!("cancelled during code cell {number} of {}", code_cells.len()),
                Some(index),
                None,
            )),
            Err(Interrupted::Kernel(e)) => Some((
                Outcome::Failed,
                format!("{e} during code cell {number} of {}", code_cells.len()),
                Some(index),
                None,
            )),
        };
        if failure.is_some() {
            break;
        }
    }
    let how = kernel.shutdown(Duration::from_secs(5)).await;
    eprintln!("hub runner: kernel stopped: {how}");
    let (outcome, message, failed_cell, err) = failure.unwrap_or((Outcome::Succeeded, String::new(), None, None));
    let e = conclude(&mut p, outcome, message, failed_cell, err, cells_run, clock);
    (e, outcome.exit_code())
}

/// Records the end in the notebook (metadata, the error banner), writes it a last time,
/// and emits the `finished` event.
fn conclude(
    p: &mut Prepared,
    outcome: Outcome,
    message: String,
    failed_cell: Option<usize>,
    err: Option<CellError>,
    cells_run: usize,
    clock: Instant,
) -> Event {
    let meta = p.notebook.metadata_mut();
    if let Some(hub) = meta.get_mut("hub").and_then(Value::as_object_mut) {
        hub.insert("state".into(), json!(outcome.as_str()));
        hub.insert("end_time".into(), json!(rfc3339(SystemTime::now())));
        hub.insert("duration_s".into(), json!(clock.elapsed().as_secs_f64()));
        hub.insert("failed_cell".into(), failed_cell.map_or(Value::Null, Value::from));
        hub.insert("message".into(), json!(message));
    }
    if outcome != Outcome::Succeeded {
        let title = match outcome {
            Outcome::TimedOut => "The run timed out",
            Outcome::Cancelled => "The run was cancelled",
            _ => "The run failed",
        };
        p.notebook.add_error_banner(title, failed_cell, &message);
    }
    let mut message = message;
    if let Err(e) = p.output.write_durable(&p.notebook.to_bytes()) {
        message = format!("{message}; and the output {} could not be written: {e}", p.output.path.display());
    }
    let e = finished(outcome, message, failed_cell, err, cells_run, clock);
    emit(&e);
    e
}

fn finished(
    outcome: Outcome,
    message: String,
    failed_cell: Option<usize>,
    err: Option<CellError>,
    cells_run: usize,
    clock: Instant,
) -> Event {
    let (ename, evalue, traceback) = match err {
        Some((n, v, tb)) => (Some(n), Some(v), tb),
        None => (None, None, Vec::new()),
    };
    Event::Finished {
        outcome,
        message,
        failed_cell,
        ename,
        evalue,
        traceback,
        cells_run,
        duration_ms: clock.elapsed().as_millis() as u64,
        runner_cpu_ms: cpu_ms(libc::RUSAGE_SELF),
        kernel_cpu_ms: cpu_ms(libc::RUSAGE_CHILDREN),
    }
}

/// User + system CPU time of `who` (`RUSAGE_SELF` or `RUSAGE_CHILDREN`), in milliseconds.
fn cpu_ms(who: libc::c_int) -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a plain syscall with a pointer to a live struct.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(u.ru_utime) + ms(u.ru_stime)
}

/// Reads and checks everything before a kernel starts; the error is the message for the
/// person who asked for the run.
fn prepare(spec: &RunSpec, env: &[(String, String)], started_at: SystemTime) -> Result<Prepared, String> {
    let lookup = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
    let home_path = lookup("HOME").ok_or("the runner has no HOME")?;
    let home = Home::open(Path::new(&home_path)).map_err(|e| e.to_string())?;
    let input_rel = home.relative(&spec.notebook).map_err(|e| e.to_string())?;
    let output_rel = home.relative(&spec.output).map_err(|e| e.to_string())?;
    if normalize(&input_rel) == normalize(&output_rel) {
        return Err(format!(
            "the output {} would replace the notebook itself; choose another output path",
            spec.output.display()
        ));
    }
    let bytes = home.read(&spec.notebook).map_err(|e| e.to_string())?;
    let mut notebook =
        Notebook::parse(&bytes).map_err(|e| format!("{}: {e}", home.path().join(&input_rel).display()))?;
    let name =
        spec.kernel.clone().or_else(|| notebook.kernel_name().map(str::to_string)).unwrap_or_else(|| "python3".into());
    let dirs = kernelspec::data_dirs(&lookup, home.path(), spec.jupyter_prefix.as_deref());
    let ks = kernelspec::find(&name, &dirs, spec.jupyter_prefix.as_deref()).map_err(|e| e.to_string())?;
    notebook.reset();
    if !spec.parameters.is_empty() {
        let src = params::render(&ks.language, &spec.parameters).map_err(|e| e.to_string())?;
        notebook.inject_parameters(&src);
    }
    let parameters: serde_json::Map<String, Value> = spec.parameters.iter().cloned().collect();
    notebook.metadata_mut().insert(
        "hub".into(),
        json!({
            "job": spec.info.job,
            "run_id": spec.info.run_id,
            "reason": spec.info.reason,
            "principal": spec.info.principal,
            "kernel": ks.name,
            "parameters": parameters,
            "input_path": home.path().join(&input_rel),
            "start_time": rfc3339(started_at),
            "state": "running",
        }),
    );
    let output = home.output(&spec.output).map_err(|e| e.to_string())?;
    output
        .write(&notebook.to_bytes())
        .map_err(|e| format!("cannot write the output {}: {e}", output.path.display()))?;
    let cwd = home.path().join(input_rel.parent().unwrap_or(Path::new("")));
    Ok(Prepared { notebook, kernelspec: ks, output, cwd })
}

/// The first non-blank line of a cell's source, at most 60 characters, for progress lines.
fn first_line(source: &str) -> String {
    let line = source.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    match line.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// `p` without `.` components (lexically), to compare two paths under the home.
fn normalize(p: &Path) -> PathBuf {
    p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

fn limit(s: Option<f64>) -> String {
    s.map(|s| humantime::format_duration(Duration::from_secs_f64(s.max(0.0).round())).to_string()).unwrap_or_default()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
