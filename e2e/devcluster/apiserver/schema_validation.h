// A custom resource against its CRD version's OpenAPI v3 schema (spec.versions[].schema.
// openAPIV3Schema), the way kube-apiserver treats structural schemas: defaulting, pruning of
// unknown fields, validation, and the structural checks a schema must pass when the CRD is created.
//
// Errors read like kube-apiserver's, so that clients and tests see the messages a real cluster
// gives:
//   spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"
//   spec.model: Required value
//   spec.mode: Unsupported value: "X": supported values: "KV", "Recompute", "Auto"
// Paths are dotted from the object root, list elements by index (spec.items[2].name). At the
// root, apiVersion, kind and metadata are the API server's business: the schema's properties
// apply to them only where it lists them, and pruning never touches them.
//
// The server's order for a write is apply_schema_defaults, prune_unknown_fields,
// validate_against_schema. Pure functions, no state.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace hotswap::devcluster {

struct FieldError {
  std::string field;    // spec.items[2].name
  std::string type;     // a metav1.CauseType: FieldValueRequired, FieldValueInvalid, FieldValueTypeInvalid,
                        // FieldValueNotSupported, FieldValueDuplicate, FieldValueTooLong, FieldValueTooMany
  std::string message;  // the whole message, field first, as kube-apiserver words it
};

// Every violation of `schema` in `value`: type (object, array, string, integer, number, boolean;
// integer accepts 2.0 but not 1.5), nullable, enum, minimum/maximum (with exclusiveMinimum/
// exclusiveMaximum), multipleOf, minLength/maxLength, pattern (ECMAScript, unanchored),
// minItems/maxItems, x-kubernetes-list-type set/map duplicates, required, properties,
// additionalProperties (a schema for maps, or false), minProperties/maxProperties,
// x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields and
// x-kubernetes-embedded-resource. Fields the schema does not declare are not errors here (see
// prune_unknown_fields). allOf/anyOf/oneOf/not are not evaluated. Empty when valid.
std::vector<FieldError> validate_against_schema(const nlohmann::json& value, const nlohmann::json& schema);

// Removes the fields `schema` does not declare, except under x-kubernetes-preserve-unknown-fields
// and additionalProperties, and never apiVersion, kind or metadata at the root (or of an embedded
// resource). Returns the removed fields' paths ("spec.foo", "spec.items[0].bar") so the server can
// refuse them under fieldValidation=Strict (`unknown field "spec.foo"`) or warn.
std::vector<std::string> prune_unknown_fields(nlohmann::json& value, const nlohmann::json& schema);

// Fills each absent property that has a `default` with it, recursively: inside objects that exist
// or were themselves just defaulted, and in every list element. As kube-apiserver does, a null in
// a field that is not nullable is replaced by the default, or dropped if there is none.
void apply_schema_defaults(nlohmann::json& value, const nlohmann::json& schema);

// The checks a CRD version's schema must pass at CRD creation: the root is type object; every node
// has a type (one of the six) unless it is x-kubernetes-int-or-string or
// x-kubernetes-preserve-unknown-fields; arrays have items; properties and additionalProperties are
// exclusive; patterns compile; defaults are valid; $ref, definitions, patternProperties and the
// like are refused. The message names each bad place relative to the schema root, e.g.
//   properties[spec].properties[replicas].type: Required value: must not be empty for specified object fields
Status check_structural_schema(const nlohmann::json& schema);

}  // namespace hotswap::devcluster
