#!/usr/bin/env bash
# Builds `helm` (the render benchmark's baseline; Storeplane itself never runs helm)
# from the pinned wrapper Go module bench/helm/module into the versioned cache
#   ${STOREPLANE_CACHE_DIR:-$HOME/.cache/storeplane}/helm/<version-key>/bin/helm
# and does nothing when it is already there. A lock keeps concurrent callers (parallel
# tests, two scripts) from building it twice; the binary appears atomically.
#
# Usage: bench/helm/build.sh              build if missing (progress on stderr)
#        bench/helm/build.sh --print-bin  print the binary's path (no build)
#        bench/helm/build.sh --check      exit 0 when the binary is cached, 1 otherwise
#
# Environment: STOREPLANE_CACHE_DIR (cache root), HELM_GO_BUILD_P (go build -p,
# default 2), GOMODCACHE/GOCACHE (Go's own caches; default Go locations).
set -euo pipefail

# shellcheck source=bench/helm/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

case "${1:-}" in
--print-bin)
	echo "$HELM_BIN"
	exit 0
	;;
--check)
	[[ -x "$HELM_BIN" ]]
	exit
	;;
"") ;;
*) helm_die "unknown argument '$1' (usage: build.sh [--print-bin|--check])" ;;
esac

[[ -x "$HELM_BIN" ]] && exit 0

command -v go >/dev/null 2>&1 || helm_die "Go is required to build helm (need Go >= 1.26; https://go.dev/dl/). Cache: $HELM_BIN"
gover="$(go env GOVERSION)"
if [[ ! "$gover" =~ ^go1\.([0-9]+) ]] || ((BASH_REMATCH[1] < 26)); then
	helm_die "Go $gover is too old: helm $HELM_VERSION needs Go >= 1.26"
fi

# versions.env labels the binary (ldflags, cache key); the wrapper go.mod decides what
# is compiled. Refuse to build when they disagree.
pinned="$(sed -nE 's#^[[:space:]]*(require[[:space:]]+)?helm\.sh/helm/v3[[:space:]]+(v[^[:space:]]+).*#\2#p' "$HELM_MODULE/go.mod" | head -n1)"
[[ "$pinned" == "$HELM_VERSION" ]] ||
	helm_die "bench/helm/versions.env pins helm $HELM_VERSION but bench/helm/module/go.mod requires ${pinned:-nothing}; change both (then 'go mod tidy' there)"

mkdir -p "$HELM_CACHE/bin" "$HELM_CACHE/logs"
exec 9>"$HELM_CACHE/build.lock"
if ! flock -n 9; then
	helm_log "another build of $HELM_KEY is running; waiting for it"
	flock 9
fi
# Re-check under the lock: the other build may have finished it.
[[ -x "$HELM_BIN" ]] && exit 0

# What helm's own Makefile sets: the version, a clean tree, and the Kubernetes version
# `helm template` assumes (derived from the client-go it is built with).
module_time() {
	(cd "$HELM_MODULE" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' helm.sh/helm/v3 2>/dev/null) || true
}
clientgo="$(cd "$HELM_MODULE" && GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' k8s.io/client-go)"
[[ "$clientgo" =~ ^v0\.([0-9]+)\. ]] || helm_die "unexpected k8s.io/client-go version '$clientgo' in bench/helm/module"
k8s_minor="${BASH_REMATCH[1]}"
ldflags=(-s -w
	-X "helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
	-X "helm.sh/helm/v3/internal/version.metadata="
	-X "helm.sh/helm/v3/internal/version.gitTreeState=clean"
	-X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
	-X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
	-X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
	-X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor")

out="$HELM_CACHE/bin/.helm.tmp.$$"
timef="$HELM_CACHE/logs/build.time"
trap 'rm -f "$out"' EXIT
timer=()
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$timef")
helm_log "building helm $HELM_VERSION (published $(module_time)) into $HELM_BIN"
helm_log "a cold build takes a few minutes on 2 cores; log: $HELM_CACHE/logs/build.log"
start=$SECONDS
if ! (cd "$HELM_MODULE" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "${timer[@]}" \
	go build -trimpath -p "${HELM_GO_BUILD_P:-2}" -ldflags "${ldflags[*]}" -o "$out" helm.sh/helm/v3/cmd/helm) \
	>"$HELM_CACHE/logs/build.log" 2>&1 || [[ ! -s "$out" ]]; then
	cat "$HELM_CACHE/logs/build.log" >&2
	helm_die "building helm failed; see $HELM_CACHE/logs/build.log"
fi
got="$("$out" version --template '{{.Version}}')"
[[ "$got" == "$HELM_VERSION" ]] || helm_die "the built helm reports version '$got', expected $HELM_VERSION"
mv -f "$out" "$HELM_BIN"
secs=$((SECONDS - start))
rss=""
[[ -f "$timef" ]] && rss="$(awk -F': ' '/Maximum resident/ {printf "%.0f MiB", $2/1024}' "$timef")"
printf '%s\t%ss\t%s\t%s\t%s\n' "$HELM_VERSION" "$secs" "${rss:-?}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${GOCACHE:-$(go env GOCACHE)}" >>"$HELM_CACHE/build-times.tsv"
helm_log "built helm $HELM_VERSION in ${secs}s${rss:+ (peak RSS $rss)}: $HELM_BIN"
