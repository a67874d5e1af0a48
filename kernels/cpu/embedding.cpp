// Embedding lookup: out[i, :] = table[ids[i], :] converted to f32. Reads n rows of the table
// (n * dim * sizeof(dtype) bytes, scattered) and writes n * dim * 4 bytes; parallel over rows.
#include "kernels/check.h"
#include "kernels/cpu/row_convert.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace hotswap::kernels {

Status embedding(const CpuContext& ctx, const void* table, DType t, int64_t vocab, int64_t dim, const int32_t* ids,
                 int64_t n, float* out) {
  constexpr const char* kOp = "embedding";
  HOTSWAP_RETURN_IF_ERROR(check_embedding_args(kOp, table, t, vocab, dim, ids, n, out));
  if (n == 0) return Status::ok_status();
  // ids are host memory here, so they are checked before any row is written (the CUDA twin
  // checks them in its kernel, as it cannot read them without a copy).
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab)
      return detail::invalid(kOp, "ids[", i, "] = ", ids[i], " is outside [0, ", vocab, ")");
  }
  parallel_for(
      ctx.pool, n,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) detail::load_row_f32(table, t, int64_t{ids[i]} * dim, dim, out + i * dim);
      },
      std::max<int64_t>(1, 16384 / dim));
  return Status::ok_status();
}

}  // namespace hotswap::kernels
