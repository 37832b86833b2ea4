// Micro-benchmarks for server/subscriptions.h, the per-worker pub/sub index:
// what a fan-out pays per recipient (the walk), what a subscribe and an
// unsubscribe cost on a big channel, and a connection leaving 64 channels.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "server/subscriptions.h"

namespace {

using rg::server::SubscriptionIndex;

// `subscribers` connections on one channel.
void fill(SubscriptionIndex& index, std::uint32_t subscribers, std::vector<std::uint32_t>& subs) {
  index.init(subscribers + 1, 64);
  subs.clear();
  for (std::uint32_t i = 0; i < subscribers; ++i) {
    subs.push_back(index.attach(i));
    index.subscribe(subs.back(), "market.acme");
  }
}

// Per recipient: next() plus the slot lookup a delivery needs.
void BM_WalkPerRecipient(benchmark::State& state) {
  SubscriptionIndex index;
  std::vector<std::uint32_t> subs;
  fill(index, static_cast<std::uint32_t>(state.range(0)), subs);
  const std::uint32_t channel = index.find_channel("market.acme");
  std::uint64_t visited = 0;
  for (auto _ : state) {
    index.begin_walk(channel);
    for (std::uint32_t s; (s = index.next()) != SubscriptionIndex::nil;) {
      benchmark::DoNotOptimize(index.slot_of(s));
      ++visited;
    }
    index.end_walk();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(visited));
}
BENCHMARK(BM_WalkPerRecipient)->Arg(10'000)->Arg(1'000'000);

// Unsubscribe then subscribe again, on a channel of N: O(1) in N (the
// subscriber's own list is one entry long here).
void BM_ResubscribeOnBigChannel(benchmark::State& state) {
  SubscriptionIndex index;
  std::vector<std::uint32_t> subs;
  fill(index, static_cast<std::uint32_t>(state.range(0)), subs);
  std::size_t i = 0;
  for (auto _ : state) {
    const std::uint32_t s = subs[i++ % subs.size()];
    index.unsubscribe(s, "market.acme");
    index.subscribe(s, "market.acme");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResubscribeOnBigChannel)->Arg(1'000)->Arg(1'000'000);

// A connection with 64 subscriptions arrives and leaves (what a reconnect
// storm costs the index per connection).
void BM_AttachSubscribe64Detach(benchmark::State& state) {
  SubscriptionIndex index;
  index.init(1024, 64);
  std::vector<std::string> names;
  for (int c = 0; c < 64; ++c) names.push_back("room." + std::to_string(c));
  // Other members keep the channels alive, as in a real deployment.
  for (std::uint32_t i = 0; i < 64; ++i) {
    const std::uint32_t s = index.attach(i);
    for (const auto& n : names) index.subscribe(s, n);
  }
  for (auto _ : state) {
    const std::uint32_t s = index.attach(999);
    for (const auto& n : names) index.subscribe(s, n);
    index.detach(s);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AttachSubscribe64Detach);

}  // namespace

BENCHMARK_MAIN();
