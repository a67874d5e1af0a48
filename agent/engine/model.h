// A loaded checkpoint: config, tokenizer and weights (mapped, in their stored dtype), and the
// forward pass of LlamaForCausalLM / Qwen2ForCausalLM over a paged KV cache.
//
// Model is immutable after load and shared between threads. CpuExecutor owns the mutable
// state of one forward pass (the KV pool, scratch buffers, the thread pool) and is driven by
// one thread: the engine's step loop.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/engine/model_config.h"
#include "agent/engine/safetensors.h"
#include "agent/engine/tokenizer.h"
#include "common/status.h"
#include "kernels/kv_layout.h"
#include "kernels/ops.h"

namespace hotswap::kernels {
class ThreadPool;
}

namespace hotswap::engine {

struct LayerWeights {
  TensorView input_norm, post_attention_norm;
  TensorView q_proj, k_proj, v_proj, o_proj;
  TensorView q_bias, k_bias, v_bias;  // data == nullptr when the architecture has none
  TensorView gate_proj, up_proj, down_proj;
};

class Model {
 public:
  // Loads config.json, tokenizer.json (+ tokenizer_config.json, generation_config.json when
  // present) and the safetensors weights of a Hugging Face model directory. Every tensor's
  // shape is checked against config.json.
  static StatusOr<std::shared_ptr<const Model>> load(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::string& dir() const { return dir_; }
  const TensorView& embed_tokens() const { return embed_tokens_; }
  const TensorView& final_norm() const { return final_norm_; }
  const TensorView& lm_head() const { return lm_head_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  // Token ids that end generation: config.json's eos_token_id(s), generation_config.json's and
  // the tokenizer's EOS.
  const std::vector<int32_t>& eos_token_ids() const { return eos_token_ids_; }
  size_t weight_bytes() const { return checkpoint_->total_bytes(); }

 private:
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
  TensorView embed_tokens_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
  std::vector<int32_t> eos_token_ids_;
};

// One forward step over tokens of several sequences.
struct ForwardBatch {
  std::vector<int32_t> tokens;        // [T]
  std::vector<int32_t> positions;     // [T]
  std::vector<int32_t> seq_index;     // [T]: row of block_tables
  std::vector<int64_t> slots;         // [T]: block * block_size + offset where its K/V go
  std::vector<int32_t> block_tables;  // [num_seqs * block_table_stride]
  int64_t block_table_stride = 0;
  std::vector<int32_t> logit_rows;    // token indices whose next-token logits are wanted
};

// The checks every backend makes before a pass: a non-empty batch, per-token arrays of one
// length, logit rows inside the batch, positions inside the model's context. (Index values the
// kernels check themselves: token ids, slots, block tables.)
Status check_forward_batch(const ForwardBatch& batch, const ModelConfig& config);

// The KV layout an executor of `config` keeps, after the checks every backend makes on its
// options (kv_blocks positive, block_size in 1..1024).
StatusOr<kernels::KvLayout> executor_kv_layout(const ModelConfig& config, int64_t kv_blocks, int block_size,
                                               kernels::DType kv_dtype);

// Runs the model on one backend: CpuExecutor here, the CUDA one in cuda_backend.h.
class ModelExecutor {
 public:
  virtual ~ModelExecutor() = default;
  // logits: [batch.logit_rows.size(), vocab_size], f32.
  virtual Status forward(const ForwardBatch& batch, std::vector<float>* logits) = 0;
  virtual const kernels::KvLayout& kv_layout() const = 0;
  virtual int64_t kv_blocks() const = 0;
  virtual const char* backend_name() const = 0;
  // Migration: copies whole KV blocks out of / into the pool, packed back to back in
  // block_ids order (kv_layout().block_bytes() each), in host memory.
  virtual Status read_kv_blocks(const int32_t* block_ids, int64_t n, void* out) = 0;
  virtual Status write_kv_blocks(const int32_t* block_ids, int64_t n, const void* in) = 0;
  // The copy of the weights into the backend's memory at create (zero where the backend reads
  // the mapped checkpoint in place, as the CPU one does).
  struct WeightUpload {
    size_t bytes = 0;
    double seconds = 0;
  };
  virtual WeightUpload weight_upload() const { return {}; }
};

struct CpuExecutorOptions {
  int threads = 0;  // 0: all cores
  int64_t kv_blocks = 0;
  int block_size = 16;
  kernels::DType kv_dtype = kernels::DType::kF32;
};

class CpuExecutor : public ModelExecutor {
 public:
  static StatusOr<std::unique_ptr<CpuExecutor>> create(std::shared_ptr<const Model> model,
                                                       const CpuExecutorOptions& options);
  ~CpuExecutor() override;
  Status forward(const ForwardBatch& batch, std::vector<float>* logits) override;
  const kernels::KvLayout& kv_layout() const override { return layout_; }
  int64_t kv_blocks() const override { return kv_blocks_; }
  const char* backend_name() const override { return "cpu"; }
  Status read_kv_blocks(const int32_t* block_ids, int64_t n, void* out) override;
  Status write_kv_blocks(const int32_t* block_ids, int64_t n, const void* in) override;

  // The pool's bytes, block-major (see kernels/kv_layout.h): what migration copies.
  uint8_t* kv_pool() { return kv_pool_.get(); }

 private:
  CpuExecutor() = default;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<kernels::ThreadPool> pool_;
  kernels::CpuContext ctx_;
  kernels::KvLayout layout_;
  int64_t kv_blocks_ = 0;
  // Not zeroed: attention reads only slots written before, and untouched pages cost no memory.
  std::unique_ptr<uint8_t[]> kv_pool_;
  // Scratch, grown on demand.
  std::vector<float> x_, h_, q_, k_, v_, attn_, gate_, up_, sel_;
};

}  // namespace hotswap::engine
