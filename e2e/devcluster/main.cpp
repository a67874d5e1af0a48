// hotswap-devcluster: the embedded dev cluster (issue 5). `apiserver` runs the Kubernetes API
// server in the foreground and writes a kubeconfig for it.
#include <csignal>
#include <cstdio>
#include <thread>

#include "common/flags.h"
#include "common/log.h"
#include "common/token_file.h"
#include "e2e/devcluster/apiserver/api_server.h"

namespace hotswap {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int fail(const Status& st) {
  std::fprintf(stderr, "hotswap-devcluster: %s\n", st.to_string().c_str());
  return 1;
}

int run_apiserver(int argc, char** argv) {
  FlagSet flags(
      "usage: hotswap-devcluster apiserver [--host 127.0.0.1] [--port P] [--token-file F] [--state-file F]\n"
      "                                    [--kubeconfig-out PATH] [--event-log N] [--bookmark-ms MS]");
  flags.add("host", "ADDR", "address to listen on (default 127.0.0.1; loopback only)");
  flags.add("port", "P", "port (default: a free one)");
  flags.add("token-file", "F", "bearer token clients must send (default: none required)");
  flags.add("state-file", "F", "keep the cluster's objects in F across restarts (default: in memory)");
  flags.add("kubeconfig-out", "PATH", "write a kubeconfig for this server (default .devcluster/kubeconfig)");
  flags.add("event-log", "N", "changes a watch can resume from before 410 Gone (default 10000)");
  flags.add("bookmark-ms", "MS", "interval of watch bookmarks (default 5000)");
  flags.add("help", "", "show this help");
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) return fail(st);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  devcluster::ApiServerOptions o;
  o.host = flags.get("host", "127.0.0.1");
  if (o.host.rfind("127.", 0) != 0) return fail(invalid_argument("--host " + o.host + ": the dev cluster binds loopback only"));
  auto port = flags.get_int("port", 0);
  auto events = flags.get_int("event-log", 10000);
  auto bookmark = flags.get_int("bookmark-ms", 5000);
  for (const Status& st : {port.status(), events.status(), bookmark.status()})
    if (!st.ok()) return fail(st);
  if (*port < 0 || *port > 65535) return fail(invalid_argument("--port must be 0..65535"));
  if (*events < 1) return fail(invalid_argument("--event-log must be at least 1"));
  if (*bookmark < 10) return fail(invalid_argument("--bookmark-ms must be at least 10"));
  o.port = static_cast<int>(*port);
  o.event_log_limit = static_cast<size_t>(*events);
  o.bookmark_interval = std::chrono::milliseconds(*bookmark);
  o.state_file = flags.get("state-file");
  if (flags.has("token-file")) {
    auto token = read_token_file(flags.get("token-file"), "--token-file");
    if (!token.ok()) return fail(token.status());
    o.token = *token;
  }
  auto server = devcluster::ApiServer::start(o);
  if (!server.ok()) return fail(server.status());
  const std::string kubeconfig = flags.get("kubeconfig-out", ".devcluster/kubeconfig");
  if (Status st = (*server)->write_kubeconfig(kubeconfig); !st.ok()) return fail(st);
  std::printf("%s\n", kubeconfig.c_str());
  std::fflush(stdout);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*server)->stop();
  return 0;
}

}  // namespace
}  // namespace hotswap

int main(int argc, char** argv) {
  const char* usage = "usage: hotswap-devcluster apiserver [flags]   (--help after a command lists its flags)\n";
  if (argc < 2) {
    std::fputs(usage, stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "apiserver") return hotswap::run_apiserver(argc, argv);
  if (cmd == "--help" || cmd == "help") {
    std::fputs(usage, stdout);
    return 0;
  }
  std::fprintf(stderr, "hotswap-devcluster: unknown command '%s'\n%s", cmd.c_str(), usage);
  return 2;
}
