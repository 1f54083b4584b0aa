//! Wake-ups across replicas: when a store needs work, the replica that changed it sends
//! `NOTIFY storeplane_work, '<store id>'`, and every orchestrator listening claims it at
//! once instead of at its next sweep. PostgreSQL only; with SQLite there is one process
//! and the orchestrator uses an in-process signal.
//!
//! Wake-ups are hints: a lost one only delays work until the next sweep, so the
//! orchestrator must keep sweeping (`Db::claim_due`).

use super::{Backend, Db, DbError};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbErr, RuntimeErr, Statement};
use std::sync::Arc;
use uuid::Uuid;

/// The PostgreSQL channel wake-ups are sent on.
pub const WORK_CHANNEL: &str = "storeplane_work";

impl Db {
    /// Wakes every listening orchestrator for this store. PostgreSQL: `NOTIFY`
    /// (delivered when the surrounding transaction commits; here there is none, so at
    /// once). SQLite: does nothing.
    pub async fn notify_work(&self, store_id: Uuid) -> Result<(), DbError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        self.conn
            .execute(Statement::from_sql_and_values(
                self.conn.get_database_backend(),
                "SELECT pg_notify($1, $2)",
                [WORK_CHANNEL.into(), store_id.to_string().into()],
            ))
            .await
            .map_err(self.e())?;
        Ok(())
    }

    /// Starts listening for wake-ups. PostgreSQL: a dedicated connection from the pool
    /// (it counts against the pool size while the listener lives). SQLite: `None`.
    pub async fn listen_work(&self) -> Result<Option<WorkListener>, DbError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let pool = self.conn.get_postgres_connection_pool();
        let sqlx_err = |e| self.e()(DbErr::Conn(RuntimeErr::SqlxError(e)));
        let mut listener = PgListener::connect_with(pool).await.map_err(sqlx_err)?;
        listener.listen(WORK_CHANNEL).await.map_err(sqlx_err)?;
        Ok(Some(WorkListener {
            inner: listener,
            target: self.target.clone(),
        }))
    }
}

/// Receives wake-ups: the ids of stores that need work.
///
/// Reconnecting is the caller's business: when the connection drops, `recv` returns
/// `DbError::Unavailable` (wake-ups sent meanwhile are lost, so sweep); the next call
/// reconnects and listens again by itself, or fails again while the database is down
/// (back off between calls).
pub struct WorkListener {
    inner: PgListener,
    target: Arc<str>,
}

impl std::fmt::Debug for WorkListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkListener")
            .field("channel", &WORK_CHANNEL)
            .field("target", &self.target)
            .finish()
    }
}

impl WorkListener {
    /// The next store id. Payloads that are not store ids are skipped with a warning.
    pub async fn recv(&mut self) -> Result<Uuid, DbError> {
        loop {
            let unavailable = |source| DbError::Unavailable {
                target: self.target.to_string(),
                source,
            };
            match self.inner.try_recv().await {
                Ok(Some(notification)) => match notification.payload().parse::<Uuid>() {
                    Ok(id) => return Ok(id),
                    Err(_) => tracing::warn!(
                        channel = WORK_CHANNEL,
                        payload = notification.payload(),
                        "ignoring a wake-up that is not a store id"
                    ),
                },
                Ok(None) => {
                    return Err(unavailable(DbErr::Conn(RuntimeErr::Internal(
                        "the connection listening for wake-ups was lost; wake-ups sent \
                         meanwhile were missed"
                            .into(),
                    ))));
                }
                Err(e) => {
                    let source = DbErr::Conn(RuntimeErr::SqlxError(e));
                    return Err(if super::error::is_transient(&source) {
                        unavailable(source)
                    } else {
                        DbError::Query(source)
                    });
                }
            }
        }
    }
}
