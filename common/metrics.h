// Prometheus metrics: each process keeps one prometheus::Registry; this renders it in the text
// exposition format for a /metrics handler. Metric names: prefix hotswap_, units in the name,
// counters end in _total.
#pragma once

#include <memory>
#include <string>

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace hotswap {

std::string render_metrics_text(const prometheus::Registry& registry);

// Latency buckets in seconds, 1 ms to 60 s, for time-to-first-token and similar.
prometheus::Histogram::BucketBoundaries latency_buckets_seconds();

}  // namespace hotswap
