// Intrusive deadline lists for event loops with one timeout per kind.
//
// Every list holds records that share one timeout, so appending keeps a list
// sorted by deadline and expiry only ever looks at the head: O(1) per add,
// remove and expiry, and nothing at all per record that is on no list (an
// idle connection).  The links live inside the caller's records, which are
// addressed by index, so the lists cost no memory of their own.
//
// Record needs: std::uint32_t timer_prev, timer_next, deadline_ms; and a
// `timer_list` member of the List enum, whose value 0 means "on no list".
// Deadlines are milliseconds on a 32-bit clock the caller keeps, compared
// wrap-safe, so timeouts must stay below 2^31 ms.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace rg::base {

template <typename Record, typename List, std::size_t ListCount>
class DeadlineLists {
 public:
  static constexpr std::uint32_t nil = UINT32_MAX;
  static constexpr std::uint64_t timeout_ms_max = 1u << 30;

  void bind(Record* records) noexcept { records_ = records; }

  // Puts `slot` at the tail of `list` (leaving any list it was on).
  void add(std::uint32_t slot, List list, std::uint32_t now_ms, std::uint64_t timeout_ms) noexcept {
    remove(slot);
    Record& r = records_[slot];
    Head& h = heads_[index(list)];
    r.timer_list = list;
    r.deadline_ms = now_ms + static_cast<std::uint32_t>(std::min(timeout_ms, timeout_ms_max));
    r.timer_prev = h.tail;
    r.timer_next = nil;
    if (h.tail != nil) records_[h.tail].timer_next = slot;
    else h.head = slot;
    h.tail = slot;
  }

  void remove(std::uint32_t slot) noexcept {
    Record& r = records_[slot];
    if (index(r.timer_list) == 0) return;
    Head& h = heads_[index(r.timer_list)];
    if (r.timer_prev != nil) records_[r.timer_prev].timer_next = r.timer_next;
    else h.head = r.timer_next;
    if (r.timer_next != nil) records_[r.timer_next].timer_prev = r.timer_prev;
    else h.tail = r.timer_prev;
    r.timer_prev = r.timer_next = nil;
    r.timer_list = List{};
  }

  // The head of `list` (the earliest deadline, i.e. the oldest entry), or nil.
  [[nodiscard]] std::uint32_t front(List list) const noexcept { return heads_[index(list)].head; }

  // Removes and returns the head of `list` if its deadline has passed, else nil.
  [[nodiscard]] std::uint32_t pop_expired(List list, std::uint32_t now_ms) noexcept {
    const std::uint32_t slot = heads_[index(list)].head;
    if (slot == nil || static_cast<std::int32_t>(records_[slot].deadline_ms - now_ms) > 0) return nil;
    remove(slot);
    return slot;
  }

 private:
  struct Head {
    std::uint32_t head = nil;
    std::uint32_t tail = nil;
  };
  static constexpr std::size_t index(List list) noexcept { return static_cast<std::size_t>(list); }

  Record* records_ = nullptr;
  std::array<Head, ListCount> heads_{};  // heads_[0] is "no list", never used
};

}  // namespace rg::base
