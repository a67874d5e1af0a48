#include "e2e/devcluster/nodes/kubelet_pod_status.h"

#include <ctime>
#include <vector>

namespace hotswap::devcluster {

using json = nlohmann::json;

namespace {

constexpr const char* kOwnedConditions[] = {"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                            "PodScheduled"};
constexpr const char* kOwnedFields[] = {"phase", "reason", "message",   "hostIP",           "hostIPs",
                                        "podIP", "podIPs", "startTime", "containerStatuses"};

}  // namespace

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t s = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string rfc3339_micro(std::chrono::system_clock::time_point t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t s = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[48];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06dZ", static_cast<int>(us % 1000000));
  return buf;
}

bool is_kubelet_pod_condition(const std::string& type) {
  for (const char* t : kOwnedConditions)
    if (type == t) return true;
  return false;
}

json merge_pod_status(const json& status, const json& owned) {
  json out = status.is_object() ? status : json::object();
  for (const char* field : kOwnedFields) {
    if (owned.contains(field))
      out[field] = owned[field];
    else
      out.erase(field);
  }
  const json mine = owned.value("conditions", json::array());
  std::vector<bool> placed(mine.size(), false);
  json conditions = json::array();
  for (const auto& c : out.value("conditions", json::array())) {
    const std::string type = c.value("type", std::string());
    if (!is_kubelet_pod_condition(type)) {
      conditions.push_back(c);
      continue;
    }
    for (size_t i = 0; i < mine.size(); ++i) {
      if (!placed[i] && mine[i].value("type", std::string()) == type) {
        conditions.push_back(mine[i]);
        placed[i] = true;
      }
    }
  }
  for (size_t i = 0; i < mine.size(); ++i)
    if (!placed[i]) conditions.push_back(mine[i]);
  out["conditions"] = std::move(conditions);
  return out;
}

bool pod_status_matches(const json& status, const json& owned) {
  if (!status.is_object()) return false;
  for (const char* field : kOwnedFields) {
    const bool have = status.contains(field), want = owned.contains(field);
    if (have != want) return false;
    if (want && status[field] != owned[field]) return false;
  }
  const json current = status.value("conditions", json::array());
  for (const auto& c : owned.value("conditions", json::array())) {
    bool found = false;
    for (const auto& d : current) {
      if (d.value("type", std::string()) != c.value("type", std::string())) continue;
      found = true;
      for (const char* f : {"status", "reason", "message", "lastTransitionTime"})
        if (d.value(f, std::string()) != c.value(f, std::string())) return false;
    }
    if (!found) return false;
  }
  return true;
}

ConditionValue pod_ready_condition(const json& pod, bool containers_ready, const std::string& unready_message) {
  if (!containers_ready) return {"False", "ContainersNotReady", unready_message};
  const json conditions = pod.value("/status/conditions"_json_pointer, json::array());
  std::vector<std::string> unready;
  for (const auto& gate : pod.value("/spec/readinessGates"_json_pointer, json::array())) {
    const std::string type = gate.value("conditionType", std::string());
    const json* found = nullptr;
    for (const auto& c : conditions)
      if (c.value("type", std::string()) == type) found = &c;
    if (found == nullptr) {
      unready.push_back("corresponding condition of pod readiness gate \"" + type + "\" does not exist.");
    } else if (found->value("status", std::string()) != "True") {
      unready.push_back("the status of pod readiness gate \"" + type + "\" is not \"True\", but " +
                        found->value("status", std::string()));
    }
  }
  if (unready.empty()) return {"True", "", ""};
  std::string message;
  for (const auto& m : unready) message += (message.empty() ? "" : ", ") + m;
  return {"False", "ReadinessGatesNotReady", message};
}

}  // namespace hotswap::devcluster
