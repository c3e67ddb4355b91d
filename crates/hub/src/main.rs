//! The `hub` command: `hub migrate`, `hub serve`, `hub example-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hub::config::{Config, DEFAULT_PATH, EXAMPLE};

/// A multi-user notebook hub for Kerberos-secured clusters.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Path of hub.toml.
    #[arg(long, global = true, env = "HUB_CONFIG", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Log format on stderr: `text` for people, `json` (one object per line, with the span
    /// and event fields) for log shippers.
    #[arg(long, global = true, env = "HUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if needed and apply pending migrations (a no-op when current).
    Migrate,
    /// Serve the hub on [hub] bind until SIGTERM or Ctrl-C.
    Serve,
    /// Print the commented example hub.toml.
    ExampleConfig,
    /// Check hub.toml and print the validated configuration.
    CheckConfig,
    /// Run a user's notebook headless, as that user, and write the executed notebook.
    ///
    /// Exit status: 0 when every cell succeeded, 1 when a cell failed, 2 when the run was
    /// refused before anything ran, 3 on a timeout, 4 when cancelled.
    Run(RunCmd),
    /// The node agent a Slurm server job runs as the user (not run by hand): starts the
    /// server behind a TLS listener and reports to the hub.
    #[command(hide = true)]
    NodeAgent {
        /// `<hub_url>/hub/api/spawner/report`.
        #[arg(long)]
        report_url: String,
        /// The server's unit (`user` or `user@server`).
        #[arg(long)]
        server: String,
        /// The server's command line.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// The notebook runner, started by the hub as the notebook's owner (not run by hand).
    #[command(hide = true)]
    Runner {
        /// Write this file of the caller's home to stdout instead of running a notebook.
        #[arg(long)]
        cat: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunCmd {
    /// The Linux user to run as.
    #[arg(long)]
    user: String,
    /// The notebook: relative to the user's home, or absolute inside it.
    notebook: PathBuf,
    /// A parameter, `name=value` (repeatable), injected papermill-style. Values are typed:
    /// integers, floats, true/false, none, JSON for text starting with [ { or ", else text.
    #[arg(short = 'p', long = "parameter", value_name = "NAME=VALUE", value_parser = parse_parameter)]
    parameters: Vec<(String, serde_json::Value)>,
    /// The kernelspec to run (default: the one the notebook names, else python3).
    #[arg(long)]
    kernel: Option<String>,
    /// Where to write the executed notebook, relative to the user's home (default:
    /// <notebook>.out.ipynb beside the input). Written after every cell.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Time limit for the whole run, e.g. 2h, 30m, 90s.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Time limit for each cell, e.g. 10m.
    #[arg(long, value_parser = humantime::parse_duration)]
    cell_timeout: Option<std::time::Duration>,
}

fn parse_parameter(s: &str) -> Result<(String, serde_json::Value), String> {
    hub::runner::params::parse_cli(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hub::logging::init(cli.log_format == LogFormat::Json);
    if let Command::ExampleConfig = cli.command {
        print!("{EXAMPLE}");
        return ExitCode::SUCCESS;
    }
    if let Command::Runner { cat } = &cli.command {
        // As the notebook's owner, with no hub.toml to read.
        return ExitCode::from(match cat {
            Some(path) => hub::runner::cat(path),
            None => hub::runner::main(),
        });
    }
    if let Command::NodeAgent { report_url, server, argv } = &cli.command {
        // As the user, on a cluster node, with no hub.toml there.
        let args =
            hub::node_agent::AgentArgs { report_url: report_url.clone(), server: server.clone(), argv: argv.clone() };
        return ExitCode::from(hub::node_agent::main(args));
    }
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hub: {e}");
            return ExitCode::from(2);
        }
    };
    // GSS-API (Kerberos and SPNEGO logins) reads KRB5_CONFIG from the environment; set it
    // while the process has one thread, before the runtime starts any.
    if let Some(k) = &config.kerberos.krb5_config {
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("KRB5_CONFIG", k) };
    }
    // One thread runs the hub (with tokio's blocking pool for PAM, GSS-API, NSS lookups and
    // file work). Measured on the proxy path (bench/vs_jupyterhub.py, docs/benchmarks.md), the
    // single-threaded scheduler proxies ~1.5x the requests per second of the multi-threaded
    // one with the same number of threads: every proxied request hops between the browser's
    // connection task and the server's, and those wake-ups stay on one thread.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Migrate => {
                let n = hub::migrate(&config).await?;
                if n == 0 {
                    println!("database {} is up to date", hub::store::redact_url(&config.hub.database_url));
                } else {
                    println!("applied {n} migration(s) to {}", hub::store::redact_url(&config.hub.database_url));
                }
                Ok(0)
            }
            Command::Serve => {
                let listener = hub::listen(&config).await?;
                hub::serve(config, listener, shutdown_signal()).await.map(|()| 0)
            }
            Command::CheckConfig => {
                // Config's Debug shows every section with secrets redacted.
                println!("{config:#?}");
                Ok(0)
            }
            Command::Run(r) => {
                let args = hub::run_cli::RunArgs {
                    user: r.user,
                    notebook: r.notebook,
                    parameters: r.parameters,
                    kernel: r.kernel,
                    output: r.output,
                    timeout: r.timeout,
                    cell_timeout: r.cell_timeout,
                };
                hub::run_cli::run_notebook(&config, args).await
            }
            Command::ExampleConfig | Command::Runner { .. } | Command::NodeAgent { .. } => Ok(0u8),
        }
    });
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
