// A small in-process Kubernetes API server on 127.0.0.1 for the kube client's tests: a store of
// JSON objects keyed by (API prefix, resource, namespace, name) with a global resourceVersion;
// GET (object, list with labelSelector equality, limit and continue), POST (AlreadyExists),
// PUT (Conflict on a stale resourceVersion; the status subresource replaces only status),
// PATCH (merge, strategic as merge, JSON patch, apply), DELETE; and watches streamed as
// newline-delimited JSON in chunks, from a resourceVersion (ERROR 410 when it is older than the
// last compact()) or with synthetic ADDED events when it is unset, with bookmarks on request.
// Tests can end or cut every open watch, split each event across two chunks, and intercept any
// request with a hook. Optionally https with a given certificate.
//
// Threads: cpprest's listener threads run the handler (the hook is called outside the store's
// lock, so it may write to the store); each watch has a writer thread. The destructor wakes and
// joins every writer, then closes the listener.
#pragma once

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/http.h"
#include "common/status.h"

namespace hotswap::kube::fake {

using nlohmann::json;

struct Recorded {
  std::string method;
  std::string path;                          // decoded
  std::map<std::string, std::string> query;  // decoded
  std::string content_type;
  std::string authorization;
  std::string body;
  bool is_watch() const {
    auto it = query.find("watch");
    return it != query.end() && (it->second == "1" || it->second == "true");
  }
};

struct Reply {
  Reply(int s = 200, json b = json::object(), std::vector<std::pair<std::string, std::string>> h = {})
      : status(s), body(std::move(b)), headers(std::move(h)) {}
  int status;
  json body;
  std::vector<std::pair<std::string, std::string>> headers;
};

inline json status_object(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
          {"status", "Failure"}, {"message", message}, {"reason", reason},
          {"code", code}};
}

class FakeApiServer {
 public:
  using Hook = std::function<std::optional<Reply>(const Recorded&)>;

  // cert_pem/key_pem set: https. A few tries: the port is free when picked, not when bound.
  static StatusOr<std::unique_ptr<FakeApiServer>> start(const std::string& cert_pem = "",
                                                        const std::string& key_pem = "") {
    http::keep_listener_runtime_alive();
    std::string last_error;
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto port = http::pick_free_port();
      if (!port.ok()) return port.status();
      std::unique_ptr<FakeApiServer> s(new FakeApiServer(*port, cert_pem, key_pem));
      try {
        s->listener_->open().wait();
        return s;
      } catch (const std::exception& e) {
        last_error = e.what();
      }
    }
    return unavailable("fake API server: could not listen: " + last_error);
  }

  ~FakeApiServer() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    std::vector<std::thread> writers;
    {
      std::lock_guard<std::mutex> lk(mu_);
      writers.swap(writers_);
    }
    for (auto& w : writers) w.join();
    try {
      listener_->close().wait();
    } catch (const std::exception&) {
    }
  }

  std::string url() const { return scheme_ + "://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  // --- the store, as another client would write it (each write is one watch event) ---

  // Creates or replaces; returns the stored object (with its resourceVersion).
  json put(const std::string& prefix, const std::string& resource, const std::string& ns, json obj) {
    std::lock_guard<std::mutex> lk(mu_);
    const std::string name = obj["metadata"]["name"].get<std::string>();
    if (!ns.empty()) obj["metadata"]["namespace"] = ns;
    const std::string key = store_key(prefix, resource, ns, name);
    bool existed = store_.count(key) > 0;
    if (existed) {
      obj["metadata"]["uid"] = store_[key]["metadata"]["uid"];
    } else {
      obj["metadata"]["uid"] = "uid-" + std::to_string(++uid_);
    }
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    store_[key] = obj;
    record_event_locked(prefix + "/" + resource, ns, existed ? "MODIFIED" : "ADDED", obj);
    return obj;
  }

  bool erase(const std::string& prefix, const std::string& resource, const std::string& ns, const std::string& name) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = store_.find(store_key(prefix, resource, ns, name));
    if (it == store_.end()) return false;
    json obj = it->second;
    store_.erase(it);
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    record_event_locked(prefix + "/" + resource, ns, "DELETED", obj);
    return true;
  }

  std::optional<json> object(const std::string& prefix, const std::string& resource, const std::string& ns,
                             const std::string& name) const {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = store_.find(store_key(prefix, resource, ns, name));
    if (it == store_.end()) return std::nullopt;
    return it->second;
  }

  int64_t resource_version() const {
    std::lock_guard<std::mutex> lk(mu_);
    return rv_;
  }

  // Forgets the event history: a watch from any resourceVersion before now gets ERROR 410.
  void compact() {
    std::lock_guard<std::mutex> lk(mu_);
    events_.clear();
    compacted_rv_ = rv_;
  }

  void send_bookmarks() { bump(bookmark_gen_); }
  void end_watches() { bump(end_gen_); }      // each open watch ends cleanly
  void break_watches() { bump(break_gen_); }  // each open watch's connection drops mid-stream
  void set_split_events(bool split) { split_events_.store(split); }
  // While paused, open watches send nothing (their events wait), as a slow or partitioned link.
  void set_watches_paused(bool paused) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      watches_paused_ = paused;
    }
    cv_.notify_all();
  }
  void set_hook(Hook hook) {
    std::lock_guard<std::mutex> lk(mu_);
    hook_ = std::move(hook);
  }

  std::vector<Recorded> requests() const {
    std::lock_guard<std::mutex> lk(mu_);
    return requests_;
  }
  int count(const std::string& method, const std::string& path, std::optional<bool> watch = std::nullopt) const {
    std::lock_guard<std::mutex> lk(mu_);
    int n = 0;
    for (const auto& r : requests_) {
      if (r.method == method && r.path == path && (!watch || r.is_watch() == *watch)) ++n;
    }
    return n;
  }
  int open_watches() const { return open_watches_.load(); }

 private:
  struct Event {
    int64_t rv;
    std::string type_key;  // "/api/v1/pods"
    std::string ns;
    std::string type;
    json object;
  };
  struct Parsed {
    bool ok = false;
    std::string prefix, ns, resource, name, sub;
  };

  FakeApiServer(int port, const std::string& cert_pem, const std::string& key_pem)
      : scheme_(cert_pem.empty() ? "http" : "https"), port_(port) {
    web::http::experimental::listener::http_listener_config config;
    if (!cert_pem.empty()) {
      config.set_ssl_context_callback([cert_pem, key_pem](boost::asio::ssl::context& ctx) {
        ctx.use_certificate_chain(boost::asio::buffer(cert_pem.data(), cert_pem.size()));
        ctx.use_private_key(boost::asio::buffer(key_pem.data(), key_pem.size()), boost::asio::ssl::context::pem);
      });
    }
    listener_ = std::make_unique<web::http::experimental::listener::http_listener>(web::uri(url()), config);
    listener_->support([this](web::http::http_request req) { handle(std::move(req)); });
  }

  void bump(int64_t& gen) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++gen;
    }
    cv_.notify_all();
  }

  static std::string store_key(const std::string& prefix, const std::string& resource, const std::string& ns,
                               const std::string& name) {
    return prefix + "/" + resource + "|" + ns + "|" + name;
  }

  void record_event_locked(const std::string& type_key, const std::string& ns, const std::string& type,
                           const json& obj) {
    events_.push_back({rv_, type_key, ns, type, obj});
    cv_.notify_all();
  }

  static Parsed parse_path(const std::string& path) {
    std::vector<std::string> segs;
    size_t i = 0;
    while (i < path.size()) {
      size_t j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      if (j > i) segs.push_back(path.substr(i, j - i));
      i = j + 1;
    }
    Parsed p;
    size_t rest;
    if (segs.size() >= 2 && segs[0] == "api") {
      p.prefix = "/api/" + segs[1];
      rest = 2;
    } else if (segs.size() >= 3 && segs[0] == "apis") {
      p.prefix = "/apis/" + segs[1] + "/" + segs[2];
      rest = 3;
    } else {
      return p;
    }
    std::vector<std::string> r(segs.begin() + static_cast<long>(rest), segs.end());
    if (r.size() >= 3 && r[0] == "namespaces") {
      p.ns = r[1];
      r.erase(r.begin(), r.begin() + 2);
    }
    if (r.empty() || r.size() > 3) return p;
    p.resource = r[0];
    if (r.size() > 1) p.name = r[1];
    if (r.size() > 2) p.sub = r[2];
    p.ok = true;
    return p;
  }

  static bool labels_match(const json& obj, const std::string& selector) {
    if (selector.empty()) return true;
    size_t i = 0;
    while (i <= selector.size()) {
      size_t j = selector.find(',', i);
      if (j == std::string::npos) j = selector.size();
      std::string term = selector.substr(i, j - i);
      size_t eq = term.find('=');
      if (eq != std::string::npos) {
        std::string k = term.substr(0, eq), v = term.substr(eq + 1);
        const json& labels = obj["metadata"].value("labels", json::object());
        if (!labels.contains(k) || labels[k] != v) return false;
      }
      i = j + 1;
    }
    return true;
  }

  static void observe(pplx::task<void> t) {
    t.then([](pplx::task<void> done) {
      try {
        done.get();
      } catch (...) {
      }
    });
  }

  static void send(web::http::http_request& req, const Reply& r) {
    web::http::http_response resp(static_cast<web::http::status_code>(r.status));
    for (const auto& [k, v] : r.headers) resp.headers().add(k, v);
    if (r.body.is_string()) {
      resp.set_body(r.body.get<std::string>(), "text/plain");
    } else {
      resp.set_body(r.body.dump(), "application/json");
    }
    try {
      observe(req.reply(resp));
    } catch (...) {
    }
  }

  void handle(web::http::http_request req) {
    Recorded rec;
    rec.method = req.method();
    rec.path = web::uri::decode(req.relative_uri().path());
    for (const auto& [k, v] : web::uri::split_query(req.relative_uri().query())) rec.query[k] = web::uri::decode(v);
    auto ct = req.headers().find(web::http::header_names::content_type);
    if (ct != req.headers().end()) rec.content_type = ct->second;
    auto auth = req.headers().find(web::http::header_names::authorization);
    if (auth != req.headers().end()) rec.authorization = auth->second;
    try {
      rec.body = req.extract_utf8string(true).get();
    } catch (...) {
    }
    Hook hook;
    {
      std::lock_guard<std::mutex> lk(mu_);
      requests_.push_back(rec);
      hook = hook_;
    }
    if (hook) {
      if (auto r = hook(rec)) {
        send(req, *r);
        return;
      }
    }
    Parsed p = parse_path(rec.path);
    if (!p.ok) {
      send(req, {404, status_object(404, "NotFound", "the server could not find the requested resource")});
      return;
    }
    if (rec.method == "GET" && rec.is_watch()) {
      start_watch(req, rec, p);
      return;
    }
    send(req, dispatch(rec, p));
  }

  static std::string q(const Recorded& r, const std::string& k) {
    auto it = r.query.find(k);
    return it == r.query.end() ? "" : it->second;
  }

  std::string kind_of_locked(const std::string& type_key) const {
    for (const auto& [key, obj] : store_) {
      if (key.rfind(type_key + "|", 0) == 0 && obj.contains("kind")) return obj["kind"].get<std::string>();
    }
    return "Object";
  }

  Reply dispatch(const Recorded& rec, const Parsed& p) {
    std::lock_guard<std::mutex> lk(mu_);
    const std::string type_key = p.prefix + "/" + p.resource;
    const std::string key = store_key(p.prefix, p.resource, p.ns, p.name);
    auto not_found = [&] {
      return Reply{404, status_object(404, "NotFound", p.resource + " \"" + p.name + "\" not found")};
    };
    json body;
    if (!rec.body.empty()) {
      body = json::parse(rec.body, nullptr, false);
      if (body.is_discarded()) return {400, status_object(400, "BadRequest", "the body is not JSON")};
    }
    if (rec.method == "GET" && p.name.empty()) {
      std::vector<json> items;
      for (const auto& [k, obj] : store_) {
        if (k.rfind(type_key + "|", 0) != 0) continue;
        if (!p.ns.empty() && obj["metadata"].value("namespace", std::string()) != p.ns) continue;
        if (!labels_match(obj, q(rec, "labelSelector"))) continue;
        json item = obj;
        item.erase("kind");  // as the real server: list items carry neither
        item.erase("apiVersion");
        items.push_back(std::move(item));
      }
      size_t start = q(rec, "continue").empty() ? 0 : std::stoul(q(rec, "continue"));
      size_t limit = q(rec, "limit").empty() ? items.size() : std::stoul(q(rec, "limit"));
      json list = {{"kind", kind_of_locked(type_key) + "List"},
                   {"apiVersion", p.prefix.substr(p.prefix.find('/', 1) + 1)},
                   {"metadata", {{"resourceVersion", std::to_string(rv_)}}},
                   {"items", json::array()}};
      for (size_t i = start; i < items.size() && i < start + limit; ++i) list["items"].push_back(items[i]);
      if (start + limit < items.size()) {
        list["metadata"]["continue"] = std::to_string(start + limit);
        list["metadata"]["remainingItemCount"] = items.size() - start - limit;
      }
      return {200, list};
    }
    if (rec.method == "GET") {
      auto it = store_.find(key);
      if (it == store_.end()) return not_found();
      return {200, it->second};
    }
    if (rec.method == "POST") {
      if (!p.name.empty()) return {405, status_object(405, "MethodNotAllowed", "POST to an object")};
      if (!body.is_object() || !body.contains("metadata") || !body["metadata"].contains("name")) {
        return {422, status_object(422, "Invalid", "metadata.name: Required value")};
      }
      const std::string name = body["metadata"]["name"].get<std::string>();
      const std::string k = store_key(p.prefix, p.resource, p.ns, name);
      if (store_.count(k)) {
        Reply r{409, status_object(409, "AlreadyExists", p.resource + " \"" + name + "\" already exists")};
        r.body["details"] = {{"name", name}, {"kind", p.resource}};
        return r;
      }
      if (!p.ns.empty()) body["metadata"]["namespace"] = p.ns;
      body["metadata"]["uid"] = "uid-" + std::to_string(++uid_);
      body["metadata"]["resourceVersion"] = std::to_string(++rv_);
      store_[k] = body;
      record_event_locked(type_key, p.ns, "ADDED", body);
      return {201, body};
    }
    if (rec.method == "PUT") {
      auto it = store_.find(key);
      if (it == store_.end()) return not_found();
      std::string want = body.is_object() && body.contains("metadata")
                             ? body["metadata"].value("resourceVersion", std::string())
                             : std::string();
      if (!want.empty() && want != it->second["metadata"]["resourceVersion"].get<std::string>()) {
        return {409, status_object(409, "Conflict",
                                   "Operation cannot be fulfilled on " + p.resource + " \"" + p.name +
                                       "\": the object has been modified; please apply your changes to the latest "
                                       "version and try again")};
      }
      json next = p.sub == "status" ? it->second : body;
      if (p.sub == "status") next["status"] = body.value("status", json::object());
      next["metadata"]["uid"] = it->second["metadata"]["uid"];
      if (!p.ns.empty()) next["metadata"]["namespace"] = p.ns;
      next["metadata"]["resourceVersion"] = std::to_string(++rv_);
      it->second = next;
      record_event_locked(type_key, p.ns, "MODIFIED", next);
      return {200, next};
    }
    if (rec.method == "PATCH") {
      auto it = store_.find(key);
      const bool apply = rec.content_type.rfind("application/apply-patch+yaml", 0) == 0;
      if (apply && q(rec, "fieldManager").empty()) {
        return {400, status_object(400, "BadRequest", "PatchOptions.meta.k8s.io: fieldManager: Required value")};
      }
      if (it == store_.end() && !apply) return not_found();
      json next = it == store_.end() ? json{{"metadata", {{"name", p.name}}}} : it->second;
      if (body.is_object() && body.contains("metadata") && body["metadata"].contains("resourceVersion") &&
          it != store_.end() && body["metadata"]["resourceVersion"] != it->second["metadata"]["resourceVersion"]) {
        return {409, status_object(409, "Conflict", "the object has been modified")};
      }
      try {
        if (rec.content_type.rfind("application/json-patch+json", 0) == 0) {
          next = next.patch(body);
        } else if (rec.content_type.rfind("application/merge-patch+json", 0) == 0 ||
                   rec.content_type.rfind("application/strategic-merge-patch+json", 0) == 0 || apply) {
          next.merge_patch(body);
        } else {
          return {415, status_object(415, "UnsupportedMediaType", "unsupported patch type " + rec.content_type)};
        }
      } catch (const std::exception& e) {
        return {422, status_object(422, "Invalid", std::string("the patch does not apply: ") + e.what())};
      }
      bool created = it == store_.end();
      if (!p.ns.empty()) next["metadata"]["namespace"] = p.ns;
      if (created) next["metadata"]["uid"] = "uid-" + std::to_string(++uid_);
      next["metadata"]["resourceVersion"] = std::to_string(++rv_);
      store_[key] = next;
      record_event_locked(type_key, p.ns, created ? "ADDED" : "MODIFIED", next);
      return {created ? 201 : 200, next};
    }
    if (rec.method == "DELETE") {
      if (p.name.empty()) {
        std::vector<std::string> gone;
        for (const auto& [k, obj] : store_) {
          if (k.rfind(type_key + "|", 0) != 0) continue;
          if (!p.ns.empty() && obj["metadata"].value("namespace", std::string()) != p.ns) continue;
          if (labels_match(obj, q(rec, "labelSelector"))) gone.push_back(k);
        }
        for (const auto& k : gone) {
          json obj = store_[k];
          store_.erase(k);
          obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
          record_event_locked(type_key, obj["metadata"].value("namespace", std::string()), "DELETED", obj);
        }
        return {200, {{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Success"}}};
      }
      auto it = store_.find(key);
      if (it == store_.end()) return not_found();
      json obj = it->second;
      store_.erase(it);
      obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
      record_event_locked(type_key, p.ns, "DELETED", obj);
      return {200, obj};
    }
    return {405, status_object(405, "MethodNotAllowed", rec.method + " is not supported")};
  }

  void start_watch(web::http::http_request& req, const Recorded& rec, const Parsed& p) {
    const std::string type_key = p.prefix + "/" + p.resource;
    const std::string rv_param = q(rec, "resourceVersion");
    const bool bookmarks = q(rec, "allowWatchBookmarks") == "true";
    const std::string selector = q(rec, "labelSelector");
    const int64_t timeout_s = q(rec, "timeoutSeconds").empty() ? 60 : std::stoll(q(rec, "timeoutSeconds"));
    std::vector<std::string> initial;
    int64_t cursor;
    int64_t gens[3];
    std::string kind;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) return;
      kind = kind_of_locked(type_key);
      if (rv_param.empty() || rv_param == "0") {
        // No resourceVersion: the current state as synthetic ADDED events, then changes.
        for (const auto& [k, obj] : store_) {
          if (k.rfind(type_key + "|", 0) != 0) continue;
          if (!p.ns.empty() && obj["metadata"].value("namespace", std::string()) != p.ns) continue;
          if (labels_match(obj, selector)) initial.push_back(json{{"type", "ADDED"}, {"object", obj}}.dump() + "\n");
        }
        cursor = rv_;
      } else {
        cursor = std::stoll(rv_param);
        if (cursor < compacted_rv_) {
          json ev = {{"type", "ERROR"},
                     {"object", status_object(410, "Expired",
                                              "too old resource version: " + rv_param + " (" +
                                                  std::to_string(compacted_rv_) + ")")}};
          initial.push_back(ev.dump() + "\n");
          cursor = -1;  // end after the error, as the real server does
        }
      }
      gens[0] = end_gen_;
      gens[1] = break_gen_;
      gens[2] = bookmark_gen_;
    }
    concurrency::streams::producer_consumer_buffer<uint8_t> buffer;
    web::http::http_response response(web::http::status_codes::OK);
    response.headers().set_content_type("application/json");
    response.set_body(buffer.create_istream());
    observe(req.reply(response));
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) {
      try {
        buffer.close(std::ios_base::out).wait();
      } catch (...) {
      }
      return;
    }
    open_watches_.fetch_add(1);
    writers_.emplace_back([this, buffer, type_key, ns = p.ns, selector, bookmarks, timeout_s, cursor, kind,
                           initial = std::move(initial), end_gen = gens[0], break_gen = gens[1], bookmark_gen = gens[2],
                           api_version = p.prefix.substr(p.prefix.find('/', 1) + 1)]() mutable {
      auto write = [&](const std::string& bytes) {
        if (bytes.empty()) return true;
        try {
          if (split_events_.load() && bytes.size() > 2) {
            // Cut mid-JSON: the first half, a pause so it goes out alone, then the rest.
            std::string a = bytes.substr(0, bytes.size() / 2), b = bytes.substr(bytes.size() / 2);
            buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(a.data()), a.size()).wait();
            buffer.sync().wait();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(b.data()), b.size()).wait();
          } else {
            buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()).wait();
          }
          buffer.sync().wait();  // the listener sends a chunk only when it is flushed
          return true;
        } catch (...) {
          return false;
        }
      };
      bool cut = false;
      std::string first;
      for (const auto& s : initial) first += s;  // several events in one chunk
      bool alive = write(first) && cursor >= 0;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
      while (alive) {
        std::string out;
        bool want_bookmark = false;
        {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait_for(lk, std::chrono::milliseconds(20), [&] {
            return stopping_ || end_gen_ != end_gen || break_gen_ != break_gen || bookmark_gen_ != bookmark_gen ||
                   (!watches_paused_ && !events_.empty() && events_.back().rv > cursor);
          });
          if (stopping_ || end_gen_ != end_gen) break;
          if (break_gen_ != break_gen) {
            cut = true;
            break;
          }
          for (const auto& ev : events_) {
            if (watches_paused_) break;
            if (ev.rv <= cursor || ev.type_key != type_key) continue;
            if (!ns.empty() && ev.ns != ns) continue;
            if (!labels_match(ev.object, selector)) continue;
            out += json{{"type", ev.type}, {"object", ev.object}}.dump() + "\n";
          }
          if (!events_.empty() && !watches_paused_) cursor = std::max(cursor, events_.back().rv);
          if (bookmark_gen_ != bookmark_gen && !watches_paused_) {
            bookmark_gen = bookmark_gen_;
            want_bookmark = bookmarks;
            cursor = std::max(cursor, rv_);
          }
        }
        if (want_bookmark) {
          out += json{{"type", "BOOKMARK"},
                      {"object",
                       {{"kind", kind},
                        {"apiVersion", api_version},
                        {"metadata", {{"resourceVersion", std::to_string(cursor)}}}}}}
                     .dump() +
                 "\n";
        }
        alive = write(out);
        if (std::chrono::steady_clock::now() >= deadline) break;
      }
      try {
        if (cut) {  // the listener drops the connection when the body stream fails
          buffer.close(std::ios_base::out, std::make_exception_ptr(std::runtime_error("cut"))).wait();
        } else {
          buffer.close(std::ios_base::out).wait();
        }
      } catch (...) {
      }
      open_watches_.fetch_sub(1);
    });
  }

  const std::string scheme_;
  const int port_;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, json> store_;
  std::vector<Event> events_;
  int64_t rv_ = 100;
  int64_t compacted_rv_ = 0;
  int64_t uid_ = 0;
  int64_t end_gen_ = 0, break_gen_ = 0, bookmark_gen_ = 0;
  bool watches_paused_ = false;
  std::atomic<bool> split_events_{false};
  std::atomic<int> open_watches_{0};
  Hook hook_;
  std::vector<Recorded> requests_;
  std::vector<std::thread> writers_;
};

}  // namespace hotswap::kube::fake
