// The shm transport: the chunk stream protocol (transport.h) over shared memory, for a source
// and target agent on the same node (CPU backend). The bytes move through two ring buffers, one
// per direction, in one memfd that the source creates and passes to the target with SCM_RIGHTS
// over a Unix domain stream socket; that socket then only carries one-byte wakeups and tells
// each side when the other went away (closed, or its process died: the kernel closes its end).
// Framing, acknowledgement, go-back-N resend, pacing, replies and aborts are chunk_stream.h's,
// the same as tcp's; this file only says how bytes move. Each byte is copied twice: into the
// ring by send(), out of it by receive().
//
// Addressing: a filesystem socket path (not the abstract namespace). A path is reachable only by
// processes that see the same filesystem and may write to the socket, so file permissions guard
// it (ShmSocketDir makes a directory only this user can enter) and a dead agent's socket is a
// file that can be found and removed; an abstract name has no permissions and is bound to a
// network namespace. The path must fit sockaddr_un (at most kMaxShmSocketPathBytes bytes);
// a longer one is refused with kInvalidArgument. In URLs: shm:///absolute/path.
//
// The shared memory, in the host's byte order (both ends run on one machine), made by the source: a 4 KiB header (magic
// "HSSHMEM1", the ring size, and per ring: the bytes written so far (tail, by its writer), the bytes read so far (head,
// by its reader), "reader waiting" and "writer waiting" flags, and "closed" flags), then ring 0 (source → target) and
// ring 1 (target → source), ring_bytes each, a power of two. The memfd is sealed against shrinking and growing, so a
// peer cannot make the mapping fault. A side about to sleep sets its waiting flag, checks the ring again, and polls the
// socket; the other side, after moving the ring's head or tail, sends one byte ('D': data for you, 'S': space for you)
// when it finds the flag set. Head and tail from the peer are checked (never more than ring_bytes apart), so a peer
// that scribbles on the header fails the link instead of reading out of bounds; the chunks' CRC32C catches scribbled
// data.
//
// Handshake: right after connect(), the source sends 16 bytes, "HSSM", u16 version 1, u16 0,
// u64 ring_bytes, with the memfd attached; the target checks them, the memfd's size and seals,
// and maps it. The source does not wait for the target to accept: it may fill its ring first.
//
// Threads: as ByteLink's (byte_link.h). A link's send() and receive() may run on two threads at
// once; each owns one ring's local position. Both poll the one socket and hand each other the
// wakeup bytes they read through two eventfds of the link's own; interrupt() writes a third that
// every wait watches and nobody drains. ShmListener: one owner.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/migration/byte_link.h"
#include "agent/migration/tcp_socket.h"
#include "agent/migration/transport.h"
#include "agent/migration/unix_socket.h"

namespace hotswap::migration {

// Bytes each direction's ring holds (the source's sends wait when the target's ring is full).
inline constexpr size_t kShmRingBytes = 8u << 20;
inline constexpr size_t kMinShmRingBytes = 4u << 10;
inline constexpr size_t kMaxShmRingBytes = 1u << 30;
// A shm socket path is a Unix socket name (unix_socket.h): sun_path less its terminating NUL.
inline constexpr size_t kMaxShmSocketPathBytes = kMaxUnixSocketNameBytes;

// The target's listening Unix socket. Removes its socket file when destroyed. Threads: one owner.
class ShmListener {
 public:
  // Binds a Unix stream socket at `path` (unix_socket.h; an absolute path where no file exists
  // yet, in a directory that does: kNotFound without one).
  static StatusOr<ShmListener> listen(const std::string& path);

  ShmListener(ShmListener&& other) noexcept;
  ShmListener& operator=(ShmListener&& other) noexcept;
  ~ShmListener();

  const std::string& path() const { return path_; }
  // "shm://" + path: what a target hands a source.
  std::string endpoint() const { return "shm://" + path_; }
  // The listening socket, readable when a source is waiting (to poll it beside other listeners).
  int fd() const { return fd_.get(); }

  // The next source that connects, handshake done, as a receiver; kUnavailable when none came
  // within timeout, kDataLoss for a peer whose handshake is not a shm source's.
  StatusOr<std::unique_ptr<ChunkReceiver>> accept(std::chrono::milliseconds timeout, ReceiverOptions options = {});
  // The same, as the raw link (for tests of the link itself).
  StatusOr<std::unique_ptr<ByteLink>> accept_link(std::chrono::milliseconds timeout);

 private:
  ShmListener(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  UniqueFd fd_;
  std::string path_;  // empty once moved from: nothing to remove
};

// Connects to a target's ShmListener at `path`, creates the shared memory with rings of
// ring_bytes (a power of two within [kMinShmRingBytes, kMaxShmRingBytes]), and hands it over;
// as a sender. A missing socket file is kNotFound, one nobody listens on kUnavailable.
StatusOr<std::unique_ptr<ChunkSender>> shm_connect(const std::string& path, SenderOptions options,
                                                   std::chrono::milliseconds timeout,
                                                   size_t ring_bytes = kShmRingBytes);
// The same, as the raw link (for tests of the link itself).
StatusOr<std::unique_ptr<ByteLink>> shm_connect_link(const std::string& path, std::chrono::milliseconds timeout,
                                                     size_t ring_bytes = kShmRingBytes);

// "shm:///abs/path" → "/abs/path"; kInvalidArgument for another scheme or a relative path.
StatusOr<std::string> parse_shm_endpoint(const std::string& endpoint);

// A private directory for shm sockets: made under $TMPDIR (or /tmp) with mode 0700, so only
// this user's processes reach the sockets in it; removed, with the sockets left in it, when
// destroyed. Move-only.
class ShmSocketDir {
 public:
  static StatusOr<ShmSocketDir> create(const std::string& prefix = "hotswap-shm");

  ShmSocketDir(ShmSocketDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  ShmSocketDir& operator=(ShmSocketDir&& other) noexcept;
  ShmSocketDir(const ShmSocketDir&) = delete;
  ShmSocketDir& operator=(const ShmSocketDir&) = delete;
  ~ShmSocketDir();

  const std::string& path() const { return path_; }
  std::string socket_path(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit ShmSocketDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// This machine's identity for choosing shm: "<hostname>/<boot id>" (boot id from
// /proc/sys/kernel/random/boot_id, the same for every process of one running kernel); two agents
// with the same node id run on one machine and, sharing a hostname, usually in one container or
// host namespace. Empty when the boot id cannot be read: then nothing is known to be the same node.
// $HOTSWAP_NODE_ID, when set, is taken instead: the dev cluster's kubelet sets it to its simulated
// node's name, so agents on two simulated nodes of one machine migrate over the network (tls or
// tcp), as on a real cluster, and shm only within a node.
std::string local_node_id();

}  // namespace hotswap::migration
