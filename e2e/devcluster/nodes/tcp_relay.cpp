#include "e2e/devcluster/nodes/tcp_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/log.h"

namespace hotswap::devcluster {

using Clock = std::chrono::steady_clock;

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

void set_nodelay(int fd) {
  int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Closes with an RST rather than a FIN: how a refused or broken connection is passed on.
void reset_close(int fd) {
  linger l{1, 0};
  (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

bool to_sockaddr(const RelayEndpoint& e, sockaddr_in* addr) {
  *addr = {};
  addr->sin_family = AF_INET;
  addr->sin_port = htons(static_cast<uint16_t>(e.port));
  return e.port > 0 && e.port < 65536 && ::inet_pton(AF_INET, e.ip.c_str(), &addr->sin_addr) == 1;
}

}  // namespace

struct TcpRelay::Impl {
  // One direction of a connection: bytes read from one socket, not yet written to the other.
  struct Pipe {
    std::unique_ptr<char[]> buf;
    size_t begin = 0, end = 0;
    bool eof = false;   // the source said EOF
    bool shut = false;  // ... and everything was written and the sink shut for writing
    bool empty() const { return begin == end; }
  };

  struct Conn {
    uint64_t id = 0;
    int client = -1, upstream = -1;
    uint32_t client_events = 0, upstream_events = 0;
    bool client_registered = false, upstream_registered = false;
    bool connecting = true;
    Clock::time_point connect_deadline;
    Pipe up, down;  // client -> upstream, upstream -> client
    std::string route;
    std::string backend;  // "ip:port"
  };

  struct Listener {
    int fd = -1;
    RelayListener spec;
  };

  // The epoll tag of a socket: id << 2 | kind. Ids are never reused, so an event for a socket
  // closed earlier in the same batch finds nothing rather than its fd number's next owner.
  enum Kind : uint64_t { kWake = 0, kListener = 1, kClient = 2, kUpstream = 3 };
  // What one transfer() ended with.
  enum class Flow { kBlocked, kMore, kError };

  Impl(TcpRelayOptions o, TcpRelayHooks h) : options(std::move(o)), hooks(std::move(h)) {}
  ~Impl() { stop(); }

  const TcpRelayOptions options;
  const TcpRelayHooks hooks;
  bool started = false;

  // ---- shared with other threads; under mu ----
  mutable std::mutex mu;
  std::map<std::string, RelayListener> wanted;  // address -> listener
  uint64_t wanted_version = 0;
  std::map<std::string, std::string> published_listeners;
  std::map<std::string, std::string> published_errors;
  size_t published_open = 0;

  // ---- the loop thread's own ----
  int epoll_fd = -1;
  int wake_fd = -1;
  std::thread thread;
  std::atomic<bool> stopping{false};
  uint64_t next_id = 1;
  uint64_t applied_version = 0;
  std::map<std::string, RelayListener> applied;                                  // the wanted set last applied
  std::map<std::string, uint64_t> listener_ids;                                  // address -> id
  std::unordered_map<uint64_t, Listener> listeners;                              // id -> listener
  std::map<std::string, std::pair<std::string, Clock::time_point>> bind_errors;  // address -> (why, retry at)
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;
  // Connections that stopped at the round limit with more to move: pumped again after this batch
  // of events (a socket no longer registered, after HUP, brings no event of its own).
  std::vector<uint64_t> again;

  Status start();
  void stop();
  void wake();

  void run();
  void apply_listeners();
  void publish_listeners();
  std::optional<std::string> open_listener(const std::string& address, const RelayListener& spec);
  void accept_from(uint64_t listener_id);
  void start_conn(int client_fd, const std::string& route);
  void on_conn_event(Conn& c, bool client_side, uint32_t events);
  void connected(Conn& c);
  bool pump(Conn& c);
  Flow transfer(int from, int to, Pipe& p);
  void update_interest(Conn& c);
  void close_conn(Conn& c, bool reset);
  void publish_open();
  void expire_connects(Clock::time_point now);
};

Status TcpRelay::Impl::start() {
  if (started) return failed_precondition("tcp relay: already started");
  started = true;
  epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return internal_error("tcp relay: epoll_create1: " + errno_text(errno));
  wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) return internal_error("tcp relay: eventfd: " + errno_text(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWake;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev) != 0)
    return internal_error("tcp relay: epoll_ctl: " + errno_text(errno));
  thread = std::thread([this] { run(); });
  return Status();
}

void TcpRelay::Impl::stop() {
  stopping = true;
  if (thread.joinable()) {
    wake();
    thread.join();
  }
  std::lock_guard<std::mutex> lk(mu);  // set_listeners() may be writing to wake_fd
  if (wake_fd >= 0) ::close(wake_fd);
  if (epoll_fd >= 0) ::close(epoll_fd);
  wake_fd = epoll_fd = -1;
}

void TcpRelay::Impl::wake() {
  if (wake_fd < 0) return;
  const uint64_t one = 1;
  (void)!::write(wake_fd, &one, sizeof one);
}

void TcpRelay::Impl::run() {
  std::vector<epoll_event> events(256);
  auto next_sweep = Clock::now();
  while (!stopping) {
    apply_listeners();
    auto now = Clock::now();
    int timeout_ms = 1000;
    for (const auto& [address, e] : bind_errors) {
      const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(e.second - now).count();
      timeout_ms = std::min<int>(timeout_ms, static_cast<int>(std::max<int64_t>(until, 1)));
    }
    if (!conns.empty()) timeout_ms = std::min(timeout_ms, 100);  // connect timeouts
    if (!again.empty()) timeout_ms = 0;
    const int n = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) {
      log_error("tcp relay: epoll_wait: " + errno_text(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      const uint64_t kind = tag & 3, id = tag >> 2;
      if (kind == kWake) {
        uint64_t count = 0;
        (void)!::read(wake_fd, &count, sizeof count);
      } else if (kind == kListener) {
        accept_from(id);
      } else {
        auto it = conns.find(id);
        if (it != conns.end()) on_conn_event(*it->second, kind == kClient, events[i].events);
      }
    }
    std::vector<uint64_t> more;
    more.swap(again);
    for (uint64_t id : more) {
      auto it = conns.find(id);
      if (it != conns.end() && !it->second->connecting) (void)pump(*it->second);
    }
    now = Clock::now();
    if (now >= next_sweep) {
      expire_connects(now);
      next_sweep = now + std::chrono::milliseconds(100);
    }
  }
  for (auto& [id, c] : conns) {
    reset_close(c->client);
    reset_close(c->upstream);
  }
  conns.clear();
  for (auto& [id, l] : listeners) ::close(l.fd);
  listeners.clear();
  listener_ids.clear();
  std::lock_guard<std::mutex> lk(mu);
  published_listeners.clear();
  published_open = 0;
}

void TcpRelay::Impl::apply_listeners() {
  bool changed = false;
  {
    std::lock_guard<std::mutex> lk(mu);
    if (wanted_version != applied_version) {
      applied = wanted;
      applied_version = wanted_version;
      changed = true;
    }
  }
  const auto now = Clock::now();
  bool retry_due = false;
  for (const auto& [address, e] : bind_errors) retry_due = retry_due || e.second <= now;
  if (!changed && !retry_due) return;

  for (auto it = listener_ids.begin(); it != listener_ids.end();) {
    if (applied.count(it->first)) {
      listeners[it->second].spec = applied[it->first];
      ++it;
      continue;
    }
    ::close(listeners[it->second].fd);
    listeners.erase(it->second);
    it = listener_ids.erase(it);
  }
  for (auto it = bind_errors.begin(); it != bind_errors.end();)
    it = applied.count(it->first) ? std::next(it) : bind_errors.erase(it);
  for (const auto& [address, spec] : applied) {
    if (listener_ids.count(address)) continue;
    auto e = bind_errors.find(address);
    if (e != bind_errors.end() && e->second.second > now) continue;
    auto error = open_listener(address, spec);
    if (!error) {
      bind_errors.erase(address);
      continue;
    }
    if (e == bind_errors.end() || e->second.first != *error)
      log_warn("tcp relay: " + spec.route + ": " + *error + " (retrying every " +
               std::to_string(options.bind_retry.count()) + " ms)");
    bind_errors[address] = {*error, now + options.bind_retry};
  }
  publish_listeners();
}

void TcpRelay::Impl::publish_listeners() {
  std::map<std::string, std::string> active, errors;
  for (const auto& [address, id] : listener_ids) active[address] = listeners[id].spec.route;
  for (const auto& [address, e] : bind_errors) errors[address] = e.first;
  std::lock_guard<std::mutex> lk(mu);
  published_listeners = std::move(active);
  published_errors = std::move(errors);
}

std::optional<std::string> TcpRelay::Impl::open_listener(const std::string& address, const RelayListener& spec) {
  sockaddr_in addr{};
  if (!to_sockaddr(spec.address, &addr)) return "listen " + address + ": not an IPv4 address and port";
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket: " + errno_text(errno);
  int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    std::string why = "bind " + address + ": " + errno_text(err);
    if (err == EACCES) why += " (ports below net.ipv4.ip_unprivileged_port_start need root or CAP_NET_BIND_SERVICE)";
    if (err == EADDRNOTAVAIL) why += " (not an address of this host)";
    return why;
  }
  if (::listen(fd, options.listen_backlog) != 0) {
    const int err = errno;
    ::close(fd);
    return "listen " + address + ": " + errno_text(err);
  }
  const uint64_t id = next_id++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id << 2 | kListener;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = errno;
    ::close(fd);
    return "epoll_ctl " + address + ": " + errno_text(err);
  }
  listeners[id] = {fd, spec};
  listener_ids[address] = id;
  return std::nullopt;
}

void TcpRelay::Impl::accept_from(uint64_t listener_id) {
  auto it = listeners.find(listener_id);
  if (it == listeners.end()) return;
  const int listen_fd = it->second.fd;
  const std::string route = it->second.spec.route;
  for (int i = 0; i < 64; ++i) {  // then the other sockets get a turn; level-triggered brings us back
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) log_warn("tcp relay: accept (" + route + "): " + errno_text(errno));
      return;
    }
    start_conn(fd, route);
  }
}

void TcpRelay::Impl::start_conn(int client_fd, const std::string& route) {
  const auto backend = conns.size() < options.max_connections ? hooks.choose(route) : std::nullopt;
  sockaddr_in addr{};
  // Hooks before the reset: whoever sees the reset also sees it counted.
  if (!backend || !to_sockaddr(*backend, &addr)) {
    if (hooks.on_refused) hooks.on_refused(route);
    reset_close(client_fd);
    return;
  }
  const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int rc = up < 0 ? -1 : ::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (up < 0 || (rc != 0 && errno != EINPROGRESS)) {
    if (hooks.on_connect_failed) hooks.on_connect_failed(route, backend->address());
    if (up >= 0) ::close(up);
    reset_close(client_fd);
    return;
  }
  set_nodelay(client_fd);  // token streams: every small write goes out at once
  set_nodelay(up);

  auto conn = std::make_unique<Conn>();
  Conn& c = *conn;
  c.id = next_id++;
  c.client = client_fd;
  c.upstream = up;
  c.connect_deadline = Clock::now() + options.connect_timeout;
  c.route = route;
  c.backend = backend->address();
  c.up.buf.reset(new char[options.buffer_bytes]);
  c.down.buf.reset(new char[options.buffer_bytes]);
  epoll_event ev{};
  ev.events = 0;  // nothing from the client until the backend answers (errors still come)
  ev.data.u64 = c.id << 2 | kClient;
  const bool client_ok = ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, client_fd, &ev) == 0;
  ev.events = EPOLLOUT;
  ev.data.u64 = c.id << 2 | kUpstream;
  const bool upstream_ok = client_ok && ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, up, &ev) == 0;
  if (!client_ok || !upstream_ok) {
    log_warn("tcp relay: epoll_ctl: " + errno_text(errno));
    ::close(up);
    reset_close(client_fd);
    return;
  }
  c.client_registered = c.upstream_registered = true;
  c.upstream_events = EPOLLOUT;
  conns[c.id] = std::move(conn);
  publish_open();
  if (rc == 0) connected(c);
}

void TcpRelay::Impl::connected(Conn& c) {
  c.connecting = false;
  if (hooks.on_connected) hooks.on_connected(c.route, c.backend);
  (void)pump(c);
}

void TcpRelay::Impl::on_conn_event(Conn& c, bool client_side, uint32_t events) {
  if (c.connecting) {
    if (!client_side) {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(c.upstream, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        if (hooks.on_connect_failed) hooks.on_connect_failed(c.route, c.backend);
        close_conn(c, /*reset=*/true);
        return;
      }
      connected(c);
    } else if (events & (EPOLLERR | EPOLLHUP)) {
      close_conn(c, /*reset=*/true);  // the client left before the backend answered
    }
    return;
  }
  if (events & EPOLLERR) {
    close_conn(c, /*reset=*/true);
    return;
  }
  if (!pump(c)) return;
  // HUP without an error: the peer closed and we shut our side; nothing more will come but what
  // is already buffered, which pump() reads when the other side has room. Stop listening to it,
  // or level-triggered epoll would report it forever.
  if (events & EPOLLHUP) {
    const int fd = client_side ? c.client : c.upstream;
    bool& registered = client_side ? c.client_registered : c.upstream_registered;
    if (registered) {
      (void)::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
      registered = false;
    }
  }
}

bool TcpRelay::Impl::pump(Conn& c) {
  const Flow up = transfer(c.client, c.upstream, c.up);
  const Flow down = up == Flow::kError ? Flow::kError : transfer(c.upstream, c.client, c.down);
  if (up == Flow::kError || down == Flow::kError) {
    close_conn(c, /*reset=*/true);
    return false;
  }
  if (c.up.shut && c.down.shut) {
    close_conn(c, /*reset=*/false);
    return false;
  }
  if (up == Flow::kMore || down == Flow::kMore) again.push_back(c.id);
  update_interest(c);
  return true;
}

// Moves bytes from `from` to `to` through p until one would block (kBlocked), or for a bounded
// number of rounds, so that one busy connection does not starve the others (kMore).
TcpRelay::Impl::Flow TcpRelay::Impl::transfer(int from, int to, Pipe& p) {
  for (int round = 0; round < 16; ++round) {
    if (!p.empty()) {
      const ssize_t n = ::send(to, p.buf.get() + p.begin, p.end - p.begin, MSG_NOSIGNAL);
      if (n > 0) {
        p.begin += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? Flow::kBlocked : Flow::kError;
    }
    p.begin = p.end = 0;
    if (p.eof) {
      if (!p.shut) {
        (void)::shutdown(to, SHUT_WR);
        p.shut = true;
      }
      return Flow::kBlocked;
    }
    const ssize_t n = ::recv(from, p.buf.get(), options.buffer_bytes, 0);
    if (n > 0) {
      p.end = static_cast<size_t>(n);
    } else if (n == 0) {
      p.eof = true;
    } else if (errno == EINTR) {
      continue;
    } else {
      return errno == EAGAIN || errno == EWOULDBLOCK ? Flow::kBlocked : Flow::kError;
    }
  }
  return Flow::kMore;
}

void TcpRelay::Impl::update_interest(Conn& c) {
  const uint32_t client_want = ((!c.up.eof && c.up.empty()) ? EPOLLIN : 0u) | (!c.down.empty() ? EPOLLOUT : 0u);
  const uint32_t upstream_want = ((!c.down.eof && c.down.empty()) ? EPOLLIN : 0u) | (!c.up.empty() ? EPOLLOUT : 0u);
  auto modify = [&](int fd, bool registered, uint32_t& have, uint32_t want, Kind kind) {
    if (!registered || have == want) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = c.id << 2 | kind;
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev) == 0) have = want;
  };
  modify(c.client, c.client_registered, c.client_events, client_want, kClient);
  modify(c.upstream, c.upstream_registered, c.upstream_events, upstream_want, kUpstream);
}

void TcpRelay::Impl::close_conn(Conn& c, bool reset) {
  const int client = c.client, upstream = c.upstream;
  conns.erase(c.id);  // destroys c
  publish_open();     // before the peers can see the close
  if (reset) {
    reset_close(client);
    reset_close(upstream);
  } else {
    ::close(client);
    ::close(upstream);
  }
}

void TcpRelay::Impl::publish_open() {
  std::lock_guard<std::mutex> lk(mu);
  published_open = conns.size();
}

void TcpRelay::Impl::expire_connects(Clock::time_point now) {
  std::vector<uint64_t> late;
  for (const auto& [id, c] : conns)
    if (c->connecting && now >= c->connect_deadline) late.push_back(id);
  for (uint64_t id : late) {
    Conn& c = *conns[id];
    if (hooks.on_connect_failed) hooks.on_connect_failed(c.route, c.backend);
    close_conn(c, /*reset=*/true);
  }
}

// ---- TcpRelay -------------------------------------------------------------------------------

TcpRelay::TcpRelay(TcpRelayOptions options, TcpRelayHooks hooks)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(hooks))) {}

TcpRelay::~TcpRelay() {
  stop();
}

Status TcpRelay::start() {
  return impl_->start();
}

void TcpRelay::stop() {
  impl_->stop();
}

void TcpRelay::set_listeners(const std::vector<RelayListener>& listeners) {
  std::map<std::string, RelayListener> next;
  for (const auto& l : listeners) next[l.address.address()] = l;
  std::lock_guard<std::mutex> lk(impl_->mu);
  const bool same = next.size() == impl_->wanted.size() &&
                    std::equal(next.begin(), next.end(), impl_->wanted.begin(), [](const auto& a, const auto& b) {
                      return a.first == b.first && a.second.route == b.second.route;
                    });
  if (same) return;
  impl_->wanted = std::move(next);
  ++impl_->wanted_version;
  impl_->wake();
}

std::map<std::string, std::string> TcpRelay::listeners() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->published_listeners;
}

std::map<std::string, std::string> TcpRelay::listener_errors() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->published_errors;
}

size_t TcpRelay::open_connections() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->published_open;
}

}  // namespace hotswap::devcluster
