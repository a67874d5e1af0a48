#include "e2e/devcluster/apiserver/jsonpath.h"

#include <cctype>
#include <memory>
#include <optional>

namespace hotswap::devcluster {
namespace {

using nlohmann::json;

struct Filter;

struct Step {
  enum class Kind { kField, kWildcard, kIndex, kSlice, kFilter, kRecursive };
  Kind kind = Kind::kField;
  std::string name;                      // kField
  int64_t index = 0;                     // kIndex
  std::optional<int64_t> start;          // kSlice
  std::optional<int64_t> end;            // kSlice
  int64_t stride = 1;                    // kSlice
  std::shared_ptr<const Filter> filter;  // kFilter
};

// [?(@.lhs op literal)], or [?(@.lhs)] (op empty) for "lhs selects something".
struct Filter {
  std::vector<Step> lhs;
  std::string op;
  json literal;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<int64_t> parse_int(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  bool negative = false;
  if (s[0] == '-' || s[0] == '+') {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return negative ? -n : n;
}

// A quoted string literal ('x' or "x", backslash escaping the next character), or nullopt.
std::optional<std::string> parse_quoted(std::string_view s) {
  if (s.size() < 2 || (s[0] != '\'' && s[0] != '"') || s.back() != s[0]) return std::nullopt;
  std::string out;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    if (s[i] == '\\' && i + 2 < s.size()) ++i;
    out += s[i];
  }
  return out;
}

class Parser {
 public:
  explicit Parser(std::string_view whole) : whole_(whole) {}

  // Steps for `text`, a run of .field, ..field and [subscript] (a filter's left side included).
  StatusOr<std::vector<Step>> steps(std::string_view text) const {
    std::vector<Step> out;
    size_t pos = 0;
    while (pos < text.size()) {
      const char c = text[pos];
      if (c == '.') {
        ++pos;
        if (pos < text.size() && text[pos] == '.') {
          ++pos;
          Step recursive;
          recursive.kind = Step::Kind::kRecursive;
          out.push_back(std::move(recursive));
          if (pos < text.size() && text[pos] == '[') continue;
        }
        HOTSWAP_RETURN_IF_ERROR(name(text, pos, out));
      } else if (c == '[') {
        const size_t close = matching_bracket(text, pos);
        if (close == std::string_view::npos) return error("\"[\" without a matching \"]\"");
        HOTSWAP_ASSIGN_OR_RETURN(Step step, subscript(trim(text.substr(pos + 1, close - pos - 1))));
        out.push_back(std::move(step));
        pos = close + 1;
      } else if (pos == 0 && (std::isalnum(static_cast<unsigned char>(c)) || c == '_')) {
        HOTSWAP_RETURN_IF_ERROR(name(text, pos, out));  // "metadata.name" without the leading dot
      } else {
        return error(std::string("unexpected \"") + c + "\"");
      }
    }
    return out;
  }

 private:
  Status error(const std::string& what) const {
    return invalid_argument("jsonpath \"" + std::string(whole_) + "\": " + what);
  }

  // A field name up to the next ".", "[" or space (or "*" for every member).
  Status name(std::string_view text, size_t& pos, std::vector<Step>& out) const {
    const size_t begin = pos;
    while (pos < text.size() && text[pos] != '.' && text[pos] != '[' &&
           !std::isspace(static_cast<unsigned char>(text[pos])))
      ++pos;
    const std::string_view n = text.substr(begin, pos - begin);
    if (n.empty()) return error("a field name must follow \".\"");
    Step step;
    if (n == "*") {
      step.kind = Step::Kind::kWildcard;
    } else {
      step.name = std::string(n);
    }
    out.push_back(std::move(step));
    return Status::ok_status();
  }

  static size_t matching_bracket(std::string_view text, size_t open) {
    char quote = 0;
    int depth = 0;
    for (size_t i = open + 1; i < text.size(); ++i) {
      const char c = text[i];
      if (quote != 0) {
        if (c == '\\') {
          ++i;
        } else if (c == quote) {
          quote = 0;
        }
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '(' || c == '[') {
        ++depth;
      } else if ((c == ')' || c == ']') && depth > 0) {
        --depth;
      } else if (c == ']') {
        return i;
      }
    }
    return std::string_view::npos;
  }

  StatusOr<Step> subscript(std::string_view c) const {
    Step step;
    if (c.empty()) return error("empty \"[]\"");
    if (c[0] == '?') {
      std::string_view inner = trim(c.substr(1));
      if (inner.size() < 2 || inner.front() != '(' || inner.back() != ')')
        return error("a filter must read [?(...)], got [" + std::string(c) + "]");
      HOTSWAP_ASSIGN_OR_RETURN(Filter f, filter(trim(inner.substr(1, inner.size() - 2))));
      step.kind = Step::Kind::kFilter;
      step.filter = std::make_shared<const Filter>(std::move(f));
      return step;
    }
    if (auto quoted = parse_quoted(c)) {
      step.name = *quoted;
      return step;
    }
    if (c == "*") {
      step.kind = Step::Kind::kWildcard;
      return step;
    }
    if (c.find(':') != std::string_view::npos) {
      std::vector<std::string_view> parts;
      size_t from = 0;
      for (size_t colon; (colon = c.find(':', from)) != std::string_view::npos; from = colon + 1)
        parts.push_back(c.substr(from, colon - from));
      parts.push_back(c.substr(from));
      if (parts.size() > 3) return error("a slice is [start:end] or [start:end:step], got [" + std::string(c) + "]");
      std::optional<int64_t> bounds[3];
      for (size_t i = 0; i < parts.size(); ++i) {
        if (trim(parts[i]).empty()) continue;
        bounds[i] = parse_int(parts[i]);
        if (!bounds[i]) return error("\"" + std::string(parts[i]) + "\" in [" + std::string(c) + "] is not an integer");
      }
      step.kind = Step::Kind::kSlice;
      step.start = bounds[0];
      step.end = bounds[1];
      step.stride = bounds[2].value_or(1);
      if (step.stride <= 0) return error("a slice's step must be positive, got [" + std::string(c) + "]");
      return step;
    }
    if (auto index = parse_int(c)) {
      step.kind = Step::Kind::kIndex;
      step.index = *index;
      return step;
    }
    return error("unsupported subscript [" + std::string(c) + "]");
  }

  StatusOr<Filter> filter(std::string_view inner) const {
    if (inner.empty() || inner[0] != '@') return error("a filter's left side must start with \"@\"");
    // The operator: the first one outside quotes.
    size_t op_at = std::string_view::npos;
    size_t op_len = 0;
    char quote = 0;
    for (size_t i = 1; i < inner.size() && op_at == std::string_view::npos; ++i) {
      const char c = inner[i];
      if (quote != 0) {
        if (c == quote) quote = 0;
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '=' || c == '!' || c == '<' || c == '>') {
        const bool two = i + 1 < inner.size() && inner[i + 1] == '=';
        if ((c == '=' || c == '!') && !two) return error("unsupported operator in filter (" + std::string(inner) + ")");
        op_at = i;
        op_len = two ? 2 : 1;
      }
    }
    Filter f;
    const std::string_view lhs = trim(inner.substr(1, op_at == std::string_view::npos ? inner.size() - 1 : op_at - 1));
    HOTSWAP_ASSIGN_OR_RETURN(f.lhs, steps(lhs));
    if (op_at == std::string_view::npos) return f;
    f.op = std::string(inner.substr(op_at, op_len));
    const std::string_view rhs = trim(inner.substr(op_at + op_len));
    if (auto s = parse_quoted(rhs)) {
      f.literal = *s;
    } else if (rhs == "true" || rhs == "false" || rhs == "null") {
      f.literal = json::parse(rhs);
    } else {
      json number = json::parse(rhs, nullptr, false);
      if (number.is_discarded() || !number.is_number())
        return error("the filter's right side must be a quoted string, a number, true, false or null, got \"" +
                     std::string(rhs) + "\"");
      f.literal = std::move(number);
    }
    return f;
  }

  std::string_view whole_;
};

void descendants(const json* node, std::vector<const json*>& out) {
  out.push_back(node);
  if (node->is_object() || node->is_array())
    for (const json& child : *node) descendants(&child, out);
}

std::vector<const json*> eval(const std::vector<Step>& steps, const json* root);

bool compare(const json& value, const std::string& op, const json& literal) {
  if (value.is_number() && literal.is_number()) {
    const double a = value.get<double>();
    const double b = literal.get<double>();
    if (op == "==") return a == b;
    if (op == "!=") return a != b;
    if (op == "<") return a < b;
    if (op == "<=") return a <= b;
    if (op == ">") return a > b;
    return a >= b;
  }
  if (value.is_string() && literal.is_string()) {
    const auto& a = value.get_ref<const std::string&>();
    const auto& b = literal.get_ref<const std::string&>();
    if (op == "==") return a == b;
    if (op == "!=") return a != b;
    if (op == "<") return a < b;
    if (op == "<=") return a <= b;
    if (op == ">") return a > b;
    return a >= b;
  }
  if (op == "==") return value == literal;
  if (op == "!=") return value != literal;
  return false;
}

bool matches(const Filter& f, const json& element) {
  const std::vector<const json*> found = eval(f.lhs, &element);
  if (f.op.empty()) return !found.empty();
  for (const json* v : found)
    if (compare(*v, f.op, f.literal)) return true;
  return false;
}

void apply(const Step& step, const json* node, std::vector<const json*>& out) {
  switch (step.kind) {
    case Step::Kind::kField:
      if (node->is_object())
        if (auto it = node->find(step.name); it != node->end()) out.push_back(&*it);
      return;
    case Step::Kind::kWildcard:
      if (node->is_object() || node->is_array())
        for (const json& child : *node) out.push_back(&child);
      return;
    case Step::Kind::kIndex: {
      if (!node->is_array()) return;
      const int64_t size = static_cast<int64_t>(node->size());
      const int64_t i = step.index < 0 ? step.index + size : step.index;
      if (i >= 0 && i < size) out.push_back(&(*node)[static_cast<size_t>(i)]);
      return;
    }
    case Step::Kind::kSlice: {
      if (!node->is_array()) return;
      const int64_t size = static_cast<int64_t>(node->size());
      auto clamp = [size](int64_t v) {
        if (v < 0) v += size;
        return std::min(std::max<int64_t>(v, 0), size);
      };
      const int64_t begin = step.start ? clamp(*step.start) : 0;
      const int64_t end = step.end ? clamp(*step.end) : size;
      for (int64_t i = begin; i < end; i += step.stride) out.push_back(&(*node)[static_cast<size_t>(i)]);
      return;
    }
    case Step::Kind::kFilter:
      if (node->is_array())
        for (const json& e : *node)
          if (matches(*step.filter, e)) out.push_back(&e);
      return;
    case Step::Kind::kRecursive:
      descendants(node, out);
      return;
  }
}

std::vector<const json*> eval(const std::vector<Step>& steps, const json* root) {
  std::vector<const json*> current = {root};
  for (const Step& step : steps) {
    std::vector<const json*> next;
    for (const json* node : current) apply(step, node, next);
    current = std::move(next);
  }
  return current;
}

}  // namespace

StatusOr<std::vector<json>> jsonpath_eval(const json& obj, std::string_view path) {
  const Parser parser(path);
  std::string_view text = trim(path);
  if (!text.empty() && text.front() == '{') {
    if (text.back() != '}')
      return invalid_argument("jsonpath \"" + std::string(path) + "\": \"{\" without a matching \"}\"");
    text = trim(text.substr(1, text.size() - 2));
  }
  if (!text.empty() && text.front() == '$') text.remove_prefix(1);
  HOTSWAP_ASSIGN_OR_RETURN(std::vector<Step> steps, parser.steps(text));
  std::vector<json> out;
  for (const json* v : eval(steps, &obj)) out.push_back(*v);
  return out;
}

std::string jsonpath_cell(const std::vector<json>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ' ';
    const json& v = values[i];
    if (v.is_string()) {
      out += v.get<std::string>();
    } else if (!v.is_null()) {
      out += v.dump();
    }
  }
  return out;
}

}  // namespace hotswap::devcluster
