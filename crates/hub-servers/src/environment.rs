//! The environment a user's processes run in: the same for their single-user server and for
//! their notebook runs, so that a kernel sees the same `PATH`, ticket, kernelspecs and limits
//! in both.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use crate::renewer::Renewer;
use hub_config::limits::Limits;
use hub_config::profiles::ProfileConfig;
use hub_config::{Config, TemplateVars};
use hub_core::{LinuxUser, TicketOwner};

/// What a process of a user's starts with.
#[derive(Debug, Clone)]
pub struct UserEnvironment {
    /// The complete environment: `HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH` (`[spawner]
    /// path`), `LANG`, `KRB5CCNAME` and `KRB5_CONFIG` with `[kerberos] enabled`, `JUPYTER_PATH`
    /// with `[[kernelspec]]` entries, then `[spawner] env`. No token.
    pub env: Vec<(String, String)>,
    /// The user's `[limits]`, resolved from their name and the Unix groups `[limits.groups]`
    /// names.
    pub limits: Limits,
    /// The directory the `[[kernelspec]]` files were written to (the `JUPYTER_PATH` above:
    /// `<dir>/kernels/<name>/kernel.json`); `None` when none are configured or writing failed.
    pub kernelspecs: Option<PathBuf>,
}

/// The environment and limits for `user`'s processes (see [`UserEnvironment`]), with
/// `profile`'s changes when a server starts with one: its limits replace the user's where set,
/// its `env` comes after `[spawner] env`, and only its `kernelspecs` are written. Writes the
/// `[[kernelspec]]` files (logged, not fatal, when that fails).
pub fn user_environment(
    config: &Config,
    renewer: &Renewer,
    user: &LinuxUser,
    profile: Option<&ProfileConfig>,
) -> UserEnvironment {
    let sc = &config.spawner;
    let owner = TicketOwner::from(user);
    let krb = renewer.paths(&owner);
    let ccache = krb.ccache.display().to_string();
    let keytab = krb.keytab.display().to_string();
    let vars = TemplateVars {
        username: &user.name,
        uid: user.uid,
        realm: &config.kerberos.realm,
        principal: Some(&krb.principal),
        ccache: Some(&ccache),
        keytab: Some(&keytab),
    };
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), user.home.display().to_string()),
        ("USER".into(), user.name.clone()),
        ("LOGNAME".into(), user.name.clone()),
        ("SHELL".into(), user.shell.display().to_string()),
        ("PATH".into(), sc.path.clone()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    if renewer.enabled() {
        env.push(("KRB5CCNAME".into(), format!("FILE:{ccache}")));
        if let Some(k) = renewer.krb5_config() {
            env.push(("KRB5_CONFIG".into(), k.display().to_string()));
        }
    }
    for (k, v) in sc.env.iter().chain(profile.iter().flat_map(|p| p.env.iter())) {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.expand(&vars)));
    }
    let mut kernelspecs = None;
    if !config.kernelspecs.is_empty() {
        let offered = profile.and_then(|p| p.kernelspecs.as_deref());
        match write_kernelspecs(config, user, &vars, offered) {
            Ok(dir) => {
                env.retain(|(k, _)| k != "JUPYTER_PATH");
                env.push(("JUPYTER_PATH".into(), dir.display().to_string()));
                kernelspecs = Some(dir);
            }
            Err(e) => tracing::error!(user = %user.name, error = %e, "could not write the kernelspecs"),
        }
    }
    // The user's Unix groups that [limits.groups] names (looked up by name, so that only
    // configured groups cost a lookup).
    let groups = member_of(user, config.limits.groups.keys());
    let mut limits = config.limits.for_user(&user.name, &groups);
    if let Some(p) = profile {
        limits.memory = p.limits.memory.or(limits.memory);
        limits.cpu = p.limits.cpu.or(limits.cpu);
        limits.tasks = p.limits.tasks.or(limits.tasks);
    }
    UserEnvironment { env, limits, kernelspecs }
}

/// The Unix groups among `names` that `user` is a member of (looked up by name).
pub fn member_of<'a>(user: &LinuxUser, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    names
        .into_iter()
        .filter(|g| {
            nix::unistd::Group::from_name(g).ok().flatten().is_some_and(|gr| user.groups.contains(&gr.gid.as_raw()))
        })
        .cloned()
        .collect()
}

/// Why a profile cannot be used for a server; the text names the profile and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileRefusal {
    /// No such profile, or profiles are not configured.
    #[error("{0}")]
    Unknown(String),
    /// The user may not choose it.
    #[error("{0}")]
    NotAllowed(String),
}

/// The profiles `user` may choose, in hub.toml's order.
pub fn profiles_for<'a>(config: &'a Config, user: &LinuxUser) -> Vec<&'a ProfileConfig> {
    let groups = member_of(user, config.profiles.iter().flat_map(|p| p.groups.iter()));
    config.profiles.iter().filter(|p| p.allows(&user.name, &groups)).collect()
}

/// The profile a server of `user` starts with when they ask for `requested` (`None`: the
/// default): `Ok(None)` when no `[[profiles]]` are configured; the profile marked `default`
/// if the user may choose it, else the first they may.
pub fn choose_profile<'a>(
    config: &'a Config,
    user: &LinuxUser,
    requested: Option<&str>,
) -> Result<Option<&'a ProfileConfig>, ProfileRefusal> {
    if config.profiles.is_empty() {
        return match requested {
            None => Ok(None),
            Some(p) => Err(ProfileRefusal::Unknown(format!(
                "user_options: profile {p:?} is not offered: this hub has no [[profiles]]; start without user_options"
            ))),
        };
    }
    let mine = profiles_for(config, user);
    match requested {
        Some(slug) => {
            let Some(p) = config.profiles.iter().find(|p| p.slug == slug) else {
                let all: Vec<&str> = mine.iter().map(|p| p.slug.as_str()).collect();
                return Err(ProfileRefusal::Unknown(format!(
                    "user_options: there is no profile {slug:?}; {} may choose: {}",
                    user.name,
                    all.join(", ")
                )));
            };
            if !mine.iter().any(|m| m.slug == p.slug) {
                return Err(ProfileRefusal::NotAllowed(format!(
                    "profile {slug:?} is not available to {} (it is for {}); choose another or ask an admin",
                    user.name,
                    p.who()
                )));
            }
            Ok(Some(p))
        }
        None => mine.iter().find(|p| p.default).or(mine.first()).copied().map(Some).ok_or_else(|| {
            ProfileRefusal::NotAllowed(format!("no profile is available to {}; ask an admin", user.name))
        }),
    }
}

/// Writes each `[[kernelspec]]` as `<data_dir>/jupyter/<user>/kernels/<name>/kernel.json`
/// (Jupyter's kernelspec format) and returns `<data_dir>/jupyter/<user>`, the directory to
/// put on the server's `JUPYTER_PATH`. The per-user directory is root-owned, group the
/// user's primary group, mode 0750: the user reads it, other users do not, nobody but the
/// hub writes it. It is rewritten on every spawn, so a removed entry disappears.
pub fn write_kernelspecs(
    config: &Config,
    user: &LinuxUser,
    vars: &TemplateVars<'_>,
    offered: Option<&[String]>,
) -> std::io::Result<PathBuf> {
    let root = config.hub.kernelspec_root(&user.name);
    if let Some(base) = root.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o711).create(base)?;
    }
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::DirBuilder::new().mode(0o750).create(&root)?;
    std::os::unix::fs::chown(&root, Some(0), Some(user.gid))?;
    for ks in config.kernelspecs.iter().filter(|k| offered.is_none_or(|o| o.contains(&k.name))) {
        let dir = root.join("kernels").join(&ks.name);
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&dir)?;
        let env: serde_json::Map<String, serde_json::Value> =
            ks.env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.expand(vars)))).collect();
        let spec = serde_json::json!({
            "argv": ks.argv.iter().map(|a| a.expand(vars)).collect::<Vec<_>>(),
            "display_name": ks.display_name,
            "language": ks.language,
            "env": env,
            "metadata": { "hub": { "managed": true } },
        });
        std::fs::write(dir.join("kernel.json"), serde_json::to_vec_pretty(&spec).unwrap_or_default())?;
    }
    Ok(root)
}
