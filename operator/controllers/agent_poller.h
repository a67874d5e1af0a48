// The agents' status (queue depth, running sequences, open requests, GPU faults) as the load and
// GPU-health triggers need it, fetched off the reconcile path: a thread of its own asks the
// serving replicas of every deployment that watches them (GET /control/v1/status), every 2 s
// for the load trigger and every 5 s for GPU health, keeps the answers, and queues the
// deployment so that its reconcile (which only reads the answers) sees them. A slow or hung
// agent so delays only the next poll, never a reconcile that a cordon or a spec change needs.
//
// Threads: the poller's own thread calls the agents and on_polled; get() is safe from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "operator/controllers/cluster_view.h"

namespace hotswap::controllers {

struct AgentPollerOptions {
  std::chrono::milliseconds load_period{2000};
  std::chrono::milliseconds health_period{5000};
  std::chrono::milliseconds tick{250};
};

class AgentPoller {
 public:
  AgentPoller(const ClusterView& view, std::function<void(const std::string& deployment_key)> on_polled,
              AgentPollerOptions options = {});
  ~AgentPoller();  // stop()
  void start();
  void stop();
  // The last answer of the agent of Pod ns/name, if it is younger than max_age.
  std::optional<nlohmann::json> get(const std::string& ns, const std::string& pod, std::chrono::milliseconds max_age) const;
  // Asks the deployment's agents now (a reconcile that needs fresh answers: a scale-down).
  void poll(const DeploymentSpec& spec);

 private:
  void run();

  const ClusterView& view_;
  const std::function<void(const std::string&)> on_polled_;
  const AgentPollerOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::pair<nlohmann::json, std::chrono::steady_clock::time_point>> answers_;  // ns/pod
  std::map<std::string, std::chrono::steady_clock::time_point> polled_;  // deployment key -> last poll
  std::thread thread_;
};

}  // namespace hotswap::controllers
