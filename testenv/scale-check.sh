#!/usr/bin/env bash
# A capacity check of a running testenv (not a Storeplane benchmark): N namespaces,
# each with 2 PVCs and a 1-replica Deployment mounting both — roughly what N stores
# need — then deletes the namespaces and waits until they and their PVs are gone.
# Prints the time of each phase. Talks to the API with curl and the admin cert.
#
# Usage: testenv/scale-check.sh [N]     (default 100; STOREPLANE_TESTENV_DIR as for cluster)
set -euo pipefail

N="${1:-100}"
STATE="${STOREPLANE_TESTENV_DIR:-$HOME/.local/state/storeplane/testenv}"
[[ -f "$STATE/state.env" ]] || {
	echo "testenv is not up ($STATE); run testenv/cluster up" >&2
	exit 1
}
# shellcheck source=/dev/null
source "$STATE/state.env"
P="$STATE/pki"
A=(curl -sS --max-time 30 --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" -H "Content-Type: application/json")
U="https://127.0.0.1:$API_PORT"
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

store() { # <namespace>
	local ns="$1" c
	"${A[@]}" -X POST "$U/api/v1/namespaces" -d "{\"metadata\":{\"name\":\"$ns\",\"labels\":{\"storeplane.dev/scale-check\":\"true\"}}}" >/dev/null
	for c in db files; do
		"${A[@]}" -X POST "$U/api/v1/namespaces/$ns/persistentvolumeclaims" \
			-d "{\"metadata\":{\"name\":\"$c\"},\"spec\":{\"accessModes\":[\"ReadWriteOnce\"],\"resources\":{\"requests\":{\"storage\":\"10Gi\"}}}}" >/dev/null
	done
	"${A[@]}" -X POST "$U/apis/apps/v1/namespaces/$ns/deployments" -d '{"metadata":{"name":"app"},"spec":{"replicas":1,
		"selector":{"matchLabels":{"app":"app"}},"template":{"metadata":{"labels":{"app":"app"}},"spec":{
		"containers":[{"name":"app","image":"nginx:1.27","resources":{"requests":{"cpu":"100m","memory":"128Mi"}}}],
		"volumes":[{"name":"db","persistentVolumeClaim":{"claimName":"db"}},{"name":"files","persistentVolumeClaim":{"claimName":"files"}}]}}}}' >/dev/null
}

t0="$(date +%s%N)"
for ((i = 1; i <= N; i++)); do
	store "scale-$i" &
	((i % 10 == 0)) && wait
done
wait
echo "created $N namespaces with $((2 * N)) PVCs and $N Deployments in $(ms_since "$t0") ms"
sel="labelSelector=storeplane.dev/scale-check%3Dtrue"
while :; do
	bound="$("${A[@]}" "$U/api/v1/persistentvolumeclaims" | jq '[.items[] | select(.metadata.namespace | startswith("scale-")) | select(.status.phase == "Bound")] | length')"
	ready="$("${A[@]}" "$U/apis/apps/v1/deployments" | jq '[.items[] | select(.metadata.namespace | startswith("scale-")) | select(.status.readyReplicas == 1)] | length')"
	((bound >= 2 * N && ready >= N)) && break
	sleep 0.5
done
echo "all $((2 * N)) PVCs Bound and $N Deployments ready after $(ms_since "$t0") ms"

t1="$(date +%s%N)"
for ((i = 1; i <= N; i++)); do "${A[@]}" -X DELETE "$U/api/v1/namespaces/scale-$i" >/dev/null & done
wait
while (("$("${A[@]}" "$U/api/v1/namespaces?$sel" | jq '.items | length')" > 0)); do sleep 0.5; done
echo "all $N namespaces gone $(ms_since "$t1") ms after their deletion"
while (("$("${A[@]}" "$U/api/v1/persistentvolumes" | jq '[.items[] | select(.spec.claimRef.namespace // "" | startswith("scale-"))] | length')" > 0)); do sleep 0.5; done
echo "all their PersistentVolumes deleted $(ms_since "$t1") ms after the namespaces' deletion"
