//! Render speed: every built-in blueprint rendered with fresh secrets each time (secret
//! generation is part of the measured work), with criterion for mean and confidence
//! intervals, then a plain loop of timed renders for percentiles (criterion reports no
//! p99). Run: `cargo bench --bench render`. Results go in bench/RESULTS.md.
//!
//! The percentiles are given twice: wall time, and the rendering thread's own CPU time
//! (CLOCK_THREAD_CPUTIME_ID), which leaves out the time the thread waited for a CPU on
//! a busy machine. The allocator is the binary's (mimalloc, `storeplane::allocator`).

use criterion::{BenchmarkId, Criterion, criterion_group};
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};
use storeplane::blueprint::{Blueprint, Catalog, RenderInput, StoreRef};
use storeplane::config::PlatformSettings;

/// CPU time consumed by the calling thread so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One store's render as the orchestrator does it: fresh secrets, the render, and the
/// policy rules run on its objects (`render_checked`).
fn render_once(bp: &Blueprint, store: &StoreRef, platform: &PlatformSettings, yaml: bool) -> usize {
    let secrets = bp.generate_secrets();
    let params = json!({"plan": "medium"});
    let rendered = bp
        .render_checked(&RenderInput {
            store,
            params: &params,
            secrets: &secrets,
            platform,
        })
        .expect("built-in blueprints render");
    if yaml {
        rendered.to_yaml().len()
    } else {
        rendered.objects.len()
    }
}

fn store() -> StoreRef {
    StoreRef::new(
        "bench-shop",
        uuid::Uuid::from_u128(0xbe9c_0000_0000_4000_8000_0000_0000_0001),
    )
}

fn bench_render(c: &mut Criterion) {
    let catalog = Catalog::builtin().expect("built-in blueprints load");
    let platform = PlatformSettings::default();
    let store = store();
    let mut group = c.benchmark_group("render");
    for bp in catalog.iter() {
        group.bench_with_input(BenchmarkId::new("objects", &bp.name), bp, |b, bp| {
            b.iter(|| black_box(render_once(bp, &store, &platform, false)))
        });
        group.bench_with_input(BenchmarkId::new("objects+yaml", &bp.name), bp, |b, bp| {
            b.iter(|| black_box(render_once(bp, &store, &platform, true)))
        });
    }
    group.finish();
}

/// A fixed piece of CPU work of about a render's size (sorting a copy of the same
/// 20,000 numbers, then hashing 2,000 of them): its spread is the machine's own, so the
/// render's p99 can be read against it (bench/RESULTS.md, render run 5).
fn reference_work(data: &[u64]) -> usize {
    let mut sorted = data.to_vec();
    sorted.sort_unstable();
    let set: std::collections::HashSet<u64> = sorted[..2000].iter().copied().collect();
    set.len()
}

fn print_percentiles(name: &str, what: &str, times: &mut [Duration]) {
    let n = times.len();
    times.sort();
    let at = |q: f64| times[((n as f64 * q).ceil() as usize).min(n) - 1];
    println!(
        "  {name:<12} {what:<4} p50 {:>8.1?}  p90 {:>8.1?}  p99 {:>8.1?}  p99.9 {:>8.1?}  max {:>8.1?}  (p99/p50 {:.2})",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        times[n - 1],
        at(0.99).as_secs_f64() / at(0.50).as_secs_f64()
    );
}

/// Per-render wall time over `n` renders after a warm-up, as percentiles.
fn percentiles(n: usize) {
    let catalog = Catalog::builtin().expect("built-in blueprints load");
    let platform = PlatformSettings::default();
    let store = store();
    println!(
        "per-store render (fresh secrets, typed objects, policy checked), {n} renders after 200 warm-up:"
    );
    for bp in catalog.iter() {
        for _ in 0..200 {
            black_box(render_once(bp, &store, &platform, false));
        }
        let mut wall = Vec::with_capacity(n);
        let mut cpu = Vec::with_capacity(n);
        for _ in 0..n {
            let (t, c) = (Instant::now(), thread_cpu());
            black_box(render_once(bp, &store, &platform, false));
            cpu.push(thread_cpu() - c);
            wall.push(t.elapsed());
        }
        for (what, times) in [("wall", &mut wall), ("cpu", &mut cpu)] {
            print_percentiles(&bp.name, what, times);
        }
    }
    let data: Vec<u64> = (0..20_000u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    for _ in 0..200 {
        black_box(reference_work(&data));
    }
    let mut cpu = Vec::with_capacity(n);
    for _ in 0..n {
        let c = thread_cpu();
        black_box(reference_work(black_box(&data)));
        cpu.push(thread_cpu() - c);
    }
    print_percentiles("reference", "cpu", &mut cpu);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = bench_render
}

fn main() {
    // `cargo test --benches` runs this binary with `--test`: keep that quick.
    let quick = std::env::args().any(|a| a == "--test");
    percentiles(if quick { 10 } else { 5000 });
    benches();
    Criterion::default().configure_from_args().final_summary();
}
