//! The `[limits]` section: per-server resource limits, memory (bytes), CPU (cores) and tasks
//! (processes and threads), with per-user and per-group entries. Applying them is the
//! servers crate's (`hub_servers::limits::Enforcer`).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};

/// Limits for one server. `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Memory in bytes (resident memory under cgroups; data segment size under rlimits).
    pub memory: Option<u64>,
    /// CPU in cores (1.5 = one and a half cores' worth of time per period).
    pub cpu: Option<f64>,
    /// Tasks: processes and threads.
    pub tasks: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpu.is_some() || self.tasks.is_some()
    }

    /// "memory 200.0 MiB, cpu 1.5, tasks 256" (only what is set), for logs and pages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory {
            parts.push(format!("memory {}", bytesize::ByteSize::b(m).display().iec()));
        }
        if let Some(c) = self.cpu {
            parts.push(format!("cpu {c}"));
        }
        if let Some(t) = self.tasks {
            parts.push(format!("tasks {t}"));
        }
        if parts.is_empty() { "no limits".to_string() } else { parts.join(", ") }
    }
}

/// The `[limits]` table: defaults, and overrides per user and per Unix group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsConfig {
    /// Applies to every server.
    pub default: Limits,
    /// Per user name; a key set here wins over groups and the default.
    pub users: BTreeMap<String, Limits>,
    /// Per Unix group name; when several of a user's groups set a key, the largest wins.
    pub groups: BTreeMap<String, Limits>,
}

impl LimitsConfig {
    /// The limits of `user`, a member of the Unix groups `groups` (names).
    pub fn for_user(&self, user: &str, groups: &[String]) -> Limits {
        let mut out = self.default;
        let from_groups: Vec<&Limits> = groups.iter().filter_map(|g| self.groups.get(g)).collect();
        let max_u64 = |f: fn(&Limits) -> Option<u64>| from_groups.iter().filter_map(|l| f(l)).max();
        if let Some(m) = max_u64(|l| l.memory) {
            out.memory = Some(m);
        }
        if let Some(t) = max_u64(|l| l.tasks) {
            out.tasks = Some(t);
        }
        if let Some(c) = from_groups.iter().filter_map(|l| l.cpu).reduce(f64::max) {
            out.cpu = Some(c);
        }
        if let Some(u) = self.users.get(user) {
            out.memory = u.memory.or(out.memory);
            out.cpu = u.cpu.or(out.cpu);
            out.tasks = u.tasks.or(out.tasks);
        }
        out
    }

    /// Whether any limit is configured anywhere.
    pub fn any(&self) -> bool {
        self.default.any() || self.users.values().any(Limits::any) || self.groups.values().any(Limits::any)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    pub(crate) memory: Option<Spanned<String>>,
    pub(crate) cpu: Option<Spanned<f64>>,
    pub(crate) tasks: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimitsTable {
    pub(crate) memory: Option<Spanned<String>>,
    pub(crate) cpu: Option<Spanned<f64>>,
    pub(crate) tasks: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) users: BTreeMap<String, FileLimits>,
    #[serde(default)]
    pub(crate) groups: BTreeMap<String, FileLimits>,
}

/// Validates `[limits]`.
pub(crate) fn parse(src: &Source<'_>, lt: &FileLimitsTable) -> Result<LimitsConfig, ConfigError> {
    // [limits]
    let one = |at: &str, m: &Option<Spanned<String>>, c: &Option<Spanned<f64>>, t: &Option<Spanned<i64>>| {
        parse_one(src, at, m, c, t)
    };
    let mut limits = LimitsConfig { default: one("limits.", &lt.memory, &lt.cpu, &lt.tasks)?, ..Default::default() };
    for (name, l) in &lt.users {
        limits.users.insert(name.clone(), one(&format!("limits.users.{name}."), &l.memory, &l.cpu, &l.tasks)?);
    }
    for (name, l) in &lt.groups {
        limits.groups.insert(name.clone(), one(&format!("limits.groups.{name}."), &l.memory, &l.cpu, &l.tasks)?);
    }
    Ok(limits)
}

/// Validates one set of limits whose keys are `{at}memory`, `{at}cpu`, `{at}tasks`.
pub(crate) fn parse_one(
    src: &Source<'_>,
    at: &str,
    memory: &Option<Spanned<String>>,
    cpu: &Option<Spanned<f64>>,
    tasks: &Option<Spanned<i64>>,
) -> Result<Limits, ConfigError> {
    let memory = match memory {
        None => None,
        Some(m) => match m.get_ref().trim().parse::<bytesize::ByteSize>() {
            Ok(b) if b.as_u64() >= 16 << 20 => Some(b.as_u64()),
            Ok(_) => {
                return Err(src.err(&format!("{at}memory"), m, "is below 16 MiB, too little to start a server"));
            }
            Err(_) => {
                return Err(src.err(&format!("{at}memory"), m, "is not a size such as \"4 GiB\" or \"512 MiB\""));
            }
        },
    };
    let cpu = match cpu {
        None => None,
        Some(c) if (0.01..=4096.0).contains(c.get_ref()) => Some(*c.get_ref()),
        Some(c) => return Err(src.err(&format!("{at}cpu"), c, "must be a number of cores from 0.01 to 4096")),
    };
    let tasks = match tasks {
        None => None,
        Some(t) if (16..=4_194_304).contains(t.get_ref()) => Some(*t.get_ref() as u64),
        Some(t) => {
            return Err(src.err(&format!("{at}tasks"), t, "must be from 16 to 4194304 processes and threads"));
        }
    };
    Ok(Limits { memory, cpu, tasks })
}
