// y[r, o] = sum_i x[r, i] * w[o, i] (+ bias[o]): the linear layers, the engine's hot path.
//
// Decode (one or a few rows) is bound by reading the weight, out * in * sizeof(dtype) bytes per
// call, so the weight is read once per call: threads take contiguous ranges of output rows o,
// and a register tile of R x-rows (1..4) by OW weight rows reuses each converted weight vector
// for all R rows. For larger batches the o range is walked in blocks of ~256 KiB of weight that
// stay in L2 while every 4-row tile of x passes over them, so weight traffic from memory stays
// at one read and x is re-read from cache.
//
// Determinism: the arithmetic for one y[r, o] is the same sequence whatever R, OW, the batch
// size or the thread split: eight f32 lanes accumulated with FMA over i in steps of 8 (a
// zero-padded final step), then a fixed horizontal tree, then the bias. So a row gives the same
// bits alone or in a batch (batch invariance). The scalar fallback has its own fixed order.
//
// BF16 -> f32 is a 16-bit shift; F16 -> f32 is F16C's vcvtph2ps, exact like the table.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/row_convert.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HOTSWAP_MATMUL_X86 1
#endif

namespace hotswap::kernels {
namespace {

struct MatmulArgs {
  const float* x;
  int64_t rows;
  int64_t in;
  const void* w;
  DType wt;
  int64_t out;
  const void* bias;
  float* y;
};

// ---- Scalar path: convert a weight row once, then dot it with every x row. ----

float dot_scalar(const float* a, const float* b, int64_t n) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) part[l] += a[i + l] * b[i + l];
  }
  for (; i < n; ++i) part[i & 7] += a[i] * b[i];
  return ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
}

void matmul_range_scalar(const MatmulArgs& a, int64_t o_begin, int64_t o_end) {
  std::vector<float> wrow(static_cast<size_t>(a.in));
  for (int64_t o = o_begin; o < o_end; ++o) {
    detail::load_row_f32(a.w, a.wt, o * a.in, a.in, wrow.data());
    for (int64_t r = 0; r < a.rows; ++r) {
      float s = dot_scalar(a.x + r * a.in, wrow.data(), a.in);
      if (a.bias != nullptr) s += load_as_f32(a.bias, a.wt, static_cast<size_t>(o));
      a.y[r * a.out + o] = s;
    }
  }
}

#if HOTSWAP_MATMUL_X86

#define HOTSWAP_AVX2 __attribute__((target("avx2,fma,f16c")))

template <DType T>
using Elem = std::conditional_t<T == DType::kF32, float, uint16_t>;
constexpr int64_t kPrefetchBytes = 2048;

template <DType T>
HOTSWAP_AVX2 inline __m256 load8(const void* w, int64_t i) {
  if constexpr (T == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + i);
  } else if constexpr (T == DType::kF16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// The last in % 8 elements, zero-padded to 8 lanes (0 * 0 adds nothing to the lanes).
template <DType T>
HOTSWAP_AVX2 inline __m256 load8_tail(const void* w, int64_t i, int n) {
  if constexpr (T == DType::kF32) {
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(buf, static_cast<const float*>(w) + i, static_cast<size_t>(n) * sizeof(float));
    return _mm256_load_ps(buf);
  } else {
    alignas(16) uint16_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(buf, static_cast<const uint16_t*>(w) + i, static_cast<size_t>(n) * sizeof(uint16_t));
    return load8<T>(buf, 0);
  }
}

// A fixed tree over the eight lanes: (l0+l4, l1+l5, l2+l6, l3+l7), then pairs, then the last two.
HOTSWAP_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// y[r, o + k] for r < R, k < OW: x and y point at the tile's first row.
template <DType T, int R, int OW>
HOTSWAP_AVX2 void tile_avx2(const MatmulArgs& a, const float* x, float* y, int64_t o) {
  const int64_t in = a.in;
  const void* w = a.w;
  __m256 acc[R][OW];
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < OW; ++k) acc[r][k] = _mm256_setzero_ps();
  }
  const int64_t main_end = in & ~int64_t{7};
  for (int64_t i = 0; i < main_end; i += 8) {
    // One prefetch per cache line of each weight row, kPrefetchBytes ahead: the hardware
    // prefetcher alone leaves decode well short of the read bandwidth.
    if ((i * static_cast<int64_t>(sizeof(Elem<T>))) % 64 == 0) {
      for (int k = 0; k < OW; ++k)
        _mm_prefetch(
            static_cast<const char*>(w) + ((o + k) * in + i) * static_cast<int64_t>(sizeof(Elem<T>)) + kPrefetchBytes,
            _MM_HINT_T0);
    }
    __m256 wv[OW];
    for (int k = 0; k < OW; ++k) wv[k] = load8<T>(w, (o + k) * in + i);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * in + i);
      for (int k = 0; k < OW; ++k) acc[r][k] = _mm256_fmadd_ps(xv, wv[k], acc[r][k]);
    }
  }
  const int tail = static_cast<int>(in - main_end);
  if (tail > 0) {
    alignas(32) int32_t mask_bits[8];
    for (int l = 0; l < 8; ++l) mask_bits[l] = l < tail ? -1 : 0;
    const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(mask_bits));
    __m256 wv[OW];
    for (int k = 0; k < OW; ++k) wv[k] = load8_tail<T>(w, (o + k) * in + main_end, tail);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_maskload_ps(x + r * in + main_end, mask);
      for (int k = 0; k < OW; ++k) acc[r][k] = _mm256_fmadd_ps(xv, wv[k], acc[r][k]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < OW; ++k) {
      float s = hsum8(acc[r][k]);
      if (a.bias != nullptr) s += load_as_f32(a.bias, T, static_cast<size_t>(o + k));
      y[r * a.out + o + k] = s;
    }
  }
}

// Columns [o_begin, o_end) for R rows: OW weight rows at a time, then one at a time. With few
// rows there are registers for four weight rows (more independent FMA chains for decode).
template <DType T, int R>
HOTSWAP_AVX2 void cols_avx2(const MatmulArgs& a, const float* x, float* y, int64_t o_begin, int64_t o_end) {
  constexpr int OW = R <= 2 ? 4 : 2;
  int64_t o = o_begin;
  for (; o + OW <= o_end; o += OW) tile_avx2<T, R, OW>(a, x, y, o);
  for (; o < o_end; ++o) tile_avx2<T, R, 1>(a, x, y, o);
}

template <DType T>
void matmul_range_avx2(const MatmulArgs& a, int64_t o_begin, int64_t o_end) {
  // Weight rows per L2 block: ~256 KiB, at least a few rows so the tiles have work.
  const int64_t row_bytes = a.in * static_cast<int64_t>(dtype_size(T));
  const int64_t block = std::max<int64_t>(8, (int64_t{256} << 10) / row_bytes);
  for (int64_t ob = o_begin; ob < o_end; ob += block) {
    const int64_t oe = std::min(ob + block, o_end);
    for (int64_t r0 = 0; r0 < a.rows; r0 += 4) {
      const float* x = a.x + r0 * a.in;
      float* y = a.y + r0 * a.out;
      switch (std::min<int64_t>(4, a.rows - r0)) {
        case 1:
          cols_avx2<T, 1>(a, x, y, ob, oe);
          break;
        case 2:
          cols_avx2<T, 2>(a, x, y, ob, oe);
          break;
        case 3:
          cols_avx2<T, 3>(a, x, y, ob, oe);
          break;
        default:
          cols_avx2<T, 4>(a, x, y, ob, oe);
          break;
      }
    }
  }
}

#endif  // HOTSWAP_MATMUL_X86

using RangeFn = void (*)(const MatmulArgs&, int64_t, int64_t);

RangeFn pick_range_fn(DType wt) {
#if HOTSWAP_MATMUL_X86
  if (detail::simd_enabled()) {
    switch (wt) {
      case DType::kF32:
        return matmul_range_avx2<DType::kF32>;
      case DType::kF16:
        return matmul_range_avx2<DType::kF16>;
      case DType::kBF16:
        return matmul_range_avx2<DType::kBF16>;
    }
  }
#endif
  return matmul_range_scalar;
}

}  // namespace

Status matmul(const CpuContext& ctx, const float* x, int64_t rows, int64_t in, const void* w, DType wt, int64_t out,
              const void* bias, float* y) {
  HOTSWAP_RETURN_IF_ERROR(check_matmul_args("matmul", x, rows, in, w, wt, out, y));
  if (rows == 0) return Status::ok_status();

  const MatmulArgs args{x, rows, in, w, wt, out, bias, y};
  const RangeFn fn = pick_range_fn(wt);
  // Below ~64K multiply-adds per range the wake-up costs more than the work.
  const int64_t grain = std::max<int64_t>(4, (int64_t{1} << 16) / std::max<int64_t>(1, rows * in));
  parallel_for(
      ctx.pool, out, [&](int64_t begin, int64_t end) { fn(args, begin, end); }, grain);
  return Status::ok_status();
}

}  // namespace hotswap::kernels
