#!/usr/bin/env bash
# `make bench`: engine throughput on the `small` and `medium` synthetic checkpoints at batch 1
# and 16, beside a STREAM copy bandwidth measured in the same run. Writes docs/benchmarks.md.
# Not part of `make test`: medium is ~1 GB of weights and takes minutes on a small machine.
set -euo pipefail
build=${1:-build}
models=${2:-models}
agent="$build/agent/hotswap-agent"
out=docs/benchmarks.md
results=$(mktemp)
trap 'rm -f "$results"' EXIT

for preset in small medium; do
  if [ ! -f "$models/$preset/config.json" ]; then
    echo "== making the '$preset' synthetic checkpoint in $models/$preset"
    "$agent" make-model --preset "$preset" --arch llama --dtype bf16 --seed 1 --out "$models/$preset"
  fi
done

cmd_small="$agent bench --model $models/small --batch 1,16 --prompt-len 128 --decode-tokens 32 --json"
cmd_medium="$agent bench --model $models/medium --batch 1,16 --prompt-len 128 --decode-tokens 16 --json"
echo "== $cmd_small"
$cmd_small | tee -a "$results"
echo "== $cmd_medium"
$cmd_medium | tee -a "$results"
http_results=$(mktemp)
trap 'rm -f "$results" "$http_results"' EXIT
cmd_http="$build/e2e/bench/hotswap-http-bench --model $models/small --streams 1,16,64 --max-tokens 256"
echo "== $cmd_http"
$cmd_http | tee "$http_results"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d), $(nproc) cores ($cpu),"
  echo "CPU backend, bf16 weights, f32 KV cache. Each row's bandwidth is a STREAM-style copy measured"
  echo "in the same run; decode efficiency = bytes read per decode step (all weights once + the KV"
  echo "cache at the mean context) x decode steps/s / that bandwidth."
  echo
  echo "Commands:"
  echo
  echo "    $cmd_small"
  echo "    $cmd_medium"
  echo
  echo "| model | batch | prompt | prefill tok/s | decode tok/s | MB read / decode step | copy GB/s | decode efficiency |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  python3 - "$results" <<'PY'
import json, sys, os
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    print("| {} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.2f} | {:.0f}% |".format(
        os.path.basename(r["model"]), r["batch"], r["prompt_len"], r["prefill_tokens_per_s"],
        r["decode_tokens_per_s"], r["bytes_per_decode_step"] / 1e6, r["copy_bytes_per_s"] / 1e9,
        100 * r["decode_efficiency"]))
PY
  echo
  echo "Target (issue 2): batch-1 decode on \`medium\` >= 50% of the measured bandwidth."
  echo
  echo "## Through HTTP"
  echo
  echo "Tokens/s through \`hotswap-agent serve\` (in-process server, driven by hotswap-loadgen's runner,"
  echo "N streams, N requests of 256 tokens, greedy, EOS ignored) against the engine alone serving"
  echo "the same requests in the same run. TTFT and inter-token gaps are the loadgen's per-token"
  echo "arrival times. Each figure is the median of 3 alternating runs of both. The last column is the"
  echo "time both engines spent in forward passes (middle run): on a machine with few cores the HTTP"
  echo "run's passes are slower, as the server's and the load generator's I/O threads share the cores."
  echo
  echo "    $cmd_http"
  echo
  echo "| streams | engine-only tok/s | HTTP tok/s | HTTP / engine | TTFT p50 ms | TTFT p99 ms | inter-token p50 ms | inter-token p99 ms | forward s engine-only / HTTP |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  python3 - "$http_results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    print("| {} | {:.1f} | {:.1f} | {:.0f}% | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.2f} / {:.2f} |".format(
        r["streams"], r["engine_tokens_per_s"], r["http_tokens_per_s"], 100 * r["http_over_engine"],
        r["ttft_ms_p50"], r["ttft_ms_p99"], r["inter_token_ms_p50"], r["inter_token_ms_p99"],
        r["engine_forward_s"], r["http_forward_s"]))
PY
  echo
  echo "Target (issue 3): HTTP throughput >= 90% of engine-only at 16 streams."
  echo
  echo "## Live migration"
  echo
  echo "Downtime against context length and transfer throughput: [benchmarks-migration.md](benchmarks-migration.md)"
  echo "(scripts/bench-migration.sh, run by \`make bench\` after this page)."
  echo
  echo "## The operator at scale"
  echo
  echo "Reconcile latency, API requests, memory and cordon-to-migration time with 1,000 replica Pods:"
  echo "[benchmarks-operator.md](benchmarks-operator.md) (scripts/bench-operator.sh, run by \`make bench\` last)."
} > "$out.new"
if [ -f docs/benchmarks-notes.md ]; then cat docs/benchmarks-notes.md >> "$out.new"; fi
mv "$out.new" "$out"
echo "== wrote $out"
bash scripts/bench-migration.sh "$build" "$models"
bash scripts/bench-operator.sh "$build"
