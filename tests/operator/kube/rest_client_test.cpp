#include <gtest/gtest.h>

#include "operator/kube/rest_client.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/operator/kube/fake_api_server.h"
#include "tests/operator/kube/test_certs.h"

namespace hotswap::kube {
namespace {

using fake::FakeApiServer;
using nlohmann::json;

const ResourceRef kPods = ResourceRef::core("pods");

json pod(const std::string& name, json labels = json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"labels", labels}}},
          {"spec", {{"containers", json::array({{{"name", "c"}, {"image", "agent"}}})}}}};
}

std::unique_ptr<FakeApiServer> start_server() {
  auto s = FakeApiServer::start();
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  return s.ok() ? std::move(s).value() : nullptr;
}

std::unique_ptr<RestClient> client_for(const std::string& url, const std::string& token = "",
                                       RestClientOptions options = {}) {
  ClusterConfig c;
  c.server = url;
  c.token = token;
  auto r = RestClient::create(c, options);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? std::move(r).value() : nullptr;
}

TEST(ResourcePath, BuildsCoreGroupClusterScopedAndSubresourcePaths) {
  EXPECT_EQ(resource_path(kPods.in("default").named("p").sub("status")).value(),
            "/api/v1/namespaces/default/pods/p/status");
  EXPECT_EQ(resource_path(kPods.in("ns")).value(), "/api/v1/namespaces/ns/pods");
  EXPECT_EQ(resource_path(kPods).value(), "/api/v1/pods");  // across namespaces
  EXPECT_EQ(resource_path(ResourceRef::core("nodes").named("n1")).value(), "/api/v1/nodes/n1");
  EXPECT_EQ(resource_path(ResourceRef::core("namespaces").named("models")).value(), "/api/v1/namespaces/models");
  EXPECT_EQ(resource_path(ResourceRef::of("hotswap.io", "v1alpha1", "modeldeployments").in("m").named("llama")).value(),
            "/apis/hotswap.io/v1alpha1/namespaces/m/modeldeployments/llama");
  EXPECT_EQ(resource_path(ResourceRef::of("coordination.k8s.io", "v1", "leases").in("kube-system")).value(),
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases");
  EXPECT_EQ(resource_path(ResourceRef::core("pods").in("a").named("p").sub("eviction")).value(),
            "/api/v1/namespaces/a/pods/p/eviction");
  EXPECT_EQ(resource_path(ResourceRef::core("configmaps").in("a").named("x:y")).value(),
            "/api/v1/namespaces/a/configmaps/x%3Ay");
  EXPECT_EQ(ResourceRef::of("apps", "v1", "deployments").api_version(), "apps/v1");
  EXPECT_EQ(kPods.api_version(), "v1");
}

TEST(ResourcePath, RejectsBadReferences) {
  auto no_resource = resource_path(ResourceRef::core(""));
  ASSERT_FALSE(no_resource.ok());
  EXPECT_NE(no_resource.status().message().find("resource is empty"), std::string::npos);
  auto sub_without_name = resource_path(kPods.in("a").sub("status"));
  ASSERT_FALSE(sub_without_name.ok());
  EXPECT_NE(sub_without_name.status().message().find("needs an object name"), std::string::npos);
  EXPECT_FALSE(resource_path(kPods.in("a").named("x/y")).ok());
  EXPECT_FALSE(resource_path(kPods.in("..").named("x")).ok());
  EXPECT_FALSE(resource_path(kPods.in("a").named(".")).ok());
  EXPECT_FALSE(resource_path(ResourceRef{"", "", "pods", "", "", ""}).ok());
}

TEST(ListQuery, EncodesEverySetOption) {
  EXPECT_EQ(list_query({}), "");
  ListOptions o;
  o.label_selector = "app=llama,tier in (a,b)";
  o.field_selector = "spec.nodeName=n1";
  o.resource_version = "42";
  o.resource_version_match = "NotOlderThan";
  o.limit = 5;
  o.continue_token = "abc=";
  o.timeout_seconds = 30;
  o.allow_watch_bookmarks = true;
  EXPECT_EQ(list_query(o),
            "?labelSelector=app%3Dllama%2Ctier%20in%20%28a%2Cb%29&fieldSelector=spec.nodeName%3Dn1"
            "&resourceVersion=42&resourceVersionMatch=NotOlderThan&limit=5&continue=abc%3D&timeoutSeconds=30"
            "&allowWatchBookmarks=true");
}

TEST(DeleteOptionsJson, CarriesPolicyGraceAndPreconditions) {
  EXPECT_TRUE(DeleteOptions{}.to_json().is_null());
  DeleteOptions d;
  d.propagation_policy = "Foreground";
  d.grace_period_seconds = 0;
  d.precondition_resource_version = "7";
  json j = d.to_json();
  EXPECT_EQ(j["kind"], "DeleteOptions");
  EXPECT_EQ(j["apiVersion"], "v1");
  EXPECT_EQ(j["propagationPolicy"], "Foreground");
  EXPECT_EQ(j["gracePeriodSeconds"], 0);
  EXPECT_EQ(j["preconditions"]["resourceVersion"], "7");
}

TEST(ApiErrors, MapHttpCodesAndParseStatusObjects) {
  EXPECT_EQ(status_code_for_http(404), StatusCode::kNotFound);
  EXPECT_EQ(status_code_for_http(409), StatusCode::kFailedPrecondition);
  EXPECT_EQ(status_code_for_http(410), StatusCode::kFailedPrecondition);
  EXPECT_EQ(status_code_for_http(422), StatusCode::kInvalidArgument);
  EXPECT_EQ(status_code_for_http(429), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for_http(503), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for_http(0), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for_http(403), StatusCode::kFailedPrecondition);
  ApiError e = api_error_from_body(409, fake::status_object(409, "AlreadyExists", "pods \"p\" already exists").dump());
  EXPECT_TRUE(e.is_already_exists());
  EXPECT_FALSE(e.is_conflict());
  EXPECT_EQ(e.message, "pods \"p\" already exists");
  ApiError raw = api_error_from_body(502, "<html>bad gateway</html>");
  EXPECT_EQ(raw.http_code, 502);
  EXPECT_EQ(raw.message, "<html>bad gateway</html>");
  EXPECT_TRUE(raw.reason.empty());
}

TEST(RestClient, CreateGetUpdateWithConflictPatchAndDelete) {
  auto server = start_server();
  ASSERT_NE(server, nullptr);
  auto client = client_for(server->url(), "tok-123");
  ASSERT_NE(client, nullptr);
  const ResourceRef pods = kPods.in("models");

  auto created = client->create(pods, pod("p1"));
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  EXPECT_EQ(created->at("metadata").at("namespace"), "models");
  const std::string rv1 = created->at("metadata").at("resourceVersion");

  auto again = client->create(pods, pod("p1"));
  ASSERT_FALSE(again.ok());
  EXPECT_TRUE(again.error().is_already_exists());
  EXPECT_EQ(again.http_code(), 409);
  EXPECT_NE(again.status().message().find("pods \"p1\" already exists"), std::string::npos) << again.status().message();
  EXPECT_NE(again.status().message().find("POST /api/v1/namespaces/models/pods"), std::string::npos);

  auto got = client->get(pods.named("p1"));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  json next = got.value();
  next["metadata"]["labels"]["tier"] = "gold";
  auto updated = client->update(pods.named("p1"), next);
  ASSERT_TRUE(updated.ok()) << updated.status().to_string();
  EXPECT_NE(updated->at("metadata").at("resourceVersion"), rv1);

  // The same read, written again: its resourceVersion is stale now.
  auto stale = client->update(pods.named("p1"), next);
  ASSERT_FALSE(stale.ok());
  EXPECT_TRUE(stale.error().is_conflict());
  EXPECT_EQ(stale.error().reason, "Conflict");
  EXPECT_EQ(stale.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.status().message().find("the object has been modified"), std::string::npos);

  auto merged = client->patch(pods.named("p1"), PatchType::kMerge, {{"metadata", {{"labels", {{"a", "1"}}}}}});
  ASSERT_TRUE(merged.ok()) << merged.status().to_string();
  EXPECT_EQ(merged->at("metadata").at("labels").at("a"), "1");
  EXPECT_EQ(merged->at("metadata").at("labels").at("tier"), "gold");
  auto jp = client->patch(pods.named("p1"), PatchType::kJson,
                          json::array({{{"op", "replace"}, {"path", "/metadata/labels/a"}, {"value", "2"}}}));
  ASSERT_TRUE(jp.ok()) << jp.status().to_string();
  EXPECT_EQ(jp->at("metadata").at("labels").at("a"), "2");
  auto sm = client->patch(pods.named("p1"), PatchType::kStrategicMerge, {{"metadata", {{"labels", {{"b", "3"}}}}}});
  ASSERT_TRUE(sm.ok()) << sm.status().to_string();
  WriteOptions apply_opts;
  apply_opts.field_manager = "hotswap-operator";
  apply_opts.force = true;
  auto applied =
      client->patch(pods.named("p1"), PatchType::kApply, {{"metadata", {{"labels", {{"c", "4"}}}}}}, apply_opts);
  ASSERT_TRUE(applied.ok()) << applied.status().to_string();
  auto no_manager = client->patch(pods.named("p1"), PatchType::kApply, json::object());
  ASSERT_FALSE(no_manager.ok());
  EXPECT_NE(no_manager.status().message().find("field manager"), std::string::npos);

  // The status subresource replaces only status.
  json with_status = applied.value();
  with_status["status"] = {{"phase", "Running"}};
  with_status["metadata"]["labels"]["ignored"] = "yes";
  auto status = client->update(pods.named("p1").sub("status"), with_status);
  ASSERT_TRUE(status.ok()) << status.status().to_string();
  EXPECT_EQ(status->at("status").at("phase"), "Running");
  EXPECT_FALSE(status->at("metadata").at("labels").contains("ignored"));

  DeleteOptions del;
  del.propagation_policy = "Background";
  auto removed = client->remove(pods.named("p1"), del);
  ASSERT_TRUE(removed.ok()) << removed.status().to_string();
  auto gone = client->get(pods.named("p1"));
  ASSERT_FALSE(gone.ok());
  EXPECT_TRUE(gone.error().is_not_found());
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound);
  EXPECT_NE(gone.status().message().find("pods \"p1\" not found"), std::string::npos);
  auto gone_again = client->remove(pods.named("p1"));
  EXPECT_TRUE(gone_again.error().is_not_found());

  // What went over the wire.
  bool saw_merge = false, saw_json = false, saw_strategic = false, saw_apply = false, saw_delete = false;
  for (const auto& r : server->requests()) {
    EXPECT_EQ(r.authorization, "Bearer tok-123") << r.method << " " << r.path;
    if (r.method == "PATCH" && r.content_type.rfind("application/merge-patch+json", 0) == 0) saw_merge = true;
    if (r.method == "PATCH" && r.content_type.rfind("application/json-patch+json", 0) == 0) saw_json = true;
    if (r.method == "PATCH" && r.content_type.rfind("application/strategic-merge-patch+json", 0) == 0) {
      saw_strategic = true;
    }
    if (r.method == "PATCH" && r.content_type.rfind("application/apply-patch+yaml", 0) == 0) {
      saw_apply = true;
      EXPECT_EQ(r.query.at("fieldManager"), "hotswap-operator");
      EXPECT_EQ(r.query.at("force"), "true");
    }
    if (r.method == "DELETE" && !saw_delete) {
      saw_delete = true;
      json body = json::parse(r.body);
      EXPECT_EQ(body["kind"], "DeleteOptions");
      EXPECT_EQ(body["propagationPolicy"], "Background");
    }
  }
  EXPECT_TRUE(saw_merge && saw_json && saw_strategic && saw_apply && saw_delete);
}

TEST(RestClient, ClusterScopedAndCustomResources) {
  auto server = start_server();
  ASSERT_NE(server, nullptr);
  auto client = client_for(server->url());
  ASSERT_NE(client, nullptr);
  json node = {{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", {{"name", "gpu-1"}}}};
  ASSERT_TRUE(client->create(ResourceRef::core("nodes"), node).ok());
  auto got = client->get(ResourceRef::core("nodes").named("gpu-1"));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_FALSE(got->at("metadata").contains("namespace"));
  const ResourceRef md = ResourceRef::of("hotswap.io", "v1alpha1", "modeldeployments").in("m");
  json d = {{"apiVersion", "hotswap.io/v1alpha1"}, {"kind", "ModelDeployment"}, {"metadata", {{"name", "llama"}}}};
  ASSERT_TRUE(client->create(md, d).ok());
  auto l = client->list(md);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  EXPECT_EQ(l->at("items").size(), 1u);
  EXPECT_EQ(server->count("POST", "/api/v1/nodes"), 1);
  EXPECT_EQ(server->count("GET", "/apis/hotswap.io/v1alpha1/namespaces/m/modeldeployments"), 1);
  // A list of a named object is refused before any request.
  EXPECT_FALSE(client->list(md.named("llama")).ok());
}

TEST(RestClient, ListAllFollowsContinueTokensAndSelectors) {
  auto server = start_server();
  ASSERT_NE(server, nullptr);
  for (int i = 0; i < 5; ++i) server->put("/api/v1", "pods", "a", pod("p" + std::to_string(i), {{"app", "x"}}));
  server->put("/api/v1", "pods", "a", pod("other", {{"app", "y"}}));
  auto client = client_for(server->url());
  ASSERT_NE(client, nullptr);
  ListOptions o;
  o.limit = 2;
  o.label_selector = "app=x";
  auto all = client->list_all(kPods.in("a"), o);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  ASSERT_EQ(all->at("items").size(), 5u);
  EXPECT_EQ(all->at("metadata").at("resourceVersion"), std::to_string(server->resource_version()));
  EXPECT_FALSE(all->at("metadata").contains("continue"));
  int pages = 0;
  for (const auto& r : server->requests()) {
    if (r.method != "GET") continue;
    ++pages;
    EXPECT_EQ(r.query.at("limit"), "2");
    EXPECT_EQ(r.query.at("labelSelector"), "app=x");
  }
  EXPECT_EQ(pages, 3);
  auto one_page = client->list(kPods.in("a"), o);
  ASSERT_TRUE(one_page.ok());
  EXPECT_EQ(one_page->at("items").size(), 2u);
  EXPECT_EQ(one_page->at("metadata").at("continue"), "2");
}

TEST(RestClient, KeepsTheServersErrorDetail) {
  auto server = start_server();
  ASSERT_NE(server, nullptr);
  server->set_hook([](const fake::Recorded& r) -> std::optional<fake::Reply> {
    if (r.path == "/api/v1/namespaces/a/pods/busy") {
      return fake::Reply{429, fake::status_object(429, "TooManyRequests", "slow down"), {{"Retry-After", "3"}}};
    }
    if (r.path == "/api/v1/namespaces/a/pods/bad") {
      fake::Reply rep{422, fake::status_object(422, "Invalid", "Pod \"bad\" is invalid: spec.containers: Required")};
      rep.body["details"] = {{"causes", json::array({{{"field", "spec.containers"}}})}};
      return rep;
    }
    if (r.path == "/api/v1/namespaces/a/pods/proxy") return fake::Reply{502, json("<html>bad gateway</html>")};
    if (r.path == "/api/v1/namespaces/a/pods/old") {
      return fake::Reply{410, fake::status_object(410, "Gone", "too old resource version")};
    }
    return std::nullopt;
  });
  auto client = client_for(server->url());
  ASSERT_NE(client, nullptr);
  auto busy = client->get(kPods.in("a").named("busy"));
  EXPECT_TRUE(busy.error().is_too_many_requests());
  EXPECT_EQ(busy.error().retry_after_seconds, 3);
  EXPECT_EQ(busy.status().code(), StatusCode::kUnavailable);
  auto bad = client->get(kPods.in("a").named("bad"));
  EXPECT_TRUE(bad.error().is_invalid());
  EXPECT_EQ(bad.error().details["causes"][0]["field"], "spec.containers");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("422 Invalid: Pod \"bad\" is invalid"), std::string::npos)
      << bad.status().message();
  auto proxy = client->get(kPods.in("a").named("proxy"));
  EXPECT_EQ(proxy.http_code(), 502);
  EXPECT_NE(proxy.status().message().find("bad gateway"), std::string::npos);
  auto old = client->get(kPods.in("a").named("old"));
  EXPECT_TRUE(old.error().is_gone());
}

TEST(RestClient, NoServerIsATransportErrorWithoutHttpCode) {
  auto port = http::pick_free_port();
  ASSERT_TRUE(port.ok());
  RestClientOptions o;
  o.timeout = std::chrono::milliseconds(2000);
  auto client = client_for("http://127.0.0.1:" + std::to_string(*port), "", o);
  ASSERT_NE(client, nullptr);
  auto t0 = std::chrono::steady_clock::now();
  auto r = client->get(kPods.in("a").named("p"));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().is_transport());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("127.0.0.1:" + std::to_string(*port)), std::string::npos);
}

TEST(RestClient, SilentServerTimesOut) {
  auto server = start_server();
  ASSERT_NE(server, nullptr);
  server->set_hook([](const fake::Recorded&) -> std::optional<fake::Reply> {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    return fake::Reply{200, json::object()};
  });
  RestClientOptions o;
  o.timeout = std::chrono::milliseconds(300);
  auto client = client_for(server->url(), "", o);
  ASSERT_NE(client, nullptr);
  auto t0 = std::chrono::steady_clock::now();
  auto r = client->get(kPods.in("a").named("p"));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().is_transport());
  EXPECT_LT(took, std::chrono::milliseconds(1400));
}

TEST(RestClient, RereadsARotatedTokenFile) {
  auto server = start_server();
  ASSERT_NE(server, nullptr);
  char tmpl[] = "/tmp/hotswap-token-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  const std::string path = tmpl;
  std::ofstream(path) << "first-token\n";
  ClusterConfig c;
  c.server = server->url();
  c.token = "first-token";
  c.token_file = path;
  RestClientOptions o;
  o.token_reload_period = std::chrono::milliseconds(0);
  auto client = RestClient::create(c, o);
  ASSERT_TRUE(client.ok()) << client.status().to_string();
  (void)(*client)->get(kPods.in("a").named("x"));
  std::ofstream(path) << "second-token\n";
  (void)(*client)->get(kPods.in("a").named("x"));
  std::filesystem::remove(path);
  (void)(*client)->get(kPods.in("a").named("x"));  // the file is gone: the last token stays
  auto reqs = server->requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].authorization, "Bearer first-token");
  EXPECT_EQ(reqs[1].authorization, "Bearer second-token");
  EXPECT_EQ(reqs[2].authorization, "Bearer second-token");
}

TEST(RestClient, CreateChecksServerAndPem) {
  ClusterConfig c;
  c.server = "10.0.0.1:6443";
  EXPECT_FALSE(RestClient::create(c).ok());
  c.server = "https://10.0.0.1:6443";
  c.ca_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
  auto bad_ca = RestClient::create(c);
  ASSERT_FALSE(bad_ca.ok());
  EXPECT_NE(bad_ca.status().message().find("certificate authority"), std::string::npos);
  auto a = fake::make_test_cert("a");
  auto b = fake::make_test_cert("b");
  ASSERT_FALSE(a.cert_pem.empty());
  c.ca_pem = a.cert_pem;
  c.client_cert_pem = a.cert_pem;
  c.client_key_pem = b.key_pem;
  auto mismatch = RestClient::create(c);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("does not match"), std::string::npos);
  c.client_key_pem = a.key_pem;
  EXPECT_TRUE(RestClient::create(c).ok());
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = fake::make_test_cert("hotswap-test-apiserver");
    other_ = fake::make_test_cert("some-other-ca");
    ASSERT_FALSE(cert_.cert_pem.empty());
    auto s = FakeApiServer::start(cert_.cert_pem, cert_.key_pem);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(s).value();
    server_->put("/api/v1", "pods", "a", pod("p"));
  }
  ApiResult get_with(ClusterConfig c) {
    c.server = server_->url();
    RestClientOptions o;
    o.timeout = std::chrono::milliseconds(3000);
    auto client = RestClient::create(c, o);
    EXPECT_TRUE(client.ok()) << client.status().to_string();
    if (!client.ok()) return ApiResult(client.status(), ApiError{});
    return (*client)->get(kPods.in("a").named("p"));
  }
  fake::TestCert cert_, other_;
  std::unique_ptr<FakeApiServer> server_;
};

TEST_F(TlsTest, TrustsTheKubeconfigCa) {
  ClusterConfig c;
  c.ca_pem = cert_.cert_pem;
  c.token = "tls-token";
  auto r = get_with(c);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->at("metadata").at("name"), "p");
  EXPECT_EQ(server_->requests().back().authorization, "Bearer tls-token");
}

TEST_F(TlsTest, RejectsAServerTheCaDidNotSign) {
  ClusterConfig c;
  c.ca_pem = other_.cert_pem;
  auto r = get_with(c);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().is_transport()) << r.status().to_string();
  // Without a CA only the system roots are trusted, and they do not know this one either.
  auto system = get_with(ClusterConfig{});
  ASSERT_FALSE(system.ok());
  EXPECT_TRUE(system.error().is_transport());
}

TEST_F(TlsTest, InsecureSkipsVerification) {
  ClusterConfig c;
  c.insecure_skip_tls_verify = true;
  auto r = get_with(c);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
}

}  // namespace
}  // namespace hotswap::kube
