// The parts of a Kubernetes API path, as kube-apiserver's RequestInfo resolves them:
//   /api/v1/pods                                   list across namespaces
//   /api/v1/namespaces/ns/pods[/name[/status]]     namespaced
//   /api/v1/namespaces/name[/status|/finalize]     the namespace itself
//   /api/v1/nodes[/name[/status]]                  cluster-scoped
//   /apis/group/version/...                        the same shapes in a group
//   /api/v1/watch/...                              the old watch prefix (watch = true)
// Discovery paths (/api, /apis, /api/v1, /apis/g, /apis/g/v) have no resource.
#pragma once

#include <optional>
#include <string>

namespace hotswap::devcluster {

struct RequestPath {
  std::string group;        // "" for /api
  std::string version;      // "" for /api and /apis
  std::string ns;           // the namespace segment, when the path has one
  std::string resource;     // "" for discovery
  std::string name;
  std::string subresource;
  bool watch_prefix = false;
  bool discovery() const { return resource.empty(); }
};

// nullopt: not an API path (/version, /healthz, /openapi/... are handled apart).
std::optional<RequestPath> parse_request_path(const std::string& path);

}  // namespace hotswap::devcluster
