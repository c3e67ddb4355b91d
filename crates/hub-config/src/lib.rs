//! `hub-config`: `hub.toml`, the admin's interface.
//!
//! The file is parsed into `File*` structs that mirror it exactly
//! (`#[serde(deny_unknown_fields)]`, so a misspelt key is an error), then validated into
//! [`Config`], the type the rest of the hub uses. Every error names the key and the line.
//! `config/hub.toml` in the repository is the commented example of every key; `hub
//! example-config` prints it.

mod api;
mod auth;
mod hub;
mod jobs;
mod kerberos;
mod kernelspec;
pub mod limits;
pub mod profiles;
mod slurm;
mod source;
mod spawner;
mod template;

pub use source::ConfigError;
use source::Source;

pub use api::{ApiConfig, ServiceConfig, TokenSource};
pub use auth::{AuthConfig, AuthMethod, PrincipalRule};
pub use hub::{AnnouncementPage, Announcements, Bind, HubConfig, MAX_ANNOUNCEMENT, MAX_SOCKET_PATH, origin_of};
pub use jobs::JobsConfig;
pub use kerberos::KerberosConfig;
pub use kernelspec::{KernelSpecConfig, is_kernel_name};
pub use slurm::{SlurmConfig, SlurmProfile};
pub use spawner::{SpawnerConfig, SpawnerKind, Transport};
pub use template::{Template, TemplateError, TemplateVars};

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// The commented example configuration shipped as `config/hub.toml`.
pub const EXAMPLE: &str = include_str!("../../../config/hub.toml");

/// Default location of the configuration file when neither `--config` nor `HUB_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/hub/hub.toml";

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
    /// `[jobs]`: scheduled and on-demand notebook runs.
    pub jobs: JobsConfig,
    /// `[[profiles]]`: the server options users choose from (empty: no choice).
    pub profiles: Vec<profiles::ProfileConfig>,
    /// The file this was read from (`hub serve` re-reads its announcements on SIGHUP).
    pub source: std::path::PathBuf,
}

impl fmt::Debug for Config {
    /// Every section, as validated (what `hub check-config` prints). Secrets are redacted: the
    /// values of `[spawner] env`, of each `[[kernelspec]]`'s and `[[profiles]]`' `env` (admins put tokens
    /// there), and a password in `database_url`. Service tokens are not in the configuration
    /// (only the file or variable they are read from).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.clone();
        let redact = |env: &mut BTreeMap<String, Template>| {
            for v in env.values_mut() {
                *v = Template::literal("<redacted>");
            }
        };
        redact(&mut shown.spawner.env);
        for k in &mut shown.kernelspecs {
            redact(&mut k.env);
        }
        for p in &mut shown.profiles {
            redact(&mut p.env);
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
            .field("jobs", &shown.jobs)
            .field("profiles", &shown.profiles)
            .finish()
    }
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    hub: hub::FileHub,
    #[serde(default)]
    auth: auth::FileAuth,
    #[serde(default)]
    spawner: spawner::FileSpawner,
    #[serde(default)]
    kerberos: kerberos::FileKerberos,
    #[serde(default)]
    kernelspec: Vec<kernelspec::FileKernelSpec>,
    #[serde(default)]
    api: api::FileApi,
    #[serde(default)]
    services: Vec<api::FileService>,
    #[serde(default)]
    limits: limits::FileLimitsTable,
    #[serde(default)]
    jobs: jobs::FileJobs,
    #[serde(default)]
    profiles: Vec<profiles::FileProfile>,
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

        let hub = hub::parse(&src, &file.hub)?;
        let auth = auth::parse(&src, &file.auth, file.kerberos.realm.as_ref())?;
        let spawner = spawner::parse(&src, file.spawner, &hub.data_dir)?;
        let kerberos = kerberos::parse(&src, &file.kerberos, &hub.data_dir)?;
        let kernelspecs = kernelspec::parse(&src, &file.kernelspec)?;
        let api = api::parse(&src, &file.api)?;
        let limits = limits::parse(&src, &file.limits)?;
        let services = api::parse_services(&src, &file.services)?;
        let jobs = jobs::parse(&src, &file.jobs)?;
        let names: Vec<String> = kernelspecs.iter().map(|k| k.name.clone()).collect();
        let profiles = profiles::parse(&src, &file.profiles, &names)?;
        Ok(Config {
            profiles,
            hub,
            auth,
            spawner,
            kerberos,
            kernelspecs,
            api,
            services,
            limits,
            jobs,
            source: path.to_path_buf(),
        })
    }

    /// Whether the cookie must be `Secure` (the public URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.hub.public_url.starts_with("https://")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("hub.toml"), text)
    }

    const MINIMAL: &str = "[spawner]\ncmd = [\"/bin/true\"]\n";

    #[test]
    fn profiles() {
        let c = parse(MINIMAL).expect("defaults");
        assert!(c.profiles.is_empty());
        let text = format!(
            "{MINIMAL}[[kernelspec]]\nname = \"spark\"\nargv = [\"python\"]\n\
             [[profiles]]\nslug = \"small\"\ndefault = true\nlimits = {{ memory = \"2 GiB\" }}\n\
             [[profiles]]\nslug = \"large\"\ndisplay_name = \"Large\"\ngroups = [\"bigdata\"]\nkernelspecs = [\"spark\"]\n\
             limits = {{ memory = \"32 GiB\", cpu = 8 }}\nenv = {{ SPARK_DRIVER_MEMORY = \"24g\" }}\n"
        );
        let c = parse(&text).expect("valid");
        assert_eq!(c.profiles.len(), 2);
        let large = &c.profiles[1];
        assert_eq!((large.limits.memory, large.limits.cpu), (Some(32 << 30), Some(8.0)));
        assert!(large.allows("x", &["bigdata".into()]) && !large.allows("x", &[]));
        assert!(c.profiles[0].allows("anyone", &[]), "no users or groups: everyone");
        assert_eq!(large.who(), "groups bigdata");
        let e = parse(&text.replace("\"spark\"]", "\"sparc\"]")).expect_err("unknown kernelspec");
        assert!(e.to_string().contains("\"sparc\", which is not a [[kernelspec]] entry"), "{e}");
        let e = parse(&text.replace("slug = \"large\"", "slug = \"small\"")).expect_err("twice");
        assert!(e.to_string().contains("`profiles.slug` is declared twice"), "{e}");
        let e = parse(&text.replace("slug = \"large\"", "slug = \"Large!\"")).expect_err("slug");
        assert!(e.to_string().contains("`profiles.slug` must be 1-30 lower-case"), "{e}");
        let e = parse(&text.replace("groups = [", "default = true\ngroups = [")).expect_err("two defaults");
        assert!(e.to_string().contains("more than one profile"), "{e}");
        let e = parse(&text.replace("memory = \"32 GiB\"", "memory = \"lots\"")).expect_err("memory");
        assert!(e.to_string().contains("`profiles.large.limits.memory` is not a size"), "{e}");
        let e = parse(&format!("{MINIMAL}[[profiles]]\nslug = \"x\"\ncolour = 1\n")).expect_err("unknown key");
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn announcements() {
        let c = parse(MINIMAL).expect("defaults");
        assert_eq!(c.hub.announcement.for_page(AnnouncementPage::Home), None);
        let c = parse(&format!(
            "[hub]\nannouncement = \"Maintenance <Saturday>\"\nannouncement_login = \"\"\nannouncement_spawn = \"GPU nodes are full\"\n{MINIMAL}"
        ))
        .expect("valid");
        let a = &c.hub.announcement;
        assert_eq!(a.for_page(AnnouncementPage::Home), Some("Maintenance <Saturday>"));
        assert_eq!(a.for_page(AnnouncementPage::Login), None, "an empty override hides it");
        assert_eq!(a.for_page(AnnouncementPage::Spawn), Some("GPU nodes are full"));
        let e = parse(&format!("[hub]\nannouncement = \"a\\u001b[31m\"\n{MINIMAL}")).expect_err("control");
        assert!(e.to_string().contains("`hub.announcement` has control characters"), "{e}");
        let e = parse(&format!("[hub]\nannouncement_home = \"{}\"\n{MINIMAL}", "x".repeat(2001))).expect_err("long");
        assert!(e.to_string().contains("longer than 2000"), "{e}");
    }

    #[test]
    fn jobs_section() {
        let c = parse(MINIMAL).expect("defaults");
        assert_eq!((c.jobs.max_concurrent_runs, c.jobs.max_runs_per_user, c.jobs.default_keep_runs), (4, 2, 20));
        assert_eq!(c.jobs.default_timeout, Duration::from_secs(12 * 3600));
        let c = parse(&format!(
            "{MINIMAL}[jobs]\nmax_concurrent_runs = 8\ndefault_timeout = \"2h\"\nmissed_after = \"5m\"\n"
        ))
        .expect("valid");
        assert_eq!((c.jobs.max_concurrent_runs, c.jobs.missed_after), (8, Duration::from_secs(300)));
        let e = parse(&format!("{MINIMAL}[jobs]\nmax_runs_per_user = 0\n")).expect_err("zero");
        assert!(e.to_string().contains("`jobs.max_runs_per_user` must be between 1 and 1000"), "{e}");
        let e = parse(&format!("{MINIMAL}[jobs]\ndefault_timeout = \"soon\"\n")).expect_err("duration");
        assert!(e.to_string().contains("line 4: `jobs.default_timeout` is not a duration"), "{e}");
        let c = parse(&format!("{MINIMAL}[jobs.limits]\nmemory = \"8 GiB\"\n")).expect("job limits");
        assert_eq!((c.jobs.limits.memory, c.jobs.limits.cpu), (Some(8 << 30), None));
        let e = parse(&format!("{MINIMAL}[jobs.limits]\ncpu = 0\n")).expect_err("cpu");
        assert!(e.to_string().contains("`jobs.limits.cpu` must be a number of cores"), "{e}");
        let e = parse(&format!("{MINIMAL}[jobs]\nmax_runs = 3\n")).expect_err("unknown key");
        assert!(e.to_string().contains("max_runs"), "{e}");
    }

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
