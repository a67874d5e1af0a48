// Crash points for fault tests: `failpoint("migration/enter:PreCopy")` kills this process with
// SIGKILL, as `kill -9` would at that line, when the point is named in $HOTSWAP_FAILPOINTS
// (comma-separated names). Unset, a failpoint does nothing beyond reading the variable. The
// fault matrix (tests/e2e/operator/operator_faults_test.cpp) uses it to stop the operator at
// each step of a migration, between an action and the status that records it; the points are
// listed in docs/reliability.md.
//
// Threads: any.
#pragma once

#include <string>
#include <string_view>

namespace hotswap {

// Whether `name` is one of the comma-separated names in `list` (spaces around them ignored).
bool failpoint_listed(std::string_view list, std::string_view name);

// SIGKILL to this process if `name` is listed in $HOTSWAP_FAILPOINTS, after one log line.
void failpoint(const std::string& name);

}  // namespace hotswap
