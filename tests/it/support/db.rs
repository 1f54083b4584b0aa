//! Real databases for integration tests: every test body runs twice, on a fresh SQLite
//! file in a temporary directory and on a fresh PostgreSQL database, each its own.
//!
//! PostgreSQL is the server at `STOREPLANE_TEST_POSTGRES_URL` (an admin URL, e.g.
//! `postgres://storeplane@127.0.0.1:55432/postgres`); when unset, `scripts/postgres up`
//! is run once per process and the URL it prints is used. A test never skips: when
//! PostgreSQL cannot be reached it panics saying why.
//!
//! Tests reach the database through `storeplane::db::Db`; the raw connections here only
//! create and drop databases and sabotage a schema to prove rollbacks.

use futures::FutureExt as _;
use sea_orm::{ConnectionTrait, Database};
use std::future::Future;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use storeplane::db::{Backend, Db};
use tempfile::TempDir;

/// A fresh database of one backend, dropped after the test.
pub struct TestDb {
    pub db: Db,
    pub backend: Backend,
    /// The URL `db` was opened with (no password on the test server).
    pub url: String,
    /// The PostgreSQL database's name, dropped by `finish`.
    pg_name: Option<String>,
    _dir: Option<TempDir>,
}

impl Deref for TestDb {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

impl TestDb {
    /// Drops the database (PostgreSQL) or its directory (SQLite).
    pub async fn finish(self) {
        if let Some(name) = &self.pg_name {
            drop_database(name).await;
        }
    }

    /// Runs SQL on a separate connection to the same database (schema sabotage for
    /// rollback tests).
    pub async fn raw(&self, sql: &str) {
        let conn = Database::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("raw connection to {}: {e}", self.url));
        conn.execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }
}

/// Runs `body` on a migrated fresh SQLite database, then on a migrated fresh
/// PostgreSQL database.
pub async fn each_backend<F, Fut>(body: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        run_on(backend, true, &body).await;
    }
}

/// Like [`each_backend`], on empty (not migrated) databases.
pub async fn each_empty_backend<F, Fut>(body: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        run_on(backend, false, &body).await;
    }
}

async fn run_on<F, Fut>(backend: Backend, migrate: bool, body: &F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut test_db = open_fresh(backend, migrate).await;
    let pg_name = test_db.pg_name.clone();
    // The SQLite file's folder lives until the body is done: a body that uses only
    // `t.db` captures only that field, and the folder would go with the rest of `t`.
    let _dir = test_db._dir.take();
    let outcome = AssertUnwindSafe(body(test_db)).catch_unwind().await;
    if let Some(name) = pg_name {
        // Best effort; FORCE ends connections the test left open.
        drop_database(&name).await;
    }
    if let Err(panic) = outcome {
        eprintln!("--- the test failed on {backend}");
        std::panic::resume_unwind(panic);
    }
}

/// A fresh, migrated database of one backend, for tests that run other components
/// (an orchestrator) against it. Call [`TestDb::finish`] at the end to drop it.
pub async fn fresh(backend: Backend) -> TestDb {
    open_fresh(backend, true).await
}

async fn open_fresh(backend: Backend, migrate: bool) -> TestDb {
    let test_db = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("storeplane.db").display()
            );
            let db = Db::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("connect to {url}: {}", chain(&e)));
            TestDb {
                db,
                backend,
                url,
                pg_name: None,
                _dir: Some(dir),
            }
        }
        Backend::Postgres => {
            let name = format!("it_{}", uuid::Uuid::new_v4().simple());
            admin_execute(&format!("CREATE DATABASE {name}")).await;
            let url = database_url(postgres_admin_url(), &name);
            let db = Db::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("connect to {url}: {}", chain(&e)));
            TestDb {
                db,
                backend,
                url,
                pg_name: Some(name),
                _dir: None,
            }
        }
    };
    if migrate {
        test_db
            .db
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate {backend}: {}", chain(&e)));
    }
    test_db
}

/// The admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("STOREPLANE_TEST_POSTGRES_URL")
            && !url.trim().is_empty()
        {
            return url.trim().to_owned();
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres");
        let out = std::process::Command::new(script)
            .arg("up")
            .output()
            .unwrap_or_else(|e| panic!("could not run {script} up: {e}"));
        assert!(
            out.status.success(),
            "PostgreSQL is needed by the database tests and `{script} up` failed \
             ({}):\n{}\nStart it yourself and set STOREPLANE_TEST_POSTGRES_URL.",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            url.starts_with("postgres"),
            "`{script} up` printed no URL: {url:?}"
        );
        url
    })
}

/// The admin URL with its database replaced by `name`.
fn database_url(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..authority_end])
}

async fn admin_execute(sql: &str) {
    let url = postgres_admin_url();
    let conn = Database::connect(url).await.unwrap_or_else(|e| {
        panic!(
            "the test PostgreSQL server at {url} cannot be reached ({e}); start it with \
             `scripts/postgres up` or set STOREPLANE_TEST_POSTGRES_URL"
        )
    });
    conn.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

async fn drop_database(name: &str) {
    let Ok(conn) = Database::connect(postgres_admin_url()).await else {
        return;
    };
    if let Err(e) = conn
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
    {
        eprintln!("could not drop test database {name}: {e}");
    }
    let _ = conn.close().await;
}

/// An error with its causes, for panic messages.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    storeplane::telemetry::error_chain(err)
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls() {
        assert_eq!(
            super::database_url("postgres://u@h:1/postgres", "it_x"),
            "postgres://u@h:1/it_x"
        );
        assert_eq!(
            super::database_url("postgres://u@h:1/postgres?sslmode=disable", "it_x"),
            "postgres://u@h:1/it_x?sslmode=disable"
        );
        assert_eq!(
            super::database_url("postgres://u@h", "it_x"),
            "postgres://u@h/it_x"
        );
    }
}
