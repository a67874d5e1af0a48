#include "e2e/devcluster/nodes/kubelet_pod_worker.h"

#include <signal.h>

#include <algorithm>
#include <map>
#include <vector>

#include "common/log.h"
#include "e2e/devcluster/nodes/kubelet_container_env.h"
#include "e2e/devcluster/nodes/kubelet_pod_status.h"
#include "e2e/devcluster/nodes/kubelet_probes.h"
#include "e2e/devcluster/nodes/local_process.h"
#include "operator/kube/object.h"

namespace hotswap::devcluster {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

std::string str(const json& j, const json::json_pointer& p) {
  if (!j.contains(p)) return "";
  const json& v = j[p];
  return v.is_string() ? v.get<std::string>() : "";
}

bool deleting(const json& pod) {
  return pod.contains("/metadata/deletionTimestamp"_json_pointer);
}

std::string now_str() {
  return rfc3339(std::chrono::system_clock::now());
}

// "200ms", "10s", "5m0s": Go's time.Duration formatting, for the back-off message.
std::string go_duration(milliseconds d) {
  const int64_t ms = d.count();
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms % 1000 != 0) return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + "s";
  const int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  return std::to_string(s / 3600) + "h" + std::to_string(s % 3600 / 60) + "m" + std::to_string(s % 60) + "s";
}

// The grace period of a deletion: metadata.deletionGracePeriodSeconds, else the spec's.
int64_t pod_grace_seconds(const json& pod) {
  const json& m = pod["metadata"];
  if (m.contains("deletionGracePeriodSeconds") && m["deletionGracePeriodSeconds"].is_number_integer())
    return std::max<int64_t>(0, m["deletionGracePeriodSeconds"].get<int64_t>());
  return std::max<int64_t>(0, pod.value("/spec/terminationGracePeriodSeconds"_json_pointer, int64_t{30}));
}

struct Container {
  json spec;
  std::string name;
  std::string log_path;
  std::optional<LocalProcess> process;
  std::map<std::string, std::string> env;  // the running process's, for exec probes
  int restart_count = 0;
  json state = {{"waiting", {{"reason", "ContainerCreating"}}}};
  json last_state = json::object();
  std::string container_id;
  bool finished = false;         // terminated, and will not run again
  bool ever_terminated = false;  // has run (or failed to start) before: the next start is a restart
  bool started = false;          // this run passed its startup probe (or has none)
  bool ready = false;
  std::string started_at;
  Clock::time_point run_started{};
  Clock::time_point next_start{};                  // CrashLoopBackOff: not before this
  milliseconds backoff{0};                         // the delay before the next restart
  std::optional<Clock::time_point> kill_deadline;  // SIGTERM sent; SIGKILL at this time
  std::unique_ptr<ProbeTracker> startup, liveness, readiness;

  void reset_probes() {
    startup.reset();
    liveness.reset();
    readiness.reset();
    started = false;
    ready = false;
  }
};

}  // namespace

// What the worker's thread owns: the containers and what it has reported. Every method runs on
// that thread.
class PodRun {
 public:
  PodRun(const PodWorker& worker, const json& pod, std::optional<PodRejection> rejection);

  // One look at the containers (exits, probes, restarts) and the status.
  void sync(const json& pod, std::atomic<bool>& terminal);
  // Deletion, one step per call: true once the Pod is removed (or gone).
  bool terminate(const json& pod, std::atomic<bool>& terminal);
  // SIGTERM, then SIGKILL after `grace`; blocks until every container has ended.
  void stop_all(milliseconds grace);
  void release_ip();
  bool terminal_at_start() const { return frozen_ || rejection_.has_value(); }

 private:
  bool restarts_after(int exit_code) const;
  void finish_run(Container& c, json terminated, int exit_code, bool allow_restart);
  void record_exit(Container& c, const ProcessExit& exit, bool allow_restart);
  void start_container(Container& c, const json& pod);
  void begin_kill(Container& c, Clock::time_point deadline);
  void run_probes(Container& c, const json& pod);
  std::string phase_of_containers() const;
  json condition(const char* type, const ConditionValue& v);
  json owned_status(const json& pod);
  // Writes the owned status when it differs; false when the Pod is gone (or replaced).
  bool sync_status(const json& cached);

  const PodWorkerConfig& config_;
  const std::string uid_;
  const std::string who_;  // for logs
  const kube::ResourceRef pods_;
  std::string ns_, name_, restart_policy_;
  std::vector<std::unique_ptr<Container>> containers_;
  std::optional<PodRejection> rejection_;
  const bool host_network_;  // spec.hostNetwork: the Pod's IP is the node's
  bool frozen_ = false;      // terminal before we saw it: its status is not ours to rewrite
  std::string pod_ip_;       // while held
  std::string shown_ip_;     // in the status (kept after the IP is released at the end)
  std::string start_time_;
  std::string phase_ = "Pending";
  std::map<std::string, std::pair<std::string, std::string>> transitions_;  // type -> (status, time)
  // The informer's copy may lag our own write: while it still shows the version we wrote over,
  // we compare with what the write returned.
  std::optional<json> written_;
  std::string written_over_rv_;
  Clock::time_point next_write_{};
  int write_failures_ = 0;
  Clock::time_point next_ip_try_{};
  bool ip_warned_ = false;
  bool terminating_ = false;
  Clock::time_point terminate_noticed_{};
  Clock::time_point terminate_deadline_{};
  bool final_status_sent_ = false;
  Clock::time_point next_delete_{};
};

PodRun::PodRun(const PodWorker& worker, const json& pod, std::optional<PodRejection> rejection)
    : config_(worker.config_),
      uid_(worker.uid()),
      who_("kubelet " + worker.config_.node_name + ": pod " + worker.key()),
      pods_(kube::ResourceRef::core("pods").in(kube::object_namespace(pod))),
      ns_(kube::object_namespace(pod)),
      name_(kube::object_name(pod)),
      restart_policy_(pod.value("/spec/restartPolicy"_json_pointer, std::string("Always"))),
      rejection_(std::move(rejection)),
      host_network_(pod.value("/spec/hostNetwork"_json_pointer, false)) {
  start_time_ = str(pod, "/status/startTime"_json_pointer);
  if (start_time_.empty()) start_time_ = now_str();
  const std::string phase = str(pod, "/status/phase"_json_pointer);
  frozen_ = phase == "Succeeded" || phase == "Failed";
  for (const auto& c : pod.value("/status/conditions"_json_pointer, json::array()))
    transitions_[c.value("type", std::string())] = {c.value("status", std::string()),
                                                    c.value("lastTransitionTime", std::string())};
  const json old_statuses = pod.value("/status/containerStatuses"_json_pointer, json::array());
  for (const auto& spec : pod.value("/spec/containers"_json_pointer, json::array())) {
    auto c = std::make_unique<Container>();
    c->spec = spec;
    c->name = spec.value("name", std::string());
    c->log_path = config_.log_dir + "/" + ns_ + "_" + name_ + "_" + c->name + ".log";
    // A status from before us (the kubelet restarted; its processes are gone): count it as a
    // restart, as the kubelet does for a container it cannot find.
    for (const auto& old : old_statuses) {
      if (frozen_ || old.value("name", std::string()) != c->name) continue;
      const json st = old.value("state", json::object());
      if (!st.contains("running") && !st.contains("terminated") && old.value("restartCount", 0) == 0) continue;
      const json terminated = {{"exitCode", 137},
                               {"reason", "ContainerStatusUnknown"},
                               {"message", "The container could not be located when the kubelet restarted"}};
      c->ever_terminated = true;
      c->restart_count = old.value("restartCount", 0);
      c->last_state = {{"terminated", terminated}};
      if (!restarts_after(137)) {
        c->state = {{"terminated", terminated}};
        c->finished = true;
      }
    }
    containers_.push_back(std::move(c));
  }
}

bool PodRun::restarts_after(int exit_code) const {
  if (restart_policy_ == "Never") return false;
  if (restart_policy_ == "OnFailure") return exit_code != 0;
  return true;
}

void PodRun::finish_run(Container& c, json terminated, int exit_code, bool allow_restart) {
  c.process.reset();
  c.kill_deadline.reset();
  c.reset_probes();
  c.ever_terminated = true;
  const Clock::time_point now = Clock::now();
  if (!allow_restart || !restarts_after(exit_code)) {
    c.state = {{"terminated", std::move(terminated)}};
    c.finished = true;
    return;
  }
  c.last_state = {{"terminated", terminated}};
  // A container that ran long enough starts its back-off over (the kubelet's entry expires).
  if (c.run_started != Clock::time_point{} && now - c.run_started >= 2 * config_.backoff_max)
    c.backoff = milliseconds(0);
  // The first restart is at once, then initial, doubling, up to the cap.
  const milliseconds delay = c.backoff;
  c.backoff = c.backoff.count() == 0 ? config_.backoff_initial : std::min(2 * c.backoff, config_.backoff_max);
  c.next_start = now + delay;
  if (delay.count() == 0) {
    c.state = {{"terminated", std::move(terminated)}};
    return;
  }
  c.state = {{"waiting",
              {{"reason", "CrashLoopBackOff"},
               {"message", "back-off " + go_duration(delay) + " restarting failed container=" + c.name +
                               " pod=" + name_ + "_" + ns_ + "(" + uid_ + ")"}}}};
}

void PodRun::record_exit(Container& c, const ProcessExit& exit, bool allow_restart) {
  json terminated = {{"exitCode", exit.exit_code},
                     {"reason", exit.exit_code == 0 ? "Completed" : "Error"},
                     {"startedAt", c.started_at},
                     {"finishedAt", now_str()},
                     {"containerID", c.container_id}};
  if (exit.signal != 0) terminated["signal"] = exit.signal;
  if (exit.exit_code != 0) log_info(who_ + ": container " + c.name + " exited with " + std::to_string(exit.exit_code));
  finish_run(c, std::move(terminated), exit.exit_code, allow_restart);
}

void PodRun::start_container(Container& c, const json& pod) {
  const Clock::time_point now = Clock::now();
  const json command = c.spec.value("command", json::array());
  if (!command.is_array() || command.empty()) {
    // Permanent: images are not run, and a Pod's containers cannot change.
    c.state = {{"terminated",
                {{"exitCode", 128},
                 {"reason", "NoCommand"},
                 {"message", "the dev cluster kubelet runs commands, not images: container \"" + c.name +
                                 "\" (image \"" + c.spec.value("image", std::string()) + "\") has no command"}}}};
    c.finished = true;
    c.ever_terminated = true;
    return;
  }
  auto lookup = [this](const std::string& resource, const std::string& ns, const std::string& name) -> StatusOr<json> {
    auto r = config_.client->get(kube::ResourceRef::core(resource).in(ns).named(name));
    if (r.ok()) return std::move(r).value();
    if (r.error().is_not_found()) return not_found(resource + " " + name + " not found");
    return r.status();
  };
  auto env = container_environment(pod, c.spec, pod_ip_, config_.node_ip, lookup);
  if (!env.ok()) {
    c.state = {{"waiting", {{"reason", "CreateContainerConfigError"}, {"message", env.status().message()}}}};
    c.next_start = now + seconds(1);
    return;
  }
  for (const auto& [k, v] : config_.node_env) env->emplace(k, v);
  std::vector<std::string> argv;
  for (const char* field : {"command", "args"})
    for (const auto& a : c.spec.value(field, json::array()))
      if (a.is_string()) argv.push_back(expand_env_references(a.get<std::string>(), *env));
  if (c.ever_terminated) ++c.restart_count;
  c.started_at = now_str();
  c.run_started = now;
  auto process = LocalProcess::start(argv, *env, c.log_path, c.spec.value("workingDir", std::string()));
  if (!process.ok()) {
    log_warn(who_ + ": container " + c.name + " failed to start: " + process.status().message());
    finish_run(c,
               {{"exitCode", 128},
                {"reason", "StartError"},
                {"message", process.status().message()},
                {"startedAt", c.started_at},
                {"finishedAt", c.started_at}},
               128, true);
    return;
  }
  c.process.emplace(std::move(process).value());
  c.env = std::move(env).value();
  c.container_id = "local://" + std::to_string(c.process->pid());
  c.state = {{"running", {{"startedAt", c.started_at}}}};
  auto tracker = [&](ProbeKind kind, const char* field) -> std::unique_ptr<ProbeTracker> {
    if (!c.spec.contains(field)) return nullptr;
    return std::make_unique<ProbeTracker>(kind, parse_probe(kind, c.spec[field], c.spec), now);
  };
  c.startup = tracker(ProbeKind::kStartup, "startupProbe");
  c.liveness = tracker(ProbeKind::kLiveness, "livenessProbe");
  c.readiness = tracker(ProbeKind::kReadiness, "readinessProbe");
  c.started = c.startup == nullptr;
  c.ready = c.started && c.readiness == nullptr;
}

void PodRun::begin_kill(Container& c, Clock::time_point deadline) {
  if (!c.process) return;
  if (!c.kill_deadline) ::kill(-c.process->pid(), SIGTERM);
  c.kill_deadline = c.kill_deadline ? std::min(*c.kill_deadline, deadline) : deadline;
  c.ready = false;
}

void PodRun::run_probes(Container& c, const json& pod) {
  if (c.kill_deadline) return;
  auto run = [&](ProbeTracker& probe) {
    const ProbeOutcome outcome = run_probe(probe.spec(), pod_ip_, c.env, c.spec.value("workingDir", std::string()));
    const bool changed = probe.record(outcome, Clock::now());
    if (!outcome.success && probe.kind() != ProbeKind::kReadiness)
      log_info(who_ + ": " + probe_kind_name(probe.kind()) + " probe of " + c.name + " failed: " + outcome.message);
    if (changed && probe.kind() == ProbeKind::kReadiness)
      log_info(who_ + ": container " + c.name + (probe.result().value_or(false) ? " ready" : " not ready") +
               (outcome.message.empty() ? "" : ": " + outcome.message));
  };
  // Liveness and startup failures end the container with the probe's (or the Pod's) grace.
  auto kill_for = [&](const ProbeTracker& probe) {
    const int64_t grace = probe.spec().termination_grace_period_seconds.value_or(
        pod.value("/spec/terminationGracePeriodSeconds"_json_pointer, int64_t{30}));
    log_info(who_ + ": container " + c.name + " failed its " + probe_kind_name(probe.kind()) +
             " probe, it will be restarted per restartPolicy");
    begin_kill(c, Clock::now() + seconds(std::max<int64_t>(0, grace)));
  };
  if (!c.started) {
    if (!c.startup || !c.startup->due(Clock::now())) return;
    run(*c.startup);
    if (c.startup->result() == false) return kill_for(*c.startup);
    if (c.startup->result() != true) return;
    c.started = true;
  }
  if (c.liveness && c.liveness->due(Clock::now())) {
    run(*c.liveness);
    if (c.liveness->result() == false) return kill_for(*c.liveness);
  }
  if (c.readiness && c.readiness->due(Clock::now())) run(*c.readiness);
  c.ready = c.readiness ? c.readiness->result().value_or(false) : true;
}

void PodRun::release_ip() {
  if (!pod_ip_.empty() && !host_network_) config_.pod_ips->release(pod_ip_);
  pod_ip_.clear();
}

// The kubelet's rule: Pending while a container waits for its first start; Running while one
// runs or will restart; then Succeeded when all exited 0, else Failed.
std::string PodRun::phase_of_containers() const {
  int waiting = 0, running = 0, restarting = 0, failed = 0;
  for (const auto& c : containers_) {
    if (c->process)
      ++running;
    else if (c->finished)
      failed += c->state.value("/terminated/exitCode"_json_pointer, 1) != 0 ? 1 : 0;
    else if (!c->ever_terminated)
      ++waiting;
    else
      ++restarting;
  }
  if (waiting > 0) return "Pending";
  if (running > 0 || restarting > 0) return "Running";
  return failed > 0 ? "Failed" : "Succeeded";
}

void PodRun::sync(const json& pod, std::atomic<bool>& terminal) {
  if (!terminal.load()) {
    const Clock::time_point now = Clock::now();
    if (pod_ip_.empty() && host_network_) {
      pod_ip_ = shown_ip_ = config_.node_ip;
    } else if (pod_ip_.empty() && now >= next_ip_try_) {
      auto ip = config_.pod_ips->allocate();
      if (ip.ok()) {
        pod_ip_ = shown_ip_ = *ip;
      } else {
        if (!ip_warned_) log_warn(who_ + ": " + ip.status().message());
        ip_warned_ = true;
        next_ip_try_ = now + seconds(1);
      }
    }
    if (!pod_ip_.empty()) {
      for (auto& cp : containers_) {
        Container& c = *cp;
        if (c.process) {
          if (c.kill_deadline && Clock::now() >= *c.kill_deadline)
            record_exit(c, c.process->stop(milliseconds(0)), true);
          else if (auto exit = c.process->poll())
            record_exit(c, *exit, true);
          else
            run_probes(c, pod);
        }
        if (!c.process && !c.finished && Clock::now() >= c.next_start) start_container(c, pod);
      }
      phase_ = phase_of_containers();
      if (phase_ == "Succeeded" || phase_ == "Failed") {
        terminal = true;
        release_ip();
      }
    }
  }
  if (!sync_status(pod)) next_write_ = Clock::now() + seconds(1);  // gone: the informer's delete follows
}

json PodRun::condition(const char* type, const ConditionValue& v) {
  auto& t = transitions_[type];
  if (t.first != v.status || t.second.empty()) t = {v.status, now_str()};
  json c = {{"type", type}, {"status", v.status}, {"lastTransitionTime", t.second}};
  if (!v.reason.empty()) c["reason"] = v.reason;
  if (!v.message.empty()) c["message"] = v.message;
  return c;
}

json PodRun::owned_status(const json& pod) {
  if (rejection_) return {{"phase", "Failed"}, {"reason", rejection_->reason}, {"message", rejection_->message}};
  json st = {{"phase", phase_},
             {"hostIP", config_.node_ip},
             {"hostIPs", json::array({{{"ip", config_.node_ip}}})},
             {"startTime", start_time_}};
  if (!shown_ip_.empty()) {
    st["podIP"] = shown_ip_;
    st["podIPs"] = json::array({{{"ip", shown_ip_}}});
  }
  json statuses = json::array();
  std::string unready;
  for (const auto& c : containers_) {
    json cs = {{"name", c->name},
               {"image", c->spec.value("image", std::string())},
               {"imageID", ""},
               {"ready", c->ready},
               {"started", c->process.has_value() && c->started},
               {"restartCount", c->restart_count},
               {"state", c->state},
               {"lastState", c->last_state}};
    if (!c->container_id.empty()) cs["containerID"] = c->container_id;
    statuses.push_back(std::move(cs));
    if (!c->ready) unready += (unready.empty() ? "" : " ") + c->name;
  }
  st["containerStatuses"] = std::move(statuses);
  const bool terminal = phase_ == "Succeeded" || phase_ == "Failed";
  const std::string unready_message = unready.empty() ? "" : "containers with unready status: [" + unready + "]";
  const ConditionValue completed{"False", "PodCompleted", ""};
  const ConditionValue containers_ready = terminal ? completed
                                          : unready.empty()
                                              ? ConditionValue{"True", "", ""}
                                              : ConditionValue{"False", "ContainersNotReady", unready_message};
  const ConditionValue ready = terminal ? completed : pod_ready_condition(pod, unready.empty(), unready_message);
  st["conditions"] = json::array({
      condition("PodReadyToStartContainers", {!pod_ip_.empty() ? "True" : "False", "", ""}),
      condition("Initialized", {"True", "", ""}),
      condition("Ready", ready),
      condition("ContainersReady", containers_ready),
      condition("PodScheduled", {"True", "", ""}),
  });
  return st;
}

bool PodRun::sync_status(const json& cached) {
  if (frozen_) return true;
  json base = cached;
  if (written_ && kube::object_resource_version(cached) == written_over_rv_) base = *written_;
  json owned = owned_status(base);
  if (pod_status_matches(base.value("status", json::object()), owned)) return true;
  const Clock::time_point now = Clock::now();
  if (now < next_write_) return true;
  for (int attempt = 0; attempt < 3; ++attempt) {
    json next = base;
    next["status"] = merge_pod_status(base.value("status", json::object()), owned);
    auto r = config_.client->update(pods_.named(name_).sub("status"), next);
    if (r.ok()) {
      written_over_rv_ = kube::object_resource_version(base);
      written_ = std::move(r).value();
      write_failures_ = 0;
      return true;
    }
    if (r.error().is_not_found()) return false;
    if (!r.error().is_conflict()) {
      if (write_failures_++ % 20 == 0) log_warn(who_ + ": status update failed: " + r.status().message());
      next_write_ = now + seconds(1);
      return true;
    }
    // 409: someone else wrote (a readiness gate, say); read it and compute again.
    auto fresh = config_.client->get(pods_.named(name_));
    if (!fresh.ok()) return !fresh.error().is_not_found();
    if (kube::metadata_field(*fresh, "uid") != uid_) return false;
    base = std::move(fresh).value();
    owned = owned_status(base);
    if (pod_status_matches(base.value("status", json::object()), owned)) return true;
  }
  next_write_ = now + milliseconds(200);
  return true;
}

bool PodRun::terminate(const json& pod, std::atomic<bool>& terminal) {
  const Clock::time_point now = Clock::now();
  const int64_t grace = pod_grace_seconds(pod);
  if (!terminating_) {
    terminating_ = true;
    terminate_noticed_ = now;
    terminate_deadline_ = now + seconds(grace);
    log_info(who_ + ": deleting, grace period " + std::to_string(grace) + "s");
  }
  // A second delete may shorten the grace period.
  terminate_deadline_ = std::min(terminate_deadline_, terminate_noticed_ + seconds(grace));
  bool running = false;
  for (auto& cp : containers_) {
    Container& c = *cp;
    if (!c.process) continue;
    begin_kill(c, terminate_deadline_);
    if (auto exit = c.process->poll())
      record_exit(c, *exit, false);
    else if (now >= *c.kill_deadline)
      record_exit(c, c.process->stop(milliseconds(0)), false);
    else
      running = true;
  }
  if (running) return false;
  if (!final_status_sent_) {
    final_status_sent_ = true;
    // Containers waiting to (re)start will not now: they show their last run's end, or unknown.
    for (auto& c : containers_) {
      if (c->finished) continue;
      c->finished = true;
      if (c->last_state.contains("terminated")) {
        c->state = c->last_state;
      } else {
        c->state = {{"terminated",
                     {{"exitCode", 137},
                      {"reason", "ContainerStatusUnknown"},
                      {"message", "The container could not be located when the pod was terminated"}}}};
      }
    }
    if (!rejection_ && !frozen_) {
      phase_ = phase_of_containers();
      terminal = true;
      release_ip();
      next_write_ = Clock::time_point{};
      if (!sync_status(pod)) return true;
    }
  }
  if (now < next_delete_) return false;
  kube::DeleteOptions options;
  options.grace_period_seconds = 0;
  options.precondition_uid = uid_;
  auto r = config_.client->remove(pods_.named(name_), options);
  // 409: the uid precondition failed, a new Pod of that name: ours is gone.
  if (r.ok() || r.error().is_not_found() || r.error().is_conflict()) return true;
  log_warn(who_ + ": delete failed, retrying: " + r.status().message());
  next_delete_ = now + seconds(1);
  return false;
}

void PodRun::stop_all(milliseconds grace) {
  const Clock::time_point deadline = Clock::now() + grace;
  for (auto& c : containers_) begin_kill(*c, deadline);
  for (;;) {
    bool running = false;
    for (auto& c : containers_) {
      if (!c->process) continue;
      if (c->process->poll() || Clock::now() >= deadline)
        record_exit(*c, c->process->stop(milliseconds(0)), false);
      else
        running = true;
    }
    if (!running) return;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

// ---------------------------------------------------------------------------------------------

PodWorker::PodWorker(PodWorkerConfig config, const json& pod, std::optional<PodRejection> rejection, int64_t gpus)
    : config_(std::move(config)),
      uid_(kube::metadata_field(pod, "uid")),
      key_(kube::object_key(pod)),
      rejected_(rejection.has_value()),
      gpus_(gpus),
      pod_(std::make_shared<const json>(pod)) {
  run_ = std::make_unique<PodRun>(*this, pod, std::move(rejection));
  terminal_ = run_->terminal_at_start();
  thread_ = std::thread([this] { run(); });
}

PodWorker::~PodWorker() {
  kill();
  join();
}

void PodWorker::update(const json& pod) {
  auto next = std::make_shared<const json>(pod);
  std::lock_guard<std::mutex> lock(mu_);
  pod_ = std::move(next);
  wake_ = true;
  cv_.notify_all();
}

void PodWorker::kill() {
  std::lock_guard<std::mutex> lock(mu_);
  kill_ = true;
  wake_ = true;
  cv_.notify_all();
}

void PodWorker::shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  wake_ = true;
  cv_.notify_all();
}

void PodWorker::join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void PodWorker::run() {
  for (;;) {
    std::shared_ptr<const json> pod;
    bool kill_now = false, shutting_down = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, config_.sync_period, [&] { return wake_; });
      wake_ = false;
      pod = pod_;
      kill_now = kill_;
      shutting_down = shutdown_;
    }
    if (kill_now) {
      run_->stop_all(milliseconds(0));
      break;
    }
    if (shutting_down) {
      run_->stop_all(std::min<milliseconds>(config_.shutdown_grace_max, seconds(pod_grace_seconds(*pod))));
      break;
    }
    if (kube::metadata_field(*pod, "uid") != uid_) continue;  // a new Pod of that name; kill() follows
    if (deleting(*pod)) {
      if (run_->terminate(*pod, terminal_)) break;
      continue;
    }
    run_->sync(*pod, terminal_);
  }
  run_->release_ip();
  done_ = true;
}

}  // namespace hotswap::devcluster
