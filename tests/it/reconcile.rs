//! The orchestrator end to end: real database (SQLite and PostgreSQL), real API server
//! (testenv), built-in blueprints. Stores go from insert to ready and from delete to
//! gone; crashes, a second replica, drift and hopeless stores are survived.

use crate::support::cluster::{child_kubeconfig, kube_client};
use crate::support::db::{TestDb, chain, each_backend, fresh};
use futures::future::join_all;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use storeplane::apply::{Applier, ApplySettings};
use storeplane::blueprint::Catalog;
use storeplane::config::{BlueprintSettings, OrchestratorSettings, PlatformSettings};
use storeplane::db::{Backend, Db, NewStore, NewUser, Role, Store, StoreEvent};
use storeplane::domain::{EventType, StoreStatus, labels};
use storeplane::metrics::Metrics;
use storeplane::reconcile::{Faults, Orchestrator, Waker};
use storeplane::vault::Vault;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a store may take to become ready or disappear in these tests.
const CONVERGE: Duration = Duration::from_secs(240);

fn settings(instance: &str) -> OrchestratorSettings {
    OrchestratorSettings {
        instance_id: Some(instance.into()),
        workers: 8,
        apply_concurrency: 8,
        lease_duration: Duration::from_secs(4),
        sweep_interval: Duration::from_secs(2),
        resync_period: Duration::from_secs(3600),
        phase_timeout: Duration::from_secs(120),
        provision_deadline: Duration::from_secs(600),
    }
}

/// One running orchestrator replica.
struct Replica {
    stop: CancellationToken,
    task: JoinHandle<()>,
    metrics: Metrics,
    faults: Faults,
}

impl Replica {
    async fn start(
        db: &Db,
        catalog: Arc<Catalog>,
        vault: Arc<Vault>,
        settings: OrchestratorSettings,
    ) -> (Replica, Waker) {
        Replica::start_with_teardown_timeout(db, catalog, vault, settings, Duration::from_secs(180))
            .await
    }

    async fn start_with_teardown_timeout(
        db: &Db,
        catalog: Arc<Catalog>,
        vault: Arc<Vault>,
        settings: OrchestratorSettings,
        teardown_timeout: Duration,
    ) -> (Replica, Waker) {
        let client = kube_client().await;
        let applier = Applier::new(
            client,
            ApplySettings {
                concurrency: settings.apply_concurrency,
                phase_timeout: settings.phase_timeout,
                teardown_timeout,
            },
        );
        let waker = Waker::new(db.clone());
        let metrics = Metrics::new();
        let orchestrator = Orchestrator::new(
            db.clone(),
            catalog,
            applier,
            vault,
            settings,
            PlatformSettings::default(),
            &waker,
            metrics.clone(),
        );
        let faults = orchestrator.faults();
        let stop = CancellationToken::new();
        let task = tokio::spawn(orchestrator.run(stop.clone()));
        (
            Replica {
                stop,
                task,
                metrics,
                faults,
            },
            waker,
        )
    }

    /// A clean stop, as on SIGTERM.
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("orchestrator task");
    }

    /// A crash: the task is dropped wherever it is; nothing runs after.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn vault() -> Arc<Vault> {
    let key: String = (0..64)
        .map(|i| if i % 3 == 0 { 'a' } else { '7' })
        .collect();
    Arc::new(Vault::from_key_hex(&key).expect("test key"))
}

/// A vault with another key: it cannot open what [`vault`] sealed.
fn wrong_vault() -> Arc<Vault> {
    Arc::new(Vault::from_key_hex(&"5c".repeat(32)).expect("test key"))
}

async fn user(db: &Db, limit: u32) -> Uuid {
    db.create_user(NewUser {
        email: format!("owner-{}@example.test", Uuid::new_v4().simple()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaA".into(),
        role: Role::Member,
        store_limit: Some(limit),
    })
    .await
    .expect("user")
    .id
}

async fn create(db: &Db, catalog: &Catalog, owner: Uuid, engine: &str, name: &str) -> Store {
    let blueprint = catalog.get(engine).expect("engine");
    db.create_store(NewStore::new(
        owner,
        name,
        engine,
        &blueprint.version,
        serde_json::json!({}),
    ))
    .await
    .unwrap_or_else(|e| panic!("create {name}: {}", chain(&e)))
}

/// Waits until `done` holds for the store (or it is gone, `None`), failing with the
/// store's state and events on timeout.
async fn wait_for(
    db: &Db,
    id: Uuid,
    what: &str,
    done: impl Fn(Option<&Store>) -> bool,
) -> Option<Store> {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let store = db.get_store(id).await.expect("get store");
        if done(store.as_ref()) {
            return store;
        }
        if let Some(s) = &store
            && s.status == StoreStatus::Failed
            && what != "failed"
        {
            panic!(
                "store {} failed: {:?}\nevents:\n{}",
                s.name,
                s.error_message,
                events_text(db, id).await
            );
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "store {id} not {what} after {CONVERGE:?}: {store:#?}\nevents:\n{}",
                events_text(db, id).await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ready(db: &Db, id: Uuid) -> Store {
    wait_for(db, id, "ready", |s| {
        s.is_some_and(|s| s.status == StoreStatus::Ready)
    })
    .await
    .expect("ready store")
}

async fn failed(db: &Db, id: Uuid) -> Store {
    wait_for(db, id, "failed", |s| {
        s.is_some_and(|s| s.status == StoreStatus::Failed)
    })
    .await
    .expect("failed store")
}

async fn gone(db: &Db, id: Uuid) {
    wait_for(db, id, "gone", |s| s.is_none()).await;
}

/// Deletes `stores` through a replica started for it and waits until each is gone (its
/// namespace deleted, then its row), so a test leaves nothing in the shared cluster.
async fn delete_all(t: &TestDb, catalog: &Arc<Catalog>, stores: &[Store], instance: &str) {
    let (cleaner, waker) =
        Replica::start(&t.db, catalog.clone(), vault(), settings(instance)).await;
    for s in stores {
        t.db.request_delete(s.id).await.unwrap();
        waker.wake(s.id).await;
    }
    join_all(stores.iter().map(|s| gone(&t.db, s.id))).await;
    cleaner.stop().await;
}

async fn events(db: &Db, id: Uuid) -> Vec<StoreEvent> {
    db.list_events(id, None, 1000).await.expect("events")
}

async fn events_text(db: &Db, id: Uuid) -> String {
    events(db, id)
        .await
        .iter()
        .map(|e| {
            format!(
                "  {} [{}] {}",
                e.event_type,
                e.actor.as_deref().unwrap_or("api"),
                e.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn types(events: &[StoreEvent]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type).collect()
}

/// The writes an object shows: its resourceVersion, Storeplane's own managed-fields
/// entry (changes with every write of ours that changes something), and everyone
/// else's entries (a controller writing status: the CronJob's last schedule, the
/// quota's usage).
#[derive(Debug, Clone, PartialEq)]
struct Writes {
    resource_version: String,
    ours: String,
    others: String,
}

/// Every object of the store in its namespace (kinds Storeplane applies), with the
/// writes it shows.
async fn objects(namespace: &str, store_id: Uuid) -> BTreeMap<String, Writes> {
    let client = kube_client().await;
    let mut out = BTreeMap::new();
    for (g, v, k) in storeplane::apply::PRUNABLE_KINDS {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, k));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        let list = api
            .list(&ListParams::default().labels(&format!("{}={store_id}", labels::STORE_ID)))
            .await
            .expect("list");
        // Objects a controller made (the Jobs the store's CronJob starts every few
        // minutes carry its labels too) are the cluster's, not the render's.
        for o in list.items.into_iter().filter(|o| {
            o.metadata
                .owner_references
                .as_ref()
                .is_none_or(|r| r.is_empty())
        }) {
            let (ours, others): (Vec<_>, Vec<_>) = o
                .metadata
                .managed_fields
                .iter()
                .flatten()
                .partition(|m| m.manager.as_deref() == Some("storeplane"));
            out.insert(
                format!("{k}/{}", o.metadata.name.unwrap_or_default()),
                Writes {
                    resource_version: o.metadata.resource_version.unwrap_or_default(),
                    ours: serde_json::to_string(&ours).unwrap(),
                    others: serde_json::to_string(&others).unwrap(),
                },
            );
        }
    }
    out
}

/// Nothing Storeplane wrote between two snapshots of the same stores: the same objects,
/// each with the same resourceVersion, unless another manager (a controller writing
/// status) wrote it meanwhile; and Storeplane's own entry unchanged everywhere.
fn assert_nothing_written(
    before: &[BTreeMap<String, Writes>],
    after: &[BTreeMap<String, Writes>],
    what: &str,
) {
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(after) {
        assert_eq!(
            b.keys().collect::<Vec<_>>(),
            a.keys().collect::<Vec<_>>(),
            "{what}: the same objects"
        );
        for (key, was) in b {
            let now = &a[key];
            assert_eq!(was.ours, now.ours, "{what}: {key} written by Storeplane");
            assert!(
                was.resource_version == now.resource_version || was.others != now.others,
                "{what}: {key} written (resourceVersion {} -> {}) with no other writer: {was:?} {now:?}",
                was.resource_version,
                now.resource_version
            );
        }
    }
}

/// The objects a render of the store contains, as `Kind/name` (Namespace excluded).
fn rendered_keys(catalog: &Catalog, store: &Store) -> Vec<String> {
    let blueprint = catalog.get(&store.engine).unwrap();
    let secrets = blueprint.generate_secrets();
    let rendered = blueprint
        .render(&storeplane::blueprint::RenderInput {
            store: &storeplane::blueprint::StoreRef {
                id: store.id,
                name: store.name.clone(),
                namespace: store.namespace.clone(),
            },
            params: &store.params,
            secrets: &secrets,
            platform: &PlatformSettings::default(),
        })
        .unwrap();
    let mut keys: Vec<String> = rendered
        .objects
        .iter()
        .filter(|o| o.gvk.kind != "Namespace")
        .map(|o| format!("{}/{}", o.gvk.kind, o.object.metadata.name.clone().unwrap()))
        .collect();
    keys.sort();
    keys
}

/// A ConfigMap with a finalizer no controller removes: the namespace cannot finish
/// terminating until [`release`].
async fn hold(client: &kube::Client, namespace: &str) -> Api<ConfigMap> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    maps.create(
        &Default::default(),
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    maps
}

async fn release(maps: &Api<ConfigMap>) {
    maps.patch(
        "held",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}

async fn namespace_exists(name: &str) -> bool {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(kube_client().await);
    api.get_opt(name).await.expect("get namespace").is_some()
}

#[tokio::test]
async fn woocommerce_and_medusa_go_to_ready_and_are_deleted() {
    each_backend(|t: TestDb| async move {
        let catalog = Arc::new(Catalog::builtin().unwrap());
        let tag = &Uuid::new_v4().simple().to_string()[..6];
        let (replica, waker) =
            Replica::start(&t.db, catalog.clone(), vault(), settings("solo")).await;
        let owner = user(&t.db, 10).await;
        let woo = create(&t.db, &catalog, owner, "woocommerce", &format!("woo-{tag}")).await;
        let medusa = create(&t.db, &catalog, owner, "medusa", &format!("med-{tag}")).await;
        waker.wake(woo.id).await;

        for store in [&woo, &medusa] {
            let done = ready(&t.db, store.id).await;
            assert_eq!(done.observed_generation, done.generation);
            assert!(done.lease_owner.is_none(), "the lease is handed back");
            assert!(
                done.secrets_sealed
                    .as_deref()
                    .is_some_and(|s| s.starts_with("v1:"))
            );
            assert!(
                done.urls
                    .iter()
                    .any(|u| u.name == "storefront" && u.url.contains(&store.name)),
                "{:?}",
                done.urls
            );
            // Every rendered object exists in the namespace, and nothing else of ours.
            let present: Vec<String> = objects(&store.namespace, store.id)
                .await
                .into_keys()
                .collect();
            assert_eq!(present, rendered_keys(&catalog, store), "{}", store.engine);
            // The log tells the story in order.
            let log = events(&t.db, store.id).await;
            let kinds = types(&log);
            assert_eq!(kinds.first(), Some(&EventType::Created), "{kinds:?}");
            assert_eq!(
                kinds.get(1),
                Some(&EventType::NamespaceCreated),
                "{kinds:?}"
            );
            assert_eq!(
                &kinds[kinds.len() - 2..],
                &[EventType::ResourcesApplied, EventType::StoreReady],
                "{kinds:?}"
            );
            assert!(
                kinds[2..kinds.len() - 2]
                    .iter()
                    .all(|k| *k == EventType::PhaseCompleted),
                "{kinds:?}"
            );
            assert_eq!(
                told_phases(&log),
                expected_phases(&store.engine),
                "{}",
                store.engine
            );
            let sample = secret_sample(&t, store).await;
            assert!(
                log.iter().all(|e| !e.message.contains(&sample)),
                "no credential in events"
            );
        }

        for store in [&woo, &medusa] {
            t.db.request_delete(store.id).await.unwrap();
            waker.wake(store.id).await;
        }
        for store in [&woo, &medusa] {
            gone(&t.db, store.id).await;
            assert!(
                !namespace_exists(&store.namespace).await,
                "namespace {} is gone",
                store.namespace
            );
            let kinds = types(&events(&t.db, store.id).await);
            assert_eq!(
                &kinds[kinds.len() - 2..],
                &[EventType::Deleting, EventType::NamespaceDeleted],
                "{kinds:?}"
            );
        }
        replica.stop().await;
    })
    .await;
}

/// One of the store's generated credentials, to check it never appears in events.
async fn secret_sample(t: &TestDb, store: &Store) -> String {
    let sealed =
        t.db.get_store(store.id)
            .await
            .unwrap()
            .unwrap()
            .secrets_sealed
            .unwrap();
    let plain = vault().open(&sealed).unwrap();
    let secrets: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    secrets
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|v| v.as_str())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn crashes_at_phase_boundaries_and_mid_phase_still_converge() {
    each_backend(|t: TestDb| async move {
        let catalog = Arc::new(Catalog::builtin().unwrap());
        let owner = user(&t.db, 20).await;
        let mut stores = Vec::new();
        // Kill points: after the n-th event of the store's log (1 = `created`, so 2 is right
        // after the namespace phase), and a mid-phase point by time.
        for (round, kill_after_events) in [2usize, 3, 4, 5, 6].into_iter().enumerate() {
            let name = format!(
                "crash-{round}-{}",
                &Uuid::new_v4().simple().to_string()[..5]
            );
            let store = create(&t.db, &catalog, owner, "woocommerce", &name).await;
            let (replica, waker) = Replica::start(
                &t.db,
                catalog.clone(),
                vault(),
                settings(&format!("doomed-{round}")),
            )
            .await;
            waker.wake(store.id).await;
            let deadline = tokio::time::Instant::now() + CONVERGE;
            while events(&t.db, store.id).await.len() < kill_after_events {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never reached event {kill_after_events}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            replica.crash().await;
            // A new replica (a restarted process) takes over once the lease expires.
            let (replica, _) = Replica::start(
                &t.db,
                catalog.clone(),
                vault(),
                settings(&format!("heir-{round}")),
            )
            .await;
            let done = ready(&t.db, store.id).await;
            assert!(done.lease_owner.is_none(), "no lease left behind");
            let present: Vec<String> = objects(&store.namespace, store.id)
                .await
                .into_keys()
                .collect();
            assert_eq!(
                present,
                rendered_keys(&catalog, &store),
                "nothing missing, nothing extra"
            );
            told_once(&events(&t.db, store.id).await, &store.engine);
            replica.stop().await;
            stores.push(store);
        }
        // Mid-phase: crash while the data phase waits for MySQL.
        let name = format!("crash-mid-{}", &Uuid::new_v4().simple().to_string()[..5]);
        let store = create(&t.db, &catalog, owner, "woocommerce", &name).await;
        let (replica, waker) =
            Replica::start(&t.db, catalog.clone(), vault(), settings("doomed-mid")).await;
        waker.wake(store.id).await;
        let client = kube_client().await;
        let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> =
            Api::namespaced(client, &store.namespace);
        let deadline = tokio::time::Instant::now() + CONVERGE;
        while sts.get_opt("mysql").await.ok().flatten().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached the data phase"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        replica.crash().await;
        let (replica, _) =
            Replica::start(&t.db, catalog.clone(), vault(), settings("heir-mid")).await;
        let done = ready(&t.db, store.id).await;
        assert!(done.lease_owner.is_none());
        told_once(&events(&t.db, store.id).await, &store.engine);
        replica.stop().await;
        stores.push(store);
        delete_all(&t, &catalog, &stores, "cleaner-c").await;
    })
    .await;
}

/// The phases a blueprint's `phase_completed` events name, in order (the foundation
/// phase is told by `namespace_created`).
fn expected_phases(engine: &str) -> Vec<&'static str> {
    let mut phases = vec!["secrets", "storage", "data"];
    if engine == "medusa" {
        phases.push("migrate");
    }
    phases.extend(["application", "jobs", "ingress"]);
    phases
}

fn told_phases(log: &[StoreEvent]) -> Vec<&str> {
    log.iter()
        .filter(|e| e.event_type == EventType::PhaseCompleted)
        .map(|e| e.message.split_whitespace().next().unwrap())
        .collect()
}

/// A store's log after a crash and a takeover tells every step exactly once, in order:
/// nothing the dead replica did is missing, nothing is repeated.
fn told_once(log: &[StoreEvent], engine: &str) {
    let kinds = types(log);
    for once in [
        EventType::Created,
        EventType::NamespaceCreated,
        EventType::ResourcesApplied,
        EventType::StoreReady,
    ] {
        assert_eq!(
            kinds.iter().filter(|k| **k == once).count(),
            1,
            "{once} once: {kinds:?}"
        );
    }
    assert_eq!(told_phases(log), expected_phases(engine), "{kinds:?}");
}

#[tokio::test]
async fn two_replicas_on_postgres_never_work_one_store_at_once() {
    let t = fresh(Backend::Postgres).await;
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let owner = user(&t.db, 25).await;
    let mut a = settings("replica-a");
    a.workers = 4;
    let mut b = settings("replica-b");
    b.workers = 4;
    let (ra, waker) = Replica::start(&t.db, catalog.clone(), vault(), a).await;
    let (rb, _) = Replica::start(&t.db, catalog.clone(), vault(), b).await;
    let tag = &Uuid::new_v4().simple().to_string()[..5];
    let mut stores = Vec::new();
    for i in 0..20 {
        let s = create(
            &t.db,
            &catalog,
            owner,
            "woocommerce",
            &format!("pair-{tag}-{i}"),
        )
        .await;
        waker.wake(s.id).await;
        stores.push(s);
    }
    join_all(stores.iter().map(|s| ready(&t.db, s.id))).await;
    let mut by_replica = BTreeMap::<String, usize>::new();
    for s in &stores {
        let log = events(&t.db, s.id).await;
        // The replicas' events come in runs, one replica's after the other's: a store
        // may pass from one to the other (a transient failure hands it back, a renewal
        // that misses its window drops it), but is never worked by both at once, which
        // would interleave their events. Each step is told once.
        let mut runs: Vec<&str> = log.iter().filter_map(|e| e.actor.as_deref()).collect();
        runs.dedup();
        let distinct: std::collections::BTreeSet<&str> = runs.iter().copied().collect();
        assert_eq!(
            runs.len(),
            distinct.len(),
            "store {} worked by turns {runs:?}:\n{}",
            s.name,
            events_text(&t.db, s.id).await
        );
        told_once(&log, "woocommerce");
        *by_replica.entry(runs[0].to_owned()).or_default() += 1;
        let kinds = types(&log);
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == EventType::StoreReady)
                .count(),
            1
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == EventType::NamespaceCreated)
                .count(),
            1
        );
    }
    eprintln!("stores per replica: {by_replica:?}");
    ra.stop().await;
    rb.stop().await;
    delete_all(&t, &catalog, &stores, "cleaner").await;
    t.finish().await;
}

#[tokio::test]
async fn drift_is_repaired_and_unchanged_stores_are_not_written() {
    each_backend(|t: TestDb| async move {
        let catalog = Arc::new(Catalog::builtin().unwrap());
        let owner = user(&t.db, 20).await;
        let mut s = settings("drift");
        s.resync_period = Duration::from_secs(4);
        let (replica, waker) = Replica::start(&t.db, catalog.clone(), vault(), s).await;
        let tag = &Uuid::new_v4().simple().to_string()[..5];
        let mut stores = Vec::new();
        for i in 0..10 {
            let store = create(
                &t.db,
                &catalog,
                owner,
                "woocommerce",
                &format!("steady-{tag}-{i}"),
            )
            .await;
            waker.wake(store.id).await;
            stores.push(store);
        }
        join_all(stores.iter().map(|s| ready(&t.db, s.id))).await;

        // Re-applying ten ready stores changes no resourceVersion.
        let before: Vec<_> = join_all(stores.iter().map(|s| objects(&s.namespace, s.id))).await;
        let resynced_at = chrono::Utc::now();
        for s in &stores {
            wait_for(&t.db, s.id, "resynced", |now| {
                now.is_some_and(|n| n.updated_at > resynced_at && n.lease_owner.is_none())
            })
            .await;
        }
        let after: Vec<_> = join_all(stores.iter().map(|s| objects(&s.namespace, s.id))).await;
        assert_nothing_written(&before, &after, "a resync of unchanged stores");
        for s in &stores {
            assert!(
                !types(&events(&t.db, s.id).await).contains(&EventType::DriftRepaired),
                "a store nothing touched was repaired: {}",
                events_text(&t.db, s.id).await
            );
        }
        // A resync that changed nothing proved each store converged; the resyncs after it
        // send no apply while nothing is written (the drift below is repaired anyway).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while replica.metrics.applies_skipped.get() < stores.len() as u64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "resyncs of unchanged stores still sent applies ({} skipped)",
                replica.metrics.applies_skipped.get()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The sweep publishes how many stores the replica remembers as converged.
        while replica.metrics.stores_known_converged.get() < stores.len() as i64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replica reports {} stores known converged, not {}",
                replica.metrics.stores_known_converged.get(),
                stores.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let after_skips: Vec<_> =
            join_all(stores.iter().map(|s| objects(&s.namespace, s.id))).await;
        assert_nothing_written(&before, &after_skips, "the skipped resyncs");

        // Drift: a Deployment and a NetworkPolicy deleted by hand come back within one
        // resync period (plus the time to become ready).
        let victim = &stores[0];
        let client = kube_client().await;
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(client.clone(), &victim.namespace);
        let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
            Api::namespaced(client.clone(), &victim.namespace);
        let policy = policies.list(&ListParams::default()).await.unwrap().items[0]
            .metadata
            .name
            .clone()
            .unwrap();
        deployments
            .delete("wordpress", &DeleteParams::default())
            .await
            .unwrap();
        policies
            .delete(&policy, &DeleteParams::default())
            .await
            .unwrap();
        let deleted_at = tokio::time::Instant::now();
        let deadline = deleted_at + Duration::from_secs(4) + Duration::from_secs(30);
        loop {
            let back = deployments.get_opt("wordpress").await.unwrap().is_some()
                && policies.get_opt(&policy).await.unwrap().is_some();
            if back {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "drift not repaired");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "drift repaired {:?} after the deletes",
            deleted_at.elapsed()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !types(&events(&t.db, victim.id).await).contains(&EventType::DriftRepaired) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no drift_repaired event"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        replica.stop().await;
        delete_all(&t, &catalog, &stores, "cleaner-d").await;
        t.finish().await;
    })
    .await;
}

/// A copy of the WooCommerce blueprint whose small plan's memory quota cannot hold
/// MySQL and WordPress together.
fn starved_blueprint(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/woocommerce");
    let dst = dir.join("starved");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let mut text = std::fs::read_to_string(entry.path()).unwrap();
        if entry.file_name() == "blueprint.yaml" {
            text = text
                .replacen("name: woocommerce", "name: starved", 1)
                .replacen("limits.memory: 2560Mi", "limits.memory: 1200Mi", 1);
        }
        std::fs::write(dst.join(entry.file_name()), text).unwrap();
    }
}

#[tokio::test]
async fn a_store_that_cannot_fit_fails_with_the_reason_and_no_retry_storm() {
    each_backend(|t: TestDb| async move {
        let dir = tempfile::tempdir().unwrap();
        starved_blueprint(dir.path());
        let catalog = Arc::new(
            Catalog::load(&BlueprintSettings {
                blueprints_dir: Some(dir.path().to_path_buf()),
            })
            .unwrap(),
        );
        let owner = user(&t.db, 5).await;
        let (replica, waker) =
            Replica::start(&t.db, catalog.clone(), vault(), settings("starved")).await;
        let name = format!("starved-{}", &Uuid::new_v4().simple().to_string()[..5]);
        let store = create(&t.db, &catalog, owner, "starved", &name).await;
        waker.wake(store.id).await;
        let failed = failed(&t.db, store.id).await;
        let message = failed.error_message.clone().unwrap();
        assert!(message.contains("Deployment/wordpress"), "{message}");
        assert!(message.contains("exceeded quota"), "{message}");
        assert_eq!(
            failed.next_reconcile_at, None,
            "a failed store is not retried by itself"
        );
        // No retry storm: one failure, no retries, and nothing more happens.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let kinds = types(&events(&t.db, store.id).await);
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == EventType::ProvisioningFailed)
                .count(),
            1,
            "{kinds:?}"
        );
        assert!(!kinds.contains(&EventType::RetryScheduled), "{kinds:?}");
        let log = events(&t.db, store.id).await;
        assert_eq!(log.last().unwrap().message, message);

        // Deleting a failed store still cleans up.
        t.db.request_delete(store.id).await.unwrap();
        waker.wake(store.id).await;
        gone(&t.db, store.id).await;
        assert!(!namespace_exists(&store.namespace).await);
        replica.stop().await;
    })
    .await;
}

/// An attempt that panics (a bug) fails the store with a message that says so, once,
/// instead of the store being picked up again every lease period for ever; a retry
/// once the bug is gone brings it to ready.
#[tokio::test]
async fn an_attempt_that_panics_fails_the_store_once_and_a_retry_recovers_it() {
    let t = fresh(Backend::Sqlite).await;
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let owner = user(&t.db, 5).await;
    let (replica, waker) =
        Replica::start(&t.db, catalog.clone(), vault(), settings("panics")).await;
    replica.faults.panic_attempts(true);
    let name = format!("panics-{}", &Uuid::new_v4().simple().to_string()[..5]);
    let store = create(&t.db, &catalog, owner, "woocommerce", &name).await;
    waker.wake(store.id).await;
    let failed = failed(&t.db, store.id).await;
    let message = failed.error_message.clone().unwrap();
    assert!(
        message.contains("crashed on an internal error"),
        "{message}"
    );
    assert!(
        !message.contains("injected fault"),
        "the panic's text stays in the log: {message}"
    );
    assert_eq!(failed.next_reconcile_at, None, "not retried by itself");
    assert!(failed.lease_owner.is_none(), "the lease is handed back");
    let metrics = replica.metrics.encode();
    assert!(
        metrics.contains("storeplane_apply_errors_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );

    replica.faults.panic_attempts(false);
    t.db.request_retry(store.id).await.unwrap();
    waker.wake(store.id).await;
    ready(&t.db, store.id).await;
    delete_all(&t, &catalog, &[store], "panics-cleanup").await;
    replica.stop().await;
}

#[tokio::test]
async fn a_delete_during_provisioning_wins() {
    each_backend(|t: TestDb| async move {
        let catalog = Arc::new(Catalog::builtin().unwrap());
        let owner = user(&t.db, 5).await;
        let (replica, waker) =
            Replica::start(&t.db, catalog.clone(), vault(), settings("hasty")).await;
        let name = format!("hasty-{}", &Uuid::new_v4().simple().to_string()[..5]);
        let store = create(&t.db, &catalog, owner, "medusa", &name).await;
        waker.wake(store.id).await;
        // Wait until provisioning is under way, then delete.
        let deadline = tokio::time::Instant::now() + CONVERGE;
        while !types(&events(&t.db, store.id).await).contains(&EventType::NamespaceCreated) {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        t.db.request_delete(store.id).await.unwrap();
        waker.wake(store.id).await;
        gone(&t.db, store.id).await;
        assert!(!namespace_exists(&store.namespace).await);
        let kinds = types(&events(&t.db, store.id).await);
        assert!(!kinds.contains(&EventType::StoreReady), "{kinds:?}");
        replica.stop().await;
    })
    .await;
}

/// A deletion holds no worker while its namespace terminates: with a single worker,
/// a store is provisioned to ready while another store's deletion waits on a namespace
/// a finalizer holds — before that deletion has even been reported stuck (with the old
/// rule, the worker waited on the namespace for the whole teardown timeout first).
/// Terminating for longer than the timeout, the deletion says what holds the
/// namespace; once released, the store is gone.
#[tokio::test]
async fn a_namespace_that_will_not_go_holds_no_worker_and_is_reported() {
    use k8s_openapi::api::core::v1::Namespace;
    let t = fresh(Backend::Sqlite).await;
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let owner = user(&t.db, 5).await;
    let mut single = settings("single");
    single.workers = 1;
    // Room for a whole store to provision meanwhile on a busy machine (the other test
    // thread may be provisioning twenty).
    let teardown_timeout = Duration::from_secs(150);
    let (replica, waker) = Replica::start_with_teardown_timeout(
        &t.db,
        catalog.clone(),
        vault(),
        single,
        teardown_timeout,
    )
    .await;
    let tag = &Uuid::new_v4().simple().to_string()[..5];
    let held = create(
        &t.db,
        &catalog,
        owner,
        "woocommerce",
        &format!("held-{tag}"),
    )
    .await;
    waker.wake(held.id).await;
    ready(&t.db, held.id).await;
    let client = kube_client().await;
    let maps = hold(&client, &held.namespace).await;
    t.db.request_delete(held.id).await.unwrap();
    waker.wake(held.id).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while namespaces
        .get_opt(&held.namespace)
        .await
        .unwrap()
        .is_some_and(|n| n.metadata.deletion_timestamp.is_none())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted_at = tokio::time::Instant::now();

    let next = create(
        &t.db,
        &catalog,
        owner,
        "woocommerce",
        &format!("next-{tag}"),
    )
    .await;
    waker.wake(next.id).await;
    ready(&t.db, next.id).await;
    let took = deleted_at.elapsed();
    let still = t.db.get_store(held.id).await.unwrap().expect("held store");
    assert_eq!(still.status, StoreStatus::Deleting);
    assert!(
        took < teardown_timeout
            && !types(&events(&t.db, held.id).await).contains(&EventType::RetryScheduled),
        "the other store was ready only after {took:?}, once the deletion had given up \
         its worker:\n{}",
        events_text(&t.db, held.id).await
    );
    eprintln!("another store ready {took:?} after the namespace was deleted");

    // Past the timeout, the deletion is reported stuck with what holds it.
    let reported = wait_for(&t.db, held.id, "reported stuck", |s| {
        s.is_some_and(|s| {
            s.error_message
                .as_deref()
                .is_some_and(|m| m.contains("example.com/hold"))
        })
    })
    .await
    .unwrap();
    assert_eq!(reported.status, StoreStatus::Deleting);
    let log = events(&t.db, held.id).await;
    assert!(
        log.iter().any(|e| e.event_type == EventType::RetryScheduled
            && e.message.contains("finalizers remaining")
            && e.message.contains("example.com/hold")),
        "{}",
        events_text(&t.db, held.id).await
    );

    // Released: the store goes.
    release(&maps).await;
    gone(&t.db, held.id).await;
    assert!(!namespace_exists(&held.namespace).await);
    assert_eq!(
        types(&events(&t.db, held.id).await).last(),
        Some(&EventType::NamespaceDeleted)
    );

    t.db.request_delete(next.id).await.unwrap();
    waker.wake(next.id).await;
    gone(&t.db, next.id).await;
    replica.stop().await;
    t.finish().await;
}

#[tokio::test]
async fn a_worker_whose_lease_cannot_be_renewed_stops_before_the_lease_runs_out() {
    let t = fresh(Backend::Sqlite).await;
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let owner = user(&t.db, 5).await;
    // A lease shorter than a medusa store takes to provision (~3 s): a worker that
    // cannot renew must stop (after 1 s) long before its attempt would be done.
    let lease = Duration::from_millis(1500);
    let mut s = settings("unrenewed");
    s.lease_duration = lease;
    let (replica, waker) = Replica::start(&t.db, catalog.clone(), vault(), s).await;
    replica.faults.fail_renewals(true);
    let name = format!("unrenewed-{}", &Uuid::new_v4().simple().to_string()[..5]);
    let store = create(&t.db, &catalog, owner, "medusa", &name).await;
    waker.wake(store.id).await;

    // While no renewal succeeds, workers come and go, and none holds the store past its
    // lease: a lease that ran out while held is a store another worker (another
    // replica, or this one) may be working on at the same time.
    let watch_until = tokio::time::Instant::now() + 6 * lease;
    let mut leases = std::collections::BTreeSet::new();
    while tokio::time::Instant::now() < watch_until {
        let now = chrono::Utc::now();
        let s = t.db.get_store(store.id).await.unwrap().unwrap();
        if let (Some(holder), Some(until)) = (&s.lease_owner, s.lease_until) {
            assert!(
                // Slack for the release itself (a database round trip on a busy
                // machine); a worker that never stopped would hold the lease for its
                // whole attempt, far longer.
                until + chrono::Duration::milliseconds(1000) > now,
                "the lease ran out at {until} while {holder} still held it (now {now})\nevents:\n{}",
                events_text(&t.db, store.id).await
            );
            leases.insert(until);
        }
        if s.status == StoreStatus::Ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = replica.metrics.reconciles.get();
    assert!(
        attempts >= 2 && leases.len() >= 2,
        "the first worker stopped and the store was claimed again: {attempts} attempts, \
         {} leases",
        leases.len()
    );

    // Renewals work again: the store converges, and the attempts that were stopped left
    // nothing behind: no lease, no repeated or missing step in the story.
    replica.faults.fail_renewals(false);
    let done = ready(&t.db, store.id).await;
    assert!(done.lease_owner.is_none(), "the lease is handed back");
    assert_eq!(done.error_message, None);
    told_once(&events(&t.db, store.id).await, &store.engine);

    t.db.request_delete(store.id).await.unwrap();
    waker.wake(store.id).await;
    gone(&t.db, store.id).await;
    replica.stop().await;
    t.finish().await;
}

#[tokio::test]
async fn a_ready_store_whose_reapply_fails_for_good_stays_ready_and_is_retried() {
    let t = fresh(Backend::Sqlite).await;
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let owner = user(&t.db, 5).await;
    let resync = Duration::from_secs(3);
    let with_resync = |instance: &str| {
        let mut s = settings(instance);
        s.resync_period = resync;
        s
    };
    let (replica, waker) =
        Replica::start(&t.db, catalog.clone(), vault(), with_resync("keyed")).await;
    let name = format!("rekeyed-{}", &Uuid::new_v4().simple().to_string()[..5]);
    let store = create(&t.db, &catalog, owner, "woocommerce", &name).await;
    waker.wake(store.id).await;
    let provisioned = ready(&t.db, store.id).await;
    replica.stop().await;

    // A replica that cannot open the store's credentials (a wrong key: an error no
    // retry heals) resyncs it: the store keeps serving, so it stays ready, with the
    // error told, and is re-applied at every resync.
    let (replica, _) = Replica::start(
        &t.db,
        catalog.clone(),
        wrong_vault(),
        with_resync("unkeyed"),
    )
    .await;
    let broken = wait_for(&t.db, store.id, "re-applied with an error", |s| {
        s.is_some_and(|s| s.error_message.is_some() && s.lease_owner.is_none())
    })
    .await
    .unwrap();
    assert_eq!(broken.status, StoreStatus::Ready);
    assert_eq!(broken.observed_generation, provisioned.observed_generation);
    assert_eq!(broken.urls, provisioned.urls, "still serving at its URLs");
    let message = broken.error_message.clone().unwrap();
    assert!(message.contains("credentials"), "{message}");
    let next = broken.next_reconcile_at.expect("re-applied again later");
    // `next` and `updated_at` are two clock readings a database round trip apart: on a
    // busy machine the first may come well before the second, so only the upper bound
    // is timing; the retry's own message says which delay it chose.
    let wait = (next - broken.updated_at).to_std().unwrap_or_default();
    assert!(
        wait <= resync + Duration::from_secs(1),
        "next re-apply in {wait:?}, not at the resync ({resync:?})"
    );
    let log = events(&t.db, store.id).await;
    let last = log.last().unwrap();
    assert_eq!(last.event_type, EventType::RetryScheduled);
    assert!(
        last.message.contains(&message)
            && last.message.contains("stays ready")
            && last.message.contains("next re-apply at the resync in 3s"),
        "{}",
        last.message
    );
    // The next resync tries again (and fails again): drift repair is not given up.
    wait_for(&t.db, store.id, "re-applied twice", |s| {
        s.is_some_and(|s| s.attempts >= 2 && s.lease_owner.is_none())
    })
    .await;
    // The same failure again is counted (attempts) but not told twice.
    let kinds = types(&events(&t.db, store.id).await);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventType::RetryScheduled)
            .count(),
        1,
        "{kinds:?}"
    );
    assert!(!kinds.contains(&EventType::ProvisioningFailed), "{kinds:?}");
    assert_eq!(
        t.db.get_store(store.id).await.unwrap().unwrap().status,
        StoreStatus::Ready
    );
    replica.stop().await;

    // With the right key again, the next resync succeeds and clears the error.
    let (replica, waker) =
        Replica::start(&t.db, catalog.clone(), vault(), with_resync("rekeyed")).await;
    let healed = wait_for(&t.db, store.id, "healed", |s| {
        s.is_some_and(|s| s.error_message.is_none() && s.lease_owner.is_none())
    })
    .await
    .unwrap();
    assert_eq!(healed.status, StoreStatus::Ready);
    assert_eq!(healed.attempts, 0);

    t.db.request_delete(store.id).await.unwrap();
    waker.wake(store.id).await;
    gone(&t.db, store.id).await;
    replica.stop().await;
    t.finish().await;
}

#[tokio::test]
async fn orphaned_namespaces_are_reported_and_never_deleted() {
    use k8s_openapi::api::core::v1::Namespace;
    use storeplane::reconcile::{OrphanReason, find_orphans};
    let t = fresh(Backend::Sqlite).await;
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let owner = user(&t.db, 5).await;
    let tag = &Uuid::new_v4().simple().to_string()[..5];
    // A store row whose namespace is made by hand: no orchestrator works on this database.
    let store = create(
        &t.db,
        &catalog,
        owner,
        "woocommerce",
        &format!("kept-{tag}"),
    )
    .await;
    let client = kube_client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labelled = |name: &str, store_id: &str| -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {
                labels::MANAGED_BY: "storeplane",
                labels::STORE_ID: store_id,
            }}
        }))
        .unwrap()
    };
    let lost = format!("orphan-lost-{tag}");
    let bad = format!("orphan-bad-{tag}");
    let moved = format!("orphan-moved-{tag}");
    let going = format!("orphan-going-{tag}");
    let unknown = Uuid::new_v4().to_string();
    for (name, id) in [
        (store.namespace.as_str(), store.id.to_string()),
        (&lost, unknown.clone()),
        (&bad, "not-a-uuid".into()),
        (&moved, store.id.to_string()),
        (&going, Uuid::new_v4().to_string()),
    ] {
        namespaces
            .create(&Default::default(), &labelled(name, &id))
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    }
    // One namespace already terminating (held by a finalizer on its content): its
    // deletion is under way, so it is no orphan whatever its label says.
    let held = hold(&client, &going).await;
    namespaces
        .delete(&going, &DeleteParams::default())
        .await
        .unwrap();
    let ours = [&store.namespace, &lost, &bad, &moved, &going];

    let applier = Applier::new(
        client.clone(),
        ApplySettings {
            concurrency: 4,
            phase_timeout: Duration::from_secs(60),
            teardown_timeout: Duration::from_secs(60),
        },
    );
    let found: Vec<(String, OrphanReason)> = find_orphans(&applier, &t.db)
        .await
        .unwrap_or_else(|e| panic!("audit: {e}"))
        .into_iter()
        .filter(|o| ours.contains(&&o.namespace))
        .map(|o| (o.namespace, o.reason))
        .collect();
    // By name.
    let want = vec![
        (bad.clone(), OrphanReason::NotAStoreId),
        (lost.clone(), OrphanReason::NoStore),
        (
            moved.clone(),
            OrphanReason::OtherNamespace(store.namespace.clone()),
        ),
    ];
    assert_eq!(
        found, want,
        "the store's own and the terminating namespace are no orphans"
    );

    // The same from the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_storeplane"))
        .arg("orphans")
        .env("STOREPLANE_DATABASE_URL", &t.url)
        .env("KUBECONFIG", child_kubeconfig().await)
        .output()
        .expect("run storeplane orphans");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 3: orphans listed.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        format!("namespace {lost} is labelled as store {unknown}, which is not in the database"),
        format!("namespace {bad} has store-id label `not-a-uuid`, which is not a store id"),
        format!(
            "namespace {moved} is labelled as store {}, whose namespace is {}",
            store.id, store.namespace
        ),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line} not in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains(&format!("namespace {} ", store.namespace)) && !stdout.contains(&going),
        "{stdout}"
    );

    // An orchestrator pointed at an empty database (the wrong URL, a restore gone
    // wrong) sees every store namespace as orphaned: it says so and deletes none.
    let empty = fresh(Backend::Sqlite).await;
    let mut audit = settings("audit");
    audit.resync_period = Duration::from_secs(1);
    let (replica, _) = Replica::start(&empty.db, catalog.clone(), vault(), audit).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // Other tests' stores share the cluster, so at least ours.
    while replica.metrics.orphan_namespaces.get() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the audit never reported the orphans: {}",
            replica.metrics.orphan_namespaces.get()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more audits.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // An audit that cannot read the stores fails and is counted, and the orchestrator
    // keeps running and keeps auditing (the counter goes on rising).
    assert_eq!(replica.metrics.orphan_audit_failures.get(), 0);
    empty
        .raw("DROP TABLE store_events; DROP TABLE stores")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while replica.metrics.orphan_audit_failures.get() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "failed audits were not counted: {}",
            replica.metrics.orphan_audit_failures.get()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replica.stop().await;
    for name in [&store.namespace, &lost, &bad, &moved] {
        let ns = namespaces.get(name).await.expect("still there");
        assert!(
            ns.metadata.deletion_timestamp.is_none(),
            "{name} was deleted by the audit"
        );
    }

    release(&held).await;
    for name in [&store.namespace, &lost, &bad, &moved] {
        namespaces
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    empty.finish().await;
    t.finish().await;
}
