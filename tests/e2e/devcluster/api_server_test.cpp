// The dev cluster's API server over HTTP: the Kubernetes semantics of each verb, watches,
// selectors, custom resources, the Pod subresources, garbage collection, auth, persistence.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "tests/e2e/devcluster/api_test_util.h"

namespace hotswap::devcluster {
namespace {

using namespace std::chrono_literals;
using testing::Client;
using testing::config_map;
using testing::json;
using testing::pod;
using testing::port_of;
using testing::WatchReader;

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }
  void start(ApiServerOptions o) {
    if (o.bookmark_interval == std::chrono::milliseconds(5000)) o.bookmark_interval = 200ms;
    auto s = ApiServer::start(o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(*s);
    client_ = std::make_unique<Client>(server_->url(), o.token);
  }
  Client& c() { return *client_; }
  std::string rv(const json& o) { return o["metadata"].value("resourceVersion", std::string()); }

  // Polls until pred(GET path) holds, at most 5 s.
  template <typename Pred>
  bool eventually(const std::string& path, Pred pred) {
    for (int i = 0; i < 100; ++i) {
      if (pred(c().get(path))) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<Client> client_;
};

const char* kCms = "/api/v1/namespaces/default/configmaps";
const char* kPods = "/api/v1/namespaces/default/pods";

TEST_F(ApiServerTest, CreateStampsMetadataAndGetReturnsTheObject) {
  auto r = c().post(kCms, config_map("a", {{"k", "v"}}));
  ASSERT_EQ(r.code, 201) << r.body.dump();
  const json& m = r.body["metadata"];
  EXPECT_EQ(m["namespace"], "default");
  EXPECT_EQ(m["uid"].get<std::string>().size(), 36u);
  EXPECT_FALSE(m.value("creationTimestamp", std::string()).empty());
  EXPECT_FALSE(m.value("resourceVersion", std::string()).empty());
  EXPECT_FALSE(m.contains("generation"));  // a ConfigMap has no spec
  auto g = c().get(std::string(kCms) + "/a");
  ASSERT_EQ(g.code, 200);
  EXPECT_EQ(g.body, r.body);
  auto again = c().post(kCms, config_map("a"));
  EXPECT_EQ(again.code, 409);
  EXPECT_EQ(again.body["reason"], "AlreadyExists");
  EXPECT_EQ(again.body["message"], "configmaps \"a\" already exists");
  auto missing = c().get(std::string(kCms) + "/nope");
  EXPECT_EQ(missing.code, 404);
  EXPECT_EQ(missing.body["message"], "configmaps \"nope\" not found");
}

TEST_F(ApiServerTest, ASecretsStringDataIsMergedIntoDataAndNotKept) {
  const char* secrets = "/api/v1/namespaces/default/secrets";
  const json secret = {{"apiVersion", "v1"},
                       {"kind", "Secret"},
                       {"metadata", {{"name", "s"}}},
                       {"data", {{"a", "b2xk"}, {"keep", "eA=="}}},
                       {"stringData", {{"a", "new"}, {"b", "pem\ntext"}}}};
  auto r = c().post(secrets, secret);
  ASSERT_EQ(r.code, 201) << r.body.dump();
  auto g = c().get(std::string(secrets) + "/s");
  ASSERT_EQ(g.code, 200);
  EXPECT_FALSE(g.body.contains("stringData")) << g.body.dump();
  EXPECT_EQ(g.body["data"], (json{{"a", "bmV3"}, {"b", "cGVtCnRleHQ="}, {"keep", "eA=="}})) << g.body.dump();
  json update = g.body;
  update["stringData"] = {{"keep", "y"}};
  auto u = c().put(std::string(secrets) + "/s", update);
  ASSERT_EQ(u.code, 200) << u.body.dump();
  EXPECT_EQ(u.body["data"]["keep"], "eQ==");
  EXPECT_FALSE(u.body.contains("stringData"));
}

TEST_F(ApiServerTest, GenerateNameGivesDistinctNames) {
  json o = config_map("");
  o["metadata"].erase("name");
  o["metadata"]["generateName"] = "job-";
  auto a = c().post(kCms, o);
  auto b = c().post(kCms, o);
  ASSERT_EQ(a.code, 201) << a.body.dump();
  ASSERT_EQ(b.code, 201);
  const std::string na = a.body["metadata"]["name"], nb = b.body["metadata"]["name"];
  EXPECT_EQ(na.rfind("job-", 0), 0u);
  EXPECT_EQ(na.size(), 9u);
  EXPECT_NE(na, nb);
}

TEST_F(ApiServerTest, BadInputsGetClearErrors) {
  auto bad_json = c().call("POST", kCms, "{not json", "application/json");
  json no_name = config_map("");
  no_name["metadata"].erase("name");
  auto r = c().post(kCms, no_name);
  EXPECT_EQ(r.code, 422);
  EXPECT_EQ(r.body["message"], "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required");
  r = c().post(kCms, config_map("Bad_Name"));
  EXPECT_EQ(r.code, 422);
  EXPECT_EQ(r.body["details"]["causes"][0]["field"], "metadata.name");
  json wrong_kind = config_map("x");
  wrong_kind["kind"] = "Secret";
  r = c().post(kCms, wrong_kind);
  EXPECT_EQ(r.code, 400);
  EXPECT_NE(r.body["message"].get<std::string>().find("does not match the expected kind (ConfigMap)"), std::string::npos);
  r = c().post("/api/v1/namespaces/nowhere/configmaps", config_map("x"));
  EXPECT_EQ(r.code, 404);
  EXPECT_EQ(r.body["message"], "namespaces \"nowhere\" not found");
  r = c().get("/api/v1/widgets");
  EXPECT_EQ(r.code, 404);
  r = c().get(std::string(kPods) + "?fieldSelector=spec.bogus=1");
  EXPECT_EQ(r.code, 400);
  EXPECT_EQ(r.body["message"], "field label not supported: spec.bogus");
  r = c().call("POST", kCms, config_map("p"), "application/vnd.kubernetes.protobuf");
  EXPECT_EQ(r.code, 415);
}

TEST_F(ApiServerTest, UpdateWithAStaleResourceVersionIsAConflict) {
  auto a = c().post(kCms, config_map("a", {{"k", "1"}}));
  json first = a.body;
  first["data"]["k"] = "2";
  auto u1 = c().put(std::string(kCms) + "/a", first);
  ASSERT_EQ(u1.code, 200) << u1.body.dump();
  EXPECT_NE(rv(u1.body), rv(a.body));
  first["data"]["k"] = "3";  // still carries the old resourceVersion
  auto u2 = c().put(std::string(kCms) + "/a", first);
  EXPECT_EQ(u2.code, 409);
  EXPECT_EQ(u2.body["reason"], "Conflict");
  EXPECT_NE(u2.body["message"].get<std::string>().find("the object has been modified"), std::string::npos);
  EXPECT_EQ(c().get(std::string(kCms) + "/a").body["data"]["k"], "2");
  // An unchanged object is no write: same version.
  auto same = c().put(std::string(kCms) + "/a", u1.body);
  EXPECT_EQ(rv(same.body), rv(u1.body));
}

TEST_F(ApiServerTest, GenerationCountsSpecChangesOnlyAndStatusGoesThroughItsSubresource) {
  ASSERT_EQ(c().post(kPods, pod("p", {{"app", "x"}})).code, 201);
  const std::string path = std::string(kPods) + "/p";
  auto p = c().get(path).body;
  EXPECT_EQ(p["metadata"]["generation"], 1);
  EXPECT_EQ(p["status"]["phase"], "Pending");
  auto labelled = c().merge_patch(path, {{"metadata", {{"labels", {{"tier", "a"}}}}}});
  EXPECT_EQ(labelled.body["metadata"]["generation"], 1);
  auto image = c().merge_patch(path, {{"spec", {{"activeDeadlineSeconds", 60}}}});
  ASSERT_EQ(image.code, 200) << image.body.dump();
  EXPECT_EQ(image.body["metadata"]["generation"], 2);
  // The main resource ignores status; the status subresource changes nothing else.
  auto ignored = c().merge_patch(path, {{"status", {{"phase", "Running"}}}});
  EXPECT_EQ(ignored.body["status"]["phase"], "Pending");
  auto status = c().call("PATCH", path + "/status", {{"status", {{"phase", "Running"}}}, {"metadata", {{"labels", {{"x", "y"}}}}}},
                         "application/merge-patch+json");
  ASSERT_EQ(status.code, 200) << status.body.dump();
  EXPECT_EQ(status.body["status"]["phase"], "Running");
  EXPECT_FALSE(status.body["metadata"]["labels"].contains("x"));
  EXPECT_EQ(status.body["metadata"]["generation"], 2);
  // A Pod's spec is immutable beyond a few fields.
  auto forbidden = c().merge_patch(path, {{"spec", {{"restartPolicy", "Never"}}}});
  EXPECT_EQ(forbidden.code, 422);
  EXPECT_EQ(forbidden.body["details"]["causes"][0]["field"], "spec");
}

TEST_F(ApiServerTest, PatchTypesApplyAndAStrategicPatchMergesContainersByName) {
  json p = pod("p");
  p["spec"]["containers"].push_back({{"name", "side"}, {"image", "side:1"}});
  ASSERT_EQ(c().post(kPods, p).code, 201);
  const std::string path = std::string(kPods) + "/p";
  auto smp = c().call("PATCH", path, {{"spec", {{"containers", {{{"name", "app"}, {"image", "local/agent:2"}}}}}}},
                      "application/strategic-merge-patch+json");
  ASSERT_EQ(smp.code, 200) << smp.body.dump();
  ASSERT_EQ(smp.body["spec"]["containers"].size(), 2u);
  EXPECT_EQ(smp.body["spec"]["containers"][0]["image"], "local/agent:2");
  EXPECT_EQ(smp.body["spec"]["containers"][1]["image"], "side:1");
  auto jp = c().call("PATCH", path, json::array({{{"op", "add"}, {"path", "/metadata/labels"}, {"value", {{"a", "b"}}}}}),
                     "application/json-patch+json");
  ASSERT_EQ(jp.code, 200) << jp.body.dump();
  EXPECT_EQ(jp.body["metadata"]["labels"]["a"], "b");
  auto failed_test = c().call("PATCH", path, json::array({{{"op", "test"}, {"path", "/metadata/name"}, {"value", "q"}}}),
                              "application/json-patch+json");
  EXPECT_EQ(failed_test.code, 422);
  auto ssa = c().call("PATCH", path, {{"a", 1}}, "application/apply-patch+yaml");
  EXPECT_EQ(ssa.code, 415);
}

TEST_F(ApiServerTest, DeleteWithAFinalizerWaitsUntilTheLastOneGoes) {
  json o = config_map("held");
  o["metadata"]["finalizers"] = {"example.io/hold", "example.io/other"};
  ASSERT_EQ(c().post(kCms, o).code, 201);
  const std::string path = std::string(kCms) + "/held";
  auto d = c().del(path);
  ASSERT_EQ(d.code, 200);
  EXPECT_TRUE(d.body["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(c().get(path).code, 200);
  // No new finalizers once deletion started.
  auto added = c().merge_patch(path, {{"metadata", {{"finalizers", {"example.io/hold", "example.io/other", "new"}}}}});
  EXPECT_EQ(added.code, 422);
  EXPECT_NE(added.body["message"].get<std::string>().find("no new finalizers can be added"), std::string::npos);
  ASSERT_EQ(c().merge_patch(path, {{"metadata", {{"finalizers", {"example.io/other"}}}}}).code, 200);
  EXPECT_EQ(c().get(path).code, 200);
  ASSERT_EQ(c().merge_patch(path, {{"metadata", {{"finalizers", nullptr}}}}).code, 200);
  EXPECT_EQ(c().get(path).code, 404);
}

TEST_F(ApiServerTest, DependentsAreGarbageCollectedAndOrphanDeletionKeepsThem) {
  auto owner = c().post(kCms, config_map("owner")).body;
  auto owner2 = c().post(kCms, config_map("owner2")).body;
  auto dependent = [&](const std::string& name, const json& o) {
    json d = config_map(name);
    d["metadata"]["ownerReferences"] = {{{"apiVersion", "v1"}, {"kind", "ConfigMap"},
                                          {"name", o["metadata"]["name"]}, {"uid", o["metadata"]["uid"]}}};
    ASSERT_EQ(c().post(kCms, d).code, 201);
  };
  dependent("dep", owner);
  dependent("kept", owner2);
  ASSERT_EQ(c().del(std::string(kCms) + "/owner").code, 200);
  EXPECT_TRUE(eventually(std::string(kCms) + "/dep", [](const testing::Reply& r) { return r.code == 404; }));
  ASSERT_EQ(c().del(std::string(kCms) + "/owner2", {{"propagationPolicy", "Orphan"}}).code, 200);
  EXPECT_TRUE(eventually(std::string(kCms) + "/owner2", [](const testing::Reply& r) { return r.code == 404; }));
  auto kept = c().get(std::string(kCms) + "/kept");
  ASSERT_EQ(kept.code, 200);
  EXPECT_FALSE(kept.body["metadata"].contains("ownerReferences"));
}

TEST_F(ApiServerTest, ADeploymentKeepsItsReplicasOfPodsFromTheTemplateAndTakesThemAlong) {
  const char* kDeploys = "/apis/apps/v1/namespaces/default/deployments";
  const json deploy = json::parse(R"({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "30"]}]}}}})");
  auto made = c().post(kDeploys, deploy);
  ASSERT_EQ(made.code, 201) << made.body.dump();
  const std::string uid = made.body["metadata"]["uid"];
  auto pods_of_web = [&] {
    std::vector<json> v;
    const json items = c().get(std::string(kPods) + "?labelSelector=app%3Dweb").body["items"];
    for (const auto& p : items)
      if (!p["metadata"].contains("deletionTimestamp")) v.push_back(p);
    return v;
  };
  auto count_is = [&](size_t n) {
    for (int i = 0; i < 100; ++i) {
      if (pods_of_web().size() == n) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  };
  ASSERT_TRUE(count_is(2)) << c().get(kPods).body.dump();
  for (const auto& p : pods_of_web()) {
    EXPECT_EQ(p["metadata"]["name"].get<std::string>().rfind("web-", 0), 0u);
    EXPECT_EQ(p["metadata"]["ownerReferences"][0]["uid"], uid);
    EXPECT_EQ(p["spec"]["containers"][0]["command"][1], "30");
  }
  EXPECT_TRUE(eventually(std::string(kDeploys) + "/web",
                         [](const testing::Reply& r) { return r.body.value("/status/replicas"_json_pointer, 0) == 2; }));
  // Scaled: the controller follows; a Pod deleted by someone else is replaced.
  ASSERT_EQ(c().merge_patch(std::string(kDeploys) + "/web", {{"spec", {{"replicas", 1}}}}).code, 200);
  ASSERT_TRUE(count_is(1));
  const std::string survivor = pods_of_web()[0]["metadata"]["name"];
  ASSERT_EQ(c().del(std::string(kPods) + "/" + survivor, {{"gracePeriodSeconds", 0}}).code, 200);
  ASSERT_TRUE(eventually(std::string(kPods) + "?labelSelector=app%3Dweb", [&](const testing::Reply& r) {
    return r.body["items"].size() == 1 && r.body["items"][0]["metadata"]["name"] != survivor;
  }));
  // Deleted: its Pods go with it.
  ASSERT_EQ(c().del(std::string(kDeploys) + "/web").code, 200);
  EXPECT_TRUE(count_is(0));
}

TEST_F(ApiServerTest, DeletingANamespaceDeletesWhatIsInItThenTheNamespace) {
  ASSERT_EQ(c().post("/api/v1/namespaces", {{"metadata", {{"name", "tmp"}}}}).code, 201);
  ASSERT_EQ(c().post("/api/v1/namespaces/tmp/configmaps", config_map("x")).code, 201);
  auto d = c().del("/api/v1/namespaces/tmp");
  ASSERT_EQ(d.code, 200);
  EXPECT_EQ(d.body["status"]["phase"], "Terminating");
  auto refused = c().post("/api/v1/namespaces/tmp/configmaps", config_map("y"));
  if (refused.code != 404) {
    EXPECT_EQ(refused.code, 403);
    EXPECT_NE(refused.body["message"].get<std::string>().find("being terminated"), std::string::npos);
  }
  EXPECT_TRUE(eventually("/api/v1/namespaces/tmp", [](const testing::Reply& r) { return r.code == 404; }));
  EXPECT_EQ(c().get("/api/v1/namespaces/tmp/configmaps/x").code, 404);
}

TEST_F(ApiServerTest, ListFiltersBySelectorsAndPages) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(c().post(kPods, pod("p" + std::to_string(i), {{"app", i % 2 ? "odd" : "even"}},
                                   i < 2 ? "node-a" : "")).code,
              201);
  }
  auto odd = c().get(std::string(kPods) + "?labelSelector=app%3Dodd");
  ASSERT_EQ(odd.code, 200);
  EXPECT_EQ(odd.body["items"].size(), 2u);
  auto in = c().get(std::string(kPods) + "?labelSelector=app%20in%20(odd,even),app!%3Dodd");
  EXPECT_EQ(in.body["items"].size(), 3u);
  auto on_node = c().get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a");
  EXPECT_EQ(on_node.body["items"].size(), 2u);
  auto unbound = c().get("/api/v1/pods?fieldSelector=spec.nodeName%3D");
  EXPECT_EQ(unbound.body["items"].size(), 3u);
  auto page1 = c().get(std::string(kPods) + "?limit=2");
  ASSERT_EQ(page1.body["items"].size(), 2u);
  const std::string cont = page1.body["metadata"]["continue"];
  EXPECT_EQ(page1.body["metadata"]["remainingItemCount"], 3);
  auto page2 = c().get(std::string(kPods) + "?limit=2&continue=" + cont);
  ASSERT_EQ(page2.body["items"].size(), 2u);
  EXPECT_NE(page2.body["items"][0]["metadata"]["name"], page1.body["items"][0]["metadata"]["name"]);
  auto bad = c().get(std::string(kPods) + "?labelSelector=a%20in%20x");
  EXPECT_EQ(bad.code, 400);
}

TEST_F(ApiServerTest, WatchResumesFromAResourceVersionWithEveryLaterChangeInOrder) {
  auto a = c().post(kCms, config_map("a")).body;
  c().post(kCms, config_map("b"));
  c().merge_patch(std::string(kCms) + "/a", {{"data", {{"k", "v"}}}});
  c().del(std::string(kCms) + "/b");
  WatchReader w(port_of(server_->url()), std::string(kCms) + "?watch=1&resourceVersion=" + rv(a));
  ASSERT_TRUE(w.connected());
  ASSERT_EQ(w.status(), 200);
  std::vector<std::pair<std::string, std::string>> got;
  for (int i = 0; i < 3; ++i) {
    auto ev = w.next();
    ASSERT_TRUE(ev.has_value()) << "event " << i;
    got.push_back({(*ev)["type"], (*ev)["object"]["metadata"]["name"]});
  }
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{{"ADDED", "b"}, {"MODIFIED", "a"}, {"DELETED", "b"}}));
  // And then the live ones.
  c().post(kCms, config_map("c"));
  auto live = w.next();
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ((*live)["type"], "ADDED");
  EXPECT_EQ((*live)["object"]["metadata"]["name"], "c");
}

TEST_F(ApiServerTest, WatchWithoutAVersionStartsWithEveryObjectAsAdded) {
  c().post(kCms, config_map("a"));
  c().post(kCms, config_map("b"));
  WatchReader w(port_of(server_->url()), std::string(kCms) + "?watch=true");
  auto e1 = w.next(), e2 = w.next();
  ASSERT_TRUE(e1 && e2);
  EXPECT_EQ((*e1)["type"], "ADDED");
  EXPECT_EQ((*e2)["object"]["metadata"]["name"], "b");
}

TEST_F(ApiServerTest, WatchFromATooOldVersionGetsGone) {
  server_.reset();
  ApiServerOptions o;
  o.event_log_limit = 3;
  start(o);
  auto first = c().post(kCms, config_map("a")).body;
  for (int i = 0; i < 5; ++i) c().post(kCms, config_map("n" + std::to_string(i)));
  WatchReader w(port_of(server_->url()), std::string(kCms) + "?watch=1&resourceVersion=" + rv(first));
  auto ev = w.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ((*ev)["type"], "ERROR");
  EXPECT_EQ((*ev)["object"]["code"], 410);
  EXPECT_EQ((*ev)["object"]["reason"], "Expired");
  EXPECT_TRUE(w.ends_within(2s));
}

TEST_F(ApiServerTest, WatchSelectorsTurnLeavingObjectsIntoDeletedAndBookmarksCarryTheVersion) {
  c().post(kCms, config_map("a", {}, {{"app", "x"}}));
  WatchReader w(port_of(server_->url()),
                std::string(kCms) + "?watch=1&labelSelector=app%3Dx&allowWatchBookmarks=true");
  auto added = w.next();
  ASSERT_TRUE(added.has_value());
  EXPECT_EQ((*added)["type"], "ADDED");
  c().post(kCms, config_map("other"));  // never matches: no event
  auto moved = c().merge_patch(std::string(kCms) + "/a", {{"metadata", {{"labels", {{"app", "y"}}}}}}).body;
  std::optional<json> ev;
  for (int i = 0; i < 10; ++i) {
    ev = w.next();
    ASSERT_TRUE(ev.has_value());
    if ((*ev)["type"] != "BOOKMARK") break;
  }
  EXPECT_EQ((*ev)["type"], "DELETED");
  EXPECT_EQ((*ev)["object"]["metadata"]["name"], "a");
  std::optional<json> bookmark;
  for (int i = 0; i < 10 && !bookmark; ++i) {
    auto e = w.next();
    if (e && (*e)["type"] == "BOOKMARK") bookmark = e;
  }
  ASSERT_TRUE(bookmark.has_value());
  EXPECT_GE(std::stoull((*bookmark)["object"]["metadata"]["resourceVersion"].get<std::string>()),
            std::stoull(rv(moved)));
}

TEST_F(ApiServerTest, WatchTimeoutSecondsEndsTheStream) {
  WatchReader w(port_of(server_->url()), std::string(kCms) + "?watch=1&timeoutSeconds=1");
  ASSERT_EQ(w.status(), 200);
  EXPECT_TRUE(w.ends_within(3s));
}

TEST_F(ApiServerTest, ServicesGetAClusterIpOnTheLoopbackRange) {
  json svc = {{"metadata", {{"name", "s1"}}}, {"spec", {{"selector", {{"app", "x"}}}, {"ports", {{{"port", 80}}}}}}};
  auto a = c().post("/api/v1/namespaces/default/services", svc);
  ASSERT_EQ(a.code, 201) << a.body.dump();
  const std::string ip = a.body["spec"]["clusterIP"];
  EXPECT_EQ(ip.rfind("127.0.2.", 0), 0u);
  EXPECT_EQ(a.body["spec"]["ports"][0]["targetPort"], 80);
  svc["metadata"]["name"] = "s2";
  auto b = c().post("/api/v1/namespaces/default/services", svc);
  EXPECT_NE(b.body["spec"]["clusterIP"], ip);
  svc["metadata"]["name"] = "s3";
  svc["spec"]["clusterIP"] = ip;
  auto taken = c().post("/api/v1/namespaces/default/services", svc);
  EXPECT_EQ(taken.code, 422);
}

TEST_F(ApiServerTest, BindingSetsTheNodeOnceAndEvictionHonoursTheBudget) {
  ASSERT_EQ(c().post(kPods, pod("p", {{"app", "web"}})).code, 201);
  const std::string path = std::string(kPods) + "/p";
  json binding = {{"apiVersion", "v1"}, {"kind", "Binding"}, {"metadata", {{"name", "p"}}},
                  {"target", {{"kind", "Node"}, {"name", "node-1"}}}};
  ASSERT_EQ(c().post(path + "/binding", binding).code, 201);
  EXPECT_EQ(c().get(path).body["spec"]["nodeName"], "node-1");
  auto twice = c().post(path + "/binding", binding);
  EXPECT_EQ(twice.code, 409);
  // Ready, with a budget that allows nothing.
  c().call("PATCH", path + "/status", {{"status", {{"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}},
           "application/merge-patch+json");
  json pdb = {{"metadata", {{"name", "b"}}},
              {"spec", {{"maxUnavailable", 0}, {"selector", {{"matchLabels", {{"app", "web"}}}}}}}};
  ASSERT_EQ(c().post("/apis/policy/v1/namespaces/default/poddisruptionbudgets", pdb).code, 201);
  json eviction = {{"apiVersion", "policy/v1"}, {"kind", "Eviction"}, {"metadata", {{"name", "p"}}}};
  auto blocked = c().post(path + "/eviction", eviction);
  EXPECT_EQ(blocked.code, 429);
  EXPECT_EQ(blocked.body["message"], "Cannot evict pod as it would violate the pod's disruption budget.");
  EXPECT_EQ(blocked.body["details"]["causes"][0]["message"],
            "The disruption budget b needs 1 healthy pods and has 1 currently");
  EXPECT_TRUE(eventually("/apis/policy/v1/namespaces/default/poddisruptionbudgets/b", [](const testing::Reply& r) {
    return r.body.value("/status/currentHealthy"_json_pointer, -1) == 1;
  }));
  // Allow one: the eviction deletes the Pod, gracefully (it is on a node).
  c().merge_patch("/apis/policy/v1/namespaces/default/poddisruptionbudgets/b", {{"spec", {{"maxUnavailable", 1}}}});
  auto ok = c().post(path + "/eviction", eviction);
  ASSERT_EQ(ok.code, 201) << ok.body.dump();
  auto terminating = c().get(path);
  ASSERT_EQ(terminating.code, 200);
  EXPECT_TRUE(terminating.body["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(terminating.body["metadata"]["deletionGracePeriodSeconds"], 30);
  // The kubelet's final delete (grace 0) removes it.
  ASSERT_EQ(c().del(path, {{"gracePeriodSeconds", 0}}).code, 200);
  EXPECT_EQ(c().get(path).code, 404);
}

json widget_crd() {
  return json::parse(R"({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.io"},
    "spec": {"group": "example.io", "scope": "Namespaced",
      "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
      "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
        "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                                     {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}],
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
          "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"}}},
          "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}})");
}

TEST_F(ApiServerTest, ACrdServesItsResourcesWithValidationAndPrinterColumns) {
  auto crd = c().post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", widget_crd());
  ASSERT_EQ(crd.code, 201) << crd.body.dump();
  auto discovery = c().get("/apis/example.io/v1");
  ASSERT_EQ(discovery.code, 200);
  EXPECT_EQ(discovery.body["resources"][0]["name"], "widgets");
  EXPECT_TRUE(eventually("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io",
                         [](const testing::Reply& r) {
                           for (const auto& cond : r.body.value("/status/conditions"_json_pointer, json::array()))
                             if (cond["type"] == "Established" && cond["status"] == "True") return true;
                           return false;
                         }));
  const std::string path = "/apis/example.io/v1/namespaces/default/widgets";
  json w = {{"apiVersion", "example.io/v1"}, {"kind", "Widget"}, {"metadata", {{"name", "w1"}}}, {"spec", {{"size", 3}}}};
  auto created = c().post(path, w);
  ASSERT_EQ(created.code, 201) << created.body.dump();
  EXPECT_EQ(created.body["spec"]["color"], "red");  // the schema's default
  json too_big = w;
  too_big["metadata"]["name"] = "w2";
  too_big["spec"]["size"] = 30;
  auto invalid = c().post(path, too_big);
  EXPECT_EQ(invalid.code, 422);
  EXPECT_EQ(invalid.body["message"],
            "Widget.example.io \"w2\" is invalid: spec.size: Invalid value: 30: spec.size in body should be less than "
            "or equal to 10");
  EXPECT_EQ(invalid.body["details"]["causes"][0]["field"], "spec.size");
  json unknown = w;
  unknown["metadata"]["name"] = "w3";
  unknown["spec"]["bogus"] = true;
  auto strict = c().post(path + "?fieldValidation=Strict", unknown);
  EXPECT_EQ(strict.code, 400);
  EXPECT_EQ(strict.body["message"], "strict decoding error: unknown field \"spec.bogus\"");
  auto warned = c().post(path, unknown);
  ASSERT_EQ(warned.code, 201);
  EXPECT_FALSE(warned.body["spec"].contains("bogus"));  // pruned
  EXPECT_NE(warned.warning.find("unknown field \\\"spec.bogus\\\""), std::string::npos) << warned.warning;
  auto smp = c().call("PATCH", path + "/w1", {{"spec", {{"size", 4}}}}, "application/strategic-merge-patch+json");
  EXPECT_EQ(smp.code, 415);
  c().call("PATCH", path + "/w1/status", {{"status", {{"phase", "Ready"}}}}, "application/merge-patch+json");
  auto table = c().call("GET", path, nullptr, "application/json",
                        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
  ASSERT_EQ(table.code, 200);
  ASSERT_EQ(table.body["kind"], "Table");
  std::vector<std::string> columns;
  for (const auto& col : table.body["columnDefinitions"]) columns.push_back(col["name"]);
  EXPECT_EQ(columns, (std::vector<std::string>{"Name", "Size", "Phase"}));
  EXPECT_EQ(table.body["rows"][0]["cells"], json::array({"w1", 3, "Ready"}));
  // Deleting the CRD deletes its resources, then stops serving them.
  ASSERT_EQ(c().del("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io").code, 200);
  EXPECT_TRUE(eventually("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io",
                         [](const testing::Reply& r) { return r.code == 404; }));
  EXPECT_EQ(c().get(path).code, 404);
}

TEST_F(ApiServerTest, ABadCrdIsRefusedNamingTheField) {
  json crd = widget_crd();
  crd["spec"]["versions"][0]["storage"] = false;
  auto r = c().post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
  EXPECT_EQ(r.code, 422);
  EXPECT_NE(r.body["message"].get<std::string>().find("exactly one version marked as storage version"),
            std::string::npos);
  crd = widget_crd();
  crd["metadata"]["name"] = "wrong.example.io";
  r = c().post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
  EXPECT_EQ(r.code, 422);
  EXPECT_NE(r.body["message"].get<std::string>().find("metadata.name"), std::string::npos);
}

TEST_F(ApiServerTest, DiscoveryListsGroupsAndSubresources) {
  auto v = c().get("/version");
  EXPECT_EQ(v.body["major"], "1");
  auto core = c().get("/api/v1");
  bool eviction = false;
  for (const auto& r : core.body["resources"])
    if (r["name"] == "pods/eviction") eviction = r["kind"] == "Eviction";
  EXPECT_TRUE(eviction);
  auto groups = c().get("/apis");
  std::vector<std::string> names;
  for (const auto& g : groups.body["groups"]) names.push_back(g["name"]);
  for (const char* g : {"discovery.k8s.io", "coordination.k8s.io", "policy", "apiextensions.k8s.io"})
    EXPECT_NE(std::find(names.begin(), names.end(), g), names.end()) << g;
  auto oa = c().get("/openapi/v3");
  ASSERT_EQ(oa.code, 200);
  const std::string url = oa.body["paths"]["api/v1"]["serverRelativeURL"];
  auto doc = c().get(url);
  ASSERT_EQ(doc.code, 200);
  EXPECT_EQ(doc.body["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]["parameters"][0]["name"],
            "fieldValidation");
}

TEST_F(ApiServerTest, ATokenIsRequiredWhenConfigured) {
  server_.reset();
  ApiServerOptions o;
  o.token = "0123456789abcdef-token";
  start(o);
  EXPECT_EQ(c().get("/api/v1/namespaces").code, 200);
  Client anonymous(server_->url());
  auto r = anonymous.get("/api/v1/namespaces");
  EXPECT_EQ(r.code, 401);
  EXPECT_EQ(r.body["reason"], "Unauthorized");
  Client wrong(server_->url(), "0123456789abcdef-wrong");
  EXPECT_EQ(wrong.get("/api/v1/namespaces").code, 401);
  EXPECT_EQ(anonymous.get("/healthz").code, 200);  // liveness needs no token
}

TEST_F(ApiServerTest, TheStateFileKeepsObjectsAcrossARestart) {
  const std::string file = std::filesystem::temp_directory_path() / ("devcluster-state-" + std::to_string(::getpid()));
  std::filesystem::remove(file);
  server_.reset();
  ApiServerOptions o;
  o.state_file = file;
  start(o);
  auto a = c().post(kCms, config_map("kept", {{"k", "v"}})).body;
  ASSERT_EQ(c().post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", widget_crd()).code, 201);
  server_.reset();  // saves
  start(o);
  auto g = c().get(std::string(kCms) + "/kept");
  ASSERT_EQ(g.code, 200);
  EXPECT_EQ(g.body["metadata"]["uid"], a["metadata"]["uid"]);
  // Versions go on from where they were; the CRD's resources are served again.
  auto b = c().post(kCms, config_map("new")).body;
  EXPECT_GT(std::stoull(rv(b)), std::stoull(rv(a)));
  EXPECT_EQ(c().get("/apis/example.io/v1/namespaces/default/widgets").code, 200);
  server_.reset();
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace hotswap::devcluster
