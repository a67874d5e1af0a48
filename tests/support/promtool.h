// Prometheus's own checker, promtool (Debian's `prometheus` package; scripts/install-deps.sh
// installs it), for tests: `promtool check metrics` on a /metrics page, `promtool check rules`
// on alerting rules. Header-only; a missing promtool is a test failure naming the package.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace hotswap::testing {

struct PromtoolResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs `promtool ARGS < input` (input written to a temporary file first).
inline PromtoolResult run_promtool(const std::string& args, const std::string& input) {
  PromtoolResult r;
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    ADD_FAILURE() << "promtool is not on PATH: install Debian's prometheus package (scripts/install-deps.sh does)";
    return r;
  }
  static int counter = 0;
  const auto in = std::filesystem::temp_directory_path() /
                  ("promtool-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".in");
  std::ofstream(in) << input;
  const std::string cmd = "promtool " + args + " < " + in.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
    const int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::filesystem::remove(in);
  return r;
}

// `promtool check metrics`: the exposition parses and passes Prometheus's naming lint (counters
// end in _total, units in base form, help text present). Empty output means no complaint.
inline PromtoolResult promtool_check_metrics(const std::string& page) {
  return run_promtool("check metrics", page);
}

}  // namespace hotswap::testing
