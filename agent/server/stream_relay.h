// Follows a stream on another agent and feeds its events into a local RequestSink, so a client
// still connected here keeps receiving its tokens after its sequence moved (DESIGN.md,
// "Draining": the source relays the target's tokens into the client connections it holds).
//
// It reads GET {url}/v1/streams/{id} with Last-Event-ID, and turns each chunk back into engine
// events (token ids, text, finish reason) with indices continuing from first_index. The local
// sink formats them as it always does, numbering events from where it stopped, which is where
// the target's numbering starts too: the client sees one unbroken stream. Usage chunks and
// [DONE] are the local sink's own to make.
//
// Threads: events reach the sink on cpprestsdk's I/O threads, one at a time; `done` is called
// once, from one of them.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "agent/server/engine_service.h"
#include "common/status.h"

namespace hotswap::agent {

struct StreamRelayOptions {
  std::string url;         // the other agent, http://host:port
  std::string request_id;  // the stream's id there
  int64_t last_event_id = -1;
  int64_t first_index = 0;  // index of the first token that will arrive
  std::chrono::seconds timeout{600};
};

class StreamRelay {
 public:
  // Starts following; `done` gets OK when the stream finished (its finish reached the sink), or
  // the error that ended it (the sink then got on_failure too).
  static std::shared_ptr<StreamRelay> start(const StreamRelayOptions& options, std::shared_ptr<RequestSink> sink,
                                            std::function<void(const Status&)> done);
  // Stops following (the connection closes): the sink is abandoned (its client's connection
  // ends without the stream ending, to resume on the other agent); `done` reports it.
  void cancel();

  class Impl;

 private:
  explicit StreamRelay(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace hotswap::agent
