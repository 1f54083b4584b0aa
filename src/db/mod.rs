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
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, RuntimeErr, Statement, TransactionTrait,
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
        let pending = pending_migrations(&db.conn, &db.target)
            .await
            .map_err(|e| db.classify(e, DbError::Migration))?;
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
            let pending = pending_migrations(&txn, &self.target).await?;
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
        .map_or(LATEST, |t| t.min(LATEST))
}

/// The latest time stored: SQLite keeps times as RFC 3339 text, which compares in time
/// order only while the year has four digits (`+10000-…` sorts before `2026-…`).
const LATEST: DateTime<Utc> =
    DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31T23:59:59Z");

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

/// The migrations this binary knows and the database has not applied, in order. One
/// the database has applied that this binary does not know (a newer release migrated
/// it; old and new replicas run side by side during a rolling update, and a rollback
/// runs the old one on the new schema) is logged, not refused: migrations only add.
/// Reads `seaql_migrations` without creating it.
async fn pending_migrations<C: ConnectionTrait>(
    conn: &C,
    target: &impl std::fmt::Display,
) -> Result<Vec<String>, DbErr> {
    let backend = conn.get_database_backend();
    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let exists = match backend {
        // to_regclass, not information_schema (which hides tables the role may not
        // read): a role without rights gets "permission denied" from the read below,
        // not every migration reported missing.
        DbBackend::Postgres => {
            "SELECT CASE WHEN to_regclass('seaql_migrations') IS NULL THEN 0 ELSE 1 END::bigint AS n"
        }
        _ => {
            "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'seaql_migrations'"
        }
    };
    let n: i64 = match conn
        .query_one(Statement::from_string(backend, exists))
        .await?
    {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    if n == 0 {
        return Ok(known);
    }
    let applied: std::collections::HashSet<String> = conn
        .query_all(Statement::from_string(
            backend,
            "SELECT version FROM seaql_migrations",
        ))
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "version"))
        .collect::<Result<_, _>>()?;
    let mut newer: Vec<&String> = applied.iter().filter(|v| !known.contains(v)).collect();
    if !newer.is_empty() {
        newer.sort();
        tracing::warn!(
            database = %target,
            migrations = ?newer,
            "the database's schema is newer than this binary (a later release migrated it); \
             running on it, as migrations only add"
        );
    }
    Ok(known.into_iter().filter(|k| !applied.contains(k)).collect())
}

/// The URL without a password (and without a query, which may carry one), for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if scheme.eq_ignore_ascii_case("sqlite") {
        return url.to_owned();
    }
    // A URL that parses: its parts, without the password and the query (which may
    // carry one).
    if let Ok(parsed) = ::url::Url::parse(url) {
        let user = match (parsed.username(), parsed.password()) {
            ("", None) => String::new(),
            (user, None) => format!("{user}@"),
            (user, Some(_)) => format!("{user}:***@"),
        };
        let host = parsed.host_str().unwrap_or_default();
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        return format!("{scheme}://{user}{host}{port}{}", parsed.path());
    }
    // One that does not is exactly what an error message prints: a password with an
    // unencoded `/` or `@` makes it so. The user information ends at the last `@`; if
    // it holds a `?`, that `@` may be in the query instead, and nothing can be shown.
    let (userinfo, rest) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let rest = rest.split_once('?').map(|(r, _)| r).unwrap_or(rest);
    match userinfo {
        None => format!("{scheme}://{rest}"),
        Some(info) if info.contains('?') => format!("{scheme}://***"),
        Some(info) => {
            let user = info.split([':', '/']).next().unwrap_or_default();
            if user.len() == info.len() {
                format!("{scheme}://{user}@{rest}")
            } else {
                format!("{scheme}://{user}:***@{rest}")
            }
        }
    }
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
        // Unencoded `/`, `?` and `@` in a password (an unparsable URL, as errors print),
        // and an `@` in the query of one that parses.
        for (url, want) in [
            ("postgres://u:ab/cd@db/x", "postgres://u:***@db/x"),
            ("postgres://u:p?ss@db/x?sslmode=require", "postgres://***"),
            ("postgres://u:p@ss@db:5432/x", "postgres://u:***@db:5432/x"),
            ("postgres://db/x?password=p@ss", "postgres://db/x"),
            ("postgres://u@h/db?password=p@ss", "postgres://u@h/db"),
            ("postgres://u:p@h:99999/db?password=p@ss", "postgres://***"),
            ("postgres://db/x", "postgres://db/x"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
        assert_eq!(
            redact_url("sqlite://a/b.db?mode=rwc"),
            "sqlite://a/b.db?mode=rwc"
        );
    }

    #[test]
    fn far_times_stay_four_digit_years() {
        let now = Utc::now();
        assert_eq!(
            plus(now, Duration::from_secs(60)),
            now + chrono::TimeDelta::seconds(60)
        );
        for far in [Duration::from_secs(10_000 * 366 * 86_400), Duration::MAX] {
            let t = plus(now, far);
            assert_eq!(t.to_rfc3339(), "9999-12-31T23:59:59+00:00");
        }
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
        assert_eq!(plus(t, Duration::MAX), LATEST);
    }
}
