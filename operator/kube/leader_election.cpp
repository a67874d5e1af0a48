#include "operator/kube/leader_election.h"

#include <cmath>
#include <ctime>
#include <random>

#include "common/log.h"

namespace hotswap::kube {

using nlohmann::json;

std::string micro_time_now() {
  auto now = std::chrono::system_clock::now();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us % 1000000));
  return buf;
}

LeaseRecord LeaseRecord::from_lease(const json& lease) {
  LeaseRecord r;
  if (!lease.is_object() || !lease.contains("spec") || !lease["spec"].is_object()) return r;
  const json& s = lease["spec"];
  auto str = [&](const char* k) {
    auto it = s.find(k);
    return it != s.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto num = [&](const char* k) -> int64_t {
    auto it = s.find(k);
    return it != s.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  r.holder_identity = str("holderIdentity");
  r.lease_duration_seconds = num("leaseDurationSeconds");
  r.acquire_time = str("acquireTime");
  r.renew_time = str("renewTime");
  r.lease_transitions = num("leaseTransitions");
  return r;
}

json LeaseRecord::to_spec() const {
  json s = json::object();
  s["holderIdentity"] = holder_identity;
  s["leaseDurationSeconds"] = lease_duration_seconds;
  if (!acquire_time.empty()) s["acquireTime"] = acquire_time;
  if (!renew_time.empty()) s["renewTime"] = renew_time;
  s["leaseTransitions"] = lease_transitions;
  return s;
}

StatusOr<std::unique_ptr<LeaderElector>> LeaderElector::create(const RestClient& client, LeaderElectionConfig config) {
  const std::string what = "leader election on lease " + config.lease_namespace + "/" + config.lease_name;
  if (config.lease_namespace.empty() || config.lease_name.empty()) {
    return invalid_argument("leader election: the lease namespace and name must be set");
  }
  if (config.identity.empty()) return invalid_argument(what + ": the identity must be set");
  if (config.lease_duration < std::chrono::seconds(1)) {
    return invalid_argument(what + ": lease_duration must be at least 1 s (the Lease counts whole seconds)");
  }
  if (config.lease_duration <= config.renew_deadline) {
    return invalid_argument(what + ": lease_duration must be greater than renew_deadline");
  }
  if (config.retry_period.count() <= 0 || config.renew_deadline.count() * 10 <= config.retry_period.count() * 12) {
    return invalid_argument(what + ": renew_deadline must be greater than 1.2 * retry_period");
  }
  // Our own client: a request must give up before the renew deadline passes, whatever the
  // caller's client waits.
  RestClientOptions opts = client.options();
  opts.timeout = std::min(opts.timeout, std::max(std::chrono::milliseconds(100), config.renew_deadline / 2));
  HOTSWAP_ASSIGN_OR_RETURN(auto own, RestClient::create(client.config(), opts));
  return std::unique_ptr<LeaderElector>(new LeaderElector(std::move(own), std::move(config)));
}

LeaderElector::LeaderElector(std::unique_ptr<RestClient> client, LeaderElectionConfig config)
    : client_(std::move(client)),
      config_(std::move(config)),
      lease_ref_(ResourceRef::of("coordination.k8s.io", "v1", "leases").in(config_.lease_namespace)) {}

LeaderElector::~LeaderElector() {
  stop();
}

void LeaderElector::start() {
  std::lock_guard<std::mutex> lk(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { run(); });
}

void LeaderElector::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool LeaderElector::is_leader() const {
  std::lock_guard<std::mutex> lk(mu_);
  return leading_ && std::chrono::steady_clock::now() - renewed_at_ < config_.renew_deadline;
}

std::string LeaderElector::leader() const {
  std::lock_guard<std::mutex> lk(mu_);
  return leader_;
}

bool LeaderElector::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lk(mu_);
  return !cv_.wait_for(lk, d, [&] { return stopping_; });
}

std::chrono::milliseconds LeaderElector::jittered_retry() {
  // client-go's JitterFactor 1.2 for acquiring: retry_period * [1, 1.2).
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> u(1.0, 1.2);
  return std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(config_.retry_period.count()) * u(rng)));
}

void LeaderElector::observe(const LeaseRecord& record) {
  if (!have_observed_ || !(record == observed_)) {
    observed_at_ = std::chrono::steady_clock::now();
  }
  bool holder_changed = !have_observed_ || record.holder_identity != observed_.holder_identity;
  observed_ = record;
  have_observed_ = true;
  {
    std::lock_guard<std::mutex> lk(mu_);
    leader_ = record.holder_identity;
  }
  if (holder_changed && !record.holder_identity.empty() && config_.on_new_leader) {
    try {
      config_.on_new_leader(record.holder_identity);
    } catch (...) {
      log_error("leader election: on_new_leader threw");
    }
  }
}

StatusOr<bool> LeaderElector::try_acquire_or_renew() {
  const auto lease_seconds =
      static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(config_.lease_duration).count());
  const std::string now = micro_time_now();
  ApiResult got = client_->get(lease_ref_.named(config_.lease_name));
  if (!got.ok() && got.error().is_not_found()) {
    LeaseRecord rec{config_.identity, lease_seconds, now, now, 0};
    json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}},
                  {"spec", rec.to_spec()}};
    ApiResult created = client_->create(lease_ref_, lease);
    if (created.ok()) {
      observe(rec);
      return true;
    }
    if (created.error().http_code == 409) return false;  // another candidate created it first
    return created.status();
  }
  if (!got.ok()) return got.status();

  LeaseRecord old = LeaseRecord::from_lease(got.value());
  observe(old);
  const bool mine = old.holder_identity == config_.identity;
  if (!old.holder_identity.empty() && !mine) {
    auto duration = std::chrono::seconds(std::max<int64_t>(old.lease_duration_seconds, 1));
    if (std::chrono::steady_clock::now() - observed_at_ < duration) return false;  // held, and still fresh
  }
  LeaseRecord rec;
  rec.holder_identity = config_.identity;
  rec.lease_duration_seconds = lease_seconds;
  rec.renew_time = now;
  if (mine) {
    rec.acquire_time = old.acquire_time.empty() ? now : old.acquire_time;
    rec.lease_transitions = old.lease_transitions;
  } else {
    rec.acquire_time = now;
    rec.lease_transitions = old.lease_transitions + 1;
  }
  json lease = got.value();
  lease["spec"] = rec.to_spec();  // the read resourceVersion stays in metadata: a conditional update
  ApiResult updated = client_->update(lease_ref_.named(config_.lease_name), lease);
  if (updated.ok()) {
    observe(rec);
    return true;
  }
  if (updated.error().is_conflict()) return false;  // someone wrote it since we read it
  return updated.status();
}

void LeaderElector::release() {
  ApiResult got = client_->get(lease_ref_.named(config_.lease_name));
  if (!got.ok()) {
    log_warn("leader election: cannot release lease " + config_.lease_name + ": " + got.status().to_string());
    return;
  }
  LeaseRecord old = LeaseRecord::from_lease(got.value());
  if (old.holder_identity != config_.identity) return;  // not ours any more
  const std::string now = micro_time_now();
  // As client-go: no holder, a one-second lease, the transition count kept.
  LeaseRecord rec{"", 1, now, now, old.lease_transitions};
  json lease = got.value();
  lease["spec"] = rec.to_spec();
  ApiResult updated = client_->update(lease_ref_.named(config_.lease_name), lease);
  if (!updated.ok()) {
    log_warn("leader election: cannot release lease " + config_.lease_name + ": " + updated.status().to_string());
  }
}

void LeaderElector::run() {
  const std::string what =
      "leader election (" + config_.identity + ") on " + config_.lease_namespace + "/" + config_.lease_name;
  auto call = [&](const std::function<void()>& fn, const char* name) {
    if (!fn) return;
    try {
      fn();
    } catch (const std::exception& e) {
      log_error(what + ": " + name + " threw: " + e.what());
    } catch (...) {
      log_error(what + ": " + name + " threw");
    }
  };
  for (;;) {
    // Campaign until we hold the lease.
    for (;;) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (stopping_) return;
      }
      auto attempt_at = std::chrono::steady_clock::now();
      auto r = try_acquire_or_renew();
      if (r.ok() && *r) {
        std::lock_guard<std::mutex> lk(mu_);
        leading_ = true;
        renewed_at_ = attempt_at;
        break;
      }
      if (!r.ok()) log_warn(what + ": " + r.status().to_string());
      if (!sleep_for(jittered_retry())) return;
    }
    log_info(what + ": became the leader");
    call(config_.on_started_leading, "on_started_leading");

    // Renew every retry_period until stopped or renew_deadline passes without a renewal.
    bool stopping = false;
    for (;;) {
      if (!sleep_for(config_.retry_period)) {
        stopping = true;
        break;
      }
      auto attempt_at = std::chrono::steady_clock::now();
      auto r = try_acquire_or_renew();
      std::lock_guard<std::mutex> lk(mu_);
      if (r.ok() && *r) {
        renewed_at_ = attempt_at;
        continue;
      }
      if (!r.ok()) log_warn(what + ": renew failed: " + r.status().to_string());
      if (r.ok() && !*r) break;  // someone else holds it: we lost it
      if (std::chrono::steady_clock::now() - renewed_at_ >= config_.renew_deadline) break;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      leading_ = false;
    }
    log_info(what + (stopping ? ": stopping; no longer the leader" : ": lost the lease"));
    call(config_.on_stopped_leading, "on_stopped_leading");
    if (stopping) {
      // Work stopped first (the callback), then the lease is freed for a successor.
      if (config_.release_on_stop) release();
      return;
    }
  }
}

}  // namespace hotswap::kube
