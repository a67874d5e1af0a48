// The load generator's arithmetic: latency percentiles and event-id accounting.
//
// Percentiles are nearest-rank (the smallest sample with at least p% of the samples at or
// below it), so every reported number is a measured value, not an interpolation.
// EventIdTracker takes the ids of one stream in arrival order and counts what a lossless,
// exactly-once stream never shows: an id seen twice, an id that went backwards, an id skipped.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace hotswap::loadgen {

struct LatencySummary {
  int64_t count = 0;
  double p50 = 0, p99 = 0, max = 0, mean = 0;  // 0 when count is 0
};

// The nearest-rank p-th percentile (0 < p <= 100) of `values`; 0 for no values. Reorders
// `values` (linear time, no full sort).
double percentile_nearest_rank(std::vector<double>& values, double p);

// count, p50, p99, max and mean of `values` (reordered).
LatencySummary summarize(std::vector<double> values);

// A non-negative decimal event id ("17"); surrounding spaces and tabs are allowed, nothing else.
std::optional<int64_t> parse_event_id(std::string_view text);

class EventIdTracker {
 public:
  // Records the next event's id, in arrival order.
  void record(int64_t id);

  int64_t events() const { return events_; }
  int64_t highest() const { return highest_; }  // -1 before the first event
  // Events whose id had been seen before in this stream.
  int64_t duplicates() const { return events_ - static_cast<int64_t>(seen_.size()); }
  // Events with a new id lower than the highest seen before it (reordering).
  int64_t out_of_order() const { return out_of_order_; }
  // Ids in [0, highest] never seen: the gaps. An id missing after the highest is invisible
  // here; the stream's terminating event (which has an id too) bounds that.
  int64_t missing() const { return highest_ + 1 - static_cast<int64_t>(seen_.size()); }

 private:
  std::unordered_set<int64_t> seen_;
  int64_t events_ = 0;
  int64_t highest_ = -1;
  int64_t out_of_order_ = 0;
};

}  // namespace hotswap::loadgen
