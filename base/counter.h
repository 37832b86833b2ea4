// Counters and gauges with one writer and any number of readers.
//
// A worker's metrics are written by that worker alone and read by the admin
// thread: a plain load and store (relaxed) is enough, and unlike fetch_add
// it costs no locked instruction on the data path.  Readers may see a value
// one update old, never a torn one.  Counters that several threads add to
// (open_connections, which admission compares across workers) stay
// std::atomic and use fetch_add on purpose; see server/worker.h.
#pragma once

#include <atomic>
#include <cstdint>

namespace rg::base {

class Counter {
 public:
  void add(std::uint64_t by = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + by, std::memory_order_relaxed); }
  void sub(std::uint64_t by = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) - by, std::memory_order_relaxed); }
  void set(std::uint64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t load() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

}  // namespace rg::base
