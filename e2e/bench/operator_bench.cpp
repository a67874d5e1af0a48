// hotswap-operator-bench: the operator at scale on the dev cluster's API server.
//
// N ModelDeployments of R replicas each (default 200 x 5 = 1,000 replica Pods) on enough
// simulated GPU nodes, with the agents replaced by a lightweight stand-in: the dev cluster's
// scheduler binds the Pods; a stand-in kubelet in this process marks each bound Pod Running
// with its containers ready (and Ready once its serving gate is True), giving every Pod the
// address 127.0.0.1; one stand-in agent on 127.0.0.1:8000 answers every replica's control status
// (empty queue, no GPU fault). The real `hotswap-operator` binary runs as a child process.
//
// It reports: the time until every deployment has all its replicas serving; at steady state,
// over a window, the operator's API requests per second (counted by the API server by
// User-Agent), its reconcile latency p50/p99 (from its reconcile_seconds histogram) and its
// resident memory; and the time from `cordon` of a node to the start of the migrations off it
// (the ModelMigration created, and its target Pod created).
//
// Usage: hotswap-operator-bench --operator PATH [--deployments N] [--replicas R] [--gpus-per-node G]
//                               [--window-s S] [--cordons K] [--markdown]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <cpprest/http_client.h>

#include "common/flags.h"
#include "common/http.h"
#include "e2e/devcluster/apiserver/api_server.h"
#include "e2e/devcluster/nodes/scheduler.h"
#include "operator/controllers/resources.h"
#include "operator/kube/informer.h"
#include "operator/kube/object.h"
#include "operator/kube/work_queue.h"

namespace hotswap {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace ctl = controllers;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Marks bound Pods Running with ready containers, and Ready while their serving gate is True.
class StandInKubelet {
 public:
  explicit StandInKubelet(const kube::RestClient& client)
      : client_(client), pods_(client, [] {
          kube::InformerOptions o;
          o.collection = ctl::pods_ref();
          return o;
        }()) {}
  ~StandInKubelet() { stop(); }

  Status start() {
    kube::InformerHandlers h;
    h.on_add = [this](const json& p) { queue_.add(kube::object_key(p)); };
    h.on_update = [this](const json&, const json& p) { queue_.add(kube::object_key(p)); };
    HOTSWAP_RETURN_IF_ERROR(pods_.add_handlers(h));
    HOTSWAP_RETURN_IF_ERROR(pods_.start());
    for (int i = 0; i < 4; ++i) workers_.emplace_back([this] { work(); });
    return Status();
  }
  size_t pods_seen() const { return pods_.size(); }
  void stop() {
    queue_.shutdown();
    for (auto& t : workers_) t.join();
    workers_.clear();
    pods_.stop();
  }

 private:
  void work() {
    while (auto key = queue_.get(500ms)) {
      if (auto pod = pods_.get(*key); pod) sync(*pod);
      queue_.done(*key);
    }
  }
  void sync(const json& pod) {
    const std::string ns = kube::object_namespace(pod), name = kube::object_name(pod);
    if (ctl::pod_node(pod).empty()) return;
    if (pod.contains("/metadata/deletionTimestamp"_json_pointer)) {  // terminated at once
      (void)client_.remove(ctl::pods_ref().in(ns).named(name), [] {
        kube::DeleteOptions d;
        d.grace_period_seconds = 0;
        return d;
      }());
      return;
    }
    const bool gate = ctl::pod_condition(pod, ctl::kServingGate) == "True";
    const std::string want_ready = gate ? "True" : "False";
    if (pod.value("/status/phase"_json_pointer, std::string()) == "Running" &&
        ctl::pod_condition(pod, "ContainersReady") == "True" && ctl::pod_condition(pod, "Ready") == want_ready)
      return;
    const std::string now = ctl::format_rfc3339(ctl::now_unix_ms() / 1000);
    json conditions = json::array();
    for (const char* t : {"PodScheduled", "Initialized", "ContainersReady"})
      conditions.push_back({{"type", t}, {"status", "True"}, {"lastTransitionTime", now}});
    conditions.push_back({{"type", "Ready"}, {"status", want_ready}, {"lastTransitionTime", now}});
    json patch = {{"status", {{"phase", "Running"}, {"podIP", "127.0.0.1"}, {"hostIP", "127.0.0.1"}, {"conditions", conditions}}}};
    (void)client_.patch(ctl::pods_ref().in(ns).named(name).sub("status"), kube::PatchType::kStrategicMerge, patch);
  }

  const kube::RestClient& client_;
  kube::Informer pods_;
  kube::WorkQueue queue_;
  std::vector<std::thread> workers_;
};

// The operator's reconcile_seconds{controller="modeldeployment"} histogram as bucket counts.
std::map<double, double> reconcile_buckets(const std::string& metrics) {
  std::map<double, double> b;
  std::istringstream in(metrics);
  std::string line;
  const std::string prefix = "hotswap_operator_reconcile_seconds_bucket{controller=\"modeldeployment\",le=\"";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    const size_t q = line.find('"', prefix.size());
    const std::string le = line.substr(prefix.size(), q - prefix.size());
    const double bound = le == "+Inf" ? INFINITY : std::stod(le);
    b[bound] = std::stod(line.substr(line.rfind(' ') + 1));
  }
  return b;
}

// The p-quantile of the histogram's increase from `before` to `after`, as the bucket's upper bound.
double quantile(const std::map<double, double>& before, const std::map<double, double>& after, double p) {
  double total = 0;
  for (auto& [le, n] : after) total = std::max(total, n - (before.count(le) ? before.at(le) : 0));
  if (total <= 0) return NAN;
  for (auto& [le, n] : after)
    if (n - (before.count(le) ? before.at(le) : 0) >= p * total) return le;
  return INFINITY;
}

std::string fetch(const std::string& url) {
  try {
    web::http::client::http_client c(url);
    return c.request(web::http::methods::GET).get().extract_string(true).get();
  } catch (const std::exception&) {
    return "";
  }
}

int64_t rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  return -1;
}

int run(int argc, char** argv) {
  FlagSet flags(
      "usage: hotswap-operator-bench --operator PATH [--deployments N] [--replicas R] [--gpus-per-node G]\n"
      "                              [--window-s S] [--cordons K] [--markdown]");
  flags.add("operator", "PATH", "the hotswap-operator binary (required)");
  flags.add("deployments", "N", "ModelDeployments (default 200)");
  flags.add("replicas", "R", "replicas each (default 5)");
  flags.add("gpus-per-node", "G", "GPUs per simulated node (default 4)");
  flags.add("window-s", "S", "steady-state measurement window (default 20)");
  flags.add("cordons", "K", "nodes cordoned one after another to time the migration start (default 3)");
  flags.add("markdown", "", "print the result as a markdown table");
  flags.add("keep", "", "keep the operator's log and kubeconfig (the directory is printed)");
  flags.add("help", "", "show this help");
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "operator-bench: %s\n", st.to_string().c_str());
    return 1;
  };
  if (Status st = flags.parse(argc, argv, 1); !st.ok()) return fail(st);
  if (flags.has("help")) return std::fputs(flags.help().c_str(), stdout), 0;
  if (!flags.has("operator")) return fail(invalid_argument("--operator is required"));
  auto n_md = flags.get_int("deployments", 200), replicas = flags.get_int("replicas", 5),
       gpus = flags.get_int("gpus-per-node", 4), window = flags.get_int("window-s", 20), cordons = flags.get_int("cordons", 3);
  for (const Status& st : {n_md.status(), replicas.status(), gpus.status(), window.status(), cordons.status()})
    if (!st.ok()) return fail(st);
  const int64_t pods_total = *n_md * *replicas;
  // Room for every replica and, on each node, for the targets of a cordoned node's replicas.
  const int64_t nodes = (pods_total + *gpus - 1) / *gpus + *cordons + 2;

  devcluster::ApiServerOptions ao;
  ao.event_log_limit = 200000;
  auto server = devcluster::ApiServer::start(ao);
  if (!server.ok()) return fail(server.status());
  kube::ClusterConfig cc;
  cc.server = (*server)->url();
  cc.origin = "operator-bench";
  kube::RestClientOptions ro;
  ro.user_agent = "operator-bench/0.1";
  auto client_or = kube::RestClient::create(cc, ro);
  if (!client_or.ok()) return fail(client_or.status());
  const kube::RestClient& client = **client_or;
  const std::string dir = std::filesystem::temp_directory_path() / ("operator-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string kubeconfig = dir + "/kubeconfig";
  if (Status st = (*server)->write_kubeconfig(kubeconfig); !st.ok()) return fail(st);
  const std::string src = HOTSWAP_SOURCE_DIR;
  if (std::system(("KUBECONFIG=" + kubeconfig + " kubectl apply -f " + src + "/crds/ > /dev/null && KUBECONFIG=" +
                   kubeconfig + " kubectl wait --for=condition=Established crd --all --timeout=30s > /dev/null")
                      .c_str()) != 0)
    return fail(unavailable("kubectl apply -f crds/ failed"));

  // The stand-in agent: every replica's control status, on 127.0.0.1:8000.
  std::atomic<int64_t> agent_calls{0};
  auto agent = http::open_listener(
      "http://127.0.0.1:" + std::to_string(ctl::kAgentPort),
      [&](web::http::http_request req, std::string) {
        ++agent_calls;
        http::reply_json(req, 200, {{"queue", 0}, {"running", 0}, {"open_requests", 0}, {"gpu_faults", json::array()}});
      },
      [](const web::http::http_request&, int, const std::string& what) { return json{{"error", what}}; });
  if (!agent.ok()) return fail(agent.status().with_context("the stand-in agent (port 8000 must be free on 127.0.0.1)"));

  for (int64_t i = 1; i <= nodes; ++i) {
    const std::string name = "node-" + std::to_string(i);
    json node = {{"apiVersion", "v1"},
                 {"kind", "Node"},
                 {"metadata",
                  {{"name", name},
                   {"labels", {{ctl::kHostnameLabel, name}, {ctl::kGpuClassLabel, i % 2 ? "t4-sim" : "a100-sim"}}}}}};
    if (auto r = client.create(ctl::nodes_ref(), node); !r.ok()) return fail(r.status());
    json status = {{"status",
                    {{"capacity", {{ctl::kGpuResource, std::to_string(*gpus)}}},
                     {"allocatable", {{ctl::kGpuResource, std::to_string(*gpus)}}},
                     {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})}}}};
    if (auto r = client.patch(ctl::nodes_ref().named(name).sub("status"), kube::PatchType::kMerge, status); !r.ok())
      return fail(r.status());
  }
  devcluster::Scheduler scheduler(client);
  if (Status st = scheduler.start(); !st.ok()) return fail(st);
  StandInKubelet kubelet(client);
  if (Status st = kubelet.start(); !st.ok()) return fail(st);

  auto port = http::pick_free_port();
  if (!port.ok()) return fail(port.status());
  const std::string log = dir + "/operator.log";
  const std::string cmd = flags.get("operator") + " --kubeconfig " + kubeconfig + " --metrics-port " +
                          std::to_string(*port) + " --bind-address 127.0.0.1 --health-port 0 --agent-command /bin/true";
  std::fprintf(stderr, "operator-bench: the operator logs to %s\n", log.c_str());
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > " + log + " 2>&1").c_str(), nullptr);
    ::_exit(127);
  }
  auto stop_operator = [&] {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  };
  const std::string metrics_url = "http://127.0.0.1:" + std::to_string(*port) + "/metrics";

  // Apply the deployments and wait until every replica serves.
  const auto t_apply = Clock::now();
  for (int64_t i = 0; i < *n_md; ++i) {
    json md = {{"apiVersion", "hotswap.io/v1alpha1"},
               {"kind", "ModelDeployment"},
               {"metadata", {{"name", "md-" + std::to_string(i)}, {"namespace", "default"}}},
               {"spec", {{"model", {{"name", "small"}, {"path", "models/small"}}}, {"replicas", *replicas}}}};
    if (auto r = client.create(ctl::deployments_ref().in("default"), md); !r.ok()) {
      stop_operator();
      return fail(r.status());
    }
  }
  double converged_s = -1, created_s = -1;
  for (int i = 0; i < 6000; ++i) {
    if (created_s < 0 && static_cast<int64_t>(kubelet.pods_seen()) >= pods_total) created_s = seconds_since(t_apply);
    auto l = client.list(ctl::deployments_ref().in("default"));
    int64_t ready = 0;
    if (l.ok())
      for (const auto& md : (*l)["items"]) ready += md.value("/status/readyReplicas"_json_pointer, int64_t{0});
    if (ready == pods_total) {
      converged_s = seconds_since(t_apply);
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  if (converged_s < 0) {
    stop_operator();
    return fail(unavailable("the replicas did not all serve within 600 s; see " + log));
  }

  // Steady state.
  std::this_thread::sleep_for(3s);
  auto operator_requests = [&] {
    int64_t n = 0;
    for (auto& [ua, count] : (*server)->requests_by_user_agent())
      if (ua.rfind("hotswap-operator", 0) == 0) n += count;
    return n;
  };
  const auto before = reconcile_buckets(fetch(metrics_url));
  const int64_t req0 = operator_requests(), agent0 = agent_calls.load();
  std::this_thread::sleep_for(std::chrono::seconds(*window));
  const int64_t req1 = operator_requests(), agent1 = agent_calls.load();
  const auto after = reconcile_buckets(fetch(metrics_url));
  const double api_rps = double(req1 - req0) / double(*window);
  const double agent_rps = double(agent1 - agent0) / double(*window);
  const double p50 = quantile(before, after, 0.5), p99 = quantile(before, after, 0.99);
  const double rss_mib = double(rss_kib(pid)) / 1024.0;

  // Cordon: time to the ModelMigration and to its target Pod.
  std::vector<double> to_mm, to_target;
  for (int64_t k = 0; k < *cordons; ++k) {
    const std::string node = "node-" + std::to_string(k + 1);
    std::set<std::string> known;
    if (auto l = client.list(ctl::migrations_ref().in("default")); l.ok())
      for (const auto& m : (*l)["items"]) known.insert(kube::object_name(m));
    const auto t0 = Clock::now();
    if (auto r = client.patch(ctl::nodes_ref().named(node), kube::PatchType::kMerge, json{{"spec", {{"unschedulable", true}}}});
        !r.ok()) {
      stop_operator();
      return fail(r.status());
    }
    double mm_s = -1, target_s = -1;
    while (seconds_since(t0) < 30 && target_s < 0) {
      if (auto l = client.list(ctl::migrations_ref().in("default")); l.ok())
        for (const auto& m : (*l)["items"]) {
          if (known.count(kube::object_name(m)) || m.value("/status/sourceNode"_json_pointer, node) != node) continue;
          if (mm_s < 0) mm_s = seconds_since(t0);
          const std::string phase = m.value("/status/phase"_json_pointer, std::string());
          if (!phase.empty() && phase != "Pending" && target_s < 0) target_s = seconds_since(t0);
        }
      std::this_thread::sleep_for(5ms);
    }
    to_mm.push_back(mm_s);
    to_target.push_back(target_s);
  }
  stop_operator();
  kubelet.stop();
  scheduler.stop();
  (*agent)->close().wait();
  (*server)->stop();
  if (!flags.has("keep")) std::filesystem::remove_all(dir);

  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? NAN : v[v.size() / 2];
  };
  auto ms = [](double s) { return s * 1000.0; };
  if (flags.has("markdown")) {
    std::printf("| measure | value |\n| --- | ---: |\n");
    std::printf("| ModelDeployments x replicas (Pods) | %lld x %lld (%lld) on %lld nodes of %lld GPUs |\n",
                (long long)*n_md, (long long)*replicas, (long long)pods_total, (long long)nodes, (long long)*gpus);
    std::printf("| apply to every replica Pod created by the operator | %.1f s |\n", created_s);
    std::printf("| apply to every replica serving (the dev cluster's scheduler binds them) | %.1f s |\n", converged_s);
    std::printf("| operator API requests per second, steady state (%lld s) | %.2f |\n", (long long)*window, api_rps);
    std::printf("| agent status calls per second, steady state | %.1f |\n", agent_rps);
    std::printf("| ModelDeployment reconcile p50 / p99 (histogram bucket bounds) | <= %.0f ms / <= %.0f ms |\n", ms(p50), ms(p99));
    std::printf("| operator resident memory | %.1f MiB |\n", rss_mib);
    std::printf("| cordon to ModelMigration created, median of %lld | %.0f ms |\n", (long long)*cordons, ms(median(to_mm)));
    std::printf("| cordon to target Pod created (TargetScheduling), median of %lld | %.0f ms |\n", (long long)*cordons,
                ms(median(to_target)));
  } else {
    json out = {{"deployments", *n_md},       {"replicas", *replicas},       {"pods", pods_total},
                {"nodes", nodes},             {"created_s", created_s},      {"converged_s", converged_s},  {"api_requests_per_s", api_rps},
                {"agent_calls_per_s", agent_rps}, {"reconcile_p50_s", p50},  {"reconcile_p99_s", p99},
                {"rss_mib", rss_mib},         {"cordon_to_migration_s", to_mm}, {"cordon_to_target_s", to_target}};
    std::printf("%s\n", out.dump(2).c_str());
  }
  return 0;
}

}  // namespace
}  // namespace hotswap

int main(int argc, char** argv) { return hotswap::run(argc, argv); }
