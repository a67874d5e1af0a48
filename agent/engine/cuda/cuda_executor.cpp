// The CUDA executor (cuda_backend.h): the CPU executor's forward pass over kernels/cuda, with
// the weights, the KV pool and the scratch in device memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "agent/engine/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_cuda.h"

namespace hotswap::engine {
namespace {

namespace kc = kernels::cuda;

// Device allocations are 256-byte aligned, as cudaMalloc's are, so every weight and every
// packed input array starts where a vectorised load may begin.
constexpr size_t kAlign = 256;

size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string mib(size_t bytes) { return std::to_string((bytes + (size_t{1} << 19)) >> 20) + " MiB"; }

// cudaMalloc with a message that names what did not fit and how much was free.
Status device_alloc(void** p, size_t bytes, const std::string& what) {
  *p = nullptr;
  if (bytes == 0) return Status();
  const cudaError_t err = cudaMalloc(p, bytes);
  if (err == cudaSuccess) return Status();
  *p = nullptr;
  (void)cudaGetLastError();
  size_t free_bytes = 0, total_bytes = 0;
  (void)cudaMemGetInfo(&free_bytes, &total_bytes);
  Status st = kc::check_cuda(static_cast<int>(err), ("cuda executor: cudaMalloc(" + what + ")").c_str());
  if (err == cudaErrorMemoryAllocation)
    return resource_exhausted(what + " needs " + mib(bytes) + " of GPU memory; " + mib(free_bytes) + " of " +
                              mib(total_bytes) + " is free (" + st.message() + ")");
  return st;
}

// A device buffer that grows on demand. Growing frees the old one, so the caller synchronises
// the stream first when work in flight may still use it.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  Status reserve(size_t bytes, const std::string& what) {
    if (bytes <= capacity_) return Status();
    release();
    HOTSWAP_RETURN_IF_ERROR(device_alloc(&data_, bytes, what));
    capacity_ = bytes;
    return Status();
  }
  void release() {
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = nullptr;
    capacity_ = 0;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t capacity() const { return capacity_; }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Pinned host memory, grown on demand (the caller makes sure no copy still reads it).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() { release(); }

  Status reserve(size_t bytes, const char* what) {
    if (bytes <= capacity_) return Status();
    release();
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMallocHost(&data_, bytes), what);
    capacity_ = bytes;
    return Status();
  }
  void release() {
    if (data_ != nullptr) (void)cudaFreeHost(data_);
    data_ = nullptr;
    capacity_ = 0;
  }
  uint8_t* bytes() const { return static_cast<uint8_t*>(data_); }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

class CudaExecutor : public ModelExecutor {
 public:
  static StatusOr<std::unique_ptr<ModelExecutor>> create(std::shared_ptr<const Model> model,
                                                         const CudaExecutorOptions& options);
  ~CudaExecutor() override;

  Status forward(const ForwardBatch& batch, std::vector<float>* logits) override;
  const kernels::KvLayout& kv_layout() const override { return layout_; }
  int64_t kv_blocks() const override { return kv_blocks_; }
  const char* backend_name() const override { return "cuda"; }
  Status read_kv_blocks(const int32_t* block_ids, int64_t n, void* out) override;
  Status write_kv_blocks(const int32_t* block_ids, int64_t n, const void* in) override;
  WeightUpload weight_upload() const override { return upload_; }

 private:
  CudaExecutor() = default;
  Status upload_weights(size_t staging_bytes);
  TensorView on_device(const TensorView& host) const;
  Status grow_scratch(int64_t tokens, int64_t logit_rows);
  // Waits for the stream and turns any device-side index error into a Status.
  Status finish(const char* what);
  // The host-side checks of migration's block ids (the CPU twin's errors): each inside the
  // pool and, for a write, none twice.
  Status check_block_ids(const char* what, const int32_t* block_ids, int64_t n, const void* data,
                         bool distinct) const;
  // Makes the migration staging hold `blocks` blocks.
  Status grow_staging(int64_t blocks);
  // Copies block_ids[0, n) to the device (ids_dev_).
  Status upload_block_ids(const int32_t* block_ids, int64_t n);
  int64_t staging_blocks() const;

  std::shared_ptr<const Model> model_;
  kc::CudaContext ctx_;
  bool have_ctx_ = false;
  kernels::KvLayout layout_;
  int64_t kv_blocks_ = 0;

  // Every weight, back to back (aligned), and where each host tensor went.
  DeviceBuffer weights_;
  WeightUpload upload_;
  std::map<const void*, const void*> device_of_;
  TensorView embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;

  DeviceBuffer kv_pool_;
  // Scratch for `tokens_cap_` tokens and `rows_cap_` logit rows.
  int64_t tokens_cap_ = 0, rows_cap_ = 0;
  DeviceBuffer x_, h_, q_, k_, v_, attn_, gate_, up_, sel_, logits_;
  // The batch's index arrays, packed: one upload per pass.
  PinnedBuffer inputs_host_;
  DeviceBuffer inputs_dev_;
  PinnedBuffer logits_host_;
  // Migration's staging.
  PinnedBuffer ids_host_;
  DeviceBuffer ids_dev_, blocks_dev_;
};

StatusOr<std::unique_ptr<ModelExecutor>> CudaExecutor::create(std::shared_ptr<const Model> model,
                                                              const CudaExecutorOptions& options) {
  HOTSWAP_ASSIGN_OR_RETURN(kernels::KvLayout layout, executor_kv_layout(model->config(), options.kv_blocks,
                                                                        options.block_size, options.kv_dtype));
  if (options.staging_bytes < (size_t{1} << 20))
    return invalid_argument("staging_bytes must be at least 1 MiB, got " + std::to_string(options.staging_bytes));
  const int devices = kc::device_count();
  if (devices == 0)
    return unavailable("--device cuda: no CUDA device is visible to this process (no driver, no GPU, or "
                       "CUDA_VISIBLE_DEVICES hides them); use --device cpu or --device auto");
  if (options.device < 0 || options.device >= devices)
    return unavailable("--gpu " + std::to_string(options.device) + ": there is no such CUDA device (" +
                       std::to_string(devices) + " visible: 0.." + std::to_string(devices - 1) + ")");
  std::unique_ptr<CudaExecutor> ex(new CudaExecutor());
  HOTSWAP_ASSIGN_OR_RETURN(ex->ctx_, kc::create_context(options.device));
  ex->have_ctx_ = true;
  ex->model_ = std::move(model);
  ex->layout_ = layout;
  ex->kv_blocks_ = options.kv_blocks;
  HOTSWAP_RETURN_IF_ERROR(ex->upload_weights(options.staging_bytes));
  // As on the CPU, the pool is not cleared: attention reads only slots written before.
  HOTSWAP_RETURN_IF_ERROR(ex->kv_pool_.reserve(static_cast<size_t>(options.kv_blocks) * ex->layout_.block_bytes(),
                                               "the KV cache (" + std::to_string(options.kv_blocks) + " blocks)"));
  return std::unique_ptr<ModelExecutor>(std::move(ex));
}

CudaExecutor::~CudaExecutor() {
  if (!have_ctx_) return;
  (void)kc::synchronize(ctx_);
  // The buffers free themselves (members); the context goes last, after the stream is idle.
  weights_.release();
  kv_pool_.release();
  for (DeviceBuffer* b : {&x_, &h_, &q_, &k_, &v_, &attn_, &gate_, &up_, &sel_, &logits_, &inputs_dev_, &ids_dev_,
                          &blocks_dev_})
    b->release();
  (void)kc::destroy_context(ctx_);
}

Status CudaExecutor::upload_weights(size_t staging_bytes) {
  // Every distinct tensor once (a tied LM head is the embedding table itself).
  std::vector<const TensorView*> tensors = {&model_->embed_tokens(), &model_->final_norm(), &model_->lm_head()};
  for (const LayerWeights& L : model_->layers()) {
    for (const TensorView* t : {&L.input_norm, &L.post_attention_norm, &L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj,
                                &L.q_bias, &L.k_bias, &L.v_bias, &L.gate_proj, &L.up_proj, &L.down_proj})
      if (t->data != nullptr) tensors.push_back(t);
  }
  std::map<const void*, const TensorView*> distinct;
  size_t total = 0;
  for (const TensorView* t : tensors)
    if (distinct.emplace(t->data, t).second) total += aligned(t->bytes);
  HOTSWAP_RETURN_IF_ERROR(weights_.reserve(total, "the weights (" + std::to_string(distinct.size()) + " tensors)"));

  // Two pinned buffers in turn: while the GPU copies one, the CPU fills the other from the
  // mapped checkpoint. An event per buffer says when its copy is done.
  PinnedBuffer stage[2];
  cudaEvent_t done[2] = {nullptr, nullptr};
  auto cleanup = [&] {
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(ctx_.stream));
    for (cudaEvent_t e : done)
      if (e != nullptr) (void)cudaEventDestroy(e);
  };
  auto copy_all = [&]() -> Status {
    for (int i = 0; i < 2; ++i) {
      HOTSWAP_RETURN_IF_ERROR(stage[i].reserve(staging_bytes, "cuda executor: cudaMallocHost(weight staging)"));
      HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming),
                                   "cuda executor: cudaEventCreate");
    }
    auto stream = static_cast<cudaStream_t>(ctx_.stream);
    int turn = 0;
    bool used[2] = {false, false};
    size_t offset = 0;
    for (const auto& [host, t] : distinct) {
      const auto* src = static_cast<const uint8_t*>(host);
      uint8_t* dst = weights_.as<uint8_t>() + offset;
      offset += aligned(t->bytes);
      for (size_t at = 0; at < t->bytes; at += staging_bytes) {
        const size_t n = std::min(staging_bytes, t->bytes - at);
        if (used[turn]) HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventSynchronize(done[turn]), "cuda executor: weight upload");
        std::memcpy(stage[turn].bytes(), src + at, n);
        HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(dst + at, stage[turn].bytes(), n, cudaMemcpyHostToDevice, stream),
                                     ("cuda executor: uploading " + t->name).c_str());
        HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventRecord(done[turn], stream), "cuda executor: cudaEventRecord");
        used[turn] = true;
        turn ^= 1;
      }
      device_of_[host] = dst;
    }
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(stream), "cuda executor: weight upload");
    return Status();
  };
  const auto start = std::chrono::steady_clock::now();
  const Status st = copy_all();
  cleanup();
  HOTSWAP_RETURN_IF_ERROR(st);
  upload_.bytes = total;
  upload_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  embed_ = on_device(model_->embed_tokens());
  final_norm_ = on_device(model_->final_norm());
  lm_head_ = on_device(model_->lm_head());
  for (const LayerWeights& L : model_->layers()) {
    LayerWeights d = L;
    for (TensorView* t : {&d.input_norm, &d.post_attention_norm, &d.q_proj, &d.k_proj, &d.v_proj, &d.o_proj,
                          &d.q_bias, &d.k_bias, &d.v_bias, &d.gate_proj, &d.up_proj, &d.down_proj})
      *t = on_device(*t);
    layers_.push_back(std::move(d));
  }
  return Status();
}

TensorView CudaExecutor::on_device(const TensorView& host) const {
  TensorView d = host;
  if (host.data != nullptr) d.data = device_of_.at(host.data);
  return d;
}

Status CudaExecutor::grow_scratch(int64_t tokens, int64_t rows) {
  if (tokens <= tokens_cap_ && rows <= rows_cap_) return Status();
  // Nothing in flight uses the scratch between passes (each pass ends with a sync), but a
  // failed pass may have left work queued: wait before freeing.
  HOTSWAP_RETURN_IF_ERROR(kc::synchronize(ctx_));
  const ModelConfig& c = model_->config();
  const int64_t T = std::max(tokens, tokens_cap_), R = std::max(rows, rows_cap_);
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t Q = int64_t{c.num_attention_heads} * c.head_dim, KV = int64_t{c.num_key_value_heads} * c.head_dim;
  const auto f32 = [](int64_t n) { return static_cast<size_t>(n) * sizeof(float); };
  const std::string what = "scratch for " + std::to_string(T) + " tokens";
  HOTSWAP_RETURN_IF_ERROR(x_.reserve(f32(T * H), what));
  HOTSWAP_RETURN_IF_ERROR(h_.reserve(f32(T * H), what));
  HOTSWAP_RETURN_IF_ERROR(q_.reserve(f32(T * Q), what));
  HOTSWAP_RETURN_IF_ERROR(k_.reserve(f32(T * KV), what));
  HOTSWAP_RETURN_IF_ERROR(v_.reserve(f32(T * KV), what));
  HOTSWAP_RETURN_IF_ERROR(attn_.reserve(f32(T * Q), what));
  HOTSWAP_RETURN_IF_ERROR(gate_.reserve(f32(T * I), what));
  HOTSWAP_RETURN_IF_ERROR(up_.reserve(f32(T * I), what));
  HOTSWAP_RETURN_IF_ERROR(sel_.reserve(f32(R * H), "scratch for " + std::to_string(R) + " logit rows"));
  HOTSWAP_RETURN_IF_ERROR(logits_.reserve(f32(R * c.vocab_size), "logits for " + std::to_string(R) + " rows"));
  HOTSWAP_RETURN_IF_ERROR(logits_host_.reserve(f32(R * c.vocab_size), "cuda executor: cudaMallocHost(logits)"));
  tokens_cap_ = T;
  rows_cap_ = R;
  return Status();
}

Status CudaExecutor::finish(const char* what) {
  Status st = kc::take_index_errors(ctx_);  // waits for the stream first
  if (!st.ok()) return st.with_context(what);
  return Status();
}

Status CudaExecutor::forward(const ForwardBatch& b, std::vector<float>* logits) {
  const ModelConfig& c = model_->config();
  HOTSWAP_RETURN_IF_ERROR(check_forward_batch(b, c));
  const int64_t T = static_cast<int64_t>(b.tokens.size());
  const int64_t R = static_cast<int64_t>(b.logit_rows.size());
  HOTSWAP_RETURN_IF_ERROR(grow_scratch(T, std::max<int64_t>(R, 1)));

  // The index arrays, packed into one pinned buffer and sent in one copy.
  struct Part {
    const void* data;
    size_t bytes;
    size_t offset = 0;
  };
  Part parts[] = {{b.tokens.data(), b.tokens.size() * sizeof(int32_t)},
                  {b.positions.data(), b.positions.size() * sizeof(int32_t)},
                  {b.seq_index.data(), b.seq_index.size() * sizeof(int32_t)},
                  {b.slots.data(), b.slots.size() * sizeof(int64_t)},
                  {b.block_tables.data(), b.block_tables.size() * sizeof(int32_t)},
                  {b.logit_rows.data(), b.logit_rows.size() * sizeof(int32_t)}};
  size_t packed = 0;
  for (Part& p : parts) {
    p.offset = packed;
    packed += aligned(p.bytes);
  }
  // Every pass and migration call ends synchronised, so only a buffer that must grow (and be
  // freed) needs a wait for work a failed call may have left queued.
  if (packed > inputs_dev_.capacity()) HOTSWAP_RETURN_IF_ERROR(kc::synchronize(ctx_));
  HOTSWAP_RETURN_IF_ERROR(inputs_host_.reserve(packed, "cuda executor: cudaMallocHost(batch inputs)"));
  HOTSWAP_RETURN_IF_ERROR(inputs_dev_.reserve(packed, "the batch's index arrays"));
  for (const Part& p : parts)
    if (p.bytes > 0) std::memcpy(inputs_host_.bytes() + p.offset, p.data, p.bytes);
  auto stream = static_cast<cudaStream_t>(ctx_.stream);
  HOTSWAP_RETURN_IF_CUDA_ERROR(
      cudaMemcpyAsync(inputs_dev_.as<uint8_t>(), inputs_host_.bytes(), packed, cudaMemcpyHostToDevice, stream),
      "cuda executor: uploading the batch");
  auto dev = [&](int i) { return inputs_dev_.as<uint8_t>() + parts[i].offset; };
  const auto* tokens = reinterpret_cast<const int32_t*>(dev(0));
  const auto* positions = reinterpret_cast<const int32_t*>(dev(1));
  const auto* seq_index = reinterpret_cast<const int32_t*>(dev(2));
  const auto* slots = reinterpret_cast<const int64_t*>(dev(3));
  const auto* block_tables = reinterpret_cast<const int32_t*>(dev(4));
  const auto* logit_rows = reinterpret_cast<const int32_t*>(dev(5));

  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t Q = int64_t{nh} * hd, KV = int64_t{nkv} * hd;
  const float eps = c.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float* x = x_.as<float>();
  float* h = h_.as<float>();
  float* q = q_.as<float>();
  float* k = k_.as<float>();
  float* v = v_.as<float>();
  float* attn = attn_.as<float>();
  float* gate = gate_.as<float>();
  float* up = up_.as<float>();
  void* pool = kv_pool_.as<void>();
  const auto& ctx = ctx_;

  HOTSWAP_RETURN_IF_ERROR(kc::embedding(ctx, embed_.data, embed_.dtype, c.vocab_size, H, tokens, T, x));
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = layers_[l];
    HOTSWAP_RETURN_IF_ERROR(kc::rms_norm(ctx, x, L.input_norm.data, L.input_norm.dtype, h, T, H, eps));
    HOTSWAP_RETURN_IF_ERROR(kc::matmul(ctx, h, T, H, L.q_proj.data, L.q_proj.dtype, Q, L.q_bias.data, q));
    HOTSWAP_RETURN_IF_ERROR(kc::matmul(ctx, h, T, H, L.k_proj.data, L.k_proj.dtype, KV, L.k_bias.data, k));
    HOTSWAP_RETURN_IF_ERROR(kc::matmul(ctx, h, T, H, L.v_proj.data, L.v_proj.dtype, KV, L.v_bias.data, v));
    HOTSWAP_RETURN_IF_ERROR(kc::rope(ctx, q, k, positions, T, nh, nkv, hd, c.rope_theta));
    HOTSWAP_RETURN_IF_ERROR(kc::kv_write(ctx, layout_, pool, kv_blocks_, l, k, v, slots, T));
    HOTSWAP_RETURN_IF_ERROR(kc::paged_attention(ctx, layout_, pool, kv_blocks_, l, q, attn, T, nh, seq_index,
                                                positions, block_tables, b.block_table_stride, scale));
    HOTSWAP_RETURN_IF_ERROR(kc::matmul(ctx, attn, T, Q, L.o_proj.data, L.o_proj.dtype, H, nullptr, h));
    HOTSWAP_RETURN_IF_ERROR(kc::add(ctx, x, h, T * H));
    HOTSWAP_RETURN_IF_ERROR(
        kc::rms_norm(ctx, x, L.post_attention_norm.data, L.post_attention_norm.dtype, h, T, H, eps));
    HOTSWAP_RETURN_IF_ERROR(kc::matmul(ctx, h, T, H, L.gate_proj.data, L.gate_proj.dtype, I, nullptr, gate));
    HOTSWAP_RETURN_IF_ERROR(kc::matmul(ctx, h, T, H, L.up_proj.data, L.up_proj.dtype, I, nullptr, up));
    HOTSWAP_RETURN_IF_ERROR(kc::swiglu(ctx, gate, up, gate, T * I));
    HOTSWAP_RETURN_IF_ERROR(kc::matmul(ctx, gate, T, I, L.down_proj.data, L.down_proj.dtype, H, nullptr, h));
    HOTSWAP_RETURN_IF_ERROR(kc::add(ctx, x, h, T * H));
  }

  // Only the rows whose next token is sampled go through the final norm and the LM head: an
  // f32 "embedding" lookup into x gathers them.
  logits->assign(static_cast<size_t>(R) * c.vocab_size, 0.0f);
  if (R > 0) {
    float* sel = sel_.as<float>();
    float* out = logits_.as<float>();
    HOTSWAP_RETURN_IF_ERROR(kc::embedding(ctx, x, kernels::DType::kF32, T, H, logit_rows, R, sel));
    HOTSWAP_RETURN_IF_ERROR(kc::rms_norm(ctx, sel, final_norm_.data, final_norm_.dtype, sel, R, H, eps));
    HOTSWAP_RETURN_IF_ERROR(kc::matmul(ctx, sel, R, H, lm_head_.data, lm_head_.dtype, c.vocab_size, nullptr, out));
    const size_t bytes = static_cast<size_t>(R) * c.vocab_size * sizeof(float);
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(logits_host_.bytes(), out, bytes, cudaMemcpyDeviceToHost, stream),
                                 "cuda executor: reading the logits");
    HOTSWAP_RETURN_IF_ERROR(finish("forward"));
    std::memcpy(logits->data(), logits_host_.bytes(), bytes);
    return Status();
  }
  return finish("forward");
}

int64_t CudaExecutor::staging_blocks() const {
  // Migration moves at most this many blocks per device round trip (about 64 MiB).
  return std::max<int64_t>(1, (int64_t{64} << 20) / static_cast<int64_t>(layout_.block_bytes()));
}

Status CudaExecutor::grow_staging(int64_t blocks) {
  const size_t bytes = static_cast<size_t>(blocks) * layout_.block_bytes();
  // Each chunk ends with finish() (a wait), so the buffers are idle unless a failed call left
  // work queued; only growing, which frees them, needs that wait.
  if (bytes > blocks_dev_.capacity() || static_cast<size_t>(blocks) * sizeof(int32_t) > ids_dev_.capacity())
    HOTSWAP_RETURN_IF_ERROR(kc::synchronize(ctx_));
  return blocks_dev_.reserve(bytes, "migration's KV staging");
}

Status CudaExecutor::upload_block_ids(const int32_t* block_ids, int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * sizeof(int32_t);
  HOTSWAP_RETURN_IF_ERROR(ids_host_.reserve(bytes, "cuda executor: cudaMallocHost(block ids)"));
  HOTSWAP_RETURN_IF_ERROR(ids_dev_.reserve(bytes, "migration's block ids"));
  std::memcpy(ids_host_.bytes(), block_ids, bytes);
  HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(ids_dev_.as<int32_t>(), ids_host_.bytes(), bytes,
                                               cudaMemcpyHostToDevice, static_cast<cudaStream_t>(ctx_.stream)),
                               "cuda executor: uploading block ids");
  return Status();
}

Status CudaExecutor::check_block_ids(const char* what, const int32_t* block_ids, int64_t n, const void* data,
                                     bool distinct) const {
  const std::string op = what;
  if (n < 0) return invalid_argument(op + ": n = " + std::to_string(n) + " is negative");
  if (n > 0 && (block_ids == nullptr || data == nullptr))
    return invalid_argument(op + ": block_ids and the host buffer must not be null");
  std::vector<int32_t> sorted(block_ids, block_ids + n);
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i] < 0 || sorted[i] >= kv_blocks_)
      return invalid_argument(op + ": block " + std::to_string(sorted[i]) + " is outside the pool [0, " +
                              std::to_string(kv_blocks_) + ")");
    if (distinct && i > 0 && sorted[i] == sorted[i - 1])
      return invalid_argument(op + ": block " + std::to_string(sorted[i]) + " appears more than once");
  }
  return Status();
}

Status CudaExecutor::read_kv_blocks(const int32_t* block_ids, int64_t n, void* out) {
  HOTSWAP_RETURN_IF_ERROR(check_block_ids("read_kv_blocks", block_ids, n, out, /*distinct=*/false));
  const size_t block_bytes = layout_.block_bytes();
  auto stream = static_cast<cudaStream_t>(ctx_.stream);
  for (int64_t at = 0; at < n; at += staging_blocks()) {
    const int64_t m = std::min(staging_blocks(), n - at);
    HOTSWAP_RETURN_IF_ERROR(grow_staging(m));
    HOTSWAP_RETURN_IF_ERROR(upload_block_ids(block_ids + at, m));
    HOTSWAP_RETURN_IF_ERROR(
        kc::kv_gather_blocks(ctx_, layout_, kv_pool_.as<void>(), kv_blocks_, ids_dev_.as<int32_t>(), m, blocks_dev_.as<void>()));
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(static_cast<uint8_t*>(out) + at * block_bytes, blocks_dev_.as<void>(),
                                                 static_cast<size_t>(m) * block_bytes, cudaMemcpyDeviceToHost, stream),
                                 "cuda executor: reading KV blocks");
    HOTSWAP_RETURN_IF_ERROR(finish("read_kv_blocks"));
  }
  return Status();
}

Status CudaExecutor::write_kv_blocks(const int32_t* block_ids, int64_t n, const void* in) {
  // As the CPU twin does: a bad or repeated block is an error, and nothing is written.
  HOTSWAP_RETURN_IF_ERROR(check_block_ids("write_kv_blocks", block_ids, n, in, /*distinct=*/true));
  const size_t block_bytes = layout_.block_bytes();
  auto stream = static_cast<cudaStream_t>(ctx_.stream);
  for (int64_t at = 0; at < n; at += staging_blocks()) {
    const int64_t m = std::min(staging_blocks(), n - at);
    HOTSWAP_RETURN_IF_ERROR(grow_staging(m));
    HOTSWAP_RETURN_IF_ERROR(upload_block_ids(block_ids + at, m));
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(blocks_dev_.as<void>(), static_cast<const uint8_t*>(in) + at * block_bytes,
                                                 static_cast<size_t>(m) * block_bytes, cudaMemcpyHostToDevice, stream),
                                 "cuda executor: writing KV blocks");
    HOTSWAP_RETURN_IF_ERROR(kc::kv_scatter_blocks(ctx_, layout_, blocks_dev_.as<void>(), ids_dev_.as<int32_t>(), m,
                                                  kv_pool_.as<void>(), kv_blocks_));
    HOTSWAP_RETURN_IF_ERROR(finish("write_kv_blocks"));
  }
  return Status();
}

}  // namespace

StatusOr<CudaCopyRates> measure_cuda_copy_rates(int device, size_t bytes, int reps) {
  if (bytes == 0 || reps < 1) return invalid_argument("measure_cuda_copy_rates: bytes and reps must be positive");
  HOTSWAP_ASSIGN_OR_RETURN(kc::CudaContext ctx, kc::create_context(device));
  auto stream = static_cast<cudaStream_t>(ctx.stream);
  DeviceBuffer a, b;
  PinnedBuffer host;
  cudaEvent_t t0 = nullptr, t1 = nullptr;
  auto run = [&]() -> StatusOr<CudaCopyRates> {
    HOTSWAP_RETURN_IF_ERROR(a.reserve(bytes, "the copy benchmark's source"));
    HOTSWAP_RETURN_IF_ERROR(b.reserve(bytes, "the copy benchmark's destination"));
    HOTSWAP_RETURN_IF_ERROR(host.reserve(bytes, "measure_cuda_copy_rates: cudaMallocHost"));
    std::memset(host.bytes(), 0x5a, bytes);
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemsetAsync(a.as<void>(), 0x3c, bytes, stream), "measure_cuda_copy_rates");
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventCreate(&t0), "measure_cuda_copy_rates: cudaEventCreate");
    HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventCreate(&t1), "measure_cuda_copy_rates: cudaEventCreate");
    // Best of reps, after one untimed copy of each kind.
    auto best_seconds = [&](void* dst, const void* src, cudaMemcpyKind kind) -> StatusOr<double> {
      double best = 1e30;
      for (int r = 0; r <= reps; ++r) {
        HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventRecord(t0, stream), "measure_cuda_copy_rates: cudaEventRecord");
        HOTSWAP_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(dst, src, bytes, kind, stream), "measure_cuda_copy_rates: copy");
        HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventRecord(t1, stream), "measure_cuda_copy_rates: cudaEventRecord");
        HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventSynchronize(t1), "measure_cuda_copy_rates: copy");
        float ms = 0;
        HOTSWAP_RETURN_IF_CUDA_ERROR(cudaEventElapsedTime(&ms, t0, t1), "measure_cuda_copy_rates: elapsed time");
        if (r > 0) best = std::min(best, ms / 1e3);
      }
      return best;
    };
    CudaCopyRates rates;
    HOTSWAP_ASSIGN_OR_RETURN(double d2d, best_seconds(b.as<void>(), a.as<void>(), cudaMemcpyDeviceToDevice));
    HOTSWAP_ASSIGN_OR_RETURN(double h2d, best_seconds(b.as<void>(), host.bytes(), cudaMemcpyHostToDevice));
    rates.device_to_device_bytes_per_s = 2.0 * static_cast<double>(bytes) / d2d;
    rates.host_to_device_bytes_per_s = static_cast<double>(bytes) / h2d;
    return rates;
  };
  auto rates = run();
  for (cudaEvent_t e : {t0, t1})
    if (e != nullptr) (void)cudaEventDestroy(e);
  (void)kc::synchronize(ctx);
  a.release();
  b.release();
  host.release();
  (void)kc::destroy_context(ctx);
  return rates;
}

bool cuda_backend_built() { return true; }

int cuda_device_count() { return kc::device_count(); }

StatusOr<std::unique_ptr<ModelExecutor>> create_cuda_executor(std::shared_ptr<const Model> model,
                                                              const CudaExecutorOptions& options) {
  return CudaExecutor::create(std::move(model), options);
}

}  // namespace hotswap::engine
