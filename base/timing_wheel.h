// A hashed timing wheel (Varghese & Lauck, scheme 6) for timers of any
// length, when DeadlineLists' "one timeout per list" does not hold.
//
// 2^BucketsLog2 buckets, each an unsorted doubly linked list threaded through
// the caller's records (addressed by index, as in DeadlineLists).  A timer
// goes to bucket (deadline_ms / tick_ms) & mask: O(1) to add and remove.
// expire() walks the buckets of the ticks that passed since the last call,
// fires what is due and passes over the timers of later revolutions, so a
// delay may span any number of revolutions.  The caller calls expire() once a
// tick (one io_uring timeout per tick); the wheel never looks at a clock.
//
// Record needs: std::uint32_t timer_prev, timer_next, deadline_ms; and a
// `timer_list` member of the Kind enum, whose value 0 means "on no timer".
// Deadlines are milliseconds on a 32-bit clock the caller keeps, compared
// wrap-safe, so timeouts stay below 2^30 ms and expire() must run at least
// once every 2^30 ms.  The clock must not go backwards.
//
// Lists the wheel can hold a timer on:
//   buckets_[b]  deadline in a tick the cursor has not passed yet;
//   overdue_     deadline before the cursor's tick (added with a now_ms
//                older than the last expire()'s): all fire at the next call;
//   due_         what expire() found due and has yet to fire.
// remove() finds a bucket from the deadline and tells overdue_ and due_ by
// their end slots, so the records need no list number.
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>

#include "base/invariant.h"

namespace rg::base {

template <typename Record, typename Kind, std::uint32_t BucketsLog2 = 12>
class TimingWheel {
 public:
  static constexpr std::uint32_t nil = UINT32_MAX;
  static constexpr std::uint64_t timeout_ms_max = 1u << 30;
  static constexpr std::uint32_t bucket_count = 1u << BucketsLog2;
  static_assert(BucketsLog2 >= 1 && BucketsLog2 <= 20, "2 to 1M buckets");

  // tick_ms: the bucket width (the resolution); now_ms: the caller's clock
  // now.  Before any add(), with every record's timer_list 0.
  void bind(Record* records, std::uint32_t tick_ms, std::uint32_t now_ms) noexcept {
    assert(records != nullptr);
    assert(tick_ms > 0);
    records_ = records;
    tick_ms_ = tick_ms;
    cursor_ms_ = tick_start(now_ms);
    buckets_.fill(Head{});
    overdue_ = due_ = Head{};
    size_ = 0;
  }

  // Schedules `slot` (leaving any timer it had) to fire `timeout_ms` after
  // now_ms with `kind`.
  void add(std::uint32_t slot, Kind kind, std::uint32_t now_ms, std::uint64_t timeout_ms) noexcept {
    assert(index(kind) != 0);
    remove(slot);
    Record& r = records_[slot];
    r.timer_list = kind;
    r.deadline_ms = now_ms + static_cast<std::uint32_t>(std::min(timeout_ms, timeout_ms_max));
    // A deadline whose tick the cursor has passed would wait a revolution
    // in its bucket.
    append(before(r.deadline_ms, cursor_ms_) ? overdue_ : buckets_[bucket_of(r.deadline_ms)], slot, r);
    ++size_;
  }

  // Cancels slot's timer if it has one.
  void remove(std::uint32_t slot) noexcept {
    Record& r = records_[slot];
    if (index(r.timer_list) == 0) return;
    unlink(slot, r, nullptr);
    r.timer_list = Kind{};
    assert(size_ > 0);
    --size_;
  }

  // Calls fn(slot, kind) for every timer whose deadline is <= now_ms, each
  // taken off the wheel before fn runs.  fn may add and remove any timers:
  // one it removes before its turn does not fire, and one it adds (or adds
  // again) fires in a later call, never in this one, even if already due,
  // so a periodic timer of period 0 cannot spin.  fn must not throw, nor
  // call expire().  Work: O(buckets passed + timers in them).
  template <typename Fn>
  void expire(std::uint32_t now_ms, Fn&& fn) {
    assert(due_.head == nil);  // not reentrant
    assert(!before(now_ms, cursor_ms_));
    if (size_ != 0) collect_passed(now_ms);
    cursor_ms_ = tick_start(now_ms);
    // due_ is complete before any fn runs: whatever the wheel gets from here
    // on lands in a bucket or overdue_, out of this loop's reach.
    while (due_.head != nil) {
      const std::uint32_t slot = due_.head;
      Record& r = records_[slot];
      unlink(slot, r, &due_);
      const Kind kind = r.timer_list;
      r.timer_list = Kind{};
      --size_;
      fn(slot, kind);
    }
  }

  // Timers scheduled.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  // The earliest deadline could be in any bucket: the caller wakes every tick.
  [[nodiscard]] std::uint32_t tick_ms() const noexcept { return tick_ms_; }

 private:
  struct Head {
    std::uint32_t head = nil;
    std::uint32_t tail = nil;
  };
  static constexpr std::uint32_t mask = bucket_count - 1;
  static constexpr std::size_t index(Kind kind) noexcept { return static_cast<std::size_t>(kind); }
  // a < b on the wrapping clock.
  static constexpr bool before(std::uint32_t a, std::uint32_t b) noexcept {
    return static_cast<std::int32_t>(a - b) < 0;
  }

  [[nodiscard]] std::uint32_t tick_start(std::uint32_t ms) const noexcept { return ms - ms % tick_ms_; }
  // The start of the tick after the one starting at `start`.  Unless tick_ms
  // divides 2^32, the last tick before the clock wraps is short and the next
  // one starts at 0 (bucket 0): the walk follows the ticks, not the buckets.
  [[nodiscard]] std::uint32_t next_tick(std::uint32_t start) const noexcept {
    const std::uint64_t next = std::uint64_t{start} + tick_ms_;
    return next > UINT32_MAX ? 0 : static_cast<std::uint32_t>(next);
  }
  [[nodiscard]] std::uint32_t bucket_of(std::uint32_t deadline_ms) const noexcept {
    return (deadline_ms / tick_ms_) & mask;
  }

  // The list a record at one end of a list is on.
  Head& list_of(std::uint32_t slot, const Record& r) noexcept {
    if (slot == due_.head || slot == due_.tail) return due_;
    if (slot == overdue_.head || slot == overdue_.tail) return overdue_;
    return buckets_[bucket_of(r.deadline_ms)];
  }

  void append(Head& h, std::uint32_t slot, Record& r) noexcept {
    r.timer_prev = h.tail;
    r.timer_next = nil;
    if (h.tail != nil) records_[h.tail].timer_next = slot;
    else h.head = slot;
    h.tail = slot;
  }

  // Takes `slot` off its list: `h` if known, else found only when needed.
  void unlink(std::uint32_t slot, Record& r, Head* h) noexcept {
    if (h == nullptr && (r.timer_prev == nil || r.timer_next == nil)) h = &list_of(slot, r);
    if (r.timer_prev != nil) records_[r.timer_prev].timer_next = r.timer_next;
    else h->head = r.timer_next;
    if (r.timer_next != nil) records_[r.timer_next].timer_prev = r.timer_prev;
    else h->tail = r.timer_prev;
    r.timer_prev = r.timer_next = nil;
  }

  // Moves `h`'s due timers to the end of due_.  The others (later in this
  // tick, or in a later revolution) are only read, and keep their places.
  void collect_due(Head& h, std::uint32_t now_ms) noexcept {
    for (std::uint32_t slot = h.head; slot != nil;) {
      Record& r = records_[slot];
      const std::uint32_t next = r.timer_next;
      if (!before(now_ms, r.deadline_ms)) {
        unlink(slot, r, &h);
        append(due_, slot, r);
      }
      slot = next;
    }
  }

  // Moves to due_ all of overdue_ and the due timers in the buckets of every
  // tick from the cursor's to now_ms's (both included); past a whole
  // revolution that is every bucket.
  void collect_passed(std::uint32_t now_ms) noexcept {
    if (overdue_.head != nil) {
      due_ = overdue_;
      overdue_ = Head{};
    }
    const std::uint32_t last = tick_start(now_ms);
    if (std::uint64_t{last - cursor_ms_} >= std::uint64_t{tick_ms_} * bucket_count) {
      for (Head& h : buckets_) collect_due(h, now_ms);
      return;
    }
    // Fewer than bucket_count ticks (one more if the wrap's short tick is
    // among them): a bucket met twice has only timers not due left.
    // The walk is bounded in every build: reaching the bound would mean
    // `last` was never met, a broken invariant, which aborts (RG_ASSERT)
    // rather than loop for ever.
    std::uint32_t start = cursor_ms_;
    for (std::uint32_t walked = 0; walked <= bucket_count; ++walked) {
      collect_due(buckets_[bucket_of(start)], now_ms);
      if (start == last) return;
      start = next_tick(start);
    }
    RG_ASSERT(false && "the wheel's cursor passed `last` without meeting it");
  }

  Record* records_ = nullptr;
  std::uint32_t tick_ms_ = 1;
  std::uint32_t cursor_ms_ = 0;  // start of the earliest tick whose bucket may hold due timers
  std::size_t size_ = 0;
  Head overdue_{};
  Head due_{};
  std::array<Head, bucket_count> buckets_{};
};

}  // namespace rg::base
