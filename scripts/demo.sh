#!/usr/bin/env bash
# `make demo`: the engine, then the operator moving a replica live on the embedded dev cluster.
#
# 1. Makes the `small` synthetic checkpoint (once) and generates from it.
# 2. Starts a three-node dev cluster (hotswap-devcluster up): node-1 and node-2 carry a t4-sim
#    card, node-3 an a100-sim card 2.5x as fast (the agents' CPU backend runs at that ratio).
# 3. Applies the CRDs (crds/), starts hotswap-operator, and applies examples/modeldeployment.yaml:
#    the operator makes the control token's Secret, the Service, a PodDisruptionBudget and two
#    replica Pods, and gates each replica into the Service once its agent has loaded the model.
# 4. Streams through the Service's ClusterIP with hotswap-loadgen, then cordons the node of one
#    replica. The operator makes a ModelMigration (reason Maintenance), starts a target Pod on a
#    free node, pre-copies the KV cache while decoding goes on, switches, flips the readiness
#    gates and deletes the source once its relayed streams have ended.
# 5. Prints the report (requests ok/failed, tokens missing/duplicated, the largest gap between
#    two tokens, the migration's phases and timings, `kubectl get md,mm,pods -o wide`) and exits
#    non-zero if a request failed, a token was lost or repeated, or the migration did not complete.
set -euo pipefail
build=${1:-build}
models=${2:-models}
src=$(cd "$(dirname "$0")/.." && pwd)
agent=$(realpath "$build/agent/hotswap-agent")
operator=$(realpath "$build/operator/hotswap-operator")
devcluster=$(realpath "$build/e2e/devcluster/hotswap-devcluster")
loadgen=$(realpath "$build/e2e/loadgen/hotswap-loadgen")
model_rel="$models/small"
if [ ! -f "$model_rel/config.json" ]; then
  echo "== making the 'small' synthetic checkpoint in $model_rel"
  "$agent" make-model --preset small --arch llama --seed 1 --out "$model_rel"
fi
model=$(realpath "$model_rel")
echo "== greedy generation"
"$agent" generate --model "$model" --prompt "The operator moves the replica to a new GPU" --max-tokens 48
echo
echo "== sampled generation (temperature 0.8, top-p 0.95, seed 7), as JSON"
"$agent" generate --model "$model" --prompt "KV cache blocks" --max-tokens 32 --temperature 0.8 --top-p 0.95 \
  --seed 7 --json

work=$(mktemp -d)
cluster_dir="$work/devcluster"
operator_pid=
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    echo "-- the demo failed; the operator's log and the containers' logs:" >&2
    tail -n 30 "$work/operator.log" >&2 2>/dev/null || true
    [ -d "$cluster_dir/logs" ] && tail -n 20 "$cluster_dir"/logs/*.log >&2 || true
  fi
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
  "$devcluster" down --dir "$cluster_dir" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo
echo "== a dev cluster: node-1 and node-2 with a t4-sim card, node-3 with an a100-sim card 2.5x as fast"
export KUBECONFIG
KUBECONFIG=$("$devcluster" up --nodes 3 --gpu-classes t4-sim:1,t4-sim:1,a100-sim:2.5 --dir "$cluster_dir")
kubectl get nodes -L nvidia.com/gpu.product,hotswap.io/gpu-speed-factor

echo
echo "== kubectl apply -f crds/; hotswap-operator"
kubectl apply -f "$src/crds/"
kubectl wait --for=condition=Established crd/modeldeployments.hotswap.io crd/modelmigrations.hotswap.io --timeout=30s
# The example's model path (models/small) is found under --model-root, as on a real cluster under
# the volume the weights live on.
mkdir -p "$work/root"
ln -s "$(dirname "$model")" "$work/root/models"
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$operator" --kubeconfig "$KUBECONFIG" --agent-command "$agent" --model-root "$work/root" \
  --bind-address 127.0.0.1 --metrics-port "$metrics_port" --health-port 0 > "$work/operator.log" 2>&1 &
operator_pid=$!

echo
echo "== kubectl apply -f examples/modeldeployment.yaml: two replicas of 'small'"
kubectl apply -f "$src/examples/modeldeployment.yaml"
ready=
for _ in $(seq 1 600); do
  ready=$(kubectl get md small -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
  [ "$ready" = 2 ] && break
  kill -0 "$operator_pid" 2>/dev/null || { echo "demo: hotswap-operator exited" >&2; exit 1; }
  sleep 0.2
done
[ "$ready" = 2 ] || { echo "demo: the replicas did not become ready within 120 s" >&2; exit 1; }
kubectl get md,pods -o wide
cluster_ip=$(kubectl get service small -o jsonpath='{.spec.clusterIP}')
for _ in $(seq 1 100); do
  curl -sf "http://$cluster_ip/v1/models" > /dev/null 2>&1 && break
  sleep 0.1
done

echo
echo "== 8 streams through the Service (http://$cluster_ip); after 2 s the node of one replica is cordoned"
"$loadgen" --url "http://$cluster_ip" --streams 8 --requests 16 --max-tokens 160 --ignore-eos \
  > "$work/loadgen.txt" 2>&1 &
load=$!
sleep 2
source_pod=$(kubectl get pods -l hotswap.io/deployment=small -o jsonpath='{.items[0].metadata.name}')
source_node=$(kubectl get pod "$source_pod" -o jsonpath='{.spec.nodeName}')
echo "kubectl cordon $source_node   (it runs $source_pod)"
kubectl cordon "$source_node"
phase=
for _ in $(seq 1 900); do
  phase=$(kubectl get mm -l hotswap.io/deployment=small -o jsonpath='{.items[0].status.phase}' 2>/dev/null || true)
  [ "$phase" = Completed ] || [ "$phase" = Failed ] && break
  sleep 0.1
done
wait "$load" && load_ok=1 || load_ok=0

echo
echo "== the report"
echo "-- what the clients saw (every token's SSE event id checked: none missing, none repeated):"
cat "$work/loadgen.txt"
mm=$(kubectl get mm -l hotswap.io/deployment=small -o jsonpath='{.items[0].metadata.name}')
echo "-- ModelMigration $mm: $phase"
kubectl get mm "$mm" -o jsonpath='{range .status.phaseTimings[*]}{.phase}{"\t"}{.seconds}{" s\n"}{end}' | column -t
kubectl get mm "$mm" -o jsonpath='reason {.spec.reason}, {.status.sourcePod} on {.status.sourceNode} -> {.status.targetPod} on {.status.targetNode} ({.status.targetGpuClass}), mode {.status.mode} over {.status.transport}: {.status.progress}; downtime {.status.downtimeMs} ms{"\n"}{.status.message}{"\n"}'
echo "-- kubectl get md,mm,pods -o wide"
kubectl get md,mm,pods -o wide
echo "-- the operator's metrics"
curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -E '^hotswap_operator_(migrations_total|migration_downtime_seconds_(sum|count))' || true
[ "$load_ok" = 1 ] || { echo "demo: the load generator reported failed requests or lost tokens" >&2; exit 1; }
[ "$phase" = Completed ] || { echo "demo: the migration did not complete (phase '$phase')" >&2; exit 1; }
echo
echo "demo: ok: the replica moved off $source_node with every stream intact"
