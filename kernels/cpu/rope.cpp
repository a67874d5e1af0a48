// Rotate-half RoPE as transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb, in place.
// inv_freq is computed once per call; per token, cos/sin of half angles are computed once and
// applied to all q and k heads. Traffic: one read and write of q and k; tokens in parallel.
// Angles and rotations are in f32 with the same operation order as transformers, so results
// match it to within libm's cosf/sinf differences.
#include <cmath>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace hotswap::kernels {
namespace {

void rotate_heads(float* base, int n_heads, int head_dim, const float* cos_v, const float* sin_v) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = base + static_cast<int64_t>(h) * head_dim;
    for (int j = 0; j < half; ++j) {
      const float x1 = v[j];
      const float x2 = v[j + half];
      // q*cos + rotate_half(q)*sin, with rotate_half(q) = cat(-x2, x1).
      v[j] = x1 * cos_v[j] - x2 * sin_v[j];
      v[j + half] = x2 * cos_v[j] + x1 * sin_v[j];
    }
  }
}

}  // namespace

Status rope(const CpuContext& ctx, float* q, float* k, const int32_t* positions, int64_t tokens, int n_heads,
            int n_kv_heads, int head_dim, float theta) {
  constexpr const char* kOp = "rope";
  HOTSWAP_RETURN_IF_ERROR(check_rope_args(kOp, q, k, positions, tokens, n_heads, n_kv_heads, head_dim, theta));
  if (tokens == 0) return Status::ok_status();
  // positions are host memory here, so they are checked before any rotation (the CUDA twin
  // checks them in its kernel).
  for (int64_t t = 0; t < tokens; ++t) {
    if (positions[t] < 0) return detail::invalid(kOp, "positions[", t, "] = ", positions[t], " is negative");
  }

  const int half = head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int j = 0; j < half; ++j) {
    inv_freq[static_cast<size_t>(j)] = 1.0f / std::pow(theta, static_cast<float>(2 * j) / static_cast<float>(head_dim));
  }
  const int64_t q_stride = int64_t{n_heads} * head_dim;
  const int64_t k_stride = int64_t{n_kv_heads} * head_dim;
  parallel_for(ctx.pool, tokens, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_v(static_cast<size_t>(half));
    std::vector<float> sin_v(static_cast<size_t>(half));
    for (int64_t t = begin; t < end; ++t) {
      const float pos = static_cast<float>(positions[t]);
      for (int j = 0; j < half; ++j) {
        const float angle = pos * inv_freq[static_cast<size_t>(j)];
        cos_v[static_cast<size_t>(j)] = std::cos(angle);
        sin_v[static_cast<size_t>(j)] = std::sin(angle);
      }
      rotate_heads(q + t * q_stride, n_heads, head_dim, cos_v.data(), sin_v.data());
      rotate_heads(k + t * k_stride, n_kv_heads, head_dim, cos_v.data(), sin_v.data());
    }
  });
  return Status::ok_status();
}

}  // namespace hotswap::kernels
