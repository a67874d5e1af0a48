#include "common/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "common/log.h"

namespace hotswap {

bool failpoint_listed(std::string_view list, std::string_view name) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty() && item == name) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void failpoint(const std::string& name) {
  const char* list = std::getenv("HOTSWAP_FAILPOINTS");
  if (list == nullptr || !failpoint_listed(list, name)) return;
  log_error("failpoint " + name + " ($HOTSWAP_FAILPOINTS): killing this process with SIGKILL");
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);  // not reached
}

}  // namespace hotswap
