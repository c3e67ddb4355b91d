//! `[spawner.slurm]`: running users' servers as Slurm batch jobs on cluster nodes
//! (`[spawner] kind = "slurm"`).
//!
//! Option names follow sbatch(1) (Slurm's documentation, <https://slurm.schedmd.com/sbatch.html>).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};
use crate::template::Template;

/// The job script the hub writes when `script` is not set: the environment, then the node
/// agent, which starts the server.
pub const DEFAULT_SCRIPT: &str = "#!/bin/sh\n# {job_name}: the hub's server for {username}\n{env}\nexec {cmd}\n";

/// Placeholders a job script may use.
pub const SCRIPT_VARS: &[&str] = &["username", "server_name", "job_name", "env", "cmd"];

/// `[profiles.slurm]`: a profile's sbatch resources. `partition` and `time_limit` replace
/// `[spawner.slurm]`'s where set; `extra_options` come after `[spawner.slurm]`'s (sbatch takes
/// the last of a repeated option).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlurmProfile {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time`, in whole minutes.
    pub time_limit: Option<std::time::Duration>,
    /// More sbatch arguments.
    pub extra_options: Vec<String>,
}

/// `[spawner.slurm]`.
#[derive(Clone, Debug)]
pub struct SlurmConfig {
    /// Directory of Slurm's commands (`bin_dir`, default `/usr/bin`): `sbatch`, `squeue`,
    /// `scancel` and `sinfo` are run from there.
    pub bin_dir: PathBuf,
    /// `SLURM_CONF` for those commands and the jobs (`slurm_conf`; unset: Slurm's own default,
    /// `/etc/slurm/slurm.conf` or configless).
    pub slurm_conf: Option<PathBuf>,
    /// The URL the nodes reach the hub at (`hub_url`, required), e.g. `http://login1:8000`:
    /// each server's node agent reports its port and certificate to
    /// `<hub_url>/hub/api/spawner/report`.
    pub hub_url: String,
    /// The `hub` binary as the nodes see it (`agent`, default: this hub's own binary's path;
    /// the nodes must have the same build at that path).
    pub agent: Option<PathBuf>,
    /// `--partition` (`partition`; unset: the cluster's default partition).
    pub partition: Option<String>,
    /// `--time` in whole minutes, from `time_limit` (a duration, e.g. "8h"; unset: the
    /// partition's default).
    pub time_limit: Option<Duration>,
    /// More `sbatch` options, one argument each (`extra_options`, e.g. `["--qos=interactive"]`).
    pub extra_options: Vec<String>,
    /// The job script (`script`), with `{username}`, `{server_name}`, `{job_name}`, `{env}`
    /// (one `export NAME='value'` line per variable) and `{cmd}` (the node agent's command
    /// line); every value is shell-quoted when it is put in. Must contain `{cmd}`.
    pub script: Template,
    /// The job's output file, as sbatch's `--output` (`output`, default
    /// `.hub-slurm-%j.log`: in the user's home, which the nodes must share; `%j` is the job id).
    pub output: String,
    /// How often the hub asks Slurm for the state of its jobs (`poll_interval`, default 5 s).
    pub poll_interval: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSlurm {
    pub(crate) bin_dir: Option<String>,
    pub(crate) slurm_conf: Option<String>,
    pub(crate) hub_url: Option<Spanned<String>>,
    pub(crate) agent: Option<Spanned<String>>,
    pub(crate) partition: Option<Spanned<String>>,
    pub(crate) time_limit: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) extra_options: Vec<Spanned<String>>,
    pub(crate) script: Option<Spanned<String>>,
    pub(crate) output: Option<Spanned<String>>,
    pub(crate) poll_interval: Option<Spanned<String>>,
}

/// Options the hub sets itself and `extra_options` may not override.
const OWN_OPTIONS: &[&str] = &[
    "--uid",
    "--gid",
    "--job-name",
    "-J",
    "--output",
    "-o",
    "--error",
    "-e",
    "--chdir",
    "-D",
    "--export",
    "--parsable",
    "--wrap",
    "--requeue",
    "--no-requeue",
];

/// Validates `partition`, `time_limit` and `extra_options` (of `[spawner.slurm]` or a profile's
/// `[profiles.slurm]`, named by `at`), in the shape of a profile's.
pub(crate) fn parse_resources(
    src: &Source<'_>,
    at: &str,
    partition: &Option<Spanned<String>>,
    time_limit: &Option<Spanned<String>>,
    extra: &[Spanned<String>],
) -> Result<SlurmProfile, ConfigError> {
    let partition = match partition {
        None => None,
        Some(v) => {
            let s = v.get_ref();
            if s.is_empty() || s.contains(|c: char| c.is_control() || c.is_whitespace()) {
                return Err(src.err(
                    &format!("{at}.partition"),
                    v,
                    "must be one word without spaces or control characters",
                ));
            }
            Some(s.clone())
        }
    };
    let time = match time_limit {
        None => None,
        Some(v) => {
            let d = src.duration(&format!("{at}.time_limit"), time_limit, Duration::ZERO)?;
            if d < Duration::from_secs(60) {
                return Err(src.err(
                    &format!("{at}.time_limit"),
                    v,
                    "must be at least one minute (sbatch --time counts minutes)",
                ));
            }
            Some(d)
        }
    };
    let mut extra_options = Vec::new();
    for o in extra {
        let s = o.get_ref();
        let key = format!("{at}.extra_options");
        if !s.starts_with('-') || s.contains(['\n', '\0']) {
            return Err(src.err(
                &key,
                o,
                format!("has {s:?}, which is not an sbatch option (e.g. \"--qos=interactive\")"),
            ));
        }
        let name = s.split('=').next().unwrap_or_default();
        if OWN_OPTIONS.contains(&name) {
            return Err(src.err(&key, o, format!("has {name}, which the hub sets itself for every server job")));
        }
        extra_options.push(s.clone());
    }
    Ok(SlurmProfile { partition, time_limit: time, extra_options })
}

pub(crate) fn parse(
    src: &Source<'_>,
    f: Option<FileSlurm>,
    kind_slurm: bool,
) -> Result<Option<SlurmConfig>, ConfigError> {
    let Some(f) = f else {
        if kind_slurm {
            return Err(ConfigError(format!(
                "{}: `spawner.kind = \"slurm\"` needs a [spawner.slurm] section with at least hub_url (the URL the nodes reach the hub at)",
                src.path.display()
            )));
        }
        return Ok(None);
    };
    let hub_url = match &f.hub_url {
        None => {
            return Err(ConfigError(format!(
                "{}: `spawner.slurm.hub_url` is missing; set it to the URL the nodes reach the hub at, e.g. \"http://login1:8000\"",
                src.path.display()
            )));
        }
        Some(u) => match url::Url::parse(u.get_ref()) {
            // https is not done yet (the node agent would need the hub's CA); the report it
            // carries is signed and holds no secret, so http is enough (docs/slurm.md).
            Ok(p) if p.scheme() == "http" && p.host().is_some() && p.path() == "/" => {
                u.get_ref().trim_end_matches('/').to_string()
            }
            _ => {
                return Err(src.err(
                    "spawner.slurm.hub_url",
                    u,
                    "must be an http:// URL with a host and no path, e.g. \"http://login1:8000\" (https is not supported yet; the report is signed and carries no secret)",
                ));
            }
        },
    };
    let agent = match &f.agent {
        Some(a) if !a.get_ref().starts_with('/') => {
            return Err(src.err("spawner.slurm.agent", a, "must be an absolute path to the hub binary on the nodes"));
        }
        a => a.as_ref().map(|a| PathBuf::from(a.get_ref())),
    };
    let SlurmProfile { partition, time_limit, extra_options } =
        parse_resources(src, "spawner.slurm", &f.partition, &f.time_limit, &f.extra_options)?;
    let script = match &f.script {
        None => Template::literal(DEFAULT_SCRIPT),
        Some(s) => {
            let t = src.template("spawner.slurm.script", s, SCRIPT_VARS)?;
            if !s.get_ref().contains("{cmd}") {
                return Err(src.err("spawner.slurm.script", s, "must contain {cmd} (the line that starts the server)"));
            }
            t
        }
    };
    let output = match &f.output {
        None => ".hub-slurm-%j.log".to_string(),
        Some(o) => {
            let s = o.get_ref();
            if s.is_empty() || s.contains(['\n', '\0']) || !s.contains("%j") || s.replace("%j", "").contains('%') {
                return Err(src.err("spawner.slurm.output", o, "must be a file name with %j (the job id) and no other % pattern (the hub finds the file from the job id), e.g. \".hub-slurm-%j.log\""));
            }
            s.clone()
        }
    };
    let poll_interval = src.duration("spawner.slurm.poll_interval", &f.poll_interval, Duration::from_secs(5))?;
    if let (true, Some(v)) = (poll_interval < Duration::from_millis(200), &f.poll_interval) {
        return Err(src.err("spawner.slurm.poll_interval", v, "must be at least 200ms, e.g. \"5s\""));
    }
    Ok(Some(SlurmConfig {
        bin_dir: PathBuf::from(f.bin_dir.unwrap_or_else(|| "/usr/bin".into())),
        slurm_conf: f.slurm_conf.map(PathBuf::from),
        hub_url,
        agent,
        partition,
        time_limit,
        extra_options,
        script,
        output,
        poll_interval,
    }))
}
