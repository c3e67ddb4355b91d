//! `hub-runner`: runs one notebook headless, as its owner, over the Jupyter messaging protocol.
//!
//! The hub starts `hub runner` (this crate's [`main`]) under the owner's UID, GID and groups,
//! in their limits, with their environment and a [`spec::RunSpec`] in `HUB_RUN_SPEC`. The
//! runner does all the file I/O with the owner's credentials ([`home`]), finds the kernelspec
//! ([`kernelspec`]), injects the parameters ([`params`]) into the notebook ([`notebook`]),
//! drives the kernel over ZeroMQ ([`kernel`]) and writes the output after every cell. It
//! reports progress as [`spec::Event`] lines on stdout, and exits 0 when every cell succeeded
//! (see [`spec::Outcome::exit_code`]; 2 when the run was refused before anything ran).
//!
//! No jupyter-server, no Python orchestration: the only Python is the kernel.

pub mod home;
pub mod kernel;
pub mod kernelspec;
pub mod notebook;
pub mod params;
pub mod run;
pub mod spec;

use spec::{Event, Outcome, RunSpec, SPEC_ENV};

/// `hub runner --cat PATH`: writes the file at `PATH` (inside `$HOME`, read with
/// [`home::Home`]'s rules: no way out of the home, the caller's own regular file) to stdout.
/// The hub runs it as a file's owner to serve a run's output without reading it as root.
pub fn cat(path: &std::path::Path) -> u8 {
    use std::io::Write;
    let Some(home) = std::env::var_os("HOME") else {
        eprintln!("hub runner: no HOME");
        return 2;
    };
    match home::Home::open(std::path::Path::new(&home)).and_then(|h| h.read(path)) {
        Ok(bytes) => match std::io::stdout().lock().write_all(&bytes) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("hub runner: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("hub runner: {e}");
            1
        }
    }
}

/// The runner's entry point: reads the spec from `HUB_RUN_SPEC`, runs, returns the exit
/// status. SIGTERM or SIGINT cancels the run (the kernel is interrupted, the output written
/// with the cancel recorded). Call it while the process has one thread.
pub fn main() -> u8 {
    let spec: RunSpec = match std::env::var(SPEC_ENV)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "hub runner: no valid run spec in {SPEC_ENV} ({e}); this command is started by the hub, not by hand"
            );
            return run::EXIT_REFUSED;
        }
    };
    // SAFETY: the process has one thread (the runtime is not started yet).
    unsafe { std::env::remove_var(SPEC_ENV) };
    // Processes the kernel leaves behind (daemons, double forks) become the runner's
    // children, so that they can be found and stopped when the run ends.
    // SAFETY: a plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hub runner: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(async move {
        let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("hub runner: cancelled by a signal");
            let _ = cancel_tx.send(true);
        });
        let (event, code) = run::run(&spec, &env, cancel).await;
        if let Event::Finished { outcome, message, .. } = &event
            && *outcome != Outcome::Succeeded
        {
            eprintln!("hub runner: {}: {message}", outcome.as_str());
        }
        code
    });
    stop_leftovers();
    code
}

/// Kills what the kernel left running (the runner's remaining descendants, which are the
/// owner's own processes) and reaps them, so that no zombie outlives the run.
fn stop_leftovers() {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, waitpid};
    for pid in hub_core::process::descendants(std::process::id()) {
        let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    // Every child was just sent SIGKILL, so each wait returns soon; ECHILD ends the loop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match waitpid(None, Some(WaitPidFlag::__WALL)) {
            Ok(_) => continue,
            Err(_) => break,
        }
    }
}
