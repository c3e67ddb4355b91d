//! Fixtures on real parts: Linux users with passwords, a PAM service file, a throwaway MIT
//! Kerberos realm on a loopback port, and the hub itself on port 0.
//!
//! Everything created is removed on drop. The tests need root (they create users and the
//! hub drops privileges) and the packages and venv that `scripts/setup.sh` installs.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use hub::config::Config;
use hub::state::AppState;

/// The tests' log filter: debug for every crate of the hub, info for the rest.
const HUB_DEBUG_LOG: &str = "info,hub=debug,hub_core=debug,hub_config=debug,hub_store=debug,hub_auth=debug,hub_net=debug,hub_servers=debug,hub_runner=debug,hub_web=debug";

/// The Jupyter venv made by scripts/setup.sh.
pub fn venv() -> PathBuf {
    PathBuf::from(std::env::var("HUB_VENV").unwrap_or_else(|_| "/opt/hub/jupyter-venv".into()))
}

/// Fails the test early with a useful message when not run as root.
/// The path of `tests/browser/<name>`, a playwright-core script for Debian's Chromium; fails
/// the test with the fix named if setup.sh has not installed playwright-core.
pub fn browser_script(name: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser").join(name);
    assert!(
        script.with_file_name("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `bash scripts/setup.sh`"
    );
    script
}

pub fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "the end-to-end tests must run as root (they create Linux users)");
    assert!(
        venv().join("bin/jupyter-lab").exists(),
        "no JupyterLab venv at {}: run `bash scripts/setup.sh` (or `bash tests/run.sh`)",
        venv().display()
    );
}

pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Captured tracing output of the hub running inside the test process.
pub static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;
impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        std::io::stderr().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter(HUB_DEBUG_LOG)
            .fmt_fields(hub::logging::text_fields())
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .init();
    });
}

/// Whether one captured log line contains every one of `parts`.
pub fn log_line_with(parts: &[&str]) -> bool {
    logs().lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// A real Linux user with a home directory, a password and a supplementary group.
pub struct TestUser {
    pub name: String,
    pub password: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl TestUser {
    pub fn create() -> Self {
        let suffix = random_hex(4);
        let name = format!("hubt{suffix}");
        let group = format!("hubg{suffix}");
        let password = format!("pw-{}", random_hex(8));
        run(Command::new("groupadd").arg(&group));
        run(Command::new("useradd").args(["-m", "-s", "/bin/bash", "-G", &group, &name]));
        let mut p = Command::new("chpasswd").stdin(Stdio::piped()).spawn().expect("chpasswd");
        p.stdin.take().expect("stdin").write_all(format!("{name}:{password}\n").as_bytes()).expect("write");
        assert!(p.wait().expect("wait").success(), "chpasswd failed");
        let u = nix::unistd::User::from_name(&name).expect("getpwnam").expect("user exists");
        Self { name, password, group, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir }
    }

    /// Live processes running with this user's UID. A zombie (exited, waiting for its parent
    /// or init to reap it) runs nothing and is not counted: an orphaned kernel killed by a stop
    /// stays one until PID 1 gets round to it, which on a loaded machine can be after the stop
    /// returned.
    pub fn processes(&self) -> Vec<u32> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| hub::spawner::local::owner_uid(*pid) == Some(self.uid))
            .filter(|pid| !matches!(hub_core::process::proc_state(*pid), Some('Z' | 'X') | None))
            .collect()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-KILL", "-u", &self.name]).status();
        std::thread::sleep(Duration::from_millis(100));
        // A server the test left running (its hub stopped without stopping it) keeps its
        // cgroups, which the next hub would clean up; no next hub comes for a test user.
        hub::limits::Enforcer::detect(false).remove(&self.name);
        let _ = Command::new("userdel").args(["-r", "-f", &self.name]).stderr(Stdio::null()).status();
        let _ = Command::new("groupdel").arg(&self.group).status();
    }
}

/// A PAM service file for the tests: pam_unix without the failure delay.
pub struct PamService {
    pub name: String,
}

impl PamService {
    pub fn create() -> Self {
        let name = format!("hub-test-{}", random_hex(4));
        std::fs::write(
            format!("/etc/pam.d/{name}"),
            "auth required pam_unix.so nodelay\naccount required pam_unix.so\n",
        )
        .expect("write PAM service");
        Self { name }
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/etc/pam.d/{}", self.name));
    }
}

/// A throwaway MIT Kerberos realm: its own database in a temp dir, a KDC on a loopback port.
pub struct Kdc {
    pub realm: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Ticket lifetime of new principals (`None`: 10 h).
    pub max_life: Option<Duration>,
    child: Option<Child>,
}

/// Lifetime for the short-ticket tests: 2 minutes, as the renewer issue asks; set
/// `HUB_TEST_TICKET_LIFE` (seconds) to try the tests faster while developing.
pub fn short_life() -> Duration {
    Duration::from_secs(std::env::var("HUB_TEST_TICKET_LIFE").ok().and_then(|s| s.parse().ok()).unwrap_or(120))
}

impl Kdc {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A realm whose tickets live `max_life` (renewable for 5 × that), with `clockskew = 1`
    /// so that an expired ticket really is expired.
    pub fn start_short(max_life: Duration) -> Self {
        Self::start_with(Some(max_life))
    }

    fn start_with(max_life: Option<Duration>) -> Self {
        Self::start_realm(&format!("HUBTEST{}.LOCAL", random_hex(3).to_uppercase()), max_life)
    }

    /// A KDC for `realm` with its own database and keys: given an existing realm's name, an
    /// impostor KDC (the KDC-spoofing test).
    pub fn start_realm(realm: &str, max_life: Option<Duration>) -> Self {
        Self::start_at(realm, max_life, tempfile::tempdir().expect("tmp"), None)
    }

    /// A KDC whose files are in a new directory under `base` (a filesystem cluster nodes share)
    /// and that listens on `addr` too (the login host's address on the cluster network); its
    /// krb5.conf names `addr`, so nodes reach the same KDC.
    pub fn start_for_nodes(base: &Path, addr: std::net::IpAddr, max_life: Option<Duration>) -> Self {
        let dir = tempfile::Builder::new().prefix("kdc-").tempdir_in(base).expect("tmp");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let realm = format!("HUBTEST{}.LOCAL", random_hex(3).to_uppercase());
        Self::start_at(&realm, max_life, dir, Some(addr))
    }

    fn start_at(
        realm: &str,
        max_life: Option<Duration>,
        dir: tempfile::TempDir,
        also: Option<std::net::IpAddr>,
    ) -> Self {
        let realm = realm.to_string();
        let bind_ip = also.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let port = std::net::TcpListener::bind((bind_ip, 0)).expect("bind").local_addr().expect("addr").port();
        let d = dir.path();
        let kdc_addr = also.map_or_else(|| format!("127.0.0.1:{port}"), |a| format!("{a}:{port}"));
        let listen = also.map_or_else(|| format!("127.0.0.1:{port}"), |a| format!("127.0.0.1:{port}, {a}:{port}"));
        std::fs::write(
            d.join("krb5.conf"),
            format!(
                "[libdefaults]\n default_realm = {realm}\n renew_lifetime = 7d\n forwardable = true\n dns_lookup_realm = false\n dns_lookup_kdc = false\n rdns = false\n udp_preference_limit = 1\n clockskew = {skew}\n\
                 [realms]\n {realm} = {{\n  kdc = {kdc_addr}\n }}\n",
                skew = if max_life.is_some() { 1 } else { 300 },
            ),
        )
        .expect("krb5.conf");
        let (life, renew) = match max_life {
            Some(l) => (format!("{}s", l.as_secs()), format!("{}s", l.as_secs() * 5)),
            None => ("10h".into(), "1d".into()),
        };
        std::fs::write(
            d.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n kdc_listen = {listen}\n kdc_tcp_listen = {listen}\n\
                 [realms]\n {realm} = {{\n  database_name = {db}\n  key_stash_file = {stash}\n  acl_file = {acl}\n  max_life = {life}\n  max_renewable_life = {renew}\n }}\n",
                db = d.join("principal").display(),
                stash = d.join("stash").display(),
                acl = d.join("kadm5.acl").display(),
            ),
        )
        .expect("kdc.conf");
        std::fs::set_permissions(d.join("krb5.conf"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::write(d.join("kadm5.acl"), "").expect("acl");
        let env = |c: &mut Command| {
            c.env("KRB5_CONFIG", d.join("krb5.conf")).env("KRB5_KDC_PROFILE", d.join("kdc.conf"));
        };
        let mut c = Command::new("kdb5_util");
        c.args(["-r", &realm, "create", "-s", "-P", &random_hex(8)]);
        env(&mut c);
        run(&mut c);
        let mut kdc = Self { realm, dir, port, max_life, child: None };
        if let Some(l) = max_life {
            let (life, renew) = (l.as_secs(), l.as_secs() * 5);
            kdc.kadmin(&format!(
                "modprinc -maxlife \"{life} seconds\" -maxrenewlife \"{renew} seconds\" krbtgt/{0}@{0}",
                kdc.realm
            ));
        }
        kdc.restart();
        kdc
    }

    /// Starts the KDC process (again) on the same port and waits until it listens.
    pub fn restart(&mut self) {
        let d = self.dir.path();
        let mut c = Command::new("krb5kdc");
        c.args(["-n", "-r", &self.realm])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("KRB5_CONFIG", d.join("krb5.conf"))
            .env("KRB5_KDC_PROFILE", d.join("kdc.conf"));
        self.child = Some(c.spawn().expect("krb5kdc"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the KDC did not start listening on 127.0.0.1:{}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the KDC process (a KDC outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.path().join("krb5.conf")
    }

    pub fn kadmin(&self, query: &str) -> String {
        let mut c = Command::new("kadmin.local");
        c.args(["-r", &self.realm, "-q", query])
            .env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5_KDC_PROFILE", self.dir.path().join("kdc.conf"));
        run(&mut c)
    }

    /// Creates `user@REALM` with the user's password and exports its keys (without
    /// re-randomising them) to `~user/user.keytab`, owned by the user, mode 0600.
    pub fn add_user_with_keytab(&self, user: &TestUser) -> PathBuf {
        let principal = format!("{}@{}", user.name, self.realm);
        self.kadmin(&format!("addprinc {} -pw {} {principal}", self.life_flags(), user.password));
        let keytab = user.home.join(format!("{}.keytab", user.name));
        self.kadmin(&format!("ktadd -k {} -norandkey {principal}", keytab.display()));
        std::os::unix::fs::chown(&keytab, Some(user.uid), Some(user.gid)).expect("chown keytab");
        std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o600)).expect("chmod keytab");
        keytab
    }

    fn life_flags(&self) -> String {
        match self.max_life {
            Some(l) => format!("-maxlife \"{} seconds\" -maxrenewlife \"{} seconds\"", l.as_secs(), l.as_secs() * 5),
            None => String::new(),
        }
    }

    /// Creates `names` as principals with random keys, all exported into one keytab at
    /// `keytab` (left root-owned, mode 0600).
    pub fn add_principals(&self, names: &[String], keytab: &Path) {
        for n in names {
            self.kadmin(&format!("addprinc {} -randkey {n}@{}", self.life_flags(), self.realm));
            self.kadmin(&format!("ktadd -k {} {n}@{}", keytab.display(), self.realm));
        }
        std::fs::set_permissions(keytab, std::fs::Permissions::from_mode(0o600)).expect("chmod keytab");
    }

    /// `klist -c FILE:path` output.
    pub fn klist(&self, ccache: &Path) -> std::process::Output {
        Command::new("klist")
            .arg("-c")
            .arg(format!("FILE:{}", ccache.display()))
            .env("KRB5_CONFIG", self.krb5_conf())
            .output()
            .expect("klist")
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway PostgreSQL cluster that authenticates with Kerberos (GSSAPI): the
/// `postgres/localhost` service principal's key in `krb_server_keyfile`, `gss` lines in
/// pg_hba.conf for TCP on loopback, role names without the realm. It stands in for the
/// Kerberos-secured services (HDFS, Hive) a notebook talks to as its user. Superuser `hub`
/// reaches it over its Unix socket only (trust), to create roles.
pub struct GssPostgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    /// The address the nodes reach it at, when it listens on a cluster network too.
    also: Option<std::net::IpAddr>,
}

impl GssPostgres {
    pub fn start(kdc: &Kdc) -> Self {
        Self::start_on(kdc, None)
    }

    /// Also listening on `also` (the login host's address on the cluster network), with
    /// GSSAPI logins allowed from that /24: a Kerberos-secured service the nodes reach.
    pub fn start_on(kdc: &Kdc, also: Option<std::net::IpAddr>) -> Self {
        let bin = PathBuf::from(std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()));
        assert!(bin.join("initdb").exists(), "no PostgreSQL at {}: run `bash scripts/setup.sh`", bin.display());
        let dir = tempfile::Builder::new().prefix("hub-gss-pg-").tempdir().expect("tmp");
        let d = dir.path();
        let pg = nix::unistd::User::from_name("postgres").expect("getpwnam").expect("the postgres user exists");
        std::os::unix::fs::chown(d, Some(pg.uid.as_raw()), Some(pg.gid.as_raw())).expect("chown");
        let keytab = d.join("postgres.keytab");
        kdc.add_principals(&["postgres/localhost".to_string()], &keytab);
        std::os::unix::fs::chown(&keytab, Some(pg.uid.as_raw()), Some(pg.gid.as_raw())).expect("chown keytab");
        let as_postgres = |program: &Path| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "env"])
                .arg(format!("KRB5_CONFIG={}", kdc.krb5_conf().display()))
                .arg(program);
            c
        };
        run(as_postgres(&bin.join("initdb")).arg("-D").arg(d.join("data")).args([
            "-U",
            "hub",
            "--auth-local=trust",
            "--auth-host=reject",
            "--no-sync",
            "-E",
            "UTF8",
        ]));
        std::fs::write(
            d.join("data/pg_hba.conf"),
            format!(
                "local all hub trust\nhost all all 127.0.0.1/32 gss include_realm=0 krb_realm={r}\n{extra}",
                r = kdc.realm,
                extra = also
                    .map(|a| format!("host all all {a}/24 gss include_realm=0 krb_realm={}\n", kdc.realm))
                    .unwrap_or_default(),
            ),
        )
        .expect("pg_hba.conf");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        run(as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(d.join("data"))
            .arg("-l")
            .arg(d.join("server.log"))
            .args(["-w", "-t", "30", "-o"])
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1{} -c fsync=off -c krb_server_keyfile=FILE:{}",
                d.display(),
                also.map(|a| format!(",{a}")).unwrap_or_default(),
                keytab.display()
            ))
            .arg("start"));
        Self { dir, port, bin, also }
    }

    /// Creates a login role `name` (no password: it can only come in with a ticket).
    pub fn create_role(&self, name: &str) {
        run(Command::new("runuser").args(["-u", "postgres", "--"]).arg(self.bin.join("psql")).args([
            "-h",
            &self.dir.path().display().to_string(),
            "-p",
            &self.port.to_string(),
            "-U",
            "hub",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE ROLE \"{name}\" LOGIN"),
        ]));
    }

    /// The libpq connection string a notebook of `user` uses (Kerberos, over TCP).
    pub fn conninfo(&self, user: &str) -> String {
        format!("host=localhost hostaddr=127.0.0.1 port={} dbname=postgres user={user}", self.port)
    }

    /// The connection string from a cluster node (the principal is still `postgres/localhost`;
    /// the TCP connection goes to the login host's cluster address).
    pub fn conninfo_from_nodes(&self, user: &str) -> String {
        let a = self.also.expect("started with start_on(.., Some(addr))");
        format!("host=localhost hostaddr={a} port={} dbname=postgres user={user}", self.port)
    }
}

impl Drop for GssPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Extra configuration for [`TestHub::start_with`].
#[derive(Default)]
pub struct HubOptions {
    /// `cmd = ...` value (TOML array); default: the venv's jupyter-lab.
    pub cmd: Option<String>,
    /// Lines added to `[spawner]`.
    pub spawner: String,
    /// Lines added to `[kerberos]` (when a KDC is given).
    pub kerberos: String,
    /// Lines added at the end (e.g. `[[kernelspec]]`).
    pub tail: String,
    /// Lines added to `[auth]`.
    pub auth: String,
    /// Leave servers running when the hub stops (`stop_servers_on_shutdown = false`).
    pub keep_servers: bool,
    /// Lines added to `[hub]`.
    pub hub: String,
    /// `[hub] bind` instead of a fresh loopback port, e.g. `unix:/tmp/x/hub.sock` (then
    /// [`TestHub::addr`] is `0.0.0.0:0`: reach the hub through whatever proxies it), or
    /// `10.1.2.1:0` (a fresh port there). `{HUB_ADDR}` in `spawner` becomes the bound address.
    pub bind: Option<String>,
}

/// The hub running inside the test process on 127.0.0.1:0 with a temporary data_dir.
pub struct TestHub {
    pub addr: SocketAddr,
    pub state: AppState,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestHub {
    /// Writes hub.toml (`extra` is appended to `[spawner]`), runs `hub migrate`'s code and serves.
    pub async fn start(pam: &PamService, kdc: Option<&Kdc>, extra: &str) -> Self {
        Self::start_with(pam, kdc, HubOptions { spawner: extra.into(), ..Default::default() }).await
    }

    /// A hub whose spawner runs `cmd` instead of JupyterLab, without Kerberos.
    pub async fn start_with_cmd(pam: &PamService, cmd: &[&str]) -> Self {
        let cmd = serde_json::to_string(cmd).expect("json");
        Self::start_with(pam, None, HubOptions { cmd: Some(cmd), ..Default::default() }).await
    }

    /// A hub with extra lines in `[spawner]` and `[kerberos]` and at the end of the file.
    pub async fn start_with(pam: &PamService, kdc: Option<&Kdc>, o: HubOptions) -> Self {
        let data_dir = tempfile::Builder::new().prefix("hub-test-").tempdir().expect("tmp");
        Self::start_in(data_dir, pam, kdc, o).await
    }

    /// Like [`start_with`] in an existing data_dir (a restarted hub).
    pub async fn start_in(data_dir: tempfile::TempDir, pam: &PamService, kdc: Option<&Kdc>, o: HubOptions) -> Self {
        init_logging();
        std::fs::set_permissions(data_dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
        let cmd = o.cmd.unwrap_or_else(|| format!("[\"{}/bin/jupyter-lab\"]", venv().display()));
        let kerberos = match kdc {
            Some(k) => format!(
                "[kerberos]\nenabled = true\nrealm = \"{}\"\nkrb5_config = \"{}\"\n{}\n",
                k.realm,
                k.krb5_conf().display(),
                o.kerberos
            ),
            None => "[kerberos]\nenabled = false\n".into(),
        };
        let (listener, addr, bind) = match &o.bind {
            None => {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = l.local_addr().expect("addr");
                (Some(l), addr, addr.to_string())
            }
            Some(b) if !b.starts_with("unix:") => {
                let l = tokio::net::TcpListener::bind(b.as_str()).await.expect("bind");
                let addr = l.local_addr().expect("addr");
                (Some(l), addr, addr.to_string())
            }
            Some(b) => (None, "0.0.0.0:0".parse().expect("addr"), b.clone()),
        };
        // Runs start the hub binary as the runner (the test binary is not it).
        let runner = format!("runner = \"{}\"\n", env!("CARGO_BIN_EXE_hub"));
        let tail = if o.tail.contains("[jobs]\n") {
            o.tail.replacen("[jobs]\n", &format!("[jobs]\n{runner}"), 1)
        } else {
            format!("{}\n[jobs]\n{runner}", o.tail)
        };
        let text = format!(
            "[hub]\nbind = \"{bind}\"\n{public}data_dir = \"{dd}\"\nstop_servers_on_shutdown = {stop}\nshutdown_timeout = \"30s\"\n{hubx}\n\
             [auth]\npam_service = \"{pam}\"\n{auth}\n\
             [spawner]\ncmd = {cmd}\nstart_timeout = \"60s\"\nterm_timeout = \"5s\"\n{extra}\n{kerberos}\n{tail}\n",
            dd = data_dir.path().display(),
            pam = pam.name,
            extra = o.spawner.replace("{HUB_ADDR}", &addr.to_string()),
            auth = o.auth,
            stop = !o.keep_servers,
            hubx = o.hub,
            public = if o.hub.contains("public_url =") {
                String::new()
            } else {
                format!("public_url = \"http://{addr}\"\n")
            },
        );
        let path = data_dir.path().join("hub.toml");
        std::fs::write(&path, &text).expect("hub.toml");
        let config = Config::parse(&path, &text).expect("test config must be valid");
        hub::migrate(&config).await.expect("migrate");
        let listener: hub::accept::Listener = match listener {
            Some(l) => l.into(),
            None => hub::listen(&config).await.expect("listen"),
        };
        let state = hub::build(config).await.expect("build");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(hub::serve_state(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Self { addr, state, data_dir, shutdown: Some(tx), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client with its own cookie jar that does not follow redirects and, like a browser
    /// on the hub's page, sends `Origin` and jupyter-server's XSRF double-submit pair.
    pub fn client(&self) -> reqwest::Client {
        client_for(&self.url(""))
    }

    /// Posts a hub form (`/hub/home/stop`, `/hub/logout`...) with the XSRF token read from
    /// the home page, as the browser would.
    pub async fn post_form(&self, c: &reqwest::Client, path: &str) -> reqwest::Response {
        post_form(&self.url(""), c, path).await
    }

    /// Posts the login form; returns the response (a redirect on success).
    pub async fn login(&self, c: &reqwest::Client, user: &str, password: &str) -> reqwest::Response {
        post_login(&self.url(""), c, user, password).await
    }

    /// Logs `user` in (asserting the redirect) and returns the session cookie as
    /// `hub-session=...`, for clients that cannot use the jar (WebSockets).
    pub async fn login_cookie(&self, c: &reqwest::Client, user: &TestUser) -> String {
        let r = self.login(c, &user.name, &user.password).await;
        assert_eq!(r.status(), 303, "login of {}", user.name);
        let set_cookie = r.headers()["set-cookie"].to_str().expect("ascii");
        set_cookie.split(';').next().expect("name=value").to_string()
    }

    /// Starts a kernel of kernelspec `spec` in `user`'s server through the hub; returns its id.
    pub async fn start_kernel(&self, c: &reqwest::Client, user: &str, spec: &str) -> String {
        let r = c
            .post(self.url(&format!("/user/{user}/api/kernels")))
            .json(&serde_json::json!({ "name": spec }))
            .send()
            .await
            .expect("start kernel");
        assert_eq!(r.status(), 201, "kernel {spec} for {user}");
        let v: serde_json::Value = r.json().await.expect("kernel json");
        v["id"].as_str().expect("kernel id").to_string()
    }

    /// Follows the spawn progress stream until it reports ready (or fails the test with the
    /// hub's reason and log tail).
    pub async fn wait_ready(&self, c: &reqwest::Client, user: &str) {
        use futures_util::StreamExt;
        let resp = c.get(self.url(&format!("/hub/api/users/{user}/server/progress"))).send().await.expect("progress");
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            if seen.contains("\"ready\":true") {
                return;
            }
            assert!(!seen.contains("\"failed\":true"), "spawn failed: {seen}");
        }
        panic!("server for {user} never became ready; events: {seen}");
    }

    pub async fn stop(mut self) {
        self.shutdown_inner().await;
    }

    /// Stops the hub and hands back its data_dir, for a restart.
    pub async fn stop_keep_data(mut self) -> tempfile::TempDir {
        self.shutdown_inner().await;
        let placeholder = tempfile::tempdir().expect("tmp");
        std::mem::replace(&mut self.data_dir, placeholder)
    }

    async fn shutdown_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("serve");
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The `_xsrf` cookie and header value test clients send to users' servers.
pub const TEST_XSRF: &str = "2|test|xsrf|0";

/// A client for the hub at `base` (`http://host:port`): own cookie jar holding `_xsrf`, no
/// redirects followed, `Origin: base` and `X-XSRFToken` on every request.
pub fn client_for(base: &str) -> reqwest::Client {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(&format!("_xsrf={TEST_XSRF}; Path=/"), &base.parse().expect("base url"));
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("origin", base.trim_end_matches('/').parse().expect("origin"));
    h.insert("x-xsrftoken", TEST_XSRF.parse().expect("xsrf"));
    reqwest::Client::builder()
        .cookie_provider(jar)
        .default_headers(h)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The hub form XSRF token in a page (`name="_xsrf" value="..."`).
pub fn xsrf_in(page: &str) -> Option<String> {
    let i = page.find(r#"name="_xsrf" value=""#)? + r#"name="_xsrf" value=""#.len();
    Some(page[i..].split('"').next()?.to_string())
}

/// Posts hub form `path` with the XSRF token from `/hub/home`.
pub async fn post_form(base: &str, c: &reqwest::Client, path: &str) -> reqwest::Response {
    let home = c.get(format!("{base}/hub/home")).send().await.expect("home").text().await.expect("body");
    let token = xsrf_in(&home).unwrap_or_else(|| panic!("no _xsrf on the home page: {home}"));
    c.post(format!("{base}{path}")).form(&[("_xsrf", token)]).send().await.expect("form post")
}

/// Posts the login form of the hub at `base`.
pub async fn post_login(base: &str, c: &reqwest::Client, user: &str, password: &str) -> reqwest::Response {
    c.post(format!("{base}/hub/login"))
        .form(&[("username", user), ("password", password), ("next", "")])
        .send()
        .await
        .expect("login request")
}

/// `hub serve` as a separate process, so that it can be killed with SIGKILL.
pub struct HubProcess {
    pub child: Child,
    pub base: String,
}

impl HubProcess {
    pub fn start(config: &Path, log: &Path) -> Self {
        Self::start_with_env(config, log, &[])
    }

    /// Like [`HubProcess::start`] with extra environment variables for `hub serve`.
    pub fn start_with_env(config: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_hub"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", HUB_DEBUG_LOG)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hub serve");
        let text = std::fs::read_to_string(config).expect("config");
        let bind = text.lines().find_map(|l| l.strip_prefix("bind = ")).expect("bind").trim_matches('"').to_string();
        let hub = Self { child, base: format!("http://{bind}") };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&bind).is_err() {
            assert!(std::time::Instant::now() < deadline, "hub did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        hub
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
