// A synchronous client for the Kubernetes REST API over cpprestsdk: get, list, create, update,
// patch (merge, JSON, strategic merge, server-side apply), delete and subresources of any
// resource addressed by a ResourceRef, with objects as JSON. Errors keep the API server's
// Status object (reason, code, message) so a caller can tell 404 NotFound from 409 Conflict or
// AlreadyExists, 410 Gone, 422 Invalid and 429 TooManyRequests.
//
// Authentication and transport come from a ClusterConfig: bearer token (re-read from its file
// as it rotates), basic auth or a client certificate; TLS verified against the config's CA only
// (not the system roots) when it names one, or not at all with insecure-skip-tls-verify; plain
// http for http:// servers.
//
// Threads: a RestClient is immutable after create() except for the token it re-reads under a
// lock, so any number of threads may call it at once. Calls block the caller for up to the
// request timeout; do not call them on cpprest's own threads (listener handlers, task
// continuations), which would wait on the pool they occupy.
#pragma once

#include <cpprest/http_client.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/status.h"
#include "operator/kube/kubeconfig.h"

namespace hotswap::kube {

// What a request addresses: a collection (no name), an object, or an object's subresource.
// namespace empty: a cluster-scoped resource, or a collection across all namespaces.
struct ResourceRef {
  std::string group;     // "" for the core group (/api/v1), "hotswap.io" (/apis/hotswap.io/v1alpha1)
  std::string version;   // "v1", "v1alpha1"
  std::string resource;  // the plural: "pods", "leases", "modeldeployments"
  std::string ns;        // namespace
  std::string name;
  std::string subresource;  // "status", "eviction", "log", ...

  static ResourceRef core(std::string resource) { return {"", "v1", std::move(resource), "", "", ""}; }
  static ResourceRef of(std::string group, std::string version, std::string resource) {
    return {std::move(group), std::move(version), std::move(resource), "", "", ""};
  }
  ResourceRef in(std::string n) const {
    ResourceRef r = *this;
    r.ns = std::move(n);
    return r;
  }
  ResourceRef named(std::string n) const {
    ResourceRef r = *this;
    r.name = std::move(n);
    return r;
  }
  ResourceRef sub(std::string s) const {
    ResourceRef r = *this;
    r.subresource = std::move(s);
    return r;
  }
  std::string api_version() const { return group.empty() ? version : group + "/" + version; }
};

// "/api/v1/namespaces/ns/pods/p/status", "/apis/coordination.k8s.io/v1/namespaces/ns/leases",
// "/api/v1/nodes/n". Names and namespaces are checked (no '/', not "." or "..") and escaped.
StatusOr<std::string> resource_path(const ResourceRef& ref);

// Query parameters of get, list and watch. Unset fields are not sent.
struct ListOptions {
  std::string label_selector;          // "app=x,tier in (a,b)"
  std::string field_selector;          // "spec.nodeName=n1"
  std::string resource_version;        // list: "" newest, "0" any cached; watch: start after this
  std::string resource_version_match;  // "NotOlderThan", "Exact"
  int64_t limit = 0;                   // page size; 0: all
  std::string continue_token;          // the previous page's metadata.continue
  int64_t timeout_seconds = 0;         // the server ends a list or watch after this; 0: server default
  bool allow_watch_bookmarks = false;
};
// "?labelSelector=app%3Dx&limit=5": empty when nothing is set.
std::string list_query(const ListOptions& options);

struct WriteOptions {
  std::string field_manager;     // required for apply patches
  std::string field_validation;  // "Strict", "Warn", "Ignore"
  bool dry_run = false;          // dryRun=All
  bool force = false;            // apply: take over fields other managers own
};

struct DeleteOptions {
  std::string propagation_policy;  // "Foreground", "Background", "Orphan"
  std::optional<int64_t> grace_period_seconds;
  std::string precondition_resource_version;  // delete only this version
  std::string precondition_uid;
  bool dry_run = false;
  // The DeleteOptions object sent as the body; null when nothing is set.
  nlohmann::json to_json() const;
};

enum class PatchType { kMerge, kJson, kStrategicMerge, kApply };
const char* patch_content_type(PatchType type);

// Why a call failed, as the API server said it (its Status object) or as the transport saw it.
struct ApiError {
  int http_code = 0;            // 0: no HTTP answer (refused, reset, timed out, TLS)
  std::string reason;           // Status.reason: NotFound, AlreadyExists, Conflict, Expired, Gone, Invalid, ...
  std::string message;          // Status.message, the body, or the transport error
  nlohmann::json details;       // Status.details when present (causes of an Invalid)
  int retry_after_seconds = 0;  // from the Retry-After header (429, 503)

  bool is_not_found() const { return http_code == 404; }
  bool is_already_exists() const { return http_code == 409 && reason == "AlreadyExists"; }
  bool is_conflict() const { return http_code == 409 && reason != "AlreadyExists"; }
  bool is_gone() const { return http_code == 410; }  // a resourceVersion too old: relist
  bool is_invalid() const { return http_code == 422; }
  bool is_too_many_requests() const { return http_code == 429; }
  bool is_transport() const { return http_code == 0; }
};

// Our StatusCode for an API error: 400/422 invalid argument, 404 not found, 409/410/401/403
// failed precondition, 405/501 unimplemented, 429/5xx/no answer unavailable, others internal.
StatusCode status_code_for_http(int http_code);
// Parses an error body: a Status object's reason/message/details, or the raw text.
ApiError api_error_from_body(int http_code, const std::string& body);

// The result of one call: the returned object (a non-JSON body as a JSON string), or a Status
// whose message is "VERB PATH: CODE REASON: server message", plus the ApiError. Usable with
// HOTSWAP_ASSIGN_OR_RETURN like a StatusOr<nlohmann::json>.
class [[nodiscard]] ApiResult {
 public:
  ApiResult(nlohmann::json object) : object_(std::move(object)) {}  // NOLINT
  ApiResult(Status status, ApiError error) : status_(std::move(status)), error_(std::move(error)) {}

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  const ApiError& error() const { return error_; }
  int http_code() const { return error_.http_code; }
  nlohmann::json& value() & { return object_; }
  const nlohmann::json& value() const& { return object_; }
  nlohmann::json value() && { return std::move(object_); }
  nlohmann::json* operator->() { return &object_; }
  const nlohmann::json& operator*() const& { return object_; }

 private:
  Status status_;
  ApiError error_;
  nlohmann::json object_;
};

struct RestClientOptions {
  // A call fails (unavailable) when the server sends nothing for this long.
  std::chrono::milliseconds timeout{30000};
  std::string user_agent = "hotswap/0.1";
  // How often a token from a file is re-read (projected service account tokens rotate).
  std::chrono::milliseconds token_reload_period{60000};
};

class RestClient {
 public:
  // Checks the config (server URL, PEM blocks) and builds the HTTP client; makes no request.
  static StatusOr<std::unique_ptr<RestClient>> create(ClusterConfig config, RestClientOptions options = {});

  ApiResult get(const ResourceRef& object, const ListOptions& options = {}) const;
  // The List object: {metadata: {resourceVersion, continue}, items: [...]}. One page when
  // options.limit is set; see list_all().
  ApiResult list(const ResourceRef& collection, const ListOptions& options = {}) const;
  // Every page, items concatenated; metadata.resourceVersion of the last page.
  ApiResult list_all(const ResourceRef& collection, ListOptions options = {}) const;
  // POST to the collection (ref without name), or to a subresource (pods/p/eviction).
  ApiResult create(const ResourceRef& ref, const nlohmann::json& object, const WriteOptions& options = {}) const;
  // PUT: metadata.resourceVersion in the object makes it conditional (409 Conflict if stale).
  ApiResult update(const ResourceRef& object_ref, const nlohmann::json& object, const WriteOptions& options = {}) const;
  // An apply patch needs options.field_manager.
  ApiResult patch(const ResourceRef& object_ref, PatchType type, const nlohmann::json& patch,
                  const WriteOptions& options = {}) const;
  // DELETE with a DeleteOptions body; returns what the server returned (the object or a Status).
  ApiResult remove(const ResourceRef& object_ref, const DeleteOptions& options = {}) const;
  ApiResult remove_collection(const ResourceRef& collection, const ListOptions& selector,
                              const DeleteOptions& options = {}) const;
  // Any call: path_and_query below the server URL ("/version", "/apis").
  ApiResult call(const web::http::method& method, const std::string& path_and_query, const nlohmann::json* body,
                 const std::string& content_type = "application/json") const;

  // For callers that stream (WatchStream): a request with this client's authentication and
  // headers, and an HTTP client for this server whose inactivity timeout is `timeout`.
  web::http::http_request new_request(const web::http::method& method, const std::string& path_and_query) const;
  std::unique_ptr<web::http::client::http_client> make_http_client(std::chrono::milliseconds timeout) const;

  const ClusterConfig& config() const { return config_; }
  const RestClientOptions& options() const { return options_; }

 private:
  RestClient(ClusterConfig config, RestClientOptions options);
  web::http::client::http_client_config client_config(std::chrono::milliseconds timeout) const;
  std::string current_token() const;
  ApiResult verb(const web::http::method& method, const ResourceRef& ref, const std::string& query,
                 const nlohmann::json* body, const std::string& content_type) const;

  ClusterConfig config_;
  RestClientOptions options_;
  std::unique_ptr<web::http::client::http_client> client_;
  mutable std::mutex token_mu_;
  mutable std::string token_;
  mutable std::chrono::steady_clock::time_point token_read_at_;
};

}  // namespace hotswap::kube
