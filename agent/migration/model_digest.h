// The digest of a model's weights: CRC32C over the bytes of every *.safetensors file in the
// directory (in name order) and their total size, as hex. A migration's target compares the
// source's digest with its own before taking any state: both must run the same weights.
#pragma once

#include <string>

#include "common/status.h"

namespace hotswap::migration {

// 24 hex digits: 8 of CRC32C, 16 of the total byte count.
StatusOr<std::string> model_weights_digest(const std::string& model_dir);

}  // namespace hotswap::migration
