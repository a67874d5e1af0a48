#include "operator/kube/kubeconfig.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace hotswap::kube {

namespace fs = std::filesystem;

namespace {

StatusOr<std::string> read_whole_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return not_found(what + " " + path + ": no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(what + " " + path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return data_loss(what + " " + path + ": read failed");
  return ss.str();
}

std::string trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool looks_like_pem(const std::string& s) {
  return s.find("-----BEGIN ") != std::string::npos;
}

// Messages all start "kubeconfig PATH: " and name the field by its place in the file, like
// "users[alice].user.client-key-data".
class KubeconfigReader {
 public:
  explicit KubeconfigReader(std::string path) : path_(std::move(path)), dir_(fs::path(path_).parent_path().string()) {}

  Status error(StatusCode code, const std::string& message) const {
    return Status(code, "kubeconfig " + path_ + ": " + message);
  }

  // A string field of a map: "" when absent or null; an error when it is not a scalar.
  Status string_field(const YAML::Node& map, const std::string& key, const std::string& where, std::string* out) const {
    out->clear();
    const YAML::Node v = map[key];
    if (!v.IsDefined() || v.IsNull()) return Status();
    if (!v.IsScalar()) return error(StatusCode::kInvalidArgument, where + "." + key + ": expected a string");
    *out = v.Scalar();
    return Status();
  }

  Status bool_field(const YAML::Node& map, const std::string& key, const std::string& where, bool* out) const {
    *out = false;
    const YAML::Node v = map[key];
    if (!v.IsDefined() || v.IsNull()) return Status();
    try {
      *out = v.as<bool>();
    } catch (const YAML::Exception&) {
      return error(StatusCode::kInvalidArgument, where + "." + key + ": expected true or false, got '" +
                                                     (v.IsScalar() ? v.Scalar() : std::string("a non-scalar")) + "'");
    }
    return Status();
  }

  // The `inner` map of the entry named `name` in the list `list_key` (clusters, users, contexts).
  StatusOr<YAML::Node> named_entry(const YAML::Node& root, const std::string& list_key, const std::string& inner,
                                   const std::string& name, const std::string& referrer) const {
    const YAML::Node list = root[list_key];
    std::vector<std::string> names;
    if (list.IsDefined() && !list.IsNull()) {
      if (!list.IsSequence()) return error(StatusCode::kInvalidArgument, list_key + ": expected a list");
      for (size_t i = 0; i < list.size(); ++i) {
        const YAML::Node entry = list[i];
        std::string where = list_key + "[" + std::to_string(i) + "]";
        if (!entry.IsMap()) return error(StatusCode::kInvalidArgument, where + ": expected a map");
        std::string entry_name;
        HOTSWAP_RETURN_IF_ERROR(string_field(entry, "name", where, &entry_name));
        names.push_back(entry_name);
        if (entry_name != name) continue;
        const YAML::Node body = entry[inner];
        if (!body.IsDefined() || body.IsNull()) return YAML::Node(YAML::NodeType::Map);
        if (!body.IsMap()) {
          return error(StatusCode::kInvalidArgument, list_key + "[" + name + "]." + inner + ": expected a map");
        }
        return body;
      }
    }
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    return error(StatusCode::kNotFound, referrer + " names " + inner + " '" + name + "', which is not in " + list_key +
                                            (known.empty() ? " (it is empty)" : " (it has: " + known + ")"));
  }

  // A path from the file, relative to the kubeconfig's folder unless absolute.
  std::string resolve_path(const std::string& p) const {
    if (p.empty() || fs::path(p).is_absolute() || dir_.empty()) return p;
    return (fs::path(dir_) / p).string();
  }

  // Either `key` (a file) or `key-data` (base64), into *out; `want_pem` checks the PEM armour.
  Status file_or_data(const YAML::Node& map, const std::string& key, const std::string& where, bool want_pem,
                      std::string* out) const {
    std::string file, data;
    HOTSWAP_RETURN_IF_ERROR(string_field(map, key, where, &file));
    HOTSWAP_RETURN_IF_ERROR(string_field(map, key + "-data", where, &data));
    out->clear();
    if (!file.empty() && !data.empty()) {
      return error(StatusCode::kInvalidArgument, where + ": both " + key + " and " + key + "-data are set; keep one");
    }
    if (!data.empty()) {
      auto decoded = base64_decode(data);
      if (!decoded.ok()) {
        return error(StatusCode::kInvalidArgument, where + "." + key + "-data: " + decoded.status().message());
      }
      *out = std::move(decoded).value();
      if (want_pem && !looks_like_pem(*out)) {
        return error(StatusCode::kInvalidArgument, where + "." + key + "-data: the decoded value is not PEM");
      }
      return Status();
    }
    if (!file.empty()) {
      std::string resolved = resolve_path(file);
      auto text = read_whole_file(resolved, "file");
      if (!text.ok()) return error(text.status().code(), where + "." + key + ": " + text.status().message());
      *out = std::move(text).value();
      if (want_pem && !looks_like_pem(*out)) {
        return error(StatusCode::kInvalidArgument, where + "." + key + ": " + resolved + " is not PEM");
      }
    }
    return Status();
  }

  StatusOr<ClusterConfig> read(const std::string& text, const std::string& wanted_context) const {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      return error(StatusCode::kInvalidArgument, std::string("not valid YAML: ") + e.what());
    }
    if (!root.IsMap()) return error(StatusCode::kInvalidArgument, "expected a YAML map (apiVersion: v1, kind: Config)");

    std::string context_name = wanted_context;
    if (context_name.empty()) {
      HOTSWAP_RETURN_IF_ERROR(string_field(root, "current-context", "", &context_name));
      if (context_name.empty()) {
        return error(StatusCode::kInvalidArgument, "current-context is not set; name a context to use");
      }
    }
    const std::string referrer = wanted_context.empty() ? "current-context" : std::string("the requested context");
    HOTSWAP_ASSIGN_OR_RETURN(YAML::Node context, named_entry(root, "contexts", "context", context_name, referrer));
    const std::string context_where = "contexts[" + context_name + "].context";

    ClusterConfig config;
    config.origin = "kubeconfig " + path_ + ", context " + context_name;
    std::string cluster_name, user_name, ns;
    HOTSWAP_RETURN_IF_ERROR(string_field(context, "cluster", context_where, &cluster_name));
    HOTSWAP_RETURN_IF_ERROR(string_field(context, "user", context_where, &user_name));
    HOTSWAP_RETURN_IF_ERROR(string_field(context, "namespace", context_where, &ns));
    if (!ns.empty()) config.ns = ns;
    if (cluster_name.empty()) return error(StatusCode::kInvalidArgument, context_where + ".cluster is not set");

    HOTSWAP_ASSIGN_OR_RETURN(YAML::Node cluster,
                             named_entry(root, "clusters", "cluster", cluster_name, "context '" + context_name + "'"));
    const std::string cluster_where = "clusters[" + cluster_name + "].cluster";
    HOTSWAP_RETURN_IF_ERROR(string_field(cluster, "server", cluster_where, &config.server));
    if (config.server.empty()) return error(StatusCode::kInvalidArgument, cluster_where + ".server is not set");
    if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
      return error(StatusCode::kInvalidArgument,
                   cluster_where + ".server '" + config.server + "' must start with https:// or http://");
    }
    while (config.server.size() > 1 && config.server.back() == '/') config.server.pop_back();
    HOTSWAP_RETURN_IF_ERROR(file_or_data(cluster, "certificate-authority", cluster_where, true, &config.ca_pem));
    HOTSWAP_RETURN_IF_ERROR(
        bool_field(cluster, "insecure-skip-tls-verify", cluster_where, &config.insecure_skip_tls_verify));
    if (config.insecure_skip_tls_verify && !config.ca_pem.empty()) {
      // As client-go: a CA with the insecure flag is a contradiction, not a preference.
      return error(StatusCode::kInvalidArgument,
                   cluster_where + ": insecure-skip-tls-verify and a certificate-authority are both set; keep one");
    }

    if (user_name.empty()) return config;  // no credentials: anonymous
    HOTSWAP_ASSIGN_OR_RETURN(YAML::Node user,
                             named_entry(root, "users", "user", user_name, "context '" + context_name + "'"));
    const std::string user_where = "users[" + user_name + "].user";
    if (user["exec"].IsDefined() && !user["exec"].IsNull()) {
      std::string command;
      if (user["exec"].IsMap()) (void)string_field(user["exec"], "command", user_where + ".exec", &command);
      return error(StatusCode::kUnimplemented,
                   user_where + ".exec: credential plugins (here '" + command +
                       "') are not supported; use a token, a tokenFile or a client certificate");
    }
    if (user["auth-provider"].IsDefined() && !user["auth-provider"].IsNull()) {
      return error(StatusCode::kUnimplemented, user_where +
                                                   ".auth-provider: auth providers are not supported; use a token, "
                                                   "a tokenFile or a client certificate");
    }
    std::string token_file;
    HOTSWAP_RETURN_IF_ERROR(string_field(user, "token", user_where, &config.token));
    HOTSWAP_RETURN_IF_ERROR(string_field(user, "tokenFile", user_where, &token_file));
    if (!config.token.empty() && !token_file.empty()) {
      return error(StatusCode::kInvalidArgument, user_where + ": both token and tokenFile are set; keep one");
    }
    if (!token_file.empty()) {
      config.token_file = resolve_path(token_file);
      auto t = read_whole_file(config.token_file, "file");
      if (!t.ok()) return error(t.status().code(), user_where + ".tokenFile: " + t.status().message());
      config.token = trim(std::move(t).value());
      if (config.token.empty()) {
        return error(StatusCode::kInvalidArgument, user_where + ".tokenFile: " + config.token_file + " is empty");
      }
    }
    HOTSWAP_RETURN_IF_ERROR(string_field(user, "username", user_where, &config.username));
    HOTSWAP_RETURN_IF_ERROR(string_field(user, "password", user_where, &config.password));
    if (!config.username.empty() && !config.token.empty()) {
      return error(StatusCode::kInvalidArgument,
                   user_where + ": both a token and a username/password are set; keep one");
    }
    HOTSWAP_RETURN_IF_ERROR(file_or_data(user, "client-certificate", user_where, true, &config.client_cert_pem));
    HOTSWAP_RETURN_IF_ERROR(file_or_data(user, "client-key", user_where, true, &config.client_key_pem));
    if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
      return error(StatusCode::kInvalidArgument,
                   user_where + ": " +
                       (config.client_cert_pem.empty() ? "client-key is set without client-certificate"
                                                       : "client-certificate is set without client-key"));
    }
    return config;
  }

 private:
  std::string path_;
  std::string dir_;
};

}  // namespace

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

StatusOr<std::string> base64_decode(const std::string& text) {
  auto value_of = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string clean;
  clean.reserve(text.size());
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    clean.push_back(c);
  }
  if (clean.size() % 4 != 0) return invalid_argument("not valid base64: the length is not a multiple of 4");
  std::string out;
  out.reserve(clean.size() / 4 * 3);
  for (size_t i = 0; i < clean.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = clean[i + k];
      if (c == '=') {
        // Padding only at the very end, and at most two.
        if (i + 4 != clean.size() || k < 2) return invalid_argument("not valid base64: misplaced '='");
        v[k] = 0;
        ++pad;
      } else {
        if (pad > 0) return invalid_argument("not valid base64: data after '='");
        v[k] = value_of(c);
        if (v[k] < 0) {
          return invalid_argument("not valid base64: unexpected character at offset " + std::to_string(i + k));
        }
      }
    }
    uint32_t triple = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    out.push_back(static_cast<char>((triple >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((triple >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(triple & 0xff));
  }
  return out;
}

StatusOr<ClusterConfig> parse_kubeconfig(const std::string& yaml_text, const std::string& path,
                                         const std::string& context) {
  return KubeconfigReader(path).read(yaml_text, context);
}

StatusOr<ClusterConfig> load_kubeconfig(const std::string& path, const std::string& context) {
  auto text = read_whole_file(path, "kubeconfig");
  if (!text.ok()) return text.status();
  return parse_kubeconfig(*text, path, context);
}

StatusOr<ClusterConfig> load_in_cluster_config(const std::string& service_account_dir, const EnvLookup& env) {
  auto host = env("KUBERNETES_SERVICE_HOST");
  auto port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return failed_precondition(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (they are, inside a Pod)");
  }
  ClusterConfig config;
  config.origin = "in-cluster config (" + service_account_dir + ")";
  // An IPv6 service address needs brackets in a URL.
  std::string h = host->find(':') != std::string::npos && host->front() != '[' ? "[" + *host + "]" : *host;
  config.server = "https://" + h + ":" + *port;
  const std::string token_path = (fs::path(service_account_dir) / "token").string();
  auto token = read_whole_file(token_path, "in-cluster config: service account token");
  if (!token.ok()) return token.status();
  config.token = trim(std::move(token).value());
  if (config.token.empty())
    return invalid_argument("in-cluster config: service account token " + token_path + " is empty");
  config.token_file = token_path;
  const std::string ca_path = (fs::path(service_account_dir) / "ca.crt").string();
  auto ca = read_whole_file(ca_path, "in-cluster config: service account CA");
  if (!ca.ok()) return ca.status();
  config.ca_pem = std::move(ca).value();
  if (!looks_like_pem(config.ca_pem)) return invalid_argument("in-cluster config: " + ca_path + " is not PEM");
  auto pod_ns = env("POD_NAMESPACE");
  if (pod_ns && !pod_ns->empty()) {
    config.ns = *pod_ns;
  } else {
    auto ns = read_whole_file((fs::path(service_account_dir) / "namespace").string(), "namespace");
    if (ns.ok() && !trim(*ns).empty()) config.ns = trim(*ns);
  }
  return config;
}

StatusOr<std::string> default_kubeconfig_path(const EnvLookup& env) {
  auto list = env("KUBECONFIG");
  if (list && !list->empty()) {
    std::stringstream ss(*list);
    std::string item;
    while (std::getline(ss, item, ':')) {
      std::error_code ec;
      if (!item.empty() && fs::exists(item, ec)) return item;
    }
    return not_found("KUBECONFIG=" + *list + ": none of its files exists");
  }
  auto home = env("HOME");
  if (home && !home->empty()) {
    std::string p = (fs::path(*home) / ".kube" / "config").string();
    std::error_code ec;
    if (fs::exists(p, ec)) return p;
    return not_found("no kubeconfig: KUBECONFIG is not set and " + p + " does not exist");
  }
  return not_found("no kubeconfig: neither KUBECONFIG nor HOME is set");
}

StatusOr<ClusterConfig> resolve_config(const std::string& kubeconfig_path, const std::string& context,
                                       const EnvLookup& env, const std::string& service_account_dir) {
  if (!kubeconfig_path.empty()) return load_kubeconfig(kubeconfig_path, context);
  auto list = env("KUBECONFIG");
  if (list && !list->empty()) {
    HOTSWAP_ASSIGN_OR_RETURN(std::string path, default_kubeconfig_path(env));
    return load_kubeconfig(path, context);
  }
  auto host = env("KUBERNETES_SERVICE_HOST");
  if (host && !host->empty()) {
    if (!context.empty())
      return invalid_argument("a context ('" + context + "') needs a kubeconfig; in-cluster has none");
    return load_in_cluster_config(service_account_dir, env);
  }
  HOTSWAP_ASSIGN_OR_RETURN(std::string path, default_kubeconfig_path(env));
  return load_kubeconfig(path, context);
}

}  // namespace hotswap::kube
