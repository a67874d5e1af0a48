// The ModelMigration controller: the phase machine of DESIGN.md ("A migration, phase by phase"),
// driving the agents' control API (agent/server/migration_client.h) one step per reconcile:
//
//   phase             observation                                  action -> next phase
//   (new) / Pending   source replica and a target that fits         record them -> TargetScheduling
//                     (or spec.target.pod, a running replica)        -> TargetLoading
//                     no target yet / maxConcurrent reached          wait (message says why)
//   TargetScheduling  target Pod missing                            create it, pinned, gate unset
//                     target Pod bound to a node                    -> TargetLoading
//   TargetLoading     target agent ready (model loaded)             prepare target, start source -> PreCopy
//                     the source already runs this id (a restart)   -> PreCopy
//   PreCopy           source reports PreCopy                        progress
//                     source switched (Draining/Completed)          record bytes, rounds, downtime;
//                                                                   gate target True, source False -> Draining
//                     source rolled back / failed / lost the id     -> RollingBack
//   Draining          source relays no stream any more              unpin the target, delete the source -> Completed
//   RollingBack       -                                             abort on the target, delete its Pod -> Failed
// Any phase before Draining that outlives spec.migration.completionTimeoutSeconds (from the
// deployment), or whose source or target Pod fails, goes to RollingBack: the source was never
// paused for good, so it keeps serving.
//
// Idempotent and restartable: every step reads the world (the ModelMigration and the Pods by
// GET, not from the cache, so it never acts on its own stale write) and the resource's status is
// the only state; after an operator restart the machine resumes from status.phase, and the
// agents' migration id (status.agentMigrationId) lets TargetLoading see a start that had already
// happened.
//
// Threads: reconcile() is called by the operator's workers, never twice at once for one key (the
// work queue's guarantee); different keys run in parallel.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "operator/controllers/cluster_view.h"

namespace hotswap::controllers {

struct ReconcileResult {
  std::chrono::milliseconds requeue_after{0};  // 0: only on the next change
};

class MigrationReconciler {
 public:
  explicit MigrationReconciler(ClusterView& view) : view_(view) {}
  // key: "namespace/name" of a ModelMigration.
  StatusOr<ReconcileResult> reconcile(const std::string& key);

 private:
  struct Step;  // one reconcile's context (migration_controller.cpp)
  // The phases' steps: how long to wait before the next look when the phase did not change.
  StatusOr<std::chrono::milliseconds> pending(Step& s);
  StatusOr<std::chrono::milliseconds> scheduling(Step& s);
  StatusOr<std::chrono::milliseconds> loading(Step& s);
  StatusOr<std::chrono::milliseconds> precopy(Step& s);
  StatusOr<std::chrono::milliseconds> draining(Step& s);
  StatusOr<std::chrono::milliseconds> rolling_back(Step& s);
  ClusterView& view_;
};

}  // namespace hotswap::controllers
