// The scheduler against the dev cluster's API server: pending Pods are bound through the binding
// subresource to a node that fits; a Pod that fits nowhere says why in PodScheduled, and is bound
// once a node with room appears.
#include <gtest/gtest.h>

#include <thread>

#include "e2e/devcluster/apiserver/api_server.h"
#include "e2e/devcluster/nodes/scheduler.h"

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

json gpu_node(const std::string& name, int gpus, const std::string& product) {
  return {{"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata", {{"name", name}, {"labels", {{"nvidia.com/gpu.product", product}}}}},
          {"status",
           {{"conditions", {{{"type", "Ready"}, {"status", "True"}}}},
            {"capacity", {{"nvidia.com/gpu", std::to_string(gpus)}}},
            {"allocatable", {{"nvidia.com/gpu", std::to_string(gpus)}}}}}};
}

json gpu_pod(const std::string& name, json node_selector = json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}}},
          {"spec",
           {{"nodeSelector", node_selector},
            {"containers", {{{"name", "agent"}, {"image", "x"}, {"resources", {{"limits", {{"nvidia.com/gpu", 1}}}}}}}}}}};
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ApiServer::start({});
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(*s);
    kube::ClusterConfig config;
    config.server = server_->url();
    auto c = kube::RestClient::create(config);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    client_ = std::move(*c);
  }
  json wait_for_pod(const std::string& name, const std::function<bool(const json&)>& pred) {
    for (int i = 0; i < 100; ++i) {
      auto p = client_->get(kube::ResourceRef::core("pods").in("default").named(name));
      if (p.ok() && pred(p.value())) return p.value();
      std::this_thread::sleep_for(50ms);
    }
    return nullptr;
  }
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<kube::RestClient> client_;
};

TEST_F(SchedulerTest, BindsPendingPodsToNodesWithRoomAndSaysWhyWhenNoneFits) {
  const auto nodes = kube::ResourceRef::core("nodes");
  const auto pods = kube::ResourceRef::core("pods").in("default");
  ASSERT_TRUE(client_->create(nodes, gpu_node("node-1", 1, "t4-sim")).ok());
  Scheduler scheduler(*client_, SchedulerOptions{"default-scheduler", 200ms});
  ASSERT_TRUE(scheduler.start().ok());
  ASSERT_TRUE(client_->create(pods, gpu_pod("a")).ok());
  json a = wait_for_pod("a", [](const json& p) { return !p.value("/spec/nodeName"_json_pointer, std::string()).empty(); });
  ASSERT_FALSE(a.is_null());
  EXPECT_EQ(a["spec"]["nodeName"], "node-1");
  // node-1's only GPU is taken: b waits, saying why.
  ASSERT_TRUE(client_->create(pods, gpu_pod("b")).ok());
  json b = wait_for_pod("b", [](const json& p) {
    for (const auto& c : p.value("/status/conditions"_json_pointer, json::array()))
      if (c["type"] == "PodScheduled" && c["status"] == "False") return true;
    return false;
  });
  ASSERT_FALSE(b.is_null());
  const auto& cond = b["status"]["conditions"][0];
  EXPECT_EQ(cond["reason"], "Unschedulable");
  EXPECT_EQ(cond["message"], "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.");
  // A node with room appears: b goes there. A Pod for another class waits for it.
  ASSERT_TRUE(client_->create(nodes, gpu_node("node-2", 1, "a100-sim")).ok());
  b = wait_for_pod("b", [](const json& p) { return !p.value("/spec/nodeName"_json_pointer, std::string()).empty(); });
  ASSERT_FALSE(b.is_null());
  EXPECT_EQ(b["spec"]["nodeName"], "node-2");
  ASSERT_TRUE(client_->create(pods, gpu_pod("c", {{"nvidia.com/gpu.product", "h100-sim"}})).ok());
  std::this_thread::sleep_for(500ms);
  auto c = client_->get(pods.named("c"));
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c.value()["spec"].contains("nodeName"));
  EXPECT_EQ(scheduler.bindings(), 2);
  scheduler.stop();
}

TEST_F(SchedulerTest, CordonedNodesAndOtherSchedulersPodsAreLeftAlone) {
  const auto nodes = kube::ResourceRef::core("nodes");
  const auto pods = kube::ResourceRef::core("pods").in("default");
  json n = gpu_node("node-1", 4, "t4-sim");
  n["spec"]["unschedulable"] = true;
  ASSERT_TRUE(client_->create(nodes, n).ok());
  Scheduler scheduler(*client_, SchedulerOptions{"default-scheduler", 200ms});
  ASSERT_TRUE(scheduler.start().ok());
  json other = gpu_pod("other");
  other["spec"]["schedulerName"] = "someone-else";
  ASSERT_TRUE(client_->create(pods, other).ok());
  ASSERT_TRUE(client_->create(pods, gpu_pod("mine")).ok());
  json mine = wait_for_pod("mine", [](const json& p) {
    return !p.value("/status/conditions"_json_pointer, json::array()).empty();
  });
  ASSERT_FALSE(mine.is_null());
  EXPECT_EQ(mine["status"]["conditions"][0]["message"], "0/1 nodes are available: 1 node(s) were unschedulable.");
  // Uncordon: it is bound; the other scheduler's Pod never is.
  ASSERT_TRUE(client_->patch(nodes.named("node-1"), kube::PatchType::kMerge, {{"spec", {{"unschedulable", false}}}}).ok());
  mine = wait_for_pod("mine", [](const json& p) { return !p.value("/spec/nodeName"_json_pointer, std::string()).empty(); });
  ASSERT_FALSE(mine.is_null());
  auto o = client_->get(pods.named("other"));
  EXPECT_FALSE(o.value()["spec"].contains("nodeName"));
  EXPECT_TRUE(o.value().value("/status/conditions"_json_pointer, json::array()).empty());
}

}  // namespace
}  // namespace hotswap::devcluster
