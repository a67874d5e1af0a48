// libFuzzer target: the agent's reading of an OpenAI request body (agent/server/openai_protocol,
// parse_api_request) from hostile bytes, as a client of /v1/completions and /v1/chat/completions
// sends them. The first input byte picks the endpoint; the rest is the body. Besides "no crash,
// no undefined behaviour, no unbounded allocation", it checks the parser's promises and aborts
// when one breaks:
//   - it is deterministic: the same body gives the same result and the same error;
//   - an error is a 4xx that names what is wrong (a message, and the field where it has one), and
//     renders as OpenAI's {"error": {...}} JSON;
//   - an accepted request is usable: the served model, a prompt or non-empty messages as the
//     endpoint wants, sampling parameters within the documented ranges, max_tokens >= 1, at most
//     4 non-empty stop strings; and its chat renders in every format.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "agent/server/openai_protocol.h"

namespace {

using hotswap::agent::ApiError;
using hotswap::agent::ApiRequest;
using hotswap::agent::ChatFormat;
using hotswap::agent::Endpoint;

void require(bool ok, const char* what, const std::string& detail = "") {
  if (ok) return;
  std::fprintf(stderr, "openai_request_fuzz: broken promise: %s %s\n", what, detail.c_str());
  std::abort();
}

const std::string kModel = "tiny";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Endpoint endpoint = data[0] & 1 ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  ApiRequest a, b;
  const std::optional<ApiError> ea = hotswap::agent::parse_api_request(body, endpoint, kModel, &a);
  const std::optional<ApiError> eb = hotswap::agent::parse_api_request(body, endpoint, kModel, &b);
  require(ea.has_value() == eb.has_value(), "deterministic");
  if (ea) {
    require(ea->message == eb->message && ea->param == eb->param, "the same error twice", ea->message);
    require(!ea->message.empty(), "an error names what is wrong");
    require(ea->http_status >= 400 && ea->http_status < 500, "a bad request is a 4xx", std::to_string(ea->http_status));
    const nlohmann::json j = ea->to_json();
    require(j["error"]["message"] == ea->message, "the error renders as OpenAI's JSON", j.dump());
    (void)j.dump();  // valid UTF-8 or replaced: dump must not throw on what the parser echoes back
    return 0;
  }
  require(a.endpoint == endpoint, "the endpoint asked for");
  require(a.model == kModel, "only the served model is accepted", a.model);
  if (endpoint == Endpoint::kChatCompletions) {
    require(!a.messages.empty(), "a chat has messages");
    for (ChatFormat f : {ChatFormat::kChatMl, ChatFormat::kLlama3, ChatFormat::kPlain})
      (void)hotswap::agent::render_chat(f, a.messages, "<s>");
  } else {
    require(a.messages.empty(), "a completion has no messages");
  }
  require(a.sampling.temperature >= 0.0f && a.sampling.temperature <= 2.0f, "temperature in [0, 2]",
          std::to_string(a.sampling.temperature));
  require(a.sampling.top_p > 0.0f && a.sampling.top_p <= 1.0f, "top_p in (0, 1]", std::to_string(a.sampling.top_p));
  require(!a.max_tokens || *a.max_tokens >= 1, "max_tokens >= 1", std::to_string(a.max_tokens.value_or(0)));
  require(a.stop.size() <= 4, "at most 4 stop strings");
  for (const auto& s : a.stop) require(!s.empty(), "stop strings are not empty");
  return 0;
}
