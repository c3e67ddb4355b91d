//! `[[profiles]]`: the server options a user picks from when starting a server (KubeSpawner's
//! `profile_list`, the way JupyterHub sites offer "small" and "large" servers). Each has a
//! slug (what `user_options` carries: `{"profile": "large"}`), a display name and description,
//! and what it changes: resource limits, environment, the kernelspecs offered, the command;
//! and who may choose it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::limits::{FileLimits, Limits, parse_one};
use crate::source::{ConfigError, Source};
use crate::template::Template;

/// One `[[profiles]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    /// The profile's name in `user_options` (`slug`): 1-30 of `a-z`, `0-9`, `-`.
    pub slug: String,
    /// Shown in the choice (`display_name`, default the slug).
    pub display_name: String,
    /// Shown under it (`description`, default empty).
    pub description: String,
    /// Chosen when the user chooses nothing (`default`; at most one profile; if none says so,
    /// the first one the user may choose).
    pub default: bool,
    /// Limits that replace the user's `[limits]` where set (`[profiles.limits]`: memory, cpu,
    /// tasks).
    pub limits: Limits,
    /// Extra environment for the server (`[profiles.env]`, templates as `[spawner] env`),
    /// after `[spawner] env`.
    pub env: BTreeMap<String, Template>,
    /// The `[[kernelspec]]` entries (by name) the server gets (`kernelspecs`; default all).
    pub kernelspecs: Option<Vec<String>>,
    /// Replaces `[spawner] cmd` (`cmd`).
    pub cmd: Option<Vec<String>>,
    /// Users who may choose it (`users`); with `groups`, either admits. Both empty: everyone.
    pub users: Vec<String>,
    /// Unix groups whose members may choose it (`groups`).
    pub groups: Vec<String>,
    /// What it changes in a Slurm server job (`[profiles.slurm]`, with `[spawner] kind =
    /// "slurm"`).
    pub slurm: crate::slurm::SlurmProfile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSlurmProfile {
    pub(crate) partition: Option<Spanned<String>>,
    pub(crate) time_limit: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) extra_options: Vec<Spanned<String>>,
}

impl ProfileConfig {
    /// Whether `user`, a member of the Unix groups `groups` (names), may choose it.
    pub fn allows(&self, user: &str, groups: &[String]) -> bool {
        (self.users.is_empty() && self.groups.is_empty())
            || self.users.iter().any(|u| u == user)
            || self.groups.iter().any(|g| groups.contains(g))
    }

    /// Who may choose it, for a refusal: "users ann, bob; groups bigdata".
    pub fn who(&self) -> String {
        let mut parts = Vec::new();
        if !self.users.is_empty() {
            parts.push(format!("users {}", self.users.join(", ")));
        }
        if !self.groups.is_empty() {
            parts.push(format!("groups {}", self.groups.join(", ")));
        }
        if parts.is_empty() { "everyone".into() } else { parts.join("; ") }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileProfile {
    pub(crate) slug: Spanned<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) default: bool,
    #[serde(default)]
    pub(crate) limits: FileLimits,
    #[serde(default)]
    pub(crate) env: BTreeMap<String, Spanned<String>>,
    pub(crate) kernelspecs: Option<Spanned<Vec<String>>>,
    pub(crate) cmd: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(crate) users: Vec<String>,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    #[serde(default)]
    pub(crate) slurm: FileSlurmProfile,
}

/// Validates `[[profiles]]`; `kernelspecs` are the `[[kernelspec]]` names they may refer to.
pub(crate) fn parse(
    src: &Source<'_>,
    entries: &[FileProfile],
    kernelspecs: &[String],
) -> Result<Vec<ProfileConfig>, ConfigError> {
    let mut out: Vec<ProfileConfig> = Vec::new();
    for p in entries {
        let slug = p.slug.get_ref();
        if slug.len() > 30 || !is_slug(slug) {
            return Err(src.err(
                "profiles.slug",
                &p.slug,
                "must be 1-30 lower-case letters, digits and single hyphens, starting with a letter",
            ));
        }
        if out.iter().any(|o| &o.slug == slug) {
            return Err(src.err("profiles.slug", &p.slug, "is declared twice"));
        }
        let at = format!("profiles.{slug}.limits.");
        let limits = parse_one(src, &at, &p.limits.memory, &p.limits.cpu, &p.limits.tasks)?;
        let vars = ["username", "uid", "realm", "principal", "ccache", "keytab"];
        let mut env = BTreeMap::new();
        for (k, v) in &p.env {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Err(src.err(&format!("profiles.{slug}.env"), v, format!("has an invalid variable name {k:?}")));
            }
            env.insert(k.clone(), src.template(&format!("profiles.{slug}.env.{k}"), v, &vars)?);
        }
        if let Some(ks) = &p.kernelspecs
            && let Some(unknown) = ks.get_ref().iter().find(|k| !kernelspecs.contains(k))
        {
            return Err(src.err(
                &format!("profiles.{slug}.kernelspecs"),
                ks,
                format!(
                    "names {unknown:?}, which is not a [[kernelspec]] entry (there are: {})",
                    kernelspecs.join(", ")
                ),
            ));
        }
        if let Some(c) = &p.cmd
            && (c.get_ref().is_empty() || c.get_ref()[0].is_empty())
        {
            return Err(src.err(&format!("profiles.{slug}.cmd"), c, "must name a program"));
        }
        let s = &p.slurm;
        let slurm = crate::slurm::parse_resources(
            src,
            &format!("profiles.{slug}.slurm"),
            &s.partition,
            &s.time_limit,
            &s.extra_options,
        )?;
        out.push(ProfileConfig {
            slurm,
            slug: slug.clone(),
            display_name: p.display_name.clone().unwrap_or_else(|| slug.clone()),
            description: p.description.clone().unwrap_or_default(),
            default: p.default,
            limits,
            env,
            kernelspecs: p.kernelspecs.as_ref().map(|k| k.get_ref().clone()),
            cmd: p.cmd.as_ref().map(|c| c.get_ref().clone()),
            users: p.users.clone(),
            groups: p.groups.clone(),
        });
    }
    if let [_, second, ..] = entries.iter().filter(|p| p.default).collect::<Vec<_>>()[..] {
        return Err(src.err("profiles.default", &second.slug, "is true for more than one profile; mark one"));
    }
    Ok(out)
}

/// 1+ characters of `a-z`, `0-9`, `-`, starting with a letter, no trailing or doubled `-`.
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
        && !s.contains("--")
}
