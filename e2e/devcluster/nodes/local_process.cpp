#include "e2e/devcluster/nodes/local_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace hotswap::devcluster {
namespace {

ProcessExit exit_of(int status) {
  if (WIFSIGNALED(status)) return {128 + WTERMSIG(status), WTERMSIG(status)};
  return {WEXITSTATUS(status), 0};
}

}  // namespace

std::string expand_env_references(const std::string& text, const std::map<std::string, std::string>& env) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 3, "$$(") == 0) {
      out += "$(";
      i += 3;
      continue;
    }
    if (text.compare(i, 2, "$(") == 0) {
      const size_t close = text.find(')', i + 2);
      if (close != std::string::npos) {
        const std::string name = text.substr(i + 2, close - i - 2);
        auto it = env.find(name);
        if (it != env.end()) {
          out += it->second;
          i = close + 1;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

StatusOr<LocalProcess> LocalProcess::start(const std::vector<std::string>& argv,
                                           const std::map<std::string, std::string>& env,
                                           const std::string& log_path, const std::string& working_dir) {
  if (argv.empty() || argv[0].empty()) return invalid_argument("a container needs a command");
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return unavailable("cannot open container log " + log_path + ": " + std::strerror(errno));
  std::map<std::string, std::string> full = env;
  for (const char* inherit : {"PATH", "HOME"})
    if (!full.count(inherit) && std::getenv(inherit) != nullptr) full[inherit] = std::getenv(inherit);
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : full) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);
  // Resolve argv[0] on the child's PATH before forking: after fork only async-signal-safe calls.
  std::string program = argv[0];
  if (program.find('/') == std::string::npos) {
    const std::string path = full.count("PATH") ? full["PATH"] : "/usr/bin:/bin";
    size_t start = 0;
    std::string found;
    while (start <= path.size()) {
      const size_t colon = path.find(':', start);
      const std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
      if (::access(candidate.c_str(), X_OK) == 0) {
        found = candidate;
        break;
      }
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
    if (found.empty()) {
      ::close(log_fd);
      return not_found("executable \"" + program + "\" not found in $PATH");
    }
    program = found;
  } else if (::access(program.c_str(), X_OK) != 0) {
    ::close(log_fd);
    return not_found("executable \"" + program + "\" not found or not executable");
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return unavailable(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    // Nothing else of the parent's (its sockets, its pipes) goes to the container.
    if (::close_range(3, ~0u, 0) != 0)
      for (int fd = 3; fd < 4096; ++fd) ::close(fd);
    if (!working_dir.empty() && ::chdir(working_dir.c_str()) != 0) ::_exit(127);
    ::execve(program.c_str(), args.data(), envp.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent: no race with an early kill
  ::close(log_fd);
  return LocalProcess(pid);
}

LocalProcess::LocalProcess(LocalProcess&& other) noexcept : pid_(other.pid_), exit_(other.exit_) { other.pid_ = -1; }

LocalProcess& LocalProcess::operator=(LocalProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !exit_) stop(std::chrono::milliseconds(0));
    pid_ = other.pid_;
    exit_ = other.exit_;
    other.pid_ = -1;
  }
  return *this;
}

LocalProcess::~LocalProcess() {
  if (pid_ > 0 && !exit_) stop(std::chrono::milliseconds(0));
}

std::optional<ProcessExit> LocalProcess::poll() {
  if (exit_ || pid_ <= 0) return exit_;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) exit_ = exit_of(status);
  return exit_;
}

ProcessExit LocalProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return exit_.value_or(ProcessExit{});
  if (poll()) {
    ::kill(-pid_, SIGKILL);  // children it left behind
    return *exit_;
  }
  if (grace.count() > 0) {
    ::kill(-pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
      if (poll()) {
        ::kill(-pid_, SIGKILL);
        return *exit_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ::kill(-pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exit_ = exit_of(status);
  return *exit_;
}

}  // namespace hotswap::devcluster
