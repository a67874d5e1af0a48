#include "agent/migration/tcp_transport.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "agent/migration/chunk_stream.h"

namespace hotswap::migration {
namespace {

// One end of a TCP connection. interrupt() wakes the pipe (tcp_socket.h) that every poll() here
// watches, which wakes the waits in progress and fails every later one.
class TcpLink final : public ByteLink {
 public:
  TcpLink(UniqueFd socket, WakePipe wake, std::string peer)
      : socket_(std::move(socket)), wake_(std::move(wake)), peer_(std::move(peer)) {}

  Status send(const uint8_t* data, size_t n, Deadline deadline) override {
    if (interrupted_.load()) return closed_locally();
    return send_all(socket_.get(), data, n, deadline, wake_.read.get(), peer_);
  }

  StatusOr<LinkRead> receive(uint8_t* data, size_t capacity, Deadline deadline) override {
    if (interrupted_.load()) return closed_locally();
    return receive_some(socket_.get(), data, capacity, deadline, wake_.read.get(), peer_);
  }

  void interrupt() override {
    if (!interrupted_.exchange(true)) wake_.wake();
  }

  void shutdown() override { (void)::shutdown(socket_.get(), SHUT_RDWR); }

  std::string peer() const override { return peer_; }

 private:
  Status closed_locally() const { return unavailable("the connection to " + peer_ + " was closed locally"); }

  UniqueFd socket_;
  WakePipe wake_;
  const std::string peer_;
  std::atomic<bool> interrupted_{false};
};

}  // namespace

StatusOr<std::unique_ptr<ByteLink>> make_tcp_link(UniqueFd socket, std::string peer) {
  HOTSWAP_ASSIGN_OR_RETURN(WakePipe wake, make_wake_pipe(peer));
  return std::unique_ptr<ByteLink>(std::make_unique<TcpLink>(std::move(socket), std::move(wake), std::move(peer)));
}

StatusOr<TcpListener> TcpListener::listen(const std::string& host, uint16_t port) {
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd fd, listen_tcp_socket(host, port));
  HOTSWAP_ASSIGN_OR_RETURN(uint16_t bound, tcp_local_port(fd.get()));
  return TcpListener(std::move(fd), bound);
}

StatusOr<std::unique_ptr<ChunkReceiver>> TcpListener::accept(std::chrono::milliseconds timeout,
                                                             ReceiverOptions options, const TlsContext* tls) {
  const Deadline deadline = deadline_after(timeout);
  std::string peer;
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd socket, accept_tcp_socket(fd_.get(), deadline, &peer));
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<ByteLink> link,
                           tls != nullptr ? tls_handshake(std::move(socket), peer, *tls, TlsRole::kServer, deadline)
                                          : make_tcp_link(std::move(socket), peer));
  return make_stream_receiver(std::move(link), options);
}

StatusOr<std::unique_ptr<ChunkSender>> tcp_connect(const std::string& host, uint16_t port, SenderOptions options,
                                                   std::chrono::milliseconds timeout, const TlsContext* tls) {
  const Deadline deadline = deadline_after(timeout);
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd socket, connect_tcp_socket(host, port, deadline));
  std::string peer = host + ":" + std::to_string(port);
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<ByteLink> link,
                           tls != nullptr ? tls_handshake(std::move(socket), std::move(peer), *tls, TlsRole::kClient, deadline)
                                          : make_tcp_link(std::move(socket), std::move(peer)));
  return make_stream_sender(std::move(link), options);
}

}  // namespace hotswap::migration
