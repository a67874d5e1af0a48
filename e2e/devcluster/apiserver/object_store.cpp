#include "e2e/devcluster/apiserver/object_store.h"

namespace hotswap::devcluster {

const char* event_type_name(EventType t) {
  switch (t) {
    case EventType::kAdded:
      return "ADDED";
    case EventType::kModified:
      return "MODIFIED";
    case EventType::kDeleted:
      return "DELETED";
  }
  return "?";
}

ObjectStore::ObjectStore(size_t event_log_limit) : event_log_limit_(event_log_limit < 1 ? 1 : event_log_limit) {}

std::string ObjectStore::describe(const std::string& type_key, const std::string& name) {
  // "pods \"x\"", or for a group "modeldeployments.hotswap.io \"x\"", as kube-apiserver words it.
  const auto slash = type_key.find('/');
  const std::string resource =
      slash == std::string::npos ? type_key : type_key.substr(slash + 1) + "." + type_key.substr(0, slash);
  return resource + " \"" + name + "\"";
}

ApiResult<nlohmann::json> ObjectStore::get(const std::string& type_key, const std::string& ns,
                                           const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = objects_.find({type_key, ns, name});
  if (it == objects_.end()) return not_found_error(describe(type_key, name) + " not found");
  return it->second;
}

ObjectStore::ListResult ObjectStore::list(const std::string& type_key, const std::string& ns) const {
  std::lock_guard lock(mu_);
  ListResult out;
  out.resource_version = rv_;
  for (auto it = objects_.lower_bound({type_key, ns, ""}); it != objects_.end(); ++it) {
    const auto& [t, n, name] = it->first;
    if (t != type_key || (!ns.empty() && n != ns)) break;
    out.items.push_back(it->second);
  }
  return out;
}

ApiResult<nlohmann::json> ObjectStore::create(const std::string& type_key, const std::string& ns,
                                              nlohmann::json object) {
  std::lock_guard lock(mu_);
  const std::string name = object["metadata"].value("name", std::string());
  const Key key{type_key, ns, name};
  if (objects_.count(key)) return already_exists_error(describe(type_key, name) + " already exists");
  object["metadata"]["resourceVersion"] = std::to_string(rv_ + 1);
  objects_[key] = object;
  record_locked(EventType::kAdded, type_key, ns, object, nullptr);
  return object;
}

ApiResult<nlohmann::json> ObjectStore::mutate(const std::string& type_key, const std::string& ns,
                                              const std::string& name, const MutateFn& fn) {
  std::lock_guard lock(mu_);
  auto it = objects_.find({type_key, ns, name});
  if (it == objects_.end()) return not_found_error(describe(type_key, name) + " not found");
  ApiResult<Mutation> m = fn(it->second);
  if (!m.ok()) return m.error();
  nlohmann::json previous = it->second;
  if (m->remove) {
    nlohmann::json last = std::move(m->object);
    last["metadata"]["resourceVersion"] = std::to_string(rv_ + 1);
    objects_.erase(it);
    record_locked(EventType::kDeleted, type_key, ns, last, std::move(previous));
    return last;
  }
  nlohmann::json next = std::move(m->object);
  // The version is the store's; a no-op write keeps the current one and makes no event.
  next["metadata"]["resourceVersion"] = previous["metadata"].value("resourceVersion", std::string());
  if (next == previous) return previous;
  next["metadata"]["resourceVersion"] = std::to_string(rv_ + 1);
  it->second = next;
  record_locked(EventType::kModified, type_key, ns, next, std::move(previous));
  return next;
}

ApiResult<nlohmann::json> ObjectStore::remove(const std::string& type_key, const std::string& ns,
                                              const std::string& name) {
  return mutate(type_key, ns, name, [](const nlohmann::json& current) -> ApiResult<Mutation> {
    return Mutation{current, true};
  });
}

uint64_t ObjectStore::resource_version() const {
  std::lock_guard lock(mu_);
  return rv_;
}

void ObjectStore::record_locked(EventType type, const std::string& type_key, const std::string& ns,
                                nlohmann::json object, nlohmann::json previous) {
  ++rv_;
  ++writes_;
  StoreEvent ev{rv_, type, type_key, ns, std::move(object), std::move(previous)};
  for (const auto& [id, w] : watchers_)
    if (w.type_key.empty() || w.type_key == type_key) w.fn(ev);
  log_.push_back(std::move(ev));
  while (log_.size() > event_log_limit_) {
    log_floor_ = log_.front().resource_version;
    log_.pop_front();
  }
}

ApiResult<uint64_t> ObjectStore::watch(const std::string& type_key, std::optional<uint64_t> from_rv, WatchFn fn) {
  std::lock_guard lock(mu_);
  if (from_rv && *from_rv > 0) {
    if (*from_rv < log_floor_) {
      return gone_error("too old resource version: " + std::to_string(*from_rv) + " (" + std::to_string(log_floor_) +
                        ")");
    }
    if (*from_rv > rv_) {
      // kube-apiserver waits for a future version; here nothing can come from the future.
      return api_error(504, "Timeout", "Too large resource version: " + std::to_string(*from_rv) +
                                           ", current: " + std::to_string(rv_));
    }
    for (const auto& ev : log_)
      if (ev.resource_version > *from_rv && (type_key.empty() || ev.type_key == type_key)) fn(ev);
  }
  const uint64_t id = next_watch_id_++;
  watchers_[id] = Watcher{type_key, std::move(fn)};
  return id;
}

void ObjectStore::unwatch(uint64_t watch_id) {
  std::lock_guard lock(mu_);
  watchers_.erase(watch_id);
}

nlohmann::json ObjectStore::dump() const {
  std::lock_guard lock(mu_);
  nlohmann::json objects = nlohmann::json::array();
  for (const auto& [key, obj] : objects_) {
    objects.push_back({{"type", std::get<0>(key)}, {"namespace", std::get<1>(key)}, {"object", obj}});
  }
  return {{"resourceVersion", rv_}, {"objects", std::move(objects)}};
}

Status ObjectStore::restore(const nlohmann::json& dump) {
  if (!dump.is_object() || !dump.contains("resourceVersion") || !dump["resourceVersion"].is_number_unsigned() ||
      !dump.contains("objects") || !dump["objects"].is_array()) {
    return invalid_argument("state: expected {\"resourceVersion\": N, \"objects\": [...]}");
  }
  std::map<Key, nlohmann::json> objects;
  for (size_t i = 0; i < dump["objects"].size(); ++i) {
    const auto& e = dump["objects"][i];
    if (!e.is_object() || !e.value("type", nlohmann::json()).is_string() ||
        !e.value("namespace", nlohmann::json()).is_string() || !e.value("object", nlohmann::json()).is_object() ||
        !e["object"].value("metadata", nlohmann::json()).is_object()) {
      return invalid_argument("state: objects[" + std::to_string(i) + "] is not {type, namespace, object}");
    }
    objects[{e["type"].get<std::string>(), e["namespace"].get<std::string>(),
             e["object"]["metadata"].value("name", std::string())}] = e["object"];
  }
  std::lock_guard lock(mu_);
  objects_ = std::move(objects);
  rv_ = dump["resourceVersion"].get<uint64_t>();
  log_.clear();
  log_floor_ = rv_;
  ++writes_;
  return Status::ok_status();
}

uint64_t ObjectStore::write_count() const {
  std::lock_guard lock(mu_);
  return writes_;
}

}  // namespace hotswap::devcluster
