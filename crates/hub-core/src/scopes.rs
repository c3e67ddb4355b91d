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

/// Every scope name the hub understands (besides `self` and `inherit`).
pub const KNOWN: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:auth_state",
    "users",
    "delete:users",
    "list:users",
    "read:users",
    "read:users:name",
    "read:users:groups",
    "read:users:activity",
    "users:activity",
    "read:roles",
    "read:roles:users",
    "read:roles:groups",
    "admin:servers",
    "admin:server_state",
    "servers",
    "read:servers",
    "delete:servers",
    "access:servers",
    "tokens",
    "read:tokens",
    "admin:groups",
    "groups",
    "read:groups",
    "read:groups:name",
    "list:groups",
    "delete:groups",
    "read:metrics",
    "read:hub",
    "proxy",
    "shutdown",
    JOBS,
    READ_JOBS,
];

/// Managing a user's notebook jobs and runs (create, change, run, cancel, delete). JupyterHub
/// has no such scope; its rule for scopes it does not define is the `custom:` prefix.
pub const JOBS: &str = "custom:jobs";
/// Reading a user's jobs, runs, run logs and outputs.
pub const READ_JOBS: &str = "custom:jobs:read";

/// The scopes the JupyterHub `admin` role holds.
pub const ADMIN_ROLE: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "tokens",
    "admin:groups",
    "read:hub",
    "proxy",
    "shutdown",
    "access:servers",
    "read:roles",
    "read:metrics",
    JOBS,
];

/// The scopes directly below `name` in JupyterHub's hierarchy.
pub fn subscopes(name: &str) -> &'static [&'static str] {
    match name {
        "admin:users" => &["admin:auth_state", "users", "read:roles:users", "delete:users"],
        "users" => &["read:users", "list:users", "users:activity"],
        "read:users" => &["read:users:name", "read:users:groups", "read:users:activity"],
        "users:activity" => &["read:users:activity"],
        "read:roles" => &["read:roles:users", "read:roles:groups"],
        "admin:servers" => &["admin:server_state", "servers"],
        "servers" => &["read:servers", "delete:servers"],
        "read:servers" => &["read:users:name"],
        "tokens" => &["read:tokens"],
        "admin:groups" => &["groups", "read:roles:groups", "delete:groups"],
        "groups" => &["read:groups", "list:groups"],
        "read:groups" => &["read:groups:name"],
        JOBS => &[READ_JOBS],
        _ => &[],
    }
}

/// Which objects a scope applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Filter {
    /// Every user.
    All,
    /// Only this user (`!user=NAME`, or `!server=NAME/`).
    User(String),
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
        }
    }
}

/// A scope as written: a name from [`KNOWN`], `self` or `inherit`, with an optional filter.
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
    /// `!server=` names something other than a user's default server.
    #[error("scope {0:?}: only a user's default server can be named, as !server=NAME/")]
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
}

/// Parses one scope string. Errors say what is wrong, e.g. `unknown scope "read:userz"`.
pub fn parse(s: &str) -> Result<Requested, ScopeError> {
    let (name, filter) = match s.split_once('!') {
        None => (s, Filter::All),
        Some((name, f)) => {
            let user = if let Some(u) = f.strip_prefix("user=") {
                u
            } else if let Some(u) = f.strip_prefix("server=") {
                u.strip_suffix('/')
                    .filter(|u| !u.contains('/'))
                    .ok_or_else(|| ScopeError::NamedServer(s.to_string()))?
            } else {
                return Err(ScopeError::UnsupportedFilter(s.to_string()));
            };
            if user.is_empty() || user.len() > 256 || user.chars().any(|c| c.is_control()) {
                return Err(ScopeError::InvalidUser(s.to_string()));
            }
            (name, Filter::User(user.to_string()))
        }
    };
    if name == "inherit" && filter != Filter::All {
        return Err(ScopeError::FilteredInherit);
    }
    if name != "self" && name != "inherit" && !KNOWN.contains(&name) {
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
                    for s in ["users", "servers", "tokens", "access:servers", "read:users:groups", JOBS] {
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
                    (Filter::User(_), Filter::All) => false,
                }
        })
    }

    /// Whether the set holds `name` for `user` (`None`: for every user, or a scope that is not
    /// about users such as `read:metrics`).
    pub fn allows(&self, name: &str, user: Option<&str>) -> bool {
        let filter = user.map_or(Filter::All, |u| Filter::User(u.to_string()));
        self.covers(&Scope { name: name.to_string(), filter })
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
        assert_eq!(parse("servers!server=ann/").expect("ok").filter, Filter::User("ann".into()));
        assert!(parse("read:userz").expect_err("unknown").to_string().contains("unknown scope"));
        assert!(parse("servers!server=ann/gpu").expect_err("named").to_string().contains("default server"));
        assert!(parse("servers!group=x").expect_err("group").to_string().contains("unsupported filter"));
        assert!(parse("servers!user=").is_err());
        assert!(parse("inherit!user=ann").is_err());
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
