//! The orchestrator: claims stores that need work through a lease in the database,
//! drives each one to ready, failed or gone, records an event per step, retries
//! transient failures with backoff, and re-applies ready stores to repair drift.
//!
//! It wakes at once when a store is created or deleted (an in-process signal, and
//! PostgreSQL LISTEN/NOTIFY across replicas); a periodic sweep is the safety net.
//! Every step is idempotent, so a replica that dies mid-way loses nothing: its leases
//! expire and another replica (or itself, restarted) carries on.
//!
//! It renders through `blueprint` and writes to the cluster through `apply`; it must
//! not render or apply by itself, and it must not know about HTTP.

mod backoff;
mod orphans;
mod worker;

pub use orphans::{AuditError, Orphan, OrphanReason, find_orphans};

use crate::apply::Applier;
use crate::blueprint::Catalog;
use crate::config::{OrchestratorSettings, PlatformSettings};
use crate::db::{Db, DbError, Store};
use crate::domain::StoreStatus;
use crate::metrics::{Metrics, StatusLabel};
use crate::telemetry::error_chain;
use crate::vault::Vault;
use chrono::Utc;
use futures::future::BoxFuture;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Wakes orchestrators when a store needs work: the one in this process at once, and
/// those of other replicas through the database (PostgreSQL NOTIFY).
#[derive(Clone)]
pub struct Waker {
    notify: Arc<Notify>,
    db: Db,
}

impl Waker {
    pub fn new(db: Db) -> Self {
        Waker {
            notify: Arc::new(Notify::new()),
            db,
        }
    }

    /// Signals that `store_id` needs work. Never fails: a lost signal only delays the
    /// work until the next sweep.
    pub async fn wake(&self, store_id: Uuid) {
        self.notify.notify_one();
        if let Err(e) = self.db.notify_work(store_id).await {
            tracing::warn!(%store_id, error = %error_chain(&e), "could not notify other replicas; the sweep will pick the store up");
        }
    }
}

/// Everything a worker needs, shared.
pub(crate) struct Context {
    pub db: Db,
    pub catalog: Arc<Catalog>,
    pub applier: Applier,
    pub vault: Arc<Vault>,
    pub settings: OrchestratorSettings,
    pub platform: PlatformSettings,
    pub instance: String,
    pub metrics: Metrics,
    pub faults: Faults,
}

/// Faults a test injects where the real components cannot fail on demand. Inert unless
/// a test sets one.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct Faults {
    renewals_fail: Arc<AtomicBool>,
    attempts_panic: Arc<AtomicBool>,
}

impl Faults {
    /// While `true`, every lease renewal fails as if the database were unreachable
    /// (the rest of the database keeps working).
    pub fn fail_renewals(&self, fail: bool) {
        self.renewals_fail.store(fail, Ordering::Relaxed);
    }

    pub(crate) fn renewals_fail(&self) -> bool {
        self.renewals_fail.load(Ordering::Relaxed)
    }

    /// While `true`, every attempt on a store panics as it starts (a bug's stand-in).
    pub fn panic_attempts(&self, panic: bool) {
        self.attempts_panic.store(panic, Ordering::Relaxed);
    }

    pub(crate) fn attempts_panic(&self) -> bool {
        self.attempts_panic.load(Ordering::Relaxed)
    }
}

/// The stores this process's workers are on. A store whose lease ran out while its
/// worker was still running (renewals failing, a paused process) is free in the
/// database, and a claim of this process would start a second worker on it alongside
/// the first (whose fence has closed, but which may still be finishing). Claims skip
/// these stores until their workers have ended.
#[derive(Clone, Default)]
struct Working(Arc<Mutex<HashSet<Uuid>>>);

impl Working {
    fn ids(&self) -> Vec<Uuid> {
        self.0
            .lock()
            .expect("working set")
            .iter()
            .copied()
            .collect()
    }

    /// Marks `id` as worked on until the guard is dropped (the worker's task ended, or
    /// was dropped); `None` when a worker already is on it.
    fn enter(&self, id: Uuid) -> Option<WorkingOn> {
        self.0
            .lock()
            .expect("working set")
            .insert(id)
            .then(|| WorkingOn {
                set: self.clone(),
                id,
            })
    }
}

/// A store in [`Working`], removed on drop.
struct WorkingOn {
    set: Working,
    id: Uuid,
}

impl Drop for WorkingOn {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.0.lock() {
            set.remove(&self.id);
        }
    }
}

/// Claims up to `limit` due stores for this process (`instance`), none that one of its
/// workers is on; each comes with its place in `working`. The leases are written as
/// `<instance>#<token of this claim>`: every lease write is conditional on its owner,
/// and an owner unique to each claim keeps a late write of an earlier attempt (a
/// release that timed out here and reached the database after the lease expired and
/// this replica claimed the store again) from ending the newer lease.
async fn claim(
    db: &Db,
    instance: &str,
    lease: Duration,
    now: chrono::DateTime<Utc>,
    limit: u64,
    working: &Working,
) -> Result<Vec<(Store, WorkingOn)>, DbError> {
    let owner = format!("{instance}#{:016x}", rand::random::<u64>());
    let stores = db
        .claim_due_except(&owner, lease, now, limit, &working.ids())
        .await?;
    Ok(stores
        .into_iter()
        .filter_map(|store| match working.enter(store.id) {
            Some(on) => Some((store, on)),
            None => {
                // Cannot happen (only this loop enters stores, and it excluded these).
                // The claim renewed the running worker's own lease, which that worker
                // goes on renewing and releases: nothing to hand back.
                tracing::error!(store_id = %store.id, "claimed a store this replica is already working on; leaving it to that worker");
                None
            }
        })
        .collect())
}

/// Waits for a claim given up on and hands back every store it won, due now, all at
/// once. `within` bounds the whole (at shutdown, inside the grace period); without it
/// the claim is awaited to its end (the pool's own timeouts bound it), so that no
/// store it wins late is left leased with no worker.
async fn hand_back(
    ctx: Arc<Context>,
    task: tokio::task::JoinHandle<Result<Vec<(Store, WorkingOn)>, DbError>>,
    within: Option<Duration>,
) {
    let work = async {
        let won = match task.await {
            Ok(Ok(won)) => won,
            Ok(Err(_)) | Err(_) => return,
        };
        let now = Utc::now();
        let releases = won.into_iter().map(|(store, on)| {
            let ctx = ctx.clone();
            async move {
                let owner = store.lease_owner.as_deref().unwrap_or(&ctx.instance);
                let released =
                    tokio::time::timeout(DB_CALL_TIMEOUT, ctx.db.release(store.id, owner, Some(now)))
                        .await;
                if !matches!(released, Ok(Ok(()))) {
                    tracing::warn!(store_id = %store.id, "could not hand back a store claimed too late; its lease expires by itself");
                }
                drop(on);
            }
        });
        futures::future::join_all(releases).await;
    };
    match within {
        Some(bound) => {
            if tokio::time::timeout(bound, work).await.is_err() {
                tracing::warn!(
                    "stopped handing back a late claim's stores; their leases expire by themselves"
                );
            }
        }
        None => work.await,
    }
}

/// How long shutdown waits for a claim in flight to hand its stores back.
const HAND_BACK_AT_SHUTDOWN: Duration = Duration::from_secs(3);

/// The orchestrator of one replica.
pub struct Orchestrator {
    ctx: Arc<Context>,
    notify: Arc<Notify>,
}

/// How long running work may finish after shutdown is requested, before it is
/// interrupted and its leases handed back.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Longest wait for one of the main loop's own database calls (claiming work, counting
/// stores): past it the database is taken as unavailable and the loop pauses.
const DB_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest pause between claims while the database is away. A claim that fails costs one
/// refused connection, and the orchestrator must resume within seconds of the database's
/// return: with the store-retry cap (2 min) it sat idle up to 111 s after a 30 s outage
/// (chaos c), every worker that stopped meanwhile having grown the pause.
const DB_PAUSE_CAP: Duration = Duration::from_secs(5);

/// Counts a running worker in the busy-workers gauge for as long as it lives, so that
/// a worker that panics is not counted busy for ever.
struct Busy<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> Busy<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Busy(gauge)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Orchestrator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        catalog: Arc<Catalog>,
        applier: Applier,
        vault: Arc<Vault>,
        settings: OrchestratorSettings,
        platform: PlatformSettings,
        waker: &Waker,
        metrics: Metrics,
    ) -> Self {
        let instance = settings.instance_id();
        Orchestrator {
            ctx: Arc::new(Context {
                db,
                catalog,
                applier,
                vault,
                settings,
                platform,
                instance,
                metrics,
                faults: Faults::default(),
            }),
            notify: waker.notify.clone(),
        }
    }

    pub fn instance(&self) -> &str {
        &self.ctx.instance
    }

    /// Test seam: the faults this orchestrator can be told to suffer.
    #[doc(hidden)]
    pub fn faults(&self) -> Faults {
        self.ctx.faults.clone()
    }

    /// Runs until `shutdown` is cancelled, then lets running work finish for a short
    /// grace period, interrupts what is left and hands its leases back.
    pub async fn run(self, shutdown: CancellationToken) {
        let ctx = self.ctx;
        let workers = ctx.settings.workers;
        let slots = Arc::new(Semaphore::new(workers));
        let interrupt = CancellationToken::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let (due_tx, mut due_rx) = mpsc::unbounded_channel::<Instant>();
        let mut timers: BinaryHeap<Reverse<Instant>> = BinaryHeap::new();
        let mut sweep = tokio::time::interval(ctx.settings.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listener = Listener::new(ctx.db.clone());
        let mut db_backoff = 0u32;
        tracing::info!(instance = %ctx.instance, workers, "orchestrator started");

        // Aborted when `run` is dropped (a crash in the tests), not left running.
        let audit = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(orphans::run(
            ctx.clone(),
            shutdown.clone(),
        )));
        let working = Working::default();
        loop {
            // Timers up to this instant are served by the claim below; one that comes
            // due while it runs is kept for the next round. Taken before the claim's
            // `now`, so a store due at a timer's time is due for the claim too.
            let round = Instant::now();
            // Claim as much due work as there are free slots.
            let free = slots.available_permits();
            let mut claim_failed = false;
            if free > 0 {
                // Bounded, and given up at shutdown: a database that stops answering
                // (not refusing) must neither hang the loop nor keep it from stopping.
                // The claim runs as its own task, so that one given up is not dropped
                // half-way with stores already won: those are handed back, due now,
                // rather than left leased with no worker until their leases expire.
                let mut task = tokio::spawn({
                    let ctx = ctx.clone();
                    let working = working.clone();
                    async move {
                        claim(
                            &ctx.db,
                            &ctx.instance,
                            ctx.settings.lease_duration,
                            Utc::now(),
                            free as u64,
                            &working,
                        )
                        .await
                    }
                });
                let claimed = tokio::select! {
                    _ = shutdown.cancelled() => {
                        hand_back(ctx.clone(), task, Some(HAND_BACK_AT_SHUTDOWN)).await;
                        break;
                    }
                    r = tokio::time::timeout(DB_CALL_TIMEOUT, &mut task) => match r {
                        Ok(joined) => Ok(joined.unwrap_or_else(|e| {
                            Err(DbError::Query(sea_orm::DbErr::Custom(format!("the claim task failed: {e}"))))
                        })),
                        Err(elapsed) => {
                            tokio::spawn(hand_back(ctx.clone(), task, None));
                            Err(elapsed)
                        }
                    },
                };
                match claimed {
                    Ok(Ok(stores)) => {
                        db_backoff = 0;
                        for (store, on) in stores {
                            let permit = slots
                                .clone()
                                .try_acquire_owned()
                                .expect("claimed no more than the free slots");
                            let ctx = ctx.clone();
                            let interrupt = interrupt.child_token();
                            let due_tx = due_tx.clone();
                            tasks.spawn(async move {
                                let busy = Busy::new(&ctx.metrics.workers_busy);
                                let next = worker::work(&ctx, store, round, interrupt).await;
                                // The store may be claimed again once its worker is done.
                                drop(on);
                                drop(busy);
                                ctx.metrics.reconciles.inc();
                                if let Some(at) = next {
                                    let wait = (at - Utc::now()).to_std().unwrap_or_default();
                                    let _ = due_tx.send(Instant::now() + wait);
                                }
                                drop(permit);
                            });
                        }
                    }
                    Ok(Err(e)) => {
                        claim_failed = true;
                        db_backoff += 1;
                        tracing::warn!(error = %error_chain(&e), "cannot claim work; the database is unavailable, pausing");
                    }
                    Err(_) => {
                        claim_failed = true;
                        db_backoff += 1;
                        tracing::warn!(
                            timeout_ms = DB_CALL_TIMEOUT.as_millis() as u64,
                            "claiming work timed out; the database does not answer, pausing"
                        );
                    }
                }
            }
            let pause = if claim_failed {
                Some(Instant::now() + backoff::delay_within(db_backoff, DB_PAUSE_CAP))
            } else {
                None
            };
            pop_due(&mut timers, round);
            let next_timer = pause.or_else(|| timers.peek().map(|Reverse(t)| *t));

            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.notify.notified(), if !claim_failed => {}
                wake = listener.recv(), if !claim_failed => match wake {
                    Wake::Store(id) => tracing::debug!(store_id = %id, "woken by another replica"),
                    Wake::Relistened => tracing::debug!("listening again; claiming work that may have been missed"),
                },
                // Not while paused: a sweep would claim again before the backoff is over.
                _ = sweep.tick(), if !claim_failed => {
                    if tokio::time::timeout(DB_CALL_TIMEOUT, refresh_gauges(&ctx)).await.is_err() {
                        tracing::warn!("counting stores for the metrics timed out; the gauges keep their last values");
                    }
                    // A store this replica resyncs confirms its entry once a period;
                    // one not confirmed for three is worked elsewhere or gone.
                    let known = ctx
                        .applier
                        .forget_converged_older_than(3 * ctx.settings.resync_period);
                    ctx.metrics.stores_known_converged.set(known as i64);
                }
                // Neither while paused: each would start a claim before the backoff is
                // over (their timers and ended workers are taken up after it).
                Some(at) = due_rx.recv(), if !claim_failed => {
                    timers.push(Reverse(at));
                    continue;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() && !claim_failed => {}
                _ = sleep_until(next_timer) => {}
            }
        }

        tracing::info!(instance = %ctx.instance, running = tasks.len(), "orchestrator stopping");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!("interrupting running work and handing its leases back");
            interrupt.cancel();
            while tasks.join_next().await.is_some() {}
        }
        if let Err(e) = audit.await
            && e.is_panic()
        {
            tracing::error!(error = %e, "the orphan audit panicked");
        }
        tracing::info!(instance = %ctx.instance, "orchestrator stopped");
    }
}

/// Drops the timers due at or before `upto`: the claim that started at `upto` served
/// them. Later ones stay, so a timer that came due during the claim wakes the loop.
fn pop_due(timers: &mut BinaryHeap<Reverse<Instant>>, upto: Instant) {
    while timers.peek().is_some_and(|Reverse(t)| *t <= upto) {
        timers.pop();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn refresh_gauges(ctx: &Context) {
    match ctx.db.count_stores_by_status().await {
        Ok(counts) => {
            for status in StoreStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                ctx.metrics
                    .stores
                    .get_or_create(&StatusLabel {
                        status: status.as_str().into(),
                    })
                    .set(n as i64);
            }
        }
        Err(e) => tracing::debug!(error = %error_chain(&e), "could not count stores"),
    }
    match ctx.db.count_due(Utc::now()).await {
        Ok(n) => {
            ctx.metrics.queue_depth.set(n as i64);
        }
        Err(e) => tracing::debug!(error = %error_chain(&e), "could not count due stores"),
    }
}

/// A connection that delivers wake-ups ([`crate::db::WorkListener`], or a fake in
/// tests).
trait WakeStream: Send {
    fn recv(&mut self) -> BoxFuture<'_, Result<Uuid, DbError>>;
}

impl WakeStream for crate::db::WorkListener {
    fn recv(&mut self) -> BoxFuture<'_, Result<Uuid, DbError>> {
        Box::pin(crate::db::WorkListener::recv(self))
    }
}

/// Opens a [`WakeStream`]; `Ok(None)`: this database has none (SQLite).
type Connect =
    Box<dyn Fn() -> BoxFuture<'static, Result<Option<Box<dyn WakeStream>>, DbError>> + Send>;

/// What the listener heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Another replica said this store needs work.
    Store(Uuid),
    /// Listening again after the connection was lost (or could not be opened): the
    /// wake-ups sent meanwhile were missed, so look for due work now rather than at
    /// the next sweep.
    Relistened,
}

/// PostgreSQL LISTEN with reconnects; pending forever on SQLite (a single process wakes
/// through the in-process signal).
struct Listener {
    connect: Connect,
    inner: Option<Box<dyn WakeStream>>,
    retry_at: Option<Instant>,
    /// Wake-ups may have been missed since the last connection (it was lost, or
    /// opening one failed): the next connection is announced as [`Wake::Relistened`].
    missed: bool,
    /// Whether a connection ever listened (the first one is no reconnection to tell).
    listened: bool,
    disabled: bool,
    /// Pause before reconnecting after a lost connection, and after a failed attempt.
    after_lost: Duration,
    after_failed: Duration,
}

impl Listener {
    fn new(db: Db) -> Self {
        Listener::with(Box::new(move || {
            let db = db.clone();
            Box::pin(async move {
                Ok(db
                    .listen_work()
                    .await?
                    .map(|l| Box::new(l) as Box<dyn WakeStream>))
            })
        }))
    }

    fn with(connect: Connect) -> Self {
        Listener {
            connect,
            inner: None,
            retry_at: None,
            // The first claim runs before the first LISTEN: a wake-up sent in between
            // is only caught by claiming again once listening.
            missed: true,
            listened: false,
            disabled: false,
            after_lost: Duration::from_secs(1),
            after_failed: Duration::from_secs(5),
        }
    }

    async fn recv(&mut self) -> Wake {
        loop {
            if self.disabled {
                return std::future::pending().await;
            }
            if self.inner.is_none() {
                // Cleared only once slept: this future is dropped whenever another
                // branch of the orchestrator's select! fires, and the delay must survive
                // that.
                if let Some(at) = self.retry_at {
                    tokio::time::sleep_until(at).await;
                    self.retry_at = None;
                }
                match (self.connect)().await {
                    Ok(Some(l)) => {
                        self.inner = Some(l);
                        if std::mem::take(&mut self.missed) {
                            if std::mem::replace(&mut self.listened, true) {
                                tracing::info!(
                                    "listening for wake-ups again; looking for work missed meanwhile"
                                );
                            }
                            return Wake::Relistened;
                        }
                    }
                    Ok(None) => {
                        self.disabled = true;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %error_chain(&e),
                            "cannot LISTEN for work; retrying in {}",
                            humantime::format_duration(self.after_failed)
                        );
                        self.missed = true;
                        self.retry_at = Some(Instant::now() + self.after_failed);
                        continue;
                    }
                }
            }
            let listener = self.inner.as_mut().expect("set above");
            match listener.recv().await {
                Ok(id) => return Wake::Store(id),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "LISTEN connection lost; reconnecting");
                    self.inner = None;
                    self.missed = true;
                    self.retry_at = Some(Instant::now() + self.after_lost);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{NewStore, NewUser, Role};

    async fn db_with_store() -> (Db, Store) {
        let (db, _) = Db::open("sqlite::memory:")
            .await
            .expect("in-memory database");
        let user = db
            .create_user(NewUser {
                email: "owner@example.test".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                role: Role::Member,
                store_limit: Some(5),
            })
            .await
            .expect("user");
        let store = db
            .create_store(NewStore::new(
                user.id,
                "shop",
                "woocommerce",
                "1.0.0",
                serde_json::json!({}),
            ))
            .await
            .expect("store");
        (db, store)
    }

    #[tokio::test]
    async fn a_store_this_replica_works_on_is_not_claimed_again_when_its_lease_lapses() {
        let (db, store) = db_with_store().await;
        let working = Working::default();
        let lease = Duration::from_secs(30);
        let t0 = Utc::now();
        let first = claim(&db, "me", lease, t0, 10, &working).await.unwrap();
        assert_eq!(
            first.iter().map(|(s, _)| s.id).collect::<Vec<_>>(),
            [store.id]
        );
        let held = db.get_store(store.id).await.unwrap().unwrap();

        // The worker is still on the store when its lease has run out (its renewals
        // failed, or the process was paused): the store is due and its lease free, but
        // this replica does not start a second worker on it, nor touch the lease.
        let later = t0 + chrono::Duration::seconds(31);
        let again = claim(&db, "me", lease, later, 10, &working).await.unwrap();
        assert!(again.is_empty(), "claimed twice by one replica");
        assert_eq!(db.get_store(store.id).await.unwrap().unwrap(), held);

        // Once the worker is done, the store can be claimed again.
        drop(first);
        let after = claim(&db, "me", lease, later, 10, &working).await.unwrap();
        assert_eq!(
            after.iter().map(|(s, _)| s.id).collect::<Vec<_>>(),
            [store.id]
        );
        assert!(working.enter(store.id).is_none(), "worked on again");
    }

    /// A fake wake-up connection: hands out `ids`, then fails (the connection was
    /// lost) or, with `lasts`, waits forever.
    struct Fake {
        ids: Vec<Uuid>,
        lasts: bool,
    }

    impl WakeStream for Fake {
        fn recv(&mut self) -> BoxFuture<'_, Result<Uuid, DbError>> {
            Box::pin(async move {
                if let Some(id) = self.ids.pop() {
                    return Ok(id);
                }
                if self.lasts {
                    std::future::pending::<()>().await;
                }
                Err(DbError::Query(sea_orm::DbErr::Custom(
                    "the connection was lost".into(),
                )))
            })
        }
    }

    #[tokio::test]
    async fn listening_again_after_a_lost_connection_wakes_the_orchestrator() {
        let store = Uuid::now_v7();
        let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = opened.clone();
        let mut listener = Listener::with(Box::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match n {
                    // The first connection delivers one wake-up, then is lost.
                    0 => Ok(Some(Box::new(Fake {
                        ids: vec![store],
                        lasts: false,
                    }) as Box<dyn WakeStream>)),
                    // The database is away for one attempt.
                    1 => Err(DbError::Query(sea_orm::DbErr::Custom("refused".into()))),
                    _ => Ok(Some(Box::new(Fake {
                        ids: Vec::new(),
                        lasts: true,
                    }) as Box<dyn WakeStream>)),
                }
            })
        }));
        listener.after_lost = Duration::from_millis(10);
        listener.after_failed = Duration::from_millis(10);
        // The first claim ran before the first LISTEN: listening looks for work once.
        assert_eq!(listener.recv().await, Wake::Relistened);
        assert_eq!(listener.recv().await, Wake::Store(store));
        // Whatever was sent while no connection listened is lost: listening again
        // says so, and the orchestrator claims at once instead of at its next sweep.
        assert_eq!(listener.recv().await, Wake::Relistened);
        assert_eq!(opened.load(Ordering::SeqCst), 3);
        // Then only real wake-ups.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), listener.recv())
                .await
                .is_err()
        );
        // The first connection of all also looks for work once (a wake-up sent between
        // the first claim and the first LISTEN is caught), then only real wake-ups.
        let mut fresh = Listener::with(Box::new(move || {
            Box::pin(async move {
                Ok(Some(Box::new(Fake {
                    ids: vec![store],
                    lasts: true,
                }) as Box<dyn WakeStream>))
            })
        }));
        assert_eq!(fresh.recv().await, Wake::Relistened);
        assert_eq!(fresh.recv().await, Wake::Store(store));
    }

    #[test]
    fn a_timer_that_comes_due_during_a_claim_is_kept() {
        let round = Instant::now();
        let mut timers = BinaryHeap::from([
            Reverse(round - Duration::from_millis(5)),
            Reverse(round),
            Reverse(round + Duration::from_millis(1)),
        ]);
        pop_due(&mut timers, round);
        assert_eq!(
            timers.into_vec(),
            [Reverse(round + Duration::from_millis(1))]
        );
    }
}
