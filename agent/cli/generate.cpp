#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "agent/cli/commands.h"
#include "agent/cli/engine_flags.h"
#include "agent/engine/engine.h"

namespace hotswap::agent {

namespace {

StatusOr<std::vector<int32_t>> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    try {
      size_t used = 0;
      long v = std::stol(part, &used);
      if (used != part.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(part);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      return invalid_argument("--prompt-ids: '" + part + "' is not a token id");
    }
  }
  if (ids.empty()) return invalid_argument("--prompt-ids is empty");
  return ids;
}

}  // namespace

int run_generate(int argc, char** argv) {
  FlagSet flags(
      "usage: hotswap-agent generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]\n"
      "                              [--temperature T] [--top-p P] [--top-k K] [--seed S] [--threads N] [--json]");
  flags.add("model", "DIR", "Hugging Face model directory (config.json, *.safetensors, tokenizer.json)");
  flags.add("prompt", "TEXT", "prompt text (BOS added as the tokenizer's post-processor says)");
  flags.add("prompt-ids", "IDS", "prompt as comma-separated token ids, instead of --prompt");
  flags.add("max-tokens", "N", "tokens to generate at most (default 64)");
  flags.add("temperature", "T", "sampling temperature; 0 is greedy (default 0)");
  flags.add("top-p", "P", "nucleus sampling mass in (0, 1] (default 1)");
  flags.add("top-k", "K", "sample among the K most likely tokens; 0 = all (default 0)");
  flags.add("seed", "S", "sampling seed (default 0)");
  flags.add("stop", "TEXT", "stop string (generation ends before it)");
  flags.add("ignore-eos", "", "keep generating past EOS");
  flags.add("json", "", "print one JSON object instead of streaming text");
  add_engine_flags(&flags);
  flags.add("help", "", "show this help");
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) {
    std::fprintf(stderr, "generate: %s\n", st.message().c_str());
    return 2;
  }
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  auto fail = [](const Status& st, int code) {
    std::fprintf(stderr, "generate: %s\n", st.to_string().c_str());
    return code;
  };
  if (!flags.has("model")) return fail(invalid_argument("--model is required"), 2);
  if (flags.has("prompt") == flags.has("prompt-ids"))
    return fail(invalid_argument("give exactly one of --prompt and --prompt-ids"), 2);
  auto options = engine_options_from_flags(flags);
  if (!options.ok()) return fail(options.status(), 2);

  engine::GenerationRequest req;
  req.id = "generate-0";
  auto max_tokens = flags.get_int("max-tokens", 64);
  auto temperature = flags.get_double("temperature", 0.0);
  auto top_p = flags.get_double("top-p", 1.0);
  auto top_k = flags.get_int("top-k", 0);
  auto seed = flags.get_int("seed", 0);
  for (const Status& st : {max_tokens.status(), temperature.status(), top_p.status(), top_k.status(), seed.status()})
    if (!st.ok()) return fail(st, 2);
  req.stop.max_tokens = static_cast<int>(*max_tokens);
  req.sampling.temperature = static_cast<float>(*temperature);
  req.sampling.top_p = static_cast<float>(*top_p);
  req.sampling.top_k = static_cast<int>(*top_k);
  req.seed = static_cast<uint64_t>(*seed);
  req.stop.ignore_eos = flags.has("ignore-eos");
  if (flags.has("stop")) req.stop.stop.push_back(flags.get("stop"));

  auto model = engine::Model::load(flags.get("model"));
  if (!model.ok()) return fail(model.status(), 1);
  if (flags.has("prompt")) {
    req.prompt = (*model)->tokenizer().encode(flags.get("prompt"));
  } else {
    auto ids = parse_ids(flags.get("prompt-ids"));
    if (!ids.ok()) return fail(ids.status(), 2);
    req.prompt = *ids;
  }
  std::vector<int32_t> prompt = req.prompt;
  auto eng = engine::Engine::create(*model, *options);
  if (!eng.ok()) return fail(eng.status(), 1);
  if (Status st = (*eng)->add_request(std::move(req)); !st.ok()) return fail(st, 2);

  const bool json_out = flags.has("json");
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  clock::time_point t_first{};
  std::vector<int32_t> tokens;
  std::string text;
  engine::FinishReason finish = engine::FinishReason::kNone;
  while ((*eng)->has_unfinished()) {
    auto events = (*eng)->step();
    if (!events.ok()) return fail(events.status(), 1);
    for (const auto& ev : *events) {
      if (ev.token >= 0) {
        if (tokens.empty()) t_first = clock::now();
        tokens.push_back(ev.token);
      }
      text += ev.text;
      if (!json_out) {
        std::fputs(ev.text.c_str(), stdout);
        std::fflush(stdout);
      }
      if (ev.finish != engine::FinishReason::kNone) finish = ev.finish;
    }
  }
  auto t_end = clock::now();
  double prefill_s = std::chrono::duration<double>(t_first - t0).count();
  double decode_s = std::chrono::duration<double>(t_end - t_first).count();
  double prefill_tps = prefill_s > 0 ? prompt.size() / prefill_s : 0.0;
  double decode_tps = (tokens.size() > 1 && decode_s > 0) ? (tokens.size() - 1) / decode_s : 0.0;
  if (json_out) {
    nlohmann::json j = {{"prompt_token_ids", prompt},
                        {"token_ids", tokens},
                        {"text", text},
                        {"finish_reason", engine::finish_reason_name(finish)},
                        {"prefill_tokens_per_s", prefill_tps},
                        {"decode_tokens_per_s", decode_tps}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("\n");
    std::fprintf(stderr, "[%zu prompt tokens, %zu generated, finish=%s, prefill %.1f tok/s, decode %.1f tok/s]\n",
                 prompt.size(), tokens.size(), engine::finish_reason_name(finish), prefill_tps, decode_tps);
  }
  return 0;
}

}  // namespace hotswap::agent
