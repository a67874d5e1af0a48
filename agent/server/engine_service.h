// Runs the Engine on a thread of its own and lets the HTTP handlers (on cpprestsdk's pool)
// share it: they submit requests with a RequestSink, and the engine thread hands each request's
// events to its sink as steps complete.
//
// Threads: the Engine is touched only by the engine thread. Other threads talk to it through
// the inbox (submit, cancel, status requests) under mu_. Sinks are called on the engine thread
// and must not block.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/engine/engine.h"
#include "common/status.h"

namespace hotswap::agent {

class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // The request's next event. Called on the engine thread; must not block.
  virtual void on_event(const engine::TokenEvent& event) = 0;
  // The request ended without finishing (engine failure or shutdown). Called once, last.
  virtual void on_failure(const Status& status) = 0;
  // The request goes on elsewhere but this agent stops following it (it is shutting down):
  // end the client's connection without ending the stream, so the client resumes where the
  // request now runs.
  virtual void on_abandoned() { on_failure(unavailable("this agent no longer follows the request")); }
};

struct EngineServiceOptions {
  int max_queue = 256;  // requests waiting beyond the engine's max_num_seqs; more get 429
};

// A view of the service for /control/v1/status and /metrics.
struct ServiceStatus {
  bool draining = false;
  int64_t open_requests = 0;
  engine::EngineStats engine;
  std::vector<engine::SequenceInfo> sequences;
};

class EngineService {
 public:
  EngineService(std::unique_ptr<engine::Engine> engine, const EngineServiceOptions& options);
  ~EngineService();  // shutdown()
  // Stops the engine thread; open requests get on_failure, later submits are refused.
  void shutdown();
  EngineService(const EngineService&) = delete;
  EngineService& operator=(const EngineService&) = delete;

  // Validates and queues a request. Errors, with nothing queued: the request is invalid
  // (kInvalidArgument), the queue is full (kResourceExhausted), the service is draining
  // (kFailedPrecondition).
  Status submit(engine::GenerationRequest request, std::shared_ptr<RequestSink> sink);
  // Ends a request (a client went away): its blocks are freed on the next engine iteration.
  void cancel(const std::string& request_id);

  // Stop taking new requests; running ones go on.
  void drain() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  int64_t open_requests() const { return open_.load(); }

  // A consistent snapshot, taken on the engine thread; waits at most `timeout`.
  StatusOr<ServiceStatus> status(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  // Runs fn on the engine thread between steps (migration reads and changes the engine there)
  // and waits for it, at most `timeout`. fn must be quick: the batch waits meanwhile.
  Status run_on_engine(const std::function<Status(engine::Engine&)>& fn,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  const engine::Engine& engine() const { return *engine_; }

  // Migration, from inside run_on_engine (the engine thread): take_sinks() hands over the sinks
  // of sequences detached from the engine (they continue elsewhere; no failure is reported to
  // them), adopt_sink() gives a sequence imported into the engine its sink. Each adjusts the
  // open-request count.
  std::map<std::string, std::shared_ptr<RequestSink>> take_sinks(const std::vector<std::string>& request_ids);
  void adopt_sink(const std::string& request_id, std::shared_ptr<RequestSink> sink);
  // The sink of an open request, or null (engine thread only).
  std::shared_ptr<RequestSink> sink_of(const std::string& request_id) const {
    auto it = sinks_.find(request_id);
    return it == sinks_.end() ? nullptr : it->second;
  }

  // Called on the engine thread after every step, with the engine's counters.
  void set_step_observer(std::function<void(const engine::EngineStats&)> observer);

 private:
  struct Pending {
    engine::GenerationRequest request;
    std::shared_ptr<RequestSink> sink;
  };
  void loop();
  ServiceStatus snapshot_locked_engine();

  std::unique_ptr<engine::Engine> engine_;
  EngineServiceOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> inbox_;
  std::vector<std::string> cancels_;
  std::vector<std::function<void()>> tasks_;  // run on the engine thread
  bool stop_ = false;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> open_{0};
  std::map<std::string, std::shared_ptr<RequestSink>> sinks_;  // engine thread only
  std::function<void(const engine::EngineStats&)> observer_;
  std::thread thread_;
};

}  // namespace hotswap::agent
