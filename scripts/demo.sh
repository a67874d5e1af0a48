#!/usr/bin/env bash
# The demo: until the dev cluster exists, the engine end to end. Makes the `small` synthetic
# checkpoint (once) and generates from it, printing the text and tokens/s.
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
