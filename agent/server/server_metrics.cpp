#include "agent/server/server_metrics.h"

#include "common/metrics.h"

namespace hotswap::agent {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

ServerMetrics::ServerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  requests_ =
      &BuildCounter().Name("hotswap_requests_total").Help("HTTP requests by endpoint and status code").Register(r);
  generated_ = &BuildCounter().Name("hotswap_generated_tokens_total").Help("Tokens generated").Register(r).Add({});
  prompt_ = &BuildCounter()
                 .Name("hotswap_prompt_tokens_total")
                 .Help("Prompt tokens prefilled (recomputation included)")
                 .Register(r)
                 .Add({});
  preemptions_ = &BuildCounter()
                      .Name("hotswap_preemptions_total")
                      .Help("Sequences preempted for lack of KV blocks")
                      .Register(r)
                      .Add({});
  steps_ =
      &BuildCounter().Name("hotswap_engine_steps_total").Help("Engine iterations (forward passes)").Register(r).Add({});
  ttft_ = &BuildHistogram()
               .Name("hotswap_time_to_first_token_seconds")
               .Help("Request arrival to its first token")
               .Register(r)
               .Add({}, latency_buckets_seconds());
  itl_ = &BuildHistogram()
              .Name("hotswap_inter_token_latency_seconds")
              .Help("Gap between consecutive tokens of a request")
              .Register(r)
              .Add({}, latency_buckets_seconds());
  batch_tokens_ =
      &BuildHistogram()
           .Name("hotswap_batch_tokens")
           .Help("Tokens per engine step")
           .Register(r)
           .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048});
  queue_depth_ = &BuildGauge().Name("hotswap_queue_depth").Help("Requests waiting to be scheduled").Register(r).Add({});
  running_ = &BuildGauge().Name("hotswap_running_sequences").Help("Sequences in the running batch").Register(r).Add({});
  open_ = &BuildGauge().Name("hotswap_open_requests").Help("Requests accepted and not finished").Register(r).Add({});
  auto& kv = BuildGauge().Name("hotswap_kv_blocks").Help("KV cache blocks by state").Register(r);
  kv_used_ = &kv.Add({{"state", "used"}});
  kv_free_ = &kv.Add({{"state", "free"}});
  batch_sequences_ = &BuildGauge()
                          .Name("hotswap_batch_sequences")
                          .Help("Sequences in the most recent engine step")
                          .Register(r)
                          .Add({});
  speed_factor_ = &BuildGauge()
                       .Name("hotswap_gpu_speed_factor")
                       .Help("This card's speed relative to the reference card (1 unless the node says otherwise)")
                       .Register(r)
                       .Add({});
  speed_factor_->Set(1);
  connections_closed_ = &BuildCounter()
                             .Name("hotswap_http_connections_closed_total")
                             .Help("HTTP connections the agent refused or ended itself, by reason (too_many_connections, "
                                   "header_too_large, header_timeout, body_timeout, bad_framing, send_timeout, idle)")
                             .Register(r);
  open_connections_ =
      &BuildGauge().Name("hotswap_http_connections").Help("HTTP connections open to the agent").Register(r).Add({});
  gpu_faults_ = &BuildCounter()
                     .Name("hotswap_gpu_faults_total")
                     .Help("GPU faults reported for this agent's card, by kind (xid, ecc, thermal)")
                     .Register(r);
  gpu_faulty_ = &BuildGauge()
                     .Name("hotswap_gpu_faulty")
                     .Help("1 while the card has a fault that was not cleared: the operator moves the replica off")
                     .Register(r)
                     .Add({});
  migrations_ = &BuildCounter()
                     .Name("hotswap_migrations_total")
                     .Help("Migrations ended on this agent, by role and result")
                     .Register(r);
  migration_bytes_ = &BuildCounter()
                          .Name("hotswap_migration_bytes_total")
                          .Help("Migration transport bytes on the wire, by transport and direction")
                          .Register(r);
  precopy_rounds_ = &BuildCounter()
                         .Name("hotswap_migration_precopy_rounds_total")
                         .Help("Pre-copy rounds sent by this agent as a migration source")
                         .Register(r)
                         .Add({});
  migration_downtime_ = &BuildHistogram()
                             .Name("hotswap_migration_downtime_seconds")
                             .Help("Source side: from pausing the migrating sequences until the target resumed them")
                             .Register(r)
                             .Add({}, latency_buckets_seconds());
}

void ServerMetrics::observe_migration(const MigrationOutcome& m) {
  migrations_->Add({{"role", m.role}, {"result", m.result}}).Increment();
  if (m.bytes_sent > 0) migration_bytes_->Add({{"transport", m.transport}, {"direction", "sent"}}).Increment(m.bytes_sent);
  if (m.bytes_received > 0)
    migration_bytes_->Add({{"transport", m.transport}, {"direction", "received"}}).Increment(m.bytes_received);
  if (m.precopy_rounds > 0) precopy_rounds_->Increment(static_cast<double>(m.precopy_rounds));
  if (m.switch_seconds >= 0) migration_downtime_->Observe(m.switch_seconds);
}

void ServerMetrics::count_request(const std::string& endpoint, int code) {
  requests_->Add({{"endpoint", endpoint}, {"code", std::to_string(code)}}).Increment();
}

void ServerMetrics::observe_engine(const engine::EngineStats& s, int64_t open_requests) {
  queue_depth_->Set(static_cast<double>(s.waiting));
  running_->Set(static_cast<double>(s.running));
  open_->Set(static_cast<double>(open_requests));
  kv_used_->Set(static_cast<double>(s.kv_blocks_used));
  kv_free_->Set(static_cast<double>(s.kv_blocks_total - s.kv_blocks_used));
  batch_sequences_->Set(static_cast<double>(s.last_step_sequences));
  std::lock_guard<std::mutex> lk(engine_mu_);
  if (s.steps_total > last_steps_) {
    batch_tokens_->Observe(static_cast<double>(s.last_step_tokens));
    steps_->Increment(static_cast<double>(s.steps_total - last_steps_));
  }
  prompt_->Increment(static_cast<double>(std::max<int64_t>(0, s.prompt_tokens_total - last_prompt_)));
  preemptions_->Increment(static_cast<double>(std::max<int64_t>(0, s.preemptions_total - last_preemptions_)));
  last_steps_ = s.steps_total;
  last_prompt_ = s.prompt_tokens_total;
  last_preemptions_ = s.preemptions_total;
}

}  // namespace hotswap::agent
