#!/usr/bin/env bash
# The migration benchmark (part of `make bench`; also `make bench-migration` alone): client-visible
# downtime against context length for stop-and-copy, kv pre-copy and recompute on the `small`
# preset, and the tcp transport's throughput against raw loopback TCP, measured in the same run.
# Writes docs/benchmarks-migration.md and docs/migration-downtime.png (gnuplot).
set -euo pipefail
build=${1:-build}
models=${2:-models}
agent="$build/agent/hotswap-agent"
out=docs/benchmarks-migration.md
png=docs/migration-downtime.png
results=$(mktemp)
data=$(mktemp)
trap 'rm -f "$results" "$data"' EXIT

if [ ! -f "$models/small/config.json" ]; then
  echo "== making the 'small' synthetic checkpoint in $models/small"
  "$agent" make-model --preset small --arch llama --dtype bf16 --seed 1 --out "$models/small"
fi
cmd="$build/e2e/bench/hotswap-migration-bench --model $models/small --repetitions 3"
echo "== $cmd"
$cmd | tee "$results"

python3 - "$results" "$data" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
methods = ["stop-and-copy", "kv", "recompute"]
contexts = sorted({r["context"] for r in rows if r["kind"] == "downtime"})
with open(sys.argv[2], "w") as f:
    for c in contexts:
        vals = []
        for m in methods:
            hit = [r for r in rows if r["kind"] == "downtime" and r["method"] == m and r["context"] == c]
            vals.append("%.2f" % hit[0]["downtime_ms"] if hit else "NaN")
        f.write("%d %s\n" % (c, " ".join(vals)))
PY
if command -v gnuplot >/dev/null 2>&1; then
  gnuplot <<GNUPLOT
set terminal pngcairo size 800,480 noenhanced
set output "$png"
set title "Client-visible downtime of a migrated stream (small preset, CPU, tcp over loopback)"
set xlabel "context length (tokens)"
set ylabel "downtime (ms)"
set logscale y
set key top left
set grid
plot "$data" using 1:2 with linespoints title "stop-and-copy", \
     "$data" using 1:3 with linespoints title "kv pre-copy", \
     "$data" using 1:4 with linespoints title "recompute"
GNUPLOT
else
  echo "bench-migration: gnuplot not found (make deps installs gnuplot-nox); no plot" >&2
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
{
  echo "# Migration benchmarks"
  echo
  echo "Produced by \`make bench\` (scripts/bench-migration.sh) on $(date -u +%Y-%m-%d), $(nproc) cores ($cpu),"
  echo "CPU backend, \`small\` preset (bf16 weights, f32 KV cache: 16 KiB per token), two in-process agents,"
  echo "tcp transport over 127.0.0.1. One greedy stream per run, migrated after 32 of its 96 tokens;"
  echo "the client stays on the source, which relays the target's tokens. Downtime = the stream's"
  echo "largest inter-token gap from the migration's start on, minus its median gap before (from"
  echo "hotswap-loadgen's per-token arrival times). Medians of 3 runs; every run's tokens are checked"
  echo "equal across runs and methods."
  echo
  echo "    $cmd"
  echo
  echo "| context | method | downtime ms | median gap before ms | largest gap after ms | switch ms (source) | pre-copy rounds | bytes sent | pre-copy ended |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in rows:
    if r["kind"] != "downtime":
        continue
    print("| {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.0f} | {:.0f} | {} |".format(
        r["context"], r["method"], r["downtime_ms"], r["gap_before_ms"], r["gap_max_ms"], r["switch_ms"],
        r["rounds"], r["bytes"], r["precopy_end"]))
kv = {r["context"]: r["downtime_ms"] for r in rows if r["kind"] == "downtime" and r["method"] == "kv"}
if kv:
    lo, hi = min(kv), max(kv)
    print()
    print("kv pre-copy: {:.1f} ms at {} tokens, {:.1f} ms at {} tokens: {:.2f}x (target: <= 50 ms and <= 1.5x).".format(
        kv[lo], lo, kv[hi], hi, kv[hi] / kv[lo] if kv[lo] > 0 else float("inf")))
for r in rows:
    if r["kind"] == "throughput":
        print()
        print("Transfer: {:.0f} MiB snapshot stream through the tcp transport at {:.2f} GB/s; raw loopback TCP "
              "{:.2f} GB/s in the same run: {:.0f}% (target: >= 80%).".format(
                  r["bytes"] / 2**20, r["transport_bytes_per_s"] / 1e9, r["raw_tcp_bytes_per_s"] / 1e9,
                  100 * r["transport_over_raw"]))
        if "copy_crc_tcp_bytes_per_s" in r:
            print()
            print("The same raw TCP with only a copy into a rotating buffer before each send and a CRC32C of what "
                  "is read (the least a checksummed transport that can resend adds): {:.2f} GB/s, {:.0f}% of raw; "
                  "the transport reaches {:.0f}% of that.".format(
                      r["copy_crc_tcp_bytes_per_s"] / 1e9, 100 * r["copy_crc_over_raw"],
                      100 * r["transport_over_copy_crc"]))
        if "tls_transport_bytes_per_s" in r:
            print()
            print("Over TLS (mutual TLS 1.3, AES-128-GCM, as a deployment's agents migrate by default): {:.2f} GB/s, "
                  "{:.0f}% of the plaintext transport in the same run.".format(
                      r["tls_transport_bytes_per_s"] / 1e9, 100 * r["tls_over_transport"]))
PY
  echo
  if [ -f "$png" ]; then echo "![downtime against context length](migration-downtime.png)"; fi
} > "$out"
if [ -f docs/benchmarks-migration-notes.md ]; then cat docs/benchmarks-migration-notes.md >> "$out"; fi
echo "== wrote $out"
