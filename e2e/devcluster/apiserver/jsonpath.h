// The JSONPath subset that CRD additionalPrinterColumns and kubectl's -o jsonpath /
// custom-columns use (k8s.io/client-go/util/jsonpath), evaluated over nlohmann::json.
//
// Supported: an optional {...} wrapper and leading $; fields .a.b and ['b.c'] / ["b.c"]; .* and
// [*]; indices [0] and [-1]; slices [1:3]; recursive descent ..name; filters [?(@.type=="Ready")]
// with ==, !=, <, <=, >, >= against string, number, true/false/null literals, or [?(@.x)] for
// "has x". A missing field, an index out of range or a filter that matches nothing gives no
// values rather than an error, as the API server's column printer (AllowMissingKeys) does; only
// a path that does not parse is an error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace hotswap::devcluster {

// The values `path` selects in `obj`, in document order.
StatusOr<std::vector<nlohmann::json>> jsonpath_eval(const nlohmann::json& obj, std::string_view path);

// A table cell for those values, as kubectl's jsonpath printer writes them: strings bare, numbers,
// booleans, objects and lists as JSON, null as nothing, several values joined by a space; "" for
// none (the caller decides whether that shows as "<none>"). kube-apiserver's CRD columns print
// only the first value: pass just that one for its behaviour.
std::string jsonpath_cell(const std::vector<nlohmann::json>& values);

}  // namespace hotswap::devcluster
