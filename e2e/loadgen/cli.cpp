#include "e2e/loadgen/cli.h"

#include <vector>

#include "common/flags.h"
#include "common/http.h"

namespace hotswap::loadgen {

namespace {

struct FlagSpec {
  const char* name;
  const char* value_name;  // empty: a switch
  const char* help;
};

// The --io-threads help below spells out common/http.h's range and default.
static_assert(hotswap::http::kDefaultIoThreads == 4 && hotswap::http::kMaxIoThreads == 256,
              "update the --io-threads help text");

constexpr FlagSpec kFlags[] = {
    {"url", "URL", "the server's base URL, e.g. http://127.0.0.1:8000 (required)"},
    {"streams", "N", "requests open at a time (required, 1..4096)"},
    {"requests", "M", "requests to start (required, >= 1)"},
    {"max-tokens", "K", "max_tokens of each request (default 32)"},
    {"seed", "S", "request i is sent with seed S + i and a prompt drawn from (S, i) (default 0)"},
    {"duration-s", "D", "start no request after D seconds (default 0: no limit)"},
    {"json", "", "print one JSON object, with every request's tokens and times"},
    {"model", "NAME", "the model to ask for (default: the first id of GET /v1/models)"},
    {"prompt-len", "P", "words per prompt (default 16)"},
    {"temperature", "T", "sampling temperature (default 0)"},
    {"chat", "", "use /v1/chat/completions instead of /v1/completions"},
    {"ignore-eos", "", "ask the server to generate max-tokens tokens even past EOS (fixed work per request)"},
    {"request-timeout-s", "T", "from sending a request to the end of its stream (default 120)"},
    {"io-threads", "N", "threads that read the streams (cpprest's pool), 2..256 (default 4)"},
    {"help", "", "print this help"},
};

FlagSet make_flags() {
  FlagSet f(
      "usage: hotswap-loadgen --url URL --streams N --requests M [--max-tokens K] [--seed S] [--duration-s D]\n"
      "                       [--json] [--model NAME] [--prompt-len P] [--temperature T] [--chat] [--ignore-eos]\n"
      "                       [--request-timeout-s T] [--io-threads N]\n"
      "\n"
      "Keeps N streaming completion requests open against an OpenAI-compatible server until M have\n"
      "been started (or D seconds passed), timing every token as it arrives. Exit code: 0 when every\n"
      "request was ok, 1 otherwise, 2 for bad flags.");
  for (const FlagSpec& spec : kFlags) f.add(spec.name, spec.value_name, spec.help);
  return f;
}

// FlagSet stops at the first unknown flag. To name every bad flag at once, unknown ones are
// taken out here (with the argument after one, unless that looks like a flag: its value, most
// likely) and reported beside the errors of the known ones.
std::vector<std::string> take_unknown_flags(std::vector<char*>& args) {
  std::vector<std::string> errors;
  std::vector<char*> kept = {args[0]};
  for (size_t i = 1; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      kept.push_back(args[i]);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& f : kFlags)
      if (name == f.name) spec = &f;
    if (spec == nullptr) {
      errors.push_back("unknown flag --" + name + " (see --help)");
      if (eq == std::string::npos && i + 1 < args.size() && std::string(args[i + 1]).rfind("--", 0) != 0) ++i;
      continue;
    }
    kept.push_back(args[i]);
    // A flag that takes a value consumes the next argument, even one that looks like a flag.
    if (spec->value_name[0] != '\0' && eq == std::string::npos && i + 1 < args.size()) kept.push_back(args[++i]);
  }
  args = std::move(kept);
  return errors;
}

}  // namespace

std::string cli_help() {
  return make_flags().help();
}

StatusOr<CliOptions> parse_cli(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  if (args.empty()) args.push_back(nullptr);
  std::vector<std::string> errors = take_unknown_flags(args);
  FlagSet flags = make_flags();
  Status parsed = flags.parse(static_cast<int>(args.size()), args.data(), 1);
  if (!parsed.ok()) {  // a value missing at the end: nothing more to check
    errors.push_back(parsed.message());
    std::string message;
    for (const auto& e : errors) message += (message.empty() ? "" : "\n") + e;
    return invalid_argument(message);
  }
  CliOptions o;
  o.help = flags.has("help");
  if (o.help && errors.empty()) return o;

  for (const std::string& p : flags.positional()) errors.push_back("unexpected argument '" + p + "'");
  for (const char* name : {"url", "streams", "requests"})
    if (!flags.has(name)) errors.push_back("flag --" + std::string(name) + " is required");

  auto int_flag = [&](const std::string& name, int64_t fallback, int64_t lo, int64_t hi, const std::string& range) {
    auto v = flags.get_int(name, fallback);
    if (!v.ok()) {
      errors.push_back(v.status().message());
      return fallback;
    }
    if (*v < lo || *v > hi) {
      errors.push_back("flag --" + name + ": " + std::to_string(*v) + " is out of range (" + range + ")");
      return fallback;
    }
    return *v;
  };
  auto double_flag = [&](const std::string& name, double fallback, double lo, double hi, bool lo_open,
                         const std::string& range) {
    auto v = flags.get_double(name, fallback);
    if (!v.ok()) {
      errors.push_back(v.status().message());
      return fallback;
    }
    if (!(lo_open ? *v > lo : *v >= lo) || !(*v <= hi)) {
      errors.push_back("flag --" + name + ": " + flags.get(name) + " is out of range (" + range + ")");
      return fallback;
    }
    return *v;
  };

  LoadgenConfig& c = o.config;
  c.url = flags.get("url");
  while (!c.url.empty() && c.url.back() == '/') c.url.pop_back();
  if (flags.has("url") && c.url.rfind("http://", 0) != 0 && c.url.rfind("https://", 0) != 0)
    errors.push_back("flag --url: '" + c.url + "' must start with http:// or https://");
  c.streams = static_cast<int>(int_flag("streams", 1, 1, 4096, "1..4096"));
  c.requests = int_flag("requests", 1, 1, int64_t{1} << 40, ">= 1");
  c.max_tokens = int_flag("max-tokens", 32, 1, int64_t{1} << 30, ">= 1");
  c.seed = int_flag("seed", 0, 0, int64_t{1} << 53, "0..2^53");
  c.prompt_words = int_flag("prompt-len", 16, 1, 1 << 20, "1..1048576");
  c.duration_s = double_flag("duration-s", 0, 0, 1e9, false, ">= 0");
  c.temperature = double_flag("temperature", 0, 0, 1e6, false, ">= 0");
  c.request_timeout_s = double_flag("request-timeout-s", 120, 0, 1e9, true, "> 0");
  c.chat = flags.has("chat");
  c.ignore_eos = flags.has("ignore-eos");
  c.model = flags.get("model");
  if (flags.has("model") && c.model.empty()) errors.push_back("flag --model: the name is empty");
  o.json = flags.has("json");
  o.io_threads = static_cast<int>(int_flag("io-threads", hotswap::http::kDefaultIoThreads, 2,
                                           hotswap::http::kMaxIoThreads, "2.." + std::to_string(hotswap::http::kMaxIoThreads)));

  if (!errors.empty()) {
    std::string message;
    for (const auto& e : errors) message += (message.empty() ? "" : "\n") + e;
    return invalid_argument(message);
  }
  return o;
}

}  // namespace hotswap::loadgen
