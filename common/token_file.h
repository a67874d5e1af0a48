// The control API's bearer token, read from a file (a mounted Secret in a cluster) or an
// environment variable (a Secret's key through secretKeyRef): the text without trailing
// whitespace, at least 16 characters.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "common/status.h"

namespace hotswap {

// origin: where the text came from, for messages ("--control-token-file /path").
inline StatusOr<std::string> check_token(std::string token, const std::string& origin) {
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.size() < 16) return invalid_argument(origin + ": the token must have at least 16 characters");
  return token;
}

// flag: the flag that named the file, for messages ("--control-token-file").
inline StatusOr<std::string> read_token_file(const std::string& path, const std::string& flag) {
  std::ifstream in(path);
  if (!in) return not_found(flag + " " + path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return check_token(ss.str(), flag + " " + path);
}

}  // namespace hotswap
