// The subcommands of hotswap-agent. Each returns the process exit code.
#pragma once

namespace hotswap::agent {

int run_generate(int argc, char** argv);    // hotswap-agent generate ...
int run_make_model(int argc, char** argv);  // hotswap-agent make-model ...
int run_bench(int argc, char** argv);       // hotswap-agent bench ...

}  // namespace hotswap::agent
