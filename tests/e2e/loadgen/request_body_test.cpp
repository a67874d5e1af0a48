#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "e2e/loadgen/loadgen.h"

namespace hotswap::loadgen {
namespace {

int count_words(const std::string& s) {
  std::istringstream in(s);
  std::string w;
  int n = 0;
  while (in >> w) ++n;
  return n;
}

TEST(Prompt, IsAFunctionOfSeedAndIndexOnly) {
  EXPECT_EQ(make_prompt(3, 5, 16), make_prompt(3, 5, 16));
  EXPECT_NE(make_prompt(3, 5, 16), make_prompt(3, 6, 16));
  EXPECT_NE(make_prompt(3, 5, 16), make_prompt(4, 5, 16));
}

TEST(Prompt, HasTheRequestedNumberOfWords) {
  for (int64_t words : {1, 2, 16, 300}) EXPECT_EQ(count_words(make_prompt(0, 0, words)), words);
}

TEST(Prompt, DiffersAcrossManyRequests) {
  std::set<std::string> seen;
  for (int64_t i = 0; i < 1000; ++i) seen.insert(make_prompt(7, i, 16));
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(RequestBody, CompletionHasTheOpenAiFields) {
  LoadgenConfig c;
  c.max_tokens = 9;
  c.seed = 100;
  c.temperature = 0.5;
  c.prompt_words = 4;
  nlohmann::json body = make_request_body(c, "m1", 7);
  EXPECT_EQ(body["model"], "m1");
  EXPECT_EQ(body["prompt"], make_prompt(100, 7, 4));
  EXPECT_EQ(body["max_tokens"], 9);
  EXPECT_EQ(body["temperature"], 0.5);
  EXPECT_EQ(body["seed"], 107);
  EXPECT_EQ(body["stream"], true);
  EXPECT_FALSE(body.contains("messages"));
  EXPECT_FALSE(body.contains("ignore_eos"));
  EXPECT_EQ(request_path(c), "/v1/completions");
}

TEST(RequestBody, PromptIdsAreSentAsTheTokenPrompt) {
  LoadgenConfig c;
  c.prompt_ids = {5, 6, 7};
  EXPECT_EQ(make_request_body(c, "m", 0)["prompt"], nlohmann::json::array({5, 6, 7}));
  c.chat = true;
  c.url = "http://127.0.0.1:1";
  c.model = "m";
  auto run = run_load(c);
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("/v1/completions only"), std::string::npos) << run.status().to_string();
}

TEST(RequestBody, IgnoreEosIsSentOnlyWhenAsked) {
  LoadgenConfig c;
  c.ignore_eos = true;
  EXPECT_EQ(make_request_body(c, "m1", 0)["ignore_eos"], true);
}

TEST(RequestBody, ChatSendsThePromptAsOneUserMessage) {
  LoadgenConfig c;
  c.chat = true;
  nlohmann::json body = make_request_body(c, "m1", 0);
  ASSERT_TRUE(body["messages"].is_array());
  ASSERT_EQ(body["messages"].size(), 1u);
  EXPECT_EQ(body["messages"][0]["role"], "user");
  EXPECT_EQ(body["messages"][0]["content"], make_prompt(0, 0, 16));
  EXPECT_FALSE(body.contains("prompt"));
  EXPECT_EQ(request_path(c), "/v1/chat/completions");
}

}  // namespace
}  // namespace hotswap::loadgen
