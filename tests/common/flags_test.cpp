// FlagSet's list flags: comma-separated items, each checked, the bad one named.
#include "common/flags.h"

#include <gtest/gtest.h>

namespace hotswap {
namespace {

FlagSet parsed(std::vector<std::string> args) {
  FlagSet f("usage: t");
  f.add("n", "LIST", "numbers");
  f.add("s", "LIST", "words");
  std::vector<char*> argv;
  args.insert(args.begin(), "t");
  for (auto& a : args) argv.push_back(a.data());
  EXPECT_TRUE(f.parse(static_cast<int>(argv.size()), argv.data(), 1).ok());
  return f;
}

TEST(FlagList, SplitsOnCommasAndFallsBack) {
  auto f = parsed({"--n", "1,16,64", "--s", "kv,recompute"});
  EXPECT_EQ(f.get_int_list("n", "7", 1).value(), (std::vector<int64_t>{1, 16, 64}));
  EXPECT_EQ(f.get_list("s", "x").value(), (std::vector<std::string>{"kv", "recompute"}));
  auto none = parsed({});
  EXPECT_EQ(none.get_int_list("n", "2,3", 1).value(), (std::vector<int64_t>{2, 3}));
}

TEST(FlagList, NamesTheBadItem) {
  for (const char* bad : {"1,,2", "1,x", "1,0", "5,", "3.5"}) {
    auto f = parsed({"--n", bad});
    auto got = f.get_int_list("n", "1", 1);
    ASSERT_FALSE(got.ok()) << bad;
    EXPECT_NE(got.status().message().find("flag --n"), std::string::npos) << got.status().to_string();
  }
  auto f = parsed({"--n", "1,0"});
  EXPECT_NE(f.get_int_list("n", "1", 1).status().message().find("'0' is not an integer >= 1"), std::string::npos);
}

}  // namespace
}  // namespace hotswap
