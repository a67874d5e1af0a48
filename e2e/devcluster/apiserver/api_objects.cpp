#include "e2e/devcluster/apiserver/api_objects.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>

#include "e2e/devcluster/apiserver/object_rules.h"
#include "e2e/devcluster/apiserver/patch.h"
#include "e2e/devcluster/apiserver/schema_validation.h"

namespace hotswap::devcluster {
namespace {

using json = nlohmann::json;

std::mt19937_64& rng() {
  static thread_local std::mt19937_64 r(std::random_device{}() ^
                                        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  return r;
}

std::string new_uid() {
  const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; ++i) {
    int v = static_cast<int>(rng()() % 16);
    if (i == 12) v = 4;                 // version 4
    if (i == 16) v = 8 + (v % 4);       // variant 10xx
    s += hex[v];
    if (i == 7 || i == 11 || i == 15 || i == 19) s += '-';
  }
  return s;
}

// kube-apiserver's generateName alphabet: no vowels, no look-alikes.
std::string name_suffix() {
  const char* alphabet = "bcdfghjklmnpqrstvwxz2456789";
  std::string s;
  for (int i = 0; i < 5; ++i) s += alphabet[rng()() % 27];
  return s;
}

bool is_dns_subdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    const std::string label = s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (label.empty()) return false;
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

bool is_dns_label(const std::string& s) { return s.size() <= 63 && s.find('.') == std::string::npos && is_dns_subdomain(s); }

// Namespaces and Services are DNS labels; everything else a DNS subdomain.
bool label_named(const ResourceType& type) {
  return type.group.empty() && (type.resource == "namespaces" || type.resource == "services");
}

std::string name_rule_message(const ResourceType& type, const std::string& name) {
  if (label_named(type)) {
    return "Invalid value: \"" + name +
           "\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
           "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
           "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
  }
  return "Invalid value: \"" + name +
         "\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
         "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
}

// kind.group for messages about custom resources, as kube-apiserver names them.
std::string qualified_kind(const ResourceType& type) {
  return type.custom || !type.group.empty() ? type.kind + "." + type.group : type.kind;
}

ApiError invalid_object(const ResourceType& type, const std::string& name, const std::vector<FieldError>& errors) {
  json causes = json::array();
  std::string text;
  for (const auto& e : errors) {
    // A cause's message leaves the field out: clients print "<field>: <message>".
    std::string cause = e.message;
    if (cause.rfind(e.field + ": ", 0) == 0) cause = cause.substr(e.field.size() + 2);
    causes.push_back({{"reason", e.type}, {"message", cause}, {"field", e.field}});
    if (!text.empty()) text += ", ";
    text += e.message;
  }
  if (errors.size() > 1) text = "[" + text + "]";
  json details = {{"name", name}, {"kind", type.kind}, {"causes", causes}};
  if (!type.group.empty()) details["group"] = type.group;
  return invalid_error(qualified_kind(type) + " \"" + name + "\" is invalid: " + text, details);
}

ApiError invalid_field(const ResourceType& type, const std::string& name, const std::string& field,
                       const std::string& reason, const std::string& what) {
  return invalid_object(type, name, {FieldError{field, reason, field + ": " + what}});
}

std::vector<std::string> finalizers_of(const json& object) {
  std::vector<std::string> out;
  const json f = object.value("/metadata/finalizers"_json_pointer, json::array());
  if (f.is_array())
    for (const auto& v : f)
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

// The object without metadata and status: what metadata.generation counts changes of.
json spec_part(const json& object) {
  json j = object;
  j.erase("metadata");
  j.erase("status");
  return j;
}

bool has_status_subresource(const ResourceType& type) { return type.has_subresource("status"); }

}  // namespace

std::string now_rfc3339() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string kind_and_name(const ResourceType& type, const std::string& name) {
  return qualified_kind(type) + " \"" + name + "\"";
}

std::string resource_and_name(const ResourceType& type, const std::string& name) {
  return (type.group.empty() ? type.resource : type.resource + "." + type.group) + " \"" + name + "\"";
}

ApiResult<std::vector<std::string>> ApiObjects::admit(const ResourceType& type, const std::string& ns, json& object,
                                                      const json* old, FieldValidation validation) {
  if (!object.is_object()) return bad_request("the request body is not a JSON object");
  const std::string api_version = object.value("apiVersion", std::string());
  const std::string kind = object.value("kind", std::string());
  if (!api_version.empty() && api_version != type.api_version()) {
    return bad_request("the API version in the data (" + api_version + ") does not match the expected API version (" +
                       type.api_version() + ")");
  }
  if (!kind.empty() && kind != type.kind) {
    return bad_request("the kind in the data (" + kind + ") does not match the expected kind (" + type.kind + ")");
  }
  object["apiVersion"] = type.api_version();
  object["kind"] = type.kind;
  if (!object.contains("metadata") || object["metadata"].is_null()) object["metadata"] = json::object();
  if (!object["metadata"].is_object()) return bad_request("metadata: expected an object");
  json& meta = object["metadata"];
  if (type.namespaced) {
    const std::string body_ns = meta.value("namespace", std::string());
    if (!body_ns.empty() && body_ns != ns)
      return bad_request("the namespace of the provided object does not match the namespace sent on the request");
    meta["namespace"] = ns;
  } else {
    meta.erase("namespace");
  }
  for (const char* field : {"labels", "annotations"}) {
    if (!meta.contains(field) || meta[field].is_null()) continue;
    if (!meta[field].is_object()) return bad_request(std::string("metadata.") + field + ": expected a map of strings");
    for (const auto& [k, v] : meta[field].items())
      if (!v.is_string())
        return invalid_field(type, meta.value("name", std::string()), std::string("metadata.") + field + "." + k,
                             "FieldValueTypeInvalid", "Invalid value: must be a string");
  }
  std::vector<std::string> warnings;
  if (type.custom) {
    apply_schema_defaults(object, type.schema);
    const std::vector<std::string> unknown = prune_unknown_fields(object, type.schema);
    if (!unknown.empty() && validation != FieldValidation::kIgnore) {
      std::string text;
      for (const auto& u : unknown) {
        const std::string one = "unknown field \"" + u + "\"";
        if (validation == FieldValidation::kWarn) warnings.push_back(one);
        text += (text.empty() ? "" : ", ") + one;
      }
      if (validation == FieldValidation::kStrict) return bad_request("strict decoding error: " + text);
    }
    const std::vector<FieldError> errors = validate_against_schema(object, type.schema);
    if (!errors.empty()) return invalid_object(type, meta.value("name", std::string()), errors);
  }
  (void)old;
  return warnings;
}

ApiResult<WriteResult> ApiObjects::create(const ResourceType& type, const std::string& ns, json object,
                                          FieldValidation validation) {
  if (type.namespaced) {
    auto nsobj = store_.get("namespaces", "", ns);
    if (!nsobj.ok()) return not_found_error("namespaces \"" + ns + "\" not found");
    if (nsobj->contains("metadata") && (*nsobj)["metadata"].contains("deletionTimestamp")) {
      return forbidden_error(resource_and_name(type, object.value("/metadata/name"_json_pointer, std::string())) +
                             " is forbidden: unable to create new content in namespace " + ns +
                             " because it is being terminated");
    }
  }
  auto admitted = admit(type, ns, object, nullptr, validation);
  if (!admitted.ok()) return admitted.error();
  json& meta = object["metadata"];
  std::string name = meta.value("name", std::string());
  const std::string generate = meta.value("generateName", std::string());
  if (name.empty() && generate.empty()) {
    return invalid_field(type, "", "metadata.name", "FieldValueRequired",
                         "Required value: name or generateName is required");
  }
  const bool generated = name.empty();
  if (!generated && !(label_named(type) ? is_dns_label(name) : is_dns_subdomain(name)))
    return invalid_field(type, name, "metadata.name", "FieldValueInvalid", name_rule_message(type, name));
  meta["uid"] = new_uid();
  meta["creationTimestamp"] = now_rfc3339();
  meta.erase("deletionTimestamp");
  meta.erase("deletionGracePeriodSeconds");
  meta.erase("resourceVersion");
  meta.erase("managedFields");
  if (type.has_spec) meta["generation"] = 1;
  else meta.erase("generation");
  if (type.custom && has_status_subresource(type)) object.erase("status");
  auto ruled = on_create(type, object, store_);
  if (!ruled.ok()) return ruled.error();
  for (int attempt = 0;; ++attempt) {
    if (generated) {
      name = generate + name_suffix();
      meta["name"] = name;
      if (!is_dns_subdomain(name))
        return invalid_field(type, name, "metadata.generateName", "FieldValueInvalid", name_rule_message(type, name));
    }
    auto created = store_.create(type.key(), type.namespaced ? ns : "", object);
    if (created.ok()) return WriteResult{std::move(*created), std::move(*admitted)};
    if (!generated || created.error().reason != "AlreadyExists" || attempt >= 8) {
      if (created.error().reason == "AlreadyExists") {
        json details = {{"name", name}, {"kind", type.resource}};
        if (!type.group.empty()) details["group"] = type.group;
        return api_error(409, "AlreadyExists", resource_and_name(type, name) + " already exists", details);
      }
      return created.error();
    }
  }
}

ApiResult<ObjectStore::Mutation> ApiObjects::merge_update(const ResourceType& type, const std::string& ns,
                                                          const json& current, json next,
                                                          const std::string& subresource, FieldValidation validation,
                                                          std::vector<std::string>& warnings) {
  const std::string name = current["metadata"].value("name", std::string());
  json result;
  if (subresource == "status") {
    result = current;
    if (next.contains("status")) result["status"] = next["status"];
    else result.erase("status");
  } else {
    if (!next.is_object()) return bad_request("the request body is not a JSON object");
    result = std::move(next);
    if (!result.contains("metadata") || !result["metadata"].is_object()) result["metadata"] = json::object();
    json& meta = result["metadata"];
    const json& old_meta = current["metadata"];
    for (const char* keep : {"uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"}) {
      if (old_meta.contains(keep)) meta[keep] = old_meta[keep];
      else meta.erase(keep);
    }
    meta["name"] = name;
    meta.erase("managedFields");
    if (has_status_subresource(type)) {
      if (current.contains("status")) result["status"] = current["status"];
      else result.erase("status");
    }
  }
  auto admitted = admit(type, ns, result, &current, validation);
  if (!admitted.ok()) return admitted.error();
  warnings.insert(warnings.end(), admitted->begin(), admitted->end());
  json& meta = result["metadata"];
  if (current["metadata"].contains("deletionTimestamp")) {
    const auto old_f = finalizers_of(current);
    std::vector<std::string> added;
    for (const auto& f : finalizers_of(result))
      if (std::find(old_f.begin(), old_f.end(), f) == old_f.end()) added.push_back(f);
    if (!added.empty()) {
      std::string list;
      for (const auto& f : added) list += (list.empty() ? "\"" : ", \"") + f + "\"";
      return invalid_field(type, name, "metadata.finalizers", "FieldValueForbidden",
                           "Forbidden: no new finalizers can be added if the object is being deleted, found new "
                           "finalizers []string{" + list + "}");
    }
  }
  if (type.has_spec && spec_part(result) != spec_part(current))
    meta["generation"] = current["metadata"].value("generation", 0) + 1;
  auto ruled = on_update(type, result, current, subresource);
  if (!ruled.ok()) return ruled.error();
  // The last finalizer gone from an object being deleted: it goes (a Pod waits for its kubelet).
  const bool remove = meta.contains("deletionTimestamp") && finalizers_of(result).empty() &&
                      !(type.group.empty() && (type.resource == "pods" || type.resource == "namespaces"));
  return ObjectStore::Mutation{std::move(result), remove};
}

ApiResult<WriteResult> ApiObjects::update(const ResourceType& type, const std::string& ns, const std::string& name,
                                          json object, const std::string& subresource, FieldValidation validation) {
  if (!object.is_object()) return bad_request("the request body is not a JSON object");
  if (object.contains("metadata") && object["metadata"].is_object()) {
    const std::string body_name = object["metadata"].value("name", std::string());
    if (!body_name.empty() && body_name != name)
      return bad_request("the name of the object (" + body_name + ") does not match the name on the URL (" + name + ")");
  }
  const std::string expected_rv = object.value("/metadata/resourceVersion"_json_pointer, std::string());
  std::vector<std::string> warnings;
  auto r = store_.mutate(type.key(), type.namespaced ? ns : "", name,
                         [&](const json& current) -> ApiResult<ObjectStore::Mutation> {
                           const std::string rv = current["metadata"].value("resourceVersion", std::string());
                           if (!expected_rv.empty() && expected_rv != rv) {
                             return conflict_error("Operation cannot be fulfilled on " + resource_and_name(type, name) +
                                                   ": the object has been modified; please apply your changes to "
                                                   "the latest version and try again");
                           }
                           return merge_update(type, ns, current, object, subresource, validation, warnings);
                         });
  if (!r.ok()) {
    if (r.error().reason == "NotFound") return not_found_error(resource_and_name(type, name) + " not found");
    return r.error();
  }
  return WriteResult{std::move(*r), std::move(warnings)};
}

ApiResult<WriteResult> ApiObjects::patch(const ResourceType& type, const std::string& ns, const std::string& name,
                                         PatchType patch_type, const json& patch, const std::string& subresource,
                                         FieldValidation validation) {
  if (patch_type == PatchType::kStrategic && type.custom) {
    return api_error(415, "UnsupportedMediaType",
                     "the body of the request was in an unknown format - accepted media types include: "
                     "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml");
  }
  if (patch_type != PatchType::kJson && !patch.is_object())
    return bad_request("the patch is not a JSON object");
  if (patch_type == PatchType::kJson && !patch.is_array()) return bad_request("a JSON patch must be an array");
  std::vector<std::string> warnings;
  auto r = store_.mutate(
      type.key(), type.namespaced ? ns : "", name, [&](const json& current) -> ApiResult<ObjectStore::Mutation> {
        json patched;
        if (patch_type == PatchType::kMerge) {
          patched = apply_merge_patch(current, patch);
        } else {
          auto p = patch_type == PatchType::kJson
                       ? apply_json_patch(current, patch)
                       : apply_strategic_merge_patch(current, patch, strategic_merge_strategies_for(type.kind));
          if (!p.ok()) return invalid_error(p.status().message());
          patched = std::move(p).value();
        }
        const std::string rv = current["metadata"].value("resourceVersion", std::string());
        const std::string asked = patched.is_object() && patched.contains("metadata") && patched["metadata"].is_object()
                                      ? patched["metadata"].value("resourceVersion", std::string())
                                      : std::string();
        if (!asked.empty() && asked != rv) {
          return conflict_error("Operation cannot be fulfilled on " + resource_and_name(type, name) +
                                ": the object has been modified; please apply your changes to the latest version and "
                                "try again");
        }
        return merge_update(type, ns, current, std::move(patched), subresource, validation, warnings);
      });
  if (!r.ok()) {
    if (r.error().reason == "NotFound") return not_found_error(resource_and_name(type, name) + " not found");
    return r.error();
  }
  return WriteResult{std::move(*r), std::move(warnings)};
}

ApiResult<json> ApiObjects::remove(const ResourceType& type, const std::string& ns, const std::string& name,
                                   const DeleteOptions& options) {
  const bool is_pod = type.group.empty() && type.resource == "pods";
  const bool is_namespace = type.group.empty() && type.resource == "namespaces";
  auto r = store_.mutate(
      type.key(), type.namespaced ? ns : "", name, [&](const json& current) -> ApiResult<ObjectStore::Mutation> {
        const json& meta = current["metadata"];
        if (options.precondition_uid && *options.precondition_uid != meta.value("uid", std::string())) {
          return conflict_error("Precondition failed: UID in precondition: " + *options.precondition_uid +
                                ", UID in object meta: " + meta.value("uid", std::string()));
        }
        if (options.precondition_resource_version &&
            *options.precondition_resource_version != meta.value("resourceVersion", std::string())) {
          return conflict_error("Precondition failed: ResourceVersion in precondition: " +
                                *options.precondition_resource_version +
                                ", ResourceVersion in object meta: " + meta.value("resourceVersion", std::string()));
        }
        json next = current;
        std::vector<std::string> finalizers = finalizers_of(current);
        auto add_finalizer = [&](const std::string& f) {
          if (std::find(finalizers.begin(), finalizers.end(), f) == finalizers.end()) finalizers.push_back(f);
        };
        if (options.propagation_policy == "Orphan") add_finalizer("orphan");
        if (options.propagation_policy == "Foreground") add_finalizer("foregroundDeletion");
        if (!finalizers.empty()) next["metadata"]["finalizers"] = finalizers;
        int64_t grace = 0;
        if (is_pod && !current.value("/spec/nodeName"_json_pointer, std::string()).empty()) {
          grace = options.grace_period_seconds.value_or(
              current.value("/spec/terminationGracePeriodSeconds"_json_pointer, int64_t{30}));
          if (grace < 0) grace = 0;
          if (meta.contains("deletionGracePeriodSeconds")) {
            grace = std::min<int64_t>(grace, meta["deletionGracePeriodSeconds"].get<int64_t>());
          }
        }
        const bool namespace_finalizers =
            is_namespace && !current.value("/spec/finalizers"_json_pointer, json::array()).empty();
        if (finalizers.empty() && grace == 0 && !namespace_finalizers) return ObjectStore::Mutation{current, true};
        if (!meta.contains("deletionTimestamp") || (is_pod && grace < meta.value("deletionGracePeriodSeconds", 0))) {
          const std::time_t at = std::time(nullptr) + grace;
          std::tm tm{};
          gmtime_r(&at, &tm);
          char buf[32];
          std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
          next["metadata"]["deletionTimestamp"] = buf;
          next["metadata"]["deletionGracePeriodSeconds"] = grace;
        }
        if (is_namespace) next["status"]["phase"] = "Terminating";
        return ObjectStore::Mutation{std::move(next), false};
      });
  if (!r.ok() && r.error().reason == "NotFound") return not_found_error(resource_and_name(type, name) + " not found");
  return r;
}

}  // namespace hotswap::devcluster
