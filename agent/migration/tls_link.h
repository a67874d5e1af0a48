// TLS on the migration data channel: the tcp transport's bytes carry user prompts, generated
// text and KV cache, so between agents they go encrypted and both ends are authenticated (mutual
// TLS, OpenSSL). The endpoint is then tls://host:port instead of tcp://host:port.
//
// Identity: every agent of a ModelDeployment holds the same material, made by the operator per
// deployment (its Secret <name>-migration-tls): a CA of its own, and one certificate and key that
// CA signed. A peer is accepted when its certificate chains to that CA: only the deployment's
// own agents can send a target a snapshot, or receive one. Host names are not checked (agents
// connect to pod IPs, which change with every replica; the CA is the identity). TLS 1.3 only.
//
// A TlsLink is a ByteLink over a connected non-blocking socket. OpenSSL's SSL object is not safe
// for two threads at once, and a ByteLink sends and receives on two threads, so every SSL call
// runs under one mutex that is never held across a wait: a call that would block returns
// WANT_READ / WANT_WRITE, the mutex is released, and the thread polls the socket (and the wake
// pipe of interrupt()) before it tries again.
#pragma once

#include <memory>
#include <string>

#include "agent/migration/byte_link.h"
#include "agent/migration/tcp_socket.h"
#include "common/status.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace hotswap::migration {

// PEM text: the CA certificate(s) peers must chain to, this agent's certificate (with any
// intermediates after it) and its private key.
struct TlsMaterial {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
};

// The three files of a Kubernetes TLS Secret mounted as a directory: ca.crt, tls.crt, tls.key.
// Errors name the file that is missing or unreadable.
StatusOr<TlsMaterial> read_tls_material(const std::string& ca_file, const std::string& cert_file,
                                        const std::string& key_file);

// The OpenSSL context both roles use. Threads: immutable once made; shared by every link.
class TlsContext {
 public:
  // Checks the material: each part parses, the key is the certificate's, and the certificate
  // chains to the CA and is valid now. Errors (kInvalidArgument) say which part is wrong.
  static StatusOr<std::shared_ptr<const TlsContext>> create(const TlsMaterial& material);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* native() const { return ctx_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

enum class TlsRole { kClient, kServer };

// Runs the TLS handshake on a connected socket, until the deadline, and returns the link.
// Errors (kUnavailable) say what the peer did: no certificate, one this CA did not sign, an
// expired one, plaintext where TLS was expected, a closed connection, or a timeout.
StatusOr<std::unique_ptr<ByteLink>> tls_handshake(UniqueFd socket, std::string peer, const TlsContext& context,
                                                  TlsRole role, Deadline deadline);

}  // namespace hotswap::migration
