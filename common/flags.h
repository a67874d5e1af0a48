// Command-line flags for hotswap's tools: `--name value` and `--name=value`, booleans as bare
// `--name`. Each tool declares its flags with help text; an unknown flag, a missing value or a
// value of the wrong type is an error that names the flag.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap {

class FlagSet {
 public:
  explicit FlagSet(std::string usage) : usage_(std::move(usage)) {}

  // Declares a flag. value_name empty: a boolean switch.
  void add(const std::string& name, const std::string& value_name, const std::string& help) {
    flags_.push_back({name, value_name, help});
  }

  // Parses argv[first..argc). Positional arguments are kept in positional().
  Status parse(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0 || arg == "--") {
        positional_.push_back(arg);
        continue;
      }
      std::string name = arg.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      const Flag* f = find(name);
      if (f == nullptr) return invalid_argument("unknown flag --" + name + "\n" + help());
      if (f->value_name.empty()) {
        if (has_value) return invalid_argument("flag --" + name + " takes no value");
        values_[name] = "true";
        continue;
      }
      if (!has_value) {
        if (i + 1 >= argc) return invalid_argument("flag --" + name + " needs a value (" + f->value_name + ")");
        value = argv[++i];
      }
      values_[name] = value;
    }
    return Status();
  }

  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  StatusOr<int64_t> get_int(const std::string& name, int64_t fallback) const {
    if (!has(name)) return fallback;
    const std::string& v = values_.at(name);
    try {
      size_t used = 0;
      long long x = std::stoll(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return static_cast<int64_t>(x);
    } catch (const std::exception&) {
      return invalid_argument("flag --" + name + ": '" + v + "' is not an integer");
    }
  }
  StatusOr<double> get_double(const std::string& name, double fallback) const {
    if (!has(name)) return fallback;
    const std::string& v = values_.at(name);
    try {
      size_t used = 0;
      double x = std::stod(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return x;
    } catch (const std::exception&) {
      return invalid_argument("flag --" + name + ": '" + v + "' is not a number");
    }
  }
  // A comma-separated list ("1,16,64"); empty items are refused.
  StatusOr<std::vector<std::string>> get_list(const std::string& name, const std::string& fallback) const {
    const std::string v = get(name, fallback);
    std::vector<std::string> out;
    size_t pos = 0;
    for (;;) {
      const size_t comma = v.find(',', pos);
      out.push_back(v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
      if (out.back().empty()) return invalid_argument("flag --" + name + ": '" + v + "' has an empty item");
      if (comma == std::string::npos) return out;
      pos = comma + 1;
    }
  }
  // A comma-separated list of integers, each at least `min`.
  StatusOr<std::vector<int64_t>> get_int_list(const std::string& name, const std::string& fallback,
                                              int64_t min) const {
    HOTSWAP_ASSIGN_OR_RETURN(std::vector<std::string> items, get_list(name, fallback));
    std::vector<int64_t> out;
    for (const std::string& item : items) {
      size_t used = 0;
      long long x = 0;
      try {
        x = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != item.size() || used == 0 || x < min)
        return invalid_argument("flag --" + name + ": '" + item + "' is not an integer >= " + std::to_string(min));
      out.push_back(static_cast<int64_t>(x));
    }
    return out;
  }
  const std::vector<std::string>& positional() const { return positional_; }

  std::string help() const {
    std::string s = usage_ + "\n\nFlags:\n";
    for (const auto& f : flags_) {
      std::string left = "  --" + f.name + (f.value_name.empty() ? "" : " " + f.value_name);
      if (left.size() < 28) left.resize(28, ' ');
      else left += "  ";
      s += left + f.help + "\n";
    }
    return s;
  }

 private:
  struct Flag {
    std::string name, value_name, help;
  };
  const Flag* find(const std::string& name) const {
    for (const auto& f : flags_)
      if (f.name == name) return &f;
    return nullptr;
  }
  std::string usage_;
  std::vector<Flag> flags_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace hotswap
