#include "e2e/devcluster/apiserver/controllers.h"

#include <algorithm>
#include <map>
#include <set>

#include "common/log.h"
#include "e2e/devcluster/apiserver/object_rules.h"

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

constexpr auto kMinInterval = std::chrono::milliseconds(50);
constexpr auto kMaxInterval = std::chrono::seconds(1);
constexpr const char* kCrdFinalizer = "customresourcecleanup.apiextensions.k8s.io";

struct Stored {
  std::string type_key;
  std::string ns;
  json object;
};

std::vector<std::string> finalizers_of(const json& o) {
  std::vector<std::string> out;
  for (const auto& f : o.value("/metadata/finalizers"_json_pointer, json::array()))
    if (f.is_string()) out.push_back(f.get<std::string>());
  return out;
}

bool deleting(const json& o) { return o["metadata"].contains("deletionTimestamp"); }

std::string name_of(const json& o) { return o.value("/metadata/name"_json_pointer, std::string()); }
std::string uid_of(const json& o) { return o.value("/metadata/uid"_json_pointer, std::string()); }

json set_condition(json conditions, const std::string& type, const std::string& status, const std::string& reason,
                   const std::string& message) {
  if (!conditions.is_array()) conditions = json::array();
  json c = {{"type", type}, {"status", status}, {"reason", reason}, {"message", message},
            {"lastTransitionTime", now_rfc3339()}};
  for (auto& e : conditions) {
    if (e.value("type", std::string()) != type) continue;
    if (e.value("status", std::string()) == status && e.value("reason", std::string()) == reason &&
        e.value("message", std::string()) == message)
      return conditions;
    e = c;
    return conditions;
  }
  conditions.push_back(c);
  return conditions;
}

// The Deployment controller (below).
void reconcile_deployments(ApiObjects& api, const std::vector<Stored>& all,
                           const std::map<std::string, std::vector<const Stored*>>& dependents,
                           const ResourceType* pod_type, const ResourceType* deployment_type);

}  // namespace

void Controllers::start() {
  auto id = api_.store().watch("", std::nullopt, [this](const StoreEvent&) {
    std::lock_guard lock(mu_);
    dirty_ = true;
    cv_.notify_one();
  });
  watch_id_ = id.ok() ? *id : 0;
  thread_ = std::thread([this] { run(); });
}

void Controllers::stop() {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_one();
  }
  thread_.join();
  if (watch_id_ != 0) api_.store().unwatch(watch_id_);
}

void Controllers::run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, kMaxInterval, [&] { return dirty_ || stopping_; });
      if (stopping_) return;
      dirty_ = false;
    }
    reconcile();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kMinInterval, [&] { return stopping_; });
    if (stopping_) return;
  }
}

void Controllers::register_crd(const json& crd) {
  if (deleting(crd)) return;
  auto crd_type = api_.registry().find("apiextensions.k8s.io", "v1", "customresourcedefinitions");
  auto types = resource_types_from_crd(crd);
  json conditions = crd.value("/status/conditions"_json_pointer, json::array());
  Status added = types.ok() ? api_.registry().add_custom(*types) : types.status();
  if (added.ok()) {
    conditions = set_condition(conditions, "NamesAccepted", "True", "NoConflicts", "no conflicts found");
    conditions = set_condition(conditions, "Established", "True", "InitialNamesAccepted",
                               "the initial names have been accepted");
  } else {
    conditions = set_condition(conditions, "NamesAccepted", "False", "Conflict", added.message());
  }
  json status = {{"conditions", conditions},
                 {"acceptedNames", crd.value("/spec/names"_json_pointer, json::object())},
                 {"storedVersions", json::array()}};
  for (const auto& v : crd.value("/spec/versions"_json_pointer, json::array()))
    if (v.value("storage", false)) status["storedVersions"].push_back(v.value("name", std::string()));
  if (crd.value("status", json()) == status) return;
  json patch = {{"status", status}};
  auto r = api_.patch(*crd_type, "", name_of(crd), PatchType::kMerge, patch, "status", FieldValidation::kIgnore);
  if (!r.ok() && r.error().code != 404) log_warn("CRD " + name_of(crd) + " status: " + r.error().message);
}

void Controllers::reconcile() {
  const json dump = api_.store().dump();
  std::vector<Stored> all;
  std::set<std::string> uids;
  for (const auto& e : dump["objects"]) {
    all.push_back({e["type"].get<std::string>(), e["namespace"].get<std::string>(), e["object"]});
    uids.insert(uid_of(e["object"]));
  }
  std::map<std::string, ResourceType> types;
  for (const auto& t : api_.registry().all()) types.emplace(t.key(), t);
  auto type_of = [&](const std::string& key) -> const ResourceType* {
    auto it = types.find(key);
    return it == types.end() ? nullptr : &it->second;
  };
  auto remove = [&](const Stored& s, const DeleteOptions& options = {}) {
    const ResourceType* t = type_of(s.type_key);
    if (t == nullptr) {
      (void)api_.store().remove(s.type_key, s.ns, name_of(s.object));
      return;
    }
    auto r = api_.remove(*t, s.ns, name_of(s.object), options);
    if (!r.ok() && r.error().code != 404)
      log_warn("controllers: deleting " + s.type_key + " " + s.ns + "/" + name_of(s.object) + ": " +
                       r.error().message);
  };
  auto drop_finalizer = [&](const Stored& s, const std::string& finalizer) {
    (void)api_.store().mutate(s.type_key, s.ns, name_of(s.object),
                              [&](const json& current) -> ApiResult<ObjectStore::Mutation> {
                                json next = current;
                                json kept = json::array();
                                for (const auto& f : finalizers_of(current))
                                  if (f != finalizer) kept.push_back(f);
                                next["metadata"]["finalizers"] = kept;
                                const bool pod = s.type_key == "pods";
                                return ObjectStore::Mutation{std::move(next), kept.empty() && !pod};
                              });
  };
  // Dependents by owner uid.
  std::map<std::string, std::vector<const Stored*>> dependents;
  for (const auto& s : all)
    for (const auto& ref : s.object.value("/metadata/ownerReferences"_json_pointer, json::array()))
      dependents[ref.value("uid", std::string())].push_back(&s);

  for (const auto& s : all) {
    const json& o = s.object;
    const auto finalizers = finalizers_of(o);
    const bool has = [&](const char* f) {
      return std::find(finalizers.begin(), finalizers.end(), f) != finalizers.end();
    }("orphan");
    // Orphan deletion: the dependents lose their reference to this owner, then the owner goes.
    if (deleting(o) && has) {
      for (const Stored* d : dependents[uid_of(o)]) {
        (void)api_.store().mutate(d->type_key, d->ns, name_of(d->object),
                                  [&](const json& current) -> ApiResult<ObjectStore::Mutation> {
                                    json next = current;
                                    json refs = json::array();
                                    for (const auto& r : current.value("/metadata/ownerReferences"_json_pointer,
                                                                       json::array()))
                                      if (r.value("uid", std::string()) != uid_of(o)) refs.push_back(r);
                                    if (refs.empty()) next["metadata"].erase("ownerReferences");
                                    else next["metadata"]["ownerReferences"] = refs;
                                    return ObjectStore::Mutation{std::move(next), false};
                                  });
      }
      drop_finalizer(s, "orphan");
      continue;
    }
    // Foreground deletion: the dependents go first, then the owner.
    if (deleting(o) && std::find(finalizers.begin(), finalizers.end(), "foregroundDeletion") != finalizers.end()) {
      const auto& deps = dependents[uid_of(o)];
      for (const Stored* d : deps) {
        DeleteOptions fg;
        fg.propagation_policy = "Foreground";
        if (!deleting(d->object)) remove(*d, fg);
      }
      if (deps.empty()) drop_finalizer(s, "foregroundDeletion");
      continue;
    }
    // Background: a dependent whose owners are all gone is deleted.
    const json refs = o.value("/metadata/ownerReferences"_json_pointer, json::array());
    if (!refs.empty() && !deleting(o)) {
      bool any_owner = false;
      for (const auto& r : refs) any_owner = any_owner || uids.count(r.value("uid", std::string())) > 0;
      if (!any_owner) remove(s);
    }
  }

  for (const auto& s : all) {
    const json& o = s.object;
    if (s.type_key == "namespaces" && deleting(o)) {
      // Namespace controller: delete the content; once it is all gone, the namespace.
      bool content = false;
      for (const auto& d : all) {
        if (d.ns != name_of(o)) continue;
        content = true;
        if (!deleting(d.object)) {
          DeleteOptions now;
          now.grace_period_seconds = d.type_key == "pods" && d.object.value("/spec/nodeName"_json_pointer,
                                                                            std::string()).empty()
                                         ? std::optional<int64_t>(0)
                                         : std::nullopt;
          remove(d, now);
        }
      }
      if (!content) {
        (void)api_.store().mutate("namespaces", "", name_of(o), [](const json& current) -> ApiResult<ObjectStore::Mutation> {
          if (!finalizers_of(current).empty()) {
            json next = current;
            next["spec"]["finalizers"] = json::array();
            return ObjectStore::Mutation{std::move(next), false};
          }
          return ObjectStore::Mutation{current, true};
        });
      }
    }
    if (s.type_key == "apiextensions.k8s.io/customresourcedefinitions") {
      if (!deleting(o)) {
        if (!o.value("/status/conditions"_json_pointer, json()).is_array()) register_crd(o);
        continue;
      }
      // CRD cleanup: its custom resources go, then its types, then the CRD.
      const std::string key = o.value("/spec/group"_json_pointer, std::string()) + "/" +
                              o.value("/spec/names/plural"_json_pointer, std::string());
      bool left = false;
      for (const auto& d : all) {
        if (d.type_key != key) continue;
        left = true;
        if (!deleting(d.object)) remove(d);
      }
      if (!left) {
        api_.registry().remove_custom(name_of(o));
        drop_finalizer(s, kCrdFinalizer);
      }
    }
  }

  reconcile_deployments(api_, all, dependents, type_of("pods"), type_of("apps/deployments"));

  // PodDisruptionBudget status from the Pods each selects now.
  auto pdb_type = type_of("policy/poddisruptionbudgets");
  std::map<std::string, std::vector<json>> pods_by_ns;
  for (const auto& s : all)
    if (s.type_key == "pods") pods_by_ns[s.ns].push_back(s.object);
  for (const auto& s : all) {
    if (s.type_key != "policy/poddisruptionbudgets" || pdb_type == nullptr) continue;
    auto status = pdb_status(s.object, pods_by_ns[s.ns]);
    if (!status.ok()) continue;
    json old = s.object.value("status", json::object());
    json cmp = *status;
    // Transition times alone are not a change.
    if (old.contains("conditions") && cmp.contains("conditions")) {
      for (size_t i = 0; i < cmp["conditions"].size() && i < old["conditions"].size(); ++i)
        cmp["conditions"][i]["lastTransitionTime"] = old["conditions"][i].value("lastTransitionTime", json());
    }
    if (cmp == old) continue;
    (void)api_.patch(*pdb_type, s.ns, name_of(s.object), PatchType::kMerge, json{{"status", *status}}, "status",
                     FieldValidation::kIgnore);
  }
}

namespace {

// Each live Deployment has spec.replicas Pods made from its template, owned by it; its status
// counts them and their Ready ones.
void reconcile_deployments(ApiObjects& api_, const std::vector<Stored>& all,
                           const std::map<std::string, std::vector<const Stored*>>& dependents,
                           const ResourceType* pod_type, const ResourceType* deployment_type) {
  if (pod_type == nullptr || deployment_type == nullptr) return;
  for (const auto& s : all) {
    if (s.type_key != "apps/deployments" || deleting(s.object)) continue;
    const json& d = s.object;
    const int64_t want = d.value("/spec/replicas"_json_pointer, int64_t{1});
    std::vector<const json*> live;
    if (auto it = dependents.find(uid_of(d)); it != dependents.end())
      for (const Stored* p : it->second)
        if (p->type_key == "pods" && !deleting(p->object) &&
            p->object.value("/status/phase"_json_pointer, std::string()) != "Failed" &&
            p->object.value("/status/phase"_json_pointer, std::string()) != "Succeeded")
          live.push_back(&p->object);
    // Too few: new Pods from the template, owned by the Deployment (the garbage collector
    // removes them with it). Too many: the newest go.
    for (int64_t i = static_cast<int64_t>(live.size()); i < want; ++i) {
      json pod = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", d.value("/spec/template/metadata"_json_pointer, json::object())},
                  {"spec", d.value("/spec/template/spec"_json_pointer, json::object())}};
      pod["metadata"]["generateName"] = name_of(d) + "-";
      pod["metadata"]["namespace"] = s.ns;
      pod["metadata"]["ownerReferences"] = json::array({{{"apiVersion", "apps/v1"}, {"kind", "Deployment"},
                                                         {"name", name_of(d)}, {"uid", uid_of(d)},
                                                         {"controller", true}, {"blockOwnerDeletion", true}}});
      auto r = api_.create(*pod_type, s.ns, std::move(pod), FieldValidation::kIgnore);
      if (!r.ok()) log_warn("controllers: deployment " + s.ns + "/" + name_of(d) + ": creating a Pod: " + r.error().message);
    }
    if (static_cast<int64_t>(live.size()) > want) {
      std::sort(live.begin(), live.end(), [](const json* a, const json* b) {
        return a->value("/metadata/creationTimestamp"_json_pointer, std::string()) >
               b->value("/metadata/creationTimestamp"_json_pointer, std::string());
      });
      for (size_t i = 0; i < live.size() - static_cast<size_t>(want); ++i) {
        auto r = api_.remove(*pod_type, s.ns, name_of(*live[i]), {});
        if (!r.ok() && r.error().code != 404)
          log_warn("controllers: deployment " + s.ns + "/" + name_of(d) + ": deleting a Pod: " + r.error().message);
      }
    }
    int64_t ready = 0;
    for (const json* p : live)
      for (const auto& c : p->value("/status/conditions"_json_pointer, json::array()))
        if (c.value("type", std::string()) == "Ready" && c.value("status", std::string()) == "True") ++ready;
    const int64_t count = std::min<int64_t>(static_cast<int64_t>(live.size()), want);
    json status = {{"observedGeneration", d.value("/metadata/generation"_json_pointer, int64_t{0})},
                   {"replicas", count},
                   {"updatedReplicas", count},
                   {"readyReplicas", std::min(ready, want)},
                   {"availableReplicas", std::min(ready, want)}};
    if (status == d.value("status", json::object())) continue;
    (void)api_.patch(*deployment_type, s.ns, name_of(d), PatchType::kMerge, json{{"status", status}}, "status",
                     FieldValidation::kIgnore);
  }
}

}  // namespace

}  // namespace hotswap::devcluster
