#include "e2e/devcluster/nodes/kubelet_probes.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "e2e/devcluster/nodes/local_process.h"

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

int64_t int_field(const json& j, const char* name, int64_t fallback) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_number_integer()) return fallback;
  return it->get<int64_t>();
}

// A port given as a number, a numeric string, or the name of one of the container's ports.
int resolve_port(const json& port, const json& container, std::string* error) {
  if (port.is_number_integer()) return port.get<int>();
  if (port.is_string()) {
    const std::string name = port.get<std::string>();
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) return std::stoi(name);
    for (const auto& p : container.value("ports", json::array())) {
      if (p.value("name", std::string()) == name) return static_cast<int>(int_field(p, "containerPort", 0));
    }
    *error = "no containerPort named \"" + name + "\"";
    return 0;
  }
  *error = "no port";
  return 0;
}

// A socket connected to host:port before the deadline, or -1 with *error set.
int connect_before(const std::string& host, int port, Clock::time_point deadline, std::string* error) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) {
      *error = "cannot resolve host \"" + host + "\"";
      return -1;
    }
    addr.sin_addr = reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr;
    ::freeaddrinfo(found);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  const std::string where = host + ":" + std::to_string(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  if (errno != EINPROGRESS) {
    *error = "dial tcp " + where + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      *error = "dial tcp " + where + ": timed out";
      ::close(fd);
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      *error = "dial tcp " + where + ": " + std::strerror(err);
      ::close(fd);
      return -1;
    }
    return fd;
  }
}

}  // namespace

const char* probe_kind_name(ProbeKind kind) {
  switch (kind) {
    case ProbeKind::kStartup:
      return "Startup";
    case ProbeKind::kLiveness:
      return "Liveness";
    case ProbeKind::kReadiness:
      return "Readiness";
  }
  return "Unknown";
}

ProbeSpec parse_probe(ProbeKind kind, const json& probe, const json& container) {
  ProbeSpec s;
  if (!probe.is_object()) {
    s.invalid_reason = "the probe is not an object";
    return s;
  }
  s.initial_delay = std::chrono::seconds(std::max<int64_t>(0, int_field(probe, "initialDelaySeconds", 0)));
  s.period = std::chrono::seconds(std::max<int64_t>(1, int_field(probe, "periodSeconds", 10)));
  s.timeout = std::chrono::seconds(std::max<int64_t>(1, int_field(probe, "timeoutSeconds", 1)));
  s.success_threshold = static_cast<int>(std::max<int64_t>(1, int_field(probe, "successThreshold", 1)));
  if (kind != ProbeKind::kReadiness) s.success_threshold = 1;
  s.failure_threshold = static_cast<int>(std::max<int64_t>(1, int_field(probe, "failureThreshold", 3)));
  if (probe.contains("terminationGracePeriodSeconds") && probe["terminationGracePeriodSeconds"].is_number_integer())
    s.termination_grace_period_seconds = probe["terminationGracePeriodSeconds"].get<int64_t>();

  std::string error;
  if (probe.contains("httpGet")) {
    const json& h = probe["httpGet"];
    s.handler = ProbeSpec::Handler::kHttpGet;
    s.host = h.value("host", std::string());
    s.path = h.value("path", std::string("/"));
    if (s.path.empty() || s.path[0] != '/') s.path = "/" + s.path;
    s.scheme = h.value("scheme", std::string("HTTP"));
    for (const auto& header : h.value("httpHeaders", json::array()))
      s.headers.emplace_back(header.value("name", std::string()), header.value("value", std::string()));
    s.port = resolve_port(h.value("port", json()), container, &error);
    if (s.scheme != "HTTP") error = "scheme " + s.scheme + " is not supported by the dev cluster kubelet (HTTP only)";
  } else if (probe.contains("tcpSocket")) {
    const json& t = probe["tcpSocket"];
    s.handler = ProbeSpec::Handler::kTcpSocket;
    s.host = t.value("host", std::string());
    s.port = resolve_port(t.value("port", json()), container, &error);
  } else if (probe.contains("exec")) {
    s.handler = ProbeSpec::Handler::kExec;
    for (const auto& a : probe["exec"].value("command", json::array()))
      if (a.is_string()) s.command.push_back(a.get<std::string>());
    if (s.command.empty()) error = "exec probe without a command";
  } else if (probe.contains("grpc")) {
    error = "grpc probes are not supported by the dev cluster kubelet";
  } else {
    error = "the probe has no handler (httpGet, tcpSocket or exec)";
  }
  if (error.empty() && s.handler != ProbeSpec::Handler::kExec && (s.port <= 0 || s.port > 65535))
    error = "port " + std::to_string(s.port) + " is out of range";
  if (!error.empty()) {
    s.handler = ProbeSpec::Handler::kInvalid;
    s.invalid_reason = error;
  }
  return s;
}

ProbeOutcome http_get_probe(const std::string& host, int port, const std::string& path,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string url = "http://" + host + ":" + std::to_string(port) + path;
  std::string error;
  const int fd = connect_before(host, port, deadline, &error);
  if (fd < 0) return {false, "Get \"" + url + "\": " + error};
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
                        "\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n";
  for (const auto& [name, value] : headers) request += name + ": " + value + "\r\n";
  request += "\r\n";
  size_t sent = 0;
  std::string reply;
  ProbeOutcome outcome{false, "Get \"" + url + "\": context deadline exceeded (Client.Timeout exceeded)"};
  while (Clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, static_cast<short>(sent < request.size() ? POLLOUT : POLLIN), 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    if (sent < request.size()) {
      const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        outcome.message = "Get \"" + url + "\": " + std::strerror(errno);
        break;
      }
      if (n > 0) sent += static_cast<size_t>(n);
      continue;
    }
    char buf[1024];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n > 0) reply.append(buf, static_cast<size_t>(n));
    const size_t eol = reply.find("\r\n");
    if (eol != std::string::npos || n <= 0) {
      const std::string line = reply.substr(0, eol);
      // "HTTP/1.1 200 OK"
      const size_t sp = line.find(' ');
      const int code = line.rfind("HTTP/", 0) == 0 && sp != std::string::npos ? std::atoi(line.c_str() + sp + 1) : 0;
      if (code >= 200 && code < 400) {
        outcome = {true, ""};
      } else if (code > 0) {
        outcome.message = "HTTP probe failed with statuscode: " + std::to_string(code);
      } else {
        outcome.message = "Get \"" + url + "\": " + (n <= 0 ? "EOF" : "malformed HTTP response \"" + line + "\"");
      }
      break;
    }
  }
  ::close(fd);
  return outcome;
}

ProbeOutcome tcp_socket_probe(const std::string& host, int port, std::chrono::milliseconds timeout) {
  std::string error;
  const int fd = connect_before(host, port, Clock::now() + timeout, &error);
  if (fd < 0) return {false, error};
  ::close(fd);
  return {true, ""};
}

ProbeOutcome exec_probe(const std::vector<std::string>& command, const std::map<std::string, std::string>& env,
                        std::chrono::milliseconds timeout, const std::string& working_dir) {
  auto process = LocalProcess::start(command, env, "/dev/null", working_dir);
  if (!process.ok()) return {false, process.status().message()};
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (auto exit = process->poll()) {
      if (exit->exit_code == 0) return {true, ""};
      return {false, "command exited with " + std::to_string(exit->exit_code)};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  process->stop(std::chrono::milliseconds(0));
  return {false, "command timed out after " + std::to_string(timeout.count()) + "ms"};
}

ProbeOutcome run_probe(const ProbeSpec& spec, const std::string& pod_ip, const std::map<std::string, std::string>& env,
                       const std::string& working_dir) {
  const std::string host = spec.host.empty() ? pod_ip : spec.host;
  switch (spec.handler) {
    case ProbeSpec::Handler::kHttpGet:
      return http_get_probe(host, spec.port, spec.path, spec.headers, spec.timeout);
    case ProbeSpec::Handler::kTcpSocket:
      return tcp_socket_probe(host, spec.port, spec.timeout);
    case ProbeSpec::Handler::kExec:
      return exec_probe(spec.command, env, spec.timeout, working_dir);
    case ProbeSpec::Handler::kInvalid:
      break;
  }
  return {false, spec.invalid_reason};
}

ProbeTracker::ProbeTracker(ProbeKind kind, ProbeSpec spec, Clock::time_point container_started)
    : kind_(kind), spec_(std::move(spec)), next_run_(container_started + spec_.initial_delay) {
  if (kind_ == ProbeKind::kReadiness) result_ = false;
  if (kind_ == ProbeKind::kLiveness) result_ = true;
}

bool ProbeTracker::record(const ProbeOutcome& outcome, Clock::time_point now) {
  next_run_ = now + spec_.period;
  last_message_ = outcome.message;
  const std::optional<bool> before = result_;
  if (outcome.success) {
    failures_ = 0;
    if (++successes_ >= spec_.success_threshold) result_ = true;
  } else {
    successes_ = 0;
    if (++failures_ >= spec_.failure_threshold) result_ = false;
  }
  return before != result_;
}

}  // namespace hotswap::devcluster
