#include "agent/server/openai_protocol.h"

#include <cmath>

namespace hotswap::agent {

using nlohmann::json;

json ApiError::to_json() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

namespace {

ApiError field_error(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  ApiError e;
  e.message = message;
  e.param = param;
  e.code = code;
  return e;
}

const char* json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::binary:
      return "binary";
    case json::value_t::discarded:
      return "invalid";
    default:
      return "a number";
  }
}

std::optional<ApiError> read_number(const json& body, const char* key, double lo, double hi, bool lo_open,
                                    std::optional<double>* out) {
  if (!body.contains(key) || body[key].is_null()) return std::nullopt;
  const json& v = body[key];
  if (!v.is_number())
    return field_error(key, std::string("'") + key + "' must be a number, got " + json_type_name(v), "invalid_type");
  double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "'%s' must be in %s%g, %g], got %g", key, lo_open ? "(" : "[", lo, hi, x);
    return field_error(key, buf);
  }
  *out = x;
  return std::nullopt;
}

std::optional<ApiError> read_int(const json& body, const char* key, int64_t lo, int64_t hi,
                                 std::optional<int64_t>* out) {
  if (!body.contains(key) || body[key].is_null()) return std::nullopt;
  const json& v = body[key];
  if (!v.is_number_integer())
    return field_error(key, std::string("'") + key + "' must be an integer, got " + json_type_name(v), "invalid_type");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    return field_error(key, std::string("'") + key + "' must be at most " + std::to_string(hi));
  int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    return field_error(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "], got " + std::to_string(x));
  *out = x;
  return std::nullopt;
}

std::optional<ApiError> read_bool(const json& body, const char* key, bool* out) {
  if (!body.contains(key) || body[key].is_null()) return std::nullopt;
  if (!body[key].is_boolean())
    return field_error(key, std::string("'") + key + "' must be a boolean, got " + json_type_name(body[key]),
                       "invalid_type");
  *out = body[key].get<bool>();
  return std::nullopt;
}

std::optional<ApiError> read_content(const json& v, const std::string& param, std::string* out) {
  if (v.is_string()) {
    *out = v.get<std::string>();
    return std::nullopt;
  }
  if (v.is_array()) {  // [{"type": "text", "text": "..."}]
    out->clear();
    for (size_t i = 0; i < v.size(); ++i) {
      const json& part = v[i];
      std::string p = param + "[" + std::to_string(i) + "]";
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
          !part["text"].is_string())
        return field_error(
            p, "'" + p + "' must be {\"type\": \"text\", \"text\": string}; only text content is supported");
      *out += part["text"].get<std::string>();
    }
    return std::nullopt;
  }
  return field_error(param, "'" + param + "' must be a string or an array of text parts, got " + json_type_name(v),
                     "invalid_type");
}

}  // namespace

std::optional<ApiError> parse_api_request(const std::string& body_text, Endpoint endpoint,
                                          const std::string& served_model, ApiRequest* out) {
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return field_error("", "the request body is not valid JSON", "invalid_json");
  if (!body.is_object()) return field_error("", "the request body must be a JSON object", "invalid_json");
  ApiRequest r;
  r.endpoint = endpoint;

  if (!body.contains("model")) return field_error("model", "'model' is required", "missing_required_parameter");
  if (!body["model"].is_string())
    return field_error("model", std::string("'model' must be a string, got ") + json_type_name(body["model"]),
                       "invalid_type");
  r.model = body["model"].get<std::string>();
  if (r.model != served_model) {
    ApiError e =
        field_error("model", "the model '" + r.model + "' does not exist; this server serves '" + served_model + "'",
                    "model_not_found");
    e.http_status = 404;
    return e;
  }

  if (endpoint == Endpoint::kCompletions) {
    if (!body.contains("prompt")) return field_error("prompt", "'prompt' is required", "missing_required_parameter");
    const json& p = body["prompt"];
    if (p.is_string()) {
      r.prompt = p.get<std::string>();
    } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
      r.prompt_is_ids = true;
      for (size_t i = 0; i < p.size(); ++i) {
        if (!p[i].is_number_integer() || p[i].get<int64_t>() < 0 || p[i].get<int64_t>() > INT32_MAX)
          return field_error("prompt",
                             "'prompt[" + std::to_string(i) + "]' must be a token id (a non-negative integer)",
                             "invalid_type");
        r.prompt_ids.push_back(p[i].get<int32_t>());
      }
    } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
      r.prompt = p[0].get<std::string>();
    } else if (p.is_array() && p.size() > 1) {
      return field_error("prompt", "'prompt' holds several prompts; send one prompt per request");
    } else {
      return field_error("prompt",
                         std::string("'prompt' must be a string or an array of token ids, got ") + json_type_name(p),
                         "invalid_type");
    }
    if (r.prompt_is_ids ? r.prompt_ids.empty() : r.prompt.empty()) return field_error("prompt", "'prompt' is empty");
  } else {
    if (!body.contains("messages"))
      return field_error("messages", "'messages' is required", "missing_required_parameter");
    const json& m = body["messages"];
    if (!m.is_array() || m.empty())
      return field_error("messages", "'messages' must be a non-empty array of {role, content}", "invalid_type");
    for (size_t i = 0; i < m.size(); ++i) {
      std::string p = "messages[" + std::to_string(i) + "]";
      if (!m[i].is_object()) return field_error(p, "'" + p + "' must be an object", "invalid_type");
      if (!m[i].contains("role") || !m[i]["role"].is_string())
        return field_error(p + ".role", "'" + p + ".role' must be a string", "invalid_type");
      ChatMessage msg;
      msg.role = m[i]["role"].get<std::string>();
      if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "developer")
        return field_error(p + ".role",
                           "'" + p + ".role' is '" + msg.role + "'; expected system, developer, user or assistant");
      if (!m[i].contains("content") || m[i]["content"].is_null())
        return field_error(p + ".content", "'" + p + ".content' is required", "missing_required_parameter");
      if (auto e = read_content(m[i]["content"], p + ".content", &msg.content)) return e;
      r.messages.push_back(std::move(msg));
    }
  }

  std::optional<int64_t> max_tokens, top_k, n, seed;
  const char* max_key = body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (auto e = read_int(body, max_key, 1, 1 << 24, &max_tokens)) return e;
  if (max_tokens) r.max_tokens = static_cast<int>(*max_tokens);
  std::optional<double> temperature, top_p;
  if (auto e = read_number(body, "temperature", 0.0, 2.0, false, &temperature)) return e;
  if (auto e = read_number(body, "top_p", 0.0, 1.0, true, &top_p)) return e;
  if (auto e = read_int(body, "top_k", -1, 1 << 20, &top_k)) return e;
  if (auto e = read_int(body, "n", 1, 1, &n)) return e;
  if (body.contains("seed") && !body["seed"].is_null()) {
    const json& s = body["seed"];
    if (!s.is_number_integer()) return field_error("seed", "'seed' must be an integer", "invalid_type");
    r.seed = s.is_number_unsigned() ? s.get<uint64_t>() : static_cast<uint64_t>(s.get<int64_t>());
  }
  r.sampling.temperature = temperature ? static_cast<float>(*temperature) : 1.0f;
  r.sampling.top_p = top_p ? static_cast<float>(*top_p) : 1.0f;
  r.sampling.top_k = top_k && *top_k > 0 ? static_cast<int>(*top_k) : 0;

  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      if (s.size() > 4) return field_error("stop", "'stop' holds at most 4 strings");
      for (const auto& x : s) {
        if (!x.is_string())
          return field_error("stop", "'stop' must be a string or an array of strings", "invalid_type");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      return field_error("stop", "'stop' must be a string or an array of strings", "invalid_type");
    }
    for (const auto& x : r.stop)
      if (x.empty()) return field_error("stop", "'stop' strings must not be empty");
  }
  if (auto e = read_bool(body, "stream", &r.stream)) return e;
  if (auto e = read_bool(body, "ignore_eos", &r.ignore_eos)) return e;
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return field_error("stream_options", "'stream_options' must be an object", "invalid_type");
    if (!r.stream) return field_error("stream_options", "'stream_options' is only allowed with 'stream': true");
    if (auto e = read_bool(so, "include_usage", &r.include_usage)) {
      e->param = "stream_options.include_usage";
      return e;
    }
  }
  // Features we do not serve: refuse rather than silently ignore.
  for (const char* key : {"logprobs", "top_logprobs", "echo", "suffix", "logit_bias", "tools", "functions",
                          "response_format", "best_of"}) {
    if (!body.contains(key) || body[key].is_null()) continue;
    const json& v = body[key];
    bool harmless = (v.is_boolean() && !v.get<bool>()) || (std::string(key) == "best_of" && v == 1) ||
                    (std::string(key) == "response_format" && v.is_object() && v.value("type", "") == "text");
    if (!harmless) return field_error(key, std::string("'") + key + "' is not supported by this server", "unsupported");
  }
  *out = std::move(r);
  return std::nullopt;
}

ChatFormat detect_chat_format(const std::string& chat_template) {
  if (chat_template.find("<|im_start|>") != std::string::npos) return ChatFormat::kChatMl;
  if (chat_template.find("<|start_header_id|>") != std::string::npos) return ChatFormat::kLlama3;
  return ChatFormat::kPlain;
}

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages, const std::string& bos_token) {
  std::string out;
  switch (format) {
    case ChatFormat::kChatMl:
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      out += "<|im_start|>assistant\n";
      break;
    case ChatFormat::kLlama3:
      out = bos_token;
      for (const auto& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFormat::kPlain:
      for (const auto& m : messages) out += m.role + ": " + m.content + "\n";
      out += "assistant:";
      break;
  }
  return out;
}

std::optional<ApiError> build_generation_request(const ApiRequest& api, const engine::Tokenizer& tokenizer,
                                                 ChatFormat chat_format, const std::string& bos_token,
                                                 int max_model_len, const std::string& request_id,
                                                 engine::GenerationRequest* out) {
  engine::GenerationRequest g;
  g.id = request_id;
  if (api.endpoint == Endpoint::kChatCompletions) {
    // The ChatML and Llama 3 templates carry their own special tokens (BOS included).
    bool templated = chat_format != ChatFormat::kPlain;
    g.prompt = tokenizer.encode(render_chat(chat_format, api.messages, bos_token), /*add_special_tokens=*/!templated);
  } else if (api.prompt_is_ids) {
    g.prompt = api.prompt_ids;
    for (size_t i = 0; i < g.prompt.size(); ++i)
      if (g.prompt[i] >= tokenizer.vocab_size())
        return field_error("prompt", "'prompt[" + std::to_string(i) + "]' = " + std::to_string(g.prompt[i]) +
                                         " is outside the vocabulary of " + std::to_string(tokenizer.vocab_size()));
  } else {
    g.prompt = tokenizer.encode(api.prompt);
  }
  if (g.prompt.empty())
    return field_error(api.endpoint == Endpoint::kCompletions ? "prompt" : "messages",
                       "the prompt encodes to no tokens");
  const int64_t prompt_len = static_cast<int64_t>(g.prompt.size());
  if (prompt_len >= max_model_len) {
    ApiError e = field_error(api.endpoint == Endpoint::kCompletions ? "prompt" : "messages",
                             "this model's maximum context length is " + std::to_string(max_model_len) +
                                 " tokens, and the prompt alone has " + std::to_string(prompt_len),
                             "context_length_exceeded");
    return e;
  }
  int64_t room = max_model_len - prompt_len;
  int64_t max_tokens = api.max_tokens ? *api.max_tokens : (api.endpoint == Endpoint::kCompletions ? 16 : room);
  if (max_tokens > room)
    return field_error(
        "max_tokens",
        "'max_tokens' = " + std::to_string(max_tokens) + " does not fit: this model's maximum context length is " +
            std::to_string(max_model_len) + " tokens; you requested " + std::to_string(prompt_len + max_tokens) + " (" +
            std::to_string(prompt_len) + " in the prompt, " + std::to_string(max_tokens) + " to generate)",
        "context_length_exceeded");
  g.stop.max_tokens = static_cast<int>(max_tokens);
  g.stop.stop = api.stop;
  g.stop.ignore_eos = api.ignore_eos;
  g.sampling = api.sampling;
  g.seed = api.seed;
  *out = std::move(g);
  return std::nullopt;
}

json completion_response(Endpoint endpoint, const CompletionResult& r) {
  json choice = {{"index", 0},
                 {"finish_reason", r.finish_reason.empty() ? json(nullptr) : json(r.finish_reason)},
                 {"token_ids", r.token_ids}};
  bool chat = endpoint == Endpoint::kChatCompletions;
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", r.text}};
  } else {
    choice["text"] = r.text;
    choice["logprobs"] = nullptr;
  }
  int64_t completion = static_cast<int64_t>(r.token_ids.size());
  return {{"id", r.id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", r.created},
          {"model", r.model},
          {"choices", json::array({choice})},
          {"usage",
           {{"prompt_tokens", r.prompt_tokens},
            {"completion_tokens", completion},
            {"total_tokens", r.prompt_tokens + completion}}}};
}

json stream_chunk(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                  const std::string& text, const std::vector<int32_t>& token_ids, const std::string& finish_reason,
                  bool first) {
  bool chat = endpoint == Endpoint::kChatCompletions;
  json choice = {{"index", 0},
                 {"token_ids", token_ids},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || !first) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})}};
}

json usage_chunk(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                 int64_t prompt_tokens, int64_t completion_tokens) {
  bool chat = endpoint == Endpoint::kChatCompletions;
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}}}};
}

const char* endpoint_label(Endpoint e) {
  return e == Endpoint::kChatCompletions ? "chat_completions" : "completions";
}

ApiError status_to_api_error(const Status& st) {
  ApiError e;
  e.message = st.message();
  switch (st.code()) {
    case StatusCode::kInvalidArgument:
      e.http_status = 400;
      break;
    case StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      e.code = "queue_full";
      break;
    case StatusCode::kFailedPrecondition:
    case StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "service_unavailable";
      e.code = "unavailable";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      break;
  }
  return e;
}

std::string sse_event(int64_t event_id, const std::string& data) {
  return "id: " + std::to_string(event_id) + "\ndata: " + data + "\n\n";
}

}  // namespace hotswap::agent
