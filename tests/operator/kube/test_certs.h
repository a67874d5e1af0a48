// Self-signed certificates made at test time (common/x509.h; no files in the tree, nothing that
// expires): a CA:TRUE certificate for IP 127.0.0.1, valid for a day, to serve the fake API server
// over https and to trust it as the kubeconfig's CA.
//
// Threads: pure functions.
#pragma once

#include <string>

#include "common/x509.h"

namespace hotswap::kube::fake {

struct TestCert {
  std::string cert_pem;
  std::string key_pem;
};

// An empty TestCert on failure (the test then fails on it). Serials are random.
inline TestCert make_test_cert(const std::string& common_name) {
  x509::CertificateRequest request;
  request.common_name = common_name;
  request.is_ca = true;
  request.subject_alt_names = {"IP:127.0.0.1"};
  auto made = x509::make_certificate(request);
  if (!made.ok()) return {};
  return TestCert{made->cert_pem, made->key_pem};
}

}  // namespace hotswap::kube::fake
