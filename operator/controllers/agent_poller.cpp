#include "operator/controllers/agent_poller.h"

#include <algorithm>

#include "agent/server/migration_client.h"
#include "operator/kube/object.h"

namespace hotswap::controllers {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

AgentPoller::AgentPoller(const ClusterView& view, std::function<void(const std::string&)> on_polled,
                         AgentPollerOptions options)
    : view_(view), on_polled_(std::move(on_polled)), options_(options) {}

AgentPoller::~AgentPoller() { stop(); }

void AgentPoller::start() {
  std::lock_guard<std::mutex> lk(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void AgentPoller::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<json> AgentPoller::get(const std::string& ns, const std::string& pod,
                                     std::chrono::milliseconds max_age) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = answers_.find(kube::object_key(ns, pod));
  if (it == answers_.end() || Clock::now() - it->second.second > max_age) return std::nullopt;
  return it->second.first;
}

void AgentPoller::poll(const DeploymentSpec& spec) {
  auto token = view_.control_token(spec.ns, spec.name);
  if (!token.ok()) return;
  for (auto& p : view_.pods_of(spec.ns, spec.name)) {
    if (pod_terminating(*p) || pod_condition(*p, "Ready") != "True" || agent_url(*p).empty()) continue;
    auto st = agent::control_call(agent_url(*p), *token, "GET", "/control/v1/status", json(), view_.agent_timeout);
    std::lock_guard<std::mutex> lk(mu_);
    if (st.ok()) answers_[kube::object_key(spec.ns, kube::object_name(*p))] = {std::move(st).value(), Clock::now()};
  }
}

void AgentPoller::run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, options_.tick, [this] { return stopping_; });
      if (stopping_) return;
    }
    const auto now = Clock::now();
    for (auto& md : view_.deployments->list()) {
      {  // polled within the shorter period: not due whatever its triggers (and no parse)
        std::lock_guard<std::mutex> lk(mu_);
        auto it = polled_.find(kube::object_key(*md));
        if (it != polled_.end() && now - it->second < std::min(options_.load_period, options_.health_period)) continue;
      }
      auto spec = parse_deployment(*md);
      if (!spec.ok() || !spec->policy.enabled) continue;
      const auto& t = spec->policy.triggers;
      if (!t.load && !t.gpu_health) continue;
      const auto period = t.load ? options_.load_period : options_.health_period;
      const std::string key = kube::object_key(*md);
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (stopping_) return;
        auto it = polled_.find(key);
        if (it != polled_.end() && now - it->second < period) continue;
        polled_[key] = now;
      }
      poll(*spec);
      on_polled_(key);
    }
    // Forget the answers of Pods that are gone.
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = answers_.begin(); it != answers_.end();) {
      if (Clock::now() - it->second.second > 10 * options_.health_period) it = answers_.erase(it);
      else ++it;
    }
  }
}

}  // namespace hotswap::controllers
