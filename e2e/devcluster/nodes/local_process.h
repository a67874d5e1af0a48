// A container of a dev cluster Pod, run as a local process: the container's command and args
// (with $(VAR) references expanded from its environment, as the kubelet does), its env, and its
// output appended to a log file. The process leads its own process group, so stopping it
// (SIGTERM, then SIGKILL after the grace period) reaches every child it started.
//
// Threads: one owner; poll() and stop() never block longer than stop()'s grace period.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap::devcluster {

// "$(NAME)" is replaced by NAME's value when NAME is in env; "$$(NAME)" is the literal
// "$(NAME)"; an unknown reference stays as written (Kubernetes' rule).
std::string expand_env_references(const std::string& text, const std::map<std::string, std::string>& env);

struct ProcessExit {
  int exit_code = 0;  // the process's exit status, or 128 + signal when a signal ended it
  int signal = 0;     // the signal that ended it, or 0
};

class LocalProcess {
 public:
  // argv[0] is looked up on PATH. The child gets exactly `env` (plus PATH and HOME from this
  // process when env lacks them), its stdin from /dev/null, stdout and stderr appended to log_path,
  // and no other descriptor of this process.
  static StatusOr<LocalProcess> start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                                      const std::string& log_path, const std::string& working_dir = "");
  LocalProcess(LocalProcess&& other) noexcept;
  LocalProcess& operator=(LocalProcess&& other) noexcept;
  LocalProcess(const LocalProcess&) = delete;
  LocalProcess& operator=(const LocalProcess&) = delete;
  // Kills the process group (SIGKILL) if it still runs, and reaps it.
  ~LocalProcess();

  pid_t pid() const { return pid_; }
  // The exit, once the process has ended (reaped here); nullopt while it runs.
  std::optional<ProcessExit> poll();
  // SIGTERM to the group, then SIGKILL once `grace` has passed; returns how it ended.
  ProcessExit stop(std::chrono::milliseconds grace);

 private:
  explicit LocalProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<ProcessExit> exit_;
};

}  // namespace hotswap::devcluster
