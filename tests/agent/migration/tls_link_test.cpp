// TLS on the migration data channel (tls_link.h): what goes over the wire is not the snapshot's
// bytes; only a peer holding the deployment's material gets through, either way round; a peer
// that speaks plaintext, no certificate, or another deployment's is refused with a message that
// says so; and material that does not fit together is refused before any connection.
// (The transfer itself over TLS, corruption, resends and aborts included, is TransportTest/Tls.)
#include <gtest/gtest.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <future>
#include <thread>

#include "agent/migration/tcp_transport.h"
#include "tests/agent/migration/tls_test_util.h"
#include "tests/agent/migration/transport_test_util.h"

namespace hotswap::migration {
namespace {

using namespace std::chrono_literals;
using testing::contains;

// A TCP relay between a source and a target that records what the source sends: what anyone on
// the network path sees. Serves one connection; bounded by its deadline.
class RecordingRelay {
 public:
  explicit RecordingRelay(uint16_t target_port) {
    auto listener = listen_tcp_socket("127.0.0.1", 0);
    EXPECT_TRUE(listener.ok()) << listener.status().to_string();
    if (!listener.ok()) return;
    auto port = tcp_local_port(listener->get());
    EXPECT_TRUE(port.ok()) << port.status().to_string();
    port_ = port.ok() ? *port : 0;
    thread_ = std::thread([this, target_port, l = std::move(*listener)]() mutable { run(std::move(l), target_port); });
  }
  ~RecordingRelay() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return port_; }
  // What the source sent, once the relay ended (call after the transfer).
  std::string recorded() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return recorded_;
  }

 private:
  void run(UniqueFd listener, uint16_t target_port) {
    const Deadline deadline = deadline_after(30s);
    std::string peer;
    auto source = accept_tcp_socket(listener.get(), deadline, &peer);
    if (!source.ok()) return;
    auto target = connect_tcp_socket("127.0.0.1", target_port, deadline);
    if (!target.ok()) return;
    int ends[2] = {source->get(), target->get()};
    bool open[2] = {true, true};
    std::vector<uint8_t> buf(1 << 16);
    while ((open[0] || open[1]) && Clock::now() < deadline && !stop_) {
      pollfd fds[2] = {{open[0] ? ends[0] : -1, POLLIN, 0}, {open[1] ? ends[1] : -1, POLLIN, 0}};
      if (::poll(fds, 2, 20) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t r = ::recv(ends[i], buf.data(), buf.size(), MSG_DONTWAIT);
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN) continue;
          open[i] = false;
          ::shutdown(ends[1 - i], SHUT_WR);
          continue;
        }
        if (i == 0) recorded_.append(reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(r));
        if (!send_all(ends[1 - i], buf.data(), static_cast<size_t>(r), deadline, -1, "relay").ok()) return;
      }
    }
  }

  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::string recorded_;
  std::thread thread_;
};

// The stream through a relay, over TLS or not; returns what the relay saw.
std::string transfer_through_relay(const testing::BigStream& stream, const TlsContext* tls) {
  auto listener = TcpListener::listen("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok());
  if (!listener.ok()) return {};
  RecordingRelay relay(listener->port());
  auto connecting = std::async(std::launch::async, [&] { return tcp_connect("127.0.0.1", relay.port(), {}, 10s, tls); });
  auto receiver = listener->accept(10s, {}, tls);
  auto sender = connecting.get();
  EXPECT_TRUE(receiver.ok()) << receiver.status().to_string();
  EXPECT_TRUE(sender.ok()) << sender.status().to_string();
  if (!receiver.ok() || !sender.ok()) return {};
  testing::Received got;
  std::jthread target([&] { got = testing::receive_all(**receiver); });
  EXPECT_TRUE(testing::send_stream(**sender, stream).ok());
  EXPECT_TRUE((*sender)->flush(10s).ok());
  target.join();
  EXPECT_TRUE(got.status.ok()) << got.status.to_string();
  testing::expect_same_chunks(got.chunks, testing::decode_reference(stream.bytes()));
  sender->reset();
  return relay.recorded();
}

TEST(TlsLink, TheWireCarriesNeitherTheFramingNorTheKvBytes) {
  const testing::BigStream stream = testing::make_big_stream(1, 32);
  // 64 bytes of one KV block: any copy of the cache on the wire would show it.
  const std::string kv_sample(reinterpret_cast<const char*>(stream.pool.data()) + 4096, 64);
  auto tls = testing::deployment_tls("wire");
  ASSERT_TRUE(tls);

  const std::string plain = transfer_through_relay(stream, nullptr);
  ASSERT_GT(plain.size(), stream.pool.size());
  EXPECT_NE(plain.find("HSWP"), std::string::npos) << "the control: plain tcp shows the chunk headers";
  EXPECT_NE(plain.find(kv_sample), std::string::npos) << "the control: plain tcp shows the KV bytes";

  const std::string sealed = transfer_through_relay(stream, tls.get());
  ASSERT_GT(sealed.size(), stream.pool.size());
  EXPECT_EQ(sealed.find("HSWP"), std::string::npos);
  EXPECT_EQ(sealed.find(kv_sample), std::string::npos);
  EXPECT_EQ(sealed.find(stream.request_id(0)), std::string::npos);
}

// Both ends' handshakes; the first is the source's (client) result, the second the target's.
struct Handshakes {
  Status source, target;
};

Handshakes connect_pair(const TlsContext* source_tls, const TlsContext* target_tls) {
  auto listener = TcpListener::listen("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok());
  if (!listener.ok()) return {};
  // The source connects and sends a small stream at once, as an agent does (a plaintext source
  // "connects" at once: its failure shows when it sends).
  auto source = std::async(std::launch::async, [&]() -> Status {
    HOTSWAP_ASSIGN_OR_RETURN(auto sender, tcp_connect("127.0.0.1", listener->port(), {}, 5s, source_tls));
    const testing::BigStream small = testing::make_big_stream(1, 2);
    HOTSWAP_RETURN_IF_ERROR(testing::send_stream(*sender, small, 2s));
    return sender->flush(2s);
  });
  auto receiver = listener->accept(5s, {}, target_tls);
  Status target = receiver.status();
  receiver = unavailable("closed");  // the target's end goes: a source waiting on it fails now
  return Handshakes{source.get(), target};
}

TEST(TlsLink, ASourceRefusesATargetWhoseCertificateItsCaDidNotSign) {
  auto mine = testing::deployment_tls("deployment-a");
  auto other = testing::deployment_tls("deployment-b");
  ASSERT_TRUE(mine && other);
  const Handshakes h = connect_pair(mine.get(), other.get());
  EXPECT_EQ(h.source.code(), StatusCode::kUnavailable) << h.source.to_string();
  EXPECT_TRUE(contains(h.source.message(), "TLS handshake with 127.0.0.1:")) << h.source.message();
  EXPECT_TRUE(contains(h.source.message(), "certificate verify failed")) << h.source.message();
  EXPECT_TRUE(contains(h.source.message(), "unable to get local issuer certificate")) << h.source.message();
  EXPECT_FALSE(h.target.ok());
}

TEST(TlsLink, APlaintextSourceIsRefusedAndToldTheTargetSpeaksTls) {
  auto tls = testing::deployment_tls("deployment-a");
  ASSERT_TRUE(tls);
  const Handshakes h = connect_pair(nullptr, tls.get());
  EXPECT_EQ(h.target.code(), StatusCode::kUnavailable) << h.target.to_string();
  EXPECT_TRUE(contains(h.target.message(), "TLS handshake with 127.0.0.1:")) << h.target.message();
  EXPECT_TRUE(contains(h.target.message(), "does not speak TLS")) << h.target.message();
  EXPECT_FALSE(h.source.ok());
}

TEST(TlsLink, ATlsSourceToAPlaintextTargetFailsItsHandshake) {
  auto tls = testing::deployment_tls("deployment-a");
  ASSERT_TRUE(tls);
  const Handshakes h = connect_pair(tls.get(), nullptr);
  EXPECT_EQ(h.source.code(), StatusCode::kUnavailable) << h.source.to_string();
  EXPECT_TRUE(contains(h.source.message(), "TLS handshake with 127.0.0.1:")) << h.source.message();
}

// A client made with OpenSSL directly, trusting the target's CA, presenting `cert_pem` (none
// when empty): what a stranger on the network can try. Returns the target's accept() status
// and whether the stranger could read any byte from the target.
struct StrangerResult {
  Status target;
  bool handshake_done = false;
  bool read_anything = false;
};

StrangerResult stranger_connects(const TlsMaterial& target_material, const std::string& cert_pem,
                                 const std::string& key_pem) {
  StrangerResult out;
  auto target_tls = TlsContext::create(target_material);
  EXPECT_TRUE(target_tls.ok()) << target_tls.status().to_string();
  if (!target_tls.ok()) return out;
  auto listener = TcpListener::listen("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok());
  if (!listener.ok()) return out;
  std::jthread stranger([&] {
    auto sock = connect_tcp_socket("127.0.0.1", listener->port(), deadline_after(5s));
    if (!sock.ok()) return;
    const int fl = ::fcntl(sock->get(), F_GETFL);
    ::fcntl(sock->get(), F_SETFL, fl & ~O_NONBLOCK);
    timeval tv{2, 0};
    ::setsockopt(sock->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    BIO* ca_bio = BIO_new_mem_buf(target_material.ca_pem.data(), static_cast<int>(target_material.ca_pem.size()));
    X509* ca = PEM_read_bio_X509(ca_bio, nullptr, nullptr, nullptr);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!cert_pem.empty()) {
      BIO* cb = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
      BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
      X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
      EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
      SSL_CTX_use_certificate(ctx, cert);
      SSL_CTX_use_PrivateKey(ctx, key);
      X509_free(cert);
      EVP_PKEY_free(key);
      BIO_free(cb);
      BIO_free(kb);
    }
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, sock->get());
    out.handshake_done = SSL_connect(ssl) == 1;
    char byte;
    out.read_anything = out.handshake_done && SSL_read(ssl, &byte, 1) > 0;
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    X509_free(ca);
    BIO_free(ca_bio);
    ERR_clear_error();
  });
  out.target = listener->accept(5s, {}, target_tls->get()).status();
  stranger.join();
  return out;
}

TEST(TlsLink, AClientWithoutACertificateIsRefusedByTheTarget) {
  const TlsMaterial target = testing::deployment_material("deployment-a");
  const StrangerResult r = stranger_connects(target, "", "");
  EXPECT_EQ(r.target.code(), StatusCode::kUnavailable) << r.target.to_string();
  EXPECT_TRUE(contains(r.target.message(), "peer did not return a certificate")) << r.target.message();
  EXPECT_FALSE(r.read_anything);
}

TEST(TlsLink, AClientWithAnotherDeploymentsCertificateIsRefusedByTheTarget) {
  const TlsMaterial target = testing::deployment_material("deployment-a");
  const TlsMaterial other = testing::deployment_material("deployment-b");
  const StrangerResult r = stranger_connects(target, other.cert_pem, other.key_pem);
  EXPECT_EQ(r.target.code(), StatusCode::kUnavailable) << r.target.to_string();
  EXPECT_TRUE(contains(r.target.message(), "certificate verify failed")) << r.target.message();
  EXPECT_FALSE(r.read_anything);
}

TEST(TlsLink, AClientWithTheDeploymentsCertificateGetsThrough) {
  // The control for the two above: the same stranger code with the right material is let in.
  const TlsMaterial target = testing::deployment_material("deployment-a");
  const StrangerResult r = stranger_connects(target, target.cert_pem, target.key_pem);
  EXPECT_TRUE(r.target.ok()) << r.target.to_string();
  EXPECT_TRUE(r.handshake_done);
}

TEST(TlsContext, RefusesMaterialThatDoesNotFitTogether) {
  const TlsMaterial a = testing::deployment_material("deployment-a");
  const TlsMaterial b = testing::deployment_material("deployment-b");
  ASSERT_TRUE(TlsContext::create(a).ok());
  struct Case {
    const char* what;
    TlsMaterial material;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"no CA", {"", a.cert_pem, a.key_pem}, "CA holds no PEM certificate"},
      {"garbage certificate", {a.ca_pem, "-----BEGIN CERTIFICATE-----\nnot base64\n", a.key_pem}, "not a PEM X.509"},
      {"garbage key", {a.ca_pem, a.cert_pem, "key"}, "not a PEM private key"},
      {"another certificate's key", {a.ca_pem, a.cert_pem, b.key_pem}, "does not belong to its certificate"},
      {"a certificate of another CA", {a.ca_pem, b.cert_pem, b.key_pem}, "does not verify against the CA"},
  };
  for (const Case& c : cases) {
    auto context = TlsContext::create(c.material);
    ASSERT_FALSE(context.ok()) << c.what;
    EXPECT_EQ(context.status().code(), StatusCode::kInvalidArgument) << c.what;
    EXPECT_TRUE(contains(context.status().message(), c.message)) << c.what << ": " << context.status().message();
  }
}

TEST(TlsContext, RefusesAnExpiredOrNotYetValidCertificate) {
  const TlsMaterial expired = testing::deployment_material("old", -std::chrono::hours(48), std::chrono::hours(24));
  auto e = TlsContext::create(expired);
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(contains(e.status().message(), "certificate has expired")) << e.status().message();
  const TlsMaterial future = testing::deployment_material("new", std::chrono::hours(48), std::chrono::hours(24));
  auto f = TlsContext::create(future);
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(contains(f.status().message(), "certificate is not yet valid")) << f.status().message();
}

TEST(TlsMaterialFiles, AMissingFileIsNamed) {
  auto m = read_tls_material("/nonexistent/ca.crt", "/nonexistent/tls.crt", "/nonexistent/tls.key");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(contains(m.status().message(), "CA file '/nonexistent/ca.crt' cannot be read")) << m.status().message();
}

}  // namespace
}  // namespace hotswap::migration
