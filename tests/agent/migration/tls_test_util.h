// TLS material for tests, made at test time (nothing in the tree, nothing that expires): a
// deployment's, as the operator makes it (a CA of its own and one certificate it signed), or
// deliberately wrong material.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "agent/migration/tls_link.h"
#include "common/x509.h"

namespace hotswap::migration::testing {

// A CA and one leaf certificate it signed, valid for a day; an empty material on failure (the
// test then fails on it).
inline TlsMaterial deployment_material(const std::string& name, std::chrono::seconds not_before = std::chrono::hours(-1),
                                       std::chrono::seconds valid_for = std::chrono::hours(24)) {
  x509::CertificateRequest ca_request;
  ca_request.common_name = name + " CA";
  ca_request.is_ca = true;
  auto ca = x509::make_certificate(ca_request);
  EXPECT_TRUE(ca.ok()) << ca.status().to_string();
  if (!ca.ok()) return {};
  x509::CertificateRequest leaf_request;
  leaf_request.common_name = name;
  leaf_request.not_before = not_before;
  leaf_request.valid_for = valid_for;
  auto leaf = x509::make_certificate(leaf_request, &*ca);
  EXPECT_TRUE(leaf.ok()) << leaf.status().to_string();
  if (!leaf.ok()) return {};
  return TlsMaterial{ca->cert_pem, leaf->cert_pem, leaf->key_pem};
}

inline std::shared_ptr<const TlsContext> deployment_tls(const std::string& name) {
  auto context = TlsContext::create(deployment_material(name));
  EXPECT_TRUE(context.ok()) << context.status().to_string();
  return context.ok() ? *context : nullptr;
}

}  // namespace hotswap::migration::testing
