// proto/segments.h: the pooled segments echo output and message reassembly
// live in.  Table-driven: each case appends a list of messages and consumes
// the stream in steps of every size from 1 byte to all of it, checking the
// bytes, the message counts and that every segment goes back to the pool.

#include "proto/segments.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

namespace {

using rg::proto::SegmentPool;
using rg::proto::SegmentQueue;
using Bytes = std::vector<std::uint8_t>;

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 7);
  return b;
}

struct Case {
  const char* name;
  std::uint32_t segment_size;
  std::vector<std::size_t> header_and_payload;  // pairs: header bytes, payload bytes
};

class SegmentStream : public ::testing::TestWithParam<Case> {};

TEST_P(SegmentStream, EveryConsumeStepGivesTheBytesBackInOrder) {
  const Case& c = GetParam();
  Bytes want;
  std::vector<std::pair<Bytes, Bytes>> messages;
  for (std::size_t i = 0; i + 1 < c.header_and_payload.size(); i += 2) {
    messages.emplace_back(pattern(c.header_and_payload[i], static_cast<std::uint8_t>(i)),
                          pattern(c.header_and_payload[i + 1], static_cast<std::uint8_t>(i + 100)));
    want.insert(want.end(), messages.back().first.begin(), messages.back().first.end());
    want.insert(want.end(), messages.back().second.begin(), messages.back().second.end());
  }
  for (std::size_t step = 1; step <= want.size(); ++step) {
    SegmentPool pool;
    pool.init(c.segment_size, 4);
    SegmentQueue q;
    for (const auto& [h, p] : messages) {
      const std::span<const std::uint8_t> parts[2] = {h, p};
      ASSERT_TRUE(q.append(pool, parts, true));
    }
    ASSERT_EQ(q.bytes(), want.size());
    ASSERT_EQ(q.messages(), messages.size());
    ASSERT_EQ(pool.live(), q.segments());
    // Whole segments: ceil(bytes / capacity), since appends fill the tail first.
    ASSERT_EQ(q.segments(), (want.size() + pool.capacity() - 1) / pool.capacity()) << step;
    Bytes linear(want.size());
    q.copy_to(linear.data());
    ASSERT_EQ(linear, want);
    Bytes got;
    std::uint32_t last_messages = q.messages();
    while (!q.empty()) {
      std::array<iovec, 3> iov{};
      const std::size_t n = q.gather(iov, step);
      ASSERT_GT(n, 0u);
      std::size_t taken = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const auto* b = static_cast<const std::uint8_t*>(iov[i].iov_base);
        got.insert(got.end(), b, b + iov[i].iov_len);
        taken += iov[i].iov_len;
      }
      ASSERT_LE(taken, step);
      q.consume(pool, taken);
      ASSERT_LE(q.messages(), last_messages) << "pending messages never grow while draining";
      last_messages = q.messages();
      ASSERT_EQ(pool.live(), q.segments());
    }
    EXPECT_EQ(got, want) << "step " << step;
    EXPECT_EQ(q.messages(), 0u);
    EXPECT_EQ(q.segments(), 0u);
    EXPECT_EQ(pool.live(), 0u) << "a drained queue owns no segment";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Streams, SegmentStream,
    ::testing::Values(Case{"one_small", 1024, {2, 20}}, Case{"exactly_one_segment", 1024, {2, 998}},
                      Case{"one_over", 1024, {2, 999}}, Case{"header_at_boundary", 1024, {2, 998, 4, 10}},
                      Case{"header_split", 1024, {2, 997, 4, 10}}, Case{"spans_three", 1024, {10, 2500}},
                      Case{"many_small", 1024, {2, 100, 2, 100, 2, 100, 2, 100, 2, 100, 2, 100, 2, 100, 2, 100,
                                                2, 100, 2, 100, 2, 100}},
                      Case{"mixed", 1024, {2, 5, 4, 1500, 2, 0, 10, 3000, 2, 1}}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(SegmentQueue, AppendWhileTheHeadIsHandedOutLeavesThoseBytesAlone) {
  // The kernel reads the gathered bytes while more are appended behind them.
  SegmentPool pool;
  pool.init(1024, 4);
  SegmentQueue q;
  const Bytes a = pattern(600, 1);
  const Bytes b = pattern(900, 2);
  ASSERT_TRUE(q.append(pool, a));
  std::array<iovec, 4> iov{};
  ASSERT_EQ(q.gather(iov, 1 << 20), 1u);
  const auto* before = static_cast<const std::uint8_t*>(iov[0].iov_base);
  const Bytes snapshot(before, before + iov[0].iov_len);
  ASSERT_TRUE(q.append(pool, b));
  EXPECT_EQ(Bytes(before, before + iov[0].iov_len), snapshot);
  EXPECT_EQ(iov[0].iov_base, q.front().data()) << "segments never move";
  q.consume(pool, iov[0].iov_len);
  EXPECT_EQ(q.bytes(), b.size());
  q.clear(pool);
}

TEST(SegmentQueue, AUnitIsAppendedWholeOrNotAtAll) {
  SegmentPool pool;
  pool.init(1024, 8, /*live_max=*/2);
  SegmentQueue q;
  ASSERT_TRUE(q.append(pool, pattern(1500, 3)));  // two segments, the second half full
  const std::uint64_t before = q.bytes();
  const Bytes big = pattern(1000, 4);              // needs a third segment
  const std::span<const std::uint8_t> parts[1] = {big};
  EXPECT_FALSE(q.append(pool, parts, true));
  EXPECT_EQ(q.bytes(), before);
  EXPECT_EQ(q.messages(), 0u);
  EXPECT_EQ(pool.live(), 2u);
  EXPECT_TRUE(q.append(pool, pattern(400, 5))) << "what fits the tail still goes";
  EXPECT_TRUE(q.append(pool, pattern(1000, 6), /*capped=*/false)) << "control frames may pass the cap";
  EXPECT_EQ(pool.live(), 3u);
  q.clear(pool);
  EXPECT_EQ(pool.live(), 0u);
}

TEST(SegmentPool, KeepsWhatItFreesUpToItsLimitAndReusesIt) {
  SegmentPool pool;
  pool.init(2048, 2);
  EXPECT_EQ(pool.capacity(), 2048u - sizeof(rg::proto::Segment));
  std::array<rg::proto::Segment*, 4> s{};
  for (auto& p : s) ASSERT_NE(p = pool.take(), nullptr);
  EXPECT_EQ(pool.allocations_total(), 4u);
  for (auto* p : s) pool.give(p);
  EXPECT_EQ(pool.cached(), 2u) << "beyond keep_free_max, freed segments go back to the allocator";
  EXPECT_EQ(pool.memory_bytes(), 2u * 2048u);
  for (int i = 0; i < 100; ++i) {
    rg::proto::Segment* a = pool.take();
    rg::proto::Segment* b = pool.take();
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(a->begin, 0u);
    EXPECT_EQ(a->end, 0u);
    pool.give(a);
    pool.give(b);
  }
  EXPECT_EQ(pool.allocations_total(), 4u) << "steady state allocates nothing";
}

}  // namespace
