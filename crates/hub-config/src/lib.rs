//! `hub-config`: `hub.toml`, the admin's interface.
//!
//! The file is parsed into `File*` structs that mirror it exactly
//! (`#[serde(deny_unknown_fields)]`, so a misspelt key is an error), then validated into
//! [`Config`], the type the rest of the hub uses. Every error names the key and the line.
//! `config/hub.toml` in the repository is the commented example of every key; `hub
//! example-config` prints it.

pub mod limits;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The commented example configuration shipped as `config/hub.toml`.
pub const EXAMPLE: &str = include_str!("../../../config/hub.toml");

/// Default location of the configuration file when neither `--config` nor `HUB_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/hub/hub.toml";

/// A configuration error, already formatted for the admin: it names the file, the line and the
/// key, and says what is expected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    /// `[hub]`.
    pub hub: HubConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[spawner]`.
    pub spawner: SpawnerConfig,
    /// `[kerberos]`.
    pub kerberos: KerberosConfig,
    /// `[[kernelspec]]` entries.
    pub kernelspecs: Vec<KernelSpecConfig>,
    /// `[api]`
    pub api: ApiConfig,
    /// `[[services]]`: external programs that call the REST API with their own token.
    pub services: Vec<ServiceConfig>,
    /// `[limits]`: per-server memory, CPU and task limits (see [`hub_servers::limits`]).
    pub limits: crate::limits::LimitsConfig,
}

/// `[api]`: the JupyterHub-compatible REST API under `/hub/api`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Items per page when a list request gives no `limit` (JupyterHub's
    /// `api_page_default_limit`).
    pub page_default_limit: usize,
    /// Largest `limit` honoured (JupyterHub's `api_page_max_limit`).
    pub page_max_limit: usize,
    /// Whether `/hub/metrics` needs a token or session with `read:metrics` (JupyterHub's
    /// `authenticate_prometheus`).
    pub authenticate_metrics: bool,
}

/// Where a service's API token comes from: never written in hub.toml itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file readable by root only (checked when the hub starts); surrounding whitespace is
    /// ignored.
    File(PathBuf),
    /// An environment variable of the `hub serve` process.
    Env(String),
}

/// One `[[services]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The service's name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Where its token is read from.
    pub token: TokenSource,
    /// Its scopes, as written (validated with [`hub_core::scopes::parse`]).
    pub scopes: Vec<String>,
}

/// Where `hub serve` listens (`[hub] bind`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// `"ADDRESS:PORT"`, e.g. `127.0.0.1:8000`.
    Tcp(SocketAddr),
    /// `"unix:PATH"`: a Unix socket for the reverse proxy in front of the hub, created with
    /// `bind_mode` and, if set, the group `bind_group` (e.g. nginx's `www-data`). Only who may
    /// open that socket can reach the hub, so their `X-Forwarded-For` is believed.
    Unix {
        /// The socket's path (its directory must exist, e.g. systemd's `RuntimeDirectory`).
        path: PathBuf,
        /// Permission bits of the socket (`bind_mode`, default `0o660`).
        mode: u32,
        /// Group given the socket (`bind_group`), or the hub's own.
        group: Option<String>,
    },
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Tcp(a) => write!(f, "{a}"),
            Bind::Unix { path, .. } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `[hub]`: where the hub listens and keeps its state.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Where the HTTP server listens (`bind`, default `127.0.0.1:8000`).
    pub bind: Bind,
    /// URL users reach the hub at (`public_url`); decides the cookie's `Secure` flag and
    /// `__Host-` prefix. Default: the first of `public_urls`, else `http://<bind>`.
    pub public_url: String,
    /// Every origin (`scheme://host[:port]`, lower case, no default port) the hub is reached
    /// at (`public_urls`, plus `public_url`; for a loopback `bind`, also `localhost` and
    /// `127.0.0.1` on its port). Cookie-authenticated POSTs and WebSocket upgrades must carry an
    /// `Origin` (or `Referer`) from this list (RFC 6454 origins).
    pub public_origins: Vec<String>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed (`trusted_proxies`,
    /// IPs or CIDR networks; default none). The client address used for login rate limits is
    /// the rightmost `X-Forwarded-For` entry not in this list.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Directory for the database, signing key, logs and (by default) ccaches.
    pub data_dir: PathBuf,
    /// sqlx connection URL selecting the store backend: `sqlite://PATH` (default
    /// `sqlite://<data_dir>/hub.sqlite`) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`.
    pub database_url: String,
    /// File holding the JWT signing key; default `<data_dir>/jwt.key`, generated on first start.
    pub jwt_secret_file: PathBuf,
    /// Whether `hub serve` stops every user's server when it shuts down
    /// (`stop_servers_on_shutdown`, default false: servers keep running and the next hub
    /// re-adopts them).
    pub stop_servers_on_shutdown: bool,
    /// On SIGTERM, how long in-flight requests get to finish before the hub exits anyway
    /// (`shutdown_timeout`, default 10 s). WebSocket tunnels are closed at once.
    pub shutdown_timeout: Duration,
    /// How long a browser connection may take to send a complete request head, counted from
    /// when the hub starts waiting for it (`header_read_timeout`, default 30 s). A connection
    /// that misses it is closed; this also closes idle kept-alive connections.
    pub header_read_timeout: Duration,
    /// The slowest a request body may arrive, in bytes per second, after a first
    /// `header_read_timeout` of grace (`body_min_rate`, default 1024). A body that falls
    /// behind is cut off and its connection closed, so a client trickling a body cannot hold a
    /// connection and the bytes it sent for long.
    pub body_min_rate: u64,
}

impl HubConfig {
    /// Whether `peer` (the address a connection came from) is a reverse proxy whose
    /// `X-Forwarded-For` is believed: one of `trusted_proxies`, or a connection on the hub's
    /// Unix socket ([`hub_core::UNIX_PEER`]).
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        (peer == hub_core::UNIX_PEER.ip() && matches!(self.bind, Bind::Unix { .. }))
            || self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// The loopback entries of `trusted_proxies`: any local process can connect from there,
    /// so it can claim any client address in `X-Forwarded-For`. `hub serve` warns about them.
    pub fn loopback_trusted(&self) -> Vec<String> {
        self.trusted_proxies
            .iter()
            .filter(|n| n.addr().is_loopback() || n.contains(&std::net::IpAddr::from([127, 0, 0, 1])))
            .map(|n| n.to_string())
            .collect()
    }
}

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

/// `[spawner]`: how a user's single-user server is started.
#[derive(Clone, Debug)]
pub struct SpawnerConfig {
    /// Program and leading arguments (`cmd`), e.g. `["/opt/jupyter/bin/jupyter-lab"]`.
    pub cmd: Vec<String>,
    /// Extra arguments appended after the hub's own (`args`).
    pub args: Vec<String>,
    /// Extra environment for the server (`env`); values are templates.
    pub env: BTreeMap<String, Template>,
    /// `PATH` given to the server (`path`).
    pub path: String,
    /// How long a server may take to answer `api/status` (`start_timeout`, default 60 s).
    pub start_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when stopping (`term_timeout`, default 5 s).
    pub term_timeout: Duration,
    /// Where the browser lands in the server after it starts (`default_url`, default `/lab`).
    pub default_url: String,
    /// Most spawns in progress at once (`concurrent_spawn_limit`, default 100, JupyterHub's
    /// default); beyond it a spawn request gets 429 with `Retry-After`. 0 = no limit.
    pub concurrent_spawn_limit: usize,
    /// Most servers starting or running at once (`active_server_limit`, default 0 = no limit).
    pub active_server_limit: usize,
    /// Stop a server after this long without activity (`cull_idle_timeout`; 0 = never).
    /// Activity is any proxied request or WebSocket traffic in either direction.
    pub cull_idle_timeout: Duration,
    /// Stop a server this long after it started, active or not (`cull_max_age`; 0 = never).
    pub cull_max_age: Duration,
    /// How often the culler looks, and how often activity is written to the database
    /// (`cull_interval`, default 60 s).
    pub cull_interval: Duration,
    /// A server log larger than this many MiB is rotated to `<name>.log.1` (checked every
    /// `cull_interval`; `log_max_mib`, default 10).
    pub log_max_mib: u64,
    /// How the hub reaches each server (`transport`, default `unix`).
    pub transport: Transport,
}

/// How the hub reaches a single-user server (`spawner.transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A Unix socket, `<data_dir>/sockets/<user>/server.sock` (jupyter-server's
    /// `ServerApp.sock`), mode 0600 in a 0700 directory owned by the user: no other local
    /// user can connect to it, and a request costs the proxy about a third less CPU than over
    /// loopback TCP (docs/benchmarks.md).
    Unix,
    /// A free port on 127.0.0.1 (`ServerApp.port`): any local user can connect to it, and
    /// the server's token is the only access control.
    Tcp,
}

/// Longest Unix socket path, in bytes, not counting the terminating NUL (`sun_path` is 108
/// bytes on Linux, unix(7)).
pub const MAX_SOCKET_PATH: usize = 107;

impl HubConfig {
    /// The Unix socket `user`'s server listens on with `transport = "unix"`:
    /// `<data_dir>/sockets/<user>/server.sock`.
    pub fn server_socket(&self, user: &str) -> PathBuf {
        server_socket_in(&self.data_dir, user)
    }

    /// Where the hub writes `user`'s `[[kernelspec]]` entries, the directory put on their
    /// server's `JUPYTER_PATH`: `<data_dir>/jupyter/<user>` (its parent `<data_dir>/jupyter`).
    pub fn kernelspec_root(&self, user: &str) -> PathBuf {
        self.data_dir.join("jupyter").join(user)
    }
}

/// [`HubConfig::server_socket`] for a `data_dir` (also used before the config is built, to
/// check the path fits).
fn server_socket_in(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("sockets").join(user).join("server.sock")
}

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

/// A `[[kernelspec]]` entry: a kernel.json the hub writes for each user's server
/// (Jupyter kernelspec format, <https://jupyter-client.readthedocs.io/en/stable/kernels.html>).
#[derive(Clone, Debug)]
pub struct KernelSpecConfig {
    /// Directory name of the kernelspec (`name`): letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Name shown in JupyterLab's launcher (`display_name`).
    pub display_name: String,
    /// Language (`language`), e.g. `python`.
    pub language: String,
    /// Command line (`argv`); templates, plus Jupyter's own `{connection_file}` and
    /// `{resource_dir}`, which are passed through.
    pub argv: Vec<Template>,
    /// Environment (`env`); templates.
    pub env: BTreeMap<String, Template>,
}

/// A string with `{placeholder}`s, checked at load time against the names its key allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(String);

/// Values substituted into a [`Template`].
#[derive(Debug, Default, Clone)]
pub struct TemplateVars<'a> {
    /// `{username}`: the hub user name.
    pub username: &'a str,
    /// `{uid}`: the user's numeric Linux UID.
    pub uid: u32,
    /// `{realm}`: `[kerberos] realm`.
    pub realm: &'a str,
    /// `{principal}`: the expanded principal, when known.
    pub principal: Option<&'a str>,
    /// `{ccache}`: the expanded ccache path, when known.
    pub ccache: Option<&'a str>,
    /// `{keytab}`: the expanded keytab path, when known.
    pub keytab: Option<&'a str>,
}

impl Template {
    /// Parses `s`, accepting only the `allowed` placeholder names. `{{` and `}}` are literal
    /// braces. Errors name the offending placeholder.
    fn parse(s: &str, allowed: &[&str]) -> Result<Self, String> {
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            let (c, after) = (rest.as_bytes()[i], &rest[i + 1..]);
            if after.starts_with(c as char) {
                rest = &after[1..];
                continue;
            }
            if c == b'}' {
                return Err("has a '}' without a matching '{' (write '}}' for a literal brace)".into());
            }
            let Some(end) = after.find('}') else {
                return Err("has a '{' that is never closed (write '{{' for a literal brace)".into());
            };
            let name = &after[..end];
            if !allowed.contains(&name) {
                return Err(format!(
                    "uses the unknown placeholder {{{name}}}; allowed here: {}",
                    allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(", ")
                ));
            }
            rest = &after[end + 1..];
        }
        Ok(Self(s.to_string()))
    }

    /// Substitutes the placeholders. A placeholder whose value is not known yet (`None`) is
    /// left empty; load-time checks make sure each key only uses names that are always known.
    pub fn expand(&self, v: &TemplateVars<'_>) -> String {
        let mut out = String::with_capacity(self.0.len() + 16);
        let mut rest = self.0.as_str();
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            let (c, after) = (rest.as_bytes()[i], &rest[i + 1..]);
            if after.starts_with(c as char) {
                out.push(c as char);
                rest = &after[1..];
                continue;
            }
            let end = after.find('}').unwrap_or(after.len());
            match &after[..end] {
                "username" => out.push_str(v.username),
                "uid" => out.push_str(&v.uid.to_string()),
                "realm" => out.push_str(v.realm),
                "principal" => out.push_str(v.principal.unwrap_or_default()),
                "ccache" => out.push_str(v.ccache.unwrap_or_default()),
                "keytab" => out.push_str(v.keytab.unwrap_or_default()),
                // Jupyter fills these in itself when it starts the kernel.
                name @ ("connection_file" | "resource_dir") => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
                _ => {}
            }
            rest = after.get(end + 1..).unwrap_or_default();
        }
        out.push_str(rest);
        out
    }

    /// The template as written in hub.toml.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Config {
    /// Every section, as validated (what `hub check-config` prints). Secrets are redacted: the
    /// values of `[spawner] env` and of each `[[kernelspec]]`'s `env` (admins put tokens
    /// there), and a password in `database_url`. Service tokens are not in the configuration
    /// (only the file or variable they are read from).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.clone();
        let redact = |env: &mut BTreeMap<String, Template>| {
            for v in env.values_mut() {
                *v = Template("<redacted>".into());
            }
        };
        redact(&mut shown.spawner.env);
        for k in &mut shown.kernelspecs {
            redact(&mut k.env);
        }
        shown.hub.database_url = hub_core::redact_url(&shown.hub.database_url);
        f.debug_struct("Config")
            .field("hub", &shown.hub)
            .field("auth", &shown.auth)
            .field("spawner", &shown.spawner)
            .field("kerberos", &shown.kerberos)
            .field("kernelspecs", &shown.kernelspecs)
            .field("api", &shown.api)
            .field("services", &shown.services)
            .field("limits", &shown.limits)
            .finish()
    }
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    hub: FileHub,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    spawner: FileSpawner,
    #[serde(default)]
    kerberos: FileKerberos,
    #[serde(default)]
    kernelspec: Vec<FileKernelSpec>,
    #[serde(default)]
    api: FileApi,
    #[serde(default)]
    services: Vec<FileService>,
    #[serde(default)]
    limits: FileLimitsTable,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    memory: Option<Spanned<String>>,
    cpu: Option<Spanned<f64>>,
    tasks: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLimitsTable {
    memory: Option<Spanned<String>>,
    cpu: Option<Spanned<f64>>,
    tasks: Option<Spanned<i64>>,
    #[serde(default)]
    users: std::collections::BTreeMap<String, FileLimits>,
    #[serde(default)]
    groups: std::collections::BTreeMap<String, FileLimits>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileApi {
    page_default_limit: Option<Spanned<i64>>,
    page_max_limit: Option<Spanned<i64>>,
    authenticate_metrics: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    name: Spanned<String>,
    api_token_file: Option<PathBuf>,
    api_token_env: Option<String>,
    api_token: Option<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKernelSpec {
    name: Spanned<String>,
    display_name: Option<String>,
    #[serde(default = "default_language")]
    language: String,
    argv: Spanned<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
}

fn default_language() -> String {
    "python".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileHub {
    bind: Option<Spanned<String>>,
    bind_mode: Option<Spanned<String>>,
    bind_group: Option<Spanned<String>>,
    body_min_rate: Option<Spanned<i64>>,
    public_url: Option<Spanned<String>>,
    #[serde(default)]
    public_urls: Vec<Spanned<String>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    data_dir: Option<PathBuf>,
    database_url: Option<Spanned<String>>,
    jwt_secret_file: Option<PathBuf>,
    stop_servers_on_shutdown: Option<bool>,
    shutdown_timeout: Option<Spanned<String>>,
    header_read_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    method: Option<Spanned<String>>,
    pam_service: Option<Spanned<String>>,
    #[serde(default)]
    spnego: bool,
    realm: Option<Spanned<String>>,
    service_principal: Option<Spanned<String>>,
    service_keytab: Option<PathBuf>,
    #[serde(default)]
    allowed_realms: Vec<String>,
    #[serde(default)]
    principal_map: Vec<FilePrincipalRule>,
    #[serde(default)]
    allowed_users: Vec<Spanned<String>>,
    #[serde(default)]
    allowed_groups: Vec<String>,
    #[serde(default)]
    admin_users: Vec<Spanned<String>>,
    #[serde(default)]
    admin_groups: Vec<String>,
    session_max_age: Option<Spanned<String>>,
    #[serde(default)]
    previous_jwt_secret_files: Vec<PathBuf>,
    max_failed_logins: Option<Spanned<i64>>,
    max_failed_logins_per_address: Option<Spanned<i64>>,
    failed_login_window: Option<Spanned<String>>,
    failure_delay: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePrincipalRule {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    user: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSpawner {
    cmd: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    path: Option<String>,
    start_timeout: Option<Spanned<String>>,
    concurrent_spawn_limit: Option<Spanned<i64>>,
    active_server_limit: Option<Spanned<i64>>,
    cull_idle_timeout: Option<Spanned<String>>,
    cull_max_age: Option<Spanned<String>>,
    cull_interval: Option<Spanned<String>>,
    log_max_mib: Option<Spanned<i64>>,
    transport: Option<Spanned<String>>,
    term_timeout: Option<Spanned<String>>,
    default_url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileKerberos {
    #[serde(default)]
    enabled: bool,
    realm: Option<Spanned<String>>,
    principal: Option<Spanned<String>>,
    keytab: Option<Spanned<String>>,
    ccache: Option<Spanned<String>>,
    kinit: Option<String>,
    kinit_timeout: Option<Spanned<String>>,
    krb5_config: Option<PathBuf>,
    renew_at: Option<Spanned<f64>>,
    min_remaining: Option<Spanned<String>>,
    event_min_interval: Option<Spanned<String>>,
    max_concurrent_kinit: Option<Spanned<i64>>,
    retry_min: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
    remove_ccache_on_stop: Option<bool>,
}

/// Turns byte offsets into "line N" for messages.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn err<T>(&self, key: &str, spanned: &Spanned<T>, problem: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{}: line {}: `{key}` {problem}", self.path.display(), self.line_of(spanned.span().start)))
    }

    fn duration(&self, key: &str, v: &Option<Spanned<String>>, default: Duration) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        humantime::parse_duration(v.get_ref())
            .map_err(|e| self.err(key, v, format!("is not a duration ({e}); write e.g. \"60s\", \"5m\" or \"1h 30m\"")))
    }

    fn template(&self, key: &str, v: &Spanned<String>, allowed: &[&str]) -> Result<Template, ConfigError> {
        Template::parse(v.get_ref(), allowed).map_err(|e| self.err(key, v, e))
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    ///
    /// Errors: the file cannot be read, is not TOML, has an unknown key or a wrong type, or a
    /// value fails validation; each message names the file, line and key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read the configuration file {}: {e}\n\
                 (give the path with --config or HUB_CONFIG; `hub example-config` prints a commented example)",
                path.display()
            ))
        })?;
        let config = Self::parse(path, &text)?;
        // A database password in hub.toml is a secret in the file: refuse it unless only the
        // owner can read the file.
        if url::Url::parse(&config.hub.database_url).is_ok_and(|u| u.password().is_some()) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0o777);
            if mode & 0o077 != 0 {
                return Err(ConfigError(format!(
                    "{}: `hub.database_url` holds a password but the file is readable by others (mode {:o}); \
                     `chmod 600 {}`, or drop the password from the URL and use PGPASSWORD or ~/.pgpass",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        Ok(config)
    }

    /// Validates configuration `text`; `path` is used only in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let src = Source { path, text };
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| format!("line {}: ", src.line_of(s.start))).unwrap_or_default();
            ConfigError(format!("{}: {line}{}", path.display(), e.message().trim_end()))
        })?;

        // [hub]
        let bind = match &file.hub.bind {
            None => Bind::Tcp(SocketAddr::from(([127, 0, 0, 1], 8000))),
            Some(b) => match b.get_ref().strip_prefix("unix:") {
                Some(path) if Path::new(path).is_absolute() && !path.ends_with('/') => {
                    let mode = match &file.hub.bind_mode {
                        None => 0o660,
                        Some(m) => u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8)
                            .ok()
                            .filter(|m| *m <= 0o777 && m & 0o007 == 0)
                            .ok_or_else(|| {
                                src.err(
                                    "hub.bind_mode",
                                    m,
                                    "must be octal permission bits with nothing for others, such as \"0660\" (owner and group)",
                                )
                            })?,
                    };
                    let group = match &file.hub.bind_group {
                        None => None,
                        Some(g) => {
                            if !matches!(nix::unistd::Group::from_name(g.get_ref()), Ok(Some(_))) {
                                return Err(src.err(
                                    "hub.bind_group",
                                    g,
                                    format!("names the group {:?}, which does not exist on this host", g.get_ref()),
                                ));
                            }
                            Some(g.get_ref().clone())
                        }
                    };
                    Bind::Unix { path: PathBuf::from(path), mode, group }
                }
                Some(_) => {
                    return Err(src.err("hub.bind", b, "must be unix: followed by an absolute path, such as \"unix:/run/hub/hub.sock\""));
                }
                None => Bind::Tcp(b.get_ref().parse().map_err(|_| {
                    src.err("hub.bind", b, "is not an address:port such as \"127.0.0.1:8000\" or a unix:/path such as \"unix:/run/hub/hub.sock\"")
                })?),
            },
        };
        if let (Bind::Tcp(_), Some(k)) = (&bind, file.hub.bind_mode.as_ref().or(file.hub.bind_group.as_ref())) {
            return Err(src.err(
                "hub.bind_mode",
                k,
                "and `hub.bind_group` apply only to a unix: bind; remove them or set bind = \"unix:/run/hub/hub.sock\"",
            ));
        }
        let check_url = |key: &str, u: &Spanned<String>| -> Result<String, ConfigError> {
            let s = u.get_ref().trim_end_matches('/');
            let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
            match (rest, url::Url::parse(s)) {
                (Some(host), Ok(_)) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '@']) => {
                    Ok(s.to_string())
                }
                _ => {
                    Err(src.err(key, u, "must be http(s)://host[:port] with no path, e.g. \"https://hub.example.com\""))
                }
            }
        };
        let mut public_urls = Vec::new();
        for u in &file.hub.public_urls {
            public_urls.push(check_url("hub.public_urls", u)?);
        }
        let public_url = match &file.hub.public_url {
            Some(u) => check_url("hub.public_url", u)?,
            None => match (public_urls.first(), &bind) {
                (Some(u), _) => u.clone(),
                (None, Bind::Tcp(a)) => format!("http://{a}"),
                (None, Bind::Unix { .. }) => {
                    return Err(ConfigError(format!(
                        "{}: `hub.public_url` is required with a unix: bind: the address users reach the reverse proxy at, such as \"https://hub.example.com\"",
                        path.display()
                    )));
                }
            },
        };
        let mut public_origins: Vec<String> = Vec::new();
        let mut add_origin = |u: &str| {
            if let Some(o) = origin_of(u).filter(|o| !public_origins.contains(o)) {
                public_origins.push(o);
            }
        };
        add_origin(&public_url);
        for u in &public_urls {
            add_origin(u);
        }
        if let Bind::Tcp(bind) = &bind
            && file.hub.public_url.is_none()
            && public_urls.is_empty()
            && bind.ip().is_loopback()
        {
            add_origin(&format!("http://localhost:{}", bind.port()));
            add_origin(&format!("http://127.0.0.1:{}", bind.port()));
        }
        let mut trusted_proxies = Vec::new();
        for p in &file.hub.trusted_proxies {
            let net = p
                .get_ref()
                .parse::<ipnet::IpNet>()
                .or_else(|_| p.get_ref().parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    src.err(
                        "hub.trusted_proxies",
                        p,
                        format!("has {:?}, not an IP address or CIDR network such as \"10.0.0.0/8\"", p.get_ref()),
                    )
                })?;
            trusted_proxies.push(net);
        }
        let data_dir = file.hub.data_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/hub"));
        if !data_dir.is_absolute() {
            return Err(ConfigError(format!(
                "{}: `hub.data_dir` must be an absolute path, not {}",
                path.display(),
                data_dir.display()
            )));
        }
        let database_url = match &file.hub.database_url {
            None => format!("sqlite://{}", data_dir.join("hub.sqlite").display()),
            Some(u) if u.get_ref().starts_with("sqlite:") => u.get_ref().clone(),
            Some(u) if u.get_ref().starts_with("postgres://") || u.get_ref().starts_with("postgresql://") => {
                match url::Url::parse(u.get_ref()) {
                    Ok(p) if p.host_str().is_some_and(|h| !h.is_empty()) && p.path().len() > 1 => u.get_ref().clone(),
                    _ => {
                        return Err(src.err(
                            "hub.database_url",
                            u,
                            "is not a PostgreSQL URL with a host and a database, such as \"postgres://hub@db.example.com:5432/hub\"",
                        ));
                    }
                }
            }
            Some(u) => {
                return Err(src.err(
                    "hub.database_url",
                    u,
                    "must be a sqlite: URL (e.g. \"sqlite:///var/lib/hub/hub.sqlite\") or a postgres:// URL (e.g. \"postgres://hub@db.example.com/hub\")",
                ));
            }
        };
        let jwt_secret_file = file.hub.jwt_secret_file.clone().unwrap_or_else(|| data_dir.join("jwt.key"));

        // [auth]
        let a = &file.auth;
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
        let session_max_age =
            src.duration("auth.session_max_age", &a.session_max_age, Duration::from_secs(24 * 3600))?;
        let auth_realm = match &a.realm {
            Some(r) if valid_realm(r.get_ref()) => r.get_ref().clone(),
            Some(r) => return Err(src.err("auth.realm", r, "must be a realm name such as \"EXAMPLE.COM\"")),
            None => file.kerberos.realm.as_ref().map(|r| r.get_ref().clone()).unwrap_or_default(),
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
                    hub_core::user::normalize_username(u.get_ref()).ok().filter(|n| n == u.get_ref()).ok_or_else(|| {
                        src.err(key, u, format!("has {:?}, not a valid lower-case user name", u.get_ref()))
                    })
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
        let auth = AuthConfig {
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
        };

        // [spawner]
        let cmd = match &file.spawner.cmd {
            None => {
                return Err(ConfigError(format!(
                    "{}: `spawner.cmd` is missing; set it to the single-user server, e.g. cmd = [\"/opt/jupyter/bin/jupyter-lab\"]",
                    path.display()
                )));
            }
            Some(c) if c.get_ref().is_empty() || c.get_ref()[0].is_empty() => {
                return Err(src.err("spawner.cmd", c, "must name a program, e.g. [\"/opt/jupyter/bin/jupyter-lab\"]"));
            }
            Some(c) => c.get_ref().clone(),
        };
        let spawner_vars = ["username", "uid", "realm", "principal", "ccache", "keytab"];
        let mut env = BTreeMap::new();
        for (k, v) in &file.spawner.env {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Err(src.err("spawner.env", v, format!("has an invalid variable name {k:?}")));
            }
            env.insert(k.clone(), src.template(&format!("spawner.env.{k}"), v, &spawner_vars)?);
        }
        let start_timeout =
            src.duration("spawner.start_timeout", &file.spawner.start_timeout, Duration::from_secs(60))?;
        let term_timeout = src.duration("spawner.term_timeout", &file.spawner.term_timeout, Duration::from_secs(5))?;
        let count = |key: &str, v: &Option<Spanned<i64>>, default: usize| -> Result<usize, ConfigError> {
            match v {
                None => Ok(default),
                Some(n) if (0..=1_000_000).contains(n.get_ref()) => Ok(*n.get_ref() as usize),
                Some(n) => Err(src.err(key, n, "must be between 0 (no limit) and 1000000")),
            }
        };
        let concurrent_spawn_limit =
            count("spawner.concurrent_spawn_limit", &file.spawner.concurrent_spawn_limit, 100)?;
        let active_server_limit = count("spawner.active_server_limit", &file.spawner.active_server_limit, 0)?;
        let cull_idle_timeout =
            src.duration("spawner.cull_idle_timeout", &file.spawner.cull_idle_timeout, Duration::ZERO)?;
        let cull_max_age = src.duration("spawner.cull_max_age", &file.spawner.cull_max_age, Duration::ZERO)?;
        let cull_interval =
            src.duration("spawner.cull_interval", &file.spawner.cull_interval, Duration::from_secs(60))?;
        if let (true, Some(v)) = (cull_interval.is_zero(), &file.spawner.cull_interval) {
            return Err(src.err("spawner.cull_interval", v, "must be more than 0, e.g. \"60s\""));
        }
        let header_read_timeout =
            src.duration("hub.header_read_timeout", &file.hub.header_read_timeout, Duration::from_secs(30))?;
        if let (true, Some(v)) = (header_read_timeout < Duration::from_secs(1), &file.hub.header_read_timeout) {
            return Err(src.err(
                "hub.header_read_timeout",
                v,
                "must be at least 1s (slow clients on a poor network need several), e.g. \"30s\"",
            ));
        }
        let transport = match &file.spawner.transport {
            None => Transport::Unix,
            Some(t) if t.get_ref() == "unix" => Transport::Unix,
            Some(t) if t.get_ref() == "tcp" => Transport::Tcp,
            Some(t) => return Err(src.err("spawner.transport", t, "must be \"unix\" or \"tcp\"")),
        };
        if transport == Transport::Unix {
            // The longest user name the hub accepts makes the longest socket path.
            let longest = server_socket_in(&data_dir, &"u".repeat(hub_core::user::MAX_USERNAME_LEN));
            let len = longest.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(ConfigError(format!(
                    "{}: `hub.data_dir` {} is too long for the servers' Unix sockets: \
                     <data_dir>/sockets/<user>/server.sock would be up to {len} bytes, over the {MAX_SOCKET_PATH}-byte \
                     limit of a socket path (unix(7)); choose a data_dir of at most {} bytes, or set \
                     spawner.transport = \"tcp\"",
                    src.path.display(),
                    data_dir.display(),
                    data_dir.as_os_str().len() - (len - MAX_SOCKET_PATH),
                )));
            }
        }
        let default_url = match &file.spawner.default_url {
            None => "/lab".to_string(),
            Some(u) if u.get_ref().starts_with('/') && !u.get_ref().starts_with("//") => u.get_ref().clone(),
            Some(u) => {
                return Err(src.err("spawner.default_url", u, "must be a path starting with '/', e.g. \"/lab\""));
            }
        };

        // [kerberos]
        let k = &file.kerberos;
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
            None => Template("{username}@{realm}".into()),
        };
        let keytab = match &k.keytab {
            Some(p) => src.template("kerberos.keytab", p, &path_vars)?,
            None => Template("/home/{username}/{username}.keytab".into()),
        };
        let ccache = match &k.ccache {
            Some(p) => {
                let t = src.template("kerberos.ccache", p, &path_vars)?;
                if !t.0.starts_with('/') {
                    return Err(src.err("kerberos.ccache", p, "must be an absolute path (no FILE: prefix)"));
                }
                if !t.0.contains("{uid}") && !t.0.contains("{username}") {
                    return Err(src.err(
                        "kerberos.ccache",
                        p,
                        "must contain {uid} or {username}, or all users would share one credential cache",
                    ));
                }
                t
            }
            None => Template(format!(
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

        // [[kernelspec]]
        let ks_vars = ["username", "uid", "realm", "principal", "ccache", "keytab", "connection_file", "resource_dir"];
        let mut kernelspecs = Vec::new();
        for ks in &file.kernelspec {
            let name = ks.name.get_ref();
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                || name.starts_with('.')
            {
                return Err(src.err("kernelspec.name", &ks.name, "must be 1-64 letters, digits, '.', '_' or '-'"));
            }
            if kernelspecs.iter().any(|k: &KernelSpecConfig| k.name == *name) {
                return Err(src.err("kernelspec.name", &ks.name, format!("{name:?} is declared twice")));
            }
            if ks.argv.get_ref().is_empty() {
                return Err(src.err("kernelspec.argv", &ks.argv, "must name the kernel's program"));
            }
            let argv = ks
                .argv
                .get_ref()
                .iter()
                .map(|a| Template::parse(a, &ks_vars).map_err(|e| src.err("kernelspec.argv", &ks.argv, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut env = BTreeMap::new();
            for (key, v) in &ks.env {
                env.insert(key.clone(), src.template(&format!("kernelspec.env.{key}"), v, &ks_vars)?);
            }
            kernelspecs.push(KernelSpecConfig {
                name: name.clone(),
                display_name: ks.display_name.clone().unwrap_or_else(|| name.clone()),
                language: ks.language.clone(),
                argv,
                env,
            });
        }

        // [api]
        let page = |key: &str, v: &Option<Spanned<i64>>, default: usize| -> Result<usize, ConfigError> {
            match v {
                None => Ok(default),
                Some(n) if (1..=10_000).contains(n.get_ref()) => Ok(*n.get_ref() as usize),
                Some(n) => Err(src.err(key, n, "must be between 1 and 10000")),
            }
        };
        let page_max_limit = page("api.page_max_limit", &file.api.page_max_limit, 200)?;
        let page_default_limit = page("api.page_default_limit", &file.api.page_default_limit, 50)?;
        if page_default_limit > page_max_limit {
            let v = file.api.page_default_limit.as_ref().or(file.api.page_max_limit.as_ref()).expect("one was set");
            return Err(src.err(
                "api.page_default_limit",
                v,
                format!("is larger than api.page_max_limit ({page_max_limit})"),
            ));
        }
        let api = ApiConfig {
            page_default_limit,
            page_max_limit,
            authenticate_metrics: file.api.authenticate_metrics.unwrap_or(true),
        };

        // [limits]
        let one = |at: &str,
                   memory: &Option<Spanned<String>>,
                   cpu: &Option<Spanned<f64>>,
                   tasks: &Option<Spanned<i64>>| {
            let memory = match memory {
                None => None,
                Some(m) => match m.get_ref().trim().parse::<bytesize::ByteSize>() {
                    Ok(b) if b.as_u64() >= 16 << 20 => Some(b.as_u64()),
                    Ok(_) => {
                        return Err(src.err(
                            &format!("{at}memory"),
                            m,
                            "is below 16 MiB, too little to start a server",
                        ));
                    }
                    Err(_) => {
                        return Err(src.err(
                            &format!("{at}memory"),
                            m,
                            "is not a size such as \"4 GiB\" or \"512 MiB\"",
                        ));
                    }
                },
            };
            let cpu = match cpu {
                None => None,
                Some(c) if (0.01..=4096.0).contains(c.get_ref()) => Some(*c.get_ref()),
                Some(c) => return Err(src.err(&format!("{at}cpu"), c, "must be a number of cores from 0.01 to 4096")),
            };
            let tasks = match tasks {
                None => None,
                Some(t) if (16..=4_194_304).contains(t.get_ref()) => Some(*t.get_ref() as u64),
                Some(t) => {
                    return Err(src.err(&format!("{at}tasks"), t, "must be from 16 to 4194304 processes and threads"));
                }
            };
            Ok(crate::limits::Limits { memory, cpu, tasks })
        };
        let lt = &file.limits;
        let mut limits = crate::limits::LimitsConfig {
            default: one("limits.", &lt.memory, &lt.cpu, &lt.tasks)?,
            ..Default::default()
        };
        for (name, l) in &lt.users {
            limits.users.insert(name.clone(), one(&format!("limits.users.{name}."), &l.memory, &l.cpu, &l.tasks)?);
        }
        for (name, l) in &lt.groups {
            limits.groups.insert(name.clone(), one(&format!("limits.groups.{name}."), &l.memory, &l.cpu, &l.tasks)?);
        }

        // [[services]]
        let mut services: Vec<ServiceConfig> = Vec::new();
        for sv in &file.services {
            let name = sv.name.get_ref();
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(src.err("services.name", &sv.name, "must be 1-64 letters, digits, '-', '_' or '.'"));
            }
            if services.iter().any(|o| &o.name == name) {
                return Err(src.err("services.name", &sv.name, "is declared twice"));
            }
            if let Some(inline) = &sv.api_token {
                return Err(src.err(
                    "services.api_token",
                    inline,
                    "is not allowed: a token must not sit in hub.toml; put it in a root-only file \
                     (api_token_file) or an environment variable (api_token_env)",
                ));
            }
            let token = match (&sv.api_token_file, &sv.api_token_env) {
                (Some(f), None) => TokenSource::File(f.clone()),
                (None, Some(e)) if !e.is_empty() => TokenSource::Env(e.clone()),
                _ => {
                    return Err(src.err(
                        "services",
                        &sv.name,
                        format!("{name:?} needs exactly one of api_token_file or api_token_env"),
                    ));
                }
            };
            let mut scopes = Vec::new();
            for sc in &sv.scopes {
                let r = hub_core::scopes::parse(sc.get_ref()).map_err(|e| src.err("services.scopes", sc, e))?;
                if r.name == "self" || r.name == "inherit" {
                    return Err(src.err(
                        "services.scopes",
                        sc,
                        "names a user's own rights; a service has no user: list its scopes",
                    ));
                }
                scopes.push(sc.get_ref().clone());
            }
            services.push(ServiceConfig { name: name.clone(), token, scopes });
        }

        Ok(Config {
            hub: HubConfig {
                bind,
                public_url,
                public_origins,
                trusted_proxies,
                data_dir,
                database_url,
                jwt_secret_file,
                stop_servers_on_shutdown: file.hub.stop_servers_on_shutdown.unwrap_or(false),
                shutdown_timeout: src.duration(
                    "hub.shutdown_timeout",
                    &file.hub.shutdown_timeout,
                    Duration::from_secs(10),
                )?,
                header_read_timeout,
                body_min_rate: match &file.hub.body_min_rate {
                    None => 1024,
                    Some(n) if (1..=1_000_000_000).contains(n.get_ref()) => *n.get_ref() as u64,
                    Some(n) => {
                        return Err(src.err(
                            "hub.body_min_rate",
                            n,
                            "must be a number of bytes per second from 1 to 1000000000, e.g. 1024",
                        ));
                    }
                },
            },
            auth,
            spawner: SpawnerConfig {
                cmd,
                args: file.spawner.args,
                env,
                path: file.spawner.path.unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
                start_timeout,
                term_timeout,
                default_url,
                concurrent_spawn_limit,
                active_server_limit,
                cull_idle_timeout,
                cull_max_age,
                cull_interval,
                log_max_mib: count("spawner.log_max_mib", &file.spawner.log_max_mib, 10)? as u64,
                transport,
            },
            kerberos: KerberosConfig {
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
            },
            kernelspecs,
            api,
            services,
            limits,
        })
    }

    /// Whether the cookie must be `Secure` (the public URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.hub.public_url.starts_with("https://")
    }
}

/// The RFC 6454 origin of `url` (`scheme://host[:port]`, lower case, default port dropped),
/// or `None` if it is not an absolute http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    matches!(u.scheme(), "http" | "https").then(|| u.origin().ascii_serialization())
}

/// A realm name: upper-case-insensitive letters, digits, `.`, `-`, `_`, 1-255 bytes.
fn valid_realm(r: &str) -> bool {
    !r.is_empty() && r.len() <= 255 && r.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("hub.toml"), text)
    }

    const MINIMAL: &str = "[spawner]\ncmd = [\"/bin/true\"]\n";

    #[test]
    fn services_keep_tokens_out_of_the_file() {
        let svc = |body: &str| parse(&format!("{MINIMAL}[[services]]\nname = \"culler\"\n{body}"));
        let c = svc("api_token_env = \"T\"\nscopes = [\"list:users\", \"servers!user=ann\"]").expect("valid");
        assert_eq!(c.services[0].token, TokenSource::Env("T".into()));
        let e = svc("api_token = \"abc\"").expect_err("inline token");
        assert!(e.to_string().contains("must not sit in hub.toml"), "{e}");
        let e = svc("api_token_env = \"T\"\napi_token_file = \"/x\"").expect_err("both");
        assert!(e.to_string().contains("exactly one of"), "{e}");
        let e = svc("api_token_env = \"T\"\nscopes = [\"read:userz\"]").expect_err("scope");
        assert!(e.to_string().contains("line") && e.to_string().contains("unknown scope"), "{e}");
        let e = svc("api_token_env = \"T\"\nscopes = [\"self\"]").expect_err("self");
        assert!(e.to_string().contains("a service has no user"), "{e}");
        let e = parse(&format!("{MINIMAL}[api]\npage_default_limit = 500\n")).expect_err("limits");
        assert!(e.to_string().contains("page_max_limit"), "{e}");
    }

    #[test]
    fn limits_parse_with_overrides_and_named_errors() {
        let c = parse(&format!(
            "{MINIMAL}[limits]\nmemory = \"2 GiB\"\ncpu = 1.5\ntasks = 512\n\
             [limits.users.ann]\nmemory = \"8GiB\"\n[limits.groups.spark]\ncpu = 4.0\n"
        ))
        .expect("valid");
        assert_eq!(c.limits.default.memory, Some(2 << 30));
        assert_eq!(c.limits.for_user("ann", &["spark".into()]).memory, Some(8 << 30));
        assert_eq!(c.limits.for_user("bob", &["spark".into()]).cpu, Some(4.0));
        for (body, needle) in [
            ("[limits]\nmemory = \"lots\"\n", "limits.memory"),
            ("[limits]\nmemory = \"1 MiB\"\n", "below 16 MiB"),
            ("[limits]\ncpu = 0.0\n", "limits.cpu"),
            ("[limits.users.ann]\ntasks = 3\n", "limits.users.ann.tasks"),
            ("[limits]\nswap = 1\n", "swap"),
        ] {
            let e = parse(&format!("{MINIMAL}{body}")).expect_err(body).to_string();
            assert!(e.contains(needle) && e.contains("line"), "{body}: {e}");
        }
        assert!(!parse(MINIMAL).expect("minimal").limits.any(), "no limits unless configured");
    }

    #[test]
    fn transport_defaults_to_unix_sockets_that_fit_sun_path() {
        let c = parse(MINIMAL).expect("minimal");
        assert_eq!(c.spawner.transport, Transport::Unix);
        assert_eq!(c.hub.server_socket("ann"), Path::new("/var/lib/hub/sockets/ann/server.sock"));
        let tcp = parse("[spawner]\ncmd = [\"/bin/true\"]\ntransport = \"tcp\"\n").expect("tcp");
        assert_eq!(tcp.spawner.transport, Transport::Tcp);
        let e = parse("[spawner]\ncmd = [\"/bin/true\"]\ntransport = \"http\"\n").expect_err("bad").to_string();
        assert!(e.contains("line 3") && e.contains("spawner.transport") && e.contains("\"unix\" or \"tcp\""), "{e}");
        // 54 bytes of data_dir is the most a 32-character user name leaves room for.
        let dir = |n: usize| format!("/{}", "d".repeat(n - 1));
        let at = |d: &str, t: &str| parse(&format!("[hub]\ndata_dir = \"{d}\"\n{MINIMAL}{t}"));
        let ok = at(&dir(54), "").expect("54 bytes fit");
        assert_eq!(ok.hub.server_socket(&"u".repeat(32)).as_os_str().len(), MAX_SOCKET_PATH);
        let e = at(&dir(55), "").expect_err("55 bytes do not").to_string();
        assert!(e.contains("107-byte") && e.contains("at most 54 bytes") && e.contains("tcp"), "{e}");
        at(&dir(55), "transport = \"tcp\"\n").expect("TCP has no path limit");
    }

    #[test]
    fn database_url_selects_a_backend_and_keeps_passwords_private() {
        let db = |url: &str| parse(&format!("[hub]\ndatabase_url = \"{url}\"\n{MINIMAL}"));
        assert_eq!(db("postgres://hub@db:5432/hub").expect("pg").hub.database_url, "postgres://hub@db:5432/hub");
        db("postgresql://hub@127.0.0.1/hub").expect("postgresql scheme");
        let e = db("postgres://hub@db").expect_err("no database").to_string();
        assert!(e.contains("line 2") && e.contains("with a host and a database"), "{e}");
        let e = db("mysql://hub@db/hub").expect_err("mysql").to_string();
        assert!(e.contains("sqlite:") && e.contains("postgres://"), "{e}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, format!("[hub]\ndatabase_url = \"postgres://hub:pw@db/hub\"\n{MINIMAL}")).expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
        let e = Config::load(&path).expect_err("a readable file with a password").to_string();
        assert!(e.contains("chmod 600") && e.contains("PGPASSWORD") && !e.contains("pw@"), "{e}");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        Config::load(&path).expect("owner-only file may hold the password");
    }

    #[test]
    fn example_config_is_valid() {
        let c = parse(EXAMPLE).expect("config/hub.toml must parse");
        assert_eq!(c.hub.bind, Bind::Tcp("127.0.0.1:8000".parse().expect("addr")));
        // Safe to copy as is: nothing in it needs a realm, a keytab or a public host.
        assert!(!c.kerberos.enabled);
        assert_eq!(c.hub.public_url, "http://127.0.0.1:8000");
        assert_eq!(c.hub.body_min_rate, 1024);
    }

    #[test]
    fn example_pyspark_kernelspec_is_valid_when_uncommented() {
        let start = EXAMPLE.find("# [[kernelspec]]").expect("the example has a kernelspec");
        let block: String =
            EXAMPLE[start..].lines().take_while(|l| l.starts_with("# ")).map(|l| format!("{}\n", &l[2..])).collect();
        let c = parse(&format!("{EXAMPLE}\n{block}")).expect("uncommented example parses");
        let ks = &c.kernelspecs[0];
        let v = TemplateVars {
            username: "ann",
            principal: Some("ann@EXAMPLE.COM"),
            keytab: Some("/home/ann/ann.keytab"),
            ..Default::default()
        };
        let submit = ks.env["PYSPARK_SUBMIT_ARGS"].expand(&v);
        assert!(
            submit.contains(
                "--master yarn --deploy-mode client --principal ann@EXAMPLE.COM --keytab /home/ann/ann.keytab"
            ),
            "{submit}"
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).expect("parse");
        assert_eq!(c.hub.database_url, "sqlite:///var/lib/hub/hub.sqlite");
        assert_eq!(c.spawner.start_timeout, Duration::from_secs(60));
        assert_eq!(c.kerberos.ccache.as_str(), "/var/lib/hub/ccache/krb5cc_{uid}");
        assert_eq!(c.auth.pam_service, "login");
        assert_eq!(c.hub.header_read_timeout, Duration::from_secs(30));
    }

    #[test]
    fn header_read_timeout_is_at_least_a_second() {
        let c = parse(&format!("[hub]\nheader_read_timeout = \"2s\"\n{MINIMAL}")).expect("parse");
        assert_eq!(c.hub.header_read_timeout, Duration::from_secs(2));
        for bad in ["0s", "500ms"] {
            let e = parse(&format!("[hub]\nheader_read_timeout = \"{bad}\"\n{MINIMAL}")).expect_err(bad).to_string();
            assert!(e.contains("hub.header_read_timeout") && e.contains("at least 1s") && e.contains("line 2"), "{e}");
        }
    }

    #[test]
    fn unix_bind_and_body_rate_are_checked() {
        let hub = |lines: &str| parse(&format!("[hub]\n{lines}\n{MINIMAL}"));
        let c = hub("bind = \"unix:/run/hub/hub.sock\"\npublic_url = \"https://hub.example.com\"\nbind_mode = \"0660\"\nbind_group = \"root\"")
            .expect("unix bind");
        assert_eq!(
            c.hub.bind,
            Bind::Unix { path: "/run/hub/hub.sock".into(), mode: 0o660, group: Some("root".into()) }
        );
        assert!(c.hub.trusts(hub_core::UNIX_PEER.ip()), "the proxy on the socket is trusted");
        let tcp = hub("").expect("tcp");
        assert!(!tcp.hub.trusts(hub_core::UNIX_PEER.ip()), "not without a unix: bind");
        for (lines, want) in [
            ("bind = \"unix:relative.sock\"\npublic_url = \"https://h.example\"", "absolute path"),
            ("bind = \"unix:/run/hub/hub.sock\"", "public_url` is required"),
            (
                "bind = \"unix:/run/h.sock\"\npublic_url = \"https://h.example\"\nbind_mode = \"0666\"",
                "nothing for others",
            ),
            (
                "bind = \"unix:/run/h.sock\"\npublic_url = \"https://h.example\"\nbind_group = \"no-such-group-x\"",
                "does not exist",
            ),
            ("bind_mode = \"0660\"", "apply only to a unix: bind"),
            ("bind = \"localhost\"", "unix:/path"),
            ("body_min_rate = 0", "bytes per second"),
        ] {
            let e = hub(lines).expect_err(lines).to_string();
            assert!(e.contains(want), "{lines}: {e}");
        }
        let lo = hub("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]").expect("loopback proxy");
        assert_eq!(lo.hub.loopback_trusted(), vec!["127.0.0.1/32".to_string()]);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("[spawner]\ncmd = [\"/bin/true\"]\n\n[hub]\nbindd = \"x\"\n").expect_err("must fail").to_string();
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("bindd"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = parse("[spawner]\ncmd = \"/bin/true\"\n").expect_err("must fail").to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let e = parse(&format!("{MINIMAL}start_timeout = \"soon\"\n")).expect_err("must fail").to_string();
        assert!(e.contains("line 3") && e.contains("spawner.start_timeout"), "{e}");
    }

    #[test]
    fn bad_template_names_placeholder() {
        let text = format!("{MINIMAL}[kerberos]\nenabled = true\nrealm = \"R\"\nkeytab = \"/k/{{user}}.keytab\"\n");
        let e = parse(&text).expect_err("must fail").to_string();
        assert!(e.contains("line 6") && e.contains("{user}") && e.contains("kerberos.keytab"), "{e}");
        let text = format!("{MINIMAL}[kerberos]\nccache = \"/tmp/shared\"\n");
        let e = parse(&text).expect_err("must fail").to_string();
        assert!(e.contains("kerberos.ccache"), "{e}");
    }

    #[test]
    fn realm_required_when_enabled() {
        let e = parse(&format!("{MINIMAL}[kerberos]\nenabled = true\n")).expect_err("must fail").to_string();
        assert!(e.contains("kerberos.realm"), "{e}");
    }

    #[test]
    fn template_expands_and_escapes() {
        let t = Template::parse("/c/{{x}}/krb5cc_{uid}_{username}@{realm}", &["uid", "username", "realm"]).expect("t");
        let v = TemplateVars { username: "ann", uid: 1001, realm: "R.ORG", ..Default::default() };
        assert_eq!(t.expand(&v), "/c/{x}/krb5cc_1001_ann@R.ORG");
        assert!(Template::parse("{uid", &["uid"]).is_err());
        assert!(Template::parse("uid}", &["uid"]).is_err());
    }

    #[test]
    fn renewer_keys_are_checked() {
        let c = parse(MINIMAL).expect("parse");
        assert_eq!(c.kerberos.renew_at, 0.75);
        assert_eq!(c.kerberos.max_concurrent_kinit, 8);
        assert!(c.kerberos.remove_ccache_on_stop);
        let e = parse(&format!("{MINIMAL}[kerberos]\nrenew_at = 1.5\n")).expect_err("renew_at > 1").to_string();
        assert!(e.contains("kerberos.renew_at") && e.contains("line 4"), "{e}");
        let e = parse(&format!("{MINIMAL}[kerberos]\nmax_concurrent_kinit = 0\n")).expect_err("0").to_string();
        assert!(e.contains("max_concurrent_kinit"), "{e}");
        let e = parse(&format!("{MINIMAL}[kerberos]\nretry_min = \"10m\"\nretry_max = \"1m\"\n")).expect_err("min>max");
        assert!(e.to_string().contains("retry_min"), "{e}");
    }

    #[test]
    fn kernelspecs_are_validated_and_expanded() {
        let text = format!(
            "{MINIMAL}[[kernelspec]]\nname = \"pyspark\"\nargv = [\"python\", \"-f\", \"{{connection_file}}\", \"--principal\", \"{{principal}}\"]\nenv = {{ A = \"{{keytab}}\" }}\n"
        );
        let c = parse(&text).expect("parse");
        let k = &c.kernelspecs[0];
        let v = TemplateVars { username: "ann", principal: Some("ann@R"), keytab: Some("/k"), ..Default::default() };
        let argv: Vec<String> = k.argv.iter().map(|a| a.expand(&v)).collect();
        assert_eq!(argv, ["python", "-f", "{connection_file}", "--principal", "ann@R"]);
        assert_eq!(k.env["A"].expand(&v), "/k");
        let bad = format!("{MINIMAL}[[kernelspec]]\nname = \"../x\"\nargv = [\"python\"]\n");
        assert!(parse(&bad).expect_err("bad name").to_string().contains("kernelspec.name"));
        let bad = format!("{MINIMAL}[[kernelspec]]\nname = \"k\"\nargv = [\"{{nope}}\"]\n");
        assert!(parse(&bad).expect_err("bad placeholder").to_string().contains("{nope}"));
    }

    #[test]
    fn public_url_decides_secure_cookies() {
        let c = parse(&format!("[hub]\npublic_url = \"https://hub.example.com/\"\n{MINIMAL}")).expect("parse");
        assert!(c.secure_cookies());
        assert_eq!(c.hub.public_url, "https://hub.example.com");
        assert!(parse(&format!("[hub]\npublic_url = \"hub.example.com\"\n{MINIMAL}")).is_err());
    }

    #[test]
    fn origins_list_and_trusted_proxies() {
        let c = parse(&format!(
            "[hub]\npublic_urls = [\"https://Hub.Example.com:443\", \"https://nb.example.com:8443/\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n{MINIMAL}"
        ))
        .expect("parse");
        assert_eq!(c.hub.public_url, "https://Hub.Example.com:443", "public_url defaults to the first");
        assert_eq!(c.hub.public_origins, ["https://hub.example.com", "https://nb.example.com:8443"]);
        assert_eq!(c.hub.trusted_proxies.len(), 2);
        let loopback = parse(MINIMAL).expect("parse");
        assert!(loopback.hub.public_origins.contains(&"http://localhost:8000".to_string()));
        let e =
            parse(&format!("[hub]\ntrusted_proxies = [\"proxy.example\"]\n{MINIMAL}")).expect_err("bad").to_string();
        assert!(e.contains("line 2") && e.contains("trusted_proxies"), "{e}");
    }

    #[test]
    fn kerberos_login_needs_its_principal_and_keytab() {
        let base = "[auth]\nmethod = \"kerberos\"\nrealm = \"EXAMPLE.COM\"\n";
        let e = parse(&format!("{base}{MINIMAL}")).expect_err("no principal").to_string();
        assert!(e.contains("service_principal"), "{e}");
        let c = parse(&format!(
            "{base}spnego = true\nservice_principal = \"HTTP/hub.example.com\"\nservice_keytab = \"/etc/hub/http.keytab\"\n\
             [[auth.principal_map]]\nmatch = '([a-z]+)/admin@EXAMPLE\\.COM'\nuser = \"$1\"\n{MINIMAL}"
        ))
        .expect("parse");
        assert_eq!(c.auth.method, AuthMethod::Kerberos);
        assert_eq!(c.auth.service_principal, "HTTP/hub.example.com@EXAMPLE.COM");
        assert!(c.auth.principal_map[0].pattern.is_match("ann/admin@EXAMPLE.COM"));
        let e = parse(&format!(
            "{base}service_principal = \"HTTP/h\"\nservice_keytab = \"/k\"\n[[auth.principal_map]]\nmatch = '(['\nuser = \"x\"\n{MINIMAL}"
        ))
        .expect_err("bad regex")
        .to_string();
        assert!(e.contains("principal_map.match"), "{e}");
        let e = parse(&format!("[auth]\nadmin_users = [\"Root/..\"]\n{MINIMAL}")).expect_err("bad name").to_string();
        assert!(e.contains("admin_users"), "{e}");
    }
}
