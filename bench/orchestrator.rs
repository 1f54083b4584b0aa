//! Orchestrator speed on a real API server (the testenv cluster, or `KUBECONFIG`):
//!
//! 1. insert → first apply: a store is inserted and the orchestrator woken; the clock
//!    stops when a watch on Namespaces sees the store's namespace appear (the first
//!    object applied). Sequential, `BENCH_FIRST_APPLY_N` stores.
//! 2. one store fully applied: insert → `ready` (every phase applied and ready),
//!    sequential, `BENCH_ONE_STORE_N` stores, for each engine.
//! 3. a burst: `BENCH_BURST_N` stores inserted at once → all `ready`, with the
//!    orchestrator's bounded concurrency (`BENCH_WORKERS` stores at once, 8 objects of
//!    a phase at once).
//!
//! Every store is deleted afterwards. Run: `cargo bench --bench orchestrator` (or
//! `bench/run orchestrator`); results go in bench/RESULTS.md.

mod support;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storeplane::apply::{Applier, ApplySettings};
use storeplane::blueprint::Catalog;
use storeplane::config::{OrchestratorSettings, PlatformSettings};
use storeplane::db::{Db, NewStore, NewUser, Role};
use storeplane::domain::StoreStatus;
use storeplane::metrics::Metrics;
use storeplane::reconcile::{Orchestrator, Waker};
use storeplane::vault::Vault;
use support::{env_usize, percentile, use_testenv_unless_kubeconfig};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn summary(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    format!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
    )
}

struct Bench {
    db: Db,
    catalog: Arc<Catalog>,
    waker: Waker,
    owner: Uuid,
    /// Namespace name → when a watch first saw it.
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Bench {
    async fn create(&self, engine: &str) -> (Uuid, String, Instant) {
        let name = format!("b-{}", &Uuid::new_v4().simple().to_string()[..10]);
        let bp = self.catalog.get(engine).unwrap();
        let started = Instant::now();
        let store = self
            .db
            .create_store(NewStore::new(
                self.owner,
                &name,
                engine,
                &bp.version,
                serde_json::json!({}),
            ))
            .await
            .expect("insert");
        self.waker.wake(store.id).await;
        (store.id, store.namespace, started)
    }

    async fn wait_status(&self, id: Uuid, status: StoreStatus) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let s = self.db.get_store(id).await.unwrap().expect("store");
            if s.status == status {
                return;
            }
            assert!(
                s.status != StoreStatus::Failed,
                "store failed: {:?}",
                s.error_message
            );
            assert!(Instant::now() < deadline, "store {id} not {status}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn delete_all(&self, ids: &[Uuid]) {
        for id in ids {
            self.db.request_delete(*id).await.unwrap();
            self.waker.wake(*id).await;
        }
        for id in ids {
            let deadline = Instant::now() + Duration::from_secs(600);
            while self.db.get_store(*id).await.unwrap().is_some() {
                assert!(Instant::now() < deadline, "store {id} not deleted");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let first_n = env_usize("BENCH_FIRST_APPLY_N", 50);
    let one_n = env_usize("BENCH_ONE_STORE_N", 20);
    let burst_n = env_usize("BENCH_BURST_N", 100);
    let workers = env_usize("BENCH_WORKERS", 32);

    use_testenv_unless_kubeconfig();
    let client = storeplane::apply::connect().await.expect("cluster");
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let (db, _) = Db::open(&url).await.expect("database");
    let owner = db
        .create_user(NewUser {
            email: "bench@example.test".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaA".into(),
            role: Role::Member,
            store_limit: Some(100_000),
        })
        .await
        .unwrap()
        .id;
    let catalog = Arc::new(Catalog::builtin().unwrap());
    let vault = Arc::new(Vault::from_key_hex(&"5a".repeat(32)).unwrap());
    let settings = OrchestratorSettings {
        instance_id: Some("bench".into()),
        workers,
        apply_concurrency: 8,
        lease_duration: Duration::from_secs(30),
        sweep_interval: Duration::from_secs(5),
        resync_period: Duration::from_secs(3600),
        ..Default::default()
    };
    let applier = Applier::new(
        client.clone(),
        ApplySettings {
            concurrency: settings.apply_concurrency,
            phase_timeout: settings.phase_timeout,
            teardown_timeout: Duration::from_secs(300),
        },
    );
    let waker = Waker::new(db.clone());
    let orchestrator = Orchestrator::new(
        db.clone(),
        catalog.clone(),
        applier,
        vault,
        settings,
        PlatformSettings::default(),
        &waker,
        Metrics::new(),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(orchestrator.run(stop.clone()));

    // Namespaces as they appear.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    {
        let seen = seen.clone();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut events = watcher::watcher(
                namespaces,
                watcher::Config::default().labels("app.kubernetes.io/managed-by=storeplane"),
            )
            .boxed();
            while let Some(ev) = events.next().await {
                if let Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns)) = ev {
                    let name = ns.metadata.name.unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        });
    }
    let bench = Bench {
        db,
        catalog,
        waker,
        owner,
        seen,
    };
    // Let the watch establish itself.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut lines = vec![
        "| measurement | n | p50 | p90 | p99 | max | mean |".to_owned(),
        "|---|---|---|---|---|---|---|".to_owned(),
    ];
    let mut created = Vec::new();

    // 1. insert → first apply
    let mut samples = Vec::new();
    for _ in 0..first_n {
        let (id, ns, started) = bench.create("woocommerce").await;
        created.push(id);
        let deadline = Instant::now() + Duration::from_secs(60);
        let at = loop {
            if let Some(at) = bench.seen.lock().unwrap().get(&ns).copied() {
                break at;
            }
            assert!(Instant::now() < deadline, "namespace {ns} never appeared");
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        samples.push(at.saturating_duration_since(started));
        bench.wait_status(id, StoreStatus::Ready).await;
    }
    lines.push(summary(
        "insert → first apply (namespace seen by a watch)",
        samples,
    ));
    bench.delete_all(&created).await;
    created.clear();

    // 2. one store, insert → ready, per engine
    for engine in ["woocommerce", "medusa"] {
        let mut samples = Vec::new();
        for _ in 0..one_n {
            let (id, _, started) = bench.create(engine).await;
            created.push(id);
            bench.wait_status(id, StoreStatus::Ready).await;
            samples.push(started.elapsed());
        }
        lines.push(summary(
            &format!("one {engine} store, insert → ready"),
            samples,
        ));
    }
    bench.delete_all(&created).await;
    created.clear();

    // 3. a burst of stores at once
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..burst_n {
        ids.push(bench.create("woocommerce").await.0);
    }
    let inserted = started.elapsed();
    let mut each = Vec::new();
    for id in &ids {
        bench.wait_status(*id, StoreStatus::Ready).await;
        each.push(started.elapsed());
    }
    let all = started.elapsed();
    lines.push(summary(
        &format!("{burst_n} stores at once, start → each ready"),
        each,
    ));
    lines.push(format!(
        "\n{burst_n} stores inserted in {:.2} s; all {burst_n} applied and ready {:.2} s after the first insert ({workers} stores at once, 8 objects per phase at once).",
        inserted.as_secs_f64(),
        all.as_secs_f64()
    ));
    bench.delete_all(&ids).await;

    stop.cancel();
    running.await.unwrap();
    println!("{}", lines.join("\n"));
}
