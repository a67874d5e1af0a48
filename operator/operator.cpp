#include "operator/operator.h"

#include <unistd.h>

#include <set>
#include <thread>
#include <vector>

#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"
#include "operator/controllers/agent_poller.h"
#include "operator/controllers/cluster_view.h"
#include "operator/controllers/deployment_controller.h"
#include "operator/controllers/migration_controller.h"
#include "operator/controllers/operator_metrics.h"
#include "operator/kube/informer.h"
#include "operator/kube/leader_election.h"
#include "operator/kube/object.h"
#include "operator/kube/work_queue.h"

namespace hotswap {

using nlohmann::json;
using namespace controllers;

namespace {

// The metrics and health ports take no bodies; a probe's is empty.
constexpr size_t kMaxProbeBodyBytes = 64 << 10;

json operator_error_body(const web::http::http_request&, int, const std::string& message) {
  return {{"error", message}};
}

}  // namespace

struct Operator::Impl {
  const kube::RestClient& client;
  OperatorOptions options;
  OperatorMetrics metrics;
  std::unique_ptr<kube::Informer> deployments, migrations, pods, nodes;
  ClusterView view;
  kube::WorkQueue deployment_queue, migration_queue;
  std::unique_ptr<DeploymentReconciler> deployment_reconciler;
  std::unique_ptr<MigrationReconciler> migration_reconciler;
  std::unique_ptr<AgentPoller> poller;
  std::unique_ptr<kube::LeaderElector> elector;
  std::unique_ptr<http::Listener> metrics_listener, health_listener;
  std::mutex workers_mu;
  std::vector<std::thread> workers;
  std::atomic<bool> leading{false};
  std::atomic<bool> stopping{false};
  std::atomic<bool> shutting_down{false};

  Impl(const kube::RestClient& c, OperatorOptions o)
      : client(c), options(std::move(o)), deployment_queue({std::chrono::milliseconds(50), std::chrono::seconds(60)}),
        migration_queue({std::chrono::milliseconds(50), std::chrono::seconds(30)}) {}

  std::unique_ptr<kube::Informer> informer(kube::ResourceRef ref, bool namespaced) {
    kube::InformerOptions io;
    io.collection = namespaced ? ref.in(options.ns) : ref;
    io.backoff_initial = options.informer_backoff;
    return std::make_unique<kube::Informer>(client, io);
  }

  void queue_deployment_of(const json& object, const std::string& deployment) {
    if (!deployment.empty()) deployment_queue.add(kube::object_key(kube::object_namespace(object), deployment));
  }

  void wire_handlers() {
    kube::InformerHandlers md;
    md.on_add = [this](const json& o) { deployment_queue.add(kube::object_key(o)); };
    md.on_update = [this](const json&, const json& o) { deployment_queue.add(kube::object_key(o)); };
    md.on_delete = [this](const json& o) { deployment_queue.add(kube::object_key(o)); };
    (void)deployments->add_handlers(md);

    kube::InformerHandlers mm;
    auto on_mm = [this](const json& o) {
      migration_queue.add(kube::object_key(o));
      queue_deployment_of(o, o.value("/spec/deployment"_json_pointer, std::string()));
    };
    mm.on_add = on_mm;
    mm.on_update = [on_mm](const json&, const json& o) { on_mm(o); };
    mm.on_delete = on_mm;
    (void)migrations->add_handlers(mm);

    kube::InformerHandlers pod;
    auto on_pod = [this](const json& o) {
      queue_deployment_of(o, label(o, kDeploymentLabel));
      const std::string mm_name = annotation(o, kMigrationTargetAnnotation);
      if (!mm_name.empty()) migration_queue.add(kube::object_key(kube::object_namespace(o), mm_name));
    };
    pod.on_add = on_pod;
    pod.on_update = [on_pod](const json&, const json& o) { on_pod(o); };
    pod.on_delete = on_pod;
    (void)pods->add_handlers(pod);

    // A Node's status heartbeats change nothing the policy reads; cordons, taints, labels and
    // readiness do, for every deployment.
    kube::InformerHandlers node;
    auto all_deployments = [this] {
      for (auto& d : deployments->list()) deployment_queue.add(kube::object_key(*d));
    };
    node.on_add = [all_deployments](const json&) { all_deployments(); };
    // A node that got worse (cordoned, tainted, not Ready, GPU marked faulty) concerns the
    // deployments with replicas on it, at once; one that got better may let any waiting
    // migration go, which their periodic look finds.
    node.on_update = [this, all_deployments](const json& a, const json& b) {
      const auto sa = node_state(a), sb = node_state(b);
      if (sa.unschedulable == sb.unschedulable && sa.no_execute == sb.no_execute && sa.ready == sb.ready &&
          sa.labels == sb.labels && sa.gpus == sb.gpus && sa.gpu_faulty == sb.gpu_faulty)
        return;
      const bool worse = (sb.unschedulable && !sa.unschedulable) || (sb.no_execute && !sa.no_execute) ||
                         (!sb.ready && sa.ready) || (sb.gpu_faulty && !sa.gpu_faulty);
      if (!worse) return all_deployments();
      std::set<std::string> keys;
      for (auto& p : pods->list())
        if (pod_node(*p) == sb.name && !label(*p, kDeploymentLabel).empty())
          keys.insert(kube::object_key(kube::object_namespace(*p), label(*p, kDeploymentLabel)));
      for (const auto& k : keys) deployment_queue.add(k);
    };
    node.on_delete = [all_deployments](const json&) { all_deployments(); };
    (void)nodes->add_handlers(node);
  }

  template <typename Reconciler>
  void work(const char* controller, kube::WorkQueue& queue, Reconciler& reconciler) {
    while (!stopping.load()) {
      auto key = queue.get(std::chrono::milliseconds(500));
      if (!key) {
        if (queue.shutting_down()) return;
        continue;
      }
      const auto t0 = std::chrono::steady_clock::now();
      // An exception (a shape of an object nothing expected) fails this reconcile, with its
      // message, and is retried with backoff; it does not end the operator.
      StatusOr<controllers::ReconcileResult> result = internal_error("not reconciled");
      try {
        result = reconciler.reconcile(*key);
      } catch (const std::exception& e) {
        result = internal_error(std::string("the reconcile threw: ") + e.what());
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      metrics.reconciled(controller, seconds, result.ok());
      if (!result.ok()) {
        auto delay = queue.add_rate_limited(*key);
        log_warn(std::string(controller) + " " + *key + ": " + result.status().to_string() + " (retry in " +
                 std::to_string(delay.count()) + " ms)");
      } else {
        queue.forget(*key);
        if (result->requeue_after.count() > 0) queue.add_after(*key, result->requeue_after);
      }
      queue.done(*key);
    }
  }

  void start_workers() {
    std::lock_guard<std::mutex> lk(workers_mu);
    if (leading.exchange(true)) return;
    metrics.set_leader(true);
    // Everything known is looked at once on taking over: migrations resume from their status.
    for (auto& d : deployments->list()) deployment_queue.add(kube::object_key(*d));
    for (auto& m : migrations->list()) migration_queue.add(kube::object_key(*m));
    for (int i = 0; i < options.workers; ++i) {
      workers.emplace_back([this] { work("modeldeployment", deployment_queue, *deployment_reconciler); });
      workers.emplace_back([this] { work("modelmigration", migration_queue, *migration_reconciler); });
    }
    poller->start();
    log_info("hotswap-operator: leading; " + std::to_string(options.workers) + " workers per controller");
  }

  void stop_workers() {
    std::vector<std::thread> joined;
    {
      std::lock_guard<std::mutex> lk(workers_mu);
      stopping.store(true);
      if (poller) poller->stop();
      deployment_queue.shutdown();
      migration_queue.shutdown();
      joined.swap(workers);
    }
    for (auto& t : joined) t.join();
    leading.store(false);
    metrics.set_leader(false);
  }

  void handle_health(const web::http::http_request& req) {
    const std::string path = req.relative_uri().path();
    if (path == "/healthz") return void(http::reply_json(req, 200, {{"ok", true}}));
    if (path == "/readyz") {
      const bool synced = deployments->has_synced() && migrations->has_synced() && pods->has_synced() && nodes->has_synced();
      return void(http::reply_json(req, synced ? 200 : 503,
                                   {{"synced", synced}, {"leading", leading.load()}}));
    }
    http::reply_json(req, 404, {{"error", "no route " + path}});
  }

  std::string render() {
    metrics.set_queue_depth("modeldeployment", double(deployment_queue.len() + deployment_queue.waiting_count() +
                                                      deployment_queue.processing_count()));
    metrics.set_queue_depth("modelmigration", double(migration_queue.len() + migration_queue.waiting_count() +
                                                     migration_queue.processing_count()));
    for (auto [name, inf] : {std::pair{"modeldeployments", deployments.get()}, std::pair{"modelmigrations", migrations.get()},
                             std::pair{"pods", pods.get()}, std::pair{"nodes", nodes.get()}})
      metrics.set_informer_counts(name, inf->watch_count(), inf->list_count());
    return render_metrics_text(metrics.registry());
  }
};

Operator::Operator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Operator::~Operator() { stop(); }

StatusOr<std::unique_ptr<Operator>> Operator::start(const kube::RestClient& client, OperatorOptions options) {
  if (options.workers < 1) return invalid_argument("workers must be >= 1, got " + std::to_string(options.workers));
  auto impl = std::make_unique<Impl>(client, std::move(options));
  Impl& m = *impl;
  m.deployments = m.informer(deployments_ref(), true);
  m.migrations = m.informer(migrations_ref(), true);
  m.pods = m.informer(pods_ref(), false);  // every namespace's: they all take GPUs
  m.nodes = m.informer(nodes_ref(), false);
  m.view.client = &client;
  m.view.deployments = m.deployments.get();
  m.view.migrations = m.migrations.get();
  m.view.pods = m.pods.get();
  m.view.nodes = m.nodes.get();
  m.view.metrics = &m.metrics;
  m.view.runtime = m.options.runtime;
  m.poller = std::make_unique<AgentPoller>(
      m.view, [raw_queue = &m.deployment_queue](const std::string& key) { raw_queue->add(key); },
      m.options.agent_poll);
  m.view.agents = m.poller.get();
  m.deployment_reconciler = std::make_unique<DeploymentReconciler>(m.view);
  m.migration_reconciler = std::make_unique<MigrationReconciler>(m.view);
  m.wire_handlers();
  for (auto* inf : {m.deployments.get(), m.migrations.get(), m.pods.get(), m.nodes.get()})
    HOTSWAP_RETURN_IF_ERROR(inf->start());
  Impl* raw = impl.get();
  if (m.options.metrics_port > 0) {
    HOTSWAP_ASSIGN_OR_RETURN(
        m.metrics_listener,
        http::open_listener(
            "http://" + m.options.metrics_address + ":" + std::to_string(m.options.metrics_port),
            [raw](web::http::http_request req, std::string) {
              if (req.relative_uri().path() != "/metrics") return void(http::reply_json(req, 404, {{"error", "see /metrics"}}));
              web::http::http_response resp(200);
              resp.set_body(raw->render(), "text/plain; version=0.0.4");
              req.reply(resp);
            },
            operator_error_body, kMaxProbeBodyBytes));
  }
  if (m.options.health_port > 0) {
    HOTSWAP_ASSIGN_OR_RETURN(
        m.health_listener,
        http::open_listener("http://" + m.options.health_address + ":" + std::to_string(m.options.health_port),
                            [raw](web::http::http_request req, std::string) { raw->handle_health(req); },
                            operator_error_body, kMaxProbeBodyBytes));
  }
  // Reconcile against a synced cache only: a half-listed cache would look like missing Pods.
  for (auto* inf : {m.deployments.get(), m.migrations.get(), m.pods.get(), m.nodes.get()})
    if (!inf->wait_for_sync(std::chrono::seconds(60)))
      return unavailable("the informers did not sync within 60 s: " + inf->last_error().to_string());
  if (!m.options.leader_elect) {
    m.start_workers();
  } else {
    kube::LeaderElectionConfig lc;
    lc.lease_namespace = m.options.leader_election_namespace;
    lc.lease_name = m.options.leader_election_id;
    lc.lease_duration = m.options.lease_duration;
    lc.renew_deadline = m.options.renew_deadline;
    lc.retry_period = m.options.retry_period;
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    lc.identity = m.options.identity.empty() ? std::string(host) + "-" + std::to_string(getpid()) : m.options.identity;
    lc.on_started_leading = [raw] { raw->start_workers(); };
    lc.on_stopped_leading = [raw] {
      if (raw->shutting_down.load()) return;  // stop() releases the lease on purpose
      log_warn("hotswap-operator: lost the leader lease; stopping the workers");
      std::thread([raw] {
        raw->stop_workers();
        if (raw->options.on_lost_leadership) raw->options.on_lost_leadership();
      }).detach();
    };
    lc.on_new_leader = [](const std::string& id) { log_info("hotswap-operator: the leader is " + id); };
    HOTSWAP_ASSIGN_OR_RETURN(m.elector, kube::LeaderElector::create(client, lc));
    m.elector->start();
  }
  return std::unique_ptr<Operator>(new Operator(std::move(impl)));
}

void Operator::stop() {
  if (!impl_) return;
  impl_->shutting_down.store(true);
  if (impl_->elector) impl_->elector->stop();
  impl_->stop_workers();
  if (impl_->metrics_listener) impl_->metrics_listener->close().wait();
  if (impl_->health_listener) impl_->health_listener->close().wait();
  for (auto* inf : {impl_->deployments.get(), impl_->migrations.get(), impl_->pods.get(), impl_->nodes.get()})
    if (inf) inf->stop();
  impl_.reset();
}

bool Operator::synced() const {
  return impl_ && impl_->deployments->has_synced() && impl_->migrations->has_synced() && impl_->pods->has_synced() &&
         impl_->nodes->has_synced();
}
bool Operator::leading() const { return impl_ && impl_->leading.load(); }
int Operator::metrics_port() const { return impl_ ? impl_->options.metrics_port : 0; }
int Operator::health_port() const { return impl_ ? impl_->options.health_port : 0; }
std::string Operator::metrics_text() const { return impl_ ? impl_->render() : ""; }

}  // namespace hotswap
