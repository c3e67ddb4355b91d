//! Users: the rule for hub user names, the Linux account a user maps to, and the identity a
//! Kerberos ticket is written for.

use std::ffi::CString;
use std::path::PathBuf;

/// A user name that breaks the rule of [`normalize_username`]; the text says which part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid user name: {0}")]
pub struct InvalidUserName(pub String);

/// Longest accepted user name, in bytes (the Linux `LOGIN_NAME_MAX` minus the NUL is 255,
/// but `useradd` and most tools cap names at 32).
pub const MAX_USERNAME_LEN: usize = 32;

/// Validates and normalises a user name typed into the login form.
///
/// Rule: surrounding whitespace is trimmed and ASCII letters are lower-cased (as JupyterHub's
/// default `normalize_username` does); the result must be a portable POSIX user name
/// (POSIX.1-2017 §3.437, restricted the way Debian's `adduser` does): 1 to 32 characters
/// from `a-z 0-9 _ . -`, not starting with `-` or `.`, and not `.` or `..`. Anything else
/// (`/`, control characters, spaces, non-ASCII) is refused with a message naming the rule.
pub fn normalize_username(raw: &str) -> Result<String, InvalidUserName> {
    let name = raw.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(InvalidUserName("the user name is empty".into()));
    }
    if name.len() > MAX_USERNAME_LEN {
        return Err(InvalidUserName(format!("longer than {MAX_USERNAME_LEN} characters")));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(*c))) {
        return Err(InvalidUserName(format!("contains {c:?}; only letters, digits, '_', '.' and '-' are allowed")));
    }
    if name.starts_with(['-', '.']) {
        return Err(InvalidUserName("starts with '-' or '.'".into()));
    }
    Ok(name)
}

/// A Linux account, as read from the passwd and group databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxUser {
    /// Login name.
    pub name: String,
    /// UID.
    pub uid: u32,
    /// Primary GID.
    pub gid: u32,
    /// Every group the user is in, primary included (`getgrouplist(3)`).
    pub groups: Vec<u32>,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
}

/// Why a Linux account could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No passwd entry for the name.
    #[error("there is no Linux account named {0:?} on this host; ask an admin to create it")]
    NoSuchUser(String),
    /// The passwd/group lookup failed.
    #[error("looking up the Linux account {name:?} failed: {source}")]
    Lookup {
        /// The user name.
        name: String,
        /// The errno from getpwnam_r/getgrouplist.
        source: nix::Error,
    },
}

impl LinuxUser {
    /// Looks `name` up with `getpwnam_r(3)` and `getgrouplist(3)`. Runs in the calling thread
    /// (NSS may block briefly; callers on the async runtime use `spawn_blocking`).
    pub fn lookup(name: &str) -> Result<Self, LookupError> {
        let lookup = |source| LookupError::Lookup { name: name.to_string(), source };
        let u = nix::unistd::User::from_name(name)
            .map_err(lookup)?
            .ok_or_else(|| LookupError::NoSuchUser(name.to_string()))?;
        let cname = CString::new(name).map_err(|_| LookupError::NoSuchUser(name.to_string()))?;
        let groups = nix::unistd::getgrouplist(&cname, u.gid).map_err(lookup)?;
        Ok(Self {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
            home: u.dir,
            shell: u.shell,
        })
    }

    /// Like [`lookup`](Self::lookup), off the async runtime's worker threads.
    pub async fn lookup_async(name: &str) -> Result<Self, LookupError> {
        let n = name.to_string();
        // The blocking pool only fails when the runtime is shutting down (or the lookup
        // panicked); report it as an I/O error of the lookup.
        tokio::task::spawn_blocking(move || Self::lookup(&n))
            .await
            .unwrap_or_else(|_| Err(LookupError::Lookup { name: name.to_string(), source: nix::Error::EIO }))
    }
}

/// The Linux identity a ticket is written for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketOwner {
    /// Hub user name.
    pub username: String,
    /// Linux UID the ccache is chowned to.
    pub uid: u32,
    /// Linux primary GID the ccache is chowned to.
    pub gid: u32,
}

impl From<&LinuxUser> for TicketOwner {
    /// The ticket owner for `user`'s account: its name, UID and primary GID.
    fn from(user: &LinuxUser) -> Self {
        TicketOwner { username: user.name.clone(), uid: user.uid, gid: user.gid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_whitespace() {
        assert_eq!(normalize_username("  Alice ").expect("ok"), "alice");
        assert_eq!(normalize_username("svc_etl-2.x").expect("ok"), "svc_etl-2.x");
    }

    #[test]
    fn refuses_unsafe_names() {
        for bad in ["", " ", "../etc", "a/b", "..", ".hidden", "-rf", "a b", "a\nb", "a\0b", "émile", &"x".repeat(33)]
        {
            assert!(normalize_username(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
