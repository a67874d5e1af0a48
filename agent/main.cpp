// hotswap-agent: the per-GPU-slot process of hotswap. Subcommands:
//   serve       the OpenAI-compatible server of one replica
//   migrate     move running sequences from one agent to another
//   generate    run the engine on one prompt
//   make-model  write a synthetic Hugging Face checkpoint
//   bench       engine throughput and memory-bandwidth benchmark
#include <cstdio>
#include <cstring>
#include <string>

#include "agent/cli/commands.h"

namespace {

constexpr const char* kUsage =
    "usage: hotswap-agent <command> [flags]\n"
    "\n"
    "commands:\n"
    "  serve       serve a model over the OpenAI-compatible HTTP API\n"
    "  migrate     move the running sequences of one agent to another\n"
    "  generate    generate text from a prompt with a local model\n"
    "  make-model  write a synthetic checkpoint in the Hugging Face format\n"
    "  bench       measure prefill/decode tokens/s against memory bandwidth\n"
    "\n"
    "Run 'hotswap-agent <command> --help' for a command's flags.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  if (cmd == "serve") return hotswap::agent::run_serve(argc, argv);
  if (cmd == "migrate") return hotswap::agent::run_migrate(argc, argv);
  if (cmd == "generate") return hotswap::agent::run_generate(argc, argv);
  if (cmd == "make-model") return hotswap::agent::run_make_model(argc, argv);
  if (cmd == "bench") return hotswap::agent::run_bench(argc, argv);
  std::fprintf(stderr, "hotswap-agent: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
