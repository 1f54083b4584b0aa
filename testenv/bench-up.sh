#!/usr/bin/env bash
# Measures the warm start of the testenv: `down` then `up` N times (default 3), with
# the binaries already cached, in a state dir of its own so a cluster others use is
# not disturbed. Prints one line per run and the wall time of each `up`.
#
# Usage: testenv/bench-up.sh [runs]
#   STOREPLANE_TESTENV_DIR defaults here to /tmp/storeplane-testenv-bench.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runs="${1:-3}"
export STOREPLANE_TESTENV_DIR="${STOREPLANE_TESTENV_DIR:-/tmp/storeplane-testenv-bench}"

"$here/build.sh" --check || {
	echo "binaries are not cached; run testenv/build.sh first (this measures the warm start)" >&2
	exit 1
}
"$here/cluster" down >/dev/null 2>&1
for ((i = 1; i <= runs; i++)); do
	start="$(date +%s%N)"
	"$here/cluster" up >/dev/null 2>"$STOREPLANE_TESTENV_DIR.up.err" || {
		cat "$STOREPLANE_TESTENV_DIR.up.err" >&2
		exit 1
	}
	ms=$((($(date +%s%N) - start) / 1000000))
	inner="$(grep -o 'healthy in [0-9.]*s' "$STOREPLANE_TESTENV_DIR.up.err" || true)"
	printf 'run %d: up %d.%03ds wall (%s)\n' "$i" $((ms / 1000)) $((ms % 1000)) "$inner"
	start="$(date +%s%N)"
	"$here/cluster" down >/dev/null 2>&1
	ms=$((($(date +%s%N) - start) / 1000000))
	printf 'run %d: down %d.%03ds\n' "$i" $((ms / 1000)) $((ms % 1000))
done
rm -f "$STOREPLANE_TESTENV_DIR.up.err"
