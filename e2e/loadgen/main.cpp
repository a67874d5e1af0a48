// hotswap-loadgen: see e2e/loadgen/loadgen.h and `hotswap-loadgen --help`.
#include <cstdio>
#include <iostream>

#include "common/http.h"
#include "e2e/loadgen/cli.h"
#include "e2e/loadgen/loadgen.h"
#include "e2e/loadgen/report.h"

int main(int argc, char** argv) {
  using namespace hotswap::loadgen;
  auto options = parse_cli(argc, argv);
  if (!options.ok()) {
    std::cerr << "hotswap-loadgen: " << options.status().message() << "\n";
    return 2;
  }
  if (options->help) {
    std::cout << cli_help();
    return 0;
  }
  if (auto st = hotswap::http::set_io_threads(options->io_threads); !st.ok()) {
    std::cerr << "hotswap-loadgen: " << st.message() << "\n";
    return 2;
  }
  auto run = run_load(options->config);
  if (!run.ok()) {
    std::cerr << "hotswap-loadgen: " << run.status().to_string() << "\n";
    return 1;
  }
  LoadSummary summary = summarize_run(*run);
  if (options->json) {
    std::cout
        << report_json(options->config, *run, summary).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
  } else {
    std::cout << report_text(options->config, *run, summary);
  }
  std::cout.flush();
  return exit_code(summary);
}
