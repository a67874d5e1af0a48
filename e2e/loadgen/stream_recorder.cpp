#include "e2e/loadgen/stream_recorder.h"

#include <nlohmann/json.hpp>

namespace hotswap::loadgen {

using nlohmann::json;

std::string outcome_key(Outcome outcome, int http_status) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kHttpStatus:
      return "http_" + std::to_string(http_status);
    case Outcome::kTimeout:
      return "timeout";
    case Outcome::kConnectionError:
      return "connection_error";
    case Outcome::kBadJson:
      return "bad_json";
    case Outcome::kStreamError:
      return "stream_error";
    case Outcome::kNoDone:
      return "no_done";
    case Outcome::kEventIds:
      return "event_ids";
  }
  return "unknown";
}

namespace {
double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}
}  // namespace

std::optional<double> RequestResult::ttft_ms() const {
  if (token_arrivals.empty()) return std::nullopt;
  return ms_between(sent, token_arrivals.front());
}

std::vector<double> RequestResult::token_times_ms() const {
  std::vector<double> out;
  out.reserve(token_arrivals.size());
  for (auto t : token_arrivals) out.push_back(ms_between(sent, t));
  return out;
}

void RequestResult::append_gaps_ms(std::vector<double>& out) const {
  for (size_t i = 1; i < token_arrivals.size(); ++i)
    out.push_back(ms_between(token_arrivals[i - 1], token_arrivals[i]));
}

void CompletionStreamRecorder::on_bytes(std::string_view bytes, Clock::time_point arrival) {
  if (body_prefix_.size() < kBodyPrefixBytes)
    body_prefix_.append(bytes.substr(0, kBodyPrefixBytes - body_prefix_.size()));
  events_.clear();
  Status st = parser_.feed(bytes, events_);
  for (const SseEvent& e : events_) on_event(e, arrival);
  if (!st.ok() && bad_json_error_.empty()) note_bad_json(st.message());
}

void CompletionStreamRecorder::note_bad_json(std::string why) {
  ++bad_json_;
  if (bad_json_error_.empty()) bad_json_error_ = std::move(why);
}

void CompletionStreamRecorder::on_event(const SseEvent& event, Clock::time_point arrival) {
  ++stream_.events;
  if (!event.has_id) {
    ++stream_.events_without_id;
  } else if (auto id = parse_event_id(event.id)) {
    ids_.record(*id);
  } else {
    ++stream_.bad_ids;
  }
  if (stream_.done) {
    ++stream_.events_after_done;
    return;
  }
  std::string_view data(event.data);
  while (!data.empty() && (data.back() == ' ' || data.back() == '\t')) data.remove_suffix(1);
  if (data == "[DONE]") {
    stream_.done = true;
    return;
  }
  on_chunk(data, arrival);
}

void CompletionStreamRecorder::on_chunk(std::string_view data, Clock::time_point arrival) {
  json chunk = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (chunk.is_discarded()) {
    note_bad_json("event " + std::to_string(stream_.events - 1) +
                  ": data is not JSON: " + std::string(data.substr(0, 200)));
    return;
  }
  if (!chunk.is_object()) {
    note_bad_json("event " + std::to_string(stream_.events - 1) + ": chunk is not a JSON object");
    return;
  }
  if (auto it = chunk.find("error"); it != chunk.end()) {
    if (stream_error_.empty()) {
      const json& e = *it;
      stream_error_ = e.is_object() && e.contains("message") && e["message"].is_string()
                          ? e["message"].get<std::string>()
                          : e.dump();
    }
    return;
  }
  auto choices = chunk.find("choices");
  if (choices == chunk.end() || !choices->is_array()) {
    note_bad_json("event " + std::to_string(stream_.events - 1) + ": chunk has no choices array");
    return;
  }
  // An empty choices array is the usage chunk; nothing to take from it.
  for (const json& choice : *choices) {
    std::string where = "event " + std::to_string(stream_.events - 1) + ": ";
    if (!choice.is_object()) {
      note_bad_json(where + "a choice is not an object");
      continue;
    }
    auto index = choice.find("index");
    if (index != choice.end() && !(index->is_number_integer() && *index == 0)) continue;  // n = 1: choice 0 only
    auto ids = choice.find("token_ids");
    if (ids == choice.end() || !ids->is_array()) {
      note_bad_json(where + "choice has no token_ids array");
      continue;
    }
    std::string text;
    if (chat_) {
      auto delta = choice.find("delta");
      if (delta == choice.end() || !delta->is_object()) {
        note_bad_json(where + "chat choice has no delta object");
        continue;
      }
      auto content = delta->find("content");
      if (content != delta->end() && !content->is_null()) {
        if (!content->is_string()) {
          note_bad_json(where + "delta.content is not a string");
          continue;
        }
        text = content->get<std::string>();
      }
    } else {
      auto t = choice.find("text");
      if (t == choice.end() || !t->is_string()) {
        note_bad_json(where + "choice has no text string");
        continue;
      }
      text = t->get<std::string>();
    }
    auto finish = choice.find("finish_reason");
    if (finish != choice.end() && !finish->is_null() && !finish->is_string()) {
      note_bad_json(where + "finish_reason is neither null nor a string");
      continue;
    }
    bool ids_ok = true;
    for (const json& id : *ids) ids_ok = ids_ok && id.is_number_integer();
    if (!ids_ok) {
      note_bad_json(where + "token_ids holds a non-integer");
      continue;
    }
    for (const json& id : *ids) {
      stream_.token_ids.push_back(id.get<int64_t>());
      stream_.token_arrivals.push_back(arrival);
    }
    stream_.text += text;
    if (finish != choice.end() && finish->is_string()) stream_.finish_reason = finish->get<std::string>();
  }
}

void CompletionStreamRecorder::finish(RequestResult& result) const {
  result.finish_reason = stream_.finish_reason;
  result.token_ids = stream_.token_ids;
  result.text = stream_.text;
  result.token_arrivals = stream_.token_arrivals;
  result.events = stream_.events;
  result.done = stream_.done;
  result.duplicate_ids = ids_.duplicates();
  result.missing_ids = ids_.missing();
  result.out_of_order_ids = ids_.out_of_order();
  result.events_without_id = stream_.events_without_id;
  result.bad_ids = stream_.bad_ids;
  result.events_after_done = stream_.events_after_done;

  if (bad_json_ > 0) {
    result.outcome = Outcome::kBadJson;
    result.error = bad_json_error_ + (bad_json_ > 1 ? " (and " + std::to_string(bad_json_ - 1) + " more)" : "");
  } else if (!stream_error_.empty()) {
    result.outcome = Outcome::kStreamError;
    result.error = "server error in stream: " + stream_error_;
  } else if (!stream_.done) {
    result.outcome = Outcome::kNoDone;
    result.error = parser_.mid_event()
                       ? "stream ended inside an event, before [DONE]"
                       : "stream ended without [DONE] after " + std::to_string(stream_.events) + " events";
  } else if (result.id_anomalies() > 0) {
    result.outcome = Outcome::kEventIds;
    result.error = "event ids: " + std::to_string(result.duplicate_ids) + " duplicated, " +
                   std::to_string(result.missing_ids) + " missing, " + std::to_string(result.out_of_order_ids) +
                   " out of order, " + std::to_string(result.events_without_id) + " without id, " +
                   std::to_string(result.bad_ids) + " not a number, " + std::to_string(result.events_after_done) +
                   " after [DONE]";
  } else {
    result.outcome = Outcome::kOk;
    result.error.clear();
  }
}

}  // namespace hotswap::loadgen
