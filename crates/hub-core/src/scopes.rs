//! Scopes: what an API token, a service or a session may do, with JupyterHub's names and
//! hierarchy (JupyterHub docs, "Scopes in JupyterHub", and `jupyterhub/scopes.py`).
//!
//! A scope is `name` or `name!filter`; the filters understood here are `!user=NAME` and
//! `!server=NAME/` (the default server of NAME, which for this hub is the same as the user).
//! Granting a scope grants the scopes below it ([`subscopes`]): `admin:users` includes
//! `users`, which includes `read:users`, which includes `read:users:activity`, and so on.
//! `self` stands for the owner's rights on themselves, `inherit` (tokens only) for all of the
//! owner's rights.

use std::collections::BTreeSet;
use std::fmt;

/// One scope of JupyterHub's table (`scope_definitions` in `jupyterhub/scopes.py`, JupyterHub
/// 6): its name, the description JupyterHub gives (shown on the token page), and the scopes
/// directly below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeDef {
    /// e.g. `read:servers`.
    pub name: &'static str,
    /// What it allows, in JupyterHub's words.
    pub description: &'static str,
    /// The scopes it includes directly.
    pub subscopes: &'static [&'static str],
}

const fn def(name: &'static str, description: &'static str, subscopes: &'static [&'static str]) -> ScopeDef {
    ScopeDef { name, description, subscopes }
}

/// Every scope the hub implements, in `jupyterhub/scopes.py`'s order and with its hierarchy,
/// followed by the hub's own `custom:` scopes. A scope JupyterHub defines that the hub does
/// not implement is in [`UNSUPPORTED`] instead, so a token asking for it is told so.
pub const TABLE: &[ScopeDef] = &[
    def("admin-ui", "Access the admin page.", &[]),
    def(
        "admin:users",
        "Read, modify, create, and delete users and their authentication state, not including their servers or tokens.",
        &["admin:auth_state", "users", "read:roles:users", "delete:users"],
    ),
    def("admin:auth_state", "Read a user's authentication state.", &[]),
    def(
        "users",
        "Read and write permissions to user models (excluding servers, tokens and authentication state).",
        &["read:users", "list:users", "users:activity"],
    ),
    def("delete:users", "Delete users.", &[]),
    def("list:users", "List users, including at least their names.", &["read:users:name"]),
    def(
        "read:users",
        "Read user models (including the URL of the default server if it is running).",
        &["read:users:name", "read:users:groups", "read:users:activity"],
    ),
    def("read:users:name", "Read names of users.", &[]),
    def("read:users:groups", "Read users' group membership.", &[]),
    def("read:users:activity", "Read time of last user activity.", &[]),
    def("read:roles", "Read role assignments.", &["read:roles:users", "read:roles:services", "read:roles:groups"]),
    def("read:roles:users", "Read user role assignments.", &[]),
    def("read:roles:services", "Read service role assignments.", &[]),
    def("read:roles:groups", "Read group role assignments.", &[]),
    def("users:activity", "Update time of last user activity.", &["read:users:activity"]),
    def(
        "admin:servers",
        "Read, start, stop, create and delete user servers and their state.",
        &["admin:server_state", "servers"],
    ),
    def("admin:server_state", "Read and write users' server state.", &[]),
    def("servers", "Start and stop user servers.", &["read:servers", "start:servers", "delete:servers"]),
    def(
        "read:servers",
        "Read users' names and their server models (excluding the server state).",
        &["read:users:name"],
    ),
    def("start:servers", "Start and edit users' servers.", &[]),
    def("delete:servers", "Stop and delete users' servers.", &[]),
    def("tokens", "Read, write, create and delete user tokens.", &["read:tokens"]),
    def("read:tokens", "Read user tokens.", &[]),
    def(
        "admin:groups",
        "Read and write group information, create and delete groups.",
        &["groups", "read:roles:groups", "delete:groups"],
    ),
    def(
        "groups",
        "Read and write group information, including adding/removing any users to/from groups.",
        &["read:groups", "list:groups"],
    ),
    def("list:groups", "List groups, including at least their names.", &["read:groups:name"]),
    def("read:groups", "Read group models.", &["read:groups:name"]),
    def("read:groups:name", "Read group names.", &[]),
    def("delete:groups", "Delete groups.", &[]),
    def("list:services", "List services, including at least their names.", &["read:services:name"]),
    def("read:services", "Read service models.", &["read:services:name"]),
    def("read:services:name", "Read service names.", &[]),
    def("read:hub", "Read detailed information about the Hub.", &[]),
    def("access:servers", "Access user servers via API or browser.", &[]),
    def(
        "proxy",
        "Read information about the proxy's routing table, sync the Hub with the proxy and notify the Hub about a new proxy.",
        &[],
    ),
    def("shutdown", "Shutdown the hub.", &[]),
    def("read:metrics", "Read prometheus metrics.", &[]),
    def(JOBS, "Create, change, run, cancel and delete notebook jobs and their runs (this hub's own).", &[READ_JOBS]),
    def(READ_JOBS, "Read notebook jobs, their runs, run logs and outputs (this hub's own).", &[]),
];

/// Scopes JupyterHub defines that this hub does not implement, with why; asking for one is
/// refused with that reason rather than "unknown scope".
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("admin:services", "services are declared in hub.toml ([[services]]), not created through the API"),
    ("access:services", "the hub does not proxy services; a service is reached at its own address"),
    ("shares", "sharing a server with another user is not supported (docs/security.md says why)"),
    ("read:shares", "sharing a server with another user is not supported (docs/security.md says why)"),
    ("users:shares", "sharing a server with another user is not supported (docs/security.md says why)"),
    ("read:users:shares", "sharing a server with another user is not supported (docs/security.md says why)"),
    ("groups:shares", "sharing a server with another user is not supported (docs/security.md says why)"),
    ("read:groups:shares", "sharing a server with another user is not supported (docs/security.md says why)"),
];

/// Managing a user's notebook jobs and runs (create, change, run, cancel, delete). JupyterHub
/// has no such scope; its rule for scopes it does not define is the `custom:` prefix.
pub const JOBS: &str = "custom:jobs";
/// Reading a user's jobs, runs, run logs and outputs.
pub const READ_JOBS: &str = "custom:jobs:read";

/// The scopes the JupyterHub `admin` role holds (`jupyterhub/roles.py`), less the ones in
/// [`UNSUPPORTED`], plus [`JOBS`].
pub const ADMIN_ROLE: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "proxy",
    "shutdown",
    "access:servers",
    "read:roles",
    "read:metrics",
    JOBS,
];

/// What the `self` metascope stands for, before the owner's `!user=` filter is applied
/// (`_expand_self_scope` in `jupyterhub/scopes.py`, less the shares scopes), plus [`JOBS`].
pub const SELF_SCOPES: &[&str] = &["read:users", "users:activity", "servers", "tokens", "access:servers", JOBS];

/// The definition of `name`, if the hub implements it.
pub fn definition(name: &str) -> Option<&'static ScopeDef> {
    TABLE.iter().find(|d| d.name == name)
}

/// The scopes directly below `name` in JupyterHub's hierarchy.
pub fn subscopes(name: &str) -> &'static [&'static str] {
    definition(name).map_or(&[], |d| d.subscopes)
}

/// Which objects a scope applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Filter {
    /// Every user.
    All,
    /// Only this user (`!user=NAME`).
    User(String),
    /// Only this server of this user (`!server=NAME/SERVER`; `""` is the default server,
    /// `!server=NAME/`).
    Server(String, String),
}

/// One granted scope, e.g. `servers!user=ann`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scope {
    /// The scope's name, e.g. `servers`.
    pub name: String,
    /// Which users it covers.
    pub filter: Filter,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.filter {
            Filter::All => write!(f, "{}", self.name),
            Filter::User(u) => write!(f, "{}!user={u}", self.name),
            Filter::Server(u, n) => write!(f, "{}!server={u}/{n}", self.name),
        }
    }
}

/// A scope as written: a name from [`TABLE`], `self` or `inherit`, with an optional filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The name as written (`self`, `inherit` or a known scope).
    pub name: String,
    /// The filter, if any.
    pub filter: Filter,
}

impl fmt::Display for Requested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Scope { name: self.name.clone(), filter: self.filter.clone() }.fmt(f)
    }
}

/// Why a scope string is not one the hub understands; the text names the scope and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// `!server=` is not `NAME/` or `NAME/SERVER` with a valid server name.
    #[error("scope {0:?}: a server filter is !server=NAME/ (the default server) or !server=NAME/SERVER")]
    NamedServer(String),
    /// A filter other than `!user=` or `!server=`.
    #[error("scope {0:?}: unsupported filter; use !user=NAME or !server=NAME/")]
    UnsupportedFilter(String),
    /// The filter's user name is empty, too long or has control characters.
    #[error("scope {0:?}: the filter names no valid user")]
    InvalidUser(String),
    /// `inherit!...`.
    #[error("scope \"inherit\" takes no filter")]
    FilteredInherit,
    /// Not a scope name the hub knows.
    #[error("unknown scope {0:?}; see docs/api.md for the scopes this hub understands")]
    Unknown(String),
    /// A JupyterHub scope this hub does not implement (shares, service management, ...).
    #[error("scope {0:?} is not supported by this hub: {1}")]
    NotSupported(String, &'static str),
}

/// Parses one scope string. Errors say what is wrong, e.g. `unknown scope "read:userz"`.
pub fn parse(s: &str) -> Result<Requested, ScopeError> {
    let (name, filter) = match s.split_once('!') {
        None => (s, Filter::All),
        Some((name, f)) => {
            let (user, server) = if let Some(u) = f.strip_prefix("user=") {
                (u, None)
            } else if let Some(u) = f.strip_prefix("server=") {
                let (u, server) = u.split_once('/').ok_or_else(|| ScopeError::NamedServer(s.to_string()))?;
                if !server.is_empty() && crate::server::check_server_name(server).is_err() {
                    return Err(ScopeError::NamedServer(s.to_string()));
                }
                (u, Some(server))
            } else if f.starts_with("group=") || f.starts_with("service=") {
                return Err(ScopeError::NotSupported(
                    s.to_string(),
                    "only !user=NAME and !server=NAME/ filters are implemented, not !group= or !service=",
                ));
            } else {
                return Err(ScopeError::UnsupportedFilter(s.to_string()));
            };
            if user.is_empty() || user.len() > 256 || user.chars().any(|c| c.is_control() || c == '/') {
                return Err(ScopeError::InvalidUser(s.to_string()));
            }
            match server {
                None => (name, Filter::User(user.to_string())),
                Some(server) => (name, Filter::Server(user.to_string(), server.to_string())),
            }
        }
    };
    if name == "inherit" && filter != Filter::All {
        return Err(ScopeError::FilteredInherit);
    }
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
        return Err(ScopeError::NotSupported(name.to_string(), why));
    }
    if name != "self" && name != "inherit" && definition(name).is_none() {
        return Err(ScopeError::Unknown(name.to_string()));
    }
    Ok(Requested { name: name.to_string(), filter })
}

/// Parses a list of scope strings.
pub fn parse_all<S: AsRef<str>>(list: &[S]) -> Result<Vec<Requested>, ScopeError> {
    list.iter().map(|s| parse(s.as_ref())).collect()
}

/// An expanded, de-duplicated set of scopes that can answer "may it do X to user U?".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// The rights of a user: the `user` role (`self`), plus the `admin` role for admins.
    pub fn for_user(name: &str, admin: bool) -> Self {
        let mut set = ScopeSet::default();
        set.add(&Requested { name: "self".into(), filter: Filter::All }, Some(name));
        if admin {
            for s in ADMIN_ROLE {
                set.add(&Requested { name: (*s).into(), filter: Filter::All }, None);
            }
        }
        set
    }

    /// Expands `requested` (for a token of `owner`; `owner` is `None` for a service, where
    /// `self` and `inherit` mean nothing). `inherit` is not expanded here: see
    /// [`ScopeSet::for_token`].
    pub fn expand(requested: &[Requested], owner: Option<&str>) -> Self {
        let mut set = ScopeSet::default();
        for r in requested {
            set.add(r, owner);
        }
        set
    }

    /// The effective rights of a user's token: its own scopes, each kept only as far as the
    /// owner holds it now (a token never outgrows its owner, even after a demotion).
    pub fn for_token(requested: &[Requested], owner: &str, owner_rights: &ScopeSet) -> Self {
        if requested.iter().any(|r| r.name == "inherit") {
            return owner_rights.clone();
        }
        let mut out = ScopeSet::default();
        for s in &ScopeSet::expand(requested, Some(owner)).0 {
            if owner_rights.covers(s) {
                out.0.insert(s.clone());
            } else if s.filter == Filter::All {
                // e.g. `read:users` on a token of a non-admin: only what the owner may see.
                for o in owner_rights.0.iter().filter(|o| o.name == s.name) {
                    out.0.insert(o.clone());
                }
            }
        }
        out
    }

    fn add(&mut self, r: &Requested, owner: Option<&str>) {
        match r.name.as_str() {
            "self" => {
                if let Some(me) = owner {
                    for s in SELF_SCOPES {
                        self.insert_tree(s, &Filter::User(me.to_string()));
                    }
                }
            }
            "inherit" => {}
            name => self.insert_tree(name, &r.filter),
        }
    }

    fn insert_tree(&mut self, name: &str, filter: &Filter) {
        if self.0.insert(Scope { name: name.to_string(), filter: filter.clone() }) {
            for sub in subscopes(name) {
                self.insert_tree(sub, filter);
            }
        }
    }

    /// Whether `scope` (with its filter) is within this set.
    pub fn covers(&self, scope: &Scope) -> bool {
        self.0.iter().any(|s| {
            s.name == scope.name
                && match (&s.filter, &scope.filter) {
                    (Filter::All, _) => true,
                    (Filter::User(a), Filter::User(b)) => a == b,
                    (Filter::User(a), Filter::Server(b, _)) => a == b,
                    (Filter::Server(a, n), Filter::Server(b, m)) => a == b && n == m,
                    (Filter::User(_) | Filter::Server(..), Filter::All) | (Filter::Server(..), Filter::User(_)) => {
                        false
                    }
                }
        })
    }

    /// Whether the set holds `name` for `user` (`None`: for every user, or a scope that is not
    /// about users such as `read:metrics`).
    pub fn allows(&self, name: &str, user: Option<&str>) -> bool {
        let filter = user.map_or(Filter::All, |u| Filter::User(u.to_string()));
        self.covers(&Scope { name: name.to_string(), filter })
    }

    /// Whether the set holds `name` for `user`'s server `server` (`""`: the default one): a
    /// grant for everyone, for the user, or for that very server.
    pub fn allows_server(&self, name: &str, user: &str, server: &str) -> bool {
        self.covers(&Scope { name: name.to_string(), filter: Filter::Server(user.to_string(), server.to_string()) })
    }

    /// Whether the set holds `name` for at least one user (to tell 403 from an empty list).
    pub fn has_any(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }

    /// The expanded scopes as strings, sorted (the `scopes` field of `GET /user`).
    pub fn strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(list: &[&str]) -> Vec<Requested> {
        parse_all(list).expect("valid scopes")
    }

    #[test]
    fn parsing_names_and_filters() {
        assert_eq!(parse("servers!user=ann").expect("ok").filter, Filter::User("ann".into()));
        assert_eq!(parse("servers!server=ann/").expect("ok").filter, Filter::Server("ann".into(), String::new()));
        assert_eq!(parse("servers!server=ann/gpu").expect("ok").filter, Filter::Server("ann".into(), "gpu".into()));
        assert!(parse("servers!server=ann").is_err() && parse("servers!server=ann/Bad--").is_err());
        assert!(parse("read:userz").expect_err("unknown").to_string().contains("unknown scope"));
        // A server filter covers that server only; a user filter covers all of the user's.
        let s = ScopeSet::expand(&req(&["access:servers!server=ann/gpu", "access:servers!server=bob/"]), None);
        assert!(s.allows_server("access:servers", "ann", "gpu") && !s.allows_server("access:servers", "ann", ""));
        assert!(s.allows_server("access:servers", "bob", "") && !s.allows_server("access:servers", "bob", "gpu"));
        assert!(!s.allows("access:servers", Some("ann")), "a server grant is not the user's");
        let s = ScopeSet::expand(&req(&["access:servers!user=ann"]), None);
        assert!(s.allows_server("access:servers", "ann", "gpu") && s.allows_server("access:servers", "ann", ""));
        assert!(parse("servers!team=x").expect_err("filter").to_string().contains("unsupported filter"));
        assert!(parse("servers!user=").is_err());
        let e = parse("shares!user=ann").expect_err("shares").to_string();
        assert!(e.contains("not supported") && e.contains("sharing"), "{e}");
        let e = parse("read:servers!group=team").expect_err("group filter").to_string();
        assert!(e.contains("not supported") && e.contains("!group="), "{e}");
        assert!(parse("start:servers!user=ann").is_ok() && parse("list:services").is_ok());
        assert!(parse("inherit!user=ann").is_err());
    }

    #[test]
    fn the_table_is_closed_and_acyclic() {
        for d in TABLE {
            for sub in d.subscopes {
                assert!(definition(sub).is_some(), "{} names {sub}, which is not in the table", d.name);
            }
            assert!(!UNSUPPORTED.iter().any(|(n, _)| *n == d.name), "{} is both", d.name);
        }
        for s in ADMIN_ROLE.iter().chain(SELF_SCOPES) {
            assert!(definition(s).is_some(), "{s}");
        }
        // JupyterHub 6: `servers` includes `start:servers`; `list:users` includes the names.
        let s = ScopeSet::expand(&req(&["servers", "list:users"]), None);
        assert!(s.allows("start:servers", Some("x")) && s.allows("read:users:name", Some("x")));
        assert!(ScopeSet::for_user("ann", false).allows("read:users:groups", Some("ann")));
    }

    #[test]
    fn hierarchy_and_filters() {
        let s = ScopeSet::expand(&req(&["admin:users"]), None);
        assert!(s.allows("read:users:activity", Some("ann")) && s.allows("list:users", None));
        assert!(!s.allows("servers", Some("ann")), "admin:users does not start servers");
        let s = ScopeSet::expand(&req(&["servers!user=ann", "read:metrics"]), None);
        assert!(s.allows("delete:servers", Some("ann")) && !s.allows("delete:servers", Some("bob")));
        assert!(!s.allows("delete:servers", None), "a filtered scope is not a global one");
        assert!(s.allows("read:metrics", None));
    }

    #[test]
    fn self_and_tokens_never_exceed_the_owner() {
        let ann = ScopeSet::for_user("ann", false);
        assert!(ann.allows("servers", Some("ann")) && ann.allows("access:servers", Some("ann")));
        assert!(!ann.allows("servers", Some("bob")) && !ann.allows("list:users", None));
        // A non-admin's token asking for admin scopes gets only the owner's share of them.
        let t = ScopeSet::for_token(&req(&["read:users", "admin:servers"]), "ann", &ann);
        assert!(t.allows("read:users", Some("ann")) && !t.allows("read:users", Some("bob")));
        assert!(!t.allows("admin:server_state", Some("ann")), "ann herself lacks admin:server_state");
        let t = ScopeSet::for_token(&req(&["inherit"]), "ann", &ann);
        assert_eq!(t, ann);
        let admin = ScopeSet::for_user("root1", true);
        let t = ScopeSet::for_token(&req(&["read:servers"]), "root1", &admin);
        assert!(t.allows("read:servers", Some("bob")) && !t.allows("delete:servers", Some("bob")));
        assert!(t.strings().contains(&"read:users:name".to_string()));
    }
}
