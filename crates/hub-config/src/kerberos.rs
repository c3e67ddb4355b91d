//! `[kerberos]`: the tickets the hub keeps for each user.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};

use crate::template::Template;

/// `[kerberos]`: tickets for each user.
#[derive(Clone, Debug)]
pub struct KerberosConfig {
    /// Whether the hub runs kinit for users at all (`enabled`).
    pub enabled: bool,
    /// Realm substituted for `{realm}` (`realm`).
    pub realm: String,
    /// Principal template (`principal`, default `{username}@{realm}`).
    pub principal: Template,
    /// Keytab path template (`keytab`, default `/home/{username}/{username}.keytab`).
    pub keytab: Template,
    /// Credential cache path template (`ccache`, default `<data_dir>/ccache/krb5cc_{uid}`).
    pub ccache: Template,
    /// The kinit program (`kinit`, default `kinit`).
    pub kinit: String,
    /// Longest a kinit may run before it is killed (`kinit_timeout`, default 15 s).
    pub kinit_timeout: Duration,
    /// `KRB5_CONFIG` for kinit and for the servers (`krb5_config`); unset = the system default.
    pub krb5_config: Option<PathBuf>,
    /// Fraction of the ticket lifetime after which the timer renews (`renew_at`, default 0.75,
    /// Spark's ratio; Hadoop's UGI uses 0.8). In (0, 1).
    pub renew_at: f64,
    /// The timer renews no later than this long before the ticket ends (`min_remaining`,
    /// default 10 min).
    pub min_remaining: Duration,
    /// Open/save/login events within this long of the last successful kinit are folded into
    /// it (`event_min_interval`, default 30 s; 0 = every event renews).
    pub event_min_interval: Duration,
    /// Most kinit processes running at once, hub-wide (`max_concurrent_kinit`, default 8).
    pub max_concurrent_kinit: usize,
    /// First retry delay after a failed kinit (`retry_min`, default 10 s); doubles per failure.
    pub retry_min: Duration,
    /// Longest retry delay (`retry_max`, default 5 min).
    pub retry_max: Duration,
    /// Whether a user's ccache is deleted when their server stops (`remove_ccache_on_stop`,
    /// default true).
    pub remove_ccache_on_stop: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileKerberos {
    #[serde(default)]
    pub(crate) enabled: bool,
    pub(crate) realm: Option<Spanned<String>>,
    pub(crate) principal: Option<Spanned<String>>,
    pub(crate) keytab: Option<Spanned<String>>,
    pub(crate) ccache: Option<Spanned<String>>,
    pub(crate) kinit: Option<String>,
    pub(crate) kinit_timeout: Option<Spanned<String>>,
    pub(crate) krb5_config: Option<PathBuf>,
    pub(crate) renew_at: Option<Spanned<f64>>,
    pub(crate) min_remaining: Option<Spanned<String>>,
    pub(crate) event_min_interval: Option<Spanned<String>>,
    pub(crate) max_concurrent_kinit: Option<Spanned<i64>>,
    pub(crate) retry_min: Option<Spanned<String>>,
    pub(crate) retry_max: Option<Spanned<String>>,
    pub(crate) remove_ccache_on_stop: Option<bool>,
}

/// Validates `[kerberos]`; `data_dir` is `[hub] data_dir` (the default ccache directory).
pub(crate) fn parse(src: &Source<'_>, k: &FileKerberos, data_dir: &Path) -> Result<KerberosConfig, ConfigError> {
    let path = src.path;
    // [kerberos]
    let realm = k.realm.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default();
    if k.enabled && realm.is_empty() {
        return Err(ConfigError(format!(
            "{}: `kerberos.realm` is required when `kerberos.enabled = true` (e.g. realm = \"EXAMPLE.COM\")",
            path.display()
        )));
    }
    let path_vars = ["username", "uid", "realm"];
    let principal = match &k.principal {
        Some(p) => src.template("kerberos.principal", p, &path_vars)?,
        None => Template::literal("{username}@{realm}"),
    };
    let keytab = match &k.keytab {
        Some(p) => src.template("kerberos.keytab", p, &path_vars)?,
        None => Template::literal("/home/{username}/{username}.keytab"),
    };
    let ccache = match &k.ccache {
        Some(p) => {
            let t = src.template("kerberos.ccache", p, &path_vars)?;
            if !t.as_str().starts_with('/') {
                return Err(src.err("kerberos.ccache", p, "must be an absolute path (no FILE: prefix)"));
            }
            if !t.as_str().contains("{uid}") && !t.as_str().contains("{username}") {
                return Err(src.err(
                    "kerberos.ccache",
                    p,
                    "must contain {uid} or {username}, or all users would share one credential cache",
                ));
            }
            t
        }
        None => Template::literal(format!(
            "{}/ccache/krb5cc_{{uid}}",
            data_dir.display().to_string().replace('{', "{{").replace('}', "}}")
        )),
    };
    let kinit_timeout = src.duration("kerberos.kinit_timeout", &k.kinit_timeout, Duration::from_secs(15))?;
    let renew_at = match &k.renew_at {
        None => 0.75,
        Some(r) if *r.get_ref() > 0.0 && *r.get_ref() < 1.0 => *r.get_ref(),
        Some(r) => return Err(src.err("kerberos.renew_at", r, "must be a fraction between 0 and 1, e.g. 0.75")),
    };
    let min_remaining = src.duration("kerberos.min_remaining", &k.min_remaining, Duration::from_secs(600))?;
    let event_min_interval =
        src.duration("kerberos.event_min_interval", &k.event_min_interval, Duration::from_secs(30))?;
    let max_concurrent_kinit = match &k.max_concurrent_kinit {
        None => 8,
        Some(n) if (1..=1024).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => return Err(src.err("kerberos.max_concurrent_kinit", n, "must be between 1 and 1024")),
    };
    let retry_min = src.duration("kerberos.retry_min", &k.retry_min, Duration::from_secs(10))?;
    let retry_max = src.duration("kerberos.retry_max", &k.retry_max, Duration::from_secs(300))?;
    if retry_min.is_zero() || retry_max < retry_min {
        let at = k.retry_max.as_ref().or(k.retry_min.as_ref());
        let msg = "must satisfy 0 < retry_min <= retry_max";
        return Err(match at {
            Some(v) => src.err("kerberos.retry_min/retry_max", v, msg),
            None => ConfigError(format!("{}: `kerberos.retry_min/retry_max` {msg}", path.display())),
        });
    }
    Ok(KerberosConfig {
        enabled: k.enabled,
        realm,
        principal,
        keytab,
        ccache,
        kinit: k.kinit.clone().unwrap_or_else(|| "kinit".into()),
        kinit_timeout,
        krb5_config: k.krb5_config.clone(),
        renew_at,
        min_remaining,
        event_min_interval,
        max_concurrent_kinit,
        retry_min,
        retry_max,
        remove_ccache_on_stop: k.remove_ccache_on_stop.unwrap_or(true),
    })
}
