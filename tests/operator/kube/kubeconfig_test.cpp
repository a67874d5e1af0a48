#include <gtest/gtest.h>

#include "operator/kube/kubeconfig.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace hotswap::kube {
namespace {

namespace fs = std::filesystem;

// "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" and friends: the loader only
// checks the PEM armour; RestClient parses the certificates.
const std::string kCaPem = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";
const std::string kCaPemB64 = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwRT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";
const std::string kKeyPem = "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n";

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/hotswap-kubeconfig-XXXXXX";
    char* d = mkdtemp(tmpl);
    EXPECT_NE(d, nullptr);
    path_ = d ? d : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = (fs::path(path_) / name).string();
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

const char* kTwoContexts = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: )"
                           "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwRT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
                           R"(
- name: lab
  cluster:
    server: http://127.0.0.1:8080
    insecure-skip-tls-verify: true
contexts:
- name: dev
  context:
    cluster: dev-cluster
    user: alice
    namespace: models
- name: lab
  context:
    cluster: lab
users:
- name: alice
  user:
    token: s3cr3t-token
)";

TEST(Kubeconfig, LoadsCurrentContextWithTokenAndCaData) {
  auto c = parse_kubeconfig(kTwoContexts, "/x/config");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->server, "https://10.0.0.1:6443");  // trailing '/' dropped
  EXPECT_EQ(c->ca_pem, kCaPem);
  EXPECT_EQ(c->token, "s3cr3t-token");
  EXPECT_EQ(c->ns, "models");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
  EXPECT_NE(c->origin.find("/x/config"), std::string::npos);
  EXPECT_NE(c->origin.find("dev"), std::string::npos);
}

TEST(Kubeconfig, NamedContextOverridesCurrentContext) {
  auto c = parse_kubeconfig(kTwoContexts, "/x/config", "lab");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->server, "http://127.0.0.1:8080");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_TRUE(c->token.empty());
  EXPECT_EQ(c->ns, "default");  // the context names none
}

TEST(Kubeconfig, ReadsFilesRelativeToTheKubeconfigFolder) {
  TempDir dir;
  dir.write("certs/ca.crt", kCaPem);
  dir.write("certs/client.crt", kCaPem);
  dir.write("certs/client.key", kKeyPem);
  std::string path = dir.write("kube/config", R"(
current-context: c
clusters: [{name: k, cluster: {server: "https://k:6443", certificate-authority: ../certs/ca.crt}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {client-certificate: ../certs/client.crt, client-key: )" +
                                                  dir.path() + R"(/certs/client.key}}]
)");
  auto c = load_kubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->ca_pem, kCaPem);
  EXPECT_EQ(c->client_cert_pem, kCaPem);
  EXPECT_EQ(c->client_key_pem, kKeyPem);
}

TEST(Kubeconfig, TokenFileIsReadTrimmedAndRemembered) {
  TempDir dir;
  dir.write("token", "  tok-from-file\n");
  std::string path = dir.write("config", R"(
current-context: c
clusters: [{name: k, cluster: {server: "https://k"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {tokenFile: token}}]
)");
  auto c = load_kubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->token, "tok-from-file");
  EXPECT_EQ(c->token_file, (fs::path(dir.path()) / "token").string());
}

TEST(Kubeconfig, ClientCertificateDataAndBasicAuth) {
  auto c = parse_kubeconfig(R"(
current-context: c
clusters: [{name: k, cluster: {server: "https://k"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {client-certificate-data: )" +
                                kCaPemB64 + ", client-key-data: " + kCaPemB64 + R"(, username: bob, password: pw}}]
)",
                            "/cfg");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->client_cert_pem, kCaPem);
  EXPECT_EQ(c->username, "bob");
  EXPECT_EQ(c->password, "pw");
}

// Each broken kubeconfig fails with a message naming the file and the field.
struct BadCase {
  const char* name;
  std::string yaml;
  StatusCode code;
  std::vector<std::string> mentions;
};

TEST(Kubeconfig, EveryBrokenFieldIsNamedInTheError) {
  const std::string head = "clusters: [{name: k, cluster: {server: \"https://k\"}}]\n";
  const std::vector<BadCase> cases = {
      {"invalid yaml", "clusters: [unclosed", StatusCode::kInvalidArgument, {"not valid YAML"}},
      {"not a map", "- a\n- b\n", StatusCode::kInvalidArgument, {"expected a YAML map"}},
      {"no current-context", head, StatusCode::kInvalidArgument, {"current-context is not set"}},
      {"context missing",
       head + "current-context: nope\ncontexts: [{name: a, context: {cluster: k}}, {name: b, context: {cluster: k}}]\n",
       StatusCode::kNotFound,
       {"context 'nope'", "it has: a, b"}},
      {"context without cluster",
       "current-context: c\ncontexts: [{name: c, context: {user: u}}]\n",
       StatusCode::kInvalidArgument,
       {"contexts[c].context.cluster is not set"}},
      {"cluster missing",
       "current-context: c\ncontexts: [{name: c, context: {cluster: gone}}]\n",
       StatusCode::kNotFound,
       {"cluster 'gone'", "clusters (it is empty)"}},
      {"server missing",
       "current-context: c\nclusters: [{name: k, cluster: {}}]\ncontexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"clusters[k].cluster.server is not set"}},
      {"server not a URL",
       "current-context: c\nclusters: [{name: k, cluster: {server: k8s:6443}}]\n"
       "contexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"server 'k8s:6443' must start with https:// or http://"}},
      {"server not a string",
       "current-context: c\nclusters: [{name: k, cluster: {server: [a]}}]\n"
       "contexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"clusters[k].cluster.server: expected a string"}},
      {"user missing",
       head + "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: ghost}}]\n",
       StatusCode::kNotFound,
       {"user 'ghost'"}},
      {"bad base64",
       "current-context: c\nclusters: [{name: k, cluster: {server: \"https://k\", certificate-authority-data: "
       "\"@@@@\"}}]\ncontexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"clusters[k].cluster.certificate-authority-data", "not valid base64"}},
      {"data not PEM",
       "current-context: c\nclusters: [{name: k, cluster: {server: \"https://k\", certificate-authority-data: "
       "aGVsbG8=}}]\ncontexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"certificate-authority-data: the decoded value is not PEM"}},
      {"CA file missing",
       "current-context: c\nclusters: [{name: k, cluster: {server: \"https://k\", certificate-authority: "
       "/nonexistent/ca.crt}}]\ncontexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kNotFound,
       {"clusters[k].cluster.certificate-authority", "/nonexistent/ca.crt"}},
      {"CA file and data",
       "current-context: c\nclusters: [{name: k, cluster: {server: \"https://k\", certificate-authority: /a, "
       "certificate-authority-data: " +
           kCaPemB64 + "}}]\ncontexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"both certificate-authority and certificate-authority-data"}},
      {"insecure with CA",
       "current-context: c\nclusters: [{name: k, cluster: {server: \"https://k\", insecure-skip-tls-verify: true, "
       "certificate-authority-data: " +
           kCaPemB64 + "}}]\ncontexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"insecure-skip-tls-verify and a certificate-authority"}},
      {"insecure not a bool",
       "current-context: c\nclusters: [{name: k, cluster: {server: \"https://k\", insecure-skip-tls-verify: "
       "maybe}}]\ncontexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"insecure-skip-tls-verify: expected true or false, got 'maybe'"}},
      {"cert without key",
       head +
           "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
           "users: [{name: u, user: {client-certificate-data: " +
           kCaPemB64 + "}}]\n",
       StatusCode::kInvalidArgument,
       {"users[u].user", "client-certificate is set without client-key"}},
      {"key without cert",
       head +
           "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
           "users: [{name: u, user: {client-key-data: " +
           kCaPemB64 + "}}]\n",
       StatusCode::kInvalidArgument,
       {"client-key is set without client-certificate"}},
      {"token file missing",
       head + "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
              "users: [{name: u, user: {tokenFile: /nonexistent/token}}]\n",
       StatusCode::kNotFound,
       {"users[u].user.tokenFile", "/nonexistent/token"}},
      {"token and token file",
       head + "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
              "users: [{name: u, user: {token: a, tokenFile: /b}}]\n",
       StatusCode::kInvalidArgument,
       {"both token and tokenFile"}},
      {"exec plugin",
       head + "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
              "users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}}]\n",
       StatusCode::kUnimplemented,
       {"users[u].user.exec", "'aws'"}},
      {"auth provider",
       head + "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
              "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
       StatusCode::kUnimplemented,
       {"users[u].user.auth-provider"}},
      {"clusters not a list",
       "current-context: c\nclusters: {a: b}\ncontexts: [{name: c, context: {cluster: k}}]\n",
       StatusCode::kInvalidArgument,
       {"clusters: expected a list"}},
  };
  for (const auto& bc : cases) {
    auto c = parse_kubeconfig(bc.yaml, "/home/u/.kube/config");
    ASSERT_FALSE(c.ok()) << bc.name;
    EXPECT_EQ(c.status().code(), bc.code) << bc.name << ": " << c.status().to_string();
    EXPECT_NE(c.status().message().find("kubeconfig /home/u/.kube/config: "), std::string::npos)
        << bc.name << ": " << c.status().message();
    for (const auto& m : bc.mentions) {
      EXPECT_NE(c.status().message().find(m), std::string::npos) << bc.name << ": " << c.status().message();
    }
  }
}

TEST(Kubeconfig, MissingFileIsNotFoundNamingIt) {
  auto c = load_kubeconfig("/nonexistent/kubeconfig");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("/nonexistent/kubeconfig"), std::string::npos);
}

TEST(Kubeconfig, Base64DecodesAndRejectsGarbage) {
  EXPECT_EQ(base64_decode("aGVsbG8=").value(), "hello");
  EXPECT_EQ(base64_decode("aGVs\nbG8h").value(), "hello!");
  EXPECT_EQ(base64_decode("aGk=").value(), "hi");
  EXPECT_EQ(base64_decode("").value(), "");
  EXPECT_FALSE(base64_decode("aGVsbG8").ok());   // not a multiple of 4
  EXPECT_FALSE(base64_decode("aG=sbG8=").ok());  // '=' inside
  EXPECT_FALSE(base64_decode("aGVs*G8=").ok());  // not base64
}

TEST(Kubeconfig, KubeconfigEnvTakesTheFirstExistingFile) {
  TempDir dir;
  std::string second = dir.write("second", "x");
  std::string third = dir.write("third", "x");
  auto p = default_kubeconfig_path(
      env_of({{"KUBECONFIG", dir.path() + "/missing:" + second + ":" + third}, {"HOME", dir.path()}}));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(*p, second);
  auto none = default_kubeconfig_path(env_of({{"KUBECONFIG", "/nonexistent/a:/nonexistent/b"}}));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("/nonexistent/a:/nonexistent/b"), std::string::npos);
}

TEST(Kubeconfig, HomeKubeConfigIsTheFallback) {
  TempDir dir;
  std::string cfg = dir.write(".kube/config", "x");
  auto p = default_kubeconfig_path(env_of({{"HOME", dir.path()}}));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(*p, cfg);
  TempDir empty;
  auto none = default_kubeconfig_path(env_of({{"HOME", empty.path()}}));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find(".kube/config"), std::string::npos);
}

class InClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sa_.write("token", "sa-token\n");
    sa_.write("ca.crt", kCaPem);
    sa_.write("namespace", "hotswap-system");
  }
  TempDir sa_;
};

TEST_F(InClusterTest, ReadsServiceAccountFiles) {
  auto c = load_in_cluster_config(
      sa_.path(), env_of({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}));
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->token, "sa-token");
  EXPECT_EQ(c->token_file, sa_.path() + "/token");
  EXPECT_EQ(c->ca_pem, kCaPem);
  EXPECT_EQ(c->ns, "hotswap-system");
}

TEST_F(InClusterTest, Ipv6HostIsBracketedAndPodNamespaceWins) {
  auto c = load_in_cluster_config(sa_.path(), env_of({{"KUBERNETES_SERVICE_HOST", "fd00::1"},
                                                      {"KUBERNETES_SERVICE_PORT", "6443"},
                                                      {"POD_NAMESPACE", "from-env"}}));
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->server, "https://[fd00::1]:6443");
  EXPECT_EQ(c->ns, "from-env");
}

TEST_F(InClusterTest, FailsOutsideAPodOrWithoutItsFiles) {
  auto no_env = load_in_cluster_config(sa_.path(), env_of({}));
  ASSERT_FALSE(no_env.ok());
  EXPECT_NE(no_env.status().message().find("KUBERNETES_SERVICE_HOST"), std::string::npos);

  const auto env = env_of({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}});
  TempDir no_token;
  no_token.write("ca.crt", kCaPem);
  auto t = load_in_cluster_config(no_token.path(), env);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(no_token.path() + "/token"), std::string::npos) << t.status().message();

  TempDir no_ca;
  no_ca.write("token", "x");
  auto ca = load_in_cluster_config(no_ca.path(), env);
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.status().message().find(no_ca.path() + "/ca.crt"), std::string::npos) << ca.status().message();

  TempDir no_ns;
  no_ns.write("token", "x");
  no_ns.write("ca.crt", kCaPem);
  auto d = load_in_cluster_config(no_ns.path(), env);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d->ns, "default");
}

TEST_F(InClusterTest, ResolveConfigFollowsFlagThenEnvThenInClusterThenHome) {
  TempDir home;
  std::string home_cfg = home.write(".kube/config", kTwoContexts);
  std::string flag_cfg = home.write("flag-config", R"(
current-context: f
clusters: [{name: k, cluster: {server: "https://flag:1"}}]
contexts: [{name: f, context: {cluster: k}}]
)");
  std::string env_cfg = home.write("env-config", R"(
current-context: e
clusters: [{name: k, cluster: {server: "https://env:1"}}]
contexts: [{name: e, context: {cluster: k}}]
)");
  std::map<std::string, std::string> vars = {{"HOME", home.path()},
                                             {"KUBECONFIG", env_cfg},
                                             {"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                             {"KUBERNETES_SERVICE_PORT", "443"}};
  auto flag = resolve_config(flag_cfg, "", env_of(vars), sa_.path());
  ASSERT_TRUE(flag.ok()) << flag.status().to_string();
  EXPECT_EQ(flag->server, "https://flag:1");
  auto from_env = resolve_config("", "", env_of(vars), sa_.path());
  ASSERT_TRUE(from_env.ok()) << from_env.status().to_string();
  EXPECT_EQ(from_env->server, "https://env:1");
  vars.erase("KUBECONFIG");
  auto in_cluster = resolve_config("", "", env_of(vars), sa_.path());
  ASSERT_TRUE(in_cluster.ok()) << in_cluster.status().to_string();
  EXPECT_EQ(in_cluster->server, "https://10.96.0.1:443");
  vars.erase("KUBERNETES_SERVICE_HOST");
  auto from_home = resolve_config("", "lab", env_of(vars), sa_.path());
  ASSERT_TRUE(from_home.ok()) << from_home.status().to_string();
  EXPECT_EQ(from_home->server, "http://127.0.0.1:8080");
}

}  // namespace
}  // namespace hotswap::kube
