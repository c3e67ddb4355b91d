//! Kerberos authentication: password logins (an AS exchange validated against the hub's
//! own keytab) and SPNEGO (`Authorization: Negotiate`, RFC 4559), both through GSS-API
//! (RFC 2743) with MIT krb5's `libgssapi_krb5` via the `libgssapi` crate.
//!
//! **Password logins.** `gss_acquire_cred_with_password` runs the AS exchange for
//! `<user>@<realm>` and keeps the TGT in memory. A TGT alone proves nothing: whoever answers
//! on the KDC's address can issue one for any password. So the hub then gets a service ticket
//! for its own principal (`[auth] service_principal`, e.g. `HTTP/hub.example.com@REALM`) with
//! that TGT and accepts it with the keys in `[auth] service_keytab`; only the genuine KDC knows
//! those keys. This is what pam_krb5 calls "validate" and MIT's `krb5_verify_init_creds` does.
//!
//! **SPNEGO.** The browser's token is accepted with the same keytab; the client principal is
//! mapped to a user name by [`principal_to_username`]. Delegated credentials, if the client
//! sent any, are handed back so that they can become the user's credential cache.
//!
//! GSS-API reads `KRB5_CONFIG` from the process environment, so `hub serve` sets it from
//! `[kerberos] krb5_config` before it starts any thread.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr;

use async_trait::async_trait;
use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL, OidSet};

pub use crate::authenticator::KerberosFailure;
use crate::authenticator::code;
use crate::authenticator::{AuthError, Authenticated, Authenticator};
pub use crate::credentials::{GssError, LoginCredentials};
use hub_config::PrincipalRule;
use hub_core::user::normalize_username;

/// The settings both Kerberos logins need, from `[auth]`.
#[derive(Clone, Debug)]
pub struct KerberosSettings {
    /// The users' realm.
    pub realm: String,
    /// Other realms SPNEGO accepts.
    pub allowed_realms: Vec<String>,
    /// The hub's service principal, `HTTP/host@REALM`.
    pub service_principal: String,
    /// Its keytab.
    pub service_keytab: PathBuf,
    /// Principal → user name rules.
    pub principal_map: Vec<PrincipalRule>,
}

/// Maps a Kerberos principal (`name[/instance]@REALM`) to a hub user name.
///
/// Rule, in order: the first `[[auth.principal_map]]` rule whose pattern matches the whole
/// principal gives the name (its `$N` groups expanded); otherwise a principal with no instance
/// in `realm` or one of `allowed_realms` maps to its first component (the realm is stripped,
/// as krb5's `auth_to_local` `DEFAULT` rule does); anything else (a foreign realm, a service
/// principal with an instance) is refused. The result must then pass
/// [`normalize_username`] unchanged: a mapping never silently rewrites a name.
pub fn principal_to_username(
    principal: &str,
    realm: &str,
    allowed_realms: &[String],
    rules: &[PrincipalRule],
) -> Result<String, AuthError> {
    if principal.len() > 1024 || principal.chars().any(char::is_control) {
        return Err(AuthError::InvalidName("the principal is too long or has control characters".into()));
    }
    let mapped = if let Some(rule) = rules.iter().find(|r| r.pattern.is_match(principal)) {
        let mut out = String::new();
        if let Some(caps) = rule.pattern.captures(principal) {
            caps.expand(&rule.user, &mut out);
        }
        out
    } else {
        let Some((name, prin_realm)) = principal.rsplit_once('@') else {
            return Err(AuthError::InvalidName(format!("principal {principal:?} has no realm")));
        };
        if prin_realm != realm && !allowed_realms.iter().any(|r| r == prin_realm) {
            return Err(AuthError::InvalidName(format!(
                "principal {principal:?} is from realm {prin_realm}, which is not {realm} or in [auth] allowed_realms"
            )));
        }
        if name.contains('/') {
            return Err(AuthError::InvalidName(format!(
                "principal {principal:?} has an instance; add an [[auth.principal_map]] rule to admit it"
            )));
        }
        name.to_string()
    };
    match normalize_username(&mapped) {
        Ok(n) if n == mapped => Ok(n),
        _ => Err(AuthError::InvalidName(format!("principal {principal:?} maps to {mapped:?}, not a valid user name"))),
    }
}

/// The acceptor credential for `principal`'s keys in `keytab` (`gss_acquire_cred_from` with
/// a `keytab` credential store, a MIT krb5 extension, so that the process-wide `KRB5_KTNAME` is
/// never touched). Only tickets for `principal` (`[auth] service_principal`) are accepted with
/// it: a keytab that also holds keys of other services does not make the hub accept tickets for
/// them (with `GSS_C_NO_NAME` it would accept any principal in the keytab).
fn acceptor_cred(keytab: &Path, principal: &str) -> Result<Cred, GssError> {
    use libgssapi_sys::{
        _GSS_C_INDEFINITE, GSS_C_ACCEPT, GSS_S_COMPLETE, OM_uint32, gss_OID_desc, gss_acquire_cred_from,
        gss_buffer_desc, gss_cred_id_t, gss_import_name, gss_key_value_element_desc, gss_key_value_set_desc,
        gss_name_t, gss_release_name,
    };
    /// GSS_KRB5_NT_PRINCIPAL_NAME, 1.2.840.113554.1.2.2.1 (RFC 1964 §2.1.1), DER-encoded.
    static KRB5_NT_PRINCIPAL_NAME: [u8; 10] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01];
    let value = CString::new(format!("FILE:{}", keytab.display()))
        .map_err(|_| GssError::Invalid("the service keytab's path has a NUL byte".into()))?;
    let mut element = gss_key_value_element_desc { key: c"keytab".as_ptr(), value: value.as_ptr() };
    let store = gss_key_value_set_desc { count: 1, elements: &mut element };
    let mut minor: OM_uint32 = 0;
    let mut oid = gss_OID_desc { length: 10, elements: KRB5_NT_PRINCIPAL_NAME.as_ptr() as *mut _ };
    let mut buf = gss_buffer_desc { length: principal.len(), value: principal.as_ptr() as *mut _ };
    let mut name: gss_name_t = ptr::null_mut();
    // SAFETY: `buf` points at `principal`'s bytes and `oid` at a static, both alive for the
    // call; on success `name` is a name we own and release below.
    let major = unsafe { gss_import_name(&mut minor, &mut buf, &mut oid, &mut name) };
    if major != GSS_S_COMPLETE {
        let e = libgssapi::error::Error { major: libgssapi::error::MajorFlags::from_bits_retain(major), minor };
        return Err(GssError::Gss {
            context: format!("[auth] service_principal {principal:?} is not a Kerberos principal name"),
            source: e,
        });
    }
    let mut cred: gss_cred_id_t = ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `store`, `value` and `name` outlive it; on
    // success `cred` is a credential we own, handed to `Cred`, which releases it on drop.
    let major = unsafe {
        gss_acquire_cred_from(
            &mut minor,
            name,
            _GSS_C_INDEFINITE,
            ptr::null_mut(),
            GSS_C_ACCEPT as _,
            &store,
            &mut cred,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    let mut release_minor: OM_uint32 = 0;
    // SAFETY: `name` came from a successful gss_import_name and is released once.
    unsafe { gss_release_name(&mut release_minor, &mut name) };
    if major != GSS_S_COMPLETE {
        let e = libgssapi::error::Error { major: libgssapi::error::MajorFlags::from_bits_retain(major), minor };
        return Err(GssError::Gss {
            context: format!("cannot use the keys of {principal} in the service keytab {}", keytab.display()),
            source: e,
        });
    }
    // SAFETY: `cred` came from a successful gss_acquire_cred_from.
    Ok(unsafe { Cred::from_c(cred) })
}

/// A GSS name's display form (for Kerberos: `name[/instance]@REALM`).
fn name_string(n: &Name) -> Result<String, GssError> {
    let buf =
        n.display_name().map_err(|source| GssError::Gss { context: "reading the principal's name".into(), source })?;
    String::from_utf8(buf.to_vec()).map_err(|_| GssError::Invalid("the principal name is not UTF-8".into()))
}

/// The Kerberos password authenticator (`[auth] method = "kerberos"`).
pub struct KerberosAuthenticator {
    settings: KerberosSettings,
}

impl KerberosAuthenticator {
    /// An authenticator with `settings`.
    pub fn new(settings: KerberosSettings) -> Self {
        Self { settings }
    }
}

/// Runs the AS exchange and the validation, blocking. Returns the TGT.
fn password_login(s: &KerberosSettings, principal: &str, password: &str) -> Result<Cred, (KerberosFailure, String)> {
    let gss = |f: KerberosFailure| move |e: libgssapi::error::Error| (f, e.to_string());
    let name =
        Name::new(principal.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(gss(KerberosFailure::UnknownPrincipal))?;
    let mut mechs = OidSet::new();
    mechs.add(GSS_MECH_KRB5).map_err(gss(KerberosFailure::Other))?;
    let tgt = Cred::acquire_with_password(Some(&name), password, None, CredUsage::Initiate, Some(&mechs))
        .map_err(|e| (KerberosFailure::from_minor(e.minor), e.to_string()))?;
    // Validation: a service ticket for the hub's own principal, accepted with its keytab.
    let validation = |e: String| (KerberosFailure::ValidationFailed, e);
    let target = Name::new(s.service_principal.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
        .map_err(|e| validation(format!("service principal {}: {e}", s.service_principal)))?;
    let mut client = ClientCtx::new(Some(tgt.clone()), target, CtxFlags::GSS_C_MUTUAL_FLAG, Some(GSS_MECH_KRB5));
    let token = client
        .step(None, None)
        .map_err(|e| {
            let f = match i64::from(e.minor as i32) {
                code::S_PRINCIPAL_UNKNOWN => KerberosFailure::ValidationFailed,
                code::KDC_UNREACH => KerberosFailure::KdcUnreachable,
                _ => KerberosFailure::ValidationFailed,
            };
            (f, format!("getting a ticket for {}: {e}", s.service_principal))
        })?
        .ok_or_else(|| validation("the GSS-API client produced no token".into()))?;
    let acceptor = acceptor_cred(&s.service_keytab, &s.service_principal).map_err(|e| validation(e.to_string()))?;
    let mut server = ServerCtx::new(Some(acceptor));
    server.step(&token, None).map_err(|e| {
        validation(format!(
            "the ticket for {} does not decrypt with {}: {e} (a KDC that is not the realm's, or a stale keytab)",
            s.service_principal,
            s.service_keytab.display()
        ))
    })?;
    let who = server
        .source_name()
        .map_err(|source| GssError::Gss { context: "reading the ticket's client".into(), source })
        .and_then(|n| name_string(&n))
        .map_err(|e| validation(e.to_string()))?;
    if who != principal {
        return Err(validation(format!("the ticket names {who:?}, not {principal:?}")));
    }
    Ok(tgt)
}

#[async_trait]
impl Authenticator for KerberosAuthenticator {
    async fn authenticate(&self, username: &str, password: &str) -> Result<Authenticated, AuthError> {
        let s = self.settings.clone();
        let principal = format!("{username}@{}", s.realm);
        let pass = password.to_string();
        let user = username.to_string();
        tokio::task::spawn_blocking(move || match password_login(&s, &principal, &pass) {
            Ok(tgt) => Ok(Authenticated { username: user, credentials: Some(LoginCredentials(tgt)) }),
            Err((failure, detail)) => Err(AuthError::Kerberos { failure, detail: format!("{principal}: {detail}") }),
        })
        .await
        .map_err(|e| AuthError::Internal(format!("Kerberos task failed: {e}")))?
    }
}

/// The outcome of one SPNEGO step.
pub enum Negotiated {
    /// The client is authenticated as `principal`; `reply` is the mutual-authentication
    /// token for `WWW-Authenticate: Negotiate <base64>`; `delegated` are forwarded credentials.
    Done {
        /// The client principal, `name@REALM`.
        principal: String,
        /// Token for the response, if the mechanism produced one.
        reply: Option<Vec<u8>>,
        /// The client's delegated credentials, if it sent any.
        delegated: Option<LoginCredentials>,
    },
    /// The mechanism wants another round trip (not used by Kerberos-in-SPNEGO from browsers).
    Continue(Vec<u8>),
}

/// Accepts one SPNEGO token (the decoded `Authorization: Negotiate` value), blocking.
///
/// Errors: the token is malformed, is for another service, or does not decrypt with the keytab.
pub fn accept_negotiate(keytab: &Path, service_principal: &str, token: &[u8]) -> Result<Negotiated, GssError> {
    let acceptor = acceptor_cred(keytab, service_principal)?;
    let mut ctx = ServerCtx::new(Some(acceptor));
    match ctx.step(token, None) {
        Ok(reply) if ctx.is_complete() => {
            let client = ctx
                .source_name()
                .map_err(|source| GssError::Gss { context: "reading the SPNEGO client's name".into(), source })?;
            let principal = name_string(&client)?;
            Ok(Negotiated::Done {
                principal,
                reply: reply.map(|b| b.to_vec()),
                delegated: ctx.take_delegated_cred().map(LoginCredentials),
            })
        }
        Ok(Some(more)) => Ok(Negotiated::Continue(more.to_vec())),
        Ok(None) => Err(GssError::Invalid("the SPNEGO context did not complete".into())),
        Err(source) => Err(GssError::Gss { context: "accepting the SPNEGO token".into(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, user: &str) -> PrincipalRule {
        PrincipalRule { pattern: regex::Regex::new(&format!("^(?:{pattern})$")).expect("re"), user: user.into() }
    }

    #[test]
    fn realm_is_stripped_and_foreign_realms_refused() {
        let map = |p: &str| principal_to_username(p, "EXAMPLE.COM", &["PARTNER.ORG".into()], &[]);
        assert_eq!(map("ann@EXAMPLE.COM").expect("home realm"), "ann");
        assert_eq!(map("bob@PARTNER.ORG").expect("allowed realm"), "bob");
        for bad in
            ["eve@EVIL.ORG", "ann", "ann/admin@EXAMPLE.COM", "Ann@EXAMPLE.COM", "../x@EXAMPLE.COM", "a\nb@EXAMPLE.COM"]
        {
            assert!(map(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn rules_map_other_forms_first() {
        let rules = [rule(r"([a-z]+)/admin@EXAMPLE\.COM", "$1"), rule(r"svc-([a-z]+)@CORP\.EXAMPLE\.COM", "svc_$1")];
        let map = |p: &str| principal_to_username(p, "EXAMPLE.COM", &[], &rules);
        assert_eq!(map("ann/admin@EXAMPLE.COM").expect("rule 1"), "ann");
        assert_eq!(map("svc-etl@CORP.EXAMPLE.COM").expect("rule 2"), "svc_etl");
        assert!(map("ann/admin@EXAMPLE.COMX").is_err(), "patterns are anchored");
        let to_root = [rule(r"x@EXAMPLE\.COM", "../../root")];
        assert!(principal_to_username("x@EXAMPLE.COM", "EXAMPLE.COM", &[], &to_root).is_err());
    }

    #[test]
    fn failures_are_classified_from_krb5_codes() {
        let m = |c: i64| KerberosFailure::from_minor(c as i32 as u32);
        assert_eq!(m(code::PREAUTH_FAILED), KerberosFailure::WrongPassword);
        assert_eq!(m(code::C_PRINCIPAL_UNKNOWN), KerberosFailure::UnknownPrincipal);
        assert_eq!(m(code::CLIENT_REVOKED), KerberosFailure::Locked);
        assert_eq!(m(code::KEY_EXP), KerberosFailure::PasswordExpired);
        assert_eq!(m(code::KDC_UNREACH), KerberosFailure::KdcUnreachable);
        assert_eq!(m(12345), KerberosFailure::Other);
        // The page does not tell an unknown user from a wrong password.
        assert_eq!(KerberosFailure::WrongPassword.user_message(), KerberosFailure::UnknownPrincipal.user_message());
    }
}
