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
#    two tokens, the migration's phases and timings, `kubectl get md,mm,pods -o wide`), checks
#    every /metrics page with promtool and queries the migration back from Prometheus (which
#    scraped the operator and the agents throughout), and exits non-zero if a request failed, a
#    token was lost or repeated, the migration did not complete, or the metrics check failed.
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
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null || true
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

# Prometheus (Debian's, on loopback) scrapes the operator and every agent Pod each second; the
# agents' addresses reach it through a file_sd file that follows the Pods.
prom_port=
prom_pid=
targets="$work/agents.json"
echo '[]' > "$targets"
update_targets() {
  local ips
  ips=$(kubectl get pods -l hotswap.io/deployment=small -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}' 2>/dev/null |
    grep -v '^$' | sed 's/.*/"&:8000"/' | paste -sd, -)
  echo "[{\"targets\": [$ips], \"labels\": {}}]" > "$targets.tmp"
  mv "$targets.tmp" "$targets"
}
if command -v prometheus > /dev/null; then
  prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$work/prometheus.yml" <<PROM
global: {scrape_interval: 1s, scrape_timeout: 900ms}
scrape_configs:
  - job_name: operator
    static_configs: [{targets: ["127.0.0.1:$metrics_port"]}]
  - job_name: agents
    file_sd_configs: [{files: ["$targets"], refresh_interval: 1s}]
PROM
  prometheus --config.file="$work/prometheus.yml" --web.listen-address="127.0.0.1:$prom_port" \
    --storage.tsdb.path="$work/tsdb" > "$work/prometheus.log" 2>&1 &
  prom_pid=$!
else
  echo "demo: prometheus is not on PATH: the metrics check is skipped (make deps installs it)" >&2
fi

echo
echo "== kubectl apply -f examples/modeldeployment.yaml: two replicas of 'small'"
kubectl apply -f "$src/examples/modeldeployment.yaml"
ready=
for _ in $(seq 1 600); do
  ready=$(kubectl get md small -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
  [ "$ready" = 2 ] && break
  [ -n "$prom_pid" ] && update_targets
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
  [ -n "$prom_pid" ] && update_targets
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
prom_ok=1
if [ -n "$prom_pid" ]; then
  echo "-- promtool check metrics on the operator's and each agent's /metrics"
  for url in "http://127.0.0.1:$metrics_port/metrics" $(kubectl get pods -l hotswap.io/deployment=small \
      -o jsonpath='{range .items[*]}http://{.status.podIP}:8000/metrics{" "}{end}'); do
    if lint=$(curl -sf "$url" | promtool check metrics 2>&1) && [ -z "$lint" ]; then
      echo "$url: ok"
    else
      echo "$url: $lint"
      prom_ok=0
    fi
  done
  echo "-- Prometheus (127.0.0.1:$prom_port, scraping every 1 s) queried back"
  echo "   (the migration by trigger and result, its downtime, bytes by transport, tokens served, replicas)"
  query() {  # the query's samples as "labels value" lines; waits up to 10 s for the first
    local out=
    for _ in $(seq 1 50); do
      out=$(curl -sf --get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    labels = ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items()) if k not in ("__name__", "instance", "job"))
    print(labels or "-", r["value"][1])' 2>/dev/null)
      [ -n "$out" ] && break
      sleep 0.2
    done
    echo "$out"
  }
  for q in 'hotswap_operator_migrations_total' 'hotswap_operator_migration_downtime_seconds_count' \
      'sum by (transport, direction) (max_over_time(hotswap_migration_bytes_total[5m]))' \
      'sum(max_over_time(hotswap_generated_tokens_total[5m]))' 'hotswap_operator_replicas'; do
    got=$(query "$q")
    printf '%s\n%s\n' "$q" "${got:-(nothing)}" | sed '2,$s/^/  /'
    [ -n "$got" ] || prom_ok=0
  done
  # The source agent is gone by now: its last samples still count (max_over_time), and the
  # operator's counter says the migration completed.
  query 'hotswap_operator_migrations_total{result="completed"}' | grep -q . ||
    { echo "demo: Prometheus has no succeeded migration from the operator" >&2; prom_ok=0; }
fi
[ "$load_ok" = 1 ] || { echo "demo: the load generator reported failed requests or lost tokens" >&2; exit 1; }
[ "$prom_ok" = 1 ] || { echo "demo: a /metrics page failed promtool or Prometheus did not get the metrics" >&2; exit 1; }
[ "$phase" = Completed ] || { echo "demo: the migration did not complete (phase '$phase')" >&2; exit 1; }
echo
echo "demo: ok: the replica moved off $source_node with every stream intact"
