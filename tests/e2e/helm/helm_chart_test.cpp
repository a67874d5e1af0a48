// The Helm chart (helm/hotswap) rendered with Helm's template engine (hotswap-helm-render:
// text/template + Sprig, as `helm template`): the objects it makes with default and non-default
// values, the operator Pod's hardening, least-privilege RBAC (the exact rules the operator's
// calls need), its CRDs identical to crds/, the dashboard, and clear errors for bad values.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tests/support/promtool.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kChart = std::string(HOTSWAP_SOURCE_DIR) + "/helm/hotswap";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Rendered {
  int exit_code = -1;
  std::string out, err;
  std::vector<YAML::Node> docs;
};

// Runs the renderer on the chart with `args`; parses its output's documents.
Rendered render(const std::string& args) {
  Rendered r;
  const std::string tool = HOTSWAP_HELM_RENDER;
  if (tool.empty()) {
    ADD_FAILURE() << "hotswap-helm-render was not built: install golang-go, golang-github-masterminds-sprig-dev "
                     "and golang-gopkg-yaml.v3-dev (scripts/install-deps.sh does), then reconfigure";
    return r;
  }
  const fs::path err = fs::temp_directory_path() / ("helm-render-" + std::to_string(::getpid()) + ".err");
  const std::string cmd = tool + " --chart " + kChart + " " + args + " 2>" + err.string();
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "cannot run " << cmd;
    return r;
  }
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = slurp(err);
  fs::remove(err);
  if (r.exit_code == 0) {
    try {
      for (const auto& d : YAML::LoadAll(r.out))
        if (d && !d.IsNull()) r.docs.push_back(d);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the rendered chart is not YAML: " << e.what() << "\n" << r.out;
    }
  }
  return r;
}

std::vector<YAML::Node> of_kind(const Rendered& r, const std::string& kind) {
  std::vector<YAML::Node> v;
  for (const auto& d : r.docs)
    if (d["kind"].as<std::string>("") == kind) v.push_back(d);
  return v;
}

YAML::Node one(const Rendered& r, const std::string& kind) {
  auto v = of_kind(r, kind);
  EXPECT_EQ(v.size(), 1u) << kind;
  return v.empty() ? YAML::Node() : v[0];
}

std::vector<std::string> strings(const YAML::Node& seq) {
  std::vector<std::string> v;
  for (const auto& x : seq) v.push_back(x.as<std::string>());
  return v;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string write_values(const std::string& name, const std::string& yaml) {
  const fs::path p = fs::temp_directory_path() / ("helm-values-" + std::to_string(::getpid()) + "-" + name + ".yaml");
  std::ofstream(p) << yaml;
  return p.string();
}

TEST(HelmChart, DefaultsRenderTheOperatorItsRbacCrdsAndDashboard) {
  const Rendered r = render("--release hs --namespace hotswap-system --include-crds");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::multiset<std::string> kinds;
  for (const auto& d : r.docs) {
    ASSERT_TRUE(d["apiVersion"] && d["kind"] && d["metadata"]["name"]) << YAML::Dump(d);
    kinds.insert(d["kind"].as<std::string>());
  }
  EXPECT_EQ(kinds, (std::multiset<std::string>{"CustomResourceDefinition", "CustomResourceDefinition", "ServiceAccount",
                                               "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                                               "Deployment", "Service", "ConfigMap"}));

  const YAML::Node dep = one(r, "Deployment");
  EXPECT_EQ(dep["metadata"]["name"].as<std::string>(), "hs-hotswap-operator");
  EXPECT_EQ(dep["metadata"]["namespace"].as<std::string>(), "hotswap-system");
  const YAML::Node pod = dep["spec"]["template"]["spec"];
  EXPECT_EQ(pod["serviceAccountName"].as<std::string>(), "hs-hotswap");
  EXPECT_TRUE(pod["securityContext"]["runAsNonRoot"].as<bool>());
  const YAML::Node c = pod["containers"][0];
  EXPECT_EQ(c["image"].as<std::string>(), "ghcr.io/hotswap-io/hotswap:0.1.0");  // the appVersion
  EXPECT_EQ(strings(c["command"]), std::vector<std::string>{"hotswap-operator"});
  EXPECT_TRUE(c["securityContext"]["readOnlyRootFilesystem"].as<bool>());
  EXPECT_FALSE(c["securityContext"]["allowPrivilegeEscalation"].as<bool>());
  EXPECT_EQ(strings(c["securityContext"]["capabilities"]["drop"]), std::vector<std::string>{"ALL"});
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/readyz");
  EXPECT_TRUE(c["resources"]["requests"]["cpu"] && c["resources"]["limits"]["memory"]);
  const auto args = strings(c["args"]);
  for (const char* a : {"--leader-elect", "--leader-election-namespace=hotswap-system", "--leader-election-id=hs-hotswap",
                        "--metrics-port=8080", "--health-port=8081", "--workers=4",
                        "--agent-image=ghcr.io/hotswap-io/hotswap:0.1.0", "--agent-command=hotswap-agent",
                        "--model-root=/models"})
    EXPECT_TRUE(has(args, a)) << a;
  for (const auto& a : args) EXPECT_NE(a.rfind("--namespace=", 0), 0u) << "watches every namespace by default";
  EXPECT_FALSE(has(args, "--migration-tls=false")) << "migrations run TLS by default";
  EXPECT_FALSE(has(args, "--network-policy=false")) << "each deployment gets its NetworkPolicy by default";

  const YAML::Node svc = one(r, "Service");
  EXPECT_EQ(svc["spec"]["ports"][0]["targetPort"].as<std::string>(), "metrics");
  EXPECT_EQ(svc["spec"]["selector"]["app.kubernetes.io/component"].as<std::string>(), "operator");

  // The dashboard in the ConfigMap is the repository's JSON, for Grafana's sidecar.
  const YAML::Node cm = one(r, "ConfigMap");
  EXPECT_EQ(cm["metadata"]["labels"]["grafana_dashboard"].as<std::string>(), "1");
  const json dash = json::parse(cm["data"]["hotswap.json"].as<std::string>());
  EXPECT_EQ(dash, json::parse(slurp(kChart + "/dashboards/hotswap.json")));
}

TEST(HelmChart, TheDashboardCoversMigrationsServingAndHealth) {
  const json dash = json::parse(slurp(kChart + "/dashboards/hotswap.json"));
  std::string exprs;
  std::set<std::string> rows;
  for (const auto& p : dash["panels"]) {
    if (p["type"] == "row") rows.insert(p["title"].get<std::string>());
    for (const auto& t : p.value("targets", json::array())) exprs += t["expr"].get<std::string>() + "\n";
  }
  EXPECT_EQ(rows, (std::set<std::string>{"Migrations", "Serving", "Health"}));
  // Every metric the issue names, by its real name (operator/controllers/operator_metrics.cpp,
  // agent/server/server_metrics.cpp).
  for (const char* m : {"hotswap_operator_migrations_total", "hotswap_operator_migration_phase_seconds_bucket",
                        "hotswap_operator_migration_downtime_seconds_bucket", "hotswap_migration_bytes_total",
                        "hotswap_generated_tokens_total", "hotswap_time_to_first_token_seconds_bucket",
                        "hotswap_inter_token_latency_seconds_bucket", "hotswap_queue_depth", "hotswap_kv_blocks",
                        "hotswap_gpu_faults_total", "hotswap_operator_reconcile_seconds_bucket",
                        "hotswap_operator_watch_starts_total", "hotswap_operator_replicas"})
    EXPECT_NE(exprs.find(m), std::string::npos) << m;
}

TEST(HelmChart, CrdsAreTheRepositorysOwn) {
  std::map<std::string, std::string> repo, chart;
  for (const auto& e : fs::directory_iterator(std::string(HOTSWAP_SOURCE_DIR) + "/crds"))
    repo[e.path().filename().string()] = slurp(e.path());
  for (const auto& e : fs::directory_iterator(kChart + "/crds")) chart[e.path().filename().string()] = slurp(e.path());
  ASSERT_FALSE(repo.empty());
  EXPECT_EQ(chart, repo) << "helm/hotswap/crds must be a copy of crds/: cp crds/*.yaml helm/hotswap/crds/";
}

TEST(HelmChart, RbacGrantsExactlyTheOperatorsCalls) {
  const Rendered r = render("--namespace ops");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  using Grant = std::tuple<std::string, std::string, std::string>;  // group, resource, verb
  auto grants = [](const YAML::Node& role) {
    std::set<Grant> g;
    for (const auto& rule : role["rules"])
      for (const auto& group : rule["apiGroups"])
        for (const auto& res : rule["resources"])
          for (const auto& verb : rule["verbs"]) {
            EXPECT_NE(verb.as<std::string>(), "*");
            g.insert({group.as<std::string>(), res.as<std::string>(), verb.as<std::string>()});
          }
    return g;
  };
  // What the operator calls: informers (get/list/watch), the controllers' create/patch/delete,
  // status patches, ownerReferences with blockOwnerDeletion, and Events.
  const std::set<Grant> cluster = {
      {"hotswap.io", "modeldeployments", "get"},          {"hotswap.io", "modeldeployments", "list"},
      {"hotswap.io", "modeldeployments", "watch"},        {"hotswap.io", "modelmigrations", "get"},
      {"hotswap.io", "modelmigrations", "list"},          {"hotswap.io", "modelmigrations", "watch"},
      {"hotswap.io", "modelmigrations", "create"},        {"hotswap.io", "modeldeployments/status", "patch"},
      {"hotswap.io", "modelmigrations/status", "patch"},  {"hotswap.io", "modeldeployments/finalizers", "update"},
      {"", "pods", "get"},                                {"", "pods", "list"},
      {"", "pods", "watch"},                              {"", "pods", "create"},
      {"", "pods", "patch"},                              {"", "pods", "delete"},
      {"", "pods/status", "patch"},                       {"", "nodes", "get"},
      {"", "nodes", "list"},                              {"", "nodes", "watch"},
      {"", "nodes", "patch"},                             {"", "services", "get"},
      {"", "services", "create"},                         {"", "services", "patch"},
      {"", "secrets", "get"},                             {"", "secrets", "create"},
      {"policy", "poddisruptionbudgets", "get"},          {"policy", "poddisruptionbudgets", "create"},
      {"networking.k8s.io", "networkpolicies", "get"},    {"networking.k8s.io", "networkpolicies", "create"},
      {"networking.k8s.io", "networkpolicies", "patch"},  {"networking.k8s.io", "networkpolicies", "delete"},
      {"", "events", "create"}};
  EXPECT_EQ(grants(one(r, "ClusterRole")), cluster);
  const YAML::Node role = one(r, "Role");
  EXPECT_EQ(role["metadata"]["namespace"].as<std::string>(), "ops");
  EXPECT_EQ(grants(role), (std::set<Grant>{{"coordination.k8s.io", "leases", "get"},
                                           {"coordination.k8s.io", "leases", "create"},
                                           {"coordination.k8s.io", "leases", "update"}}));
  const YAML::Node binding = one(r, "ClusterRoleBinding");
  EXPECT_EQ(binding["subjects"][0]["name"].as<std::string>(), "hotswap");
  EXPECT_EQ(binding["subjects"][0]["namespace"].as<std::string>(), "ops");
}

TEST(HelmChart, NonDefaultValuesReachEveryObject) {
  const std::string values = write_values("custom", R"(
fullnameOverride: gpu-mover
image:
  repository: registry.example/hotswap
  tag: "2.0"
imagePullSecrets: [{name: regcred}]
operator:
  replicas: 2
  watchNamespace: team-a
  extraArgs: ["--bind-address=0.0.0.0"]
  nodeSelector: {node-role: system}
  tolerations: [{key: dedicated, operator: Exists}]
agent:
  image: registry.example/agent:2.0-cuda
  modelRoot: /mnt/models
  migrationTLS: {enabled: false}
  networkPolicy: {enabled: false}
serviceAccount:
  name: mover
  annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::1:role/mover"}
metrics:
  serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
  podMonitor: {enabled: true}
  prometheusRule: {enabled: true, downtimeBudgetSeconds: 0.05}
dashboards:
  namespace: monitoring
)");
  const Rendered r = render("--release prod --namespace platform -f " + values + " --set operator.workers=8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const YAML::Node dep = one(r, "Deployment");
  EXPECT_EQ(dep["metadata"]["name"].as<std::string>(), "gpu-mover-operator");
  EXPECT_EQ(dep["spec"]["replicas"].as<int>(), 2);
  const YAML::Node pod = dep["spec"]["template"]["spec"];
  EXPECT_EQ(pod["serviceAccountName"].as<std::string>(), "mover");
  EXPECT_EQ(pod["imagePullSecrets"][0]["name"].as<std::string>(), "regcred");
  EXPECT_EQ(pod["nodeSelector"]["node-role"].as<std::string>(), "system");
  EXPECT_EQ(pod["tolerations"][0]["key"].as<std::string>(), "dedicated");
  const YAML::Node c = pod["containers"][0];
  EXPECT_EQ(c["image"].as<std::string>(), "registry.example/hotswap:2.0");
  const auto args = strings(c["args"]);
  for (const char* a : {"--namespace=team-a", "--workers=8", "--agent-image=registry.example/agent:2.0-cuda",
                        "--model-root=/mnt/models", "--bind-address=0.0.0.0", "--leader-election-id=gpu-mover",
                        "--migration-tls=false", "--network-policy=false"})
    EXPECT_TRUE(has(args, a)) << a;
  EXPECT_EQ(one(r, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as<std::string>(),
            "arn:aws:iam::1:role/mover");
  const YAML::Node sm = one(r, "ServiceMonitor");
  EXPECT_EQ(sm["metadata"]["labels"]["release"].as<std::string>(), "kube-prometheus-stack");
  EXPECT_EQ(sm["spec"]["endpoints"][0]["port"].as<std::string>(), "metrics");
  const YAML::Node pm = one(r, "PodMonitor");
  EXPECT_EQ(pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/managed-by"].as<std::string>(),
            "hotswap-operator");
  EXPECT_EQ(pm["spec"]["podMetricsEndpoints"][0]["port"].as<std::string>(), "http");
  const YAML::Node rule = one(r, "PrometheusRule");
  std::set<std::string> alerts;
  std::string exprs;
  for (const auto& g : rule["spec"]["groups"])
    for (const auto& a : g["rules"]) {
      alerts.insert(a["alert"].as<std::string>());
      exprs += a["expr"].as<std::string>() + "\n";
      // Alert templates reach Prometheus unexpanded.
      const std::string summary = a["annotations"]["summary"].as<std::string>();
      if (summary.find("$labels") != std::string::npos) {
        EXPECT_NE(summary.find("{{ $labels."), std::string::npos) << summary;
      }
    }
  EXPECT_EQ(alerts, (std::set<std::string>{"HotswapMigrationsFailing", "HotswapMigrationDowntimeOverBudget",
                                           "HotswapGpuFaulty", "HotswapReplicasNotReady", "HotswapOperatorNotLeading",
                                           "HotswapReconcileErrors"}));
  EXPECT_NE(exprs.find("> 0.05"), std::string::npos) << exprs;
  // Prometheus accepts the rules: expressions parse, templates expand, durations are valid.
  YAML::Node rules_file;
  rules_file["groups"] = rule["spec"]["groups"];
  const std::string rules_path = write_values("rules", YAML::Dump(rules_file));
  const auto check = hotswap::testing::run_promtool("check rules " + rules_path, "");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("SUCCESS: 6 rules found"), std::string::npos) << check.output;
  fs::remove(rules_path);
  EXPECT_EQ(one(r, "ConfigMap")["metadata"]["namespace"].as<std::string>(), "monitoring");
  fs::remove(values);
}

TEST(HelmChart, BadValuesAreRefusedSayingWhy) {
  struct Case {
    std::string set, message;
  };
  const std::vector<Case> cases = {
      {"operator.replicas=3,operator.leaderElection.enabled=false", "operator.replicas > 1 needs operator.leaderElection.enabled"},
      {"serviceAccount.create=false", "serviceAccount.name is required when serviceAccount.create is false"},
      {"metrics.serviceMonitor.enabled=true,metrics.service.enabled=false", "metrics.serviceMonitor.enabled needs metrics.service.enabled"},
      {"image.repository=", "image.repository is required"},
  };
  for (const auto& c : cases) {
    const Rendered r = render("--set " + c.set);
    EXPECT_EQ(r.exit_code, 1) << c.set;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.set << ": " << r.err;
  }
  const Rendered missing = render("-f /nonexistent/values.yaml");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("/nonexistent/values.yaml"), std::string::npos) << missing.err;
}

TEST(HelmChart, WithoutRbacOrServiceAccountCreationNothingOfThemIsRendered) {
  const Rendered r = render("--set rbac.create=false,serviceAccount.create=false,serviceAccount.name=existing");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* kind : {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"})
    EXPECT_TRUE(of_kind(r, kind).empty()) << kind;
  EXPECT_EQ(one(r, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>(), "existing");
}

}  // namespace
