// What a ModelDeployment asks for, read from its JSON with the CRD's defaults, and the objects
// the operator makes for it: replica Pods, the Service, the PodDisruptionBudget, the Secret
// holding the agents' control token and the NetworkPolicy fencing their migration data ports
// (DESIGN.md, "The replica and its traffic").
//
// Every object carries the label hotswap.io/deployment=<name> and an owner reference to the
// ModelDeployment (controller: true), so deleting the deployment deletes them (garbage
// collection). A replica Pod requests nvidia.com/gpu, may only land on the deployment's GPU
// classes (required node affinity on nvidia.com/gpu.product), carries the readiness gate
// hotswap.io/serving and runs `hotswap-agent serve` with the spec's engine options. A migration's
// target Pod is the same Pod pinned to the chosen node (kubernetes.io/hostname) and annotated
// hotswap.io/migration-target=<ModelMigration>.
//
// Threads: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "operator/kube/rest_client.h"
#include "operator/policy/policy.h"

namespace hotswap::controllers {

inline constexpr const char* kDeploymentLabel = "hotswap.io/deployment";
inline constexpr const char* kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr const char* kManagedBy = "hotswap-operator";
inline constexpr const char* kServingGate = "hotswap.io/serving";
inline constexpr const char* kMigrationTargetAnnotation = "hotswap.io/migration-target";
inline constexpr const char* kModelHashAnnotation = "hotswap.io/model-hash";
inline constexpr const char* kKvLayoutAnnotation = "hotswap.io/kv-layout";
inline constexpr const char* kGpuClassLabel = "nvidia.com/gpu.product";
// On a Node whose GPU an agent reported faulty: what it reported. No replica is placed there
// until an administrator removes it (kubectl annotate node N hotswap.io/gpu-fault-).
inline constexpr const char* kGpuFaultAnnotation = "hotswap.io/gpu-fault";
inline constexpr const char* kGpuResource = "nvidia.com/gpu";
inline constexpr const char* kHostnameLabel = "kubernetes.io/hostname";
inline constexpr const char* kControlTokenKey = "token";
inline constexpr int kAgentPort = 8000;  // the OpenAI API, /metrics and the control API
// A replica's migration data listeners, one port per migration in flight to it (--migration-ports).
inline constexpr int kMigrationPortFirst = 9100;
inline constexpr int kMigrationPortLast = 9131;

// The API resources the operator reads and writes.
kube::ResourceRef deployments_ref();  // hotswap.io/v1alpha1 modeldeployments
kube::ResourceRef migrations_ref();   // hotswap.io/v1alpha1 modelmigrations
kube::ResourceRef pods_ref();
kube::ResourceRef nodes_ref();
kube::ResourceRef services_ref();
kube::ResourceRef secrets_ref();
kube::ResourceRef pdbs_ref();    // policy/v1 poddisruptionbudgets
kube::ResourceRef events_ref();  // core/v1 events
kube::ResourceRef network_policies_ref();  // networking.k8s.io/v1 networkpolicies

// How the operator runs agents; from hotswap-operator's flags.
struct AgentRuntime {
  std::string image = "hotswap-agent:0.1";
  std::string command = "hotswap-agent";  // the dev cluster runs it as a local process: an absolute path
  std::string model_root = "/models";     // where a relative spec.model.path is found
  std::string image_pull_policy = "IfNotPresent";
  int64_t termination_grace_seconds = 30;
  // The migration data channel between a deployment's agents: mutual TLS with material the
  // operator makes per deployment (migration_tls_secret), or, when false, plain tcp
  // (--allow-plaintext-migration on every agent).
  bool migration_tls = true;
  // A NetworkPolicy per deployment (replica_network_policy) that lets only the deployment's own
  // agents reach its migration data ports; when false the operator makes none and deletes the
  // ones it made.
  bool network_policy = true;
};

// spec of a ModelDeployment, with the CRD's defaults for what is missing.
struct DeploymentSpec {
  std::string name, ns, uid;
  int64_t generation = 0;
  nlohmann::json model = nlohmann::json::object();   // spec.model as given
  nlohmann::json engine = nlohmann::json::object();  // spec.engine as given
  int64_t replicas = 1;
  int64_t gpus_per_replica = 1;
  std::vector<std::string> gpu_classes;
  int64_t service_port = 80;
  std::string service_type = "ClusterIP";
  policy::DeploymentPolicy policy;
  int64_t downtime_budget_ms = 50;
  uint64_t bandwidth_limit_bytes_per_s = 0;  // 0: none
  int64_t completion_timeout_seconds = 600;
};

// Reads a ModelDeployment; errors name the field ("spec.migration.bandwidthLimit: ...").
StatusOr<DeploymentSpec> parse_deployment(const nlohmann::json& md);

// spec of a ModelMigration, with the CRD's defaults for what is missing.
struct MigrationSpec {
  std::string deployment;
  std::string replica;                          // "": the first serving replica selector matches
  std::map<std::string, std::string> selector;  // Pod labels
  std::string mode;                             // KV, Recompute, Auto; "": the deployment's
  std::string reason = "Manual";
  std::string target_pod;                       // a scale-down into this running replica
  std::string target_node, target_gpu_class;
  std::map<std::string, std::string> target_node_selector;
};

// Reads a ModelMigration as the CRD describes it; errors name the field ("spec.target.gpuClass:
// must be a string, got 3"). The API server's schema checks the same, but an older or hand-edited
// CRD must not crash the operator.
StatusOr<MigrationSpec> parse_migration_spec(const nlohmann::json& mm);

// "10Gi", "500M", "1.5G" (bytes per second; k/M/G/T powers of 1000, Ki/Mi/Gi/Ti of 1024).
StatusOr<uint64_t> parse_bandwidth(const std::string& text);
// An RFC 3339 time ("2026-12-02T10:00:00Z", "...+01:00", fractions ignored) as Unix seconds.
StatusOr<int64_t> parse_rfc3339(const std::string& text);
// The same with its fraction, in Unix milliseconds.
StatusOr<int64_t> parse_rfc3339_ms(const std::string& text);
// Unix seconds as "2026-12-02T10:00:00Z"; milliseconds as "2026-12-02T10:00:00.123Z".
std::string format_rfc3339(int64_t unix_seconds);
std::string format_rfc3339_ms(int64_t unix_ms);
int64_t now_unix_ms();  // the system clock

// A short stable hash (16 hex digits) of what a replica runs: spec.model and spec.engine. A Pod
// whose annotation differs runs an old version.
std::string model_hash(const DeploymentSpec& spec);
// The same over what decides the KV cache's layout and content: the model and the KV dtype and
// block size. When only this matches, the KV can move (mode KV); else it must be recomputed.
std::string kv_layout_hash(const DeploymentSpec& spec);

// The owner reference to the deployment (controller, blockOwnerDeletion).
nlohmann::json owner_reference(const DeploymentSpec& spec);

std::string control_secret_name(const DeploymentSpec& spec);  // <name>-control-token
std::string migration_tls_secret_name(const DeploymentSpec& spec);  // <name>-migration-tls
std::string network_policy_name(const DeploymentSpec& spec);        // <name>-agents

// A replica Pod. target_node: pin it there (a migration's target). migration: the
// ModelMigration it is the target of ("" for a plain replica).
nlohmann::json replica_pod(const DeploymentSpec& spec, const AgentRuntime& runtime, const std::string& pod_name,
                           const std::string& target_node = "", const std::string& migration = "");
nlohmann::json replica_service(const DeploymentSpec& spec);
nlohmann::json replica_pdb(const DeploymentSpec& spec);
// Ingress to the deployment's replicas: kAgentPort from anywhere (clients, the operator,
// Prometheus; the control API under it takes only the bearer token), the migration data ports
// kMigrationPortFirst..kMigrationPortLast only from Pods of the same deployment in its namespace.
// Everything else is denied where the cluster's network plugin enforces NetworkPolicy.
nlohmann::json replica_network_policy(const DeploymentSpec& spec);
nlohmann::json control_secret(const DeploymentSpec& spec, const std::string& token);
// The deployment's migration TLS material, a kubernetes.io/tls Secret: ca.crt (a CA of the
// deployment's own, made now, valid ten years), tls.crt and tls.key (one certificate it signed,
// which every agent of the deployment presents and accepts). kInternal when OpenSSL fails.
StatusOr<nlohmann::json> migration_tls_secret(const DeploymentSpec& spec);
// The token of a control Secret (data, base64, or stringData); kNotFound without one.
StatusOr<std::string> token_from_secret(const nlohmann::json& secret);

// How long after its n-th failed migration (n >= 1) a replica may be moved again: 30 s, doubling,
// at most 10 minutes.
int64_t retry_backoff_seconds(int failed_migrations);

// "Maintenance" -> "maintenance", "KV" -> "kv" (names and modes are ASCII).
std::string ascii_lower(std::string s);

// A random lowercase [a-z0-9] suffix for generated names.
std::string random_suffix(size_t length = 5);

// Reading Pods and Nodes.
bool pod_terminating(const nlohmann::json& pod);  // deletionTimestamp set, or phase Succeeded/Failed
std::string pod_condition(const nlohmann::json& pod, const std::string& type);  // "True", "False" or ""
std::string pod_ip(const nlohmann::json& pod);
std::string pod_node(const nlohmann::json& pod);
int64_t pod_gpus(const nlohmann::json& pod);  // nvidia.com/gpu limits (or requests), summed
std::string label(const nlohmann::json& object, const std::string& key);
std::string annotation(const nlohmann::json& object, const std::string& key);
// A Node as the policy sees it (gpus_used is filled in by the caller).
policy::NodeState node_state(const nlohmann::json& node);

// The merge patch of a Pod's status that sets its hotswap.io/serving condition (strategic merge
// on conditions, keyed by type).
nlohmann::json serving_gate_patch(bool serving, const std::string& reason);

// A condition in the Kubernetes shape, for a conditions list; lastTransitionTime kept from
// `previous` (the list as it was) when the status did not change.
nlohmann::json condition(const std::string& type, bool status, const std::string& reason, const std::string& message,
                         int64_t observed_generation, const nlohmann::json& previous, int64_t now_unix);

}  // namespace hotswap::controllers
