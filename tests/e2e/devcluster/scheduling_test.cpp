// The scheduler's choice of node: readiness, cordons, selectors, affinity, taints, GPU capacity,
// spreading, and the reasons it gives when nothing fits.
#include "e2e/devcluster/nodes/scheduling.h"

#include <gtest/gtest.h>

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

json node(const std::string& name, int gpus = 1, json labels = json::object()) {
  labels["kubernetes.io/hostname"] = name;
  return {{"metadata", {{"name", name}, {"labels", labels}}},
          {"spec", json::object()},
          {"status",
           {{"conditions", {{{"type", "Ready"}, {"status", "True"}}}},
            {"capacity", {{"nvidia.com/gpu", std::to_string(gpus)}}},
            {"allocatable", {{"nvidia.com/gpu", std::to_string(gpus)}}}}}};
}

json pod(int gpus = 0, const std::string& on = "") {
  json c = {{"name", "app"}, {"image", "x"}};
  if (gpus > 0) c["resources"] = {{"limits", {{"nvidia.com/gpu", gpus}}}};
  json p = {{"metadata", {{"name", "p"}}}, {"spec", {{"containers", {c}}}}};
  if (!on.empty()) p["spec"]["nodeName"] = on;
  return p;
}

TEST(Scheduling, SpreadsOverTheLeastLoadedReadySchedulableNode) {
  std::vector<json> nodes = {node("a"), node("b"), node("c")};
  EXPECT_EQ(*choose_node(pod(), nodes, {}), "a");  // ties go by name
  EXPECT_EQ(*choose_node(pod(), nodes, {pod(0, "a")}), "b");
  nodes[1]["spec"]["unschedulable"] = true;
  nodes[2]["status"]["conditions"][0]["status"] = "False";
  EXPECT_EQ(*choose_node(pod(), nodes, {pod(0, "a")}), "a");
}

TEST(Scheduling, GpuRequestsMustFitBesideThePodsAlreadyBound) {
  std::vector<json> nodes = {node("a", 1), node("b", 2)};
  EXPECT_EQ(pod_gpu_request(pod(2)), 2);
  EXPECT_EQ(*choose_node(pod(2), nodes, {}), "b");
  EXPECT_EQ(*choose_node(pod(1), nodes, {pod(1, "a")}), "b");
  auto none = choose_node(pod(1), nodes, {pod(1, "a"), pod(2, "b")});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().message(), "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.");
}

TEST(Scheduling, NodeSelectorAndRequiredAffinityChooseTheGpuClass) {
  std::vector<json> nodes = {node("t4", 1, {{"nvidia.com/gpu.product", "t4-sim"}}),
                             node("a100", 1, {{"nvidia.com/gpu.product", "a100-sim"}, {"gpu-mem-gb", "80"}})};
  json p = pod(1);
  p["spec"]["nodeSelector"] = {{"nvidia.com/gpu.product", "a100-sim"}};
  EXPECT_EQ(*choose_node(p, nodes, {}), "a100");
  json q = pod(1);
  q["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] = {
      {{"matchExpressions", {{{"key", "gpu-mem-gb"}, {"operator", "Gt"}, {"values", {"40"}}}}}}};
  EXPECT_EQ(*choose_node(q, nodes, {}), "a100");
  q["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] = {
      {{"matchExpressions", {{{"key", "nvidia.com/gpu.product"}, {"operator", "NotIn"}, {"values", {"a100-sim"}}}}}},
      {{"matchFields", {{{"key", "metadata.name"}, {"operator", "In"}, {"values", {"nowhere"}}}}}}};
  EXPECT_EQ(*choose_node(q, nodes, {}), "t4");
  p["spec"]["nodeSelector"] = {{"nvidia.com/gpu.product", "h100-sim"}};
  auto none = choose_node(p, nodes, {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().message(), "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.");
}

TEST(Scheduling, TaintsKeepOutPodsThatDoNotTolerateThem) {
  std::vector<json> nodes = {node("a"), node("b")};
  nodes[0]["spec"]["taints"] = {{{"key", "gpu"}, {"value", "bad"}, {"effect", "NoSchedule"}}};
  nodes[1]["spec"]["taints"] = {{{"key", "maintenance"}, {"effect", "NoExecute"}}};
  auto none = choose_node(pod(), nodes, {});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("node(s) had untolerated taint {gpu: bad}"), std::string::npos);
  json p = pod();
  p["spec"]["tolerations"] = {{{"key", "gpu"}, {"operator", "Equal"}, {"value", "bad"}, {"effect", "NoSchedule"}}};
  EXPECT_EQ(*choose_node(p, nodes, {}), "a");
  p["spec"]["tolerations"] = {{{"operator", "Exists"}}};
  EXPECT_TRUE(tolerates(p, nodes[1]["spec"]["taints"][0]));
  // PreferNoSchedule only prefers.
  nodes[0]["spec"]["taints"] = {{{"key", "soft"}, {"effect", "PreferNoSchedule"}}};
  EXPECT_EQ(*choose_node(pod(), nodes, {}), "a");
}

TEST(Scheduling, NoNodesAtAllSaysSo) {
  auto none = choose_node(pod(), {}, {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(none.status().message(), "0/0 nodes are available.");
}

}  // namespace
}  // namespace hotswap::devcluster
