//! Authenticators: who is this person?
//!
//! An [`Authenticator`] turns a user name and password from the login form into a verified
//! user name: PAM ([`pam::PamAuthenticator`]) or a Kerberos AS exchange validated against the
//! hub's keytab ([`kerberos::KerberosAuthenticator`]). SPNEGO ([`kerberos::accept_negotiate`])
//! needs no password and is handled by the login route. User names are validated and
//! normalised by [`normalize_username`] before any authenticator sees them; who may log in
//! once authenticated is decided by [`access`].

pub mod access;
pub mod kerberos;
pub mod pam;
pub mod throttle;

/// What the login page says for a wrong password, an unknown user and a name that is not
/// valid: one message, so that it does not tell which user names exist.
pub const LOGIN_REFUSED: &str = "Invalid user name or password.";

/// A successful authentication.
#[derive(Debug)]
pub struct Authenticated {
    /// The user name to log in as.
    pub username: String,
    /// Kerberos credentials obtained on the way (a password login's TGT), if any.
    pub credentials: Option<kerberos::LoginCredentials>,
}

use async_trait::async_trait;

/// Why a login was refused. The `Display` text is for the log (never contains the password);
/// the login page always shows the same plain message whatever the reason, so that it does
/// not tell an attacker which user names exist.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The user name is not a valid name (see [`normalize_username`]).
    #[error("invalid user name: {0}")]
    InvalidName(String),
    /// The credentials were checked and refused.
    #[error("{0}")]
    Rejected(String),
    /// A Kerberos login failed; `failure` says why (for the page), `detail` is for the log.
    #[error("Kerberos login refused ({}): {detail}", failure.as_str())]
    Kerberos {
        /// The classified reason.
        failure: kerberos::KerberosFailure,
        /// The GSS-API message.
        detail: String,
    },
    /// The authenticator itself failed (PAM misconfigured, thread pool gone).
    #[error("authenticator error: {0}")]
    Internal(String),
}

/// Checks a password for a user name.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies `password` for the already-normalised `username`; returns the user name to
    /// log in as and any credentials obtained.
    async fn authenticate(&self, username: &str, password: &str) -> Result<Authenticated, AuthError>;
}

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
pub fn normalize_username(raw: &str) -> Result<String, AuthError> {
    let name = raw.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(AuthError::InvalidName("the user name is empty".into()));
    }
    if name.len() > MAX_USERNAME_LEN {
        return Err(AuthError::InvalidName(format!("longer than {MAX_USERNAME_LEN} characters")));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(*c))) {
        return Err(AuthError::InvalidName(format!(
            "contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
        )));
    }
    if name.starts_with(['-', '.']) {
        return Err(AuthError::InvalidName("starts with '-' or '.'".into()));
    }
    Ok(name)
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
