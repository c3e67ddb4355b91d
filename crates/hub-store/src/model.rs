//! The store's model: the [`Store`] trait, the records it keeps, and [`StoreError`].

use hub_core::redact_url;
use std::collections::BTreeSet;

use async_trait::async_trait;
use sqlx::migrate::Migrator;

/// A store error: the database could not be reached, or holds something the hub cannot read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The schema is missing or older than this binary expects.
    #[error("the database at {url} {problem}; run `hub migrate` with the same configuration first")]
    NotMigrated {
        /// The database URL, password removed ([`redact_url`]).
        url: String,
        /// What is wrong, e.g. "does not exist" or "is at schema version 1 of 2".
        problem: String,
    },
    /// The schema has a migration this binary does not know: a newer hub migrated it.
    #[error(
        "the database at {url} has schema migration {version}, which this hub does not know: a newer hub migrated it; run that version or restore a backup"
    )]
    TooNew {
        /// The database URL, password removed ([`redact_url`]).
        url: String,
        /// The unknown migration's version.
        version: i64,
    },
    /// The database server could not be reached or refused the connection.
    #[error("cannot open the database at {url}: {source}; check `[hub] database_url` and that the server is running")]
    Unreachable {
        /// The database URL, password removed ([`redact_url`]).
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A login session row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Random id carried in the JWT's `sid` claim (32 hex characters).
    pub id: String,
    /// The user the session belongs to.
    pub username: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds after which the session is invalid.
    pub expires: i64,
}

/// The recorded state of a user's single-user server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerRecord {
    /// Owner of the server.
    pub username: String,
    /// The server's name: `""` for the default server, else a named server's name
    /// (JupyterHub's `allow_named_servers`).
    pub server_name: String,
    /// The JSON object the server was started with (`user_options`, e.g. `{"profile": "large"}`).
    pub user_options: String,
    /// `starting`, `running`, `stopped` or `failed`.
    pub state: String,
    /// Process id of the server, while it runs.
    pub pid: Option<i64>,
    /// Loopback TCP port the server listens on (`spawner.transport = "tcp"`).
    pub port: Option<i64>,
    /// Unix socket path the server listens on (`spawner.transport = "unix"`).
    pub socket: Option<String>,
    /// Unix seconds the spawn began.
    pub started: Option<i64>,
    /// Unix seconds the server stopped.
    pub stopped: Option<i64>,
    /// Why it failed or how it exited.
    pub message: Option<String>,
    /// The server's token, for the proxy after a hub restart (the database is mode 0600).
    pub token: Option<String>,
    /// Process start time in clock ticks after boot (`/proc/PID/stat` field 22), to tell a
    /// reused pid from the server.
    pub pid_start: Option<i64>,
    /// Owner's UID at spawn.
    pub uid: Option<i64>,
    /// Owner's primary GID at spawn.
    pub gid: Option<i64>,
    /// What the spawner needs to adopt the server after a restart when it is not a local
    /// process (a JSON object; the Slurm spawner's job id, node, port and certificate pin).
    pub spawner_state: Option<String>,
}

/// A user's Kerberos ticket as the renewer last saw it. Times are unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketRecord {
    /// Owner.
    pub username: String,
    /// The principal kinit was run for.
    pub principal: String,
    /// The ccache path.
    pub ccache: String,
    /// Ticket start.
    pub valid_from: Option<i64>,
    /// Ticket end.
    pub valid_until: Option<i64>,
    /// Last time the ticket can be renewed.
    pub renew_until: Option<i64>,
    /// Last successful kinit.
    pub last_success: Option<i64>,
    /// The last failure's message, cleared by a success.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: i64,
    /// When the timer will renew next.
    pub next_renewal: Option<i64>,
}

/// A user row, with the hub groups the user belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRecord {
    /// The user name (also the Linux account name).
    pub name: String,
    /// Whether the user is an admin by a stored flag: the REST API's grant, or `[auth]
    /// admin_groups` at their last login (`[auth] admin_users` is the caller's to add).
    pub admin: bool,
    /// Unix seconds the user was first seen.
    pub created: i64,
    /// Unix seconds of the last activity flushed to the database.
    pub last_activity: Option<i64>,
    /// Names of the hub groups the user is in, sorted.
    pub groups: Vec<String>,
}

/// A hub group and its members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group name.
    pub name: String,
    /// Member user names, sorted.
    pub users: Vec<String>,
}

/// An API token of a user. The token itself is never stored: `hash` is the hex SHA-256 of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRecord {
    /// Row id (the API shows it as `"a<id>"`, as JupyterHub does).
    pub id: i64,
    /// The token's first 4 characters, to narrow the lookup.
    pub prefix: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    /// The owner.
    pub username: String,
    /// Scope strings as requested (`inherit`, `self`, `servers!user=ann`, ...).
    pub scopes: Vec<String>,
    /// What the token is for.
    pub note: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds after which the token is refused; `None`: never.
    pub expires_at: Option<i64>,
    /// Unix seconds of the last use (recorded at most once a minute).
    pub last_activity: Option<i64>,
}

/// A job: a notebook of a user's run headless on a schedule or on demand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRecord {
    /// Row id.
    pub id: i64,
    /// The owner.
    pub username: String,
    /// The job's name, unique per owner.
    pub name: String,
    /// The definition as JSON (notebook, parameters, schedule, policies), checked by the hub.
    pub definition: String,
    /// Paused jobs are not scheduled (they can still be run by hand).
    pub paused: bool,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last change.
    pub updated: i64,
    /// The next scheduled occurrence (unix seconds); `None` without a schedule or paused.
    pub next_due: Option<i64>,
    /// The latest occurrence the scheduler dealt with (ran, skipped or missed), unix seconds.
    pub last_occurrence: Option<i64>,
}

/// One run of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRecord {
    /// Row id: the run's id.
    pub id: i64,
    /// The job.
    pub job_id: i64,
    /// The owner (the job's).
    pub username: String,
    /// The scheduled time it is for (unix seconds); `None` for a run started by hand.
    pub occurrence: Option<i64>,
    /// Why it started: `schedule`, `manual`, `retry`, `catch-up`.
    pub reason: String,
    /// 1 for the first try of an occurrence, then 2, 3 for retries.
    pub attempt: i64,
    /// `queued`, `running`, `succeeded`, `failed`, `timed_out`, `cancelled`, `skipped`.
    pub state: String,
    /// Unix seconds (when it was recorded).
    pub created: i64,
    /// Unix seconds when the runner started.
    pub started: Option<i64>,
    /// Unix seconds when it ended.
    pub ended: Option<i64>,
    /// The runner's pid while it runs.
    pub pid: Option<i64>,
    /// The runner's start time (clock ticks after boot), to re-adopt it after a restart.
    pub pid_start: Option<i64>,
    /// The runner's UID.
    pub uid: Option<i64>,
    /// The output notebook (absolute path in the owner's home).
    pub output_path: Option<String>,
    /// The run's log (root's, under `data_dir`).
    pub log_path: Option<String>,
    /// The owner's ticket end when the run started (unix seconds).
    pub ticket_valid_until: Option<i64>,
    /// The owner's ticket renewal limit when the run started (unix seconds, 0: none).
    pub ticket_renew_until: Option<i64>,
    /// 0-based index of the cell that failed, in the executed notebook.
    pub failed_cell: Option<i64>,
    /// The failing cell's error as JSON (`{"ename", "evalue", "traceback"}`).
    pub error: Option<String>,
    /// What happened, in a sentence.
    pub message: Option<String>,
}

/// The hub's persistent state. Implemented once per database backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies every pending migration of this backend (`hub migrate`); returns how many were
    /// applied (0 when the schema is current).
    async fn migrate(&self) -> Result<usize, StoreError>;
    /// Fails with [`StoreError::NotMigrated`] unless every migration this binary knows has
    /// been applied (`hub serve` checks this before it listens).
    async fn check_schema(&self) -> Result<(), StoreError>;
    /// Records a login of `name`: creates the user if missing, and sets the admin right that
    /// `[auth] admin_groups` gives (`group_admin`), replacing what the last login said. The
    /// REST API's admin flag ([`Store::set_admin`]) is left as it is.
    async fn upsert_user(&self, name: &str, group_admin: bool, now: i64) -> Result<(), StoreError>;
    /// Whether `name` is recorded as an admin, by the REST API's flag or by `admin_groups` at
    /// the last login (false for an unknown user).
    async fn is_admin(&self, name: &str) -> Result<bool, StoreError>;
    /// Records a new session.
    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError>;
    /// Looks a session up by id.
    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Deletes a session (logout). Deleting a missing session is not an error.
    async fn delete_session(&self, id: &str) -> Result<(), StoreError>;
    /// Deletes every session of `username` (log out everywhere); returns how many.
    async fn delete_sessions_of(&self, username: &str) -> Result<u64, StoreError>;
    /// Records a server's state, replacing the previous record.
    async fn put_server(&self, s: &ServerRecord) -> Result<(), StoreError>;
    /// The recorded state of `username`'s server `server_name` (`""`: the default one).
    async fn get_server(&self, username: &str, server_name: &str) -> Result<Option<ServerRecord>, StoreError>;
    /// Every server recorded for `username` (the default one first), in any state.
    async fn servers_of(&self, username: &str) -> Result<Vec<ServerRecord>, StoreError>;
    /// `(username, server_name)` of every recorded named server, in any state.
    async fn named_servers(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Forgets `username`'s server `server_name`; `false` if there was no record.
    async fn delete_server(&self, username: &str, server_name: &str) -> Result<bool, StoreError>;
    /// Every server recorded as `starting` or `running` (what a restarted hub must check).
    async fn active_servers(&self) -> Result<Vec<ServerRecord>, StoreError>;
    /// Sets `users.last_activity` for many users in one transaction: `(name, unix seconds)`.
    async fn record_activity(&self, items: &[(String, i64)]) -> Result<(), StoreError>;
    /// Records a user's ticket state, replacing the previous record.
    async fn put_ticket(&self, t: &TicketRecord) -> Result<(), StoreError>;
    /// The recorded ticket state of `username`.
    async fn get_ticket(&self, username: &str) -> Result<Option<TicketRecord>, StoreError>;

    /// One user with their groups; `None` if unknown.
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Every user with their groups, ordered by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// One page of the users whose name contains `name_contains` (`""`: all), ordered by name
    /// (descending with `descending`), with their groups; and how many match in all. Paging
    /// happens in the database, so a page costs O(limit), not O(users).
    async fn users_page(
        &self,
        name_contains: &str,
        descending: bool,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<UserRecord>, i64), StoreError>;
    /// Creates a user; returns `false` (and changes nothing) if it already exists.
    async fn create_user(&self, name: &str, admin: bool, now: i64) -> Result<bool, StoreError>;
    /// Creates many users in one transaction; returns the names that were new (those that
    /// already existed are left unchanged), in the order given.
    async fn create_users(&self, names: &[String], admin: bool, now: i64) -> Result<Vec<String>, StoreError>;
    /// Sets the REST API's admin flag (not the `admin_groups` one); returns `false` if there is
    /// no such user.
    async fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError>;
    /// Deletes a user and everything of theirs (sessions, server row, ticket row, tokens,
    /// group memberships); returns `false` if there was no such user.
    async fn delete_user(&self, name: &str) -> Result<bool, StoreError>;
    /// Every hub group with its members, ordered by name.
    async fn list_groups(&self) -> Result<Vec<GroupRecord>, StoreError>;
    /// Creates a group with `users` as members (all must exist); returns `false` if the
    /// group already exists.
    async fn create_group(&self, name: &str, users: &[String], now: i64) -> Result<bool, StoreError>;
    /// Deletes a group; returns `false` if there was no such group.
    async fn delete_group(&self, name: &str) -> Result<bool, StoreError>;
    /// Adds (`add = true`) or removes members; adding an existing member is not an error.
    async fn change_members(&self, group: &str, users: &[String], add: bool) -> Result<(), StoreError>;
    /// Stores a new token (its `id` is ignored) and returns its id.
    async fn insert_token(&self, t: &TokenRecord) -> Result<i64, StoreError>;
    /// The tokens of `username`, oldest first.
    async fn tokens_of(&self, username: &str) -> Result<Vec<TokenRecord>, StoreError>;
    /// The tokens whose prefix is `prefix` (normally zero or one).
    async fn tokens_with_prefix(&self, prefix: &str) -> Result<Vec<TokenRecord>, StoreError>;
    /// Deletes token `id` of `username`; returns `false` if there was none.
    async fn delete_token(&self, username: &str, id: i64) -> Result<bool, StoreError>;
    /// Records a token's last use (unix seconds).
    async fn touch_token(&self, id: i64, at: i64) -> Result<(), StoreError>;

    /// Creates a job; `false` if the owner already has one of that name.
    async fn create_job(&self, j: &JobRecord) -> Result<bool, StoreError>;
    /// Replaces a job's definition, pause flag, `updated`, `next_due` and `last_occurrence`
    /// (by id); `false` if it is gone.
    async fn update_job(&self, j: &JobRecord) -> Result<bool, StoreError>;
    /// The job `name` of `username`.
    async fn get_job(&self, username: &str, name: &str) -> Result<Option<JobRecord>, StoreError>;
    /// The job with row id `id`.
    async fn get_job_by_id(&self, id: i64) -> Result<Option<JobRecord>, StoreError>;
    /// `username`'s jobs (every user's for `None`), by owner and name.
    async fn list_jobs(&self, username: Option<&str>) -> Result<Vec<JobRecord>, StoreError>;
    /// Deletes a job and its runs; `false` if there was none.
    async fn delete_job(&self, username: &str, name: &str) -> Result<bool, StoreError>;
    /// Records a new run (its `id` is ignored) and returns its id, or `None` when it would
    /// double one: the same job, occurrence and attempt, or a second queued run of the job.
    async fn insert_run(&self, r: &RunRecord) -> Result<Option<i64>, StoreError>;
    /// Replaces everything but the ids of run `r.id`; `false` if it is gone.
    async fn update_run(&self, r: &RunRecord) -> Result<bool, StoreError>;
    /// Run `id`.
    async fn get_run(&self, id: i64) -> Result<Option<RunRecord>, StoreError>;
    /// Job `job_id`'s runs, newest first, `limit` from `offset`, and how many there are.
    async fn runs_of_job(&self, job_id: i64, offset: i64, limit: i64) -> Result<(Vec<RunRecord>, i64), StoreError>;
    /// Every run that is `queued` or `running`, oldest first.
    async fn active_runs(&self) -> Result<Vec<RunRecord>, StoreError>;
    /// Deletes job `job_id`'s finished runs beyond the newest `keep`; returns the deleted.
    async fn prune_runs(&self, job_id: i64, keep: i64) -> Result<Vec<RunRecord>, StoreError>;
}

/// Compares the migrations a database has applied with those `migrator` knows.
pub(crate) fn check_applied(migrator: &Migrator, applied: &BTreeSet<i64>, url: &str) -> Result<(), StoreError> {
    let known: BTreeSet<i64> = migrator.iter().map(|m| m.version).collect();
    let missing = known.difference(applied).count();
    if missing > 0 {
        return Err(StoreError::NotMigrated {
            url: redact_url(url),
            problem: format!("is missing {missing} of {} schema migrations", known.len()),
        });
    }
    if let Some(newer) = applied.difference(&known).next() {
        return Err(StoreError::TooNew { url: redact_url(url), version: *newer });
    }
    Ok(())
}
