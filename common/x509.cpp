#include "common/x509.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace hotswap::x509 {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;

// OpenSSL's most recent error, for a message.
std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail from OpenSSL";
  char text[256];
  ERR_error_string_n(e, text, sizeof text);
  return text;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

BioPtr memory_bio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

Status add_extension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (!ext) return invalid_argument(std::string(OBJ_nid2sn(nid)) + " '" + value + "': " + openssl_error());
  if (X509_add_ext(cert, ext.get(), -1) != 1) return internal_error("X509_add_ext: " + openssl_error());
  return Status::ok_status();
}

}  // namespace

StatusOr<CertifiedKey> make_certificate(const CertificateRequest& request, const CertifiedKey* issuer) {
  if (request.common_name.empty()) return invalid_argument("a certificate needs a common name");
  KeyPtr issuer_key;
  CertPtr issuer_cert;
  if (issuer != nullptr) {
    auto cert_bio = memory_bio(issuer->cert_pem);
    auto key_bio = memory_bio(issuer->key_pem);
    issuer_cert.reset(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    issuer_key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (!issuer_cert) return invalid_argument("the issuer's certificate is not PEM X.509: " + openssl_error());
    if (!issuer_key) return invalid_argument("the issuer's key is not a PEM private key: " + openssl_error());
    if (X509_check_private_key(issuer_cert.get(), issuer_key.get()) != 1)
      return invalid_argument("the issuer's key does not belong to its certificate");
  }
  KeyPtr key(EVP_EC_gen("P-256"));
  CertPtr cert(X509_new());
  if (!key || !cert) return internal_error("making a P-256 key: " + openssl_error());

  uint64_t serial = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1)
    return internal_error("RAND_bytes: " + openssl_error());
  serial >>= 1;  // positive
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(request.not_before.count()));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>((request.not_before + request.valid_for).count()));
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(request.common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer_cert ? X509_get_subject_name(issuer_cert.get()) : name);

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert ? issuer_cert.get() : cert.get(), cert.get(), nullptr, nullptr, 0);
  if (request.is_ca) {
    HOTSWAP_RETURN_IF_ERROR(add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE"));
    HOTSWAP_RETURN_IF_ERROR(
        add_extension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature,keyCertSign,cRLSign"));
  } else {
    HOTSWAP_RETURN_IF_ERROR(add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE"));
    HOTSWAP_RETURN_IF_ERROR(add_extension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature"));
    HOTSWAP_RETURN_IF_ERROR(add_extension(cert.get(), &ctx, NID_ext_key_usage, "serverAuth,clientAuth"));
  }
  HOTSWAP_RETURN_IF_ERROR(add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash"));
  if (issuer_cert) HOTSWAP_RETURN_IF_ERROR(add_extension(cert.get(), &ctx, NID_authority_key_identifier, "keyid"));
  if (!request.subject_alt_names.empty()) {
    std::string sans;
    for (const auto& s : request.subject_alt_names) sans += (sans.empty() ? "" : ",") + s;
    HOTSWAP_RETURN_IF_ERROR(add_extension(cert.get(), &ctx, NID_subject_alt_name, sans));
  }
  if (X509_sign(cert.get(), issuer_key ? issuer_key.get() : key.get(), EVP_sha256()) <= 0)
    return internal_error("signing the certificate: " + openssl_error());

  BioPtr cert_out(BIO_new(BIO_s_mem()));
  BioPtr key_out(BIO_new(BIO_s_mem()));
  if (!cert_out || !key_out || PEM_write_bio_X509(cert_out.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return internal_error("writing PEM: " + openssl_error());
  return CertifiedKey{bio_text(cert_out.get()), bio_text(key_out.get())};
}

Status verify_certificate(const std::string& cert_pem, const std::string& ca_pem) {
  auto cert_bio = memory_bio(cert_pem);
  CertPtr leaf(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!leaf) return invalid_argument("the certificate is not PEM X.509: " + openssl_error());
  std::unique_ptr<STACK_OF(X509), decltype([](STACK_OF(X509)* s) { sk_X509_pop_free(s, X509_free); })> chain(
      sk_X509_new_null());
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) sk_X509_push(chain.get(), extra);
  std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>> store(X509_STORE_new());
  auto ca_bio = memory_bio(ca_pem);
  int anchors = 0;
  while (X509* ca = PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr)) {
    anchors += X509_STORE_add_cert(store.get(), ca) == 1;
    X509_free(ca);
  }
  ERR_clear_error();  // the end of the PEM text reads as an error
  if (anchors == 0) return invalid_argument("the CA holds no PEM certificate");
  std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>> ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), chain.get()) != 1)
    return internal_error("X509_STORE_CTX_init: " + openssl_error());
  if (X509_verify_cert(ctx.get()) == 1) return Status::ok_status();
  const int why = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  return invalid_argument(std::string("the certificate does not verify against the CA: ") +
                          X509_verify_cert_error_string(why));
}

}  // namespace hotswap::x509
