//! Who may log in once authenticated, and who is an admin.
//!
//! Rule (JupyterHub's `allowed_users` / `allowed_groups` / `admin_users` / `admin_groups`):
//! a user may log in if both allow-lists are empty, or the name is in `allowed_users`, or the
//! user is in one of `allowed_groups`, or the user is an admin. A user is an admin if the name
//! is in `admin_users` or the user is in one of `admin_groups`. Group membership is the
//! account's `getgrouplist(3)` (primary and supplementary groups), read at each login, so a
//! change in `/etc/group` or the directory takes effect at the next login.

use hub_config::AuthConfig;
use hub_core::LinuxUser;

/// The decision for one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// May log in; `admin` says whether as an admin.
    Allowed {
        /// Whether the user is an admin by the configuration (`admin_users` or `admin_groups`).
        admin: bool,
        /// Whether by `admin_groups` (what the store records at this login; `admin_users`
        /// is read from the configuration each time, never stored).
        group_admin: bool,
    },
    /// May not log in; the text names the lists checked (for the log).
    Denied(String),
}

/// Group names → GIDs, skipping names that do not resolve (blocking NSS lookups).
fn gids(names: &[String]) -> Vec<u32> {
    names
        .iter()
        .filter_map(|g| match nix::unistd::Group::from_name(g) {
            Ok(Some(gr)) => Some(gr.gid.as_raw()),
            Ok(None) => {
                tracing::warn!(group = %g, "a group in [auth] allowed_groups/admin_groups does not exist");
                None
            }
            Err(e) => {
                tracing::warn!(group = %g, error = %e, "group lookup failed");
                None
            }
        })
        .collect()
}

/// Decides whether `user` may log in under `cfg`. Blocking (group lookups).
pub fn decide(cfg: &AuthConfig, user: &LinuxUser) -> Access {
    let in_any = |names: &[String]| !names.is_empty() && gids(names).iter().any(|g| user.groups.contains(g));
    let group_admin = in_any(&cfg.admin_groups);
    let admin = cfg.admin_users.contains(&user.name) || group_admin;
    let open = cfg.allowed_users.is_empty() && cfg.allowed_groups.is_empty();
    if open || admin || cfg.allowed_users.contains(&user.name) || in_any(&cfg.allowed_groups) {
        Access::Allowed { admin, group_admin }
    } else {
        Access::Denied(format!(
            "{:?} is not in [auth] allowed_users {:?} and not in any of allowed_groups {:?}",
            user.name, cfg.allowed_users, cfg.allowed_groups
        ))
    }
}
