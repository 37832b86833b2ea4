// The echo data path makes no heap allocation per message: malloc, calloc
// and realloc are interposed (glibc's __libc_* do the work) and counted
// while a warmed-up Session, on a worker-style pool and scratch, echoes
// messages of every size class, whole, split across reads, and fragmented.
// Its own executable, so the interposition touches nothing else; skipped in
// sanitizer builds, which intercept malloc themselves.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "proto/segments.h"
#include "proto/ws_session.h"
#include "heap_calls.h"
#include "test_support.h"


namespace {

using namespace rg::proto::ws;
using rg::test::Bytes;
namespace t = rg::test;

class Echo final : public MessageHandler {
 public:
  void on_message(Session& s, Opcode opcode, std::span<const std::uint8_t> payload) override {
    ++messages;
    bytes += payload.size();
    if (!s.queue_message(opcode, payload)) ++refused;
  }
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  std::uint64_t refused = 0;
};

struct Case {
  const char* name;
  std::size_t payload;
  std::size_t read;  // bytes per feed (0: whole)
  bool fragmented;   // sent as three frames
};

class NoHeap : public ::testing::TestWithParam<Case> {};

TEST_P(NoHeap, EchoInSteadyStateAllocatesNothing) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "sanitizers intercept malloc";
#else
  const Case& c = GetParam();
  rg::proto::SegmentPool pool;
  pool.init(4096, 1024);
  std::vector<std::uint8_t> scratch(1024 * 1024);
  Echo echo;
  Session s;
  ASSERT_TRUE(s.init({}, &echo, &pool, scratch));
  Bytes payload(c.payload);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 13);
  Bytes stream;
  if (c.fragmented) {
    const std::size_t third = c.payload / 3;
    t::append(stream, t::encode_frame({0x2, false, Bytes(payload.begin(), payload.begin() + third)}));
    t::append(stream, t::encode_frame({0x0, false, Bytes(payload.begin() + third, payload.begin() + 2 * third)}));
    t::append(stream, t::encode_frame({0x0, true, Bytes(payload.begin() + 2 * third, payload.end())}));
  } else {
    stream = t::encode_frame(t::binary(payload));
  }
  std::array<iovec, 16> iov{};
  std::uint64_t out_bytes = 0;
  const auto round = [&] {
    const std::size_t step = c.read ? c.read : stream.size();
    for (std::size_t at = 0; at < stream.size(); at += step) {
      const std::size_t n = std::min(step, stream.size() - at);
      ASSERT_EQ(s.feed({stream.data() + at, n}), Session::FeedResult::ok);
    }
    for (;;) {
      const std::size_t used = s.next_output(iov);
      if (used == 0) break;
      std::size_t sent = 0;
      for (std::size_t i = 0; i < used; ++i) sent += iov[i].iov_len;
      s.output_sent(sent);
      out_bytes += sent;
    }
  };
  for (int i = 0; i < 3; ++i) round();  // warm: the pool fills its free list
  const std::uint64_t before = rg::test::heap_calls.load();
  constexpr int rounds = 200;
  for (int i = 0; i < rounds; ++i) round();
  const std::uint64_t calls = rg::test::heap_calls.load() - before;
  EXPECT_EQ(calls, 0u) << calls << " heap calls over " << rounds << " echoes";
  EXPECT_EQ(echo.messages, static_cast<std::uint64_t>(rounds + 3));
  EXPECT_EQ(echo.bytes, (rounds + 3) * c.payload) << "every byte reached the handler";
  EXPECT_EQ(echo.refused, 0u);
  EXPECT_GE(out_bytes, (rounds + 3) * c.payload);
  EXPECT_EQ(pool.live(), 0u) << "an idle session holds no segment";
  EXPECT_TRUE(s.quiescent());
#endif
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, NoHeap,
    ::testing::Values(Case{"tiny", 20, 0, false}, Case{"one_segment", 4000, 0, false},
                      Case{"several_segments", 20000, 0, false}, Case{"large", 256 * 1024, 0, false},
                      Case{"split_reads", 5000, 1000, false}, Case{"byte_reads", 300, 1, false},
                      Case{"fragmented", 12000, 0, true}, Case{"fragmented_split", 12000, 777, true}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

}  // namespace
