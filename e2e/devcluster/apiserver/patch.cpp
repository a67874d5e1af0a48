#include "e2e/devcluster/apiserver/patch.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace hotswap::devcluster {
namespace {

using nlohmann::json;

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// A value for a message, cut short: patch values can be whole pod specs.
std::string shown_value(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// ---------------------------------------------------------------------------------------------
// JSON patch (RFC 6902)

StatusOr<std::vector<std::string>> parse_pointer(const std::string& pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  if (pointer[0] != '/')
    return invalid_argument("path " + in_quotes(pointer) +
                            " is not a JSON pointer: it must be empty or start with \"/\"");
  std::string token;
  for (size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens.push_back(std::move(token));
      token.clear();
    } else if (pointer[i] != '~') {
      token += pointer[i];
    } else if (i + 1 < pointer.size() && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
      token += pointer[i + 1] == '0' ? '~' : '/';
      ++i;
    } else {
      return invalid_argument("path " + in_quotes(pointer) + " has a \"~\" not followed by 0 or 1");
    }
  }
  return tokens;
}

// "0" or a number without leading zeros, as RFC 6901 requires of an array index.
std::optional<size_t> parse_index(const std::string& token) {
  if (token.empty() || token.size() > 18) return std::nullopt;
  if (token.size() > 1 && token[0] == '0') return std::nullopt;
  size_t n = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  return n;
}

// The node the first `count` tokens name, or nullptr.
json* resolve(json& doc, const std::vector<std::string>& tokens, size_t count) {
  json* node = &doc;
  for (size_t i = 0; i < count; ++i) {
    if (node->is_object()) {
      auto it = node->find(tokens[i]);
      if (it == node->end()) return nullptr;
      node = &*it;
    } else if (node->is_array()) {
      auto index = parse_index(tokens[i]);
      if (!index || *index >= node->size()) return nullptr;
      node = &(*node)[*index];
    } else {
      return nullptr;
    }
  }
  return node;
}

std::string parent_pointer(const std::string& pointer) {
  return pointer.substr(0, pointer.rfind('/'));
}

// One operation's target: its pointer as written and as tokens.
struct Target {
  std::string pointer;
  std::vector<std::string> tokens;
};

StatusOr<json*> existing(json& doc, const Target& t) {
  json* node = resolve(doc, t.tokens, t.tokens.size());
  if (node == nullptr) return invalid_argument("path " + in_quotes(t.pointer) + " does not exist");
  return node;
}

Status add_at(json& doc, const Target& t, json value) {
  if (t.tokens.empty()) {
    doc = std::move(value);
    return Status::ok_status();
  }
  json* parent = resolve(doc, t.tokens, t.tokens.size() - 1);
  if (parent == nullptr)
    return invalid_argument("path " + in_quotes(t.pointer) + " does not exist: its parent " +
                            in_quotes(parent_pointer(t.pointer)) + " is missing");
  const std::string& last = t.tokens.back();
  if (parent->is_object()) {
    (*parent)[last] = std::move(value);
  } else if (parent->is_array()) {
    if (last == "-") {
      parent->push_back(std::move(value));
      return Status::ok_status();
    }
    auto index = parse_index(last);
    if (!index)
      return invalid_argument("path " + in_quotes(t.pointer) + ": " + in_quotes(last) + " is not an array index");
    if (*index > parent->size())
      return invalid_argument("path " + in_quotes(t.pointer) + ": index " + last +
                              " is out of bounds for an array of " + std::to_string(parent->size()));
    parent->insert(parent->begin() + static_cast<std::ptrdiff_t>(*index), std::move(value));
  } else {
    return invalid_argument("path " + in_quotes(t.pointer) + " does not exist: its parent " +
                            in_quotes(parent_pointer(t.pointer)) + " is a " + parent->type_name() +
                            ", not an object or array");
  }
  return Status::ok_status();
}

StatusOr<json> remove_at(json& doc, const Target& t) {
  if (t.tokens.empty()) return invalid_argument("the whole document (path \"\") cannot be removed");
  HOTSWAP_ASSIGN_OR_RETURN(json * node, existing(doc, t));
  json removed = std::move(*node);
  json* parent = resolve(doc, t.tokens, t.tokens.size() - 1);
  if (parent->is_object()) {
    parent->erase(t.tokens.back());
  } else {
    parent->erase(*parse_index(t.tokens.back()));
  }
  return removed;
}

Status apply_operation(json& doc, const json& op, size_t number) {
  const std::string where = "json patch operation " + std::to_string(number);
  if (!op.is_object()) return invalid_argument(where + ": an operation must be an object, got " + shown_value(op));
  auto op_it = op.find("op");
  if (op_it == op.end() || !op_it->is_string()) return invalid_argument(where + ": missing \"op\"");
  const std::string name = op_it->get<std::string>();
  const std::string prefix = where + " (" + name + "): ";
  auto fail = [&](const Status& st) { return invalid_argument(prefix + st.message()); };

  auto pointer_field = [&](const char* field, Target& out) -> Status {
    auto it = op.find(field);
    if (it == op.end()) return invalid_argument(prefix + "missing \"" + field + "\"");
    if (!it->is_string()) return invalid_argument(prefix + "\"" + field + "\" must be a string");
    out.pointer = it->get<std::string>();
    auto tokens = parse_pointer(out.pointer);
    if (!tokens.ok()) return fail(tokens.status());
    out.tokens = std::move(tokens).value();
    return Status::ok_status();
  };
  auto value_field = [&]() -> StatusOr<json> {
    auto it = op.find("value");
    if (it == op.end()) return invalid_argument(prefix + "missing \"value\"");
    return *it;
  };

  if (name != "add" && name != "remove" && name != "replace" && name != "move" && name != "copy" && name != "test")
    return invalid_argument(where + ": unknown op " + in_quotes(name) +
                            " (expected add, remove, replace, move, copy or test)");
  Target path;
  HOTSWAP_RETURN_IF_ERROR(pointer_field("path", path));

  if (name == "add") {
    HOTSWAP_ASSIGN_OR_RETURN(json value, value_field());
    if (Status st = add_at(doc, path, std::move(value)); !st.ok()) return fail(st);
  } else if (name == "remove") {
    if (auto removed = remove_at(doc, path); !removed.ok()) return fail(removed.status());
  } else if (name == "replace") {
    HOTSWAP_ASSIGN_OR_RETURN(json value, value_field());
    auto node = existing(doc, path);
    if (!node.ok()) return fail(node.status());
    **node = std::move(value);
  } else if (name == "test") {
    HOTSWAP_ASSIGN_OR_RETURN(json value, value_field());
    auto node = existing(doc, path);
    if (!node.ok()) return fail(node.status());
    if (**node != value)
      return invalid_argument(prefix + "test failed: path " + in_quotes(path.pointer) + " holds " +
                              shown_value(**node) + ", not " + shown_value(value));
  } else {  // move, copy
    Target from;
    HOTSWAP_RETURN_IF_ERROR(pointer_field("from", from));
    if (name == "move") {
      if (from.pointer == path.pointer) {
        auto node = existing(doc, from);
        return node.ok() ? Status::ok_status() : fail(node.status());
      }
      if (path.pointer.rfind(from.pointer + "/", 0) == 0)
        return invalid_argument(prefix + "cannot move " + in_quotes(from.pointer) + " into its own child " +
                                in_quotes(path.pointer));
      auto moved = remove_at(doc, from);
      if (!moved.ok()) return fail(moved.status());
      if (Status st = add_at(doc, path, std::move(moved).value()); !st.ok()) return fail(st);
    } else {
      auto node = existing(doc, from);
      if (!node.ok()) return fail(node.status());
      json copy = **node;
      if (Status st = add_at(doc, path, std::move(copy)); !st.ok()) return fail(st);
    }
  }
  return Status::ok_status();
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch

constexpr std::string_view kSetElementOrder = "$setElementOrder/";
constexpr std::string_view kDeleteFromPrimitiveList = "$deleteFromPrimitiveList/";

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool is_primitive(const json& v) {
  return !v.is_object() && !v.is_array();
}

// Where we are in the object: `type` finds the list strategy, `shown` is for messages.
struct FieldPath {
  std::string type;   // spec.containers.env
  std::string shown;  // spec.containers[name=app].env

  FieldPath child(std::string_view field) const {
    auto join = [&](const std::string& base) {
      return base.empty() ? std::string(field) : base + "." + std::string(field);
    };
    return {join(type), join(shown)};
  }
  FieldPath element(const std::string& key, const json& value) const {
    return {type, shown + "[" + key + "=" + (value.is_string() ? value.get<std::string>() : value.dump()) + "]"};
  }
  FieldPath index(size_t i) const { return {type, shown + "[" + std::to_string(i) + "]"}; }
  std::string where() const { return shown.empty() ? "the object" : shown; }
};

// What identifies a list element: its merge key's value, or the element itself for primitives.
// nullptr for an element without the key.
const json* identity(const json& element, const std::string& key) {
  if (key.empty()) return &element;
  if (!element.is_object()) return nullptr;
  auto it = element.find(key);
  return it == element.end() ? nullptr : &*it;
}

std::optional<size_t> position(const json& list, const json& element, const std::string& key) {
  const json* id = identity(element, key);
  if (id == nullptr) return std::nullopt;
  for (size_t i = 0; i < list.size(); ++i) {
    const json* other = identity(list[i], key);
    if (other != nullptr && *other == *id) return i;
  }
  return std::nullopt;
}

// Interleaves `left` (server-only elements) into `right` (elements the patch names), each already
// in its own order, by their positions in the live list: a left element goes first only when both
// are in the live list and it was in front. strategicpatch's mergeSortedSlice: so without
// $setElementOrder, elements new to the list come before the untouched ones after them.
json merge_sorted(const std::vector<json>& left, const std::vector<json>& right, const json& server_order,
                  const std::string& key) {
  json out = json::array();
  size_t i = 0;
  size_t j = 0;
  while (i < left.size() || j < right.size()) {
    if (i >= left.size()) {
      out.push_back(right[j++]);
    } else if (j >= right.size()) {
      out.push_back(left[i++]);
    } else {
      auto li = position(server_order, left[i], key);
      auto ri = position(server_order, right[j], key);
      if (li && ri && *li < *ri) {
        out.push_back(left[i++]);
      } else {
        out.push_back(right[j++]);
      }
    }
  }
  return out;
}

// The order of a merged list: the elements `patch_order` names, in its order, with the others
// (in live order) interleaved by their live positions. strategicpatch's normalizeElementOrder.
json order_merged(const json& merged, const json& patch_order, const json& server_order, const std::string& key) {
  std::vector<json> patch_items;
  std::vector<json> server_only;
  for (const json& m : merged) (position(patch_order, m, key) ? patch_items : server_only).push_back(m);
  auto by = [&](const json& order) {
    return [&order, &key](const json& a, const json& b) {
      auto pa = position(order, a, key);
      auto pb = position(order, b, key);
      return pa.value_or(order.size()) < pb.value_or(order.size());
    };
  };
  std::stable_sort(patch_items.begin(), patch_items.end(), by(patch_order));
  std::stable_sort(server_only.begin(), server_only.end(), by(server_order));
  return merge_sorted(server_only, patch_items, server_order, key);
}

class StrategicMerger {
 public:
  explicit StrategicMerger(const PatchStrategies& strategies) : strategies_(strategies) {}

  StatusOr<json> merge_map(json original, json patch, const FieldPath& path) const {
    if (auto it = patch.find("$patch"); it != patch.end()) {
      if (!it->is_string())
        return invalid_argument(path.where() + ": $patch must be a string, got " + shown_value(*it));
      const std::string directive = it->get<std::string>();
      if (directive == "delete") return json::object();
      if (directive != "replace" && directive != "merge")
        return invalid_argument(path.where() + ": unknown $patch directive " + in_quotes(directive) +
                                " (expected replace, delete or merge)");
      patch.erase("$patch");
      if (directive == "replace") return merge_map(json::object(), std::move(patch), path);
    }
    if (!original.is_object()) original = json::object();
    HOTSWAP_RETURN_IF_ERROR(retain_keys(original, patch, path));

    std::set<std::string> ordered;  // lists $setElementOrder already merged
    std::vector<std::pair<std::string, const json*>> deletions;
    for (const auto& [k, v] : patch.items()) {
      if (!starts_with(k, "$")) continue;
      if (starts_with(k, kSetElementOrder) && k.size() > kSetElementOrder.size()) {
        const std::string field = k.substr(kSetElementOrder.size());
        HOTSWAP_RETURN_IF_ERROR(apply_element_order(original, patch, field, v, path));
        ordered.insert(field);
      } else if (starts_with(k, kDeleteFromPrimitiveList) && k.size() > kDeleteFromPrimitiveList.size()) {
        deletions.emplace_back(k.substr(kDeleteFromPrimitiveList.size()), &v);
      } else {
        return invalid_argument(path.where() + ": unknown patch directive " + in_quotes(k));
      }
    }

    for (const auto& [k, pv] : patch.items()) {
      if (starts_with(k, "$") || ordered.count(k) != 0) continue;
      const FieldPath child = path.child(k);
      if (pv.is_null()) {
        original.erase(k);
        continue;
      }
      auto it = original.find(k);
      if (it != original.end() && it->is_object() && pv.is_object()) {
        HOTSWAP_ASSIGN_OR_RETURN(*it, merge_map(std::move(*it), pv, child));
      } else if (it != original.end() && it->is_array() && pv.is_array()) {
        HOTSWAP_ASSIGN_OR_RETURN(*it, merge_list(*it, pv, child));
      } else {
        HOTSWAP_ASSIGN_OR_RETURN(original[k], new_value(pv, child));
      }
    }

    for (const auto& [field, values] : deletions) {
      const FieldPath child = path.child(field);
      if (!values->is_array())
        return invalid_argument(child.where() + ": $deleteFromPrimitiveList/" + field + " must be a list");
      auto it = original.find(field);
      if (it == original.end() || !it->is_array()) continue;
      json kept = json::array();
      for (const json& v : *it)
        if (std::find(values->begin(), values->end(), v) == values->end()) kept.push_back(v);
      *it = std::move(kept);
    }
    return original;
  }

 private:
  // A value the object did not have (or had with another type): merged into nothing, so its own
  // directives are applied and none is stored.
  StatusOr<json> new_value(const json& patch, const FieldPath& path) const {
    if (patch.is_object()) return merge_map(json::object(), patch, path);
    if (patch.is_array()) return merge_list(json::array(), patch, path);
    return patch;
  }

  StatusOr<json> merge_list(const json& original, const json& patch, const FieldPath& path) const {
    const ListMerge how = strategies_.list_merge(path.type);
    switch (how.strategy) {
      case ListStrategy::kMergeByKey:
        return merge_keyed_list(original, patch, path, how.merge_key);
      case ListStrategy::kSet:
        return merge_set(original, patch, path);
      case ListStrategy::kReplace:
        break;
    }
    json out = json::array();
    for (size_t i = 0; i < patch.size(); ++i) {
      const json& e = patch[i];
      if (e.is_object() && e.contains("$patch")) {
        // A list directive means nothing to a list that is replaced anyway; a deleted element is
        // simply not there.
        if (e.size() == 1 || e["$patch"] == "delete") continue;
      }
      HOTSWAP_ASSIGN_OR_RETURN(json v, new_value(e, path.index(i)));
      out.push_back(std::move(v));
    }
    return out;
  }

  StatusOr<json> merge_set(const json& original, const json& patch, const FieldPath& path) const {
    json merged = json::array();
    for (const json* list : {&original, &patch}) {
      for (size_t i = 0; i < list->size(); ++i) {
        const json& v = (*list)[i];
        if (list == &patch && !is_primitive(v))
          return invalid_argument(path.index(i).shown + ": " + path.shown +
                                  " merges as a set of primitive values, got " + shown_value(v));
        if (std::find(merged.begin(), merged.end(), v) == merged.end()) merged.push_back(v);
      }
    }
    return order_merged(merged, patch, original, "");
  }

  StatusOr<json> merge_keyed_list(const json& original, const json& patch, const FieldPath& path,
                                  const std::string& key) const {
    json live = original.is_array() ? original : json::array();
    json regular = json::array();
    bool replace = false;
    for (size_t i = 0; i < patch.size(); ++i) {
      const json& e = patch[i];
      if (!e.is_object())
        return invalid_argument(path.index(i).shown + ": " + path.shown + " is merged by " + in_quotes(key) +
                                ", so its elements must be objects, got " + shown_value(e));
      auto d = e.find("$patch");
      if (d == e.end()) {
        if (!e.contains(key)) return missing_key(path.index(i), key);
        regular.push_back(e);
        continue;
      }
      if (*d == "delete") {
        if (!e.contains(key)) return missing_key(path.index(i), key);
        json kept = json::array();
        for (const json& l : live) {
          const json* id = identity(l, key);
          if (id == nullptr || *id != e[key]) kept.push_back(l);
        }
        live = std::move(kept);
      } else if (*d == "replace") {
        replace = true;
      } else if (*d == "merge") {
        if (e.contains(key)) regular.push_back(e);  // merge_map takes the directive as the default
      } else {
        return invalid_argument(path.index(i).shown + ": unknown $patch directive " + shown_value(*d) +
                                " (expected replace, delete or merge)");
      }
    }

    if (replace) {
      json out = json::array();
      for (const json& r : regular) {
        HOTSWAP_ASSIGN_OR_RETURN(json v, merge_map(json::object(), r, path.element(key, r[key])));
        out.push_back(std::move(v));
      }
      return out;
    }

    const json server_order = live;
    for (const json& r : regular) {
      const FieldPath at = path.element(key, r[key]);
      if (auto pos = position(live, r, key)) {
        HOTSWAP_ASSIGN_OR_RETURN(live[*pos], merge_map(std::move(live[*pos]), r, at));
      } else {
        HOTSWAP_ASSIGN_OR_RETURN(json v, merge_map(json::object(), r, at));
        live.push_back(std::move(v));
      }
    }
    return order_merged(live, regular, server_order, key);
  }

  Status missing_key(const FieldPath& at, const std::string& key) const {
    return invalid_argument(at.shown + " does not contain declared merge key " + in_quotes(key));
  }

  // $retainKeys: the fields of this map to keep; the patch may only set fields among them.
  Status retain_keys(json& original, json& patch, const FieldPath& path) const {
    auto it = patch.find("$retainKeys");
    if (it == patch.end()) return Status::ok_status();
    if (!it->is_array()) return invalid_argument(path.where() + ": $retainKeys must be a list of field names");
    std::set<std::string> keep;
    for (const json& k : *it) {
      if (!k.is_string()) return invalid_argument(path.where() + ": $retainKeys must be a list of field names");
      keep.insert(k.get<std::string>());
    }
    patch.erase(it);
    for (const auto& [k, v] : patch.items()) {
      if (v.is_null() || starts_with(k, "$")) continue;
      if (keep.count(k) == 0)
        return invalid_argument(path.where() + ": field " + in_quotes(k) + " is in the patch but not in $retainKeys");
    }
    for (auto o = original.begin(); o != original.end();) {
      if (keep.count(o.key()) == 0) {
        o = original.erase(o);
      } else {
        ++o;
      }
    }
    return Status::ok_status();
  }

  // $setElementOrder/<field>: merges patch[field] (if any) into original[field] and puts the
  // result in the given order; the field is then done.
  Status apply_element_order(json& original, const json& patch, const std::string& field, const json& order,
                             const FieldPath& path) const {
    const FieldPath child = path.child(field);
    const std::string directive = "$setElementOrder/" + field;
    if (!order.is_array()) return invalid_argument(child.where() + ": " + directive + " must be a list");
    const ListMerge how = strategies_.list_merge(child.type);
    if (how.strategy == ListStrategy::kReplace)
      return invalid_argument(child.where() + ": " + directive + " needs a merging list, and " + field +
                              " is replaced whole");
    const std::string key = how.strategy == ListStrategy::kMergeByKey ? how.merge_key : "";
    for (size_t i = 0; i < order.size(); ++i) {
      if (key.empty() ? !is_primitive(order[i]) : identity(order[i], key) == nullptr)
        return invalid_argument(
            child.where() + ": " + directive + "[" + std::to_string(i) + "] " +
            (key.empty() ? "must be a primitive value" : "does not contain declared merge key " + in_quotes(key)));
    }

    const json* live = nullptr;
    if (auto it = original.find(field); it != original.end() && it->is_array()) live = &*it;
    const json* list = nullptr;
    if (auto it = patch.find(field); it != patch.end()) {
      if (!it->is_array()) return invalid_argument(child.where() + ": must be a list to go with " + directive);
      list = &*it;
    }

    // The patch list's elements must appear in the order list, in the same order.
    if (list != nullptr) {
      size_t p = 0;
      size_t s = 0;
      std::vector<const json*> named;
      for (const json& e : *list)
        if (key.empty() || (e.is_object() && !e.contains("$patch"))) named.push_back(&e);
      while (p < named.size() && s < order.size()) {
        const json* a = identity(*named[p], key);
        if (a == nullptr) return missing_key(child.index(p), key);
        if (*a == *identity(order[s], key)) ++p;
        ++s;
      }
      if (p < named.size())
        return invalid_argument(child.where() + ": the order of the patch list does not match " + directive);
    }

    json merged;
    if (list != nullptr) {
      HOTSWAP_ASSIGN_OR_RETURN(merged, merge_list(live != nullptr ? *live : json::array(), *list, child));
    } else if (live != nullptr) {
      merged = *live;
    } else {
      return Status::ok_status();
    }
    json result = order_merged(merged, order, live != nullptr ? *live : json::array(), key);
    original[field] = std::move(result);
    return Status::ok_status();
  }

  const PatchStrategies& strategies_;
};

PatchStrategies with_object_meta() {
  PatchStrategies s;
  s.merge_as_set("metadata.finalizers").merge_by_key("metadata.ownerReferences", "uid");
  return s;
}

// The container lists of a pod spec: containers, initContainers and ephemeralContainers share them.
void add_container_lists(PatchStrategies& s, const std::string& list) {
  s.merge_by_key(list, "name")
      .merge_by_key(list + ".ports", "containerPort")
      .merge_by_key(list + ".env", "name")
      .merge_by_key(list + ".volumeMounts", "mountPath")
      .merge_by_key(list + ".volumeDevices", "devicePath");
}

std::map<std::string, PatchStrategies, std::less<>> build_tables() {
  std::map<std::string, PatchStrategies, std::less<>> t;
  for (const char* kind : {"Pod", "Node", "Service", "Namespace", "Secret", "ConfigMap", "Endpoints", "EndpointSlice",
                           "Lease", "PodDisruptionBudget", "Event"})
    t.emplace(kind, with_object_meta());

  // k8s.io/api/core/v1 PodSpec and PodStatus. Lists without a tag (tolerations, readinessGates,
  // containerStatuses, envFrom, args...) are replaced.
  PatchStrategies& pod = t["Pod"];
  for (const char* list : {"spec.containers", "spec.initContainers", "spec.ephemeralContainers"})
    add_container_lists(pod, list);
  pod.merge_by_key("spec.volumes", "name")  // patchStrategy:"merge,retainKeys"
      .merge_by_key("spec.imagePullSecrets", "name")
      .merge_by_key("spec.hostAliases", "ip")
      .merge_by_key("spec.topologySpreadConstraints", "topologyKey")
      .merge_by_key("spec.schedulingGates", "name")
      .merge_by_key("spec.resourceClaims", "name")  // patchStrategy:"merge,retainKeys"
      .merge_by_key("status.conditions", "type")
      .merge_by_key("status.podIPs", "ip")
      .merge_by_key("status.hostIPs", "ip")
      .merge_by_key("status.resourceClaimStatuses", "name");

  // NodeSpec.taints has no patchStrategy: replaced.
  t["Node"]
      .merge_as_set("spec.podCIDRs")
      .merge_by_key("status.conditions", "type")
      .merge_by_key("status.addresses", "type");

  t["Service"].merge_by_key("spec.ports", "port").merge_by_key("status.conditions", "type");
  t["Namespace"].merge_by_key("status.conditions", "type");  // spec.finalizers: replaced
  t["PodDisruptionBudget"].merge_by_key("status.conditions", "type");
  // Secret, ConfigMap (maps only), Endpoints (subsets replaced), EndpointSlice (atomic lists),
  // Lease and Event have no list strategies of their own.
  return t;
}

}  // namespace

StatusOr<json> apply_json_patch(const json& doc, const json& patch) {
  if (!patch.is_array()) return invalid_argument("a json patch must be an array of operations");
  json result = doc;
  for (size_t i = 0; i < patch.size(); ++i) HOTSWAP_RETURN_IF_ERROR(apply_operation(result, patch[i], i));
  return result;
}

json apply_merge_patch(const json& doc, const json& patch) {
  if (!patch.is_object()) return patch;
  json result = doc.is_object() ? doc : json::object();
  for (const auto& [k, v] : patch.items()) {
    if (v.is_null()) {
      result.erase(k);
      continue;
    }
    auto it = result.find(k);
    json merged = apply_merge_patch(it != result.end() ? *it : json(), v);
    result[k] = std::move(merged);
  }
  return result;
}

PatchStrategies& PatchStrategies::merge_by_key(std::string field_path, std::string merge_key) {
  lists_[std::move(field_path)] = ListMerge{ListStrategy::kMergeByKey, std::move(merge_key)};
  return *this;
}

PatchStrategies& PatchStrategies::merge_as_set(std::string field_path) {
  lists_[std::move(field_path)] = ListMerge{ListStrategy::kSet, ""};
  return *this;
}

ListMerge PatchStrategies::list_merge(std::string_view field_path) const {
  auto it = lists_.find(field_path);
  return it == lists_.end() ? ListMerge{} : it->second;
}

const PatchStrategies& strategic_merge_strategies_for(std::string_view kind) {
  static const auto* tables = new std::map<std::string, PatchStrategies, std::less<>>(build_tables());
  static const auto* object_meta_only = new PatchStrategies(with_object_meta());
  auto it = tables->find(kind);
  return it == tables->end() ? *object_meta_only : it->second;
}

StatusOr<json> apply_strategic_merge_patch(const json& doc, const json& patch, const PatchStrategies& strategies) {
  if (!patch.is_object())
    return invalid_argument(std::string("a strategic merge patch must be a JSON object, got ") + patch.type_name());
  if (!doc.is_object() && !doc.is_null())
    return invalid_argument(std::string("a strategic merge patch applies to an object, not a ") + doc.type_name());
  return StrategicMerger(strategies).merge_map(doc, patch, FieldPath{});
}

}  // namespace hotswap::devcluster
