// ObjectStore: the dev cluster's etcd. Objects (JSON) keyed by (type key, namespace, name),
// one cluster-wide resourceVersion counter bumped by every write, and a bounded log of the
// recent changes from which a watch resumes: a watch from resourceVersion N gets every change
// after N, in order, or 410 Gone when N is older than the oldest change still logged.
//
// The store is deliberately plain: it stamps metadata.resourceVersion and nothing else. The
// Kubernetes rules (uid, generation, finalizers, status subresource) live in the API layer,
// which uses mutate() for an atomic read-modify-write.
//
// Threads: every method is safe from any thread; one mutex serialises them. Watch callbacks run
// on the writer's thread with that mutex held: they must not block or call back into the store.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "e2e/devcluster/apiserver/api_error.h"

namespace hotswap::devcluster {

enum class EventType { kAdded, kModified, kDeleted };
const char* event_type_name(EventType t);  // "ADDED", "MODIFIED", "DELETED"

struct StoreEvent {
  uint64_t resource_version = 0;
  EventType type = EventType::kAdded;
  std::string type_key;     // ResourceType::key()
  std::string ns;           // "" for cluster-scoped objects
  nlohmann::json object;    // after the change (for kDeleted: the last state, with the new resourceVersion)
  nlohmann::json previous;  // before the change; null for kAdded
};

class ObjectStore {
 public:
  explicit ObjectStore(size_t event_log_limit = 10000);

  // For `kind "name"` in messages the caller passes what_name, e.g. "pods \"web-0\"".
  ApiResult<nlohmann::json> get(const std::string& type_key, const std::string& ns, const std::string& name) const;

  struct ListResult {
    std::vector<nlohmann::json> items;  // by namespace, then name
    uint64_t resource_version = 0;      // the store's version when the list was taken
  };
  // ns "": every namespace.
  ListResult list(const std::string& type_key, const std::string& ns) const;

  // Adds an object whose metadata.name is set; 409 AlreadyExists when the name is taken.
  ApiResult<nlohmann::json> create(const std::string& type_key, const std::string& ns, nlohmann::json object);

  // Atomic read-modify-write: fn gets the current object and returns its replacement (or an
  // error, which changes nothing). A replacement equal to the current object is not a write (no
  // new resourceVersion, no event). With `remove` set by fn, the object is deleted instead.
  struct Mutation {
    nlohmann::json object;
    bool remove = false;
  };
  using MutateFn = std::function<ApiResult<Mutation>(const nlohmann::json& current)>;
  ApiResult<nlohmann::json> mutate(const std::string& type_key, const std::string& ns, const std::string& name,
                                   const MutateFn& fn);

  // Deletes; returns the object as it was, with the resourceVersion of its deletion.
  ApiResult<nlohmann::json> remove(const std::string& type_key, const std::string& ns, const std::string& name);

  uint64_t resource_version() const;

  // Calls fn for every change of type_key ("" for every type) after from_rv, then for each new
  // one until unwatch(). from_rv unset or 0: only changes from now on. 410 Gone when from_rv is
  // older than the log reaches (the error message says which versions are held).
  using WatchFn = std::function<void(const StoreEvent&)>;
  ApiResult<uint64_t> watch(const std::string& type_key, std::optional<uint64_t> from_rv, WatchFn fn);
  void unwatch(uint64_t watch_id);

  // Every object of every type, and the resourceVersion: a state file's content.
  nlohmann::json dump() const;
  // Replaces the content with a dump(); the log starts empty at the dump's version.
  Status restore(const nlohmann::json& dump);
  // Bumped by every write: a saver compares it to know whether to save again.
  uint64_t write_count() const;

 private:
  using Key = std::tuple<std::string, std::string, std::string>;  // type, ns, name

  void record_locked(EventType type, const std::string& type_key, const std::string& ns, nlohmann::json object,
                     nlohmann::json previous);
  static std::string describe(const std::string& type_key, const std::string& name);

  mutable std::mutex mu_;
  const size_t event_log_limit_;
  uint64_t rv_ = 0;
  uint64_t writes_ = 0;
  std::map<Key, nlohmann::json> objects_;
  std::deque<StoreEvent> log_;
  // The oldest version a watch can resume from: changes after it are all in log_.
  uint64_t log_floor_ = 0;
  struct Watcher {
    std::string type_key;
    WatchFn fn;
  };
  std::map<uint64_t, Watcher> watchers_;
  uint64_t next_watch_id_ = 1;
};

}  // namespace hotswap::devcluster
