// Pools sized at start-up.  Running out of one is a value the caller turns
// into a counted refusal; nothing here grows or allocates once started,
// except Pool, which creates its objects on first use up to its cap.
//
// - Pool<T>: objects made on first use (new), up to a cap, then reused.  For
//   large objects most workers never need many of (wslay sessions, split
//   request parsers): the cap is memory promised, not memory paid.
// - SlotArray<T>: a fixed number of trivially copyable records in one
//   mapping, with a free list.  `populate` faults every page in at start-up
//   (memory sized at start-up is paid at start-up: answer slots); without it
//   pages fault in on first touch and are then kept (pub/sub deliveries,
//   whose bound is large but whose use is usually small).  Either way the
//   records never move, and an index stays valid until it is given back.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "base/invariant.h"

namespace rg::base {

inline constexpr std::uint32_t nil = UINT32_MAX;

template <typename T>
class Pool {
 public:
  void init(std::uint32_t cap) {
    cap_ = cap;
    items_.reserve(cap);
    free_.reserve(cap);
  }
  // Returns an index, or nil when the cap is reached or `make` returned null.
  template <typename Make>
  [[nodiscard]] std::uint32_t acquire(Make&& make) {
    if (!free_.empty()) {
      const std::uint32_t i = free_.back();
      free_.pop_back();
      return i;
    }
    if (items_.size() >= cap_) return nil;
    T* t = make();
    if (!t) return nil;
    items_.emplace_back(t);
    return static_cast<std::uint32_t>(items_.size() - 1);
  }
  void release(std::uint32_t i) { free_.push_back(i); }
  T& operator[](std::uint32_t i) { return *items_[i]; }
  [[nodiscard]] std::size_t created() const { return items_.size(); }
  [[nodiscard]] std::uint32_t cap() const { return cap_; }

 private:
  std::uint32_t cap_ = 0;
  std::vector<std::unique_ptr<T>> items_;
  std::vector<std::uint32_t> free_;
};

template <typename T>
class SlotArray {
  static_assert(std::is_trivially_copyable_v<T>, "records are moved and reset as bytes");

 public:
  SlotArray() = default;
  SlotArray(const SlotArray&) = delete;
  SlotArray& operator=(const SlotArray&) = delete;
  ~SlotArray() {
    if (items_) munmap(items_, bytes_);
  }

  // False when the mapping fails (errno says why).
  [[nodiscard]] bool init(std::uint32_t capacity, bool populate) {
    RG_ASSERT(items_ == nullptr);
    capacity_ = capacity;
    bytes_ = std::max<std::size_t>(std::size_t{capacity} * sizeof(T), 1);
    void* m = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (populate ? MAP_POPULATE : 0), -1, 0);
    if (m == MAP_FAILED) return false;
    items_ = static_cast<T*>(m);
    free_.reserve(capacity);  // address space; touched only as slots are given back
    return true;
  }

  // A record reset to T{}, or nil when all `capacity` are in use.
  [[nodiscard]] std::uint32_t take() noexcept {
    const std::uint32_t i = take_as_left();
    if (i != nil) items_[i] = T{};
    return i;
  }
  // A record holding whatever its last user left, or nil: for buffers that
  // are written before they are read, where a reset would cost a write of
  // every byte (a 32 KiB TLS record buffer zeroed per 20-byte echo was 5%
  // of a wss echo server's CPU).
  [[nodiscard]] std::uint32_t take_as_left() noexcept {
    std::uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
    } else if (high_water_ < capacity_) {
      i = high_water_++;
    } else {
      return nil;
    }
    ++in_use_;
    return i;
  }
  void give(std::uint32_t i) noexcept {
    RG_ASSERT(i < high_water_ && in_use_ > 0);
    --in_use_;
    free_.push_back(i);  // never beyond the reserve: at most capacity indices are ever given back
  }

  T& operator[](std::uint32_t i) noexcept { return items_[i]; }
  const T& operator[](std::uint32_t i) const noexcept { return items_[i]; }
  [[nodiscard]] std::uint32_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint32_t in_use() const noexcept { return in_use_; }
  // Records ever handed out: the pages touched so far cover these.
  [[nodiscard]] std::uint32_t high_water() const noexcept { return high_water_; }
  [[nodiscard]] std::uint64_t touched_bytes() const noexcept { return std::uint64_t{high_water_} * sizeof(T); }

 private:
  T* items_ = nullptr;
  std::size_t bytes_ = 0;
  std::uint32_t capacity_ = 0;
  std::uint32_t high_water_ = 0;
  std::uint32_t in_use_ = 0;
  std::vector<std::uint32_t> free_;
};

}  // namespace rg::base
