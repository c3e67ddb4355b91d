//! `[hub]`: where the hub listens, the addresses it is reached at, and where it keeps its
//! state.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::source::{ConfigError, Source};

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
    /// The banner shown on the login, home and spawn pages.
    pub announcement: Announcements,
}

/// Longest announcement, in characters.
pub const MAX_ANNOUNCEMENT: usize = 2000;

/// The banner text of the hub's pages (`[hub] announcement`, with per-page overrides
/// `announcement_login`, `announcement_home`, `announcement_spawn`, as JupyterHub's template
/// variables of the same names). Plain text: the pages escape it. `hub serve` re-reads these
/// keys on SIGHUP, without a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announcements {
    /// `announcement`: every page below, unless its own key is set.
    pub all: Option<String>,
    /// `announcement_login` (`""` hides the general one there).
    pub login: Option<String>,
    /// `announcement_home`.
    pub home: Option<String>,
    /// `announcement_spawn` (the spawn and progress pages).
    pub spawn: Option<String>,
}

/// Which page an announcement is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnouncementPage {
    /// `/hub/login`.
    Login,
    /// `/hub/home`.
    Home,
    /// `/hub/spawn`.
    Spawn,
}

impl Announcements {
    /// The text for `page`, if any (an empty override hides the general one).
    pub fn for_page(&self, page: AnnouncementPage) -> Option<&str> {
        let own = match page {
            AnnouncementPage::Login => &self.login,
            AnnouncementPage::Home => &self.home,
            AnnouncementPage::Spawn => &self.spawn,
        };
        own.as_deref().or(self.all.as_deref()).filter(|t| !t.trim().is_empty())
    }
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

/// Longest Unix socket path, in bytes, not counting the terminating NUL (`sun_path` is 108
/// bytes on Linux, unix(7)).
pub const MAX_SOCKET_PATH: usize = 107;

impl HubConfig {
    /// The Unix socket `user`'s default server listens on with `transport = "unix"`:
    /// `<data_dir>/sockets/<user>/server.sock`.
    pub fn server_socket(&self, user: &str) -> PathBuf {
        server_socket_in(&self.data_dir, user, "")
    }

    /// The Unix socket of `user`'s server `server_name` (`""`: the default one); a named
    /// server's is `<data_dir>/sockets/<user>/server@<server_name>.sock`, in the same directory.
    pub fn server_socket_for(&self, user: &str, server_name: &str) -> PathBuf {
        server_socket_in(&self.data_dir, user, server_name)
    }

    /// Where the hub writes `user`'s `[[kernelspec]]` entries, the directory put on their
    /// server's `JUPYTER_PATH`: `<data_dir>/jupyter/<user>` (its parent `<data_dir>/jupyter`).
    pub fn kernelspec_root(&self, user: &str) -> PathBuf {
        self.data_dir.join("jupyter").join(user)
    }
}

/// [`HubConfig::server_socket`] for a `data_dir` (also used before the config is built, to
/// check the path fits).
pub(crate) fn server_socket_in(data_dir: &Path, user: &str, server_name: &str) -> PathBuf {
    let file = if server_name.is_empty() { "server.sock".to_string() } else { format!("server@{server_name}.sock") };
    data_dir.join("sockets").join(user).join(file)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileHub {
    pub(crate) bind: Option<Spanned<String>>,
    pub(crate) bind_mode: Option<Spanned<String>>,
    pub(crate) bind_group: Option<Spanned<String>>,
    pub(crate) body_min_rate: Option<Spanned<i64>>,
    pub(crate) public_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) public_urls: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<Spanned<String>>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) database_url: Option<Spanned<String>>,
    pub(crate) jwt_secret_file: Option<PathBuf>,
    pub(crate) stop_servers_on_shutdown: Option<bool>,
    pub(crate) shutdown_timeout: Option<Spanned<String>>,
    pub(crate) header_read_timeout: Option<Spanned<String>>,
    pub(crate) announcement: Option<Spanned<String>>,
    pub(crate) announcement_login: Option<Spanned<String>>,
    pub(crate) announcement_home: Option<Spanned<String>>,
    pub(crate) announcement_spawn: Option<Spanned<String>>,
}

/// Validates `[hub]`.
pub(crate) fn parse(src: &Source<'_>, f: &FileHub) -> Result<HubConfig, ConfigError> {
    let path = src.path;
    // [hub]
    let bind = match &f.bind {
        None => Bind::Tcp(SocketAddr::from(([127, 0, 0, 1], 8000))),
        Some(b) => match b.get_ref().strip_prefix("unix:") {
            Some(path) if Path::new(path).is_absolute() && !path.ends_with('/') => {
                let mode = match &f.bind_mode {
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
                let group = match &f.bind_group {
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
    if let (Bind::Tcp(_), Some(k)) = (&bind, f.bind_mode.as_ref().or(f.bind_group.as_ref())) {
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
            (Some(host), Ok(_)) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '@']) => Ok(s.to_string()),
            _ => Err(src.err(key, u, "must be http(s)://host[:port] with no path, e.g. \"https://hub.example.com\"")),
        }
    };
    let mut public_urls = Vec::new();
    for u in &f.public_urls {
        public_urls.push(check_url("hub.public_urls", u)?);
    }
    let public_url = match &f.public_url {
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
        && f.public_url.is_none()
        && public_urls.is_empty()
        && bind.ip().is_loopback()
    {
        add_origin(&format!("http://localhost:{}", bind.port()));
        add_origin(&format!("http://127.0.0.1:{}", bind.port()));
    }
    let mut trusted_proxies = Vec::new();
    for p in &f.trusted_proxies {
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
    let data_dir = f.data_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/hub"));
    if !data_dir.is_absolute() {
        return Err(ConfigError(format!(
            "{}: `hub.data_dir` must be an absolute path, not {}",
            path.display(),
            data_dir.display()
        )));
    }
    let database_url = match &f.database_url {
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
    let jwt_secret_file = f.jwt_secret_file.clone().unwrap_or_else(|| data_dir.join("jwt.key"));
    let header_read_timeout =
        src.duration("hub.header_read_timeout", &f.header_read_timeout, Duration::from_secs(30))?;
    if let (true, Some(v)) = (header_read_timeout < Duration::from_secs(1), &f.header_read_timeout) {
        return Err(src.err(
            "hub.header_read_timeout",
            v,
            "must be at least 1s (slow clients on a poor network need several), e.g. \"30s\"",
        ));
    }
    let body_min_rate = match &f.body_min_rate {
        None => 1024,
        Some(n) if (1..=1_000_000_000).contains(n.get_ref()) => *n.get_ref() as u64,
        Some(n) => {
            return Err(src.err(
                "hub.body_min_rate",
                n,
                "must be a number of bytes per second from 1 to 1000000000, e.g. 1024",
            ));
        }
    };
    let text = |key: &str, v: &Option<Spanned<String>>| -> Result<Option<String>, ConfigError> {
        match v {
            None => Ok(None),
            Some(t) if t.get_ref().chars().count() > MAX_ANNOUNCEMENT => {
                Err(src.err(key, t, format!("is longer than {MAX_ANNOUNCEMENT} characters; shorten it")))
            }
            Some(t) if t.get_ref().chars().any(|c| c.is_control() && c != '\n') => {
                Err(src.err(key, t, "has control characters; use plain text (newlines are allowed)"))
            }
            Some(t) => Ok(Some(t.get_ref().clone())),
        }
    };
    let announcement = Announcements {
        all: text("hub.announcement", &f.announcement)?,
        login: text("hub.announcement_login", &f.announcement_login)?,
        home: text("hub.announcement_home", &f.announcement_home)?,
        spawn: text("hub.announcement_spawn", &f.announcement_spawn)?,
    };
    Ok(HubConfig {
        announcement,
        bind,
        public_url,
        public_origins,
        trusted_proxies,
        data_dir,
        database_url,
        jwt_secret_file,
        stop_servers_on_shutdown: f.stop_servers_on_shutdown.unwrap_or(false),
        shutdown_timeout: src.duration("hub.shutdown_timeout", &f.shutdown_timeout, Duration::from_secs(10))?,
        header_read_timeout,
        body_min_rate,
    })
}

/// The RFC 6454 origin of `url` (`scheme://host[:port]`, lower case, default port dropped),
/// or `None` if it is not an absolute http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    matches!(u.scheme(), "http" | "https").then(|| u.origin().ascii_serialization())
}
