#!/usr/bin/env bash
# The GPU checks and benchmarks, in one call of the device tool, over a bundle that
# scripts/gpu-bundle.sh made here (the GPU machine has CUDA but none of the Debian libraries):
#
#   bash scripts/gpu-bundle.sh build .gpu          (here)
#   run(command="bash .gpu/gpu-check.sh .gpu", carry=[".gpu"], timeout_s=540)   (device tool)
#
# 1. The GPU tests (every kernel against its CPU twin, the cuda-ipc and nccl transports, the
#    engine's CUDA backend against the CPU one), each binary's log and JUnit XML under $OUT.
# 2. compute-sanitizer memcheck over the kernel tests.
# 3. hotswap-agent bench on the ~1B `large` preset in bf16, --device cuda, batch 1, 16, 64:
#    decode tokens/s against the device-to-device copy rate measured in the same run, and the
#    weights' upload rate against the pinned host-to-device rate. JSON lines in $OUT.
# 4. hotswap-migration-bench --device cuda on the same model: a KV migration's downtime against
#    context length (512 to 16k tokens) between two agents on the GPU over tcp.
# A step that fails is reported and the next one still runs; the exit status is the number of
# failed steps. The summary table is printed last (the device tool returns the output's tail).
set -uo pipefail
bundle=${1:-.gpu}
out=${OUT:-/tmp/hotswap-gpu-check}
mkdir -p "$out"
# NCCL is not in the bundle: the one PyTorch's wheels installed there, else the system's.
nccl=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="$bundle/lib${nccl:+:$nccl}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$bundle/bin"
summary=()
failed=0

# What a log says in one line: gtest's counts where it is a test log, else its last line.
outcome() {
  local counts
  counts=$(grep -hoE '\[  (PASSED|SKIPPED|FAILED) +\] [0-9]+ tests?' "$1" | sed -E 's/\[  ([A-Z]+) +\] ([0-9]+) tests?/\2 \1/' |
    tr 'A-Z' 'a-z' | paste -sd, -)
  if [[ -n $counts ]]; then echo "$counts"; else tail -n 1 "$1" | cut -c1-100; fi
}

step() {  # step NAME LOG COMMAND...: runs it, logs it, records pass/fail and the seconds taken
  local name=$1 log=$2
  shift 2
  local start=$SECONDS
  if "$@" >"$log" 2>&1; then
    summary+=("$(printf '%-28s ok     %4ds  %s' "$name" $((SECONDS - start)) "$(outcome "$log")")")
  else
    failed=$((failed + 1))
    summary+=("$(printf '%-28s FAILED %4ds  %s' "$name" $((SECONDS - start)) "$(outcome "$log")")")
  fi
}

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$out/nvidia-smi.csv"
else
  echo "nvidia-smi is not on the PATH: no NVIDIA driver here, so every GPU test will skip"
fi

for t in kernels_cuda migration_gpu engine_gpu; do
  step "tests: $t" "$out/$t.log" "$bin/hotswap_${t}_tests" --gtest_output="xml:$out/$t.xml"
done

if command -v compute-sanitizer >/dev/null; then
  step "memcheck: kernels_cuda" "$out/memcheck.log" \
    compute-sanitizer --tool memcheck --error-exitcode 1 "$bin/hotswap_kernels_cuda_tests" --gtest_brief=1
else
  summary+=("memcheck: kernels_cuda        SKIPPED: compute-sanitizer is not on the PATH")
fi

model=/tmp/hotswap-large-bf16
step "make-model large bf16" "$out/make-model.log" "$bin/hotswap-agent" make-model --preset large --dtype bf16 --out "$model"
step "bench --device cuda" "$out/bench-gpu.jsonl" "$bin/hotswap-agent" bench --model "$model" --device cuda \
  --batch 1,16,64 --prompt-len 128 --decode-tokens 64 --kv-cache-mb 8192 --bandwidth-mb 2048 --json
step "migration-bench --device cuda" "$out/migration-gpu.jsonl" "$bin/hotswap-migration-bench" --model "$model" \
  --device cuda --contexts 512,4096,16384 --methods kv,stop-and-copy --repetitions 2 --max-tokens 64 \
  --migrate-after 24 --kv-cache-mb 16384 --transfer-mb 0

if command -v python3 >/dev/null; then
  python3 - "$out/bench-gpu.jsonl" "$out/migration-gpu.jsonl" <<'PY'
import json, os, sys

def records(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.strip().startswith("{")]

print("\n== bench (large, bf16, --device cuda) ==")
for r in records(sys.argv[1]):
    up = r.get("weight_upload_bytes", 0) / max(r.get("weight_upload_seconds", 0), 1e-9)
    print(f"batch {r['batch']:3d}: decode {r['decode_tokens_per_s']:9.1f} tok/s  prefill {r['prefill_tokens_per_s']:10.1f} tok/s"
          f"  efficiency {100 * r['decode_efficiency']:5.1f}% of d2d {r['copy_bytes_per_s'] / 1e9:.0f} GB/s"
          f"  upload {up / 1e9:.1f} GB/s = {100 * up / r['host_to_device_bytes_per_s']:.0f}% of h2d")
print("\n== migration downtime (large, bf16, --device cuda, tcp) ==")
for r in records(sys.argv[2]):
    if r.get("kind") == "downtime":
        print(f"{r['method']:>13} context {r['context']:6d}: downtime {r['downtime_ms']:8.2f} ms  switch {r['switch_ms']:7.2f} ms"
              f"  rounds {r['rounds']:.0f}  {r['bytes'] / 1e6:.1f} MB")
PY
fi
echo
echo "== summary =="
printf '%s\n' "${summary[@]}"
exit "$failed"
