//! Storeplane's in-process render of the WooCommerce blueprint with the exact inputs the
//! helm side of the comparison gets (bench/helm/module/renderbench): store `bench` with
//! the fixed id, default parameters, the fixture secrets in bench/helm/secrets.yaml
//! (read once, not generated per render) and default platform settings.
//!
//! `render_vs_helm/objects`: validate the parameters against the blueprint's JSON Schema, render
//! the templates, parse and type every object, stamp labels, check the plan's storage —
//! input to typed objects. `render_vs_helm/objects+yaml`: the same, then printed as
//! `storeplane render -o yaml` prints it.
//!
//! Run: `cargo bench --bench render_vs_helm` (bench/render-compare.sh runs it with the
//! rest of the comparison and gives bench/RESULTS.md its helm figures).

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;
use storeplane::blueprint::{Catalog, RenderInput, StoreRef, StoreSecrets};
use storeplane::config::PlatformSettings;

/// The same id bench/render-compare.sh passes to `storeplane render --id` and helm.
const STORE_ID: &str = "5f0c8c1e-7d3a-4b2e-9f1a-2c6d8e4b7a90";

fn fixture_secrets() -> StoreSecrets {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/helm/secrets.yaml");
    let text = std::fs::read_to_string(path).expect("the secrets fixture exists");
    let map: BTreeMap<String, String> =
        serde_yaml::from_str(&text).expect("the secrets fixture is a name -> value mapping");
    map.into_iter().collect()
}

fn bench_render(c: &mut Criterion) {
    let catalog = Catalog::builtin().expect("built-in blueprints load");
    let bp = catalog.get("woocommerce").expect("woocommerce is built in");
    let store = StoreRef::new("bench", STORE_ID.parse().expect("a UUID"));
    let secrets = fixture_secrets();
    let params = json!({});
    let platform = PlatformSettings::default();
    let input = RenderInput {
        store: &store,
        params: &params,
        secrets: &secrets,
        platform: &platform,
    };
    let objects = bp
        .render(&input)
        .expect("woocommerce renders")
        .objects
        .len();
    assert!(objects >= 20, "only {objects} objects");

    let mut group = c.benchmark_group("render_vs_helm");
    group.bench_function("objects", |b| {
        b.iter(|| black_box(bp.render(black_box(&input)).expect("renders")))
    });
    group.bench_function("objects+yaml", |b| {
        b.iter(|| {
            let rendered = bp.render(black_box(&input)).expect("renders");
            black_box(rendered.to_yaml())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(100);
    targets = bench_render
}
criterion_main!(benches);
