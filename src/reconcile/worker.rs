//! One unit of work on one claimed store: provision it, repair its drift, or delete
//! it — while renewing its lease — and record the outcome with an event.

use super::{Context, backoff};
use crate::apply::{Applier, ApplyError, Desired, PhaseReport, Teardown, WriteFence, failure_key};
use crate::blueprint::{Blueprint, StoreRef, StoreSecrets};
use crate::config::OrchestratorSettings;
use crate::db::{DbError, NewEvent, Store, StoreUpdate, StoreUrlRecord};
use crate::domain::{EventType, Phase, StoreStatus};
use crate::metrics::ApplyErrorLabels;
use crate::telemetry::error_chain;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// Why one attempt did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A pod the quota refused although the store's own worst case fits the quota:
    /// usage the quota controller has not recounted yet (a create charged while the
    /// API server went away), which clears by itself. Retried like a quota refusal at
    /// apply time.
    #[error(transparent)]
    QuotaRefusal(ApplyError),
    #[error("blueprint: {0}")]
    Blueprint(String),
    #[error("the store's credentials cannot be read: {0}")]
    Credentials(String),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The attempt panicked: a bug, which the same input would hit again. Recorded as
    /// a failure like any other (the store fails, a deletion keeps retrying), so the
    /// store is not picked up again every lease period with nothing to show for it.
    #[error(
        "the attempt crashed on an internal error (a bug in Storeplane; the orchestrator's \
         log has the details)"
    )]
    Crashed,
}

/// How many attempts a quota refusal at apply time is retried before the store fails:
/// with the backoff (2 s doubling to 120 s, each delay drawn from half to all of that)
/// the last one comes at least 303 s after the first, past the quota controller's
/// default 5-minute recount (see `ApplyError::is_quota_refusal`), however the jitter
/// falls. A quota that is really too small still fails (and the provisioning deadline
/// bounds the whole).
const QUOTA_REFUSAL_ATTEMPTS: u32 = 11;

/// Longest wait for a phase to become ready when re-applying a store that is ready (a
/// resync, a drift repair). Its objects exist and were ready: a re-apply that changed
/// nothing is ready at once, and one that brought something back is ready in seconds.
/// A store whose pods crash-loop would otherwise hold a worker for the whole phase
/// timeout on every attempt, and a few such stores all of a replica's workers. A phase
/// not ready in time is a transient failure like any other: retried with backoff while
/// the store stays ready.
pub(crate) const RESYNC_READINESS_WAIT: Duration = Duration::from_secs(30);

/// How long each phase of this attempt may wait to become ready: the phase timeout
/// while the store converges, but never past its provisioning deadline (`deadline_at`),
/// so that a store stuck in its last phase fails at its deadline, not up to a phase
/// timeout later; at most [`RESYNC_READINESS_WAIT`] when it is serving. The apply
/// itself keeps every later phase within the deadline ([`wait_until`]).
fn readiness_wait(
    store: &Store,
    deadline_at: Option<DateTime<Utc>>,
    phase_timeout: Duration,
    now: DateTime<Utc>,
) -> Duration {
    if converging(store) {
        match deadline_at {
            Some(deadline) => phase_timeout.min(
                (deadline - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .max(crate::apply::MIN_PHASE_WAIT),
            ),
            None => phase_timeout,
        }
    } else {
        phase_timeout.min(RESYNC_READINESS_WAIT)
    }
}

/// Whether the store is still on its way to its current generation (provisioning, or a
/// new request on a ready store), as opposed to a serving store's re-apply.
fn converging(store: &Store) -> bool {
    store.status == StoreStatus::Provisioning || store.observed_generation < store.generation
}

/// The provisioning deadline as an instant of this process's clock, while the store
/// converges (a serving store's re-apply has none: [`RESYNC_READINESS_WAIT`] bounds it).
fn wait_until(
    store: &Store,
    deadline_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<std::time::Instant> {
    let left = (deadline_at? - now).to_std().unwrap_or(Duration::ZERO);
    converging(store).then(|| std::time::Instant::now() + left)
}

impl WorkError {
    /// Whether to retry, given how many attempts (this one included) have failed.
    fn is_transient_at(&self, attempts: u32) -> bool {
        match self {
            WorkError::Apply(e) if e.is_quota_refusal() => attempts < QUOTA_REFUSAL_ATTEMPTS,
            WorkError::QuotaRefusal(_) => attempts < QUOTA_REFUSAL_ATTEMPTS,
            other => other.is_transient(),
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            WorkError::Apply(e) => e.is_transient(),
            WorkError::QuotaRefusal(_) => true,
            WorkError::Db(e) => e.is_unavailable(),
            WorkError::Blueprint(_) | WorkError::Credentials(_) | WorkError::Crashed => false,
        }
    }
}

/// The lease this attempt holds: the owner its claim wrote — this replica's instance
/// and a token of that claim (see `reconcile::claim`) — so that a late write of an
/// earlier attempt of this same replica (a release that timed out here but still
/// reached the database) cannot touch a lease claimed after it.
fn holder<'a>(ctx: &'a Context, store: &'a Store) -> &'a str {
    store.lease_owner.as_deref().unwrap_or(&ctx.instance)
}

/// Works on `store` (already leased by this replica since `claimed_at` or earlier)
/// until done, failed or interrupted. Returns when the store should next be looked at
/// by this replica's timers (the database holds the same time for every replica).
pub(crate) async fn work(
    ctx: &Context,
    store: Store,
    claimed_at: Instant,
    interrupt: CancellationToken,
) -> Option<DateTime<Utc>> {
    let id = store.id;
    let generation = store.generation;
    let lease = ctx.settings.lease_duration;
    // Stops the work when the lease is lost or about to run out, or when a new request
    // (a delete, a retry) moved the store to a new generation: the work in hand is then
    // stale.
    let stop = CancellationToken::new();
    // Cluster writes stop where the renewer would stop the work: the renewer moves
    // the fence on with each renewal (see `WriteFence`).
    let fence = WriteFence::until((claimed_at + valid_for(lease)).into_std());
    let applier = ctx.applier.fenced(fence.clone());
    // Aborted when this function returns or is dropped (a crash of the orchestrator
    // task): a dead worker must not keep its lease alive.
    let renewer = {
        let db = ctx.db.clone();
        let owner = holder(ctx, &store).to_owned();
        let faults = ctx.faults.clone();
        let stop = stop.clone();
        let renew = {
            let db = db.clone();
            move || {
                let db = db.clone();
                let owner = owner.clone();
                let fail = faults.renewals_fail();
                async move {
                    if fail {
                        return Err(DbError::Query(sea_orm::DbErr::Custom(
                            "lease renewals fail (injected fault)".into(),
                        )));
                    }
                    db.renew_lease(id, &owner, lease, Utc::now()).await
                }
            }
        };
        let current_generation = move || {
            let db = db.clone();
            async move { Ok(db.get_store(id).await?.map(|s| s.generation)) }
        };
        AbortOnDropHandle::new(tokio::spawn(async move {
            let why = tracing::Instrument::instrument(
                keep_lease(
                    renew,
                    current_generation,
                    generation,
                    lease,
                    claimed_at,
                    fence,
                ),
                tracing::info_span!("lease", store_id = %id),
            )
            .await;
            match why {
                Stop::LeaseLost => {
                    tracing::warn!(store_id = %id, "lease lost to another replica; stopping work on the store")
                }
                Stop::LeaseRunningOut { since_renewed } => tracing::warn!(
                    store_id = %id,
                    since_renewed_ms = since_renewed.as_millis() as u64,
                    lease_ms = lease.as_millis() as u64,
                    "the lease could not be renewed for {}; stopping work on the store before \
                     the lease runs out, so that no other worker can take the store over while \
                     this one still writes to it",
                    humantime::format_duration(Duration::from_millis(since_renewed.as_millis() as u64))
                ),
                Stop::NewGeneration => {
                    tracing::info!(store_id = %id, "a new request arrived; stopping the current work")
                }
            }
            stop.cancel();
        }))
    };
    let span =
        tracing::info_span!("store", store_id = %id, name = %store.name, status = %store.status);
    let outcome = tokio::select! {
        r = std::panic::AssertUnwindSafe(tracing::Instrument::instrument(step(ctx, &applier, &store), span)).catch_unwind() => Some(r.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(store_id = %id, panic = %what, "the attempt on the store panicked");
            Err(WorkError::Crashed)
        })),
        _ = interrupt.cancelled() => None,
        _ = stop.cancelled() => None,
    };
    // The attempt is over (finished, or dropped where it stood): nothing renews the
    // lease any more, and every database call below is bounded, so a worker whose
    // database is away still ends, and its store can be worked again.
    drop(renewer);
    let bound = lease / 3;
    let now = Utc::now();
    match outcome {
        // Finished: `step` recorded the outcome and released the lease in one statement.
        Some(Ok(next)) => next,
        Some(Err(WorkError::Db(DbError::LeaseLost { .. }))) => None,
        Some(Err(WorkError::Db(DbError::GenerationChanged { .. })))
        | Some(Err(WorkError::Apply(ApplyError::Fenced { .. })))
        | None => {
            // Interrupted (shutdown, a lease that could not be renewed), or stale: hand
            // the store back due now, so this or another replica starts on its current
            // generation at once. A lost lease has nothing to hand back.
            match tokio::time::timeout(bound, ctx.db.release(id, holder(ctx, &store), Some(now)))
                .await
            {
                Ok(Ok(())) => Some(now),
                Ok(Err(DbError::LeaseLost { .. })) => None,
                Ok(Err(e)) => {
                    tracing::warn!(store_id = %id, error = %error_chain(&e), "could not release the lease; it will expire");
                    None
                }
                Err(_) => {
                    tracing::warn!(store_id = %id, "releasing the lease timed out; it will expire");
                    None
                }
            }
        }
        Some(Err(e)) => match tokio::time::timeout(bound, fail(ctx, &store, e)).await {
            Ok(next) => next,
            Err(_) => {
                tracing::warn!(store_id = %id, "recording the failure timed out; the lease will expire and the store be retried");
                None
            }
        },
    }
}

/// How long a lease renewed (or taken) at some instant is counted on: the lease less
/// one renewal period, the margin for stopping the work before the lease runs out.
fn valid_for(lease: Duration) -> Duration {
    lease - lease / 3
}

/// Why a worker must stop before its attempt is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Another replica holds the lease now, or the store is gone.
    LeaseLost,
    /// No renewal succeeded for this long: the lease is about to run out, and once it
    /// has, anyone (this replica included) may claim the store.
    LeaseRunningOut { since_renewed: Duration },
    /// A new request moved the store to a new generation.
    NewGeneration,
}

/// Renews a lease taken at `renewed_at` every third of `lease` for as long as the work
/// runs, and returns when the work must stop. Each renewal is bounded by a timeout; a
/// failed one is retried sooner. Once no renewal has succeeded for `lease` minus one
/// renewal period, the work stops: that period is the margin for stopping it and for
/// the clocks of the replicas, so that the lease is still ours until the work has
/// stopped. `fence` closes at that same point and is moved on by each renewal, so a
/// write the work sends before it is stopped is refused too. After each renewal the
/// store's generation is checked (`generation` returning `None`: the store is gone,
/// which the next renewal reports).
async fn keep_lease<R, RF, G, GF>(
    mut renew: R,
    mut generation: G,
    current: i64,
    lease: Duration,
    mut renewed_at: Instant,
    fence: WriteFence,
) -> Stop
where
    R: FnMut() -> RF,
    RF: Future<Output = Result<bool, DbError>>,
    G: FnMut() -> GF,
    GF: Future<Output = Result<Option<i64>, DbError>>,
{
    let every = lease / 3;
    let valid_for = valid_for(lease);
    let mut failed = false;
    loop {
        let deadline = renewed_at + valid_for;
        // Every third of the lease counted from the last renewal sent (a slow database
        // must not push renewals later and later), a failed one retried sooner.
        let next = if failed {
            Instant::now() + every / 2
        } else {
            renewed_at + every
        };
        let attempt = tokio::time::timeout_at(deadline, async {
            tokio::time::sleep_until(next).await;
            let sent = Instant::now();
            (sent, tokio::time::timeout(every / 2, renew()).await)
        })
        .await;
        let stops_in_ms = || {
            deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64
        };
        match attempt {
            Err(_) => {
                return Stop::LeaseRunningOut {
                    since_renewed: renewed_at.elapsed(),
                };
            }
            Ok((sent, Ok(Ok(true)))) => {
                renewed_at = sent;
                fence.extend((renewed_at + valid_for).into_std());
                failed = false;
            }
            Ok((_, Ok(Ok(false)))) => return Stop::LeaseLost,
            Ok((_, Ok(Err(e)))) => {
                tracing::warn!(error = %error_chain(&e), stops_in_ms = stops_in_ms(), "could not renew the lease; the work stops unless a renewal succeeds in time");
                failed = true;
                continue;
            }
            Ok((_, Err(_))) => {
                tracing::warn!(
                    timeout_ms = (every / 2).as_millis() as u64,
                    stops_in_ms = stops_in_ms(),
                    "renewing the lease timed out; the work stops unless a renewal succeeds in time"
                );
                failed = true;
                continue;
            }
        }
        let checked = tokio::time::timeout_at(
            renewed_at + valid_for,
            tokio::time::timeout(every / 2, generation()),
        )
        .await;
        if let Ok(Ok(Ok(Some(now)))) = checked
            && now != current
        {
            return Stop::NewGeneration;
        }
    }
}

/// One attempt. `Ok(Some(t))`: look again at `t`; `Ok(None)`: nothing more to do (the
/// store is gone).
fn step<'a>(
    ctx: &'a Context,
    applier: &'a Applier,
    store: &'a Store,
) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, WorkError>> {
    Box::pin(async move {
        if ctx.faults.attempts_panic() {
            panic!("an attempt on store {} panics (injected fault)", store.id);
        }
        match store.status {
            StoreStatus::Deleting => delete(ctx, applier, store).await,
            StoreStatus::Provisioning | StoreStatus::Ready => provision(ctx, applier, store).await,
            // A failed store waits for a retry request (which makes it due again);
            // nothing to do but hand it back, not due — unless such a request came
            // since it was read: the generation guard refuses then, and the store is
            // handed back due now instead of losing the request.
            StoreStatus::Failed => {
                ctx.db
                    .record(
                        store.id,
                        holder(ctx, store),
                        finished(
                            store,
                            StoreUpdate {
                                next_reconcile_at: Some(None),
                                ..Default::default()
                            },
                        ),
                        None,
                    )
                    .await?;
                Ok(None)
            }
        }
    })
}

/// Deletes the store's namespace and, once it is gone, the store. While the namespace
/// controller empties the namespace the worker is not held: the lease is handed back
/// and the store looked at again shortly (see [`teardown_poll`]), so deleting many
/// stores at once is bounded by the namespace controller, not by this replica's
/// workers. A namespace terminating for longer than the teardown timeout fails the
/// attempt with what holds it, retried with backoff like any failed deletion.
async fn delete(
    ctx: &Context,
    applier: &Applier,
    store: &Store,
) -> Result<Option<DateTime<Utc>>, WorkError> {
    if let Teardown::Terminating { elapsed } = applier.start_teardown(&store.namespace).await? {
        let next = Utc::now() + to_chrono(teardown_poll(elapsed));
        ctx.db
            .release(store.id, holder(ctx, store), Some(next))
            .await?;
        tracing::debug!(namespace = %store.namespace, terminating_ms = elapsed.as_millis() as u64, "namespace terminating; looking again shortly");
        return Ok(Some(next));
    }
    ctx.db
        .delete_store(
            store.id,
            holder(ctx, store),
            NewEvent::new(
                EventType::NamespaceDeleted,
                format!("namespace {} deleted; store removed", store.namespace),
            )
            .by(&ctx.instance),
        )
        .await?;
    tracing::info!(namespace = %store.namespace, "store deleted");
    Ok(None)
}

/// An apply's failure as the worker weighs it. A pod refused by the quota while the
/// store's own worst case (every replica, surge, Job and CronJob at once) fits that
/// quota can only be refused for usage that is not the store's, or not real: retried.
/// One whose store does not fit (a blueprint's `quota-fit` warning) fails at once.
fn classify(e: ApplyError, fits_quota: bool) -> WorkError {
    match e {
        ApplyError::Failed { ref reason, .. }
            if fits_quota && reason.contains("exceeded quota") =>
        {
            WorkError::QuotaRefusal(e)
        }
        e => WorkError::Apply(e),
    }
}

/// How soon to look again at a namespace terminating for `elapsed`: a quarter of that,
/// between one and five seconds. Most namespaces go within seconds and are seen gone
/// soon after; a slow one is not looked at more than every five seconds.
fn teardown_poll(elapsed: Duration) -> Duration {
    (elapsed / 4).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

async fn provision(
    ctx: &Context,
    applier: &Applier,
    store: &Store,
) -> Result<Option<DateTime<Utc>>, WorkError> {
    let converging = converging(store);
    let mut deadline_at = store.provision_deadline_at;
    if converging && deadline_at.is_none() {
        let deadline = Utc::now() + to_chrono(ctx.settings.provision_deadline);
        deadline_at = Some(deadline);
        ctx.db
            .record(
                store.id,
                holder(ctx, store),
                guarded(
                    store,
                    StoreUpdate {
                        provision_deadline_at: Some(Some(deadline)),
                        ..Default::default()
                    },
                ),
                None,
            )
            .await?;
    }
    let blueprint = ctx
        .catalog
        .get(&store.engine)
        .map_err(|e| WorkError::Blueprint(e.to_string()))?;
    let secrets = credentials(ctx, store, blueprint).await?;
    let store_ref = StoreRef {
        id: store.id,
        name: store.name.clone(),
        namespace: store.namespace.clone(),
    };
    let rendered = blueprint
        .render_checked(&crate::blueprint::RenderInput {
            store: &store_ref,
            params: &store.params,
            secrets: &secrets,
            platform: &ctx.platform,
        })
        .map_err(|e| WorkError::Blueprint(e.to_string()))?;
    let fits_quota = !rendered
        .policy_warnings
        .iter()
        .any(|f| f.rule == "quota-fit");
    let urls: Vec<StoreUrlRecord> = rendered
        .urls
        .iter()
        .map(|u| StoreUrlRecord {
            name: u.name.clone(),
            url: u.url.clone(),
        })
        .collect();
    let desired: Vec<Desired> = rendered.objects.into_iter().map(Desired::from).collect();

    // Phase events are written as phases finish, so the dashboard shows progress live.
    // Each is recorded only if this generation's log lacks it (see `phase_event`): an
    // earlier attempt may have applied a phase, or part of it, and died before or
    // after writing its event. So resuming after a crash neither repeats nor skips a
    // step of the story.
    let (tx, mut rx) = mpsc::unbounded_channel::<PhaseReport>();
    let recorder: futures::future::BoxFuture<'_, Result<(), DbError>> = Box::pin(async {
        let mut history: Option<Recorded> = None;
        while let Some(report) = rx.recv().await {
            let event = match phase_event(&report, &store.namespace, converging) {
                Step::Record(event) => Some(event),
                Step::Skip => None,
                Step::FirstMissing(told) => {
                    if history.is_none() {
                        history = Some(Recorded::load(ctx, store.id).await?);
                    }
                    let recorded = history.as_ref().expect("loaded above");
                    told.into_iter()
                        .find(|event| !recorded.has(event, report.phase))
                }
            };
            if let Some(event) = event {
                if let Some(recorded) = history.as_mut() {
                    recorded.note(&event, report.phase);
                }
                ctx.db
                    .record(
                        store.id,
                        holder(ctx, store),
                        guarded(store, StoreUpdate::default()),
                        Some(event.by(&ctx.instance)),
                    )
                    .await?;
            }
        }
        Ok::<(), DbError>(())
    });
    // A recorder that cannot write (the database is away, the store moved on to a new
    // generation, the lease is lost) stops the apply too: its work can no longer be
    // told. An apply that ends lets the recorder tell what it finished.
    let recording_failed = CancellationToken::new();
    let recorder = async {
        let r = recorder.await;
        if r.is_err() {
            recording_failed.cancel();
        }
        r
    };
    let store_id = store.id.to_string();
    let apply = async {
        let r = tokio::select! {
            r = applier.apply_store_within(
                &store.namespace,
                &store_id,
                &desired,
                &tx,
                readiness_wait(
                    store,
                    deadline_at,
                    applier.settings().phase_timeout,
                    Utc::now(),
                ),
                wait_until(store, deadline_at, Utc::now()),
            ) => Some(r),
            _ = recording_failed.cancelled() => None,
        };
        drop(tx);
        r
    };
    let (applied, recorded) = tokio::join!(apply, recorder);
    recorded?;
    let report = applied
        .expect("the apply is cut short only when recording failed")
        .map_err(|e| classify(e, fits_quota))?;

    if report.known_converged {
        ctx.metrics.applies_skipped.inc();
        tracing::debug!(
            "nothing changed since the last apply proved the store converged; no apply sent"
        );
    }
    let now = Utc::now();
    let next = now + to_chrono(ctx.settings.resync_period);
    let total = report.counts.created + report.counts.updated + report.counts.unchanged;
    if converging {
        let applied = NewEvent::new(
            EventType::ResourcesApplied,
            format!(
                "{total} objects applied ({} created, {} updated, {} unchanged){}",
                report.counts.created,
                report.counts.updated,
                report.counts.unchanged,
                pruned_text(&report)
            ),
        )
        .by(&ctx.instance);
        let url_text = urls
            .iter()
            .map(|u| format!("{}: {}", u.name, u.url))
            .collect::<Vec<_>>()
            .join(", ");
        let ready = NewEvent::new(
            EventType::StoreReady,
            format!("store is ready at {url_text}"),
        )
        .by(&ctx.instance);
        // Both events and the update in one transaction: a crash or a new request in
        // between can neither leave `resources_applied` without its `store_ready` nor
        // have it told twice by the attempt that carries on.
        ctx.db
            .record_events(
                store.id,
                holder(ctx, store),
                finished(
                    store,
                    StoreUpdate {
                        status: Some(StoreStatus::Ready),
                        urls: Some(urls),
                        error_message: Some(None),
                        observed_generation: Some(store.generation),
                        attempts: Some(0),
                        next_reconcile_at: Some(Some(next)),
                        provision_deadline_at: Some(None),
                        blueprint_version: Some(blueprint.version.clone()),
                        ..Default::default()
                    },
                ),
                &[applied, ready],
            )
            .await?;
        let took = (now - store.created_at).to_std().unwrap_or_default();
        // Create to ready, for stores ready on their first request: a store retried
        // after failing (a later generation) would count the time it sat failed.
        if store.generation == 1 && store.observed_generation == 0 {
            ctx.metrics.provisioning_seconds.observe(took.as_secs_f64());
        }
        tracing::info!(took_ms = took.as_millis() as u64, "store ready");
    } else {
        // A claim kept on its own is told too: it is what a person has to act on.
        let drift =
            report.counts.changed() > 0 || !report.pruned.is_empty() || !report.kept.is_empty();
        let event = drift.then(|| {
            NewEvent::new(
                EventType::DriftRepaired,
                format!(
                    "re-applied the store: {} created, {} updated{}",
                    report.counts.created,
                    report.counts.updated,
                    pruned_text(&report)
                ),
            )
            .by(&ctx.instance)
        });
        if drift {
            tracing::info!(
                created = report.counts.created,
                updated = report.counts.updated,
                "drift repaired"
            );
        }
        ctx.db
            .record(
                store.id,
                holder(ctx, store),
                finished(
                    store,
                    StoreUpdate {
                        urls: Some(urls),
                        error_message: Some(None),
                        attempts: Some(0),
                        next_reconcile_at: Some(Some(next)),
                        blueprint_version: Some(blueprint.version.clone()),
                        ..Default::default()
                    },
                ),
                event,
            )
            .await?;
    }
    Ok(Some(next))
}

/// The store's credentials: opened from the database, or generated and sealed into it
/// before anything is applied, so a crash can never leave a Secret in the cluster whose
/// values are lost. Later renders reuse them; a blueprint that adds a credential gets
/// only the new one generated.
async fn credentials(
    ctx: &Context,
    store: &Store,
    blueprint: &Blueprint,
) -> Result<StoreSecrets, WorkError> {
    let existing = match &store.secrets_sealed {
        Some(sealed) => {
            let plain = ctx
                .vault
                .open(sealed)
                .map_err(|e| WorkError::Credentials(e.to_string()))?;
            let secrets: StoreSecrets = serde_json::from_slice(&plain)
                .map_err(|e| WorkError::Credentials(e.to_string()))?;
            Some(secrets)
        }
        None => None,
    };
    let had = existing.as_ref().map(|s| s.names().count()).unwrap_or(0);
    let secrets = match existing {
        Some(s) => blueprint.complete_secrets(s),
        None => blueprint.generate_secrets(),
    };
    if secrets.names().count() != had {
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&secrets).map_err(|e| WorkError::Credentials(e.to_string()))?,
        );
        let sealed = ctx.vault.seal(&plain);
        ctx.db
            .record(
                store.id,
                holder(ctx, store),
                guarded(
                    store,
                    StoreUpdate {
                        secrets_sealed: Some(Some(sealed)),
                        ..Default::default()
                    },
                ),
                None,
            )
            .await?;
    }
    Ok(secrets)
}

/// Records a failed attempt and hands the lease back (see [`after_failure`]).
fn fail<'a>(
    ctx: &'a Context,
    store: &'a Store,
    err: WorkError,
) -> BoxFuture<'a, Option<DateTime<Utc>>> {
    Box::pin(fail_inner(ctx, store, err))
}

async fn fail_inner(ctx: &Context, store: &Store, err: WorkError) -> Option<DateTime<Utc>> {
    let attempts = store.attempts.saturating_add(1);
    let transient = err.is_transient_at(attempts);
    let now = Utc::now();
    let Failure {
        update,
        event,
        next,
    } = after_failure(store, transient, error_chain(&err), &ctx.settings, now);
    // Labelled by what happens next, which is not the error's class alone: a deletion
    // retries a permanent error, a ready store retries at the next resync, and a
    // converging store past its deadline gives up on a transient one.
    ctx.metrics
        .apply_errors
        .get_or_create(&ApplyErrorLabels {
            outcome: if next.is_some() { "retried" } else { "failed" }.into(),
        })
        .inc();
    match ctx
        .db
        .record(
            store.id,
            holder(ctx, store),
            finished(store, update),
            event.map(|e| e.by(&ctx.instance)),
        )
        .await
    {
        Ok(_) => next,
        Err(DbError::GenerationChanged { .. }) => {
            // A new request arrived while this attempt failed: it wins.
            ctx.db
                .release(store.id, holder(ctx, store), Some(now))
                .await
                .ok()
                .map(|_| now)
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "could not record the failure; the lease will expire and the store be retried");
            None
        }
    }
}

/// What a failed attempt records.
#[derive(Debug)]
struct Failure {
    update: StoreUpdate,
    /// `None`: the same failure as last time (by [`failure_key`]), in a loop that never
    /// gives up (a deletion, a ready store's re-apply); the log already says it, and the
    /// store's `error_message` and `attempts` still tell the count.
    event: Option<NewEvent>,
    /// When to look again; `None`: not until a request.
    next: Option<DateTime<Utc>>,
}

/// What to record after an attempt on `store` failed with `message`:
/// - while the error is transient (and, while converging, the deadline has not passed),
///   a retry with backoff;
/// - a ready store whose re-apply (a resync, a drift repair) fails for good stays
///   `ready`: it still serves what was applied before. The error is recorded and the
///   re-apply tried again at the next resync, so drift repair carries on and a fix
///   (e.g. a blueprint or cluster change) is picked up;
/// - a converging store otherwise becomes `failed` with the reason, and waits for a
///   retry request;
/// - deletion never gives up: a namespace that will not go away is reported and retried
///   (every one to two minutes when the error is not transient) until whatever holds
///   it is resolved.
///
/// In the two loops that never give up, a failure that repeats the previous one adds no
/// event, so a store stuck for days does not fill its log. "Repeats" compares the
/// failures' [`failure_key`]s: the text without the time waited and the counters that
/// change with every attempt of the same failure.
fn after_failure(
    store: &Store,
    transient: bool,
    message: String,
    settings: &OrchestratorSettings,
    now: DateTime<Utc>,
) -> Failure {
    let attempts = store.attempts.saturating_add(1);
    let deleting = store.status == StoreStatus::Deleting;
    let converging = converging(store);
    let serving = store.status == StoreStatus::Ready && !converging;
    let past_deadline = converging && store.provision_deadline_at.is_some_and(|d| now >= d);
    let repeated = store
        .error_message
        .as_deref()
        .is_some_and(|previous| failure_key(previous) == failure_key(&message));
    if deleting || (transient && !past_deadline) {
        // A lasting fault is retried at the cap, jittered so stores stuck together do
        // not retry together.
        let delay = backoff::delay(if transient { attempts } else { u32::MAX });
        let next = now + to_chrono(delay);
        tracing::warn!(attempts, retry_in_ms = delay.as_millis() as u64, error = %message, "attempt failed; will retry");
        let event = (!((deleting || serving) && repeated)).then(|| {
            NewEvent::new(
                EventType::RetryScheduled,
                format!(
                    "attempt {attempts} failed: {message}; retrying in {}",
                    in_words(delay)
                ),
            )
        });
        retried(attempts, message, next, event)
    } else if serving {
        let delay = settings.resync_period;
        let next = now + to_chrono(delay);
        tracing::warn!(attempts, retry_in_ms = delay.as_millis() as u64, error = %message, "re-applying a ready store failed; it stays ready and is re-applied at the next resync");
        let event = (!repeated).then(|| {
            NewEvent::new(
                EventType::RetryScheduled,
                format!(
                    "re-applying the ready store failed: {message}; it stays ready and keeps \
                     serving what was applied before; next re-apply at the resync in {}",
                    in_words(delay)
                ),
            )
        });
        retried(attempts, message, next, event)
    } else {
        let reason = if transient {
            format!(
                "gave up after {} ({attempts} attempts): {message}",
                humantime::format_duration(settings.provision_deadline)
            )
        } else {
            message
        };
        tracing::warn!(error = %reason, "store failed");
        Failure {
            update: StoreUpdate {
                status: Some(StoreStatus::Failed),
                attempts: Some(attempts),
                error_message: Some(Some(reason.clone())),
                next_reconcile_at: Some(None),
                provision_deadline_at: Some(None),
                ..Default::default()
            },
            event: Some(NewEvent::new(EventType::ProvisioningFailed, reason)),
            next: None,
        }
    }
}

/// A failure to be tried again at `next`, told by `event` (`None`: already told).
fn retried(
    attempts: u32,
    message: String,
    next: DateTime<Utc>,
    event: Option<NewEvent>,
) -> Failure {
    Failure {
        update: StoreUpdate {
            attempts: Some(attempts),
            error_message: Some(Some(message)),
            next_reconcile_at: Some(Some(next)),
            ..Default::default()
        },
        event,
        next: Some(next),
    }
}

/// A delay for a message, in whole seconds at least.
fn in_words(delay: Duration) -> String {
    humantime::format_duration(Duration::from_secs(delay.as_secs().max(1))).to_string()
}

/// `update`, written only if no new request changed the store since it was claimed.
fn guarded(store: &Store, update: StoreUpdate) -> StoreUpdate {
    StoreUpdate {
        expected_generation: Some(store.generation),
        ..update
    }
}

/// `update` as the last word of an attempt: guarded, and releasing the lease in the
/// same statement.
fn finished(store: &Store, update: StoreUpdate) -> StoreUpdate {
    StoreUpdate {
        release_lease: true,
        ..guarded(store, update)
    }
}

/// What to do with a finished phase's event.
enum Step {
    Record(NewEvent),
    /// Record the first of these that this generation's log lacks, if any.
    FirstMissing(Vec<NewEvent>),
    Skip,
}

/// The event a finished phase tells. While a store converges, each step of its story
/// is told once per generation, however many attempts (and crashes) it takes: a phase
/// is recorded only if this generation's log lacks it. The foundation phase of a store
/// whose namespace exists tells `namespace_created` if the log lacks it (an earlier
/// attempt created the namespace and died before telling it, maybe before applying
/// the rest of the phase), and otherwise a `phase_completed` if it changed something
/// (a retried store's quota brought back, say).
fn phase_event(report: &PhaseReport, namespace: &str, converging: bool) -> Step {
    let namespace_event = || {
        NewEvent::new(
            EventType::NamespaceCreated,
            format!(
                "namespace {namespace} created with {}",
                list_objects(report, |k| k != "Namespace")
            ),
        )
    };
    let has_namespace = report.objects.iter().any(|o| o.kind == "Namespace");
    // The namespace itself, not any object of the phase: a drift repair that brings
    // back a NetworkPolicy did not create the namespace.
    if report.phase == Phase::Foundation && report.created.iter().any(|o| o.kind == "Namespace") {
        return Step::Record(namespace_event());
    }
    if !converging {
        return Step::Skip;
    }
    let unchanged = report.counts.changed() == 0;
    let phase_completed = || {
        NewEvent::new(
            EventType::PhaseCompleted,
            format!(
                "{} ready in {:.1}s: {}",
                report.phase,
                report.elapsed.as_secs_f64(),
                list_objects(report, |_| true)
            ),
        )
    };
    if report.phase == Phase::Foundation && has_namespace {
        let mut told = vec![namespace_event()];
        if !unchanged {
            told.push(phase_completed());
        }
        return Step::FirstMissing(told);
    }
    Step::FirstMissing(vec![phase_completed()])
}

/// The phase a `phase_completed` event (as [`phase_event`] writes it) is about.
fn completed_phase(message: &str) -> Option<Phase> {
    message.split_once(' ')?.0.parse().ok()
}

/// The steps of the current generation's story already in a store's log.
struct Recorded {
    /// `namespace_created` is in the log (of any generation: it is told once).
    namespace: bool,
    /// Phases with a `phase_completed` since the generation began (`created` or
    /// `retry_requested`).
    phases: Vec<Phase>,
}

impl Recorded {
    async fn load(ctx: &Context, store: uuid::Uuid) -> Result<Recorded, DbError> {
        let log = ctx
            .db
            .events_of_types(
                store,
                &[
                    EventType::Created,
                    EventType::RetryRequested,
                    EventType::NamespaceCreated,
                    EventType::PhaseCompleted,
                ],
            )
            .await?;
        Ok(Recorded::from_log(
            log.iter().map(|e| (e.event_type, e.message.as_str())),
        ))
    }

    fn from_log<'a>(log: impl Iterator<Item = (EventType, &'a str)>) -> Recorded {
        let mut recorded = Recorded {
            namespace: false,
            phases: Vec::new(),
        };
        for (kind, message) in log {
            match kind {
                EventType::Created | EventType::RetryRequested => recorded.phases.clear(),
                EventType::NamespaceCreated => recorded.namespace = true,
                EventType::PhaseCompleted => recorded.phases.extend(completed_phase(message)),
                _ => {}
            }
        }
        recorded
    }

    /// `event`, about `phase`, is in the log now.
    fn note(&mut self, event: &NewEvent, phase: Phase) {
        match event.event_type {
            EventType::NamespaceCreated => self.namespace = true,
            _ => self.phases.push(phase),
        }
    }

    fn has(&self, event: &NewEvent, phase: Phase) -> bool {
        match event.event_type {
            EventType::NamespaceCreated => self.namespace,
            _ => self.phases.contains(&phase),
        }
    }
}

fn list_objects(report: &PhaseReport, keep: impl Fn(&str) -> bool) -> String {
    report
        .objects
        .iter()
        .filter(|o| keep(&o.kind))
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What pruning deleted and what it kept, for an event's message.
fn pruned_text(report: &crate::apply::StoreReport) -> String {
    let list = |keys: &[crate::apply::ObjectKey]| {
        keys.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = String::new();
    if !report.pruned.is_empty() {
        text.push_str(&format!("; pruned {}", list(&report.pruned)));
    }
    if !report.kept.is_empty() {
        text.push_str(&format!(
            "; kept {} (no longer in the blueprint, but it holds data: delete it by hand \
             once nothing needs it)",
            list(&report.kept)
        ));
    }
    text
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{ApplyCounts, ObjectKey};

    /// A phase of `kinds` whose first `created` objects are new.
    fn report(phase: Phase, kinds: &[&str], created: usize, unchanged: usize) -> PhaseReport {
        let objects: Vec<ObjectKey> = kinds
            .iter()
            .map(|k| ObjectKey {
                kind: (*k).into(),
                name: "x".into(),
            })
            .collect();
        PhaseReport {
            phase,
            created: objects[..created].to_vec(),
            objects,
            counts: ApplyCounts {
                created,
                updated: 0,
                unchanged,
            },
            elapsed: Duration::from_millis(1200),
        }
    }

    fn kind(step: &Step) -> (&'static str, Vec<EventType>) {
        match step {
            Step::Record(e) => ("record", vec![e.event_type]),
            Step::FirstMissing(told) => ("if-missing", told.iter().map(|e| e.event_type).collect()),
            Step::Skip => ("skip", vec![]),
        }
    }

    const LEASE: Duration = Duration::from_millis(1500);

    fn unavailable() -> DbError {
        DbError::Query(sea_orm::DbErr::Custom("the database is away".into()))
    }

    /// How long `keep_lease` took to stop, and why; `None`: still going after two
    /// leases.
    async fn run_keep_lease<R, RF>(renew: R, generation: i64) -> Option<(Stop, Duration)>
    where
        R: FnMut() -> RF,
        RF: Future<Output = Result<bool, DbError>>,
    {
        let claimed = Instant::now();
        let stop = tokio::time::timeout(
            2 * LEASE,
            keep_lease(
                renew,
                || async move { Ok(Some(generation)) },
                1,
                LEASE,
                claimed,
                WriteFence::default(),
            ),
        )
        .await
        .ok()?;
        Some((stop, claimed.elapsed()))
    }

    #[tokio::test]
    async fn the_write_fence_closes_where_the_work_stops_and_each_renewal_moves_it_on() {
        let claimed = Instant::now();
        let valid_for = LEASE - LEASE / 3;
        let renewed = WriteFence::until((claimed + valid_for).into_std());
        let still_going = tokio::time::timeout(
            LEASE,
            keep_lease(
                || async { Ok(true) },
                || async { Ok(Some(1)) },
                1,
                LEASE,
                claimed,
                renewed.clone(),
            ),
        )
        .await;
        assert!(still_going.is_err(), "stopped: {still_going:?}");
        assert!(renewed.check("Deployment/web").is_ok());
        assert!(renewed.open_until().expect("a fence") > (claimed + valid_for).into_std());

        let claimed = Instant::now();
        let failing = WriteFence::until((claimed + valid_for).into_std());
        let stop = keep_lease(
            || async { Err(unavailable()) },
            || async { Ok(Some(1)) },
            1,
            LEASE,
            claimed,
            failing.clone(),
        )
        .await;
        assert!(matches!(stop, Stop::LeaseRunningOut { .. }), "{stop:?}");
        // A write the stopped work would still send is refused, and says which.
        let refused = failing.check("Deployment/web").unwrap_err().to_string();
        assert!(refused.contains("not writing Deployment/web"), "{refused}");
        // The default fence (the CLI, tests) never closes.
        assert!(WriteFence::default().check("Namespace/x").is_ok());
    }

    #[tokio::test]
    async fn a_worker_whose_renewals_fail_stops_before_its_lease_runs_out() {
        let failing = run_keep_lease(|| async { Err(unavailable()) }, 1);
        let hanging = run_keep_lease(
            || async {
                std::future::pending::<()>().await;
                Ok(true)
            },
            1,
        );
        let (failing, hanging) = tokio::join!(failing, hanging);
        for (what, outcome) in [("failing", failing), ("hanging", hanging)] {
            let (stop, took) = outcome.unwrap_or_else(|| panic!("{what} renewals: never stopped"));
            assert!(
                matches!(stop, Stop::LeaseRunningOut { since_renewed } if since_renewed >= LEASE * 2 / 3),
                "{what}: {stop:?}"
            );
            // Stopped once a renewal period of the lease was left, before it ran out.
            assert!(
                took >= LEASE * 2 / 3 && took < LEASE,
                "{what} renewals: stopped after {took:?} of a {LEASE:?} lease"
            );
        }
    }

    #[tokio::test]
    async fn renewals_that_succeed_even_every_other_time_keep_the_work_going() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let always = run_keep_lease(
            || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(true)
            },
            1,
        );
        let flaky_calls = std::sync::atomic::AtomicUsize::new(0);
        let flaky = run_keep_lease(
            || async {
                // A failed renewal is retried sooner: fail, succeed, fail, …
                if flaky_calls
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(2)
                {
                    Err(unavailable())
                } else {
                    Ok(true)
                }
            },
            1,
        );
        let (always, flaky) = tokio::join!(always, flaky);
        assert_eq!(always, None, "stopped although every renewal succeeded");
        assert_eq!(flaky, None, "stopped although the lease never ran short");
        assert!(calls.into_inner() >= 4);
    }

    #[tokio::test]
    async fn a_lost_lease_or_a_new_generation_stops_the_work_at_the_next_renewal() {
        let lost = run_keep_lease(|| async { Ok(false) }, 1);
        let moved_on = run_keep_lease(|| async { Ok(true) }, 2);
        let (lost, moved_on) = tokio::join!(lost, moved_on);
        for (outcome, want) in [(lost, Stop::LeaseLost), (moved_on, Stop::NewGeneration)] {
            let (stop, took) = outcome.expect("stopped");
            assert_eq!(stop, want);
            assert!(took < LEASE * 2 / 3, "{want:?} after {took:?}");
        }
    }

    #[test]
    fn a_quota_refusal_is_retried_past_the_quota_controllers_recount() {
        // The shortest the jitter can make it: half of each delay's ceiling.
        let earliest_last_attempt: Duration = (1..QUOTA_REFUSAL_ATTEMPTS)
            .map(|attempt| backoff::ceiling(attempt) / 2)
            .sum();
        assert!(
            earliest_last_attempt > Duration::from_secs(300),
            "the last attempt may come {earliest_last_attempt:?} after the first, before the \
             quota controller's 5-minute recount"
        );
    }

    #[test]
    fn a_quota_refusal_is_retried_when_the_store_fits_its_quota_and_fails_when_not() {
        let refused = || ApplyError::Failed {
            object: crate::apply::ObjectKey {
                kind: "Job".into(),
                name: "wp-install".into(),
            },
            reason: "FailedCreate: pods \"wp-install-x\" is forbidden: exceeded quota: \
                     store-quota, requested: limits.cpu=500m"
                .into(),
        };
        let fits = classify(refused(), true);
        assert!(matches!(fits, WorkError::QuotaRefusal(_)), "{fits:?}");
        assert_eq!(fits.to_string(), refused().to_string(), "told as it was");
        assert!(fits.is_transient_at(1));
        assert!(fits.is_transient_at(QUOTA_REFUSAL_ATTEMPTS - 1));
        assert!(
            !fits.is_transient_at(QUOTA_REFUSAL_ATTEMPTS),
            "not for ever"
        );
        // A store whose own worst case overruns its quota fails at once.
        assert!(!classify(refused(), false).is_transient_at(1));
        // Other refusals are what they were.
        let crash = ApplyError::Failed {
            object: crate::apply::ObjectKey {
                kind: "Deployment".into(),
                name: "wordpress".into(),
            },
            reason: "CrashLoopBackOff".into(),
        };
        assert!(!classify(crash, true).is_transient_at(1));
    }

    fn store(status: StoreStatus, observed_generation: i64) -> Store {
        let now = Utc::now();
        Store {
            id: uuid::Uuid::now_v7(),
            user_id: uuid::Uuid::now_v7(),
            name: "shop".into(),
            engine: "woocommerce".into(),
            blueprint_version: "1.0.0".into(),
            params: serde_json::json!({}),
            status,
            namespace: "store-shop-00000001".into(),
            urls: Vec::new(),
            error_message: None,
            generation: 1,
            observed_generation,
            lease_owner: Some("me".into()),
            lease_until: None,
            secrets_sealed: None,
            next_reconcile_at: Some(now),
            attempts: 0,
            provision_deadline_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_terminating_namespace_is_looked_at_again_within_seconds() {
        let s = Duration::from_secs;
        assert_eq!(teardown_poll(Duration::ZERO), s(1), "just deleted");
        assert_eq!(teardown_poll(s(3)), s(1));
        assert_eq!(teardown_poll(s(12)), s(3));
        assert_eq!(
            teardown_poll(s(600)),
            s(5),
            "never less often than every 5 s"
        );
    }

    #[test]
    fn loops_that_never_give_up_tell_a_repeated_failure_once() {
        let settings = crate::config::OrchestratorSettings::default();
        let now = Utc::now();
        let held = "namespace store-shop-00000001 is still terminating: finalizer example.com/hold";
        for status in [StoreStatus::Deleting, StoreStatus::Ready] {
            let mut stuck = store(status, 1);
            let first = after_failure(&stuck, false, held.into(), &settings, now);
            assert!(
                first.event.is_some(),
                "{status:?}: the first failure is told"
            );
            stuck.error_message = Some(held.into());
            stuck.attempts = 1;
            let again = after_failure(&stuck, false, held.into(), &settings, now);
            assert!(
                again.event.is_none(),
                "{status:?}: the same failure is not told again"
            );
            assert_eq!(again.update.attempts, Some(2), "but counted");
            assert!(again.next.is_some(), "{status:?}: and retried");
            let other = after_failure(&stuck, false, "another reason".into(), &settings, now);
            assert!(other.event.is_some(), "{status:?}: a new reason is told");
        }
        // A stuck deletion retries at the cap, jittered: stores stuck together spread.
        let delays: std::collections::BTreeSet<_> = (0..20)
            .map(|_| {
                let f = after_failure(
                    &store(StoreStatus::Deleting, 1),
                    false,
                    held.into(),
                    &settings,
                    now,
                );
                let delay = (f.next.unwrap() - now).to_std().unwrap();
                assert!(
                    delay >= backoff::CAP / 2 && delay <= backoff::CAP,
                    "{delay:?}"
                );
                delay
            })
            .collect();
        assert!(delays.len() > 1, "jittered: {delays:?}");
        // While provisioning, every retry is told (the log shows the attempts).
        let mut provisioning = store(StoreStatus::Provisioning, 0);
        provisioning.error_message = Some(held.into());
        assert!(
            after_failure(&provisioning, true, held.into(), &settings, now)
                .event
                .is_some()
        );
    }

    #[test]
    fn a_transient_failure_repeated_with_another_timing_is_told_once() {
        let settings = crate::config::OrchestratorSettings::default();
        let now = Utc::now();
        let timeout = |nanos: u64, restarts: u32| {
            error_chain(&WorkError::Apply(ApplyError::Timeout {
                phase: Phase::Application,
                after: Duration::from_nanos(nanos),
                waiting: vec![format!(
                    "Deployment/wordpress: 0/1 replicas available, 0 updated (pod \
                     wordpress-5d8f7-x2 container wordpress keeps failing (exit code 1, \
                     {restarts} restarts))"
                )],
                unreachable: false,
            }))
        };
        let stuck = |nanos: u64| {
            error_chain(&WorkError::Apply(ApplyError::TeardownStuck {
                namespace: "store-shop-00000001".into(),
                after: Duration::from_nanos(nanos),
                blockers: "namespace finalizer example.com/hold".into(),
            }))
        };
        let cases = [
            (
                StoreStatus::Ready,
                timeout(30_000_123_456, 3),
                timeout(30_002_654_321, 4),
            ),
            (
                StoreStatus::Deleting,
                stuck(300_000_512_000),
                stuck(30_001_000_007),
            ),
        ];
        for (status, first, again) in cases {
            assert_ne!(first, again);
            let mut s = store(status, 1);
            let told = after_failure(&s, true, first.clone(), &settings, now);
            assert!(
                told.event.is_some(),
                "{status:?}: the first failure is told"
            );
            s.error_message = told.update.error_message.clone().flatten();
            s.attempts = 1;
            let repeat = after_failure(&s, true, again.clone(), &settings, now);
            assert!(
                repeat.event.is_none(),
                "{status:?}: the same failure with another timing is not told again: {again}"
            );
            assert_eq!(repeat.update.attempts, Some(2), "but counted");
            assert_eq!(
                repeat.update.error_message,
                Some(Some(again)),
                "the latest text is kept"
            );
            assert!(repeat.next.is_some(), "and retried");
        }
        // While provisioning, every retry is still told.
        let mut provisioning = store(StoreStatus::Provisioning, 0);
        provisioning.error_message = Some(timeout(30_000_000_001, 3));
        assert!(
            after_failure(
                &provisioning,
                true,
                timeout(30_000_000_002, 4),
                &settings,
                now
            )
            .event
            .is_some()
        );
    }

    #[test]
    fn a_ready_store_is_reapplied_with_a_short_readiness_wait() {
        let phase_timeout = Duration::from_secs(300);
        let now = Utc::now();
        let wait = |s: &Store, timeout| readiness_wait(s, None, timeout, now);
        assert_eq!(
            wait(&store(StoreStatus::Ready, 1), phase_timeout),
            RESYNC_READINESS_WAIT
        );
        assert!(RESYNC_READINESS_WAIT < phase_timeout);
        assert_eq!(
            wait(&store(StoreStatus::Provisioning, 0), phase_timeout),
            phase_timeout
        );
        // A new generation of a ready store converges: the full wait.
        let mut changed = store(StoreStatus::Ready, 1);
        changed.generation = 2;
        assert_eq!(wait(&changed, phase_timeout), phase_timeout);
        assert_eq!(
            wait(&store(StoreStatus::Ready, 1), Duration::from_secs(10)),
            Duration::from_secs(10),
            "never longer than the phase timeout"
        );
    }

    #[test]
    fn a_converging_store_waits_no_longer_than_its_deadline() {
        let phase_timeout = Duration::from_secs(300);
        let now = Utc::now();
        let provisioning = store(StoreStatus::Provisioning, 0);
        let at = |secs: i64| Some(now + chrono::TimeDelta::seconds(secs));
        assert_eq!(
            readiness_wait(&provisioning, at(3600), phase_timeout, now),
            phase_timeout
        );
        assert_eq!(
            readiness_wait(&provisioning, at(42), phase_timeout, now),
            Duration::from_secs(42)
        );
        // At or past it: the shortest wait, whose failure tells the deadline passed.
        for past in [0, -600] {
            assert_eq!(
                readiness_wait(&provisioning, at(past), phase_timeout, now),
                crate::apply::MIN_PHASE_WAIT
            );
        }
        // And every later phase of the attempt keeps to it too: the apply is told the
        // deadline itself, on this process's clock.
        let before = std::time::Instant::now();
        let until = wait_until(&provisioning, at(42), now).expect("a converging store's deadline");
        let after = std::time::Instant::now();
        assert!(
            until >= before + Duration::from_secs(42) && until <= after + Duration::from_secs(42),
            "{:?}",
            until.duration_since(before)
        );
        assert!(
            wait_until(&provisioning, at(-600), now)
                .is_some_and(|u| u <= std::time::Instant::now())
        );
        assert_eq!(wait_until(&provisioning, None, now), None);
        assert_eq!(wait_until(&store(StoreStatus::Ready, 1), at(42), now), None);
        // A serving store has no deadline to keep.
        assert_eq!(
            readiness_wait(&store(StoreStatus::Ready, 1), at(-600), phase_timeout, now),
            RESYNC_READINESS_WAIT
        );
    }

    #[test]
    fn a_ready_store_whose_reapply_fails_for_good_stays_ready_and_is_retried_at_the_resync() {
        let settings = crate::config::OrchestratorSettings::default();
        let now = Utc::now();
        let resync = now + to_chrono(settings.resync_period);
        let message = "the store's credentials cannot be read: wrong key";

        let f = after_failure(
            &store(StoreStatus::Ready, 1),
            false,
            message.into(),
            &settings,
            now,
        );
        assert_eq!(f.update.status, None, "a serving store stays ready");
        assert_eq!(f.update.error_message, Some(Some(message.into())));
        assert_eq!(f.update.next_reconcile_at, Some(Some(resync)));
        assert_eq!(f.update.provision_deadline_at, None);
        assert_eq!(f.next, Some(resync), "drift repair carries on");
        let event = f.event.expect("the first failure is told");
        assert_eq!(event.event_type, EventType::RetryScheduled);
        assert!(
            event.message.contains(message) && event.message.contains("stays ready"),
            "{}",
            event.message
        );

        // A transient error on a ready store is retried with backoff, as before.
        let f = after_failure(
            &store(StoreStatus::Ready, 1),
            true,
            message.into(),
            &settings,
            now,
        );
        assert_eq!(f.update.status, None);
        assert!(
            f.next
                .is_some_and(|t| t <= now + to_chrono(backoff::ceiling(1)))
        );

        // The same error while provisioning fails the store.
        let f = after_failure(
            &store(StoreStatus::Provisioning, 0),
            false,
            message.into(),
            &settings,
            now,
        );
        assert_eq!(f.update.status, Some(StoreStatus::Failed));
        assert_eq!(f.event.unwrap().event_type, EventType::ProvisioningFailed);
        assert_eq!(f.next, None);
    }

    #[test]
    fn each_phase_is_told_once_per_generation() {
        use EventType::{NamespaceCreated, PhaseCompleted};
        let ns = &["Namespace", "ResourceQuota"];
        let data = &["StatefulSet", "Service"];
        let cases = [
            // The namespace created now: told, converging or not.
            (
                report(Phase::Foundation, ns, 2, 0),
                true,
                ("record", vec![NamespaceCreated]),
            ),
            (
                report(Phase::Foundation, ns, 2, 0),
                false,
                ("record", vec![NamespaceCreated]),
            ),
            // The namespace there already: told if the log lacks it.
            (
                report(Phase::Foundation, ns, 0, 2),
                true,
                ("if-missing", vec![NamespaceCreated]),
            ),
            // ... also when an earlier attempt died mid-phase, after the namespace and
            // before the quota: then the phase's changes are not told in its place.
            (
                report(Phase::Foundation, &["ResourceQuota", "Namespace"], 1, 1),
                true,
                ("if-missing", vec![NamespaceCreated, PhaseCompleted]),
            ),
            (report(Phase::Foundation, ns, 0, 2), false, ("skip", vec![])),
            // Only the quota was missing: on a ready store a drift repair, not a new
            // namespace.
            (
                report(Phase::Foundation, &["ResourceQuota", "Namespace"], 1, 1),
                false,
                ("skip", vec![]),
            ),
            // Other phases, changed or not: told if the log lacks them.
            (
                report(Phase::Data, data, 2, 0),
                true,
                ("if-missing", vec![PhaseCompleted]),
            ),
            (
                report(Phase::Data, data, 0, 2),
                true,
                ("if-missing", vec![PhaseCompleted]),
            ),
            (report(Phase::Data, data, 2, 0), false, ("skip", vec![])),
        ];
        for (r, converging, want) in cases {
            assert_eq!(
                kind(&phase_event(&r, "store-a-1", converging)),
                want,
                "{r:?} {converging}"
            );
        }
    }

    #[test]
    fn the_phase_of_a_completed_event_is_read_back() {
        for phase in Phase::ALL {
            let Step::FirstMissing(told) =
                phase_event(&report(phase, &["Service"], 1, 0), "ns", true)
            else {
                panic!("a converging phase is told");
            };
            for e in told
                .iter()
                .filter(|e| e.event_type == EventType::PhaseCompleted)
            {
                assert_eq!(completed_phase(&e.message), Some(phase), "{}", e.message);
            }
        }
        assert_eq!(completed_phase("nonsense"), None);
    }

    #[test]
    fn a_new_generation_starts_a_new_story() {
        let log = [
            (EventType::Created, "store requested"),
            (EventType::NamespaceCreated, "namespace x created with …"),
            (EventType::PhaseCompleted, "secrets ready in 0.1s: Secret/a"),
            (
                EventType::PhaseCompleted,
                "data ready in 2.0s: StatefulSet/b",
            ),
            (EventType::RetryRequested, "retry"),
            (EventType::PhaseCompleted, "secrets ready in 0.0s: Secret/a"),
        ];
        let r = Recorded::from_log(log.into_iter());
        assert!(r.namespace);
        assert_eq!(r.phases, vec![Phase::Secrets]);
        let data = NewEvent::new(EventType::PhaseCompleted, "");
        assert!(r.has(&data, Phase::Secrets));
        assert!(
            !r.has(&data, Phase::Data),
            "data was told before the retry only"
        );
        let r = Recorded::from_log(log[..1].iter().copied());
        assert!(!r.has(
            &NewEvent::new(EventType::NamespaceCreated, ""),
            Phase::Foundation
        ));
    }
}
