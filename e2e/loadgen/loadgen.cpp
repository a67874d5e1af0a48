#include "e2e/loadgen/loadgen.h"

#include "common/http_body_sink.h"

#include <cpprest/astreambuf.h>
#include <cpprest/http_client.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

namespace hotswap::loadgen {

using nlohmann::json;
namespace http = web::http;

namespace {

// ---- prompts -----------------------------------------------------------------------------

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr const char* kWords[] = {
    "the",    "a",      "river",   "stone",  "light",  "window", "quiet",  "morning", "engine",  "garden", "north",
    "silver", "paper",  "bridge",  "winter", "market", "slowly", "bright", "number",  "forest",  "signal", "harbor",
    "copper", "letter", "distant", "orange", "thread", "valley", "simple", "kettle",  "lantern", "mirror", "pocket",
    "rabbit", "saddle", "timber",  "velvet", "wander", "yellow", "anchor", "basket",  "candle",  "dragon", "fabric",
    "gentle", "hollow", "island",  "jacket", "kindle", "ladder", "meadow", "needle",  "oyster",  "pepper", "quartz",
    "ribbon", "summer", "tunnel",  "umbra",  "violet", "walnut", "zephyr", "and",     "of",
};
constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);

// ---- waiting on pplx tasks with a deadline -------------------------------------------------

// The outcome of a pplx task, shared by its continuation and the thread waiting on it, so a
// waiter that gives up leaves nothing dangling. Every task handed to watch() is observed
// (pplx terminates the process on an exception nobody observed).
template <typename T>
struct Pending {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::optional<T> value;
  std::exception_ptr error;

  // Waits until the task is done or `deadline` passes; true when done.
  bool wait_until(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_until(lk, deadline, [&] { return done; });
  }
};

template <typename T>
std::shared_ptr<Pending<T>> watch(pplx::task<T> task) {
  auto p = std::make_shared<Pending<T>>();
  task.then([p](pplx::task<T> t) {
    std::optional<T> value;
    std::exception_ptr error;
    try {
      value.emplace(t.get());
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(p->mu);
      p->value = std::move(value);
      p->error = error;
      p->done = true;
    }
    p->cv.notify_all();
  });
  return p;
}

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const pplx::task_canceled&) {
    return "canceled";
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

// ---- the arrival sink ------------------------------------------------------------------------

// The response body's sink (common/http_body_sink.h): each piece, stamped with the time cpprest
// read it, goes to the recorder.
class ArrivalSink : public hotswap::http::BodySink {
 public:
  explicit ArrivalSink(bool chat) : recorder_(chat) {}

  // Stops recording: bytes that arrive later are dropped. Then fills `result` from what came.
  void finish(RequestResult& result) {
    std::lock_guard<std::mutex> lk(mu_);
    detached_ = true;
    recorder_.finish(result);
  }
  std::string body_prefix() {
    std::lock_guard<std::mutex> lk(mu_);
    return recorder_.body_prefix();
  }

 protected:
  void on_bytes(const uint8_t* ptr, size_t count, Clock::time_point arrival) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (detached_) return;
    recorder_.on_bytes(std::string_view(reinterpret_cast<const char*>(ptr), count), arrival);
  }

 private:
  std::mutex mu_;  // an I/O thread feeding vs the worker finishing
  bool detached_ = false;
  CompletionStreamRecorder recorder_;
};

// ---- one request --------------------------------------------------------------------------

std::string seconds_text(double s) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%g s", s);
  return buf;
}

std::string trim_url(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

Status check_url(const std::string& url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    return invalid_argument("url '" + url + "' must start with http:// or https://");
  if (!web::uri::validate(url)) return invalid_argument("url '" + url + "' is not a valid URI");
  return Status();
}

http::client::http_client_config client_config(double timeout_s) {
  http::client::http_client_config cfg;
  // cpprest's own timeout closes a connection idle this long; ours (per request, total) is
  // shorter, so this one only guards the waits we cannot bound ourselves.
  cfg.set_timeout(std::chrono::microseconds(static_cast<int64_t>((timeout_s + 5) * 1e6)));
  return cfg;
}

// The message of an OpenAI error body ({"error":{"message":...}}), else the body itself.
std::string error_message_from_body(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    auto e = j.find("error");
    if (e != j.end() && e->is_object()) {
      auto m = e->find("message");
      if (m != e->end() && m->is_string()) return m->get<std::string>();
    }
  }
  return body.substr(0, 300);
}

std::optional<double> retry_after_seconds(const http::http_headers& headers) {
  auto it = headers.find(U("Retry-After"));
  if (it == headers.end()) return std::nullopt;
  try {
    size_t used = 0;
    double s = std::stod(it->second, &used);
    if (used == it->second.size() && s >= 0) return s;
  } catch (const std::exception&) {
  }
  return std::nullopt;  // an HTTP date, or garbage: not worth a failure
}

// Waits (bounded) for a task we gave up on to settle, so its connection is released before the
// worker moves on.
template <typename T>
void let_settle(Pending<T>& pending) {
  pending.wait_until(Clock::now() + std::chrono::seconds(2));
}

RequestResult run_one(http::client::http_client& client, const LoadgenConfig& config, const std::string& model,
                      int64_t index) {
  RequestResult r;
  r.index = index;
  r.seed = config.seed + index;

  auto sink = std::make_shared<ArrivalSink>(config.chat);
  http::http_request request(http::methods::POST);
  request.set_request_uri(request_path(config));
  request.headers().add(U("Accept"), U("text/event-stream"));
  request.set_body(make_request_body(config, model, index).dump(), "application/json");
  request.set_response_stream(concurrency::streams::streambuf<uint8_t>(sink).create_ostream());
  pplx::cancellation_token_source cancel;

  const auto timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.request_timeout_s));
  r.sent = Clock::now();
  const Clock::time_point deadline = r.sent + timeout;
  std::shared_ptr<Pending<http::http_response>> headers;
  try {
    headers = watch(client.request(request, cancel.get_token()));
  } catch (const std::exception& e) {
    r.outcome = Outcome::kConnectionError;
    r.error = std::string("sending the request: ") + e.what();
    return r;
  }

  if (!headers->wait_until(deadline)) {
    cancel.cancel();
    let_settle(*headers);
    sink->finish(r);
    r.outcome = Outcome::kTimeout;
    r.error = "no response headers within " + seconds_text(config.request_timeout_s);
    return r;
  }
  if (headers->error) {
    sink->finish(r);
    r.outcome = Outcome::kConnectionError;
    r.error = describe(headers->error);
    return r;
  }
  http::http_response response = *headers->value;
  r.http_status = response.status_code();
  r.retry_after_s = retry_after_seconds(response.headers());
  const std::string content_type = response.headers().content_type();
  {
    std::string te;
    r.body_unchunked =
        r.http_status == http::status_codes::OK &&
        !(response.headers().match(U("Transfer-Encoding"), te) && te.find("chunked") != std::string::npos);
  }

  auto body = watch(response.content_ready());
  const bool body_done = body->wait_until(deadline);
  if (!body_done) {
    cancel.cancel();
    let_settle(*body);
  }
  sink->finish(r);  // tokens and ids so far, even for a failure

  if (r.http_status != http::status_codes::OK) {
    r.outcome = Outcome::kHttpStatus;
    r.error = "HTTP " + std::to_string(r.http_status) + ": " + error_message_from_body(sink->body_prefix());
  } else if (!body_done) {
    r.outcome = Outcome::kTimeout;
    r.error = "stream not finished within " + seconds_text(config.request_timeout_s) + " (" +
              std::to_string(r.token_ids.size()) + " tokens received)";
  } else if (body->error) {
    r.outcome = Outcome::kConnectionError;
    r.error = "reading the stream after " + std::to_string(r.token_ids.size()) + " tokens: " + describe(body->error);
  } else if (content_type.rfind("text/event-stream", 0) != 0) {
    r.outcome = Outcome::kBadJson;
    r.error = "Content-Type is '" + content_type + "', not text/event-stream";
  }
  // Otherwise the outcome the recorder found stands.
  return r;
}

}  // namespace

// ---- public ---------------------------------------------------------------------------------

std::string make_prompt(int64_t seed, int64_t index, int64_t words) {
  uint64_t state = splitmix64(splitmix64(static_cast<uint64_t>(seed)) ^ static_cast<uint64_t>(index));
  std::string prompt;
  for (int64_t k = 0; k < words; ++k) {
    state = splitmix64(state);
    if (k > 0) prompt.push_back(' ');
    prompt += kWords[state % kWordCount];
  }
  return prompt;
}

std::string request_path(const LoadgenConfig& config) {
  return config.chat ? "/v1/chat/completions" : "/v1/completions";
}

json make_request_body(const LoadgenConfig& config, const std::string& model, int64_t index) {
  json body = {{"model", model},
               {"max_tokens", config.max_tokens},
               {"temperature", config.temperature},
               {"seed", config.seed + index},
               {"stream", true}};
  if (config.ignore_eos) body["ignore_eos"] = true;
  std::string prompt = make_prompt(config.seed, index, config.prompt_words);
  if (config.chat) {
    body["messages"] = json::array({{{"role", "user"}, {"content", prompt}}});
  } else if (!config.prompt_ids.empty()) {
    body["prompt"] = config.prompt_ids;
  } else {
    body["prompt"] = prompt;
  }
  return body;
}

StatusOr<std::string> fetch_first_model_id(const std::string& url_in, double timeout_s) {
  const std::string url = trim_url(url_in);
  HOTSWAP_RETURN_IF_ERROR(check_url(url));
  const std::string where = "GET " + url + "/v1/models";
  try {
    http::client::http_client client(url, client_config(timeout_s));
    pplx::cancellation_token_source cancel;
    auto deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    auto response = watch(client.request(http::methods::GET, U("/v1/models"), cancel.get_token()));
    if (!response->wait_until(deadline)) {
      cancel.cancel();
      let_settle(*response);
      return unavailable(where + ": no response within " + seconds_text(timeout_s));
    }
    if (response->error) return unavailable(where + ": " + describe(response->error));
    http::http_response resp = *response->value;
    auto body = watch(resp.extract_string(/*ignore_content_type=*/true));
    if (!body->wait_until(deadline)) {
      cancel.cancel();
      let_settle(*body);
      return unavailable(where + ": body not read within " + seconds_text(timeout_s));
    }
    if (body->error) return unavailable(where + ": " + describe(body->error));
    if (resp.status_code() != http::status_codes::OK)
      return unavailable(where + ": HTTP " + std::to_string(resp.status_code()) + ": " +
                         error_message_from_body(*body->value));
    json j = json::parse(*body->value, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array())
      return unavailable(where + ": the body is not a model list");
    for (const json& m : j["data"]) {
      if (m.is_object() && m.contains("id") && m["id"].is_string()) return m["id"].get<std::string>();
    }
    return unavailable(where + ": the server lists no model; pass --model");
  } catch (const std::exception& e) {
    return unavailable(where + ": " + e.what());
  }
}

StatusOr<LoadRun> run_load(const LoadgenConfig& config_in) {
  LoadgenConfig config = config_in;
  config.url = trim_url(config.url);
  HOTSWAP_RETURN_IF_ERROR(check_url(config.url));
  if (config.streams < 1) return invalid_argument("streams must be at least 1");
  if (config.requests < 1) return invalid_argument("requests must be at least 1");
  if (config.chat && !config.prompt_ids.empty())
    return invalid_argument("prompt token ids go to /v1/completions only, not to chat");
  if (!(config.request_timeout_s > 0)) return invalid_argument("request timeout must be positive");

  LoadRun run;
  run.planned = config.requests;
  run.model = config.model;
  if (run.model.empty()) {
    HOTSWAP_ASSIGN_OR_RETURN(run.model, fetch_first_model_id(config.url, std::min(config.request_timeout_s, 30.0)));
  }

  std::unique_ptr<http::client::http_client> client;
  try {
    client = std::make_unique<http::client::http_client>(config.url, client_config(config.request_timeout_s));
  } catch (const std::exception& e) {
    return invalid_argument("url '" + config.url + "': " + e.what());
  }

  std::vector<RequestResult> results(static_cast<size_t>(config.requests));
  std::atomic<int64_t> next{0};
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop_starting =
      config.duration_s > 0
          ? start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.duration_s))
          : Clock::time_point::max();
  std::atomic<bool> cut_by_duration{false};

  auto worker = [&] {
    while (true) {
      if (Clock::now() >= stop_starting) {
        cut_by_duration = true;
        return;
      }
      int64_t i = next.fetch_add(1);
      if (i >= config.requests) return;
      results[static_cast<size_t>(i)] = run_one(*client, config, run.model, i);
    }
  };
  const int threads = static_cast<int>(std::min<int64_t>(config.streams, config.requests));
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) workers.emplace_back(worker);
  for (auto& w : workers) w.join();
  run.wall_s = std::chrono::duration<double>(Clock::now() - start).count();

  const int64_t started = std::min(next.load(), config.requests);
  results.resize(static_cast<size_t>(started));
  run.requests = std::move(results);
  run.stopped_by_duration = cut_by_duration && started < config.requests;
  return run;
}

}  // namespace hotswap::loadgen
