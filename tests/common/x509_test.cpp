// Certificates made with common/x509.h: a CA and a leaf it signed chain together (and not to
// another CA, as verify_certificate says), names and alt names land where a peer reads them, and bad requests are refused
// with a message naming the fault.
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "common/x509.h"

namespace hotswap::x509 {
namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using Cert = std::unique_ptr<X509, X509Free>;

Cert parse(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  Cert x(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  return x;
}

CertificateRequest request(const std::string& name, bool ca = false) {
  CertificateRequest r;
  r.common_name = name;
  r.is_ca = ca;
  return r;
}

TEST(X509, ALeafChainsToTheCaThatSignedItOnly) {
  auto ca = make_certificate(request("ca", true));
  auto other = make_certificate(request("other", true));
  ASSERT_TRUE(ca.ok() && other.ok());
  CertificateRequest leaf_request = request("leaf");
  leaf_request.subject_alt_names = {"IP:10.0.0.7", "DNS:agent.ml.svc"};
  auto leaf = make_certificate(leaf_request, &*ca);
  ASSERT_TRUE(leaf.ok()) << leaf.status().to_string();
  Cert ca_cert = parse(ca->cert_pem), other_cert = parse(other->cert_pem), leaf_cert = parse(leaf->cert_pem);
  ASSERT_TRUE(ca_cert && other_cert && leaf_cert);
  EXPECT_TRUE(verify_certificate(leaf->cert_pem, ca->cert_pem).ok());
  const Status wrong = verify_certificate(leaf->cert_pem, other->cert_pem);
  EXPECT_EQ(wrong.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("unable to get local issuer certificate"), std::string::npos) << wrong.message();
  EXPECT_EQ(verify_certificate("junk", ca->cert_pem).code(), StatusCode::kInvalidArgument);
  EXPECT_NE(verify_certificate(leaf->cert_pem, "").message().find("CA holds no PEM certificate"), std::string::npos);
  EXPECT_EQ(X509_check_ca(ca_cert.get()), 1);
  EXPECT_EQ(X509_check_ca(leaf_cert.get()), 0);
  EXPECT_EQ(X509_check_ip_asc(leaf_cert.get(), "10.0.0.7", 0), 1);
  EXPECT_EQ(X509_check_host(leaf_cert.get(), "agent.ml.svc", 0, 0, nullptr), 1);
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(ca_cert.get()), X509_get0_serialNumber(other_cert.get())), 0);
}

TEST(X509, BadRequestsAreRefusedNamingTheFault) {
  EXPECT_EQ(make_certificate(request("")).status().code(), StatusCode::kInvalidArgument);
  CertifiedKey bad_issuer{"not a certificate", "not a key"};
  auto r = make_certificate(request("leaf"), &bad_issuer);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("issuer's certificate is not PEM"), std::string::npos) << r.status().message();
  auto a = make_certificate(request("a", true));
  auto b = make_certificate(request("b", true));
  ASSERT_TRUE(a.ok() && b.ok());
  CertifiedKey mixed{a->cert_pem, b->key_pem};
  r = make_certificate(request("leaf"), &mixed);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not belong to its certificate"), std::string::npos) << r.status().message();
  CertificateRequest bad_san = request("leaf");
  bad_san.subject_alt_names = {"IP:not-an-address"};
  r = make_certificate(bad_san);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("subjectAltName"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace hotswap::x509
