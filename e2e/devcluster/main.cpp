// hotswap-devcluster: the embedded dev cluster (issue 5, DESIGN.md "dev cluster").
//   up       starts the whole cluster in the background (a `run` process of its own session),
//            returns once it is ready, prints the kubeconfig's path
//   down     stops what `up` started: the cluster process, then anything of its session left
//   run      the whole cluster in the foreground (what `up` starts)
//   apiserver  the API server alone, in the foreground
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <thread>

#include "common/flags.h"
#include "common/log.h"
#include "common/token_file.h"
#include "e2e/devcluster/apiserver/api_server.h"
#include "e2e/devcluster/cluster.h"

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

// The flags `run` and `up` share.
void add_cluster_flags(FlagSet& flags) {
  flags.add("nodes", "N", "simulated nodes (default 1)");
  flags.add("gpus-per-node", "G", "nvidia.com/gpu capacity of each node (default 1)");
  flags.add("gpu-classes", "LIST", "GPU classes, node i gets class i mod count: name[:speed-factor],... (default sim)");
  flags.add("port", "P", "API server port (default: a free one)");
  flags.add("token-file", "F", "bearer token clients must send (default: none required)");
  flags.add("state-file", "F", "keep the cluster's objects in F across restarts (default: in memory)");
  flags.add("dir", "DIR", "where logs, the pid file and the default kubeconfig go (default .devcluster)");
  flags.add("kubeconfig-out", "PATH", "write the kubeconfig here (default DIR/kubeconfig)");
  flags.add("help", "", "show this help");
}

StatusOr<devcluster::DevClusterOptions> cluster_options(const FlagSet& flags) {
  devcluster::DevClusterOptions o;
  auto nodes = flags.get_int("nodes", 1);
  auto gpus = flags.get_int("gpus-per-node", 1);
  auto port = flags.get_int("port", 0);
  for (const Status& st : {nodes.status(), gpus.status(), port.status()}) HOTSWAP_RETURN_IF_ERROR(st);
  if (*nodes < 1 || *nodes > 200) return invalid_argument("--nodes must be 1..200");
  if (*gpus < 0 || *gpus > 64) return invalid_argument("--gpus-per-node must be 0..64");
  if (*port < 0 || *port > 65535) return invalid_argument("--port must be 0..65535");
  o.nodes = static_cast<int>(*nodes);
  o.gpus_per_node = static_cast<int>(*gpus);
  o.api.port = static_cast<int>(*port);
  if (flags.has("gpu-classes")) {
    HOTSWAP_ASSIGN_OR_RETURN(o.gpu_classes, devcluster::parse_gpu_classes(flags.get("gpu-classes")));
  }
  o.api.state_file = flags.get("state-file");
  if (flags.has("token-file")) {
    HOTSWAP_ASSIGN_OR_RETURN(o.api.token, read_token_file(flags.get("token-file"), "--token-file"));
  }
  o.log_dir = flags.get("dir", ".devcluster") + "/logs";
  return o;
}

std::string pid_file(const std::string& dir) { return dir + "/devcluster.pid"; }
std::string ready_file(const std::string& dir) { return dir + "/ready"; }

bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

pid_t read_pid(const std::string& dir) {
  std::ifstream in(pid_file(dir));
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

int run_cluster(int argc, char** argv) {
  FlagSet flags("usage: hotswap-devcluster run [--nodes N] [--gpus-per-node G] [--gpu-classes LIST] [--port P]\n"
                "                              [--token-file F] [--state-file F] [--dir DIR] [--kubeconfig-out PATH]");
  add_cluster_flags(flags);
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) return fail(st);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  auto options = cluster_options(flags);
  if (!options.ok()) return fail(options.status());
  const std::string dir = flags.get("dir", ".devcluster");
  std::error_code ec;
  std::filesystem::create_directories(options->log_dir, ec);
  if (ec) return fail(unavailable("cannot create " + options->log_dir + ": " + ec.message()));
  std::filesystem::remove(ready_file(dir), ec);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  auto cluster = devcluster::DevCluster::start(*options);
  if (!cluster.ok()) return fail(cluster.status());
  // Absolute, so that `export KUBECONFIG=$(hotswap-devcluster up)` works from any folder.
  const std::string kubeconfig = std::filesystem::absolute(flags.get("kubeconfig-out", dir + "/kubeconfig")).string();
  if (Status st = (*cluster)->api_server().write_kubeconfig(kubeconfig); !st.ok()) return fail(st);
  std::ofstream(ready_file(dir), std::ios::trunc) << kubeconfig << "\n";
  log_info("dev cluster ready: " + std::to_string(options->nodes) + " node(s), API server " + (*cluster)->url() +
           ", kubeconfig " + kubeconfig);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  log_info("dev cluster stopping");
  (*cluster)->stop();
  std::filesystem::remove(ready_file(dir), ec);
  return 0;
}

int up(int argc, char** argv) {
  FlagSet flags("usage: hotswap-devcluster up [--nodes N] [--gpus-per-node G] [--gpu-classes LIST] [--port P]\n"
                "                             [--token-file F] [--state-file F] [--dir DIR] [--kubeconfig-out PATH]\n"
                "                             [--wait-seconds S]");
  add_cluster_flags(flags);
  flags.add("wait-seconds", "S", "how long to wait for the cluster to be ready (default 60)");
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) return fail(st);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  auto options = cluster_options(flags);  // checked here, so a bad flag fails before anything starts
  if (!options.ok()) return fail(options.status());
  auto wait_s = flags.get_int("wait-seconds", 60);
  if (!wait_s.ok()) return fail(wait_s.status());
  const std::string dir = flags.get("dir", ".devcluster");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(unavailable("cannot create " + dir + ": " + ec.message()));
  if (pid_t old = read_pid(dir); alive(old)) {
    return fail(failed_precondition("a dev cluster from " + dir + " is already running (pid " + std::to_string(old) +
                                    "); `hotswap-devcluster down` stops it"));
  }
  std::filesystem::remove(ready_file(dir), ec);
  const std::string log_path = dir + "/devcluster.log";
  std::vector<std::string> args = {"/proc/self/exe", "run"};
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--wait-seconds", 0) == 0) {
      if (a.find('=') == std::string::npos) ++i;
      continue;
    }
    args.push_back(a);
  }
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return fail(unavailable("cannot find this program (/proc/self/exe)"));
  self[n] = '\0';
  args[0] = self;
  const pid_t pid = ::fork();
  if (pid < 0) return fail(unavailable(std::string("fork: ") + std::strerror(errno)));
  if (pid == 0) {
    ::setsid();
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    ::execv(self, cargs.data());
    ::_exit(127);
  }
  std::ofstream(pid_file(dir), std::ios::trunc) << pid << "\n";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(*wait_s);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream ready(ready_file(dir));
    std::string kubeconfig;
    if (ready && std::getline(ready, kubeconfig) && !kubeconfig.empty()) {
      std::printf("%s\n", kubeconfig.c_str());
      return 0;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      std::ifstream log(log_path);
      std::string line, last;
      while (std::getline(log, line)) last = line;
      std::filesystem::remove(pid_file(dir), ec);
      return fail(unavailable("the dev cluster exited before it was ready (see " + log_path + "): " + last));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGTERM);
  return fail(unavailable("the dev cluster was not ready within " + std::to_string(*wait_s) + " s (see " + log_path +
                          "); stopped it"));
}

// Processes of a session (the `run` process leads its own): what its containers left behind.
std::vector<pid_t> session_members(pid_t sid) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (pid <= 0) continue;
    if (::getsid(pid) == sid) out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

int down(int argc, char** argv) {
  FlagSet flags("usage: hotswap-devcluster down [--dir DIR] [--grace-seconds S]");
  flags.add("dir", "DIR", "the folder `up` used (default .devcluster)");
  flags.add("grace-seconds", "S", "how long the cluster may take to stop its Pods before it is killed (default 30)");
  flags.add("help", "", "show this help");
  if (Status st = flags.parse(argc, argv, 2); !st.ok()) return fail(st);
  if (flags.has("help")) {
    std::fputs(flags.help().c_str(), stdout);
    return 0;
  }
  auto grace = flags.get_int("grace-seconds", 30);
  if (!grace.ok()) return fail(grace.status());
  const std::string dir = flags.get("dir", ".devcluster");
  const pid_t pid = read_pid(dir);
  std::error_code ec;
  if (!alive(pid)) {
    std::filesystem::remove(pid_file(dir), ec);
    std::filesystem::remove(ready_file(dir), ec);
    std::printf("no dev cluster is running from %s\n", dir.c_str());
    return 0;
  }
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(*grace);
  while (alive(pid) && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    (void)::waitpid(pid, &status, WNOHANG);  // when down runs in the shell that ran up
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (alive(pid)) ::kill(pid, SIGKILL);
  // Anything of the cluster's session still there (a container that outlived a killed cluster).
  for (pid_t p : session_members(pid)) ::kill(p, SIGKILL);
  std::filesystem::remove(pid_file(dir), ec);
  std::filesystem::remove(ready_file(dir), ec);
  std::printf("dev cluster stopped (pid %d)\n", static_cast<int>(pid));
  return 0;
}

}  // namespace
}  // namespace hotswap

int main(int argc, char** argv) {
  const char* usage =
      "usage: hotswap-devcluster up|down|run|apiserver [flags]   (--help after a command lists its flags)\n";
  if (argc < 2) {
    std::fputs(usage, stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "apiserver") return hotswap::run_apiserver(argc, argv);
  if (cmd == "run") return hotswap::run_cluster(argc, argv);
  if (cmd == "up") return hotswap::up(argc, argv);
  if (cmd == "down") return hotswap::down(argc, argv);
  if (cmd == "--help" || cmd == "help") {
    std::fputs(usage, stdout);
    return 0;
  }
  std::fprintf(stderr, "hotswap-devcluster: unknown command '%s'\n%s", cmd.c_str(), usage);
  return 2;
}
