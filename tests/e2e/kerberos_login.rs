//! Kerberos password login and SPNEGO against a real MIT KDC, with the real `hub` binary (GSS-API
//! reads `KRB5_CONFIG` from the process environment, so each realm gets its own hub process):
//! success and each failure reason, a spoofed KDC, the login ticket kept and renewed with
//! `kinit -R`, and single sign-on with curl `--negotiate` (with and without delegation).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{HubProcess, Kdc, TestUser, client_for, random_hex, require_root, venv};

/// Creates `HTTP/localhost@REALM` in `kdc` and exports it to a root-only keytab in `dir`.
fn service_keytab(kdc: &Kdc, dir: &Path) -> PathBuf {
    let keytab = dir.join("http.keytab");
    kdc.add_principals(&["HTTP/localhost".to_string()], &keytab);
    keytab
}

/// Writes hub.toml for a Kerberos-login hub on a free port and migrates; returns (config, port).
fn write_config(dir: &Path, kdc_conf: &Path, realm: &str, keytab: &Path, extra_auth: &str) -> (PathBuf, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let text = format!(
        "[hub]\nbind = \"127.0.0.1:{port}\"\npublic_urls = [\"http://localhost:{port}\", \"http://127.0.0.1:{port}\"]\ndata_dir = \"{d}\"\n\
         [auth]\nmethod = \"kerberos\"\nspnego = true\nservice_principal = \"HTTP/localhost\"\nservice_keytab = \"{kt}\"\nfailure_delay = \"200ms\"\n{extra_auth}\n\
         [spawner]\ncmd = [\"{venv}/bin/jupyter-lab\"]\nstart_timeout = \"60s\"\n\
         [kerberos]\nenabled = true\nrealm = \"{realm}\"\nkrb5_config = \"{conf}\"\nevent_min_interval = \"0s\"\n",
        d = dir.display(),
        kt = keytab.display(),
        venv = venv().display(),
        conf = kdc_conf.display(),
    );
    let path = dir.join("hub.toml");
    std::fs::write(&path, text).expect("hub.toml");
    let out =
        Command::new(env!("CARGO_BIN_EXE_hub")).args(["migrate", "--config"]).arg(&path).output().expect("migrate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (path, port)
}

fn data_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("hub-krb-").tempdir().expect("tmp");
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
    d
}

/// Posts the login form; returns (status, the alert message).
async fn login(base: &str, c: &reqwest::Client, user: &str, password: &str) -> (u16, String) {
    let r = c
        .post(format!("{base}/hub/login"))
        .form(&[("username", user), ("password", password), ("next", "")])
        .send()
        .await
        .expect("login");
    let status = r.status().as_u16();
    let body = r.text().await.expect("body");
    let msg = body.split(r#"role="alert">"#).nth(1).and_then(|r| r.split('<').next()).unwrap_or_default().to_string();
    (status, msg)
}

fn log_has(log: &Path, parts: &[&str]) -> bool {
    std::fs::read_to_string(log).unwrap_or_default().lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// `(start, renew_until)` of the TGT in a ccache, from `klist`'s "Valid starting ... renew until".
fn ticket_times(kdc: &Kdc, ccache: &Path) -> (String, String) {
    let out = String::from_utf8_lossy(&kdc.klist(ccache).stdout).into_owned();
    let line = out.lines().find(|l| l.contains("krbtgt/")).unwrap_or_else(|| panic!("no TGT in {out}")).to_string();
    let renew = out.split("renew until ").nth(1).map(|r| r.lines().next().unwrap_or("").to_string());
    (line.split("  ").next().unwrap_or("").to_string(), renew.unwrap_or_else(|| panic!("not renewable: {out}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kerberos_password_login_each_failure_and_a_spoofed_kdc() {
    require_root();
    let mut kdc = Kdc::start();
    let dir = data_dir();
    let keytab = service_keytab(&kdc, dir.path());
    let ann = TestUser::create(); // a principal with a password and no keytab
    let locked = TestUser::create();
    let expired_pw = TestUser::create();
    for u in [&ann, &locked, &expired_pw] {
        kdc.kadmin(&format!("addprinc -pw {} {}@{}", u.password, u.name, kdc.realm));
    }
    kdc.kadmin(&format!("modprinc -allow_tix {}@{}", locked.name, kdc.realm));
    kdc.kadmin(&format!("modprinc -pwexpire \"2020-01-01\" {}@{}", expired_pw.name, kdc.realm));
    let ghost = format!("ghost{}", random_hex(3)); // in the KDC, not in /etc/passwd
    kdc.kadmin(&format!("addprinc -pw ghost-pw {ghost}@{}", kdc.realm));

    let (config, port) = write_config(dir.path(), &kdc.krb5_conf(), &kdc.realm, &keytab, "");
    let log = dir.path().join("hub.log");
    let hub = HubProcess::start(&config, &log);
    let base = hub.base.clone();
    let c = client_for(&base);

    // -- Each failure: a plain message for the user, a distinct reason in the log.
    let (s, wrong) = login(&base, &c, &ann.name, "not-the-password").await;
    assert_eq!(s, 403);
    assert_eq!(wrong, "Invalid user name or password.");
    let unknown_user = format!("nobody{}", random_hex(3));
    let (s, unknown) = login(&base, &c, &unknown_user, "whatever").await;
    assert_eq!((s, unknown.as_str()), (403, wrong.as_str()), "an unknown principal reads like a wrong password");
    let (s, m) = login(&base, &c, &locked.name, &locked.password).await;
    assert_eq!(s, 403);
    assert!(m.contains("expired or locked"), "{m}");
    let (s, m) = login(&base, &c, &expired_pw.name, &expired_pw.password).await;
    assert_eq!(s, 403);
    assert!(m.contains("password has expired"), "{m}");
    let (s, m) = login(&base, &c, &ghost, "ghost-pw").await;
    assert_eq!(s, 403);
    assert!(m.contains("no Linux account"), "{m}");
    kdc.stop();
    let (s, m) = login(&base, &c, &ann.name, &ann.password).await;
    assert_eq!(s, 503);
    assert!(m.contains("cannot be reached"), "{m}");
    kdc.restart();
    for (who, reason) in [
        (ann.name.as_str(), "reason=\"wrong_password\""),
        (unknown_user.as_str(), "reason=\"unknown_principal\""),
        (locked.name.as_str(), "reason=\"principal_expired_or_locked\""),
        (expired_pw.name.as_str(), "reason=\"password_expired\""),
        (ann.name.as_str(), "reason=\"kdc_unreachable\""),
    ] {
        assert!(
            log_has(&log, &[who, reason]),
            "log line for {who} with {reason}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(log_has(&log, &[&ghost, "no Linux account"]));

    // -- Success: the TGT from the login becomes ann's ccache (she has no keytab).
    let (s, m) = login(&base, &c, &ann.name, &ann.password).await;
    assert_eq!(s, 303, "ann logs in: {m}");
    let ccache = dir.path().join(format!("ccache/krb5cc_{}", ann.uid));
    let meta = std::fs::metadata(&ccache).expect("the login ticket is kept");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (ann.uid, 0o600));
    let klist = String::from_utf8_lossy(&kdc.klist(&ccache).stdout).into_owned();
    assert!(klist.contains(&format!("{}@{}", ann.name, kdc.realm)), "{klist}");
    let (start0, renew0) = ticket_times(&kdc, &ccache);
    let home = c.get(format!("{base}/hub/home")).send().await.expect("home").text().await.expect("body");
    assert!(home.contains("comes from your sign-in") && home.contains("renews it until"), "{home}");

    // -- A save through the hub renews it with kinit -R: new start, same renew-until.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while c.get(format!("{base}/user/{}/api/status", ann.name)).send().await.map(|r| r.status().as_u16()).ok()
        != Some(200)
    {
        assert!(tokio::time::Instant::now() < deadline, "ann's server never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c
        .put(format!("{base}/user/{}/api/contents/k.ipynb", ann.name))
        .json(&crate::notebook("1"))
        .send()
        .await
        .expect("save");
    assert_eq!(r.status(), 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (start, renew) = ticket_times(&kdc, &ccache);
        if start != start0 {
            assert_eq!(renew, renew0, "kinit -R keeps the renew-until time");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the save did not renew the login ticket");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(log_has(&log, &[&ann.name, "trigger=save", "kinit succeeded"]));
    drop(hub);

    // -- A spoofed KDC for the same realm, which knows a password of the attacker's choosing:
    //    the AS exchange succeeds, the hub's keytab does not accept its service ticket.
    let spoof = Kdc::start_realm(&kdc.realm, None);
    spoof.kadmin(&format!("addprinc -pw attacker-pw {}@{}", ann.name, spoof.realm));
    spoof.kadmin(&format!("addprinc -randkey HTTP/localhost@{}", spoof.realm));
    let dir2 = data_dir();
    let (config2, _) = write_config(dir2.path(), &spoof.krb5_conf(), &kdc.realm, &keytab, "");
    let log2 = dir2.path().join("hub.log");
    let hub2 = HubProcess::start(&config2, &log2);
    let c2 = client_for(&hub2.base);
    let (s, m) = login(&hub2.base, &c2, &ann.name, "attacker-pw").await;
    assert_eq!(s, 500, "a spoofed KDC's ticket is refused: {m}");
    assert!(log_has(&log2, &[&ann.name, "kdc_validation_failed"]), "the log names the validation failure");
    assert!(!dir2.path().join(format!("ccache/krb5cc_{}", ann.uid)).exists(), "no session, no ccache");
    drop(hub2);
    let _ = port;
    let logs = std::fs::read_to_string(&log).unwrap_or_default() + &std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(!logs.contains(&ann.password) && !logs.contains("attacker-pw"), "passwords are never logged");
}

/// Runs curl with `args` in an environment holding the ccache `ccache` and `KRB5_CONFIG`;
/// returns the response headers and body.
fn curl(kdc: &Kdc, ccache: &Path, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "60"])
        .args(args)
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kinit(kdc: &Kdc, principal: &str, password: &str, ccache: &Path, forwardable: bool) {
    use std::io::Write;
    let mut cmd = Command::new("kinit");
    if forwardable {
        cmd.arg("-f");
    }
    let mut child = cmd
        .args(["-c", &format!("FILE:{}", ccache.display()), principal])
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("kinit");
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("password");
    assert!(child.wait().expect("wait").success(), "kinit {principal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spnego_single_sign_on_with_curl() {
    require_root();
    let kdc = Kdc::start();
    let dir = data_dir();
    let keytab = service_keytab(&kdc, dir.path());
    let bob = TestUser::create();
    kdc.kadmin(&format!("addprinc -pw {} {}@{}", bob.password, bob.name, kdc.realm));
    kdc.kadmin(&format!("addprinc -pw {} {}/admin@{}", bob.password, bob.name, kdc.realm));
    let (config, port) = write_config(dir.path(), &kdc.krb5_conf(), &kdc.realm, &keytab, "");
    let log = dir.path().join("hub.log");
    let _hub = HubProcess::start(&config, &log);
    let url = format!("http://localhost:{port}/hub/login");
    let tmp = tempfile::tempdir().expect("tmp");

    // -- No ticket: 401 with `WWW-Authenticate: Negotiate` and the password form as the body.
    let empty = tmp.path().join("none");
    let out = curl(&kdc, &empty, &[&url]);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(out.to_ascii_lowercase().contains("www-authenticate: negotiate\r\n"), "{out}");
    assert!(out.contains("name=\"password\""), "the form is the fallback: {out}");

    // -- A ticket, delegated: a session with no password, the mutual-auth token, and the
    //    delegated TGT becomes bob's ccache.
    let cc = tmp.path().join("bob.cc");
    kinit(&kdc, &format!("{}@{}", bob.name, kdc.realm), &bob.password, &cc, true);
    let jar = tmp.path().join("jar");
    let out =
        curl(&kdc, &cc, &["--negotiate", "-u", ":", "--delegation", "always", "-c", jar.to_str().expect("p"), &url]);
    let last = out.rsplit("HTTP/1.1 ").next().unwrap_or_default();
    assert!(last.starts_with("303"), "SPNEGO login redirects: {out}");
    assert!(last.to_ascii_lowercase().contains("www-authenticate: negotiate "), "mutual-auth token returned: {out}");
    assert!(last.contains("set-cookie: hub-session="), "{out}");
    let home = curl(&kdc, &cc, &["-b", jar.to_str().expect("p"), &format!("http://localhost:{port}/hub/home")]);
    assert!(home.starts_with("HTTP/1.1 200") && home.contains(&format!("Hello, {}", bob.name)), "{home}");
    // A SPNEGO login is a GET a cross-site link can cause: it starts no server by itself.
    assert!(home.contains(r#"data-state="stopped""#), "SPNEGO login must not start a server: {home}");
    let ccache = dir.path().join(format!("ccache/krb5cc_{}", bob.uid));
    let meta = std::fs::metadata(&ccache).expect("delegated credentials kept");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (bob.uid, 0o600));
    let klist = String::from_utf8_lossy(&kdc.klist(&ccache).stdout).into_owned();
    assert!(klist.contains(&format!("{}@{}", bob.name, kdc.realm)) && klist.contains("krbtgt/"), "{klist}");
    assert!(
        log_has(&log, &["SPNEGO accepted", &bob.name, "delegated=true"]),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // -- A principal with an instance is not mapped to a user without a rule: refused.
    let cc2 = tmp.path().join("admin.cc");
    kinit(&kdc, &format!("{}/admin@{}", bob.name, kdc.realm), &bob.password, &cc2, false);
    let out = curl(&kdc, &cc2, &["--negotiate", "-u", ":", &url]);
    let last = out.rsplit("HTTP/1.1 ").next().unwrap_or_default();
    assert!(last.starts_with("403") && last.contains("may not use this hub"), "{out}");
    assert!(log_has(&log, &["principal not admitted", "/admin@"]));

    // -- A ticket for another service whose keys are in the same keytab (imap/localhost): the
    //    acceptor takes only service_principal's tickets, so it is refused.
    kdc.add_principals(&["imap/localhost".to_string()], &keytab);
    let out = curl(&kdc, &cc, &["--negotiate", "-u", ":", "--service-name", "imap", &url]);
    let last = out.rsplit("HTTP/1.1 ").next().unwrap_or_default();
    assert!(last.starts_with("401") && !last.contains("set-cookie: hub-session="), "imap ticket refused: {out}");
    assert!(log_has(&log, &["SPNEGO token refused"]), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let klist = Command::new("klist").arg("-c").arg(&cc).env("KRB5_CONFIG", kdc.krb5_conf()).output().expect("klist");
    assert!(String::from_utf8_lossy(&klist.stdout).contains("imap/localhost"), "curl did ask for an imap ticket");

    // -- A garbage token: 401 again, the hub keeps answering.
    let out = Command::new("curl")
        .args(["-s", "-i", "-H", "Authorization: Negotiate AAAAAAAA", &url])
        .output()
        .expect("curl");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 401"));
    let out =
        Command::new("curl").args(["-s", "-i", &format!("http://localhost:{port}/hub/health")]).output().expect("c");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200"));
}

/// A Chromium managed-policy file that lets the browser answer Negotiate from `host` and delegate
/// its ticket there (`AuthServerAllowlist`, `AuthNegotiateDelegateAllowlist`); removed on drop.
struct ChromiumPolicy(PathBuf);

impl ChromiumPolicy {
    fn allow_negotiate(host: &str) -> Self {
        let dir = Path::new("/etc/chromium/policies/managed");
        std::fs::create_dir_all(dir).expect("policy dir");
        let path = dir.join(format!("hub-test-{}.json", random_hex(6)));
        let policy = serde_json::json!({"AuthServerAllowlist": host, "AuthNegotiateDelegateAllowlist": host});
        std::fs::write(&path, policy.to_string()).expect("policy");
        ChromiumPolicy(path)
    }
}

impl Drop for ChromiumPolicy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `tests/browser/spnego.mjs MODE BASE USER SHOT [PASSWORD]` (`args` = mode, base, user)
/// with `ccache` as the browser's ticket cache; returns (success, stdout and stderr).
async fn chromium_spnego(
    kdc: &Kdc,
    ccache: &Path,
    args: &[&str],
    shot: &Path,
    password: Option<&str>,
) -> (bool, String) {
    let script = crate::support::browser_script("spnego.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .args(args)
        .arg(shot)
        .args(password)
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .output()
        .await
        .expect("run node");
    if let Ok(dir) = std::env::var("HUB_TEST_ARTIFACTS") {
        let _ = std::fs::copy(shot, Path::new(&dir).join(shot.file_name().expect("name")));
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Single sign-on in a real browser: headless Chromium with a ticket (and the site policy that
/// allows Negotiate and delegation to the hub's host) gets from `/hub/login` into JupyterLab without a password, and its
/// delegated ticket becomes the user's ccache; Chromium without a ticket falls back to the form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spnego_single_sign_on_in_chromium() {
    require_root();
    let kdc = Kdc::start();
    let dir = data_dir();
    let keytab = service_keytab(&kdc, dir.path());
    let (bob, cat) = (TestUser::create(), TestUser::create());
    for u in [&bob, &cat] {
        kdc.kadmin(&format!("addprinc -pw {} {}@{}", u.password, u.name, kdc.realm));
    }
    let (config, port) = write_config(dir.path(), &kdc.krb5_conf(), &kdc.realm, &keytab, "");
    let log = dir.path().join("hub.log");
    let hub = HubProcess::start(&config, &log);
    let base = format!("http://localhost:{port}");
    let tmp = tempfile::tempdir().expect("tmp");
    let _policy = ChromiumPolicy::allow_negotiate("localhost");

    let cc = tmp.path().join("bob.cc");
    kinit(&kdc, &format!("{}@{}", bob.name, kdc.realm), &bob.password, &cc, true);
    let shot = tmp.path().join("spnego-sso.png");
    let (ok, out) = chromium_spnego(&kdc, &cc, &["ticket", &base, &bob.name], &shot, None).await;
    let hub_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok && out.contains("single sign-on as"), "{out}\nhub log:\n{}", hub_log());
    assert!(log_has(&log, &["SPNEGO accepted", &bob.name, "delegated=true"]), "{}", hub_log());
    let meta = std::fs::metadata(dir.path().join(format!("ccache/krb5cc_{}", bob.uid))).expect("delegated ccache");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (bob.uid, 0o600));

    // No ticket at all: the browser shows the 401's body, the password form, and it works.
    let none = tmp.path().join("no-ticket.cc");
    let shot = tmp.path().join("spnego-fallback.png");
    let (ok, out) = chromium_spnego(&kdc, &none, &["password", &base, &cat.name], &shot, Some(&cat.password)).await;
    assert!(ok && out.contains("the password form was shown"), "{out}\nhub log:\n{}", hub_log());
    assert!(log_has(&log, &["method=\"kerberos\"", &cat.name, "logged in"]), "{}", hub_log());
    drop(hub);
}
