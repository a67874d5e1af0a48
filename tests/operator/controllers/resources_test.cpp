// The operator's reading of a ModelDeployment (defaults, errors naming the field) and the
// objects it makes from one: the replica Pod (gate, GPU, classes, engine flags, token), the
// Service, the PodDisruptionBudget, the Secrets (control token, migration TLS), the NetworkPolicy;
// and the hashes that tell a replica of an old version from a current one.
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "common/x509.h"
#include "operator/controllers/resources.h"

namespace hotswap::controllers {
namespace {

using nlohmann::json;

json example() {
  return json::parse(R"({
    "apiVersion": "hotswap.io/v1alpha1", "kind": "ModelDeployment",
    "metadata": {"name": "small", "namespace": "ml", "uid": "u-1", "generation": 3},
    "spec": {
      "model": {"name": "small", "path": "models/small"},
      "replicas": 2, "gpuClasses": ["t4-sim", "a100-sim"],
      "engine": {"maxNumSeqs": 32, "kvDtype": "f32"},
      "service": {"port": 80},
      "migration": {"mode": "KV", "downtimeBudgetMs": 40, "bandwidthLimit": "1Gi", "maxConcurrent": 2,
                    "triggers": {"load": true, "scaleDown": false},
                    "loadPolicy": {"fasterClasses": ["a100-sim"], "cheaperClasses": ["t4-sim"],
                                   "queueDepthHigh": 16, "queueDepthLow": 1, "sustainSeconds": 30},
                    "maintenanceWindows": [{"start": "2026-12-02T10:00:00Z", "durationMinutes": 60,
                                            "nodeSelector": {"zone": "a"}}]}}})");
}

TEST(ParseDeployment, ReadsTheSpecAndFillsTheCrdDefaults) {
  auto s = parse_deployment(example());
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->name, "small");
  EXPECT_EQ(s->ns, "ml");
  EXPECT_EQ(s->generation, 3);
  EXPECT_EQ(s->replicas, 2);
  EXPECT_EQ(s->gpus_per_replica, 1);
  EXPECT_EQ(s->gpu_classes, (std::vector<std::string>{"t4-sim", "a100-sim"}));
  EXPECT_EQ(s->downtime_budget_ms, 40);
  EXPECT_EQ(s->bandwidth_limit_bytes_per_s, 1073741824u);
  EXPECT_EQ(s->completion_timeout_seconds, 600);
  EXPECT_EQ(s->policy.max_concurrent, 2);
  EXPECT_EQ(s->policy.max_concurrent_per_node, 1);
  EXPECT_TRUE(s->policy.triggers.load);
  EXPECT_FALSE(s->policy.triggers.scale_down);
  EXPECT_TRUE(s->policy.triggers.maintenance);
  EXPECT_EQ(s->policy.load.queue_depth_high, 16);
  EXPECT_EQ(s->policy.load.cooldown_seconds, 300);
  EXPECT_EQ(s->policy.load.faster_classes, (std::vector<std::string>{"a100-sim"}));
  ASSERT_EQ(s->policy.windows.size(), 1u);
  EXPECT_EQ(s->policy.windows[0].start_unix, 1796205600);
  EXPECT_EQ(s->policy.windows[0].duration_seconds, 3600);
  EXPECT_EQ(s->policy.windows[0].node_selector.at("zone"), "a");
}

TEST(ParseDeployment, NamesTheFieldThatIsWrong) {
  struct Case {
    const char* pointer;
    json value;
    const char* names;
  };
  const std::vector<Case> cases = {
      {"/spec/replicas", "two", "spec.replicas"},
      {"/spec/replicas", -1, "spec.replicas"},
      // The CRD's bounds hold even where the schema did not check them (an older CRD).
      {"/spec/replicas", 1000000, "spec.replicas: must be in 0..1000, got 1000000"},
      {"/spec/gpusPerReplica", 64, "spec.gpusPerReplica: must be in 1..8, got 64"},
      {"/metadata/name", "", "metadata.name: required"},
      {"/spec/migration/mode", "Fast", "spec.migration.mode"},
      {"/spec/migration/bandwidthLimit", "10 parsecs", "spec.migration.bandwidthLimit"},
      {"/spec/migration/bandwidthLimit", "10Xi", "spec.migration.bandwidthLimit"},
      {"/spec/migration/triggers/load", "yes", "spec.migration.triggers.load"},
      {"/spec/migration/loadPolicy/queueDepthLow", 99, "queueDepthLow"},
      {"/spec/migration/maintenanceWindows/0/start", "tomorrow", "spec.migration.maintenanceWindows[0].start"},
      {"/spec/migration/maintenanceWindows/0/durationMinutes", 0, "maintenanceWindows[0].durationMinutes"},
      {"/spec/gpuClasses", json::array({1}), "spec.gpuClasses"},
      {"/spec/model/path", "", "spec.model.path"},
  };
  for (const auto& c : cases) {
    json md = example();
    md[json::json_pointer(c.pointer)] = c.value;
    auto s = parse_deployment(md);
    ASSERT_FALSE(s.ok()) << c.pointer;
    EXPECT_NE(s.status().message().find(c.names), std::string::npos) << s.status().message();
  }
  json md = example();
  md["spec"].erase("model");
  EXPECT_NE(parse_deployment(md).status().message().find("spec.model"), std::string::npos);
}

TEST(ParseBandwidth, TakesDecimalAndBinaryUnits) {
  EXPECT_EQ(*parse_bandwidth("500"), 500u);
  EXPECT_EQ(*parse_bandwidth("500M"), 500000000u);
  EXPECT_EQ(*parse_bandwidth("1.5G"), 1500000000u);
  EXPECT_EQ(*parse_bandwidth("10Gi"), 10737418240u);
  EXPECT_EQ(*parse_bandwidth("2k"), 2000u);
  EXPECT_FALSE(parse_bandwidth("G").ok());
  EXPECT_FALSE(parse_bandwidth("1.2.3M").ok());
}

TEST(Rfc3339, ParsesZonesAndFractionsAndFormatsBack) {
  EXPECT_EQ(*parse_rfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*parse_rfc3339("2026-12-02T11:00:00+01:00"), *parse_rfc3339("2026-12-02T10:00:00Z"));
  EXPECT_EQ(*parse_rfc3339_ms("2026-12-02T10:00:00.25Z") - *parse_rfc3339_ms("2026-12-02T10:00:00Z"), 250);
  EXPECT_EQ(format_rfc3339(1796205600), "2026-12-02T10:00:00Z");
  EXPECT_EQ(format_rfc3339_ms(1796205600123), "2026-12-02T10:00:00.123Z");
  EXPECT_EQ(*parse_rfc3339_ms(format_rfc3339_ms(1796205600123)), 1796205600123);
  EXPECT_FALSE(parse_rfc3339("2026-12-02 10:00").ok());
  EXPECT_FALSE(parse_rfc3339("2026-12-02T10:00:00+0100").ok());
}

json example_migration() {
  return json::parse(R"({
    "apiVersion": "hotswap.io/v1alpha1", "kind": "ModelMigration",
    "metadata": {"name": "move", "namespace": "ml"},
    "spec": {"deployment": "small", "replica": "small-abcde", "selector": {"zone": "a"}, "mode": "Recompute",
             "reason": "Load", "target": {"nodeName": "node-3", "gpuClass": "a100-sim",
                                          "nodeSelector": {"rack": "r1"}}}})");
}

TEST(ParseMigrationSpec, ReadsEveryFieldWithTheCrdsDefaults) {
  auto m = parse_migration_spec(example_migration());
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->deployment, "small");
  EXPECT_EQ(m->replica, "small-abcde");
  EXPECT_EQ(m->selector, (std::map<std::string, std::string>{{"zone", "a"}}));
  EXPECT_EQ(m->mode, "Recompute");
  EXPECT_EQ(m->reason, "Load");
  EXPECT_EQ(m->target_node, "node-3");
  EXPECT_EQ(m->target_gpu_class, "a100-sim");
  EXPECT_EQ(m->target_node_selector, (std::map<std::string, std::string>{{"rack", "r1"}}));
  EXPECT_TRUE(m->target_pod.empty());
  auto bare = parse_migration_spec(json{{"spec", {{"deployment", "small"}}}});
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->reason, "Manual");
  EXPECT_TRUE(bare->mode.empty()) << "the deployment's mode";
}

// What the CRD's schema says, checked again: an older or hand-edited CRD must not make the
// operator throw.
TEST(ParseMigrationSpec, NamesTheFieldThatIsWrong) {
  const std::vector<std::pair<const char*, json>> cases = {
      {"/spec/deployment", 3},          {"/spec/deployment", ""},         {"/spec/replica", json::array()},
      {"/spec/selector", "zone=a"},     {"/spec/selector/zone", 1},       {"/spec/mode", "kv"},
      {"/spec/mode", 1},                {"/spec/reason", "Because"},      {"/spec/target", "node-3"},
      {"/spec/target/gpuClass", 3},     {"/spec/target/nodeName", ""},    {"/spec/target/pod", nullptr},
      {"/spec/target/nodeSelector/rack", true}};
  for (const auto& [pointer, value] : cases) {
    json mm = example_migration();
    mm[json::json_pointer(pointer)] = value;
    auto m = parse_migration_spec(mm);
    ASSERT_FALSE(m.ok()) << pointer << " = " << value.dump();
    std::string field = std::string(pointer).substr(1);
    std::replace(field.begin(), field.end(), '/', '.');
    EXPECT_NE(m.status().message().find(field), std::string::npos) << m.status().message();
  }
  json no_deployment = example_migration();
  no_deployment["spec"].erase("deployment");
  EXPECT_EQ(parse_migration_spec(no_deployment).status().message(), "spec.deployment: required");
  EXPECT_FALSE(parse_migration_spec(json::array()).ok());
  EXPECT_FALSE(parse_migration_spec(json{{"spec", 1}}).ok());
}

TEST(ReplicaPod, RunsTheAgentBehindTheServingGateOnAnAllowedGpu) {
  auto s = parse_deployment(example());
  ASSERT_TRUE(s.ok());
  AgentRuntime rt;
  rt.command = "/opt/hotswap-agent";
  rt.model_root = "/data";
  json pod = replica_pod(*s, rt, "small-abcde");
  EXPECT_EQ(pod["metadata"]["name"], "small-abcde");
  EXPECT_EQ(pod["metadata"]["namespace"], "ml");
  EXPECT_EQ(pod["metadata"]["labels"][kDeploymentLabel], "small");
  EXPECT_EQ(pod["metadata"]["ownerReferences"][0]["uid"], "u-1");
  EXPECT_EQ(pod["metadata"]["ownerReferences"][0]["controller"], true);
  EXPECT_EQ(pod["metadata"]["annotations"][kModelHashAnnotation], model_hash(*s));
  EXPECT_FALSE(pod["metadata"]["annotations"].contains(kMigrationTargetAnnotation));
  EXPECT_EQ(pod["spec"]["readinessGates"][0]["conditionType"], kServingGate);
  const json& c = pod["spec"]["containers"][0];
  EXPECT_EQ(c["resources"]["limits"][kGpuResource], 1);
  const std::vector<std::string> cmd = c["command"].get<std::vector<std::string>>();
  const std::vector<std::string> want = {"/opt/hotswap-agent", "serve", "--model", "/data/models/small",
                                         "--model-name", "small", "--host", "$(POD_IP)", "--port", "8000",
                                         "--migration-ports", "9100-9131", "--max-num-seqs", "32",
                                         "--kv-dtype", "f32"};
  EXPECT_EQ(cmd, want);
  EXPECT_EQ(c["env"][1]["valueFrom"]["secretKeyRef"]["name"], "small-control-token");
  // The migration TLS material, from the deployment's TLS Secret (migration TLS is the default).
  std::map<std::string, std::string> tls_env;
  for (const json& e : c["env"])
    if (e.contains("valueFrom") && e["valueFrom"].contains("secretKeyRef") &&
        e["valueFrom"]["secretKeyRef"]["name"] == "small-migration-tls")
      tls_env[e["name"]] = e["valueFrom"]["secretKeyRef"]["key"];
  EXPECT_EQ(tls_env, (std::map<std::string, std::string>{{"HOTSWAP_MIGRATION_TLS_CA", "ca.crt"},
                                                         {"HOTSWAP_MIGRATION_TLS_CERT", "tls.crt"},
                                                         {"HOTSWAP_MIGRATION_TLS_KEY", "tls.key"}}));
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
  const json& expr = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                        ["nodeSelectorTerms"][0]["matchExpressions"][0];
  EXPECT_EQ(expr["key"], kGpuClassLabel);
  EXPECT_EQ(expr["values"], json::array({"t4-sim", "a100-sim"}));
  EXPECT_FALSE(pod["spec"].contains("nodeSelector"));

  json target = replica_pod(*s, rt, "small-fghij", "node-3", "small-mm");
  EXPECT_EQ(target["spec"]["nodeSelector"][kHostnameLabel], "node-3");
  EXPECT_EQ(target["metadata"]["annotations"][kMigrationTargetAnnotation], "small-mm");
}

TEST(ReplicaPod, WithoutMigrationTlsTheAgentIsToldPlaintextIsAllowed) {
  auto s = parse_deployment(example());
  ASSERT_TRUE(s.ok());
  AgentRuntime rt;
  rt.migration_tls = false;
  const json c = replica_pod(*s, rt, "small-abcde")["spec"]["containers"][0];
  const auto cmd = c["command"].get<std::vector<std::string>>();
  EXPECT_EQ(cmd.back(), "--allow-plaintext-migration");
  EXPECT_EQ(c["env"].dump().find("HOTSWAP_MIGRATION_TLS"), std::string::npos) << c["env"].dump();
  rt.migration_tls = true;
  const auto tls_cmd = replica_pod(*s, rt, "small-abcde")["spec"]["containers"][0]["command"].dump();
  EXPECT_EQ(tls_cmd.find("--allow-plaintext-migration"), std::string::npos) << tls_cmd;
}

// The material's certificate chains to its CA, serves and connects, and names the deployment;
// each deployment gets a CA of its own.
TEST(MigrationTlsSecret, HoldsACaAndOneCertificateItSignedForTheDeploymentOnly) {
  auto s = *parse_deployment(example());
  auto secret = migration_tls_secret(s);
  ASSERT_TRUE(secret.ok()) << secret.status().to_string();
  EXPECT_EQ((*secret)["type"], "kubernetes.io/tls");
  EXPECT_EQ((*secret)["metadata"]["name"], "small-migration-tls");
  EXPECT_EQ((*secret)["metadata"]["ownerReferences"][0]["uid"], "u-1");
  const json& data = (*secret)["stringData"];
  auto read_cert = [](const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    return x;
  };
  X509* ca = read_cert(data["ca.crt"]);
  X509* leaf = read_cert(data["tls.crt"]);
  ASSERT_TRUE(ca && leaf);
  const std::string key_pem = data["tls.key"];
  BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(X509_check_private_key(leaf, key), 1);
  EXPECT_EQ(X509_check_ca(ca), 1);
  EXPECT_EQ(X509_check_ca(leaf), 0);
  EXPECT_TRUE(x509::verify_certificate(data["tls.crt"], data["ca.crt"]).ok());
  EXPECT_EQ(X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0), 1);
  EXPECT_EQ(X509_check_purpose(leaf, X509_PURPOSE_SSL_CLIENT, 0), 1);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn);
  EXPECT_EQ(std::string(cn), "small.ml agents");
  // Valid for years: the agents restart with it, never in the middle of a migration.
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(leaf), nullptr), 0);
  time_t in_nine_years = std::time(nullptr) + 9L * 365 * 24 * 3600;
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(leaf), &in_nine_years), 0);
  // Another deployment's CA does not vouch for this one's agents.
  auto other_spec = s;
  other_spec.name = "other";
  auto other = migration_tls_secret(other_spec);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(x509::verify_certificate(data["tls.crt"], (*other)["stringData"]["ca.crt"]).ok());
  for (X509* x : {ca, leaf}) X509_free(x);
  EVP_PKEY_free(key);
}

TEST(ReplicaPod, AnAbsolutePathIsUsedAsItIsAndAVolumeIsMounted) {
  json md = example();
  md["spec"]["model"]["path"] = "/abs/small";
  auto s = parse_deployment(md);
  EXPECT_EQ(replica_pod(*s, AgentRuntime{}, "p")["spec"]["containers"][0]["command"][3], "/abs/small");
  md["spec"]["model"]["path"] = "small";
  md["spec"]["model"]["volume"] = {{"persistentVolumeClaim", {{"claimName", "weights"}}}};
  s = parse_deployment(md);
  json pod = replica_pod(*s, AgentRuntime{}, "p");
  EXPECT_EQ(pod["spec"]["containers"][0]["command"][3], "/model/small");
  EXPECT_EQ(pod["spec"]["volumes"][0]["name"], "model");
  EXPECT_EQ(pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "weights");
  EXPECT_EQ(pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"], "/model");
}

TEST(ModelHash, ChangesWithTheModelOrEngineButNotWithTheReplicaCount) {
  auto base = *parse_deployment(example());
  json md = example();
  md["spec"]["replicas"] = 5;
  EXPECT_EQ(model_hash(*parse_deployment(md)), model_hash(base));
  EXPECT_EQ(kv_layout_hash(*parse_deployment(md)), kv_layout_hash(base));
  md["spec"]["engine"]["maxNumSeqs"] = 8;  // the engine changes; the KV layout does not
  EXPECT_NE(model_hash(*parse_deployment(md)), model_hash(base));
  EXPECT_EQ(kv_layout_hash(*parse_deployment(md)), kv_layout_hash(base));
  md["spec"]["engine"]["kvDtype"] = "bf16";
  EXPECT_NE(kv_layout_hash(*parse_deployment(md)), kv_layout_hash(base));
  md = example();
  md["spec"]["model"]["revision"] = "v2";
  EXPECT_NE(model_hash(*parse_deployment(md)), model_hash(base));
  EXPECT_NE(kv_layout_hash(*parse_deployment(md)), kv_layout_hash(base));
  EXPECT_EQ(model_hash(base).size(), 16u);
}

TEST(OwnedObjects, ServicePdbAndSecretSelectTheReplicas) {
  auto s = *parse_deployment(example());
  json svc = replica_service(s);
  EXPECT_EQ(svc["spec"]["selector"][kDeploymentLabel], "small");
  EXPECT_EQ(svc["spec"]["ports"][0]["port"], 80);
  EXPECT_EQ(svc["spec"]["ports"][0]["targetPort"], kAgentPort);
  json pdb = replica_pdb(s);
  EXPECT_EQ(pdb["apiVersion"], "policy/v1");
  EXPECT_EQ(pdb["spec"]["maxUnavailable"], 0);
  EXPECT_EQ(pdb["spec"]["selector"]["matchLabels"][kDeploymentLabel], "small");
  json secret = control_secret(s, "0123456789abcdef");
  EXPECT_EQ(*token_from_secret(secret), "0123456789abcdef");
  json stored = {{"metadata", {{"name", "small-control-token"}}}, {"data", {{"token", "MDEyMzQ1Njc4OWFiY2RlZg=="}}}};
  EXPECT_EQ(*token_from_secret(stored), "0123456789abcdef");
  EXPECT_EQ(token_from_secret(json{{"data", json::object()}}).status().code(), StatusCode::kNotFound);
}

// NetworkPolicy semantics as the API documents them, naively, for one Ingress connection: a Pod
// is isolated when a policy's podSelector matches it; then a connection is admitted when some
// rule of some such policy admits it: its ports (none: all) hold the port, its "from" (none: all
// sources) has a peer whose podSelector matches the source Pod in the policy's namespace.
struct Peer {
  std::string ns;
  std::map<std::string, std::string> labels;
};

bool selects(const json& selector, const std::map<std::string, std::string>& labels) {
  const json match = selector.value("matchLabels", json::object());
  for (const auto& [k, v] : match.items()) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v.get<std::string>()) return false;
  }
  return !selector.contains("matchExpressions");  // none used here; a test of them would fail
}

bool admits(const json& policy, const Peer& from, const Peer& to, int port) {
  const std::string ns = policy["metadata"]["namespace"];
  const json& spec = policy["spec"];
  if (to.ns != ns || !selects(spec["podSelector"], to.labels)) return true;  // not isolated by it
  for (const json& rule : spec.value("ingress", json::array())) {
    bool port_ok = !rule.contains("ports");
    for (const json& p : rule.value("ports", json::array())) {
      if (p.value("protocol", std::string("TCP")) != "TCP") continue;
      const int first = p["port"], last = p.value("endPort", first);
      port_ok = port_ok || (port >= first && port <= last);
    }
    bool peer_ok = !rule.contains("from");
    for (const json& peer : rule.value("from", json::array())) {
      EXPECT_FALSE(peer.contains("namespaceSelector") || peer.contains("ipBlock")) << peer.dump();
      peer_ok = peer_ok || (from.ns == ns && selects(peer["podSelector"], from.labels));
    }
    if (port_ok && peer_ok) return true;
  }
  return false;
}

TEST(NetworkPolicy, OnlyTheDeploymentsOwnAgentsReachItsMigrationPorts) {
  auto s = *parse_deployment(example());
  const json policy = replica_network_policy(s);
  EXPECT_EQ(policy["apiVersion"], "networking.k8s.io/v1");
  EXPECT_EQ(policy["kind"], "NetworkPolicy");
  EXPECT_EQ(policy["metadata"]["name"], "small-agents");
  EXPECT_EQ(policy["metadata"]["labels"][kManagedByLabel], kManagedBy);
  EXPECT_EQ(policy["metadata"]["ownerReferences"][0]["uid"], "u-1");
  EXPECT_EQ(policy["spec"]["policyTypes"], json::array({"Ingress"})) << "egress is left alone";

  // A replica as the operator makes it, and the ports its agent listens on.
  const json pod = replica_pod(s, AgentRuntime{}, "small-abcde");
  std::map<std::string, std::string> labels = pod["metadata"]["labels"];
  const Peer replica{"ml", labels};
  const auto cmd = pod["spec"]["containers"][0]["command"].get<std::vector<std::string>>();
  auto flag = std::find(cmd.begin(), cmd.end(), "--migration-ports");
  ASSERT_NE(flag, cmd.end());
  const std::string range = *(flag + 1);
  const int first = std::stoi(range.substr(0, range.find('-'))), last = std::stoi(range.substr(range.find('-') + 1));
  EXPECT_EQ(last - first + 1, 32);

  const Peer client{"ml", {{"app", "chat-frontend"}}};
  const Peer operator_pod{"hotswap-system", {{"app.kubernetes.io/name", "hotswap"}}};
  auto other_labels = labels;
  other_labels[kDeploymentLabel] = "other";
  const Peer other_deployment{"ml", other_labels};
  const Peer same_name_elsewhere{"team-b", labels};
  for (const Peer* p : {&replica, &client, &operator_pod, &other_deployment, &same_name_elsewhere})
    EXPECT_TRUE(admits(policy, *p, replica, kAgentPort)) << "the API, /metrics and the control API: from " << p->ns;
  for (int port : {first, first + 1, last}) {
    EXPECT_TRUE(admits(policy, replica, replica, port)) << port;
    for (const Peer* p : {&client, &operator_pod, &other_deployment, &same_name_elsewhere})
      EXPECT_FALSE(admits(policy, *p, replica, port)) << port << " from " << p->ns;
  }
  for (int port : {first - 1, last + 1, 22, 8080})
    EXPECT_FALSE(admits(policy, replica, replica, port)) << port << ": nothing else is open";
  EXPECT_TRUE(admits(policy, client, client, first)) << "Pods of other deployments are not fenced by it";
}

TEST(NodeState, ReadsCordonTaintsReadinessAndGpus) {
  json node = json::parse(R"({"metadata": {"name": "node-1", "labels": {"nvidia.com/gpu.product": "t4-sim"}},
    "spec": {"unschedulable": true, "taints": [{"key": "x", "effect": "NoExecute"}]},
    "status": {"allocatable": {"nvidia.com/gpu": "2"}, "conditions": [{"type": "Ready", "status": "True"}]}})");
  auto n = node_state(node);
  EXPECT_EQ(n.name, "node-1");
  EXPECT_EQ(n.gpu_class, "t4-sim");
  EXPECT_EQ(n.gpus, 2);
  EXPECT_TRUE(n.ready);
  EXPECT_TRUE(n.unschedulable);
  EXPECT_TRUE(n.no_execute);
  EXPECT_FALSE(n.gpu_faulty);
  node["metadata"]["annotations"] = {{kGpuFaultAnnotation, "xid: Xid 79"}};
  EXPECT_TRUE(node_state(node).gpu_faulty);
  node["metadata"].erase("annotations");
  node["spec"] = json::object();
  node["status"]["conditions"][0]["status"] = "False";
  n = node_state(node);
  EXPECT_FALSE(n.ready || n.unschedulable || n.no_execute);
}

TEST(RetryBackoff, DoublesFromThirtySecondsUpToTenMinutes) {
  EXPECT_EQ(retry_backoff_seconds(0), 0);
  EXPECT_EQ(retry_backoff_seconds(1), 30);
  EXPECT_EQ(retry_backoff_seconds(2), 60);
  EXPECT_EQ(retry_backoff_seconds(3), 120);
  EXPECT_EQ(retry_backoff_seconds(5), 480);
  EXPECT_EQ(retry_backoff_seconds(6), 600);
  EXPECT_EQ(retry_backoff_seconds(100), 600);
}

TEST(Conditions, KeepTheirTransitionTimeWhileTheStatusHolds) {
  json prev = json::array({condition("Available", true, "R", "m", 1, json::array(), 1000)});
  json same = condition("Available", true, "R2", "m2", 2, prev, 2000);
  EXPECT_EQ(same["lastTransitionTime"], format_rfc3339(1000));
  EXPECT_EQ(same["observedGeneration"], 2);
  json flipped = condition("Available", false, "R", "m", 2, prev, 3000);
  EXPECT_EQ(flipped["lastTransitionTime"], format_rfc3339(3000));
  EXPECT_EQ(flipped["status"], "False");
}

}  // namespace
}  // namespace hotswap::controllers
