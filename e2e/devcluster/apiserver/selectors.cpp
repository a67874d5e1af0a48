#include "e2e/devcluster/apiserver/selectors.h"

#include <algorithm>

namespace hotswap::devcluster {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Splits at commas outside parentheses.
std::vector<std::string> split_terms(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty() || !out.empty()) out.push_back(trim(cur));
  return out;
}

bool valid_key(const std::string& k) {
  if (k.empty() || k.size() > 316) return false;
  for (char c : k)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) return false;
  return true;
}

std::string label_of(const nlohmann::json& labels, const std::string& key, bool* present) {
  *present = labels.is_object() && labels.contains(key) && labels[key].is_string();
  return *present ? labels[key].get<std::string>() : std::string();
}

std::vector<std::string> allowed_fields(const std::string& kind) {
  std::vector<std::string> f = {"metadata.name", "metadata.namespace"};
  if (kind == "Pod") {
    for (const char* x : {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                          "status.phase", "status.podIP", "status.nominatedNodeName"})
      f.push_back(x);
  } else if (kind == "Node") {
    f.push_back("spec.unschedulable");
  } else if (kind == "Secret") {
    f.push_back("type");
  } else if (kind == "Event") {
    for (const char* x : {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                          "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                          "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"})
      f.push_back(x);
  } else if (kind == "Namespace") {
    f.push_back("status.phase");
  }
  return f;
}

}  // namespace

StatusOr<LabelSelector> LabelSelector::parse(const std::string& text) {
  LabelSelector sel;
  for (const std::string& term : split_terms(text)) {
    if (term.empty()) return invalid_argument("label selector \"" + text + "\": an empty requirement");
    Requirement r;
    auto set_values = [&](const std::string& rest) -> Status {
      const std::string t = trim(rest);
      if (t.size() < 2 || t.front() != '(' || t.back() != ')')
        return invalid_argument("label selector \"" + text + "\": expected a (value, ...) list in \"" + term + "\"");
      for (const std::string& v : split_terms(t.substr(1, t.size() - 2))) r.values.push_back(v);
      return Status::ok_status();
    };
    size_t pos;
    if (term[0] == '!') {
      r.key = trim(term.substr(1));
      r.op = Op::kDoesNotExist;
    } else if ((pos = term.find("!=")) != std::string::npos) {
      r.key = trim(term.substr(0, pos));
      r.op = Op::kNotEquals;
      r.values = {trim(term.substr(pos + 2))};
    } else if ((pos = term.find("==")) != std::string::npos) {
      r.key = trim(term.substr(0, pos));
      r.op = Op::kEquals;
      r.values = {trim(term.substr(pos + 2))};
    } else if ((pos = term.find('=')) != std::string::npos) {
      r.key = trim(term.substr(0, pos));
      r.op = Op::kEquals;
      r.values = {trim(term.substr(pos + 1))};
    } else if ((pos = term.find(" notin ")) != std::string::npos) {
      r.key = trim(term.substr(0, pos));
      r.op = Op::kNotIn;
      HOTSWAP_RETURN_IF_ERROR(set_values(term.substr(pos + 7)));
    } else if ((pos = term.find(" in ")) != std::string::npos) {
      r.key = trim(term.substr(0, pos));
      r.op = Op::kIn;
      HOTSWAP_RETURN_IF_ERROR(set_values(term.substr(pos + 4)));
    } else {
      r.key = term;
      r.op = Op::kExists;
    }
    if (!valid_key(r.key)) return invalid_argument("label selector \"" + text + "\": invalid label key \"" + r.key + "\"");
    sel.requirements_.push_back(std::move(r));
  }
  return sel;
}

StatusOr<LabelSelector> LabelSelector::from_json(const nlohmann::json& selector) {
  LabelSelector sel;
  if (selector.is_null()) return sel;
  if (!selector.is_object()) return invalid_argument("selector: expected an object");
  const nlohmann::json match_labels = selector.value("matchLabels", nlohmann::json::object());
  for (const auto& [k, v] : match_labels.items()) {
    if (!v.is_string()) return invalid_argument("selector.matchLabels." + k + ": expected a string");
    sel.requirements_.push_back({k, Op::kEquals, {v.get<std::string>()}});
  }
  const auto exprs = selector.value("matchExpressions", nlohmann::json::array());
  for (size_t i = 0; i < exprs.size(); ++i) {
    const auto& e = exprs[i];
    const std::string where = "selector.matchExpressions[" + std::to_string(i) + "]";
    Requirement r;
    r.key = e.value("key", std::string());
    const std::string op = e.value("operator", std::string());
    for (const auto& v : e.value("values", nlohmann::json::array()))
      if (v.is_string()) r.values.push_back(v.get<std::string>());
    if (op == "In") {
      r.op = Op::kIn;
    } else if (op == "NotIn") {
      r.op = Op::kNotIn;
    } else if (op == "Exists") {
      r.op = Op::kExists;
    } else if (op == "DoesNotExist") {
      r.op = Op::kDoesNotExist;
    } else {
      return invalid_argument(where + ".operator: Unsupported value: \"" + op +
                              "\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"");
    }
    if ((r.op == Op::kIn || r.op == Op::kNotIn) && r.values.empty())
      return invalid_argument(where + ".values: Required value: must be specified when `operator` is 'In' or 'NotIn'");
    sel.requirements_.push_back(std::move(r));
  }
  return sel;
}

LabelSelector LabelSelector::from_map(const nlohmann::json& labels) {
  LabelSelector sel;
  if (labels.is_object())
    for (const auto& [k, v] : labels.items())
      if (v.is_string()) sel.requirements_.push_back({k, Op::kEquals, {v.get<std::string>()}});
  return sel;
}

bool LabelSelector::matches(const nlohmann::json& labels) const {
  for (const auto& r : requirements_) {
    bool present = false;
    const std::string v = label_of(labels, r.key, &present);
    const bool in = std::find(r.values.begin(), r.values.end(), v) != r.values.end();
    switch (r.op) {
      case Op::kEquals:
      case Op::kIn:
        if (!present || !in) return false;
        break;
      case Op::kNotEquals:
      case Op::kNotIn:
        if (present && in) return false;
        break;
      case Op::kExists:
        if (!present) return false;
        break;
      case Op::kDoesNotExist:
        if (present) return false;
        break;
    }
  }
  return true;
}

StatusOr<FieldSelector> FieldSelector::parse(const std::string& text, const std::string& kind) {
  FieldSelector sel;
  const auto allowed = allowed_fields(kind);
  for (const std::string& term : split_terms(text)) {
    if (term.empty()) return invalid_argument("field selector \"" + text + "\": an empty requirement");
    Term t;
    size_t pos;
    if ((pos = term.find("!=")) != std::string::npos) {
      t.field = trim(term.substr(0, pos));
      t.equals = false;
      t.value = trim(term.substr(pos + 2));
    } else if ((pos = term.find("==")) != std::string::npos) {
      t.field = trim(term.substr(0, pos));
      t.equals = true;
      t.value = trim(term.substr(pos + 2));
    } else if ((pos = term.find('=')) != std::string::npos) {
      t.field = trim(term.substr(0, pos));
      t.equals = true;
      t.value = trim(term.substr(pos + 1));
    } else {
      return invalid_argument("field selector \"" + text + "\": \"" + term + "\" is not field=value or field!=value");
    }
    if (std::find(allowed.begin(), allowed.end(), t.field) == allowed.end())
      return invalid_argument("field label not supported: " + t.field);
    sel.terms_.push_back(std::move(t));
  }
  return sel;
}

std::string field_value(const nlohmann::json& object, const std::string& field) {
  const nlohmann::json* cur = &object;
  size_t start = 0;
  while (start <= field.size()) {
    const size_t dot = field.find('.', start);
    const std::string part = field.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object() || !cur->contains(part)) return "";
    cur = &(*cur)[part];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_boolean()) return cur->get<bool>() ? "true" : "false";
  if (cur->is_null()) return "";
  return cur->dump();
}

bool FieldSelector::matches(const nlohmann::json& object) const {
  for (const auto& t : terms_) {
    std::string v = field_value(object, t.field);
    if (t.field == "spec.unschedulable" && v.empty()) v = "false";
    if ((v == t.value) != t.equals) return false;
  }
  return true;
}

}  // namespace hotswap::devcluster
