#include "common/metrics.h"

#include <prometheus/text_serializer.h>

namespace hotswap {

std::string render_metrics_text(const prometheus::Registry& registry) {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry.Collect());
}

prometheus::Histogram::BucketBoundaries latency_buckets_seconds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0};
}

}  // namespace hotswap
