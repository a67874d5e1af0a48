// hotswap-operator's own Prometheus metrics (prefix hotswap_operator_):
//   migrations_total{reason, result}            ModelMigrations ended (result: completed, failed)
//   migration_phase_seconds{phase}              how long each phase took (histogram)
//   migration_downtime_seconds                  the switch's pause, as the source agent measured it
//   reconcile_seconds{controller}               one reconcile (histogram)
//   reconcile_errors_total{controller}
//   workqueue_depth{controller}                 keys ready, delayed and in progress (set at scrape)
//   watch_starts_total{resource}                watches an informer started (restarts are the rest)
//   lists_total{resource}                       lists (relists after 410 or a broken watch)
//   leader                                      1 while this replica leads
//
// Threads: prometheus-cpp's metrics are thread-safe; the gauges set at scrape time are set by
// the scraping thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace hotswap::controllers {

class OperatorMetrics {
 public:
  OperatorMetrics();
  prometheus::Registry& registry() { return *registry_; }

  void migration_ended(const std::string& reason, const std::string& result);
  void phase_took(const std::string& phase, double seconds);
  void downtime(double seconds);
  void reconciled(const std::string& controller, double seconds, bool ok);
  void set_queue_depth(const std::string& controller, double depth);
  void set_informer_counts(const std::string& resource, int64_t watches, int64_t lists);
  void set_leader(bool leader);
  // A ModelDeployment's replicas: wanted (spec), ready (serving) and migrating; forgotten when it
  // is deleted.
  void set_replicas(const std::string& ns, const std::string& deployment, int64_t desired, int64_t ready,
                    int64_t migrating);
  void forget_deployment(const std::string& ns, const std::string& deployment);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* migrations_;
  prometheus::Family<prometheus::Histogram>* phase_seconds_;
  prometheus::Histogram* downtime_;
  prometheus::Family<prometheus::Histogram>* reconcile_seconds_;
  prometheus::Family<prometheus::Counter>* reconcile_errors_;
  prometheus::Family<prometheus::Gauge>* queue_depth_;
  prometheus::Family<prometheus::Counter>* watch_starts_;
  prometheus::Family<prometheus::Counter>* lists_;
  prometheus::Family<prometheus::Gauge>* replicas_;
  std::mutex mu_;
  std::map<std::string, std::pair<int64_t, int64_t>> informer_counts_;  // resource -> watches, lists reported
  prometheus::Gauge* leader_;
};

}  // namespace hotswap::controllers
