#include "agent/migration/cuda/gpu_endpoint.h"

#include <cctype>
#include <cstring>

#include "agent/migration/unix_socket.h"

namespace hotswap::migration {
namespace {

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

}  // namespace

StatusOr<std::string> parse_cuda_ipc_endpoint(const std::string& endpoint) {
  if (!starts_with(endpoint, kCudaIpcScheme)) {
    return invalid_argument("endpoint '" + endpoint + "' is not cuda-ipc:///socket/path or cuda-ipc://@name");
  }
  std::string name = endpoint.substr(std::strlen(kCudaIpcScheme));
  Status st = check_unix_socket_name(name);
  if (!st.ok()) return invalid_argument("endpoint '" + endpoint + "': " + st.message());
  return name;
}

std::string cuda_ipc_endpoint(const std::string& socket_name) {
  return kCudaIpcScheme + socket_name;
}

StatusOr<NcclEndpoint> parse_nccl_endpoint(const std::string& endpoint) {
  if (!starts_with(endpoint, kNcclScheme)) {
    return invalid_argument("endpoint '" + endpoint + "' is not nccl://host:port");
  }
  const std::string rest = endpoint.substr(std::strlen(kNcclScheme));
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return invalid_argument("endpoint '" + endpoint + "' has no port");
  NcclEndpoint ep;
  ep.host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  if (ep.host.empty()) return invalid_argument("endpoint '" + endpoint + "' has no host");
  for (char c : ep.host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) {
      return invalid_argument("endpoint '" + endpoint + "' has a bad host '" + ep.host +
                              "' (an IPv4 address or a DNS name)");
    }
  }
  if (port.empty() || port.size() > 5) return invalid_argument("endpoint '" + endpoint + "' has a bad port");
  int value = 0;
  for (char c : port) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return invalid_argument("endpoint '" + endpoint + "' has a bad port");
    }
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > 65535) {
    return invalid_argument("endpoint '" + endpoint + "' has a port out of range 1..65535");
  }
  ep.port = static_cast<uint16_t>(value);
  return ep;
}

std::string nccl_endpoint(const std::string& host, uint16_t port) {
  return kNcclScheme + host + ":" + std::to_string(port);
}

}  // namespace hotswap::migration
