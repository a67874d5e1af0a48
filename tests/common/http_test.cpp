// common/http: the listener runtime outlives every listener, so closing a process's last
// listener cannot tear cpprest's asio server down under its connections' handlers; and a
// listener reads bodies up to its cap and refuses the rest without reading it.
#include <gtest/gtest.h>  // before cpprest, whose U() macro breaks gtest

#include <cpprest/details/http_server_api.h>
#include <cpprest/http_client.h>

#include <functional>

#include "common/http.h"
#include "tests/agent/server/http_test_client.h"

namespace hotswap::http {
namespace {

using web::http::experimental::details::http_server_api;
using hotswap::testing::HttpConnection;
using hotswap::testing::HttpResponse;

nlohmann::json no_error_body(const http_request&, int, const std::string&) { return nullptr; }

TEST(HttpListenerRuntime, StaysUpAfterTheLastListenerClosesAndServesTheNextOne) {
  for (int round = 0; round < 3; ++round) {
    const int port = pick_free_port().value();
    auto l = open_listener(
        "http://127.0.0.1:" + std::to_string(port),
        [](http_request req, std::string) { reply_json(req, web::http::status_codes::OK, {{"ok", true}}); },
        no_error_body);
    ASSERT_TRUE(l.ok()) << l.status().to_string();
    web::http::client::http_client client("http://127.0.0.1:" + std::to_string(port));
    EXPECT_EQ(client.request(web::http::methods::GET, "/").get().status_code(), 200);
    (*l)->close().wait();
    l->reset();
    // Our listener is gone; the runtime keeper still holds cpprest's server.
    EXPECT_TRUE(http_server_api::has_listener()) << "round " << round;
  }
}

TEST(HttpIoThreads, OutOfRangeCountsAreRefusedNamingTheFlagAndTheRange) {
  for (int64_t n : {int64_t{-1}, int64_t{0}, int64_t{1}, int64_t{kMaxIoThreads + 1}}) {
    Status st = set_io_threads(n, "--pool");
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << n;
    EXPECT_NE(st.message().find("--pool must be in 2..256, got " + std::to_string(n)), std::string::npos)
        << st.message();
  }
}

TEST(HttpIoThreads, ThePoolCannotBeResizedOnceItRuns) {
  keep_listener_runtime_alive();  // a listener is open: the pool runs
  Status st = set_io_threads(4);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.to_string();
  EXPECT_NE(st.message().find("--io-threads: cpprest's thread pool is already running"), std::string::npos)
      << st.message();
}

TEST(HttpListenerRuntime, AddressesThatCannotBeListenedOnAreUnavailableNamingThem) {
  auto l = open_listener("http://192.0.2.1:1", [](http_request, std::string) {}, no_error_body);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(l.status().message().find("cannot listen on http://192.0.2.1:1"), std::string::npos) << l.status().message();
}

// A listener with a small cap whose handler answers with the body it was given; its error
// replies say status and message.
class BodyCap : public ::testing::Test {
 protected:
  static constexpr size_t kCap = 64 << 10;
  void SetUp() override {
    port_ = pick_free_port().value();
    auto l = open_listener(
        "http://127.0.0.1:" + std::to_string(port_),
        [](http_request req, std::string body) {
          if (body == "throw") throw std::runtime_error("the handler failed");
          reply_json(req, web::http::status_codes::OK, {{"bytes", body.size()}, {"body", body}});
        },
        [](const http_request& req, int status, const std::string& message) {
          return nlohmann::json{{"status", status}, {"message", message}, {"path", req.relative_uri().path()}};
        },
        kCap);
    ASSERT_TRUE(l.ok()) << l.status().to_string();
    listener_ = std::move(l).value();
  }
  void TearDown() override {
    if (listener_) listener_->close().wait();
  }
  static std::string chunk(const std::string& data) {
    char size[32];
    std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
    return size + data + "\r\n";
  }
  static std::string head(const std::string& framing) {
    return "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + framing + "\r\n\r\n";
  }
  int port_ = 0;
  std::unique_ptr<Listener> listener_;
};

TEST_F(BodyCap, HandsTheHandlerAWholeBodyWithContentLengthOrChunked) {
  const std::string body(kCap, 'a');  // exactly the cap is allowed
  HttpResponse r = hotswap::testing::http_call(port_, "POST", "/x", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["bytes"], kCap);

  HttpConnection c(port_);
  ASSERT_TRUE(c.connected());
  std::string pieces;
  for (const char* part : {"{\"pro", "mpt\": ", "\"chunked\"}"}) pieces += chunk(part);
  auto sent = c.flood(head("Transfer-Encoding: chunked") + pieces + "0\r\n\r\n", [] { return std::string(); }, 0);
  EXPECT_FALSE(sent.peer_closed);
  HttpResponse cr;
  ASSERT_TRUE(c.read_head(&cr));
  ASSERT_EQ(cr.status, 200);
  EXPECT_EQ(nlohmann::json::parse(c.read_all_body())["body"], "{\"prompt\": \"chunked\"}");
}

// A client that offers far more than socket buffers hold and keeps sending: it gets its 413
// and the server hangs up long before it has taken it all.
void expect_refused_unread(int port, const std::string& head, const std::function<std::string()>& piece) {
  HttpConnection c(port, std::chrono::seconds(20));
  ASSERT_TRUE(c.connected());
  const size_t offered = size_t{64} << 20;
  auto sent = c.flood(head, piece, offered);
  EXPECT_TRUE(sent.peer_closed) << "the server went on reading: " << sent.body_bytes_sent << " bytes taken";
  EXPECT_LT(sent.body_bytes_sent, offered);
  HttpResponse r;
  ASSERT_TRUE(c.read_head(&r));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.headers["connection"], "close");
  auto body = nlohmann::json::parse(c.read_all_body());
  EXPECT_EQ(body["status"], 413);
  EXPECT_EQ(body["path"], "/x");
  EXPECT_EQ(body["message"], "the request body exceeds 65536 bytes");
}

TEST_F(BodyCap, RefusesAContentLengthOverTheCapAtOnceAndReadsNoFurther) {
  expect_refused_unread(port_, head("Content-Length: " + std::to_string(size_t{1} << 30)),
                        [] { return std::string(size_t{1} << 20, 'x'); });
}

TEST_F(BodyCap, RefusesAChunkedBodyOnceItPassesTheCapAndReadsNoFurther) {
  expect_refused_unread(port_, head("Transfer-Encoding: chunked"), [] { return chunk(std::string(16 << 10, 'x')); });
}

TEST_F(BodyCap, AHandlerThatThrowsGetsA500InTheServersShape) {
  HttpResponse r = hotswap::testing::http_call(port_, "POST", "/x", "throw");
  ASSERT_EQ(r.status, 500);
  auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["status"], 500);
  EXPECT_EQ(body["message"], "internal error: the handler failed");
}

TEST_F(BodyCap, ServesTheNextRequestOnAConnectionAfterABodyWithinTheCap) {
  HttpConnection c(port_);
  ASSERT_TRUE(c.connected());
  for (const std::string& body : {std::string("one"), std::string(kCap, 'b'), std::string("three")}) {
    ASSERT_TRUE(c.send_request("POST", "/x", body));
    HttpResponse r;
    ASSERT_TRUE(c.read_head(&r));
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(nlohmann::json::parse(c.read_all_body())["bytes"], body.size());
  }
}

}  // namespace
}  // namespace hotswap::http
