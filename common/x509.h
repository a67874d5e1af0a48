// X.509 certificates made with OpenSSL, as PEM text: a deployment's own certificate authority and
// the certificate its agents present to each other on the migration data channel (the operator
// makes both, once per ModelDeployment), and the throwaway certificates of the tests.
//
// Keys are ECDSA P-256; certificates are X.509 v3 signed with SHA-256, with a random 64-bit
// serial. Threads: pure functions.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace hotswap::x509 {

struct CertificateRequest {
  std::string common_name;
  bool is_ca = false;                          // basicConstraints CA:TRUE and keyCertSign
  std::vector<std::string> subject_alt_names;  // as OpenSSL writes them: "IP:127.0.0.1", "DNS:x"
  // Valid from now + not_before (negative: earlier, so clocks a little behind accept it) for
  // valid_for.
  std::chrono::seconds not_before{-3600};
  std::chrono::seconds valid_for{std::chrono::hours(24)};
};

struct CertifiedKey {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8, unencrypted
};

// A certificate for a new key, signed by `issuer` (a CA's certificate and key), or self-signed
// when issuer is null. Leaf certificates (is_ca false) may serve and connect (extendedKeyUsage
// serverAuth, clientAuth). Errors: kInvalidArgument for an empty name, an issuer that does not
// parse or whose key is not its certificate's, or an alt name OpenSSL refuses; kInternal when
// OpenSSL fails.
StatusOr<CertifiedKey> make_certificate(const CertificateRequest& request, const CertifiedKey* issuer = nullptr);

// Whether cert_pem (a leaf, then any intermediates) chains to a certificate of ca_pem and is
// valid now. kInvalidArgument naming what does not parse, or OpenSSL's reason it does not verify.
Status verify_certificate(const std::string& cert_pem, const std::string& ca_pem);

}  // namespace hotswap::x509
