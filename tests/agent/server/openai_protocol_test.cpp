#include "agent/server/openai_protocol.h"

#include <gtest/gtest.h>

namespace hotswap::agent {
namespace {

using nlohmann::json;

std::optional<ApiError> parse(const std::string& body, ApiRequest* out = nullptr,
                              Endpoint ep = Endpoint::kCompletions) {
  ApiRequest tmp;
  return parse_api_request(body, ep, "m", out ? out : &tmp);
}

TEST(OpenAiProtocol, ParsesEveryCompletionParameter) {
  ApiRequest r;
  auto e = parse(R"({"model":"m","prompt":"hi","max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":40,
                     "seed":12345678901,"stop":["a","b"],"stream":true,"stream_options":{"include_usage":true},
                     "n":1,"ignore_eos":true,"logprobs":null,"echo":false})",
                 &r);
  ASSERT_FALSE(e.has_value()) << e->message;
  EXPECT_EQ(r.prompt, "hi");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_EQ(r.seed, 12345678901ull);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.stream && r.include_usage && r.ignore_eos);
}

TEST(OpenAiProtocol, DefaultsFollowOpenAi) {
  ApiRequest r;
  ASSERT_FALSE(parse(R"({"model":"m","prompt":"hi"})", &r));
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_FALSE(r.stream);
  ASSERT_FALSE(parse(R"({"model":"m","prompt":[1,2,3]})", &r));
  EXPECT_TRUE(r.prompt_is_ids);
  EXPECT_EQ(r.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  ASSERT_FALSE(parse(R"({"model":"m","prompt":["one"]})", &r));
  EXPECT_EQ(r.prompt, "one");
}

TEST(OpenAiProtocol, EachBadFieldIsNamed) {
  struct Case {
    const char* body;
    const char* param;
    int status;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"model":"m","prompt":"x","temperature":"hot"})", "temperature", 400},
           {R"({"model":"m","prompt":"x","temperature":2.5})", "temperature", 400},
           {R"({"model":"m","prompt":"x","stop":"",)", "", 400},
           {R"({"model":"m","prompt":"x","stop":""})", "stop", 400},
           {R"({"model":"m","prompt":"x","stop":["a","b","c","d","e"]})", "stop", 400},
           {R"({"model":"m","prompt":["a","b"]})", "prompt", 400},
           {R"({"model":"m","prompt":""})", "prompt", 400},
           {R"({"model":"m","prompt":[-1]})", "prompt", 400},
           {R"({"model":"m","prompt":"x","stream_options":{"include_usage":true}})", "stream_options", 400},
           {R"({"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":1}})",
            "stream_options.include_usage", 400},
           {R"({"model":"m","prompt":"x","best_of":3})", "best_of", 400},
           {R"({"model":"x","prompt":"x"})", "model", 404},
       }) {
    auto e = parse(c.body);
    ASSERT_TRUE(e.has_value()) << c.body;
    EXPECT_EQ(e->param, c.param) << c.body << ": " << e->message;
    EXPECT_EQ(e->http_status, c.status) << c.body;
    json j = e->to_json();
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  }
}

TEST(OpenAiProtocol, ChatMessagesAreValidated) {
  ApiRequest r;
  auto ok = parse(R"({"model":"m","messages":[{"role":"system","content":"be brief"},
                     {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})",
                  &r, Endpoint::kChatCompletions);
  ASSERT_FALSE(ok) << ok->message;
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "ab");
  auto e = parse(R"({"model":"m","messages":[]})", nullptr, Endpoint::kChatCompletions);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "messages");
  e = parse(R"({"model":"m","messages":[{"role":"user"}]})", nullptr, Endpoint::kChatCompletions);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "messages[0].content");
  e = parse(R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]})", nullptr,
            Endpoint::kChatCompletions);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "messages[0].content[0]");
}

TEST(OpenAiProtocol, ChatTemplatesRenderAsTheirFamiliesDo) {
  std::vector<ChatMessage> m = {{"system", "S"}, {"user", "U"}};
  EXPECT_EQ(detect_chat_format("{{'<|im_start|>' + message['role']}}"), ChatFormat::kChatMl);
  EXPECT_EQ(detect_chat_format("{{ '<|start_header_id|>' }}"), ChatFormat::kLlama3);
  EXPECT_EQ(detect_chat_format(""), ChatFormat::kPlain);
  EXPECT_EQ(render_chat(ChatFormat::kChatMl, m, ""),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(ChatFormat::kLlama3, m, "<|begin_of_text|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(ChatFormat::kPlain, m, ""), "system: S\nuser: U\nassistant:");
}

TEST(OpenAiProtocol, StreamChunksCarryTextTokensAndFinish) {
  json c = stream_chunk(Endpoint::kCompletions, "cmpl-1", 5, "m", "hi", {7}, "", false);
  EXPECT_EQ(c["choices"][0]["text"], "hi");
  EXPECT_EQ(c["choices"][0]["token_ids"], json::array({7}));
  EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
  json chat = stream_chunk(Endpoint::kChatCompletions, "c", 5, "m", "", {}, "stop", true);
  EXPECT_EQ(chat["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(sse_event(3, "{}"), "id: 3\ndata: {}\n\n");
}

}  // namespace
}  // namespace hotswap::agent
