#!/usr/bin/env bash
# Builds the five testenv binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok) from the pinned wrapper Go modules in
# testenv/modules/ into the versioned cache
#   ${STOREPLANE_CACHE_DIR:-$HOME/.cache/storeplane}/testenv/<version-key>/bin/
# and does nothing for binaries already there. One `go build` at a time (the machine
# is shared); a lock keeps two concurrent callers from building the same thing.
#
# Usage: testenv/build.sh            build what is missing
#        testenv/build.sh --print-bin   print the bin directory (no build)
#        testenv/build.sh --check       exit 0 on a full cache hit, 1 otherwise
#
# Besides the binaries it writes kwok-stages.yaml next to bin/: kwok's own stage
# files (node initialize + heartbeat with lease, pod ready/complete/delete) taken
# from the pinned kwok module, so the stages always match the kwok binary.
#
# Environment: STOREPLANE_CACHE_DIR (cache root), TESTENV_GO_BUILD_P (go build -p,
# default 2), GOMODCACHE/GOCACHE (Go's own caches; default Go locations).
set -euo pipefail

# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

case "${1:-}" in
--print-bin)
	echo "$TESTENV_BIN"
	exit 0
	;;
--check)
	testenv_cache_complete
	exit
	;;
"") ;;
*) die "unknown argument '$1' (usage: build.sh [--print-bin|--check])" ;;
esac

mapfile -t missing < <(testenv_missing_binaries)
if ((${#missing[@]} == 0)) && [[ -s "$TESTENV_STAGES" ]]; then
	exit 0
fi

command -v go >/dev/null 2>&1 || die "Go is required to build the testenv binaries (need Go >= 1.26; https://go.dev/dl/). Cache: $TESTENV_BIN"
gover="$(go env GOVERSION)"
if [[ ! "$gover" =~ ^go1\.([0-9]+) ]] || ((BASH_REMATCH[1] < 26)); then
	die "Go $gover is too old: Kubernetes $KUBERNETES_VERSION needs Go >= 1.26"
fi

# versions.env labels the binaries (ldflags, cache key); the wrapper go.mod files
# decide what is compiled. Refuse to build when they disagree.
pin_in_gomod() { # <module-dir> <module-path> -> the version go.mod requires
	sed -nE "s#^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+(v[^[:space:]]+).*#\2#p" "$TESTENV_SRC/modules/$1/go.mod" | head -n1
}
check_pin() { # <module-dir> <module-path> <expected>
	local got
	got="$(pin_in_gomod "$1" "$2")"
	[[ "$got" == "$3" ]] || die "testenv/versions.env pins $2 $3 but testenv/modules/$1/go.mod requires ${got:-nothing}; change both (then 'go mod tidy' there)"
}
check_pin kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
check_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_pin kwok sigs.k8s.io/kwok "$KWOK_VERSION"
staging="$(grep -cE "=> k8s.io/[a-z-]+ $KUBERNETES_STAGING_VERSION\b" "$TESTENV_SRC/modules/kubernetes/go.mod" || true)"
((staging == 33)) || die "testenv/modules/kubernetes/go.mod must replace all 33 staging modules with $KUBERNETES_STAGING_VERSION (found $staging)"

mkdir -p "$TESTENV_BIN" "$TESTENV_CACHE/logs"
exec 9>"$TESTENV_CACHE/build.lock"
if ! flock -n 9; then
	log "another build of $TESTENV_KEY is running; waiting for it"
	flock 9
fi
# kwok's stages, concatenated from the pinned module's kustomize/stage/ files.
KWOK_STAGES=(
	node/fast/node-initialize.yaml
	node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
	pod/fast/pod-ready.yaml
	pod/fast/pod-complete.yaml
	pod/fast/pod-delete.yaml
)
assemble_stages() {
	local dir f tmp="$TESTENV_STAGES.tmp.$$"
	dir="$(cd "$TESTENV_SRC/modules/kwok" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
	if [[ -z "$dir" || ! -d "$dir/kustomize/stage" ]]; then
		(cd "$TESTENV_SRC/modules/kwok" && go mod download sigs.k8s.io/kwok)
		dir="$(cd "$TESTENV_SRC/modules/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
	fi
	{
		echo "# kwok $KWOK_VERSION stages, assembled by testenv/build.sh from sigs.k8s.io/kwok/kustomize/stage/"
		for f in "${KWOK_STAGES[@]}"; do
			echo "---"
			echo "# $f"
			cat "$dir/kustomize/stage/$f"
		done
	} >"$tmp"
	mv -f "$tmp" "$TESTENV_STAGES"
	log "wrote kwok stages: $TESTENV_STAGES"
}

# Re-check under the lock: the other build may have produced everything.
[[ -s "$TESTENV_STAGES" ]] || assemble_stages
mapfile -t missing < <(testenv_missing_binaries)
((${#missing[@]} == 0)) && exit 0

log "building testenv binaries into $TESTENV_BIN"
log "missing: ${missing[*]} — a cold build of all five takes ~20-30 minutes on 2 cores (one binary at a time)"

# The date the pinned module was published: a reproducible buildDate.
module_time() { # <module-dir> <module-path>
	(cd "$1" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' "$2" 2>/dev/null) || true
}

kube_ldflags() {
	local dir="$TESTENV_SRC/modules/kubernetes" v="${KUBERNETES_VERSION#v}" date
	date="$(module_time "$dir" k8s.io/kubernetes)"
	date="${date:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}"
	local major="${v%%.*}" rest="${v#*.}"
	local minor="${rest%%.*}" f=(-s -w) pkg kv
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		for kv in "gitVersion=$KUBERNETES_VERSION" "gitMajor=$major" "gitMinor=$minor" \
			"gitTreeState=clean" "buildDate=$date"; do
			f+=("-X" "$pkg.$kv")
		done
	done
	echo "${f[*]}"
}

build_one() { # <name>
	local name="$1" dir pkg ldflags
	case "$name" in
	kube-apiserver | kube-controller-manager | kube-scheduler)
		dir="$TESTENV_SRC/modules/kubernetes"
		pkg="k8s.io/kubernetes/cmd/$name"
		ldflags="$(kube_ldflags)"
		;;
	etcd)
		dir="$TESTENV_SRC/modules/etcd"
		pkg="go.etcd.io/etcd/server/v3"
		ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD_VERSION"
		;;
	kwok)
		dir="$TESTENV_SRC/modules/kwok"
		pkg="sigs.k8s.io/kwok/cmd/kwok"
		ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
		;;
	*) die "unknown binary $name" ;;
	esac
	local out="$TESTENV_BIN/.$name.tmp.$$" timef="$TESTENV_CACHE/logs/build-$name.time"
	local tags="selinux,notest"
	local cmd=(go build -trimpath -tags "$tags" -p "${TESTENV_GO_BUILD_P:-2}" -ldflags "$ldflags" -o "$out" "$pkg")
	local timer=()
	[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -v -o "$timef")
	local start=$SECONDS
	if ! (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "${timer[@]}" "${cmd[@]}") \
		2>&1 | tee "$TESTENV_CACHE/logs/build-$name.log" >&2 ||
		[[ ! -f "$out" ]]; then
		rm -f "$out"
		die "building $name failed; see $TESTENV_CACHE/logs/build-$name.log"
	fi
	mv -f "$out" "$TESTENV_BIN/$name"
	local secs=$((SECONDS - start)) rss=""
	[[ -f "$timef" ]] && rss="$(awk -F': ' '/Maximum resident/ {printf "%.0f MiB", $2/1024}' "$timef")"
	printf '%s\t%ss\t%s\t%s\n' "$name" "$secs" "${rss:-?}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$TESTENV_CACHE/build-times.tsv"
	log "built $name in ${secs}s${rss:+ (peak RSS $rss)}"
}

total_start=$SECONDS
i=0
for name in "${missing[@]}"; do
	i=$((i + 1))
	log "compiling $name ($i/${#missing[@]}) ..."
	build_one "$name"
done
log "testenv binaries ready in $((SECONDS - total_start))s: $TESTENV_BIN"
