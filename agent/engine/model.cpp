#include "agent/engine/model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "kernels/cpu/thread_pool.h"

namespace hotswap::engine {

namespace fs = std::filesystem;
using kernels::DType;

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The tensor `name`, checked to have exactly `shape`.
StatusOr<TensorView> get_checked(const SafetensorsCheckpoint& ckpt, const std::string& name,
                                 const std::vector<int64_t>& shape) {
  HOTSWAP_ASSIGN_OR_RETURN(TensorView view, ckpt.get(name));
  if (view.shape != shape)
    return invalid_argument(fs::path(view.file).filename().string() + ": tensor '" + name + "' has shape " +
                            shape_string(view.shape) + ", config.json expects " + shape_string(shape));
  return view;
}

Status check_same_dtype(const TensorView& w, const TensorView& b) {
  if (w.dtype != b.dtype)
    return unimplemented(b.name + " is " + kernels::dtype_name(b.dtype) + " but " + w.name + " is " +
                         kernels::dtype_name(w.dtype) + "; a bias must have its weight's dtype");
  return Status();
}

void add_unique(std::vector<int32_t>* ids, int32_t id) {
  if (std::find(ids->begin(), ids->end(), id) == ids->end()) ids->push_back(id);
}

}  // namespace

StatusOr<std::shared_ptr<const Model>> Model::load(const std::string& dir) {
  if (!fs::is_directory(dir)) return not_found(dir + ": not a model directory");
  auto model = std::shared_ptr<Model>(new Model());
  model->dir_ = dir;
  HOTSWAP_ASSIGN_OR_RETURN(model->config_, ModelConfig::load_file((fs::path(dir) / "config.json").string()));
  const ModelConfig& c = model->config_;

  fs::path tok_path = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(tok_path)) return not_found(tok_path.string() + ": missing");
  HOTSWAP_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::load_file(tok_path.string()));
  if (tok.vocab_size() > c.vocab_size)
    return invalid_argument(tok_path.string() + ": tokenizer has " + std::to_string(tok.vocab_size()) +
                            " tokens but config.json vocab_size is " + std::to_string(c.vocab_size));
  model->tokenizer_ = std::make_unique<Tokenizer>(std::move(tok));

  HOTSWAP_ASSIGN_OR_RETURN(model->checkpoint_, SafetensorsCheckpoint::open_dir(dir));
  const auto& ck = *model->checkpoint_;
  const int64_t H = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t Q = int64_t{c.num_attention_heads} * c.head_dim, KV = int64_t{c.num_key_value_heads} * c.head_dim;

  HOTSWAP_ASSIGN_OR_RETURN(model->embed_tokens_, get_checked(ck, "model.embed_tokens.weight", {V, H}));
  HOTSWAP_ASSIGN_OR_RETURN(model->final_norm_, get_checked(ck, "model.norm.weight", {H}));
  if (c.tie_word_embeddings && !ck.has("lm_head.weight")) {
    model->lm_head_ = model->embed_tokens_;
  } else {
    HOTSWAP_ASSIGN_OR_RETURN(model->lm_head_, get_checked(ck, "lm_head.weight", {V, H}));
  }
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights L;
    HOTSWAP_ASSIGN_OR_RETURN(L.input_norm, get_checked(ck, p + "input_layernorm.weight", {H}));
    HOTSWAP_ASSIGN_OR_RETURN(L.post_attention_norm, get_checked(ck, p + "post_attention_layernorm.weight", {H}));
    HOTSWAP_ASSIGN_OR_RETURN(L.q_proj, get_checked(ck, p + "self_attn.q_proj.weight", {Q, H}));
    HOTSWAP_ASSIGN_OR_RETURN(L.k_proj, get_checked(ck, p + "self_attn.k_proj.weight", {KV, H}));
    HOTSWAP_ASSIGN_OR_RETURN(L.v_proj, get_checked(ck, p + "self_attn.v_proj.weight", {KV, H}));
    HOTSWAP_ASSIGN_OR_RETURN(L.o_proj, get_checked(ck, p + "self_attn.o_proj.weight", {H, Q}));
    if (c.attention_bias) {
      HOTSWAP_ASSIGN_OR_RETURN(L.q_bias, get_checked(ck, p + "self_attn.q_proj.bias", {Q}));
      HOTSWAP_ASSIGN_OR_RETURN(L.k_bias, get_checked(ck, p + "self_attn.k_proj.bias", {KV}));
      HOTSWAP_ASSIGN_OR_RETURN(L.v_bias, get_checked(ck, p + "self_attn.v_proj.bias", {KV}));
      HOTSWAP_RETURN_IF_ERROR(check_same_dtype(L.q_proj, L.q_bias));
      HOTSWAP_RETURN_IF_ERROR(check_same_dtype(L.k_proj, L.k_bias));
      HOTSWAP_RETURN_IF_ERROR(check_same_dtype(L.v_proj, L.v_bias));
    }
    HOTSWAP_ASSIGN_OR_RETURN(L.gate_proj, get_checked(ck, p + "mlp.gate_proj.weight", {I, H}));
    HOTSWAP_ASSIGN_OR_RETURN(L.up_proj, get_checked(ck, p + "mlp.up_proj.weight", {I, H}));
    HOTSWAP_ASSIGN_OR_RETURN(L.down_proj, get_checked(ck, p + "mlp.down_proj.weight", {H, I}));
    model->layers_.push_back(std::move(L));
  }

  for (int32_t id : c.eos_token_ids) add_unique(&model->eos_token_ids_, id);
  fs::path gen_path = fs::path(dir) / "generation_config.json";
  if (fs::exists(gen_path)) {
    std::ifstream in(gen_path);
    auto gen = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (gen.is_discarded() || !gen.is_object()) return invalid_argument(gen_path.string() + ": not valid JSON");
    if (gen.contains("eos_token_id")) {
      const auto& e = gen["eos_token_id"];
      if (e.is_number_integer()) add_unique(&model->eos_token_ids_, e.get<int32_t>());
      else if (e.is_array())
        for (const auto& x : e)
          if (x.is_number_integer()) add_unique(&model->eos_token_ids_, x.get<int32_t>());
    }
  }
  if (auto eos = model->tokenizer_->eos_id()) add_unique(&model->eos_token_ids_, *eos);
  return std::shared_ptr<const Model>(std::move(model));
}

// ---------------------------------------------------------------------------------------------

StatusOr<kernels::KvLayout> executor_kv_layout(const ModelConfig& c, int64_t kv_blocks, int block_size,
                                               kernels::DType kv_dtype) {
  if (kv_blocks <= 0) return invalid_argument("kv_blocks must be positive");
  if (block_size <= 0 || block_size > 1024)
    return invalid_argument("block_size must be in 1..1024, got " + std::to_string(block_size));
  return kernels::KvLayout{c.num_hidden_layers, c.num_key_value_heads, c.head_dim, block_size, kv_dtype};
}

StatusOr<std::unique_ptr<CpuExecutor>> CpuExecutor::create(std::shared_ptr<const Model> model,
                                                           const CpuExecutorOptions& options) {
  HOTSWAP_ASSIGN_OR_RETURN(kernels::KvLayout layout, executor_kv_layout(model->config(), options.kv_blocks,
                                                                        options.block_size, options.kv_dtype));
  std::unique_ptr<CpuExecutor> ex(new CpuExecutor());
  ex->model_ = std::move(model);
  ex->pool_ = std::make_unique<kernels::ThreadPool>(options.threads);
  ex->ctx_.pool = ex->pool_.get();
  ex->layout_ = layout;
  ex->kv_blocks_ = options.kv_blocks;
  ex->kv_pool_ = std::make_unique_for_overwrite<uint8_t[]>(static_cast<size_t>(options.kv_blocks) *
                                                          ex->layout_.block_bytes());
  return ex;
}

CpuExecutor::~CpuExecutor() = default;

Status CpuExecutor::read_kv_blocks(const int32_t* block_ids, int64_t n, void* out) {
  return kernels::kv_gather_blocks(ctx_, layout_, kv_pool_.get(), kv_blocks_, block_ids, n, out);
}

Status CpuExecutor::write_kv_blocks(const int32_t* block_ids, int64_t n, const void* in) {
  return kernels::kv_scatter_blocks(ctx_, layout_, in, block_ids, n, kv_pool_.get(), kv_blocks_);
}

Status check_forward_batch(const ForwardBatch& b, const ModelConfig& c) {
  const int64_t T = static_cast<int64_t>(b.tokens.size());
  if (T == 0) return invalid_argument("forward: empty batch");
  if (b.positions.size() != b.tokens.size() || b.seq_index.size() != b.tokens.size() ||
      b.slots.size() != b.tokens.size())
    return invalid_argument("forward: tokens, positions, seq_index and slots differ in length");
  for (int32_t r : b.logit_rows)
    if (r < 0 || r >= T) return invalid_argument("forward: logit row " + std::to_string(r) + " outside the batch");
  for (int32_t p : b.positions)
    if (p < 0 || p >= c.max_position_embeddings)
      return invalid_argument("forward: position " + std::to_string(p) + " outside the model's context");
  return Status();
}

Status CpuExecutor::forward(const ForwardBatch& b, std::vector<float>* logits) {
  const ModelConfig& c = model_->config();
  HOTSWAP_RETURN_IF_ERROR(check_forward_batch(b, c));
  const int64_t T = static_cast<int64_t>(b.tokens.size());

  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t Q = int64_t{nh} * hd, KV = int64_t{nkv} * hd;
  auto grow = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  };
  grow(x_, T * H); grow(h_, T * H); grow(q_, T * Q); grow(k_, T * KV); grow(v_, T * KV);
  grow(attn_, T * Q); grow(gate_, T * I); grow(up_, T * I);

  const float eps = c.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const auto& emb = model_->embed_tokens();
  HOTSWAP_RETURN_IF_ERROR(
      kernels::embedding(ctx_, emb.data, emb.dtype, c.vocab_size, H, b.tokens.data(), T, x_.data()));
  void* pool = kv_pool_.get();
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = model_->layers()[l];
    HOTSWAP_RETURN_IF_ERROR(kernels::rms_norm(ctx_, x_.data(), L.input_norm.data, L.input_norm.dtype, h_.data(), T, H, eps));
    HOTSWAP_RETURN_IF_ERROR(kernels::matmul(ctx_, h_.data(), T, H, L.q_proj.data, L.q_proj.dtype, Q, L.q_bias.data, q_.data()));
    HOTSWAP_RETURN_IF_ERROR(kernels::matmul(ctx_, h_.data(), T, H, L.k_proj.data, L.k_proj.dtype, KV, L.k_bias.data, k_.data()));
    HOTSWAP_RETURN_IF_ERROR(kernels::matmul(ctx_, h_.data(), T, H, L.v_proj.data, L.v_proj.dtype, KV, L.v_bias.data, v_.data()));
    HOTSWAP_RETURN_IF_ERROR(kernels::rope(ctx_, q_.data(), k_.data(), b.positions.data(), T, nh, nkv, hd, c.rope_theta));
    HOTSWAP_RETURN_IF_ERROR(kernels::kv_write(ctx_, layout_, pool, kv_blocks_, l, k_.data(), v_.data(), b.slots.data(), T));
    HOTSWAP_RETURN_IF_ERROR(kernels::paged_attention(ctx_, layout_, pool, kv_blocks_, l, q_.data(), attn_.data(), T, nh,
                                                     b.seq_index.data(), b.positions.data(), b.block_tables.data(),
                                                     b.block_table_stride, scale));
    HOTSWAP_RETURN_IF_ERROR(kernels::matmul(ctx_, attn_.data(), T, Q, L.o_proj.data, L.o_proj.dtype, H, nullptr, h_.data()));
    HOTSWAP_RETURN_IF_ERROR(kernels::add(ctx_, x_.data(), h_.data(), T * H));
    HOTSWAP_RETURN_IF_ERROR(kernels::rms_norm(ctx_, x_.data(), L.post_attention_norm.data, L.post_attention_norm.dtype,
                                              h_.data(), T, H, eps));
    HOTSWAP_RETURN_IF_ERROR(kernels::matmul(ctx_, h_.data(), T, H, L.gate_proj.data, L.gate_proj.dtype, I, nullptr, gate_.data()));
    HOTSWAP_RETURN_IF_ERROR(kernels::matmul(ctx_, h_.data(), T, H, L.up_proj.data, L.up_proj.dtype, I, nullptr, up_.data()));
    HOTSWAP_RETURN_IF_ERROR(kernels::swiglu(ctx_, gate_.data(), up_.data(), gate_.data(), T * I));
    HOTSWAP_RETURN_IF_ERROR(kernels::matmul(ctx_, gate_.data(), T, I, L.down_proj.data, L.down_proj.dtype, H, nullptr, h_.data()));
    HOTSWAP_RETURN_IF_ERROR(kernels::add(ctx_, x_.data(), h_.data(), T * H));
  }

  // Only the rows whose next token is sampled go through the final norm and the LM head.
  const int64_t R = static_cast<int64_t>(b.logit_rows.size());
  logits->assign(static_cast<size_t>(R) * c.vocab_size, 0.0f);
  if (R == 0) return Status();
  grow(sel_, R * H);
  for (int64_t r = 0; r < R; ++r)
    std::copy_n(x_.data() + int64_t{b.logit_rows[r]} * H, H, sel_.data() + r * H);
  const auto& norm = model_->final_norm();
  HOTSWAP_RETURN_IF_ERROR(kernels::rms_norm(ctx_, sel_.data(), norm.data, norm.dtype, sel_.data(), R, H, eps));
  const auto& head = model_->lm_head();
  return kernels::matmul(ctx_, sel_.data(), R, H, head.data, head.dtype, c.vocab_size, nullptr, logits->data());
}

}  // namespace hotswap::engine
