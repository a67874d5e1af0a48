#include <gtest/gtest.h>

#include "operator/kube/leader_election.h"

#include <atomic>
#include <regex>
#include <thread>

#include "tests/operator/kube/fake_api_server.h"

namespace hotswap::kube {
namespace {

using fake::FakeApiServer;
using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

const char* kLeasePrefix = "/apis/coordination.k8s.io/v1";
const char* kLeasePath = "/apis/coordination.k8s.io/v1/namespaces/hotswap/leases/operator";

class LeaderElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = FakeApiServer::start();
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(s).value();
    ClusterConfig c;
    c.server = server_->url();
    auto client = RestClient::create(c);
    ASSERT_TRUE(client.ok()) << client.status().to_string();
    client_ = std::move(client).value();
  }

  // Short timings: a 1 s lease, renewed every 200 ms, given up after 600 ms without renewal.
  LeaderElectionConfig config(const std::string& identity) {
    LeaderElectionConfig c;
    c.lease_namespace = "hotswap";
    c.lease_name = "operator";
    c.identity = identity;
    c.lease_duration = milliseconds(1000);
    c.renew_deadline = milliseconds(600);
    c.retry_period = milliseconds(200);
    return c;
  }
  std::unique_ptr<LeaderElector> elector(LeaderElectionConfig c) {
    auto e = LeaderElector::create(*client_, std::move(c));
    EXPECT_TRUE(e.ok()) << e.status().to_string();
    return e.ok() ? std::move(e).value() : nullptr;
  }
  LeaseRecord lease() {
    auto l = server_->object(kLeasePrefix, "leases", "hotswap", "operator");
    return l ? LeaseRecord::from_lease(*l) : LeaseRecord{};
  }
  template <typename Fn>
  bool eventually(Fn fn, milliseconds timeout = milliseconds(5000)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (fn()) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return fn();
  }
  std::unique_ptr<FakeApiServer> server_;
  std::unique_ptr<RestClient> client_;
};

TEST_F(LeaderElectionTest, CreatesTheLeaseLeadsAndRenews) {
  std::atomic<int> started{0}, stopped{0};
  auto c = config("op-a");
  c.on_started_leading = [&] { started++; };
  c.on_stopped_leading = [&] { stopped++; };
  auto e = elector(c);
  ASSERT_NE(e, nullptr);
  e->start();
  ASSERT_TRUE(eventually([&] { return e->is_leader(); }));
  EXPECT_EQ(started.load(), 1);
  EXPECT_EQ(e->leader(), "op-a");
  LeaseRecord first = lease();
  EXPECT_EQ(first.holder_identity, "op-a");
  EXPECT_EQ(first.lease_duration_seconds, 1);
  EXPECT_EQ(first.lease_transitions, 0);
  const std::regex micro_time(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)");
  EXPECT_TRUE(std::regex_match(first.acquire_time, micro_time)) << first.acquire_time;
  EXPECT_TRUE(std::regex_match(first.renew_time, micro_time)) << first.renew_time;
  EXPECT_EQ(server_->count("POST", "/apis/coordination.k8s.io/v1/namespaces/hotswap/leases"), 1);

  ASSERT_TRUE(eventually([&] { return lease().renew_time != first.renew_time; }));
  LeaseRecord renewed = lease();
  EXPECT_EQ(renewed.acquire_time, first.acquire_time);  // a renewal keeps the acquire time
  EXPECT_EQ(renewed.lease_transitions, 0);
  EXPECT_GE(server_->count("PUT", kLeasePath), 1);

  e->stop();
  EXPECT_EQ(stopped.load(), 1);
  EXPECT_FALSE(e->is_leader());
  LeaseRecord released = lease();
  EXPECT_EQ(released.holder_identity, "");
  EXPECT_EQ(released.lease_transitions, 0);
}

TEST_F(LeaderElectionTest, TwoCandidatesNeverLeadTogetherAndHandOver) {
  std::atomic<int> a_started{0}, b_started{0}, a_stopped{0}, b_stopped{0};
  std::mutex seen_mu;
  std::vector<std::string> a_saw;
  auto ca = config("op-a");
  ca.on_started_leading = [&] { a_started++; };
  ca.on_stopped_leading = [&] { a_stopped++; };
  ca.on_new_leader = [&](const std::string& id) {
    std::lock_guard<std::mutex> lk(seen_mu);
    a_saw.push_back(id);
  };
  auto cb = config("op-b");
  cb.on_started_leading = [&] { b_started++; };
  cb.on_stopped_leading = [&] { b_stopped++; };
  auto a = elector(ca);
  auto b = elector(cb);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  a->start();
  b->start();
  ASSERT_TRUE(eventually([&] { return a->is_leader() || b->is_leader(); }));
  // For a while (several renewals and a full lease duration), never both.
  bool both = false;
  for (int i = 0; i < 150; ++i) {
    if (a->is_leader() && b->is_leader()) both = true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_FALSE(both);
  LeaderElector* leader = a->is_leader() ? a.get() : b.get();
  LeaderElector* follower = leader == a.get() ? b.get() : a.get();
  const std::string leader_id = leader == a.get() ? "op-a" : "op-b";
  const std::string follower_id = leader == a.get() ? "op-b" : "op-a";
  EXPECT_FALSE(follower->is_leader());
  EXPECT_EQ(lease().holder_identity, leader_id);
  EXPECT_EQ(follower->leader(), leader_id);
  EXPECT_EQ(a_started.load() + b_started.load(), 1);

  // The leader stops and releases; the follower takes over without waiting out the lease.
  auto t0 = Clock::now();
  leader->stop();
  EXPECT_EQ(a_stopped.load() + b_stopped.load(), 1);
  ASSERT_TRUE(eventually([&] { return follower->is_leader(); }, milliseconds(3000)));
  EXPECT_LT(Clock::now() - t0, milliseconds(1000));  // a retry period or so, not a lease duration
  EXPECT_EQ(lease().holder_identity, follower_id);
  EXPECT_EQ(lease().lease_transitions, 1);
  // is_leader() turns true just before on_started_leading runs, on the elector's thread.
  EXPECT_TRUE(eventually([&] { return a_started.load() + b_started.load() == 2; }, milliseconds(1000)));
  if (leader == b.get()) {
    std::lock_guard<std::mutex> lk(seen_mu);
    EXPECT_EQ(a_saw.front(), "op-b");  // a saw b lead before it led itself
  }
  follower->stop();
}

TEST_F(LeaderElectionTest, TakesOverALeaseOnlyAfterItsHolderStopsRenewing) {
  json ghost = {{"apiVersion", "coordination.k8s.io/v1"},
                {"kind", "Lease"},
                {"metadata", {{"name", "operator"}}},
                {"spec",
                 {{"holderIdentity", "ghost"},
                  {"leaseDurationSeconds", 1},
                  {"acquireTime", "2020-01-01T00:00:00.000000Z"},
                  {"renewTime", "2020-01-01T00:00:00.000000Z"},
                  {"leaseTransitions", 4}}}};
  server_->put(kLeasePrefix, "leases", "hotswap", ghost);
  auto e = elector(config("op-a"));
  ASSERT_NE(e, nullptr);
  auto t0 = Clock::now();
  e->start();
  // The old renewTime is not trusted (clocks differ): it waits a lease duration of its own.
  std::this_thread::sleep_for(milliseconds(600));
  EXPECT_FALSE(e->is_leader());
  EXPECT_EQ(e->leader(), "ghost");
  ASSERT_TRUE(eventually([&] { return e->is_leader(); }));
  EXPECT_GE(Clock::now() - t0, milliseconds(1000));
  LeaseRecord now = lease();
  EXPECT_EQ(now.holder_identity, "op-a");
  EXPECT_EQ(now.lease_transitions, 5);
  EXPECT_NE(now.acquire_time, "2020-01-01T00:00:00.000000Z");
  e->stop();
}

TEST_F(LeaderElectionTest, AStaleUpdateGetsConflictAndTheCandidateStaysAFollower) {
  json released = {{"apiVersion", "coordination.k8s.io/v1"},
                   {"kind", "Lease"},
                   {"metadata", {{"name", "operator"}}},
                   {"spec", {{"holderIdentity", ""}, {"leaseDurationSeconds", 1}, {"leaseTransitions", 2}}}};
  server_->put(kLeasePrefix, "leases", "hotswap", released);
  // Between our read and our write, another candidate takes the lease.
  std::atomic<bool> raced{false};
  std::atomic<int> conflicts{0};
  FakeApiServer* srv = server_.get();
  server_->set_hook([&, srv](const fake::Recorded& r) -> std::optional<fake::Reply> {
    if (r.method == "PUT" && r.path == kLeasePath && !raced.exchange(true)) {
      json other = *srv->object(kLeasePrefix, "leases", "hotswap", "operator");
      other["spec"]["holderIdentity"] = "op-b";
      other["spec"]["leaseTransitions"] = 3;
      srv->put(kLeasePrefix, "leases", "hotswap", other);
      conflicts++;
    }
    return std::nullopt;  // the store now answers 409 to the stale write
  });
  auto e = elector(config("op-a"));
  ASSERT_NE(e, nullptr);
  auto first = e->try_acquire_or_renew();  // driven by hand: not started
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_FALSE(*first);
  EXPECT_EQ(conflicts.load(), 1);
  EXPECT_FALSE(e->is_leader());
  EXPECT_EQ(lease().holder_identity, "op-b");
  EXPECT_EQ(lease().lease_transitions, 3);
  // The next round reads op-b's fresh lease and does not even try to write.
  int puts = server_->count("PUT", kLeasePath);
  auto second = e->try_acquire_or_renew();
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second);
  EXPECT_EQ(server_->count("PUT", kLeasePath), puts);
  EXPECT_EQ(e->leader(), "op-b");
}

TEST_F(LeaderElectionTest, StopsLeadingWhenItCannotRenewAndLeadsAgainLater) {
  std::atomic<int> started{0}, stopped{0};
  auto c = config("op-a");
  c.on_started_leading = [&] { started++; };
  c.on_stopped_leading = [&] { stopped++; };
  auto e = elector(c);
  ASSERT_NE(e, nullptr);
  e->start();
  ASSERT_TRUE(eventually([&] { return e->is_leader(); }));
  std::atomic<bool> down{true};
  server_->set_hook([&](const fake::Recorded& r) -> std::optional<fake::Reply> {
    if (down.load() && r.path.find("/leases") != std::string::npos) {
      return fake::Reply{503, fake::status_object(503, "ServiceUnavailable", "apiserver is restarting")};
    }
    return std::nullopt;
  });
  auto t0 = Clock::now();
  ASSERT_TRUE(eventually([&] { return !e->is_leader(); }));
  EXPECT_LT(Clock::now() - t0, milliseconds(1000));  // within the renew deadline (600 ms) and a bit
  ASSERT_TRUE(eventually([&] { return stopped.load() == 1; }));
  down = false;
  ASSERT_TRUE(eventually([&] { return e->is_leader() && started.load() == 2; }));
  EXPECT_EQ(lease().holder_identity, "op-a");
  EXPECT_EQ(lease().lease_transitions, 0);  // it was ours all along
  e->stop();
}

TEST_F(LeaderElectionTest, RejectsBadConfigs) {
  auto bad = [&](LeaderElectionConfig c, const std::string& mention) {
    auto e = LeaderElector::create(*client_, c);
    ASSERT_FALSE(e.ok()) << mention;
    EXPECT_NE(e.status().message().find(mention), std::string::npos) << e.status().message();
  };
  auto c = config("");
  bad(c, "identity");
  c = config("x");
  c.lease_name = "";
  bad(c, "name must be set");
  c = config("x");
  c.renew_deadline = c.lease_duration;
  bad(c, "greater than renew_deadline");
  c = config("x");
  c.retry_period = milliseconds(550);
  bad(c, "1.2 * retry_period");
  c = config("x");
  c.lease_duration = milliseconds(500);
  c.renew_deadline = milliseconds(300);
  c.retry_period = milliseconds(100);
  bad(c, "at least 1 s");
}

}  // namespace
}  // namespace hotswap::kube
