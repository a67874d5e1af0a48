#include "operator/controllers/resources.h"

#include "common/x509.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <chrono>
#include <random>

#include "common/x509.h"
#include "operator/kube/kubeconfig.h"
#include "operator/kube/object.h"

namespace hotswap::controllers {

using nlohmann::json;

kube::ResourceRef deployments_ref() { return kube::ResourceRef::of("hotswap.io", "v1alpha1", "modeldeployments"); }
kube::ResourceRef migrations_ref() { return kube::ResourceRef::of("hotswap.io", "v1alpha1", "modelmigrations"); }
kube::ResourceRef pods_ref() { return kube::ResourceRef::core("pods"); }
kube::ResourceRef nodes_ref() { return kube::ResourceRef::core("nodes"); }
kube::ResourceRef services_ref() { return kube::ResourceRef::core("services"); }
kube::ResourceRef secrets_ref() { return kube::ResourceRef::core("secrets"); }
kube::ResourceRef pdbs_ref() { return kube::ResourceRef::of("policy", "v1", "poddisruptionbudgets"); }
kube::ResourceRef network_policies_ref() {
  return kube::ResourceRef::of("networking.k8s.io", "v1", "networkpolicies");
}
kube::ResourceRef events_ref() { return kube::ResourceRef::core("events"); }

namespace {

// "service.port" -> /service/port
json::json_pointer dotted_pointer(const std::string& path) {
  std::string s = "/" + path;
  std::replace(s.begin(), s.end(), '.', '/');
  return json::json_pointer(s);
}

// The value at a path, when it is of the wanted JSON type; nullopt when missing; an error naming
// the field when it has another type.
template <typename T>
StatusOr<std::optional<T>> field(const json& object, const std::string& path) {
  const json::json_pointer p = dotted_pointer(path);
  if (!object.contains(p) || object[p].is_null()) return std::optional<T>();
  const json& v = object[p];
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return invalid_argument(path + ": must be a boolean, got " + v.dump());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return invalid_argument(path + ": must be a string, got " + v.dump());
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) return invalid_argument(path + ": must be an integer, got " + v.dump());
  } else {
    if (!v.is_number()) return invalid_argument(path + ": must be a number, got " + v.dump());
  }
  return std::optional<T>(v.get<T>());
}

template <typename T>
Status read(const json& object, const std::string& path, T* out) {
  HOTSWAP_ASSIGN_OR_RETURN(std::optional<T> v, field<T>(object, path));
  if (v) *out = *v;
  return Status();
}

Status read_strings(const json& object, const std::string& path, std::vector<std::string>* out) {
  const json::json_pointer p = dotted_pointer(path);
  if (!object.contains(p) || object[p].is_null()) return Status();
  const json& v = object[p];
  if (!v.is_array()) return invalid_argument(path + ": must be a list of strings, got " + v.dump());
  out->clear();
  for (const auto& s : v) {
    if (!s.is_string()) return invalid_argument(path + ": must be a list of strings, got " + v.dump());
    out->push_back(s.get<std::string>());
  }
  return Status();
}

Status read_labels(const json& v, const std::string& path, std::map<std::string, std::string>* out) {
  if (v.is_null()) return Status();
  if (!v.is_object()) return invalid_argument(path + ": must be a map of strings, got " + v.dump());
  for (const auto& [k, x] : v.items()) {
    if (!x.is_string()) return invalid_argument(path + "." + k + ": must be a string, got " + x.dump());
    (*out)[k] = x.get<std::string>();
  }
  return Status();
}

uint64_t fnv1a64(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

StatusOr<uint64_t> parse_bandwidth(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  const std::string number = text.substr(0, i), unit = text.substr(i);
  double v = 0;
  try {
    size_t used = 0;
    v = std::stod(number, &used);
    if (used != number.size()) throw std::invalid_argument(number);
  } catch (const std::exception&) {
    return invalid_argument("'" + text + "' is not a bandwidth like 500M or 10Gi (bytes per second)");
  }
  static const std::map<std::string, double> units = {{"", 1},          {"k", 1e3},           {"M", 1e6},
                                                      {"G", 1e9},       {"T", 1e12},          {"Ki", 1024.0},
                                                      {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0}};
  auto u = units.find(unit);
  if (u == units.end())
    return invalid_argument("'" + text + "': unit '" + unit + "' is not one of k, M, G, T, Ki, Mi, Gi, Ti");
  return static_cast<uint64_t>(std::llround(v * u->second));
}

StatusOr<int64_t> parse_rfc3339(const std::string& text) {
  HOTSWAP_ASSIGN_OR_RETURN(int64_t ms, parse_rfc3339_ms(text));
  return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

StatusOr<int64_t> parse_rfc3339_ms(const std::string& text) {
  int y, mo, d, h, mi, s;
  if (text.size() < 20 || std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &s) != 6)
    return invalid_argument("'" + text + "' is not an RFC 3339 time like 2026-12-02T10:00:00Z");
  size_t i = 19;
  int64_t fraction_ms = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    int64_t scale = 100;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      fraction_ms += (text[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
  }
  int64_t offset = 0;
  const std::string zone = text.substr(i);
  if (zone == "Z" || zone == "z") {
    offset = 0;
  } else {
    int oh, om;
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || std::sscanf(zone.c_str() + 1, "%2d:%2d", &oh, &om) != 2)
      return invalid_argument("'" + text + "': the zone must be Z or +hh:mm");
    offset = (zone[0] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return (static_cast<int64_t>(timegm(&tm)) - offset) * 1000 + fraction_ms;
}

std::string format_rfc3339_ms(int64_t unix_ms) {
  std::string s = format_rfc3339(unix_ms / 1000);
  char buf[8];
  std::snprintf(buf, sizeof(buf), ".%03lldZ", static_cast<long long>(unix_ms % 1000));
  s.pop_back();
  return s + buf;
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string format_rfc3339(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

StatusOr<DeploymentSpec> read_deployment(const json& md) {
  DeploymentSpec s;
  s.name = kube::object_name(md);
  s.ns = kube::object_namespace(md);
  s.uid = kube::metadata_field(md, "uid");
  s.generation = md.value("/metadata/generation"_json_pointer, int64_t{0});
  if (s.name.empty()) return invalid_argument("metadata.name: required");
  if (!md.contains("spec") || !md["spec"].is_object()) return invalid_argument("spec: required");
  const json& spec = md["spec"];
  if (!spec.contains("model") || !spec["model"].is_object()) return invalid_argument("spec.model: required");
  s.model = spec["model"];
  if (!s.model.contains("name") || !s.model["name"].is_string() || s.model["name"].get<std::string>().empty())
    return invalid_argument("spec.model.name: required");
  if (!s.model.contains("path") || !s.model["path"].is_string() || s.model["path"].get<std::string>().empty())
    return invalid_argument("spec.model.path: required (the checkpoint's directory, relative to the volume or the "
                            "operator's --model-root)");
  if (spec.contains("engine")) {
    if (!spec["engine"].is_object()) return invalid_argument("spec.engine: must be an object");
    s.engine = spec["engine"];
  }
  auto in_spec = [](const Status& st) { return st.ok() ? st : Status(st.code(), "spec." + st.message()); };
  HOTSWAP_RETURN_IF_ERROR(in_spec(read(spec, "replicas", &s.replicas)));
  // The CRD's bounds, checked again: a schema edited by hand or an older CRD must not make the
  // operator create a million Pods.
  if (s.replicas < 0 || s.replicas > 1000)
    return invalid_argument("spec.replicas: must be in 0..1000, got " + std::to_string(s.replicas));
  HOTSWAP_RETURN_IF_ERROR(in_spec(read(spec, "gpusPerReplica", &s.gpus_per_replica)));
  if (s.gpus_per_replica < 1 || s.gpus_per_replica > 8)
    return invalid_argument("spec.gpusPerReplica: must be in 1..8, got " + std::to_string(s.gpus_per_replica));
  HOTSWAP_RETURN_IF_ERROR(in_spec(read_strings(spec, "gpuClasses", &s.gpu_classes)));
  HOTSWAP_RETURN_IF_ERROR(in_spec(read(spec, "service.port", &s.service_port)));
  HOTSWAP_RETURN_IF_ERROR(in_spec(read(spec, "service.type", &s.service_type)));

  policy::DeploymentPolicy& p = s.policy;
  p.name = s.name;
  p.replicas = s.replicas;
  p.gpu_classes = s.gpu_classes;
  const json m = spec.value("migration", json::object());
  if (!m.is_object()) return invalid_argument("spec.migration: must be an object");
  auto prefixed = [](const Status& st) { return Status(st.code(), "spec.migration." + st.message()); };
  auto rd = [&](const char* path, auto* out) -> Status {
    Status st = read(m, path, out);
    return st.ok() ? st : prefixed(st);
  };
  HOTSWAP_RETURN_IF_ERROR(rd("enabled", &p.enabled));
  HOTSWAP_RETURN_IF_ERROR(rd("mode", &p.mode));
  if (p.mode != "KV" && p.mode != "Recompute" && p.mode != "Auto")
    return invalid_argument("spec.migration.mode: must be KV, Recompute or Auto, got '" + p.mode + "'");
  HOTSWAP_RETURN_IF_ERROR(rd("triggers.maintenance", &p.triggers.maintenance));
  HOTSWAP_RETURN_IF_ERROR(rd("triggers.gpuHealth", &p.triggers.gpu_health));
  HOTSWAP_RETURN_IF_ERROR(rd("triggers.load", &p.triggers.load));
  HOTSWAP_RETURN_IF_ERROR(rd("triggers.schedule", &p.triggers.schedule));
  HOTSWAP_RETURN_IF_ERROR(rd("triggers.version", &p.triggers.version));
  HOTSWAP_RETURN_IF_ERROR(rd("triggers.scaleDown", &p.triggers.scale_down));
  HOTSWAP_RETURN_IF_ERROR(rd("maxConcurrent", &p.max_concurrent));
  HOTSWAP_RETURN_IF_ERROR(rd("maxConcurrentPerNode", &p.max_concurrent_per_node));
  if (p.max_concurrent < 1 || p.max_concurrent_per_node < 1)
    return invalid_argument("spec.migration.maxConcurrent and maxConcurrentPerNode: must be >= 1");
  HOTSWAP_RETURN_IF_ERROR(rd("downtimeBudgetMs", &s.downtime_budget_ms));
  HOTSWAP_RETURN_IF_ERROR(rd("completionTimeoutSeconds", &s.completion_timeout_seconds));
  std::string bw;
  HOTSWAP_RETURN_IF_ERROR(rd("bandwidthLimit", &bw));
  if (!bw.empty()) {
    auto v = parse_bandwidth(bw);
    if (!v.ok()) return invalid_argument("spec.migration.bandwidthLimit: " + v.status().message());
    s.bandwidth_limit_bytes_per_s = *v;
  }
  for (auto [path, out] : {std::pair{"loadPolicy.fasterClasses", &p.load.faster_classes},
                            std::pair{"loadPolicy.cheaperClasses", &p.load.cheaper_classes}})
    if (Status st = read_strings(m, path, out); !st.ok()) return prefixed(st);
  HOTSWAP_RETURN_IF_ERROR(rd("loadPolicy.queueDepthHigh", &p.load.queue_depth_high));
  HOTSWAP_RETURN_IF_ERROR(rd("loadPolicy.queueDepthLow", &p.load.queue_depth_low));
  HOTSWAP_RETURN_IF_ERROR(rd("loadPolicy.utilizationHigh", &p.load.utilization_high));
  HOTSWAP_RETURN_IF_ERROR(rd("loadPolicy.utilizationLow", &p.load.utilization_low));
  HOTSWAP_RETURN_IF_ERROR(rd("loadPolicy.sustainSeconds", &p.load.sustain_seconds));
  HOTSWAP_RETURN_IF_ERROR(rd("loadPolicy.cooldownSeconds", &p.load.cooldown_seconds));
  if (p.load.queue_depth_low >= p.load.queue_depth_high)
    return invalid_argument("spec.migration.loadPolicy: queueDepthLow (" + std::to_string(p.load.queue_depth_low) +
                            ") must be below queueDepthHigh (" + std::to_string(p.load.queue_depth_high) + ")");
  if (p.load.utilization_low >= p.load.utilization_high)
    return invalid_argument("spec.migration.loadPolicy: utilizationLow must be below utilizationHigh");
  const json windows = m.value("maintenanceWindows", json::array());
  if (!windows.is_array()) return invalid_argument("spec.migration.maintenanceWindows: must be a list");
  for (size_t i = 0; i < windows.size(); ++i) {
    const std::string at = "spec.migration.maintenanceWindows[" + std::to_string(i) + "]";
    const json& w = windows[i];
    if (!w.is_object() || !w.contains("start") || !w["start"].is_string())
      return invalid_argument(at + ".start: required");
    policy::MaintenanceWindow mw;
    auto start = parse_rfc3339(w["start"].get<std::string>());
    if (!start.ok()) return invalid_argument(at + ".start: " + start.status().message());
    mw.start_unix = *start;
    if (!w.contains("durationMinutes") || !w["durationMinutes"].is_number_integer() ||
        w["durationMinutes"].get<int64_t>() < 1)
      return invalid_argument(at + ".durationMinutes: required, an integer >= 1");
    mw.duration_seconds = w["durationMinutes"].get<int64_t>() * 60;
    HOTSWAP_RETURN_IF_ERROR(read_labels(w.value("nodeSelector", json()), at + ".nodeSelector", &mw.node_selector));
    p.windows.push_back(std::move(mw));
  }
  return s;
}

}  // namespace

StatusOr<DeploymentSpec> parse_deployment(const json& md) {
  if (!md.is_object() || !md.contains("metadata") || !md["metadata"].is_object())
    return invalid_argument("metadata: a ModelDeployment is an object with metadata");
  // Each field is read with its type checked; a shape nothing expected (found by
  // fuzz/deployment_spec_fuzz) is still an error that says where, never an exception.
  try {
    return read_deployment(md);
  } catch (const json::exception& e) {
    return invalid_argument(std::string("spec: unexpected shape: ") + e.what());
  }
}

namespace {

// Reads `key` of `object` into *out when present: a string of at most max_length bytes (and at
// least one when non_empty), else an error naming `path`.
Status read_string(const json& object, const char* key, const std::string& path, std::string* out, size_t max_length,
                   bool non_empty = true) {
  if (!object.contains(key)) return Status();
  const json& v = object[key];
  if (!v.is_string()) return invalid_argument(path + ": must be a string, got " + v.dump());
  const std::string& s = v.get_ref<const std::string&>();
  if ((non_empty && s.empty()) || s.size() > max_length)
    return invalid_argument(path + ": must be 1.." + std::to_string(max_length) + " characters");
  *out = s;
  return Status();
}

Status read_enum(const json& object, const char* key, const std::string& path, const std::vector<std::string>& values,
                 std::string* out) {
  std::string v;
  HOTSWAP_RETURN_IF_ERROR(read_string(object, key, path, &v, 64));
  if (!object.contains(key)) return Status();
  if (std::find(values.begin(), values.end(), v) == values.end()) {
    std::string list;
    for (const auto& x : values) list += (list.empty() ? "" : ", ") + x;
    return invalid_argument(path + ": '" + v + "' is not one of " + list);
  }
  *out = v;
  return Status();
}

}  // namespace

StatusOr<MigrationSpec> parse_migration_spec(const json& mm) {
  if (!mm.is_object() || !mm.contains("spec") || !mm["spec"].is_object())
    return invalid_argument("spec: a ModelMigration has a spec object");
  const json& spec = mm["spec"];
  MigrationSpec m;
  if (!spec.contains("deployment")) return invalid_argument("spec.deployment: required");
  HOTSWAP_RETURN_IF_ERROR(read_string(spec, "deployment", "spec.deployment", &m.deployment, 253));
  HOTSWAP_RETURN_IF_ERROR(read_string(spec, "replica", "spec.replica", &m.replica, 253));
  HOTSWAP_RETURN_IF_ERROR(read_labels(spec.value("selector", json()), "spec.selector", &m.selector));
  HOTSWAP_RETURN_IF_ERROR(read_enum(spec, "mode", "spec.mode", {"KV", "Recompute", "Auto"}, &m.mode));
  HOTSWAP_RETURN_IF_ERROR(read_enum(spec, "reason", "spec.reason",
                                    {"Manual", "Maintenance", "GpuHealth", "Load", "Schedule", "Version", "ScaleDown"},
                                    &m.reason));
  if (spec.contains("target")) {
    const json& t = spec["target"];
    if (!t.is_object()) return invalid_argument("spec.target: must be an object, got " + t.dump());
    HOTSWAP_RETURN_IF_ERROR(read_string(t, "pod", "spec.target.pod", &m.target_pod, 253));
    HOTSWAP_RETURN_IF_ERROR(read_string(t, "nodeName", "spec.target.nodeName", &m.target_node, 253));
    HOTSWAP_RETURN_IF_ERROR(read_string(t, "gpuClass", "spec.target.gpuClass", &m.target_gpu_class, 63));
    HOTSWAP_RETURN_IF_ERROR(
        read_labels(t.value("nodeSelector", json()), "spec.target.nodeSelector", &m.target_node_selector));
  }
  return m;
}

std::string model_hash(const DeploymentSpec& spec) {
  return hex16(fnv1a64(json{{"model", spec.model}, {"engine", spec.engine}}.dump()));
}

std::string kv_layout_hash(const DeploymentSpec& spec) {
  return hex16(fnv1a64(json{{"model", spec.model},
                            {"kvDtype", spec.engine.value("kvDtype", std::string("f32"))},
                            {"blockSize", spec.engine.value("blockSize", int64_t{16})}}
                           .dump()));
}

json owner_reference(const DeploymentSpec& spec) {
  return json{{"apiVersion", "hotswap.io/v1alpha1"}, {"kind", "ModelDeployment"}, {"name", spec.name},
              {"uid", spec.uid},  {"controller", true},  {"blockOwnerDeletion", true}};
}

std::string control_secret_name(const DeploymentSpec& spec) { return spec.name + "-control-token"; }
std::string migration_tls_secret_name(const DeploymentSpec& spec) { return spec.name + "-migration-tls"; }
std::string network_policy_name(const DeploymentSpec& spec) { return spec.name + "-agents"; }

namespace {

json object_meta(const DeploymentSpec& spec, const std::string& name) {
  return json{{"name", name},
              {"namespace", spec.ns},
              {"labels", {{kDeploymentLabel, spec.name}, {kManagedByLabel, kManagedBy}}},
              {"ownerReferences", json::array({owner_reference(spec)})}};
}

std::string model_dir(const DeploymentSpec& spec, const AgentRuntime& runtime) {
  const std::string path = spec.model.value("path", std::string());
  if (!path.empty() && path[0] == '/') return path;
  std::string root = spec.model.contains("volume") ? std::string("/model") : runtime.model_root;
  if (!root.empty() && root.back() != '/') root += '/';
  return root + path;
}

}  // namespace

json replica_pod(const DeploymentSpec& spec, const AgentRuntime& runtime, const std::string& pod_name,
                 const std::string& target_node, const std::string& migration) {
  json command = json::array({runtime.command, "serve", "--model", model_dir(spec, runtime), "--model-name",
                              spec.model.value("name", std::string()), "--host", "$(POD_IP)", "--port",
                              std::to_string(kAgentPort), "--migration-ports",
                              std::to_string(kMigrationPortFirst) + "-" + std::to_string(kMigrationPortLast)});
  static const std::vector<std::pair<const char*, const char*>> engine_flags = {
      {"maxBatchTokens", "--max-batch-tokens"}, {"maxNumSeqs", "--max-num-seqs"}, {"kvCacheMB", "--kv-cache-mb"},
      {"blockSize", "--block-size"},            {"kvDtype", "--kv-dtype"},        {"maxQueue", "--max-queue"},
      {"maxModelLen", "--max-model-len"}};
  for (const auto& [key, flag] : engine_flags) {
    if (!spec.engine.contains(key)) continue;
    const json& v = spec.engine[key];
    command.push_back(flag);
    command.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  }
  json env = json::array({{{"name", "POD_IP"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "status.podIP"}}}}}},
                          {{"name", "HOTSWAP_CONTROL_TOKEN"},
                           {"valueFrom",
                            {{"secretKeyRef", {{"name", control_secret_name(spec)}, {"key", kControlTokenKey}}}}}}});
  if (runtime.migration_tls) {
    for (auto [name, key] : {std::pair{"HOTSWAP_MIGRATION_TLS_CA", "ca.crt"}, std::pair{"HOTSWAP_MIGRATION_TLS_CERT", "tls.crt"},
                             std::pair{"HOTSWAP_MIGRATION_TLS_KEY", "tls.key"}})
      env.push_back({{"name", name},
                     {"valueFrom", {{"secretKeyRef", {{"name", migration_tls_secret_name(spec)}, {"key", key}}}}}});
  } else {
    command.push_back("--allow-plaintext-migration");
  }
  json container = {
      {"name", "agent"},
      {"image", runtime.image},
      {"imagePullPolicy", runtime.image_pull_policy},
      {"command", command},
      {"ports", json::array({{{"name", "http"}, {"containerPort", kAgentPort}}})},
      {"env", env},
      {"resources", {{"limits", {{kGpuResource, spec.gpus_per_replica}}}}},
      {"readinessProbe", {{"httpGet", {{"path", "/readyz"}, {"port", kAgentPort}}}, {"periodSeconds", 1}}},
      {"livenessProbe",
       {{"httpGet", {{"path", "/healthz"}, {"port", kAgentPort}}}, {"periodSeconds", 10}, {"failureThreshold", 6}}}};
  json pod_spec = {{"containers", json::array({container})},
                   {"readinessGates", json::array({{{"conditionType", kServingGate}}})},
                   {"terminationGracePeriodSeconds", runtime.termination_grace_seconds},
                   {"restartPolicy", "Always"}};
  if (spec.model.contains("volume")) {
    json volume = spec.model["volume"];
    volume["name"] = "model";
    pod_spec["volumes"] = json::array({volume});
    pod_spec["containers"][0]["volumeMounts"] =
        json::array({{{"name", "model"}, {"mountPath", "/model"}, {"readOnly", true}}});
  }
  if (!spec.gpu_classes.empty())
    pod_spec["affinity"] = {
        {"nodeAffinity",
         {{"requiredDuringSchedulingIgnoredDuringExecution",
           {{"nodeSelectorTerms",
             json::array({{{"matchExpressions",
                            json::array({{{"key", kGpuClassLabel}, {"operator", "In"}, {"values", spec.gpu_classes}}})}}})}}}}}};
  if (!target_node.empty()) pod_spec["nodeSelector"] = {{kHostnameLabel, target_node}};
  json meta = object_meta(spec, pod_name);
  meta["annotations"] = {{kModelHashAnnotation, model_hash(spec)}, {kKvLayoutAnnotation, kv_layout_hash(spec)}};
  if (!migration.empty()) meta["annotations"][kMigrationTargetAnnotation] = migration;
  return json{{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", meta}, {"spec", pod_spec}};
}

json replica_service(const DeploymentSpec& spec) {
  return json{{"apiVersion", "v1"},
              {"kind", "Service"},
              {"metadata", object_meta(spec, spec.name)},
              {"spec",
               {{"type", spec.service_type},
                {"selector", {{kDeploymentLabel, spec.name}}},
                {"ports", json::array({{{"name", "http"},
                                        {"port", spec.service_port},
                                        {"targetPort", kAgentPort},
                                        {"protocol", "TCP"}}})}}}};
}

json replica_pdb(const DeploymentSpec& spec) {
  // No voluntary disruption at all: a drain's eviction waits until the operator has moved the
  // replica live and deleted it (a delete is not an eviction).
  return json{{"apiVersion", "policy/v1"},
              {"kind", "PodDisruptionBudget"},
              {"metadata", object_meta(spec, spec.name)},
              {"spec", {{"maxUnavailable", 0}, {"selector", {{"matchLabels", {{kDeploymentLabel, spec.name}}}}}}}};
}

json replica_network_policy(const DeploymentSpec& spec) {
  const json same_deployment = {{"matchLabels", {{kDeploymentLabel, spec.name}}}};
  // A rule without "from" admits every source; a podSelector alone, the namespace's Pods.
  const json api = {{"ports", json::array({{{"protocol", "TCP"}, {"port", kAgentPort}}})}};
  const json migration = {
      {"from", json::array({{{"podSelector", same_deployment}}})},
      {"ports", json::array({{{"protocol", "TCP"}, {"port", kMigrationPortFirst}, {"endPort", kMigrationPortLast}}})}};
  return json{{"apiVersion", "networking.k8s.io/v1"},
              {"kind", "NetworkPolicy"},
              {"metadata", object_meta(spec, network_policy_name(spec))},
              {"spec",
               {{"podSelector", same_deployment},
                {"policyTypes", json::array({"Ingress"})},
                {"ingress", json::array({api, migration})}}}};
}

json control_secret(const DeploymentSpec& spec, const std::string& token) {
  return json{{"apiVersion", "v1"},
              {"kind", "Secret"},
              {"type", "Opaque"},
              {"metadata", object_meta(spec, control_secret_name(spec))},
              {"stringData", {{kControlTokenKey, token}}}};
}

StatusOr<json> migration_tls_secret(const DeploymentSpec& spec) {
  // The CA's key is used once, here, and kept nowhere: nobody can sign another certificate the
  // deployment's agents would accept.
  x509::CertificateRequest ca_request, agents_request;
  ca_request.common_name = "hotswap migration CA " + spec.ns + "/" + spec.name;
  ca_request.is_ca = true;
  agents_request.common_name = spec.name + "." + spec.ns + " agents";
  ca_request.valid_for = agents_request.valid_for = std::chrono::hours(24 * 3653);  // ten years
  HOTSWAP_ASSIGN_OR_RETURN(x509::CertifiedKey ca, x509::make_certificate(ca_request));
  HOTSWAP_ASSIGN_OR_RETURN(x509::CertifiedKey agents, x509::make_certificate(agents_request, &ca));
  json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"type", "kubernetes.io/tls"},
                 {"metadata", object_meta(spec, migration_tls_secret_name(spec))},
                 {"stringData", {{"ca.crt", ca.cert_pem}, {"tls.crt", agents.cert_pem}, {"tls.key", agents.key_pem}}}};
  return secret;
}

StatusOr<std::string> token_from_secret(const json& secret) {
  const json data = secret.value("data", json::object());
  if (data.contains(kControlTokenKey) && data[kControlTokenKey].is_string())
    return kube::base64_decode(data[kControlTokenKey].get<std::string>());
  const json string_data = secret.value("stringData", json::object());
  if (string_data.contains(kControlTokenKey) && string_data[kControlTokenKey].is_string())
    return string_data[kControlTokenKey].get<std::string>();
  return not_found("Secret " + kube::object_name(secret) + " has no key '" + kControlTokenKey + "'");
}

int64_t retry_backoff_seconds(int failed_migrations) {
  if (failed_migrations <= 0) return 0;
  int64_t s = 30;
  for (int i = 1; i < failed_migrations && s < 600; ++i) s *= 2;
  return std::min<int64_t>(s, 600);
}

std::string ascii_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string random_suffix(size_t length) {
  static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";  // as Kubernetes' generateName
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string s;
  for (size_t i = 0; i < length; ++i) s += alphabet[rng() % (sizeof(alphabet) - 1)];
  return s;
}

namespace {

// The member at a/b (and c) of an object, or null; no copies (these run over every cached Pod on
// every reconcile).
const json* member(const json& o, const char* key) {
  if (!o.is_object()) return nullptr;
  auto it = o.find(key);
  return it == o.end() ? nullptr : &*it;
}
const json* member(const json& o, const char* a, const char* b) {
  const json* x = member(o, a);
  return x ? member(*x, b) : nullptr;
}
std::string string_at(const json* v) { return v && v->is_string() ? v->get<std::string>() : std::string(); }

}  // namespace

bool pod_terminating(const json& pod) {
  if (member(pod, "metadata", "deletionTimestamp")) return true;
  const std::string phase = string_at(member(pod, "status", "phase"));
  return phase == "Succeeded" || phase == "Failed";
}

std::string pod_condition(const json& pod, const std::string& type) {
  const json* conditions = member(pod, "status", "conditions");
  if (!conditions || !conditions->is_array()) return "";
  for (const auto& c : *conditions)
    if (string_at(member(c, "type")) == type) return string_at(member(c, "status"));
  return "";
}

std::string pod_ip(const json& pod) { return string_at(member(pod, "status", "podIP")); }
std::string pod_node(const json& pod) { return string_at(member(pod, "spec", "nodeName")); }

int64_t pod_gpus(const json& pod) {
  int64_t total = 0;
  const json* containers = member(pod, "spec", "containers");
  if (!containers || !containers->is_array()) return 0;
  for (const auto& c : *containers) {
    for (const char* kind : {"limits", "requests"}) {
      const json* v = member(c, "resources", kind);
      v = v ? member(*v, kGpuResource) : nullptr;
      if (!v) continue;
      if (v->is_number_integer()) total += v->get<int64_t>();
      else if (v->is_string()) total += std::atoll(v->get<std::string>().c_str());
      break;  // limits win over requests
    }
  }
  return total;
}

std::string label(const json& object, const std::string& key) {
  const json* labels = member(object, "metadata", "labels");
  return labels ? string_at(member(*labels, key.c_str())) : std::string();
}

std::string annotation(const json& object, const std::string& key) {
  const json* a = member(object, "metadata", "annotations");
  return a ? string_at(member(*a, key.c_str())) : std::string();
}

policy::NodeState node_state(const json& node) {
  policy::NodeState n;
  n.name = kube::object_name(node);
  if (const json* labels = member(node, "metadata", "labels"); labels && labels->is_object())
    for (const auto& [k, v] : labels->items())
      if (v.is_string()) n.labels[k] = v.get<std::string>();
  n.gpu_class = label(node, kGpuClassLabel);
  const json* alloc = member(node, "status", "allocatable");
  if (!alloc) alloc = member(node, "status", "capacity");
  if (const json* v = alloc ? member(*alloc, kGpuResource) : nullptr)
    n.gpus = v->is_number_integer() ? v->get<int64_t>() : v->is_string() ? std::atoll(v->get<std::string>().c_str()) : 0;
  n.ready = false;
  if (const json* conditions = member(node, "status", "conditions"); conditions && conditions->is_array())
    for (const auto& c : *conditions)
      if (string_at(member(c, "type")) == "Ready") n.ready = string_at(member(c, "status")) == "True";
  const json* unschedulable = member(node, "spec", "unschedulable");
  n.unschedulable = unschedulable && unschedulable->is_boolean() && unschedulable->get<bool>();
  n.gpu_faulty = !annotation(node, kGpuFaultAnnotation).empty();
  if (const json* taints = member(node, "spec", "taints"); taints && taints->is_array())
    for (const auto& t : *taints)
      if (string_at(member(t, "effect")) == "NoExecute") n.no_execute = true;
  return n;
}

json serving_gate_patch(bool serving, const std::string& reason) {
  return json{{"status",
               {{"conditions", json::array({{{"type", kServingGate},
                                             {"status", serving ? "True" : "False"},
                                             {"reason", reason},
                                             {"lastTransitionTime", format_rfc3339(static_cast<int64_t>(std::time(nullptr)))}}})}}}};
}

json condition(const std::string& type, bool status, const std::string& reason, const std::string& message,
               int64_t observed_generation, const json& previous, int64_t now_unix) {
  const std::string s = status ? "True" : "False";
  std::string since = format_rfc3339(now_unix);
  if (previous.is_array())
    for (const auto& c : previous)
      if (c.value("type", std::string()) == type && c.value("status", std::string()) == s)
        since = c.value("lastTransitionTime", since);
  return json{{"type", type},     {"status", s},   {"reason", reason}, {"message", message},
              {"observedGeneration", observed_generation}, {"lastTransitionTime", since}};
}

}  // namespace hotswap::controllers
