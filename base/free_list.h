// Index-addressed records with a free list: what the pub/sub structures
// (subscribers, subscription nodes, channels, queue entries, messages) use
// so that records are reused in place and indices stay valid.
#pragma once

#include <cstdint>
#include <vector>

namespace rg::base {

// A free index (its record reset to T{}) or a new one appended.  Appending
// grows the vector amortised; callers reserve what they size at start-up.
template <typename T>
std::uint32_t take_slot(std::vector<T>& items, std::vector<std::uint32_t>& free) {
  if (!free.empty()) {
    const std::uint32_t i = free.back();
    free.pop_back();
    items[i] = T{};
    return i;
  }
  items.emplace_back();
  return static_cast<std::uint32_t>(items.size() - 1);
}

}  // namespace rg::base
