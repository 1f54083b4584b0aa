# shellcheck shell=bash
# Shared by testenv/build.sh and testenv/cluster: pinned versions, the binary cache
# location and its version key. Source it; it defines variables and functions only.

TESTENV_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$TESTENV_SRC/versions.env"

TESTENV_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)

log() { printf '[testenv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[testenv] error: %s\n' "$*" >&2; exit 1; }

# The version key: human-readable pins plus a hash of everything that decides what
# the binaries are (the pins, the wrapper go.mod/go.sum files, the recipe number and
# the platform). Changing any pin or wrapper module is a cache miss.
testenv_version_key() {
	local h
	h="$(
		{
			grep -v '^[[:space:]]*#' "$TESTENV_SRC/versions.env" | sed 's/[[:space:]]*#.*//' | grep -v '^[[:space:]]*$'
			for m in kubernetes etcd kwok; do
				cat "$TESTENV_SRC/modules/$m/go.mod" "$TESTENV_SRC/modules/$m/go.sum"
			done
			uname -s -m
		} | sha256sum | cut -c1-12
	)"
	printf 'k8s-%s_etcd-%s_kwok-%s_%s' "$KUBERNETES_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$h"
}

TESTENV_CACHE_ROOT="${STOREPLANE_CACHE_DIR:-$HOME/.cache/storeplane}/testenv"
TESTENV_KEY="$(testenv_version_key)"
TESTENV_CACHE="$TESTENV_CACHE_ROOT/$TESTENV_KEY"
TESTENV_BIN="$TESTENV_CACHE/bin"
TESTENV_STAGES="$TESTENV_CACHE/kwok-stages.yaml"

# True when every binary and the kwok stages are in the cache.
testenv_cache_complete() {
	[[ -z "$(testenv_missing_binaries)" && -s "$TESTENV_STAGES" ]]
}

# Prints the names of binaries missing from the cache (nothing on a full hit).
testenv_missing_binaries() {
	local b
	for b in "${TESTENV_BINARIES[@]}"; do
		[[ -x "$TESTENV_BIN/$b" ]] || echo "$b"
	done
}
