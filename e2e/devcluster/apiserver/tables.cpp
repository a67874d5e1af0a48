#include "e2e/devcluster/apiserver/tables.h"

#include <algorithm>
#include <ctime>

#include "e2e/devcluster/apiserver/jsonpath.h"

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

struct Column {
  Column(std::string n, std::string t, int p = 0, std::string f = "", std::string d = "")
      : name(std::move(n)), type(std::move(t)), priority(p), format(std::move(f)), description(std::move(d)) {}
  std::string name;
  std::string type;  // string, integer, number, boolean, date
  int priority = 0;
  std::string format;
  std::string description;
};

std::string str(const json& o, const char* pointer, const std::string& fallback = "") {
  const json v = o.value(json::json_pointer(pointer), json());
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return fallback;
  return v.dump();
}

std::string or_none(const std::string& s) { return s.empty() ? "<none>" : s; }

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string age_of(const json& o) { return age_text(str(o, "/metadata/creationTimestamp")); }

std::time_t parse_rfc3339(const std::string& t) {
  std::tm tm{};
  if (strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return 0;
  return timegm(&tm);
}

std::string condition_status(const json& o, const std::string& type) {
  for (const auto& c : o.value("/status/conditions"_json_pointer, json::array()))
    if (c.value("type", std::string()) == type) return c.value("status", std::string());
  return "";
}

json pod_row(const json& p, std::vector<Column>& cols) {
  cols = {{"Name", "string", 0, "name"}, {"Ready", "string"},     {"Status", "string"},
          {"Restarts", "string"},       {"Age", "string"},       {"IP", "string", 1},
          {"Node", "string", 1},        {"Nominated Node", "string", 1}, {"Readiness Gates", "string", 1}};
  const json containers = p.value("/spec/containers"_json_pointer, json::array());
  int ready = 0, restarts = 0;
  std::string reason = str(p, "/status/phase", "Pending");
  if (!str(p, "/status/reason").empty()) reason = str(p, "/status/reason");
  for (const auto& cs : p.value("/status/containerStatuses"_json_pointer, json::array())) {
    if (cs.value("ready", false)) ++ready;
    restarts += cs.value("restartCount", 0);
    const std::string waiting = cs.value("/state/waiting/reason"_json_pointer, std::string());
    const std::string terminated = cs.value("/state/terminated/reason"_json_pointer, std::string());
    if (!waiting.empty()) reason = waiting;
    else if (!terminated.empty()) reason = terminated;
  }
  if (p["metadata"].contains("deletionTimestamp")) reason = "Terminating";
  const json gates = p.value("/spec/readinessGates"_json_pointer, json::array());
  std::string gate_text = "<none>";
  if (!gates.empty()) {
    int on = 0;
    for (const auto& g : gates)
      if (condition_status(p, g.value("conditionType", std::string())) == "True") ++on;
    gate_text = std::to_string(on) + "/" + std::to_string(gates.size());
  }
  return json::array({str(p, "/metadata/name"), std::to_string(ready) + "/" + std::to_string(containers.size()), reason,
                      std::to_string(restarts), age_of(p), or_none(str(p, "/status/podIP")),
                      or_none(str(p, "/spec/nodeName")), or_none(str(p, "/status/nominatedNodeName")), gate_text});
}

json node_row(const json& n, std::vector<Column>& cols) {
  cols = {{"Name", "string", 0, "name"}, {"Status", "string"},         {"Roles", "string"},
          {"Age", "string"},            {"Version", "string"},        {"Internal-IP", "string", 1},
          {"External-IP", "string", 1}, {"OS-Image", "string", 1},    {"Kernel-Version", "string", 1},
          {"Container-Runtime", "string", 1}};
  std::string status = condition_status(n, "Ready") == "True" ? "Ready" : "NotReady";
  if (n.value("/spec/unschedulable"_json_pointer, false)) status += ",SchedulingDisabled";
  std::vector<std::string> roles;
  const json labels = n.value("/metadata/labels"_json_pointer, json::object());
  for (const auto& [k, v] : labels.items())
    if (k.rfind("node-role.kubernetes.io/", 0) == 0) roles.push_back(k.substr(24));
  std::string internal, external;
  for (const auto& a : n.value("/status/addresses"_json_pointer, json::array())) {
    if (a.value("type", std::string()) == "InternalIP") internal = a.value("address", std::string());
    if (a.value("type", std::string()) == "ExternalIP") external = a.value("address", std::string());
  }
  return json::array({str(n, "/metadata/name"), status, or_none(join(roles, ",")), age_of(n),
                      str(n, "/status/nodeInfo/kubeletVersion"), or_none(internal), or_none(external),
                      or_none(str(n, "/status/nodeInfo/osImage")), or_none(str(n, "/status/nodeInfo/kernelVersion")),
                      or_none(str(n, "/status/nodeInfo/containerRuntimeVersion"))});
}

json service_row(const json& s, std::vector<Column>& cols) {
  cols = {{"Name", "string", 0, "name"}, {"Type", "string"},  {"Cluster-IP", "string"}, {"External-IP", "string"},
          {"Port(s)", "string"},         {"Age", "string"},   {"Selector", "string", 1}};
  std::vector<std::string> ports;
  for (const auto& p : s.value("/spec/ports"_json_pointer, json::array())) {
    std::string t = std::to_string(p.value("port", 0));
    if (p.contains("nodePort")) t += ":" + std::to_string(p.value("nodePort", 0));
    ports.push_back(t + "/" + p.value("protocol", std::string("TCP")));
  }
  std::vector<std::string> selector;
  const json sel = s.value("/spec/selector"_json_pointer, json::object());
  for (const auto& [k, v] : sel.items())
    if (v.is_string()) selector.push_back(k + "=" + v.get<std::string>());
  return json::array({str(s, "/metadata/name"), str(s, "/spec/type", "ClusterIP"), or_none(str(s, "/spec/clusterIP")),
                      "<none>", or_none(join(ports, ",")), age_of(s), or_none(join(selector, ","))});
}

json generic_row(const ResourceType& type, const json& o, std::vector<Column>& cols) {
  const std::string name = str(o, "/metadata/name");
  if (type.group.empty() && type.resource == "pods") return pod_row(o, cols);
  if (type.group.empty() && type.resource == "nodes") return node_row(o, cols);
  if (type.group.empty() && type.resource == "services") return service_row(o, cols);
  if (type.group.empty() && type.resource == "namespaces") {
    cols = {{"Name", "string", 0, "name"}, {"Status", "string"}, {"Age", "string"}};
    return json::array({name, str(o, "/status/phase"), age_of(o)});
  }
  if (type.group.empty() && type.resource == "endpoints") {
    cols = {{"Name", "string", 0, "name"}, {"Endpoints", "string"}, {"Age", "string"}};
    std::vector<std::string> eps;
    for (const auto& subset : o.value("subsets", json::array()))
      for (const auto& a : subset.value("addresses", json::array()))
        for (const auto& p : subset.value("ports", json::array()))
          eps.push_back(a.value("ip", std::string()) + ":" + std::to_string(p.value("port", 0)));
    return json::array({name, or_none(join(eps, ",")), age_of(o)});
  }
  if (type.group == "discovery.k8s.io") {
    cols = {{"Name", "string", 0, "name"}, {"AddressType", "string"}, {"Ports", "string"}, {"Endpoints", "string"},
            {"Age", "string"}};
    std::vector<std::string> ports, addrs;
    for (const auto& p : o.value("ports", json::array())) ports.push_back(std::to_string(p.value("port", 0)));
    for (const auto& e : o.value("endpoints", json::array()))
      for (const auto& a : e.value("addresses", json::array()))
        if (a.is_string()) addrs.push_back(a.get<std::string>());
    return json::array({name, str(o, "/addressType"), or_none(join(ports, ",")), or_none(join(addrs, ",")), age_of(o)});
  }
  if (type.group == "policy") {
    cols = {{"Name", "string", 0, "name"}, {"Min Available", "string"}, {"Max Unavailable", "string"},
            {"Allowed Disruptions", "integer"}, {"Age", "string"}};
    return json::array({name, str(o, "/spec/minAvailable", "N/A"), str(o, "/spec/maxUnavailable", "N/A"),
                        o.value("/status/disruptionsAllowed"_json_pointer, 0), age_of(o)});
  }
  if (type.group == "coordination.k8s.io") {
    cols = {{"Name", "string", 0, "name"}, {"Holder", "string"}, {"Age", "string"}};
    return json::array({name, str(o, "/spec/holderIdentity"), age_of(o)});
  }
  if (type.group.empty() && type.resource == "events") {
    cols = {{"Last Seen", "string"}, {"Type", "string"}, {"Reason", "string"}, {"Object", "string"},
            {"Message", "string"}, {"Name", "string", 1, "name"}};
    std::string last = str(o, "/lastTimestamp");
    if (last.empty()) last = str(o, "/eventTime");
    if (last.empty()) last = str(o, "/metadata/creationTimestamp");
    std::string kind = str(o, "/involvedObject/kind");
    std::transform(kind.begin(), kind.end(), kind.begin(), [](unsigned char c) { return std::tolower(c); });
    return json::array({age_text(last), str(o, "/type"), str(o, "/reason"), kind + "/" + str(o, "/involvedObject/name"),
                        str(o, "/message"), name});
  }
  if (type.group.empty() && (type.resource == "configmaps" || type.resource == "secrets")) {
    const size_t data = o.value("data", json::object()).size() + o.value("binaryData", json::object()).size();
    if (type.resource == "secrets") {
      cols = {{"Name", "string", 0, "name"}, {"Type", "string"}, {"Data", "integer"}, {"Age", "string"}};
      return json::array({name, str(o, "/type", "Opaque"), data, age_of(o)});
    }
    cols = {{"Name", "string", 0, "name"}, {"Data", "integer"}, {"Age", "string"}};
    return json::array({name, data, age_of(o)});
  }
  if (type.group == "apiextensions.k8s.io") {
    cols = {{"Name", "string", 0, "name"}, {"Created At", "date"}};
    return json::array({name, str(o, "/metadata/creationTimestamp")});
  }
  if (type.custom && !type.printer_columns.empty()) {
    cols = {{"Name", "string", 0, "name"}};
    json cells = json::array({name});
    for (const auto& pc : type.printer_columns) {
      cols.push_back({pc.name, pc.type == "date" ? "string" : pc.type, pc.priority, "", pc.description});
      auto values = jsonpath_eval(o, pc.json_path);
      if (!values.ok() || values->empty()) {
        cells.push_back(nullptr);
        continue;
      }
      if (pc.type == "date") {
        cells.push_back((*values)[0].is_string() ? age_text((*values)[0].get<std::string>()) : "<unknown>");
      } else if ((pc.type == "integer" || pc.type == "number" || pc.type == "boolean") && values->size() == 1 &&
                 !(*values)[0].is_object() && !(*values)[0].is_array()) {
        cells.push_back((*values)[0]);
      } else {
        cells.push_back(jsonpath_cell(*values));
      }
    }
    return cells;
  }
  cols = {{"Name", "string", 0, "name"}, {"Age", "string"}};
  return json::array({name, age_of(o)});
}

}  // namespace

std::string age_text(const std::string& ts) {
  const std::time_t then = parse_rfc3339(ts);
  if (then == 0) return "<unknown>";
  int64_t s = static_cast<int64_t>(std::time(nullptr) - then);
  if (s < 0) s = 0;
  if (s < 120) return std::to_string(s) + "s";
  const int64_t m = s / 60;
  if (m < 10) return std::to_string(m) + "m" + (s % 60 ? std::to_string(s % 60) + "s" : "");
  if (m < 180) return std::to_string(m) + "m";
  const int64_t h = m / 60;
  if (h < 8) return std::to_string(h) + "h" + (m % 60 ? std::to_string(m % 60) + "m" : "");
  if (h < 48) return std::to_string(h) + "h";
  const int64_t d = h / 24;
  if (d < 8) return std::to_string(d) + "d" + (h % 24 ? std::to_string(h % 24) + "h" : "");
  return std::to_string(d) + "d";
}

bool wants_table(const std::string& accept) { return accept.find("as=Table") != std::string::npos; }

json render_table(const ResourceType& type, const std::vector<json>& items, const std::string& resource_version,
                  const std::string& continue_token, TableObjects include) {
  std::vector<Column> cols;
  json rows = json::array();
  for (const auto& o : items) {
    json row = {{"cells", generic_row(type, o, cols)}};
    if (include == TableObjects::kMetadata) {
      row["object"] = {{"kind", "PartialObjectMetadata"},
                       {"apiVersion", "meta.k8s.io/v1"},
                       {"metadata", o.value("metadata", json::object())}};
    } else if (include == TableObjects::kObject) {
      row["object"] = o;
    }
    rows.push_back(std::move(row));
  }
  if (cols.empty()) generic_row(type, json{{"metadata", json::object()}}, cols);
  json defs = json::array();
  for (const auto& c : cols) {
    defs.push_back({{"name", c.name},
                    {"type", c.type},
                    {"format", c.format},
                    {"description", c.description.empty() ? c.name : c.description},
                    {"priority", c.priority}});
  }
  json meta = {{"resourceVersion", resource_version}};
  if (!continue_token.empty()) meta["continue"] = continue_token;
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", meta},
          {"columnDefinitions", defs},
          {"rows", rows}};
}

}  // namespace hotswap::devcluster
