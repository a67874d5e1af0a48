// The three patch types kube-apiserver accepts, as pure functions over nlohmann::json: JSON patch
// (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch, the kubectl default for
// built-in kinds.
//
// A strategic merge patch merges some lists instead of replacing them: by a merge key (containers
// by "name") or as a set of primitives (finalizers). Kubernetes takes that from the Go API types'
// patchStrategy/patchMergeKey tags; here PatchStrategies holds it, keyed by field path, and
// strategic_merge_strategies_for() has the tables for the kinds the dev cluster serves. The merge
// reproduces k8s.io/apimachinery's strategicpatch, directives and element order included.
//
// Errors are kInvalidArgument and name the operation (JSON patch) or the field (strategic merge
// patch: "spec.containers[name=app].env[1] does not contain declared merge key \"name\"").
#pragma once

#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace hotswap::devcluster {

// RFC 6902: add, remove, replace, move, copy and test, applied in order to a copy of doc; JSON
// pointers with ~0/~1 escapes and "-" for the end of an array. All or nothing: the first failing
// operation's error comes back, e.g.
//   json patch operation 2 (remove): path "/spec/x" does not exist
StatusOr<nlohmann::json> apply_json_patch(const nlohmann::json& doc, const nlohmann::json& patch);

// RFC 7386: an object patch merges recursively into doc (null deletes a member), anything else
// replaces doc whole. Never fails.
nlohmann::json apply_merge_patch(const nlohmann::json& doc, const nlohmann::json& patch);

// How a strategic merge patch combines a list it finds in both the object and the patch.
enum class ListStrategy {
  kReplace,     // the patch's list replaces the object's (a field without patchStrategy)
  kMergeByKey,  // patchStrategy:"merge" with a patchMergeKey: elements matched by that key merge
  kSet,         // patchStrategy:"merge" on primitives: the union, without duplicates
};

struct ListMerge {
  ListStrategy strategy = ListStrategy::kReplace;
  std::string merge_key;  // for kMergeByKey
};

// The list strategies of one kind, by field path: field names from the object root joined by
// dots, list elements not counted ("spec.containers", "spec.containers.env"). Maps always merge
// recursively; lists not listed here are replaced.
class PatchStrategies {
 public:
  PatchStrategies& merge_by_key(std::string field_path, std::string merge_key);
  PatchStrategies& merge_as_set(std::string field_path);
  // kReplace for a path not listed.
  ListMerge list_merge(std::string_view field_path) const;

 private:
  std::map<std::string, ListMerge, std::less<>> lists_;
};

// The tables for Pod, Node, Service, Namespace, Secret, ConfigMap, Endpoints, EndpointSlice,
// Lease, PodDisruptionBudget and Event, taken from the k8s.io/api types' tags, each with the
// ObjectMeta lists (metadata.finalizers as a set, metadata.ownerReferences by uid). Any other kind
// gets the ObjectMeta lists only. (kube-apiserver refuses strategic merge patches for custom
// resources with 415; that is the caller's check.)
const PatchStrategies& strategic_merge_strategies_for(std::string_view kind);

// Applies a strategic merge patch (a JSON object) to doc (an object, or null for {}). Beyond plain
// merging it understands the directives kubectl sends:
//   $patch: replace | delete | merge     in a map, or as a list element (replace the list, delete
//                                        the element with that merge key)
//   $setElementOrder/<list>: [...]       the order of a merged list (elements given as {key: v} or
//                                        primitives); elements not in it keep their relative place
//   $retainKeys: [...]                   drop the map's fields not listed
//   $deleteFromPrimitiveList/<list>: [...] remove these values from a primitive list
// Any other "$..." key is an error, as is an element of a merge-keyed list without its key.
StatusOr<nlohmann::json> apply_strategic_merge_patch(const nlohmann::json& doc, const nlohmann::json& patch,
                                                     const PatchStrategies& strategies);

}  // namespace hotswap::devcluster
