//! The hub behind real nginx (Debian's nginx-light) with TLS and two host names, using the
//! documented configuration `docs/nginx/hub.conf` itself: login, the JupyterLab page and a
//! kernel WebSocket over https on both names, and a cross-origin WebSocket refused.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{HubOptions, PamService, TestHub, TestUser, require_root, venv};

struct Nginx(Child);

/// nginx runs in a process group of its own. Dropping it asks the master to stop (SIGTERM:
/// it stops its worker and exits), then kills whatever of the group is left after 5 s. Killing
/// the master alone (SIGKILL) would orphan its worker.
impl Drop for Nginx {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Writes a self-signed certificate for both names; returns (cert, key).
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hub-a.test"])
        .args(["-addext", "subjectAltName=DNS:hub-a.test,DNS:hub-b.test"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// Starts nginx with the documented site config, adapted to this run's ports, names and files.
fn nginx(dir: &Path, port: u16, hub_socket: &Path, cert: &Path, key: &Path) -> Nginx {
    let site = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/nginx/hub.conf"))
        .expect("docs/nginx/hub.conf");
    let site = site
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{};", port + 1))
        .replace("hub.example.com notebooks.example.com", "hub-a.test hub-b.test")
        .replace("unix:/run/hub/hub.sock", &format!("unix:{}", hub_socket.display()))
        .replace("/etc/ssl/hub/fullchain.pem", &cert.display().to_string())
        .replace("/etc/ssl/hub/privkey.pem", &key.display().to_string());
    std::fs::write(dir.join("site.conf"), site).expect("site");
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             include {d}/site.conf;\n}}\n"
        ),
    )
    .expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("nginx (apt install nginx-light)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_with_tls_on_two_names() {
    require_root();
    let pam = PamService::create();
    let (a, b) = (TestUser::create(), TestUser::create());
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let port = loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    // The hub on a Unix socket that only nginx's workers (here: user nobody, group nogroup, as
    // this nginx.conf names no user) may open, as docs/nginx/hub.conf says.
    let socket = dir.path().join("hub.sock");
    let opts = HubOptions {
        bind: Some(format!("unix:{}", socket.display())),
        hub: format!(
            "public_url = \"https://hub-a.test:{port}\"\npublic_urls = [\"https://hub-a.test:{port}\", \"https://hub-b.test:{port}\"]\nbind_mode = \"0660\"\nbind_group = \"nogroup\""
        ),
        ..Default::default()
    };
    let hub = TestHub::start_with(&pam, None, opts).await;
    let (cert, key) = certificate(dir.path());
    let _nginx = nginx(dir.path(), port, &socket, &cert, &key);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/nginx/client.py");
    for (name, user) in [("hub-a.test", &a), ("hub-b.test", &b)] {
        let base = format!("https://{name}:{port}");
        let out = tokio::process::Command::new(venv().join("bin/python"))
            .arg(script)
            .args([&base, &user.name, &user.password])
            .arg(&cert)
            .output()
            .await
            .expect("client.py");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "through nginx on {name}:\n{text}");
    }
    // The hub saw the client address nginx forwarded over the socket, and https.
    assert!(crate::support::log_line_with(&["logged in", &a.name]));
    let meta = std::fs::metadata(&socket).expect("socket");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o660);
    hub.stop().await;
}
