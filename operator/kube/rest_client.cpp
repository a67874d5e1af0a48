#include "operator/kube/rest_client.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "common/log.h"

namespace hotswap::kube {

using nlohmann::json;

namespace {

Status check_segment(const std::string& value, const char* what) {
  if (value.empty()) return invalid_argument(std::string(what) + " is empty");
  if (value == "." || value == ".." || value.find('/') != std::string::npos) {
    return invalid_argument(std::string(what) + " '" + value + "' may not be '.', '..' or contain '/'");
  }
  return Status();
}

std::string enc(const std::string& s) {
  return web::uri::encode_data_string(s);
}

void add_param(std::string& q, const char* key, const std::string& value) {
  q += q.empty() ? "?" : "&";
  q += key;
  q += "=";
  q += enc(value);
}

std::string write_query(const WriteOptions& o) {
  std::string q;
  if (!o.field_manager.empty()) add_param(q, "fieldManager", o.field_manager);
  if (!o.field_validation.empty()) add_param(q, "fieldValidation", o.field_validation);
  if (o.dry_run) add_param(q, "dryRun", "All");
  if (o.force) add_param(q, "force", "true");
  return q;
}

// PEM checks at create(), so a broken certificate fails with a message, not inside a TLS handshake.
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<X509, X509Free> read_cert(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return cert;
}

std::unique_ptr<EVP_PKEY, PkeyFree> read_key(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  std::unique_ptr<EVP_PKEY, PkeyFree> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return key;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t b = s.find_first_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b);
}

}  // namespace

StatusOr<std::string> resource_path(const ResourceRef& ref) {
  if (ref.version.empty()) return invalid_argument("resource reference: version is empty");
  HOTSWAP_RETURN_IF_ERROR(check_segment(ref.resource, "resource"));
  if (!ref.group.empty()) HOTSWAP_RETURN_IF_ERROR(check_segment(ref.group, "group"));
  HOTSWAP_RETURN_IF_ERROR(check_segment(ref.version, "version"));
  std::string path =
      ref.group.empty() ? "/api/" + enc(ref.version) : "/apis/" + enc(ref.group) + "/" + enc(ref.version);
  if (!ref.ns.empty()) {
    HOTSWAP_RETURN_IF_ERROR(check_segment(ref.ns, "namespace"));
    path += "/namespaces/" + enc(ref.ns);
  }
  path += "/" + enc(ref.resource);
  if (!ref.name.empty()) {
    HOTSWAP_RETURN_IF_ERROR(check_segment(ref.name, "name"));
    path += "/" + enc(ref.name);
  }
  if (!ref.subresource.empty()) {
    if (ref.name.empty()) {
      return invalid_argument("resource reference: subresource '" + ref.subresource + "' of " + ref.resource +
                              " needs an object name");
    }
    HOTSWAP_RETURN_IF_ERROR(check_segment(ref.subresource, "subresource"));
    path += "/" + enc(ref.subresource);
  }
  return path;
}

std::string list_query(const ListOptions& o) {
  std::string q;
  if (!o.label_selector.empty()) add_param(q, "labelSelector", o.label_selector);
  if (!o.field_selector.empty()) add_param(q, "fieldSelector", o.field_selector);
  if (!o.resource_version.empty()) add_param(q, "resourceVersion", o.resource_version);
  if (!o.resource_version_match.empty()) add_param(q, "resourceVersionMatch", o.resource_version_match);
  if (o.limit > 0) add_param(q, "limit", std::to_string(o.limit));
  if (!o.continue_token.empty()) add_param(q, "continue", o.continue_token);
  if (o.timeout_seconds > 0) add_param(q, "timeoutSeconds", std::to_string(o.timeout_seconds));
  if (o.allow_watch_bookmarks) add_param(q, "allowWatchBookmarks", "true");
  return q;
}

json DeleteOptions::to_json() const {
  json j = json::object();
  if (!propagation_policy.empty()) j["propagationPolicy"] = propagation_policy;
  if (grace_period_seconds) j["gracePeriodSeconds"] = *grace_period_seconds;
  if (!precondition_resource_version.empty()) j["preconditions"]["resourceVersion"] = precondition_resource_version;
  if (!precondition_uid.empty()) j["preconditions"]["uid"] = precondition_uid;
  if (dry_run) j["dryRun"] = json::array({"All"});
  if (j.empty()) return json();
  j["kind"] = "DeleteOptions";
  j["apiVersion"] = "v1";
  return j;
}

const char* patch_content_type(PatchType type) {
  switch (type) {
    case PatchType::kMerge:
      return "application/merge-patch+json";
    case PatchType::kJson:
      return "application/json-patch+json";
    case PatchType::kStrategicMerge:
      return "application/strategic-merge-patch+json";
    case PatchType::kApply:
      return "application/apply-patch+yaml";  // JSON is YAML
  }
  return "application/merge-patch+json";
}

StatusCode status_code_for_http(int code) {
  if (code == 0) return StatusCode::kUnavailable;
  if (code == 400 || code == 413 || code == 415 || code == 422) return StatusCode::kInvalidArgument;
  if (code == 404) return StatusCode::kNotFound;
  if (code == 401 || code == 403 || code == 409 || code == 410 || code == 412) return StatusCode::kFailedPrecondition;
  if (code == 405 || code == 501) return StatusCode::kUnimplemented;
  if (code == 429 || code >= 500) return StatusCode::kUnavailable;
  return StatusCode::kInternal;
}

ApiError api_error_from_body(int http_code, const std::string& body) {
  ApiError e;
  e.http_code = http_code;
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.value("kind", std::string()) == "Status") {
    if (j.contains("reason") && j["reason"].is_string()) e.reason = j["reason"].get<std::string>();
    if (j.contains("message") && j["message"].is_string()) e.message = j["message"].get<std::string>();
    if (j.contains("details")) e.details = j["details"];
    // The Status object's code wins: a watch's ERROR event carries it without an HTTP status.
    if (j.contains("code") && j["code"].is_number_integer() && j["code"].get<int>() != 0) {
      e.http_code = j["code"].get<int>();
    }
  } else {
    e.message = body.size() > 512 ? body.substr(0, 512) + "..." : body;
  }
  if (e.message.empty()) e.message = "(no message)";
  return e;
}

RestClient::RestClient(ClusterConfig config, RestClientOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      token_(config_.token),
      token_read_at_(std::chrono::steady_clock::now()) {}

StatusOr<std::unique_ptr<RestClient>> RestClient::create(ClusterConfig config, RestClientOptions options) {
  const std::string where = config.origin.empty() ? std::string("cluster config") : config.origin;
  if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
    return invalid_argument(where + ": server '" + config.server + "' must start with https:// or http://");
  }
  while (config.server.size() > 1 && config.server.back() == '/') config.server.pop_back();
  if (!config.ca_pem.empty() && !read_cert(config.ca_pem)) {
    return invalid_argument(where + ": the certificate authority is not a readable PEM certificate");
  }
  if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
    return invalid_argument(where + ": a client certificate needs its key, and a key its certificate");
  }
  if (!config.client_cert_pem.empty()) {
    auto cert = read_cert(config.client_cert_pem);
    if (!cert) return invalid_argument(where + ": the client certificate is not a readable PEM certificate");
    auto key = read_key(config.client_key_pem);
    if (!key) return invalid_argument(where + ": the client key is not a readable PEM private key");
    bool match = X509_check_private_key(cert.get(), key.get()) == 1;
    ERR_clear_error();
    if (!match) return invalid_argument(where + ": the client key does not match the client certificate");
  }
  std::unique_ptr<RestClient> c(new RestClient(std::move(config), std::move(options)));
  try {
    c->client_ = c->make_http_client(c->options_.timeout);
  } catch (const std::exception& e) {
    return invalid_argument(where + ": server '" + c->config_.server + "': " + e.what());
  }
  return c;
}

web::http::client::http_client_config RestClient::client_config(std::chrono::milliseconds timeout) const {
  web::http::client::http_client_config cfg;
  cfg.set_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  if (config_.insecure_skip_tls_verify) cfg.set_validate_certificates(false);
  if (!config_.username.empty()) cfg.set_credentials(web::credentials(config_.username, config_.password));
  if (!config_.ca_pem.empty() || !config_.client_cert_pem.empty()) {
    cfg.set_ssl_context_callback([ca = config_.ca_pem, cert = config_.client_cert_pem,
                                  key = config_.client_key_pem](boost::asio::ssl::context& ctx) {
      if (!ca.empty()) {
        // Only the named CA, as kubectl: cpprest loads the system roots first; replace them.
        SSL_CTX_set_cert_store(ctx.native_handle(), X509_STORE_new());
        ctx.add_certificate_authority(boost::asio::buffer(ca.data(), ca.size()));
      }
      if (!cert.empty()) {
        ctx.use_certificate_chain(boost::asio::buffer(cert.data(), cert.size()));
        ctx.use_private_key(boost::asio::buffer(key.data(), key.size()), boost::asio::ssl::context::pem);
      }
    });
  }
  return cfg;
}

std::unique_ptr<web::http::client::http_client> RestClient::make_http_client(std::chrono::milliseconds timeout) const {
  return std::make_unique<web::http::client::http_client>(web::uri(config_.server), client_config(timeout));
}

std::string RestClient::current_token() const {
  std::lock_guard<std::mutex> lk(token_mu_);
  if (config_.token_file.empty()) return token_;
  auto now = std::chrono::steady_clock::now();
  if (now - token_read_at_ < options_.token_reload_period) return token_;
  token_read_at_ = now;
  std::ifstream in(config_.token_file);
  std::stringstream ss;
  if (in) ss << in.rdbuf();
  std::string t = trimmed(ss.str());
  if (!in || t.empty()) {
    log_warn("kube: cannot re-read token file " + config_.token_file + "; keeping the previous token");
  } else {
    token_ = std::move(t);
  }
  return token_;
}

web::http::http_request RestClient::new_request(const web::http::method& method,
                                                const std::string& path_and_query) const {
  web::http::http_request req(method);
  req.set_request_uri(web::uri(path_and_query));
  req.headers().add(web::http::header_names::accept, "application/json");
  req.headers().add(web::http::header_names::user_agent, options_.user_agent);
  std::string token = current_token();
  if (!token.empty()) req.headers().add(web::http::header_names::authorization, "Bearer " + token);
  return req;
}

ApiResult RestClient::call(const web::http::method& method, const std::string& path_and_query, const json* body,
                           const std::string& content_type) const {
  const std::string what = method + " " + path_and_query.substr(0, path_and_query.find('?'));
  std::string body_text;
  if (body != nullptr && !body->is_null()) {
    try {
      body_text = body->dump();
    } catch (const std::exception& e) {
      ApiError err;
      err.message = e.what();
      return ApiResult(invalid_argument(what + ": the body cannot be encoded: " + e.what()), err);
    }
  }
  try {
    web::http::http_request req = new_request(method, path_and_query);
    if (body != nullptr && !body->is_null()) req.set_body(std::move(body_text), content_type);
    web::http::http_response resp = client_->request(req).get();
    std::string text = resp.extract_utf8string(true).get();
    const int code = resp.status_code();
    if (code >= 200 && code < 300) {
      if (text.empty()) return ApiResult(json::object());
      json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return ApiResult(json(std::move(text)));
      return ApiResult(std::move(j));
    }
    ApiError err = api_error_from_body(code, text);
    err.http_code = code;  // the HTTP status is what happened to this call
    auto ra = resp.headers().find("Retry-After");
    if (ra != resp.headers().end()) {
      try {
        err.retry_after_seconds = std::stoi(ra->second);
      } catch (const std::exception&) {
      }
    }
    std::string msg =
        what + ": " + std::to_string(code) + (err.reason.empty() ? "" : " " + err.reason) + ": " + err.message;
    return ApiResult(Status(status_code_for_http(code), msg), err);
  } catch (const std::exception& e) {
    ApiError err;
    err.message = e.what();
    return ApiResult(unavailable(what + " on " + config_.server + ": " + e.what()), err);
  }
}

ApiResult RestClient::verb(const web::http::method& method, const ResourceRef& ref, const std::string& query,
                           const json* body, const std::string& content_type) const {
  auto path = resource_path(ref);
  if (!path.ok()) {
    ApiError err;
    err.message = path.status().message();
    return ApiResult(path.status(), err);
  }
  return call(method, *path + query, body, content_type);
}

ApiResult RestClient::get(const ResourceRef& object, const ListOptions& options) const {
  return verb(web::http::methods::GET, object, list_query(options), nullptr, "");
}

ApiResult RestClient::list(const ResourceRef& collection, const ListOptions& options) const {
  if (!collection.name.empty()) {
    return ApiResult(invalid_argument("list " + collection.resource + ": the reference names an object ('" +
                                      collection.name + "'); a list needs a collection"),
                     ApiError{});
  }
  return verb(web::http::methods::GET, collection, list_query(options), nullptr, "");
}

ApiResult RestClient::list_all(const ResourceRef& collection, ListOptions options) const {
  if (options.limit <= 0) options.limit = 500;
  json all;
  json items = json::array();
  // Bounded: a server that keeps returning a continue token for ever is a broken server.
  for (int page = 0; page < 100000; ++page) {
    ApiResult r = list(collection, options);
    if (!r.ok()) return r;
    json& l = r.value();
    if (l.contains("items") && l["items"].is_array()) {
      for (auto& item : l["items"]) items.push_back(std::move(item));
    }
    std::string next;
    if (l.contains("metadata") && l["metadata"].is_object()) next = l["metadata"].value("continue", std::string());
    if (next.empty()) {
      all = std::move(l);
      if (all.contains("metadata") && all["metadata"].is_object()) {
        all["metadata"].erase("continue");
        all["metadata"].erase("remainingItemCount");
      }
      all["items"] = std::move(items);
      return ApiResult(std::move(all));
    }
    options.continue_token = next;
  }
  return ApiResult(internal_error("list " + collection.resource + ": more than 100000 pages"), ApiError{});
}

ApiResult RestClient::create(const ResourceRef& ref, const json& object, const WriteOptions& options) const {
  return verb(web::http::methods::POST, ref, write_query(options), &object, "application/json");
}

ApiResult RestClient::update(const ResourceRef& object_ref, const json& object, const WriteOptions& options) const {
  if (object_ref.name.empty()) {
    return ApiResult(invalid_argument("update " + object_ref.resource + ": the reference has no name"), ApiError{});
  }
  return verb(web::http::methods::PUT, object_ref, write_query(options), &object, "application/json");
}

ApiResult RestClient::patch(const ResourceRef& object_ref, PatchType type, const json& patch,
                            const WriteOptions& options) const {
  if (object_ref.name.empty()) {
    return ApiResult(invalid_argument("patch " + object_ref.resource + ": the reference has no name"), ApiError{});
  }
  if (type == PatchType::kApply && options.field_manager.empty()) {
    return ApiResult(invalid_argument("apply patch of " + object_ref.resource + "/" + object_ref.name +
                                      ": a field manager is required"),
                     ApiError{});
  }
  return verb(web::http::methods::PATCH, object_ref, write_query(options), &patch, patch_content_type(type));
}

ApiResult RestClient::remove(const ResourceRef& object_ref, const DeleteOptions& options) const {
  if (object_ref.name.empty()) {
    return ApiResult(invalid_argument("delete " + object_ref.resource +
                                      ": the reference has no name; "
                                      "use remove_collection"),
                     ApiError{});
  }
  json body = options.to_json();
  return verb(web::http::methods::DEL, object_ref, "", &body, "application/json");
}

ApiResult RestClient::remove_collection(const ResourceRef& collection, const ListOptions& selector,
                                        const DeleteOptions& options) const {
  if (!collection.name.empty()) {
    return ApiResult(invalid_argument("delete collection " + collection.resource + ": the reference names an object"),
                     ApiError{});
  }
  json body = options.to_json();
  return verb(web::http::methods::DEL, collection, list_query(selector), &body, "application/json");
}

}  // namespace hotswap::kube
