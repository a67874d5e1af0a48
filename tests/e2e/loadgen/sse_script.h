// Builders for the server side of a completion stream, as hotswap's server writes it: SSE
// events and the JSON chunks inside them. Shared by the load generator's tests.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace hotswap::loadgen::fake {

// One SSE event: "id: <id>\ndata: <data>\n\n".
inline std::string sse(int64_t id, const std::string& data) {
  return "id: " + std::to_string(id) + "\ndata: " + data + "\n\n";
}

// A completion chunk as the server sends it.
inline std::string completion_chunk(const std::string& text, const std::vector<int64_t>& ids,
                                    const char* finish = nullptr) {
  nlohmann::json choice = {{"index", 0}, {"text", text}, {"token_ids", ids}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish ? nlohmann::json(finish) : nlohmann::json(nullptr);
  return nlohmann::json({{"id", "cmpl-test"},
                         {"object", "text_completion"},
                         {"created", 1},
                         {"model", "fake-model"},
                         {"choices", nlohmann::json::array({choice})}})
      .dump();
}

inline std::string chat_chunk(const std::string& content, const std::vector<int64_t>& ids,
                              const char* finish = nullptr) {
  nlohmann::json choice = {{"index", 0}, {"delta", {{"content", content}}}, {"token_ids", ids}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish ? nlohmann::json(finish) : nlohmann::json(nullptr);
  return nlohmann::json({{"id", "chatcmpl-test"},
                         {"object", "chat.completion.chunk"},
                         {"created", 1},
                         {"model", "fake-model"},
                         {"choices", nlohmann::json::array({choice})}})
      .dump();
}

}  // namespace hotswap::loadgen::fake
