//! `DbError`: everything a database call can fail with, in words a person can act on,
//! and the classification of driver errors into them (unavailable, unique violations).
//!
//! Must not log: callers decide, and log the whole chain (`telemetry::error_chain`).

use crate::domain::StoreStatus;
use sea_orm::{DbErr, RuntimeErr, SqlErr};
use std::path::PathBuf;
use uuid::Uuid;

/// The database URL schemes Storeplane speaks.
pub const SUPPORTED_SCHEMES: &str = "sqlite, postgres (postgresql)";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("not found")]
    NotFound,

    #[error("an account with this email address already exists; sign in or use another address")]
    EmailTaken,

    #[error("you already have a store named `{name}`; choose another name or delete that store")]
    DuplicateName { name: String },

    #[error(
        "namespace `{namespace}` is already used by another store; try again (a new id gives a new namespace)"
    )]
    DuplicateNamespace { namespace: String },

    #[error("another store is already served at `{host}`")]
    DuplicateHost { host: String },

    #[error(
        "store limit reached: this account may have at most {limit} stores; delete one, or ask an admin to raise the limit"
    )]
    LimitReached { limit: u32 },

    #[error(
        "the lease on store {store_id} is no longer held by this worker (another replica took it over, or the store is gone); stop working on it"
    )]
    LeaseLost { store_id: Uuid },

    #[error(
        "store {store_id} changed while it was being worked on (generation {expected} is now {actual}); re-read it and reconcile again"
    )]
    GenerationChanged {
        store_id: Uuid,
        expected: i64,
        actual: i64,
    },

    #[error("store {store_id} is {status}; {hint}")]
    StatusConflict {
        store_id: Uuid,
        status: StoreStatus,
        hint: &'static str,
    },

    #[error("{}", unsupported_url_message(scheme, supported))]
    UnsupportedUrl {
        scheme: String,
        supported: &'static str,
    },

    #[error("there is no SQLite database at {}; set STOREPLANE_DATABASE_URL (or --database-url) to the platform's database", path.display())]
    NoDatabase { path: PathBuf },

    #[error("the database {target} is not at this binary's schema ({} migration(s) not applied: {}); this command only reads, so point it at the platform's database, migrated by the platform itself (or `storeplane migrate`)", pending.len(), pending.join(", "))]
    SchemaBehind {
        target: String,
        pending: Vec<String>,
    },

    #[error("could not create the directory {} for the SQLite database; check its permissions or set STOREPLANE_DATA_DIR / STOREPLANE_DATABASE_URL", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "could not connect to the database at {target}; check STOREPLANE_DATABASE_URL (host, credentials, database name)"
    )]
    Connect {
        target: String,
        #[source]
        source: DbErr,
    },

    #[error(
        "the database at {target} is unavailable; check that it is running and reachable, then retry"
    )]
    Unavailable {
        target: String,
        #[source]
        source: DbErr,
    },

    #[error("database migration failed; fix the cause below and run `storeplane migrate` again")]
    Migration(#[source] DbErr),

    #[error("database query failed")]
    Query(#[source] DbErr),
}

impl DbError {
    /// True when retrying later may succeed: the database is down, unreachable, busy or
    /// out of connections. The API answers 503 for these.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable { .. })
    }
}

fn unsupported_url_message(scheme: &str, supported: &str) -> String {
    if scheme.is_empty() {
        format!(
            "the database URL in STOREPLANE_DATABASE_URL (or --database-url) has no scheme; \
             supported: {supported}, e.g. sqlite:///var/lib/storeplane/storeplane.db or \
             postgres://user:password@host/db"
        )
    } else {
        format!(
            "unsupported database URL scheme \"{scheme}\" in STOREPLANE_DATABASE_URL (or \
             --database-url); supported: {supported}"
        )
    }
}

/// Whether a driver error means "the database cannot be reached or is too busy right
/// now" rather than "this statement is wrong".
pub(crate) fn is_transient(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_transient(e),
        _ => false,
    }
}

fn sqlx_transient(err: &sea_orm::SqlxError) -> bool {
    use sea_orm::SqlxError as E;
    match err {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        E::Database(db) => {
            let Some(code) = db.code() else { return false };
            if db
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // SQLite: SQLITE_BUSY (5) or SQLITE_LOCKED (6), with their extended
                // codes, once busy_timeout has run out.
                return code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
            }
            // PostgreSQL (SQLSTATE; some are all digits, e.g. 42501 permission denied,
            // which is no reason to wait): connection exceptions (class 08), shutdown /
            // not yet accepting connections (57P01-57P03), insufficient resources
            // (class 53: disk full, out of memory, too many connections), a read-only
            // server (25006: a standby, or the old primary after a failover),
            // serialization failure and deadlock (40001, 40P01: retrying succeeds),
            // lock not available (55P03).
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "25006" | "40001" | "40P01" | "55P03"
                )
        }
        _ => false,
    }
}

/// The message of a unique-constraint violation, if `err` is one. PostgreSQL names the
/// constraint (`ux_stores_user_name`); SQLite the columns (`stores.user_id, stores.name`).
pub(crate) fn unique_violation(err: &DbErr) -> Option<String> {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(msg)) => Some(msg),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_url_names_scheme_and_alternatives() {
        let e = DbError::UnsupportedUrl {
            scheme: "mysql".into(),
            supported: SUPPORTED_SCHEMES,
        };
        let text = e.to_string();
        assert!(text.contains("\"mysql\""), "{text}");
        assert!(text.contains("sqlite, postgres"), "{text}");
        let e = DbError::UnsupportedUrl {
            scheme: String::new(),
            supported: SUPPORTED_SCHEMES,
        };
        assert!(e.to_string().contains("no scheme"));
    }

    #[test]
    fn pool_timeouts_are_unavailable() {
        assert!(is_transient(&DbErr::ConnectionAcquire(
            sea_orm::error::ConnAcquireErr::Timeout
        )));
        assert!(is_transient(&DbErr::Conn(RuntimeErr::SqlxError(
            sea_orm::SqlxError::PoolTimedOut
        ))));
        assert!(!is_transient(&DbErr::Custom("boom".into())));
    }
}
