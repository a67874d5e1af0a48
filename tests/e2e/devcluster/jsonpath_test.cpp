// The JSONPath subset of CRD printer columns and kubectl: fields, indices, wildcards, slices,
// recursive descent, filters, and how values render in a table cell.
#include "e2e/devcluster/apiserver/jsonpath.h"

#include <gtest/gtest.h>

namespace hotswap::devcluster {
namespace {

using nlohmann::json;

const json& pod() {
  static const json p = json::parse(R"({
    "metadata": {"name": "web-0", "annotations": {"hotswap.dev/phase": "Serving", "n": "1"}},
    "spec": {"containers": [
      {"name": "app", "image": "llama", "ports": [{"containerPort": 8080, "name": "http"}]},
      {"name": "sidecar", "image": "proxy", "ports": [{"containerPort": 9090}]}
    ], "replicas": 3, "ratio": 0.5, "paused": false},
    "status": {"conditions": [
      {"type": "PodScheduled", "status": "True"},
      {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
    ]}
  })");
  return p;
}

std::vector<json> eval(const char* path) {
  auto r = jsonpath_eval(pod(), path);
  EXPECT_TRUE(r.ok()) << path << ": " << r.status().to_string();
  return r.ok() ? r.value() : std::vector<json>{};
}

std::string cell(const char* path) {
  return jsonpath_cell(eval(path));
}

TEST(JsonPath, FieldsInEveryAcceptedSpelling) {
  for (const char* path : {".metadata.name", "{.metadata.name}", "$.metadata.name", "{$.metadata.name}",
                           "metadata.name", " .metadata['name'] ", ".metadata[\"name\"]", "['metadata'].name"})
    EXPECT_EQ(eval(path), std::vector<json>{"web-0"}) << path;
}

TEST(JsonPath, BracketedNamesMayHoldDots) {
  EXPECT_EQ(cell(".metadata.annotations['hotswap.dev/phase']"), "Serving");
}

TEST(JsonPath, IndicesCountFromEitherEnd) {
  EXPECT_EQ(cell(".spec.containers[0].name"), "app");
  EXPECT_EQ(cell(".spec.containers[-1].name"), "sidecar");
  EXPECT_TRUE(eval(".spec.containers[2].name").empty());
  EXPECT_TRUE(eval(".spec.containers[-3].name").empty());
}

TEST(JsonPath, WildcardsAndSlices) {
  EXPECT_EQ(eval(".spec.containers[*].name"), (std::vector<json>{"app", "sidecar"}));
  EXPECT_EQ(eval(".spec.containers.*.image"), (std::vector<json>{"llama", "proxy"}));
  EXPECT_EQ(eval(".spec.containers[0:1].name"), (std::vector<json>{"app"}));
  EXPECT_EQ(eval(".spec.containers[1:].name"), (std::vector<json>{"sidecar"}));
  EXPECT_EQ(eval(".spec.containers[::2].name"), (std::vector<json>{"app"}));
  EXPECT_EQ(eval(".metadata.annotations[*]"), (std::vector<json>{"Serving", "1"}));
}

TEST(JsonPath, RecursiveDescentFindsEveryDepth) {
  EXPECT_EQ(eval("..containerPort"), (std::vector<json>{8080, 9090}));
  EXPECT_EQ(eval(".spec..name"), (std::vector<json>{"app", "http", "sidecar"}));
  EXPECT_EQ(eval("..ports[0].containerPort"), (std::vector<json>{8080, 9090}));
}

TEST(JsonPath, FiltersCompareStringsAndNumbers) {
  EXPECT_EQ(cell(".status.conditions[?(@.type==\"Ready\")].status"), "False");
  EXPECT_EQ(cell(".status.conditions[?(@.type=='Ready')].reason"), "ContainersNotReady");
  EXPECT_EQ(cell(".status.conditions[?(@.type != \"Ready\")].type"), "PodScheduled");
  EXPECT_EQ(cell(".spec.containers[?(@.ports[0].containerPort==9090)].name"), "sidecar");
  EXPECT_EQ(cell(".spec.containers[?(@.ports[0].containerPort>8080)].name"), "sidecar");
  EXPECT_EQ(cell(".spec.containers[?(@.ports[0].containerPort<=8080)].name"), "app");
  EXPECT_EQ(cell(".status.conditions[?(@.reason)].type"), "Ready");
  EXPECT_TRUE(eval(".status.conditions[?(@.type==\"Gone\")].status").empty());
  EXPECT_TRUE(eval(".status.conditions[?(@.type==1)].status").empty());
}

TEST(JsonPath, MissingPathsGiveNothing) {
  EXPECT_TRUE(eval(".status.podIP").empty());
  EXPECT_TRUE(eval(".metadata.name.first").empty());
  EXPECT_TRUE(eval(".spec.replicas[0]").empty());
  EXPECT_EQ(cell(".status.podIP"), "");
}

TEST(JsonPath, TheWholeObject) {
  EXPECT_EQ(eval("{}"), std::vector<json>{pod()});
  EXPECT_EQ(eval("$"), std::vector<json>{pod()});
}

TEST(JsonPath, MalformedPathsAreErrors) {
  struct Case {
    const char* path;
    const char* message;
  };
  const Case cases[] = {
      {".spec.containers[0", "jsonpath \".spec.containers[0\": \"[\" without a matching \"]\""},
      {".spec.", "jsonpath \".spec.\": a field name must follow \".\""},
      {".spec[]", "jsonpath \".spec[]\": empty \"[]\""},
      {".spec[x]", "jsonpath \".spec[x]\": unsupported subscript [x]"},
      {".spec[1:2:0]", "jsonpath \".spec[1:2:0]\": a slice's step must be positive, got [1:2:0]"},
      {".a[?(@.x=1)]", "jsonpath \".a[?(@.x=1)]\": unsupported operator in filter (@.x=1)"},
      {".a[?(x==1)]", "jsonpath \".a[?(x==1)]\": a filter's left side must start with \"@\""},
      {".a[?(@.x==bare)]",
       "jsonpath \".a[?(@.x==bare)]\": the filter's right side must be a quoted string, a number, true, false or "
       "null, got \"bare\""},
      {"{.a", "jsonpath \"{.a\": \"{\" without a matching \"}\""},
      {".a b", "jsonpath \".a b\": unexpected \" \""},
  };
  for (const Case& c : cases) {
    auto r = jsonpath_eval(pod(), c.path);
    ASSERT_FALSE(r.ok()) << c.path;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), c.message) << c.path;
  }
}

TEST(JsonPath, CellsRenderLikeKubectl) {
  EXPECT_EQ(cell(".spec.containers[*].name"), "app sidecar");
  EXPECT_EQ(cell(".spec.replicas"), "3");
  EXPECT_EQ(cell(".spec.ratio"), "0.5");
  EXPECT_EQ(cell(".spec.paused"), "false");
  EXPECT_EQ(cell(".spec.containers[0].ports"), "[{\"containerPort\":8080,\"name\":\"http\"}]");
  EXPECT_EQ(jsonpath_cell({json(nullptr)}), "");
  EXPECT_EQ(jsonpath_cell({}), "");
}

}  // namespace
}  // namespace hotswap::devcluster
