// server/subscriptions.h: the per-worker pub/sub index, and the API
// listener's request-head parser (control/api_request.h).

#include "server/subscriptions.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "control/api_request.h"

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

// ---------------------------------------------------------------- API requests

using rg::server::ApiParse;
using rg::server::ApiRequest;

TEST(ApiRequest, HeadsSplitAtEveryByte) {
  struct Case {
    const char* name;
    std::string head;
    ApiParse::Status status;
    int error = 0;
    std::uint64_t length = 0;
    bool keep_alive = true;
  } cases[] = {
      {"post", "POST /publish/a HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", ApiParse::Status::complete, 0, 12},
      {"get_close", "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", ApiParse::Status::complete, 0, 0, false},
      {"http10", "GET / HTTP/1.0\r\n\r\n", ApiParse::Status::complete, 0, 0, false},
      {"bad_length", "POST /p HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", ApiParse::Status::error, 400},
      {"two_lengths", "POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", ApiParse::Status::error,
       400},
      {"no_colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", ApiParse::Status::error, 400},
      {"http2", "GET / HTTP/2.0\r\n\r\n", ApiParse::Status::error, 505},
      {"request_line", "GET  HTTP/1.1\r\n\r\n", ApiParse::Status::error, 400},
      {"huge", "GET / HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n", ApiParse::Status::error, 431},
  };
  for (const auto& c : cases) {
    for (std::size_t cut = 1; cut <= c.head.size(); cut += c.head.size() > 200 ? 97 : 1) {
      ApiRequest req;
      const ApiParse partial = rg::server::parse_api_request(std::string_view(c.head).substr(0, cut), req);
      if (cut < c.head.size() && partial.status == ApiParse::Status::complete) {
        ADD_FAILURE() << c.name << " complete before its end at " << cut;
      }
    }
    ApiRequest req;
    const ApiParse p = rg::server::parse_api_request(c.head + "body", req);
    ASSERT_EQ(p.status, c.status) << c.name;
    if (p.status == ApiParse::Status::error) {
      EXPECT_EQ(p.error_status, c.error) << c.name;
      EXPECT_FALSE(p.error_reason.empty()) << c.name;
      continue;
    }
    EXPECT_EQ(req.content_length, c.length) << c.name;
    EXPECT_EQ(req.keep_alive, c.keep_alive) << c.name;
    EXPECT_EQ(req.head_bytes, c.head.size()) << c.name;
  }
}

TEST(ApiRequest, PathAuthorizationAndSecrets) {
  ApiRequest req;
  ASSERT_EQ(rg::server::parse_api_request("POST /users/al/send?x=1 HTTP/1.1\r\nauthorization:  Bearer t0k \r\n"
                                          "Transfer-Encoding: chunked\r\n\r\n",
                                          req)
                .status,
            ApiParse::Status::complete);
  EXPECT_EQ(req.path(), "/users/al/send");
  EXPECT_EQ(req.authorization, "Bearer t0k");
  EXPECT_TRUE(req.chunked);
  EXPECT_TRUE(rg::server::same_secret("abc", "abc"));
  EXPECT_FALSE(rg::server::same_secret("abc", "abd"));
  EXPECT_FALSE(rg::server::same_secret("abc", "abcd"));
}

}  // namespace
