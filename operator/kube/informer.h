// An informer: a local, eventually consistent copy of one collection (a resource type in one
// namespace or all, optionally filtered by selectors), kept by list-then-watch as client-go's
// reflector does. It lists (in pages), then watches from the list's resourceVersion with
// bookmarks; a watch the server closes is restarted from the last resourceVersion seen; a 410
// (resourceVersion expired) relists at once; a broken watch or a failed list relists after an
// exponential backoff. A relist replaces the cache and reports the difference as adds, updates
// and deletes, so handlers see every change even when individual events were lost.
//
// Handlers run on the informer's threads (its own for lists, the current watch's for events),
// one at a time, never concurrently, after the cache already shows the change. They must not
// block for long (queue a key in a WorkQueue and return). Updates are reported only when the
// object's resourceVersion changed. The cache (get, list, snapshot) is safe from any thread;
// objects are shared immutable JSON.
//
// The RestClient must outlive the informer. stop() (and the destructor) cancels the watch and
// joins the threads; it returns within about a second even against a server that hangs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "operator/kube/rest_client.h"
#include "operator/kube/watch.h"

namespace hotswap::kube {

using ObjectPtr = std::shared_ptr<const nlohmann::json>;

struct InformerHandlers {
  std::function<void(const nlohmann::json& object)> on_add;
  std::function<void(const nlohmann::json& old_object, const nlohmann::json& new_object)> on_update;
  // The object's last state: from the DELETED event, or the cached one when a relist found it gone.
  std::function<void(const nlohmann::json& object)> on_delete;
};

struct InformerOptions {
  ResourceRef collection;  // group, version, resource; ns empty: all namespaces; no name
  std::string label_selector;
  std::string field_selector;
  int64_t page_size = 500;  // list in pages of this many; 0: one request
  // Each watch asks the server to end it after a random [t, 2t) seconds, then restarts from the
  // last resourceVersion (no relist), as client-go does.
  int64_t watch_timeout_seconds = 300;
  std::chrono::milliseconds backoff_initial{800};
  std::chrono::milliseconds backoff_max{30000};
  WatchOptions watch;
};

class Informer {
 public:
  Informer(const RestClient& client, InformerOptions options);
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  // Before start(): handlers added later would miss the initial adds.
  Status add_handlers(InformerHandlers handlers);
  Status start();
  void stop();

  // Whether the first list has been applied to the cache (and its adds reported).
  bool has_synced() const { return synced_.load(); }
  bool wait_for_sync(std::chrono::milliseconds timeout) const;

  // The cached object for a key ("namespace/name" or "name"), or null.
  ObjectPtr get(const std::string& key) const;
  ObjectPtr get(const std::string& ns, const std::string& name) const;
  // Every cached object, ordered by key; with ns set, only that namespace's.
  std::vector<ObjectPtr> list(const std::string& ns = "") const;
  std::map<std::string, ObjectPtr> snapshot() const;
  size_t size() const;

  // The resourceVersion the cache is at: the last list's or the last event's.
  std::string resource_version() const;
  // The last list or watch failure; ok when the last attempt worked.
  Status last_error() const;
  int64_t list_count() const { return lists_.load(); }     // successful lists, the first included
  int64_t watch_count() const { return watches_.load(); }  // watches started

 private:
  void run();
  // Lists and replaces the cache; sets *rv to the list's resourceVersion.
  Status list_and_replace(std::string* rv);
  void apply_event(const WatchEvent& event);
  // Sleeps up to d; false when stopping.
  bool sleep_for(std::chrono::milliseconds d);
  void set_error(Status st);

  template <typename Fn>
  void call_handlers(const char* what, Fn&& fn);

  const RestClient& client_;
  const InformerOptions options_;
  std::vector<InformerHandlers> handlers_;

  mutable std::mutex cache_mu_;
  mutable std::condition_variable synced_cv_;
  std::map<std::string, ObjectPtr> cache_;
  std::string resource_version_;
  Status last_error_;
  std::atomic<bool> synced_{false};
  std::atomic<int64_t> lists_{0};
  std::atomic<int64_t> watches_{0};

  std::mutex run_mu_;  // stopping_, watch_
  std::condition_variable run_cv_;
  bool started_ = false;
  bool stopping_ = false;
  std::unique_ptr<WatchStream> watch_;
  std::thread thread_;
};

}  // namespace hotswap::kube
