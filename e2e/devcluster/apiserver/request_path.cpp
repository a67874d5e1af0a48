#include "e2e/devcluster/apiserver/request_path.h"

#include <vector>

namespace hotswap::devcluster {

std::optional<RequestPath> parse_request_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  RequestPath r;
  size_t i = 0;
  if (parts.empty()) return std::nullopt;
  if (parts[0] == "api") {
    i = 1;
    if (parts.size() > 1) r.version = parts[1], i = 2;
  } else if (parts[0] == "apis") {
    i = 1;
    if (parts.size() > 1) r.group = parts[1], i = 2;
    if (parts.size() > 2) r.version = parts[2], i = 3;
  } else {
    return std::nullopt;
  }
  if (i < parts.size() && parts[i] == "watch") {
    r.watch_prefix = true;
    ++i;
  }
  const size_t rest = parts.size() - i;
  if (rest == 0) return r;
  if (parts[i] == "namespaces" && rest >= 3) {
    // /namespaces/<ns>/<resource>[/<name>[/<sub>]]; but /namespaces/<name>/status|finalize is the
    // namespace's own subresource.
    if (rest == 3 && (parts[i + 2] == "status" || parts[i + 2] == "finalize")) {
      r.resource = "namespaces";
      r.name = parts[i + 1];
      r.subresource = parts[i + 2];
      return r;
    }
    r.ns = parts[i + 1];
    r.resource = parts[i + 2];
    if (rest >= 4) r.name = parts[i + 3];
    if (rest >= 5) r.subresource = parts[i + 4];
    if (rest > 5) return std::nullopt;
    return r;
  }
  r.resource = parts[i];
  if (rest >= 2) r.name = parts[i + 1];
  if (rest >= 3) r.subresource = parts[i + 2];
  if (rest > 3) return std::nullopt;
  return r;
}

}  // namespace hotswap::devcluster
