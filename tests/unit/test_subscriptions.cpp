// server/subscriptions.h: the per-worker pub/sub index.

#include "server/subscriptions.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>


namespace {

using rg::server::SubscriptionIndex;
constexpr std::uint32_t nil = SubscriptionIndex::nil;

std::vector<std::uint32_t> walk_all(SubscriptionIndex& index, std::string_view channel) {
  std::vector<std::uint32_t> out;
  const std::uint32_t c = index.find_channel(channel);
  if (c == nil) return out;
  index.begin_walk(c);
  for (std::uint32_t s; (s = index.next()) != nil;) out.push_back(s);
  index.end_walk();
  return out;
}

TEST(SubscriptionIndex, SubscribeUnsubscribeAndTotals) {
  SubscriptionIndex index;
  index.init(8, 2);
  const std::uint32_t a = index.attach(100);
  const std::uint32_t b = index.attach(101);
  EXPECT_EQ(index.slot_of(a), 100u);
  EXPECT_EQ(index.subscribe(a, "news"), SubscriptionIndex::Added::added);
  EXPECT_EQ(index.subscribe(a, "news"), SubscriptionIndex::Added::already);
  EXPECT_EQ(index.subscribe(b, "news"), SubscriptionIndex::Added::added);
  EXPECT_EQ(index.subscribe(a, "chat"), SubscriptionIndex::Added::added);
  EXPECT_EQ(index.subscribe(a, "third"), SubscriptionIndex::Added::too_many);
  EXPECT_EQ(index.subscriptions(), 3u);
  EXPECT_EQ(index.channels(), 2u);
  EXPECT_EQ(index.channel_subscribers(index.find_channel("news")), 2u);
  EXPECT_EQ(walk_all(index, "news"), (std::vector<std::uint32_t>{a, b}));  // subscription order
  EXPECT_TRUE(index.unsubscribe(a, "news"));
  EXPECT_FALSE(index.unsubscribe(a, "news"));
  EXPECT_FALSE(index.unsubscribe(a, "never"));
  EXPECT_EQ(walk_all(index, "news"), (std::vector<std::uint32_t>{b}));
  index.detach(b);  // leaves "news" empty: the channel goes
  EXPECT_EQ(index.find_channel("news"), nil);
  EXPECT_EQ(index.channels(), 1u);
  index.detach(a);
  EXPECT_EQ(index.subscriptions(), 0u);
  EXPECT_EQ(index.channels(), 0u);
  EXPECT_EQ(index.subscribers(), 0u);
}

TEST(SubscriptionIndex, AttachStopsAtTheMaximum) {
  SubscriptionIndex index;
  index.init(2, 4);
  const std::uint32_t a = index.attach(1);
  EXPECT_NE(index.attach(2), nil);
  EXPECT_EQ(index.attach(3), nil);
  index.detach(a);
  EXPECT_NE(index.attach(3), nil);  // the freed record is reused
}

// Every unsubscribe position relative to a walk's cursor: the walk still
// yields each remaining subscriber exactly once and never a removed one
// after its removal.
TEST(SubscriptionIndex, WalkSurvivesUnsubscribesAroundItsCursor) {
  constexpr std::uint32_t n = 6;
  for (std::uint32_t visited_before = 0; visited_before <= n; ++visited_before) {
    for (std::uint32_t victim = 0; victim < n; ++victim) {
      SubscriptionIndex index;
      index.init(n, 4);
      std::vector<std::uint32_t> subs;
      for (std::uint32_t i = 0; i < n; ++i) {
        subs.push_back(index.attach(i));
        index.subscribe(subs.back(), "c");
      }
      index.begin_walk(index.find_channel("c"));
      std::vector<std::uint32_t> seen;
      for (std::uint32_t i = 0; i < visited_before; ++i) seen.push_back(index.next());
      index.detach(subs[victim]);
      for (std::uint32_t s; (s = index.next()) != nil;) seen.push_back(s);
      index.end_walk();
      const bool victim_seen_before = victim < visited_before;
      std::vector<std::uint32_t> want;
      for (std::uint32_t i = 0; i < n; ++i)
        if (i != victim || victim_seen_before) want.push_back(subs[i]);
      EXPECT_EQ(seen, want) << "visited " << visited_before << " victim " << victim;
    }
  }
}

TEST(SubscriptionIndex, ChannelWalkedWhileItEmptiesIsFreedAfterTheWalk) {
  SubscriptionIndex index;
  index.init(4, 4);
  const std::uint32_t a = index.attach(0);
  index.subscribe(a, "c");
  index.begin_walk(index.find_channel("c"));
  EXPECT_EQ(index.next(), a);
  index.detach(a);
  EXPECT_NE(index.find_channel("c"), nil);  // pinned by the walk
  EXPECT_EQ(index.next(), nil);
  index.end_walk();
  EXPECT_EQ(index.find_channel("c"), nil);
  // A newcomer during a walk is appended and visited by it.
  const std::uint32_t b = index.attach(1);
  index.subscribe(b, "d");
  index.begin_walk(index.find_channel("d"));
  const std::uint32_t c = index.attach(2);
  index.subscribe(c, "d");
  EXPECT_EQ(index.next(), b);
  EXPECT_EQ(index.next(), c);
  EXPECT_EQ(index.next(), nil);
  index.end_walk();
}

TEST(SubscriptionIndex, UsersAndTheirDevices) {
  SubscriptionIndex index;
  index.init(8, 4);
  std::vector<std::uint32_t> alice;
  for (int i = 0; i < 3; ++i) {
    alice.push_back(index.attach(static_cast<std::uint32_t>(i)));
    index.set_user(alice.back(), "alice");
  }
  const std::uint32_t bob = index.attach(9);
  index.set_user(bob, "bob");
  const std::uint32_t u = index.find_user("alice");
  ASSERT_NE(u, nil);
  EXPECT_EQ(index.user_connections(u), 3u);
  std::set<std::uint32_t> devices;
  index.for_each_of_user(u, [&](std::uint32_t s) { devices.insert(s); });
  EXPECT_EQ(devices, (std::set<std::uint32_t>(alice.begin(), alice.end())));
  index.detach(alice[1]);
  EXPECT_EQ(index.user_connections(u), 2u);
  index.detach(alice[0]);
  index.detach(alice[2]);
  EXPECT_EQ(index.find_user("alice"), nil);
  EXPECT_NE(index.find_user("bob"), nil);
}



// The watch a backplane relies on: every subscriber a channel gains or
// loses and every connection of a user, whichever way it goes (unsubscribe,
// detach, a subscribe refused or repeated counts nothing), so that the sum
// of the deltas is always the index's own count.
struct Recorder final : SubscriptionIndex::Watch {
  std::vector<std::string> events;
  std::map<std::string, int> sums;
  void counted(Kind kind, std::string_view name, int delta) override {
    const std::string key = std::string(kind == Kind::channel ? "c:" : "u:") + std::string(name);
    events.push_back((delta > 0 ? "+" : "-") + key);
    sums[key] += delta;
  }
};

TEST(SubscriptionIndex, WatchSeesEveryCountChangeOnce) {
  SubscriptionIndex index;
  Recorder rec;
  index.init(8, 2);
  index.set_watch(&rec);
  const std::uint32_t a = index.attach(1);
  const std::uint32_t b = index.attach(2);
  index.set_user(a, "alice");
  index.set_user(b, "alice");
  index.subscribe(a, "news");
  index.subscribe(b, "news");
  index.subscribe(b, "sport");
  EXPECT_EQ(rec.events, (std::vector<std::string>{"+u:alice", "+u:alice", "+c:news", "+c:news", "+c:sport"}));
  rec.events.clear();
  EXPECT_EQ(index.subscribe(b, "news"), SubscriptionIndex::Added::already);
  EXPECT_EQ(index.subscribe(b, "more"), SubscriptionIndex::Added::too_many);
  EXPECT_FALSE(index.unsubscribe(a, "sport"));
  EXPECT_TRUE(rec.events.empty()) << "nothing changed, nothing told";
  index.unsubscribe(a, "news");
  EXPECT_EQ(rec.events, (std::vector<std::string>{"-c:news"}));
  rec.events.clear();
  // A walk pins the channel's record, not its count.
  index.begin_walk(index.find_channel("sport"));
  index.unsubscribe(b, "sport");
  index.end_walk();
  EXPECT_EQ(rec.events, (std::vector<std::string>{"-c:sport"}));
  index.detach(a);
  index.detach(b);
  for (const auto& [name, sum] : rec.sums) EXPECT_EQ(sum, 0) << name;
  const std::uint32_t c = index.attach(3);
  index.subscribe(c, "news");
  EXPECT_EQ(rec.sums["c:news"], 1);
}

}  // namespace
