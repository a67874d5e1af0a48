// Label and field selectors as list and watch take them (?labelSelector=, ?fieldSelector=).
//
// Label selectors: "a=b", "a==b", "a!=b", "a in (x,y)", "a notin (x)", "a", "!a", comma-joined
// (all must hold). Field selectors: "f=v", "f==v", "f!=v", comma-joined, over the fields a type
// supports: metadata.name and metadata.namespace for every type, plus spec.nodeName,
// status.phase and status.podIP for pods, spec.unschedulable for nodes, type for secrets and
// events' involvedObject.* fields. An unknown field is an error naming it, as kube-apiserver's
// "field label not supported" is.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap::devcluster {

class LabelSelector {
 public:
  static StatusOr<LabelSelector> parse(const std::string& text);
  // A meta/v1 LabelSelector object ({matchLabels, matchExpressions}), as a PDB or a Service
  // (a plain map) carries one.
  static StatusOr<LabelSelector> from_json(const nlohmann::json& selector);
  static LabelSelector from_map(const nlohmann::json& labels);

  bool matches(const nlohmann::json& labels) const;  // labels: metadata.labels (object or null)
  bool empty() const { return requirements_.empty(); }

 private:
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist };
  struct Requirement {
    std::string key;
    Op op;
    std::vector<std::string> values;
  };
  std::vector<Requirement> requirements_;
};

class FieldSelector {
 public:
  // kind: the object's kind ("Pod"), which decides the fields allowed.
  static StatusOr<FieldSelector> parse(const std::string& text, const std::string& kind);
  bool matches(const nlohmann::json& object) const;
  bool empty() const { return terms_.empty(); }

 private:
  struct Term {
    std::string field;
    bool equals;
    std::string value;
  };
  std::vector<Term> terms_;
};

// The value of a field selector's field on an object ("" when absent).
std::string field_value(const nlohmann::json& object, const std::string& field);

}  // namespace hotswap::devcluster
