//! `[auth]`: who may log in, how, and for how long.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};

/// Which authenticator checks passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// Linux PAM, through the service named by `pam_service`.
    Pam,
    /// A Kerberos AS exchange with the password, validated against the hub's own keytab.
    Kerberos,
}

/// One `[[auth.principal_map]]` rule, in the spirit of krb5.conf's `auth_to_local` `RULE:`:
/// a principal that matches `pattern` (a regular expression over the whole principal,
/// `name/instance@REALM`) becomes the user name `user`, where `$1`, `$2`... are the
/// pattern's groups. Rules are tried in order; the first match wins.
#[derive(Clone, Debug)]
pub struct PrincipalRule {
    /// The anchored pattern.
    pub pattern: regex::Regex,
    /// The replacement, e.g. `"$1"`.
    pub user: String,
}

/// `[auth]`: who may log in and for how long.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The authenticator (`method`, default `"pam"`).
    pub method: AuthMethod,
    /// PAM service name (`pam_service`, default `"login"`): the file under `/etc/pam.d/`.
    pub pam_service: String,
    /// Also accept `Authorization: Negotiate` (SPNEGO, RFC 4559) at `/hub/login` (`spnego`,
    /// default false).
    pub spnego: bool,
    /// The realm user names belong to (`realm`, default `[kerberos] realm`); needed by the
    /// `kerberos` method and SPNEGO.
    pub realm: String,
    /// The hub's own service principal (`service_principal`, e.g.
    /// `HTTP/hub.example.com@EXAMPLE.COM`): password logins get a ticket for it to prove the KDC
    /// genuine, and SPNEGO clients get tickets for it.
    pub service_principal: String,
    /// Keytab holding `service_principal`'s keys (`service_keytab`, root-only).
    pub service_keytab: Option<PathBuf>,
    /// Realms besides `realm` whose principals may log in by SPNEGO (`allowed_realms`).
    pub allowed_realms: Vec<String>,
    /// Principal → user name rules (`[[auth.principal_map]]`), tried before stripping the realm.
    pub principal_map: Vec<PrincipalRule>,
    /// Only these user names may log in (`allowed_users`; empty = anyone the authenticator
    /// accepts, subject to `allowed_groups`).
    pub allowed_users: Vec<String>,
    /// Members of these Unix groups may log in (`allowed_groups`, checked with getgrouplist).
    pub allowed_groups: Vec<String>,
    /// User names that are admins (`admin_users`).
    pub admin_users: Vec<String>,
    /// Members of these Unix groups are admins (`admin_groups`).
    pub admin_groups: Vec<String>,
    /// Lifetime of a login session (`session_max_age`, default 24 h).
    pub session_max_age: Duration,
    /// Older signing keys still accepted for sessions they signed (`previous_jwt_secret_files`),
    /// so a key can be rotated without logging everyone out.
    pub previous_jwt_secret_files: Vec<PathBuf>,
    /// Failed logins allowed per user name within `failed_login_window` before more attempts
    /// are refused unchecked (`max_failed_logins`, default 5).
    pub max_failed_logins: u32,
    /// Failed logins allowed per client address within the window
    /// (`max_failed_logins_per_address`, default 20).
    pub max_failed_logins_per_address: u32,
    /// The window for both limits (`failed_login_window`, default 5 min).
    pub failed_login_window: Duration,
    /// Every refused login takes at least this long, so that timing does not tell whether the
    /// user exists (`failure_delay`, default 1 s).
    pub failure_delay: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAuth {
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) pam_service: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) spnego: bool,
    pub(crate) realm: Option<Spanned<String>>,
    pub(crate) service_principal: Option<Spanned<String>>,
    pub(crate) service_keytab: Option<PathBuf>,
    #[serde(default)]
    pub(crate) allowed_realms: Vec<String>,
    #[serde(default)]
    pub(crate) principal_map: Vec<FilePrincipalRule>,
    #[serde(default)]
    pub(crate) allowed_users: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) allowed_groups: Vec<String>,
    #[serde(default)]
    pub(crate) admin_users: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) admin_groups: Vec<String>,
    pub(crate) session_max_age: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) previous_jwt_secret_files: Vec<PathBuf>,
    pub(crate) max_failed_logins: Option<Spanned<i64>>,
    pub(crate) max_failed_logins_per_address: Option<Spanned<i64>>,
    pub(crate) failed_login_window: Option<Spanned<String>>,
    pub(crate) failure_delay: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePrincipalRule {
    #[serde(rename = "match")]
    pub(crate) pattern: Spanned<String>,
    pub(crate) user: String,
}

/// Validates `[auth]`; `kerberos_realm` is `[kerberos] realm`, the default realm.
pub(crate) fn parse(
    src: &Source<'_>,
    a: &FileAuth,
    kerberos_realm: Option<&Spanned<String>>,
) -> Result<AuthConfig, ConfigError> {
    let path = src.path;
    // [auth]
    let method = match &a.method {
        None => AuthMethod::Pam,
        Some(m) if m.get_ref() == "pam" => AuthMethod::Pam,
        Some(m) if m.get_ref() == "kerberos" => AuthMethod::Kerberos,
        Some(m) => {
            return Err(src.err(
                "auth.method",
                m,
                format!("is {:?}; the supported methods are \"pam\" and \"kerberos\"", m.get_ref()),
            ));
        }
    };
    let pam_service = match &a.pam_service {
        None => "login".to_string(),
        Some(s) if !s.get_ref().is_empty() && !s.get_ref().contains(['/', '\0']) && s.get_ref() != ".." => {
            s.get_ref().clone()
        }
        Some(s) => {
            return Err(src.err("auth.pam_service", s, "must be a file name under /etc/pam.d, e.g. \"login\""));
        }
    };
    let session_max_age = src.duration("auth.session_max_age", &a.session_max_age, Duration::from_secs(24 * 3600))?;
    let auth_realm = match &a.realm {
        Some(r) if valid_realm(r.get_ref()) => r.get_ref().clone(),
        Some(r) => return Err(src.err("auth.realm", r, "must be a realm name such as \"EXAMPLE.COM\"")),
        None => kerberos_realm.map(|r| r.get_ref().clone()).unwrap_or_default(),
    };
    let needs_kerberos = method == AuthMethod::Kerberos || a.spnego;
    if needs_kerberos && auth_realm.is_empty() {
        return Err(ConfigError(format!(
            "{}: `auth.realm` (or `kerberos.realm`) is required for Kerberos or SPNEGO login",
            path.display()
        )));
    }
    let service_principal = match &a.service_principal {
        Some(p) if p.get_ref().contains('/') && !p.get_ref().contains(char::is_whitespace) => {
            let p = p.get_ref();
            if p.contains('@') { p.clone() } else { format!("{p}@{auth_realm}") }
        }
        Some(p) => {
            return Err(src.err(
                "auth.service_principal",
                p,
                "must be a service principal such as \"HTTP/hub.example.com@EXAMPLE.COM\"",
            ));
        }
        None if needs_kerberos => {
            return Err(ConfigError(format!(
                "{}: `auth.service_principal` is required for Kerberos or SPNEGO login \
                 (e.g. \"HTTP/hub.example.com@{auth_realm}\", with its keys in `auth.service_keytab`)",
                path.display()
            )));
        }
        None => String::new(),
    };
    if needs_kerberos && a.service_keytab.is_none() {
        return Err(ConfigError(format!(
            "{}: `auth.service_keytab` is required for Kerberos or SPNEGO login: the keytab of {service_principal}",
            path.display()
        )));
    }
    let mut principal_map = Vec::new();
    for r in &a.principal_map {
        let pattern = regex::Regex::new(&format!("^(?:{})$", r.pattern.get_ref()))
            .map_err(|e| src.err("auth.principal_map.match", &r.pattern, format!("is not a valid pattern: {e}")))?;
        principal_map.push(PrincipalRule { pattern, user: r.user.clone() });
    }
    let user_list = |key: &str, v: &[Spanned<String>]| -> Result<Vec<String>, ConfigError> {
        v.iter()
            .map(|u| {
                hub_core::user::normalize_username(u.get_ref())
                    .ok()
                    .filter(|n| n == u.get_ref())
                    .ok_or_else(|| src.err(key, u, format!("has {:?}, not a valid lower-case user name", u.get_ref())))
            })
            .collect()
    };
    let limit = |key: &str, v: &Option<Spanned<i64>>, default: u32| -> Result<u32, ConfigError> {
        match v {
            None => Ok(default),
            Some(n) if (1..=1_000_000).contains(n.get_ref()) => Ok(*n.get_ref() as u32),
            Some(n) => Err(src.err(key, n, "must be between 1 and 1000000")),
        }
    };
    Ok(AuthConfig {
        method,
        pam_service,
        spnego: a.spnego,
        realm: auth_realm,
        service_principal,
        service_keytab: a.service_keytab.clone(),
        allowed_realms: a.allowed_realms.clone(),
        principal_map,
        allowed_users: user_list("auth.allowed_users", &a.allowed_users)?,
        allowed_groups: a.allowed_groups.clone(),
        admin_users: user_list("auth.admin_users", &a.admin_users)?,
        admin_groups: a.admin_groups.clone(),
        session_max_age,
        previous_jwt_secret_files: a.previous_jwt_secret_files.clone(),
        max_failed_logins: limit("auth.max_failed_logins", &a.max_failed_logins, 5)?,
        max_failed_logins_per_address: limit(
            "auth.max_failed_logins_per_address",
            &a.max_failed_logins_per_address,
            20,
        )?,
        failed_login_window: src.duration(
            "auth.failed_login_window",
            &a.failed_login_window,
            Duration::from_secs(300),
        )?,
        failure_delay: src.duration("auth.failure_delay", &a.failure_delay, Duration::from_secs(1))?,
    })
}

/// A realm name: upper-case-insensitive letters, digits, `.`, `-`, `_`, 1-255 bytes.
fn valid_realm(r: &str) -> bool {
    !r.is_empty() && r.len() <= 255 && r.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
}
