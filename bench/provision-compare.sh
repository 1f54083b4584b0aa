#!/usr/bin/env bash
# Provisioning comparison on the testenv cluster: N WooCommerce stores made ready by
# Storeplane (`storeplane serve`, API create) against `helm install --wait` of the Helm
# twin of the blueprint (bench/chart/woocommerce), sequentially and with Storeplane's
# worker count as concurrency.
#
#   bench/provision-compare.sh              N = 1 10 100, every mode
#   bench/provision-compare.sh 1 10         other N
#   MODES="storeplane helm-seq" bench/provision-compare.sh 1 10
#
# Modes, each run once per N, one after the other (never two at once):
#   storeplane  a release `storeplane serve` on a fresh SQLite data dir (default workers,
#               8), an admin user, rate limits raised by flags. The driver logs in,
#               POSTs N stores ({"name":…,"engine":"woocommerce","params":{}}) and polls
#               GET /api/stores/{id} every 0.2 s until every store is `ready`.
#               Wall time: first POST → last store seen ready. CPU time (utime+stime of
#               /proc/<pid>/stat) and peak RSS (VmHWM) of the server process, read when
#               all are ready; the CPU before the first POST (start-up, migrations) is
#               subtracted. Then every store is DELETEd and the driver waits for 404s
#               (timed separately).
#   helm-seq    per store, one after the other: (1) `kubectl apply` of the store's
#   helm-conc   Namespace carrying Helm's ownership metadata (helm cannot create a
#               namespace with labels, and `--create-namespace` would collide with the
#               Namespace object the chart renders, as the blueprint does), then (2)
#               `helm install <name> bench/chart/woocommerce --namespace <ns>
#               -f secrets-values.yaml --set store.id=<uuid> --wait --wait-for-jobs
#               --timeout 10m` — the chart renders and applies the Namespace (adopted),
#               ResourceQuota, LimitRange, NetworkPolicies, Secrets, PVC, MySQL, the
#               installer Job, WordPress, the CronJob and the Ingress; --wait-for-jobs
#               because Storeplane's readiness waits for the installer Job too.
#               helm-conc runs the same per-store script with xargs -P $WORKERS.
#               Wall time: first process start → last install returned. CPU time and
#               peak RSS from `/usr/bin/time -f` of every kubectl and helm process (CPU
#               summed, RSS the largest single process), helm and kubectl reported
#               separately. Then the namespaces are deleted and awaited (timed).
#
# Every namespace this script makes starts with store-pcmp<run id>; it deletes only
# those. testenv is shared: the script never stops the cluster. The fixture secrets
# (bench/helm/secrets.yaml) are the same for every helm store; Storeplane generates its
# own per store, as it always does.
#
# Output: bench/out/provision-compare/<mode>-<N>.json and summary.md (gitignored);
# bench/provision-compare.png is the plot (wall time vs N).
#
# Environment: CARGO_TARGET_DIR, WORKERS (default 8 = storeplane's default --workers),
# MODES (default "storeplane helm-seq helm-conc"), TIMEOUT (seconds per run, default
# 1800), STOREPLANE_BIN (a release storeplane binary to use instead of `cargo build --release`,
# e.g. while another cargo command holds the target directory's lock). The plot uses
# matplotlib from a venv this script creates once in ~/.cache/storeplane/plot-venv.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT" || exit 1

if (($# > 0)); then NS_LIST=("$@"); else NS_LIST=(1 10 100); fi
WORKERS="${WORKERS:-8}"
MODES="${MODES:-storeplane helm-seq helm-conc}"
TIMEOUT="${TIMEOUT:-1800}"
MATPLOTLIB_VERSION=3.10.8
PLOT_VENV="$CACHE_DIR/plot-venv"
CHART=bench/chart/woocommerce
SECRETS=bench/helm/secrets.yaml
OUT="$ROOT/bench/out/provision-compare"
RUN_ID="$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PREFIX="pcmp$RUN_ID"

need_cmd python3 python3
need_cmd kubectl kubectl
[[ -x /usr/bin/time ]] || apt_install time
ensure_rust
mkdir -p "$OUT" "$OUT/helm-home"

say "testenv (shared: brought up if needed, never stopped here)"
testenv/cluster up >&2
KUBECONFIG="$(testenv/cluster kubeconfig)"
export KUBECONFIG

say "helm (bench/helm/build.sh) and storeplane (cargo build --release)"
bench/helm/build.sh >&2
HELM="$(bench/helm/build.sh --print-bin)"
if [[ -n "${STOREPLANE_BIN:-}" ]]; then
	STOREPLANE="$STOREPLANE_BIN"
	[[ -x "$STOREPLANE" ]] || die "STOREPLANE_BIN=$STOREPLANE is not an executable"
else
	cargo build --release --locked --bin storeplane >&2
	TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
	STOREPLANE="$TARGET_DIR/release/storeplane"
fi
export HELM_CONFIG_HOME="$OUT/helm-home/config" HELM_CACHE_HOME="$OUT/helm-home/cache" \
	HELM_DATA_HOME="$OUT/helm-home/data"

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "cpus: $(nproc) ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), memory $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "storeplane: $(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo '+uncommitted changes'), workers $WORKERS"
	echo "helm: $("$HELM" version --template '{{.Version}} ({{.GoVersion}})')"
	echo "kubectl: $(kubectl version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
	echo "cluster: testenv ($(kubectl get nodes --no-headers | wc -l) kwok nodes), server $(kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
	echo "run id: $PREFIX"
} | tee "$OUT/machine-$PREFIX.txt" >&2

# helm takes the secrets as values under `secrets:` (as bench/render-compare.sh does).
{
	echo "secrets:"
	grep -v '^[[:space:]]*\(#\|$\)' "$SECRETS" | sed 's/^/  /'
} >"$OUT/secrets-values.yaml"

load() { cut -d' ' -f1-3 /proc/loadavg; }

# Deletes this run's namespaces (store-$PREFIX-*) and waits until they are gone.
delete_namespaces() {
	local left
	mapfile -t left < <(kubectl get ns -o name | sed -n "s|^namespace/\(store-$PREFIX-.*\)|\1|p")
	((${#left[@]} == 0)) && return 0
	kubectl delete ns --wait=false "${left[@]}" >/dev/null
	local deadline=$((SECONDS + 600))
	# Not `| grep -q`: under pipefail, grep exiting at the first match can SIGPIPE
	# kubectl and end the loop while namespaces are still there.
	while [[ -n "$(kubectl get ns -o name | sed -n "\|^namespace/store-$PREFIX-|p")" ]]; do
		((SECONDS < deadline)) || die "namespaces store-$PREFIX-* still there after 600 s"
		sleep 1
	done
}
trap 'delete_namespaces || true' EXIT

# --- storeplane -------------------------------------------------------------------

run_storeplane() {
	local n="$1" work pid url="" password
	work="$OUT/work-$PREFIX/storeplane-$n"
	rm -rf "$work"
	mkdir -p "$work"
	password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
	printf '%s\n' "$password" | "$STOREPLANE" user create --data-dir "$work/data" \
		--email bench@example.test --admin --store-limit 1000000 --password-stdin >/dev/null
	"$STOREPLANE" serve --data-dir "$work/data" --listen 127.0.0.1:0 --workers "$WORKERS" \
		--rate-limit 100000000/1s --create-rate-limit 100000000/1s --login-rate-limit 1000/1s \
		--log warn >"$work/serve.out" 2>"$work/serve.log" &
	pid=$!
	for _ in $(seq 1 300); do
		url="$(sed -n 's/^storeplane listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out" | head -n 1)"
		[[ -n "$url" ]] && break
		sleep 0.1
	done
	[[ -n "$url" ]] || die "storeplane serve did not start; see $work/serve.log"
	python3 - "$url" "$password" "$n" "$PREFIX" "$pid" "$TIMEOUT" "$(load)" >"$OUT/storeplane-$n.json" <<'PY' || {
import json, os, sys, time, urllib.error, urllib.request

url, password, n, prefix, pid, timeout, load_start = sys.argv[1:8]
n, timeout = int(n), float(timeout)
tick = os.sysconf("SC_CLK_TCK")

def cpu_s():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

def status_kb(key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

def call(method, path, body=None, token=None):
    req = urllib.request.Request(url + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r) if r.length != 0 else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")

s, login = call("POST", "/api/auth/login", {"email": "bench@example.test", "password": password})
assert s == 200, f"login: {s} {login}"
token = login["token"]
cpu_before, rss_before = cpu_s(), status_kb("VmRSS")

t0 = time.monotonic()
ids = {}
for i in range(n):
    s, body = call("POST", "/api/stores", {"name": f"{prefix}-{i}", "engine": "woocommerce", "params": {}}, token)
    assert s == 201, f"create {i}: {s} {body}"
    ids[body["id"]] = None
t_created = time.monotonic() - t0
pending = set(ids)
while pending:
    if time.monotonic() - t0 > timeout:
        sys.exit(f"timeout: {len(pending)} of {n} stores not ready")
    for sid in sorted(pending):
        s, body = call("GET", f"/api/stores/{sid}", token=token)
        assert s == 200, f"get {sid}: {s} {body}"
        if body["status"] == "ready":
            ids[sid] = time.monotonic() - t0
            pending.discard(sid)
        elif body["status"] == "failed":
            sys.exit(f"store {sid} failed: {body.get('error_message')}")
    if pending:
        time.sleep(0.2)
wall = time.monotonic() - t0
cpu_ready, hwm_ready, load_ready = cpu_s(), status_kb("VmHWM"), open("/proc/loadavg").read().split()[:3]

t1 = time.monotonic()
for sid in ids:
    s, body = call("DELETE", f"/api/stores/{sid}", token=token)
    assert s in (200, 202, 204), f"delete {sid}: {s} {body}"
gone = set()
while len(gone) < n:
    if time.monotonic() - t1 > timeout:
        sys.exit(f"timeout: {n - len(gone)} stores not deleted")
    for sid in set(ids) - gone:
        if call("GET", f"/api/stores/{sid}", token=token)[0] == 404:
            gone.add(sid)
    if len(gone) < n:
        time.sleep(0.5)
delete_wall = time.monotonic() - t1
ready = sorted(ids.values())
json.dump({
    "mode": "storeplane", "n": n, "wall_s": wall, "post_all_s": t_created,
    "first_ready_s": ready[0], "median_ready_s": ready[len(ready) // 2],
    "cpu_s": cpu_ready - cpu_before, "cpu_startup_s": cpu_before,
    "peak_rss_mib": hwm_ready / 1024, "rss_before_mib": rss_before / 1024,
    "delete_wall_s": delete_wall, "cpu_after_delete_s": cpu_s() - cpu_before,
    "load_start": load_start, "load_ready": " ".join(load_ready),
}, sys.stdout, indent=1)
PY
		kill -TERM "$pid" 2>/dev/null
		die "storeplane run with N=$n failed; see $work/serve.log"
	}
	kill -TERM "$pid"
	wait "$pid" || true
}

# --- helm -------------------------------------------------------------------------

# One store: the namespace (kubectl), then helm install --wait. Arguments: store index,
# times dir. Every process runs under /usr/bin/time; the last line of each file is
# "wall user sys maxrss_kb".
helm_one() {
	local i="$1" dir="$2" name id ns
	name="$PREFIX-$i"
	id="$(cat /proc/sys/kernel/random/uuid)"
	ns="store-$name-${id: -8}"
	printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels: {app.kubernetes.io/managed-by: Helm}\n  annotations: {meta.helm.sh/release-name: %s, meta.helm.sh/release-namespace: %s}\n' \
		"$ns" "$name" "$ns" >"$dir/ns-$i.yaml"
	/usr/bin/time -f '%e %U %S %M' -o "$dir/kubectl-$i.time" \
		kubectl apply -f "$dir/ns-$i.yaml" >"$dir/kubectl-$i.log" 2>&1 ||
		{ echo "store $i: kubectl failed: $(cat "$dir/kubectl-$i.log")" >&2; return 1; }
	/usr/bin/time -f '%e %U %S %M' -o "$dir/helm-$i.time" \
		"$HELM" install "$name" "$CHART" --namespace "$ns" -f "$OUT/secrets-values.yaml" \
		--set "store.id=$id" --wait --wait-for-jobs --timeout 10m >"$dir/helm-$i.log" 2>&1 ||
		{ echo "store $i: helm failed: $(tail -n 5 "$dir/helm-$i.log")" >&2; return 1; }
}
export -f helm_one
export PREFIX HELM CHART OUT

run_helm() {
	local mode="$1" n="$2" conc dir t0 t1 load_start
	conc=1
	[[ "$mode" == helm-conc ]] && conc="$WORKERS"
	dir="$OUT/work-$PREFIX/$mode-$n"
	rm -rf "$dir"
	mkdir -p "$dir"
	load_start="$(load)"
	t0="$(date +%s.%N)"
	# shellcheck disable=SC2016 # $1 and $2 are bash -c's own arguments
	seq 0 $((n - 1)) | timeout "$TIMEOUT" xargs -P "$conc" -I{} bash -c 'helm_one "$1" "$2"' _ {} "$dir" ||
		die "$mode with N=$n failed; logs in $dir"
	t1="$(date +%s.%N)"
	local load_ready d0 d1
	load_ready="$(load)"
	d0="$(date +%s.%N)"
	delete_namespaces
	d1="$(date +%s.%N)"
	python3 - "$dir" "$mode" "$n" "$conc" "$t0" "$t1" "$d0" "$d1" "$load_start" "$load_ready" >"$OUT/$mode-$n.json" <<'PY'
import glob, json, sys
d, mode, n, conc, t0, t1, d0, d1, load_start, load_ready = sys.argv[1:11]
def times(tool):
    rows = []
    for f in sorted(glob.glob(f"{d}/{tool}-*.time")):
        wall, user, sys_, rss = open(f).read().split("\n")[-2].split()
        rows.append((float(wall), float(user) + float(sys_), int(rss)))
    assert len(rows) == int(n), f"{tool}: {len(rows)} of {n} time files"
    return rows
h, k = times("helm"), times("kubectl")
walls = sorted(r[0] for r in h)
json.dump({
    "mode": mode, "n": int(n), "concurrency": int(conc), "wall_s": float(t1) - float(t0),
    "helm_cpu_s": sum(r[1] for r in h), "kubectl_cpu_s": sum(r[1] for r in k),
    "cpu_s": sum(r[1] for r in h) + sum(r[1] for r in k),
    "helm_peak_rss_mib": max(r[2] for r in h) / 1024, "kubectl_peak_rss_mib": max(r[2] for r in k) / 1024,
    "peak_rss_mib": max(r[2] for r in h + k) / 1024,
    "helm_install_median_s": walls[len(walls) // 2], "helm_install_max_s": walls[-1],
    "delete_wall_s": float(d1) - float(d0), "load_start": load_start, "load_ready": load_ready,
}, sys.stdout, indent=1)
PY
}

for n in "${NS_LIST[@]}"; do
	for mode in $MODES; do
		say "$mode, N=$n (load $(load))"
		case "$mode" in
		storeplane) run_storeplane "$n" ;;
		helm-seq | helm-conc) run_helm "$mode" "$n" ;;
		*) die "unknown mode $mode" ;;
		esac
		cat "$OUT/$mode-$n.json" >&2
		echo >&2
	done
done

say "summary ($OUT/summary.md) and plot (bench/provision-compare.png)"
python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import glob, json, sys
out = sys.argv[1]
rows = [json.load(open(f)) for f in glob.glob(f"{out}/*-*.json")]
rows.sort(key=lambda r: (r["n"], ["storeplane", "helm-seq", "helm-conc"].index(r["mode"])))
print("| N | tool | wall s | CPU s | peak RSS MiB | delete s | load at start → ready |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    cpu = f"{r['cpu_s']:.2f}" if r["mode"] == "storeplane" else f"{r['cpu_s']:.2f} (helm {r['helm_cpu_s']:.2f} + kubectl {r['kubectl_cpu_s']:.2f})"
    rss = f"{r['peak_rss_mib']:.0f}" if r["mode"] == "storeplane" else f"helm {r['helm_peak_rss_mib']:.0f}, kubectl {r['kubectl_peak_rss_mib']:.0f}"
    print(f"| {r['n']} | {r['mode']} | {r['wall_s']:.1f} | {cpu} | {rss} | {r['delete_wall_s']:.1f} | {r['load_start']} → {r['load_ready']} |")
PY
# The plot: matplotlib in a venv of its own under the cache dir, installed once.
if ! "$PLOT_VENV/bin/python" -c "import matplotlib, sys; sys.exit(matplotlib.__version__ != '$MATPLOTLIB_VERSION')" 2>/dev/null; then
	# Debian's python3 has the venv module without ensurepip (python3-venv adds it).
	python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
	python3 -m venv "$PLOT_VENV" || die "could not create a venv in $PLOT_VENV (apt-get install python3-venv)"
	"$PLOT_VENV/bin/python" -m pip install --quiet "matplotlib==$MATPLOTLIB_VERSION" >&2 \
		|| die "pip could not install matplotlib==$MATPLOTLIB_VERSION for the plot"
fi
"$PLOT_VENV/bin/python" bench/provision-plot.py "$OUT" bench/provision-compare.png \
	|| die "the plot failed (bench/provision-plot.py)"
