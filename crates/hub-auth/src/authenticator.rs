//! The authenticator seam: the [`Authenticator`] trait, what it answers, and why a login was
//! refused.

use async_trait::async_trait;

use crate::credentials::LoginCredentials;

/// MIT krb5 error codes (com_err table `krb5`, `krb5/krb5.h`) that a login can end with.
pub(crate) mod code {
    pub const NAME_EXP: i64 = -1765328383; // KRB5KDC_ERR_NAME_EXP: principal expired
    pub const C_PRINCIPAL_UNKNOWN: i64 = -1765328378; // KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN
    pub const S_PRINCIPAL_UNKNOWN: i64 = -1765328377; // KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN
    pub const POLICY: i64 = -1765328372; // KRB5KDC_ERR_POLICY
    pub const CLIENT_REVOKED: i64 = -1765328366; // KRB5KDC_ERR_CLIENT_REVOKED: locked/disabled
    pub const KEY_EXP: i64 = -1765328361; // KRB5KDC_ERR_KEY_EXP: password expired
    pub const PREAUTH_FAILED: i64 = -1765328360; // KRB5KDC_ERR_PREAUTH_FAILED
    pub const BAD_INTEGRITY: i64 = -1765328353; // KRB5KRB_AP_ERR_BAD_INTEGRITY (no preauth)
    pub const SKEW: i64 = -1765328347; // KRB5KRB_AP_ERR_SKEW
    pub const REALM_UNKNOWN: i64 = -1765328230; // KRB5_REALM_UNKNOWN
    pub const KDC_UNREACH: i64 = -1765328228; // KRB5_KDC_UNREACH
    pub const PREAUTH_FAILED_LIB: i64 = -1765328174; // KRB5_PREAUTH_FAILED
    pub const REALM_CANT_RESOLVE: i64 = -1765328164; // KRB5_REALM_CANT_RESOLVE
}

/// What the login page says for a wrong password, an unknown user and a name that is not
/// valid: one message, so that it does not tell which user names exist.
pub const LOGIN_REFUSED: &str = "Invalid user name or password.";

/// A successful authentication.
#[derive(Debug)]
pub struct Authenticated {
    /// The user name to log in as.
    pub username: String,
    /// Kerberos credentials obtained on the way (a password login's TGT), if any.
    pub credentials: Option<LoginCredentials>,
}

/// Why a login was refused. The `Display` text is for the log (never contains the password);
/// the login page always shows the same plain message whatever the reason, so that it does
/// not tell an attacker which user names exist.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The user name is not a valid name (see [`hub_core::user::normalize_username`]).
    #[error("invalid user name: {0}")]
    InvalidName(String),
    /// The credentials were checked and refused.
    #[error("{0}")]
    Rejected(String),
    /// A Kerberos login failed; `failure` says why (for the page), `detail` is for the log.
    #[error("Kerberos login refused ({}): {detail}", failure.as_str())]
    Kerberos {
        /// The classified reason.
        failure: KerberosFailure,
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

/// Why a Kerberos password login failed, from the KDC's answer. The log gets the variant and
/// the GSS-API text; the user gets [`KerberosFailure::user_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KerberosFailure {
    /// The password is wrong (preauthentication failed).
    WrongPassword,
    /// The KDC does not know the principal.
    UnknownPrincipal,
    /// The principal has expired or is locked (disabled) in the KDC.
    Locked,
    /// The principal's password has expired and must be changed.
    PasswordExpired,
    /// No KDC for the realm answered.
    KdcUnreachable,
    /// The hub's and the KDC's clocks differ by more than the allowed skew.
    ClockSkew,
    /// The KDC issued a TGT, but the hub's keytab could not accept a ticket from it: the KDC
    /// is not the realm's genuine one, or the keytab is stale.
    ValidationFailed,
    /// Anything else.
    Other,
}

impl KerberosFailure {
    pub(crate) fn from_minor(minor: u32) -> Self {
        // GSS-API minor codes carry the com_err code as an unsigned 32-bit value.
        match i64::from(minor as i32) {
            code::PREAUTH_FAILED | code::BAD_INTEGRITY | code::PREAUTH_FAILED_LIB => Self::WrongPassword,
            code::C_PRINCIPAL_UNKNOWN => Self::UnknownPrincipal,
            code::NAME_EXP | code::CLIENT_REVOKED | code::POLICY => Self::Locked,
            code::KEY_EXP => Self::PasswordExpired,
            code::KDC_UNREACH | code::REALM_UNKNOWN | code::REALM_CANT_RESOLVE => Self::KdcUnreachable,
            code::SKEW => Self::ClockSkew,
            _ => Self::Other,
        }
    }

    /// A short tag for the log line (`reason=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongPassword => "wrong_password",
            Self::UnknownPrincipal => "unknown_principal",
            Self::Locked => "principal_expired_or_locked",
            Self::PasswordExpired => "password_expired",
            Self::KdcUnreachable => "kdc_unreachable",
            Self::ClockSkew => "clock_skew",
            Self::ValidationFailed => "kdc_validation_failed",
            Self::Other => "other",
        }
    }

    /// What the login page says. Wrong password and unknown principal say the same thing,
    /// so that the page does not tell which user names exist.
    pub fn user_message(self) -> &'static str {
        match self {
            Self::WrongPassword | Self::UnknownPrincipal => LOGIN_REFUSED,
            Self::Locked => "This Kerberos account is expired or locked; ask an admin to unlock it.",
            Self::PasswordExpired => "Your Kerberos password has expired; change it with kpasswd, then sign in again.",
            Self::KdcUnreachable => {
                "The Kerberos server (KDC) cannot be reached right now; please try again in a few minutes."
            }
            Self::ClockSkew => "The hub's clock and the Kerberos server's clock disagree; please tell an admin.",
            Self::ValidationFailed | Self::Other => "Sign-in is not working right now; please tell an admin.",
        }
    }
}
