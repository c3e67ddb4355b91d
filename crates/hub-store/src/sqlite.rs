//! SQLite backend of [`Store`], the embedded default.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::str::FromStr;

use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::model::StoreError;

/// The SQLite migrations from `migrations/sqlite`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// A [`Store`] in one SQLite file (WAL mode).
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    url: String,
}

impl SqliteStore {
    /// Opens the database at `url` (`sqlite://PATH`). With `create`, a missing file is created
    /// (for `hub migrate`); without it, a missing file is [`StoreError::NotMigrated`].
    pub async fn open(url: &str, create: bool) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        if !create {
            let path = opts.get_filename();
            if !path.exists() {
                return Err(StoreError::NotMigrated { url: url.to_string(), problem: "does not exist".into() });
            }
        }
        let path = opts.get_filename().to_path_buf();
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        // The database holds server tokens: readable by root only (and its WAL files too).
        for suffix in ["", "-wal", "-shm"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
            }
        }
        Ok(Self { pool, url: url.to_string() })
    }

    async fn applied(&self) -> Result<BTreeSet<i64>, StoreError> {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_none() {
            return Ok(BTreeSet::new());
        }
        let rows: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().collect())
    }
}

/// "No limit" in this dialect, for `... OFFSET n` queries.
const LIMIT_ALL: &str = "LIMIT -1";

super::sql::store_queries!(SqliteStore, sqlx::sqlite::SqliteRow, MIGRATOR);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;
    use crate::model::Store;

    async fn fresh(dir: &tempfile::TempDir) -> (SqliteStore, String) {
        let url = format!("sqlite://{}/hub.sqlite", dir.path().display());
        (SqliteStore::open(&url, true).await.expect("create"), url)
    }

    #[tokio::test]
    async fn migrate_is_idempotent_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/hub.sqlite", dir.path().display());
        let err = SqliteStore::open(&url, false).await.expect_err("missing db must be refused");
        assert!(err.to_string().contains("hub migrate"), "{err}");
        let (store, _) = fresh(&dir).await;
        conformance::migrations(&store, MIGRATOR.iter().count()).await;
        // The file holds server tokens: root only.
        let mode = std::fs::metadata(dir.path().join("hub.sqlite")).expect("db file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn conformance_users_groups_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = fresh(&dir).await;
        store.migrate().await.expect("migrate");
        conformance::users_groups_tokens(&store).await;
    }

    #[tokio::test]
    async fn conformance_sessions_servers_tickets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = fresh(&dir).await;
        store.migrate().await.expect("migrate");
        conformance::sessions_servers_tickets(&store).await;
    }

    #[tokio::test]
    async fn conformance_jobs_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = fresh(&dir).await;
        store.migrate().await.expect("migrate");
        conformance::jobs_runs(&store).await;
    }
}
