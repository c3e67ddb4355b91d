//! `hub node-agent`: the program a Slurm job runs, as the user, on the node (never by hand).
//!
//! It starts the user's jupyter-server on a Unix socket in a private directory of the node's
//! own `/tmp` (`hub-agent-<job>-<random>`, mode 0700: no other user of the node can reach the
//! socket or the ticket there), and stands in front of it:
//!
//! - makes a TLS key and certificate for this server only (`hub_net::tls::Identity`; the key
//!   never leaves this process), listens on a free TCP port, and reports the port and the
//!   certificate's fingerprint to the hub, signed with the job's secret (`hub_net::agent`);
//! - passes each TLS connection the hub opens with ALPN `http/1.1` to the server's socket
//!   (the server checks the token in every request, as jupyter-server always does);
//! - answers the hub's control requests (ALPN `x-hub-node-agent/1`, with the server's token):
//!   `PUT /ccache` writes the user's renewed credential cache to `<dir>/krb5cc` (0600, a new
//!   file renamed over the old one, so readers never see half a ticket), `DELETE /ccache`
//!   removes it. `KRB5CCNAME=FILE:<dir>/krb5cc` is set for the server and its kernels.
//! - writes the `[[kernelspec]]`s the hub sent in the job script (`HUB_KERNELSPECS`) to
//!   `<dir>/jupyter/kernels/<name>/kernel.json` and sets the server's `JUPYTER_PATH` to
//!   `<dir>/jupyter`, so kernels on the node are the ones the hub offers on its own host.
//!
//! On SIGTERM (Slurm's `scancel`, the time limit) it passes the signal to the server, waits
//! for it, and removes the directory with the ticket in it. Exit status: the server's, or 2
//! when the agent could not start it. Messages go to stderr, which is the job's output file.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hub_net::agent::{
    CCACHE_PATH, KERNELSPECS_ENV, MAX_CCACHE_BYTES, REPORT_PATH, Report, SECRET_ENV, SIGNATURE_HEADER,
};
use hub_net::tls::{ALPN_CONTROL, ALPN_HTTP, Identity};
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;

/// What `hub node-agent` is told on its command line.
#[derive(Debug, Clone)]
pub struct AgentArgs {
    /// `<hub_url>/hub/api/spawner/report`.
    pub report_url: String,
    /// The server's unit (`user` or `user@server`), as the hub named it.
    pub server: String,
    /// The server's command line (without where it listens: the agent adds that).
    pub argv: Vec<String>,
}

/// Runs the agent; returns the exit status.
pub fn main(args: AgentArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hub node-agent: cannot start: {e}");
            return 2;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hub node-agent: {e}");
            2
        }
    }
}

/// The private directory and what is in it.
struct Private {
    dir: PathBuf,
}

impl Private {
    fn socket(&self) -> PathBuf {
        self.dir.join("server.sock")
    }
    fn ccache(&self) -> PathBuf {
        self.dir.join("krb5cc")
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("hub node-agent: cannot remove {}: {e}", self.dir.display());
        }
    }
}

async fn run(args: AgentArgs) -> Result<u8, String> {
    if args.argv.is_empty() {
        return Err("no server command after --".into());
    }
    // SAFETY: getuid cannot fail and has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        return Err("refusing to run as root: the hub submits server jobs as their user".into());
    }
    let secret = std::env::var(SECRET_ENV)
        .ok()
        .and_then(|s| hex::decode(s).ok())
        .filter(|s| s.len() == 32)
        .ok_or_else(|| format!("{SECRET_ENV} is missing or not 64 hex digits (the hub's job script sets it)"))?;
    let token =
        std::env::var("JUPYTER_TOKEN").map_err(|_| "JUPYTER_TOKEN is not set (the hub's job script sets it)")?;
    let job_id = std::env::var("SLURM_JOB_ID")
        .map_err(|_| "SLURM_JOB_ID is not set: hub node-agent runs inside a Slurm job the hub submitted")?;
    let node = std::env::var("SLURMD_NODENAME").unwrap_or_else(|_| "this node".into());

    let tmp = std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    let mut suffix = [0u8; 8];
    rand::fill(&mut suffix);
    let dir = tmp.join(format!("hub-agent-{job_id}-{}", hex::encode(suffix)));
    // A new directory (creating fails if anything is there), 0700, ours.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create the private directory {}: {e}", dir.display()))?;
    let private = Arc::new(Private { dir });

    let identity = Identity::generate().map_err(|e| format!("cannot make a TLS key: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().map_err(|e| e.to_string())?);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();

    // The server: the hub's environment minus what is for the agent, its socket, ticket and
    // kernelspecs here.
    let ccache = format!("FILE:{}", private.ccache().display());
    let mut argv = args.argv.clone();
    argv.push(format!("--ServerApp.sock={}", private.socket().display()));
    argv.push("--ServerApp.sock_mode=0600".into());
    let mut env: Vec<(String, String)> =
        std::env::vars().filter(|(k, _)| k != SECRET_ENV && k != KERNELSPECS_ENV).collect();
    if let Ok(json) = std::env::var(KERNELSPECS_ENV) {
        let root = write_kernelspecs(&private.dir, &json, &ccache)?;
        env.retain(|(k, _)| k != "JUPYTER_PATH");
        env.push(("JUPYTER_PATH".into(), root.display().to_string()));
    }
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .env("KRB5CCNAME", &ccache)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", argv[0]))?;
    eprintln!(
        "hub node-agent: job {job_id} on {node}: server started (pid {}), TLS on port {port}, certificate sha256:{}",
        child.id().unwrap_or_default(),
        hub_net::tls::hex_pin(&identity.pin())
    );

    let report = Report {
        protocol: hub_net::agent::PROTOCOL,
        server: args.server.clone(),
        job_id,
        port,
        pin: hub_net::tls::hex_pin(&identity.pin()),
    };
    let body = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
    let signature = hub_net::agent::sign(&secret, &body);
    let reporter = tokio::spawn(report_until_taken(args.report_url.clone(), body, signature));

    let token = Arc::new(token);
    let serving = {
        let (private, token) = (private.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else { continue };
                let _ = tcp.set_nodelay(true);
                let (acceptor, private, token) = (acceptor.clone(), private.clone(), token.clone());
                tokio::spawn(async move {
                    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                        return;
                    };
                    match tls.get_ref().1.alpn_protocol() {
                        Some(p) if p == ALPN_HTTP => pass_to_server(tls, &private.socket()).await,
                        Some(p) if p == ALPN_CONTROL => control(tls, private, token).await,
                        _ => eprintln!("hub node-agent: a connection from {peer} chose no protocol; closed"),
                    }
                });
            }
        })
    };

    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(|e| e.to_string())?;
    // The hub refusing the report for good: nobody will ever reach this server.
    let refused = async {
        match reporter.await {
            Ok(Err(e)) => e,
            _ => std::future::pending().await,
        }
    };
    let status = tokio::select! {
        s = child.wait() => s,
        e = refused => {
            eprintln!("hub node-agent: {e}; stopping the server");
            stop(&mut child).await
        }
        _ = term.recv() => stop(&mut child).await,
        _ = int.recv() => stop(&mut child).await,
    };
    serving.abort();
    drop(private);
    let code = match status {
        Ok(s) => {
            eprintln!("hub node-agent: the server ended ({s}); its ticket on this node is removed");
            s.code().map_or(1, |c| c.clamp(0, 255) as u8)
        }
        Err(e) => {
            eprintln!("hub node-agent: cannot wait for the server: {e}");
            1
        }
    };
    Ok(code)
}

/// SIGTERM to the server, SIGKILL after 10 s.
async fn stop(child: &mut tokio::process::Child) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await
        }
    }
}

/// Posts the report until the hub takes it (204), every second at first, then every 5 s.
/// `Err` when the hub refuses it for good (a 4xx: bad signature, malformed, not expected).
async fn report_until_taken(url: String, body: Vec<u8>, signature: String) -> Result<(), String> {
    let parsed = url::Url::parse(&url).map_err(|e| format!("bad report URL {url}: {e}"))?;
    if parsed.scheme() != "http" || parsed.path() != REPORT_PATH {
        return Err(format!("the report URL must be http://<hub>{REPORT_PATH}, not {url}"));
    }
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sent = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = hyper::Request::post(REPORT_PATH)
                .header(hyper::header::HOST, &authority)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .body(axum::body::Body::from(body.clone()))
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok::<_, String>((status, String::from_utf8_lossy(&text).into_owned()))
        };
        match tokio::time::timeout(Duration::from_secs(10), sent).await {
            Ok(Ok((s, _))) if s == hyper::StatusCode::NO_CONTENT => {
                eprintln!("hub node-agent: the hub took the report");
                return Ok(());
            }
            Ok(Ok((s, text))) if s.is_client_error() => {
                return Err(format!("the hub refused the report ({s}): {text}"));
            }
            Ok(Ok((s, _))) => eprintln!("hub node-agent: the hub answered the report with {s}; trying again"),
            Ok(Err(e)) => eprintln!("hub node-agent: cannot reach the hub at {url}: {e}; trying again"),
            Err(_) => eprintln!("hub node-agent: the hub did not answer the report; trying again"),
        }
        tokio::time::sleep(Duration::from_secs(if attempt < 30 { 1 } else { 5 })).await;
    }
}

/// Copies bytes both ways between the hub's TLS connection and the server's Unix socket.
async fn pass_to_server(mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, socket: &Path) {
    match tokio::net::UnixStream::connect(socket).await {
        Ok(mut unix) => {
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
        }
        Err(e) => eprintln!("hub node-agent: the server's socket does not answer: {e}"),
    }
}

/// Serves the hub's control requests on one connection.
async fn control(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    private: Arc<Private>,
    token: Arc<String>,
) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (private, token) = (private.clone(), token.clone());
        async move { Ok::<_, std::convert::Infallible>(answer(req, &private, &token).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
}

fn status(code: hyper::StatusCode, text: &str) -> hyper::Response<axum::body::Body> {
    let mut r = hyper::Response::new(axum::body::Body::from(text.to_string()));
    *r.status_mut() = code;
    r
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    private: &Private,
    token: &str,
) -> hyper::Response<axum::body::Body> {
    let expected = format!("token {token}");
    let given = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    if !bool::from(given.ct_eq(expected.as_bytes())) {
        return status(hyper::StatusCode::FORBIDDEN, "not the hub");
    }
    if req.uri().path() != CCACHE_PATH {
        return status(hyper::StatusCode::NOT_FOUND, "no such path");
    }
    match *req.method() {
        hyper::Method::PUT => {
            let body = match http_body_util::Limited::new(req.into_body(), MAX_CCACHE_BYTES).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return status(hyper::StatusCode::PAYLOAD_TOO_LARGE, "a credential cache is at most 1 MiB"),
            };
            // MIT's FILE ccache starts with 0x05 and its version (1-4).
            if body.len() < 4 || body[0] != 5 || !(1..=4).contains(&body[1]) {
                return status(hyper::StatusCode::BAD_REQUEST, "not a credential cache");
            }
            match write_atomically(&private.dir, &private.ccache(), &body) {
                Ok(()) => {
                    eprintln!("hub node-agent: credential cache replaced ({} bytes)", body.len());
                    status(hyper::StatusCode::NO_CONTENT, "")
                }
                Err(e) => {
                    eprintln!("hub node-agent: cannot write the credential cache: {e}");
                    status(hyper::StatusCode::INTERNAL_SERVER_ERROR, "cannot write the credential cache")
                }
            }
        }
        hyper::Method::DELETE => match std::fs::remove_file(private.ccache()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                status(hyper::StatusCode::INTERNAL_SERVER_ERROR, "cannot remove the credential cache")
            }
            _ => {
                eprintln!("hub node-agent: credential cache removed");
                status(hyper::StatusCode::NO_CONTENT, "")
            }
        },
        _ => status(hyper::StatusCode::METHOD_NOT_ALLOWED, "PUT or DELETE"),
    }
}

/// Writes the kernelspecs of `json` (a [`KERNELSPECS_ENV`] object: name → `kernel.json`) to
/// `<dir>/jupyter/kernels/<name>/kernel.json` and returns `<dir>/jupyter`, for the server's
/// `JUPYTER_PATH`. A kernelspec that sets `KRB5CCNAME` gets `ccache` (the node's copy of the
/// ticket; the hub's path is not on this node). Errors name the kernelspec and the problem.
fn write_kernelspecs(dir: &Path, json: &str, ccache: &str) -> Result<PathBuf, String> {
    let specs: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).map_err(|e| {
        format!("{KERNELSPECS_ENV} is not a JSON object of kernelspecs (the hub's job script sets it): {e}")
    })?;
    let root = dir.join("jupyter");
    for (name, mut spec) in specs {
        if !hub_config::is_kernel_name(&name) {
            return Err(format!(
                "{KERNELSPECS_ENV}: {name:?} is not a kernelspec name (1-64 letters, digits, '.', '_' or '-')"
            ));
        }
        let Some(obj) = spec.as_object_mut() else {
            return Err(format!("{KERNELSPECS_ENV}: the kernelspec {name:?} is not a JSON object"));
        };
        if let Some(env) = obj.get_mut("env").and_then(|e| e.as_object_mut())
            && env.contains_key("KRB5CCNAME")
        {
            env.insert("KRB5CCNAME".into(), serde_json::Value::String(ccache.to_string()));
        }
        let kdir = root.join("kernels").join(&name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&kdir)
            .map_err(|e| format!("cannot create {}: {e}", kdir.display()))?;
        let file = kdir.join("kernel.json");
        let bytes = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
        std::fs::write(&file, bytes).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(root)
}

/// Writes `bytes` to a new file in `dir` (0600, created exclusively, not following links),
/// flushes it, and renames it to `path`.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut suffix = [0u8; 6];
    rand::fill(&mut suffix);
    let tmp = dir.join(format!(".krb5cc.{}", hex::encode(suffix)));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_ccache_is_replaced_whole_and_owner_only() {
        let d = tempfile::tempdir().expect("tmp");
        let path = d.path().join("krb5cc");
        write_atomically(d.path(), &path, b"\x05\x04first").expect("write");
        write_atomically(d.path(), &path, b"\x05\x04second").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"\x05\x04second");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(d.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("krb5cc")], "no temporary file is left");
    }

    #[test]
    fn kernelspecs_from_the_hub_land_in_the_private_directory() {
        let d = tempfile::tempdir().expect("tmp");
        let json = r#"{"spark": {"argv": ["python", "-f", "{connection_file}"], "display_name": "Spark",
                       "language": "python", "env": {"KRB5CCNAME": "FILE:/var/lib/hub/ccache/ann", "A": "1"}}}"#;
        let root = write_kernelspecs(d.path(), json, "FILE:/tmp/hub-agent-7-x/krb5cc").expect("written");
        assert_eq!(root, d.path().join("jupyter"));
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("kernels/spark/kernel.json")).expect("read"))
                .expect("json");
        assert_eq!(written["argv"][2], "{connection_file}");
        assert_eq!(written["env"]["A"], "1");
        assert_eq!(
            written["env"]["KRB5CCNAME"], "FILE:/tmp/hub-agent-7-x/krb5cc",
            "the node's ticket, not the hub's path"
        );
        // A name that is a path, a spec that is not an object, a value that is not JSON: refused,
        // and nothing is written outside.
        for (bad, says) in [
            (r#"{"../x": {}}"#, "not a kernelspec name"),
            (r#"{"x": [1]}"#, "is not a JSON object"),
            ("[", "is not a JSON object of kernelspecs"),
        ] {
            let e = write_kernelspecs(d.path(), bad, "FILE:/x").expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(!d.path().join("x").exists());
    }
}
