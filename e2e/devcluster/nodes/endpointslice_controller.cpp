#include "e2e/devcluster/nodes/endpointslice_controller.h"

#include <arpa/inet.h>

#include <algorithm>

#include "common/log.h"
#include "operator/kube/object.h"

namespace hotswap::devcluster {

using nlohmann::json;

namespace {

const json& at_or_null(const json& object, const char* pointer) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  const json::json_pointer p(pointer);
  if (!object.contains(p)) return kNull;
  return object.at(p);
}

std::string string_at(const json& object, const char* pointer) {
  const json& v = at_or_null(object, pointer);
  return v.is_string() ? v.get<std::string>() : "";
}

bool bool_at(const json& object, const char* pointer) {
  const json& v = at_or_null(object, pointer);
  return v.is_boolean() && v.get<bool>();
}

// A list field as stored: missing or null reads as empty.
json list_at(const json& object, const char* pointer) {
  const json& v = at_or_null(object, pointer);
  return v.is_array() ? v : json::array();
}

bool is_ipv4(const std::string& text) {
  in_addr addr{};
  return !text.empty() && ::inet_pton(AF_INET, text.c_str(), &addr) == 1;
}

bool terminating(const json& pod) {
  const json& ts = at_or_null(pod, "/metadata/deletionTimestamp");
  return !ts.is_null();
}

json owner_references(const json& service) {
  return json::array({{{"apiVersion", "v1"},
                       {"kind", "Service"},
                       {"name", kube::object_name(service)},
                       {"uid", kube::metadata_field(service, "uid")},
                       {"controller", true},
                       {"blockOwnerDeletion", true}}});
}

// The Service's labels plus ours; the headless label only on headless Services.
json labels_for(const json& service, std::initializer_list<std::pair<const char*, const char*>> ours) {
  json labels = json::object();
  const json& from = at_or_null(service, "/metadata/labels");
  if (from.is_object())
    for (auto it = from.begin(); it != from.end(); ++it)
      if (it.value().is_string()) labels[it.key()] = it.value();
  labels.erase(kHeadlessLabel);
  for (const auto& [k, v] : ours) labels[k] = v;
  if (string_at(service, "/spec/clusterIP") == "None") labels[kHeadlessLabel] = "";
  return labels;
}

json target_ref(const json& pod) {
  return {{"kind", "Pod"},
          {"namespace", kube::object_namespace(pod)},
          {"name", kube::object_name(pod)},
          {"uid", kube::metadata_field(pod, "uid")}};
}

// Pods of the Service's namespace that it selects and that can be endpoints, by name.
std::vector<const json*> selected_pods(const json& service, const std::vector<json>& pods) {
  std::vector<const json*> out;
  if (!service_has_managed_endpoints(service)) return out;
  const std::string ns = kube::object_namespace(service);
  const json& selector = at_or_null(service, "/spec/selector");
  for (const auto& pod : pods) {
    if (kube::object_namespace(pod) != ns) continue;
    if (!selector_matches(selector, at_or_null(pod, "/metadata/labels"))) continue;
    if (!pod_can_be_endpoint(pod)) continue;
    out.push_back(&pod);
  }
  std::sort(out.begin(), out.end(),
            [](const json* a, const json* b) { return kube::object_name(*a) < kube::object_name(*b); });
  return out;
}

// The Pod's hostname in the Service's DNS, when it set one under this Service as subdomain.
std::string endpoint_hostname(const json& service, const json& pod) {
  const std::string hostname = string_at(pod, "/spec/hostname");
  if (hostname.empty() || string_at(pod, "/spec/subdomain") != kube::object_name(service)) return "";
  return hostname;
}

// The Service's ports resolved for one Pod, in the Service's order. slice_style: EndpointSlice
// ports always carry a name (possibly ""); Endpoints ports omit an empty one.
json resolved_ports(const json& service, const json& pod, bool slice_style) {
  json out = json::array();
  for (const auto& sp : list_at(service, "/spec/ports")) {
    const auto port = resolve_target_port(sp, pod);
    if (!port) continue;
    json p = json::object();
    const std::string name = sp.value("name", std::string());
    if (slice_style || !name.empty()) p["name"] = name;
    p["port"] = *port;
    p["protocol"] = sp.value("protocol", std::string("TCP"));
    if (sp.contains("appProtocol") && sp["appProtocol"].is_string()) p["appProtocol"] = sp["appProtocol"];
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

bool selector_matches(const json& selector, const json& labels) {
  if (!selector.is_object() || selector.empty()) return false;
  for (auto it = selector.begin(); it != selector.end(); ++it) {
    if (!labels.is_object()) return false;
    auto l = labels.find(it.key());
    if (l == labels.end() || *l != it.value()) return false;
  }
  return true;
}

bool service_has_managed_endpoints(const json& service) {
  const json& selector = at_or_null(service, "/spec/selector");
  if (!selector.is_object() || selector.empty()) return false;
  return string_at(service, "/spec/type") != "ExternalName";
}

bool pod_condition_ready(const json& pod) {
  for (const auto& c : list_at(pod, "/status/conditions"))
    if (c.is_object() && c.value("type", std::string()) == "Ready") return c.value("status", std::string()) == "True";
  return false;
}

std::string pod_ipv4(const json& pod) {
  for (const auto& entry : list_at(pod, "/status/podIPs")) {
    const std::string ip = entry.is_object() ? entry.value("ip", std::string()) : "";
    if (is_ipv4(ip)) return ip;
  }
  const std::string ip = string_at(pod, "/status/podIP");
  return is_ipv4(ip) ? ip : "";
}

bool pod_can_be_endpoint(const json& pod) {
  const std::string phase = string_at(pod, "/status/phase");
  if (phase == "Succeeded" || phase == "Failed") return false;
  return !pod_ipv4(pod).empty();
}

std::optional<int> resolve_target_port(const json& service_port, const json& pod) {
  if (!service_port.is_object()) return std::nullopt;
  const json port = service_port.value("port", json());
  const json target = service_port.value("targetPort", json());
  auto valid = [](int64_t p) -> std::optional<int> {
    if (p < 1 || p > 65535) return std::nullopt;
    return static_cast<int>(p);
  };
  if (target.is_null() || (target.is_number_integer() && target.get<int64_t>() == 0))
    return port.is_number_integer() ? valid(port.get<int64_t>()) : std::nullopt;
  if (target.is_number_integer()) return valid(target.get<int64_t>());
  if (!target.is_string()) return std::nullopt;
  const std::string name = target.get<std::string>();
  const std::string protocol = service_port.value("protocol", std::string("TCP"));
  for (const auto& c : list_at(pod, "/spec/containers")) {
    if (!c.is_object()) continue;
    for (const auto& cp : list_at(c, "/ports")) {
      if (!cp.is_object() || cp.value("name", std::string()) != name) continue;
      if (cp.value("protocol", std::string("TCP")) != protocol) continue;
      const json n = cp.value("containerPort", json());
      if (n.is_number_integer()) return valid(n.get<int64_t>());
    }
  }
  return std::nullopt;
}

std::vector<json> desired_endpoint_slices(const json& service, const std::vector<json>& pods) {
  const std::string name = kube::object_name(service);
  const bool publish_not_ready = bool_at(service, "/spec/publishNotReadyAddresses");
  json base = {{"apiVersion", "discovery.k8s.io/v1"},
               {"kind", "EndpointSlice"},
               {"metadata",
                {{"namespace", kube::object_namespace(service)},
                 {"generateName", name + "-"},
                 {"labels", labels_for(service, {{kServiceNameLabel, name.c_str()},
                                                 {kManagedByLabel, kEndpointSliceControllerName}})},
                 {"ownerReferences", owner_references(service)}}},
               {"addressType", "IPv4"}};

  // Resolved port set (as text, so that groups are ordered) -> its ports and endpoints.
  std::map<std::string, std::pair<json, json>> groups;
  for (const json* pod : selected_pods(service, pods)) {
    const bool is_terminating = terminating(*pod);
    const bool serving = publish_not_ready || pod_condition_ready(*pod);
    json endpoint = {{"addresses", json::array({pod_ipv4(*pod)})},
                     {"conditions",
                      {{"ready", publish_not_ready || (serving && !is_terminating)},
                       {"serving", serving},
                       {"terminating", is_terminating}}}};
    const std::string hostname = endpoint_hostname(service, *pod);
    if (!hostname.empty()) endpoint["hostname"] = hostname;
    const std::string node = string_at(*pod, "/spec/nodeName");
    if (!node.empty()) endpoint["nodeName"] = node;
    endpoint["targetRef"] = target_ref(*pod);

    json ports = resolved_ports(service, *pod, /*slice_style=*/true);
    auto& group = groups[ports.dump()];
    if (group.second.is_null()) group = {ports, json::array()};
    group.second.push_back(std::move(endpoint));
  }

  std::vector<json> slices;
  if (groups.empty()) {
    // As kube's controller: a placeholder slice says "no endpoints" rather than "not yet processed".
    json slice = base;
    slice["ports"] = json::array();
    slice["endpoints"] = json::array();
    slices.push_back(std::move(slice));
    return slices;
  }
  for (auto& [key, group] : groups) {
    json slice = base;
    slice["ports"] = std::move(group.first);
    slice["endpoints"] = std::move(group.second);
    slices.push_back(std::move(slice));
  }
  return slices;
}

json desired_endpoints(const json& service, const std::vector<json>& pods) {
  const std::string name = kube::object_name(service);
  const bool publish_not_ready = bool_at(service, "/spec/publishNotReadyAddresses");
  const bool headless = string_at(service, "/spec/clusterIP") == "None";
  const bool no_ports = list_at(service, "/spec/ports").empty();

  struct Subset {
    json ports;
    std::vector<json> ready, not_ready;
  };
  std::map<std::string, Subset> subsets;
  for (const json* pod : selected_pods(service, pods)) {
    if (terminating(*pod) && !publish_not_ready) continue;
    json ports = resolved_ports(service, *pod, /*slice_style=*/false);
    // A Pod that resolves none of the Service's ports serves none of it; a portless Service
    // lists its Pods only when headless (for DNS), as kube's endpoints controller does.
    if (ports.empty() && !(no_ports && headless)) continue;
    json address = {{"ip", pod_ipv4(*pod)}};
    const std::string hostname = endpoint_hostname(service, *pod);
    if (!hostname.empty()) address["hostname"] = hostname;
    const std::string node = string_at(*pod, "/spec/nodeName");
    if (!node.empty()) address["nodeName"] = node;
    address["targetRef"] = target_ref(*pod);
    auto& subset = subsets[ports.dump()];
    subset.ports = std::move(ports);
    (publish_not_ready || pod_condition_ready(*pod) ? subset.ready : subset.not_ready).push_back(std::move(address));
  }

  auto by_ip = [](const json& a, const json& b) {
    const auto ka = std::make_pair(a["ip"].get<std::string>(), a["targetRef"]["name"].get<std::string>());
    const auto kb = std::make_pair(b["ip"].get<std::string>(), b["targetRef"]["name"].get<std::string>());
    return ka < kb;
  };
  json out_subsets = json::array();
  for (auto& [key, s] : subsets) {
    json subset = json::object();
    std::sort(s.ready.begin(), s.ready.end(), by_ip);
    std::sort(s.not_ready.begin(), s.not_ready.end(), by_ip);
    if (!s.ready.empty()) subset["addresses"] = s.ready;
    if (!s.not_ready.empty()) subset["notReadyAddresses"] = s.not_ready;
    if (!s.ports.empty()) subset["ports"] = s.ports;
    out_subsets.push_back(std::move(subset));
  }
  return {{"apiVersion", "v1"},
          {"kind", "Endpoints"},
          {"metadata",
           {{"name", name},
            {"namespace", kube::object_namespace(service)},
            {"labels", labels_for(service, {{kSkipMirrorLabel, "true"}})},
            {"ownerReferences", owner_references(service)}}},
          {"subsets", std::move(out_subsets)}};
}

bool endpoint_slice_up_to_date(const json& current, const json& desired) {
  return string_at(current, "/addressType") == string_at(desired, "/addressType") &&
         list_at(current, "/ports") == list_at(desired, "/ports") &&
         list_at(current, "/endpoints") == list_at(desired, "/endpoints") &&
         at_or_null(current, "/metadata/labels") == at_or_null(desired, "/metadata/labels") &&
         list_at(current, "/metadata/ownerReferences") == list_at(desired, "/metadata/ownerReferences");
}

bool endpoints_up_to_date(const json& current, const json& desired) {
  return list_at(current, "/subsets") == list_at(desired, "/subsets") &&
         at_or_null(current, "/metadata/labels") == at_or_null(desired, "/metadata/labels") &&
         list_at(current, "/metadata/ownerReferences") == list_at(desired, "/metadata/ownerReferences");
}

// ---- EndpointSliceController ----------------------------------------------------------------

namespace {

const kube::ResourceRef kServices = kube::ResourceRef::core("services");
const kube::ResourceRef kPods = kube::ResourceRef::core("pods");
const kube::ResourceRef kEndpoints = kube::ResourceRef::core("endpoints");
const kube::ResourceRef kSlices = kube::ResourceRef::of("discovery.k8s.io", "v1", "endpointslices");

constexpr std::chrono::milliseconds kCacheBehindRetry{20};

// The API server says our cache is behind (a write raced one we have not seen yet): retry soon,
// quietly. Anything else is a failure worth a message.
bool cache_behind(const kube::ApiResult& r) {
  return r.error().is_conflict() || r.error().is_already_exists() || r.error().is_not_found();
}

Status cache_behind_status(const kube::ApiResult& r) {
  return failed_precondition("cache behind the API server: " + r.status().message());
}

std::vector<json> copies(const std::vector<kube::ObjectPtr>& objects) {
  std::vector<json> out;
  out.reserve(objects.size());
  for (const auto& o : objects) out.push_back(*o);
  return out;
}

bool controlled_by_service(const json& object, const std::string& service_name) {
  for (const auto& ref : list_at(object, "/metadata/ownerReferences"))
    if (ref.is_object() && ref.value("kind", std::string()) == "Service" &&
        ref.value("name", std::string()) == service_name && ref.value("controller", false))
      return true;
  return false;
}

std::pair<std::string, std::string> split_key(const std::string& key) {
  const auto slash = key.find('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

}  // namespace

EndpointSliceController::EndpointSliceController(const kube::RestClient& client, EndpointSliceControllerOptions options)
    : client_(client), options_(std::move(options)), queue_(options_.queue) {}

EndpointSliceController::~EndpointSliceController() {
  stop();
}

Status EndpointSliceController::start() {
  if (started_) return failed_precondition("endpointslice controller: already started");
  started_ = true;
  auto make = [&](const kube::ResourceRef& ref, std::string label_selector = "") {
    kube::InformerOptions o;
    o.collection = ref;
    o.label_selector = std::move(label_selector);
    return std::make_unique<kube::Informer>(client_, std::move(o));
  };
  services_ = make(kServices);
  pods_ = make(kPods);
  slices_ = make(kSlices, std::string(kManagedByLabel) + "=" + kEndpointSliceControllerName);
  if (options_.manage_endpoints) endpoints_ = make(kEndpoints);
  add_handlers();
  for (kube::Informer* inf : {services_.get(), pods_.get(), slices_.get(), endpoints_.get()}) {
    if (inf == nullptr) continue;
    HOTSWAP_RETURN_IF_ERROR(inf->start().with_context("endpointslice controller"));
  }
  for (int i = 0; i < std::max(1, options_.workers); ++i) workers_.emplace_back([this] { run_worker(); });
  return Status();
}

void EndpointSliceController::stop() {
  stopping_ = true;
  queue_.shutdown();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  for (kube::Informer* inf : {services_.get(), pods_.get(), slices_.get(), endpoints_.get()})
    if (inf != nullptr) inf->stop();
}

bool EndpointSliceController::synced() const {
  for (const kube::Informer* inf : {services_.get(), pods_.get(), slices_.get(), endpoints_.get()})
    if (inf != nullptr && !inf->has_synced()) return false;
  return services_ != nullptr;
}

bool EndpointSliceController::wait_for_sync(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const kube::Informer* inf : {services_.get(), pods_.get(), slices_.get(), endpoints_.get()}) {
    if (inf == nullptr) continue;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (!inf->wait_for_sync(std::max(left, std::chrono::milliseconds(0)))) return false;
  }
  return services_ != nullptr;
}

EndpointSliceControllerStats EndpointSliceController::stats() const {
  EndpointSliceControllerStats s;
  s.reconciles = reconciles_.load();
  s.writes = writes_.load();
  s.failures = failures_.load();
  std::lock_guard<std::mutex> lk(mu_);
  s.last_error = last_error_;
  return s;
}

void EndpointSliceController::add_handlers() {
  auto service_key = [this](const json& o) { queue_.add(kube::object_key(o)); };
  (void)services_->add_handlers(
      {service_key, [service_key](const json&, const json& o) { service_key(o); }, service_key});

  (void)pods_->add_handlers({[this](const json& p) { enqueue_services_selecting(p); },
                             [this](const json& old_pod, const json& pod) {
                               enqueue_services_selecting(pod);
                               if (at_or_null(old_pod, "/metadata/labels") != at_or_null(pod, "/metadata/labels"))
                                 enqueue_services_selecting(old_pod);
                             },
                             [this](const json& p) { enqueue_services_selecting(p); }});

  auto slice_owner = [this](const json& slice) {
    const json& labels = at_or_null(slice, "/metadata/labels");
    if (!labels.is_object() || !labels.contains(kServiceNameLabel) || !labels[kServiceNameLabel].is_string()) return;
    queue_.add(kube::object_key(kube::object_namespace(slice), labels[kServiceNameLabel].get<std::string>()));
  };
  (void)slices_->add_handlers({slice_owner,
                               [slice_owner](const json& old_slice, const json& slice) {
                                 slice_owner(slice);
                                 slice_owner(old_slice);
                               },
                               slice_owner});

  // Endpoints share their Service's key.
  if (endpoints_)
    (void)endpoints_->add_handlers(
        {service_key, [service_key](const json&, const json& o) { service_key(o); }, service_key});
}

void EndpointSliceController::enqueue_services_selecting(const json& pod) {
  const json& labels = at_or_null(pod, "/metadata/labels");
  for (const auto& svc : services_->list(kube::object_namespace(pod)))
    if (selector_matches(at_or_null(*svc, "/spec/selector"), labels)) queue_.add(kube::object_key(*svc));
}

void EndpointSliceController::run_worker() {
  using namespace std::chrono_literals;
  while (!stopping_) {
    // Before every cache has its first list, a reconcile would see Pods or slices missing.
    if (!synced()) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    auto key = queue_.get(200ms);
    if (!key) continue;
    Status st = reconcile(*key);
    reconciles_.fetch_add(1);
    if (st.ok()) {
      queue_.forget(*key);
    } else {
      failures_.fetch_add(1);
      {
        std::lock_guard<std::mutex> lk(mu_);
        last_error_ = st;
      }
      // Conflicts with a cache a moment behind are routine; say so only when they persist.
      if (st.code() != StatusCode::kFailedPrecondition || queue_.num_requeues(*key) >= 3)
        log_warn("endpointslice controller: service " + *key + ": " + st.to_string());
      queue_.add_rate_limited(*key);
    }
    queue_.done(*key);
  }
}

Status EndpointSliceController::reconcile(const std::string& service_key) {
  const auto [ns, name] = split_key(service_key);
  kube::ObjectPtr service = services_->get(ns, name);
  const json* managed = service && service_has_managed_endpoints(*service) ? service.get() : nullptr;
  HOTSWAP_RETURN_IF_ERROR(reconcile_slices(ns, name, managed));
  if (options_.manage_endpoints) HOTSWAP_RETURN_IF_ERROR(reconcile_endpoints(ns, name, service.get()));
  return Status();
}

Status EndpointSliceController::reconcile_slices(const std::string& ns, const std::string& name, const json* service) {
  const std::string service_key = kube::object_key(ns, name);
  // A slice we created that the cache does not show yet would be created again.
  {
    std::lock_guard<std::mutex> lk(mu_);
    const auto now = std::chrono::steady_clock::now();
    bool wait = false;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.service_key == service_key && (slices_->get(it->first) || now >= it->second.give_up_at)) {
        it = pending_.erase(it);
        continue;
      }
      wait = wait || it->second.service_key == service_key;
      ++it;
    }
    if (wait) {
      queue_.add_after(service_key, kCacheBehindRetry);
      return Status();
    }
  }

  std::vector<kube::ObjectPtr> existing;
  for (const auto& s : slices_->list(ns)) {
    const json& labels = at_or_null(*s, "/metadata/labels");
    if (labels.is_object() && labels.value(kServiceNameLabel, std::string()) == name &&
        labels.value(kManagedByLabel, std::string()) == kEndpointSliceControllerName)
      existing.push_back(s);
  }
  std::vector<json> desired;
  if (service != nullptr) desired = desired_endpoint_slices(*service, copies(pods_->list(ns)));

  // Pair desired slices with existing ones: same ports first, then any, so that slices are
  // updated in place rather than replaced.
  std::vector<int> match(desired.size(), -1);
  std::vector<bool> used(existing.size(), false);
  for (size_t i = 0; i < desired.size(); ++i)
    for (size_t j = 0; j < existing.size(); ++j)
      if (!used[j] && list_at(*existing[j], "/ports") == desired[i]["ports"]) {
        match[i] = static_cast<int>(j);
        used[j] = true;
        break;
      }
  for (size_t i = 0; i < desired.size(); ++i)
    for (size_t j = 0; j < existing.size() && match[i] < 0; ++j)
      if (!used[j]) {
        match[i] = static_cast<int>(j);
        used[j] = true;
      }

  // Creates and updates before deletes: readers never see a moment with fewer endpoints.
  const kube::ResourceRef slices = kSlices.in(ns);
  for (size_t i = 0; i < desired.size(); ++i) {
    if (match[i] < 0) {
      auto r = client_.create(slices, desired[i]);
      if (!r.ok()) return cache_behind(r) ? cache_behind_status(r) : r.status();
      count_write();
      std::lock_guard<std::mutex> lk(mu_);
      pending_[kube::object_key(ns, kube::object_name(*r))] = {
          service_key, std::chrono::steady_clock::now() + options_.create_settle_timeout};
      continue;
    }
    const json& current = *existing[static_cast<size_t>(match[i])];
    if (endpoint_slice_up_to_date(current, desired[i])) continue;
    json next = current;
    next["metadata"]["labels"] = desired[i]["metadata"]["labels"];
    next["metadata"]["ownerReferences"] = desired[i]["metadata"]["ownerReferences"];
    for (const char* field : {"addressType", "ports", "endpoints"}) next[field] = desired[i][field];
    auto r = client_.update(slices.named(kube::object_name(current)), next);
    if (!r.ok()) return cache_behind(r) ? cache_behind_status(r) : r.status();
    count_write();
  }
  for (size_t j = 0; j < existing.size(); ++j) {
    if (used[j]) continue;
    kube::DeleteOptions d;
    d.precondition_uid = kube::metadata_field(*existing[j], "uid");
    auto r = client_.remove(slices.named(kube::object_name(*existing[j])), d);
    if (!r.ok() && !r.error().is_not_found()) return cache_behind(r) ? cache_behind_status(r) : r.status();
    count_write();
  }
  return Status();
}

Status EndpointSliceController::reconcile_endpoints(const std::string& ns, const std::string& name,
                                                    const json* service) {
  const kube::ObjectPtr current = endpoints_->get(ns, name);
  const kube::ResourceRef ref = kEndpoints.in(ns);
  if (service == nullptr) {
    // The Service is gone: its Endpoints go too, if we made them.
    if (!current || !controlled_by_service(*current, name)) return Status();
    kube::DeleteOptions d;
    d.precondition_uid = kube::metadata_field(*current, "uid");
    auto r = client_.remove(ref.named(name), d);
    if (!r.ok() && !r.error().is_not_found()) return cache_behind(r) ? cache_behind_status(r) : r.status();
    count_write();
    return Status();
  }
  // Without a selector the Endpoints are the user's to write (kube's rule).
  if (!service_has_managed_endpoints(*service)) return Status();
  const json desired = desired_endpoints(*service, copies(pods_->list(ns)));
  if (!current) {
    auto r = client_.create(ref, desired);
    if (!r.ok()) return cache_behind(r) ? cache_behind_status(r) : r.status();
    count_write();
    return Status();
  }
  if (endpoints_up_to_date(*current, desired)) return Status();
  json next = *current;
  next["metadata"]["labels"] = desired["metadata"]["labels"];
  next["metadata"]["ownerReferences"] = desired["metadata"]["ownerReferences"];
  next["subsets"] = desired["subsets"];
  auto r = client_.update(ref.named(name), next);
  if (!r.ok()) return cache_behind(r) ? cache_behind_status(r) : r.status();
  count_write();
  return Status();
}

}  // namespace hotswap::devcluster
