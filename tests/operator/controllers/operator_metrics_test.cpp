// The operator's /metrics page: every family, filled in, as Prometheus's checker sees it.
#include "operator/controllers/operator_metrics.h"

#include <gtest/gtest.h>

#include "common/metrics.h"
#include "tests/support/promtool.h"

namespace hotswap::controllers {
namespace {

TEST(OperatorMetricsTest, EveryFamilyPassesPromtoolAndCarriesItsLabels) {
  OperatorMetrics m;
  m.migration_ended("Maintenance", "Succeeded");
  m.migration_ended("GpuHealth", "RolledBack");
  m.phase_took("PreCopy", 0.8);
  m.phase_took("Switching", 0.004);
  m.downtime(0.012);
  m.reconciled("modeldeployment", 0.002, true);
  m.reconciled("modelmigration", 0.03, false);
  m.set_queue_depth("modeldeployment", 3);
  m.set_informer_counts("pods", 2, 1);
  m.set_leader(true);
  m.set_replicas("ml", "llama", 3, 2, 1);
  m.set_replicas("ml", "gone", 1, 1, 0);
  m.forget_deployment("ml", "gone");
  const std::string page = render_metrics_text(m.registry());
  EXPECT_EQ(page.find("deployment=\"gone\""), std::string::npos) << "a deleted deployment's gauges go";
  for (const char* sample :
       {"hotswap_operator_migrations_total{reason=\"Maintenance\",result=\"Succeeded\"} 1",
        "hotswap_operator_migration_phase_seconds_count{phase=\"PreCopy\"} 1",
        "hotswap_operator_migration_downtime_seconds_count 1",
        "hotswap_operator_reconcile_errors_total{controller=\"modelmigration\"} 1",
        "hotswap_operator_workqueue_depth{controller=\"modeldeployment\"} 3", "hotswap_operator_leader 1",
        "hotswap_operator_replicas{deployment=\"llama\",namespace=\"ml\",state=\"desired\"} 3",
        "hotswap_operator_replicas{deployment=\"llama\",namespace=\"ml\",state=\"ready\"} 2",
        "hotswap_operator_replicas{deployment=\"llama\",namespace=\"ml\",state=\"migrating\"} 1"})
    EXPECT_NE(page.find(sample), std::string::npos) << sample << "\n" << page;
  const auto lint = hotswap::testing::promtool_check_metrics(page);
  EXPECT_EQ(lint.exit_code, 0) << lint.output;
  EXPECT_EQ(lint.output, "") << lint.output;
}

}  // namespace
}  // namespace hotswap::controllers
