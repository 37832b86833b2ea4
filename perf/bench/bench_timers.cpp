// Timers at density: base::TimingWheel (10 ms tick) against
// base::DeadlineLists, with up to 1,000,000 timers live in a vector of
// 16-byte records.
//
// - *_Reschedule: cancel one live timer and schedule it again (what a
//   connection does on every read), slots in random order, so at 1M live
//   most of the cost is the cache misses on the record and its neighbours.
//   The wheel gets random 0-90 s timeouts, or one 90 s timeout (then every
//   timer is in one bucket); DeadlineLists only the latter.
// - *_Tick: one 10 ms tick, 1M live with deadlines spread evenly over 90 s;
//   every fired timer is scheduled again 90 s on (steady state: ~111 fire
//   per tick).  The wheel with 4096 buckets (the default, a 41 s
//   revolution) and 65536 (655 s).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "base/deadline_lists.h"
#include "base/timing_wheel.h"

namespace {

enum class Kind : std::uint8_t { none, idle };

struct Rec {
  std::uint32_t timer_prev = UINT32_MAX;
  std::uint32_t timer_next = UINT32_MAX;
  std::uint32_t deadline_ms = 0;
  Kind timer_list = Kind::none;
};
static_assert(sizeof(Rec) == 16);

using Wheel = rg::base::TimingWheel<Rec, Kind>;
using Lists = rg::base::DeadlineLists<Rec, Kind, 2>;

constexpr std::uint32_t tick_ms = 10;
constexpr std::uint32_t spread_ms = 90000;

std::vector<std::uint32_t> shuffled_slots(std::uint32_t n) {
  std::vector<std::uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  std::shuffle(v.begin(), v.end(), std::mt19937(42));
  return v;
}

// Timeouts: each a random 0..90 s, or all 90 s.
enum class Timeouts { spread, fixed };

void BM_Wheel_Reschedule(benchmark::State& state, Timeouts timeouts) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  std::vector<Rec> recs(n);
  auto wheel = std::make_unique<Wheel>();
  wheel->bind(recs.data(), tick_ms, 0);
  std::mt19937 rng(7);
  std::vector<std::uint32_t> timeout(4096, spread_ms);
  if (timeouts == Timeouts::spread)
    for (auto& t : timeout) t = rng() % spread_ms;
  for (std::uint32_t s = 0; s < n; ++s) wheel->add(s, Kind::idle, 0, timeout[s % timeout.size()]);
  const std::vector<std::uint32_t> order = shuffled_slots(n);
  std::size_t i = 0;
  for (auto _ : state) {
    const std::uint32_t slot = order[i % n];
    wheel->remove(slot);
    wheel->add(slot, Kind::idle, 0, timeout[i % timeout.size()]);
    ++i;
  }
  benchmark::DoNotOptimize(recs.data());
  if (wheel->size() != n) state.SkipWithError("lost timers");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK_CAPTURE(BM_Wheel_Reschedule, spread_timeouts, Timeouts::spread)->Arg(1000)->Arg(1000000);
BENCHMARK_CAPTURE(BM_Wheel_Reschedule, fixed_timeout, Timeouts::fixed)->Arg(1000)->Arg(1000000);

void BM_DeadlineLists_Reschedule(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  std::vector<Rec> recs(n);
  Lists lists;
  lists.bind(recs.data());
  for (std::uint32_t s = 0; s < n; ++s) lists.add(s, Kind::idle, 0, spread_ms);
  const std::vector<std::uint32_t> order = shuffled_slots(n);
  std::size_t i = 0;
  for (auto _ : state) {
    const std::uint32_t slot = order[i % n];
    lists.remove(slot);
    lists.add(slot, Kind::idle, 0, spread_ms);
    ++i;
  }
  benchmark::DoNotOptimize(recs.data());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DeadlineLists_Reschedule)->Arg(1000)->Arg(1000000);

// 1M live, deadlines evenly over the next 90 s, slots in random order.
// Each call walks two buckets (the tick that ended and the one under way);
// with 4096 buckets (a 41 s revolution) each holds the timers of about 2.2
// ticks' worth of revolutions, with 65536 (655 s) only those of its tick.
template <std::uint32_t BucketsLog2>
void BM_Wheel_Tick(benchmark::State& state) {
  using W = rg::base::TimingWheel<Rec, Kind, BucketsLog2>;
  const auto n = static_cast<std::uint32_t>(state.range(0));
  std::vector<Rec> recs(n);
  auto wheel = std::make_unique<W>();
  wheel->bind(recs.data(), tick_ms, 0);
  const std::vector<std::uint32_t> order = shuffled_slots(n);
  for (std::uint32_t i = 0; i < n; ++i)
    wheel->add(order[i], Kind::idle, 0, std::uint64_t{i} * spread_ms / n);
  std::uint32_t now = 0;
  std::int64_t fired = 0;
  for (auto _ : state) {
    now += tick_ms;
    wheel->expire(now, [&](std::uint32_t slot, Kind kind) {
      ++fired;
      wheel->add(slot, kind, now, spread_ms);
    });
  }
  if (wheel->size() != n) state.SkipWithError("lost timers");
  state.counters["fired_per_tick"] = benchmark::Counter(static_cast<double>(fired), benchmark::Counter::kAvgIterations);
}
BENCHMARK_TEMPLATE(BM_Wheel_Tick, 12)->Arg(1000000);
BENCHMARK_TEMPLATE(BM_Wheel_Tick, 16)->Arg(1000000);

// The same load on one DeadlineLists list: possible only because every
// timeout is the same 90 s.
void BM_DeadlineLists_Tick(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  std::vector<Rec> recs(n);
  Lists lists;
  lists.bind(recs.data());
  const std::vector<std::uint32_t> order = shuffled_slots(n);
  // Appended in deadline order, as the list requires.
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto at = static_cast<std::uint32_t>(std::uint64_t{i} * spread_ms / n);
    lists.add(order[i], Kind::idle, at - spread_ms, spread_ms);
  }
  std::uint32_t now = 0;
  std::int64_t fired = 0;
  for (auto _ : state) {
    now += tick_ms;
    for (std::uint32_t slot; (slot = lists.pop_expired(Kind::idle, now)) != Lists::nil;) {
      ++fired;
      lists.add(slot, Kind::idle, now, spread_ms);
    }
  }
  state.counters["fired_per_tick"] = benchmark::Counter(static_cast<double>(fired), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_DeadlineLists_Tick)->Arg(1000000);

}  // namespace

BENCHMARK_MAIN();
