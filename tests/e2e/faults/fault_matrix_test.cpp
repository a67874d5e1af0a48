// The fault matrix over a live migration between two real agents (`make e2e-long`, label
// e2e-long, not in `make test`): kill -9 of the target or the source, a data channel cut
// mid-chunk, and a target that stops reading, each in pre-copy and in the switch (found by a
// relay that follows the snapshot stream's chunks), and kill -9 of either after the switch. Four clients stream through the source all along.
// Expected before the switch completes: the source fails the migration (pre-copy) or rolls the
// switch back, says why, and every stream finishes with exactly the tokens of an unmigrated
// run; the target (if alive) fails its side and keeps serving. After the switch: a dead
// source's clients resume on the target without loss or repeat; a dead target's streams end
// (they do not hang) and what they got is exact as far as it goes. The operator's own faults
// (restart and leader kill mid-migration) are the operator e2e tests'.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "tests/agent/server/agent_process.h"
#include "tests/agent/server/server_test_util.h"

namespace hotswap::agent {
namespace {

using nlohmann::json;
using testing::AgentProcess;
using testing::http_call;
using testing::HttpConnection;
using testing::HttpResponse;
using Clock = std::chrono::steady_clock;

const std::map<std::string, std::string> kAuth = {{"Authorization", "Bearer " + testing::kControlToken}};
constexpr int kClients = 4;
constexpr int kTokens = 900;

// Where in the snapshot stream (docs/snapshot-format.md) a fault strikes: in the middle of the
// first KvBlocks chunk's payload (pre-copy, round 0, mid-chunk), or in the middle of the End
// chunk's header (the switch: the sequences are paused and all but the End is sent).
enum class Point { kPreCopyFirstKv, kSwitchEnd };

const char* point_name(Point p) { return p == Point::kPreCopyFirstKv ? "PreCopyFirstKv" : "SwitchEnd"; }

// Follows the source-to-target chunk stream to find a Point's byte offset, and says how far
// the relay may forward before it must look again (it never passes a header's kind unread).
class ChunkTracker {
 public:
  explicit ChunkTracker(Point point) : point_(point) {}
  // The offset the fault strikes at, once known.
  uint64_t fault_at() const { return fault_at_; }
  // How far forwarding may go now without passing an undecided point.
  uint64_t limit() const {
    if (lost_) return UINT64_MAX;
    if (in_header_) return chunk_start_ + (header_.size() < 8 ? 8 : 32);
    return payload_end_;
  }
  void feed(const char* p, size_t n) {
    for (size_t i = 0; i < n && !lost_;) {
      if (in_header_) {
        header_.push_back(p[i++]);
        ++pos_;
        if (header_.size() == 8) {
          if (header_.compare(0, 4, "HSWP") != 0) {  // an ABORT, or a resend: stop following
            lost_ = true;
            return;
          }
          const uint16_t kind = static_cast<uint16_t>(static_cast<uint8_t>(header_[6]) |
                                                      (static_cast<uint8_t>(header_[7]) << 8));
          kind_ = kind;
          if (point_ == Point::kSwitchEnd && kind == 5 && fault_at_ == UINT64_MAX) fault_at_ = chunk_start_ + 16;
        }
        if (header_.size() == 32) {
          uint32_t len = 0;
          for (int k = 0; k < 4; ++k) len |= static_cast<uint32_t>(static_cast<uint8_t>(header_[16 + k])) << (8 * k);
          payload_end_ = pos_ + len;
          if (point_ == Point::kPreCopyFirstKv && kind_ == 3 && fault_at_ == UINT64_MAX) fault_at_ = pos_ + len / 2;
          in_header_ = len == 0;
          if (in_header_) start_chunk();
        }
      } else {
        const uint64_t take = std::min<uint64_t>(n - i, payload_end_ - pos_);
        i += take;
        pos_ += take;
        if (pos_ == payload_end_) start_chunk();
      }
    }
  }

 private:
  void start_chunk() {
    in_header_ = true;
    chunk_start_ = pos_;
    header_.clear();
  }
  Point point_;
  uint64_t pos_ = 0, chunk_start_ = 0, payload_end_ = 0, fault_at_ = UINT64_MAX;
  uint16_t kind_ = 0;
  bool in_header_ = true, lost_ = false;
  std::string header_;
};

// A TCP relay on the data channel, source to target, that follows the chunk stream and can
// hold at a Point (stop reading the source: a target that stops reading) or cut there (close
// both ends, mid-chunk). Acknowledgements flow back untouched.
class DataRelay {
 public:
  enum class Action { kNone, kHold, kCut };
  DataRelay(int target_port, Point point, Action action)
      : target_port_(target_port), tracker_(point), action_(action) {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    ::setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ::listen(listen_, 8);
    socklen_t len = sizeof(a);
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~DataRelay() {
    stop_ = true;
    ::shutdown(listen_, SHUT_RDWR);
    accept_thread_.join();
    for (auto& t : pumps_) t.join();
    ::close(listen_);
  }
  int port() const { return port_; }
  uint64_t forwarded() const { return forwarded_.load(); }
  void release() { released_ = true; }
  // Closes both ends now; what the source wrote past the hold never reaches the target.
  void drop() { dropped_ = true; }
  // Until the stream has reached the Point (held or cut there), at most `within`.
  bool wait_reached(std::chrono::milliseconds within) {
    const auto deadline = Clock::now() + within;
    while (Clock::now() < deadline && !reached_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return reached_.load();
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int s = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (s < 0) continue;
      const int t = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(target_port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(t, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        ::close(s);
        ::close(t);
        continue;
      }
      pumps_.emplace_back([this, s, t] { pump(s, t); });
    }
  }
  void pump(int s, int t) {
    std::vector<char> buf(64 << 10);
    bool open = true;
    while (open && !stop_ && !dropped_.load()) {
      const uint64_t pos = forwarded_.load();
      const bool armed = action_ != Action::kNone && !released_.load();
      if (armed && pos >= tracker_.fault_at()) {
        reached_ = true;
        if (action_ == Action::kCut) break;
      }
      const uint64_t limit = std::min(tracker_.limit(), armed ? tracker_.fault_at() : UINT64_MAX);
      const bool read_source = pos < limit;
      pollfd p[2] = {{s, static_cast<short>(read_source ? POLLIN : 0), 0}, {t, POLLIN, 0}};
      if (::poll(p, 2, 20) < 0) break;
      if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && read_source) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), limit - pos));
        const ssize_t n = ::recv(s, buf.data(), want, 0);
        if (n <= 0 || !send_all(t, buf.data(), static_cast<size_t>(n))) {
          open = false;
        } else {
          tracker_.feed(buf.data(), static_cast<size_t>(n));
          forwarded_ += static_cast<uint64_t>(n);
        }
      }
      if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = ::recv(t, buf.data(), buf.size(), 0);
        if (n <= 0 || !send_all(s, buf.data(), static_cast<size_t>(n))) open = false;
      }
    }
    ::shutdown(s, SHUT_RDWR);
    ::shutdown(t, SHUT_RDWR);
    ::close(s);
    ::close(t);
  }
  static bool send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
      const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
      if (k <= 0) return false;
      p += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  }

  int target_port_;
  ChunkTracker tracker_;  // the pump's thread only (one data connection per migration)
  Action action_;
  int listen_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, released_{false}, reached_{false}, dropped_{false};
  std::atomic<uint64_t> forwarded_{0};
  std::thread accept_thread_;
  std::vector<std::thread> pumps_;
};

std::string stream_body(int i) {
  return json{{"model", "tiny"},
              {"prompt", "fault client " + std::to_string(i)},
              {"max_tokens", kTokens},
              {"temperature", i % 2 ? 0.7 : 0.0},
              {"seed", 40 + i},
              {"ignore_eos", true},
              {"stream", true}}
      .dump();
}

// One streaming client: the body as it arrived, and when each piece with tokens came.
struct StreamClient {
  int port;
  int index;
  std::string body;
  std::vector<Clock::time_point> arrivals;
  std::atomic<int> pieces{0};
  std::atomic<bool> done{false};
  std::thread thread;
  StreamClient(int p, int i) : port(p), index(i) {
    thread = std::thread([this] {
      HttpConnection c(port, std::chrono::seconds(150));
      HttpResponse head;
      if (c.send_request("POST", "/v1/completions", stream_body(index)) && c.read_head(&head) && head.status == 200) {
        while (auto piece = c.read_body_piece()) {
          body += *piece;
          if (piece->find("\"token_ids\"") != std::string::npos) arrivals.push_back(Clock::now());  // not keep-alives
          ++pieces;
        }
      }
      done = true;
    });
  }
  ~StreamClient() { join(); }
  void join() {
    if (thread.joinable()) thread.join();
  }
  // The longest wait between two pieces with tokens.
  double max_gap_s() const {
    double gap = 0;
    for (size_t i = 1; i < arrivals.size(); ++i)
      gap = std::max(gap, std::chrono::duration<double>(arrivals[i] - arrivals[i - 1]).count());
    return gap;
  }
};

class FaultMatrix : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = engine::testing::tiny_model();
    model_ = engine::Model::load(model_dir_).value();
    for (int i = 0; i < kClients; ++i)
      want_.push_back(testing::reference_tokens(model_, model_->tokenizer().encode("fault client " + std::to_string(i)),
                                                kTokens, i % 2 ? 0.7f : 0.0f, 40 + i));
  }
  // Decoding at a sixteenth of the CPU's speed, so the streams outlast every fault.
  std::unique_ptr<AgentProcess> agent(const std::string& name) {
    const std::string log = engine::testing::temp_dir("fault-" + name) + "/agent.log";
    logs_.push_back(log);
    auto a = std::make_unique<AgentProcess>(
        model_dir_,
        std::vector<std::string>{"--allow-plaintext-migration", "--speed-factor", "1", "--speed-reference", "16"},
        std::vector<std::pair<std::string, std::string>>{}, log);
    EXPECT_TRUE(a->wait_ready());
    return a;
  }
  void start_clients(int port) {
    for (int i = 0; i < kClients; ++i) clients_.push_back(std::make_unique<StreamClient>(port, i));
    for (auto& c : clients_)
      for (int i = 0; i < 3000 && c->pieces.load() < 20; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Prepares on the target and starts on the source, over a relay armed with (point, action);
  // returns at once.
  void start_migration(const AgentProcess& source, const AgentProcess& target, std::unique_ptr<DataRelay>* relay,
                       Point point = Point::kSwitchEnd, DataRelay::Action action = DataRelay::Action::kNone) {
    HttpResponse prep = http_call(target.port, "POST", "/control/v1/migrations",
                                  json{{"id", "f1"}, {"source", source.url()}}.dump(), kAuth);
    ASSERT_EQ(prep.status, 200) << prep.body;
    const std::string ep = json::parse(prep.body)["data_endpoint"];
    ASSERT_EQ(ep.rfind("tcp://127.0.0.1:", 0), 0u) << ep;
    *relay = std::make_unique<DataRelay>(std::stoi(ep.substr(ep.rfind(':') + 1)), point, action);
    HttpResponse start = http_call(
        source.port, "POST", "/control/v1/migrations/f1/start",
        json{{"data_endpoint", "tcp://127.0.0.1:" + std::to_string((*relay)->port())},
             {"target_url", target.url()},
             {"mode", "kv"},
             {"downtime_budget_ms", 20}}
            .dump(),
        kAuth);
    ASSERT_EQ(start.status, 200) << start.body;
  }
  // Two agents, the clients streaming through the first, and a migration to the second over a
  // relay armed with (point, action); when armed, until the stream reaches the point.
  struct Run {
    std::unique_ptr<AgentProcess> a, b;
    std::unique_ptr<DataRelay> relay;
  };
  Run run_to(const std::string& name, Point point = Point::kSwitchEnd,
             DataRelay::Action action = DataRelay::Action::kNone) {
    Run r;
    r.a = agent(name + "-a");
    r.b = agent(name + "-b");
    start_clients(r.a->port);
    start_migration(*r.a, *r.b, &r.relay, point, action);
    if (!r.relay) {
      ADD_FAILURE() << "the migration did not start";
      return r;
    }
    if (action != DataRelay::Action::kNone) {
      EXPECT_TRUE(r.relay->wait_reached(std::chrono::seconds(30))) << "the stream never reached " << point_name(point);
      expect_streams_live();
    }
    return r;
  }
  // The migration's status on an agent once its phase is one of `phases`, at most `within`.
  static json wait_phase(const AgentProcess& a, const std::set<std::string>& phases,
                         std::chrono::seconds within = std::chrono::seconds(45)) {
    json st;
    const auto deadline = Clock::now() + within;
    while (Clock::now() < deadline) {
      HttpResponse r = http_call(a.port, "GET", "/control/v1/migrations/f1", "", kAuth);
      if (r.status == 200) {
        st = json::parse(r.body);
        if (phases.count(st["phase"].get<std::string>())) return st;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return st;
  }
  // Every stream complete, with exactly the unmigrated tokens.
  void expect_streams_exact() {
    for (auto& c : clients_) {
      c->join();
      EXPECT_EQ(testing::stream_tokens(c->body), want_[c->index]) << "client " << c->index;
    }
  }
  // The source did not switch and says why: Failed for a fault in pre-copy (nothing was
  // paused), RolledBack for one in the switch (the paused sequences resumed here).
  void expect_source_kept_serving(const AgentProcess& source, Point point) {
    json st = wait_phase(source, {"RolledBack", "Failed", "Completed", "Draining"});
    EXPECT_EQ(st["phase"], point == Point::kPreCopyFirstKv ? "Failed" : "RolledBack") << st.dump();
    const std::string why = st.value("error", st["report"].value("error", std::string()));
    EXPECT_FALSE(why.empty()) << "the source says why: " << st.dump();
    std::cerr << "source: " << st["phase"].get<std::string>() << ": " << why << "\n";
  }
  // Each client, its source gone, resumes on `target` from its last event: exact in all.
  void expect_clients_resume_exactly_on(const AgentProcess& target) {
    for (auto& c : clients_) {
      c->join();
      std::string seen = c->body.substr(0, c->body.rfind("\n\n") + 2);
      auto events = testing::parse_sse(seen);
      ASSERT_FALSE(events.empty()) << "client " << c->index;
      const std::string id = json::parse(events[0].second)["id"];
      HttpResponse rest = http_call(target.port, "GET", "/v1/streams/" + id, "",
                                    {{"Last-Event-ID", std::to_string(events.back().first)}});
      ASSERT_EQ(rest.status, 200) << rest.body;
      EXPECT_EQ(testing::stream_tokens(seen + rest.body), want_[c->index]) << "client " << c->index;
    }
  }
  // The fault struck while every client was still streaming (else it proved nothing).
  void expect_streams_live() {
    for (auto& c : clients_) EXPECT_FALSE(c->done.load()) << "client " << c->index << " had finished before the fault";
  }
  void TearDown() override {
    if (HasFailure())
      for (const auto& log : logs_) {
        std::ifstream in(log);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::cerr << "---- " << log << "\n" << text.substr(text.size() > 6000 ? text.size() - 6000 : 0) << "\n";
      }
  }

  static std::string model_dir_;
  static std::shared_ptr<const engine::Model> model_;
  static std::vector<std::vector<int32_t>> want_;
  std::vector<std::string> logs_;
  std::vector<std::unique_ptr<StreamClient>> clients_;
};

std::string FaultMatrix::model_dir_;
std::shared_ptr<const engine::Model> FaultMatrix::model_;
std::vector<std::vector<int32_t>> FaultMatrix::want_;

// The baseline: the same load through the same relay, nothing faulted.
TEST_F(FaultMatrix, ACleanMigrationIsExact) {
  auto [a, b, relay] = run_to("clean");
  if (HasFailure()) return;  // the setup said what went wrong
  json st = wait_phase(*a, {"Draining", "Completed", "RolledBack", "Failed"});
  ASSERT_TRUE(st["phase"] == "Draining" || st["phase"] == "Completed") << st.dump();
  expect_streams_exact();
  std::cerr << "clean migration: " << relay->forwarded() << " bytes on the data channel\n";
}

class FaultAt : public FaultMatrix, public ::testing::WithParamInterface<Point> {};

TEST_P(FaultAt, ADataChannelCutMidChunkLosesNothing) {
  auto [a, b, relay] = run_to("cut", GetParam(), DataRelay::Action::kCut);
  if (HasFailure()) return;  // the setup said what went wrong
  expect_source_kept_serving(*a, GetParam());
  EXPECT_EQ(wait_phase(*b, {"Failed", "Completed"})["phase"], "Failed");
  EXPECT_EQ(http_call(b->port, "GET", "/readyz").status, 200);
  expect_streams_exact();
}

TEST_P(FaultAt, KillingTheTargetLosesNothing) {
  auto [a, b, relay] = run_to("kill-target", GetParam(), DataRelay::Action::kHold);
  if (HasFailure()) return;  // the setup said what went wrong
  b->kill9();
  relay->release();
  expect_source_kept_serving(*a, GetParam());
  expect_streams_exact();
}

TEST_P(FaultAt, ATargetThatStopsReadingIsGivenUpOnAndLosesNothing) {
  auto [a, b, relay] = run_to("stall", GetParam(), DataRelay::Action::kHold);
  if (HasFailure()) return;  // the setup said what went wrong
  const auto held = Clock::now();
  expect_source_kept_serving(*a, GetParam());  // pre-copy: the transfer timeout; the switch: its deadline
  std::cerr << "given up on after " << std::chrono::duration<double>(Clock::now() - held).count() << " s\n";
  expect_streams_exact();
  for (auto& c : clients_)
    std::cerr << "client " << c->index << ": longest gap between tokens " << c->max_gap_s() << " s\n";
  if (GetParam() == Point::kPreCopyFirstKv) {
    for (auto& c : clients_) EXPECT_LT(c->max_gap_s(), 5.0) << "client " << c->index << ": pre-copy pauses nothing";
  } else {
    for (auto& c : clients_)
      EXPECT_LT(c->max_gap_s(), 5.0) << "client " << c->index << ": the switch's deadline (2 s here) bounds the pause";
  }
}

// The source dies at the point, and nothing it wrote after it reaches the target.
TEST_P(FaultAt, KillingTheSourceEndsTheTargetsSideAndTheTargetServesOn) {
  auto [a, b, relay] = run_to("kill-source", GetParam(), DataRelay::Action::kHold);
  if (HasFailure()) return;  // the setup said what went wrong
  a->kill9();
  relay->drop();
  json st = wait_phase(*b, {"Failed", "Completed"});
  EXPECT_EQ(st["phase"], "Failed") << st.dump();
  EXPECT_FALSE(st.value("error", std::string()).empty()) << st.dump();
  std::cerr << "target: " << st.value("error", std::string()) << "\n";
  EXPECT_EQ(http_call(b->port, "GET", "/readyz").status, 200);
  json status = json::parse(http_call(b->port, "GET", "/control/v1/status", "", kAuth).body);
  EXPECT_EQ(status["running"], 0) << status.dump();
  EXPECT_EQ(status["kv_blocks"]["used"], 0) << "nothing of the migration left behind: " << status.dump();
  // And a new request is served as if nothing had happened.
  HttpResponse r = http_call(b->port, "POST", "/v1/completions",
                             json{{"model", "tiny"}, {"prompt", "fault client 0"}, {"max_tokens", 16},
                                  {"temperature", 0.0}, {"seed", 40}, {"ignore_eos", true}}
                                 .dump());
  ASSERT_EQ(r.status, 200) << r.body;
  auto got = json::parse(r.body)["choices"][0]["token_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(got, std::vector<int32_t>(want_[0].begin(), want_[0].begin() + 16));
  for (auto& c : clients_) c->join();  // their replica died: the streams end, none hangs
}

INSTANTIATE_TEST_SUITE_P(Points, FaultAt, ::testing::Values(Point::kPreCopyFirstKv, Point::kSwitchEnd),
                         [](const auto& info) { return std::string(point_name(info.param)); });

TEST_F(FaultMatrix, AfterTheSwitchASourceKilledHasItsClientsResumeOnTheTarget) {
  auto [a, b, relay] = run_to("after");
  if (HasFailure()) return;  // the setup said what went wrong
  json st = wait_phase(*a, {"Draining", "Completed", "RolledBack", "Failed"});
  ASSERT_EQ(st["phase"], "Draining") << st.dump();
  a->kill9();
  expect_clients_resume_exactly_on(*b);
}

// The source dies in the switch after its End left (the kernel delivers what a killed process
// wrote): the target has every sequence and no one to reply to. It keeps them, says so, and
// the clients resume there.
TEST_F(FaultMatrix, ASourceKilledAfterItsEndLeftButBeforeTheReplyHasItsClientsResumeOnTheTarget) {
  auto [a, b, relay] = run_to("end-left", Point::kSwitchEnd, DataRelay::Action::kHold);
  if (HasFailure()) return;  // the setup said what went wrong
  a->kill9();
  relay->release();
  json st = wait_phase(*b, {"Failed", "Completed"});
  EXPECT_EQ(st["phase"], "Completed") << st.dump();
  EXPECT_NE(st.value("error", std::string()).find("imported, but the reply did not go out"), std::string::npos)
      << st.dump();
  expect_clients_resume_exactly_on(*b);
}

TEST_F(FaultMatrix, AfterTheSwitchATargetKilledEndsItsRelayedStreamsWithoutARepeat) {
  auto [a, b, relay] = run_to("after-target");
  if (HasFailure()) return;  // the setup said what went wrong
  json st = wait_phase(*a, {"Draining", "Completed", "RolledBack", "Failed"});
  ASSERT_EQ(st["phase"], "Draining") << st.dump();
  b->kill9();
  for (auto& c : clients_) {
    c->join();  // ends: the source stops relaying a stream whose target is gone
    std::string seen = c->body.substr(0, c->body.rfind("\n\n") + 2);
    std::vector<int32_t> got;
    auto events = testing::parse_sse(seen);
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].first, static_cast<long long>(i)) << "client " << c->index << ": no event lost or repeated";
      if (events[i].second == "[DONE]") continue;
      auto j = json::parse(events[i].second);
      if (j.contains("choices") && !j["choices"].empty())
        for (const auto& t : j["choices"][0]["token_ids"]) got.push_back(t.get<int32_t>());
    }
    ASSERT_LE(got.size(), want_[c->index].size());
    EXPECT_EQ(got, std::vector<int32_t>(want_[c->index].begin(), want_[c->index].begin() + got.size()))
        << "client " << c->index << ": what arrived is exact as far as it goes";
  }
  json after = wait_phase(*a, {"Completed"});
  EXPECT_EQ(after["phase"], "Completed") << "the source's relays all ended: " << after.dump();
}

}  // namespace
}  // namespace hotswap::agent
