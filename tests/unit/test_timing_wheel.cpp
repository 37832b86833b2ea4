// TimingWheel: a table of single timers driven call by call (never early,
// fired at the first due call, exactly once) over tick widths, call cadences,
// long delays and the 32-bit clock's wrap; callbacks that add and remove
// timers; and random add/remove/expire runs against a std::multimap model.

#include "base/timing_wheel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

enum class Kind : std::uint8_t { none, idle, handshake, ping };

struct Rec {
  std::uint32_t timer_prev = UINT32_MAX;
  std::uint32_t timer_next = UINT32_MAX;
  std::uint32_t deadline_ms = 0;
  Kind timer_list = Kind::none;
};

struct Fired {
  std::uint32_t slot;
  Kind kind;
  friend bool operator==(const Fired&, const Fired&) = default;
  friend auto operator<=>(const Fired&, const Fired&) = default;
};

std::ostream& operator<<(std::ostream& os, const Fired& f) {
  return os << "{slot " << f.slot << ", kind " << static_cast<int>(f.kind) << "}";
}

// Records and a wheel, heap-allocated (a 4096-bucket wheel is 32 KiB).
template <std::uint32_t Log2>
struct Harness {
  using Wheel = rg::base::TimingWheel<Rec, Kind, Log2>;
  std::vector<Rec> recs;
  std::unique_ptr<Wheel> wheel = std::make_unique<Wheel>();

  Harness(std::size_t n, std::uint32_t tick_ms, std::uint32_t now_ms) : recs(n) {
    wheel->bind(recs.data(), tick_ms, now_ms);
  }

  // What one expire() fires, sorted; checks that each fired record is off
  // the wheel when its callback runs.
  std::vector<Fired> expire(std::uint32_t now_ms) {
    std::vector<Fired> out;
    wheel->expire(now_ms, [&](std::uint32_t slot, Kind kind) {
      EXPECT_EQ(recs[slot].timer_list, Kind::none) << "slot " << slot << " still marked in its callback";
      out.push_back({slot, kind});
    });
    std::sort(out.begin(), out.end());
    return out;
  }
};

using Default = Harness<12>;  // 4096 buckets
using Small = Harness<3>;     // 8 buckets: revolutions come quickly

// ------------------------------------------------------------------ one timer, call by call

struct OneTimerCase {
  std::string name;
  std::uint32_t tick_ms;
  std::uint32_t start_ms;  // the clock at bind() and add()
  std::uint32_t lead_ms;   // calls to expire() before the add, `step_ms` apart
  std::uint64_t timeout_ms;
  std::uint32_t step_ms;   // the caller's expire() cadence after the add
};

void PrintTo(const OneTimerCase& c, std::ostream* os) {
  *os << c.name << " (tick " << c.tick_ms << ", start " << c.start_ms << ", timeout " << c.timeout_ms << ", step "
      << c.step_ms << ")";
}

// Steps the clock from the add and expects the timer at exactly the first
// call whose clock is at or past the deadline, then never again.
template <std::uint32_t Log2>
void run_one_timer(const OneTimerCase& c) {
  Harness<Log2> h(4, c.tick_ms, c.start_ms);
  std::uint32_t now = c.start_ms;
  for (std::uint32_t t = 0; t < c.lead_ms; t += c.step_ms) {
    now += c.step_ms;
    ASSERT_TRUE(h.expire(now).empty());
  }
  h.wheel->add(2, Kind::ping, now, c.timeout_ms);
  ASSERT_EQ(h.wheel->size(), 1u);
  const std::uint64_t timeout = std::min(c.timeout_ms, h.wheel->timeout_ms_max);
  EXPECT_EQ(h.recs[2].deadline_ms, static_cast<std::uint32_t>(now + timeout));
  // Elapsed time in 64 bits, so the wrap of `now` cannot fool the test.
  std::uint64_t elapsed = 0;
  int calls_after_due = -1;
  // At the add's own clock first (timeout 0 is due there).
  for (;;) {
    const std::vector<Fired> fired = h.expire(now);
    const bool due = elapsed >= timeout;
    if (due) ++calls_after_due;
    if (calls_after_due == 0) {
      ASSERT_EQ(fired, (std::vector<Fired>{{2, Kind::ping}})) << "not fired at the first due call, elapsed "
                                                              << elapsed;
      EXPECT_EQ(h.wheel->size(), 0u);
    } else {
      ASSERT_TRUE(fired.empty()) << (due ? "fired again" : "fired early") << ", elapsed " << elapsed;
    }
    if (calls_after_due >= 3) break;
    now += c.step_ms;
    elapsed += c.step_ms;
  }
}

class OneTimer : public ::testing::TestWithParam<OneTimerCase> {};

TEST_P(OneTimer, NeverEarlyFiredAtFirstDueCallOnce) {
  run_one_timer<12>(GetParam());
  run_one_timer<3>(GetParam());
}

constexpr std::uint32_t near_wrap = UINT32_MAX - 25;

INSTANTIATE_TEST_SUITE_P(
    Cases, OneTimer,
    ::testing::Values(
        OneTimerCase{"timeout0", 10, 1000, 0, 0, 1},
        OneTimerCase{"timeout0_mid_tick", 10, 1004, 0, 0, 1},
        OneTimerCase{"timeout0_after_calls", 10, 1000, 37, 0, 1},
        OneTimerCase{"one_ms", 10, 1000, 0, 1, 1},
        OneTimerCase{"below_tick", 10, 1000, 0, 9, 1},
        OneTimerCase{"one_tick", 10, 1000, 0, 10, 1},
        OneTimerCase{"above_tick", 10, 1000, 0, 11, 1},
        OneTimerCase{"mid_tick_start", 10, 1007, 0, 25, 1},
        OneTimerCase{"tick_cadence", 10, 1000, 0, 95, 10},
        OneTimerCase{"tick_cadence_unaligned_start", 10, 1003, 0, 95, 10},
        OneTimerCase{"odd_cadence", 10, 1000, 21, 95, 7},
        OneTimerCase{"cadence_of_several_ticks", 10, 1000, 0, 333, 25},
        OneTimerCase{"tick_1", 1, 5, 0, 50, 1},
        OneTimerCase{"tick_1024", 1024, 5, 0, 5000, 100},
        OneTimerCase{"revolution_exactly_4096_ticks", 10, 1000, 0, 40960, 10},
        OneTimerCase{"revolution_plus_one", 10, 1000, 0, 40970, 10},
        OneTimerCase{"long_90s_tick_cadence", 10, 1000, 0, 90000, 10},
        OneTimerCase{"long_90s_coarse_cadence", 10, 1000, 0, 90000, 1000},
        OneTimerCase{"long_200s_calls_rarer_than_a_revolution", 10, 1000, 0, 200000, 50000},
        OneTimerCase{"wrap_tick_divides_2_32", 16, near_wrap, 0, 100, 1},
        OneTimerCase{"wrap_tick_7_short_last_tick", 7, near_wrap, 0, 60, 1},
        OneTimerCase{"wrap_tick_10", 10, near_wrap, 0, 100, 3},
        OneTimerCase{"wrap_after_calls", 10, UINT32_MAX - 100, 90, 20, 1},
        OneTimerCase{"wrap_at_deadline", 10, UINT32_MAX - 30, 0, 31, 1},
        OneTimerCase{"wrap_long_delay", 10, UINT32_MAX - 40000, 0, 90000, 10},
        OneTimerCase{"timeout_clamped_to_max", 1000, 1000, 0, std::uint64_t{1} << 40, 1u << 28},
        OneTimerCase{"timeout_max", 1000, 1000, 0, std::uint64_t{1} << 30, (1u << 28) + 3}),
    [](const ::testing::TestParamInfo<OneTimerCase>& info) { return info.param.name; });

// ------------------------------------------------------------------ basics

TEST(TimingWheel, ScheduleCancelExpire) {
  Default h(8, 10, 0);
  h.wheel->add(1, Kind::idle, 0, 100);
  h.wheel->add(2, Kind::handshake, 0, 100);
  h.wheel->add(3, Kind::ping, 0, 250);
  h.wheel->add(4, Kind::idle, 0, 100);
  EXPECT_EQ(h.wheel->size(), 4u);
  h.wheel->remove(2);
  EXPECT_EQ(h.recs[2].timer_list, Kind::none);
  EXPECT_EQ(h.wheel->size(), 3u);
  EXPECT_TRUE(h.expire(99).empty());
  EXPECT_EQ(h.expire(100), (std::vector<Fired>{{1, Kind::idle}, {4, Kind::idle}}));
  EXPECT_EQ(h.wheel->size(), 1u);
  h.wheel->remove(3);
  EXPECT_EQ(h.wheel->size(), 0u);
  EXPECT_TRUE(h.expire(1000).empty());
  EXPECT_EQ(h.wheel->tick_ms(), 10u);
}

TEST(TimingWheel, SizeBookkeeping) {
  Default h(8, 10, 500);
  EXPECT_EQ(h.wheel->size(), 0u);
  h.wheel->remove(1);  // on no timer: a no-op
  EXPECT_EQ(h.wheel->size(), 0u);
  h.wheel->add(1, Kind::idle, 500, 30);
  h.wheel->add(1, Kind::ping, 500, 70);  // replaces, does not add
  EXPECT_EQ(h.wheel->size(), 1u);
  EXPECT_EQ(h.recs[1].timer_list, Kind::ping);
  h.wheel->add(2, Kind::idle, 500, 0);
  h.wheel->add(3, Kind::idle, 500, 5000);
  EXPECT_EQ(h.wheel->size(), 3u);
  h.wheel->remove(3);
  h.wheel->remove(3);
  EXPECT_EQ(h.wheel->size(), 2u);
  EXPECT_EQ(h.expire(530), (std::vector<Fired>{{2, Kind::idle}}));  // slot 1 moved to 570
  EXPECT_EQ(h.wheel->size(), 1u);
  // A callback that re-adds keeps the count.
  h.wheel->expire(570, [&](std::uint32_t slot, Kind kind) {
    EXPECT_EQ(h.wheel->size(), 0u);
    h.wheel->add(slot, kind, 570, 10);
    EXPECT_EQ(h.wheel->size(), 1u);
  });
  EXPECT_EQ(h.wheel->size(), 1u);
  EXPECT_EQ(h.expire(580), (std::vector<Fired>{{1, Kind::ping}}));
  EXPECT_EQ(h.wheel->size(), 0u);
}

TEST(TimingWheel, ManyTimersInOneBucket) {
  // 3000 timers whose deadlines all map to one bucket of 8: the same tick,
  // then one and two revolutions later.
  constexpr std::uint32_t tick = 10;
  constexpr std::uint32_t revolution = tick * 8;
  Small h(3000, tick, 0);
  for (std::uint32_t s = 0; s < 3000; ++s) {
    const std::uint32_t timeout = 30 + (s % 10) + revolution * (s % 3);
    h.wheel->add(s, Kind::idle, 0, timeout);
  }
  std::vector<std::uint32_t> fired_at(3000, 0);
  for (std::uint32_t now = 1; now <= 3 * revolution; ++now) {
    for (const Fired& f : h.expire(now)) {
      ASSERT_EQ(fired_at[f.slot], 0u) << "slot " << f.slot << " fired twice";
      fired_at[f.slot] = now;
    }
  }
  for (std::uint32_t s = 0; s < 3000; ++s)
    EXPECT_EQ(fired_at[s], 30 + (s % 10) + revolution * (s % 3)) << "slot " << s;
  EXPECT_EQ(h.wheel->size(), 0u);
}

TEST(TimingWheel, TimeoutZeroAndStaleClocksFireAtTheNextCall) {
  Default h(8, 10, 1000);
  EXPECT_TRUE(h.expire(1004).empty());
  h.wheel->add(1, Kind::idle, 1004, 0);
  EXPECT_EQ(h.expire(1004), (std::vector<Fired>{{1, Kind::idle}}));
  // A clock older than the last expire() (a cached now): the deadline's
  // tick has passed, yet the timer fires at the next call.
  EXPECT_TRUE(h.expire(1500).empty());
  h.wheel->add(2, Kind::ping, 1400, 50);   // due 1450, a passed tick
  h.wheel->add(3, Kind::ping, 1400, 100);  // due 1500, the current tick
  h.wheel->add(4, Kind::ping, 1400, 101);  // due 1501, not yet
  EXPECT_EQ(h.wheel->size(), 3u);
  h.wheel->remove(2);  // and it can still be cancelled
  h.wheel->add(2, Kind::handshake, 1400, 30);
  EXPECT_EQ(h.expire(1500), (std::vector<Fired>{{2, Kind::handshake}, {3, Kind::ping}}));
  EXPECT_EQ(h.expire(1501), (std::vector<Fired>{{4, Kind::ping}}));
  EXPECT_EQ(h.wheel->size(), 0u);
}

TEST(TimingWheel, LongDelaysFireOnceAtTheirDeadline) {
  // 90 s and more with a 10 ms tick and 4096 buckets (a 40.96 s revolution),
  // expire() once a tick, from a clock that wraps on the way.
  for (const std::uint32_t start : {0u, UINT32_MAX - 100000}) {
    Default h(16, 10, start);
    const std::vector<std::uint32_t> timeouts = {90000, 90000, 45000, 40960, 40950, 81920, 122880, 200000, 10};
    for (std::uint32_t s = 0; s < timeouts.size(); ++s) h.wheel->add(s, Kind::idle, start, timeouts[s]);
    std::vector<int> count(timeouts.size(), 0);
    for (std::uint32_t elapsed = 10; elapsed <= 210000; elapsed += 10) {
      for (const Fired& f : h.expire(start + elapsed)) {
        ++count[f.slot];
        EXPECT_EQ(elapsed, timeouts[f.slot]) << "slot " << f.slot << " start " << start;
      }
    }
    for (std::uint32_t s = 0; s < timeouts.size(); ++s) EXPECT_EQ(count[s], 1) << "slot " << s;
    EXPECT_EQ(h.wheel->size(), 0u);
  }
}

TEST(TimingWheel, WrapAroundManyDeadlinesEitherSide) {
  // Ticks that do and do not divide 2^32; deadlines before, at and after the
  // wrap, expire() every ms.
  for (const std::uint32_t tick : {1u, 7u, 10u, 16u, 1000u}) {
    const std::uint32_t start = UINT32_MAX - 3000;
    Small h(600, tick, start);
    for (std::uint32_t s = 0; s < 600; ++s) h.wheel->add(s, Kind::idle, start, s * 10);
    std::vector<std::int64_t> fired_at(600, -1);
    for (std::uint32_t elapsed = 0; elapsed <= 6100; ++elapsed) {
      for (const Fired& f : h.expire(start + elapsed)) {
        ASSERT_EQ(fired_at[f.slot], -1) << "tick " << tick << " slot " << f.slot << " fired twice";
        fired_at[f.slot] = elapsed;
      }
    }
    for (std::uint32_t s = 0; s < 600; ++s) EXPECT_EQ(fired_at[s], s * 10) << "tick " << tick << " slot " << s;
  }
}

// ------------------------------------------------------------------ callbacks

TEST(TimingWheel, PeriodicTimersReAddedInTheCallback) {
  Default h(4, 10, 0);
  h.wheel->add(0, Kind::ping, 0, 25);  // every 25 ms
  h.wheel->add(1, Kind::idle, 0, 0);   // every call: period 0 must not spin
  std::vector<std::uint32_t> ping_at;
  int zero_count = 0;
  for (std::uint32_t now = 10; now <= 1000; now += 10) {
    h.wheel->expire(now, [&](std::uint32_t slot, Kind kind) {
      if (slot == 0) {
        ping_at.push_back(now);
        h.wheel->add(slot, kind, now, 25);
      } else {
        ++zero_count;
        h.wheel->add(slot, kind, now, 0);
      }
    });
    EXPECT_EQ(h.wheel->size(), 2u);
  }
  // 25 after each firing, each rounded up to the next 10 ms call.
  std::vector<std::uint32_t> want;
  for (std::uint32_t t = 30; t <= 1000; t += 30) want.push_back(t);
  EXPECT_EQ(ping_at, want);
  EXPECT_EQ(zero_count, 100);
}

TEST(TimingWheel, CallbackRemovesOthersInTheSameBucket) {
  Default h(8, 10, 0);
  for (std::uint32_t s = 0; s < 5; ++s) h.wheel->add(s, Kind::idle, 0, 42);
  h.wheel->add(5, Kind::idle, 0, 45);  // same bucket, not due at 42
  std::vector<std::uint32_t> fired;
  h.wheel->expire(42, [&](std::uint32_t slot, Kind) {
    fired.push_back(slot);
    for (std::uint32_t s = 0; s < 6; ++s) h.wheel->remove(s);  // itself included: a no-op
  });
  EXPECT_EQ(fired.size(), 1u) << "the first callback cancelled the rest";
  EXPECT_EQ(h.wheel->size(), 0u);
  EXPECT_TRUE(h.expire(100).empty());
}

TEST(TimingWheel, CallbackRemovesOthersInOtherBuckets) {
  // Due in three passed ticks (three buckets), plus a future one and one
  // passed over for a later revolution; the first callback cancels them all.
  Default h(8, 10, 0);
  h.wheel->add(0, Kind::idle, 0, 5);
  h.wheel->add(1, Kind::idle, 0, 15);
  h.wheel->add(2, Kind::idle, 0, 27);
  h.wheel->add(3, Kind::idle, 0, 31);     // this tick, not due at 30
  h.wheel->add(4, Kind::idle, 0, 40965);  // bucket 0 again, next revolution
  h.wheel->add(5, Kind::idle, 0, 500);
  std::vector<std::uint32_t> fired;
  h.wheel->expire(30, [&](std::uint32_t slot, Kind) {
    fired.push_back(slot);
    for (std::uint32_t s = 0; s < 6; ++s)
      if (s != slot) h.wheel->remove(s);
  });
  EXPECT_EQ(fired.size(), 1u);
  EXPECT_EQ(h.wheel->size(), 0u);
  for (std::uint32_t now = 31; now < 50000; now += 10) EXPECT_TRUE(h.expire(now).empty()) << now;
}

TEST(TimingWheel, CallbackReschedulesAnotherDueTimer) {
  Default h(8, 10, 0);
  h.wheel->add(0, Kind::idle, 0, 20);
  h.wheel->add(1, Kind::idle, 0, 20);
  std::vector<Fired> fired;
  h.wheel->expire(20, [&](std::uint32_t slot, Kind kind) {
    fired.push_back({slot, kind});
    const std::uint32_t other = 1 - slot;
    if (h.recs[other].timer_list != Kind::none) h.wheel->add(other, Kind::ping, 20, 35);  // moved away
  });
  ASSERT_EQ(fired.size(), 1u);
  const std::uint32_t other = 1 - fired[0].slot;
  EXPECT_EQ(h.wheel->size(), 1u);
  EXPECT_TRUE(h.expire(54).empty());
  EXPECT_EQ(h.expire(55), (std::vector<Fired>{{other, Kind::ping}}));
}

TEST(TimingWheel, CallbackAddsDueTimersThatFireNextCall) {
  // fn adds timers already due (timeout 0, a stale clock, the tick being
  // walked): none fires in this call, all fire in the next.
  Default h(8, 10, 0);
  h.wheel->add(0, Kind::idle, 0, 100);
  int calls = 0;
  h.wheel->expire(200, [&](std::uint32_t slot, Kind) {
    ++calls;
    EXPECT_EQ(slot, 0u);
    h.wheel->add(1, Kind::ping, 200, 0);
    h.wheel->add(2, Kind::ping, 150, 20);  // due 170
    h.wheel->add(3, Kind::ping, 90, 10);   // due 100, the bucket being walked
    h.wheel->add(0, Kind::handshake, 200, 0);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(h.wheel->size(), 4u);
  EXPECT_EQ(h.expire(200),
            (std::vector<Fired>{{0, Kind::handshake}, {1, Kind::ping}, {2, Kind::ping}, {3, Kind::ping}}));
}

// ------------------------------------------------------------------ reference model

// The model keeps 64-bit deadlines on an unwrapped clock; the wheel sees the
// low 32 bits of (clock + offset), so offsets near 2^32 exercise the wrap.
struct Model {
  std::multimap<std::uint64_t, std::uint32_t> by_deadline;
  std::vector<std::optional<std::multimap<std::uint64_t, std::uint32_t>::iterator>> where;
  std::vector<Kind> kinds;

  explicit Model(std::size_t n) : where(n), kinds(n, Kind::none) {}
  void add(std::uint32_t slot, Kind kind, std::uint64_t deadline) {
    remove(slot);
    where[slot] = by_deadline.emplace(deadline, slot);
    kinds[slot] = kind;
  }
  void remove(std::uint32_t slot) {
    if (!where[slot]) return;
    by_deadline.erase(*where[slot]);
    where[slot].reset();
    kinds[slot] = Kind::none;
  }
};

template <std::uint32_t Log2>
void random_run(std::uint32_t seed, std::uint32_t tick_ms, std::uint32_t offset, int ops) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " tick " + std::to_string(tick_ms) + " offset " +
               std::to_string(offset) + " buckets " + std::to_string(1u << Log2));
  constexpr std::uint32_t slots = 300;
  std::mt19937 rng(seed);
  std::uint64_t clock = 0;
  const auto wheel_now = [&] { return static_cast<std::uint32_t>(clock + offset); };
  Harness<Log2> h(slots, tick_ms, wheel_now());
  Model model(slots);
  const std::uint64_t revolution = std::uint64_t{tick_ms} << Log2;

  const auto random_timeout = [&]() -> std::uint64_t {
    switch (rng() % 6) {
      case 0: return 0;
      case 1: return rng() % (2 * tick_ms + 1);
      case 2: return rng() % revolution;
      case 3: return rng() % (3 * revolution + 1);  // several revolutions
      case 4: return revolution * (1 + rng() % 3) + rng() % 3;  // around a revolution's edge
      default: return rng() % 1000;
    }
  };
  const auto random_kind = [&] { return static_cast<Kind>(1 + rng() % 3); };
  const auto add = [&](std::uint32_t slot, std::uint64_t at) {
    const Kind kind = random_kind();
    const std::uint64_t timeout = random_timeout();
    h.wheel->add(slot, kind, static_cast<std::uint32_t>(at + offset), timeout);
    model.add(slot, kind, at + timeout);
  };

  for (int op = 0; op < ops; ++op) {
    const std::uint32_t r = rng() % 100;
    if (r < 45) {
      // Sometimes with a clock a little behind the last expire() (cached).
      const std::uint64_t back = (rng() % 8 == 0) ? std::min<std::uint64_t>(clock, rng() % (3 * tick_ms)) : 0;
      add(rng() % slots, clock - back);
    } else if (r < 65) {
      const std::uint32_t slot = rng() % slots;
      h.wheel->remove(slot);
      model.remove(slot);
    } else {
      switch (rng() % 5) {
        case 0: break;  // the same clock again
        case 1: clock += 1 + rng() % tick_ms; break;
        case 2: clock += tick_ms; break;
        case 3: clock += rng() % (revolution / 2 + 1); break;
        default: clock += rng() % (3 * revolution); break;
      }
      // Due at the start, minus what callbacks cancel or move, must fire;
      // nothing else may, and nothing added during the call.
      std::vector<std::uint32_t> added_now;
      std::vector<Fired> fired;
      h.wheel->expire(wheel_now(), [&](std::uint32_t slot, Kind kind) {
        ASSERT_TRUE(model.where[slot].has_value()) << "fired slot " << slot << " is not scheduled";
        ASSERT_LE((*model.where[slot])->first, clock) << "slot " << slot << " fired early";
        ASSERT_EQ(kind, model.kinds[slot]);
        ASSERT_TRUE(std::find(added_now.begin(), added_now.end(), slot) == added_now.end())
            << "slot " << slot << " added during this call fired in it";
        model.remove(slot);
        fired.push_back({slot, kind});
        for (int k = static_cast<int>(rng() % 4); k > 0; --k) {
          const std::uint32_t other = rng() % slots;
          if (rng() % 2) {
            h.wheel->remove(other);
            model.remove(other);
          } else {
            add(other, clock);
            added_now.push_back(other);
          }
        }
        if (rng() % 3 == 0) {
          add(slot, clock);  // periodic
          added_now.push_back(slot);
        }
      });
      for (auto it = model.by_deadline.begin(); it != model.by_deadline.end() && it->first <= clock; ++it)
        ASSERT_TRUE(std::find(added_now.begin(), added_now.end(), it->second) != added_now.end())
            << "slot " << it->second << " due at " << it->first << " not fired at " << clock;
    }
    ASSERT_EQ(h.wheel->size(), model.by_deadline.size()) << "op " << op;
    for (std::uint32_t s = 0; s < slots; ++s)
      ASSERT_EQ(h.recs[s].timer_list, model.kinds[s]) << "slot " << s << " op " << op;
  }
}

TEST(TimingWheelModel, RandomOpsAgainstMultimap) {
  for (std::uint32_t seed = 1; seed <= 6; ++seed) {
    random_run<3>(seed, 10, 0, 4000);
    random_run<3>(seed, 7, UINT32_MAX - 5000, 4000);
    random_run<6>(seed, 1, UINT32_MAX - 200, 4000);
    random_run<12>(seed, 10, UINT32_MAX - 100000, 4000);
  }
}

}  // namespace
