// An independent, naive forward pass of LlamaForCausalLM / Qwen2ForCausalLM for tests: dense
// loops in double, no KV cache (the whole sequence is recomputed), weights read element by
// element from the checkpoint. It shares nothing with the engine but the safetensors reader.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "agent/engine/model_config.h"
#include "agent/engine/safetensors.h"

namespace hotswap::engine::testing {

class ReferenceModel {
 public:
  ReferenceModel(const ModelConfig& c, const SafetensorsCheckpoint& ck) : c_(c), ck_(ck) {}

  // Logits of the next token after `tokens`.
  std::vector<double> next_logits(const std::vector<int32_t>& tokens) const {
    const int T = static_cast<int>(tokens.size());
    const int H = c_.hidden_size, nh = c_.num_attention_heads, nkv = c_.num_key_value_heads, hd = c_.head_dim;
    std::vector<std::vector<double>> x(T, std::vector<double>(H));
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < H; ++i) x[t][i] = w("model.embed_tokens.weight", int64_t{tokens[t]} * H + i);
    for (int l = 0; l < c_.num_hidden_layers; ++l) {
      std::string p = "model.layers." + std::to_string(l) + ".";
      std::vector<std::vector<double>> q(T), k(T), v(T), attn(T, std::vector<double>(nh * hd));
      for (int t = 0; t < T; ++t) {
        auto h = rms(x[t], p + "input_layernorm.weight");
        q[t] = linear(h, p + "self_attn.q_proj", nh * hd);
        k[t] = linear(h, p + "self_attn.k_proj", nkv * hd);
        v[t] = linear(h, p + "self_attn.v_proj", nkv * hd);
        rope(&q[t], nh, t);
        rope(&k[t], nkv, t);
      }
      for (int t = 0; t < T; ++t) {
        for (int head = 0; head < nh; ++head) {
          int kvh = head / (nh / nkv);
          std::vector<double> s(t + 1);
          double mx = -1e300;
          for (int j = 0; j <= t; ++j) {
            double d = 0;
            for (int i = 0; i < hd; ++i) d += q[t][head * hd + i] * k[j][kvh * hd + i];
            s[j] = d / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[j]);
          }
          double sum = 0;
          for (double& e : s) sum += e = std::exp(e - mx);
          for (int j = 0; j <= t; ++j)
            for (int i = 0; i < hd; ++i) attn[t][head * hd + i] += s[j] / sum * v[j][kvh * hd + i];
        }
      }
      for (int t = 0; t < T; ++t) {
        auto o = linear(attn[t], p + "self_attn.o_proj", H);
        for (int i = 0; i < H; ++i) x[t][i] += o[i];
        auto h = rms(x[t], p + "post_attention_layernorm.weight");
        auto g = linear(h, p + "mlp.gate_proj", c_.intermediate_size);
        auto u = linear(h, p + "mlp.up_proj", c_.intermediate_size);
        for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
        auto d = linear(g, p + "mlp.down_proj", H);
        for (int i = 0; i < H; ++i) x[t][i] += d[i];
      }
    }
    auto h = rms(x[T - 1], "model.norm.weight");
    std::string head = ck_.has("lm_head.weight") ? "lm_head" : "model.embed_tokens";
    return linear(h, head, c_.vocab_size);
  }

 private:
  double w(const std::string& name, int64_t i) const {
    TensorView t = ck_.get(name).value();
    return kernels::load_as_f32(t.data, t.dtype, static_cast<size_t>(i));
  }
  std::vector<double> rms(const std::vector<double>& x, const std::string& weight) const {
    double ss = 0;
    for (double e : x) ss += e * e;
    double r = 1.0 / std::sqrt(ss / x.size() + c_.rms_norm_eps);
    std::vector<double> y(x.size());
    TensorView wt = ck_.get(weight).value();
    for (size_t i = 0; i < x.size(); ++i) y[i] = kernels::load_as_f32(wt.data, wt.dtype, i) * (x[i] * r);
    return y;
  }
  std::vector<double> linear(const std::vector<double>& x, const std::string& prefix, int out) const {
    std::vector<double> y(out);
    bool bias = ck_.has(prefix + ".bias");
    TensorView wt = ck_.get(prefix + ".weight").value();
    for (int o = 0; o < out; ++o) {
      double d = bias ? w(prefix + ".bias", o) : 0.0;
      for (size_t i = 0; i < x.size(); ++i)
        d += x[i] * kernels::load_as_f32(wt.data, wt.dtype, o * x.size() + i);
      y[o] = d;
    }
    return y;
  }
  void rope(std::vector<double>* v, int heads, int pos) const {
    int hd = c_.head_dim, half = hd / 2;
    for (int h = 0; h < heads; ++h) {
      for (int j = 0; j < half; ++j) {
        double inv_freq = 1.0 / std::pow(static_cast<double>(c_.rope_theta), 2.0 * j / hd);
        double a = pos * inv_freq;
        double x1 = (*v)[h * hd + j], x2 = (*v)[h * hd + j + half];
        (*v)[h * hd + j] = x1 * std::cos(a) - x2 * std::sin(a);
        (*v)[h * hd + j + half] = x2 * std::cos(a) + x1 * std::sin(a);
      }
    }
  }
  const ModelConfig& c_;
  const SafetensorsCheckpoint& ck_;
};

}  // namespace hotswap::engine::testing
