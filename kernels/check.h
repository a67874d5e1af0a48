// The building blocks of the kernels' argument checks, shared by the CPU kernels and the CUDA
// launch wrappers: each returns an invalid_argument Status (check_grid: unimplemented) whose
// message names the op, the parameter and the values ("matmul: w is null but 32 elements are
// needed"), so a caller's shape bug reads as a message instead of a crash. The per-op checks built from them are in
// kernels/op_checks.h. Standard library only.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

#include "common/status.h"
#include "kernels/kv_layout.h"

namespace hotswap::kernels::detail {

template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
Status invalid(const char* op, Args&&... args) {
  return invalid_argument(str_cat(op, ": ", std::forward<Args>(args)...));
}

// A buffer must be present when it is going to be read or written.
inline Status check_ptr(const char* op, const void* p, const char* name, int64_t count) {
  if (count > 0 && p == nullptr) return invalid(op, name, " is null but ", count, " elements are needed");
  return Status::ok_status();
}

// Feature sizes (dim, in, out, vocab, head_dim) must be positive.
inline Status check_positive(const char* op, int64_t v, const char* name) {
  if (v <= 0) return invalid(op, name, " must be > 0, got ", v);
  return Status::ok_status();
}

// Batch sizes (rows, tokens, n) may be zero: an empty batch is a no-op.
inline Status check_non_negative(const char* op, int64_t v, const char* name) {
  if (v < 0) return invalid(op, name, " must be >= 0, got ", v);
  return Status::ok_status();
}

inline Status check_dtype(const char* op, DType t, const char* name) {
  if (t != DType::kF32 && t != DType::kF16 && t != DType::kBF16) {
    return invalid(op, name, " has unknown dtype code ", static_cast<int>(t));
  }
  return Status::ok_status();
}

inline Status check_layout(const char* op, const KvLayout& l, const char* name) {
  if (l.n_layers <= 0 || l.n_kv_heads <= 0 || l.head_dim <= 0 || l.block_size <= 0) {
    return invalid(op, name, " has non-positive sizes (n_layers=", l.n_layers, ", n_kv_heads=", l.n_kv_heads,
                   ", head_dim=", l.head_dim, ", block_size=", l.block_size, ")");
  }
  return check_dtype(op, l.dtype, name);
}

// Two ranges of bytes overlap.
inline bool overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a);
  const auto pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + static_cast<uintptr_t>(b_bytes) && pb < pa + static_cast<uintptr_t>(a_bytes);
}

// A grid dimension that exceeds what CUDA can launch is a (huge) input the op does not support.
inline Status check_grid(const char* op, int64_t blocks, int64_t limit, const char* what) {
  if (blocks > limit) {
    return unimplemented(
        str_cat(op, ": ", what, " needs ", blocks, " thread blocks, more than the ", limit, " one launch allows"));
  }
  return Status::ok_status();
}

}  // namespace hotswap::kernels::detail
