// hotswap-loadgen's command line: flags -> LoadgenConfig. Every bad flag is named, all of them
// at once, so one run of the command shows everything to fix.
#pragma once

#include <string>

#include "common/status.h"
#include "e2e/loadgen/loadgen.h"

namespace hotswap::loadgen {

struct CliOptions {
  LoadgenConfig config;
  bool json = false;
  bool help = false;
  int io_threads = 0;  // cpprest's pool, process-wide: main sizes it before the run (common/http.h)
};

// Parses argv[1..argc). Errors are kInvalidArgument, one line per bad flag.
StatusOr<CliOptions> parse_cli(int argc, char** argv);

std::string cli_help();

}  // namespace hotswap::loadgen
