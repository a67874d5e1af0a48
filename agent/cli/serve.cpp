// hotswap-agent serve: load a model and serve it over HTTP until SIGTERM/SIGINT, then drain:
// stop taking requests, let open streams finish within --grace-seconds, exit 0.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <utility>

#include "agent/cli/commands.h"
#include "agent/cli/engine_flags.h"
#include "agent/migration/tls_link.h"
#include "agent/server/agent_server.h"
#include "common/http.h"
#include "common/log.h"
#include "common/termination_signals.h"
#include "common/token_file.h"

namespace hotswap::agent {

namespace {

struct Speed {
  double factor = 1, reference = 1;
};

// A positive number from --flag, else from the environment variable, else `fallback`; errors
// name where the bad value came from.
StatusOr<double> speed_value(const FlagSet& flags, const std::string& flag, const char* env, double fallback) {
  std::string text, origin;
  if (flags.has(flag)) {
    text = flags.get(flag);
    origin = "--" + flag;
  } else if (const char* v = std::getenv(env); v != nullptr && *v != '\0') {
    text = v;
    origin = std::string("$") + env;
  } else {
    return fallback;
  }
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !std::isfinite(value) || value <= 0)
    return invalid_argument(origin + " = '" + text + "' is not a positive number");
  return value;
}

// The card this agent runs as. The dev cluster's kubelet sets HOTSWAP_GPU_SPEED_FACTOR to the
// node's class speed and HOTSWAP_GPU_SPEED_REFERENCE to the fastest class's, so the fastest
// card runs the CPU backend at full speed and a card half as fast at half of it.
StatusOr<Speed> speed_from_flags(const FlagSet& flags) {
  Speed s;
  HOTSWAP_ASSIGN_OR_RETURN(s.factor, speed_value(flags, "speed-factor", "HOTSWAP_GPU_SPEED_FACTOR", 1.0));
  HOTSWAP_ASSIGN_OR_RETURN(s.reference, speed_value(flags, "speed-reference", "HOTSWAP_GPU_SPEED_REFERENCE", s.factor));
  if (s.factor > s.reference)
    return invalid_argument("speed factor " + std::to_string(s.factor) + " is above the reference " +
                            std::to_string(s.reference) + ": the CPU backend cannot run faster than itself");
  return s;
}

// The migration data channel's TLS material: --migration-tls-dir (a mounted kubernetes.io/tls
// Secret: ca.crt, tls.crt, tls.key), else the PEM text of $HOTSWAP_MIGRATION_TLS_CA, _CERT and
// _KEY (all three, as the operator's replica Pods get them), else none (null).
StatusOr<std::shared_ptr<const migration::TlsContext>> migration_tls_from_flags(const FlagSet& flags) {
  if (flags.has("migration-tls-dir")) {
    std::string dir = flags.get("migration-tls-dir");
    if (!dir.empty() && dir.back() != '/') dir += '/';
    auto material = migration::read_tls_material(dir + "ca.crt", dir + "tls.crt", dir + "tls.key");
    if (!material.ok()) return material.status().with_context("--migration-tls-dir");
    auto context = migration::TlsContext::create(*material);
    if (!context.ok()) return context.status().with_context("--migration-tls-dir " + flags.get("migration-tls-dir"));
    return context;
  }
  const char* names[] = {"HOTSWAP_MIGRATION_TLS_CA", "HOTSWAP_MIGRATION_TLS_CERT", "HOTSWAP_MIGRATION_TLS_KEY"};
  std::string values[3];
  int set = 0;
  for (int i = 0; i < 3; ++i) {
    const char* v = std::getenv(names[i]);
    if (v != nullptr && *v != '\0') {
      values[i] = v;
      ++set;
    }
  }
  if (set == 0) return std::shared_ptr<const migration::TlsContext>();
  if (set != 3)
    return invalid_argument("$HOTSWAP_MIGRATION_TLS_CA, _CERT and _KEY must be set together (" + std::to_string(set) +
                            " of 3 are)");
  auto context = migration::TlsContext::create({values[0], values[1], values[2]});
  if (!context.ok()) return context.status().with_context("$HOTSWAP_MIGRATION_TLS_*");
  return context;
}

void add_connection_flags(FlagSet* flags) {
  flags->add("max-connections", "N", "HTTP connections open at once; the next gets 503 (default 1024)");
  flags->add("max-header-bytes", "N", "a request's line and headers at most; larger gets 431 (default 32768)");
  flags->add("header-timeout-s", "S", "a request's head must arrive within S s of its first byte (default 30)");
  flags->add("body-timeout-s", "S", "a request's body may pause at most S s between bytes (default 30)");
  flags->add("send-timeout-s", "S", "a client that reads nothing of its response for S s is hung up on (default 60)");
  flags->add("idle-timeout-s", "S", "a kept-alive connection with no request in flight closes after S s (default 120)");
  flags->add("io-threads", "N",
             "threads that run the HTTP server's and clients' I/O, 2.." + std::to_string(http::kMaxIoThreads) +
                 " (default " + std::to_string(http::kDefaultIoThreads) + "); more only add context switches");
}

StatusOr<http::ConnectionLimits> connection_limits_from_flags(const FlagSet& flags) {
  http::ConnectionLimits l;
  auto positive = [&](const char* name, int64_t fallback, int64_t most) -> StatusOr<int64_t> {
    HOTSWAP_ASSIGN_OR_RETURN(int64_t v, flags.get_int(name, fallback));
    if (v < 1 || v > most)
      return invalid_argument("--" + std::string(name) + " must be in 1.." + std::to_string(most) + ", got " +
                              std::to_string(v));
    return v;
  };
  HOTSWAP_ASSIGN_OR_RETURN(int64_t connections, positive("max-connections", l.max_connections, 1 << 20));
  HOTSWAP_ASSIGN_OR_RETURN(int64_t header_bytes, positive("max-header-bytes", l.max_header_bytes, 1 << 20));
  l.max_connections = static_cast<int>(connections);
  l.max_header_bytes = static_cast<size_t>(header_bytes);
  using std::chrono::seconds;
  using std::chrono::duration_cast;
  for (auto [name, field] : {std::pair{"header-timeout-s", &l.header_timeout}, std::pair{"body-timeout-s", &l.body_timeout},
                             std::pair{"send-timeout-s", &l.send_timeout}, std::pair{"idle-timeout-s", &l.idle_timeout}}) {
    HOTSWAP_ASSIGN_OR_RETURN(int64_t s, positive(name, duration_cast<seconds>(*field).count(), 86400));
    *field = seconds(s);
  }
  return l;
}

// --migration-ports FIRST-LAST (or one port): where a migration target's data listener binds.
StatusOr<std::pair<uint16_t, uint16_t>> migration_ports_from_flags(const FlagSet& flags) {
  if (!flags.has("migration-ports")) return std::pair<uint16_t, uint16_t>{0, 0};
  const std::string text = flags.get("migration-ports");
  const auto bad = [&](const std::string& why) {
    return invalid_argument("--migration-ports '" + text + "': " + why + " (FIRST-LAST, ports in 1..65535)");
  };
  const size_t dash = text.find('-');
  const std::string a = text.substr(0, dash), b = dash == std::string::npos ? a : text.substr(dash + 1);
  auto port = [](const std::string& s) -> int64_t {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoll(s);
  };
  const int64_t first = port(a), last = port(b);
  if (first < 1 || first > 65535 || last < 1 || last > 65535) return bad("not a port or a range of ports");
  if (last < first) return bad("the range is empty");
  return std::pair<uint16_t, uint16_t>{static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
}

}  // namespace

int run_serve(int argc, char** argv) {
  FlagSet flags(
      "usage: hotswap-agent serve --model DIR [--host 127.0.0.1] [--port P] [--device cpu|cuda]\n"
      "                           [--control-token-file F] [--max-batch-tokens N] [--kv-blocks N] [--max-queue N]\n"
      "                           [--grace-seconds S] [--speed-factor F] [--speed-reference R]\n"
      "                           [--migration-tls-dir DIR | --allow-plaintext-migration] [--migration-ports FIRST-LAST]\n"
      "                           [--max-connections N] [--max-header-bytes N] [--header-timeout-s S]\n"
      "                           [--body-timeout-s S] [--send-timeout-s S] [--idle-timeout-s S] [--io-threads N]");
  flags.add("model", "DIR", "Hugging Face model directory");
  flags.add("model-name", "NAME", "model id clients send in \"model\" (default: the directory's name)");
  flags.add("host", "ADDR", "address to listen on (default 127.0.0.1)");
  flags.add("port", "P", "port to listen on (default 8000)");
  flags.add("control-token-file", "F",
            "file holding the control API's bearer token (>= 16 chars); default: $HOTSWAP_CONTROL_TOKEN");
  flags.add("max-queue", "N", "requests that may wait beyond a full batch before 429 (default 256)");
  flags.add("grace-seconds", "S", "on SIGTERM, how long open streams may take to finish (default 30)");
  flags.add("speed-factor", "F",
            "this card's speed against the reference card (default $HOTSWAP_GPU_SPEED_FACTOR, else 1); "
            "the CPU backend runs at F/R of its speed");
  flags.add("speed-reference", "R",
            "the speed factor that runs the CPU backend at full speed (default $HOTSWAP_GPU_SPEED_REFERENCE, else F)");
  flags.add("migration-tls-dir", "DIR",
            "TLS material of the migration data channel: ca.crt, tls.crt, tls.key (a mounted TLS Secret); "
            "default: the PEM text in $HOTSWAP_MIGRATION_TLS_CA, _CERT, _KEY");
  flags.add("allow-plaintext-migration", "",
            "without TLS material, take and send migrations over plain tcp (prompts and KV cache in the clear)");
  flags.add("migration-ports", "FIRST-LAST",
            "the ports a migration target's data listener binds, one per migration in flight (default: any free "
            "port); what a NetworkPolicy lets the deployment's replicas reach");
  add_connection_flags(&flags);
  add_engine_flags(&flags);
  flags.add("help", "", "show this help");
  auto fail = [](const Status& st, int code) {
    log_error("serve: " + st.to_string());
    return code;
  };
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) return fail(st, 2);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  if (!flags.has("model")) return fail(invalid_argument("--model is required"), 2);
  auto options = engine_options_from_flags(flags);
  if (!options.ok()) return fail(options.status(), 2);
  auto speed = speed_from_flags(flags);
  if (!speed.ok()) return fail(speed.status(), 2);
  options->speed = speed->factor / speed->reference;
  AgentServerOptions so;
  so.host = flags.get("host", "127.0.0.1");
  so.model_name = flags.get("model-name", "");
  so.speed_factor = speed->factor;
  auto port = flags.get_int("port", 8000);
  auto max_queue = flags.get_int("max-queue", 256);
  auto grace = flags.get_int("grace-seconds", 30);
  auto io_threads = flags.get_int("io-threads", http::kDefaultIoThreads);
  for (const Status& st : {port.status(), max_queue.status(), grace.status(), io_threads.status()})
    if (!st.ok()) return fail(st, 2);
  if (*port < 1 || *port > 65535) return fail(invalid_argument("--port must be in 1..65535"), 2);
  if (*max_queue < 0) return fail(invalid_argument("--max-queue must be >= 0"), 2);
  if (*grace < 0) return fail(invalid_argument("--grace-seconds must be >= 0"), 2);
  so.port = static_cast<int>(*port);
  so.max_queue = static_cast<int>(*max_queue);
  auto limits = connection_limits_from_flags(flags);
  if (!limits.ok()) return fail(limits.status(), 2);
  so.connection_limits = *limits;
  if (flags.has("control-token-file")) {
    auto token = read_token_file(flags.get("control-token-file"), "--control-token-file");
    if (!token.ok()) return fail(token.status(), 2);
    so.control_token = *token;
  } else if (const char* env = std::getenv("HOTSWAP_CONTROL_TOKEN"); env != nullptr && *env != '\0') {
    auto token = check_token(env, "$HOTSWAP_CONTROL_TOKEN");
    if (!token.ok()) return fail(token.status(), 2);
    so.control_token = *token;
  }
  auto tls = migration_tls_from_flags(flags);
  if (!tls.ok()) return fail(tls.status(), 2);
  so.migration_tls = *tls;
  so.allow_plaintext_migration = flags.has("allow-plaintext-migration");
  auto migration_ports = migration_ports_from_flags(flags);
  if (!migration_ports.ok()) return fail(migration_ports.status(), 2);
  std::tie(so.migration_port_first, so.migration_port_last) = *migration_ports;
  if (!so.migration_tls && !so.allow_plaintext_migration)
    log_warn("no migration TLS material and plaintext not allowed: this agent will refuse migrations over tcp "
             "(--migration-tls-dir, or --allow-plaintext-migration)");

  TerminationSignals signals;  // before any thread starts
  // The first threads: cpprest's pool, sized before anything uses it.
  if (Status st = http::set_io_threads(*io_threads); !st.ok()) return fail(st, 2);

  auto model = engine::Model::load(flags.get("model"));
  if (!model.ok()) return fail(model.status(), 1);
  auto eng = engine::Engine::create(*model, *options);
  if (!eng.ok()) return fail(eng.status(), 1);
  auto server = AgentServer::start(*model, std::move(*eng), so);
  if (!server.ok()) return fail(server.status(), 1);
  if (speed->factor != speed->reference)
    log_info("speed factor " + std::to_string(speed->factor) + " of " + std::to_string(speed->reference) +
             ": the CPU backend runs at " + std::to_string(options->speed) + " of its speed");
  std::fprintf(stderr, "listening on %s\n", (*server)->url().c_str());
  std::fflush(stderr);

  const char* sig = signals.wait();
  log_info(std::string("received ") + sig + ": draining, grace " +
           std::to_string(*grace) + " s");
  (*server)->drain();
  bool idle = (*server)->wait_idle(std::chrono::seconds(*grace));
  if (!idle) log_warn("grace period over with requests still open; ending them");
  (*server)->stop();
  log_info("stopped");
  return 0;
}

}  // namespace hotswap::agent
