//! The SQL shared by the backends of [`Store`](super::Store).
//!
//! The statements are written once in the dialect SQLite and PostgreSQL share: `$N`
//! placeholders, `INSERT ... ON CONFLICT ... DO UPDATE/NOTHING` (SQLite 3.24+, PostgreSQL
//! 9.5+), `RETURNING`, booleans combined with `OR`. [`store_queries!`] expands them into a
//! backend's `impl Store`, once per sqlx driver, so each backend is compiled against its own
//! driver's types (no `sqlx::Any` and its type restrictions).

/// Expands to `impl Store for $store` over `self.pool`, a pool of the driver whose row type is
/// `$row`, followed by the row-decoding helpers. `$migrator` is the backend's embedded
/// migrations; the backend provides `self.applied()` (the versions applied, read with SQL that
/// differs per database) and `self.url`.
macro_rules! store_queries {
    ($store:ty, $row:ty, $migrator:path) => {
        #[async_trait::async_trait]
        impl $crate::model::Store for $store {
            async fn migrate(&self) -> Result<usize, $crate::model::StoreError> {
                let before = self.applied().await?.len();
                $migrator.run(&self.pool).await?;
                Ok(self.applied().await?.len() - before)
            }

            async fn check_schema(&self) -> Result<(), $crate::model::StoreError> {
                $crate::model::check_applied(&$migrator, &self.applied().await?, &self.url)
            }

            async fn upsert_user(&self, name: &str, group_admin: bool, now: i64) -> Result<(), $crate::model::StoreError> {
                sqlx::query(
                    "INSERT INTO users (name, admin, admin_from_groups, created) VALUES ($1, FALSE, $2, $3)
                     ON CONFLICT(name) DO UPDATE SET admin_from_groups = excluded.admin_from_groups",
                )
                .bind(name)
                .bind(group_admin)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn create_session(&self, s: &$crate::model::SessionRecord) -> Result<(), $crate::model::StoreError> {
                sqlx::query("INSERT INTO sessions (id, username, created, expires) VALUES ($1, $2, $3, $4)")
                    .bind(&s.id)
                    .bind(&s.username)
                    .bind(s.created)
                    .bind(s.expires)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_session(&self, id: &str) -> Result<Option<$crate::model::SessionRecord>, $crate::model::StoreError> {
                let row = sqlx::query("SELECT id, username, created, expires FROM sessions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(match row {
                    None => None,
                    Some(r) => Some($crate::model::SessionRecord {
                        id: r.try_get("id")?,
                        username: r.try_get("username")?,
                        created: r.try_get("created")?,
                        expires: r.try_get("expires")?,
                    }),
                })
            }

            async fn delete_session(&self, id: &str) -> Result<(), $crate::model::StoreError> {
                sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id).execute(&self.pool).await?;
                Ok(())
            }

            async fn is_admin(&self, name: &str) -> Result<bool, $crate::model::StoreError> {
                let row: Option<(bool,)> =
                    sqlx::query_as("SELECT (admin OR admin_from_groups) FROM users WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
                Ok(row.is_some_and(|r| r.0))
            }

            async fn delete_sessions_of(&self, username: &str) -> Result<u64, $crate::model::StoreError> {
                let r = sqlx::query("DELETE FROM sessions WHERE username = $1").bind(username).execute(&self.pool).await?;
                Ok(r.rows_affected())
            }

            async fn put_server(&self, s: &$crate::model::ServerRecord) -> Result<(), $crate::model::StoreError> {
                sqlx::query(
                    "INSERT INTO servers (username, state, pid, port, started, stopped, message, token, pid_start, uid, gid, socket,
                       server_name, user_options, spawner_state)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                     ON CONFLICT(username, server_name) DO UPDATE SET state = excluded.state, pid = excluded.pid, port = excluded.port,
                       socket = excluded.socket,
                       started = excluded.started, stopped = excluded.stopped, message = excluded.message,
                       token = excluded.token, pid_start = excluded.pid_start, uid = excluded.uid, gid = excluded.gid,
                       user_options = excluded.user_options, spawner_state = excluded.spawner_state",
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
                .bind(&s.socket)
                .bind(&s.server_name)
                .bind(&s.user_options)
                .bind(&s.spawner_state)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_server(&self, username: &str, server_name: &str) -> Result<Option<$crate::model::ServerRecord>, $crate::model::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {SERVER_COLUMNS} FROM servers WHERE username = $1 AND server_name = $2")))
                    .bind(username)
                    .bind(server_name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| server_row(&r)).transpose()
            }

            async fn servers_of(&self, username: &str) -> Result<Vec<$crate::model::ServerRecord>, $crate::model::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {SERVER_COLUMNS} FROM servers WHERE username = $1 ORDER BY server_name")))
                    .bind(username)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(server_row).collect()
            }

            async fn named_servers(&self) -> Result<Vec<(String, String)>, $crate::model::StoreError> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT username, server_name FROM servers WHERE server_name <> '' ORDER BY username, server_name")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows)
            }

            async fn delete_server(&self, username: &str, server_name: &str) -> Result<bool, $crate::model::StoreError> {
                let r = sqlx::query("DELETE FROM servers WHERE username = $1 AND server_name = $2")
                    .bind(username)
                    .bind(server_name)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn active_servers(&self) -> Result<Vec<$crate::model::ServerRecord>, $crate::model::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SERVER_COLUMNS} FROM servers WHERE state IN ('starting', 'running') ORDER BY username, server_name"
                )))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(server_row).collect()
            }

            async fn record_activity(&self, items: &[(String, i64)]) -> Result<(), $crate::model::StoreError> {
                let mut tx = self.pool.begin().await?;
                for (name, at) in items {
                    sqlx::query("UPDATE users SET last_activity = $2 WHERE name = $1 AND (last_activity IS NULL OR last_activity < $2)")
                        .bind(name)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn put_ticket(&self, t: &$crate::model::TicketRecord) -> Result<(), $crate::model::StoreError> {
                sqlx::query(
                    "INSERT INTO tickets (username, principal, ccache, valid_from, valid_until, renew_until,
                       last_success, last_error, consecutive_failures, next_renewal)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT(username) DO UPDATE SET principal = excluded.principal, ccache = excluded.ccache,
                       valid_from = excluded.valid_from, valid_until = excluded.valid_until,
                       renew_until = excluded.renew_until, last_success = excluded.last_success,
                       last_error = excluded.last_error, consecutive_failures = excluded.consecutive_failures,
                       next_renewal = excluded.next_renewal",
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

            async fn get_ticket(&self, username: &str) -> Result<Option<$crate::model::TicketRecord>, $crate::model::StoreError> {
                let row = sqlx::query(
                    "SELECT username, principal, ccache, valid_from, valid_until, renew_until, last_success, last_error,
                       consecutive_failures, next_renewal FROM tickets WHERE username = $1",
                )
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    None => None,
                    Some(r) => Some($crate::model::TicketRecord {
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

            async fn get_user(&self, name: &str) -> Result<Option<$crate::model::UserRecord>, $crate::model::StoreError> {
                let row = sqlx::query("SELECT name, (admin OR admin_from_groups) AS admin, created, last_activity FROM users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(r) = row else { return Ok(None) };
                let groups: Vec<String> =
                    sqlx::query_scalar("SELECT group_name FROM group_members WHERE username = $1 ORDER BY group_name")
                        .bind(name)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(Some($crate::model::UserRecord {
                    name: r.try_get("name")?,
                    admin: r.try_get("admin")?,
                    created: r.try_get("created")?,
                    last_activity: r.try_get("last_activity")?,
                    groups,
                }))
            }

            async fn list_users(&self) -> Result<Vec<$crate::model::UserRecord>, $crate::model::StoreError> {
                Ok(self.users_page("", false, 0, i64::MAX).await?.0)
            }

            async fn users_page(
            &self,
            name_contains: &str,
            descending: bool,
            offset: i64,
            limit: i64,
        ) -> Result<(Vec<$crate::model::UserRecord>, i64), $crate::model::StoreError> {
            // LIKE with `\` as the escape character, so `%` and `_` in the needle are literal.
            let pattern = format!(
                "%{}%",
                name_contains.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
            );
            let (page, members) = if descending {
                (
                    "SELECT name, (admin OR admin_from_groups) AS admin, created, last_activity FROM users WHERE name LIKE $1 ESCAPE '\\'
                     ORDER BY name DESC LIMIT $2 OFFSET $3",
                    "SELECT username, group_name FROM group_members WHERE username IN
                       (SELECT name FROM users WHERE name LIKE $1 ESCAPE '\\' ORDER BY name DESC LIMIT $2 OFFSET $3)
                     ORDER BY group_name",
                )
            } else {
                (
                    "SELECT name, (admin OR admin_from_groups) AS admin, created, last_activity FROM users WHERE name LIKE $1 ESCAPE '\\'
                     ORDER BY name LIMIT $2 OFFSET $3",
                    "SELECT username, group_name FROM group_members WHERE username IN
                       (SELECT name FROM users WHERE name LIKE $1 ESCAPE '\\' ORDER BY name LIMIT $2 OFFSET $3)
                     ORDER BY group_name",
                )
            };
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE name LIKE $1 ESCAPE '\\'")
                .bind(&pattern)
                .fetch_one(&self.pool)
                .await?;
            let rows = sqlx::query(page).bind(&pattern).bind(limit).bind(offset).fetch_all(&self.pool).await?;
            let members: Vec<(String, String)> =
                sqlx::query_as(members).bind(&pattern).bind(limit).bind(offset).fetch_all(&self.pool).await?;
            let mut groups: ::std::collections::HashMap<String, Vec<String>> = ::std::collections::HashMap::new();
            for (u, g) in members {
                groups.entry(u).or_default().push(g);
            }
            let users = rows
                .iter()
                .map(|r| {
                    let name: String = r.try_get("name")?;
                    Ok($crate::model::UserRecord {
                        admin: r.try_get("admin")?,
                        created: r.try_get("created")?,
                        last_activity: r.try_get("last_activity")?,
                        groups: groups.remove(&name).unwrap_or_default(),
                        name,
                    })
                })
                .collect::<Result<Vec<_>, $crate::model::StoreError>>()?;
            Ok((users, total))
        }

        async fn create_user(&self, name: &str, admin: bool, now: i64) -> Result<bool, $crate::model::StoreError> {
                let r =
                    sqlx::query("INSERT INTO users (name, admin, created) VALUES ($1, $2, $3) ON CONFLICT(name) DO NOTHING")
                        .bind(name)
                        .bind(admin)
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn create_users(
            &self,
            names: &[String],
            admin: bool,
            now: i64,
        ) -> Result<Vec<String>, $crate::model::StoreError> {
            let mut tx = self.pool.begin().await?;
            let mut created = Vec::new();
            for name in names {
                let r = sqlx::query(
                    "INSERT INTO users (name, admin, created) VALUES ($1, $2, $3) ON CONFLICT(name) DO NOTHING",
                )
                .bind(name)
                .bind(admin)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() == 1 {
                    created.push(name.clone());
                }
            }
            tx.commit().await?;
            Ok(created)
        }

        async fn set_admin(&self, name: &str, admin: bool) -> Result<bool, $crate::model::StoreError> {
                let r = sqlx::query("UPDATE users SET admin = $2 WHERE name = $1")
                    .bind(name)
                    .bind(admin)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn delete_user(&self, name: &str) -> Result<bool, $crate::model::StoreError> {
                let r = sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn list_groups(&self) -> Result<Vec<$crate::model::GroupRecord>, $crate::model::StoreError> {
                let names: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM groups ORDER BY name").fetch_all(&self.pool).await?;
                let members: Vec<(String, String)> =
                    sqlx::query_as("SELECT group_name, username FROM group_members ORDER BY username")
                        .fetch_all(&self.pool)
                        .await?;
                let mut by_group: ::std::collections::HashMap<String, Vec<String>> = ::std::collections::HashMap::new();
                for (g, u) in members {
                    by_group.entry(g).or_default().push(u);
                }
                Ok(names.into_iter().map(|n| $crate::model::GroupRecord { users: by_group.remove(&n).unwrap_or_default(), name: n }).collect())
            }

            async fn create_group(&self, name: &str, users: &[String], now: i64) -> Result<bool, $crate::model::StoreError> {
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

            async fn delete_group(&self, name: &str) -> Result<bool, $crate::model::StoreError> {
                let r = sqlx::query("DELETE FROM groups WHERE name = $1").bind(name).execute(&self.pool).await?;
                Ok(r.rows_affected() == 1)
            }

            async fn change_members(&self, group: &str, users: &[String], add: bool) -> Result<(), $crate::model::StoreError> {
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

            async fn insert_token(&self, t: &$crate::model::TokenRecord) -> Result<i64, $crate::model::StoreError> {
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

            async fn tokens_of(&self, username: &str) -> Result<Vec<$crate::model::TokenRecord>, $crate::model::StoreError> {
                let rows = sqlx::query(
                    "SELECT id, prefix, hash, username, scopes, note, created, expires_at, last_activity
                     FROM api_tokens WHERE username = $1 ORDER BY id",
                )
                .bind(username)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(token_row).collect()
            }

            async fn tokens_with_prefix(&self, prefix: &str) -> Result<Vec<$crate::model::TokenRecord>, $crate::model::StoreError> {
                let rows = sqlx::query(
                    "SELECT id, prefix, hash, username, scopes, note, created, expires_at, last_activity
                     FROM api_tokens WHERE prefix = $1",
                )
                .bind(prefix)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(token_row).collect()
            }

            async fn delete_token(&self, username: &str, id: i64) -> Result<bool, $crate::model::StoreError> {
                let r = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND username = $2")
                    .bind(id)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn touch_token(&self, id: i64, at: i64) -> Result<(), $crate::model::StoreError> {
                sqlx::query("UPDATE api_tokens SET last_activity = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn create_job(&self, j: &$crate::model::JobRecord) -> Result<bool, $crate::model::StoreError> {
                let r = sqlx::query(
                    "INSERT INTO jobs (username, name, definition, paused, created, updated, next_due, last_occurrence)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT(username, name) DO NOTHING",
                )
                .bind(&j.username)
                .bind(&j.name)
                .bind(&j.definition)
                .bind(j.paused)
                .bind(j.created)
                .bind(j.updated)
                .bind(j.next_due)
                .bind(j.last_occurrence)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn update_job(&self, j: &$crate::model::JobRecord) -> Result<bool, $crate::model::StoreError> {
                let r = sqlx::query(
                    "UPDATE jobs SET definition = $2, paused = $3, updated = $4, next_due = $5, last_occurrence = $6 WHERE id = $1",
                )
                .bind(j.id)
                .bind(&j.definition)
                .bind(j.paused)
                .bind(j.updated)
                .bind(j.next_due)
                .bind(j.last_occurrence)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn get_job(&self, username: &str, name: &str) -> Result<Option<$crate::model::JobRecord>, $crate::model::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE username = $1 AND name = $2")))
                    .bind(username)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| job_row(&r)).transpose()
            }

            async fn get_job_by_id(&self, id: i64) -> Result<Option<$crate::model::JobRecord>, $crate::model::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| job_row(&r)).transpose()
            }

            async fn list_jobs(&self, username: Option<&str>) -> Result<Vec<$crate::model::JobRecord>, $crate::model::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE CAST($1 AS TEXT) IS NULL OR username = $1 ORDER BY username, name"
                )))
                .bind(username)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(job_row).collect()
            }

            async fn delete_job(&self, username: &str, name: &str) -> Result<bool, $crate::model::StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM runs WHERE job_id IN (SELECT id FROM jobs WHERE username = $1 AND name = $2)")
                    .bind(username)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                let r = sqlx::query("DELETE FROM jobs WHERE username = $1 AND name = $2")
                    .bind(username)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_run(&self, r: &$crate::model::RunRecord) -> Result<Option<i64>, $crate::model::StoreError> {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO runs (job_id, username, occurrence, reason, attempt, state, created, started, ended, pid, pid_start,
                       uid, output_path, log_path, ticket_valid_until, ticket_renew_until, failed_cell, error, message)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
                     ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(r.job_id)
                .bind(&r.username)
                .bind(r.occurrence)
                .bind(&r.reason)
                .bind(r.attempt)
                .bind(&r.state)
                .bind(r.created)
                .bind(r.started)
                .bind(r.ended)
                .bind(r.pid)
                .bind(r.pid_start)
                .bind(r.uid)
                .bind(&r.output_path)
                .bind(&r.log_path)
                .bind(r.ticket_valid_until)
                .bind(r.ticket_renew_until)
                .bind(r.failed_cell)
                .bind(&r.error)
                .bind(&r.message)
                .fetch_optional(&self.pool)
                .await?;
                Ok(id)
            }

            async fn update_run(&self, r: &$crate::model::RunRecord) -> Result<bool, $crate::model::StoreError> {
                let res = sqlx::query(
                    "UPDATE runs SET occurrence = $2, reason = $3, attempt = $4, state = $5, started = $6, ended = $7, pid = $8,
                       pid_start = $9, uid = $10, output_path = $11, log_path = $12, ticket_valid_until = $13,
                       ticket_renew_until = $14, failed_cell = $15, error = $16, message = $17
                     WHERE id = $1",
                )
                .bind(r.id)
                .bind(r.occurrence)
                .bind(&r.reason)
                .bind(r.attempt)
                .bind(&r.state)
                .bind(r.started)
                .bind(r.ended)
                .bind(r.pid)
                .bind(r.pid_start)
                .bind(r.uid)
                .bind(&r.output_path)
                .bind(&r.log_path)
                .bind(r.ticket_valid_until)
                .bind(r.ticket_renew_until)
                .bind(r.failed_cell)
                .bind(&r.error)
                .bind(&r.message)
                .execute(&self.pool)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn get_run(&self, id: i64) -> Result<Option<$crate::model::RunRecord>, $crate::model::StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1")))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| run_row(&r)).transpose()
            }

            async fn runs_of_job(&self, job_id: i64, offset: i64, limit: i64) -> Result<(Vec<$crate::model::RunRecord>, i64), $crate::model::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
                )))
                .bind(job_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE job_id = $1")
                    .bind(job_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok((rows.iter().map(run_row).collect::<Result<_, _>>()?, total))
            }

            async fn active_runs(&self) -> Result<Vec<$crate::model::RunRecord>, $crate::model::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('queued', 'running') ORDER BY id"
                )))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(run_row).collect()
            }

            async fn prune_runs(&self, job_id: i64, keep: i64) -> Result<Vec<$crate::model::RunRecord>, $crate::model::StoreError> {
                let mut tx = self.pool.begin().await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = $1 AND state NOT IN ('queued', 'running')
                     ORDER BY id DESC {LIMIT_ALL} OFFSET $2"
                )))
                .bind(job_id)
                .bind(keep.max(0))
                .fetch_all(&mut *tx)
                .await?;
                let old: Vec<$crate::model::RunRecord> = rows.iter().map(run_row).collect::<Result<_, _>>()?;
                for r in &old {
                    sqlx::query("DELETE FROM runs WHERE id = $1").bind(r.id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(old)
            }
        }

        fn token_row(r: &$row) -> Result<$crate::model::TokenRecord, $crate::model::StoreError> {
            let scopes: String = r.try_get("scopes")?;
            Ok($crate::model::TokenRecord {
                id: r.try_get("id")?,
                prefix: r.try_get("prefix")?,
                hash: r.try_get("hash")?,
                username: r.try_get("username")?,
                scopes: serde_json::from_str(&scopes)
                    .map_err(|e| $crate::model::StoreError::Db(sqlx::Error::Decode(format!("api_tokens.scopes: {e}").into())))?,
                note: r.try_get("note")?,
                created: r.try_get("created")?,
                expires_at: r.try_get("expires_at")?,
                last_activity: r.try_get("last_activity")?,
            })
        }

        const SERVER_COLUMNS: &str =
            "username, server_name, state, pid, port, socket, started, stopped, message, token, pid_start, uid, gid, user_options, spawner_state";

        fn server_row(r: &$row) -> Result<$crate::model::ServerRecord, $crate::model::StoreError> {
            Ok($crate::model::ServerRecord {
                username: r.try_get("username")?,
                server_name: r.try_get("server_name")?,
                user_options: r.try_get("user_options")?,
                state: r.try_get("state")?,
                pid: r.try_get("pid")?,
                port: r.try_get("port")?,
                socket: r.try_get("socket")?,
                started: r.try_get("started")?,
                stopped: r.try_get("stopped")?,
                message: r.try_get("message")?,
                token: r.try_get("token")?,
                pid_start: r.try_get("pid_start")?,
                uid: r.try_get("uid")?,
                gid: r.try_get("gid")?,
                spawner_state: r.try_get("spawner_state")?,
            })
        }

        const JOB_COLUMNS: &str = "id, username, name, definition, paused, created, updated, next_due, last_occurrence";
        const RUN_COLUMNS: &str = "id, job_id, username, occurrence, reason, attempt, state, created, started, ended, pid, \
            pid_start, uid, output_path, log_path, ticket_valid_until, ticket_renew_until, failed_cell, error, message";

        fn job_row(r: &$row) -> Result<$crate::model::JobRecord, $crate::model::StoreError> {
            Ok($crate::model::JobRecord {
                id: r.try_get("id")?,
                username: r.try_get("username")?,
                name: r.try_get("name")?,
                definition: r.try_get("definition")?,
                paused: r.try_get("paused")?,
                created: r.try_get("created")?,
                updated: r.try_get("updated")?,
                next_due: r.try_get("next_due")?,
                last_occurrence: r.try_get("last_occurrence")?,
            })
        }

        fn run_row(r: &$row) -> Result<$crate::model::RunRecord, $crate::model::StoreError> {
            Ok($crate::model::RunRecord {
                id: r.try_get("id")?,
                job_id: r.try_get("job_id")?,
                username: r.try_get("username")?,
                occurrence: r.try_get("occurrence")?,
                reason: r.try_get("reason")?,
                attempt: r.try_get("attempt")?,
                state: r.try_get("state")?,
                created: r.try_get("created")?,
                started: r.try_get("started")?,
                ended: r.try_get("ended")?,
                pid: r.try_get("pid")?,
                pid_start: r.try_get("pid_start")?,
                uid: r.try_get("uid")?,
                output_path: r.try_get("output_path")?,
                log_path: r.try_get("log_path")?,
                ticket_valid_until: r.try_get("ticket_valid_until")?,
                ticket_renew_until: r.try_get("ticket_renew_until")?,
                failed_cell: r.try_get("failed_cell")?,
                error: r.try_get("error")?,
                message: r.try_get("message")?,
            })
        }
    };
}

pub(crate) use store_queries;
