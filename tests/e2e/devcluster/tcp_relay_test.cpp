// TcpRelay, the service proxy's sockets, on its own: relaying to the chosen backend through small
// buffers, the outcome hooks, refusals (no backend, over capacity, a dead backend), listeners
// following set_listeners, and a bind failure reported and retried. Suites are named
// ServiceProxy* so that they run with the proxy's tests.
#include "e2e/devcluster/nodes/tcp_relay.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <random>

#include "tests/e2e/devcluster/endpoints_test_util.h"
#include "tests/e2e/devcluster/tcp_test_util.h"

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::Exchange;
using testing::free_port;
using testing::name_of;
using testing::NameServer;
using testing::tcp_exchange;

// What the hooks saw, and where choose() sends each route.
struct Recorder {
  std::mutex mu;
  std::map<std::string, RelayEndpoint> targets;  // route -> backend; missing: none
  std::map<std::string, int> connected, failed, refused;

  TcpRelayHooks hooks() {
    TcpRelayHooks h;
    h.choose = [this](const std::string& route) -> std::optional<RelayEndpoint> {
      std::lock_guard<std::mutex> lk(mu);
      auto it = targets.find(route);
      if (it == targets.end()) return std::nullopt;
      return it->second;
    };
    h.on_connected = [this](const std::string& route, const std::string& backend) {
      std::lock_guard<std::mutex> lk(mu);
      connected[route + " " + backend]++;
    };
    h.on_connect_failed = [this](const std::string& route, const std::string& backend) {
      std::lock_guard<std::mutex> lk(mu);
      failed[route + " " + backend]++;
    };
    h.on_refused = [this](const std::string& route) {
      std::lock_guard<std::mutex> lk(mu);
      refused[route]++;
    };
    return h;
  }
  void route(const std::string& name, RelayEndpoint backend) {
    std::lock_guard<std::mutex> lk(mu);
    targets[name] = std::move(backend);
  }
  int count(std::map<std::string, int> Recorder::*which, const std::string& key) {
    std::lock_guard<std::mutex> lk(mu);
    auto it = (this->*which).find(key);
    return it == (this->*which).end() ? 0 : it->second;
  }
};

class ServiceProxyRelayTest : public ::testing::Test {
 protected:
  void start(TcpRelayOptions options = {}) {
    relay_ = std::make_unique<TcpRelay>(options, recorder_.hooks());
    ASSERT_TRUE(relay_->start().ok());
  }
  RelayListener listener(const std::string& route) {
    const int port = free_port(ip_);
    EXPECT_GT(port, 0);
    return {{ip_, port}, route};
  }
  bool listening(const RelayListener& l) {
    return eventually([&] { return relay_->listeners().count(l.address.address()) == 1; }, 2000ms);
  }

  std::string ip_ = "127.0.2." + std::to_string(2 + std::random_device()() % 250);
  Recorder recorder_;
  NameServer a_{"127.0.1.211", "a"};
  NameServer b_{"127.0.1.212", "b"};
  std::unique_ptr<TcpRelay> relay_;
};

TEST_F(ServiceProxyRelayTest, RelaysToTheChosenBackendThroughSmallBuffers) {
  TcpRelayOptions o;
  o.buffer_bytes = 4096;  // many rounds per connection: backpressure both ways
  start(o);
  const RelayListener l = listener("r");
  recorder_.route("r", {a_.ip(), a_.port()});
  relay_->set_listeners({l});
  ASSERT_TRUE(listening(l)) << ::testing::PrintToString(relay_->listener_errors());

  std::string payload(3 << 20, '\0');
  std::mt19937 rng(3);
  for (auto& ch : payload) ch = static_cast<char>(rng());
  const Exchange e = tcp_exchange(l.address.ip, l.address.port, payload);
  ASSERT_FALSE(e.reset);
  ASSERT_EQ(name_of(e), "a");
  ASSERT_EQ(e.data.size(), 2 + payload.size());
  EXPECT_TRUE(e.data.compare(2, std::string::npos, payload) == 0);
  EXPECT_EQ(recorder_.count(&Recorder::connected, "r " + a_.ip() + ":" + std::to_string(a_.port())), 1);
  EXPECT_TRUE(eventually([&] { return relay_->open_connections() == 0; }, 1000ms));
}

TEST_F(ServiceProxyRelayTest, ResetsWithoutBackendOverCapacityAndWhenTheBackendRefuses) {
  TcpRelayOptions o;
  o.max_connections = 1;
  start(o);
  const RelayListener l = listener("r");
  relay_->set_listeners({l});
  ASSERT_TRUE(listening(l));

  // No backend for the route.
  Exchange e = tcp_exchange(l.address.ip, l.address.port, "", /*half_close=*/false);
  EXPECT_EQ(e.connect_errno, 0);
  EXPECT_TRUE(e.reset);
  EXPECT_EQ(recorder_.count(&Recorder::refused, "r"), 1);

  // A backend that refuses: the client is reset and the failure reported.
  const int dead_port = free_port("127.0.1.213");
  recorder_.route("r", {"127.0.1.213", dead_port});
  e = tcp_exchange(l.address.ip, l.address.port, "", /*half_close=*/false);
  EXPECT_TRUE(e.reset || e.data.empty());
  EXPECT_EQ(e.data, "");
  EXPECT_EQ(recorder_.count(&Recorder::failed, "r 127.0.1.213:" + std::to_string(dead_port)), 1);

  // Over capacity: one connection held open, the next is reset.
  recorder_.route("r", {a_.ip(), a_.port()});
  const int held = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(l.address.port));
  ::inet_pton(AF_INET, l.address.ip.c_str(), &addr.sin_addr);
  ASSERT_EQ(::connect(held, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  char hello[2] = {};
  pollfd p{held, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);  // relayed end to end: the backend's name arrived
  ASSERT_EQ(::recv(held, hello, sizeof hello, MSG_WAITALL), 2);
  ASSERT_EQ(relay_->open_connections(), 1u);
  e = tcp_exchange(l.address.ip, l.address.port, "", /*half_close=*/false);
  EXPECT_TRUE(e.reset);
  EXPECT_EQ(recorder_.count(&Recorder::refused, "r"), 2);
  ::close(held);
  EXPECT_TRUE(eventually([&] { return relay_->open_connections() == 0; }, 2000ms));
  EXPECT_EQ(name_of(tcp_exchange(l.address.ip, l.address.port)), "a");
}

TEST_F(ServiceProxyRelayTest, ListenersFollowSetListeners) {
  start();
  const RelayListener first = listener("a");
  RelayListener second = listener("b");
  recorder_.route("a", {a_.ip(), a_.port()});
  recorder_.route("b", {b_.ip(), b_.port()});
  relay_->set_listeners({first});
  ASSERT_TRUE(listening(first));
  EXPECT_EQ(name_of(tcp_exchange(first.address.ip, first.address.port)), "a");

  relay_->set_listeners({second});
  ASSERT_TRUE(listening(second));
  EXPECT_EQ(relay_->listeners().count(first.address.address()), 0u);
  EXPECT_EQ(tcp_exchange(first.address.ip, first.address.port).connect_errno, ECONNREFUSED);
  EXPECT_EQ(name_of(tcp_exchange(second.address.ip, second.address.port)), "b");

  // The same address, another route: taken at once, no rebind.
  second.route = "a";
  relay_->set_listeners({second});
  ASSERT_TRUE(eventually([&] { return relay_->listeners()[second.address.address()] == "a"; }, 2000ms));
  EXPECT_EQ(name_of(tcp_exchange(second.address.ip, second.address.port)), "a");
}

TEST_F(ServiceProxyRelayTest, BindFailureIsReportedAndRetried) {
  TcpRelayOptions o;
  o.bind_retry = 50ms;
  start(o);
  const RelayListener l = listener("r");
  // Someone else holds the address.
  const int squatter = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(l.address.port));
  ::inet_pton(AF_INET, l.address.ip.c_str(), &addr.sin_addr);
  ASSERT_EQ(::bind(squatter, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(squatter, 4), 0);
  relay_->set_listeners({l});
  ASSERT_TRUE(eventually([&] { return relay_->listener_errors().count(l.address.address()) == 1; }, 2000ms));
  EXPECT_NE(relay_->listener_errors()[l.address.address()].find("Address already in use"), std::string::npos)
      << relay_->listener_errors()[l.address.address()];
  ::close(squatter);
  ASSERT_TRUE(listening(l));
  EXPECT_TRUE(relay_->listener_errors().empty());
}

}  // namespace
}  // namespace hotswap::devcluster
