// The operator killed at each step of a live migration. The operator runs as its own process
// with $HOTSWAP_FAILPOINTS naming one point (common/failpoint.h): it kills itself with SIGKILL
// there, as `kill -9` would, between a phase's action and the status that records it
// ("enter:P") or just after it recorded phase P ("entered:P"). A second operator, started a
// moment later, must end the migration from what the cluster and the agents say: Completed (or,
// where the target's agent was killed too, Failed after a rollback), one ModelMigration, no Pod
// left behind, every client's stream whole and equal to an unmigrated run's.
//
// About 5 s a cell: in `make test`, labelled e2e and run alone like the other dev-cluster tests.
#include "tests/e2e/operator/operator_e2e.h"

namespace hotswap {
namespace {

using namespace operator_e2e;

struct Cell {
  const char* point;           // the failpoint
  const char* phase_at_death;  // the status phase the killed operator left ("" for none)
  bool target_dies = false;    // the target's agent is killed in TargetLoading or PreCopy too
  std::string name() const {
    std::string n;
    for (const char* c = point + std::string_view("migration/").size(); *c; ++c)
      n += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
    return n + (target_dies ? "_TargetDies" : "");
  }
};

class OperatorKilled : public OperatorE2e, public ::testing::WithParamInterface<Cell> {
 protected:
  bool in_process_operator() const override { return false; }
};

TEST_P(OperatorKilled, ARestartedOperatorEndsTheMigrationAndNoClientNotices) {
  const Cell& cell = GetParam();
  pid_t pid = start_operator_process("operator-killed.log", std::string("HOTSWAP_FAILPOINTS=") + cell.point);
  struct Reaper {  // an ASSERT that returns early must not leave it running
    pid_t& pid;
    ~Reaper() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reaper{pid};
  auto operator_log = [&] {
    std::ifstream in(dir_ / "operator-killed.log");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  deploy(2);
  auto load = start_load();
  std::this_thread::sleep_for(1000ms);
  const std::string source = kube::object_name(pods()[0]);
  ASSERT_EQ(kubectl("cordon " + controllers::pod_node(pods()[0])).code, 0);
  if (cell.target_dies) ASSERT_NO_FATAL_FAILURE(kill_target_agent_before_the_switch());
  int status = 0;
  ASSERT_TRUE(eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 60s))
      << "the operator never reached " << cell.point << "\n" << operator_log();
  pid = -1;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << operator_log();
  EXPECT_NE(operator_log().find("failpoint " + std::string(cell.point)), std::string::npos) << operator_log();
  auto ms = migrations();
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].value("/status/phase"_json_pointer, std::string()), cell.phase_at_death) << ms[0].dump(2);

  std::this_thread::sleep_for(500ms);  // no operator for a moment: the agents go on alone
  start_operator();
  const json done = wait_migration_end(60s);
  ASSERT_FALSE(done.is_null()) << migrations()[0].dump(2);
  EXPECT_EQ(done["status"]["phase"], std::string(cell.target_dies ? "Failed" : "Completed")) << done.dump(2);
  expect_clients_saw_nothing(load.get());
  EXPECT_TRUE(wait_ready(2)) << md().dump(2);
  // Nothing left behind: two replicas, neither pinned as a target; the source gone after a move,
  // serving after a rollback; the target Pod gone after a rollback.
  std::vector<json> left;
  EXPECT_TRUE(eventually(
      [&] {
        left = pods();
        return left.size() == 2u;
      },
      20s))
      << left.size() << " pods";
  bool source_left = false;
  for (const auto& p : left) {
    EXPECT_EQ(controllers::pod_condition(p, controllers::kServingGate), "True") << kube::object_name(p);
    EXPECT_FALSE(p.contains("/metadata/annotations/hotswap.io~1migration-target"_json_pointer)) << p.dump(2);
    source_left = source_left || kube::object_name(p) == source;
    if (cell.target_dies) EXPECT_NE(kube::object_name(p), done["status"]["targetPod"].get<std::string>());
  }
  EXPECT_EQ(source_left, cell.target_dies);
  EXPECT_EQ(migrations().size(), 1u) << "the restarted operator made no second migration";
}

INSTANTIATE_TEST_SUITE_P(
    EachStep, OperatorKilled,
    ::testing::Values(Cell{"migration/enter:TargetScheduling", ""},  // target chosen, not recorded
                      Cell{"migration/entered:TargetScheduling", "TargetScheduling"},
                      Cell{"migration/target-pod-created", "TargetScheduling"},
                      Cell{"migration/entered:TargetLoading", "TargetLoading"},
                      Cell{"migration/enter:PreCopy", "TargetLoading"},  // the agents started, not recorded
                      Cell{"migration/entered:PreCopy", "PreCopy"},
                      Cell{"migration/target-gated", "PreCopy"},   // switched; only the target's gate set
                      Cell{"migration/enter:Draining", "PreCopy"},  // both gates flipped, not recorded
                      Cell{"migration/entered:Draining", "Draining"},
                      Cell{"migration/enter:Completed", "Draining"},  // the source deleted, not recorded
                      Cell{"migration/entered:RollingBack", "RollingBack", true},
                      Cell{"migration/enter:Failed", "RollingBack", true}),  // the target Pod deleted
    [](const ::testing::TestParamInfo<Cell>& info) { return info.param.name(); });

}  // namespace
}  // namespace hotswap
