//! The hub on PostgreSQL with the real `hub` binary: `serve` refuses an unmigrated database,
//! `migrate` creates the schema once, and a hub killed with SIGKILL comes back from the
//! PostgreSQL rows (sessions, servers, tickets) with the same cookie and the same process.
//! The cluster is the throwaway one `tests/run.sh` starts (`HUB_TEST_POSTGRES_URL`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hub::store::postgres::TestDatabase;

use crate::lifecycle::{client_of, home, login, wait_status};
use crate::support::{HubProcess, Kdc, PamService, TestUser, require_root, venv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_migrate_serve_and_restart() {
    require_root();
    let Some(db) = TestDatabase::create().await else { return };
    let pam = PamService::create();
    let kdc = Kdc::start();
    let ann = TestUser::create();
    kdc.add_user_with_keytab(&ann);
    let dir = tempfile::Builder::new().prefix("hub-pg-").tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[hub]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ndata_dir = \"{d}\"\n\
             database_url = \"{url}\"\n[auth]\npam_service = \"{pam}\"\n\
             [spawner]\ncmd = [\"{venv}/bin/jupyter-lab\"]\nstart_timeout = \"60s\"\n\
             [kerberos]\nenabled = true\nrealm = \"{realm}\"\nkrb5_config = \"{conf}\"\n",
            d = dir.path().display(),
            url = db.url,
            pam = pam.name,
            venv = venv().display(),
            realm = kdc.realm,
            conf = kdc.krb5_conf().display(),
        ),
    )
    .expect("hub.toml");
    let hub_cli =
        |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_hub")).args(args).arg("--config").arg(&config).output();

    // As many migrations as the PostgreSQL backend ships.
    let n = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres"))
        .expect("migrations")
        .count();
    // serve before migrate: refused, with the fix named.
    let out = hub_cli(&["serve"]).expect("serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve must refuse an empty database");
    assert!(err.contains(&format!("is missing {n} of {n} schema migrations")) && err.contains("hub migrate"), "{err}");
    let out = hub_cli(&["migrate"]).expect("migrate");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("applied {n} migration(s) to postgres://")), "{said}");
    let out = hub_cli(&["migrate"]).expect("migrate again");
    assert!(String::from_utf8_lossy(&out.stdout).contains("is up to date"), "a second migrate is a no-op");

    // Log in, spawn, and check what PostgreSQL now holds.
    let log = dir.path().join("hub.log");
    let mut hub = HubProcess::start(&config, &log);
    let base = hub.base.clone();
    let c = client_of(&base);
    login(&base, &c, &ann).await;
    wait_status(&base, &c, &ann, Duration::from_secs(90)).await;
    let (body, pid) = home(&base, &c).await;
    let pid = pid.unwrap_or_else(|| panic!("pid on the home page: {body}"));
    assert!(body.contains("valid until"), "ticket state on the home page: {body}");
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let (state, row_pid, port, socket): (String, Option<i64>, Option<i64>, Option<String>) =
        sqlx::query_as("SELECT state, pid, port, socket FROM servers WHERE username = $1")
            .bind(&ann.name)
            .fetch_one(&pool)
            .await
            .expect("server row");
    assert_eq!((state.as_str(), row_pid), ("running", Some(i64::from(pid))));
    let want = format!("/sockets/{}/server.sock", ann.name);
    assert!(port.is_none() && socket.as_deref().is_some_and(|s| s.ends_with(&want)), "{port:?} {socket:?}");
    let principal: String = sqlx::query_scalar("SELECT principal FROM tickets WHERE username = $1")
        .bind(&ann.name)
        .fetch_one(&pool)
        .await
        .expect("ticket row");
    assert_eq!(principal, format!("{}@{}", ann.name, kdc.realm));

    // SIGKILL and restart: same cookie, same server process, from the PostgreSQL rows.
    hub.kill9();
    let hub2 = HubProcess::start(&config, &log);
    wait_status(&base, &c, &ann, Duration::from_secs(20)).await;
    assert_eq!(home(&base, &c).await.1, Some(pid), "the server was re-adopted");
    drop(hub2);
    pool.close().await;
    // The hub was killed, so stop the server it left behind.
    for p in ann.processes() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL);
    }
}
