// The agent's Prometheus metrics (names in README.md, "Metrics"). prometheus-cpp metrics are
// thread-safe: handlers, sinks and the engine thread update them directly.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <mutex>
#include <string>

#include "agent/engine/engine.h"

namespace hotswap::agent {

class ServerMetrics {
 public:
  ServerMetrics();

  // hotswap_requests_total{endpoint, code}
  void count_request(const std::string& endpoint, int code);
  void observe_time_to_first_token(double seconds) { ttft_->Observe(seconds); }
  void observe_inter_token(double seconds) { itl_->Observe(seconds); }
  void count_generated_tokens(double n) { generated_->Increment(n); }
  // One migration ended, on this agent as role "source" or "target": result is the report's
  // ("switched", "rolled_back", "failed"); bytes are the transport's on the wire; rounds the
  // pre-copy rounds sent; switch_seconds the pause (source, switched only; < 0: none).
  struct MigrationOutcome {
    std::string role, result, transport;
    double bytes_sent = 0, bytes_received = 0;
    int64_t precopy_rounds = 0;
    double switch_seconds = -1;
  };
  void observe_migration(const MigrationOutcome& m);
  // The card's speed relative to the reference card (the node's hotswap.io/gpu-speed-factor).
  void set_speed_factor(double f) { speed_factor_->Set(f); }
  // A GPU fault reported (kind: xid, ecc, thermal), and how many are outstanding.
  void count_gpu_fault(const std::string& kind) { gpu_faults_->Add({{"kind", kind}}).Increment(); }
  void set_gpu_faulty(bool faulty) { gpu_faulty_->Set(faulty ? 1 : 0); }
  // The connection guard's (common/connection_guard.h): a connection it refused or ended, by
  // reason, and how many are open.
  void count_connection_closed(const std::string& reason) { connections_closed_->Add({{"reason", reason}}).Increment(); }
  void set_open_connections(int n) { open_connections_->Set(n); }
  // From the engine thread after each step.
  void observe_engine(const engine::EngineStats& s, int64_t open_requests);

  const prometheus::Registry& registry() const { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Counter* generated_;
  prometheus::Counter* prompt_;
  prometheus::Counter* preemptions_;
  prometheus::Counter* steps_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* batch_tokens_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* running_;
  prometheus::Gauge* open_;
  prometheus::Gauge* kv_used_;
  prometheus::Gauge* kv_free_;
  prometheus::Gauge* batch_sequences_;
  prometheus::Gauge* speed_factor_;
  prometheus::Family<prometheus::Counter>* gpu_faults_;
  prometheus::Gauge* gpu_faulty_;
  prometheus::Family<prometheus::Counter>* connections_closed_;
  prometheus::Gauge* open_connections_;
  prometheus::Family<prometheus::Counter>* migrations_;
  prometheus::Family<prometheus::Counter>* migration_bytes_;
  prometheus::Counter* precopy_rounds_;
  prometheus::Histogram* migration_downtime_;
  std::mutex engine_mu_;  // the engine's cumulative counters, turned into increments
  int64_t last_prompt_ = 0, last_preemptions_ = 0, last_steps_ = 0;
};

}  // namespace hotswap::agent
