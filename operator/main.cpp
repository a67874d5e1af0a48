// hotswap-operator: watches ModelDeployments and ModelMigrations and moves replicas live with
// the agents' migration protocol (operator.h). Runs until SIGTERM or SIGINT; with
// --leader-elect, only the replica holding the Lease reconciles, and one that loses it exits 1
// so that its Pod restarts as a follower.
#include <cstdio>
#include <cstdlib>

#include "common/flags.h"
#include "common/log.h"
#include "common/termination_signals.h"
#include "operator/kube/kubeconfig.h"
#include "operator/kube/rest_client.h"
#include "operator/operator.h"

namespace {

int fail(const hotswap::Status& st, int code) {
  std::fprintf(stderr, "hotswap-operator: %s\n", st.to_string().c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hotswap;
  FlagSet flags(
      "usage: hotswap-operator [--kubeconfig F] [--context NAME] [--namespace NS] [--leader-elect]\n"
      "                        [--metrics-port P] [--health-port P] [--workers N] [--agent-image IMAGE]\n"
      "                        [--agent-command PATH] [--model-root DIR] [--migration-tls=false]\n"
      "                        [--network-policy=false]");
  flags.add("kubeconfig", "F", "kubeconfig to use (default: $KUBECONFIG, in-cluster, then ~/.kube/config)");
  flags.add("context", "NAME", "the kubeconfig context (default: its current-context)");
  flags.add("namespace", "NS", "watch ModelDeployments and ModelMigrations in NS only (default: all namespaces)");
  flags.add("leader-elect", "", "hold a coordination.k8s.io Lease; reconcile only while holding it");
  flags.add("leader-election-namespace", "NS", "the Lease's namespace (default: --namespace, else default)");
  flags.add("leader-election-id", "NAME", "the Lease's name (default hotswap-operator)");
  flags.add("leader-election-lease-duration", "S", "seconds a follower waits before taking over a silent leader's Lease (default 15)");
  flags.add("leader-election-renew-deadline", "S", "seconds a leader keeps trying to renew before it stops leading (default 10)");
  flags.add("leader-election-retry-period", "S", "seconds between tries to take or renew the Lease (default 2)");
  flags.add("metrics-port", "P", "serve Prometheus metrics on :P/metrics (default 8080; 0: off)");
  flags.add("health-port", "P", "serve /healthz and /readyz on :P (default 8081; 0: off)");
  flags.add("bind-address", "ADDR", "address for the metrics and health endpoints (default 0.0.0.0)");
  flags.add("workers", "N", "reconcile workers per controller (default 4)");
  flags.add("agent-image", "IMAGE", "container image of the replica Pods (default hotswap-agent:0.1)");
  flags.add("agent-command", "PATH", "the agent's executable in that image (default hotswap-agent)");
  flags.add("model-root", "DIR", "where a relative spec.model.path is found in the agent's container (default /models)");
  flags.add("migration-tls", "BOOL",
            "true (default): each deployment's agents migrate over mutual TLS with material the operator makes "
            "(Secret <name>-migration-tls); false: over plain tcp");
  flags.add("network-policy", "BOOL",
            "true (default): a NetworkPolicy <name>-agents per deployment lets only its own agents reach their "
            "migration data ports; false: none (and the ones made before are deleted)");
  flags.add("help", "", "show this help");
  if (Status st = flags.parse(argc, argv, 1); !st.ok()) return fail(st, 2);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  OperatorOptions o;
  o.ns = flags.get("namespace", "");
  o.leader_elect = flags.has("leader-elect");
  o.leader_election_namespace = flags.get("leader-election-namespace", o.ns.empty() ? "default" : o.ns);
  o.leader_election_id = flags.get("leader-election-id", "hotswap-operator");
  auto metrics_port = flags.get_int("metrics-port", 8080);
  auto health_port = flags.get_int("health-port", 8081);
  auto workers = flags.get_int("workers", 4);
  for (const Status& st : {metrics_port.status(), health_port.status(), workers.status()})
    if (!st.ok()) return fail(st, 2);
  for (auto [name, v] : {std::pair{"--metrics-port", *metrics_port}, std::pair{"--health-port", *health_port}})
    if (v < 0 || v > 65535) return fail(invalid_argument(std::string(name) + " must be in 0..65535"), 2);
  if (*workers < 1 || *workers > 64) return fail(invalid_argument("--workers must be in 1..64"), 2);
  for (auto [name, out] : {std::pair{"leader-election-lease-duration", &o.lease_duration},
                           std::pair{"leader-election-renew-deadline", &o.renew_deadline},
                           std::pair{"leader-election-retry-period", &o.retry_period}}) {
    auto v = flags.get_double(name, static_cast<double>(out->count()) / 1000.0);
    if (!v.ok()) return fail(v.status(), 2);
    if (!(*v > 0) || *v > 3600) return fail(invalid_argument(std::string("--") + name + " must be in (0, 3600] seconds"), 2);
    *out = std::chrono::milliseconds(static_cast<int64_t>(*v * 1000));
  }
  o.metrics_port = static_cast<int>(*metrics_port);
  o.health_port = static_cast<int>(*health_port);
  o.metrics_address = o.health_address = flags.get("bind-address", "0.0.0.0");
  o.workers = static_cast<int>(*workers);
  o.runtime.image = flags.get("agent-image", o.runtime.image);
  o.runtime.command = flags.get("agent-command", o.runtime.command);
  o.runtime.model_root = flags.get("model-root", o.runtime.model_root);
  if (const std::string tls = flags.get("migration-tls", "true"); tls == "false") {
    o.runtime.migration_tls = false;
  } else if (tls != "true") {
    return fail(invalid_argument("--migration-tls must be true or false, got '" + tls + "'"), 2);
  }
  if (const std::string np = flags.get("network-policy", "true"); np == "false") {
    o.runtime.network_policy = false;
  } else if (np != "true") {
    return fail(invalid_argument("--network-policy must be true or false, got '" + np + "'"), 2);
  }
  o.on_lost_leadership = [] {
    log_error("hotswap-operator: leadership lost; exiting so that this replica restarts as a follower");
    std::_Exit(1);
  };

  auto config = kube::resolve_config(flags.get("kubeconfig", ""), flags.get("context", ""));
  if (!config.ok()) return fail(config.status(), 2);
  kube::RestClientOptions client_options;
  client_options.user_agent = "hotswap-operator/0.1";
  auto client = kube::RestClient::create(*config, client_options);
  if (!client.ok()) return fail(client.status(), 2);

  TerminationSignals signals;  // before any thread starts

  auto op = Operator::start(**client, o);
  if (!op.ok()) return fail(op.status(), 1);
  log_info("hotswap-operator: watching " + (o.ns.empty() ? std::string("all namespaces") : "namespace " + o.ns) +
           " on " + (*config).server + (o.metrics_port ? "; metrics on :" + std::to_string(o.metrics_port) : ""));
  log_info(std::string("hotswap-operator: ") + signals.wait() + ", stopping");
  (*op)->stop();
  return 0;
}
