#include "e2e/devcluster/nodes/scheduler.h"

#include "common/log.h"
#include "e2e/devcluster/nodes/scheduling.h"

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

kube::InformerOptions collection(const char* resource) {
  kube::InformerOptions o;
  o.collection = kube::ResourceRef::core(resource);
  o.watch_timeout_seconds = 60;
  return o;
}

std::string key_of(const json& pod) {
  return pod.value("/metadata/namespace"_json_pointer, std::string()) + "/" +
         pod.value("/metadata/name"_json_pointer, std::string());
}

bool finished(const json& pod) {
  const std::string phase = pod.value("/status/phase"_json_pointer, std::string());
  return phase == "Succeeded" || phase == "Failed";
}

}  // namespace

Scheduler::Scheduler(const kube::RestClient& client, SchedulerOptions options)
    : client_(client), options_(std::move(options)), pods_(client, collection("pods")), nodes_(client, collection("nodes")) {}

Scheduler::~Scheduler() { stop(); }

bool wants_scheduling(const json& pod, const std::string& scheduler) {
  return pod.value("/spec/nodeName"_json_pointer, std::string()).empty() &&
         pod.value("/spec/schedulerName"_json_pointer, std::string("default-scheduler")) == scheduler &&
         !pod["metadata"].contains("deletionTimestamp") && !finished(pod);
}

Status Scheduler::start() {
  const std::string name = options_.scheduler_name;
  HOTSWAP_RETURN_IF_ERROR(pods_.add_handlers(
      {[this, name](const json& p) {
         if (wants_scheduling(p, name)) queue_.add(key_of(p));
       },
       [this, name](const json&, const json& p) {
         if (wants_scheduling(p, name)) queue_.add(key_of(p));
       },
       // A Pod going away frees room: the pending ones may fit now.
       [this](const json&) { queue_pending(); }}));
  HOTSWAP_RETURN_IF_ERROR(nodes_.add_handlers({[this](const json&) { queue_pending(); },
                                              [this](const json&, const json&) { queue_pending(); },
                                              [this](const json&) { queue_pending(); }}));
  HOTSWAP_RETURN_IF_ERROR(nodes_.start());
  HOTSWAP_RETURN_IF_ERROR(pods_.start());
  if (!nodes_.wait_for_sync(std::chrono::seconds(10)) || !pods_.wait_for_sync(std::chrono::seconds(10))) {
    return unavailable("scheduler: the pod and node caches did not fill within 10 s: " +
                       pods_.last_error().to_string() + " / " + nodes_.last_error().to_string());
  }
  worker_ = std::thread([this] { run(); });
  return Status::ok_status();
}

void Scheduler::stop() {
  queue_.shutdown();
  if (worker_.joinable()) worker_.join();
  pods_.stop();
  nodes_.stop();
}

void Scheduler::queue_pending() {
  for (const auto& p : pods_.list())
    if (wants_scheduling(*p, options_.scheduler_name)) queue_.add(key_of(*p));
}

void Scheduler::run() {
  auto last_sweep = std::chrono::steady_clock::now();
  while (!queue_.shutting_down()) {
    auto key = queue_.get(std::chrono::milliseconds(200));
    if (std::chrono::steady_clock::now() - last_sweep >= options_.retry_interval) {
      last_sweep = std::chrono::steady_clock::now();
      queue_pending();
    }
    if (!key) continue;
    schedule(*key);
    queue_.done(*key);
  }
}

void Scheduler::schedule(const std::string& key) {
  auto pod = pods_.get(key);
  if (!pod || !wants_scheduling(*pod, options_.scheduler_name)) return;
  // The caches' objects are shared and immutable: hold them, do not copy them (a cluster of a
  // thousand Pods would copy them all for every binding).
  const auto node_objects = nodes_.list();
  const auto pod_objects = pods_.list();
  std::vector<const json*> nodes, bound;
  for (const auto& n : node_objects) nodes.push_back(n.get());
  for (const auto& p : pod_objects)
    if (!p->value("/spec/nodeName"_json_pointer, std::string()).empty() && !finished(*p)) bound.push_back(p.get());
  const std::string ns = (*pod)["metadata"].value("namespace", std::string());
  const std::string name = (*pod)["metadata"].value("name", std::string());
  const auto pod_ref = kube::ResourceRef::core("pods").in(ns).named(name);
  auto chosen = choose_node_among(*pod, nodes, bound);
  if (!chosen.ok()) {
    // Say why in the Pod's status, once per distinct reason; retried by the sweep.
    json cond = {{"type", "PodScheduled"}, {"status", "False"}, {"reason", "Unschedulable"},
                 {"message", chosen.status().message()}, {"lastTransitionTime", nullptr}};
    for (const auto& c : pod->value("/status/conditions"_json_pointer, json::array()))
      if (c.value("type", std::string()) == "PodScheduled" && c.value("message", std::string()) == chosen.status().message())
        return;
    json conditions = json::array({cond});
    for (const auto& c : pod->value("/status/conditions"_json_pointer, json::array()))
      if (c.value("type", std::string()) != "PodScheduled") conditions.push_back(c);
    (void)client_.patch(pod_ref.sub("status"), kube::PatchType::kMerge, {{"status", {{"conditions", conditions}}}});
    return;
  }
  json binding = {{"apiVersion", "v1"},
                  {"kind", "Binding"},
                  {"metadata", {{"name", name}, {"namespace", ns}, {"uid", (*pod)["metadata"].value("uid", "")}}},
                  {"target", {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", *chosen}}}};
  auto r = client_.create(pod_ref.sub("binding"), binding);
  if (r.ok()) {
    ++bindings_;
    log_info("scheduler: bound " + key + " to " + *chosen);
  } else if (!r.error().is_conflict() && !r.error().is_not_found()) {
    log_warn("scheduler: binding " + key + " to " + *chosen + ": " + r.status().message());
    queue_.add_rate_limited(key);
  }
}

}  // namespace hotswap::devcluster
