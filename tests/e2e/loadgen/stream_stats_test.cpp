#include "e2e/loadgen/stream_stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace hotswap::loadgen {
namespace {

// The definition, spelled out: sort, take the ceil(p/100 * n)-th smallest.
double naive_percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  if (rank < 1) rank = 1;
  return v[rank - 1];
}

TEST(Percentiles, MatchANaiveSortForManySizesAndRanks) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> dist(0.0, 1000.0);
  for (size_t n : {1u, 2u, 3u, 7u, 10u, 99u, 100u, 101u, 1000u, 4097u}) {
    std::vector<double> v(n);
    for (double& x : v) x = dist(rng);
    if (n > 10) v[3] = v[5] = v[7];  // ties
    for (double p : {0.1, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
      std::vector<double> copy = v;
      EXPECT_EQ(percentile_nearest_rank(copy, p), naive_percentile(v, p)) << "n=" << n << " p=" << p;
    }
    LatencySummary s = summarize(v);
    EXPECT_EQ(s.count, static_cast<int64_t>(n));
    EXPECT_EQ(s.p50, naive_percentile(v, 50));
    EXPECT_EQ(s.p99, naive_percentile(v, 99));
    EXPECT_EQ(s.max, *std::max_element(v.begin(), v.end()));
  }
}

TEST(Percentiles, HundredSamplesP99IsTheSecondLargest) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  LatencySummary s = summarize(v);
  EXPECT_EQ(s.p50, 50);
  EXPECT_EQ(s.p99, 99);
  EXPECT_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(s.mean, 50.5);
}

TEST(Percentiles, NoSamplesSummarizeToZeros) {
  LatencySummary s = summarize({});
  EXPECT_EQ(s.count, 0);
  EXPECT_EQ(s.p50, 0);
  EXPECT_EQ(s.p99, 0);
  EXPECT_EQ(s.max, 0);
}

TEST(EventIdTracker, ConsecutiveIdsHaveNoAnomalies) {
  EventIdTracker t;
  for (int i = 0; i < 10; ++i) t.record(i);
  EXPECT_EQ(t.events(), 10);
  EXPECT_EQ(t.duplicates(), 0);
  EXPECT_EQ(t.missing(), 0);
  EXPECT_EQ(t.out_of_order(), 0);
  EXPECT_EQ(t.highest(), 9);
}

TEST(EventIdTracker, RepeatedIdIsADuplicate) {
  EventIdTracker t;
  for (int id : {0, 1, 2, 2, 3, 1}) t.record(id);
  EXPECT_EQ(t.duplicates(), 2);
  EXPECT_EQ(t.missing(), 0);
  EXPECT_EQ(t.out_of_order(), 0);
}

TEST(EventIdTracker, SkippedIdsAreMissing) {
  EventIdTracker t;
  for (int id : {0, 1, 3, 4, 7}) t.record(id);
  EXPECT_EQ(t.missing(), 3);  // 2, 5, 6
  EXPECT_EQ(t.duplicates(), 0);
}

TEST(EventIdTracker, StreamNotStartingAtZeroMissesTheFirstIds) {
  EventIdTracker t;
  for (int id : {2, 3}) t.record(id);
  EXPECT_EQ(t.missing(), 2);
}

TEST(EventIdTracker, LateIdIsOutOfOrderNotMissing) {
  EventIdTracker t;
  for (int id : {0, 2, 1, 3}) t.record(id);
  EXPECT_EQ(t.out_of_order(), 1);
  EXPECT_EQ(t.missing(), 0);
  EXPECT_EQ(t.duplicates(), 0);
}

TEST(EventIdTracker, NoEventsNoAnomalies) {
  EventIdTracker t;
  EXPECT_EQ(t.missing(), 0);
  EXPECT_EQ(t.duplicates(), 0);
  EXPECT_EQ(t.highest(), -1);
}

TEST(ParseEventId, AcceptsDecimalDigitsWithSurroundingSpaces) {
  EXPECT_EQ(parse_event_id("0"), 0);
  EXPECT_EQ(parse_event_id("17"), 17);
  EXPECT_EQ(parse_event_id(" 42\t"), 42);
  EXPECT_EQ(parse_event_id("999999999999999999"), 999999999999999999);
}

TEST(ParseEventId, RejectsAnythingElse) {
  for (const char* bad : {"", " ", "-1", "+1", "1.0", "0x10", "12a", "1 2", "9999999999999999999"})
    EXPECT_FALSE(parse_event_id(bad).has_value()) << "'" << bad << "'";
}

}  // namespace
}  // namespace hotswap::loadgen
