//! SQLite backend of [`Store`], the embedded default.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{GroupRecord, ServerRecord, SessionRecord, Store, StoreError, TicketRecord, TokenRecord, UserRecord};

/// The SQLite migrations from `migrations/sqlite`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// A [`Store`] in one SQLite file (WAL mode).
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
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
        Ok(Self { pool })
    }

    /// Applies every pending migration. Running it on an up-to-date database does nothing.
    /// Returns how many migrations were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let before = self.applied().await?.len();
        MIGRATOR.run(&self.pool).await?;
        Ok(self.applied().await?.len() - before)
    }

    /// Fails with [`StoreError::NotMigrated`] unless every migration this binary knows has been
    /// applied.
    pub async fn check_schema(&self, url: &str) -> Result<(), StoreError> {
        let applied = self.applied().await?;
        let known: BTreeSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        let missing = known.difference(&applied).count();
        if missing > 0 {
            return Err(StoreError::NotMigrated {
                url: url.to_string(),
                problem: format!("is missing {missing} of {} schema migrations", known.len()),
            });
        }
        Ok(())
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
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().collect())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_user(&self, name: &str, admin: bool, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (name, admin, created) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET admin = MAX(users.admin, excluded.admin)",
        )
        .bind(name)
        .bind(admin)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sessions (id, username, created, expires) VALUES (?1, ?2, ?3, ?4)")
            .bind(&s.id)
            .bind(&s.username)
            .bind(s.created)
            .bind(s.expires)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query("SELECT id, username, created, expires FROM sessions WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            None => None,
            Some(r) => Some(SessionRecord {
                id: r.try_get("id")?,
                username: r.try_get("username")?,
                created: r.try_get("created")?,
                expires: r.try_get("expires")?,
            }),
        })
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id = ?1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn is_admin(&self, name: &str) -> Result<bool, StoreError> {
        let row: Option<(bool,)> =
            sqlx::query_as("SELECT admin FROM users WHERE name = ?1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.is_some_and(|r| r.0))
    }

    async fn delete_sessions_of(&self, username: &str) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE username = ?1").bind(username).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    async fn put_server(&self, s: &ServerRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO servers (username, state, pid, port, started, stopped, message, token, pid_start, uid, gid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .bind(&s.username)
        .bind(&s.state)
        .bind(s.pid)
        .bind(s.port)
        .bind(s.started)
        .bind(s.stopped)
        .bind(&s.message)
        .bind(&s.token)
        .bind(s.pid_start)
        .bind(s.uid)
        .bind(s.gid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_server(&self, username: &str) -> Result<Option<ServerRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT username, state, pid, port, started, stopped, message, token, pid_start, uid, gid
             FROM servers WHERE username = ?1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| server_row(&r)).transpose()
    }

    async fn active_servers(&self) -> Result<Vec<ServerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, state, pid, port, started, stopped, message, token, pid_start, uid, gid
             FROM servers WHERE state IN ('starting', 'running') ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(server_row).collect()
    }

    async fn record_activity(&self, items: &[(String, i64)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (name, at) in items {
            sqlx::query("UPDATE users SET last_activity = MAX(COALESCE(last_activity, 0), ?2) WHERE name = ?1")
                .bind(name)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn put_ticket(&self, t: &TicketRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO tickets (username, principal, ccache, valid_from, valid_until, renew_until,
               last_success, last_error, consecutive_failures, next_renewal)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(&t.username)
        .bind(&t.principal)
        .bind(&t.ccache)
        .bind(t.valid_from)
        .bind(t.valid_until)
        .bind(t.renew_until)
        .bind(t.last_success)
        .bind(&t.last_error)
        .bind(t.consecutive_failures)
        .bind(t.next_renewal)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_ticket(&self, username: &str) -> Result<Option<TicketRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT username, principal, ccache, valid_from, valid_until, renew_until, last_success, last_error,
               consecutive_failures, next_renewal FROM tickets WHERE username = ?1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => None,
            Some(r) => Some(TicketRecord {
                username: r.try_get("username")?,
                principal: r.try_get("principal")?,
                ccache: r.try_get("ccache")?,
                valid_from: r.try_get("valid_from")?,
                valid_until: r.try_get("valid_until")?,
                renew_until: r.try_get("renew_until")?,
                last_success: r.try_get("last_success")?,
                last_error: r.try_get("last_error")?,
                consecutive_failures: r.try_get("consecutive_failures")?,
                next_renewal: r.try_get("next_renewal")?,
            }),
        })
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT name, admin, created, last_activity FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let groups: Vec<String> =
            sqlx::query_scalar("SELECT group_name FROM group_members WHERE username = $1 ORDER BY group_name")
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        Ok(Some(UserRecord {
            name: r.try_get("name")?,
            admin: r.try_get("admin")?,
            created: r.try_get("created")?,
            last_activity: r.try_get("last_activity")?,
            groups,
        }))
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, admin, created, last_activity FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let members: Vec<(String, String)> =
            sqlx::query_as("SELECT username, group_name FROM group_members ORDER BY group_name")
                .fetch_all(&self.pool)
                .await?;
        let mut groups: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for (u, g) in members {
            groups.entry(u).or_default().push(g);
        }
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                Ok(UserRecord {
                    admin: r.try_get("admin")?,
                    created: r.try_get("created")?,
                    last_activity: r.try_get("last_activity")?,
                    groups: groups.remove(&name).unwrap_or_default(),
                    name,
                })
            })
            .collect()
    }

    async fn create_user(&self, name: &str, admin: bool, now: i64) -> Result<bool, StoreError> {
        let r =
            sqlx::query("INSERT INTO users (name, admin, created) VALUES ($1, $2, $3) ON CONFLICT(name) DO NOTHING")
                .bind(name)
                .bind(admin)
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE users SET admin = $2 WHERE name = $1")
            .bind(name)
            .bind(admin)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM groups ORDER BY name").fetch_all(&self.pool).await?;
        let members: Vec<(String, String)> =
            sqlx::query_as("SELECT group_name, username FROM group_members ORDER BY username")
                .fetch_all(&self.pool)
                .await?;
        let mut by_group: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for (g, u) in members {
            by_group.entry(g).or_default().push(u);
        }
        Ok(names.into_iter().map(|n| GroupRecord { users: by_group.remove(&n).unwrap_or_default(), name: n }).collect())
    }

    async fn create_group(&self, name: &str, users: &[String], now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("INSERT INTO groups (name, created) VALUES ($1, $2) ON CONFLICT(name) DO NOTHING")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        for u in users {
            sqlx::query("INSERT INTO group_members (group_name, username) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(name)
                .bind(u)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM groups WHERE name = $1").bind(name).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn change_members(&self, group: &str, users: &[String], add: bool) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for u in users {
            let q = if add {
                "INSERT INTO group_members (group_name, username) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM group_members WHERE group_name = $1 AND username = $2"
            };
            sqlx::query(q).bind(group).bind(u).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<i64, StoreError> {
        let scopes = serde_json::to_string(&t.scopes).unwrap_or_else(|_| "[]".into());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (prefix, hash, username, scopes, note, created, expires_at, last_activity)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&t.prefix)
        .bind(&t.hash)
        .bind(&t.username)
        .bind(scopes)
        .bind(&t.note)
        .bind(t.created)
        .bind(t.expires_at)
        .bind(t.last_activity)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn tokens_of(&self, username: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, prefix, hash, username, scopes, note, created, expires_at, last_activity
             FROM api_tokens WHERE username = $1 ORDER BY id",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    async fn tokens_with_prefix(&self, prefix: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, prefix, hash, username, scopes, note, created, expires_at, last_activity
             FROM api_tokens WHERE prefix = $1",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    async fn delete_token(&self, username: &str, id: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND username = $2")
            .bind(id)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn touch_token(&self, id: i64, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_activity = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn token_row(r: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord, StoreError> {
    let scopes: String = r.try_get("scopes")?;
    Ok(TokenRecord {
        id: r.try_get("id")?,
        prefix: r.try_get("prefix")?,
        hash: r.try_get("hash")?,
        username: r.try_get("username")?,
        scopes: serde_json::from_str(&scopes)
            .map_err(|e| StoreError::Db(sqlx::Error::Decode(format!("api_tokens.scopes: {e}").into())))?,
        note: r.try_get("note")?,
        created: r.try_get("created")?,
        expires_at: r.try_get("expires_at")?,
        last_activity: r.try_get("last_activity")?,
    })
}

fn server_row(r: &sqlx::sqlite::SqliteRow) -> Result<ServerRecord, StoreError> {
    Ok(ServerRecord {
        username: r.try_get("username")?,
        state: r.try_get("state")?,
        pid: r.try_get("pid")?,
        port: r.try_get("port")?,
        started: r.try_get("started")?,
        stopped: r.try_get("stopped")?,
        message: r.try_get("message")?,
        token: r.try_get("token")?,
        pid_start: r.try_get("pid_start")?,
        uid: r.try_get("uid")?,
        gid: r.try_get("gid")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrate_is_idempotent_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/hub.sqlite", dir.path().display());
        let err = SqliteStore::open(&url, false).await.expect_err("missing db must be refused");
        assert!(err.to_string().contains("hub migrate"), "{err}");

        let store = SqliteStore::open(&url, true).await.expect("create");
        let err = store.check_schema(&url).await.expect_err("unmigrated db must be refused");
        assert!(err.to_string().contains("hub migrate"), "{err}");
        assert_eq!(store.migrate().await.expect("migrate"), MIGRATOR.iter().count());
        assert_eq!(store.migrate().await.expect("migrate again"), 0);
        store.check_schema(&url).await.expect("schema current");
        // The file holds server tokens: root only.
        let mode = std::fs::metadata(dir.path().join("hub.sqlite")).expect("db file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn conformance_users_groups_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/hub.sqlite", dir.path().display());
        let store = SqliteStore::open(&url, true).await.expect("create");
        store.migrate().await.expect("migrate");
        crate::store::conformance::users_groups_tokens(&store).await;
    }

    #[tokio::test]
    async fn sessions_and_servers_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/hub.sqlite", dir.path().display());
        let store = SqliteStore::open(&url, true).await.expect("create");
        store.migrate().await.expect("migrate");
        store.upsert_user("ann", false, 10).await.expect("user");
        store.upsert_user("ann", true, 20).await.expect("user again");
        store.upsert_user("ann", false, 21).await.expect("a login does not demote");
        assert!(store.is_admin("ann").await.expect("admin"), "admin granted elsewhere is kept");
        store.record_activity(&[("ann".into(), 30), ("ghost".into(), 40)]).await.expect("activity");
        store.record_activity(&[("ann".into(), 25)]).await.expect("older activity");
        let last: Option<i64> = sqlx::query_scalar("SELECT last_activity FROM users WHERE name = 'ann'")
            .fetch_one(&store.pool)
            .await
            .expect("select");
        assert_eq!(last, Some(30), "activity only moves forward");
        let s = SessionRecord { id: "a".repeat(32), username: "ann".into(), created: 10, expires: 99 };
        store.create_session(&s).await.expect("session");
        assert_eq!(store.get_session(&s.id).await.expect("get"), Some(s.clone()));
        store.delete_session(&s.id).await.expect("delete");
        assert_eq!(store.get_session(&s.id).await.expect("get"), None);
        // A session for a user the hub never saw violates the foreign key.
        let orphan = SessionRecord { username: "nobody".into(), ..s };
        assert!(store.create_session(&orphan).await.is_err());

        let rec = ServerRecord {
            username: "ann".into(),
            state: "running".into(),
            pid: Some(42),
            port: Some(5000),
            started: Some(11),
            stopped: None,
            message: None,
            token: Some("t".into()),
            pid_start: Some(123),
            uid: Some(1000),
            gid: Some(1000),
        };
        store.put_server(&rec).await.expect("put");
        assert_eq!(store.active_servers().await.expect("active"), vec![rec.clone()]);
        let stopped = ServerRecord { state: "stopped".into(), stopped: Some(12), ..rec };
        store.put_server(&stopped).await.expect("put again");
        assert_eq!(store.get_server("ann").await.expect("get"), Some(stopped));
        assert!(store.active_servers().await.expect("active").is_empty());

        let t = TicketRecord {
            username: "ann".into(),
            principal: "ann@R".into(),
            ccache: "/c/krb5cc_1".into(),
            valid_from: Some(1),
            valid_until: Some(2),
            renew_until: None,
            last_success: Some(1),
            last_error: Some("kinit: boom".into()),
            consecutive_failures: 3,
            next_renewal: Some(5),
        };
        store.put_ticket(&t).await.expect("put ticket");
        store.put_ticket(&t).await.expect("put ticket again");
        assert_eq!(store.get_ticket("ann").await.expect("get"), Some(t));
        assert_eq!(store.get_ticket("bob").await.expect("get"), None);
    }
}
