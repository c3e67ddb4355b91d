//! The store: everything the hub keeps across restarts.
//!
//! [`Store`] is the seam between the hub and its database. SQLite ([`sqlite::SqliteStore`]) is
//! the embedded default; PostgreSQL ([`postgres::PgStore`]) is the other backend, chosen by
//! the scheme of `[hub] database_url` ([`open`]). Each backend has its own migrations folder
//! under `migrations/` (`migrations/sqlite`, `migrations/postgres`), embedded into the binary
//! with `sqlx::migrate!`; the queries are shared ([`sql`]). Times are unix seconds (UTC) in
//! `i64`.

mod model;
pub mod postgres;
mod sql;
pub mod sqlite;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

pub use hub_core::redact_url;
pub use model::*;

/// Opens the store `url` names: `sqlite://PATH` ([`sqlite::SqliteStore`]) or
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` / `postgresql://...`
/// ([`postgres::PgStore`]; also honours `PGPASSWORD` and `~/.pgpass`). With `create`
/// (`hub migrate`) a missing SQLite file is created; a missing PostgreSQL database is an
/// error (create it with `createdb`). The schema is not checked here ([`Store::check_schema`]).
pub async fn open(url: &str, create: bool) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::open(url, create).await?))
    }
}
