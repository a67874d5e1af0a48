#include "common/connection_guard.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>
#include <unordered_map>

#include "common/http_framing.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace hotswap::http {
namespace {

using Clock = std::chrono::steady_clock;

// What one direction may hold unwritten before the guard stops reading its source.
constexpr size_t kBufferCap = 256 << 10;
constexpr size_t kReadBytes = 64 << 10;
// After its own reply the guard reads (and drops) what the client still sends, this long and
// this much at most, so that closing does not reset the connection before the reply is read.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 256 << 10;

constexpr uint64_t kListenTag = ~uint64_t{0};
constexpr uint64_t kWakeTag = ~uint64_t{0} - 1;

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

void set_no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

enum class State {
  kRelaying,
  kFlushing,   // writing what is left for the client (the guard's reply, or the server's last bytes)
  kLingering,  // written and shut for writing; reading what the client still sends
};

struct Connection {
  uint64_t id = 0;
  UniqueFd client, upstream;
  uint32_t client_mask = 0, upstream_mask = 0;  // what epoll watches now
  bool upstream_connected = false;
  bool dead = false;
  State state = State::kRelaying;
  std::string to_upstream, to_client;
  std::deque<bool> head_queue;  // each request relayed and not answered yet: a HEAD?
  int64_t heads = 0, answered = 0;
  MessageFramer requests, responses;
  Clock::time_point accepted, head_started, last_client_read, last_activity, write_waiting_since, linger_until;
  size_t lingered_bytes = 0;

  Connection(size_t max_header_bytes)
      : requests(MessageFramer::Side::kRequest, max_header_bytes),
        responses(MessageFramer::Side::kResponse, max_header_bytes, [this] {
          if (head_queue.empty()) return false;
          const bool head = head_queue.front();
          head_queue.pop_front();
          return head;
        }) {}
};

}  // namespace

const char* guard_event_name(GuardEvent e) {
  switch (e) {
    case GuardEvent::kTooManyConnections: return "too_many_connections";
    case GuardEvent::kHeaderTooLarge: return "header_too_large";
    case GuardEvent::kHeaderTimeout: return "header_timeout";
    case GuardEvent::kBodyTimeout: return "body_timeout";
    case GuardEvent::kBadFraming: return "bad_framing";
    case GuardEvent::kSendTimeout: return "send_timeout";
    case GuardEvent::kIdle: return "idle";
    case GuardEvent::kUpstreamUnreachable: return "upstream_unreachable";
  }
  return "unknown";
}

class ConnectionGuard::Impl {
 public:
  ConnectionLimits limits;
  GuardHooks hooks;
  int upstream_port = 0;
  int port = 0;
  UniqueFd listen_fd, epoll_fd, wake_fd;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections;
  uint64_t next_id = 1;
  std::vector<char> read_buffer = std::vector<char>(kReadBytes);

  void run();
  void accept_all();
  void refuse_at_door(UniqueFd fd);
  void on_client(Connection& c, uint32_t events);
  void on_upstream(Connection& c, uint32_t events);
  void read_client(Connection& c);
  void read_upstream(Connection& c);
  void write_client(Connection& c);
  void write_upstream(Connection& c);
  // Replies (and closes) where the reply can only be taken for the answer to the request it is
  // about: `unanswered_ok` requests may be waiting for an answer (the one whose body stalled;
  // every one, when nothing reached the server).
  void refuse(Connection& c, int status, GuardEvent event, const std::string& message, int64_t unanswered_ok);
  void flush_then_close(Connection& c);
  void drain_upstream(Connection& c);
  void close(Connection& c, const char* why);
  void check_deadlines(Clock::time_point now);
  void update_interest(Connection& c);
  void event(GuardEvent e) {
    if (hooks.on_event) hooks.on_event(e);
  }
  std::string reply(int status, const std::string& message) const;
  void report_open() {
    if (hooks.on_open_connections) hooks.on_open_connections(static_cast<int>(connections.size()));
  }
};

std::string ConnectionGuard::Impl::reply(int status, const std::string& message) const {
  const std::string body = hooks.error_body ? hooks.error_body(status, message) : std::string("{}");
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n";
  if (status == 503) out += "Retry-After: 1\r\n";
  return out + "\r\n" + body;
}

void ConnectionGuard::Impl::update_interest(Connection& c) {
  if (c.dead) return;
  uint32_t want_client = 0, want_upstream = 0;
  const bool reading_requests = c.state == State::kRelaying && c.to_upstream.size() < kBufferCap;
  const bool discarding = c.state != State::kRelaying;
  if (reading_requests || discarding) want_client |= EPOLLIN;
  if (!c.to_client.empty() && c.state != State::kLingering) want_client |= EPOLLOUT;
  if (c.upstream.valid()) {
    if (c.state == State::kRelaying && c.upstream_connected && c.to_client.size() < kBufferCap)
      want_upstream |= EPOLLIN;
    if (!c.upstream_connected || (!c.to_upstream.empty() && c.state == State::kRelaying)) want_upstream |= EPOLLOUT;
  }
  auto apply = [&](const UniqueFd& fd, uint32_t want, uint32_t* have, uint64_t tag) {
    if (!fd.valid() || want == *have) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = tag;
    ::epoll_ctl(epoll_fd.get(), EPOLL_CTL_MOD, fd.get(), &ev);
    *have = want;
  };
  apply(c.client, want_client, &c.client_mask, c.id << 1);
  apply(c.upstream, want_upstream, &c.upstream_mask, (c.id << 1) | 1);
}

void ConnectionGuard::Impl::close(Connection& c, const char*) {
  c.dead = true;
  c.client.reset();
  c.upstream.reset();
}

void ConnectionGuard::Impl::flush_then_close(Connection& c) {
  c.upstream.reset();
  c.state = State::kFlushing;
  c.write_waiting_since = Clock::now();
  write_client(c);
}

void ConnectionGuard::Impl::refuse(Connection& c, int status, GuardEvent e, const std::string& message,
                                   int64_t unanswered_ok) {
  event(e);
  if (!c.responses.idle() || c.heads - c.answered > unanswered_ok || c.state != State::kRelaying)
    return close(c, guard_event_name(e));
  c.to_client += reply(status, message);
  flush_then_close(c);
}

void ConnectionGuard::Impl::write_client(Connection& c) {
  while (!c.dead && !c.to_client.empty()) {
    const ssize_t n = ::send(c.client.get(), c.to_client.data(), c.to_client.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.to_client.erase(0, static_cast<size_t>(n));
      c.last_activity = c.write_waiting_since = Clock::now();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    return close(c, "client gone");
  }
  if (c.dead || c.state != State::kFlushing) return;
  // Everything written: shut our side and read what the client still has in flight.
  ::shutdown(c.client.get(), SHUT_WR);
  c.state = State::kLingering;
  c.linger_until = Clock::now() + kLingerTime;
}

void ConnectionGuard::Impl::write_upstream(Connection& c) {
  while (!c.dead && c.upstream_connected && !c.to_upstream.empty()) {
    const ssize_t n =
        ::send(c.upstream.get(), c.to_upstream.data(), c.to_upstream.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      // Reading the client resumes below the cap: the wait on the server was not the client's.
      if (c.to_upstream.size() >= kBufferCap && c.to_upstream.size() - static_cast<size_t>(n) < kBufferCap)
        c.last_client_read = Clock::now();
      c.to_upstream.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    // The server hung up (after a reply that ends the connection, say): what it sent still
    // goes back, so read it before letting go.
    return drain_upstream(c);
  }
}

void ConnectionGuard::Impl::read_client(Connection& c) {
  while (!c.dead) {
    if (c.state == State::kRelaying && c.to_upstream.size() >= kBufferCap) return;
    const ssize_t n = ::recv(c.client.get(), read_buffer.data(), read_buffer.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return close(c, "client reset");
    const auto now = Clock::now();
    if (n == 0) {
      // A client that closes while its answer is under way has gone away (as nginx takes it):
      // the server sees its connection end and cancels the work.
      return close(c, "client closed");
    }
    c.last_activity = now;
    if (c.state != State::kRelaying) {
      c.lingered_bytes += static_cast<size_t>(n);
      if (c.lingered_bytes > kLingerBytes) return close(c, "lingered enough");
      continue;
    }
    c.last_client_read = now;
    const bool was_in_head = c.requests.in_head();
    MessageFramer::Progress p = c.requests.feed(read_buffer.data(), static_cast<size_t>(n));
    for (bool head : p.head_requests) c.head_queue.push_back(head);
    c.heads += p.heads;
    if (p.error_status != 0) {
      return refuse(c, p.error_status, p.error_status == 431 ? GuardEvent::kHeaderTooLarge : GuardEvent::kBadFraming,
                    p.error, 0);
    }
    if (c.requests.in_head() && (!was_in_head || p.heads > 0)) c.head_started = c.heads == 0 ? c.accepted : now;
    c.to_upstream.append(read_buffer.data(), static_cast<size_t>(n));
    write_upstream(c);
  }
}

void ConnectionGuard::Impl::read_upstream(Connection& c) {
  while (!c.dead && c.upstream.valid() && c.to_client.size() < kBufferCap) {
    const ssize_t n = ::recv(c.upstream.get(), read_buffer.data(), read_buffer.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return flush_then_close(c);
    MessageFramer::Progress p = c.responses.feed(read_buffer.data(), static_cast<size_t>(n));
    if (p.error_status != 0) {
      log_warn("connection guard: the server's response framing is broken, closing: " + p.error);
      return close(c, "bad response");
    }
    c.answered += p.messages;
    if (c.to_client.empty()) c.write_waiting_since = Clock::now();
    c.last_activity = Clock::now();
    c.to_client.append(read_buffer.data(), static_cast<size_t>(n));
    write_client(c);
  }
}

void ConnectionGuard::Impl::drain_upstream(Connection& c) {
  while (!c.dead && c.upstream.valid()) {
    const ssize_t n = ::recv(c.upstream.get(), read_buffer.data(), read_buffer.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    c.answered += c.responses.feed(read_buffer.data(), static_cast<size_t>(n)).messages;
    if (c.to_client.empty()) c.write_waiting_since = Clock::now();
    c.to_client.append(read_buffer.data(), static_cast<size_t>(n));
  }
  if (!c.dead) flush_then_close(c);
}

void ConnectionGuard::Impl::on_client(Connection& c, uint32_t events) {
  if (events & EPOLLERR) return close(c, "client error");
  if (events & (EPOLLIN | EPOLLHUP)) read_client(c);
  if (!c.dead && (events & EPOLLOUT)) write_client(c);
}

void ConnectionGuard::Impl::on_upstream(Connection& c, uint32_t events) {
  if (!c.upstream.valid()) return;
  if (!c.upstream_connected) {
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(c.upstream.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & EPOLLERR)) {
      return refuse(c, 502, GuardEvent::kUpstreamUnreachable,
                    std::string("the server behind the guard cannot be reached: ") + std::strerror(err ? err : EIO),
                    c.heads - c.answered);
    }
    c.upstream_connected = true;
    write_upstream(c);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_upstream(c);
  if (!c.dead && (events & EPOLLOUT)) write_upstream(c);
}

void ConnectionGuard::Impl::refuse_at_door(UniqueFd fd) {
  event(GuardEvent::kTooManyConnections);
  char drain[4096];
  while (::recv(fd.get(), drain, sizeof(drain), MSG_DONTWAIT) > 0) {
  }
  const std::string r = reply(503, "the server has " + std::to_string(limits.max_connections) +
                                       " connections open, its limit; retry shortly");
  [[maybe_unused]] ssize_t n = ::send(fd.get(), r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd.get(), SHUT_WR);
}

void ConnectionGuard::Impl::accept_all() {
  while (true) {
    UniqueFd fd(::accept4(listen_fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        log_warn(std::string("connection guard: accept: ") + std::strerror(errno));
      return;
    }
    if (static_cast<int>(connections.size()) >= limits.max_connections) {
      refuse_at_door(std::move(fd));
      continue;
    }
    set_no_delay(fd.get());
    auto c = std::make_unique<Connection>(limits.max_header_bytes);
    c->id = next_id++;
    c->client = std::move(fd);
    c->accepted = c->head_started = c->last_client_read = c->last_activity = Clock::now();
    c->upstream = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    epoll_event ev{};
    ev.events = c->client_mask = EPOLLIN;
    ev.data.u64 = c->id << 1;
    ::epoll_ctl(epoll_fd.get(), EPOLL_CTL_ADD, c->client.get(), &ev);
    Connection& ref = *c;
    connections.emplace(c->id, std::move(c));
    report_open();
    if (!ref.upstream.valid()) {
      refuse(ref, 502, GuardEvent::kUpstreamUnreachable, std::string("socket: ") + std::strerror(errno), 0);
      continue;
    }
    set_no_delay(ref.upstream.get());
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(upstream_port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = ::connect(ref.upstream.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    if (rc != 0 && errno != EINPROGRESS) {
      refuse(ref, 502, GuardEvent::kUpstreamUnreachable,
             std::string("the server behind the guard cannot be reached: ") + std::strerror(errno), 0);
      continue;
    }
    ref.upstream_connected = rc == 0;
    epoll_event uev{};
    uev.events = ref.upstream_mask = EPOLLOUT;
    uev.data.u64 = (ref.id << 1) | 1;
    ::epoll_ctl(epoll_fd.get(), EPOLL_CTL_ADD, ref.upstream.get(), &uev);
  }
}

void ConnectionGuard::Impl::check_deadlines(Clock::time_point now) {
  for (auto& [id, cp] : connections) {
    Connection& c = *cp;
    if (c.dead) continue;
    if (c.state == State::kLingering) {
      if (now >= c.linger_until) close(c, "lingered");
      continue;
    }
    if (!c.to_client.empty() && now - c.write_waiting_since > limits.send_timeout) {
      event(GuardEvent::kSendTimeout);
      close(c, "send timeout");
      continue;
    }
    // The client's clocks run only while the guard reads it (not while the server is slow to
    // take what it sent).
    if (c.state != State::kRelaying || c.to_upstream.size() >= kBufferCap) continue;
    const bool first_awaited = c.heads == 0 && c.requests.idle();
    if ((c.requests.in_head() || first_awaited) && now - c.head_started > limits.header_timeout) {
      refuse(c, 408,
             GuardEvent::kHeaderTimeout,
             "the request's head did not arrive within " + std::to_string(limits.header_timeout.count()) + " ms", 0);
    } else if (c.requests.in_body() && now - c.last_client_read > limits.body_timeout) {
      refuse(c, 408, GuardEvent::kBodyTimeout,
             "the request's body stalled: nothing for " + std::to_string(limits.body_timeout.count()) + " ms", 1);
    } else if (c.requests.idle() && c.heads > 0 && c.heads == c.answered && c.to_client.empty() &&
               c.to_upstream.empty() && now - c.last_activity > limits.idle_timeout) {
      event(GuardEvent::kIdle);
      close(c, "idle");
    }
  }
}

void ConnectionGuard::Impl::run() {
  using std::chrono::milliseconds;
  const auto shortest = std::min({limits.header_timeout, limits.body_timeout, limits.send_timeout, limits.idle_timeout});
  const int tick_ms = static_cast<int>(std::clamp<int64_t>(shortest.count() / 4, 10, 250));
  std::vector<epoll_event> events(256);
  auto last_check = Clock::now();
  while (!stopping.load()) {
    const int n = ::epoll_wait(epoll_fd.get(), events.data(), static_cast<int>(events.size()), tick_ms);
    if (n < 0 && errno != EINTR) {
      log_warn(std::string("connection guard: epoll_wait: ") + std::strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) continue;
      if (tag == kListenTag) {
        accept_all();
        continue;
      }
      auto it = connections.find(tag >> 1);
      if (it == connections.end() || it->second->dead) continue;
      if (tag & 1) on_upstream(*it->second, events[i].events);
      else on_client(*it->second, events[i].events);
    }
    const auto now = Clock::now();
    if (now - last_check >= milliseconds(tick_ms)) {
      check_deadlines(now);
      last_check = now;
    }
    bool removed = false;
    for (auto it = connections.begin(); it != connections.end();) {
      if (it->second->dead) {
        it = connections.erase(it);
        removed = true;
      } else {
        update_interest(*it->second);
        ++it;
      }
    }
    if (removed) report_open();
  }
  connections.clear();
  report_open();
}

StatusOr<std::unique_ptr<ConnectionGuard>> ConnectionGuard::start(const std::string& host, int port,
                                                                  int upstream_port, ConnectionLimits limits,
                                                                  GuardHooks hooks) {
  auto impl = std::make_unique<Impl>();
  impl->limits = limits;
  impl->hooks = std::move(hooks);
  impl->upstream_port = upstream_port;
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    return unavailable("cannot listen on " + where + ": " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addrs(found, ::freeaddrinfo);
  impl->listen_fd = UniqueFd(::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!impl->listen_fd.valid()) return unavailable("cannot listen on " + where + ": " + std::strerror(errno));
  int one = 1;
  ::setsockopt(impl->listen_fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(impl->listen_fd.get(), found->ai_addr, found->ai_addrlen) != 0 ||
      ::listen(impl->listen_fd.get(), SOMAXCONN) != 0)
    return unavailable("cannot listen on " + where + ": " + std::strerror(errno));
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(impl->listen_fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  impl->port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  impl->epoll_fd = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  impl->wake_fd = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!impl->epoll_fd.valid() || !impl->wake_fd.valid())
    return unavailable(std::string("connection guard: ") + std::strerror(errno));
  for (auto [fd, tag] : {std::pair{impl->listen_fd.get(), kListenTag}, std::pair{impl->wake_fd.get(), kWakeTag}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    ::epoll_ctl(impl->epoll_fd.get(), EPOLL_CTL_ADD, fd, &ev);
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<ConnectionGuard>(new ConnectionGuard(std::move(impl)));
}

ConnectionGuard::ConnectionGuard(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ConnectionGuard::~ConnectionGuard() { stop(); }

int ConnectionGuard::port() const { return impl_->port; }

void ConnectionGuard::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(impl_->wake_fd.get(), &one, sizeof(one));
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->listen_fd.reset();
}

}  // namespace hotswap::http
