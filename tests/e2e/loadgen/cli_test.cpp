#include "e2e/loadgen/cli.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/http.h"

namespace hotswap::loadgen {
namespace {

StatusOr<CliOptions> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "hotswap-loadgen");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return parse_cli(static_cast<int>(argv.size()), argv.data());
}

bool names(const Status& st, const std::string& flag) {
  return st.message().find(flag) != std::string::npos;
}

TEST(LoadgenCli, DefaultsApplyWhenOnlyRequiredFlagsAreGiven) {
  auto o = parse({"--url", "http://127.0.0.1:9", "--streams", "4", "--requests", "10"});
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->config.url, "http://127.0.0.1:9");
  EXPECT_EQ(o->config.streams, 4);
  EXPECT_EQ(o->config.requests, 10);
  EXPECT_EQ(o->config.max_tokens, 32);
  EXPECT_EQ(o->config.prompt_words, 16);
  EXPECT_EQ(o->config.temperature, 0);
  EXPECT_EQ(o->config.seed, 0);
  EXPECT_EQ(o->config.duration_s, 0);
  EXPECT_TRUE(o->config.model.empty());
  EXPECT_FALSE(o->config.chat);
  EXPECT_FALSE(o->json);
  EXPECT_EQ(o->io_threads, http::kDefaultIoThreads);
}

TEST(LoadgenCli, EveryFlagIsRead) {
  auto o = parse({"--url=https://h:1",
                  "--streams",
                  "2",
                  "--requests",
                  "3",
                  "--max-tokens",
                  "7",
                  "--seed",
                  "11",
                  "--duration-s",
                  "1.5",
                  "--json",
                  "--model",
                  "m",
                  "--prompt-len",
                  "5",
                  "--temperature",
                  "0.7",
                  "--chat",
                  "--request-timeout-s",
                  "9",
                  "--io-threads",
                  "3"});
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->config.max_tokens, 7);
  EXPECT_EQ(o->config.seed, 11);
  EXPECT_EQ(o->config.duration_s, 1.5);
  EXPECT_TRUE(o->json);
  EXPECT_EQ(o->config.model, "m");
  EXPECT_EQ(o->config.prompt_words, 5);
  EXPECT_EQ(o->config.temperature, 0.7);
  EXPECT_TRUE(o->config.chat);
  EXPECT_EQ(o->config.request_timeout_s, 9);
  EXPECT_EQ(o->io_threads, 3);
}

TEST(LoadgenCli, MissingRequiredFlagsAreAllNamed) {
  auto o = parse({"--json"});
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(names(o.status(), "--url"));
  EXPECT_TRUE(names(o.status(), "--streams"));
  EXPECT_TRUE(names(o.status(), "--requests"));
}

TEST(LoadgenCli, EveryBadValueIsNamed) {
  auto o = parse({"--url", "ftp://x", "--streams", "0", "--requests", "ten", "--max-tokens", "-1", "--temperature",
                  "hot", "--duration-s", "-2", "--request-timeout-s", "0", "--prompt-len", "0"});
  ASSERT_FALSE(o.ok());
  for (const char* flag : {"--url", "--streams", "--requests", "--max-tokens", "--temperature", "--duration-s",
                           "--request-timeout-s", "--prompt-len"})
    EXPECT_TRUE(names(o.status(), flag)) << flag << " not named in: " << o.status().message();
}

TEST(LoadgenCli, UnknownFlagsAreAllNamed) {
  auto o = parse({"--url", "http://h", "--streamz", "2", "--requests", "1", "--bogus=1"});
  ASSERT_FALSE(o.ok());
  EXPECT_TRUE(names(o.status(), "--streamz"));
  EXPECT_TRUE(names(o.status(), "--bogus"));
}

TEST(LoadgenCli, UnknownFlagsAndBadValuesAreNamedTogether) {
  auto o = parse({"--url", "localhost", "--streams", "0", "--requests", "x", "--bogus", "3", "--json"});
  ASSERT_FALSE(o.ok());
  for (const char* flag : {"--bogus", "--url", "--streams", "--requests"})
    EXPECT_TRUE(names(o.status(), flag)) << flag << " not named in: " << o.status().message();
  EXPECT_FALSE(names(o.status(), "'3'")) << "the unknown flag's value is not a stray argument";
}

TEST(LoadgenCli, IoThreadsOutOfRangeAreNamed) {
  for (const char* bad : {"1", "257", "many"}) {
    auto o = parse({"--url", "http://h", "--streams", "1", "--requests", "1", "--io-threads", bad});
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_TRUE(names(o.status(), "--io-threads")) << o.status().message();
  }
}

TEST(LoadgenCli, StrayArgumentIsAnError) {
  auto o = parse({"--url", "http://h", "--streams", "1", "--requests", "1", "extra"});
  ASSERT_FALSE(o.ok());
  EXPECT_TRUE(names(o.status(), "extra"));
}

TEST(LoadgenCli, HelpNeedsNoOtherFlag) {
  auto o = parse({"--help"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->help);
  EXPECT_NE(cli_help().find("--requests"), std::string::npos);
}

}  // namespace
}  // namespace hotswap::loadgen
