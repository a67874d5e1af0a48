// What both controllers read and share: the API client, the informer caches (ModelDeployments,
// ModelMigrations, Pods, Nodes), the agents' control tokens, the operator's metrics, and the
// "expectations" that bridge an informer's lag after the operator's own writes (as
// controller-runtime's ReplicaSet controller does: a Pod just created is not in the cache yet,
// so the next reconcile must not create it again).
//
// Threads: everything here is safe from any worker thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "operator/controllers/operator_metrics.h"
#include "operator/controllers/resources.h"
#include "operator/kube/informer.h"
#include "operator/kube/rest_client.h"
#include "operator/policy/policy.h"

namespace hotswap::controllers {

// Names written by this operator that its cache has not shown yet, per owner key. An
// expectation ends when the cache shows what was expected or after `ttl` (a lost event must not
// stall the owner for ever).
class Expectations {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Expectations(std::chrono::milliseconds ttl = std::chrono::seconds(30)) : ttl_(ttl) {}
  void expect(const std::string& owner, const std::string& name);
  // Drops what `seen(name)` says the cache now shows (and what expired); true while any remain.
  bool pending(const std::string& owner, const std::function<bool(const std::string& name)>& seen);

 private:
  const std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::map<std::string, std::map<std::string, Clock::time_point>> expected_;
};

class AgentPoller;

struct ClusterView {
  const kube::RestClient* client = nullptr;
  kube::Informer* deployments = nullptr;
  kube::Informer* migrations = nullptr;
  kube::Informer* pods = nullptr;
  kube::Informer* nodes = nullptr;
  OperatorMetrics* metrics = nullptr;
  AgentPoller* agents = nullptr;  // the agents' last status (agent_poller.h); may be null
  AgentRuntime runtime;
  std::chrono::milliseconds agent_timeout{3000};  // a control API call to an agent

  // The Pods of a deployment from the cache (every state).
  std::vector<kube::ObjectPtr> pods_of(const std::string& ns, const std::string& deployment) const;
  // The ModelMigrations of a deployment from the cache.
  std::vector<kube::ObjectPtr> migrations_of(const std::string& ns, const std::string& deployment) const;
  // Every ModelMigration not yet Completed or Failed, as the policy counts them.
  std::vector<policy::ActiveMigration> active_migrations() const;
  // Every Node with the GPUs that Pods bound to it (or pinned to it by nodeSelector and not yet
  // bound: a migration's target) request.
  std::vector<policy::NodeState> node_states() const;

  // The deployment's control token, from its Secret (cached once read).
  StatusOr<std::string> control_token(const std::string& ns, const std::string& deployment) const;

  // An Event on `object` (best effort: a failure is logged, not returned).
  void record_event(const nlohmann::json& object, const std::string& type, const std::string& reason,
                    const std::string& message) const;

  // Sets a Pod's hotswap.io/serving condition.
  Status set_serving(const std::string& ns, const std::string& pod, bool serving, const std::string& reason) const;

 private:
  mutable std::mutex token_mu_;
  mutable std::map<std::string, std::string> tokens_;
};

bool migration_terminal(const nlohmann::json& mm);  // phase Completed or Failed
std::string agent_url(const nlohmann::json& pod);   // http://<podIP>:8000, "" without an IP

}  // namespace hotswap::controllers
