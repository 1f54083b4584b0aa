//! Persistence: the SeaORM entities, and every query Storeplane makes, behind one handle,
//! [`Db`]. Nothing outside this module touches a database connection.
//!
//! SQLite (one file, the default) and PostgreSQL (production, several replicas) behave
//! the same through this API, and the integration tests prove it on both. The rules that
//! make that true:
//! - every timestamp is bound from Rust as `DateTime<Utc>` truncated to microseconds
//!   (never SQL `CURRENT_TIMESTAMP`): SQLite keeps them as RFC 3339 UTC text, which then
//!   compares in time order, and PostgreSQL keeps microseconds;
//! - concurrent writers are made safe by single-statement compare-and-set updates
//!   (leases), and by making the first statement of every write transaction a write
//!   (SQLite then takes its write lock up front and waits on `busy_timeout` instead of
//!   failing with "database is locked") or a `SELECT … FOR UPDATE` (PostgreSQL);
//! - unique violations are mapped to their own errors (`DuplicateName`, …).
//!
//! This module holds no business rules: it stores what it is told, atomically. It must
//! not log secrets (password hashes, tokens, sealed credentials) nor full URLs with
//! passwords.

mod accounts;
pub mod entity;
mod error;
mod model;
mod notify;
mod orchestrator;
mod stores;

pub use accounts::{UpdatedUser, UserUpdate};
pub use error::{DbError, SUPPORTED_SCHEMES};
pub use model::{
    ApiToken, DEFAULT_STORE_LIMIT, NewEvent, NewStore, NewUser, Role, Store, StoreEvent,
    StoreQuery, StoreUpdate, StoreUrlRecord, User,
};
pub use notify::{WORK_CHANNEL, WorkListener};
pub use stores::MAX_PAGE;

use chrono::{DateTime, SubsecRound, Utc};
use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    RuntimeErr, Statement, TransactionTrait,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The database handle: a connection pool that knows its backend. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    backend: Backend,
    /// The URL without its password, for messages.
    target: Arc<str>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .field("target", &self.target)
            .finish()
    }
}

/// Key of the PostgreSQL advisory lock that serialises migrations of several replicas
/// starting at once ("storeplane" in ASCII, truncated to 8 bytes).
const MIGRATION_LOCK_KEY: i64 = 0x73746f7265706c61;

/// SQLite waits this long for another writer before giving up with "busy".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Db {
    /// Connects to `url` (`sqlite:…` or `postgres://…`). The scheme is checked first;
    /// for SQLite the file and its parent directory are created when missing, and the
    /// connections use WAL, `busy_timeout` and foreign keys.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let backend = backend_of(url)?;
        let target: Arc<str> = redact_url(url).into();
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .connect_timeout(Duration::from_secs(5))
            // While the database is away a request waits this long for a connection
            // before the API answers 503: short, so clients see the outage, not a hang.
            .acquire_timeout(Duration::from_secs(3));
        match backend {
            Backend::Sqlite => {
                let memory = match sqlite_path(url) {
                    Some(path) => {
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            create_private_dir(dir).map_err(|source| DbError::CreateDir {
                                path: dir.to_owned(),
                                source,
                            })?;
                        }
                        false
                    }
                    None => true,
                };
                // An in-memory database lives in one connection; a file takes a few
                // readers next to its one writer.
                options
                    .max_connections(if memory { 1 } else { 8 })
                    .min_connections(1)
                    .map_sqlx_sqlite_opts(|o| {
                        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                        o.create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Normal)
                            .busy_timeout(SQLITE_BUSY_TIMEOUT)
                            .foreign_keys(true)
                    });
            }
            Backend::Postgres => {
                options
                    .max_connections(16)
                    .min_connections(0)
                    .map_sqlx_postgres_opts(|o| {
                        // Keep NOTICEs such as "relation already exists, skipping" out of
                        // the logs.
                        o.options([("client_min_messages", "warning")])
                    });
                // One plain connection first: the pool would retry a refused connection
                // until its timeout and then report only "pool timed out".
                probe_postgres(url).await.map_err(|source| {
                    connect_error(&target, DbErr::Conn(RuntimeErr::SqlxError(source)))
                })?;
            }
        }
        let conn = Database::connect(options)
            .await
            .map_err(|source| connect_error(&target, source))?;
        Ok(Db {
            conn,
            backend,
            target,
        })
    }

    /// What every command that uses the database does at start-up: [`Db::connect`],
    /// then [`Db::migrate`]. Returns the handle and the migrations applied now.
    pub async fn open(url: &str) -> Result<(Db, Vec<String>), DbError> {
        let db = Db::connect(url).await?;
        let applied = db.migrate().await?;
        for name in &applied {
            tracing::info!(migration = %name, database = %db.target, "applied database migration");
        }
        Ok((db, applied))
    }

    /// For commands that only read: connects to a database that exists already and is
    /// at this binary's schema, changing nothing — no file created, no migration run.
    /// Errors: `NoDatabase` (a SQLite file that is not there), `SchemaBehind`.
    pub async fn open_existing(url: &str) -> Result<Db, DbError> {
        if backend_of(url)? == Backend::Sqlite
            && let Some(path) = sqlite_path(url)
            && !path.is_file()
        {
            return Err(DbError::NoDatabase {
                path: path.to_owned(),
            });
        }
        let db = Db::connect(url).await?;
        let pending: Vec<String> = Migrator::get_pending_migrations(&db.conn)
            .await
            .map_err(|e| db.classify(e, DbError::Migration))?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        if !pending.is_empty() {
            return Err(DbError::SchemaBehind {
                target: db.target.to_string(),
                pending,
            });
        }
        Ok(db)
    }

    /// Applies the migrations not yet applied and returns their names (empty: the
    /// schema was up to date). On PostgreSQL they run in one transaction under an
    /// advisory lock, so replicas starting together migrate once.
    pub async fn migrate(&self) -> Result<Vec<String>, DbError> {
        let merr = |e: DbErr| self.classify(e, DbError::Migration);
        let txn = self.conn.begin().await.map_err(merr)?;
        let result = async {
            if self.backend == Backend::Postgres {
                txn.execute(Statement::from_sql_and_values(
                    txn.get_database_backend(),
                    "SELECT pg_advisory_xact_lock($1)",
                    [MIGRATION_LOCK_KEY.into()],
                ))
                .await?;
            }
            let pending: Vec<String> = Migrator::get_pending_migrations(&txn)
                .await?
                .iter()
                .map(|m| m.name().to_owned())
                .collect();
            if !pending.is_empty() {
                Migrator::up(&txn, None).await?;
            }
            Ok::<_, DbErr>(pending)
        }
        .await;
        match result {
            Ok(applied) => {
                txn.commit().await.map_err(merr)?;
                Ok(applied)
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(merr(e))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.conn.ping().await.map_err(self.e())
    }

    /// Closes the pool (waits for connections in use to be returned).
    pub async fn close(self) -> Result<(), DbError> {
        self.conn.close().await.map_err(DbError::Query)
    }

    /// Maps a driver error: `Unavailable` when transient, else `other`.
    fn classify(&self, source: DbErr, other: impl FnOnce(DbErr) -> DbError) -> DbError {
        if error::is_transient(&source) {
            DbError::Unavailable {
                target: self.target.to_string(),
                source,
            }
        } else {
            other(source)
        }
    }

    /// `map_err` adapter: `Unavailable` or `Query`.
    fn e(&self) -> impl Fn(DbErr) -> DbError + '_ {
        move |err| self.classify(err, DbError::Query)
    }

    async fn begin(&self) -> Result<DatabaseTransaction, DbError> {
        self.conn.begin().await.map_err(self.e())
    }

    /// Commits on `Ok`, rolls back on `Err`.
    async fn finish<T>(
        &self,
        txn: DatabaseTransaction,
        result: Result<T, DbError>,
    ) -> Result<T, DbError> {
        match result {
            Ok(value) => {
                txn.commit().await.map_err(self.e())?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = txn.rollback().await {
                    tracing::debug!(error = %rollback, "rollback after a failed transaction failed");
                }
                Err(e)
            }
        }
    }
}

fn connect_error(target: &str, source: DbErr) -> DbError {
    if error::is_transient(&source) {
        DbError::Unavailable {
            target: target.to_owned(),
            source,
        }
    } else {
        DbError::Connect {
            target: target.to_owned(),
            source,
        }
    }
}

async fn probe_postgres(url: &str) -> Result<(), sea_orm::SqlxError> {
    use sea_orm::sqlx::ConnectOptions as _;
    let options: sea_orm::sqlx::postgres::PgConnectOptions = url.parse()?;
    let connection = tokio::time::timeout(Duration::from_secs(10), options.connect())
        .await
        .map_err(|_| sea_orm::SqlxError::PoolTimedOut)??;
    sea_orm::sqlx::Connection::close(connection).await
}

/// Creates a directory (and its parents) readable only by the owner: it holds the
/// database with password hashes, and by default the credential encryption key.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The current time as the database stores it (microseconds).
pub(crate) fn now() -> DateTime<Utc> {
    at(Utc::now())
}

/// A time as the database stores it: PostgreSQL keeps microseconds, so SQLite does too.
pub(crate) fn at(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(crate) fn plus(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The file of a SQLite URL, or `None` for an in-memory database.
/// The backend a URL's scheme names, or `UnsupportedUrl`.
fn backend_of(url: &str) -> Result<Backend, DbError> {
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Ok(Backend::Sqlite),
        "postgres" | "postgresql" => Ok(Backend::Postgres),
        _ => Err(DbError::UnsupportedUrl {
            scheme: scheme.to_owned(),
            supported: SUPPORTED_SCHEMES,
        }),
    }
}

fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url.split_once(':').map(|(_, r)| r).unwrap_or("");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory") {
        None
    } else {
        Some(Path::new(path))
    }
}

/// The URL without a password (and without a query, which may carry one), for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if scheme.eq_ignore_ascii_case("sqlite") {
        return url.to_owned();
    }
    let rest = rest.split_once('?').map(|(r, _)| r).unwrap_or(rest);
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x?password=p"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(
            redact_url("postgres://u@127.0.0.1/x"),
            "postgres://u@127.0.0.1/x"
        );
        assert_eq!(
            redact_url("sqlite://a/b.db?mode=rwc"),
            "sqlite://a/b.db?mode=rwc"
        );
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/x.db?mode=rwc"),
            Some(Path::new("/var/lib/x.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://rel/x.db"),
            Some(Path::new("rel/x.db"))
        );
        assert_eq!(sqlite_path("sqlite:x.db"), Some(Path::new("x.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://x.db?mode=memory"), None);
    }

    #[test]
    fn times_are_microseconds() {
        let t = now();
        assert_eq!(t.timestamp_subsec_nanos() % 1000, 0);
        assert_eq!(plus(t, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
