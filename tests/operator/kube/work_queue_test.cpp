#include <gtest/gtest.h>

#include "operator/kube/work_queue.h"

#include <atomic>
#include <map>
#include <set>
#include <thread>
#include <vector>

namespace hotswap::kube {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

TEST(WorkQueue, DeduplicatesWhileQueuedAndKeepsOrder) {
  WorkQueue q;
  q.add("a/1");
  q.add("a/2");
  q.add("a/1");
  EXPECT_EQ(q.len(), 2u);
  EXPECT_EQ(q.get(milliseconds(10)).value(), "a/1");
  EXPECT_EQ(q.get(milliseconds(10)).value(), "a/2");
  EXPECT_FALSE(q.get(milliseconds(10)).has_value());
}

TEST(WorkQueue, NeverHandsOneKeyToTwoWorkers) {
  WorkQueue q;
  q.add("k");
  auto first = q.get(milliseconds(10));
  ASSERT_TRUE(first.has_value());
  q.add("k");  // changed while a worker holds it
  q.add("k");
  EXPECT_EQ(q.len(), 0u);
  EXPECT_FALSE(q.get(milliseconds(30)).has_value());  // held: not handed out again
  q.done("k");
  EXPECT_EQ(q.len(), 1u);  // once, however often it was added meanwhile
  EXPECT_EQ(q.get(milliseconds(10)).value(), "k");
  q.done("k");
  EXPECT_FALSE(q.get(milliseconds(10)).has_value());
}

TEST(WorkQueue, AddAfterDelaysAndTheEarliestTimeWins) {
  WorkQueue q;
  auto t0 = Clock::now();
  q.add_after("late", milliseconds(150));
  q.add_after("soon", milliseconds(400));
  q.add_after("soon", milliseconds(60));    // earlier: replaces
  q.add_after("soon", milliseconds(1000));  // later: ignored
  EXPECT_EQ(q.waiting_count(), 2u);
  EXPECT_FALSE(q.get(milliseconds(20)).has_value());
  auto a = q.get(milliseconds(2000));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(*a, "soon");
  EXPECT_GE(Clock::now() - t0, milliseconds(60));
  auto b = q.get(milliseconds(2000));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(*b, "late");
  EXPECT_GE(Clock::now() - t0, milliseconds(150));
  EXPECT_LT(Clock::now() - t0, milliseconds(900));  // not the ignored later time
  EXPECT_EQ(q.waiting_count(), 0u);
}

TEST(WorkQueue, AWaiterWakesForADelayedKeyAddedWhileItSleeps) {
  WorkQueue q;
  std::optional<std::string> got;
  auto t0 = Clock::now();
  std::thread worker([&] { got = q.get(milliseconds(3000)); });
  std::this_thread::sleep_for(milliseconds(30));
  q.add_after("k", milliseconds(50));
  worker.join();
  ASSERT_TRUE(got.has_value());
  EXPECT_LT(Clock::now() - t0, milliseconds(1000));
}

TEST(WorkQueue, RateLimitedBackoffDoublesPerKeyUpToTheCapAndForgetResets) {
  WorkQueue q(WorkQueueOptions{milliseconds(10), milliseconds(50)});
  std::vector<int64_t> delays;
  for (int i = 0; i < 5; ++i) delays.push_back(q.add_rate_limited("k").count());
  EXPECT_EQ(delays, (std::vector<int64_t>{10, 20, 40, 50, 50}));
  EXPECT_EQ(q.num_requeues("k"), 5);
  EXPECT_EQ(q.add_rate_limited("other").count(), 10);  // per key
  q.forget("k");
  EXPECT_EQ(q.num_requeues("k"), 0);
  EXPECT_EQ(q.add_rate_limited("k").count(), 10);
  // A huge failure count stays at the cap (no overflow).
  WorkQueue big(WorkQueueOptions{milliseconds(5), milliseconds(300000)});
  int64_t last = 0;
  for (int i = 0; i < 200; ++i) last = big.add_rate_limited("x").count();
  EXPECT_EQ(last, 300000);
}

TEST(WorkQueue, RateLimitedKeyArrivesAfterItsDelay) {
  WorkQueue q(WorkQueueOptions{milliseconds(80), milliseconds(1000)});
  auto t0 = Clock::now();
  q.add_rate_limited("k");
  auto k = q.get(milliseconds(2000));
  ASSERT_TRUE(k.has_value());
  EXPECT_GE(Clock::now() - t0, milliseconds(80));
}

TEST(WorkQueue, ShutdownWakesEveryWaiter) {
  WorkQueue q;
  std::atomic<int> woke{0};
  std::vector<std::thread> workers;
  auto t0 = Clock::now();
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back([&] {
      if (!q.get(milliseconds(10000)).has_value()) woke.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(milliseconds(50));
  q.shutdown();
  for (auto& w : workers) w.join();
  EXPECT_EQ(woke.load(), 4);
  EXPECT_LT(Clock::now() - t0, milliseconds(2000));
  EXPECT_TRUE(q.shutting_down());
  q.add("late");  // dropped
  EXPECT_EQ(q.len(), 0u);
  EXPECT_FALSE(q.get(milliseconds(10)).has_value());
}

TEST(WorkQueue, ManyWorkersProcessEveryKeyWithoutOverlap) {
  WorkQueue q;
  std::mutex mu;
  std::set<std::string> in_flight;
  std::map<std::string, int> processed;
  std::atomic<bool> overlap{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      for (;;) {
        auto key = q.get(milliseconds(5000));
        if (!key) return;
        {
          std::lock_guard<std::mutex> lk(mu);
          if (!in_flight.insert(*key).second) overlap = true;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        {
          std::lock_guard<std::mutex> lk(mu);
          in_flight.erase(*key);
          processed[*key]++;
        }
        q.done(*key);
      }
    });
  }
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 10; ++k) q.add("key-" + std::to_string(k));
    std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
  // Bounded wait until everything added has been processed and nothing is queued or held.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline && (q.len() > 0 || q.processing_count() > 0)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  q.shutdown();
  for (auto& w : workers) w.join();
  EXPECT_FALSE(overlap.load());
  ASSERT_EQ(processed.size(), 10u);
  for (const auto& [k, n] : processed) {
    EXPECT_GE(n, 1) << k;
    EXPECT_LE(n, 20) << k;  // deduplicated: never more than it was added
  }
}

}  // namespace
}  // namespace hotswap::kube
