# shellcheck shell=bash
# Shared by bench/helm/build.sh and bench/render-compare.sh: the pinned helm version,
# the binary cache location and its version key. Source it; it defines variables and
# functions only.

HELM_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELM_MODULE="$HELM_SRC/module"
# shellcheck source=bench/helm/versions.env
source "$HELM_SRC/versions.env"

helm_log() { printf '[helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
helm_die() {
	printf '[helm] error: %s\n' "$*" >&2
	exit 1
}

# The version key: the pin plus a hash of everything that decides what the binary is
# (versions.env with its recipe number, the wrapper go.mod/go.sum, the platform).
helm_version_key() {
	local h
	h="$(
		{
			grep -v '^[[:space:]]*#' "$HELM_SRC/versions.env" | sed 's/[[:space:]]*#.*//' | grep -v '^[[:space:]]*$'
			cat "$HELM_MODULE/go.mod" "$HELM_MODULE/go.sum"
			uname -s -m
		} | sha256sum | cut -c1-12
	)"
	printf 'helm-%s_%s' "$HELM_VERSION" "$h"
}

HELM_CACHE_ROOT="${STOREPLANE_CACHE_DIR:-$HOME/.cache/storeplane}/helm"
HELM_KEY="$(helm_version_key)"
HELM_CACHE="$HELM_CACHE_ROOT/$HELM_KEY"
# shellcheck disable=SC2034 # used by the scripts that source this file
HELM_BIN="$HELM_CACHE/bin/helm"
