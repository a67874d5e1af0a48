// The dev cluster kubelet's container probes (startupProbe, livenessProbe, readinessProbe): the
// probe spec as the kubelet reads it, one run of a handler (httpGet, tcpSocket, exec), and the
// per-container state that turns runs into a result with the kubelet's thresholds.
//
//  - httpGet: GET scheme://host:port/path (host: the Pod IP unless given; port: a number or a
//    named containerPort), success on a status in [200, 400). HTTPS is refused (we do not speak
//    TLS here) and the probe fails saying so.
//  - tcpSocket: a connection opened within the timeout is a success.
//  - exec: the command, with the container's environment, exiting 0 within the timeout.
//  - Defaults as Kubernetes: initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1,
//    successThreshold 1 (always 1 for liveness and startup), failureThreshold 3.
//  - Before its first result a readiness probe says "not ready", a liveness probe "alive", and a
//    startup probe nothing (the container is not started yet).
//
// Threads: plain values and free functions; a run blocks its caller up to the probe's timeout.
#pragma once

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hotswap::devcluster {

enum class ProbeKind { kStartup, kLiveness, kReadiness };
const char* probe_kind_name(ProbeKind kind);  // "Startup", "Liveness", "Readiness"

struct ProbeSpec {
  enum class Handler { kHttpGet, kTcpSocket, kExec, kInvalid };
  Handler handler = Handler::kInvalid;
  std::string invalid_reason;  // for kInvalid: why the probe cannot run (every run fails with it)
  std::string host;            // "" : the Pod IP
  int port = 0;
  std::string path = "/";
  std::string scheme = "HTTP";
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::string> command;
  std::chrono::milliseconds initial_delay{0};
  std::chrono::milliseconds period{10000};
  std::chrono::milliseconds timeout{1000};
  int success_threshold = 1;
  int failure_threshold = 3;
  std::optional<int64_t> termination_grace_period_seconds;  // probe-level override (liveness/startup)
};

// The probe of `container` (its JSON spec, for named ports) as given in `probe`.
ProbeSpec parse_probe(ProbeKind kind, const nlohmann::json& probe, const nlohmann::json& container);

struct ProbeOutcome {
  bool success = false;
  std::string message;  // why it failed
};

ProbeOutcome http_get_probe(const std::string& host, int port, const std::string& path,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            std::chrono::milliseconds timeout);
ProbeOutcome tcp_socket_probe(const std::string& host, int port, std::chrono::milliseconds timeout);
ProbeOutcome exec_probe(const std::vector<std::string>& command, const std::map<std::string, std::string>& env,
                        std::chrono::milliseconds timeout, const std::string& working_dir = "");
// One run of spec's handler against a container of the Pod at pod_ip; exec runs with the
// container's environment and working directory.
ProbeOutcome run_probe(const ProbeSpec& spec, const std::string& pod_ip, const std::map<std::string, std::string>& env,
                       const std::string& working_dir = "");

// The result of one probe of one running container (a new container gets a new tracker).
class ProbeTracker {
 public:
  using Clock = std::chrono::steady_clock;
  ProbeTracker(ProbeKind kind, ProbeSpec spec, Clock::time_point container_started);

  // Whether a run is due: initialDelaySeconds after the start, then every periodSeconds.
  bool due(Clock::time_point now) const { return now >= next_run_; }
  // Counts one run's outcome; true when result() changed.
  bool record(const ProbeOutcome& outcome, Clock::time_point now);
  std::optional<bool> result() const { return result_; }
  const std::string& last_message() const { return last_message_; }
  const ProbeSpec& spec() const { return spec_; }
  ProbeKind kind() const { return kind_; }

 private:
  ProbeKind kind_;
  ProbeSpec spec_;
  Clock::time_point next_run_;
  int successes_ = 0;
  int failures_ = 0;
  std::optional<bool> result_;
  std::string last_message_;
};

}  // namespace hotswap::devcluster
