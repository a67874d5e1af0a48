#!/usr/bin/env bash
# Packs what the GPU checks need into one folder that the device tool carries to the GPU
# machine, which has CUDA but none of the Debian libraries: the GPU test binaries,
# hotswap-agent and hotswap-migration-bench (debug info stripped), and every shared library they load except glibc's, the
# NVIDIA driver's, and NCCL (over 200 MB; PyTorch's copy there serves, and gpu-check.sh finds
# it). scripts/gpu-check.sh runs them there.
#
#   bash scripts/gpu-bundle.sh [BUILD] [DEST]     (defaults: build .gpu)
set -euo pipefail
build=${1:-build}
dest=${2:-.gpu}
cd "$(dirname "$0")/.."
bins=(tests/hotswap_kernels_cuda_tests tests/hotswap_migration_gpu_tests tests/hotswap_engine_gpu_tests
      agent/hotswap-agent e2e/bench/hotswap-migration-bench)
for b in "${bins[@]}"; do
  if [[ ! -x $build/$b ]]; then
    echo "gpu-bundle: $build/$b is missing: build with CUDA first (make build finds nvcc by itself)" >&2
    exit 1
  fi
done
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib"
for b in "${bins[@]}"; do
  strip --strip-debug -o "$dest/bin/$(basename "$b")" "$build/$b"
  # Libraries by resolved path; glibc's and the driver's stay behind.
  ldd "$build/$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*|libcuda|libnvidia[^/]*|libnccl)\.so' |
    while read -r lib; do
      [[ -e $dest/lib/$(basename "$lib") ]] || cp -L "$lib" "$dest/lib/"
    done
done
cp scripts/gpu-check.sh "$dest/"
du -sh "$dest" | awk -v d="$dest" '{print "gpu-bundle: " d " holds " $1 " (the device tool carries at most 64 MiB with the tree)"}'
