// The OpenAI-compatible wire format: parsing /v1/completions and /v1/chat/completions request
// bodies into engine requests, with an error naming the field for every bad input, and building
// the response bodies and streamed chunks.
//
// Pure functions, no I/O: unit-tested without a server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/engine/engine.h"
#include "agent/engine/tokenizer.h"

namespace hotswap::agent {

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
  nlohmann::json to_json() const;
};

enum class Endpoint { kCompletions, kChatCompletions };

struct ChatMessage {
  std::string role;
  std::string content;
};

// A validated request, before tokenization.
struct ApiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  std::string prompt;               // completions: text
  std::vector<int32_t> prompt_ids;  // completions: token ids instead of text
  bool prompt_is_ids = false;
  std::vector<ChatMessage> messages;  // chat
  std::optional<int> max_tokens;      // absent: 16 for completions, the rest of the context for chat
  engine::SamplingParams sampling;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool stream = false;
  bool include_usage = false;
};

// Parses a request body. `served_model` is the one model this server answers for.
std::optional<ApiError> parse_api_request(const std::string& body, Endpoint endpoint, const std::string& served_model,
                                          ApiRequest* out);

// How a chat is turned into a prompt. Chosen from tokenizer_config.json's chat_template: the
// ChatML family (`<|im_start|>`, Qwen2) and the Llama 3 family (`<|start_header_id|>`) are
// rendered exactly as their templates do; any other template, or none, gets the documented
// default: "<role>: <content>\n" per message, then "assistant:".
enum class ChatFormat { kChatMl, kLlama3, kPlain };
ChatFormat detect_chat_format(const std::string& chat_template);
// The prompt text (with the template's own special tokens as text).
std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages, const std::string& bos_token);

// The engine request for an API request: tokenizes, applies defaults, and checks the context.
std::optional<ApiError> build_generation_request(const ApiRequest& api, const engine::Tokenizer& tokenizer,
                                                 ChatFormat chat_format, const std::string& bos_token,
                                                 int max_model_len, const std::string& request_id,
                                                 engine::GenerationRequest* out);

// Response bodies.
struct CompletionResult {
  std::string id;
  int64_t created = 0;
  std::string model;
  std::string text;
  std::vector<int32_t> token_ids;
  std::string finish_reason;
  int64_t prompt_tokens = 0;
};
nlohmann::json completion_response(Endpoint endpoint, const CompletionResult& r);

// One streamed chunk: the text and tokens of one engine event; finish_reason empty for null.
// For chat, `first` adds the assistant role to the delta.
nlohmann::json stream_chunk(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                            const std::string& text, const std::vector<int32_t>& token_ids,
                            const std::string& finish_reason, bool first);
nlohmann::json usage_chunk(Endpoint endpoint, const std::string& id, int64_t created, const std::string& model,
                           int64_t prompt_tokens, int64_t completion_tokens);

// The metrics label of an endpoint: "completions" or "chat_completions".
const char* endpoint_label(Endpoint e);
// The HTTP error for a Status from the engine service: 400, 429 queue_full, 503, 500.
ApiError status_to_api_error(const Status& st);

// "id: <event_id>\ndata: <data>\n\n"
std::string sse_event(int64_t event_id, const std::string& data);

}  // namespace hotswap::agent
