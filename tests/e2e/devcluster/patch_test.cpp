// The dev cluster's three patch types: JSON patch against RFC 6902's Appendix A, merge patch
// against RFC 7386's Appendix A, and strategic merge patch the way kubectl and kube-apiserver use
// it (merge keys, sets, directives, element order, the per-kind tables).
#include "e2e/devcluster/apiserver/patch.h"

#include <gtest/gtest.h>

namespace hotswap::devcluster {
namespace {

using nlohmann::json;

json json_patch_ok(const char* doc, const char* patch) {
  auto r = apply_json_patch(json::parse(doc), json::parse(patch));
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? r.value() : json();
}

std::string json_patch_error(const char* doc, const char* patch) {
  auto r = apply_json_patch(json::parse(doc), json::parse(patch));
  EXPECT_FALSE(r.ok()) << r.value().dump();
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  return r.status().message();
}

// --- RFC 6902 Appendix A -------------------------------------------------------------------------

TEST(PatchJson, Rfc6902AppendixAExamplesApply) {
  struct Case {
    const char* name;
    const char* doc;
    const char* patch;
    const char* want;
  };
  const Case cases[] = {
      {"A.1 add an object member", R"({"foo":"bar"})", R"([{"op":"add","path":"/baz","value":"qux"}])",
       R"({"baz":"qux","foo":"bar"})"},
      {"A.2 add an array element", R"({"foo":["bar","baz"]})", R"([{"op":"add","path":"/foo/1","value":"qux"}])",
       R"({"foo":["bar","qux","baz"]})"},
      {"A.3 remove an object member", R"({"baz":"qux","foo":"bar"})", R"([{"op":"remove","path":"/baz"}])",
       R"({"foo":"bar"})"},
      {"A.4 remove an array element", R"({"foo":["bar","qux","baz"]})", R"([{"op":"remove","path":"/foo/1"}])",
       R"({"foo":["bar","baz"]})"},
      {"A.5 replace a value", R"({"baz":"qux","foo":"bar"})", R"([{"op":"replace","path":"/baz","value":"boo"}])",
       R"({"baz":"boo","foo":"bar"})"},
      {"A.6 move a value", R"({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}})",
       R"([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}])",
       R"({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}})"},
      {"A.7 move an array element", R"({"foo":["all","grass","cows","eat"]})",
       R"([{"op":"move","from":"/foo/1","path":"/foo/3"}])", R"({"foo":["all","cows","eat","grass"]})"},
      {"A.8 testing a value: success", R"({"baz":"qux","foo":["a",2,"c"]})",
       R"([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}])",
       R"({"baz":"qux","foo":["a",2,"c"]})"},
      {"A.10 adding a nested member object", R"({"foo":"bar"})",
       R"([{"op":"add","path":"/child","value":{"grandchild":{}}}])", R"({"foo":"bar","child":{"grandchild":{}}})"},
      {"A.11 ignoring unrecognized elements", R"({"foo":"bar"})",
       R"([{"op":"add","path":"/baz","value":"qux","xyz":123}])", R"({"foo":"bar","baz":"qux"})"},
      {"A.14 ~ escape ordering", R"({"/":9,"~1":10})", R"([{"op":"test","path":"/~01","value":10}])",
       R"({"/":9,"~1":10})"},
      {"A.16 adding an array value", R"({"foo":["bar"]})", R"([{"op":"add","path":"/foo/-","value":["abc","def"]}])",
       R"({"foo":["bar",["abc","def"]]})"},
  };
  for (const Case& c : cases) EXPECT_EQ(json_patch_ok(c.doc, c.patch), json::parse(c.want)) << c.name;
}

TEST(PatchJson, Rfc6902AppendixAFailuresAreErrors) {
  // A.9 testing a value: error
  EXPECT_EQ(json_patch_error(R"({"baz":"qux"})", R"([{"op":"test","path":"/baz","value":"bar"}])"),
            "json patch operation 0 (test): test failed: path \"/baz\" holds \"qux\", not \"bar\"");
  // A.12 adding to a nonexistent target
  EXPECT_EQ(json_patch_error(R"({"foo":"bar"})", R"([{"op":"add","path":"/baz/bat","value":"qux"}])"),
            "json patch operation 0 (add): path \"/baz/bat\" does not exist: its parent \"/baz\" is missing");
  // A.15 comparing strings and numbers
  EXPECT_NE(json_patch_error(R"({"/":9,"~1":10})", R"([{"op":"test","path":"/~01","value":"10"}])").find("test failed"),
            std::string::npos);
}

TEST(PatchJson, ErrorNamesTheOperationIndexAndPath) {
  EXPECT_EQ(json_patch_error(R"({"spec":{"a":1}})", R"([{"op":"test","path":"/spec/a","value":1},
                                                        {"op":"add","path":"/spec/b","value":2},
                                                        {"op":"remove","path":"/spec/x"}])"),
            "json patch operation 2 (remove): path \"/spec/x\" does not exist");
  EXPECT_EQ(json_patch_error("{}", R"([{"op":"replace","path":"/a","value":1}])"),
            "json patch operation 0 (replace): path \"/a\" does not exist");
}

TEST(PatchJson, MalformedOperationsAreErrors) {
  EXPECT_EQ(json_patch_error("{}", R"([{"path":"/a"}])"), "json patch operation 0: missing \"op\"");
  EXPECT_EQ(json_patch_error("{}", R"([{"op":"frobnicate","path":"/a"}])"),
            "json patch operation 0: unknown op \"frobnicate\" (expected add, remove, replace, move, copy or test)");
  EXPECT_EQ(json_patch_error("{}", R"([{"op":"add","path":"/a"}])"), "json patch operation 0 (add): missing \"value\"");
  EXPECT_EQ(json_patch_error("{}", R"([{"op":"add","value":1}])"), "json patch operation 0 (add): missing \"path\"");
  EXPECT_EQ(json_patch_error("{}", R"([{"op":"copy","path":"/a"}])"),
            "json patch operation 0 (copy): missing \"from\"");
  EXPECT_EQ(json_patch_error("{}", R"([{"op":"add","path":"a","value":1}])"),
            "json patch operation 0 (add): path \"a\" is not a JSON pointer: it must be empty or start with \"/\"");
  EXPECT_EQ(json_patch_error(R"({"a":1})", R"([{"op":"remove","path":"/~2"}])"),
            "json patch operation 0 (remove): path \"/~2\" has a \"~\" not followed by 0 or 1");
  EXPECT_EQ(json_patch_error("{}", "[1]"), "json patch operation 0: an operation must be an object, got 1");
  auto not_array = apply_json_patch(json::object(), json::object());
  ASSERT_FALSE(not_array.ok());
  EXPECT_EQ(not_array.status().message(), "a json patch must be an array of operations");
}

TEST(PatchJson, ArrayIndicesFollowRfc6901) {
  EXPECT_EQ(json_patch_error(R"({"a":[1,2]})", R"([{"op":"add","path":"/a/3","value":9}])"),
            "json patch operation 0 (add): path \"/a/3\": index 3 is out of bounds for an array of 2");
  EXPECT_EQ(json_patch_error(R"({"a":[1,2]})", R"([{"op":"add","path":"/a/01","value":9}])"),
            "json patch operation 0 (add): path \"/a/01\": \"01\" is not an array index");
  EXPECT_EQ(json_patch_error(R"({"a":[1,2]})", R"([{"op":"remove","path":"/a/-"}])"),
            "json patch operation 0 (remove): path \"/a/-\" does not exist");
  EXPECT_EQ(json_patch_ok(R"({"a":[1,2]})", R"([{"op":"add","path":"/a/2","value":3}])"),
            json::parse(R"({"a":[1,2,3]})"));
  EXPECT_EQ(json_patch_ok(R"({"a":[1,2]})", R"([{"op":"replace","path":"/a/0","value":0}])"),
            json::parse(R"({"a":[0,2]})"));
}

TEST(PatchJson, CopyMoveAndTheWholeDocument) {
  EXPECT_EQ(json_patch_ok(R"({"a":{"b":1}})", R"([{"op":"copy","from":"/a","path":"/c"}])"),
            json::parse(R"({"a":{"b":1},"c":{"b":1}})"));
  EXPECT_EQ(json_patch_ok(R"({"a":1})", R"([{"op":"move","from":"/a","path":"/a"}])"), json::parse(R"({"a":1})"));
  EXPECT_EQ(json_patch_error(R"({"a":{"b":1}})", R"([{"op":"move","from":"/a","path":"/a/b/c"}])"),
            "json patch operation 0 (move): cannot move \"/a\" into its own child \"/a/b/c\"");
  EXPECT_EQ(json_patch_ok(R"({"a":1})", R"([{"op":"replace","path":"","value":[1]}])"), json::parse("[1]"));
  EXPECT_EQ(json_patch_ok(R"({"a":1})", R"([{"op":"add","path":"","value":{"b":2}}])"), json::parse(R"({"b":2})"));
  EXPECT_EQ(json_patch_ok(R"({"a":1})", R"([{"op":"add","path":"/n","value":null}])"),
            json::parse(R"({"a":1,"n":null})"));
  EXPECT_EQ(json_patch_ok(R"({"a":1.0})", R"([{"op":"test","path":"/a","value":1}])"), json::parse(R"({"a":1.0})"));
}

TEST(PatchJson, FailureLeavesTheInputUntouched) {
  const json doc = json::parse(R"({"a":1})");
  auto r = apply_json_patch(doc, json::parse(R"([{"op":"add","path":"/b","value":2},{"op":"remove","path":"/x"}])"));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(doc, json::parse(R"({"a":1})"));
}

// --- RFC 7386 Appendix A -------------------------------------------------------------------------

TEST(PatchMerge, Rfc7386AppendixATable) {
  const char* cases[][3] = {
      {R"({"a":"b"})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"b"})", R"({"b":"c"})", R"({"a":"b","b":"c"})"},
      {R"({"a":"b"})", R"({"a":null})", R"({})"},
      {R"({"a":"b","b":"c"})", R"({"a":null})", R"({"b":"c"})"},
      {R"({"a":["b"]})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"c"})", R"({"a":["b"]})", R"({"a":["b"]})"},
      {R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})", R"({"a":{"b":"d"}})"},
      {R"({"a":[{"b":"c"}]})", R"({"a":[1]})", R"({"a":[1]})"},
      {R"(["a","b"])", R"(["c","d"])", R"(["c","d"])"},
      {R"({"a":"b"})", R"(["c"])", R"(["c"])"},
      {R"({"a":"foo"})", "null", "null"},
      {R"({"a":"foo"})", R"("bar")", R"("bar")"},
      {R"({"e":null})", R"({"a":1})", R"({"e":null,"a":1})"},
      {R"([1,2])", R"({"a":"b","c":null})", R"({"a":"b"})"},
      {R"({})", R"({"a":{"bb":{"ccc":null}}})", R"({"a":{"bb":{}}})"},
  };
  for (const auto& c : cases)
    EXPECT_EQ(apply_merge_patch(json::parse(c[0]), json::parse(c[1])), json::parse(c[2])) << c[0] << " + " << c[1];
}

TEST(PatchMerge, ListsAreReplacedWhole) {
  const json pod = json::parse(R"({"spec":{"containers":[{"name":"a"},{"name":"b"}]}})");
  EXPECT_EQ(apply_merge_patch(pod, json::parse(R"({"spec":{"containers":[{"name":"c"}]}})")),
            json::parse(R"({"spec":{"containers":[{"name":"c"}]}})"));
}

// --- Strategic merge patch -----------------------------------------------------------------------

const json& sample_pod() {
  static const json pod = json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b"]},
    "spec": {
      "containers": [
        {"name": "app", "image": "old", "ports": [{"containerPort": 8080, "name": "http"}],
         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "proxy"}
      ],
      "tolerations": [{"key": "k1", "operator": "Exists"}, {"key": "k2", "operator": "Exists"}],
      "volumes": [{"name": "data", "emptyDir": {}}]
    },
    "status": {
      "conditions": [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
      ]
    }
  })");
  return pod;
}

json pod_patch(const json& doc, const char* patch) {
  auto r = apply_strategic_merge_patch(doc, json::parse(patch), strategic_merge_strategies_for("Pod"));
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? r.value() : json();
}

std::string pod_patch_error(const json& doc, const char* patch) {
  auto r = apply_strategic_merge_patch(doc, json::parse(patch), strategic_merge_strategies_for("Pod"));
  EXPECT_FALSE(r.ok()) << r.value().dump();
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  return r.status().message();
}

std::vector<std::string> names(const json& list, const char* key = "name") {
  std::vector<std::string> out;
  for (const auto& e : list) out.push_back(e.at(key).get<std::string>());
  return out;
}

TEST(PatchStrategic, ContainerImagePatchKeepsTheOtherContainersAndFields) {
  // kubectl patch pod p -p '{"spec":{"containers":[{"name":"app","image":"new"}]}}'
  const json got = pod_patch(sample_pod(), R"({"spec":{"containers":[{"name":"app","image":"new"}]}})");
  const json& containers = got["spec"]["containers"];
  EXPECT_EQ(names(containers), (std::vector<std::string>{"app", "sidecar"}));
  EXPECT_EQ(containers[0]["image"], "new");
  EXPECT_EQ(containers[0]["ports"], sample_pod()["spec"]["containers"][0]["ports"]);
  EXPECT_EQ(containers[0]["env"], sample_pod()["spec"]["containers"][0]["env"]);
  EXPECT_EQ(containers[1], sample_pod()["spec"]["containers"][1]);
  EXPECT_EQ(got["spec"]["tolerations"], sample_pod()["spec"]["tolerations"]);
  EXPECT_EQ(got["metadata"], sample_pod()["metadata"]);
}

TEST(PatchStrategic, NestedListsMergeByTheirOwnKeys) {
  const json got = pod_patch(sample_pod(), R"({"spec":{"containers":[{"name":"app",
      "env":[{"name":"B","value":"two"},{"name":"C","value":"3"}],
      "ports":[{"containerPort":8080,"protocol":"TCP"}]}]}})");
  const json& app = got["spec"]["containers"][0];
  EXPECT_EQ(app["env"],
            json::parse(R"([{"name":"A","value":"1"},{"name":"B","value":"two"},{"name":"C","value":"3"}])"));
  EXPECT_EQ(app["ports"], json::parse(R"([{"containerPort":8080,"name":"http","protocol":"TCP"}])"));
}

TEST(PatchStrategic, NewElementsGoBeforeTheUntouchedOnesAsInKubernetes) {
  // strategicpatch puts the patch's new elements ahead of the live ones they are not ordered
  // against; kubectl apply sends $setElementOrder when it cares.
  EXPECT_EQ(names(pod_patch(sample_pod(),
                            R"({"spec":{"containers":[{"name":"debug","image":"busybox"}]}})")["spec"]["containers"]),
            (std::vector<std::string>{"debug", "app", "sidecar"}));
  EXPECT_EQ(names(pod_patch(
                sample_pod(),
                R"({"spec":{"containers":[{"name":"app","image":"x"},{"name":"debug"}]}})")["spec"]["containers"]),
            (std::vector<std::string>{"app", "debug", "sidecar"}));
}

TEST(PatchStrategic, PatchDeleteRemovesTheElementWithThatKey) {
  const json got = pod_patch(sample_pod(), R"({"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}})");
  EXPECT_EQ(names(got["spec"]["containers"]), (std::vector<std::string>{"app"}));
  const json env = pod_patch(sample_pod(), R"({"spec":{"containers":[{"name":"app",
      "env":[{"name":"A","$patch":"delete"}]}]}})")["spec"]["containers"][0]["env"];
  EXPECT_EQ(env, json::parse(R"([{"name":"B","value":"2"}])"));
}

TEST(PatchStrategic, PatchReplaceInAListReplacesTheList) {
  const json got =
      pod_patch(sample_pod(), R"({"spec":{"containers":[{"$patch":"replace"},{"name":"only","image":"x"}]}})");
  EXPECT_EQ(got["spec"]["containers"], json::parse(R"([{"name":"only","image":"x"}])"));
}

TEST(PatchStrategic, PatchReplaceAndDeleteInAMap) {
  EXPECT_EQ(pod_patch(sample_pod(), R"({"metadata":{"labels":{"$patch":"replace","new":"1"}}})")["metadata"]["labels"],
            json::parse(R"({"new":"1"})"));
  // kube-apiserver leaves an empty map behind.
  EXPECT_EQ(pod_patch(sample_pod(), R"({"metadata":{"labels":{"$patch":"delete"}}})")["metadata"]["labels"],
            json::object());
  EXPECT_EQ(pod_patch(sample_pod(), R"({"metadata":{"labels":{"$patch":"merge","new":"1"}}})")["metadata"]["labels"],
            json::parse(R"({"app":"web","tier":"front","new":"1"})"));
}

TEST(PatchStrategic, MapsMergeAndNullDeletes) {
  const json got =
      pod_patch(sample_pod(), R"({"metadata":{"labels":{"tier":null,"version":"2"},"annotations":{"a":"b"}}})");
  EXPECT_EQ(got["metadata"]["labels"], json::parse(R"({"app":"web","version":"2"})"));
  EXPECT_EQ(got["metadata"]["annotations"], json::parse(R"({"a":"b"})"));
  EXPECT_FALSE(pod_patch(sample_pod(), R"({"spec":{"volumes":null}})")["spec"].contains("volumes"));
}

TEST(PatchStrategic, StatusConditionUpdateByTypeKeepsTheOthersInPlace) {
  const json got =
      pod_patch(sample_pod(), R"({"status":{"conditions":[{"type":"Ready","status":"True","reason":null}]}})");
  EXPECT_EQ(got["status"]["conditions"],
            json::parse(R"([{"type":"PodScheduled","status":"True"},{"type":"Ready","status":"True"}])"));
}

TEST(PatchStrategic, ListsWithoutAStrategyAreReplaced) {
  const json got = pod_patch(sample_pod(), R"({"spec":{"tolerations":[{"key":"k3","operator":"Exists"}]},
      "status":{"containerStatuses":[{"name":"app","ready":true}]}})");
  EXPECT_EQ(got["spec"]["tolerations"], json::parse(R"([{"key":"k3","operator":"Exists"}])"));
  EXPECT_EQ(got["status"]["containerStatuses"], json::parse(R"([{"name":"app","ready":true}])"));
  // The same patch again replaces containerStatuses rather than merging into it.
  const json again = pod_patch(got, R"({"status":{"containerStatuses":[{"name":"sidecar","ready":false}]}})");
  EXPECT_EQ(again["status"]["containerStatuses"], json::parse(R"([{"name":"sidecar","ready":false}])"));
}

TEST(PatchStrategic, FinalizersMergeAsASet) {
  EXPECT_EQ(pod_patch(sample_pod(), R"({"metadata":{"finalizers":["b","c"]}})")["metadata"]["finalizers"],
            json::parse(R"(["a","b","c"])"));
  EXPECT_EQ(pod_patch(sample_pod(), R"({"metadata":{"finalizers":["a"]}})")["metadata"]["finalizers"],
            json::parse(R"(["a","b"])"));
  // New values lead, as for keyed lists.
  EXPECT_EQ(pod_patch(sample_pod(), R"({"metadata":{"finalizers":["z"]}})")["metadata"]["finalizers"],
            json::parse(R"(["z","a","b"])"));
}

TEST(PatchStrategic, DeleteFromPrimitiveListRemovesValues) {
  EXPECT_EQ(pod_patch(sample_pod(),
                      R"({"metadata":{"$deleteFromPrimitiveList/finalizers":["a","x"]}})")["metadata"]["finalizers"],
            json::parse(R"(["b"])"));
  // kubectl apply removing one finalizer sends both directives.
  EXPECT_EQ(pod_patch(sample_pod(), R"({"metadata":{"$setElementOrder/finalizers":["b"],
      "$deleteFromPrimitiveList/finalizers":["a"]}})")["metadata"]["finalizers"],
            json::parse(R"(["b"])"));
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}})"),
            "metadata.finalizers: $deleteFromPrimitiveList/finalizers must be a list");
}

TEST(PatchStrategic, SetElementOrderReordersTheMergedList) {
  const json got = pod_patch(sample_pod(), R"({"spec":{
      "$setElementOrder/containers":[{"name":"sidecar"},{"name":"app"}],
      "containers":[{"name":"app","image":"new"}]}})");
  EXPECT_EQ(names(got["spec"]["containers"]), (std::vector<std::string>{"sidecar", "app"}));
  EXPECT_EQ(got["spec"]["containers"][1]["image"], "new");
  EXPECT_FALSE(got["spec"].contains("$setElementOrder/containers"));

  // kubectl apply adding a container in the middle.
  const json added = pod_patch(sample_pod(), R"({"spec":{
      "$setElementOrder/containers":[{"name":"app"},{"name":"debug"},{"name":"sidecar"}],
      "containers":[{"name":"debug","image":"busybox"}]}})");
  EXPECT_EQ(names(added["spec"]["containers"]), (std::vector<std::string>{"app", "debug", "sidecar"}));
}

TEST(PatchStrategic, SetElementOrderKeepsUnlistedElementsAtTheirLivePlace) {
  json doc = json::parse(R"({"spec":{"containers":[{"name":"a"},{"name":"b"},{"name":"c"}]}})");
  const json got = pod_patch(doc, R"({"spec":{"$setElementOrder/containers":[{"name":"c"},{"name":"a"}]}})");
  EXPECT_EQ(names(got["spec"]["containers"]), (std::vector<std::string>{"b", "c", "a"}));
  const json set = pod_patch(sample_pod(), R"({"metadata":{"$setElementOrder/finalizers":["b","a"]}})");
  EXPECT_EQ(set["metadata"]["finalizers"], json::parse(R"(["b","a"])"));
}

TEST(PatchStrategic, SetElementOrderMustAgreeWithThePatchList) {
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"$setElementOrder/containers":[{"name":"app"}],
      "containers":[{"name":"sidecar","image":"x"}]}})"),
            "spec.containers: the order of the patch list does not match $setElementOrder/containers");
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"$setElementOrder/containers":[{"image":"x"}]}})"),
            "spec.containers: $setElementOrder/containers[0] does not contain declared merge key \"name\"");
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"$setElementOrder/tolerations":[{"key":"k1"}]}})"),
            "spec.tolerations: $setElementOrder/tolerations needs a merging list, and tolerations is replaced whole");
}

TEST(PatchStrategic, RetainKeysDropsTheOtherFieldsOfTheMap) {
  // kubectl apply switching a volume's source from emptyDir to hostPath.
  const json got = pod_patch(sample_pod(), R"({"spec":{"volumes":[{"name":"data","hostPath":{"path":"/x"},
      "$retainKeys":["hostPath","name"]}]}})");
  EXPECT_EQ(got["spec"]["volumes"], json::parse(R"([{"name":"data","hostPath":{"path":"/x"}}])"));
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"volumes":[{"name":"data","hostPath":{"path":"/x"},
      "$retainKeys":["name"]}]}})"),
            "spec.volumes[name=data]: field \"hostPath\" is in the patch but not in $retainKeys");
}

TEST(PatchStrategic, MissingMergeKeyNamesTheFieldAndTheKey) {
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"containers":[{"name":"app"},{"image":"x"}]}})"),
            "spec.containers[1] does not contain declared merge key \"name\"");
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"containers":[{"name":"app","env":[{"value":"1"}]}]}})"),
            "spec.containers[name=app].env[0] does not contain declared merge key \"name\"");
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"containers":[{"$patch":"delete","image":"x"}]}})"),
            "spec.containers[0] does not contain declared merge key \"name\"");
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"containers":["app"]}})"),
            "spec.containers[0]: spec.containers is merged by \"name\", so its elements must be objects, got \"app\"");
}

TEST(PatchStrategic, UnknownDirectivesAreErrors) {
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"$frob":1}})"), "spec: unknown patch directive \"$frob\"");
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"metadata":{"labels":{"$patch":"squash"}}})"),
            "metadata.labels: unknown $patch directive \"squash\" (expected replace, delete or merge)");
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"spec":{"containers":[{"name":"app","$patch":"squash"}]}})"),
            "spec.containers[0]: unknown $patch directive \"squash\" (expected replace, delete or merge)");
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"$setElementOrder/":[]})"),
            "the object: unknown patch directive "
            "\"$setElementOrder/\"");
}

TEST(PatchStrategic, NewValuesAreStoredWithoutDirectives) {
  const json got = pod_patch(sample_pod(), R"({"spec":{"initContainers":[{"name":"init",
      "env":[{"name":"X","$patch":"delete"},{"name":"Y","value":"1"}]}],
      "affinity":{"nodeAffinity":{"$patch":"replace","a":1}, "gone": null}}})");
  EXPECT_EQ(got["spec"]["initContainers"], json::parse(R"([{"name":"init","env":[{"name":"Y","value":"1"}]}])"));
  EXPECT_EQ(got["spec"]["affinity"], json::parse(R"({"nodeAffinity":{"a":1}})"));
}

TEST(PatchStrategic, ATypeChangeReplacesTheValue) {
  EXPECT_EQ(pod_patch(sample_pod(), R"({"spec":{"tolerations":"none"}})")["spec"]["tolerations"], "none");
  EXPECT_EQ(pod_patch(sample_pod(), R"({"metadata":{"labels":["x"]}})")["metadata"]["labels"], json::parse(R"(["x"])"));
}

TEST(PatchStrategic, OwnerReferencesMergeByUid) {
  json doc = json::parse(R"({"metadata":{"ownerReferences":[{"uid":"u1","name":"rs1","controller":true}]}})");
  const json got =
      pod_patch(doc, R"({"metadata":{"ownerReferences":[{"uid":"u1","controller":false},{"uid":"u2","name":"x"}]}})");
  EXPECT_EQ(got["metadata"]["ownerReferences"],
            json::parse(R"([{"uid":"u1","name":"rs1","controller":false},{"uid":"u2","name":"x"}])"));
}

TEST(PatchStrategic, SetListsTakeOnlyPrimitives) {
  EXPECT_EQ(pod_patch_error(sample_pod(), R"({"metadata":{"finalizers":[{"name":"a"}]}})"),
            "metadata.finalizers[0]: metadata.finalizers merges as a set of primitive values, got {\"name\":\"a\"}");
}

TEST(PatchStrategic, RejectsNonObjects) {
  auto r = apply_strategic_merge_patch(sample_pod(), json::parse("[1]"), strategic_merge_strategies_for("Pod"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "a strategic merge patch must be a JSON object, got array");
  auto from_null =
      apply_strategic_merge_patch(json(), json::parse(R"({"a":{"b":1}})"), strategic_merge_strategies_for("Pod"));
  ASSERT_TRUE(from_null.ok());
  EXPECT_EQ(from_null.value(), json::parse(R"({"a":{"b":1}})"));
}

TEST(PatchStrategic, NodeServiceAndOtherKindsUseTheirTables) {
  const json node = json::parse(R"({"spec":{"taints":[{"key":"a","effect":"NoSchedule"}],"podCIDRs":["10.0.0.0/24"]},
      "status":{"addresses":[{"type":"InternalIP","address":"10.0.0.1"},{"type":"Hostname","address":"n1"}],
                "conditions":[{"type":"Ready","status":"False"}]}})");
  auto n = apply_strategic_merge_patch(node, json::parse(R"({"spec":{"taints":[{"key":"b","effect":"NoExecute"}],
      "podCIDRs":["10.0.1.0/24"]},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}],
      "conditions":[{"type":"Ready","status":"True"}]}})"),
                                       strategic_merge_strategies_for("Node"));
  ASSERT_TRUE(n.ok()) << n.status().to_string();
  EXPECT_EQ((*n)["spec"]["taints"], json::parse(R"([{"key":"b","effect":"NoExecute"}])"));
  EXPECT_EQ((*n)["spec"]["podCIDRs"], json::parse(R"(["10.0.1.0/24","10.0.0.0/24"])"));
  EXPECT_EQ((*n)["status"]["addresses"],
            json::parse(R"([{"type":"InternalIP","address":"10.0.0.2"},{"type":"Hostname","address":"n1"}])"));
  EXPECT_EQ((*n)["status"]["conditions"], json::parse(R"([{"type":"Ready","status":"True"}])"));

  const json svc = json::parse(R"({"spec":{"ports":[{"port":80,"targetPort":8080},{"port":443}]}})");
  auto s = apply_strategic_merge_patch(svc, json::parse(R"({"spec":{"ports":[{"port":80,"targetPort":9090}]}})"),
                                       strategic_merge_strategies_for("Service"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)["spec"]["ports"], json::parse(R"([{"port":80,"targetPort":9090},{"port":443}])"));

  const json ep = json::parse(R"({"subsets":[{"addresses":[{"ip":"1.1.1.1"}]}]})");
  auto e = apply_strategic_merge_patch(ep, json::parse(R"({"subsets":[{"addresses":[{"ip":"2.2.2.2"}]}]})"),
                                       strategic_merge_strategies_for("Endpoints"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)["subsets"], json::parse(R"([{"addresses":[{"ip":"2.2.2.2"}]}])"));
}

TEST(PatchStrategic, TablesFollowTheKubernetesTypeTags) {
  const PatchStrategies& pod = strategic_merge_strategies_for("Pod");
  auto by = [](const PatchStrategies& s, const char* path) {
    ListMerge m = s.list_merge(path);
    return m.strategy == ListStrategy::kMergeByKey ? m.merge_key
           : m.strategy == ListStrategy::kSet      ? std::string("<set>")
                                                   : std::string("<replace>");
  };
  for (const char* list : {"spec.containers", "spec.initContainers", "spec.ephemeralContainers"}) {
    const std::string l = list;
    EXPECT_EQ(by(pod, list), "name");
    EXPECT_EQ(by(pod, (l + ".env").c_str()), "name");
    EXPECT_EQ(by(pod, (l + ".ports").c_str()), "containerPort");
    EXPECT_EQ(by(pod, (l + ".volumeMounts").c_str()), "mountPath");
    EXPECT_EQ(by(pod, (l + ".volumeDevices").c_str()), "devicePath");
    EXPECT_EQ(by(pod, (l + ".envFrom").c_str()), "<replace>");
    EXPECT_EQ(by(pod, (l + ".args").c_str()), "<replace>");
  }
  EXPECT_EQ(by(pod, "spec.volumes"), "name");
  EXPECT_EQ(by(pod, "spec.imagePullSecrets"), "name");
  EXPECT_EQ(by(pod, "spec.tolerations"), "<replace>");
  EXPECT_EQ(by(pod, "spec.readinessGates"), "<replace>");
  EXPECT_EQ(by(pod, "status.conditions"), "type");
  EXPECT_EQ(by(pod, "status.containerStatuses"), "<replace>");
  EXPECT_EQ(by(pod, "metadata.finalizers"), "<set>");
  EXPECT_EQ(by(pod, "metadata.ownerReferences"), "uid");

  const PatchStrategies& node = strategic_merge_strategies_for("Node");
  EXPECT_EQ(by(node, "spec.taints"), "<replace>");
  EXPECT_EQ(by(node, "status.conditions"), "type");
  EXPECT_EQ(by(node, "status.addresses"), "type");
  EXPECT_EQ(by(strategic_merge_strategies_for("Service"), "spec.ports"), "port");
  EXPECT_EQ(by(strategic_merge_strategies_for("Endpoints"), "subsets"), "<replace>");
  EXPECT_EQ(by(strategic_merge_strategies_for("PodDisruptionBudget"), "status.conditions"), "type");
  EXPECT_EQ(by(strategic_merge_strategies_for("Namespace"), "status.conditions"), "type");
  for (const char* kind : {"Secret", "ConfigMap", "EndpointSlice", "Lease", "Event", "SomethingElse"}) {
    EXPECT_EQ(by(strategic_merge_strategies_for(kind), "metadata.finalizers"), "<set>") << kind;
    EXPECT_EQ(by(strategic_merge_strategies_for(kind), "metadata.ownerReferences"), "uid") << kind;
  }
}

TEST(PatchStrategic, CustomTablesDriveTheMerge) {
  PatchStrategies s;
  s.merge_by_key("items", "id").merge_as_set("tags");
  auto r = apply_strategic_merge_patch(json::parse(R"({"items":[{"id":1,"v":"a"}],"tags":["x"],"other":[1]})"),
                                       json::parse(R"({"items":[{"id":1,"v":"b"}],"tags":["x","y"],"other":[2]})"), s);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value(), json::parse(R"({"items":[{"id":1,"v":"b"}],"tags":["x","y"],"other":[2]})"));
}

}  // namespace
}  // namespace hotswap::devcluster
