//! `hub run`: an admin runs a user's notebook headless, as that user, from a shell on the hub
//! host, with a progress line per cell on the terminal. The run goes through the same
//! launcher as the hub's jobs ([`hub_servers::runs`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hub_config::Config;
use hub_core::LinuxUser;
use hub_runner::spec::{CellStatus, Event, Outcome, RunInfo, RunSpec};
use hub_servers::limits::Enforcer;
use hub_servers::renewer::Renewer;
use hub_servers::runs::{RunLauncher, read_events};
use hub_servers::spawner::local::LocalSpawner;

/// What `hub run` was asked for.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The Linux user to run as.
    pub user: String,
    /// The notebook, relative to the user's home or absolute inside it.
    pub notebook: PathBuf,
    /// `(name, value)` parameters, typed already.
    pub parameters: Vec<(String, serde_json::Value)>,
    /// The kernelspec's name (default: the notebook's).
    pub kernel: Option<String>,
    /// The output path (default: `<notebook stem>.out.ipynb` beside the input).
    pub output: Option<PathBuf>,
    /// Limit for the whole run.
    pub timeout: Option<Duration>,
    /// Limit per cell.
    pub cell_timeout: Option<Duration>,
}

/// The output path `hub run` uses without `--output`: `<stem>.out.ipynb` beside the input.
pub fn default_output(notebook: &std::path::Path) -> PathBuf {
    let stem = notebook.file_stem().and_then(|s| s.to_str()).unwrap_or("notebook");
    notebook.with_file_name(format!("{stem}.out.ipynb"))
}

/// Runs the notebook and returns the exit status: 0 when every cell succeeded, 1 when a cell
/// failed, 2 when the run was refused before anything ran, 3 on a timeout, 4 when cancelled
/// (Ctrl-C or SIGTERM). Errors before the runner starts (no such user, the ticket) are `Err`.
pub async fn run_notebook(config: &Config, args: RunArgs) -> anyhow::Result<u8> {
    let user = LinuxUser::lookup_async(&args.user).await.with_context(|| format!("--user {}", args.user))?;
    if user.uid == 0 {
        anyhow::bail!("--user {}: refusing to run a notebook as UID 0; user code never runs as root", user.name);
    }
    let renewer = Arc::new(Renewer::new(config.kerberos.clone(), None));
    let spawner = Arc::new(LocalSpawner::new(Enforcer::detect(config.limits.any() || config.jobs.limits.any())));
    let exe = std::env::current_exe().context("cannot find the hub binary to start the runner")?;
    let launcher = RunLauncher::new(config.clone(), renewer.clone(), spawner, exe);
    let output = args.output.clone().unwrap_or_else(|| default_output(&args.notebook));
    let spec = RunSpec {
        notebook: args.notebook.clone(),
        output,
        parameters: args.parameters.clone(),
        kernel: args.kernel.clone(),
        timeout_s: args.timeout.map(|d| d.as_secs_f64()),
        cell_timeout_s: args.cell_timeout.map(|d| d.as_secs_f64()),
        startup_timeout_s: config.spawner.start_timeout.as_secs_f64(),
        jupyter_prefix: None,
        info: RunInfo { reason: "cli".into(), ..Default::default() },
    };
    let dir = config.hub.data_dir.join("runs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "");
    let id = hex::encode(rand::random::<[u8; 4]>());
    let log_path = dir.join(format!("cli-{}-{stamp}-{id}.log", user.name));
    let unit = format!("{}.run-cli-{id}", user.name);
    let (stop_timer, timer_stopped) = tokio::sync::oneshot::channel::<()>();
    let timer = tokio::spawn(renewer.clone().run_timer(async {
        let _ = timer_stopped.await;
    }));
    let started = launcher.start(&user, &spec, &unit, &log_path).await;
    let run = match started {
        Ok(r) => r,
        Err(e) => {
            let _ = stop_timer.send(());
            let _ = timer.await;
            anyhow::bail!("{e}");
        }
    };
    if let Some(t) = run.ticket {
        eprintln!(
            "hub run: ticket valid until {}",
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t.valid_until.max(0) as u64))
        );
    }
    let mut exited = run.process.exited();
    let (mut offset, mut last) = (0u64, None);
    let mut saw_start = false;
    let mut cancelled = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let done = exited.borrow().is_some();
        let (events, other, at) = read_events(&run.log_path, offset);
        offset = at;
        for line in other {
            eprintln!("{line}");
        }
        for e in events {
            saw_start |= matches!(e, Event::Started { .. });
            print_progress(&e);
            if matches!(e, Event::Finished { .. }) {
                last = Some(e);
            }
        }
        if done {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = exited.changed() => {}
            _ = interrupt.recv(), if !cancelled => { cancelled = true; cancel(&*run.process); }
            _ = terminate.recv(), if !cancelled => { cancelled = true; cancel(&*run.process); }
        }
    }
    // Whatever the run left behind (its cgroup, stray processes) goes.
    let how = run.process.stop(config.spawner.term_timeout).await;
    launcher.finish(&user);
    let _ = stop_timer.send(());
    let _ = timer.await;
    Ok(match last {
        Some(Event::Finished { outcome, .. }) if !saw_start && outcome != Outcome::Succeeded => {
            hub_runner::run::EXIT_REFUSED
        }
        Some(Event::Finished { outcome, .. }) => outcome.exit_code(),
        _ => {
            eprintln!("hub run: the runner ended without a result ({how}); its log is {}", run.log_path.display());
            1
        }
    })
}

fn cancel(process: &dyn hub_servers::spawner::ServerProcess) {
    eprintln!("hub run: cancelling (the kernel is interrupted and the output written)");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(process.pid() as i32), nix::sys::signal::Signal::SIGTERM);
}

/// One line on the terminal per event.
fn print_progress(e: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = match e {
        Event::Started { kernel, cells, output } => {
            writeln!(out, "running {cells} code cell(s) with kernel {kernel}; output: {}", output.display())
        }
        Event::KernelReady { pid, startup_ms } => writeln!(out, "kernel ready (pid {pid}) in {startup_ms} ms"),
        Event::Cell { number, of, status, duration_ms, first_line, .. } => {
            let s = match status {
                CellStatus::Ok => "ok",
                CellStatus::Error => "FAILED",
                CellStatus::TimedOut => "TIMED OUT",
                CellStatus::Cancelled => "cancelled",
            };
            writeln!(out, "[{number:>3}/{of}] {s:<9} {:>7.2} s  {first_line}", *duration_ms as f64 / 1000.0)
        }
        Event::Finished { outcome, message, cells_run, duration_ms, evalue, ename, .. } => {
            let secs = *duration_ms as f64 / 1000.0;
            match outcome {
                Outcome::Succeeded => writeln!(out, "succeeded: {cells_run} cell(s) in {secs:.2} s"),
                _ => {
                    let detail = match (ename, evalue) {
                        (Some(n), Some(v)) if !message.contains(n.as_str()) => format!(" ({n}: {v})"),
                        _ => String::new(),
                    };
                    let after = if *cells_run > 0 { format!(" after {secs:.2} s") } else { String::new() };
                    writeln!(out, "{}: {message}{detail}{after}", outcome.as_str().replace('_', " "))
                }
            }
        }
    };
}
