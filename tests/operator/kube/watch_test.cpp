#include <gtest/gtest.h>

#include "operator/kube/watch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "tests/operator/kube/fake_api_server.h"

namespace hotswap::kube {
namespace {

using fake::FakeApiServer;
using nlohmann::json;
using std::chrono::milliseconds;

const ResourceRef kPods = ResourceRef::core("pods");

json pod(const std::string& name, const std::string& phase = "Pending") {
  return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", name}}}, {"status", {{"phase", phase}}}};
}

// Collects what a stream delivers; every wait is bounded.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WatchEvent> events;
  std::optional<WatchOutcome> outcome;
  std::thread::id event_thread;
  int done_calls = 0;
  std::function<void(const WatchEvent&)> also;  // extra work inside the callback

  WatchStream::EventFn on_event() {
    return [this](const WatchEvent& e) {
      {
        std::lock_guard<std::mutex> lk(mu);
        events.push_back(e);
        event_thread = std::this_thread::get_id();
      }
      cv.notify_all();
      if (also) also(e);
    };
  }
  WatchStream::DoneFn on_done() {
    return [this](const WatchOutcome& o) {
      {
        std::lock_guard<std::mutex> lk(mu);
        outcome = o;
        ++done_calls;
      }
      cv.notify_all();
    };
  }
  bool wait_events(size_t n, milliseconds timeout = milliseconds(5000)) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, timeout, [&] { return events.size() >= n; });
  }
  bool wait_done(milliseconds timeout = milliseconds(5000)) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, timeout, [&] { return outcome.has_value(); });
  }
  size_t count() {
    std::lock_guard<std::mutex> lk(mu);
    return events.size();
  }
};

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = FakeApiServer::start();
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(s).value();
    ClusterConfig c;
    c.server = server_->url();
    c.token = "watch-token";
    auto client = RestClient::create(c);
    ASSERT_TRUE(client.ok()) << client.status().to_string();
    client_ = std::move(client).value();
  }
  std::unique_ptr<WatchStream> watch(Collector& col, ListOptions o, const ResourceRef& ref = kPods.in("a")) {
    auto w = WatchStream::start(*client_, ref, o, col.on_event(), col.on_done());
    EXPECT_TRUE(w.ok()) << w.status().to_string();
    return w.ok() ? std::move(w).value() : nullptr;
  }
  // Until the server has the watch open (its writer started), bounded.
  bool wait_open(int n = 1) {
    for (int i = 0; i < 250; ++i) {
      if (server_->open_watches() >= n) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }
  std::unique_ptr<FakeApiServer> server_;
  std::unique_ptr<RestClient> client_;
};

TEST_F(WatchTest, StreamsEventsInOrderAcrossChunkBoundaries) {
  server_->put("/api/v1", "pods", "a", pod("p0"));
  const std::string from = std::to_string(server_->resource_version());
  server_->set_split_events(true);  // every event arrives as two chunks cut mid-JSON
  Collector col;
  ListOptions o;
  o.resource_version = from;
  o.allow_watch_bookmarks = true;
  o.timeout_seconds = 30;
  auto w = watch(col, o);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(wait_open());
  server_->put("/api/v1", "pods", "a", pod("p1"));
  server_->put("/api/v1", "pods", "a", pod("p1", "Running"));
  server_->put("/api/v1", "pods", "other-namespace", pod("x"));  // not watched
  server_->erase("/api/v1", "pods", "a", "p0");
  ASSERT_TRUE(col.wait_events(3)) << col.count();
  {
    std::lock_guard<std::mutex> lk(col.mu);
    ASSERT_EQ(col.events.size(), 3u);
    EXPECT_EQ(col.events[0].type, WatchEventType::kAdded);
    EXPECT_EQ(col.events[0].object["metadata"]["name"], "p1");
    EXPECT_EQ(col.events[1].type, WatchEventType::kModified);
    EXPECT_EQ(col.events[1].object["status"]["phase"], "Running");
    EXPECT_EQ(col.events[2].type, WatchEventType::kDeleted);
    EXPECT_EQ(col.events[2].object["metadata"]["name"], "p0");
    EXPECT_NE(col.event_thread, std::this_thread::get_id());
  }
  const std::string last = std::to_string(server_->resource_version());
  w->cancel();
  ASSERT_TRUE(col.wait_done());
  EXPECT_EQ(col.outcome->end, WatchEnd::kCancelled);
  EXPECT_EQ(col.outcome->last_resource_version, last);
  EXPECT_EQ(col.outcome->events, 3);
  auto reqs = server_->requests();
  ASSERT_FALSE(reqs.empty());
  const auto& r = reqs.back();
  EXPECT_EQ(r.path, "/api/v1/namespaces/a/pods");
  EXPECT_EQ(r.query.at("watch"), "1");
  EXPECT_EQ(r.query.at("resourceVersion"), from);
  EXPECT_EQ(r.query.at("allowWatchBookmarks"), "true");
  EXPECT_EQ(r.query.at("timeoutSeconds"), "30");
  EXPECT_EQ(r.authorization, "Bearer watch-token");
}

TEST_F(WatchTest, WithoutResourceVersionStartsWithTheCurrentStateInOneChunk) {
  for (int i = 0; i < 4; ++i) server_->put("/api/v1", "pods", "a", pod("p" + std::to_string(i)));
  Collector col;
  auto w = watch(col, {});
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(col.wait_events(4));
  std::lock_guard<std::mutex> lk(col.mu);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(col.events[i].type, WatchEventType::kAdded);
    EXPECT_EQ(col.events[i].object["metadata"]["name"], "p" + std::to_string(i));
  }
}

TEST_F(WatchTest, BookmarksAdvanceTheResourceVersion) {
  ListOptions o;
  o.resource_version = std::to_string(server_->resource_version());
  o.allow_watch_bookmarks = true;
  Collector col;
  auto w = watch(col, o);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(wait_open());
  server_->put("/api/v1", "pods", "elsewhere", pod("x"));  // moves the resourceVersion, not our events
  server_->send_bookmarks();
  ASSERT_TRUE(col.wait_events(1));
  {
    std::lock_guard<std::mutex> lk(col.mu);
    EXPECT_EQ(col.events[0].type, WatchEventType::kBookmark);
    EXPECT_EQ(col.events[0].object["metadata"]["resourceVersion"], std::to_string(server_->resource_version()));
  }
  w->cancel();
  ASSERT_TRUE(col.wait_done());
  EXPECT_EQ(col.outcome->last_resource_version, std::to_string(server_->resource_version()));
}

TEST_F(WatchTest, TooOldResourceVersionIsExpired) {
  server_->put("/api/v1", "pods", "a", pod("p0"));
  const std::string old = std::to_string(server_->resource_version());
  server_->put("/api/v1", "pods", "a", pod("p1"));
  server_->compact();
  ListOptions o;
  o.resource_version = old;
  Collector col;
  auto w = watch(col, o);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(col.wait_done());
  EXPECT_EQ(col.outcome->end, WatchEnd::kExpired);
  EXPECT_EQ(col.outcome->error.http_code, 410);
  EXPECT_EQ(col.outcome->error.reason, "Expired");
  EXPECT_NE(col.outcome->status.message().find("too old resource version"), std::string::npos);
  EXPECT_EQ(col.count(), 0u);  // the ERROR is an outcome, not an event
}

TEST_F(WatchTest, HttpStatusesEndTheWatchWithTheServersMessage) {
  server_->set_hook([](const fake::Recorded& r) -> std::optional<fake::Reply> {
    if (r.path == "/api/v1/namespaces/forbidden/pods") {
      return fake::Reply{
          403, fake::status_object(403, "Forbidden", "pods is forbidden: User \"x\" cannot watch resource \"pods\"")};
    }
    if (r.path == "/api/v1/namespaces/gone/pods") return fake::Reply{410, fake::status_object(410, "Gone", "gone")};
    if (r.path == "/api/v1/namespaces/garbage/pods") return fake::Reply{200, json("this is not an event\n")};
    if (r.path == "/api/v1/namespaces/error/pods") {
      return fake::Reply{
          200,
          json(json{{"type", "ERROR"}, {"object", fake::status_object(500, "InternalError", "etcd is down")}}.dump() +
               "\n")};
    }
    return std::nullopt;
  });
  {
    Collector col;
    auto w = watch(col, {}, kPods.in("forbidden"));
    ASSERT_TRUE(col.wait_done());
    EXPECT_EQ(col.outcome->end, WatchEnd::kFailed);
    EXPECT_EQ(col.outcome->error.http_code, 403);
    EXPECT_NE(col.outcome->status.message().find("cannot watch resource"), std::string::npos);
  }
  {
    Collector col;
    auto w = watch(col, {}, kPods.in("gone"));
    ASSERT_TRUE(col.wait_done());
    EXPECT_EQ(col.outcome->end, WatchEnd::kExpired);
  }
  {
    Collector col;
    auto w = watch(col, {}, kPods.in("garbage"));
    ASSERT_TRUE(col.wait_done());
    EXPECT_EQ(col.outcome->end, WatchEnd::kFailed);
    EXPECT_EQ(col.outcome->status.code(), StatusCode::kDataLoss);
  }
  {
    Collector col;
    auto w = watch(col, {}, kPods.in("error"));
    ASSERT_TRUE(col.wait_done());
    EXPECT_EQ(col.outcome->end, WatchEnd::kFailed);
    EXPECT_EQ(col.outcome->error.http_code, 500);
    EXPECT_NE(col.outcome->status.message().find("etcd is down"), std::string::npos);
  }
}

TEST_F(WatchTest, ServerEndIsClosedAndACutIsFailed) {
  ListOptions o;
  o.resource_version = std::to_string(server_->resource_version());
  Collector closed, cut;
  auto w1 = watch(closed, o);
  ASSERT_TRUE(wait_open(1));
  server_->end_watches();
  ASSERT_TRUE(closed.wait_done());
  EXPECT_EQ(closed.outcome->end, WatchEnd::kClosed);
  EXPECT_TRUE(closed.outcome->status.ok());

  auto w2 = watch(cut, o);
  ASSERT_TRUE(wait_open(1));
  server_->put("/api/v1", "pods", "a", pod("p"));
  ASSERT_TRUE(cut.wait_events(1));
  server_->break_watches();
  ASSERT_TRUE(cut.wait_done());
  EXPECT_EQ(cut.outcome->end, WatchEnd::kFailed);
  EXPECT_EQ(cut.outcome->events, 1);
  EXPECT_EQ(cut.outcome->last_resource_version, std::to_string(server_->resource_version()));
}

TEST_F(WatchTest, TimeoutSecondsEndsTheWatchCleanly) {
  ListOptions o;
  o.resource_version = std::to_string(server_->resource_version());
  o.timeout_seconds = 1;
  Collector col;
  auto t0 = std::chrono::steady_clock::now();
  auto w = watch(col, o);
  ASSERT_TRUE(col.wait_done(milliseconds(5000)));
  EXPECT_EQ(col.outcome->end, WatchEnd::kClosed);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(900));
}

TEST_F(WatchTest, CancelFromTheCallbackStopsDelivery) {
  ListOptions o;
  o.resource_version = std::to_string(server_->resource_version());
  Collector col;
  WatchStream* raw = nullptr;
  col.also = [&](const WatchEvent&) { raw->cancel(); };
  auto w = watch(col, o);
  ASSERT_NE(w, nullptr);
  raw = w.get();
  ASSERT_TRUE(wait_open());
  // Both events go out in one chunk; only the first is delivered.
  server_->set_split_events(false);
  server_->put("/api/v1", "pods", "a", pod("p1"));
  server_->put("/api/v1", "pods", "a", pod("p2"));
  ASSERT_TRUE(col.wait_done());
  EXPECT_EQ(col.outcome->end, WatchEnd::kCancelled);
  EXPECT_EQ(col.count(), 1u);
  EXPECT_TRUE(w->wait(milliseconds(2000)));
}

TEST_F(WatchTest, DestroyingTheStreamInItsCallbackSkipsOnDone) {
  ListOptions o;
  o.resource_version = std::to_string(server_->resource_version());
  Collector col;
  std::mutex mu;
  std::unique_ptr<WatchStream> owned;
  col.also = [&](const WatchEvent&) {
    std::lock_guard<std::mutex> lk(mu);
    owned.reset();
  };
  {
    std::lock_guard<std::mutex> lk(mu);
    owned = watch(col, o);
    ASSERT_NE(owned, nullptr);
  }
  ASSERT_TRUE(wait_open());
  server_->put("/api/v1", "pods", "a", pod("p1"));
  ASSERT_TRUE(col.wait_events(1));
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (!owned) break;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::this_thread::sleep_for(milliseconds(400));  // long enough for a stray on_done to show
  std::lock_guard<std::mutex> lk(col.mu);
  EXPECT_EQ(col.done_calls, 0);
}

// A server that accepts the connection and never answers: cancel and the destructor must not hang.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 16);  // the kernel completes handshakes; nobody ever reads
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(WatchCancel, IsPromptAgainstASilentServer) {
  SilentServer silent;
  ClusterConfig c;
  c.server = silent.url();
  auto client = RestClient::create(c);
  ASSERT_TRUE(client.ok());
  Collector col;
  auto w = WatchStream::start(**client, kPods, {}, col.on_event(), col.on_done());
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_FALSE(col.wait_done(milliseconds(10)));
  auto t0 = std::chrono::steady_clock::now();
  (*w)->cancel();
  ASSERT_TRUE((*w)->wait(milliseconds(2000)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1000));
  EXPECT_EQ(col.outcome->end, WatchEnd::kCancelled);

  // And the destructor alone, with no cancel() first.
  Collector col2;
  auto w2 = WatchStream::start(**client, kPods, {}, col2.on_event(), col2.on_done());
  ASSERT_TRUE(w2.ok());
  std::this_thread::sleep_for(milliseconds(100));
  t0 = std::chrono::steady_clock::now();
  w2->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1000));
  EXPECT_EQ(col2.outcome->end, WatchEnd::kCancelled);
}

TEST(WatchStart, RefusesANamedObject) {
  ClusterConfig c;
  c.server = "http://127.0.0.1:1";
  auto client = RestClient::create(c);
  ASSERT_TRUE(client.ok());
  auto w = WatchStream::start(**client, kPods.in("a").named("p"), {}, nullptr, nullptr);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("metadata.name=p"), std::string::npos);
}

}  // namespace
}  // namespace hotswap::kube
