// common/http: the listener runtime outlives every listener, so closing a process's last
// listener cannot tear cpprest's asio server down under its connections' handlers.
#include <gtest/gtest.h>  // before cpprest, whose U() macro breaks gtest

#include <cpprest/details/http_server_api.h>
#include <cpprest/http_client.h>

#include "common/http.h"

namespace hotswap::http {
namespace {

using web::http::experimental::details::http_server_api;

TEST(HttpListenerRuntime, StaysUpAfterTheLastListenerClosesAndServesTheNextOne) {
  for (int round = 0; round < 3; ++round) {
    const int port = pick_free_port().value();
    auto l = open_listener(
        "http://127.0.0.1:" + std::to_string(port),
        [](http_request req) { reply_json(req, web::http::status_codes::OK, {{"ok", true}}); },
        [](http_request, const std::string&) {});
    ASSERT_TRUE(l.ok()) << l.status().to_string();
    web::http::client::http_client client("http://127.0.0.1:" + std::to_string(port));
    EXPECT_EQ(client.request(web::http::methods::GET, "/").get().status_code(), 200);
    (*l)->close().wait();
    l->reset();
    // Our listener is gone; the runtime keeper still holds cpprest's server.
    EXPECT_TRUE(http_server_api::has_listener()) << "round " << round;
  }
}

TEST(HttpListenerRuntime, AddressesThatCannotBeListenedOnAreUnavailableNamingThem) {
  auto l = open_listener("http://192.0.2.1:1", [](http_request) {}, [](http_request, const std::string&) {});
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(l.status().message().find("cannot listen on http://192.0.2.1:1"), std::string::npos) << l.status().message();
}

}  // namespace
}  // namespace hotswap::http
