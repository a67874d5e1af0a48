#include "e2e/devcluster/apiserver/api_server.h"

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "common/http.h"
#include "common/log.h"
#include "e2e/devcluster/apiserver/controllers.h"
#include "e2e/devcluster/apiserver/discovery.h"
#include "e2e/devcluster/apiserver/object_rules.h"
#include "e2e/devcluster/apiserver/request_path.h"
#include "e2e/devcluster/apiserver/selectors.h"
#include "e2e/devcluster/apiserver/tables.h"

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;
using web::http::http_request;
using web::http::http_response;
using web::http::methods;

constexpr auto kSaveInterval = std::chrono::milliseconds(200);
constexpr auto kTickInterval = std::chrono::milliseconds(100);
// kube-apiserver's limit on a request body: 3 MiB.
constexpr size_t kMaxRequestBodyBytes = 3 << 20;

std::map<std::string, std::string> query_of(http_request req) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : web::uri::split_query(req.request_uri().query()))
    out[web::uri::decode(k)] = web::uri::decode(v);
  return out;
}

std::string header(http_request& req, const std::string& name) {
  auto it = req.headers().find(name);
  return it == req.headers().end() ? std::string() : it->second;
}

std::string get(const std::map<std::string, std::string>& q, const std::string& k) {
  auto it = q.find(k);
  return it == q.end() ? std::string() : it->second;
}

bool truthy(const std::string& v) { return v == "true" || v == "1"; }

// ?includeObject= of a Table request (kubectl's default is Metadata).
TableObjects table_objects_of(const std::map<std::string, std::string>& q) {
  const auto it = q.find("includeObject");
  if (it == q.end()) return TableObjects::kMetadata;
  if (it->second == "Object") return TableObjects::kObject;
  if (it->second == "None") return TableObjects::kNone;
  return TableObjects::kMetadata;
}

// One open watch: its filters and the body its events are written into.
struct WatchConn {
  ResourceType type;
  std::string ns;
  LabelSelector labels;
  FieldSelector fields;
  bool bookmarks = false;
  bool table = false;
  TableObjects table_objects = TableObjects::kMetadata;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  concurrency::streams::producer_consumer_buffer<uint8_t> buffer;
  std::mutex mu;
  bool closed = false;
  uint64_t store_watch = 0;

  bool matches(const json& o) const {
    if (!o.is_object()) return false;
    if (!ns.empty() && o.value("/metadata/namespace"_json_pointer, std::string()) != ns) return false;
    return labels.matches(o.value("/metadata/labels"_json_pointer, json())) && fields.matches(o);
  }
  json wrap(const json& o) const {
    if (!table) return o;
    return render_table(type, {o}, o.value("/metadata/resourceVersion"_json_pointer, std::string()), "", table_objects);
  }
  void write_line(const json& event) {
    std::lock_guard lock(mu);
    if (closed) return;
    auto data = std::make_shared<std::string>(event.dump() + "\n");
    buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(data->data()), data->size())
        .then([data](pplx::task<size_t> t) {
          try {
            t.get();
          } catch (...) {
          }
        });
    try {
      buffer.sync().wait();
    } catch (...) {
    }
  }
  void close() {
    std::lock_guard lock(mu);
    if (closed) return;
    closed = true;
    try {
      buffer.close(std::ios_base::out).wait();
    } catch (...) {
    }
  }
};

}  // namespace

struct ApiServer::Impl : std::enable_shared_from_this<ApiServer::Impl> {
  ApiServerOptions options;
  ObjectStore store;
  ResourceRegistry registry;
  ApiObjects api{store, registry};
  Controllers controllers{api};
  std::unique_ptr<web::http::experimental::listener::http_listener> listener;
  std::mutex requests_mu;
  std::map<std::string, int64_t> requests_by_agent;  // User-Agent -> requests

  std::mutex watches_mu;
  std::map<WatchConn*, std::shared_ptr<WatchConn>> watches;
  std::atomic<bool> stopping{false};
  std::mutex tick_mu;
  std::condition_variable tick_cv;
  std::thread ticker;
  uint64_t saved_writes = 0;

  explicit Impl(ApiServerOptions o) : options(std::move(o)), store(options.event_log_limit) {}

  std::string url() const { return "http://" + options.host + ":" + std::to_string(options.port); }

  void reply(http_request req, int code, const json& body, const std::vector<std::string>& warnings = {}) {
    http_response r(static_cast<web::http::status_code>(code));
    r.headers().set_content_type("application/json");
    for (const auto& w : warnings) {
      // RFC 7234 warn-text: a quoted string, quotes and backslashes escaped.
      std::string text;
      for (char ch : w) {
        if (ch == '"' || ch == '\\') text += '\\';
        text += ch;
      }
      r.headers().add("Warning", "299 - \"" + text + "\"");
    }
    r.set_body(body.dump(), "application/json");
    req.reply(r).then([](pplx::task<void> t) {
      try {
        t.get();
      } catch (...) {
      }
    });
  }
  void reply_error(http_request req, const ApiError& e) { reply(req, e.code, e.to_status_json()); }

  void handle(http_request req, const std::string& body_text);
  void handle_resource(http_request req, const RequestPath& p, const std::string& body_text);
  void handle_list(http_request req, const ResourceType& t, const std::string& ns,
                   const std::map<std::string, std::string>& q);
  void handle_watch(http_request req, const ResourceType& t, const std::string& ns,
                    const std::map<std::string, std::string>& q);
  void after_write(const ResourceType& t, const json& object);
  void tick_loop();
  Status save_state();
};

void ApiServer::Impl::handle(http_request req, const std::string& body_text) {
  {
    auto ua = req.headers().find("User-Agent");
    std::lock_guard<std::mutex> lk(requests_mu);
    ++requests_by_agent[ua == req.headers().end() ? std::string() : ua->second];
  }
  std::string path = req.relative_uri().path();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path == "/healthz" || path == "/livez" || path == "/readyz") {
    http_response r(web::http::status_codes::OK);
    r.set_body("ok", "text/plain");
    req.reply(r).then([](pplx::task<void> t) {
      try {
        t.get();
      } catch (...) {
      }
    });
    return;
  }
  if (!options.token.empty() && !http::constant_time_equals(http::bearer_token(req), options.token)) {
    return reply_error(req, api_error(401, "Unauthorized", "Unauthorized"));
  }
  if (path == "/version") return reply(req, 200, version_info());
  if (path == "/openapi/v3") return reply(req, 200, openapi_v3_index(registry));
  if (path.rfind("/openapi/v3/", 0) == 0) {
    auto doc = openapi_v3_document(registry, path.substr(12));
    if (!doc) return reply_error(req, not_found_error("no OpenAPI document for " + path.substr(12)));
    return reply(req, 200, *doc);
  }
  if (path.rfind("/openapi/", 0) == 0) {
    return reply_error(req, not_found_error("the dev cluster serves OpenAPI v3 (/openapi/v3) only"));
  }
  auto p = parse_request_path(path);
  if (!p) return reply_error(req, not_found_error("the server could not find the requested resource"));
  if (p->discovery()) {
    if (req.method() != methods::GET) return reply_error(req, method_not_allowed("discovery is read-only"));
    if (path == "/api") return reply(req, 200, api_versions(options.host + ":" + std::to_string(options.port)));
    if (path == "/apis") return reply(req, 200, api_group_list(registry));
    if (p->version.empty()) {
      auto g = api_group(registry, p->group);
      if (!g) return reply_error(req, not_found_error("the server could not find the requested resource"));
      return reply(req, 200, *g);
    }
    auto list = api_resource_list(registry, p->group, p->version);
    if (!list) return reply_error(req, not_found_error("the server could not find the requested resource"));
    return reply(req, 200, *list);
  }
  handle_resource(req, *p, body_text);
}

void ApiServer::Impl::after_write(const ResourceType& t, const json& object) {
  if (t.group == "apiextensions.k8s.io" && t.resource == "customresourcedefinitions") controllers.register_crd(object);
}

void ApiServer::Impl::handle_resource(http_request req, const RequestPath& p, const std::string& body_text) {
  auto type = registry.find(p.group, p.version.empty() ? "v1" : p.version, p.resource);
  if (!type) {
    return reply_error(req, not_found_error("the server could not find the requested resource (" +
                                            (p.group.empty() ? "" : p.group + "/") + p.version + " " + p.resource +
                                            ")"));
  }
  const ResourceType& t = *type;
  const auto q = query_of(req);
  const std::string method = req.method();
  if (!t.namespaced && !p.ns.empty())
    return reply_error(req, not_found_error("the server could not find the requested resource"));
  const std::string ns = t.namespaced ? p.ns : "";
  if (!p.subresource.empty() && !t.has_subresource(p.subresource))
    return reply_error(req, not_found_error("the server could not find the requested resource"));

  FieldValidation validation = FieldValidation::kWarn;
  const std::string fv = get(q, "fieldValidation");
  if (fv == "Strict") validation = FieldValidation::kStrict;
  if (fv == "Ignore") validation = FieldValidation::kIgnore;
  if (!fv.empty() && fv != "Strict" && fv != "Ignore" && fv != "Warn")
    return reply_error(req, bad_request("fieldValidation: Unsupported value: \"" + fv +
                                        "\": supported values: \"Ignore\", \"Warn\", \"Strict\""));

  // The body, parsed, for the verbs that take one. JSON only: a protobuf body (client-go's
  // typed clients send one for built-in types) is refused with 415, on which client-go 1.32+
  // retries the request in JSON.
  json body;
  if (header(req, "Content-Type").find("protobuf") != std::string::npos) {
    return reply_error(req, api_error(415, "UnsupportedMediaType",
                                      "the dev cluster reads JSON bodies only, not " + header(req, "Content-Type")));
  }
  if (method == methods::POST || method == methods::PUT || method == methods::PATCH ||
      (method == methods::DEL && !body_text.empty())) {
    const std::string& text = body_text;
    if (!text.empty()) {
      try {
        body = json::parse(text);
      } catch (const json::parse_error& ex) {
        return reply_error(req, bad_request(std::string("the request body is not valid JSON: ") + ex.what()));
      }
    } else if (method != methods::DEL) {
      return reply_error(req, bad_request("the request body is empty"));
    }
  }

  if (method == methods::GET) {
    if (p.name.empty()) {
      if (p.watch_prefix || truthy(get(q, "watch"))) return handle_watch(req, t, ns, q);
      return handle_list(req, t, ns, q);
    }
    auto obj = store.get(t.key(), ns, p.name);
    if (!obj.ok()) return reply_error(req, not_found_error(resource_and_name(t, p.name) + " not found"));
    if (wants_table(header(req, "Accept"))) {
      const TableObjects inc = table_objects_of(q);
      return reply(req, 200,
                   render_table(t, {*obj}, obj->value("/metadata/resourceVersion"_json_pointer, std::string()), "", inc));
    }
    return reply(req, 200, *obj);
  }
  if (method == methods::POST) {
    if (!p.name.empty() && p.subresource == "binding" && t.resource == "pods") {
      auto r = bind_pod(api, ns, p.name, body);
      if (!r.ok()) return reply_error(req, r.error());
      return reply(req, 201, json{{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()},
                                  {"status", "Success"}, {"code", 201}});
    }
    if (!p.name.empty() && p.subresource == "eviction" && t.resource == "pods") {
      auto r = evict_pod(api, ns, p.name, body);
      if (!r.ok()) return reply_error(req, r.error());
      return reply(req, 201, *r);
    }
    if (!p.name.empty()) return reply_error(req, method_not_allowed("POST goes to the collection, not to a name"));
    if (t.namespaced && ns.empty())
      return reply_error(req, not_found_error("the server could not find the requested resource"));
    if (truthy(get(q, "dryRun")) || get(q, "dryRun") == "All")
      return reply_error(req, bad_request("dryRun is not supported by the dev cluster"));
    auto r = api.create(t, ns, body, validation);
    if (!r.ok()) return reply_error(req, r.error());
    after_write(t, r->object);
    return reply(req, 201, r->object, r->warnings);
  }
  if (method == methods::PUT) {
    if (p.name.empty()) return reply_error(req, method_not_allowed("PUT needs a name"));
    const std::string sub = p.subresource == "finalize" ? "" : p.subresource;
    ApiResult<WriteResult> r = bad_request("unreachable");
    if (p.subresource == "finalize") {
      // Namespace finalize: only spec.finalizers changes.
      r = api.patch(t, ns, p.name, PatchType::kMerge,
                    json{{"spec", {{"finalizers", body.value("/spec/finalizers"_json_pointer, json::array())}}}}, "",
                    validation);
    } else {
      r = api.update(t, ns, p.name, body, sub, validation);
    }
    if (!r.ok()) return reply_error(req, r.error());
    after_write(t, r->object);
    return reply(req, 200, r->object, r->warnings);
  }
  if (method == methods::PATCH) {
    if (p.name.empty()) return reply_error(req, method_not_allowed("PATCH needs a name"));
    const std::string ct = req.headers().content_type();
    PatchType pt;
    if (ct.rfind("application/json-patch+json", 0) == 0) {
      pt = PatchType::kJson;
    } else if (ct.rfind("application/merge-patch+json", 0) == 0) {
      pt = PatchType::kMerge;
    } else if (ct.rfind("application/strategic-merge-patch+json", 0) == 0) {
      pt = PatchType::kStrategic;
    } else if (ct.rfind("application/apply-patch", 0) == 0) {
      return reply_error(req, api_error(415, "UnsupportedMediaType",
                                        "server-side apply is not supported by the dev cluster; use client-side "
                                        "`kubectl apply` (the default)"));
    } else {
      return reply_error(req, api_error(415, "UnsupportedMediaType",
                                        "the body of the request was in an unknown format - accepted media types "
                                        "include: application/json-patch+json, application/merge-patch+json, "
                                        "application/strategic-merge-patch+json"));
    }
    auto r = api.patch(t, ns, p.name, pt, body, p.subresource, validation);
    if (!r.ok()) return reply_error(req, r.error());
    after_write(t, r->object);
    return reply(req, 200, r->object, r->warnings);
  }
  if (method == methods::DEL) {
    DeleteOptions options;
    const json b = body.is_object() ? body : json::object();
    if (b.contains("gracePeriodSeconds") && b["gracePeriodSeconds"].is_number_integer())
      options.grace_period_seconds = b["gracePeriodSeconds"].get<int64_t>();
    if (!get(q, "gracePeriodSeconds").empty()) options.grace_period_seconds = std::atoll(get(q, "gracePeriodSeconds").c_str());
    options.propagation_policy = b.value("propagationPolicy", get(q, "propagationPolicy"));
    if (!options.propagation_policy.empty() && options.propagation_policy != "Background" &&
        options.propagation_policy != "Foreground" && options.propagation_policy != "Orphan") {
      return reply_error(req, bad_request("propagationPolicy: Unsupported value: \"" + options.propagation_policy +
                                          "\": supported values: \"Background\", \"Foreground\", \"Orphan\""));
    }
    if (b.contains("preconditions") && b["preconditions"].is_object()) {
      if (b["preconditions"].contains("uid")) options.precondition_uid = b["preconditions"].value("uid", std::string());
      if (b["preconditions"].contains("resourceVersion"))
        options.precondition_resource_version = b["preconditions"].value("resourceVersion", std::string());
    }
    if (!p.name.empty()) {
      auto r = api.remove(t, ns, p.name, options);
      if (!r.ok()) return reply_error(req, r.error());
      return reply(req, 200, *r);
    }
    // deletecollection
    auto labels = LabelSelector::parse(get(q, "labelSelector"));
    auto fields = FieldSelector::parse(get(q, "fieldSelector"), t.kind);
    if (!labels.ok()) return reply_error(req, bad_request(labels.status().message()));
    if (!fields.ok()) return reply_error(req, bad_request(fields.status().message()));
    json items = json::array();
    for (const auto& o : store.list(t.key(), ns).items) {
      if (!labels->matches(o.value("/metadata/labels"_json_pointer, json())) || !fields->matches(o)) continue;
      auto r = api.remove(t, ns.empty() ? o.value("/metadata/namespace"_json_pointer, std::string()) : ns,
                          o.value("/metadata/name"_json_pointer, std::string()), options);
      if (r.ok()) items.push_back(*r);
    }
    return reply(req, 200, json{{"kind", t.kind + "List"}, {"apiVersion", t.api_version()},
                                {"metadata", {{"resourceVersion", std::to_string(store.resource_version())}}},
                                {"items", items}});
  }
  reply_error(req, method_not_allowed("method " + method + " is not supported"));
}

void ApiServer::Impl::handle_list(http_request req, const ResourceType& t, const std::string& ns,
                                  const std::map<std::string, std::string>& q) {
  auto labels = LabelSelector::parse(get(q, "labelSelector"));
  if (!labels.ok()) return reply_error(req, bad_request(labels.status().message()));
  auto fields = FieldSelector::parse(get(q, "fieldSelector"), t.kind);
  if (!fields.ok()) return reply_error(req, bad_request(fields.status().message()));
  const auto listed = store.list(t.key(), ns);
  std::vector<json> items;
  for (const auto& o : listed.items)
    if (labels->matches(o.value("/metadata/labels"_json_pointer, json())) && fields->matches(o)) items.push_back(o);
  // Paging: the continue token is the index of the next item in this (re-listed) order.
  size_t start = 0;
  const std::string cont = get(q, "continue");
  if (!cont.empty()) {
    if (cont.rfind("i", 0) != 0) return reply_error(req, bad_request("continue: not a token this server gave"));
    start = std::strtoull(cont.c_str() + 1, nullptr, 10);
  }
  const long long limit = std::atoll(get(q, "limit").c_str());
  std::string next_token;
  std::vector<json> page;
  for (size_t i = start; i < items.size(); ++i) {
    if (limit > 0 && page.size() >= static_cast<size_t>(limit)) {
      next_token = "i" + std::to_string(i);
      break;
    }
    page.push_back(items[i]);
  }
  const std::string rv = std::to_string(listed.resource_version);
  const std::string accept = header(req, "Accept");
  if (wants_table(accept)) {
    const TableObjects inc = table_objects_of(q);
    return reply(req, 200, render_table(t, page, rv, next_token, inc));
  }
  json meta = {{"resourceVersion", rv}};
  if (!next_token.empty()) {
    meta["continue"] = next_token;
    meta["remainingItemCount"] = items.size() - start - page.size();
  }
  reply(req, 200, json{{"kind", t.kind + "List"}, {"apiVersion", t.api_version()}, {"metadata", meta}, {"items", page}});
}

void ApiServer::Impl::handle_watch(http_request req, const ResourceType& t, const std::string& ns,
                                   const std::map<std::string, std::string>& q) {
  auto labels = LabelSelector::parse(get(q, "labelSelector"));
  if (!labels.ok()) return reply_error(req, bad_request(labels.status().message()));
  auto fields = FieldSelector::parse(get(q, "fieldSelector"), t.kind);
  if (!fields.ok()) return reply_error(req, bad_request(fields.status().message()));
  auto conn = std::make_shared<WatchConn>();
  conn->type = t;
  conn->ns = ns;
  conn->labels = *labels;
  conn->fields = *fields;
  conn->bookmarks = truthy(get(q, "allowWatchBookmarks"));
  const std::string accept = header(req, "Accept");
  conn->table = wants_table(accept);
  conn->table_objects = table_objects_of(q);
  if (!get(q, "timeoutSeconds").empty())
    conn->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::atoll(get(q, "timeoutSeconds").c_str()));

  http_response r(web::http::status_codes::OK);
  r.headers().set_content_type("application/json");
  r.headers().add("Cache-Control", "no-cache, private");
  r.set_body(conn->buffer.create_istream());

  // From a version: the changes after it. Without one ("" or "0"): every object now, as ADDED.
  const std::string rv_text = get(q, "resourceVersion");
  std::optional<uint64_t> from;
  if (!rv_text.empty() && rv_text != "0") {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(rv_text.c_str(), &end, 10);
    if (end == rv_text.c_str() || *end != '\0')
      return reply_error(req, bad_request("resourceVersion: Invalid value: \"" + rv_text + "\": not a number"));
    from = v;
  } else {
    const auto now = store.list(t.key(), ns);
    for (const auto& o : now.items)
      if (conn->matches(o)) conn->write_line(json{{"type", "ADDED"}, {"object", conn->wrap(o)}});
    from = now.resource_version;
  }
  std::weak_ptr<WatchConn> weak_conn = conn;
  auto id = store.watch(t.key(), from, [weak_conn](const StoreEvent& ev) {
    auto c = weak_conn.lock();
    if (!c) return;
    const bool now_in = ev.type != EventType::kDeleted && c->matches(ev.object);
    const bool was_in = !ev.previous.is_null() && c->matches(ev.previous);
    const char* type = nullptr;
    if (ev.type == EventType::kAdded && now_in) type = "ADDED";
    if (ev.type == EventType::kModified) type = now_in && was_in ? "MODIFIED" : now_in ? "ADDED" : was_in ? "DELETED" : nullptr;
    if (ev.type == EventType::kDeleted && (was_in || c->matches(ev.object))) type = "DELETED";
    if (type != nullptr) c->write_line(json{{"type", type}, {"object", c->wrap(ev.object)}});
  });
  if (!id.ok()) {
    // As kube-apiserver: the stream opens and carries one ERROR event (410 Gone), then ends.
    conn->write_line(json{{"type", "ERROR"}, {"object", id.error().to_status_json()}});
    conn->close();
  } else {
    conn->store_watch = *id;
    // stop() sets `stopping` before it takes the open watches under this lock: a watch that
    // opens while the server stops ends here at once (the listener's close waits for every reply).
    std::lock_guard lock(watches_mu);
    if (stopping) {
      store.unwatch(conn->store_watch);
      conn->close();
    } else {
      watches[conn.get()] = conn;
    }
  }
  std::weak_ptr<Impl> weak = weak_from_this();
  req.reply(r).then([weak, conn](pplx::task<void> t2) {
    try {
      t2.get();
    } catch (...) {
    }
    auto self = weak.lock();
    if (!self) return;
    self->store.unwatch(conn->store_watch);
    conn->close();
    std::lock_guard lock(self->watches_mu);
    self->watches.erase(conn.get());
  });
}

void ApiServer::Impl::tick_loop() {
  auto next_bookmark = std::chrono::steady_clock::now() + options.bookmark_interval;
  for (;;) {
    {
      std::unique_lock lock(tick_mu);
      tick_cv.wait_for(lock, kTickInterval, [&] { return stopping.load(); });
      if (stopping) return;
    }
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<WatchConn>> open;
    {
      std::lock_guard lock(watches_mu);
      for (const auto& [k, c] : watches) open.push_back(c);
    }
    const bool bookmark = now >= next_bookmark;
    if (bookmark) next_bookmark = now + options.bookmark_interval;
    const std::string rv = std::to_string(store.resource_version());
    for (const auto& c : open) {
      if (c->deadline && now >= *c->deadline) {
        store.unwatch(c->store_watch);
        c->close();
        continue;
      }
      if (bookmark && c->bookmarks) {
        c->write_line(json{{"type", "BOOKMARK"},
                           {"object", {{"kind", c->type.kind},
                                       {"apiVersion", c->type.api_version()},
                                       {"metadata", {{"resourceVersion", rv}}}}}});
      }
    }
    if (!options.state_file.empty() && store.write_count() != saved_writes) {
      static auto last_save = std::chrono::steady_clock::time_point{};
      if (now - last_save >= kSaveInterval) {
        last_save = now;
        if (Status st = save_state(); !st.ok()) log_warn("state file: " + st.message());
      }
    }
  }
}

Status ApiServer::Impl::save_state() {
  const uint64_t writes = store.write_count();
  const json dump = store.dump();
  const std::string tmp = options.state_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return unavailable("cannot write " + tmp);
    out << dump.dump();
    if (!out) return unavailable("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, options.state_file, ec);
  if (ec) return unavailable("cannot rename " + tmp + " to " + options.state_file + ": " + ec.message());
  saved_writes = writes;
  return Status::ok_status();
}

StatusOr<std::unique_ptr<ApiServer>> ApiServer::start(ApiServerOptions options) {
  if (options.port == 0) {
    auto port = http::pick_free_port();
    if (!port.ok()) return port.status();
    options.port = *port;
  }
  auto impl = std::make_shared<Impl>(std::move(options));
  if (!impl->options.state_file.empty() && std::filesystem::exists(impl->options.state_file)) {
    std::ifstream in(impl->options.state_file);
    json dump;
    try {
      dump = json::parse(in);
    } catch (const json::parse_error& ex) {
      return data_loss("state file " + impl->options.state_file + " is not JSON: " + ex.what());
    }
    if (Status st = impl->store.restore(dump); !st.ok())
      return st.with_context("state file " + impl->options.state_file);
    for (const auto& crd : impl->store.list("apiextensions.k8s.io/customresourcedefinitions", "").items)
      impl->controllers.register_crd(crd);
    impl->saved_writes = impl->store.write_count();
  }
  // The namespaces every cluster has.
  auto ns_type = impl->registry.find("", "v1", "namespaces");
  for (const char* ns : {"default", "kube-system", "kube-public", "kube-node-lease"}) {
    if (impl->store.get("namespaces", "", ns).ok()) continue;
    auto r = impl->api.create(*ns_type, "", json{{"metadata", {{"name", ns}}}}, FieldValidation::kStrict);
    if (!r.ok()) return internal_error("creating namespace " + std::string(ns) + ": " + r.error().message);
  }
  impl->controllers.start();
  const std::string url = impl->url();
  std::weak_ptr<Impl> weak = impl;
  auto listener = http::open_listener(
      url,
      [weak](http_request req, std::string body) {
        if (auto self = weak.lock()) self->handle(req, body);
      },
      [](const http_request&, int status, const std::string& message) {
        const char* reason = status == 413 ? "RequestEntityTooLarge" : status == 400 ? "BadRequest" : "InternalError";
        return api_error(status, reason, message).to_status_json();
      },
      kMaxRequestBodyBytes);
  if (!listener.ok()) {
    impl->controllers.stop();
    return listener.status();
  }
  impl->listener = std::move(listener).value();
  impl->ticker = std::thread([raw = impl.get()] { raw->tick_loop(); });
  log_info("dev cluster API server on " + url);
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

ApiServer::ApiServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() { stop(); }

void ApiServer::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->tick_cv.notify_all();
  if (impl_->ticker.joinable()) impl_->ticker.join();
  std::vector<std::shared_ptr<WatchConn>> open;
  {
    std::lock_guard lock(impl_->watches_mu);
    for (const auto& [k, c] : impl_->watches) open.push_back(c);
  }
  for (const auto& c : open) {
    impl_->store.unwatch(c->store_watch);
    c->close();
  }
  try {
    impl_->listener->close().wait();
  } catch (const std::exception&) {
  }
  impl_->controllers.stop();
  if (!impl_->options.state_file.empty()) {
    if (Status st = impl_->save_state(); !st.ok()) log_warn("state file: " + st.message());
  }
}

std::map<std::string, int64_t> ApiServer::requests_by_user_agent() const {
  std::lock_guard<std::mutex> lk(impl_->requests_mu);
  return impl_->requests_by_agent;
}

std::string ApiServer::url() const { return impl_->url(); }
ApiObjects& ApiServer::api() { return impl_->api; }
ObjectStore& ApiServer::store() { return impl_->store; }

Status ApiServer::write_kubeconfig(const std::string& path) const {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::ofstream out(path, std::ios::trunc);
  if (!out) return unavailable("cannot write kubeconfig " + path);
  out << "apiVersion: v1\n"
         "kind: Config\n"
         "clusters:\n"
         "- name: hotswap-dev\n"
         "  cluster:\n"
         "    server: "
      << url()
      << "\n"
         "contexts:\n"
         "- name: hotswap-dev\n"
         "  context:\n"
         "    cluster: hotswap-dev\n"
         "    user: hotswap-dev\n"
         "    namespace: default\n"
         "current-context: hotswap-dev\n"
         "users:\n"
         "- name: hotswap-dev\n"
         "  user:\n";
  if (!impl_->options.token.empty()) out << "    token: " << impl_->options.token << "\n";
  else out << "    {}\n";
  if (!out) return unavailable("cannot write kubeconfig " + path);
  return Status::ok_status();
}

}  // namespace hotswap::devcluster
