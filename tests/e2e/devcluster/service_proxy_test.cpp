// The service proxy: endpoints read from slices (pure), and, against an in-process API server with
// the EndpointSlice controller, connections to <clusterIP>:<port> forwarded round robin to two
// small TCP servers on 127.0.1.x that answer with their name; readiness flips steering new
// connections within moments (measured); no ready endpoint and a dead endpoint resetting the
// client; half-close and a large transfer in both directions; a deleted Service's listener gone.
// gtest before cpprest (through rest_client.h), whose U() macro breaks gtest's templates.
#include <gtest/gtest.h>

#include "e2e/devcluster/nodes/service_proxy.h"

#include <cstring>
#include <iostream>
#include <random>

#include "e2e/devcluster/nodes/endpointslice_controller.h"
#include "tests/e2e/devcluster/endpoints_test_util.h"
#include "tests/e2e/devcluster/tcp_test_util.h"

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::Exchange;
using testing::free_port;
using testing::json;
using testing::kPodsRef;
using testing::kServicesRef;
using testing::ms_since;
using testing::name_of;
using testing::NameServer;
using testing::pod_object;
using testing::service_object;
using testing::set_pod_status;
using testing::tcp_exchange;

json slice(json ports, json endpoints, const std::string& type = "IPv4") {
  return {{"addressType", type}, {"ports", std::move(ports)}, {"endpoints", std::move(endpoints)}};
}
json endpoint(const std::string& ip, const std::string& pod, json conditions) {
  return {{"addresses", {ip}}, {"conditions", std::move(conditions)}, {"targetRef", {{"kind", "Pod"}, {"name", pod}}}};
}

TEST(ServiceProxyBackends, ReadyEndpointsByPortNameFromEverySlice) {
  const json http = json::array(
      {{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}, {{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}});
  const std::vector<json> slices = {
      slice(http,
            json::array({endpoint("127.0.1.2", "b", {{"ready", true}}),
                         endpoint("127.0.1.1", "a", json::object()),  // unset: ready
                         endpoint("127.0.1.3", "c", {{"ready", false}, {"serving", false}}),
                         endpoint("127.0.1.4", "d", {{"ready", false}, {"serving", true}, {"terminating", true}})})),
      slice(
          json::array({{{"name", "http"}, {"port", 9090}}}),
          json::array({endpoint("127.0.1.5", "e", {{"ready", true}}), endpoint("127.0.1.1", "a", {{"ready", true}})})),
      slice(http, json::array({endpoint("127.0.1.2", "b", {{"ready", true}})})),  // a duplicate: once
      slice(http, json::array({endpoint("::1", "v6", {{"ready", true}})}), "IPv6"),
  };
  const auto backends = proxy_backends(slices);
  ASSERT_EQ(backends.count("http"), 1u);
  EXPECT_EQ(backends.count("dns"), 0u);  // UDP is not proxied
  const auto& h = backends.at("http");
  std::vector<std::string> ready;
  for (const auto& b : h.ready) ready.push_back(b.address() + "/" + b.pod);
  EXPECT_EQ(ready,
            (std::vector<std::string>{"127.0.1.1:8080/a", "127.0.1.1:9090/a", "127.0.1.2:8080/b", "127.0.1.5:9090/e"}));
  ASSERT_EQ(h.serving_terminating.size(), 1u);
  EXPECT_EQ(h.serving_terminating[0].pod, "d");
  EXPECT_EQ(&h.usable(), &h.ready);

  // No ready endpoint: the serving terminating ones take new connections (kube-proxy's fallback).
  const auto draining = proxy_backends({slice(
      http, json::array({endpoint("127.0.1.4", "d", {{"ready", false}, {"serving", true}, {"terminating", true}})}))});
  EXPECT_EQ(draining.at("http").usable().size(), 1u);
}

class ServiceProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(a_.ok() && b_.ok()) << "cannot bind 127.0.1.201/202";
    ASSERT_TRUE(cluster_.start().ok());
    controller_ = std::make_unique<EndpointSliceController>(cluster_.client());
    ASSERT_TRUE(controller_->start().ok());
    proxy_ = std::make_unique<ServiceProxy>(cluster_.client());
    ASSERT_TRUE(proxy_->start().ok());
    ASSERT_TRUE(controller_->wait_for_sync(5s));
    ASSERT_TRUE(proxy_->wait_for_sync(5s));

    // A ClusterIP of our own choosing and a port free on it, so that concurrent runs on this
    // machine do not collide; every address of 127.0.0.0/8 is on lo.
    std::random_device rd;
    cluster_ip_ = "127.0.2." + std::to_string(2 + rd() % 250);
    port_ = free_port(cluster_ip_);
    ASSERT_GT(port_, 0) << "cannot bind " << cluster_ip_ << " (is 127.0.0.0/8 routed to lo?)";
    auto svc = cluster_.client().create(
        kServicesRef,
        service_object("echo", {{"app", "echo"}},
                       json::array({{{"name", "tcp"}, {"port", port_}, {"targetPort", "echo"}}}), cluster_ip_));
    ASSERT_TRUE(svc.ok()) << svc.status().to_string();
    for (const NameServer* s : {&a_, &b_}) {
      const std::string name = s == &a_ ? "a" : "b";
      auto p = cluster_.client().create(
          kPodsRef,
          pod_object(name, {{"app", "echo"}}, json::array({{{"name", "echo"}, {"containerPort", s->port()}}})));
      ASSERT_TRUE(p.ok()) << p.status().to_string();
      ASSERT_TRUE(set_pod_status(cluster_.client(), name, s->ip(), true).ok());
    }
    ASSERT_TRUE(eventually([&] { return proxy_->listeners().count(address()) == 1; }, 2000ms))
        << json(proxy_->listener_errors()).dump();
    ASSERT_TRUE(eventually([&] { return ready_count() == 2; }, 3000ms));
  }
  void TearDown() override {
    if (proxy_) proxy_->stop();
    if (controller_) controller_->stop();
    cluster_.stop();
  }

  std::string address() const { return cluster_ip_ + ":" + std::to_string(port_); }
  size_t ready_count() { return proxy_->backends("default/echo", "tcp").ready.size(); }
  Exchange call(const std::string& payload = "", bool half_close = true) {
    return tcp_exchange(cluster_ip_, port_, payload, half_close);
  }
  void set_ready(const NameServer& s, bool ready) {
    ASSERT_TRUE(set_pod_status(cluster_.client(), &s == &a_ ? "a" : "b", s.ip(), ready).ok());
  }

  NameServer a_{"127.0.1.201", "a"};
  NameServer b_{"127.0.1.202", "b"};
  testing::KubeTestCluster cluster_;
  std::unique_ptr<EndpointSliceController> controller_;
  std::unique_ptr<ServiceProxy> proxy_;
  std::string cluster_ip_;
  int port_ = 0;
};

TEST_F(ServiceProxyTest, ConnectionsAlternateBetweenReadyEndpoints) {
  std::vector<std::string> names;
  for (int i = 0; i < 6; ++i) {
    const Exchange e = call();
    ASSERT_EQ(e.connect_errno, 0) << std::strerror(e.connect_errno);
    ASSERT_FALSE(e.reset);
    names.push_back(name_of(e));
  }
  for (size_t i = 1; i < names.size(); ++i) EXPECT_NE(names[i], names[i - 1]) << json(names).dump();
  EXPECT_EQ(std::count(names.begin(), names.end(), "a"), 3);
  const auto counters = proxy_->counters("default/echo");
  EXPECT_EQ(counters.forwarded.at(a_.ip() + ":" + std::to_string(a_.port())), 3);
  EXPECT_EQ(counters.forwarded.at(b_.ip() + ":" + std::to_string(b_.port())), 3);
  EXPECT_EQ(counters.rejected, 0);
  EXPECT_TRUE(eventually([&] { return proxy_->open_connections() == 0; }, 1000ms));
}

TEST_F(ServiceProxyTest, NotReadyEndpointStopsGettingConnectionsWithinMoments) {
  // b's Ready goes False: measured from the status patch to the first of a run of connections
  // that all reach a (two in a row cannot both be a while round robin still has b).
  auto t0 = std::chrono::steady_clock::now();
  set_ready(b_, false);
  double switch_ms = -1;
  std::string previous;
  std::chrono::steady_clock::time_point run_start;
  for (int i = 0; i < 400 && ms_since(t0) < 2000; ++i) {
    const auto at = std::chrono::steady_clock::now();
    const std::string name = name_of(call());
    if (name == "a" && previous != "a") run_start = at;
    if (name == "a" && previous == "a") {
      switch_ms = std::chrono::duration<double, std::milli>(run_start - t0).count();
      break;
    }
    previous = name;
  }
  ASSERT_GE(switch_ms, 0) << "b still reached 2 s after its Ready went False";
  for (int i = 0; i < 6; ++i) EXPECT_EQ(name_of(call()), "a");

  // Back to Ready, then a goes: measured on the proxy's table, polled every millisecond.
  set_ready(b_, true);
  ASSERT_TRUE(eventually([&] { return ready_count() == 2; }, 2000ms, 1ms));
  t0 = std::chrono::steady_clock::now();
  set_ready(a_, false);
  ASSERT_TRUE(eventually([&] { return ready_count() == 1; }, 2000ms, 1ms));
  const double table_ms = ms_since(t0);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(name_of(call()), "b");
  std::cout << "[ measure  ] Ready False -> no new connection to that endpoint: " << switch_ms
            << " ms (by connections), " << table_ms << " ms (patch -> proxy table)\n";
  RecordProperty("switch_ms", std::to_string(switch_ms));
  RecordProperty("table_ms", std::to_string(table_ms));
  EXPECT_LT(switch_ms, 1000);
  EXPECT_LT(table_ms, 1000);
}

TEST_F(ServiceProxyTest, NoReadyEndpointOrADeadOneResetsTheClientAtOnce) {
  set_ready(a_, false);
  set_ready(b_, false);
  ASSERT_TRUE(eventually([&] { return ready_count() == 0; }, 2000ms));
  const Exchange e = call("", /*half_close=*/false);
  EXPECT_EQ(e.connect_errno, 0);  // the listener stays; the connection is reset at once
  EXPECT_TRUE(e.reset);
  EXPECT_EQ(e.data, "");
  EXPECT_LT(e.ms, 500);
  EXPECT_GE(proxy_->counters("default/echo").rejected, 1);

  // An endpoint nobody listens on: the client is reset too, and the failure counted.
  ASSERT_TRUE(set_pod_status(cluster_.client(), "a", "127.0.1.203", true).ok());
  ASSERT_TRUE(eventually([&] { return ready_count() == 1; }, 2000ms));
  const Exchange dead = call("", /*half_close=*/false);
  EXPECT_TRUE(dead.reset || dead.data.empty());
  EXPECT_EQ(dead.data, "");
  EXPECT_EQ(proxy_->counters("default/echo").upstream_failed, 1);
}

TEST_F(ServiceProxyTest, HalfCloseAndLargeTransfersPassThroughBothWays) {
  std::string payload(4 << 20, '\0');
  std::mt19937 rng(7);
  for (auto& ch : payload) ch = static_cast<char>(rng());
  const Exchange e = call(payload);
  ASSERT_FALSE(e.reset);
  const std::string name = name_of(e);
  ASSERT_TRUE(name == "a" || name == "b") << e.data.substr(0, 40);
  ASSERT_EQ(e.data.size(), name.size() + 1 + payload.size());
  EXPECT_TRUE(e.data.compare(name.size() + 1, std::string::npos, payload) == 0);

  // The endpoint closes first while the client still could send: the client sees EOF.
  const Exchange bye = call("bye", /*half_close=*/false);
  EXPECT_FALSE(bye.reset);
  EXPECT_EQ(bye.data.substr(bye.data.find('\n') + 1), "bye");
  EXPECT_LT(bye.ms, 1000);
  EXPECT_TRUE(eventually([&] { return proxy_->open_connections() == 0; }, 1000ms));
}

TEST_F(ServiceProxyTest, DeletedServiceStopsListening) {
  ASSERT_EQ(name_of(call()).size(), 1u);
  ASSERT_TRUE(cluster_.client().remove(kServicesRef.named("echo")).ok());
  ASSERT_TRUE(eventually([&] { return proxy_->listeners().count(address()) == 0; }, 2000ms));
  EXPECT_EQ(call().connect_errno, ECONNREFUSED);
}

}  // namespace
}  // namespace hotswap::devcluster
