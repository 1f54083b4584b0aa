# Everyday recipes. The scripts under scripts/ do the real work, so nothing here is
# needed on a fresh machine: `scripts/demo` and `scripts/test` are the README's commands.

set shell := ["bash", "-euo", "pipefail", "-c"]

export CARGO_TERM_COLOR := "never"

# List the recipes.
default:
    @just --list

# Run Storeplane locally: testenv cluster, API, orchestrator and dashboard on SQLite.
demo:
    scripts/demo

# Everything CI runs: format, lint, unit, integration, database, browser and API tests.
test:
    scripts/test

# Fault tests (docs/chaos.md): orchestrator kill -9s, kube-apiserver/etcd and PostgreSQL
# outages, two replicas of everything; e.g. `just chaos`, `just chaos a c`.
chaos *scenarios:
    scripts/chaos {{scenarios}}

# Format the code.
fmt:
    cargo fmt --all

# Formatting and clippy, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Unit and snapshot tests only (no cluster, no PostgreSQL).
unit:
    cargo test --workspace --lib --bins --locked

# Render a blueprint to stdout, e.g. `just render woocommerce shop --set plan=large`.
render engine name *args:
    cargo run --quiet -- render {{engine}} --name {{name}} {{args}}

# Lint every blueprint (built-in, plus --blueprints-dir if given).
blueprint-lint *args:
    cargo run --quiet -- blueprint lint {{args}}

# Start, inspect or stop the local Kubernetes control plane.
cluster *args:
    testenv/cluster {{args}}

# Start the test PostgreSQL server and print its URL.
postgres:
    scripts/postgres up

# The helm comparison: render (hyperfine + in-process) and provisioning on testenv
# (N stores, default 1 10 100). Figures go to bench/out/; see bench/RESULTS.md.
bench-helm *n:
    bench/render-compare.sh
    bench/provision-compare.sh {{n}}
