// The control API's bearer token, read from a file (a mounted Secret in a cluster): the file's
// contents without trailing whitespace, at least 16 characters.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "common/status.h"

namespace hotswap {

// flag: the flag that named the file, for messages ("--control-token-file").
inline StatusOr<std::string> read_token_file(const std::string& path, const std::string& flag) {
  std::ifstream in(path);
  if (!in) return not_found(flag + " " + path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = ss.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.size() < 16) return invalid_argument(flag + " " + path + ": the token must have at least 16 characters");
  return token;
}

}  // namespace hotswap
