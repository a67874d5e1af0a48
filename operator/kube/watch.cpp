#include "operator/kube/watch.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common/http_body_sink.h"
#include "common/log.h"
#include "operator/kube/object.h"

namespace hotswap::kube {

using nlohmann::json;

const char* watch_event_type_name(WatchEventType type) {
  switch (type) {
    case WatchEventType::kAdded:
      return "ADDED";
    case WatchEventType::kModified:
      return "MODIFIED";
    case WatchEventType::kDeleted:
      return "DELETED";
    case WatchEventType::kBookmark:
      return "BOOKMARK";
    case WatchEventType::kError:
      return "ERROR";
  }
  return "?";
}

const char* watch_end_name(WatchEnd end) {
  switch (end) {
    case WatchEnd::kClosed:
      return "closed";
    case WatchEnd::kExpired:
      return "expired";
    case WatchEnd::kFailed:
      return "failed";
    case WatchEnd::kCancelled:
      return "cancelled";
  }
  return "?";
}

namespace {

bool parse_type(const std::string& s, WatchEventType* t) {
  if (s == "ADDED")
    *t = WatchEventType::kAdded;
  else if (s == "MODIFIED")
    *t = WatchEventType::kModified;
  else if (s == "DELETED")
    *t = WatchEventType::kDeleted;
  else if (s == "BOOKMARK")
    *t = WatchEventType::kBookmark;
  else if (s == "ERROR")
    *t = WatchEventType::kError;
  else
    return false;
  return true;
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

std::string excerpt(const std::string& s) {
  return s.size() > 200 ? s.substr(0, 200) + "..." : s;
}

}  // namespace

class WatchStream::Impl : public http::BodySink {
 public:
  Impl(std::string what, EventFn on_event, DoneFn on_done, size_t max_event_bytes)
      : what_(std::move(what)),
        on_event_(std::move(on_event)),
        on_done_(std::move(on_done)),
        max_event_bytes_(max_event_bytes) {}

  void begin(const std::shared_ptr<Impl>& self, const RestClient& client, const std::string& path_and_query,
             std::chrono::milliseconds idle_timeout) {
    try {
      client_ = client.make_http_client(idle_timeout);
      web::http::http_request req = client.new_request(web::http::methods::GET, path_and_query);
      req.set_response_stream(concurrency::streams::streambuf<uint8_t>(self).create_ostream());
      client_->request(req, cts_.get_token())
          .then([self](web::http::http_response response) {
            self->on_headers(response.status_code());
            return response.content_ready();
          })
          .then([self](pplx::task<web::http::http_response> t) {
            try {
              t.get();
              self->on_end("");
            } catch (const std::exception& e) {
              self->on_end(e.what());
            }
          });
    } catch (const std::exception& e) {
      on_end(e.what());
    }
    thread_ = std::thread([self] { self->run(); });
  }

  void cancel() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      cancelled_ = true;
    }
    cv_.notify_all();
    cts_.cancel();  // closes the socket; outside mu_: cpprest may call back into on_end
  }

  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu_);
    return done_cv_.wait_for(lk, timeout, [&] { return done_; });
  }

  std::thread thread_;
  std::atomic<bool> suppress_done_{false};

 protected:
  void on_bytes(const uint8_t* data, size_t n, Clock::time_point) override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (cancelled_ || stop_reading_) return;
      buf_.append(reinterpret_cast<const char*>(data), n);
    }
    cv_.notify_all();
  }

 private:
  void on_headers(int status) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      headers_ = true;
      http_status_ = status;
    }
    cv_.notify_all();
  }

  void on_end(const std::string& transport_error) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (ended_) return;
      ended_ = true;
      transport_error_ = transport_error;
    }
    cv_.notify_all();
  }

  // Delivers one line; false when the stream must end (outcome set).
  bool deliver(const std::string& line, WatchOutcome& out) {
    if (blank(line)) return true;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    WatchEventType type;
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string() ||
        !parse_type(j["type"].get<std::string>(), &type) || !j.contains("object") || !j["object"].is_object()) {
      out.end = WatchEnd::kFailed;
      out.status = data_loss(what_ + ": malformed watch event: " + excerpt(line));
      return false;
    }
    if (type == WatchEventType::kError) {
      out.error = api_error_from_body(0, j["object"].dump());
      std::string msg = what_ + ": watch ERROR " + std::to_string(out.error.http_code) +
                        (out.error.reason.empty() ? "" : " " + out.error.reason) + ": " + out.error.message;
      // 410 Expired/Gone; a Status without a code but with that reason means the same.
      if (out.error.http_code == 410 || out.error.reason == "Expired" || out.error.reason == "Gone") {
        out.end = WatchEnd::kExpired;
        out.status = failed_precondition(msg);
      } else {
        out.end = WatchEnd::kFailed;
        out.status = Status(status_code_for_http(out.error.http_code), msg);
      }
      return false;
    }
    WatchEvent ev;
    ev.type = type;
    ev.object = std::move(j["object"]);
    std::string rv = object_resource_version(ev.object);
    if (!rv.empty()) out.last_resource_version = rv;
    ++out.events;
    if (on_event_) {
      try {
        on_event_(ev);
      } catch (const std::exception& e) {
        log_error(what_ + ": a watch event handler threw: " + e.what());
      } catch (...) {
        log_error(what_ + ": a watch event handler threw");
      }
    }
    return true;
  }

  void run() {
    WatchOutcome out;
    std::vector<std::string> lines;
    bool finished = false;
    while (!finished) {
      lines.clear();
      bool ended = false, headers = false;
      int status = 0;
      std::string transport_error, rest;
      {
        std::unique_lock<std::mutex> lk(mu_);
        // Woken by bytes, headers, the end or cancel; the timeout only bounds each wait.
        cv_.wait_for(lk, std::chrono::milliseconds(250), [&] {
          return cancelled_ || ended_ || (headers_ && http_status_ == 200 && buf_.find('\n', scanned_) != buf_.npos);
        });
        if (cancelled_) {
          out.end = WatchEnd::kCancelled;
          break;
        }
        headers = headers_;
        status = http_status_;
        ended = ended_;
        transport_error = transport_error_;
        if (headers_ && http_status_ == 200) {
          size_t start = 0, nl;
          while ((nl = buf_.find('\n', std::max(start, scanned_))) != buf_.npos) {
            lines.emplace_back(buf_, start, nl - start);
            start = nl + 1;
            scanned_ = start;
          }
          buf_.erase(0, start);
          scanned_ = buf_.size();
          if (buf_.size() > max_event_bytes_) {
            out.end = WatchEnd::kFailed;
            out.status =
                data_loss(what_ + ": a watch event is larger than " + std::to_string(max_event_bytes_) + " bytes");
            break;
          }
        } else if (buf_.size() > (1u << 20)) {
          stop_reading_ = true;  // an error body this large is not a Status object
        }
        if (ended && lines.empty()) rest = buf_;
      }
      for (const auto& line : lines) {
        if (cancel_requested()) {
          out.end = WatchEnd::kCancelled;
          finished = true;
          break;
        }
        if (!deliver(line, out)) {
          finished = true;
          break;
        }
      }
      if (finished || !ended || !lines.empty()) continue;
      // The body has ended and every complete line is delivered.
      finished = true;
      if (!headers) {
        out.end = WatchEnd::kFailed;
        out.status = unavailable(what_ + ": " + (transport_error.empty() ? "no answer" : transport_error));
      } else if (status != 200) {
        out.error = api_error_from_body(status, rest);
        out.error.http_code = status;
        std::string msg = what_ + ": " + std::to_string(status) +
                          (out.error.reason.empty() ? "" : " " + out.error.reason) + ": " + out.error.message;
        out.end = status == 410 ? WatchEnd::kExpired : WatchEnd::kFailed;
        out.status = Status(status_code_for_http(status), msg);
      } else if (!transport_error.empty()) {
        out.end = WatchEnd::kFailed;
        out.status = unavailable(what_ + ": the watch broke: " + transport_error);
      } else if (!blank(rest)) {
        // The last event had no newline: deliver it if it is whole, as a server may omit it.
        out.end = WatchEnd::kClosed;
        if (!deliver(rest, out) && out.end == WatchEnd::kFailed) {
          out.status = data_loss(what_ + ": the watch ended in the middle of an event: " + excerpt(rest));
        }
      } else {
        out.end = WatchEnd::kClosed;
      }
    }
    if (cancel_requested() && out.end != WatchEnd::kExpired && out.end != WatchEnd::kFailed) {
      out.end = WatchEnd::kCancelled;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_reading_ = true;
    }
    cts_.cancel();  // release the connection when we stopped before the server did
    if (!suppress_done_.load() && on_done_) {
      try {
        on_done_(out);
      } catch (const std::exception& e) {
        log_error(what_ + ": a watch done handler threw: " + e.what());
      } catch (...) {
        log_error(what_ + ": a watch done handler threw");
      }
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      done_ = true;
    }
    done_cv_.notify_all();
  }

  bool cancel_requested() {
    std::lock_guard<std::mutex> lk(mu_);
    return cancelled_;
  }

  const std::string what_;
  EventFn on_event_;
  DoneFn on_done_;
  const size_t max_event_bytes_;
  std::unique_ptr<web::http::client::http_client> client_;
  pplx::cancellation_token_source cts_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::string buf_;     // bytes not yet cut into lines
  size_t scanned_ = 0;  // buf_[0, scanned_) holds no '\n'
  bool headers_ = false;
  int http_status_ = 0;
  bool ended_ = false;
  std::string transport_error_;
  bool cancelled_ = false;
  bool stop_reading_ = false;
  bool done_ = false;
};

StatusOr<std::unique_ptr<WatchStream>> WatchStream::start(const RestClient& client, const ResourceRef& collection,
                                                          const ListOptions& options, EventFn on_event, DoneFn on_done,
                                                          WatchOptions watch_options) {
  if (!collection.name.empty()) {
    return invalid_argument("watch " + collection.resource + ": the reference names an object ('" + collection.name +
                            "'); watch its collection with a field selector metadata.name=" + collection.name);
  }
  HOTSWAP_ASSIGN_OR_RETURN(std::string path, resource_path(collection));
  ListOptions o = options;
  o.limit = 0;
  o.continue_token.clear();
  std::string query = list_query(o);
  query += query.empty() ? "?watch=1" : "&watch=1";
  std::chrono::milliseconds idle = watch_options.idle_timeout;
  if (idle.count() <= 0) {
    idle = o.timeout_seconds > 0 ? std::chrono::milliseconds(o.timeout_seconds * 1000 + 30000)
                                 : std::chrono::milliseconds(65 * 60 * 1000);
  }
  std::string what = "watch " + path;
  if (!o.resource_version.empty()) what += " from resourceVersion " + o.resource_version;
  auto impl =
      std::make_shared<Impl>(std::move(what), std::move(on_event), std::move(on_done), watch_options.max_event_bytes);
  impl->begin(impl, client, path + query, idle);
  return std::unique_ptr<WatchStream>(new WatchStream(std::move(impl)));
}

WatchStream::~WatchStream() {
  impl_->cancel();
  if (!impl_->thread_.joinable()) return;
  if (impl_->thread_.get_id() == std::this_thread::get_id()) {
    // Destroyed from its own callback: the thread finishes on its own, without on_done.
    impl_->suppress_done_.store(true);
    impl_->thread_.detach();
  } else {
    impl_->thread_.join();
  }
}

void WatchStream::cancel() {
  impl_->cancel();
}

bool WatchStream::wait(std::chrono::milliseconds timeout) const {
  return impl_->wait(timeout);
}

}  // namespace hotswap::kube
