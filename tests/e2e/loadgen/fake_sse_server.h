// An in-process OpenAI-style server on 127.0.0.1 for the load generator's tests: GET
// /v1/models lists one model, and each completion request is answered with a script chosen by
// the test from the request's JSON body: a status, headers, and either a plain body or a list
// of byte pieces streamed one by one (each flushed at once, after its delay).
//
// Threads: cpprest's listener threads call the handler, which records the request and hands
// streamed scripts to one writer thread per stream; the destructor wakes every writer that is
// still sleeping, joins them all, then closes the listener.
#pragma once

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/http.h"
#include "common/status.h"
#include "tests/e2e/loadgen/sse_script.h"

namespace hotswap::loadgen::fake {

struct ScriptPiece {
  std::chrono::milliseconds delay{0};  // before writing the bytes
  std::string bytes;
};

struct Script {
  int status = 200;
  std::string content_type = "text/event-stream";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                 // when `pieces` is empty: the whole body, with a Content-Length
  std::vector<ScriptPiece> pieces;  // a streamed (chunked) body
  bool cut = false;                 // end the streamed body by dropping the connection mid-chunk
};

class FakeSseServer {
 public:
  using ScriptFn = std::function<Script(const nlohmann::json& request)>;

  // Listens on a free loopback port (a few tries: the port is free when picked, not when bound).
  static StatusOr<std::unique_ptr<FakeSseServer>> start(ScriptFn script) {
    http::keep_listener_runtime_alive();
    std::string last_error;
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto port = http::pick_free_port();
      if (!port.ok()) return port.status();
      std::unique_ptr<FakeSseServer> s(new FakeSseServer(std::move(script), *port));
      try {
        s->listener_.open().wait();
        return s;
      } catch (const std::exception& e) {
        last_error = e.what();
        script = std::move(s->script_);
      }
    }
    return unavailable("fake server: could not listen: " + last_error);
  }

  ~FakeSseServer() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    std::vector<std::thread> writers;
    {
      std::lock_guard<std::mutex> lk(mu_);
      writers.swap(writers_);
    }
    for (auto& w : writers) w.join();
    try {
      listener_.close().wait();
    } catch (const std::exception&) {
    }
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // The bodies of the completion requests received, in arrival order.
  std::vector<nlohmann::json> requests() const {
    std::lock_guard<std::mutex> lk(mu_);
    return requests_;
  }

 private:
  FakeSseServer(ScriptFn script, int port)
      : script_(std::move(script)), port_(port), listener_(web::uri("http://127.0.0.1:" + std::to_string(port))) {
    listener_.support([this](web::http::http_request req) { handle(std::move(req)); });
  }

  void handle(web::http::http_request req) {
    const std::string path = req.relative_uri().path();
    if (req.method() == web::http::methods::GET && path == "/v1/models") {
      observe(http::reply_json(req, web::http::status_codes::OK,
                               {{"object", "list"}, {"data", {{{"id", "fake-model"}, {"object", "model"}}}}}));
      return;
    }
    if (req.method() != web::http::methods::POST || (path != "/v1/completions" && path != "/v1/chat/completions")) {
      observe(http::reply_json(req, web::http::status_codes::NotFound, {{"error", {{"message", "no route"}}}}));
      return;
    }
    nlohmann::json body;
    try {
      body = nlohmann::json::parse(req.extract_string(true).get());
    } catch (const std::exception& e) {
      observe(http::reply_json(req, web::http::status_codes::BadRequest, {{"error", {{"message", e.what()}}}}));
      return;
    }
    Script script = script_(body);
    {
      std::lock_guard<std::mutex> lk(mu_);
      requests_.push_back(body);
    }
    web::http::http_response response(static_cast<web::http::status_code>(script.status));
    for (const auto& [name, value] : script.headers) response.headers().add(name, value);
    if (script.pieces.empty()) {
      response.set_body(script.body, script.content_type);
      observe(req.reply(response));
      return;
    }
    concurrency::streams::producer_consumer_buffer<uint8_t> buffer;
    response.headers().set_content_type(script.content_type);
    response.set_body(buffer.create_istream());
    observe(req.reply(response));
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return;
    writers_.emplace_back([this, buffer, cut = script.cut, pieces = std::move(script.pieces)]() mutable {
      for (const ScriptPiece& piece : pieces) {
        {
          std::unique_lock<std::mutex> lk(mu_);
          if (cv_.wait_for(lk, piece.delay, [&] { return stopping_; })) break;
        }
        try {
          buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(piece.bytes.data()), piece.bytes.size()).wait();
          buffer.sync().wait();  // the listener sends a chunk only when it is flushed (or 64 KiB)
        } catch (const std::exception&) {
          break;
        }
      }
      try {
        if (cut)  // the listener drops the connection when the body stream fails
          buffer.close(std::ios_base::out, std::make_exception_ptr(std::runtime_error("cut"))).wait();
        else
          buffer.close(std::ios_base::out).wait();
      } catch (const std::exception&) {
      }
    });
  }

  // pplx terminates on an exception nobody looked at: a client gone makes reply() fail.
  static void observe(pplx::task<void> t) {
    t.then([](pplx::task<void> done) {
      try {
        done.get();
      } catch (...) {
      }
    });
  }

  ScriptFn script_;
  int port_;
  web::http::experimental::listener::http_listener listener_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::thread> writers_;
  std::vector<nlohmann::json> requests_;
};

}  // namespace hotswap::loadgen::fake
