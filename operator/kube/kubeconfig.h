// Where and how to reach a Kubernetes API server: from a kubeconfig file, as kubectl reads it,
// or from the service account of the Pod we run in (in-cluster). Loading reads every file the
// config refers to (CA, client certificate and key, token) up front, so a bad path or a broken
// field fails at start with a message naming the kubeconfig, the entry and the field, not at
// the first request.
//
// Supported: clusters[].cluster {server, certificate-authority(-data), insecure-skip-tls-verify},
// users[].user {token, tokenFile, client-certificate(-data), client-key(-data), username+password},
// contexts[].context {cluster, user, namespace}, current-context. Exec plugins and auth
// providers are refused with a clear error rather than ignored. Relative file paths resolve
// against the kubeconfig's folder, as kubectl does.
//
// Threads: plain values and free functions, no shared state.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "common/status.h"

namespace hotswap::kube {

struct ClusterConfig {
  std::string server;  // "https://10.0.0.1:6443", without a trailing '/'
  std::string ca_pem;  // CA bundle (PEM) that signs the server; empty: the system's roots
  bool insecure_skip_tls_verify = false;
  std::string token;       // bearer token; empty: none
  std::string token_file;  // the file the token came from: re-read as it rotates; empty: fixed
  std::string username;    // basic authentication, with password
  std::string password;
  std::string client_cert_pem;  // client TLS certificate and key (PEM), both or neither
  std::string client_key_pem;
  std::string ns = "default";  // the context's namespace; in-cluster, the Pod's
  std::string origin;          // for messages: "kubeconfig /home/u/.kube/config, context kind-dev"
};

// Reads an environment variable; nullopt when unset. Tests pass their own.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup process_env();

// context: the context to use; empty: the file's current-context.
StatusOr<ClusterConfig> load_kubeconfig(const std::string& path, const std::string& context = "");
// The same from text already read; path names it in messages and anchors relative file paths.
StatusOr<ClusterConfig> parse_kubeconfig(const std::string& yaml_text, const std::string& path,
                                         const std::string& context = "");

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// In-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the token and ca.crt of
// service_account_dir, the namespace from $POD_NAMESPACE or service_account_dir/namespace
// (default "default"). The token is re-read from its file as the kubelet rotates it.
StatusOr<ClusterConfig> load_in_cluster_config(const std::string& service_account_dir = kServiceAccountDir,
                                               const EnvLookup& env = process_env());

// The kubeconfig kubectl would read: the first existing file of $KUBECONFIG (a ':'-separated
// list; kubectl merges them, we take the first), else $HOME/.kube/config. not_found when none.
StatusOr<std::string> default_kubeconfig_path(const EnvLookup& env = process_env());

// What a component started with `--kubeconfig PATH --context NAME` connects with, in the order
// of controller-runtime: PATH when given, else $KUBECONFIG, else in-cluster when
// $KUBERNETES_SERVICE_HOST is set, else $HOME/.kube/config.
StatusOr<ClusterConfig> resolve_config(const std::string& kubeconfig_path, const std::string& context,
                                       const EnvLookup& env = process_env(),
                                       const std::string& service_account_dir = kServiceAccountDir);

// Standard base64 (RFC 4648, padded; whitespace ignored), as kubeconfig *-data fields hold.
StatusOr<std::string> base64_decode(const std::string& text);

}  // namespace hotswap::kube
