#!/usr/bin/env bash
# The demo, until the dev cluster exists: the engine end to end, then a live migration between
# two local agents. Makes the `small` synthetic checkpoint (once), generates from it (text and
# tokens/s), then moves 8 open streams from one `hotswap-agent serve` to another with
# `hotswap-agent migrate` and prints what the clients saw (hotswap-loadgen).
set -euo pipefail
build=${1:-build}
models=${2:-models}
agent="$build/agent/hotswap-agent"
model="$models/small"
if [ ! -f "$model/config.json" ]; then
  echo "== making the 'small' synthetic checkpoint in $model"
  "$agent" make-model --preset small --arch llama --seed 1 --out "$model"
fi
echo "== greedy generation"
"$agent" generate --model "$model" --prompt "The operator moves the replica to a new GPU" --max-tokens 48
echo
echo "== sampled generation (temperature 0.8, top-p 0.95, seed 7), as JSON"
"$agent" generate --model "$model" --prompt "KV cache blocks" --max-tokens 32 --temperature 0.8 --top-p 0.95 \
  --seed 7 --json

# Live migration between two agents on this machine: streams open on agent A move to agent B
# while they generate, and the load generator checks that no token or event id was lost.
echo
echo "== live migration: two agents, 8 streams on A, moved to B while they generate"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_a=$(free_port)
port_b=$(free_port)
for port in "$port_a" "$port_b"; do
  "$agent" serve --model "$model" --host 127.0.0.1 --port "$port" --control-token-file "$work/token" \
    > "$work/agent-$port.log" 2>&1 &
  pids+=($!)
done
for port in "$port_a" "$port_b"; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
    sleep 0.1
  done
done
loadgen="$build/e2e/loadgen/hotswap-loadgen"
"$loadgen" --url "http://127.0.0.1:$port_a" --streams 8 --requests 8 --max-tokens 160 --ignore-eos \
  > "$work/loadgen.txt" 2>&1 &
load=$!
sleep 1.5
"$agent" migrate --source "http://127.0.0.1:$port_a" --target "http://127.0.0.1:$port_b" \
  --token-file "$work/token" --mode kv
wait "$load" && ok=1 || ok=0
echo "-- what the clients saw (they stayed connected to A, which relays B's tokens):"
cat "$work/loadgen.txt"
[ "$ok" = 1 ] || { echo "demo: the load generator reported failed requests" >&2; exit 1; }
