//! A kernel driven over the Jupyter messaging protocol, version 5.x
//! (<https://jupyter-client.readthedocs.io/en/stable/messaging.html>).
//!
//! Framing, HMAC-SHA256 signing of every message sent and verification of every message
//! received are jupyter-zmq-client's (nteract's implementation of the wire protocol on the
//! `zeromq` crate). Requests are built from jupyter-protocol's typed messages; replies and
//! iopub messages are read as raw JSON so that outputs reach the notebook exactly as the kernel
//! sent them. A message with a bad signature is logged and dropped.
//!
//! The kernel listens on IPC sockets in a fresh directory only its owner can enter (mode 0700),
//! named by a connection file (mode 0600) with a fresh 256-bit key: no TCP port to squat, and
//! nobody else can connect.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jupyter_protocol::connection_info::Transport;
use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, InterruptRequest, JupyterMessage, KernelInfoRequest, ShutdownRequest,
};
use jupyter_zmq_client::{
    ClientControlConnection, ClientIoPubConnection, ClientShellConnection, Connection, RawMessage, RuntimeError,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::watch;
use zeromq::SocketRecv;

use crate::kernelspec::{InterruptMode, KernelSpec};

/// A kernel that could not be started or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Its connection directory or file could not be made.
    #[error("cannot prepare the kernel's connection file in {dir}: {source}")]
    Runtime {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program could not be started.
    #[error("cannot start the kernel {program:?}: {source}")]
    Exec {
        /// argv\[0\].
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It ended, or stopped answering heartbeats.
    #[error("the kernel died: {0}")]
    Died(String),
    /// No `kernel_info_reply` in time.
    #[error("the kernel did not answer kernel_info_request within {0} s")]
    StartupTimeout(u64),
    /// The ZeroMQ connection failed.
    #[error("the connection to the kernel failed: {0}")]
    Connection(String),
}

/// One message read from the kernel.
#[derive(Debug, Clone)]
pub struct Message {
    /// `header.msg_type`.
    pub msg_type: String,
    /// `parent_header.msg_id` (empty if none).
    pub parent_id: String,
    /// `content`.
    pub content: Value,
}

/// A running kernel and the client's connections to it.
pub struct Kernel {
    child: tokio::process::Child,
    pid: u32,
    shell: ClientShellConnection,
    iopub: ClientIoPubConnection,
    control: ClientControlConnection,
    interrupt_mode: InterruptMode,
    dead: watch::Receiver<Option<String>>,
    heartbeat: tokio::task::JoinHandle<()>,
    runtime_dir: PathBuf,
}

/// A cell's error: `(ename, evalue, traceback)` from its `error` output or `execute_reply`.
pub type CellError = (String, String, Vec<String>);

/// What a finished `execute_request` produced.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// `ok`, `error` or `aborted`.
    pub status: String,
    /// The reply's `execution_count`.
    pub execution_count: Option<i64>,
    /// `(ename, evalue, traceback)` for an error.
    pub error: Option<CellError>,
}

/// Why a cell did not finish.
#[derive(Debug)]
pub enum Interrupted {
    /// The deadline passed; the kernel was interrupted.
    TimedOut,
    /// The run was cancelled; the kernel was interrupted.
    Cancelled,
    /// The kernel died or the connection broke.
    Kernel(KernelError),
}

impl Kernel {
    /// Starts `spec` with working directory `cwd` and environment `env` (plus the spec's own),
    /// its connection files under `runtime_base`, and waits until it answers
    /// `kernel_info_request` on shell and publishes on iopub (so no output is missed), at most
    /// `startup_timeout`.
    pub async fn start(
        spec: &KernelSpec,
        cwd: &Path,
        env: &[(String, String)],
        runtime_base: &Path,
        startup_timeout: Duration,
    ) -> Result<Self, KernelError> {
        let started = Instant::now();
        let runtime_dir = runtime_base.join(format!("hub-kernel-{}", hex::encode(rand::random::<[u8; 8]>())));
        let rt_err = |source| KernelError::Runtime { dir: runtime_base.display().to_string(), source };
        std::fs::DirBuilder::new().mode(0o700).create(&runtime_dir).map_err(rt_err)?;
        let info = ConnectionInfo {
            ip: runtime_dir.join("k").display().to_string(),
            transport: Transport::IPC,
            shell_port: 1,
            iopub_port: 2,
            stdin_port: 3,
            control_port: 4,
            hb_port: 5,
            key: hex::encode(rand::random::<[u8; 32]>()),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: Some(spec.name.clone()),
        };
        let connection_file = runtime_dir.join("kernel.json");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&connection_file)?;
            f.write_all(&serde_json::to_vec(&info).map_err(std::io::Error::other)?)
        };
        write().map_err(rt_err)?;

        let fill = |a: &str| {
            a.replace("{connection_file}", &connection_file.display().to_string())
                .replace("{resource_dir}", &spec.resource_dir.display().to_string())
        };
        let argv: Vec<String> = spec.argv.iter().map(|a| fill(a)).collect();
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(&spec.env)
            // As jupyter_client does: the kernel watches this process and exits with it, and
            // knows it has a parent that handles interrupts.
            .env("JPY_PARENT_PID", std::process::id().to_string())
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                // The kernel dies with the runner, whatever kills the runner.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| KernelError::Exec { program: argv[0].clone(), source })?;
        let pid = child.id().unwrap_or_default();

        let session = hex::encode(rand::random::<[u8; 16]>());
        let deadline = tokio::time::Instant::from_std(started + startup_timeout);
        let conn = |e: RuntimeError| KernelError::Connection(e.to_string());
        let connect = async {
            let identity = jupyter_zmq_client::peer_identity_for_session(&session).map_err(conn)?;
            let shell = jupyter_zmq_client::create_client_shell_connection_with_identity(&info, &session, identity)
                .await
                .map_err(conn)?;
            let iopub = jupyter_zmq_client::create_client_iopub_connection(&info, "", &session).await.map_err(conn)?;
            let control = jupyter_zmq_client::create_client_control_connection(&info, &session).await.map_err(conn)?;
            Ok::<_, KernelError>((shell, iopub, control))
        };
        let timeout = KernelError::StartupTimeout(startup_timeout.as_secs());
        let (shell, iopub, control) = tokio::select! {
            r = tokio::time::timeout_at(deadline, connect) => r.map_err(|_| timeout)??,
            status = child.wait() => return Err(KernelError::Died(exit_text(status))),
        };
        let (dead_tx, dead) = watch::channel(None);
        let heartbeat = tokio::spawn(heartbeat(info.clone(), dead_tx));
        let mut k = Self {
            child,
            pid,
            shell,
            iopub,
            control,
            interrupt_mode: spec.interrupt_mode,
            dead,
            heartbeat,
            runtime_dir,
        };
        k.wait_ready(deadline, startup_timeout).await?;
        Ok(k)
    }

    /// The kernel's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `kernel_info_request` every 250 ms until shell has answered one and iopub has
    /// carried a message about one (iopub is a SUB socket: it receives only after its
    /// subscription reached the kernel).
    async fn wait_ready(&mut self, deadline: tokio::time::Instant, limit: Duration) -> Result<(), KernelError> {
        let mut sent: Vec<String> = Vec::new();
        let (mut replied, mut published) = (false, false);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        while !(replied && published) {
            tokio::select! {
                _ = tick.tick() => {
                    let req = JupyterMessage::new(KernelInfoRequest {}, None);
                    sent.push(req.header.msg_id.clone());
                    self.shell.send(req).await.map_err(|e| KernelError::Connection(e.to_string()))?;
                }
                m = recv(&mut self.shell, "shell") => {
                    let m = m?;
                    replied |= m.msg_type == "kernel_info_reply" && sent.contains(&m.parent_id);
                }
                m = recv(&mut self.iopub, "iopub") => {
                    let m = m?;
                    published |= sent.contains(&m.parent_id);
                }
                status = self.child.wait() => return Err(KernelError::Died(exit_text(status))),
                _ = tokio::time::sleep_until(deadline) => return Err(KernelError::StartupTimeout(limit.as_secs())),
            }
        }
        Ok(())
    }

    /// Runs `code` (`silent: false`, `store_history: true`, `allow_stdin: false`,
    /// `stop_on_error: true`) and hands each iopub message about it to `on_output`. Done when
    /// both the `execute_reply` and `status: idle` have arrived. At `deadline`, or when
    /// `cancel` turns true, the kernel is interrupted (by its interrupt mode) and the call
    /// returns after the kernel settles (5 s at most).
    pub async fn execute(
        &mut self,
        code: &str,
        deadline: Option<Instant>,
        cancel: &mut watch::Receiver<bool>,
        on_output: &mut dyn FnMut(&Message),
    ) -> Result<Reply, Interrupted> {
        let mut req = ExecuteRequest::new(code.to_string());
        req.silent = false;
        req.store_history = true;
        req.allow_stdin = false;
        req.stop_on_error = true;
        let msg = JupyterMessage::new(req, None);
        let id = msg.header.msg_id.clone();
        self.shell.send(msg).await.map_err(|e| Interrupted::Kernel(KernelError::Connection(e.to_string())))?;
        let mut reply: Option<Reply> = None;
        let mut idle = false;
        let mut interrupted: Option<(Interrupted, tokio::time::Instant)> = None;
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let cell_deadline = deadline.map(tokio::time::Instant::from_std).unwrap_or(far);
        loop {
            if let (Some(r), true) = (&reply, idle) {
                return match interrupted {
                    Some((why, _)) => Err(why),
                    None => Ok(r.clone()),
                };
            }
            let settle_until = interrupted.as_ref().map(|(_, t)| *t).unwrap_or(far);
            let mut dead = self.dead.clone();
            tokio::select! {
                m = recv(&mut self.shell, "shell") => {
                    let m = m.map_err(Interrupted::Kernel)?;
                    if m.msg_type == "execute_reply" && m.parent_id == id {
                        reply = Some(parse_reply(&m.content));
                    }
                }
                m = recv(&mut self.iopub, "iopub") => {
                    let m = m.map_err(Interrupted::Kernel)?;
                    if m.parent_id != id {
                        continue;
                    }
                    if m.msg_type == "status" && m.content["execution_state"] == "idle" {
                        idle = true;
                    } else {
                        on_output(&m);
                    }
                }
                _ = tokio::time::sleep_until(cell_deadline), if interrupted.is_none() => {
                    self.interrupt().await;
                    interrupted = Some((Interrupted::TimedOut, tokio::time::Instant::now() + Duration::from_secs(5)));
                }
                _ = cancel.wait_for(|c| *c), if interrupted.is_none() => {
                    self.interrupt().await;
                    interrupted = Some((Interrupted::Cancelled, tokio::time::Instant::now() + Duration::from_secs(5)));
                }
                _ = tokio::time::sleep_until(settle_until) => {
                    return Err(interrupted.map(|(w, _)| w).unwrap_or(Interrupted::TimedOut));
                }
                status = self.child.wait() => return Err(Interrupted::Kernel(KernelError::Died(exit_text(status)))),
                r = dead.wait_for(Option::is_some) => {
                    let why = r.map(|d| d.clone().unwrap_or_default()).unwrap_or_else(|_| "heartbeat stopped".into());
                    return Err(Interrupted::Kernel(KernelError::Died(why)));
                }
            }
        }
    }

    /// Interrupts the running cell: SIGINT to the kernel's process group, or an
    /// `interrupt_request` on control for a kernelspec with `interrupt_mode: message`.
    pub async fn interrupt(&mut self) {
        match self.interrupt_mode {
            InterruptMode::Signal => {
                let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGINT);
            }
            InterruptMode::Message => {
                let _ = self.control.send(JupyterMessage::new(InterruptRequest {}, None)).await;
            }
        }
    }

    /// Stops the kernel: `shutdown_request` on control, up to `grace` for it to exit, then
    /// SIGKILL to its process group. Removes the connection directory. Returns how it ended.
    pub async fn shutdown(mut self, grace: Duration) -> String {
        self.heartbeat.abort();
        let _ = self.control.send(JupyterMessage::new(ShutdownRequest { restart: false }, None)).await;
        let how = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => exit_text(status),
            Err(_) => {
                let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
                format!("killed after not exiting within {} s of shutdown_request", grace.as_secs())
            }
        };
        // Whatever else is left in its process group goes too.
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        let _ = self.child.wait().await;
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
        how
    }
}

/// Reads the next message from a socket, verifying its signature; messages that fail the check
/// or cannot be parsed are logged and skipped.
async fn recv<S: SocketRecv>(conn: &mut Connection<S>, channel: &str) -> Result<Message, KernelError> {
    loop {
        let raw = conn.socket.recv().await.map_err(|e| KernelError::Connection(format!("{channel}: {e}")))?;
        let parts = match RawMessage::from_multipart(raw, &conn.mac) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(channel, error = %e, "dropped a message from the kernel: bad signature or framing");
                continue;
            }
        };
        let header: Value = serde_json::from_slice(&parts.jparts[0]).unwrap_or(Value::Null);
        let parent: Value = serde_json::from_slice(&parts.jparts[1]).unwrap_or(Value::Null);
        let Ok(content) = serde_json::from_slice::<Value>(&parts.jparts[3]) else {
            tracing::warn!(channel, "dropped a message from the kernel: its content is not JSON");
            continue;
        };
        let Some(msg_type) = header["msg_type"].as_str() else {
            tracing::warn!(channel, "dropped a message from the kernel: no msg_type");
            continue;
        };
        return Ok(Message {
            msg_type: msg_type.to_string(),
            parent_id: parent["msg_id"].as_str().unwrap_or_default().to_string(),
            content,
        });
    }
}

fn parse_reply(c: &Value) -> Reply {
    let status = c["status"].as_str().unwrap_or("ok").to_string();
    let error = (status == "error").then(|| {
        (
            c["ename"].as_str().unwrap_or_default().to_string(),
            c["evalue"].as_str().unwrap_or_default().to_string(),
            c["traceback"]
                .as_array()
                .map(|t| t.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        )
    });
    Reply { status, execution_count: c["execution_count"].as_i64(), error }
}

/// Pings the heartbeat channel every 3 s; three misses of 10 s in a row mean the kernel is
/// dead (a busy kernel still answers: ipykernel's heartbeat is a separate thread).
async fn heartbeat(info: ConnectionInfo, dead: watch::Sender<Option<String>>) {
    let mut misses = 0;
    let mut hb = None;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if hb.is_none() {
            hb = jupyter_zmq_client::create_client_heartbeat_connection(&info).await.ok();
        }
        let Some(conn) = hb.as_mut() else { continue };
        match tokio::time::timeout(Duration::from_secs(10), conn.single_heartbeat()).await {
            Ok(Ok(())) => misses = 0,
            _ => {
                misses += 1;
                // A REQ socket that missed its answer cannot send again: start a new one.
                hb = None;
                if misses >= 3 {
                    let _ = dead.send(Some("no heartbeat answer for 30 s".into()));
                    return;
                }
            }
        }
    }
}

fn exit_text(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("it exited with status {c}"),
            (None, Some(sig)) => format!(
                "it was killed by signal {sig} ({})",
                Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("unknown")
            ),
            _ => s.to_string(),
        },
        Err(e) => format!("it could not be waited for: {e}"),
    }
}

/// Collects one cell's outputs from its iopub messages into nbformat 4 output objects, as
/// nbclient does: consecutive `stream`s of one name are joined, `clear_output` (with `wait`,
/// at the next output) empties the list, `update_display_data` is kept for the caller to apply
/// to every output with that `display_id`.
#[derive(Debug, Default)]
pub struct Outputs {
    /// The outputs so far.
    pub list: Vec<Value>,
    clear_pending: bool,
    /// `(display_id, index in list)` of each display in this cell.
    pub display_ids: Vec<(String, usize)>,
    /// `(display_id, data, metadata)` of each `update_display_data`, in order.
    pub updates: Vec<(String, Value, Value)>,
    /// The `error` output's `(ename, evalue, traceback)`, if any.
    pub error: Option<CellError>,
}

impl Outputs {
    /// Takes one iopub message.
    pub fn add(&mut self, m: &Message) {
        let c = &m.content;
        let output = match m.msg_type.as_str() {
            "stream" => {
                let (name, text) = (c["name"].as_str().unwrap_or("stdout"), c["text"].as_str().unwrap_or_default());
                self.apply_pending_clear();
                if let Some(last) = self.list.last_mut()
                    && last["output_type"] == "stream"
                    && last["name"] == name
                {
                    let joined = format!("{}{text}", last["text"].as_str().unwrap_or_default());
                    last["text"] = Value::String(joined);
                    return;
                }
                json!({"output_type": "stream", "name": name, "text": text})
            }
            "display_data" => {
                if let Some(id) = c["transient"]["display_id"].as_str() {
                    self.apply_pending_clear();
                    self.display_ids.push((id.to_string(), self.list.len()));
                }
                json!({"output_type": "display_data", "data": c["data"], "metadata": meta(c)})
            }
            "execute_result" => json!({
                "output_type": "execute_result",
                "data": c["data"],
                "metadata": meta(c),
                "execution_count": c["execution_count"],
            }),
            "error" => {
                let tb: Vec<String> = c["traceback"]
                    .as_array()
                    .map(|t| t.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let (ename, evalue) =
                    (c["ename"].as_str().unwrap_or_default(), c["evalue"].as_str().unwrap_or_default());
                self.error = Some((ename.to_string(), evalue.to_string(), tb.clone()));
                json!({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": tb})
            }
            "clear_output" => {
                if c["wait"].as_bool().unwrap_or(false) {
                    self.clear_pending = true;
                } else {
                    self.list.clear();
                    self.display_ids.clear();
                }
                return;
            }
            "update_display_data" => {
                if let Some(id) = c["transient"]["display_id"].as_str() {
                    self.updates.push((id.to_string(), c["data"].clone(), meta(c)));
                }
                return;
            }
            _ => return,
        };
        self.apply_pending_clear();
        self.list.push(output);
    }

    fn apply_pending_clear(&mut self) {
        if std::mem::take(&mut self.clear_pending) {
            self.list.clear();
            self.display_ids.clear();
        }
    }
}

fn meta(c: &Value) -> Value {
    if c["metadata"].is_object() { c["metadata"].clone() } else { json!({}) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: &str, content: Value) -> Message {
        Message { msg_type: t.into(), parent_id: "p".into(), content }
    }

    #[test]
    fn outputs_follow_nbclient() {
        let mut o = Outputs::default();
        o.add(&msg("stream", json!({"name": "stdout", "text": "a"})));
        o.add(&msg("stream", json!({"name": "stdout", "text": "b\n"})));
        o.add(&msg("stream", json!({"name": "stderr", "text": "w\n"})));
        o.add(&msg(
            "display_data",
            json!({"data": {"image/png": "iVBOR"}, "metadata": {}, "transient": {"display_id": "d1"}}),
        ));
        o.add(&msg("execute_result", json!({"data": {"text/plain": "42"}, "metadata": {}, "execution_count": 3})));
        o.add(&msg(
            "update_display_data",
            json!({"data": {"text/plain": "new"}, "metadata": {}, "transient": {"display_id": "d1"}}),
        ));
        o.add(&msg("execute_input", json!({"code": "x", "execution_count": 3})));
        assert_eq!(o.list.len(), 4);
        assert_eq!(o.list[0], json!({"output_type": "stream", "name": "stdout", "text": "ab\n"}));
        assert!(o.list[2].get("transient").is_none(), "transient data is not saved in the notebook");
        assert_eq!(o.list[3]["execution_count"], 3);
        assert_eq!(o.display_ids, vec![("d1".to_string(), 2)]);
        assert_eq!(o.updates.len(), 1);
        o.add(&msg("clear_output", json!({"wait": true})));
        assert_eq!(o.list.len(), 4, "clear_output(wait=True) waits for the next output");
        o.add(&msg("error", json!({"ename": "ValueError", "evalue": "bad", "traceback": ["t1", "t2"]})));
        assert_eq!(o.list.len(), 1);
        assert_eq!(o.error, Some(("ValueError".into(), "bad".into(), vec!["t1".into(), "t2".into()])));
        o.add(&msg("clear_output", json!({"wait": false})));
        assert!(o.list.is_empty());
    }

    /// Real ZeroMQ sockets on IPC, no kernel: a PUB signs with the wrong key, then the right one;
    /// the client's reader drops the first and returns the second.
    #[tokio::test]
    async fn a_message_with_a_bad_signature_is_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let info = ConnectionInfo {
            ip: dir.path().join("k").display().to_string(),
            transport: Transport::IPC,
            shell_port: 1,
            iopub_port: 2,
            stdin_port: 3,
            control_port: 4,
            hb_port: 5,
            key: "the-right-key".into(),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: None,
        };
        let kernel = jupyter_zmq_client::create_kernel_iopub_connection(&info, "kernel").await.expect("bind");
        let mut client =
            jupyter_zmq_client::create_client_iopub_connection(&info, "", "client").await.expect("connect");
        let mut socket = Some(kernel.socket);
        let (bad, good) =
            (JupyterMessage::new(KernelInfoRequest {}, None), JupyterMessage::new(KernelInfoRequest {}, None));
        let mut got = Vec::new();
        // A SUB socket receives only once its subscription reached the PUB: send pairs until
        // something comes through.
        for _ in 0..100 {
            for (key, parent) in [("a-wrong-key", &bad), ("the-right-key", &good)] {
                let mut conn = Connection::new(socket.take().expect("socket"), key, "kernel");
                conn.send(JupyterMessage::new(jupyter_protocol::Status::idle(), Some(parent))).await.expect("send");
                socket = Some(conn.socket);
            }
            if let Ok(m) = tokio::time::timeout(Duration::from_millis(50), recv(&mut client, "iopub")).await {
                got.push(m.expect("a message").parent_id);
                break;
            }
        }
        assert_eq!(got, vec![good.header.msg_id.clone()], "only the correctly signed message is read");
        // Subscribed now: the badly signed message surely arrives first, and is skipped.
        for (key, parent) in [("a-wrong-key", &bad), ("the-right-key", &good)] {
            let mut conn = Connection::new(socket.take().expect("socket"), key, "kernel");
            conn.send(JupyterMessage::new(jupyter_protocol::Status::busy(), Some(parent))).await.expect("send");
            socket = Some(conn.socket);
        }
        let m = tokio::time::timeout(Duration::from_secs(5), recv(&mut client, "iopub"))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(m.parent_id, good.header.msg_id);
        assert_eq!(m.content["execution_state"], "busy");
    }

    #[test]
    fn replies() {
        let r = parse_reply(
            &json!({"status": "error", "execution_count": 2, "ename": "E", "evalue": "v", "traceback": ["x"]}),
        );
        assert_eq!(r.status, "error");
        assert_eq!(r.execution_count, Some(2));
        assert_eq!(r.error, Some(("E".into(), "v".into(), vec!["x".into()])));
        assert!(parse_reply(&json!({"status": "ok", "execution_count": 1})).error.is_none());
    }
}
