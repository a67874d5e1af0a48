// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection: candidates
// share one Lease (spec.holderIdentity, leaseDurationSeconds, acquireTime, renewTime,
// leaseTransitions); the holder renews it every retry_period; a candidate takes it over only
// when it has seen the same record unchanged for leaseDurationSeconds (measured on its own
// steady clock, so clock skew between machines does not matter) or when the holder released
// it (holderIdentity ""). Every write is an update conditioned on the resourceVersion just
// read, so of two candidates racing for an expired lease exactly one wins; the other gets 409
// Conflict and stays a follower.
//
// A leader that cannot renew for renew_deadline stops leading (on_stopped_leading) and goes
// back to campaigning; is_leader() turns false at that deadline even if the elector's thread
// is stuck in a slow request. stop() stops leading and, with release_on_stop, clears the
// holder so a successor need not wait out the lease.
//
// Threads: the elector's own thread makes every API call and runs the callbacks, one at a time;
// they must return quickly (start or stop work elsewhere). is_leader() and leader() are safe
// from any thread. The RestClient's config is used to build the elector's own client, whose
// request timeout is below renew_deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/status.h"
#include "operator/kube/rest_client.h"

namespace hotswap::kube {

struct LeaderElectionConfig {
  std::string lease_namespace;
  std::string lease_name;
  std::string identity;  // unique per candidate: the Pod name, or host + pid
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
  bool release_on_stop = true;
  std::function<void()> on_started_leading;
  std::function<void()> on_stopped_leading;
  std::function<void(const std::string& identity)> on_new_leader;  // the observed holder changed
};

// The Lease's spec, as read or written.
struct LeaseRecord {
  std::string holder_identity;
  int64_t lease_duration_seconds = 0;
  std::string acquire_time;  // MicroTime, "2024-05-01T12:00:00.000000Z"
  std::string renew_time;
  int64_t lease_transitions = 0;

  static LeaseRecord from_lease(const nlohmann::json& lease);
  nlohmann::json to_spec() const;
  bool operator==(const LeaseRecord& o) const {
    return holder_identity == o.holder_identity && lease_duration_seconds == o.lease_duration_seconds &&
           acquire_time == o.acquire_time && renew_time == o.renew_time && lease_transitions == o.lease_transitions;
  }
};

// Now as a Kubernetes MicroTime (RFC 3339, UTC, microseconds).
std::string micro_time_now();

class LeaderElector {
 public:
  // Checks the config: names and identity set, lease_duration > renew_deadline >
  // 1.2 * retry_period (client-go's rule), at least one second of lease.
  static StatusOr<std::unique_ptr<LeaderElector>> create(const RestClient& client, LeaderElectionConfig config);
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  void start();
  void stop();

  bool is_leader() const;
  std::string leader() const;  // the holder last observed; "" if none or unknown

  // One round: read the lease and create, renew or take it over. true: we hold it now.
  // false: another holds it, or we lost a race (409). An error: the API call failed.
  // Called by the elector's thread; public for tests that drive rounds by hand (not started).
  StatusOr<bool> try_acquire_or_renew();

 private:
  LeaderElector(std::unique_ptr<RestClient> client, LeaderElectionConfig config);
  void run();
  bool sleep_for(std::chrono::milliseconds d);  // false when stopping
  void observe(const LeaseRecord& record);
  void release();
  std::chrono::milliseconds jittered_retry();

  std::unique_ptr<RestClient> client_;
  const LeaderElectionConfig config_;
  const ResourceRef lease_ref_;

  // Owned by the elector's thread (or the caller of try_acquire_or_renew when not started).
  LeaseRecord observed_;
  bool have_observed_ = false;
  std::chrono::steady_clock::time_point observed_at_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool started_ = false;
  bool leading_ = false;
  std::chrono::steady_clock::time_point renewed_at_;  // start of the last successful renew
  std::string leader_;
  std::thread thread_;
};

}  // namespace hotswap::kube
