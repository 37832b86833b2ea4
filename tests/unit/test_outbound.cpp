// Admission at the upgrade (server/admission.h) and the Outbound account
// with its one slow-consumer policy (server/outbound.h): both pure, so both
// are tables.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "server/admission.h"
#include "server/outbound.h"

namespace {

using rg::server::admit_upgrade;
using rg::server::Book;
using rg::server::Config;
using rg::server::Outbound;
using rg::server::Refusal;
using rg::server::SlowConsumerPolicy;
using rg::server::UpgradeFigures;
using rg::server::WorkerCounters;

// ------------------------------------------------------------------ admit_upgrade

struct AdmitCase {
  std::string name;
  UpgradeFigures figures;
  std::optional<Refusal> want;
};

UpgradeFigures figures(bool kernel, std::uint64_t buffered, std::uint64_t max_buffered, std::uint32_t percent,
                       std::uint64_t open, std::uint64_t max_open) {
  UpgradeFigures f;
  f.kernel_refuse = kernel;
  f.buffered_bytes = buffered;
  f.max_buffered_bytes = max_buffered;
  f.refuse_percent = percent;
  f.open_connections = open;
  f.max_connections = max_open;
  return f;
}

class AdmitUpgrade : public ::testing::TestWithParam<AdmitCase> {};

TEST_P(AdmitUpgrade, Decides) {
  const AdmitCase& c = GetParam();
  const std::optional<Refusal> got = admit_upgrade(c.figures);
  ASSERT_EQ(got.has_value(), c.want.has_value()) << c.name;
  if (got) {
    EXPECT_EQ(*got, *c.want) << c.name << ": " << rg::server::refusal_name(*got);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, AdmitUpgrade,
    ::testing::ValuesIn(std::vector<AdmitCase>{
        {"room everywhere", figures(false, 0, 1000, 95, 1, 10), std::nullopt},
        {"the newcomer is the last allowed", figures(false, 0, 1000, 95, 10, 10), std::nullopt},
        {"one past max_connections", figures(false, 0, 1000, 95, 11, 10), Refusal::max_connections},
        {"buffered just under the line", figures(false, 949, 1000, 95, 1, 10), std::nullopt},
        {"buffered at the line", figures(false, 950, 1000, 95, 1, 10), Refusal::buffered_bytes},
        {"buffered over the budget", figures(false, 5000, 1000, 95, 1, 10), Refusal::buffered_bytes},
        {"a zero budget refuses", figures(false, 0, 0, 95, 1, 10), Refusal::buffered_bytes},
        {"kernel first, whatever else", figures(true, 5000, 1000, 95, 11, 10), Refusal::kernel_budget},
        {"buffered before max_connections", figures(false, 5000, 1000, 95, 11, 10), Refusal::buffered_bytes},
        {"100 percent: only the full budget refuses", figures(false, 999, 1000, 100, 1, 10), std::nullopt},
        {"no overflow near the top of u64 counts", figures(false, 0, 1000, 95, UINT64_MAX, UINT64_MAX - 1),
         Refusal::max_connections},
    }),
    [](const ::testing::TestParamInfo<AdmitCase>& i) { return "case" + std::to_string(i.index); });

// ------------------------------------------------------------------ Outbound

Config config_with(SlowConsumerPolicy policy, std::uint32_t frame_buffer_size = 4096) {
  Config c;
  c.slow_consumer_policy = policy;
  c.frame_buffer_size = frame_buffer_size;  // backpressure above 4096 bytes...
  c.buffer_drain_threshold = 0.5;           // ...and off at 2048
  c.slow_consumer_close_code = 1013;
  return c;
}

struct Fixture {
  explicit Fixture(SlowConsumerPolicy policy, std::uint64_t budget = 1 << 20) {
    out.init(config_with(policy), budget, counters);
  }
  WorkerCounters counters;
  Outbound out;
};

TEST(Outbound, SettleMovesTotalsByTheDifference) {
  Fixture f(SlowConsumerPolicy::close);
  Book a;
  Book b;
  // Each step: which book, its bytes and messages now, the worker's totals after.
  struct Step {
    Book* book;
    std::uint64_t bytes;
    std::uint32_t messages;
    std::uint64_t total_bytes;
    std::uint64_t total_messages;
  };
  const std::vector<Step> steps = {
      {&a, 100, 1, 100, 1}, {&b, 50, 2, 150, 3}, {&a, 30, 1, 80, 3}, {&b, 0, 0, 30, 1}, {&a, 0, 0, 0, 0},
  };
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    EXPECT_EQ(f.out.settle(*s.book, s.bytes, s.messages, true, 0), Outbound::Change::none) << "step " << i;
    EXPECT_EQ(f.out.buffered_bytes(), s.total_bytes) << "step " << i;
    EXPECT_EQ(f.counters.buffered_bytes.load(), s.total_bytes) << "step " << i;
    EXPECT_EQ(f.counters.messages_pending.load(), s.total_messages) << "step " << i;
  }
  EXPECT_EQ(f.counters.buffered_max_connection_bytes.load(), 100u);
}

TEST(Outbound, BackpressureStartsAboveTheLineAndEndsAtTheDrainThreshold) {
  // (bytes settled, open, the change expected, backpressured after)
  struct Step {
    std::uint64_t bytes;
    bool open;
    Outbound::Change change;
    bool backpressured;
  };
  const std::vector<Step> steps = {
      {4096, true, Outbound::Change::none, false},             // at the line: not above it
      {4097, false, Outbound::Change::none, false},            // above, but not open (closing): no backpressure
      {4097, true, Outbound::Change::backpressure_on, true},   // above and open
      {8000, true, Outbound::Change::none, true},              // more: still on, no second activation
      {2049, true, Outbound::Change::none, true},              // drained, but not to half
      {2048, true, Outbound::Change::backpressure_off, false}, // half: off
      {4097, true, Outbound::Change::backpressure_on, true},   // and on again
  };
  Fixture f(SlowConsumerPolicy::close);
  Book b;
  std::uint32_t now = 0;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    now += 10;
    EXPECT_EQ(f.out.settle(b, steps[i].bytes, 1, steps[i].open, now), steps[i].change) << "step " << i;
    EXPECT_EQ(b.backpressured, steps[i].backpressured) << "step " << i;
  }
  EXPECT_EQ(f.counters.backpressure_activations_total.load(), 2u);
  EXPECT_EQ(f.counters.backpressured_connections.load(), 1u);
  EXPECT_EQ(f.counters.backpressure_ms.count.load(), 1u);  // one episode ended
  EXPECT_TRUE(f.out.still_over(b));
  f.out.forget(b, now + 10);
  EXPECT_EQ(f.out.buffered_bytes(), 0u);
  EXPECT_EQ(f.counters.backpressured_connections.load(), 0u);
  EXPECT_EQ(f.counters.backpressure_ms.count.load(), 2u);  // forgetting ends the episode too
  EXPECT_FALSE(b.backpressured);
}

struct AdmitStep {
  bool backpressured;       // the book's state when admit() is asked
  std::uint64_t bytes;      // the new message
  std::uint64_t held;       // what the worker holds now
  Outbound::Verdict want;
};

struct PolicyCase {
  std::string name;
  SlowConsumerPolicy policy;
  std::vector<AdmitStep> steps;  // on one book, in order
  std::uint64_t closes;          // slow_consumer_closes_total after
  std::uint64_t drops;           // slow_consumer_drops_total after
  std::uint64_t budget_hits;     // buffer_budget_hits_total after
};

class Policy : public ::testing::TestWithParam<PolicyCase> {};

TEST_P(Policy, OnePolicyForEveryMessage) {
  const PolicyCase& c = GetParam();
  Fixture f(c.policy, /*budget=*/1000);
  Book b;
  for (std::size_t i = 0; i < c.steps.size(); ++i) {
    b.backpressured = c.steps[i].backpressured;
    EXPECT_EQ(f.out.admit(b, c.steps[i].bytes, c.steps[i].held), c.steps[i].want) << c.name << " step " << i;
  }
  EXPECT_EQ(f.counters.slow_consumer_closes_total.load(), c.closes) << c.name;
  EXPECT_EQ(f.counters.slow_consumer_drops_total.load(), c.drops) << c.name;
  EXPECT_EQ(f.counters.buffer_budget_hits_total.load(), c.budget_hits) << c.name;
  EXPECT_EQ(f.out.slow_close_code(), 1013);
}

using V = Outbound::Verdict;
INSTANTIATE_TEST_SUITE_P(
    Table, Policy,
    ::testing::ValuesIn(std::vector<PolicyCase>{
        {"room: queued", SlowConsumerPolicy::close, {{false, 100, 0, V::queue}, {false, 500, 500, V::queue}}, 0, 0, 0},
        {"exactly the budget fits", SlowConsumerPolicy::close, {{false, 400, 600, V::queue}}, 0, 0, 0},
        {"one byte over the budget closes once, then drops", SlowConsumerPolicy::close,
         {{false, 401, 600, V::close}, {false, 1, 0, V::drop}, {true, 1, 0, V::drop}}, 1, 0, 1},
        {"backpressured closes once", SlowConsumerPolicy::close, {{true, 1, 0, V::close}, {true, 1, 0, V::drop}}, 1, 0,
         0},
        {"drop policy drops and counts each", SlowConsumerPolicy::drop,
         {{true, 1, 0, V::drop}, {false, 2000, 0, V::drop}, {false, 1, 0, V::queue}}, 0, 2, 1},
    }),
    [](const ::testing::TestParamInfo<PolicyCase>& i) { return "case" + std::to_string(i.index); });

TEST(Outbound, HeldIsTheLargerOfBytesAndSegmentMemory) {
  Fixture f(SlowConsumerPolicy::close);
  Book b;
  (void)f.out.settle(b, 300, 1, true, 0);
  EXPECT_EQ(f.out.held(0), 300u);
  EXPECT_EQ(f.out.held(4096), 4096u);  // many short messages in whole segments
}

}  // namespace
