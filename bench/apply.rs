//! Apply throughput on a real API server (the testenv cluster, or `KUBECONFIG`):
//! `BENCH_APPLY_N` WooCommerce stores (default 100) rendered with fresh secrets and
//! server-side applied by the apply engine, `BENCH_STORES_AT_ONCE` stores at once
//! (default 100: all of them, the fastest setting measured) and 8 objects of a phase
//! at once, phases in order — but without the
//! orchestrator's readiness gate between phases. The clock stops when the API server
//! has answered the last apply: every object of every store is in the cluster, not
//! necessarily ready. The same stores are then applied again at once (the cost of a
//! resync while they converge) and torn down. `BENCH_APPLY_DEBUG=1` prints, for each
//! store whose second apply updated something, the objects whose resourceVersion moved.
//!
//! Run: `cargo bench --bench apply` (or `bench/run apply`); results go in
//! bench/RESULTS.md.

mod support;

use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};
use storeplane::apply::{Applier, ApplyCounts, ApplySettings, Desired};
use storeplane::blueprint::{Catalog, RenderInput, StoreRef};
use storeplane::config::PlatformSettings;
use storeplane::domain::Phase;
use support::{env_usize, percentile, use_testenv_unless_kubeconfig};
use uuid::Uuid;

struct Store {
    namespace: String,
    id: String,
    desired: Vec<Desired>,
}

/// Applies one store's phases in order, each phase's objects 8 at once, with no wait
/// for readiness. Returns what the API server said and how long the store took.
async fn apply_store(applier: &Applier, store: &Store) -> (ApplyCounts, Duration) {
    let started = Instant::now();
    let before = applier
        .inventory(&store.namespace, &store.id)
        .await
        .expect("inventory");
    let mut total = ApplyCounts::default();
    for phase in Phase::ALL {
        let objects: Vec<&Desired> = store.desired.iter().filter(|d| d.phase == phase).collect();
        if objects.is_empty() {
            continue;
        }
        let (counts, _ready) = applier
            .apply_objects(&store.namespace, &objects, &before)
            .await
            .unwrap_or_else(|e| panic!("apply {}: {e}", store.namespace));
        total.created += counts.created;
        total.updated += counts.updated;
        total.unchanged += counts.unchanged;
    }
    if std::env::var_os("BENCH_APPLY_DEBUG").is_some() && total.updated > 0 {
        let after = applier
            .inventory(&store.namespace, &store.id)
            .await
            .expect("inventory");
        for (k, seen) in &after.objects {
            if before.objects.get(k) != Some(seen) {
                eprintln!("moved: {k} {:?} -> {seen:?}", before.objects.get(k));
            }
        }
    }
    (total, started.elapsed())
}

/// Applies every store, `at_once` stores at a time; returns the wall time, the
/// summed counts and each store's own time.
async fn apply_all(
    applier: &Applier,
    stores: &[Store],
    at_once: usize,
) -> (Duration, ApplyCounts, Vec<Duration>) {
    let started = Instant::now();
    let results: Vec<(ApplyCounts, Duration)> = futures::stream::iter(stores)
        .map(|s| apply_store(applier, s))
        .buffer_unordered(at_once)
        .collect()
        .await;
    let wall = started.elapsed();
    let mut total = ApplyCounts::default();
    let mut each = Vec::new();
    for (c, d) in results {
        total.created += c.created;
        total.updated += c.updated;
        total.unchanged += c.unchanged;
        each.push(d);
    }
    each.sort();
    (wall, total, each)
}

fn line(what: &str, n: usize, wall: Duration, counts: &ApplyCounts, each: &[Duration]) -> String {
    format!(
        "| {what} | {n} | {:.2} s | {} / {} / {} | {:.0} ms | {:.0} ms | {:.0} ms |",
        wall.as_secs_f64(),
        counts.created,
        counts.updated,
        counts.unchanged,
        percentile(each, 0.5).as_secs_f64() * 1e3,
        percentile(each, 0.99).as_secs_f64() * 1e3,
        each.last().expect("at least one store").as_secs_f64() * 1e3,
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_usize("BENCH_APPLY_N", 100);
    let at_once = env_usize("BENCH_STORES_AT_ONCE", 100);

    use_testenv_unless_kubeconfig();
    let client = storeplane::apply::connect().await.expect("cluster");
    let applier = Applier::new(client, ApplySettings::default());
    let catalog = Catalog::builtin().expect("built-in blueprints load");
    let blueprint = catalog.get("woocommerce").expect("woocommerce blueprint");
    let platform = PlatformSettings::default();

    let render_started = Instant::now();
    let stores: Vec<Store> = (0..n)
        .map(|_| {
            let id = Uuid::new_v4();
            let store = StoreRef::new(format!("a-{}", &id.simple().to_string()[..10]), id);
            let secrets = blueprint.generate_secrets();
            let rendered = blueprint
                .render(&RenderInput {
                    store: &store,
                    params: &json!({}),
                    secrets: &secrets,
                    platform: &platform,
                })
                .expect("built-in blueprint renders");
            Store {
                namespace: store.namespace.clone(),
                id: id.to_string(),
                desired: rendered.objects.into_iter().map(Desired::from).collect(),
            }
        })
        .collect();
    let rendered_in = render_started.elapsed();
    let objects: usize = stores.iter().map(|s| s.desired.len()).sum();

    let mut lines = vec![
        "| run | stores | start → last apply answered | created / updated / unchanged | per store p50 | per store p99 | per store max |".to_owned(),
        "|---|---|---|---|---|---|---|".to_owned(),
    ];
    let (wall, counts, each) = apply_all(&applier, &stores, at_once).await;
    assert_eq!(
        counts.created, objects,
        "every object is new on the first apply"
    );
    lines.push(line("first apply", n, wall, &counts, &each));
    // The controllers are still bringing these stores up, and every status they write
    // moves an object's resourceVersion between the inventory and the apply, so
    // "updated" here counts their writes too (the integration tests check, on ready
    // stores, that a re-apply changes no resourceVersion).
    let (wall, counts, each) = apply_all(&applier, &stores, at_once).await;
    lines.push(line("same stores again, at once", n, wall, &counts, &each));

    let started = Instant::now();
    let torn: Vec<()> = futures::stream::iter(&stores)
        .map(|s| {
            let applier = applier.clone();
            async move {
                applier
                    .teardown(&s.namespace)
                    .await
                    .unwrap_or_else(|e| panic!("teardown {}: {e}", s.namespace))
            }
        })
        .buffer_unordered(at_once)
        .collect()
        .await;
    let torn_down = started.elapsed();

    println!("{}", lines.join("\n"));
    println!(
        "\n{n} stores, {objects} objects, rendered in {:.1} ms; {at_once} stores at once, \
         8 objects of a phase at once, phases in order without waiting for readiness; \
         {} namespaces torn down in {:.1} s.",
        rendered_in.as_secs_f64() * 1e3,
        torn.len(),
        torn_down.as_secs_f64()
    );
}
