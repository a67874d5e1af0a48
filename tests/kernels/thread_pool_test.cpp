#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <stdexcept>
#include <utility>
#include <thread>
#include <vector>
#include <chrono>
#include <mutex>

namespace hotswap::kernels {
namespace {

std::vector<std::pair<int64_t, int64_t>> record_ranges(ThreadPool& pool, int64_t n, int64_t grain = 1) {
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  pool.parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        std::lock_guard<std::mutex> lk(mu);
        ranges.emplace_back(b, e);
      },
      grain);
  std::sort(ranges.begin(), ranges.end());
  return ranges;
}

TEST(ThreadPoolTest, SizeCountsTheCallerThread) {
  ThreadPool one(1);
  EXPECT_EQ(one.size(), 1);
  ThreadPool four(4);
  EXPECT_EQ(four.size(), 4);
  ThreadPool dflt(0);
  EXPECT_GE(dflt.size(), 1);
}

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 4, 7}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 3, 5, 8, 13, 100, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n;
    }
  }
}

TEST(ThreadPoolTest, ChunkBoundariesDependOnlyOnNSizeAndGrain) {
  ThreadPool pool(4);
  for (int64_t n : {4, 10, 37, 1000}) {
    const auto first = record_ranges(pool, n);
    for (int rep = 0; rep < 20; ++rep) ASSERT_EQ(record_ranges(pool, n), first);
    const auto [count, size] = pool.chunking(n, 1);
    ASSERT_EQ(static_cast<int64_t>(first.size()), count);
    // Contiguous; every chunk but the last has the chunk size.
    int64_t expect_begin = 0;
    for (size_t i = 0; i < first.size(); ++i) {
      EXPECT_EQ(first[i].first, expect_begin);
      if (i + 1 < first.size()) {
        EXPECT_EQ(first[i].second - first[i].first, size);
      }
      expect_begin = first[i].second;
    }
    EXPECT_EQ(expect_begin, n);
  }
  ThreadPool other(4);
  EXPECT_EQ(record_ranges(other, 37), record_ranges(pool, 37));
}

TEST(ThreadPoolTest, SeveralThreadsTakeChunks) {
  ThreadPool pool(3);
  std::mutex mu;
  std::set<std::thread::id> ids;
  pool.parallel_for(12, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lk(mu);
      ids.insert(std::this_thread::get_id());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  });
  EXPECT_GE(ids.size(), 2u);
}

TEST(ThreadPoolTest, AStalledThreadsShareIsTakenOver) {
  // The thread that takes chunk 0 stalls (as if preempted); with fixed per-thread ranges it
  // would still owe the chunks after it. Here the other thread runs all of them meanwhile.
  ThreadPool pool(2);
  std::vector<std::thread::id> ran_on(8);
  pool.parallel_for(8, [&](int64_t b, int64_t) {
    ran_on[static_cast<size_t>(b)] = std::this_thread::get_id();
    if (b == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  });
  for (size_t i = 1; i < ran_on.size(); ++i) EXPECT_NE(ran_on[i], ran_on[0]) << "chunk " << i;
}

TEST(ThreadPoolTest, RangesAreNotSplitBelowMinGrain) {
  ThreadPool pool(4);
  const auto ranges = record_ranges(pool, 10, 4);
  ASSERT_EQ(ranges.size(), 2u);
  for (const auto& [b, e] : ranges) EXPECT_GE(e - b, 4);
  EXPECT_EQ(record_ranges(pool, 7, 4).size(), 1u);
  EXPECT_EQ(record_ranges(pool, 100, 1000).size(), 1u);
}

TEST(ThreadPoolTest, SmallWorkRunsInlineOnTheCaller) {
  ThreadPool pool(4);
  std::thread::id seen;
  pool.parallel_for(1, [&](int64_t, int64_t) { seen = std::this_thread::get_id(); });
  EXPECT_EQ(seen, std::this_thread::get_id());
  int calls = 0;
  pool.parallel_for(0, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPoolTest, ManyBackToBackCallsAllComplete) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int rep = 0; rep < 20000; ++rep) {
    pool.parallel_for(8, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  }
  EXPECT_EQ(total.load(), 8 * 20000);
}

TEST(ThreadPoolTest, ConcurrentCallersAreSerialised) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  std::atomic<int> in_flight[2] = {0, 0};
  std::atomic<bool> overlapped{false};
  auto caller = [&](int me) {
    for (int rep = 0; rep < 2000; ++rep) {
      pool.parallel_for(6, [&](int64_t b, int64_t e) {
        in_flight[me].fetch_add(1);
        if (in_flight[1 - me].load() != 0) overlapped.store(true);
        total.fetch_add(e - b);
        in_flight[me].fetch_sub(1);
      });
    }
  };
  std::thread a(caller, 0);
  std::thread b(caller, 1);
  a.join();
  b.join();
  EXPECT_FALSE(overlapped.load());
  EXPECT_EQ(total.load(), 2 * 2000 * 6);
}

TEST(ThreadPoolTest, FreeFunctionRunsInlineWithoutAPool) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  parallel_for(nullptr, 5, [&](int64_t b, int64_t e) { ranges.emplace_back(b, e); });
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], std::make_pair(int64_t{0}, int64_t{5}));
}

TEST(ThreadPoolTest, ExceptionOnTheCallerWaitsForAllChunksThenPropagates) {
  ThreadPool pool(2);
  const auto caller = std::this_thread::get_id();
  std::atomic<int> calls{0};
  EXPECT_THROW(pool.parallel_for(8,
                                 [&](int64_t, int64_t) {
                                   calls.fetch_add(1);
                                   std::this_thread::sleep_for(std::chrono::milliseconds(2));
                                   if (std::this_thread::get_id() == caller) throw std::runtime_error("boom");
                                 }),
               std::runtime_error);
  EXPECT_EQ(calls.load(), 8);
  std::atomic<int> after{0};
  pool.parallel_for(2, [&](int64_t b, int64_t e) { after.fetch_add(static_cast<int>(e - b)); });
  EXPECT_EQ(after.load(), 2);
}

TEST(ThreadPoolTest, ConstructAndDestroyRepeatedly) {
  for (int rep = 0; rep < 200; ++rep) {
    ThreadPool pool(3);
    if (rep % 2 == 0) {
      std::atomic<int> n{0};
      pool.parallel_for(3, [&](int64_t b, int64_t e) { n.fetch_add(static_cast<int>(e - b)); });
      ASSERT_EQ(n.load(), 3);
    }
  }
}

}  // namespace
}  // namespace hotswap::kernels
