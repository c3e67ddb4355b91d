//! `hub`: a multi-user notebook hub for Kerberos-secured clusters.
//!
//! One process authenticates users (PAM), spawns each user's single-user Jupyter server under
//! their Linux UID, proxies their HTTP and WebSocket traffic to it, and keeps their Kerberos
//! ticket fresh (kinit on login, spawn, notebook open and save). See `docs/architecture.md`
//! for how the modules fit.
//!
//! The binary is thin: [`migrate`] and [`serve`] are what `hub migrate` and `hub serve` call,
//! and what the tests call with a listener on port 0; [`run_cli`] is `hub run`, and
//! [`runner::main`] is the runner it starts as the notebook's owner.

pub mod logging;
pub mod node_agent;
pub mod run_cli;

pub use hub_auth as auth;
pub use hub_auth::{jwt, session};
pub use hub_config as config;
pub use hub_core as core;
pub use hub_core::{percent_encode, unix_now};
pub use hub_jobs as jobs;
pub use hub_net::{accept, body, peer, splice};
pub use hub_runner as runner;
pub use hub_servers::{ccache, limits, renewer, runs, servers, spawner};
pub use hub_store as store;
pub use hub_web::{api, metrics, proxy, state, web};

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

use anyhow::Context;
use hub_core::Recover;

use crate::config::Config;
use crate::store::Store;

/// `hub migrate`: creates `data_dir` and the database if missing and applies every pending
/// migration. Returns how many were applied (0 when already current).
pub async fn migrate(config: &Config) -> anyhow::Result<usize> {
    ensure_data_dir(config)?;
    let store = store::open(&config.hub.database_url, true).await?;
    Ok(store.migrate().await?)
}

fn ensure_data_dir(config: &Config) -> anyhow::Result<()> {
    let d = &config.hub.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(d)
        .with_context(|| format!("creating data_dir {}", d.display()))?;
    check_traversable(d)
}

/// Users' servers reach their sockets and kernelspecs under `data_dir` as their own users, so
/// every directory from `/` down to `data_dir` must let others through (the `x` bit for
/// others). Otherwise every spawn would fail with jupyter-server's "Permission to listen on
/// sock ... denied". The error names the directory and the fix.
fn check_traversable(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut dir = Some(data_dir);
    while let Some(d) = dir {
        let mode =
            std::fs::metadata(d).with_context(|| format!("data_dir {}", data_dir.display()))?.permissions().mode();
        if mode & 0o001 == 0 {
            anyhow::bail!(
                "[hub] data_dir {}: {} has mode {:o}, which other users cannot pass through, so users' servers could not reach their sockets under it; run `chmod o+x {}` or choose a data_dir under directories every user can traverse (data_dir itself is made 0711), such as /var/lib/hub",
                data_dir.display(),
                d.display(),
                mode & 0o7777,
                d.display()
            );
        }
        dir = d.parent();
    }
    Ok(())
}

/// Builds the application state: opens the database (refusing one that is missing or not
/// migrated), loads or creates the signing key, and wires authenticator, spawner, renewer
/// and server manager.
pub async fn build(config: Config) -> anyhow::Result<hub_web::state::AppState> {
    let store: Arc<dyn Store> = store::open(&config.hub.database_url, false).await?;
    store.check_schema().await?;
    ensure_data_dir(&config)?;
    let key = session::load_or_create_key(&config.hub.jwt_secret_file)?;
    let mut previous = Vec::new();
    for path in &config.auth.previous_jwt_secret_files {
        if !path.exists() {
            anyhow::bail!(
                "[auth] previous_jwt_secret_files: {} does not exist; remove it from the list once its sessions have expired",
                path.display()
            );
        }
        previous.push(session::load_or_create_key(path)?);
    }
    let sessions = session::Sessions::new(
        &key,
        &previous,
        store.clone(),
        config.auth.session_max_age.as_secs() as i64,
        config.secure_cookies(),
    );
    let auth: Arc<dyn auth::Authenticator> = match config.auth.method {
        config::AuthMethod::Pam => Arc::new(auth::pam::PamAuthenticator::new(&config.auth.pam_service)),
        config::AuthMethod::Kerberos => {
            Arc::new(auth::kerberos::KerberosAuthenticator::new(kerberos_settings(&config)?))
        }
    };
    let spnego = if config.auth.spnego { Some(kerberos_settings(&config)?) } else { None };
    let throttle = auth::throttle::Throttle::new(
        config.auth.max_failed_logins,
        config.auth.max_failed_logins_per_address,
        config.auth.failed_login_window,
    );
    let renewer = Arc::new(renewer::Renewer::new(config.kerberos.clone(), Some(store.clone())));
    let local: Arc<dyn spawner::Spawner> = Arc::new(spawner::local::LocalSpawner::new(limits::Enforcer::detect(
        config.limits.any() || config.jobs.limits.any(),
    )));
    // Users' servers run where `[spawner] kind` says; notebook runs always run here.
    let server_spawner: Arc<dyn spawner::Spawner> = match &config.spawner.kind {
        config::SpawnerKind::Local => local.clone(),
        config::SpawnerKind::Slurm(slurm) => {
            let agent = match &slurm.agent {
                Some(p) => p.clone(),
                None => std::env::current_exe()
                    .context("cannot find the hub binary (the Slurm jobs start it as the node agent)")?,
            };
            Arc::new(spawner::slurm::SlurmSpawner::new((**slurm).clone(), agent))
        }
    };
    let spawner = local;
    let servers = Arc::new(servers::Servers::new(config.clone(), server_spawner, renewer.clone(), store.clone()));
    let exe = match &config.jobs.runner {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find the hub binary (runs start it as the runner)")?,
    };
    let jobs = hub_jobs::Jobs::new(config.clone(), store.clone(), renewer.clone(), spawner, exe);
    // Servers a previous hub process left running are checked (in the background) and
    // re-adopted or cleaned up.
    let adoption = servers.adopt_recorded().await;
    let closing = tokio::sync::watch::channel(false).0;
    let services = auth::service::load_services(&config.services)?;
    let metrics = metrics::Metrics::new(&servers.spawn_duration, jobs.metrics.collectors());
    Ok(hub_web::state::AppState(Arc::new(hub_web::state::App {
        metrics,
        announcements: std::sync::RwLock::new(config.hub.announcement.clone()),
        tokens: Default::default(),
        services,
        config,
        store,
        sessions,
        auth,
        spnego,
        throttle,
        servers,
        renewer,
        jobs,
        closing,
        adoption: std::sync::Mutex::new(Some(adoption)),
    })))
}

/// The `[auth]` Kerberos settings, after checking that the service keytab is usable: it
/// exists, is a regular file, and only root can read it (it holds the hub's own keys).
fn kerberos_settings(config: &Config) -> anyhow::Result<auth::kerberos::KerberosSettings> {
    use std::os::unix::fs::MetadataExt;
    let a = &config.auth;
    let keytab = a.service_keytab.clone().context("[auth] service_keytab is required for Kerberos or SPNEGO login")?;
    let meta = std::fs::metadata(&keytab).with_context(|| {
        format!(
            "[auth] service_keytab {}: cannot read it (create it with `kadmin ktadd {}`)",
            keytab.display(),
            a.service_principal
        )
    })?;
    if !meta.is_file() || meta.mode() & 0o077 != 0 || meta.uid() != 0 {
        anyhow::bail!(
            "[auth] service_keytab {} must be a regular file owned by root with mode 0600 (it is mode {:o}, uid {}); run `chown root {0} && chmod 600 {0}`",
            keytab.display(),
            meta.mode() & 0o7777,
            meta.uid()
        );
    }
    Ok(auth::kerberos::KerberosSettings {
        realm: a.realm.clone(),
        allowed_realms: a.allowed_realms.clone(),
        service_principal: a.service_principal.clone(),
        service_keytab: keytab,
        principal_map: a.principal_map.clone(),
    })
}

/// Binds `[hub] bind`: a TCP address, or a Unix socket (`unix:PATH`) created with
/// `bind_mode` and `bind_group`. A socket left at PATH by an earlier hub is removed first (only
/// a socket: any other file there is an error naming it). Warns when a loopback address is in
/// `trusted_proxies`, since any local process can connect from there and claim any client
/// address in `X-Forwarded-For`.
pub async fn listen(config: &Config) -> anyhow::Result<accept::Listener> {
    let loopback = config.hub.loopback_trusted();
    if !loopback.is_empty() {
        tracing::warn!(
            trusted_proxies = ?loopback,
            "[hub] trusted_proxies has a loopback address: any local user's process can connect from it and set X-Forwarded-For (the client address for login limits and the log); put the hub on a Unix socket for the reverse proxy instead (bind = \"unix:/run/hub/hub.sock\", docs/nginx/hub.conf)"
        );
    }
    match &config.hub.bind {
        config::Bind::Tcp(addr) => Ok(tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ([hub] bind): {e}"))?
            .into()),
        config::Bind::Unix { path, mode, group } => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
                    .with_context(|| format!("removing the old socket {} ([hub] bind)", path.display()))?,
                Ok(_) => anyhow::bail!(
                    "[hub] bind: {} exists and is not a socket; remove it or choose another path",
                    path.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("[hub] bind: {}: {e}", path.display()),
            }
            let listener = tokio::net::UnixListener::bind(path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on unix:{} ([hub] bind): {e}; its directory must exist (systemd's RuntimeDirectory=hub makes /run/hub)",
                    path.display()
                )
            })?;
            let gid = match group {
                Some(g) => nix::unistd::Group::from_name(g)?.map(|g| g.gid),
                None => None,
            };
            std::os::unix::fs::chown(path, None, gid.map(|g| g.as_raw()))
                .with_context(|| format!("giving {} to group {group:?} ([hub] bind_group)", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                .with_context(|| format!("chmod {mode:o} {} ([hub] bind_mode)", path.display()))?;
            Ok(listener.into())
        }
    }
}

/// A request with `Transfer-Encoding` (a chunked body) is answered 411 Length Required
/// (RFC 9110 §15.5.12) and its connection closed, before any handler or the proxy sees it.
///
/// Why all of them: a request with both `Content-Length` and `Transfer-Encoding` is the
/// classic request-smuggling shape (RFC 9112 §6.1, §11.2), and hyper, which parses the hub's
/// requests, resolves it by dropping `Content-Length` before the hub sees the request, so such
/// a request cannot be told apart from a plain chunked one. Browsers and JupyterLab always
/// send `Content-Length`; a client that streams a body of unknown length (`curl -T -`) must
/// buffer it first. So nothing with ambiguous framing is ever forwarded.
fn refuse_transfer_encoding<B>(req: &hyper::Request<B>) -> Option<axum::response::Response> {
    use axum::http::{HeaderValue, StatusCode, header};
    if !req.headers().contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    tracing::warn!(path = %req.uri().path(), method = %req.method(), "refused: a request body with Transfer-Encoding");
    let mut r = hub_web::error::json(
        StatusCode::LENGTH_REQUIRED,
        "request bodies must have a Content-Length; Transfer-Encoding (chunked, or with Content-Length as well) is refused",
    );
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(r)
}

/// On SIGHUP: re-reads the configuration file and applies its `[hub] announcement` keys, the
/// settings that change without a restart (everything else needs one, and the log says so). A
/// file that no longer validates is logged with its error and changes nothing.
async fn reload_on_sighup(state: hub_web::state::AppState) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; announcements change only with a restart");
        return;
    };
    while hup.recv().await.is_some() {
        let path = state.config.source.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        match loaded {
            Ok(Ok(c)) => {
                *state.announcements.write().recover() = c.hub.announcement.clone();
                tracing::info!(path = %state.config.source.display(),
                    "SIGHUP: [hub] announcement re-read (other settings take effect at the next restart)");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP: the configuration does not validate; announcements unchanged")
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: could not re-read the configuration"),
        }
    }
}

/// `hub serve`: serves the hub on `listener` until `shutdown` resolves. Users' servers keep
/// running (the next hub re-adopts them) unless `stop_servers_on_shutdown`.
pub async fn serve(
    config: Config,
    listener: impl Into<accept::Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build(config).await?;
    serve_state(state, listener, shutdown).await
}

/// Like [`serve`] with state already built by [`build`].
pub async fn serve_state(
    state: hub_web::state::AppState,
    listener: impl Into<accept::Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = listener.into();
    tracing::info!(addr = %listener.describe(), public_url = %state.config.hub.public_url, "hub listening");
    // Request tracing: a 5xx from a user's server (502 while it restarts, 503 when stopped) is
    // worth a warning, not an error in the hub's log.
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN));
    let router = hub_web::router(state.clone()).layer(trace);
    // Requests for users' servers go straight to the proxy: no routing table, request span or
    // hub-page headers on the hot path (the proxy logs its own refusals and failures). Each
    // browser connection gets a service of its own, holding its upstream connection.
    let proxy_state = state.clone();
    let (body_grace, body_rate) = (state.config.hub.header_read_timeout, state.config.hub.body_min_rate);
    let make_service = move |peer: SocketAddr, slot: Arc<splice::SpliceSlot>| {
        let state = proxy_state.clone();
        let router = router.clone();
        let upstream = Arc::new(hub_net::upstream::ConnUpstream::with_splice(slot));
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            // A body (not a bodiless GET) must keep up with [hub] body_min_rate.
            let mut req = req.map(|b| {
                if hyper::body::Body::is_end_stream(&b) {
                    axum::body::Body::new(b)
                } else {
                    axum::body::Body::new(body::MinRate::new(b, body_grace, body_rate))
                }
            });
            let state = state.clone();
            let router = router.clone();
            let upstream = upstream.clone();
            async move {
                if let Some(refused) = refuse_transfer_encoding(&req) {
                    return Ok(refused);
                }
                if req.uri().path().starts_with("/user/") {
                    Ok::<_, std::convert::Infallible>(proxy::forward(&state, peer, req, Some(&upstream)).await)
                } else {
                    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    // Boxed: the router's future is far larger than the proxy's, and every
                    // proxied request's future would otherwise be that size (moved, not used).
                    Box::pin(tower::ServiceExt::oneshot(router, req)).await
                }
            }
        })
    };
    // systemd (Type=notify): READY=1 once the socket is bound (it is, here) and the servers a
    // previous hub left running have been checked, so a restart is done when systemd says so.
    // Without NOTIFY_SOCKET (not under systemd) this sends nothing.
    let adoption = state.adoption.lock().recover().take();
    let ready = tokio::spawn(async move {
        if let Some(a) = adoption {
            let _ = a.await;
        }
        let status = "serving; recorded servers checked";
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)]) {
            tracing::warn!(error = %e, "could not tell systemd the hub is ready (NOTIFY_SOCKET)");
        }
    });
    // Renewed tickets go to the servers on other machines (a no-op for local servers);
    // subscribed before the timer can renew anything.
    let delivery = tokio::spawn(state.servers.clone().run_delivery(std::future::pending::<()>()));
    let (timer_stop, timer_stopped) = tokio::sync::oneshot::channel::<()>();
    let timer = tokio::spawn(state.renewer.clone().run_timer(async move {
        let _ = timer_stopped.await;
    }));
    // Jobs: runs are separate processes and keep going when the hub stops.
    let (jobs_stop, jobs_stopped) = tokio::sync::oneshot::channel::<()>();
    let jobs = tokio::spawn(state.jobs.clone().run(async move {
        let _ = jobs_stopped.await;
    }));
    let reload = tokio::spawn(reload_on_sighup(state.clone()));
    let (culler_stop, culler_stopped) = tokio::sync::oneshot::channel::<()>();
    let culler = tokio::spawn(state.servers.clone().run_culler(async move {
        let _ = culler_stopped.await;
    }));
    // On shutdown: tunnels and progress streams close at once; other in-flight requests get
    // up to shutdown_timeout to finish.
    let closing = state.closing.clone();
    let mut closed = state.closing.subscribe();
    let server = accept::serve(listener, state.config.hub.header_read_timeout, make_service, async move {
        shutdown.await;
        let _ = closing.send(true);
    });
    let limit = state.config.hub.shutdown_timeout;
    tokio::select! {
        () = server => {}
        _ = async {
            let _ = closed.wait_for(|c| *c).await;
            tokio::time::sleep(limit).await;
        } => tracing::warn!(timeout = ?limit, "requests still in flight after hub.shutdown_timeout; exiting anyway"),
    }
    ready.abort();
    reload.abort();
    delivery.abort();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if state.config.hub.stop_servers_on_shutdown {
        state.servers.stop_all().await;
    }
    let _ = timer_stop.send(());
    let _ = culler_stop.send(());
    let _ = jobs_stop.send(());
    let _ = jobs.await;
    let _ = timer.await;
    let _ = culler.await;
    Ok(())
}
