#include "agent/server/engine_service.h"

#include <future>

namespace hotswap::agent {

EngineService::EngineService(std::unique_ptr<engine::Engine> engine, const EngineServiceOptions& options)
    : engine_(std::move(engine)), options_(options) {
  thread_ = std::thread([this] { loop(); });
}

EngineService::~EngineService() {
  shutdown();
}

void EngineService::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status EngineService::submit(engine::GenerationRequest request, std::shared_ptr<RequestSink> sink) {
  if (draining_.load()) return failed_precondition("the server is draining and takes no new requests");
  HOTSWAP_RETURN_IF_ERROR(engine_->validate(request));
  // Room for a full batch of running sequences plus the queue.
  const int64_t limit = int64_t{options_.max_queue} + engine_->max_num_seqs();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return unavailable("the server is shutting down");
    if (open_.load() >= limit)
      return resource_exhausted("the request queue is full (" + std::to_string(limit) + " requests open)");
    ++open_;
    inbox_.push_back({std::move(request), std::move(sink)});
  }
  cv_.notify_all();
  return Status();
}

void EngineService::cancel(const std::string& request_id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancels_.push_back(request_id);
  }
  cv_.notify_all();
}

std::map<std::string, std::shared_ptr<RequestSink>> EngineService::take_sinks(
    const std::vector<std::string>& request_ids) {
  std::map<std::string, std::shared_ptr<RequestSink>> out;
  for (const auto& id : request_ids) {
    auto it = sinks_.find(id);
    if (it == sinks_.end()) continue;
    out.emplace(id, std::move(it->second));
    sinks_.erase(it);
    --open_;
  }
  return out;
}

void EngineService::adopt_sink(const std::string& request_id, std::shared_ptr<RequestSink> sink) {
  if (sinks_.emplace(request_id, std::move(sink)).second) ++open_;
}

void EngineService::set_step_observer(std::function<void(const engine::EngineStats&)> observer) {
  std::lock_guard<std::mutex> lk(mu_);
  observer_ = std::move(observer);
}

Status EngineService::run_on_engine(const std::function<Status(engine::Engine&)>& fn,
                                    std::chrono::milliseconds timeout) {
  // If the wait times out before fn starts, fn is cancelled and never runs, so it may capture
  // the caller's locals by reference; once started, it is waited for (it is quick by contract).
  struct Call {
    std::mutex mu;
    bool started = false, cancelled = false;
    std::promise<Status> done;
  };
  auto call = std::make_shared<Call>();
  auto future = call->done.get_future();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return unavailable("the server is shutting down");
    tasks_.push_back([this, call, &fn] {
      {
        std::lock_guard<std::mutex> clk(call->mu);
        if (call->cancelled) return;
        call->started = true;
      }
      call->done.set_value(fn(*engine_));
    });
  }
  cv_.notify_all();
  if (future.wait_for(timeout) != std::future_status::ready) {
    std::lock_guard<std::mutex> clk(call->mu);
    if (!call->started) {
      call->cancelled = true;
      return unavailable("the engine did not answer within " + std::to_string(timeout.count()) + " ms");
    }
  }
  return future.get();
}

StatusOr<ServiceStatus> EngineService::status(std::chrono::milliseconds timeout) {
  ServiceStatus out;
  HOTSWAP_RETURN_IF_ERROR(run_on_engine(
      [&out, this](engine::Engine&) {
        out = snapshot_locked_engine();
        return Status();
      },
      timeout));
  return out;
}

ServiceStatus EngineService::snapshot_locked_engine() {
  ServiceStatus s;
  s.draining = draining_.load();
  s.open_requests = open_.load();
  s.engine = engine_->stats();
  s.sequences = engine_->sequences();
  return s;
}

void EngineService::loop() {
  std::vector<Pending> admitted;
  std::vector<std::string> cancels;
  std::vector<std::function<void()>> tasks;
  std::function<void(const engine::EngineStats&)> observer;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      // Idle: sleep until something arrives (bounded, so a stuck notify costs 100 ms at most).
      if (inbox_.empty() && cancels_.empty() && tasks_.empty() && !stop_ && !engine_->has_unfinished())
        cv_.wait_for(lk, std::chrono::milliseconds(100));
      if (stop_) break;
      while (!inbox_.empty()) {
        admitted.push_back(std::move(inbox_.front()));
        inbox_.pop_front();
      }
      cancels.swap(cancels_);
      tasks.swap(tasks_);
      observer = observer_;
    }
    for (auto& p : admitted) {
      std::string id = p.request.id;
      Status st = engine_->add_request(std::move(p.request));
      if (!st.ok()) {
        --open_;
        p.sink->on_failure(st);
        continue;
      }
      sinks_[id] = std::move(p.sink);
    }
    admitted.clear();
    for (const auto& id : cancels) {
      if (sinks_.count(id)) (void)engine_->cancel(id);  // its abort event arrives with the next step
    }
    cancels.clear();
    for (auto& t : tasks) t();
    tasks.clear();
    if (!engine_->has_unfinished()) continue;

    auto events = engine_->step();
    if (!events.ok()) {
      // A failed step leaves the batch in an unknown state: fail every open request.
      for (auto& [id, sink] : sinks_) {
        (void)engine_->cancel(id);
        sink->on_failure(events.status());
        --open_;
      }
      sinks_.clear();
      (void)engine_->step();  // drains the abort events
      continue;
    }
    for (const auto& ev : *events) {
      auto it = sinks_.find(ev.request_id);
      if (it == sinks_.end()) continue;
      it->second->on_event(ev);
      if (ev.finish != engine::FinishReason::kNone) {
        sinks_.erase(it);
        --open_;
      }
    }
    if (observer) observer(engine_->stats());
  }
  // Shutdown: whatever is still open ends now.
  for (auto& [id, sink] : sinks_) {
    sink->on_failure(unavailable("the server is shutting down"));
    --open_;
  }
  sinks_.clear();
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& p : inbox_) {
    p.sink->on_failure(unavailable("the server is shutting down"));
    --open_;
  }
  inbox_.clear();
}

}  // namespace hotswap::agent
