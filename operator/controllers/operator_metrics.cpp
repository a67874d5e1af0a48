#include "operator/controllers/operator_metrics.h"

#include "common/metrics.h"

namespace hotswap::controllers {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

OperatorMetrics::OperatorMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  migrations_ = &BuildCounter()
                     .Name("hotswap_operator_migrations_total")
                     .Help("ModelMigrations ended, by trigger (reason) and result")
                     .Register(r);
  phase_seconds_ = &BuildHistogram()
                        .Name("hotswap_operator_migration_phase_seconds")
                        .Help("Time spent in each ModelMigration phase")
                        .Register(r);
  downtime_ = &BuildHistogram()
                   .Name("hotswap_operator_migration_downtime_seconds")
                   .Help("The switch's pause of each migration, as the source agent measured it")
                   .Register(r)
                   .Add({}, latency_buckets_seconds());
  reconcile_seconds_ =
      &BuildHistogram().Name("hotswap_operator_reconcile_seconds").Help("One reconcile, by controller").Register(r);
  reconcile_errors_ = &BuildCounter()
                           .Name("hotswap_operator_reconcile_errors_total")
                           .Help("Reconciles that failed and were retried with backoff")
                           .Register(r);
  queue_depth_ = &BuildGauge()
                      .Name("hotswap_operator_workqueue_depth")
                      .Help("Keys queued, delayed or in progress, by controller")
                      .Register(r);
  watch_starts_ = &BuildCounter()
                       .Name("hotswap_operator_watch_starts_total")
                       .Help("Watches started by the informers (all but the first are restarts)")
                       .Register(r);
  lists_ = &BuildCounter()
                .Name("hotswap_operator_lists_total")
                .Help("Lists by the informers (all but the first are relists)")
                .Register(r);
  leader_ = &BuildGauge().Name("hotswap_operator_leader").Help("1 while this replica leads").Register(r).Add({});
  replicas_ = &BuildGauge()
                   .Name("hotswap_operator_replicas")
                   .Help("A ModelDeployment's replicas: desired (spec), ready (serving), migrating")
                   .Register(r);
}

void OperatorMetrics::set_replicas(const std::string& ns, const std::string& deployment, int64_t desired,
                                   int64_t ready, int64_t migrating) {
  const std::pair<const char*, int64_t> states[] = {{"desired", desired}, {"ready", ready}, {"migrating", migrating}};
  for (const auto& [state, value] : states)
    replicas_->Add({{"namespace", ns}, {"deployment", deployment}, {"state", state}}).Set(static_cast<double>(value));
}

void OperatorMetrics::forget_deployment(const std::string& ns, const std::string& deployment) {
  for (const char* state : {"desired", "ready", "migrating"})
    replicas_->Remove(&replicas_->Add({{"namespace", ns}, {"deployment", deployment}, {"state", state}}));
}

void OperatorMetrics::migration_ended(const std::string& reason, const std::string& result) {
  migrations_->Add({{"reason", reason}, {"result", result}}).Increment();
}

void OperatorMetrics::phase_took(const std::string& phase, double seconds) {
  phase_seconds_->Add({{"phase", phase}}, latency_buckets_seconds()).Observe(seconds);
}

void OperatorMetrics::downtime(double seconds) { downtime_->Observe(seconds); }

void OperatorMetrics::reconciled(const std::string& controller, double seconds, bool ok) {
  reconcile_seconds_->Add({{"controller", controller}}, latency_buckets_seconds()).Observe(seconds);
  if (!ok) reconcile_errors_->Add({{"controller", controller}}).Increment();
}

void OperatorMetrics::set_queue_depth(const std::string& controller, double depth) {
  queue_depth_->Add({{"controller", controller}}).Set(depth);
}

void OperatorMetrics::set_informer_counts(const std::string& resource, int64_t watches, int64_t lists) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& last = informer_counts_[resource];
  if (watches > last.first) watch_starts_->Add({{"resource", resource}}).Increment(double(watches - last.first));
  if (lists > last.second) lists_->Add({{"resource", resource}}).Increment(double(lists - last.second));
  last = {std::max(last.first, watches), std::max(last.second, lists)};
}

void OperatorMetrics::set_leader(bool leader) { leader_->Set(leader ? 1 : 0); }

}  // namespace hotswap::controllers
