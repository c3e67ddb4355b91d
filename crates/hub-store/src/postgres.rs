//! PostgreSQL backend of [`Store`](super::Store), for sites that already run PostgreSQL or
//! want the hub's state in a managed, backed-up database.
//!
//! Selected by a `postgres://` or `postgresql://` `[hub] database_url` (the libpq URL form;
//! sqlx also reads `PGPASSWORD` and `~/.pgpass`, so the password need not be in hub.toml).
//! The database must exist; `hub migrate` creates the tables from `migrations/postgres`.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::model::StoreError;
use hub_core::redact_url;

/// The PostgreSQL migrations from `migrations/postgres`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// A [`Store`](super::Store) in a PostgreSQL database.
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    url: String,
}

impl PgStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`). Fails with
    /// [`StoreError::Unreachable`] (password removed from the message) if the server cannot
    /// be reached, refuses the login, or has no such database; waits at most 10 seconds.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let unreachable = |source| StoreError::Unreachable { url: redact_url(url), source };
        let opts = PgConnectOptions::from_str(url).map_err(unreachable)?.application_name("hub");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(unreachable)?;
        Ok(Self { pool, url: url.to_string() })
    }

    async fn applied(&self) -> Result<BTreeSet<i64>, StoreError> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                            WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations')",
        )
        .fetch_one(&self.pool)
        .await?;
        if !exists {
            return Ok(BTreeSet::new());
        }
        let rows: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().collect())
    }
}

/// "No limit" in this dialect, for `... OFFSET n` queries.
const LIMIT_ALL: &str = "LIMIT ALL";

super::sql::store_queries!(PgStore, sqlx::postgres::PgRow, MIGRATOR);

/// A fresh, empty database in a throwaway PostgreSQL cluster, for tests and benchmarks:
/// created from the superuser URL in `HUB_TEST_POSTGRES_URL` (which `tests/run.sh` sets after
/// starting the cluster with `scripts/throwaway-postgres.sh`), dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl TestDatabase {
    /// Creates the database. Returns `None` only when `HUB_TEST_POSTGRES_URL` is unset and
    /// `HUB_SKIP_POSTGRES=1` says to skip; panics (a test failure) when it is unset otherwise,
    /// or when the cluster cannot be reached.
    pub async fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var("HUB_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("HUB_SKIP_POSTGRES").is_ok_and(|v| v == "1"),
                "HUB_TEST_POSTGRES_URL is not set: run `bash tests/run.sh` (it starts a throwaway PostgreSQL \
                 cluster), or set HUB_SKIP_POSTGRES=1 to skip the PostgreSQL tests"
            );
            return None;
        };
        let name = format!("hub_test_{:016x}", rand::random::<u64>());
        let admin = PgPool::connect(&admin_url).await.expect("connect to HUB_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("HUB_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(Self { admin_url, name, url: url.to_string() })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // On a thread of its own: the caller's runtime may be shutting down or absent.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(admin) = PgPool::connect(&admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;
    use crate::model::Store;

    #[tokio::test]
    async fn migrate_is_idempotent_and_checked() {
        let Some(db) = TestDatabase::create().await else { return };
        let store = PgStore::open(&db.url).await.expect("open");
        conformance::migrations(&store, MIGRATOR.iter().count()).await;
        store.pool.close().await;
    }

    #[tokio::test]
    async fn conformance_users_groups_tokens() {
        let Some(db) = TestDatabase::create().await else { return };
        let store = PgStore::open(&db.url).await.expect("open");
        store.migrate().await.expect("migrate");
        conformance::users_groups_tokens(&store).await;
        store.pool.close().await;
    }

    #[tokio::test]
    async fn conformance_sessions_servers_tickets() {
        let Some(db) = TestDatabase::create().await else { return };
        let store = PgStore::open(&db.url).await.expect("open");
        store.migrate().await.expect("migrate");
        conformance::sessions_servers_tickets(&store).await;
        store.pool.close().await;
    }

    #[tokio::test]
    async fn conformance_jobs_runs() {
        let Some(db) = TestDatabase::create().await else { return };
        let store = PgStore::open(&db.url).await.expect("open");
        store.migrate().await.expect("migrate");
        conformance::jobs_runs(&store).await;
        store.pool.close().await;
    }

    #[tokio::test]
    async fn unreachable_server_is_named_without_its_password() {
        // A port nothing listens on (the test cluster's port + 1 is not used by anything we start,
        // but any closed port will do: bind one and drop it).
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("postgres://hub:s3cret@127.0.0.1:{port}/hub");
        let err = PgStore::open(&url).await.expect_err("nothing listens there");
        let msg = err.to_string();
        assert!(msg.contains("cannot open the database at postgres://hub:***@127.0.0.1"), "{msg}");
        assert!(!msg.contains("s3cret"), "the password must not be shown: {msg}");
    }
}
