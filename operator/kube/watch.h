// One Kubernetes watch: GET <collection>?watch=1&resourceVersion=X&allowWatchBookmarks=true,
// whose chunked body is a stream of newline-delimited JSON events {"type": ADDED | MODIFIED |
// DELETED | BOOKMARK | ERROR, "object": {...}}. The stream hands each event to a callback, in
// order, and ends once, with an outcome: the server closed it (restart from the last
// resourceVersion), it expired (an ERROR event or HTTP status 410: the resourceVersion is too
// old, relist), it failed (transport, HTTP status, malformed event, other ERROR), or it was
// cancelled.
//
// Threads: cpprest's I/O threads append the body's bytes to a buffer; the stream's own thread
// cuts them into events and calls on_event, then on_done exactly once, last. cancel() may be
// called from any thread, the callbacks included, and returns at once; after it, no more events
// are delivered. The destructor cancels and joins the stream's thread (so the callbacks have
// returned and will not run again); destroying the stream from inside its own callback is
// allowed and suppresses on_done.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "operator/kube/rest_client.h"

namespace hotswap::kube {

enum class WatchEventType { kAdded, kModified, kDeleted, kBookmark, kError };
const char* watch_event_type_name(WatchEventType type);

struct WatchEvent {
  WatchEventType type = WatchEventType::kAdded;
  nlohmann::json object;  // the object; for kBookmark only kind and metadata.resourceVersion
};

enum class WatchEnd {
  kClosed,     // the server ended the stream normally (timeoutSeconds, apiserver restart)
  kExpired,    // 410: the resourceVersion is no longer available; list again
  kFailed,     // transport error, HTTP error, malformed stream, or an ERROR event other than 410
  kCancelled,  // cancel() or the destructor
};
const char* watch_end_name(WatchEnd end);

struct WatchOutcome {
  WatchEnd end = WatchEnd::kClosed;
  Status status;                      // why, for kExpired and kFailed
  ApiError error;                     // the server's Status for an HTTP error or ERROR event
  std::string last_resource_version;  // of the last event delivered (bookmarks included); "" if none
  int64_t events = 0;                 // events delivered
};

struct WatchOptions {
  // The stream fails when nothing arrives for this long. 0: timeoutSeconds + 30 s, or 65 min
  // when timeoutSeconds is 0 (kube-apiserver ends watches within 60 min by default).
  std::chrono::milliseconds idle_timeout{0};
  // A single event larger than this is a broken stream.
  size_t max_event_bytes = 64 << 20;
};

class WatchStream {
 public:
  using EventFn = std::function<void(const WatchEvent&)>;
  using DoneFn = std::function<void(const WatchOutcome&)>;

  // Starts watching `collection` (a ResourceRef without name) with `options` (resource_version,
  // selectors, timeout_seconds, allow_watch_bookmarks; limit and continue are not used). An
  // invalid reference is an error here; everything after the request is sent ends in on_done.
  static StatusOr<std::unique_ptr<WatchStream>> start(const RestClient& client, const ResourceRef& collection,
                                                      const ListOptions& options, EventFn on_event, DoneFn on_done,
                                                      WatchOptions watch_options = {});
  ~WatchStream();
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;

  void cancel();
  // Whether the stream has ended (on_done has returned), waiting up to `timeout`.
  bool wait(std::chrono::milliseconds timeout) const;

  class Impl;

 private:
  explicit WatchStream(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace hotswap::kube
