#!/usr/bin/env bash
# `make demo`: the engine, then a live migration on the embedded dev cluster.
#
# 1. Makes the `small` synthetic checkpoint (once) and generates from it.
# 2. Starts a two-node dev cluster (hotswap-devcluster up): node-1 carries a t4-sim card, node-2
#    an a100-sim card 2.5x as fast (the agents' CPU backend runs at that ratio).
# 3. kubectl applies a Secret with the control token, one agent Pod per node and a Service. Each
#    Pod has the hotswap.io/serving readiness gate, so the Service sends traffic only to the Pod
#    whose gate is True: the replica on the t4-sim node to start with.
# 4. Eight streams run through the Service's ClusterIP; while they generate, `hotswap-agent
#    migrate` moves them to the a100-sim replica and the gates flip (what the operator does,
#    until issue 6 brings it). The clients stay connected and see every token exactly once.
# 5. New requests through the same ClusterIP now land on the faster card.
set -euo pipefail
build=${1:-build}
models=${2:-models}
agent=$(realpath "$build/agent/hotswap-agent")
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
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -d "$cluster_dir/logs" ]; then
    echo "-- container logs (the demo failed):" >&2
    tail -n 20 "$cluster_dir"/logs/*.log >&2 || true
  fi
  "$devcluster" down --dir "$cluster_dir" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo
echo "== a dev cluster: two nodes, a t4-sim card and an a100-sim card 2.5x as fast"
export KUBECONFIG
KUBECONFIG=$("$devcluster" up --nodes 2 --gpu-classes t4-sim:1,a100-sim:2.5 --dir "$cluster_dir")
kubectl get nodes -L nvidia.com/gpu.product,hotswap.io/gpu-speed-factor

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s' "$token" > "$work/token"
replica() {  # name, GPU class
  cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {app: demo}
spec:
  nodeSelector: {nvidia.com/gpu.product: $2}
  readinessGates: [{conditionType: hotswap.io/serving}]
  terminationGracePeriodSeconds: 30
  containers:
  - name: agent
    image: hotswap-agent  # the dev cluster's kubelet runs the command as a local process
    command: [$agent, serve, --model, $model, --model-name, demo, --host, \$(POD_IP), --port, "8000"]
    env:
    - name: HOTSWAP_CONTROL_TOKEN
      valueFrom: {secretKeyRef: {name: demo-control-token, key: token}}
    resources: {limits: {nvidia.com/gpu: 1}}
    readinessProbe: {httpGet: {path: /readyz, port: 8000}, periodSeconds: 1}
EOF
}
{
  cat <<EOF
apiVersion: v1
kind: Secret
metadata: {name: demo-control-token}
stringData: {token: "$token"}
---
apiVersion: v1
kind: Service
metadata: {name: demo}
spec:
  selector: {app: demo}
  ports: [{port: 80, targetPort: 8000}]
EOF
  replica demo-t4 t4-sim
  replica demo-a100 a100-sim
} > "$work/demo.yaml"
echo
echo "== kubectl apply: the control token's Secret, the Service, one agent Pod per node"
kubectl apply -f "$work/demo.yaml"
for pod in demo-t4 demo-a100; do
  kubectl wait --for=condition=ContainersReady "pod/$pod" --timeout=120s > /dev/null
done
set_gate() {  # pod, True|False: the readiness gate the operator steers traffic with
  kubectl patch pod "$1" --subresource=status --type=strategic \
    -p "{\"status\":{\"conditions\":[{\"type\":\"hotswap.io/serving\",\"status\":\"$2\"}]}}" > /dev/null
}
set_gate demo-t4 True
kubectl wait --for=condition=Ready pod/demo-t4 --timeout=60s > /dev/null
kubectl get pods -o wide
cluster_ip=$(kubectl get service demo -o jsonpath='{.spec.clusterIP}')
ip_t4=$(kubectl get pod demo-t4 -o jsonpath='{.status.podIP}')
ip_a100=$(kubectl get pod demo-a100 -o jsonpath='{.status.podIP}')
for _ in $(seq 1 100); do
  curl -sf "http://$cluster_ip/v1/models" > /dev/null 2>&1 && break
  sleep 0.1
done
echo "Service demo: http://$cluster_ip -> demo-t4 ($ip_t4); demo-a100 ($ip_a100) is running, gate False"

echo
echo "== 8 streams through the ClusterIP; after 2 s they move from the t4-sim to the a100-sim replica"
"$loadgen" --url "http://$cluster_ip" --streams 8 --requests 8 --max-tokens 192 --ignore-eos \
  > "$work/loadgen-migrated.txt" 2>&1 &
load=$!
sleep 2
"$agent" migrate --source "http://$ip_t4:8000" --target "http://$ip_a100:8000" --token-file "$work/token" --mode kv
# The switch for new traffic: the target's gate True, then the source's False.
set_gate demo-a100 True
set_gate demo-t4 False
wait "$load" && ok=1 || ok=0
echo "-- what the clients saw (connected through the ClusterIP to demo-t4, which relays demo-a100's tokens):"
cat "$work/loadgen-migrated.txt"
[ "$ok" = 1 ] || { echo "demo: the load generator reported failed requests" >&2; exit 1; }

for _ in $(seq 1 100); do
  [ "$(kubectl get endpointslices -l kubernetes.io/service-name=demo \
      -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]} {end}')" = "$ip_a100 " ] && break
  sleep 0.1
done
echo
echo "== the Service now sends new requests to demo-a100 (the faster card): 8 more streams"
"$loadgen" --url "http://$cluster_ip" --streams 8 --requests 8 --max-tokens 192 --ignore-eos
kubectl get pods -o wide
echo
echo "== kubectl delete pod demo-t4: it drains (SIGTERM, grace period) and goes"
kubectl delete pod demo-t4 --wait=true --timeout=60s
kubectl get pods
