// hotswap-agent bench: prefill and decode throughput of the engine beside the machine's
// memory bandwidth, measured in the same run.
//
// Bandwidth is, on the CPU, a STREAM-style copy (a[i] = b[i]) over two buffers far larger than
// the caches, on the same threads the engine uses; with --device cuda, a device-to-device
// cudaMemcpy on the same GPU. Both count read + write bytes. Decode efficiency is
// (bytes a decode step must read: every weight once, plus each sequence's KV cache) x steps/s
// / bandwidth: how close decoding runs to the memory-bound limit. On the GPU the weights' upload
// rate is shown beside the pinned host-to-device copy rate.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "agent/cli/commands.h"
#include "agent/cli/engine_flags.h"
#include "agent/engine/cuda_backend.h"
#include "agent/engine/engine.h"
#include "kernels/cpu/thread_pool.h"

namespace hotswap::agent {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// Best of `reps` copies of `bytes` bytes, in bytes/s (read + write).
double stream_copy_bandwidth(int threads, size_t bytes, int reps) {
  kernels::ThreadPool pool(threads);
  size_t n = bytes / sizeof(double);
  std::vector<double> a(n), b(n);
  pool.parallel_for(static_cast<int64_t>(n), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      a[i] = 0.0;
      b[i] = static_cast<double>(i);
    }
  });
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t = clock_type::now();
    pool.parallel_for(static_cast<int64_t>(n), [&](int64_t lo, int64_t hi) {
      std::memcpy(a.data() + lo, b.data() + lo, (hi - lo) * sizeof(double));
    });
    best = std::min(best, seconds_since(t));
  }
  volatile double sink = a[n / 2];
  (void)sink;
  return 2.0 * static_cast<double>(n * sizeof(double)) / best;
}

struct RunResult {
  int batch;
  double prefill_tokens_per_s, decode_tokens_per_s, decode_steps_per_s, bytes_per_decode_step;
  engine::ModelExecutor::WeightUpload upload;
};

StatusOr<RunResult> run_batch(std::shared_ptr<const engine::Model> model, const engine::EngineOptions& options,
                              int batch, int prompt_len, int decode_tokens) {
  HOTSWAP_ASSIGN_OR_RETURN(auto eng, engine::Engine::create(model, options));
  const auto& c = model->config();
  uint64_t state = 12345;
  for (int b = 0; b < batch; ++b) {
    engine::GenerationRequest r;
    r.id = "bench-" + std::to_string(b);
    for (int i = 0; i < prompt_len; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      r.prompt.push_back(static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(c.vocab_size)));
    }
    r.sampling.temperature = 0.0f;
    r.seed = 0;
    r.stop.max_tokens = decode_tokens;
    r.stop.ignore_eos = true;
    HOTSWAP_RETURN_IF_ERROR(eng->add_request(std::move(r)));
  }
  // Prefill: until every request has its first token.
  auto t0 = clock_type::now();
  int first_tokens = 0;
  while (first_tokens < batch) {
    HOTSWAP_ASSIGN_OR_RETURN(auto events, eng->step());
    for (const auto& ev : events)
      if (ev.index == 0) ++first_tokens;
  }
  double prefill_s = seconds_since(t0);
  // Decode: every step now decodes one token for each request.
  auto t1 = clock_type::now();
  int64_t steps = 0, tokens = 0;
  while (eng->has_unfinished()) {
    HOTSWAP_ASSIGN_OR_RETURN(auto events, eng->step());
    ++steps;
    tokens += static_cast<int64_t>(events.size());
  }
  double decode_s = seconds_since(t1);
  RunResult r{};
  r.batch = batch;
  r.upload = eng->weight_upload();
  r.prefill_tokens_per_s = batch * prompt_len / prefill_s;
  r.decode_tokens_per_s = tokens / decode_s;
  r.decode_steps_per_s = steps / decode_s;
  // Every weight is read once per step (the embedding table only for the rows looked up), and
  // each sequence reads its whole KV cache: at the mean context of the decode phase.
  double weights = static_cast<double>(model->weight_bytes());
  weights -= static_cast<double>(model->embed_tokens().bytes);
  if (model->lm_head().data == model->embed_tokens().data) weights += static_cast<double>(model->lm_head().bytes);
  double kv_per_token =
      2.0 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * kernels::dtype_size(options.kv_dtype);
  double mean_context = prompt_len + decode_tokens / 2.0;
  r.bytes_per_decode_step = weights + batch * mean_context * kv_per_token;
  return r;
}

}  // namespace

int run_bench(int argc, char** argv) {
  FlagSet flags("usage: hotswap-agent bench --model DIR [--batch 1,16] [--prompt-len N] [--decode-tokens N] [--json]");
  flags.add("model", "DIR", "model directory");
  flags.add("batch", "LIST", "comma-separated batch sizes (default 1,16)");
  flags.add("prompt-len", "N", "prompt tokens per request (default 128)");
  flags.add("decode-tokens", "N", "tokens generated per request (default 32)");
  flags.add("bandwidth-mb", "MB", "size of each STREAM copy buffer (default 1024)");
  flags.add("json", "", "print one JSON object per line");
  add_engine_flags(&flags);
  flags.add("help", "", "show this help");
  auto fail = [](const Status& st, int code) {
    std::fprintf(stderr, "bench: %s\n", st.to_string().c_str());
    return code;
  };
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) return fail(st, 2);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  if (!flags.has("model")) return fail(invalid_argument("--model is required"), 2);
  auto options = engine_options_from_flags(flags);
  if (!options.ok()) return fail(options.status(), 2);
  auto prompt_len = flags.get_int("prompt-len", 128);
  auto decode_tokens = flags.get_int("decode-tokens", 32);
  auto bw_mb = flags.get_int("bandwidth-mb", 1024);
  for (const Status& st : {prompt_len.status(), decode_tokens.status(), bw_mb.status()})
    if (!st.ok()) return fail(st, 2);
  if (*prompt_len < 1 || *decode_tokens < 2 || *bw_mb < 1)
    return fail(invalid_argument("--prompt-len >= 1, --decode-tokens >= 2 and --bandwidth-mb >= 1 are required"), 2);
  auto batch_list = flags.get_int_list("batch", "1,16", 1);
  if (!batch_list.ok()) return fail(batch_list.status(), 2);
  std::vector<int> batches(batch_list->begin(), batch_list->end());
  auto model = engine::Model::load(flags.get("model"));
  if (!model.ok()) return fail(model.status(), 1);
  const bool gpu = options->device == engine::Device::kCuda;
  double bandwidth = 0, host_to_device = 0;
  if (gpu) {
    auto rates = engine::measure_cuda_copy_rates(options->gpu, static_cast<size_t>(*bw_mb) << 20, 10);
    if (!rates.ok()) return fail(rates.status(), 1);
    bandwidth = rates->device_to_device_bytes_per_s;
    host_to_device = rates->host_to_device_bytes_per_s;
  } else {
    bandwidth = stream_copy_bandwidth(options->threads, static_cast<size_t>(*bw_mb) << 20, 5);
  }
  const bool json_out = flags.has("json");
  if (!json_out) {
    std::printf("model %s: %.1fM parameters, %.1f MiB of weights; %s %.2f GB/s", flags.get("model").c_str(),
                (*model)->config().parameter_count() / 1e6, (*model)->weight_bytes() / 1048576.0,
                gpu ? "device-to-device copy" : "STREAM copy", bandwidth / 1e9);
    if (gpu) std::printf(", pinned host-to-device %.2f GB/s", host_to_device / 1e9);
    std::printf("\n");
  }
  for (int batch : batches) {
    engine::EngineOptions o = *options;
    o.max_num_seqs = std::max(o.max_num_seqs, batch);
    auto r = run_batch(*model, o, batch, static_cast<int>(*prompt_len), static_cast<int>(*decode_tokens));
    if (!r.ok()) return fail(r.status(), 1);
    double efficiency = r->bytes_per_decode_step * r->decode_steps_per_s / bandwidth;
    if (json_out) {
      nlohmann::json j = {{"model", flags.get("model")},
                          {"batch", batch},
                          {"prompt_len", *prompt_len},
                          {"decode_tokens", *decode_tokens},
                          {"prefill_tokens_per_s", r->prefill_tokens_per_s},
                          {"decode_tokens_per_s", r->decode_tokens_per_s},
                          {"decode_steps_per_s", r->decode_steps_per_s},
                          {"bytes_per_decode_step", r->bytes_per_decode_step},
                          {"device", engine::device_name(o.device)},
                          {"copy_bytes_per_s", bandwidth},
                          {"decode_efficiency", efficiency}};
      if (gpu) {
        j["host_to_device_bytes_per_s"] = host_to_device;
        j["weight_upload_bytes"] = r->upload.bytes;
        j["weight_upload_seconds"] = r->upload.seconds;
      }
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("batch %3d: prefill %9.1f tok/s   decode %8.1f tok/s   %.1f MB/step   efficiency %.0f%%", batch,
                  r->prefill_tokens_per_s, r->decode_tokens_per_s, r->bytes_per_decode_step / 1e6, 100 * efficiency);
      if (gpu && r->upload.seconds > 0)
        std::printf("   weights uploaded at %.2f GB/s (%.0f%% of host-to-device)",
                    r->upload.bytes / r->upload.seconds / 1e9,
                    100 * r->upload.bytes / r->upload.seconds / host_to_device);
      std::printf("\n");
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace hotswap::agent
