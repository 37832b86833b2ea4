// The admin listener's limits, without sockets: who gets a slot
// (control/admin_clients.h) and the brake on wrong tokens
// (control/auth_throttle.h).

#include <gtest/gtest.h>

#include <vector>

#include "control/admin_clients.h"
#include "control/auth_throttle.h"

namespace {

using namespace rg::server;

PeerAddress addr(std::uint8_t last) {
  PeerAddress p;
  p.bytes[10] = p.bytes[11] = 0xFF;
  p.bytes[12] = 10;
  p.bytes[15] = last;
  return p;
}

AdminClient client(std::uint8_t peer, AdminPhase phase, std::uint64_t since_ms, bool health = false) {
  AdminClient c;
  c.peer = addr(peer);
  c.phase = phase;
  c.since_ms = since_ms;
  c.health = health;
  return c;
}

AdminLimits small() {
  AdminLimits l;
  l.clients_max = 8;
  l.health_reserve = 2;
  l.per_ip_max = 3;
  return l;
}

TEST(AdminSlots, FreeSlotsAdmitUntilTheAddressHoldsItsShare) {
  std::vector<AdminClient> cs;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(admit(cs, addr(1), small()).kind, Admission::Kind::admit);
    cs.push_back(client(1, AdminPhase::head, 10));
  }
  EXPECT_EQ(admit(cs, addr(1), small()).kind, Admission::Kind::per_ip);
  EXPECT_EQ(admit(cs, addr(2), small()).kind, Admission::Kind::admit);
  AdminLimits unlimited = small();
  unlimited.per_ip_max = 0;
  EXPECT_EQ(admit(cs, addr(1), unlimited).kind, Admission::Kind::admit);
}

TEST(AdminSlots, WhenFullTheLongestWaitingUncommittedConnectionMakesRoom) {
  std::vector<AdminClient> cs = {
      client(1, AdminPhase::body, 1),       // committed: never evicted, however old
      client(2, AdminPhase::answering, 2),  // committed
      client(3, AdminPhase::head, 50),
      client(4, AdminPhase::waiting, 30),   // kept alive since 30: the longest wait
      client(5, AdminPhase::held, 40),
      client(6, AdminPhase::head, 60),
      client(7, AdminPhase::head, 70),
      client(8, AdminPhase::head, 80),
  };
  const Admission a = admit(cs, addr(9), small());
  ASSERT_EQ(a.kind, Admission::Kind::evict);
  EXPECT_EQ(a.victim, 3u);
  cs[3].phase = AdminPhase::body;
  const Admission b = admit(cs, addr(9), small());
  ASSERT_EQ(b.kind, Admission::Kind::evict);
  EXPECT_EQ(b.victim, 4u);  // the held answer (a throttled token) goes next
  for (auto& c : cs) c.phase = AdminPhase::answering;
  EXPECT_EQ(admit(cs, addr(9), small()).kind, Admission::Kind::full);
}

TEST(AdminSlots, HealthReserve) {
  const AdminLimits l = small();  // 8 slots, 2 reserved: 6 general
  std::vector<AdminClient> cs;
  for (int i = 0; i < 5; ++i) cs.push_back(client(static_cast<std::uint8_t>(i), AdminPhase::body, 1));
  EXPECT_TRUE(general_slot_free(cs, l));
  cs.push_back(client(6, AdminPhase::answering, 1));
  EXPECT_FALSE(general_slot_free(cs, l));
  // Health checks and uncommitted connections do not count.
  cs.back().health = true;
  cs.push_back(client(7, AdminPhase::head, 1));
  cs.push_back(client(8, AdminPhase::held, 1));
  EXPECT_TRUE(general_slot_free(cs, l));
}

TEST(AdminSlots, BodyDeadlineScalesWithSize) {
  AdminLimits l;
  l.request_timeout_ms = 10'000;
  l.body_bytes_per_s_min = 256 * 1024;
  EXPECT_EQ(l.request_deadline_ms(1'000, 0), 11'000u);
  EXPECT_EQ(l.request_deadline_ms(1'000, 64 * 1024), 11'250u);
  EXPECT_EQ(l.request_deadline_ms(1'000, 16 * 1024 * 1024), 75'000u);
}

TEST(AuthThrottle, FailuresOverTheLimitInTheWindowAreThrottled) {
  AuthThrottle t;
  for (std::uint32_t i = 0; i < AuthThrottle::failures_max; ++i) EXPECT_FALSE(t.fail(addr(1), 1'000 + i).throttled);
  const AuthThrottle::Verdict v = t.fail(addr(1), 21'000);
  EXPECT_TRUE(v.throttled);
  EXPECT_EQ(v.retry_after_s, 40u);  // the window began at 1 s and lasts 60 s
  EXPECT_TRUE(t.fail(addr(1), 60'999).throttled);
  EXPECT_EQ(t.fail(addr(1), 60'999).retry_after_s, 1u);
  EXPECT_FALSE(t.fail(addr(2), 30'000).throttled) << "per address";
  // The window ends: a fresh count.
  EXPECT_FALSE(t.fail(addr(1), 61'000).throttled);
}

TEST(AuthThrottle, MemoryIsBoundedAndTheOldestWindowMakesRoom) {
  AuthThrottle t;
  for (std::uint32_t i = 0; i < AuthThrottle::failures_max + 1; ++i) (void)t.fail(addr(0), 0);
  for (std::size_t i = 1; i < AuthThrottle::addresses_max; ++i) {
    PeerAddress p = addr(0);
    p.bytes[13] = static_cast<std::uint8_t>(i >> 8);
    p.bytes[14] = static_cast<std::uint8_t>(i);
    (void)t.fail(p, 100 + i);
  }
  EXPECT_EQ(t.tracked(), AuthThrottle::addresses_max);
  EXPECT_TRUE(t.fail(addr(0), 1'000).throttled);
  (void)t.fail(addr(250), 2'000);  // a new address: replaces the oldest window, addr(0)'s
  EXPECT_EQ(t.tracked(), AuthThrottle::addresses_max);
  EXPECT_FALSE(t.fail(addr(0), 2'001).throttled);
}

}  // namespace
