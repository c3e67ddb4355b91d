//! `hub-auth`: who is this person, and may they in?
//!
//! Authenticators, access rules ([`access`]), the login throttle ([`throttle`]) and sessions
//! ([`session`], signed with [`jwt`]).
//!
//! Authenticators: who is this person?
//!
//! An [`Authenticator`] turns a user name and password from the login form into a verified
//! user name: PAM ([`pam::PamAuthenticator`]) or a Kerberos AS exchange validated against the
//! hub's keytab ([`kerberos::KerberosAuthenticator`]). SPNEGO ([`kerberos::accept_negotiate`])
//! needs no password and is handled by the login route. User names are validated and
//! normalised by [`normalize_username`] before any authenticator sees them; who may log in
//! once authenticated is decided by [`access`].

pub mod access;
pub mod jwt;
pub mod kerberos;
pub mod pam;
pub mod session;
pub mod throttle;

pub use hub_core::user::{InvalidUserName, MAX_USERNAME_LEN, normalize_username};

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
