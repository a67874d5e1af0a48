// The engine flags shared by every hotswap-agent command that runs a model.
#pragma once

#include "agent/engine/engine.h"
#include "common/flags.h"

namespace hotswap::agent {

// --threads, --kv-cache-mb, --kv-blocks, --block-size, --max-batch-tokens, --max-num-seqs,
// --max-model-len.
void add_engine_flags(FlagSet* flags);
StatusOr<engine::EngineOptions> engine_options_from_flags(const FlagSet& flags);

}  // namespace hotswap::agent
