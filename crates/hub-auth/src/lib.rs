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
mod authenticator;
mod credentials;
pub mod jwt;
pub mod kerberos;
pub mod pam;
pub mod service;
pub mod session;
pub mod throttle;

pub use authenticator::{AuthError, Authenticated, Authenticator, KerberosFailure, LOGIN_REFUSED};
pub use credentials::{GssError, LoginCredentials};
pub use hub_core::user::{InvalidUserName, MAX_USERNAME_LEN, normalize_username};
