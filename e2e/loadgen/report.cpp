#include "e2e/loadgen/report.h"

#include <cmath>
#include <cstdio>

namespace hotswap::loadgen {

using nlohmann::json;

LoadSummary summarize_run(const LoadRun& run) {
  LoadSummary s;
  s.planned = run.planned;
  s.started = static_cast<int64_t>(run.requests.size());
  std::vector<double> ttft, gaps;
  for (const RequestResult& r : run.requests) {
    if (r.ok()) {
      ++s.ok;
    } else {
      ++s.failed;
      ++s.failures[outcome_key(r.outcome, r.http_status)];
    }
    s.tokens += static_cast<int64_t>(r.token_ids.size());
    s.events += r.events;
    s.duplicate_ids += r.duplicate_ids;
    s.missing_ids += r.missing_ids;
    s.out_of_order_ids += r.out_of_order_ids;
    s.events_without_id += r.events_without_id;
    s.bad_ids += r.bad_ids;
    s.events_after_done += r.events_after_done;
    s.bodies_unchunked += r.body_unchunked ? 1 : 0;
    if (auto t = r.ttft_ms()) ttft.push_back(*t);
    r.append_gaps_ms(gaps);
  }
  s.ttft_ms = summarize(std::move(ttft));
  s.inter_token_ms = summarize(std::move(gaps));
  s.wall_s = run.wall_s;
  s.tokens_per_s = run.wall_s > 0 ? static_cast<double>(s.tokens) / run.wall_s : 0;
  return s;
}

namespace {

// Milliseconds rounded to the microsecond: the clock's real precision here, and short JSON.
double round_us(double ms) {
  return std::round(ms * 1000.0) / 1000.0;
}

json latency_json(const LatencySummary& l) {
  return {{"count", l.count},
          {"p50", round_us(l.p50)},
          {"p99", round_us(l.p99)},
          {"max", round_us(l.max)},
          {"mean", round_us(l.mean)}};
}

json request_json(const RequestResult& r) {
  json times = json::array();
  for (double t : r.token_times_ms()) times.push_back(round_us(t));
  auto ttft = r.ttft_ms();
  json j = {{"index", r.index},
            {"seed", r.seed},
            {"status", outcome_key(r.outcome, r.http_status)},
            {"http_status", r.http_status},
            {"error", r.error},
            {"finish_reason", r.finish_reason},
            {"token_ids", r.token_ids},
            {"text", r.text},
            {"events", r.events},
            {"event_ids", r.events - r.events_without_id - r.bad_ids},
            {"done", r.done},
            {"duplicate_ids", r.duplicate_ids},
            {"missing_ids", r.missing_ids},
            {"out_of_order_ids", r.out_of_order_ids},
            {"events_without_id", r.events_without_id},
            {"bad_ids", r.bad_ids},
            {"events_after_done", r.events_after_done},
            {"ttft_ms", ttft ? json(round_us(*ttft)) : json(nullptr)},
            {"token_times_ms", std::move(times)}};
  if (r.retry_after_s) j["retry_after_s"] = *r.retry_after_s;
  if (r.body_unchunked) j["body_unchunked"] = true;
  return j;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string latency_line(const char* name, const LatencySummary& l) {
  if (l.count == 0) return std::string(name) + ": none\n";
  return std::string(name) + ": p50 " + fmt("%.3f", l.p50) + "  p99 " + fmt("%.3f", l.p99) + "  max " +
         fmt("%.3f", l.max) + "  mean " + fmt("%.3f", l.mean) + "  (n=" + std::to_string(l.count) + ")\n";
}

}  // namespace

json report_json(const LoadgenConfig& config, const LoadRun& run, const LoadSummary& s) {
  json requests = json::array();
  for (const RequestResult& r : run.requests) requests.push_back(request_json(r));
  return {{"url", config.url},
          {"endpoint", request_path(config)},
          {"model", run.model},
          {"streams", config.streams},
          {"max_tokens", config.max_tokens},
          {"seed", config.seed},
          {"temperature", config.temperature},
          {"prompt_len", config.prompt_words},
          {"duration_s", config.duration_s},
          {"request_timeout_s", config.request_timeout_s},
          {"requests_planned", s.planned},
          {"requests_started", s.started},
          {"stopped_by_duration", run.stopped_by_duration},
          {"ok", s.ok},
          {"failed", s.failed},
          {"failures", s.failures},
          {"tokens", s.tokens},
          {"events", s.events},
          {"duplicate_ids", s.duplicate_ids},
          {"missing_ids", s.missing_ids},
          {"out_of_order_ids", s.out_of_order_ids},
          {"events_without_id", s.events_without_id},
          {"bad_ids", s.bad_ids},
          {"events_after_done", s.events_after_done},
          {"bodies_unchunked", s.bodies_unchunked},
          {"ttft_ms", latency_json(s.ttft_ms)},
          {"inter_token_ms", latency_json(s.inter_token_ms)},
          {"wall_s", round_us(s.wall_s * 1000.0) / 1000.0},
          {"tokens_per_s", std::round(s.tokens_per_s * 1000.0) / 1000.0},
          {"requests", std::move(requests)}};
}

std::string report_text(const LoadgenConfig& config, const LoadRun& run, const LoadSummary& s) {
  std::string out;
  out += "hotswap-loadgen: " + config.url + request_path(config) + "  model " + run.model + "  streams " +
         std::to_string(config.streams) + "\n";
  out += "requests: " + std::to_string(s.started) + " started of " + std::to_string(s.planned) +
         (run.stopped_by_duration ? " (duration reached)" : "") + ", " + std::to_string(s.ok) + " ok, " +
         std::to_string(s.failed) + " failed\n";
  if (!s.failures.empty()) {
    out += "failed by reason:";
    for (const auto& [key, n] : s.failures) out += " " + key + "=" + std::to_string(n);
    out += "\n";
    int shown = 0;
    for (const RequestResult& r : run.requests) {
      if (r.ok()) continue;
      if (++shown > 5) {
        out += "  ...\n";
        break;
      }
      out +=
          "  request " + std::to_string(r.index) + ": " + outcome_key(r.outcome, r.http_status) + ": " + r.error + "\n";
    }
  }
  out += "tokens: " + std::to_string(s.tokens) + " in " + fmt("%.3f", s.wall_s) +
         " s = " + fmt("%.1f", s.tokens_per_s) + " tokens/s\n";
  out += "event ids: " + std::to_string(s.duplicate_ids) + " duplicated, " + std::to_string(s.missing_ids) +
         " missing, " + std::to_string(s.out_of_order_ids) + " out of order, " + std::to_string(s.events_without_id) +
         " without id, " + std::to_string(s.bad_ids) + " not a number, " + std::to_string(s.events_after_done) +
         " after [DONE]\n";
  out += latency_line("time to first token ms", s.ttft_ms);
  out += latency_line("inter-token gap ms", s.inter_token_ms);
  if (s.bodies_unchunked > 0)
    out += "warning: " + std::to_string(s.bodies_unchunked) +
           " response bodies were not chunked; cpprest reads those in pieces of up to 64 KiB, so their "
           "token times are batch times, not arrival times\n";
  return out;
}

int exit_code(const LoadSummary& s) {
  return s.started > 0 && s.failed == 0 ? 0 : 1;
}

}  // namespace hotswap::loadgen
