#include "e2e/devcluster/apiserver/schema_validation.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>
#include <regex>
#include <set>

namespace hotswap::devcluster {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Values printed as Go prints them in apimachinery's field errors.

// Go's %v of a float64: the shortest digits that round-trip, in exponent form ("1e+06") when the
// exponent is below -4 or at least 6 (strconv's %g for the shortest precision).
std::string go_float(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return std::signbit(v) ? "-0" : "0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string s(buf, r.ptr);  // -d.ddde+XX
  const size_t e = s.find('e');
  const int exp = std::stoi(s.substr(e + 1));
  std::string mantissa = s.substr(0, e);
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  const std::string sign = negative ? "-" : "";
  if (exp < -4 || exp >= 6) {
    const int a = std::abs(exp);
    return sign + mantissa + "e" + (exp < 0 ? "-" : "+") + (a < 10 ? "0" : "") + std::to_string(a);
  }
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  if (exp < 0) return sign + "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  const size_t whole = static_cast<size_t>(exp) + 1;
  if (digits.size() <= whole) return sign + digits + std::string(whole - digits.size(), '0');
  return sign + digits.substr(0, whole) + "." + digits.substr(whole);
}

// Go's strconv.Quote, for the UTF-8 text CRs hold.
std::string go_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\a':
        out += "\\a";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\v':
        out += "\\v";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char hex[8];
          std::snprintf(hex, sizeof(hex), "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// A field error's bad value: strings quoted, numbers and booleans bare (the way Go prints the
// int64 and float64 an unstructured object holds), objects and lists as JSON.
std::string go_value(const json& v) {
  if (v.is_string()) return go_quote(v.get<std::string>());
  if (v.is_number_integer()) return v.dump();
  if (v.is_number_float()) return go_float(v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_null()) return "\"null\"";
  return v.dump();
}

// Go's %#v of the map[string]interface{} of list-map keys, as a Duplicate error shows it.
std::string go_map_value(const json& keys) {
  std::string out = "map[string]interface {}{";
  bool first = true;
  for (const auto& [k, v] : keys.items()) {
    out += (first ? "" : ", ") + go_quote(k) + ":" + (v.is_string() ? go_quote(v.get<std::string>()) : go_value(v));
    first = false;
  }
  return out + "}";
}

std::string child_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}
std::string index_path(const std::string& parent, size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}
std::string lead(const std::string& field) {
  return field.empty() ? "" : field + ": ";
}

FieldError required(const std::string& field, const std::string& detail = "") {
  return {field, "FieldValueRequired", lead(field) + "Required value" + (detail.empty() ? "" : ": " + detail)};
}
FieldError invalid(const std::string& field, const std::string& value, const std::string& detail) {
  return {field, "FieldValueInvalid", lead(field) + "Invalid value: " + value + ": " + detail};
}
FieldError type_invalid(const std::string& field, const std::string& value, const std::string& detail) {
  return {field, "FieldValueTypeInvalid", lead(field) + "Invalid value: " + value + ": " + detail};
}
FieldError not_supported(const std::string& field, const std::string& value, const std::vector<std::string>& allowed) {
  std::string detail;
  for (const auto& a : allowed) detail += (detail.empty() ? "" : ", ") + go_quote(a);
  return {field, "FieldValueNotSupported",
          lead(field) + "Unsupported value: " + value + (allowed.empty() ? "" : ": supported values: " + detail)};
}
FieldError forbidden(const std::string& field, const std::string& detail) {
  return {field, "FieldValueForbidden", lead(field) + "Forbidden: " + detail};
}
FieldError duplicate(const std::string& field, const std::string& value) {
  return {field, "FieldValueDuplicate", lead(field) + "Duplicate value: " + value};
}
FieldError too_long(const std::string& field, int64_t max) {
  return {field, "FieldValueTooLong", lead(field) + "Too long: may not be longer than " + std::to_string(max)};
}
FieldError too_many(const std::string& field, size_t actual, int64_t max) {
  return {
      field, "FieldValueTooMany",
      lead(field) + "Too many: " + std::to_string(actual) + ": must have at most " + std::to_string(max) + " items"};
}

// ---------------------------------------------------------------------------------------------
// Schema reading

bool flag(const json& schema, const char* name) {
  auto it = schema.find(name);
  return it != schema.end() && it->is_boolean() && it->get<bool>();
}

std::string type_of_schema(const json& schema) {
  auto it = schema.find("type");
  return it != schema.end() && it->is_string() ? it->get<std::string>() : "";
}

const json* member(const json& schema, const char* name) {
  auto it = schema.find(name);
  return it == schema.end() ? nullptr : &*it;
}

const json* object_member(const json& schema, const char* name) {
  const json* m = member(schema, name);
  return m != nullptr && m->is_object() ? m : nullptr;
}

bool is_resource_field(const std::string& key) {
  return key == "apiVersion" || key == "kind" || key == "metadata";
}

// The JSON type name go-openapi gives a value.
std::string value_type(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  return "object";
}

bool integral(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && d == std::floor(d);
}

bool type_matches(const std::string& type, const json& v) {
  if (type == "integer") return integral(v);
  if (type == "number") return v.is_number();
  return type == value_type(v);
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

std::optional<int64_t> int_member(const json& schema, const char* name) {
  const json* m = member(schema, name);
  if (m == nullptr || !m->is_number()) return std::nullopt;
  return m->get<int64_t>();
}

// ---------------------------------------------------------------------------------------------
// Validation

class Validator {
 public:
  std::vector<FieldError> errors;

  void validate(const json& v, const json& s, const std::string& path, bool resource) {
    if (!s.is_object()) return;
    const std::string type = type_of_schema(s);
    const bool int_or_string = flag(s, "x-kubernetes-int-or-string");
    if (v.is_null()) {
      if (flag(s, "nullable")) return;
      if (!type.empty()) type_error(path, type, v);
      if (int_or_string) type_error(path, "integer,string", v);
      return;
    }
    if (int_or_string) {
      if (!integral(v) && !v.is_string()) return type_error(path, "integer,string", v);
    } else if (!type.empty() && !type_matches(type, v)) {
      return type_error(path, type, v);
    }

    if (const json* allowed = member(s, "enum"); allowed != nullptr && allowed->is_array()) {
      if (std::find(allowed->begin(), allowed->end(), v) == allowed->end()) {
        std::vector<std::string> names;
        for (const json& a : *allowed) names.push_back(a.is_string() ? a.get<std::string>() : a.dump());
        errors.push_back(not_supported(path, go_value(v), names));
      }
    }
    if (v.is_number()) check_number(v, s, path);
    if (v.is_string()) check_string(v.get<std::string>(), s, path);
    if (v.is_array()) check_array(v, s, path);
    if (v.is_object()) check_object(v, s, path, resource);
  }

 private:
  void type_error(const std::string& path, const std::string& type, const json& v) {
    const std::string actual = value_type(v);
    errors.push_back(
        type_invalid(path, go_quote(actual), path + " in body must be of type " + type + ": " + go_quote(actual)));
  }

  void check_number(const json& v, const json& s, const std::string& path) {
    const double x = v.get<double>();
    if (const json* m = member(s, "minimum"); m != nullptr && m->is_number()) {
      const double min = m->get<double>();
      const bool exclusive = flag(s, "exclusiveMinimum");
      if (exclusive ? x <= min : x < min)
        errors.push_back(
            invalid(path, go_value(v),
                    path + " in body should be greater than " + (exclusive ? "" : "or equal to ") + go_float(min)));
    }
    if (const json* m = member(s, "maximum"); m != nullptr && m->is_number()) {
      const double max = m->get<double>();
      const bool exclusive = flag(s, "exclusiveMaximum");
      if (exclusive ? x >= max : x > max)
        errors.push_back(
            invalid(path, go_value(v),
                    path + " in body should be less than " + (exclusive ? "" : "or equal to ") + go_float(max)));
    }
    if (const json* m = member(s, "multipleOf"); m != nullptr && m->is_number() && m->get<double>() > 0) {
      const double q = x / m->get<double>();
      if (q != std::floor(q))
        errors.push_back(
            invalid(path, go_value(v), path + " in body should be a multiple of " + go_float(m->get<double>())));
    }
  }

  void check_string(const std::string& str, const json& s, const std::string& path) {
    const size_t length = utf8_length(str);
    if (auto max = int_member(s, "maxLength"); max && static_cast<int64_t>(length) > *max)
      errors.push_back(too_long(path, *max));
    if (auto min = int_member(s, "minLength"); min && static_cast<int64_t>(length) < *min)
      errors.push_back(
          invalid(path, go_quote(str), path + " in body should be at least " + std::to_string(*min) + " chars long"));
    if (const json* p = member(s, "pattern"); p != nullptr && p->is_string()) {
      const std::string pattern = p->get<std::string>();
      try {
        if (!std::regex_search(str, std::regex(pattern, std::regex::ECMAScript)))
          errors.push_back(invalid(path, go_quote(str), path + " in body should match '" + pattern + "'"));
      } catch (const std::regex_error&) {
        errors.push_back(invalid(path, go_quote(str), "the schema's pattern '" + pattern + "' does not compile"));
      }
    }
  }

  void check_array(const json& v, const json& s, const std::string& path) {
    if (auto min = int_member(s, "minItems"); min && static_cast<int64_t>(v.size()) < *min)
      errors.push_back(invalid(path, std::to_string(v.size()),
                               path + " in body should have at least " + std::to_string(*min) + " items"));
    if (auto max = int_member(s, "maxItems"); max && static_cast<int64_t>(v.size()) > *max)
      errors.push_back(too_many(path, v.size(), *max));

    const json* list_type = member(s, "x-kubernetes-list-type");
    if (list_type != nullptr && *list_type == "set") {
      for (size_t i = 0; i < v.size(); ++i)
        if (std::find(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v[i]) !=
            v.begin() + static_cast<std::ptrdiff_t>(i))
          errors.push_back(duplicate(index_path(path, i), go_value(v[i])));
    } else if (list_type != nullptr && *list_type == "map") {
      const json* keys = member(s, "x-kubernetes-list-map-keys");
      std::vector<json> seen;
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_object() || keys == nullptr || !keys->is_array()) continue;
        json id = json::object();
        for (const json& k : *keys)
          if (k.is_string() && v[i].contains(k.get<std::string>()))
            id[k.get<std::string>()] = v[i][k.get<std::string>()];
        if (std::find(seen.begin(), seen.end(), id) != seen.end()) {
          errors.push_back(duplicate(index_path(path, i), go_map_value(id)));
        } else {
          seen.push_back(std::move(id));
        }
      }
    }

    if (const json* items = object_member(s, "items")) {
      const bool embedded = flag(*items, "x-kubernetes-embedded-resource");
      for (size_t i = 0; i < v.size(); ++i) validate(v[i], *items, index_path(path, i), embedded);
    }
  }

  void check_object(const json& v, const json& s, const std::string& path, bool resource) {
    if (auto max = int_member(s, "maxProperties"); max && static_cast<int64_t>(v.size()) > *max)
      errors.push_back(too_many(path, v.size(), *max));
    if (auto min = int_member(s, "minProperties"); min && static_cast<int64_t>(v.size()) < *min)
      errors.push_back(invalid(path, std::to_string(v.size()),
                               path + " in body should have at least " + std::to_string(*min) + " properties"));
    if (const json* req = member(s, "required"); req != nullptr && req->is_array()) {
      for (const json& name : *req)
        if (name.is_string() && !v.contains(name.get<std::string>()))
          errors.push_back(required(child_path(path, name.get<std::string>())));
    }
    const json* props = object_member(s, "properties");
    const json* additional = member(s, "additionalProperties");
    for (const auto& [k, child] : v.items()) {
      const bool declared = props != nullptr && props->contains(k);
      if (resource && is_resource_field(k) && !declared) continue;
      if (declared) {
        const json& ps = (*props)[k];
        validate(child, ps, child_path(path, k), flag(ps, "x-kubernetes-embedded-resource"));
      } else if (additional != nullptr && additional->is_object()) {
        validate(child, *additional, child_path(path, k), flag(*additional, "x-kubernetes-embedded-resource"));
      } else if (additional != nullptr && *additional == false) {
        errors.push_back(invalid(path, go_quote(k), child_path(path, k) + " in body is a forbidden property"));
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Pruning and defaulting

void prune(json& v, const json& s, const std::string& path, bool resource, std::vector<std::string>& removed) {
  if (!s.is_object()) return;
  if (v.is_array()) {
    if (const json* items = object_member(s, "items")) {
      const bool embedded = flag(*items, "x-kubernetes-embedded-resource");
      for (size_t i = 0; i < v.size(); ++i) prune(v[i], *items, index_path(path, i), embedded, removed);
    }
    return;
  }
  if (!v.is_object()) return;
  const json* props = object_member(s, "properties");
  const json* additional = member(s, "additionalProperties");
  const bool additional_schema = additional != nullptr && additional->is_object();
  // A schema that says nothing about objects (no type, as for int-or-string) prunes nothing.
  if (props == nullptr && !additional_schema && type_of_schema(s) != "object") return;
  const bool preserve =
      flag(s, "x-kubernetes-preserve-unknown-fields") || (additional != nullptr && *additional == true);
  for (auto it = v.begin(); it != v.end();) {
    const std::string key = it.key();
    const bool declared = props != nullptr && props->contains(key);
    if (resource && is_resource_field(key)) {
      // The API server's, even where the schema lists them (metadata: {type: object} is common).
    } else if (declared) {
      const json& ps = (*props)[key];
      prune(*it, ps, child_path(path, key), flag(ps, "x-kubernetes-embedded-resource"), removed);
    } else if (additional_schema) {
      prune(*it, *additional, child_path(path, key), flag(*additional, "x-kubernetes-embedded-resource"), removed);
    } else if (!preserve) {
      removed.push_back(child_path(path, key));
      it = v.erase(it);
      continue;
    }
    ++it;
  }
}

void apply_defaults(json& v, const json& s, bool resource) {
  if (!s.is_object()) return;
  if (v.is_array()) {
    const json* items = object_member(s, "items");
    if (items == nullptr) return;
    for (json& e : v) {
      if (e.is_null() && !flag(*items, "nullable") && items->contains("default")) {
        e = (*items)["default"];
      }
      apply_defaults(e, *items, flag(*items, "x-kubernetes-embedded-resource"));
    }
    return;
  }
  if (!v.is_object()) return;
  const json* props = object_member(s, "properties");
  if (props != nullptr) {
    for (const auto& [name, ps] : props->items()) {
      if (resource && is_resource_field(name)) continue;
      if (!ps.is_object()) continue;
      auto it = v.find(name);
      const bool null_not_allowed = it != v.end() && it->is_null() && !flag(ps, "nullable");
      if (ps.contains("default") && (it == v.end() || null_not_allowed)) {
        v[name] = ps["default"];
      } else if (null_not_allowed) {
        v.erase(it);
      }
    }
  }
  const json* additional = object_member(s, "additionalProperties");
  if (additional != nullptr && !flag(*additional, "nullable")) {
    for (auto it = v.begin(); it != v.end();) {
      const bool declared = props != nullptr && props->contains(it.key());
      if (!declared && it->is_null()) {
        if (additional->contains("default")) {
          *it = (*additional)["default"];
        } else {
          it = v.erase(it);
          continue;
        }
      }
      ++it;
    }
  }
  for (auto& [k, child] : v.items()) {
    if (props != nullptr && props->contains(k)) {
      const json& ps = (*props)[k];
      apply_defaults(child, ps, flag(ps, "x-kubernetes-embedded-resource"));
    } else if (additional != nullptr) {
      apply_defaults(child, *additional, flag(*additional, "x-kubernetes-embedded-resource"));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Structural schema checks

enum class Level { kRoot, kField, kItem };

void check_node(const json& s, const std::string& path, Level level, std::vector<FieldError>& errors) {
  auto at = [&](const std::string& key) { return path.empty() ? key : path + "." + key; };
  if (!s.is_object()) {
    errors.push_back(invalid(path.empty() ? "<root>" : path, s.dump(), "must be a schema object"));
    return;
  }
  static const std::vector<std::string> kTypes = {"array", "boolean", "integer", "number", "object", "string"};
  const json* type_member = member(s, "type");
  std::string type;
  if (type_member != nullptr) {
    if (!type_member->is_string() ||
        std::find(kTypes.begin(), kTypes.end(), type_member->get<std::string>()) == kTypes.end()) {
      errors.push_back(not_supported(at("type"), go_value(*type_member), kTypes));
      return;
    }
    type = type_member->get<std::string>();
  }
  const bool int_or_string = flag(s, "x-kubernetes-int-or-string");
  const bool preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
  const bool embedded = flag(s, "x-kubernetes-embedded-resource");

  if (level == Level::kRoot) {
    if (type.empty()) {
      errors.push_back(required(at("type"), "must not be empty at the root"));
    } else if (type != "object") {
      errors.push_back(invalid(at("type"), go_quote(type), "must be object at the root"));
    }
    if (embedded) errors.push_back(forbidden(at("x-kubernetes-embedded-resource"), "must not be used at the root"));
  } else if (embedded && type != "object") {
    if (type.empty()) {
      errors.push_back(required(at("type"), "must be object if x-kubernetes-embedded-resource is true"));
    } else {
      errors.push_back(invalid(at("type"), go_quote(type), "must be object if x-kubernetes-embedded-resource is true"));
    }
  } else if (type.empty() && !int_or_string && !preserve && !embedded) {
    errors.push_back(required(at("type"), level == Level::kItem ? "must not be empty for specified array items"
                                                                : "must not be empty for specified object fields"));
  }
  if (int_or_string && !type.empty())
    errors.push_back(invalid(at("type"), go_quote(type), "must be empty if x-kubernetes-int-or-string is true"));
  if (const json* p = member(s, "x-kubernetes-preserve-unknown-fields"); p != nullptr && *p != true)
    errors.push_back(invalid(at("x-kubernetes-preserve-unknown-fields"), go_value(*p), "must be true or undefined"));

  static const std::vector<std::pair<std::string, std::string>> kUnsupported = {
      {"$ref", "$ref is not supported"},
      {"definitions", "definitions is not supported"},
      {"dependencies", "dependencies is not supported"},
      {"patternProperties", "patternProperties is not supported"},
      {"additionalItems", "additionalItems is not supported"},
      {"id", "id is not supported"},
  };
  for (const auto& [key, why] : kUnsupported)
    if (s.contains(key)) errors.push_back(forbidden(at(key), why));
  if (flag(s, "uniqueItems"))
    errors.push_back(forbidden(at("uniqueItems"),
                               "uniqueItems cannot be set to true since the runtime complexity "
                               "becomes quadratic"));

  if (const json* p = member(s, "pattern"); p != nullptr) {
    bool ok = p->is_string();
    if (ok) {
      try {
        std::regex(p->get<std::string>(), std::regex::ECMAScript);
      } catch (const std::regex_error&) {
        ok = false;
      }
    }
    if (!ok) errors.push_back(invalid(at("pattern"), go_value(*p), "must be a valid regular expression"));
  }

  const json* props = member(s, "properties");
  const json* items = member(s, "items");
  const json* additional = member(s, "additionalProperties");
  if (props != nullptr && !props->is_object()) {
    errors.push_back(invalid(at("properties"), props->dump(), "must be a map of schemas"));
    props = nullptr;
  }
  if (props != nullptr && additional != nullptr && !props->empty())
    errors.push_back(forbidden(at("additionalProperties"), "additionalProperties and properties are mutual exclusive"));
  if (type == "array" && items == nullptr) errors.push_back(required(at("items"), "must be specified"));
  if (const json* req = member(s, "required"); req != nullptr) {
    bool ok = req->is_array();
    if (ok)
      for (const json& r : *req) ok = ok && r.is_string();
    if (!ok) errors.push_back(invalid(at("required"), req->dump(), "must be a list of property names"));
  }

  if (props != nullptr)
    for (const auto& [name, ps] : props->items()) check_node(ps, at("properties[" + name + "]"), Level::kField, errors);
  if (items != nullptr) {
    if (items->is_object()) {
      check_node(*items, at("items"), Level::kItem, errors);
    } else {
      errors.push_back(invalid(at("items"), items->dump(), "must be a schema object"));
    }
  }
  if (additional != nullptr && additional->is_object())
    check_node(*additional, at("additionalProperties"), Level::kField, errors);

  if (const json* d = member(s, "default")) {
    Validator v;
    v.validate(*d, s, at("default"), false);
    errors.insert(errors.end(), v.errors.begin(), v.errors.end());
  }
}

}  // namespace

std::vector<FieldError> validate_against_schema(const json& value, const json& schema) {
  Validator v;
  v.validate(value, schema, "", true);
  return v.errors;
}

std::vector<std::string> prune_unknown_fields(json& value, const json& schema) {
  std::vector<std::string> removed;
  prune(value, schema, "", true, removed);
  return removed;
}

void apply_schema_defaults(json& value, const json& schema) {
  apply_defaults(value, schema, true);
}

Status check_structural_schema(const json& schema) {
  std::vector<FieldError> errors;
  check_node(schema, "", Level::kRoot, errors);
  if (errors.empty()) return Status::ok_status();
  std::string text;
  for (const auto& e : errors) text += (text.empty() ? "" : ", ") + e.message;
  return invalid_argument(errors.size() > 1 ? "[" + text + "]" : text);
}

}  // namespace hotswap::devcluster
