// Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for (Accept:
// application/json;as=Table;v=v1;g=meta.k8s.io), with the columns kube-apiserver prints for the
// built-in kinds (pods: NAME READY STATUS RESTARTS AGE, wide: IP NODE ...) and, for a custom
// resource, its CRD's additionalPrinterColumns followed by AGE. Each row carries the object's
// metadata (includeObject=Metadata, kubectl's default) or the whole object.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "e2e/devcluster/apiserver/resource_types.h"

namespace hotswap::devcluster {

enum class TableObjects { kNone, kMetadata, kObject };

// A Table of `items`; resource_version and continue_token go to the Table's list metadata.
nlohmann::json render_table(const ResourceType& type, const std::vector<nlohmann::json>& items,
                            const std::string& resource_version, const std::string& continue_token,
                            TableObjects include);

// kubectl's age format: "45s", "12m", "3h5m", "2d4h", "300d".
std::string age_text(const std::string& rfc3339_timestamp);

// True when an Accept header asks for a Table (any listed alternative).
bool wants_table(const std::string& accept_header);

}  // namespace hotswap::devcluster
