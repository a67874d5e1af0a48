#include "agent/migration/tls_link.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <fstream>
#include <mutex>
#include <sstream>

#include "common/x509.h"

namespace hotswap::migration {
namespace {

// One SSL_write takes at most this much, so the mutex is given up between records in flight.
constexpr size_t kMaxWriteBytes = 256u << 10;
// A send that OpenSSL says must first read (a TLS 1.3 key update) polls for input this long at a
// time, since the receiving thread may be the one that reads it.
constexpr std::chrono::milliseconds kWantReadSlice{10};

// OpenSSL's queued errors (this thread's), oldest first, and clears them.
std::string openssl_errors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text.empty() ? "no detail from OpenSSL" : text;
}

// A socket BIO that sends with MSG_NOSIGNAL: OpenSSL's own writes with write(), which raises
// SIGPIPE when the peer has gone, and a test or tool that has not ignored SIGPIPE would die of it.
int bio_fd(BIO* bio) {
  return static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
}

int bio_write(BIO* bio, const char* data, size_t n, size_t* written) {
  BIO_clear_retry_flags(bio);
  const ssize_t w = ::send(bio_fd(bio), data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w >= 0) {
    *written = static_cast<size_t>(w);
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(bio);
  return 0;
}

int bio_read(BIO* bio, char* data, size_t n, size_t* got) {
  BIO_clear_retry_flags(bio);
  const ssize_t r = ::recv(bio_fd(bio), data, n, MSG_DONTWAIT);
  if (r > 0) {
    *got = static_cast<size_t>(r);
    return 1;
  }
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(bio);
  if (r == 0) errno = 0;  // the peer's end: OpenSSL reads it as EOF, not as an errno
  return 0;
}

long bio_ctrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* socket_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "hotswap socket");
    BIO_meth_set_write_ex(m, bio_write);
    BIO_meth_set_read_ex(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

std::string read_file(const std::string& path, const char* what, Status* status) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *status = invalid_argument(std::string(what) + " '" + path + "' cannot be read");
    return {};
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// What went wrong in an SSL call that returned `result`, for a message; also drains the queue.
std::string describe_failure(SSL* ssl, int result) {
  const int err = SSL_get_error(ssl, result);
  const long verify = SSL_get_verify_result(ssl);
  std::string text;
  if (err == SSL_ERROR_SYSCALL) {
    const int saved = errno;
    text = ERR_peek_error() != 0 ? openssl_errors()
                                 : saved != 0 ? std::string("socket: ") + errno_text(saved) : "the peer closed the connection";
  } else if (err == SSL_ERROR_ZERO_RETURN) {
    text = "the peer closed the connection";
  } else {
    text = openssl_errors();
  }
  if (verify != X509_V_OK) text += " (peer certificate: " + std::string(X509_verify_cert_error_string(verify)) + ")";
  return text;
}

class TlsLink final : public ByteLink {
 public:
  TlsLink(UniqueFd socket, SSL* ssl, WakePipe wake, std::string peer)
      : socket_(std::move(socket)), ssl_(ssl), wake_(std::move(wake)), peer_(std::move(peer)) {}
  ~TlsLink() override { SSL_free(ssl_); }

  Status send(const uint8_t* data, size_t n, Deadline deadline) override {
    while (n > 0) {
      if (interrupted_.load()) return closed_locally();
      const size_t take = std::min(n, kMaxWriteBytes);
      size_t written = 0;
      int err = SSL_ERROR_NONE;
      std::string failure;
      {
        std::lock_guard<std::mutex> lk(mu_);
        const int r = SSL_write_ex(ssl_, data, take, &written);
        if (r != 1) {
          err = SSL_get_error(ssl_, r);
          if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) failure = describe_failure(ssl_, r);
        }
      }
      if (err == SSL_ERROR_NONE) {
        data += written;
        n -= written;
        continue;
      }
      if (!failure.empty()) return unavailable("TLS connection to " + peer_ + ": " + failure);
      bool ready = false;
      if (err == SSL_ERROR_WANT_WRITE) {
        HOTSWAP_RETURN_IF_ERROR(wait_for_fd(socket_.get(), POLLOUT, deadline, wake_.read.get(), peer_, &ready));
        if (!ready) return unavailable("timed out sending to " + peer_ + ": it has stopped taking bytes");
      } else {
        const Deadline slice = std::min(deadline, deadline_after(kWantReadSlice));
        HOTSWAP_RETURN_IF_ERROR(wait_for_fd(socket_.get(), POLLIN, slice, wake_.read.get(), peer_, &ready));
        if (!ready && Clock::now() >= deadline)
          return unavailable("timed out sending to " + peer_ + ": the TLS session waits on the peer");
      }
    }
    return Status::ok_status();
  }

  StatusOr<LinkRead> receive(uint8_t* data, size_t capacity, Deadline deadline) override {
    for (;;) {
      if (interrupted_.load()) return closed_locally();
      size_t got = 0;
      int err = SSL_ERROR_NONE;
      std::string failure;
      {
        std::lock_guard<std::mutex> lk(mu_);
        const int r = SSL_read_ex(ssl_, data, capacity, &got);
        if (r != 1) {
          err = SSL_get_error(ssl_, r);
          if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_ZERO_RETURN)
            failure = describe_failure(ssl_, r);
        }
      }
      if (err == SSL_ERROR_NONE) return LinkRead{got, false};
      if (err == SSL_ERROR_ZERO_RETURN) return LinkRead{0, true};
      if (!failure.empty()) return unavailable("TLS connection to " + peer_ + ": " + failure);
      bool ready = false;
      const short events = err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
      HOTSWAP_RETURN_IF_ERROR(wait_for_fd(socket_.get(), events, deadline, wake_.read.get(), peer_, &ready));
      if (!ready) return LinkRead{0, false};
    }
  }

  void interrupt() override {
    if (!interrupted_.exchange(true)) wake_.wake();
  }

  void shutdown() override {
    {
      // close_notify, best effort: the peer then reads a clean end of the stream.
      std::lock_guard<std::mutex> lk(mu_);
      (void)SSL_shutdown(ssl_);
      ERR_clear_error();
    }
    (void)::shutdown(socket_.get(), SHUT_RDWR);
  }

  std::string peer() const override { return peer_; }

 private:
  Status closed_locally() const { return unavailable("the connection to " + peer_ + " was closed locally"); }

  UniqueFd socket_;  // declared before ssl_: SSL_free (in the destructor) runs while it is open
  SSL* ssl_;
  WakePipe wake_;
  const std::string peer_;
  std::mutex mu_;  // every SSL call on ssl_
  std::atomic<bool> interrupted_{false};
};

}  // namespace

StatusOr<TlsMaterial> read_tls_material(const std::string& ca_file, const std::string& cert_file,
                                        const std::string& key_file) {
  Status st;
  TlsMaterial m;
  m.ca_pem = read_file(ca_file, "the migration TLS CA file", &st);
  if (st.ok()) m.cert_pem = read_file(cert_file, "the migration TLS certificate file", &st);
  if (st.ok()) m.key_pem = read_file(key_file, "the migration TLS key file", &st);
  if (!st.ok()) return st;
  return m;
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

StatusOr<std::shared_ptr<const TlsContext>> TlsContext::create(const TlsMaterial& material) {
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_method());
  if (raw == nullptr) return internal_error("SSL_CTX_new: " + openssl_errors());
  std::shared_ptr<const TlsContext> context(new TlsContext(raw));
  SSL_CTX* ctx = raw;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  // AES-128-GCM first: the fastest with AES-NI, and as strong as the data needs.
  SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  // No session tickets (one connection per migration, nothing to resume), partial writes so a
  // send can make progress record by record, and an end without close_notify reads as the end:
  // the chunk stream frames its own data, so a truncated stream is caught there.
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // No chain built from the trust store: a peer trusts the CA already, and sending it is waste.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);

  auto bio = [](const std::string& text) { return BIO_new_mem_buf(text.data(), static_cast<int>(text.size())); };
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  {
    BIO* in = bio(material.ca_pem);
    int added = 0;
    while (X509* ca = PEM_read_bio_X509(in, nullptr, nullptr, nullptr)) {
      added += X509_STORE_add_cert(store, ca) == 1;
      X509_free(ca);
    }
    BIO_free(in);
    ERR_clear_error();  // the end of the PEM text reads as an error
    if (added == 0) return invalid_argument("the migration TLS CA holds no PEM certificate");
  }
  {
    BIO* in = bio(material.cert_pem);
    X509* cert = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
    const bool used = cert != nullptr && SSL_CTX_use_certificate(ctx, cert) == 1;
    X509_free(cert);
    // Intermediates after the leaf, sent with it.
    while (used) {
      X509* extra = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
      if (extra == nullptr) break;
      if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) X509_free(extra);
    }
    BIO_free(in);
    ERR_clear_error();
    if (!used) return invalid_argument("the migration TLS certificate is not a PEM X.509 certificate");
  }
  {
    BIO* in = bio(material.key_pem);
    EVP_PKEY* key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
    BIO_free(in);
    if (key == nullptr) return invalid_argument("the migration TLS key is not a PEM private key: " + openssl_errors());
    const bool used = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    ERR_clear_error();
    if (!used) return invalid_argument("the migration TLS key does not belong to its certificate");
  }
  // The certificate this agent presents must itself pass the peers' check.
  if (Status chains = x509::verify_certificate(material.cert_pem, material.ca_pem); !chains.ok())
    return chains.with_context("the migration TLS certificate");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return context;
}

StatusOr<std::unique_ptr<ByteLink>> tls_handshake(UniqueFd socket, std::string peer, const TlsContext& context,
                                                  TlsRole role, Deadline deadline) {
  HOTSWAP_ASSIGN_OR_RETURN(WakePipe wake, make_wake_pipe(peer));
  ERR_clear_error();
  SSL* ssl = SSL_new(context.native());
  BIO* bio = ssl != nullptr ? BIO_new(socket_method()) : nullptr;
  if (bio == nullptr) {
    SSL_free(ssl);
    return internal_error("SSL_new for " + peer + ": " + openssl_errors());
  }
  const int fd = socket.get();
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd)));
  SSL_set_bio(ssl, bio, bio);
  auto link = std::make_unique<TlsLink>(std::move(socket), ssl, std::move(wake), peer);
  if (role == TlsRole::kServer) {
    SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
  }
  // Before the link is shared with any other thread: no lock needed.
  for (;;) {
    const int r = SSL_do_handshake(ssl);
    if (r == 1) break;
    const int err = SSL_get_error(ssl, r);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      std::string why = describe_failure(ssl, r);
      if (why.find("wrong version number") != std::string::npos || why.find("packet length too long") != std::string::npos ||
          why.find("http request") != std::string::npos)
        why += " (the peer does not speak TLS: a plaintext tcp:// migration to a tls:// endpoint?)";
      return unavailable("TLS handshake with " + peer + " failed: " + why);
    }
    bool ready = false;
    HOTSWAP_RETURN_IF_ERROR(
        wait_for_fd(fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, -1, peer, &ready));
    if (!ready) return unavailable("TLS handshake with " + peer + " timed out");
  }
  return std::unique_ptr<ByteLink>(std::move(link));
}

}  // namespace hotswap::migration
