// y[r, o] = sum_i x[r, i] * w[o, i] (+ bias[o]) on the GPU: the linear layers.
//
// Why not cuBLAS: the engine promises batch invariance (a row gives the same bits alone or in
// a batch, prefilled or decoded), and cuBLAS chooses its algorithm, tiling and split-K from the
// matrix sizes, so the summation order of one row changes with the batch size. cublasGemmEx
// also cannot multiply f32 activations by bf16/f16 weights without first rounding the
// activations to 16 bits. So both kernels here use f32 CUDA-core FMAs on the weights as
// stored, with one canonical summation order for every y[r, o]:
//
//   the reduction over i is cut into segments of kSegK = 256 (the last one shorter);
//   segment s: p_s = fma chain over i = 256s, 256s+1, ... in order, starting from +0;
//   y = ((0 + p_0) + p_1) + ... + p_last, then + bias[o] if there is a bias.
//
// Nothing in that order depends on rows, the tile shapes or the grid, so the two kernels give
// identical bits for a row, whichever one runs and whatever else is in the batch.
//
// - gemv (rows <= kGemvRows, decode): a thread block owns `out_tile` outputs; each thread
//   computes one (output, segment) partial for all of the call's rows at once, reading its
//   256 weights once (16-byte vector loads when aligned) and the rows' x from L1/L2; the
//   partials meet in shared memory and one thread per (row, output) adds them in order.
//   Traffic: the weight once (out * in * sizeof(dtype)), x once per output tile (cached).
// - tiled (larger batches, prefill): a BM x BN output tile per thread block, BK-deep slices of
//   x and w staged through shared memory (w converted to f32 there), a TM x TN register tile
//   per thread, and per-segment accumulators folded into the totals every kSegK. Traffic: x
//   read out / BN times and w read rows / BM times, mostly from L2.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/op_checks.h"

namespace hotswap::kernels::cuda {
namespace {

constexpr int kSegK = 256;
constexpr int kGemvRows = 8;  // the gemv kernel handles up to this many rows
constexpr int kGemvThreads = 256;
constexpr int kGemvMaxOutTile = 64;
constexpr size_t kGemvMaxSmem = 48 * 1024;  // beyond this (in > ~390k) the tiled kernel runs

// ---- gemv: few rows. ----

// kRows: the most rows this instantiation handles (rows <= kRows at run time).
// kVec: in % 8 == 0 and x, w 16-byte aligned, so 8 elements load at once.
template <DType WT, int kRows, bool kVec>
__global__ void __launch_bounds__(kGemvThreads)
    matmul_gemv_kernel(const float* __restrict__ x, int rows, int64_t in, const void* __restrict__ w, int64_t out,
                       const void* __restrict__ bias, float* __restrict__ y, int out_tile, int n_seg) {
  extern __shared__ float partials[];  // [kRows][out_tile][n_seg]
  const int64_t o0 = int64_t{blockIdx.x} * out_tile;
  const int items = out_tile * n_seg;
  for (int item = threadIdx.x; item < items; item += blockDim.x) {
    const int ol = item / n_seg;
    const int seg = item % n_seg;
    const int64_t o = o0 + ol;
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
    if (o < out) {
      const int64_t k0 = int64_t{seg} * kSegK;
      const int64_t k1 = k0 + kSegK < in ? k0 + kSegK : in;
      const int64_t w_row = o * in;
      if constexpr (kVec) {
        for (int64_t k = k0; k < k1; k += 8) {
          float wv[8];
          detail::load8_f32<WT>(w, w_row + k, wv);
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            if (r < rows) {
              float xv[8];
              detail::load8_f32<DType::kF32>(x, r * in + k, xv);
#pragma unroll
              for (int e = 0; e < 8; ++e) acc[r] = fmaf(xv[e], wv[e], acc[r]);
            }
          }
        }
      } else {
        for (int64_t k = k0; k < k1; ++k) {
          const float wv = detail::load_f32<WT>(w, w_row + k);
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            if (r < rows) acc[r] = fmaf(x[r * in + k], wv, acc[r]);
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r < rows) partials[(r * out_tile + ol) * n_seg + seg] = acc[r];
    }
  }
  __syncthreads();
  for (int item = threadIdx.x; item < rows * out_tile; item += blockDim.x) {
    const int r = item / out_tile;
    const int ol = item % out_tile;
    const int64_t o = o0 + ol;
    if (o >= out) continue;
    const float* p = partials + (r * out_tile + ol) * n_seg;
    float total = 0.0f;
    for (int s = 0; s < n_seg; ++s) total += p[s];
    if (bias != nullptr) total += detail::load_f32<WT>(bias, o);
    y[r * out + o] = total;
  }
}

struct GemvShape {
  int n_seg;
  int out_tile;
  int threads;
  size_t smem;  // for kGemvRows rows
};

GemvShape gemv_shape(int64_t in) {
  GemvShape s{};
  s.n_seg = static_cast<int>(detail::ceil_div(in, kSegK));
  s.out_tile = std::clamp(kGemvThreads / s.n_seg, 1, kGemvMaxOutTile);
  const int items = s.out_tile * s.n_seg;
  s.threads = static_cast<int>(std::min<int64_t>(kGemvThreads, detail::ceil_div(items, 32) * 32));
  s.smem = sizeof(float) * kGemvRows * static_cast<size_t>(items);
  return s;
}

template <DType WT, int kRows>
void launch_gemv(const GemvShape& s, cudaStream_t stream, bool vec, const float* x, int rows, int64_t in, const void* w,
                 int64_t out, const void* bias, float* y) {
  const auto blocks = static_cast<unsigned>(detail::ceil_div(out, s.out_tile));
  const size_t smem = sizeof(float) * kRows * static_cast<size_t>(s.out_tile) * s.n_seg;
  if (vec) {
    matmul_gemv_kernel<WT, kRows, true>
        <<<blocks, s.threads, smem, stream>>>(x, rows, in, w, out, bias, y, s.out_tile, s.n_seg);
  } else {
    matmul_gemv_kernel<WT, kRows, false>
        <<<blocks, s.threads, smem, stream>>>(x, rows, in, w, out, bias, y, s.out_tile, s.n_seg);
  }
}

// ---- tiled: many rows. ----

// Thread (ty, tx) owns rows ty + i * (BM / TM) and columns tx + j * (BN / TN) of the tile, so a
// warp's shared-memory reads are broadcasts or consecutive words and its stores of y are
// coalesced. Shared tiles are stored k-major with one word of padding against bank conflicts.
template <DType WT, int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    matmul_tiled_kernel(const float* __restrict__ x, int64_t rows, int64_t in, const void* __restrict__ w, int64_t out,
                        const void* __restrict__ bias, float* __restrict__ y) {
  constexpr int kThreadsM = BM / TM;
  constexpr int kThreadsN = BN / TN;
  constexpr int kThreads = kThreadsM * kThreadsN;
  static_assert(kSegK % BK == 0, "a BK slice must not straddle a segment");
  __shared__ float xs[BK][BM + 1];
  __shared__ float ws[BK][BN + 1];

  const int tx = threadIdx.x % kThreadsN;
  const int ty = threadIdx.x / kThreadsN;
  const int64_t m0 = int64_t{blockIdx.y} * BM;
  const int64_t n0 = int64_t{blockIdx.x} * BN;
  float acc[TM][TN];
  float total[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = total[i][j] = 0.0f;
  }

  for (int64_t k0 = 0; k0 < in; k0 += BK) {
    // Padding (rows, outputs or k past the end) is stored as 0. fma(0, 0, acc) == acc, except
    // that an accumulator that underflowed to -0 becomes +0; folding it into `total` (which
    // starts at +0) gives +0 either way, so the padding never changes a result bit.
    for (int e = threadIdx.x; e < BM * BK; e += kThreads) {
      const int r = e / BK;
      const int c = e % BK;
      const int64_t gr = m0 + r;
      const int64_t gk = k0 + c;
      xs[c][r] = (gr < rows && gk < in) ? x[gr * in + gk] : 0.0f;
    }
    for (int e = threadIdx.x; e < BN * BK; e += kThreads) {
      const int n = e / BK;
      const int c = e % BK;
      const int64_t gn = n0 + n;
      const int64_t gk = k0 + c;
      ws[c][n] = (gn < out && gk < in) ? detail::load_f32<WT>(w, gn * in + gk) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[TM];
      float b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = xs[k][ty + i * kThreadsM];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = ws[k][tx + j * kThreadsN];
#pragma unroll
      for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
    if ((k0 + BK) % kSegK == 0 || k0 + BK >= in) {
#pragma unroll
      for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          total[i][j] += acc[i][j];
          acc[i][j] = 0.0f;
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t r = m0 + ty + i * kThreadsM;
    if (r >= rows) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t o = n0 + tx + j * kThreadsN;
      if (o >= out) continue;
      float v = total[i][j];
      if (bias != nullptr) v += detail::load_f32<WT>(bias, o);
      y[r * out + o] = v;
    }
  }
}

constexpr int kTileM = 64;
constexpr int kTileN = 128;
constexpr int kTileK = 32;
constexpr int kThreadM = 4;
constexpr int kThreadN = 8;
constexpr int kTiledThreads = (kTileM / kThreadM) * (kTileN / kThreadN);

}  // namespace

Status matmul(const CudaContext& ctx, const float* x, int64_t rows, int64_t in, const void* w, DType wt, int64_t out,
              const void* bias, float* y) {
  constexpr const char* kOp = "matmul";
  HOTSWAP_RETURN_IF_ERROR(check_matmul_args(kOp, x, rows, in, w, wt, out, y));
  if (rows == 0) return Status::ok_status();
  const cudaStream_t stream = detail::stream_of(ctx);

  const GemvShape gs = gemv_shape(in);
  if (rows <= kGemvRows && gs.smem <= kGemvMaxSmem) {
    HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, detail::ceil_div(out, gs.out_tile), INT32_MAX, "out"));
    const bool vec = in % 8 == 0 && detail::aligned16(x) && detail::aligned16(w);
    const int r = static_cast<int>(rows);
    return detail::with_dtype(wt, [&](auto tag) {
      constexpr DType WT = decltype(tag)::value;
      if (r == 1) {
        launch_gemv<WT, 1>(gs, stream, vec, x, r, in, w, out, bias, y);
      } else if (r <= 4) {
        launch_gemv<WT, 4>(gs, stream, vec, x, r, in, w, out, bias, y);
      } else {
        launch_gemv<WT, kGemvRows>(gs, stream, vec, x, r, in, w, out, bias, y);
      }
      return detail::launch_status("matmul gemv kernel launch");
    });
  }

  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, detail::ceil_div(out, kTileN), INT32_MAX, "out"));
  HOTSWAP_RETURN_IF_ERROR(detail::check_grid(kOp, detail::ceil_div(rows, kTileM), 65535, "rows"));
  const dim3 grid(static_cast<unsigned>(detail::ceil_div(out, kTileN)),
                  static_cast<unsigned>(detail::ceil_div(rows, kTileM)));
  return detail::with_dtype(wt, [&](auto tag) {
    matmul_tiled_kernel<decltype(tag)::value, kTileM, kTileN, kTileK, kThreadM, kThreadN>
        <<<grid, kTiledThreads, 0, stream>>>(x, rows, in, w, out, bias, y);
    return detail::launch_status("matmul tiled kernel launch");
  });
}

}  // namespace hotswap::kernels::cuda
