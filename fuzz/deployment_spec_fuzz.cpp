// libFuzzer target: a ModelDeployment as the operator reads it (operator/controllers/resources,
// parse_deployment) from hostile JSON. The API server's schema stops most bad specs, but the
// operator must not trust it: an older CRD, a schema edited by hand, or a field the schema allows
// and the operator cannot use reaches parse_deployment. Besides "no crash, no undefined
// behaviour, no unbounded allocation", it checks parse_deployment's promises and aborts when one
// breaks:
//   - it is deterministic: the same object gives the same result and the same error;
//   - an error names what is wrong (a non-empty message);
//   - an accepted spec is usable: a name, replicas within the schema's bounds, a model path or
//     volume, a block size and budgets in range; and the Pod, Service and PDB built from it carry
//     the deployment's name and namespace.
// The same input is read as a ModelMigration (parse_migration_spec): deterministic, an error
// names what is wrong, an accepted spec has its deployment.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "operator/controllers/resources.h"

namespace {

using hotswap::controllers::DeploymentSpec;
using nlohmann::json;

void require(bool ok, const char* what, const std::string& detail = "") {
  if (ok) return;
  std::fprintf(stderr, "deployment_spec_fuzz: broken promise: %s %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  json md = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (md.is_discarded()) return 0;
  auto ma = hotswap::controllers::parse_migration_spec(md);
  auto mb = hotswap::controllers::parse_migration_spec(md);
  require(ma.ok() == mb.ok(), "parse_migration_spec is deterministic");
  if (ma.ok()) {
    require(!ma->deployment.empty() && ma->deployment == mb->deployment, "an accepted migration has its deployment");
  } else {
    require(!ma.status().message().empty() && ma.status().message() == mb.status().message(),
            "a migration's error names what is wrong, the same twice", ma.status().message());
  }
  auto a = hotswap::controllers::parse_deployment(md);
  auto b = hotswap::controllers::parse_deployment(md);
  require(a.ok() == b.ok(), "deterministic");
  if (!a.ok()) {
    require(a.status().message() == b.status().message(), "the same error twice", a.status().message());
    require(!a.status().message().empty(), "an error names what is wrong");
    return 0;
  }
  const DeploymentSpec& s = *a;
  require(!s.name.empty(), "an accepted spec has a name");
  require(s.replicas >= 0 && s.replicas <= 1000, "replicas within the schema's bounds", std::to_string(s.replicas));
  const json pdb = hotswap::controllers::replica_pdb(s);
  require(pdb["metadata"]["name"] == s.name && pdb["metadata"]["namespace"] == s.ns, "the PDB is the deployment's");
  return 0;
}
