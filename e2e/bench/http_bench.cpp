// hotswap-http-bench: tokens/s through the HTTP server with N concurrent streams, against the
// engine alone serving the very same requests, both measured in the same run.
//
// For each N: the engine-only figure runs the N requests (the loadgen's prompts, tokenized as
// the server does, greedy, EOS ignored, so every request makes exactly --max-tokens tokens)
// straight on an Engine; the HTTP figure starts an in-process AgentServer with a fresh Engine of
// the same options and drives it with hotswap-loadgen's runner. Throughput is generated tokens
// over wall time; the ratio is HTTP / engine-only. TTFT and inter-token gaps come from the
// loadgen's per-token arrival times. Each figure is the median of --repetitions alternating runs.
// The server and the load generator share one cpprest pool, sized by --io-threads as
// `hotswap-agent serve` sizes its own (common/http.h).
#include <algorithm>
#include <chrono>
#include <optional>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/server/agent_server.h"
#include "common/flags.h"
#include "common/http.h"
#include "e2e/loadgen/loadgen.h"
#include "e2e/loadgen/report.h"

namespace hotswap {
namespace {

using Clock = std::chrono::steady_clock;

// One run's throughput, and where the engine's time went: its steps and their forward passes.
struct RunFigures {
  double tokens_per_s = 0;
  engine::EngineStats engine;
};

StatusOr<RunFigures> engine_only_run(const std::shared_ptr<const engine::Model>& model,
                                     const engine::EngineOptions& options, const loadgen::LoadgenConfig& lc) {
  HOTSWAP_ASSIGN_OR_RETURN(auto eng, engine::Engine::create(model, options));
  for (int64_t i = 0; i < lc.requests; ++i) {
    engine::GenerationRequest r;
    r.id = "bench-" + std::to_string(i);
    r.prompt = model->tokenizer().encode(loadgen::make_prompt(lc.seed, i, lc.prompt_words));
    r.stop.max_tokens = static_cast<int>(lc.max_tokens);
    r.stop.ignore_eos = true;
    r.sampling.temperature = 0;
    r.seed = static_cast<uint64_t>(lc.seed + i);
    HOTSWAP_RETURN_IF_ERROR(eng->add_request(std::move(r)));
  }
  auto t0 = Clock::now();
  int64_t tokens = 0;
  while (eng->has_unfinished()) {
    HOTSWAP_ASSIGN_OR_RETURN(auto events, eng->step());
    for (const auto& ev : events)
      if (ev.token >= 0) ++tokens;
  }
  return RunFigures{tokens / std::chrono::duration<double>(Clock::now() - t0).count(), eng->stats()};
}

struct HttpResult {
  loadgen::LoadSummary summary;
  engine::EngineStats engine;
};

StatusOr<HttpResult> http_run(const std::shared_ptr<const engine::Model>& model, const engine::EngineOptions& options,
                              loadgen::LoadgenConfig lc) {
  HOTSWAP_ASSIGN_OR_RETURN(auto eng, engine::Engine::create(model, options));
  agent::AgentServerOptions so;
  so.model_name = "bench";
  HOTSWAP_ASSIGN_OR_RETURN(so.port, http::pick_free_port());
  HOTSWAP_ASSIGN_OR_RETURN(auto server, agent::AgentServer::start(model, std::move(eng), so));
  lc.url = server->url();
  lc.model = "bench";
  HOTSWAP_ASSIGN_OR_RETURN(loadgen::LoadRun run, loadgen::run_load(lc));
  HttpResult r{loadgen::summarize_run(run), {}};
  if (r.summary.failed > 0) return internal_error(std::to_string(r.summary.failed) + " HTTP requests failed");
  HOTSWAP_ASSIGN_OR_RETURN(r.engine, server->engine_stats());
  server->stop();
  return r;
}

int run(int argc, char** argv) {
  FlagSet flags("usage: hotswap-http-bench --model DIR [--streams 1,16,64] [--max-tokens K] [--prompt-words P] [--io-threads N]");
  flags.add("model", "DIR", "model directory");
  flags.add("streams", "LIST", "concurrent streams to measure (default 1,16,64)");
  flags.add("max-tokens", "K", "tokens per request (default 64)");
  flags.add("prompt-words", "P", "prompt length in words (default 16)");
  flags.add("threads", "N", "engine threads (default: all cores)");
  flags.add("repetitions", "N", "runs of each measurement; medians are reported (default 3)");
  flags.add("io-threads", "N",
            "cpprest's pool, shared by the server and the load generator (default " +
                std::to_string(http::kDefaultIoThreads) + ", as serve)");
  flags.add("help", "", "show this help");
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "hotswap-http-bench: %s\n", st.to_string().c_str());
    return 1;
  };
  if (Status st = flags.parse(argc, argv, 1); !st.ok()) return fail(st);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  if (!flags.has("model")) return fail(invalid_argument("--model is required"));
  auto max_tokens = flags.get_int("max-tokens", 64);
  auto words = flags.get_int("prompt-words", 16);
  auto threads = flags.get_int("threads", 0);
  auto reps = flags.get_int("repetitions", 3);
  auto io_threads = flags.get_int("io-threads", http::kDefaultIoThreads);
  for (const Status& st : {max_tokens.status(), words.status(), threads.status(), reps.status(), io_threads.status()})
    if (!st.ok()) return fail(st);
  if (Status st = http::set_io_threads(*io_threads); !st.ok()) return fail(st);
  if (*reps < 1) return fail(invalid_argument("--repetitions must be >= 1"));
  auto stream_list = flags.get_int_list("streams", "1,16,64", 1);
  if (!stream_list.ok()) return fail(stream_list.status());
  std::vector<int> streams(stream_list->begin(), stream_list->end());
  auto model = engine::Model::load(flags.get("model"));
  if (!model.ok()) return fail(model.status());
  for (int n : streams) {
    engine::EngineOptions eo;
    eo.threads = static_cast<int>(*threads);
    eo.max_num_seqs = std::max(64, n);
    loadgen::LoadgenConfig lc;
    lc.streams = n;
    lc.requests = n;
    lc.max_tokens = *max_tokens;
    lc.prompt_words = *words;
    lc.seed = 1000;
    lc.ignore_eos = true;
    // Alternate the two measurements `reps` times and keep the medians: on a shared 2-core
    // machine one run can be off by 20%.
    std::vector<double> engine_runs, http_runs;
    std::optional<HttpResult> http;
    std::optional<RunFigures> engine_run;
    for (int rep = 0; rep < *reps; ++rep) {
      auto e = engine_only_run(*model, eo, lc);
      if (!e.ok()) return fail(e.status());
      auto h = http_run(*model, eo, lc);
      if (!h.ok()) return fail(h.status());
      engine_runs.push_back(e->tokens_per_s);
      http_runs.push_back(h->summary.tokens_per_s);
      if (rep == *reps / 2 || !http) {
        http = *h;
        engine_run = *e;
      }
    }
    std::sort(engine_runs.begin(), engine_runs.end());
    std::sort(http_runs.begin(), http_runs.end());
    const double engine_tps_median = engine_runs[engine_runs.size() / 2];
    const double http_tps_median = http_runs[http_runs.size() / 2];
    const auto& s = http->summary;
    nlohmann::json j = {{"model", flags.get("model")},
                        {"streams", n},
                        {"max_tokens", *max_tokens},
                        {"repetitions", *reps},
                        {"io_threads", *io_threads},
                        {"engine_tokens_per_s", engine_tps_median},
                        {"http_tokens_per_s", http_tps_median},
                        {"http_over_engine", http_tps_median / engine_tps_median},
                        {"tokens", s.tokens},
                        {"ttft_ms_p50", s.ttft_ms.p50},
                        {"ttft_ms_p99", s.ttft_ms.p99},
                        {"inter_token_ms_p50", s.inter_token_ms.p50},
                        {"inter_token_ms_p99", s.inter_token_ms.p99},
                        // The middle repetition's engine steps and seconds in forward passes.
                        {"engine_steps", engine_run->engine.steps_total},
                        {"http_steps", http->engine.steps_total},
                        {"engine_forward_s", engine_run->engine.forward_seconds_total},
                        {"http_forward_s", http->engine.forward_seconds_total}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace hotswap

int main(int argc, char** argv) { return hotswap::run(argc, argv); }
