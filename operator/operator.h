// hotswap-operator as an object: informers on ModelDeployments, ModelMigrations, Pods and
// Nodes; one work queue per controller fed by their handlers; worker threads that reconcile;
// optional Lease leader election (workers run only while leading; a leader that loses the lease
// stops them and reports it, and the process exits so that it restarts as a follower); the
// health (/healthz, /readyz) and metrics (/metrics) endpoints. `hotswap-operator` (main.cpp) is
// one of these; end-to-end tests run one in-process beside a DevCluster.
//
// Threads: start() and stop() from the owner's thread. Informer handlers only queue keys; the
// workers (options.workers per controller) reconcile; the HTTP listeners answer on cpprest's
// threads.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "operator/controllers/agent_poller.h"
#include "operator/controllers/resources.h"
#include "operator/kube/rest_client.h"

namespace hotswap {

struct OperatorOptions {
  std::string ns;  // watch this namespace only; "": all
  bool leader_elect = false;
  std::string leader_election_namespace = "default";
  std::string leader_election_id = "hotswap-operator";
  std::string identity;  // "": hostname-pid
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
  int workers = 4;       // per controller
  std::string metrics_address = "127.0.0.1";
  int metrics_port = 0;  // 0: no metrics endpoint
  std::string health_address = "127.0.0.1";
  int health_port = 0;  // 0: no health endpoint
  controllers::AgentRuntime runtime;
  std::chrono::milliseconds informer_backoff{800};
  // How often the agents' load (and GPU health) is polled, off the reconcile path.
  controllers::AgentPollerOptions agent_poll;
  // Called once when leadership is lost (the process should exit); default: nothing.
  std::function<void()> on_lost_leadership;
};

class Operator {
 public:
  // Starts the informers, the endpoints and (without leader election, or once elected) the
  // workers. The client must outlive the operator.
  static StatusOr<std::unique_ptr<Operator>> start(const kube::RestClient& client, OperatorOptions options);
  ~Operator();  // stop()
  Operator(const Operator&) = delete;
  Operator& operator=(const Operator&) = delete;

  void stop();
  bool synced() const;   // every informer has listed once
  bool leading() const;  // workers running
  int metrics_port() const;
  int health_port() const;
  std::string metrics_text() const;

 private:
  struct Impl;
  explicit Operator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hotswap
