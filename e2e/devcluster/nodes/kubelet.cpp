#include "e2e/devcluster/nodes/kubelet.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/log.h"
#include "e2e/devcluster/nodes/kubelet_pod_status.h"
#include "e2e/devcluster/nodes/scheduling.h"
#include "operator/kube/object.h"

namespace hotswap::devcluster {

using json = nlohmann::json;

namespace {

const kube::ResourceRef kNodes = kube::ResourceRef::core("nodes");
const kube::ResourceRef kLeases = kube::ResourceRef::of("coordination.k8s.io", "v1", "leases").in(kNodeLeaseNamespace);

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string os_image() {
  std::ifstream in("/etc/os-release");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("PRETTY_NAME=", 0) != 0) continue;
    std::string v = line.substr(12);
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return v;
  }
  return "Linux";
}

std::string architecture() {
  utsname u{};
  if (::uname(&u) != 0) return "amd64";
  const std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

std::string kernel_version() {
  utsname u{};
  return ::uname(&u) == 0 ? u.release : "";
}

// A quantity that is a plain integer ("1", "110"); 0 otherwise.
int64_t integer_quantity(const std::map<std::string, std::string>& resources, const std::string& name) {
  auto it = resources.find(name);
  if (it == resources.end() || it->second.empty() || it->second.find_first_not_of("0123456789") != std::string::npos)
    return 0;
  return std::stoll(it->second);
}

json to_json(const std::map<std::string, std::string>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

}  // namespace

Kubelet::Kubelet(const kube::RestClient& client, KubeletOptions options)
    : client_(client), options_(std::move(options)) {
  if (!options_.pod_ips) options_.pod_ips = PodIpAllocator::process_default();
  capacity_ = options_.capacity;
  if (!capacity_.count("cpu")) capacity_["cpu"] = std::to_string(std::max(1u, std::thread::hardware_concurrency()));
  if (!capacity_.count("memory")) {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    capacity_["memory"] = std::to_string(pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page / 1024 : 0) + "Ki";
  }
  if (!capacity_.count("pods")) capacity_["pods"] = "110";
  allocatable_ = capacity_;
  for (const auto& [k, v] : options_.allocatable) allocatable_[k] = v;
}

Kubelet::~Kubelet() {
  stop();
}

json Kubelet::node_status(bool ready, const std::string& now) {
  auto cond = [&](const char* type, bool is_true, const char* reason, const char* message) {
    const std::string status = is_true ? "True" : "False";
    auto& t = transitions_[type];
    if (t.first != status || t.second.empty()) t = {status, now};
    return json{{"type", type},     {"status", status},  {"lastHeartbeatTime", now}, {"lastTransitionTime", t.second},
                {"reason", reason}, {"message", message}};
  };
  json conditions = json::array({
      cond("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
      cond("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
      cond("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
      ready ? cond("Ready", true, "KubeletReady", "kubelet is posting ready status")
            : cond("Ready", false, "KubeletNotReady", "kubelet stopped"),
  });
  const std::string machine_id = first_line("/etc/machine-id");
  return {{"capacity", to_json(capacity_)},
          {"allocatable", to_json(allocatable_)},
          {"conditions", conditions},
          {"addresses", json::array({{{"type", "InternalIP"}, {"address", options_.node_ip}},
                                     {{"type", "Hostname"}, {"address", options_.node_name}}})},
          {"daemonEndpoints", {{"kubeletEndpoint", {{"Port", 0}}}}},
          {"nodeInfo",
           {{"machineID", machine_id},
            {"systemUUID", machine_id},
            {"bootID", first_line("/proc/sys/kernel/random/boot_id")},
            {"kernelVersion", kernel_version()},
            {"osImage", os_image()},
            {"containerRuntimeVersion", "local-process://1.0"},
            {"kubeletVersion", kKubeletVersion},
            {"kubeProxyVersion", ""},
            {"operatingSystem", "linux"},
            {"architecture", architecture()}}}};
}

Status Kubelet::register_node() {
  const std::string now = rfc3339(std::chrono::system_clock::now());
  json labels = {{"kubernetes.io/hostname", options_.node_name},
                 {"kubernetes.io/os", "linux"},
                 {"kubernetes.io/arch", architecture()},
                 {"beta.kubernetes.io/os", "linux"},
                 {"beta.kubernetes.io/arch", architecture()}};
  for (const auto& [k, v] : options_.labels) labels[k] = v;
  const std::string what = "register node " + options_.node_name + " with " + client_.config().server;

  json existing;
  auto created = client_.create(kNodes, {{"apiVersion", "v1"},
                                         {"kind", "Node"},
                                         {"metadata", {{"name", options_.node_name}, {"labels", labels}}},
                                         {"spec", json::object()},
                                         {"status", node_status(true, now)}});
  if (created.ok()) {
    existing = std::move(created).value();
  } else if (created.error().is_already_exists()) {
    // Keep its spec (cordon, taints) and the labels others added; ours win.
    for (int attempt = 0;; ++attempt) {
      auto got = client_.get(kNodes.named(options_.node_name));
      if (!got.ok()) return got.status().with_context(what);
      existing = std::move(got).value();
      json merged = existing.value("/metadata/labels"_json_pointer, json::object());
      merged.update(labels);
      if (merged == existing.value("/metadata/labels"_json_pointer, json::object())) break;
      existing["metadata"]["labels"] = merged;
      auto updated = client_.update(kNodes.named(options_.node_name), existing);
      if (updated.ok()) {
        existing = std::move(updated).value();
        break;
      }
      if (!updated.error().is_conflict() || attempt >= 5) return updated.status().with_context(what);
    }
  } else {
    return created.status().with_context(what);
  }
  node_uid_ = kube::metadata_field(existing, "uid");
  // A condition keeps its lastTransitionTime while its status stays what it was.
  transitions_.clear();
  for (const auto& c : existing.value("/status/conditions"_json_pointer, json::array()))
    transitions_[c.value("type", std::string())] = {c.value("status", std::string()),
                                                    c.value("lastTransitionTime", std::string())};
  json status = node_status(true, now);
  for (const char* field : {"capacity", "allocatable"}) {  // resources we no longer have: removed
    const json had = existing.value("/status"_json_pointer, json::object()).value(field, json::object());
    for (const auto& [k, v] : had.items())
      if (!status[field].contains(k)) status[field][k] = nullptr;
  }
  auto patched = client_.patch(kNodes.named(options_.node_name).sub("status"), kube::PatchType::kStrategicMerge,
                               {{"status", status}});
  if (!patched.ok()) return patched.status().with_context(what + ": node status");
  log_info("kubelet " + options_.node_name + ": node registered (" + options_.node_ip + ")");
  return Status();
}

Status Kubelet::renew_lease() {
  const std::string now = rfc3339_micro(std::chrono::system_clock::now());
  const kube::ResourceRef ref = kLeases.named(options_.node_name);
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (lease_.is_null()) {
      auto got = client_.get(ref);
      if (got.ok()) {
        lease_ = std::move(got).value();
      } else if (got.error().is_not_found()) {
        json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                      {"kind", "Lease"},
                      {"metadata", {{"name", options_.node_name}, {"namespace", kNodeLeaseNamespace}}},
                      {"spec",
                       {{"holderIdentity", options_.node_name},
                        {"leaseDurationSeconds", options_.lease_duration_seconds},
                        {"renewTime", now}}}};
        if (!node_uid_.empty())
          lease["metadata"]["ownerReferences"] =
              json::array({{{"apiVersion", "v1"}, {"kind", "Node"}, {"name", options_.node_name}, {"uid", node_uid_}}});
        auto created = client_.create(kLeases, lease);
        if (created.ok()) {
          lease_ = std::move(created).value();
          return Status();
        }
        if (!created.error().is_already_exists()) return created.status();
        continue;
      } else {
        return got.status();
      }
    }
    lease_["spec"]["holderIdentity"] = options_.node_name;
    lease_["spec"]["leaseDurationSeconds"] = options_.lease_duration_seconds;
    lease_["spec"]["renewTime"] = now;
    auto updated = client_.update(ref, lease_);
    if (updated.ok()) {
      lease_ = std::move(updated).value();
      return Status();
    }
    lease_ = nullptr;  // read it again (409) or create it (404)
    if (!updated.error().is_conflict() && !updated.error().is_not_found()) return updated.status();
  }
  return unavailable("lease " + options_.node_name + ": still conflicting after 3 attempts");
}

void Kubelet::heartbeat() {
  const std::string now = rfc3339(std::chrono::system_clock::now());
  json patch = {{"status", {{"conditions", node_status(true, now)["conditions"]}}}};
  auto r = client_.patch(kNodes.named(options_.node_name).sub("status"), kube::PatchType::kStrategicMerge, patch);
  if (r.ok()) return;
  if (r.error().is_not_found()) {
    // Someone deleted the Node: register again, as a restarted kubelet would.
    lease_ = nullptr;
    Status st = register_node();
    if (!st.ok()) log_warn("kubelet " + options_.node_name + ": " + st.message());
    return;
  }
  log_warn("kubelet " + options_.node_name + ": node status heartbeat failed: " + r.status().message());
}

void Kubelet::mark_not_ready() {
  const std::string now = rfc3339(std::chrono::system_clock::now());
  json patch = {{"status", {{"conditions", node_status(false, now)["conditions"]}}}};
  auto r = client_.patch(kNodes.named(options_.node_name).sub("status"), kube::PatchType::kStrategicMerge, patch);
  if (!r.ok())
    log_warn("kubelet " + options_.node_name + ": could not mark the node NotReady: " + r.status().message());
}

void Kubelet::run_heartbeat() {
  int lease_failures = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(heartbeat_mu_);
      heartbeat_cv_.wait_for(lock, options_.status_interval, [&] { return stopping_; });
      if (stopping_) return;
    }
    Status st = renew_lease();
    if (!st.ok() && lease_failures++ % 10 == 0)
      log_warn("kubelet " + options_.node_name + ": lease renewal failed: " + st.message());
    if (st.ok()) lease_failures = 0;
    heartbeat();
    reap_workers();
  }
}

std::optional<PodRejection> Kubelet::admit(const json& pod) const {
  if (!pod.value("/spec/initContainers"_json_pointer, json::array()).empty())
    return PodRejection{"UnsupportedPodSpec", "Pod was rejected: the dev cluster kubelet does not run init containers"};
  int64_t pods_used = 0, gpus_used = 0;
  for (const auto& [uid, w] : workers_) {
    if (!w->holds_resources()) continue;
    ++pods_used;
    gpus_used += w->gpus();
  }
  auto check = [](const std::string& resource, int64_t requested, int64_t used,
                  int64_t capacity) -> std::optional<PodRejection> {
    if (requested == 0 || used + requested <= capacity) return std::nullopt;
    return PodRejection{"OutOf" + resource, "Pod was rejected: Node didn't have enough resource: " + resource +
                                                ", requested: " + std::to_string(requested) + ", used: " +
                                                std::to_string(used) + ", capacity: " + std::to_string(capacity)};
  };
  if (auto r = check("pods", 1, pods_used, integer_quantity(allocatable_, "pods"))) return r;
  return check(kGpuResource, pod_gpu_request(pod), gpus_used, integer_quantity(allocatable_, kGpuResource));
}

void Kubelet::pod_seen(const json& pod) {
  const std::string uid = kube::metadata_field(pod, "uid");
  if (uid.empty() || pod.value("/spec/nodeName"_json_pointer, std::string()) != options_.node_name) return;
  std::lock_guard<std::mutex> lock(workers_mu_);
  auto it = workers_.find(uid);
  if (it != workers_.end()) {
    it->second->update(pod);
    return;
  }
  // The same name with a new uid: the old Pod is gone even if we missed its delete.
  const std::string key = kube::object_key(pod);
  for (auto& [other_uid, w] : workers_)
    if (w->key() == key) w->kill();
  const std::string phase = pod.value("/status/phase"_json_pointer, std::string());
  const bool active =
      phase != "Succeeded" && phase != "Failed" && !pod.contains("/metadata/deletionTimestamp"_json_pointer);
  std::optional<PodRejection> rejection = active ? admit(pod) : std::nullopt;
  if (rejection) log_info("kubelet " + options_.node_name + ": pod " + key + " rejected: " + rejection->message);
  PodWorkerConfig config;
  config.client = &client_;
  config.node_name = options_.node_name;
  config.node_ip = options_.node_ip;
  config.log_dir = options_.log_dir;
  config.pod_ips = options_.pod_ips;
  config.sync_period = options_.pod_sync_period;
  config.backoff_initial = options_.restart_backoff_initial;
  config.backoff_max = options_.restart_backoff_max;
  config.shutdown_grace_max = options_.stop_grace_max;
  config.node_env = options_.container_env;
  workers_[uid] = std::make_unique<PodWorker>(std::move(config), pod, std::move(rejection), pod_gpu_request(pod));
}

void Kubelet::pod_gone(const json& pod) {
  std::lock_guard<std::mutex> lock(workers_mu_);
  auto it = workers_.find(kube::metadata_field(pod, "uid"));
  if (it != workers_.end()) it->second->kill();
}

void Kubelet::reap_workers() {
  std::lock_guard<std::mutex> lock(workers_mu_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    PodWorker& w = *it->second;
    if (!w.done()) {
      ++it;
      continue;
    }
    w.join();
    // Keep it while the cache still shows its Pod, so a late event does not run it again.
    kube::ObjectPtr cached = pods_ ? pods_->get(w.key()) : nullptr;
    if (cached && kube::metadata_field(*cached, "uid") == w.uid()) {
      ++it;
      continue;
    }
    it = workers_.erase(it);
  }
}

size_t Kubelet::pod_count() const {
  std::lock_guard<std::mutex> lock(workers_mu_);
  return workers_.size();
}

Status Kubelet::start() {
  if (started_) return failed_precondition("kubelet " + options_.node_name + " is already started");
  if (options_.node_name.empty()) return invalid_argument("kubelet: node_name is required");
  if (options_.log_dir.empty()) return invalid_argument("kubelet " + options_.node_name + ": log_dir is required");
  std::error_code ec;
  std::filesystem::create_directories(options_.log_dir, ec);
  if (ec)
    return unavailable("kubelet " + options_.node_name + ": cannot create log_dir " + options_.log_dir + ": " +
                       ec.message());

  HOTSWAP_RETURN_IF_ERROR(register_node());
  Status lease = renew_lease();
  if (!lease.ok()) return lease.with_context("kubelet " + options_.node_name + ": node lease");

  kube::InformerOptions informer;
  informer.collection = kube::ResourceRef::core("pods");
  informer.field_selector = "spec.nodeName=" + options_.node_name;
  pods_ = std::make_unique<kube::Informer>(client_, informer);
  kube::InformerHandlers handlers;
  handlers.on_add = [this](const json& pod) { pod_seen(pod); };
  handlers.on_update = [this](const json&, const json& pod) { pod_seen(pod); };
  handlers.on_delete = [this](const json& pod) { pod_gone(pod); };
  HOTSWAP_RETURN_IF_ERROR(pods_->add_handlers(std::move(handlers)));
  HOTSWAP_RETURN_IF_ERROR(pods_->start());
  if (!pods_->wait_for_sync(options_.start_timeout)) {
    const Status why = pods_->last_error();
    pods_->stop();
    pods_.reset();
    return unavailable("kubelet " + options_.node_name + ": the pod informer did not sync within " +
                       std::to_string(options_.start_timeout.count()) + "ms" + (why.ok() ? "" : ": " + why.message()));
  }
  {
    std::lock_guard<std::mutex> lock(heartbeat_mu_);
    stopping_ = false;
  }
  heartbeat_ = std::thread([this] { run_heartbeat(); });
  started_ = true;
  return Status();
}

void Kubelet::stop() {
  if (!started_) return;
  started_ = false;
  {
    std::lock_guard<std::mutex> lock(heartbeat_mu_);
    stopping_ = true;
  }
  heartbeat_cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  pods_->stop();  // no more handler calls
  std::map<std::string, std::unique_ptr<PodWorker>> workers;
  {
    std::lock_guard<std::mutex> lock(workers_mu_);
    workers.swap(workers_);
  }
  for (auto& [uid, w] : workers) w->shutdown();
  for (auto& [uid, w] : workers) w->join();
  workers.clear();
  mark_not_ready();
  log_info("kubelet " + options_.node_name + ": stopped");
}

}  // namespace hotswap::devcluster
