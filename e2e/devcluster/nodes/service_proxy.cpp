#include "e2e/devcluster/nodes/service_proxy.h"

#include <arpa/inet.h>

#include <mutex>
#include <optional>

#include "e2e/devcluster/nodes/endpointslice_controller.h"
#include "operator/kube/informer.h"
#include "operator/kube/object.h"

namespace hotswap::devcluster {

using nlohmann::json;

namespace {

// kube-proxy leaves a Service that names another proxy to that proxy.
constexpr const char* kServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name";

bool is_ipv4(const std::string& text) {
  in_addr addr{};
  return !text.empty() && ::inet_pton(AF_INET, text.c_str(), &addr) == 1;
}

struct ServicePort {
  std::string name;
  int port = 0;
};

struct ServiceSpec {
  std::string cluster_ip;
  std::vector<ServicePort> ports;  // TCP only
};

// What the proxy serves for a Service: nothing for ExternalName, headless or IP-less Services.
std::optional<ServiceSpec> proxied_service(const json& svc) {
  const json spec = svc.value("spec", json::object());
  if (!spec.is_object() || spec.value("type", std::string("ClusterIP")) == "ExternalName") return std::nullopt;
  const json labels = svc.value("/metadata/labels"_json_pointer, json::object());
  if (labels.is_object() && labels.contains(kServiceProxyNameLabel)) return std::nullopt;
  ServiceSpec out;
  out.cluster_ip = spec.value("clusterIP", std::string());
  if (!is_ipv4(out.cluster_ip)) return std::nullopt;
  for (const auto& p : spec.value("ports", json::array())) {
    if (!p.is_object() || p.value("protocol", std::string("TCP")) != "TCP") continue;
    const json port = p.value("port", json());
    if (!port.is_number_integer() || port.get<int64_t>() < 1 || port.get<int64_t>() > 65535) continue;
    out.ports.push_back({p.value("name", std::string()), port.get<int>()});
  }
  return out;
}

std::string slice_service_key(const json& slice) {
  const json labels = slice.value("/metadata/labels"_json_pointer, json::object());
  if (!labels.is_object() || !labels.contains(kServiceNameLabel) || !labels[kServiceNameLabel].is_string()) return "";
  return kube::object_key(kube::object_namespace(slice), labels[kServiceNameLabel].get<std::string>());
}

bool condition(const json& conditions, const char* name, bool unset) {
  if (!conditions.is_object()) return unset;
  auto it = conditions.find(name);
  if (it == conditions.end() || !it->is_boolean()) return unset;
  return it->get<bool>();
}

}  // namespace

std::map<std::string, ProxyPortBackends> proxy_backends(const std::vector<json>& slices) {
  // port name -> address -> backend, so that duplicates collapse and lists come out ordered.
  std::map<std::string, std::map<std::string, ProxyBackend>> ready, serving_terminating;
  for (const auto& slice : slices) {
    if (!slice.is_object() || slice.value("addressType", std::string()) != "IPv4") continue;
    const json ports = slice.value("ports", json::array());
    const json endpoints = slice.value("endpoints", json::array());
    if (!ports.is_array() || !endpoints.is_array()) continue;
    for (const auto& ep : endpoints) {
      if (!ep.is_object()) continue;
      const json addresses = ep.value("addresses", json::array());
      if (!addresses.is_array() || addresses.empty() || !addresses[0].is_string()) continue;
      const std::string ip = addresses[0].get<std::string>();
      if (!is_ipv4(ip)) continue;
      // kube's reading of unset conditions: ready unless said otherwise; serving as ready.
      const json conditions = ep.value("conditions", json::object());
      const bool is_ready = condition(conditions, "ready", true);
      const bool serving = condition(conditions, "serving", is_ready);
      const bool terminating = condition(conditions, "terminating", false);
      const json target = ep.value("targetRef", json::object());
      const std::string pod = target.is_object() ? target.value("name", std::string()) : "";
      for (const auto& p : ports) {
        if (!p.is_object() || p.value("protocol", std::string("TCP")) != "TCP") continue;
        const json port = p.value("port", json());
        if (!port.is_number_integer() || port.get<int64_t>() < 1 || port.get<int64_t>() > 65535) continue;
        const std::string name = p.value("name", json()).is_string() ? p["name"].get<std::string>() : "";
        ProxyBackend b{ip, port.get<int>(), pod};
        if (is_ready)
          ready[name][b.address()] = b;
        else if (serving && terminating)
          serving_terminating[name][b.address()] = b;
      }
    }
  }
  std::map<std::string, ProxyPortBackends> out;
  for (auto& [name, by_address] : ready)
    for (auto& [address, b] : by_address) out[name].ready.push_back(b);
  for (auto& [name, by_address] : serving_terminating)
    for (auto& [address, b] : by_address)
      if (!ready[name].count(address)) out[name].serving_terminating.push_back(b);
  return out;
}

// ---- The proxy ------------------------------------------------------------------------------

namespace {

// A relay route names a Service port: "namespace/name#port-name" ('#' is in neither).
std::string route_of(const std::string& service_key, const std::string& port_name) {
  return service_key + "#" + port_name;
}
std::pair<std::string, std::string> split_route(const std::string& route) {
  const auto hash = route.rfind('#');
  return {route.substr(0, hash), hash == std::string::npos ? "" : route.substr(hash + 1)};
}

}  // namespace

struct ServiceProxy::Impl {
  explicit Impl(const kube::RestClient& c) : client(c) {}

  const kube::RestClient& client;
  std::unique_ptr<kube::Informer> services_informer;
  std::unique_ptr<kube::Informer> slices_informer;
  std::unique_ptr<TcpRelay> relay;
  bool started = false;

  mutable std::mutex mu;                                                   // everything below
  std::map<std::string, ServiceSpec> services;                             // service key -> spec
  std::map<std::string, std::map<std::string, json>> slices;               // service key -> slice key -> slice
  std::map<std::string, std::map<std::string, ProxyPortBackends>> routes;  // service key -> port name -> backends
  std::map<std::string, uint64_t> round_robin;                             // route -> next
  std::map<std::string, ServiceProxyCounters> counters;                    // service key -> counters

  void set_service(const json& svc);
  void remove_service(const json& svc);
  void put_slice(const json& slice);
  void remove_slice(const json& slice);
  void rebuild_routes_locked(const std::string& service_key);
  std::vector<RelayListener> listeners_locked() const;
  std::optional<RelayEndpoint> choose(const std::string& route);
};

std::vector<RelayListener> ServiceProxy::Impl::listeners_locked() const {
  std::vector<RelayListener> out;
  for (const auto& [key, spec] : services)
    for (const auto& p : spec.ports) out.push_back({{spec.cluster_ip, p.port}, route_of(key, p.name)});
  return out;
}

void ServiceProxy::Impl::set_service(const json& svc) {
  std::vector<RelayListener> wanted;
  {
    std::lock_guard<std::mutex> lk(mu);
    auto spec = proxied_service(svc);
    if (spec)
      services[kube::object_key(svc)] = std::move(*spec);
    else
      services.erase(kube::object_key(svc));
    wanted = listeners_locked();
  }
  relay->set_listeners(wanted);
}

void ServiceProxy::Impl::remove_service(const json& svc) {
  std::vector<RelayListener> wanted;
  {
    std::lock_guard<std::mutex> lk(mu);
    services.erase(kube::object_key(svc));
    wanted = listeners_locked();
  }
  relay->set_listeners(wanted);
}

void ServiceProxy::Impl::rebuild_routes_locked(const std::string& service_key) {
  auto it = slices.find(service_key);
  if (it == slices.end() || it->second.empty()) {
    slices.erase(service_key);
    routes.erase(service_key);
    return;
  }
  std::vector<json> list;
  for (const auto& [k, s] : it->second) list.push_back(s);
  routes[service_key] = proxy_backends(list);
}

void ServiceProxy::Impl::put_slice(const json& slice) {
  const std::string service_key = slice_service_key(slice);
  if (service_key.empty()) return;
  std::lock_guard<std::mutex> lk(mu);
  slices[service_key][kube::object_key(slice)] = slice;
  rebuild_routes_locked(service_key);
}

void ServiceProxy::Impl::remove_slice(const json& slice) {
  const std::string service_key = slice_service_key(slice);
  if (service_key.empty()) return;
  std::lock_guard<std::mutex> lk(mu);
  auto it = slices.find(service_key);
  if (it != slices.end()) it->second.erase(kube::object_key(slice));
  rebuild_routes_locked(service_key);
}

std::optional<RelayEndpoint> ServiceProxy::Impl::choose(const std::string& route) {
  const auto [service_key, port_name] = split_route(route);
  std::lock_guard<std::mutex> lk(mu);
  auto r = routes.find(service_key);
  if (r == routes.end()) return std::nullopt;
  auto p = r->second.find(port_name);
  if (p == r->second.end()) return std::nullopt;
  const auto& usable = p->second.usable();
  if (usable.empty()) return std::nullopt;
  const ProxyBackend& b = usable[round_robin[route]++ % usable.size()];
  return RelayEndpoint{b.ip, b.port};
}

ServiceProxy::ServiceProxy(const kube::RestClient& client, ServiceProxyOptions options)
    : impl_(std::make_unique<Impl>(client)) {
  Impl* impl = impl_.get();
  TcpRelayHooks hooks;
  hooks.choose = [impl](const std::string& route) { return impl->choose(route); };
  hooks.on_connected = [impl](const std::string& route, const std::string& backend) {
    std::lock_guard<std::mutex> lk(impl->mu);
    impl->counters[split_route(route).first].forwarded[backend]++;
  };
  hooks.on_connect_failed = [impl](const std::string& route, const std::string&) {
    std::lock_guard<std::mutex> lk(impl->mu);
    impl->counters[split_route(route).first].upstream_failed++;
  };
  hooks.on_refused = [impl](const std::string& route) {
    std::lock_guard<std::mutex> lk(impl->mu);
    impl->counters[split_route(route).first].rejected++;
  };
  impl_->relay = std::make_unique<TcpRelay>(options.relay, std::move(hooks));
}

ServiceProxy::~ServiceProxy() {
  stop();
}

Status ServiceProxy::start() {
  Impl& m = *impl_;
  if (m.started) return failed_precondition("service proxy: already started");
  m.started = true;
  HOTSWAP_RETURN_IF_ERROR(m.relay->start().with_context("service proxy"));
  kube::InformerOptions so;
  so.collection = kube::ResourceRef::core("services");
  m.services_informer = std::make_unique<kube::Informer>(m.client, so);
  HOTSWAP_RETURN_IF_ERROR(m.services_informer->add_handlers({[&m](const json& s) { m.set_service(s); },
                                                             [&m](const json&, const json& s) { m.set_service(s); },
                                                             [&m](const json& s) { m.remove_service(s); }}));
  kube::InformerOptions eo;
  eo.collection = kube::ResourceRef::of("discovery.k8s.io", "v1", "endpointslices");
  eo.label_selector = kServiceNameLabel;  // every slice that belongs to a Service, whoever manages it
  m.slices_informer = std::make_unique<kube::Informer>(m.client, eo);
  HOTSWAP_RETURN_IF_ERROR(m.slices_informer->add_handlers({[&m](const json& s) { m.put_slice(s); },
                                                           [&m](const json& old_slice, const json& s) {
                                                             if (slice_service_key(old_slice) != slice_service_key(s))
                                                               m.remove_slice(old_slice);
                                                             m.put_slice(s);
                                                           },
                                                           [&m](const json& s) { m.remove_slice(s); }}));
  HOTSWAP_RETURN_IF_ERROR(m.services_informer->start().with_context("service proxy"));
  HOTSWAP_RETURN_IF_ERROR(m.slices_informer->start().with_context("service proxy"));
  return Status();
}

void ServiceProxy::stop() {
  // The informers first: their handlers call into the relay.
  if (impl_->services_informer) impl_->services_informer->stop();
  if (impl_->slices_informer) impl_->slices_informer->stop();
  impl_->relay->stop();
}

bool ServiceProxy::wait_for_sync(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const kube::Informer* inf : {impl_->services_informer.get(), impl_->slices_informer.get()}) {
    if (inf == nullptr) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (!inf->wait_for_sync(std::max(left, std::chrono::milliseconds(0)))) return false;
  }
  return true;
}

ServiceProxyCounters ServiceProxy::counters(const std::string& service_key) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  auto it = impl_->counters.find(service_key);
  return it == impl_->counters.end() ? ServiceProxyCounters{} : it->second;
}

ProxyPortBackends ServiceProxy::backends(const std::string& service_key, const std::string& port_name) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  auto r = impl_->routes.find(service_key);
  if (r == impl_->routes.end()) return {};
  auto p = r->second.find(port_name);
  return p == r->second.end() ? ProxyPortBackends{} : p->second;
}

std::map<std::string, std::string> ServiceProxy::listeners() const {
  std::map<std::string, std::string> out;
  for (const auto& [address, route] : impl_->relay->listeners()) out[address] = split_route(route).first;
  return out;
}

std::map<std::string, std::string> ServiceProxy::listener_errors() const {
  return impl_->relay->listener_errors();
}

size_t ServiceProxy::open_connections() const {
  return impl_->relay->open_connections();
}

}  // namespace hotswap::devcluster
