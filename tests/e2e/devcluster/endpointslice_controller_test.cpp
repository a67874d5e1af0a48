// The EndpointSlice controller: the desired slices and Endpoints as pure functions (selection,
// ready / serving / terminating, named target ports, terminal Pods), and the controller against an
// in-process API server through operator/kube (slices follow Pods and readiness, go away with
// their Service or its selector, are not duplicated under churn).
// gtest before cpprest (through rest_client.h), whose U() macro breaks gtest's templates.
#include <gtest/gtest.h>

#include "e2e/devcluster/nodes/endpointslice_controller.h"

#include <iostream>

#include "tests/e2e/devcluster/endpoints_test_util.h"

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::json;
using testing::kEndpointsRef;
using testing::kPodsRef;
using testing::kServicesRef;
using testing::kSlicesRef;
using testing::ms_since;
using testing::pod_object;
using testing::service_object;
using testing::set_pod_status;

json service(json ports = json::array({{{"name", "http"}, {"port", 80}, {"targetPort", 8080}}})) {
  json s = service_object("web", {{"app", "web"}}, std::move(ports));
  s["metadata"]["namespace"] = "default";
  s["metadata"]["uid"] = "svc-uid";
  s["spec"]["clusterIP"] = "127.0.2.7";
  return s;
}

json pod(const std::string& name, const std::string& ip, bool ready, json labels = {{"app", "web"}}) {
  json p = pod_object(name, std::move(labels), json::array(), "node-1");
  p["metadata"]["namespace"] = "default";
  p["metadata"]["uid"] = name + "-uid";
  p["status"] = {{"phase", "Running"},
                 {"podIP", ip},
                 {"conditions", json::array({{{"type", "Ready"}, {"status", ready ? "True" : "False"}}})}};
  return p;
}

json with_named_port(json p, int port, const std::string& protocol = "TCP") {
  p["spec"]["containers"][0]["ports"] =
      json::array({{{"name", "http"}, {"containerPort", port}, {"protocol", protocol}}});
  return p;
}

json conditions(bool ready, bool serving, bool terminating) {
  return {{"ready", ready}, {"serving", serving}, {"terminating", terminating}};
}

TEST(EndpointSliceDesired, ListsSelectedLivePodsWithReadyServingTerminating) {
  json deleting = pod("c", "127.0.1.3", true);
  deleting["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z";
  json succeeded = pod("f", "127.0.1.6", true);
  succeeded["status"]["phase"] = "Succeeded";
  json failed = pod("g", "127.0.1.7", false);
  failed["status"]["phase"] = "Failed";
  json elsewhere = pod("h", "127.0.1.8", true);
  elsewhere["metadata"]["namespace"] = "other";
  const std::vector<json> pods = {pod("b", "127.0.1.2", false),
                                  deleting,
                                  pod("a", "127.0.1.1", true),
                                  pod("d", "127.0.1.4", true, {{"app", "db"}}),
                                  pod("e", "", true),
                                  succeeded,
                                  failed,
                                  elsewhere};

  const auto slices = desired_endpoint_slices(service(), pods);
  ASSERT_EQ(slices.size(), 1u);
  const json& s = slices[0];
  EXPECT_EQ(s["apiVersion"], "discovery.k8s.io/v1");
  EXPECT_EQ(s["kind"], "EndpointSlice");
  EXPECT_EQ(s["metadata"]["generateName"], "web-");
  EXPECT_EQ(s["metadata"]["namespace"], "default");
  EXPECT_EQ(s["metadata"]["labels"],
            json({{"team", "serving"},
                  {"kubernetes.io/service-name", "web"},
                  {"endpointslice.kubernetes.io/managed-by", "endpointslice-controller.hotswap.io"}}));
  EXPECT_EQ(s["metadata"]["ownerReferences"], json::array({{{"apiVersion", "v1"},
                                                            {"kind", "Service"},
                                                            {"name", "web"},
                                                            {"uid", "svc-uid"},
                                                            {"controller", true},
                                                            {"blockOwnerDeletion", true}}}));
  EXPECT_EQ(s["addressType"], "IPv4");
  EXPECT_EQ(s["ports"], json::array({{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}}));
  ASSERT_EQ(s["endpoints"].size(), 3u);  // a, b, c: not d (labels), e (no IP), f, g (terminal), h (namespace)
  const json& a = s["endpoints"][0];
  EXPECT_EQ(a["addresses"], json::array({"127.0.1.1"}));
  EXPECT_EQ(a["conditions"], conditions(true, true, false));
  EXPECT_EQ(a["nodeName"], "node-1");
  EXPECT_EQ(a["targetRef"], json({{"kind", "Pod"}, {"namespace", "default"}, {"name", "a"}, {"uid", "a-uid"}}));
  EXPECT_EQ(s["endpoints"][1]["targetRef"]["name"], "b");
  EXPECT_EQ(s["endpoints"][1]["conditions"], conditions(false, false, false));
  EXPECT_EQ(s["endpoints"][2]["targetRef"]["name"], "c");
  EXPECT_EQ(s["endpoints"][2]["conditions"], conditions(false, true, true));  // draining: serving, not ready
}

TEST(EndpointSliceDesired, NamedTargetPortResolvesPerPodAndSplitsSlicesByPortSet) {
  json svc = service(
      json::array({{{"name", "http"}, {"port", 80}, {"targetPort", "http"}}, {{"name", "metrics"}, {"port", 9100}}}));
  const std::vector<json> pods = {
      with_named_port(pod("a", "127.0.1.1", true), 8080), with_named_port(pod("b", "127.0.1.2", true), 9090),
      with_named_port(pod("c", "127.0.1.3", true), 8080), with_named_port(pod("d", "127.0.1.4", true), 8080, "UDP"),
      pod("e", "127.0.1.5", true)};
  EXPECT_EQ(resolve_target_port(svc["spec"]["ports"][0], pods[0]), 8080);
  EXPECT_EQ(resolve_target_port(svc["spec"]["ports"][0], pods[3]), std::nullopt);  // a UDP port of that name
  EXPECT_EQ(resolve_target_port(svc["spec"]["ports"][1], pods[4]), 9100);          // no targetPort: the port
  EXPECT_EQ(resolve_target_port({{"port", 80}, {"targetPort", 81}}, pods[4]), 81);

  const auto slices = desired_endpoint_slices(svc, pods);
  ASSERT_EQ(slices.size(), 3u);
  std::map<json, std::vector<std::string>> by_ports;
  for (const auto& s : slices)
    for (const auto& e : s["endpoints"]) by_ports[s["ports"]].push_back(e["targetRef"]["name"]);
  const json metrics = {{"name", "metrics"}, {"port", 9100}, {"protocol", "TCP"}};
  auto http = [](int port) { return json({{"name", "http"}, {"port", port}, {"protocol", "TCP"}}); };
  EXPECT_EQ(by_ports[json::array({http(8080), metrics})], (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(by_ports[json::array({http(9090), metrics})], (std::vector<std::string>{"b"}));
  // No port named http: the Pod serves the Service's other ports only, as in Kubernetes.
  EXPECT_EQ(by_ports[json::array({metrics})], (std::vector<std::string>{"d", "e"}));
}

TEST(EndpointSliceDesired, NoSelectedPodGivesOneEmptyPlaceholderSlice) {
  const auto slices = desired_endpoint_slices(service(), {pod("x", "127.0.1.9", true, {{"app", "other"}})});
  ASSERT_EQ(slices.size(), 1u);
  EXPECT_EQ(slices[0]["endpoints"], json::array());
  EXPECT_EQ(slices[0]["ports"], json::array());
  EXPECT_FALSE(service_has_managed_endpoints(service_object("s", nullptr, json::array())));
  json external = service();
  external["spec"]["type"] = "ExternalName";
  EXPECT_FALSE(service_has_managed_endpoints(external));
}

TEST(EndpointSliceDesired, PublishNotReadyAddressesMakesEveryEndpointReady) {
  json svc = service();
  svc["spec"]["publishNotReadyAddresses"] = true;
  json deleting = pod("c", "127.0.1.3", false);
  deleting["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z";
  const auto slices = desired_endpoint_slices(svc, {pod("b", "127.0.1.2", false), deleting});
  ASSERT_EQ(slices.size(), 1u);
  EXPECT_EQ(slices[0]["endpoints"][0]["conditions"], conditions(true, true, false));
  EXPECT_EQ(slices[0]["endpoints"][1]["conditions"], conditions(true, true, true));
}

TEST(EndpointSliceDesired, LegacyEndpointsSplitReadyFromNotReadyAndLeaveTerminatingOut) {
  json deleting = pod("c", "127.0.1.3", true);
  deleting["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z";
  const json ep = desired_endpoints(service(), {pod("b", "127.0.1.2", false), deleting, pod("a", "127.0.1.1", true)});
  EXPECT_EQ(ep["kind"], "Endpoints");
  EXPECT_EQ(ep["metadata"]["name"], "web");
  EXPECT_EQ(ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"], "true");
  ASSERT_EQ(ep["subsets"].size(), 1u);
  const json& subset = ep["subsets"][0];
  EXPECT_EQ(subset["ports"], json::array({{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}}));
  ASSERT_EQ(subset["addresses"].size(), 1u);
  EXPECT_EQ(subset["addresses"][0],
            json({{"ip", "127.0.1.1"},
                  {"nodeName", "node-1"},
                  {"targetRef", {{"kind", "Pod"}, {"namespace", "default"}, {"name", "a"}, {"uid", "a-uid"}}}}));
  ASSERT_EQ(subset["notReadyAddresses"].size(), 1u);
  EXPECT_EQ(subset["notReadyAddresses"][0]["ip"], "127.0.1.2");

  const json none = desired_endpoints(service(), {});
  EXPECT_EQ(none["subsets"], json::array());
}

TEST(EndpointSliceDesired, UpToDateComparesContentNotServerMetadata) {
  const json desired = desired_endpoint_slices(service(), {pod("a", "127.0.1.1", true)})[0];
  json stored = desired;
  stored["metadata"]["name"] = "web-x7k2p";
  stored["metadata"]["resourceVersion"] = "42";
  stored["metadata"]["uid"] = "u";
  stored["metadata"]["creationTimestamp"] = "2030-01-01T00:00:00Z";
  stored["metadata"].erase("generateName");
  EXPECT_TRUE(endpoint_slice_up_to_date(stored, desired));
  stored["endpoints"][0]["conditions"]["ready"] = false;
  EXPECT_FALSE(endpoint_slice_up_to_date(stored, desired));

  const json ep = desired_endpoints(service(), {});
  json stored_ep = ep;
  stored_ep.erase("subsets");  // an empty list the server did not keep
  stored_ep["metadata"]["resourceVersion"] = "7";
  EXPECT_TRUE(endpoints_up_to_date(stored_ep, ep));
}

// ---- Against an API server ------------------------------------------------------------------

class EndpointSliceControllerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster_.start().ok()); }
  void TearDown() override {
    if (controller_) controller_->stop();
    cluster_.stop();
  }
  void start_controller() {
    controller_ = std::make_unique<EndpointSliceController>(client());
    ASSERT_TRUE(controller_->start().ok());
    ASSERT_TRUE(controller_->wait_for_sync(5s));
  }
  const kube::RestClient& client() { return cluster_.client(); }

  json create(const kube::ResourceRef& ref, const json& object) {
    auto r = client().create(ref, object);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? r.value() : json();
  }
  std::vector<json> slices_of(const std::string& service) {
    kube::ListOptions o;
    o.label_selector = "kubernetes.io/service-name=" + service;
    auto r = client().list(kSlicesRef, o);
    if (!r.ok()) return {};
    return r.value()["items"].get<std::vector<json>>();
  }
  // The conditions of each endpoint of the service's slices, by Pod name.
  std::map<std::string, json> endpoint_conditions(const std::string& service) {
    std::map<std::string, json> out;
    for (const auto& s : slices_of(service))
      for (const auto& e : s.value("endpoints", json::array())) out[e["targetRef"]["name"]] = e["conditions"];
    return out;
  }
  json endpoints_object(const std::string& name) {
    auto r = client().get(kEndpointsRef.named(name));
    return r.ok() ? r.value() : json();
  }

  testing::KubeTestCluster cluster_;
  std::unique_ptr<EndpointSliceController> controller_;
};

TEST_F(EndpointSliceControllerTest, SliceFollowsPodsAndTheirReadiness) {
  start_controller();
  const json svc = create(
      kServicesRef,
      service_object("web", {{"app", "web"}}, json::array({{{"name", "http"}, {"port", 80}, {"targetPort", "http"}}})));
  const json named = json::array({{{"name", "http"}, {"containerPort", 8080}}});
  create(kPodsRef, pod_object("p1", {{"app", "web"}}, named, "node-1"));
  create(kPodsRef, pod_object("p2", {{"app", "web"}}, named, "node-1"));
  create(kPodsRef, pod_object("other", {{"app", "db"}}, named, "node-1"));
  ASSERT_TRUE(set_pod_status(client(), "p1", "127.0.1.11", true).ok());
  ASSERT_TRUE(set_pod_status(client(), "p2", "127.0.1.12", false).ok());
  ASSERT_TRUE(set_pod_status(client(), "other", "127.0.1.13", true).ok());

  ASSERT_TRUE(eventually([&] {
    auto c = endpoint_conditions("web");
    return c.size() == 2 && c["p1"] == conditions(true, true, false) && c["p2"] == conditions(false, false, false);
  })) << json(slices_of("web")).dump();
  const auto slices = slices_of("web");
  ASSERT_EQ(slices.size(), 1u);
  const json& s = slices[0];
  EXPECT_EQ(s["metadata"]["name"].get<std::string>().rfind("web-", 0), 0u);
  EXPECT_EQ(s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.hotswap.io");
  EXPECT_EQ(s["metadata"]["ownerReferences"][0]["uid"], svc["metadata"]["uid"]);
  EXPECT_EQ(s["ports"], json::array({{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}}));
  for (const auto& e : s["endpoints"]) {
    EXPECT_EQ(e["nodeName"], "node-1");
    EXPECT_EQ(e["addresses"][0], e["targetRef"]["name"] == "p1" ? "127.0.1.11" : "127.0.1.12");
  }
  ASSERT_TRUE(eventually([&] {
    const json ep = endpoints_object("web");
    return ep.contains("subsets") && ep["subsets"].size() == 1 &&
           ep["subsets"][0].value("addresses", json::array()).size() == 1 &&
           ep["subsets"][0].value("notReadyAddresses", json::array()).size() == 1;
  })) << endpoints_object("web").dump();
  EXPECT_EQ(endpoints_object("web")["subsets"][0]["addresses"][0]["ip"], "127.0.1.11");

  // Readiness flips: the slice follows.
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(set_pod_status(client(), "p1", "127.0.1.11", false).ok());
  ASSERT_TRUE(
      eventually([&] { return endpoint_conditions("web")["p1"] == conditions(false, false, false); }, 2000ms, 1ms));
  const double not_ready_ms = ms_since(t0);
  t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(set_pod_status(client(), "p2", "127.0.1.12", true).ok());
  ASSERT_TRUE(
      eventually([&] { return endpoint_conditions("web")["p2"] == conditions(true, true, false); }, 2000ms, 1ms));
  const double ready_ms = ms_since(t0);
  std::cout << "[ measure  ] status patch -> slice on the server: Ready False " << not_ready_ms << " ms, Ready True "
            << ready_ms << " ms\n";
  RecordProperty("not_ready_to_slice_ms", std::to_string(not_ready_ms));

  // A deleted Pod (bound to a node: it has a grace period) is terminating: serving, not ready.
  ASSERT_TRUE(set_pod_status(client(), "p1", "127.0.1.11", true).ok());
  ASSERT_TRUE(client().remove(kPodsRef.named("p1")).ok());
  ASSERT_TRUE(eventually([&] { return endpoint_conditions("web")["p1"] == conditions(false, true, true); }))
      << json(slices_of("web")).dump();
  ASSERT_TRUE(eventually([&] {
    const json ep = endpoints_object("web");  // the legacy object leaves terminating Pods out
    return ep["subsets"].size() == 1 && ep["subsets"][0].value("addresses", json::array()).size() == 1 &&
           ep["subsets"][0]["addresses"][0]["ip"] == "127.0.1.12";
  })) << endpoints_object("web").dump();

  // A finished Pod is no endpoint.
  ASSERT_TRUE(set_pod_status(client(), "p2", "127.0.1.12", false, "Succeeded").ok());
  ASSERT_TRUE(eventually([&] {
    auto c = endpoint_conditions("web");
    return c.size() == 1 && c.count("p1");
  }));

  // Settled: no more writes (nothing rewritten in a loop).
  ASSERT_TRUE(eventually([&] {
    const auto before = controller_->stats().writes;
    std::this_thread::sleep_for(300ms);
    return controller_->stats().writes == before;
  }));
  EXPECT_EQ(slices_of("web").size(), 1u);
}

TEST_F(EndpointSliceControllerTest, SlicesGoWithTheirServiceOrItsSelector) {
  // A slice of ours left from a Service that no longer exists: removed once the controller runs.
  json stale = desired_endpoint_slices(service(), {})[0];
  stale["metadata"]["labels"]["kubernetes.io/service-name"] = "gone";
  stale["metadata"].erase("ownerReferences");
  create(kSlicesRef, stale);
  start_controller();
  EXPECT_TRUE(eventually([&] { return slices_of("gone").empty(); }));

  create(kServicesRef, service_object("api", {{"app", "api"}}, json::array({{{"port", 81}}})));
  create(kPodsRef, pod_object("a1", {{"app", "api"}}));
  ASSERT_TRUE(set_pod_status(client(), "a1", "127.0.1.21", true).ok());
  ASSERT_TRUE(eventually([&] { return endpoint_conditions("api").size() == 1; }));
  EXPECT_EQ(slices_of("api")[0]["ports"], json::array({{{"name", ""}, {"port", 81}, {"protocol", "TCP"}}}));

  // Selector removed: the slices go; the Endpoints are the user's now (kube leaves them).
  ASSERT_TRUE(
      client().patch(kServicesRef.named("api"), kube::PatchType::kMerge, {{"spec", {{"selector", nullptr}}}}).ok());
  ASSERT_TRUE(eventually([&] { return slices_of("api").empty(); }));
  EXPECT_FALSE(endpoints_object("api").is_null());

  // Back, then the Service deleted: slices and Endpoints go.
  ASSERT_TRUE(
      client()
          .patch(kServicesRef.named("api"), kube::PatchType::kMerge, {{"spec", {{"selector", {{"app", "api"}}}}}})
          .ok());
  ASSERT_TRUE(eventually([&] { return endpoint_conditions("api").size() == 1; }));
  ASSERT_TRUE(client().remove(kServicesRef.named("api")).ok());
  EXPECT_TRUE(eventually([&] { return slices_of("api").empty() && endpoints_object("api").is_null(); }));
}

TEST_F(EndpointSliceControllerTest, ChurnDoesNotDuplicateSlices) {
  start_controller();
  create(kServicesRef, service_object("churn", {{"app", "churn"}},
                                      json::array({{{"name", "http"}, {"port", 80}, {"targetPort", "http"}}})));
  // Two port sets (the named port differs): two slices, each exactly once.
  for (int i = 0; i < 6; ++i) {
    const std::string name = "c" + std::to_string(i);
    create(kPodsRef,
           pod_object(name, {{"app", "churn"}}, json::array({{{"name", "http"}, {"containerPort", 8000 + i % 2}}})));
    ASSERT_TRUE(set_pod_status(client(), name, "127.0.1." + std::to_string(30 + i), i % 3 != 0).ok());
  }
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(set_pod_status(client(), "c" + std::to_string(i), "127.0.1." + std::to_string(30 + i), true).ok());
  ASSERT_TRUE(eventually([&] {
    auto c = endpoint_conditions("churn");
    if (c.size() != 6) return false;
    for (auto& [name, cond] : c)
      if (cond != conditions(true, true, false)) return false;
    return slices_of("churn").size() == 2;
  })) << json(slices_of("churn")).dump();
  std::this_thread::sleep_for(300ms);
  const auto slices = slices_of("churn");
  ASSERT_EQ(slices.size(), 2u);
  std::set<int> ports;
  for (const auto& s : slices) {
    EXPECT_EQ(s["endpoints"].size(), 3u);
    ports.insert(s["ports"][0]["port"].get<int>());
  }
  EXPECT_EQ(ports, (std::set<int>{8000, 8001}));
  EXPECT_EQ(
      controller_->stats().last_error.ok() || controller_->stats().last_error.code() == StatusCode::kFailedPrecondition,
      true)
      << controller_->stats().last_error.to_string();
}

}  // namespace
}  // namespace hotswap::devcluster
