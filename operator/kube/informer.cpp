#include "operator/kube/informer.h"

#include <algorithm>
#include <random>

#include "common/log.h"
#include "operator/kube/object.h"

namespace hotswap::kube {

using nlohmann::json;

namespace {

// A watch that ends this soon after it started, having delivered nothing, is a failure that
// would otherwise spin: it takes the backoff even when the server closed it cleanly.
constexpr std::chrono::milliseconds kQuickWatch{1000};

struct WatchDone {
  std::mutex mu;
  bool done = false;
  WatchOutcome outcome;
};

}  // namespace

Informer::Informer(const RestClient& client, InformerOptions options) : client_(client), options_(std::move(options)) {}

Informer::~Informer() {
  stop();
}

Status Informer::add_handlers(InformerHandlers handlers) {
  std::lock_guard<std::mutex> lk(run_mu_);
  if (started_)
    return failed_precondition("informer " + options_.collection.resource + ": add handlers before start()");
  handlers_.push_back(std::move(handlers));
  return Status();
}

Status Informer::start() {
  if (!options_.collection.name.empty()) {
    return invalid_argument("informer " + options_.collection.resource + ": the collection reference names an object");
  }
  HOTSWAP_RETURN_IF_ERROR(resource_path(options_.collection).status());
  std::lock_guard<std::mutex> lk(run_mu_);
  if (started_) return failed_precondition("informer " + options_.collection.resource + ": already started");
  started_ = true;
  thread_ = std::thread([this] { run(); });
  return Status();
}

void Informer::stop() {
  {
    std::lock_guard<std::mutex> lk(run_mu_);
    stopping_ = true;
    if (watch_) watch_->cancel();
  }
  run_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Informer::wait_for_sync(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lk(cache_mu_);
  return synced_cv_.wait_for(lk, timeout, [&] { return synced_.load(); });
}

ObjectPtr Informer::get(const std::string& key) const {
  std::lock_guard<std::mutex> lk(cache_mu_);
  auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : it->second;
}

ObjectPtr Informer::get(const std::string& ns, const std::string& name) const {
  return get(object_key(ns, name));
}

std::vector<ObjectPtr> Informer::list(const std::string& ns) const {
  std::lock_guard<std::mutex> lk(cache_mu_);
  std::vector<ObjectPtr> out;
  out.reserve(cache_.size());
  for (const auto& [key, obj] : cache_) {
    if (ns.empty() || object_namespace(*obj) == ns) out.push_back(obj);
  }
  return out;
}

std::map<std::string, ObjectPtr> Informer::snapshot() const {
  std::lock_guard<std::mutex> lk(cache_mu_);
  return cache_;
}

size_t Informer::size() const {
  std::lock_guard<std::mutex> lk(cache_mu_);
  return cache_.size();
}

std::string Informer::resource_version() const {
  std::lock_guard<std::mutex> lk(cache_mu_);
  return resource_version_;
}

Status Informer::last_error() const {
  std::lock_guard<std::mutex> lk(cache_mu_);
  return last_error_;
}

void Informer::set_error(Status st) {
  std::lock_guard<std::mutex> lk(cache_mu_);
  last_error_ = std::move(st);
}

template <typename Fn>
void Informer::call_handlers(const char* what, Fn&& fn) {
  for (const auto& h : handlers_) {
    try {
      fn(h);
    } catch (const std::exception& e) {
      log_error("informer " + options_.collection.resource + ": " + what + " handler threw: " + e.what());
    } catch (...) {
      log_error("informer " + options_.collection.resource + ": " + what + " handler threw");
    }
  }
}

bool Informer::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lk(run_mu_);
  return !run_cv_.wait_for(lk, d, [&] { return stopping_; });
}

Status Informer::list_and_replace(std::string* rv) {
  ListOptions o;
  o.label_selector = options_.label_selector;
  o.field_selector = options_.field_selector;
  o.limit = options_.page_size;
  ApiResult r =
      options_.page_size > 0 ? client_.list_all(options_.collection, o) : client_.list(options_.collection, o);
  if (!r.ok()) return r.status();
  json& l = r.value();
  if (!l.is_object() || !l.contains("items") || !l["items"].is_array()) {
    return data_loss("list " + options_.collection.resource + ": the answer is not a List");
  }
  *rv = l.contains("metadata") && l["metadata"].is_object() ? l["metadata"].value("resourceVersion", std::string())
                                                            : std::string();
  if (rv->empty()) return data_loss("list " + options_.collection.resource + ": the List has no resourceVersion");
  // Items of a List carry no kind or apiVersion; give them the ones watch events have.
  std::string list_kind = l.value("kind", std::string());
  std::string item_kind = list_kind.size() > 4 && list_kind.compare(list_kind.size() - 4, 4, "List") == 0
                              ? list_kind.substr(0, list_kind.size() - 4)
                              : std::string();
  std::string api_version = l.value("apiVersion", options_.collection.api_version());

  std::map<std::string, ObjectPtr> fresh;
  for (auto& item : l["items"]) {
    if (!item.is_object()) continue;
    if (!item.contains("kind") && !item_kind.empty()) item["kind"] = item_kind;
    if (!item.contains("apiVersion")) item["apiVersion"] = api_version;
    std::string key = object_key(item);
    if (key.empty()) {
      log_warn("informer " + options_.collection.resource + ": a listed object has no name; skipped");
      continue;
    }
    fresh[key] = std::make_shared<const json>(std::move(item));
  }
  std::map<std::string, ObjectPtr> old;
  {
    std::lock_guard<std::mutex> lk(cache_mu_);
    old = cache_;
    cache_ = fresh;
    resource_version_ = *rv;
    last_error_ = Status();
  }
  for (const auto& [key, obj] : old) {
    if (fresh.count(key) == 0)
      call_handlers("delete", [&](const InformerHandlers& h) {
        if (h.on_delete) h.on_delete(*obj);
      });
  }
  for (const auto& [key, obj] : fresh) {
    auto it = old.find(key);
    if (it == old.end()) {
      call_handlers("add", [&](const InformerHandlers& h) {
        if (h.on_add) h.on_add(*obj);
      });
    } else if (object_resource_version(*it->second) != object_resource_version(*obj)) {
      call_handlers("update", [&](const InformerHandlers& h) {
        if (h.on_update) h.on_update(*it->second, *obj);
      });
    }
  }
  lists_.fetch_add(1);
  if (!synced_.load()) {
    {
      std::lock_guard<std::mutex> lk(cache_mu_);
      synced_.store(true);
    }
    synced_cv_.notify_all();
  }
  return Status();
}

void Informer::apply_event(const WatchEvent& event) {
  std::string rv = object_resource_version(event.object);
  if (event.type == WatchEventType::kBookmark) {
    if (!rv.empty()) {
      std::lock_guard<std::mutex> lk(cache_mu_);
      resource_version_ = rv;
    }
    return;
  }
  std::string key = object_key(event.object);
  if (key.empty()) {
    log_warn("informer " + options_.collection.resource + ": a " + watch_event_type_name(event.type) +
             " event's object has no name; ignored");
    return;
  }
  auto obj = std::make_shared<const json>(event.object);
  ObjectPtr old;
  {
    std::lock_guard<std::mutex> lk(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) old = it->second;
    if (event.type == WatchEventType::kDeleted) {
      if (it != cache_.end()) cache_.erase(it);
    } else {
      cache_[key] = obj;
    }
    if (!rv.empty()) resource_version_ = rv;
  }
  if (event.type == WatchEventType::kDeleted) {
    call_handlers("delete", [&](const InformerHandlers& h) {
      if (h.on_delete) h.on_delete(*obj);
    });
  } else if (!old) {
    call_handlers("add", [&](const InformerHandlers& h) {
      if (h.on_add) h.on_add(*obj);
    });
  } else if (object_resource_version(*old) != rv) {
    call_handlers("update", [&](const InformerHandlers& h) {
      if (h.on_update) h.on_update(*old, *obj);
    });
  }
}

void Informer::run() {
  const std::string what = "informer " + options_.collection.resource +
                           (options_.collection.ns.empty() ? "" : " in " + options_.collection.ns);
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.backoff_initial;
  auto jittered = [&](std::chrono::milliseconds d) {
    // Up to +25%, so many informers that failed together do not retry together.
    std::uniform_real_distribution<double> u(1.0, 1.25);
    return std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(d.count()) * u(rng)));
  };
  auto wait_backoff = [&]() {
    bool keep_going = sleep_for(jittered(backoff));
    backoff = std::min(backoff * 2, options_.backoff_max);
    return keep_going;
  };

  for (;;) {
    {
      std::lock_guard<std::mutex> lk(run_mu_);
      if (stopping_) return;
    }
    std::string rv;
    Status st = list_and_replace(&rv);
    if (!st.ok()) {
      set_error(st);
      log_warn(what + ": list failed, retrying: " + st.to_string());
      if (!wait_backoff()) return;
      continue;
    }
    bool relist = false;
    while (!relist) {
      ListOptions o;
      o.label_selector = options_.label_selector;
      o.field_selector = options_.field_selector;
      o.resource_version = rv;
      o.allow_watch_bookmarks = true;
      if (options_.watch_timeout_seconds > 0) {
        std::uniform_int_distribution<int64_t> u(options_.watch_timeout_seconds,
                                                 2 * options_.watch_timeout_seconds - 1);
        o.timeout_seconds = std::max<int64_t>(1, u(rng));
      }
      auto done = std::make_shared<WatchDone>();
      auto started_at = std::chrono::steady_clock::now();
      auto w = WatchStream::start(
          client_, options_.collection, o, [this](const WatchEvent& e) { apply_event(e); },
          [done](const WatchOutcome& out) {
            std::lock_guard<std::mutex> lk(done->mu);
            done->outcome = out;
            done->done = true;
          },
          options_.watch);
      if (!w.ok()) {  // start() checked the reference; this is a broken invariant
        set_error(w.status());
        log_error(what + ": " + w.status().to_string());
        if (!wait_backoff()) return;
        break;
      }
      WatchStream* stream = w->get();
      {
        std::lock_guard<std::mutex> lk(run_mu_);
        watch_ = std::move(*w);
        if (stopping_) watch_->cancel();
      }
      watches_.fetch_add(1);
      while (!stream->wait(std::chrono::milliseconds(250))) {
        // stop() cancels the stream, which then ends promptly; keep waiting for that.
      }
      std::unique_ptr<WatchStream> finished;
      {
        std::lock_guard<std::mutex> lk(run_mu_);
        finished = std::move(watch_);
        if (stopping_) return;  // `finished` joins the stream's thread
      }
      finished.reset();
      WatchOutcome out;
      {
        std::lock_guard<std::mutex> lk(done->mu);
        out = done->outcome;
      }
      bool quick = out.events == 0 && std::chrono::steady_clock::now() - started_at < kQuickWatch;
      if (!quick) backoff = options_.backoff_initial;  // it worked for a while: failures start over
      switch (out.end) {
        case WatchEnd::kClosed:
          if (!out.last_resource_version.empty()) rv = out.last_resource_version;
          if (quick && !wait_backoff()) return;
          break;
        case WatchEnd::kExpired:
          log_info(what + ": " + out.status.message() + "; relisting");
          // A watch from a fresh list's resourceVersion that expires at once would spin.
          if (quick && !wait_backoff()) return;
          relist = true;
          break;
        case WatchEnd::kFailed:
          set_error(out.status);
          log_warn(what + ": watch failed, relisting: " + out.status.to_string());
          if (!wait_backoff()) return;
          relist = true;
          break;
        case WatchEnd::kCancelled:
          return;
      }
    }
  }
}

}  // namespace hotswap::kube
