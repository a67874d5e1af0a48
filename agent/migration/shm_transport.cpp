#include "agent/migration/shm_transport.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "agent/migration/chunk_stream.h"
#include "agent/migration/little_endian.h"
#include "agent/migration/unix_socket.h"

namespace hotswap::migration {
namespace {

constexpr char kShmMagic[8] = {'H', 'S', 'S', 'H', 'M', 'E', 'M', '1'};
constexpr char kHelloMagic[4] = {'H', 'S', 'S', 'M'};
constexpr uint16_t kShmVersion = 1;
constexpr size_t kHelloBytes = 16;
constexpr size_t kHeaderBytes = 4096;
constexpr uint8_t kDataNote = 'D';   // "I wrote into the ring you read"
constexpr uint8_t kSpaceNote = 'S';  // "I read from the ring you write"
// A send publishes its bytes at least this often, so that the reader starts on a large send early.
constexpr size_t kPublishBytes = 1u << 20;

static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "the rings' counters are shared between processes: they must be lock-free");

// One ring's shared state. The counters count bytes since the start and never wrap (2^64).
struct RingState {
  alignas(64) std::atomic<uint64_t> tail{0};  // written so far, by the ring's writer
  alignas(64) std::atomic<uint64_t> head{0};  // read so far, by the ring's reader
  alignas(64) std::atomic<uint32_t> reader_waiting{0};
  std::atomic<uint32_t> writer_waiting{0};
  std::atomic<uint32_t> writer_closed{0};
  std::atomic<uint32_t> reader_closed{0};
};

struct ShmHeader {
  char magic[8] = {};
  uint64_t ring_bytes = 0;
  RingState rings[2];  // rings[e]: written by end e (0 the source, which connects; 1 the target)
};
static_assert(sizeof(ShmHeader) <= kHeaderBytes);

// The shm sockets (unix_socket.h): so named in messages; a file already at a target's path is
// refused, never removed (it is another listener's, or a dead agent's to look at); a missing file
// is kNotFound (no target there).
const UnixSocketStyle kShmSocketStyle{.noun = "shm socket", .replace_stale_file = false, .missing_is_not_found = true};

bool valid_ring_bytes(size_t n) {
  return n >= kMinShmRingBytes && n <= kMaxShmRingBytes && (n & (n - 1)) == 0;
}

// A Unix socket name that is a filesystem path: the header says why not the abstract namespace.
Status check_socket_path(const std::string& path) {
  if (is_abstract_unix_socket_name(path)) {
    return invalid_argument("shm socket path '" + path +
                            "' is an abstract socket name: the shm transport takes a filesystem path");
  }
  return check_unix_socket_name(path).with_context("shm socket path");
}

// The shared memory, mapped; unmapped when destroyed.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* addr, size_t bytes) : addr_(addr), bytes_(bytes) {}
  Mapping(Mapping&& other) noexcept : addr_(other.addr_), bytes_(other.bytes_) { other.addr_ = nullptr; }
  Mapping& operator=(Mapping&&) = delete;
  ~Mapping() {
    if (addr_ != nullptr) ::munmap(addr_, bytes_);
  }
  uint8_t* bytes() const { return static_cast<uint8_t*>(addr_); }

 private:
  void* addr_ = nullptr;
  size_t bytes_ = 0;
};

StatusOr<Mapping> map_shared(int fd, size_t bytes, const std::string& what) {
  void* addr = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED)
    return unavailable(what + ": mmap() of " + std::to_string(bytes) + " bytes: " + errno_text(errno));
  return Mapping(addr, bytes);
}

void signal_event(int fd) {
  const uint64_t one = 1;
  while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void drain_event(int fd) {
  uint64_t count = 0;
  while (::read(fd, &count, sizeof count) < 0 && errno == EINTR) {
  }
}

// One end of the shared-memory pipe (the header says how it works).
class ShmLink final : public ByteLink {
 public:
  ShmLink(UniqueFd socket, Mapping mapping, size_t ring_bytes, int end, UniqueFd data_event, UniqueFd space_event,
          UniqueFd wake, std::string peer)
      : socket_(std::move(socket)),
        mapping_(std::move(mapping)),
        ring_bytes_(ring_bytes),
        end_(end),
        data_event_(std::move(data_event)),
        space_event_(std::move(space_event)),
        wake_(std::move(wake)),
        peer_(std::move(peer)) {}

  ~ShmLink() override { shutdown(); }

  Status send(const uint8_t* data, size_t n, Deadline deadline) override {
    RingState& ring = header()->rings[end_];
    uint8_t* base = ring_data(end_);
    while (n > 0) {
      HOTSWAP_RETURN_IF_ERROR(check_local());
      if (ring.reader_closed.load(std::memory_order_acquire) != 0 || peer_gone_.load()) {
        return unavailable("connection to " + peer_ + ": the peer closed the connection");
      }
      const uint64_t head = ring.head.load(std::memory_order_acquire);
      const uint64_t used = send_pos_ - head;
      if (used > ring_bytes_) return corrupt_ring("read position " + std::to_string(head), send_pos_);
      if (used < ring_bytes_) {
        const size_t at = static_cast<size_t>(send_pos_ & (ring_bytes_ - 1));
        const size_t take = std::min({n, static_cast<size_t>(ring_bytes_ - used), ring_bytes_ - at, kPublishBytes});
        std::memcpy(base + at, data, take);
        send_pos_ += take;
        ring.tail.store(send_pos_, std::memory_order_seq_cst);
        data += take;
        n -= take;
        if (ring.reader_waiting.load(std::memory_order_seq_cst) != 0 && ring.reader_waiting.exchange(0) != 0) {
          notify(kDataNote);
        }
        continue;
      }
      // Full. Say so before looking again, so that a reader that frees space now sees the flag.
      ring.writer_waiting.store(1, std::memory_order_seq_cst);
      if (ring.head.load(std::memory_order_seq_cst) != head) continue;
      bool ready = false;
      HOTSWAP_RETURN_IF_ERROR(wait(Waiter::kSend, deadline, &ready));
      if (!ready) return unavailable("timed out sending to " + peer_ + ": it has stopped taking bytes");
    }
    return Status::ok_status();
  }

  StatusOr<LinkRead> receive(uint8_t* data, size_t capacity, Deadline deadline) override {
    RingState& ring = header()->rings[1 - end_];
    const uint8_t* base = ring_data(1 - end_);
    for (;;) {
      HOTSWAP_RETURN_IF_ERROR(check_local());
      // The peer's close first: the tail read after it covers every byte the peer sent.
      const bool closed = ring.writer_closed.load(std::memory_order_acquire) != 0 || peer_gone_.load();
      const uint64_t tail = ring.tail.load(std::memory_order_acquire);
      const uint64_t avail = tail - receive_pos_;
      if (avail > ring_bytes_) return corrupt_ring("write position " + std::to_string(tail), receive_pos_);
      if (avail > 0) {
        const size_t at = static_cast<size_t>(receive_pos_ & (ring_bytes_ - 1));
        size_t took = std::min({capacity, static_cast<size_t>(avail), ring_bytes_ - at});
        std::memcpy(data, base + at, took);
        if (took < capacity && took < avail) {  // the bytes wrap around: the rest from the ring's start
          const size_t more = std::min(capacity - took, static_cast<size_t>(avail) - took);
          std::memcpy(data + took, base, more);
          took += more;
        }
        receive_pos_ += took;
        ring.head.store(receive_pos_, std::memory_order_seq_cst);
        if (ring.writer_waiting.load(std::memory_order_seq_cst) != 0 && ring.writer_waiting.exchange(0) != 0) {
          notify(kSpaceNote);
        }
        return LinkRead{took, false};
      }
      if (closed) return LinkRead{0, true};
      // Empty. Say so before looking again, so that a writer that adds bytes now sees the flag.
      ring.reader_waiting.store(1, std::memory_order_seq_cst);
      if (ring.tail.load(std::memory_order_seq_cst) != tail) continue;
      bool ready = false;
      HOTSWAP_RETURN_IF_ERROR(wait(Waiter::kReceive, deadline, &ready));
      if (!ready) return LinkRead{0, false};
    }
  }

  void interrupt() override {
    interrupted_.store(true);
    signal_event(wake_.get());  // never drained: every later wait sees it at once
  }

  void shutdown() override {
    if (shut_.exchange(true)) return;
    header()->rings[end_].writer_closed.store(1, std::memory_order_release);
    header()->rings[1 - end_].reader_closed.store(1, std::memory_order_release);
    (void)::shutdown(socket_.get(), SHUT_RDWR);  // the peer's poll wakes on the end of the socket
    signal_event(data_event_.get());
    signal_event(space_event_.get());
  }

  std::string peer() const override { return peer_; }

 private:
  enum class Waiter { kSend, kReceive };

  ShmHeader* header() const { return reinterpret_cast<ShmHeader*>(mapping_.bytes()); }
  uint8_t* ring_data(int ring) const { return mapping_.bytes() + kHeaderBytes + ring * ring_bytes_; }

  Status check_local() const {
    if (interrupted_.load() || shut_.load()) return unavailable("the connection to " + peer_ + " was closed locally");
    if (const int b = bad_note_.load(); b >= 0) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned>(b));
      return data_loss("the peer at " + peer_ + " sent " + hex +
                       " on the shm socket, which carries only wakeups ('D', 'S'): it is not a shm migration peer");
    }
    return Status::ok_status();
  }

  Status corrupt_ring(const std::string& what, uint64_t own) const {
    return data_loss("the shared memory of " + peer_ + " is corrupt: the peer's " + what + " is more than " +
                     std::to_string(ring_bytes_) + " bytes from this side's " + std::to_string(own));
  }

  // One wakeup byte to the peer. A full socket buffer drops it: the peer has unread wakeups and
  // polls this socket whenever it waits, so it wakes and looks at the rings anyway.
  void notify(uint8_t note) {
    while (::send(socket_.get(), &note, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EINTR) {
    }
  }

  // Sleeps until the peer's wakeup, its close, this end's own event, interrupt() or the deadline.
  // OK with *ready false: the deadline passed. The caller looks at the ring again either way.
  Status wait(Waiter who, Deadline deadline, bool* ready) {
    const int own = who == Waiter::kReceive ? data_event_.get() : space_event_.get();
    for (;;) {
      pollfd fds[3] = {{wake_.get(), POLLIN, 0}, {own, POLLIN, 0}, {peer_gone_.load() ? -1 : socket_.get(), POLLIN, 0}};
      const int r = ::poll(fds, 3, poll_timeout_ms(deadline));
      if (r < 0) {
        if (errno == EINTR) continue;
        return unavailable("poll() on the connection to " + peer_ + ": " + errno_text(errno));
      }
      if (fds[0].revents != 0) return unavailable("the connection to " + peer_ + " was closed locally");
      if (r == 0) {
        if (Clock::now() < deadline) continue;  // poll's millisecond rounding woke it early
        *ready = false;
        return Status::ok_status();
      }
      if (fds[1].revents != 0) drain_event(own);
      if (fds[2].revents != 0) drain_socket(who);
      *ready = true;
      return Status::ok_status();
    }
  }

  // Reads the wakeups that came; the ones for the other thread of this end go to its event.
  void drain_socket(Waiter who) {
    uint8_t notes[256];
    for (;;) {
      const ssize_t r = ::recv(socket_.get(), notes, sizeof notes, MSG_DONTWAIT);
      if (r > 0) {
        for (ssize_t i = 0; i < r; ++i) {
          if (notes[i] == kDataNote) {
            if (who != Waiter::kReceive) signal_event(data_event_.get());
          } else if (notes[i] == kSpaceNote) {
            if (who != Waiter::kSend) signal_event(space_event_.get());
          } else {
            int expected = -1;
            bad_note_.compare_exchange_strong(expected, notes[i]);
            signal_event(data_event_.get());
            signal_event(space_event_.get());
          }
        }
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      // 0: the peer closed its end, or its process died and the kernel did; an error: reset. What
      // it had written is still in the ring (the mapping outlives it): receive() hands that out.
      peer_gone_.store(true);
      signal_event(data_event_.get());
      signal_event(space_event_.get());
      return;
    }
  }

  const UniqueFd socket_;
  const Mapping mapping_;
  const size_t ring_bytes_;
  const int end_;               // 0: the source (writes ring 0), 1: the target (writes ring 1)
  const UniqueFd data_event_;   // wakes a receive() (data in the ring it reads)
  const UniqueFd space_event_;  // wakes a send() (space in the ring it writes)
  const UniqueFd wake_;         // interrupt()
  const std::string peer_;
  uint64_t send_pos_ = 0;     // send()'s thread only: bytes written into ring end_
  uint64_t receive_pos_ = 0;  // receive()'s thread only: bytes read from ring 1 - end_
  std::atomic<bool> peer_gone_{false};
  std::atomic<bool> interrupted_{false};
  std::atomic<bool> shut_{false};
  std::atomic<int> bad_note_{-1};
};

StatusOr<std::unique_ptr<ByteLink>> make_link(UniqueFd socket, Mapping mapping, size_t ring_bytes, int end,
                                              const std::string& path) {
  UniqueFd events[3];
  for (UniqueFd& e : events) {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return unavailable("eventfd() for the shm link at " + path + ": " + errno_text(errno));
    e.reset(fd);
  }
  return std::unique_ptr<ByteLink>(std::make_unique<ShmLink>(std::move(socket), std::move(mapping), ring_bytes, end,
                                                             std::move(events[0]), std::move(events[1]),
                                                             std::move(events[2]), "shm:" + path));
}

// Sends the handshake with the memfd attached.
Status send_hello(int socket, int memfd, size_t ring_bytes, Deadline deadline, const std::string& what) {
  uint8_t hello[kHelloBytes] = {};
  std::memcpy(hello, kHelloMagic, 4);
  put_le16(hello + 4, kShmVersion);
  put_le64(hello + 8, ring_bytes);
  size_t sent = 0;
  while (sent < kHelloBytes) {
    iovec iov = {hello + sent, kHelloBytes - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (sent == 0) {  // the descriptor goes with the first byte
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &memfd, sizeof(int));
    }
    const ssize_t w = ::sendmsg(socket, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      sent += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return unavailable(what + ": sending the shared memory: " + errno_text(errno));
    }
    bool ready = false;
    HOTSWAP_RETURN_IF_ERROR(wait_for_fd(socket, POLLOUT, deadline, -1, "the target", &ready).with_context(what));
    if (!ready) return unavailable(what + ": timed out sending the shared memory");
  }
  return Status::ok_status();
}

// Receives the handshake; `memfds` gets every descriptor that came with it.
Status receive_hello(int socket, uint8_t* hello, std::vector<UniqueFd>* memfds, Deadline deadline,
                     const std::string& what) {
  size_t got = 0;
  while (got < kHelloBytes) {
    iovec iov = {hello + got, kHelloBytes - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t r = ::recvmsg(socket, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r > 0) {
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; ++i) {
          int fd = -1;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          memfds->emplace_back(fd);
        }
      }
      if ((msg.msg_flags & MSG_CTRUNC) != 0) return data_loss(what + ": the source sent more descriptors than one");
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) {
      return unavailable(what + ": the source closed the connection after " + std::to_string(got) +
                         " bytes of its 16-byte handshake");
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return unavailable(what + ": " + errno_text(errno));
    bool ready = false;
    HOTSWAP_RETURN_IF_ERROR(wait_for_fd(socket, POLLIN, deadline, -1, "the source", &ready).with_context(what));
    if (!ready) return unavailable(what + ": timed out waiting for the source's handshake");
  }
  return Status::ok_status();
}

}  // namespace

StatusOr<ShmListener> ShmListener::listen(const std::string& path) {
  HOTSWAP_RETURN_IF_ERROR(check_socket_path(path));
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, listen_unix_socket(path, kShmSocketStyle));
  return ShmListener(std::move(sock), path);
}

ShmListener::ShmListener(ShmListener&& other) noexcept : fd_(std::move(other.fd_)), path_(std::move(other.path_)) {
  other.path_.clear();
}

ShmListener& ShmListener::operator=(ShmListener&& other) noexcept {
  if (this != &other) {
    remove_unix_socket_name(path_);
    fd_ = std::move(other.fd_);
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

ShmListener::~ShmListener() {
  remove_unix_socket_name(path_);
}

StatusOr<std::unique_ptr<ByteLink>> ShmListener::accept_link(std::chrono::milliseconds timeout) {
  const Deadline deadline = deadline_after(timeout);
  const std::string what = "accepting a migration source on shm socket " + path_;
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, accept_unix_socket(fd_.get(), deadline, path_, kShmSocketStyle));

  uint8_t hello[kHelloBytes];
  std::vector<UniqueFd> memfds;
  HOTSWAP_RETURN_IF_ERROR(receive_hello(sock.get(), hello, &memfds, deadline, what));
  if (std::memcmp(hello, kHelloMagic, 4) != 0) {
    return data_loss(what + ": the peer's handshake does not start with \"HSSM\": it is not a shm migration source");
  }
  if (get_le16(hello + 4) != kShmVersion) {
    return unimplemented(what + ": the source speaks shm transport version " + std::to_string(get_le16(hello + 4)) +
                         ", this agent " + std::to_string(kShmVersion));
  }
  const uint64_t ring_bytes = get_le64(hello + 8);
  if (!valid_ring_bytes(ring_bytes)) {
    return data_loss(what + ": the source's ring size " + std::to_string(ring_bytes) +
                     " is not a power of two within [" + std::to_string(kMinShmRingBytes) + ", " +
                     std::to_string(kMaxShmRingBytes) + "]");
  }
  if (memfds.size() != 1) {
    return data_loss(what + ": the handshake came with " + std::to_string(memfds.size()) +
                     " descriptors, not the one shared memory");
  }
  const int memfd = memfds[0].get();
  const size_t bytes = kHeaderBytes + 2 * ring_bytes;
  struct stat st {};
  if (::fstat(memfd, &st) != 0) return unavailable(what + ": fstat() of the shared memory: " + errno_text(errno));
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != bytes) {
    return data_loss(what + ": the shared memory has " + std::to_string(st.st_size) + " bytes, its rings need " +
                     std::to_string(bytes));
  }
  // Unsealed, the source could shrink it under this mapping, and a read would fault (SIGBUS).
  const int seals = ::fcntl(memfd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    return data_loss(what + ": the shared memory is not a memfd sealed against shrinking");
  }
  HOTSWAP_ASSIGN_OR_RETURN(Mapping mapping, map_shared(memfd, bytes, what));
  const ShmHeader* h = reinterpret_cast<const ShmHeader*>(mapping.bytes());
  if (std::memcmp(h->magic, kShmMagic, sizeof kShmMagic) != 0 || h->ring_bytes != ring_bytes) {
    return data_loss(what + ": the shared memory's header is not a shm transport header for rings of " +
                     std::to_string(ring_bytes) + " bytes");
  }
  return make_link(std::move(sock), std::move(mapping), ring_bytes, 1, path_);
}

StatusOr<std::unique_ptr<ChunkReceiver>> ShmListener::accept(std::chrono::milliseconds timeout,
                                                             ReceiverOptions options) {
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<ByteLink> link, accept_link(timeout));
  return make_stream_receiver(std::move(link), options);
}

StatusOr<std::unique_ptr<ByteLink>> shm_connect_link(const std::string& path, std::chrono::milliseconds timeout,
                                                     size_t ring_bytes) {
  HOTSWAP_RETURN_IF_ERROR(check_socket_path(path));
  const std::string what = "connect to shm socket " + path;
  if (!valid_ring_bytes(ring_bytes)) {
    return invalid_argument(what + ": ring size " + std::to_string(ring_bytes) + " is not a power of two within [" +
                            std::to_string(kMinShmRingBytes) + ", " + std::to_string(kMaxShmRingBytes) + "]");
  }
  const Deadline deadline = deadline_after(timeout);
  HOTSWAP_ASSIGN_OR_RETURN(UniqueFd sock, connect_unix_socket(path, deadline, kShmSocketStyle));

  const int fd = ::memfd_create("hotswap-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return unavailable(what + ": memfd_create(): " + errno_text(errno));
  UniqueFd memfd(fd);
  const size_t bytes = kHeaderBytes + 2 * ring_bytes;
  if (::ftruncate(memfd.get(), static_cast<off_t>(bytes)) != 0) {
    return resource_exhausted(what + ": sizing the shared memory to " + std::to_string(bytes) +
                              " bytes: " + errno_text(errno));
  }
  if (::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return unavailable(what + ": sealing the shared memory: " + errno_text(errno));
  }
  HOTSWAP_ASSIGN_OR_RETURN(Mapping mapping, map_shared(memfd.get(), bytes, what));
  ShmHeader* h = new (mapping.bytes()) ShmHeader();
  std::memcpy(h->magic, kShmMagic, sizeof kShmMagic);
  h->ring_bytes = ring_bytes;
  HOTSWAP_RETURN_IF_ERROR(send_hello(sock.get(), memfd.get(), ring_bytes, deadline, what));
  return make_link(std::move(sock), std::move(mapping), ring_bytes, 0, path);
}

StatusOr<std::unique_ptr<ChunkSender>> shm_connect(const std::string& path, SenderOptions options,
                                                   std::chrono::milliseconds timeout, size_t ring_bytes) {
  HOTSWAP_ASSIGN_OR_RETURN(std::unique_ptr<ByteLink> link, shm_connect_link(path, timeout, ring_bytes));
  return make_stream_sender(std::move(link), options);
}

StatusOr<std::string> parse_shm_endpoint(const std::string& endpoint) {
  const std::string prefix = "shm://";
  if (endpoint.rfind(prefix, 0) != 0) return invalid_argument("data_endpoint '" + endpoint + "' is not shm:///path");
  std::string path = endpoint.substr(prefix.size());
  if (path.empty() || path[0] != '/') {
    return invalid_argument("data_endpoint '" + endpoint + "' does not name an absolute socket path (shm:///path)");
  }
  HOTSWAP_RETURN_IF_ERROR(check_socket_path(path));
  return path;
}

StatusOr<ShmSocketDir> ShmSocketDir::create(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {  // mode 0700
    return unavailable("making a directory for shm sockets (" + pattern + "): " + errno_text(errno));
  }
  return ShmSocketDir(std::string(buffer.data()));
}

ShmSocketDir& ShmSocketDir::operator=(ShmSocketDir&& other) noexcept {
  if (this != &other) {
    ShmSocketDir old(std::move(*this));
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

ShmSocketDir::~ShmSocketDir() {
  if (path_.empty()) return;
  if (DIR* dir = ::opendir(path_.c_str())) {
    while (const dirent* e = ::readdir(dir)) {
      const std::string file = path_ + "/" + e->d_name;
      struct stat st {};
      if (::lstat(file.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(file.c_str());
    }
    ::closedir(dir);
  }
  ::rmdir(path_.c_str());  // fails, leaving it, when something else was put there
}

std::string local_node_id() {
  if (const char* id = std::getenv("HOTSWAP_NODE_ID"); id != nullptr && *id != '\0') return id;
  std::string boot;
  if (std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char line[128] = {};
    if (std::fgets(line, sizeof line, f) != nullptr) boot = line;
    std::fclose(f);
  }
  while (!boot.empty() && (boot.back() == '\n' || boot.back() == ' ')) boot.pop_back();
  if (boot.empty()) return "";
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host) + "/" + boot;
}

}  // namespace hotswap::migration
