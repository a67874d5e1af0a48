#include "e2e/loadgen/stream_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace hotswap::loadgen {

double percentile_nearest_rank(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  const double n = static_cast<double>(values.size());
  // rank = ceil(p/100 * n), 1-based, clamped to [1, n].
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * n));
  rank = std::clamp<size_t>(rank, 1, values.size());
  auto nth = values.begin() + static_cast<std::ptrdiff_t>(rank - 1);
  std::nth_element(values.begin(), nth, values.end());
  return *nth;
}

LatencySummary summarize(std::vector<double> values) {
  LatencySummary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  s.max = *std::max_element(values.begin(), values.end());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  s.p50 = percentile_nearest_rank(values, 50);
  s.p99 = percentile_nearest_rank(values, 99);
  return s;
}

std::optional<int64_t> parse_event_id(std::string_view text) {
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (text.empty() || text.size() > 18) return std::nullopt;  // 18 digits cannot overflow int64
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

void EventIdTracker::record(int64_t id) {
  ++events_;
  bool fresh = seen_.insert(id).second;
  if (fresh && id < highest_) ++out_of_order_;
  highest_ = std::max(highest_, id);
}

}  // namespace hotswap::loadgen
