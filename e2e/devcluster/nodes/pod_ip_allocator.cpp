#include "e2e/devcluster/nodes/pod_ip_allocator.h"

namespace hotswap::devcluster {

PodIpAllocator::PodIpAllocator(std::string prefix, int first, int last)
    : prefix_(std::move(prefix)), first_(first), last_(last < first ? first : last), next_(first) {}

std::shared_ptr<PodIpAllocator> PodIpAllocator::process_default() {
  static const std::shared_ptr<PodIpAllocator> instance = std::make_shared<PodIpAllocator>();
  return instance;
}

StatusOr<std::string> PodIpAllocator::allocate() {
  std::lock_guard<std::mutex> lock(mu_);
  const int n = last_ - first_ + 1;
  for (int i = 0; i < n; ++i) {
    const int candidate = first_ + (next_ - first_ + i) % n;
    if (used_.count(candidate)) continue;
    used_.insert(candidate);
    next_ = candidate == last_ ? first_ : candidate + 1;
    return prefix_ + std::to_string(candidate);
  }
  return resource_exhausted("no free Pod IP: all " + std::to_string(n) + " addresses " + prefix_ +
                            std::to_string(first_) + "-" + std::to_string(last_) + " are in use");
}

void PodIpAllocator::release(const std::string& ip) {
  if (ip.compare(0, prefix_.size(), prefix_) != 0) return;
  const std::string rest = ip.substr(prefix_.size());
  if (rest.empty() || rest.find_first_not_of("0123456789") != std::string::npos || rest.size() > 3) return;
  std::lock_guard<std::mutex> lock(mu_);
  used_.erase(std::stoi(rest));
}

size_t PodIpAllocator::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_.size();
}

}  // namespace hotswap::devcluster
