// common/connection_guard: a real cpprest listener behind a guard on loopback. The guard
// relays requests and responses unchanged, and bounds what cpprest does not: connections,
// head sizes, slow heads and bodies, unread responses and idle connections.
#include <gtest/gtest.h>  // before cpprest, whose U() macro breaks gtest

#include "common/connection_guard.h"

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "common/http.h"
#include "tests/agent/server/http_test_client.h"

namespace hotswap::http {
namespace {

using hotswap::testing::HttpConnection;
using hotswap::testing::HttpResponse;
using std::chrono::milliseconds;

class Guarded : public ::testing::Test {
 protected:
  void start(ConnectionLimits limits) {
    for (int attempt = 0; attempt < 5 && !listener_; ++attempt) {
      upstream_port_ = pick_free_port().value();
      auto l = open_listener(
          "http://127.0.0.1:" + std::to_string(upstream_port_),
          [](http_request req, std::string body) {
            const std::string path = req.relative_uri().path();
            if (path == "/slow") std::this_thread::sleep_for(milliseconds(800));
            if (path == "/big") {
              web::http::http_response r(200);
              r.set_body(std::string(size_t{32} << 20, 'z'), "text/plain");
              req.reply(r);
              return;
            }
            reply_json(req, web::http::status_codes::OK, {{"path", path}, {"bytes", body.size()}});
          },
          [](const http_request&, int, const std::string& m) { return nlohmann::json{{"error", m}}; });
      if (l.ok()) listener_ = std::move(l).value();
    }
    ASSERT_TRUE(listener_);
    start_guard(limits, upstream_port_);
  }
  void start_guard(ConnectionLimits limits, int upstream_port) {
    GuardHooks hooks;
    hooks.error_body = [](int status, const std::string& message) {
      return nlohmann::json{{"guard", status}, {"message", message}}.dump();
    };
    hooks.on_event = [this](GuardEvent e) {
      std::lock_guard<std::mutex> lk(mu_);
      ++events_[guard_event_name(e)];
    };
    hooks.on_open_connections = [this](int n) { open_ = n; };
    auto g = ConnectionGuard::start("127.0.0.1", 0, upstream_port, limits, hooks);
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    guard_ = std::move(g).value();
  }
  void TearDown() override {
    if (guard_) guard_->stop();
    if (listener_) listener_->close().wait();
  }
  int events(const std::string& name) {
    std::lock_guard<std::mutex> lk(mu_);
    return events_[name];
  }
  // Reads until the guard closes the connection; its bytes, or what came before the deadline.
  static std::string read_to_close(HttpConnection& c, HttpResponse* r) {
    if (!c.read_head(r)) return "";
    return c.read_all_body();
  }
  bool eventually(const std::function<bool()>& f, milliseconds within = milliseconds(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
      if (f()) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return f();
  }

  int upstream_port_ = 0;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<ConnectionGuard> guard_;
  std::mutex mu_;
  std::map<std::string, int> events_;
  std::atomic<int> open_{0};
};

TEST_F(Guarded, RelaysRequestsAndResponsesUnchangedOnAKeptAliveConnection) {
  start({});
  HttpConnection c(guard_->port());
  ASSERT_TRUE(c.connected());
  for (const std::string& body : {std::string("{}"), std::string(100000, 'q'), std::string()}) {
    ASSERT_TRUE(c.send_request("POST", "/echo", body));
    HttpResponse r;
    ASSERT_TRUE(c.read_head(&r));
    ASSERT_EQ(r.status, 200);
    auto j = nlohmann::json::parse(c.read_all_body());
    EXPECT_EQ(j["path"], "/echo");
    EXPECT_EQ(j["bytes"], body.size());
  }
  EXPECT_EQ(open_.load(), 1);
  c.close();
  EXPECT_TRUE(eventually([&] { return open_.load() == 0; }));
  EXPECT_TRUE(events_.empty());
}

TEST_F(Guarded, AResponseTheServerIsStillWorkingOnHasNoTimeout) {
  ConnectionLimits l;
  l.header_timeout = l.body_timeout = l.idle_timeout = milliseconds(200);
  start(l);
  HttpResponse r = hotswap::testing::http_call(guard_->port(), "GET", "/slow");  // 800 ms of silence
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(events_.empty());
}

TEST_F(Guarded, TheConnectionPastTheLimitGets503AndTheNextAfterACloseIsServed) {
  ConnectionLimits l;
  l.max_connections = 2;
  start(l);
  HttpConnection a(guard_->port()), b(guard_->port());
  ASSERT_TRUE(eventually([&] { return open_.load() == 2; }));
  HttpConnection third(guard_->port());
  ASSERT_TRUE(third.send_request("GET", "/x"));
  HttpResponse r;
  std::string body = read_to_close(third, &r);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(r.headers["connection"], "close");
  EXPECT_NE(body.find("2 connections open, its limit"), std::string::npos) << body;
  EXPECT_EQ(events("too_many_connections"), 1);
  a.close();
  ASSERT_TRUE(eventually([&] { return open_.load() == 1; }));
  EXPECT_EQ(hotswap::testing::http_call(guard_->port(), "GET", "/x").status, 200);
}

TEST_F(Guarded, AHeadOverTheCapGets431AndTheServerNeverSeesIt) {
  ConnectionLimits l;
  l.max_header_bytes = 4096;
  start(l);
  HttpConnection c(guard_->port());
  ASSERT_TRUE(c.send_request("GET", "/x", "", {{"X-Big", std::string(8000, 'h')}}));
  HttpResponse r;
  std::string body = read_to_close(c, &r);
  EXPECT_EQ(r.status, 431);
  EXPECT_NE(body.find("the head is longer than 4096 bytes"), std::string::npos) << body;
  EXPECT_EQ(events("header_too_large"), 1);
  // Just under the cap is served.
  HttpResponse ok = hotswap::testing::http_call(guard_->port(), "GET", "/x", "", {{"X-Big", std::string(3900, 'h')}});
  EXPECT_EQ(ok.status, 200);
}

TEST_F(Guarded, AmbiguousFramingGets400) {
  start({});
  HttpConnection c(guard_->port());
  ASSERT_TRUE(c.flood("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                      [] { return std::string(); }, 0)
                  .body_bytes_sent == 0);
  HttpResponse r;
  std::string body = read_to_close(c, &r);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(body.find("both Content-Length and Transfer-Encoding"), std::string::npos) << body;
  EXPECT_EQ(events("bad_framing"), 1);
}

TEST_F(Guarded, SlowHeadsSilentConnectionsAndStalledBodiesGet408) {
  ConnectionLimits l;
  l.header_timeout = l.body_timeout = milliseconds(300);
  start(l);
  const auto t0 = std::chrono::steady_clock::now();
  {
    HttpConnection silent(guard_->port());  // says nothing at all
    HttpResponse r;
    read_to_close(silent, &r);
    EXPECT_EQ(r.status, 408);
  }
  {
    HttpConnection slow(guard_->port());
    slow.flood("GET /x HTTP/1.1\r\nHost: a\r\n", [] { return std::string(); }, 0);  // and no blank line
    HttpResponse r;
    std::string body = read_to_close(slow, &r);
    EXPECT_EQ(r.status, 408);
    EXPECT_NE(body.find("did not arrive within 300 ms"), std::string::npos) << body;
  }
  {
    HttpConnection stalled(guard_->port());
    stalled.flood("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789", [] { return std::string(); },
                  0);
    HttpResponse r;
    std::string body = read_to_close(stalled, &r);
    EXPECT_EQ(r.status, 408);
    EXPECT_NE(body.find("the request's body stalled"), std::string::npos) << body;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(events("header_timeout"), 2);
  EXPECT_EQ(events("body_timeout"), 1);
  EXPECT_TRUE(eventually([&] { return open_.load() == 0; }));
}

TEST_F(Guarded, AnIdleKeptAliveConnectionIsClosedWithoutAReply) {
  ConnectionLimits l;
  l.idle_timeout = milliseconds(300);
  start(l);
  HttpConnection c(guard_->port());
  ASSERT_TRUE(c.send_request("GET", "/x"));
  HttpResponse r;
  ASSERT_TRUE(c.read_head(&r));
  EXPECT_EQ(r.status, 200);
  c.read_all_body();
  HttpResponse none;
  EXPECT_FALSE(c.read_head(&none)) << "the guard closes silently";
  EXPECT_EQ(none.status, 0);
  EXPECT_EQ(events("idle"), 1);
}

TEST_F(Guarded, AClientThatLeavesAResponseUnreadIsHungUpOn) {
  ConnectionLimits l;
  l.send_timeout = milliseconds(300);
  start(l);
  HttpConnection c(guard_->port());
  ASSERT_TRUE(c.send_request("GET", "/big"));  // 32 MiB, never read
  EXPECT_TRUE(eventually([&] { return events("send_timeout") == 1; }, milliseconds(10000)));
  EXPECT_TRUE(eventually([&] { return open_.load() == 0; }));
}

TEST_F(Guarded, AServerThatCannotBeReachedGets502) {
  const int nothing_there = pick_free_port().value();
  start_guard({}, nothing_there);
  HttpConnection c(guard_->port());
  ASSERT_TRUE(c.send_request("GET", "/x"));
  HttpResponse r;
  std::string body = read_to_close(c, &r);
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(body.find("cannot be reached"), std::string::npos) << body;
  EXPECT_EQ(events("upstream_unreachable"), 1);
}

TEST_F(Guarded, StopClosesEveryConnection) {
  start({});
  HttpConnection c(guard_->port());
  ASSERT_TRUE(eventually([&] { return open_.load() == 1; }));
  guard_->stop();
  HttpResponse r;
  EXPECT_FALSE(c.read_head(&r));
  EXPECT_EQ(open_.load(), 0);
  HttpConnection after(guard_->port());
  EXPECT_FALSE(after.connected());
}

TEST(ConnectionGuard, AnAddressThatCannotBeListenedOnIsUnavailable) {
  auto g = ConnectionGuard::start("192.0.2.1", 1, 1, {}, {});
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(g.status().message().find("cannot listen on 192.0.2.1:1"), std::string::npos) << g.status().message();
}

}  // namespace
}  // namespace hotswap::http
