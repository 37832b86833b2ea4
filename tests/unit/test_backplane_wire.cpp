// The Redis backplane's wire (proto/backplane.h): keys for channels and
// users, the message codec, the backplane URL.  Table-driven; the same rows
// seed tests/fuzz/corpus/fuzz_backplane.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proto/backplane.h"

namespace {

using namespace rg::proto::backplane;

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TEST(BackplaneWire, KeysCarryTheNameInAHashTag) {
  EXPECT_EQ(key(Target::channel, "news"), "rg:{c:news}");
  EXPECT_EQ(key(Target::user, "alice"), "rg:{u:alice}");
  struct Row {
    const char* key;
    bool ok;
    Target target;
    const char* name;
  };
  const Row rows[] = {
      {"rg:{c:news}", true, Target::channel, "news"},
      {"rg:{u:alice}", true, Target::user, "alice"},
      {"rg:{c:a.b:c-d_e}", true, Target::channel, "a.b:c-d_e"},
      {"rg:{c:}", false, Target::channel, ""},      // no name
      {"rg:{x:news}", false, Target::channel, ""},  // not ours
      {"rg:{c:news", false, Target::channel, ""},   // unclosed
      {"rg:{c:a b}", false, Target::channel, ""},   // not a valid name
      {"rg:{c:a}b}", false, Target::channel, ""},
      {"news", false, Target::channel, ""},
      {"", false, Target::channel, ""},
  };
  for (const Row& r : rows) {
    const Key k = parse_key(r.key);
    EXPECT_EQ(k.ok, r.ok) << r.key;
    if (!r.ok) continue;
    EXPECT_EQ(k.target, r.target) << r.key;
    EXPECT_EQ(k.name, r.name) << r.key;
    EXPECT_EQ(key(k.target, k.name), r.key);
  }
}

TEST(BackplaneWire, MessagesRoundTripAndBadOnesSayWhy) {
  const std::string body("{\"a\":1}\n\0\xff", 10);
  const std::string wire = encode("18c2f1-7", bytes(body));
  EXPECT_EQ(wire, std::string("rg1 18c2f1-7\n") + body);
  const Message m = decode(bytes(wire));
  ASSERT_TRUE(m.ok) << m.error;
  EXPECT_EQ(m.id, "18c2f1-7");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.body.data()), m.body.size()), body);

  const Message empty = decode(bytes("rg1 x\n"));
  ASSERT_TRUE(empty.ok);
  EXPECT_TRUE(empty.body.empty());

  struct Bad {
    std::string wire;
    const char* says;
  };
  const Bad bad[] = {
      {"hello", "no \"rg1 \" prefix"},
      {"", "no \"rg1 \" prefix"},
      {"rg2 x\nbody", "no \"rg1 \" prefix"},
      {"rg1 " + std::string(129, 'a') + "\nbody", "newline within 128 bytes"},
      {"rg1 x", "newline within 128 bytes"},
      {"rg1 \nbody", "not a valid name"},
      {"rg1 a b\nbody", "not a valid name"},
  };
  for (const Bad& b : bad) {
    const Message r = decode(bytes(b.wire));
    EXPECT_FALSE(r.ok) << b.wire;
    EXPECT_NE(std::string(r.error).find(b.says), std::string::npos) << b.wire << ": " << r.error;
  }
  // 128 bytes of id is the most a name may be, and fine.
  EXPECT_TRUE(decode(bytes("rg1 " + std::string(128, 'a') + "\nbody")).ok);
}

TEST(BackplaneWire, Urls) {
  struct Row {
    const char* url;
    bool ok;
    const char* host;
    std::uint16_t port;
    const char* says;
  };
  const Row rows[] = {
      {"redis://127.0.0.1:6379", true, "127.0.0.1", 6379, ""},
      {"redis://redis.internal", true, "redis.internal", 6379, ""},
      {"redis://redis.internal/", true, "redis.internal", 6379, ""},
      {"redis://[::1]:7000", true, "::1", 7000, ""},
      {"redis://[::1]", true, "::1", 6379, ""},
      {"redis://h:1", true, "h", 1, ""},
      {"redis://h:65535", true, "h", 65535, ""},
      {"redis://h:0", false, "", 0, "from 1 to 65535"},
      {"redis://h:65536", false, "", 0, "from 1 to 65535"},
      {"redis://h:", false, "", 0, "from 1 to 65535"},
      {"redis://h:x1", false, "", 0, "from 1 to 65535"},
      {"redis://::1:6379", false, "", 0, "in brackets"},
      {"redis://[::1:6379", false, "", 0, "closing ']'"},
      {"redis://[::1]x", false, "", 0, "':PORT'"},
      {"redis://", false, "", 0, "a host is needed"},
      {"redis://user:pw@h:6379", false, "", 0, "a host is needed"},
      {"redis://h:6379/0", false, "", 0, "a host is needed"},
      {"rediss://h:6379", false, "", 0, "off, redis://"},
      {"redis://a:1,b:2", false, "", 0, "redis-cluster://HOST:PORT,HOST:PORT"},
      {"redis-cluster://h:7000", true, "h", 7000, ""},
      {"redis-cluster://[::1]:7000,h:7001/", true, "::1", 7000, ""},
      {"redis-cluster://h:7000,", false, "", 0, "a host is needed"},
      {"redis-cluster://,h:7000", false, "", 0, "a host is needed"},
      {"redis-cluster://h:70000", false, "", 0, "from 1 to 65535"},
      {"redis-cluster://h:7,[[x]:700", false, "", 0, "a host is needed"},  // a fuzz finding: '[' inside brackets
      {"redis://h\x01st:1", false, "", 0, "visible ASCII"},
      {"h:6379", false, "", 0, "off, redis://"},
  };
  for (const Row& r : rows) {
    Address a;
    std::string error;
    EXPECT_EQ(parse_url(r.url, a, error), r.ok) << r.url << ": " << error;
    if (r.ok) {
      ASSERT_FALSE(a.endpoints.empty()) << r.url;
      EXPECT_EQ(a.endpoints[0].host, r.host) << r.url;
      EXPECT_EQ(a.endpoints[0].port, r.port) << r.url;
      EXPECT_EQ(a.cluster, std::string_view(r.url).starts_with("redis-cluster://")) << r.url;
    } else {
      EXPECT_NE(error.find(r.says), std::string::npos) << r.url << ": " << error;
    }
  }
}

TEST(BackplaneWire, ClusterUrlsKeepEverySeedInOrderUpToSixteen) {
  Address a;
  std::string error;
  ASSERT_TRUE(parse_url("redis-cluster://127.0.0.1:7000,[::1]:7001,r3", a, error)) << error;
  ASSERT_EQ(a.endpoints.size(), 3u);
  EXPECT_EQ(a.endpoints[1].host, "::1");
  EXPECT_EQ(a.endpoints[1].port, 7001);
  EXPECT_EQ(a.endpoints[2].port, 6379);
  EXPECT_EQ(describe(a), "redis-cluster://127.0.0.1:7000,[::1]:7001,r3:6379");
  std::string sixteen = "redis-cluster://h:1";
  for (int i = 2; i <= 16; ++i) sixteen += ",h:" + std::to_string(i);
  EXPECT_TRUE(parse_url(sixteen, a, error)) << error;
  EXPECT_FALSE(parse_url(sixteen + ",h:17", a, error));
  EXPECT_NE(error.find("at most 16"), std::string::npos) << error;
}

// Slots as Redis computes them (CLUSTER KEYSLOT on redis-server 7.0, and
// the cluster specification's CRC16 check value for "123456789").
TEST(BackplaneWire, SlotsHashTheTagLikeRedisCluster) {
  struct Row {
    const char* key;
    std::uint16_t slot;
  };
  const Row rows[] = {
      {"123456789", 12739},  // 0x31C3, the CRC16 check value
      {"foo", 12182},
      {"bar", 5061},
      {"", 0},
      {"{foo}.anything", 12182},
      {"x{foo}y{bar}", 12182},     // the first tag only
      {"{}foo", 9500},             // an empty tag: the whole key
      {"foo{", 7673},              // no closing brace: the whole key
      {"rg:{c:news}", 3985},
  };
  for (const Row& r : rows) EXPECT_EQ(slot(r.key), r.slot) << r.key;
  // A name's channel, registry hash and the name's own tag share a slot.
  EXPECT_EQ(slot(key(Target::channel, "news")), slot("c:news"));
  EXPECT_EQ(slot(registry_key(Target::channel, "news")), slot(key(Target::channel, "news")));
  EXPECT_EQ(slot(registry_key(Target::user, "alice")), slot(key(Target::user, "alice")));
  EXPECT_NE(slot(key(Target::user, "news")), slot(key(Target::channel, "news")));
}

TEST(BackplaneWire, RedirectsNameTheSlotAndWhereItWent) {
  struct Row {
    const char* error;
    Redirect::Kind kind;
    std::uint16_t slot;
    const char* host;
    std::uint16_t port;
  };
  using K = Redirect::Kind;
  const Row rows[] = {
      {"MOVED 3999 127.0.0.1:6381", K::moved, 3999, "127.0.0.1", 6381},
      {"ASK 16383 10.0.0.2:7000", K::ask, 16383, "10.0.0.2", 7000},
      {"MOVED 0 :7002", K::moved, 0, "", 7002},
      {"MOVED 12 ::1:7003", K::moved, 12, "::1", 7003},
      {"MOVED 12 [::1]:7003", K::moved, 12, "::1", 7003},
      {"MOVED 12 redis-2.internal:7003", K::moved, 12, "redis-2.internal", 7003},
      {"MOVED 16384 h:1", K::none, 0, "", 0},
      {"MOVED 1 h:0", K::none, 0, "", 0},
      {"MOVED 1 h:65536", K::none, 0, "", 0},
      {"MOVED 1 h", K::none, 0, "", 0},
      {"MOVED x h:1", K::none, 0, "", 0},
      {"MOVED  h:1", K::none, 0, "", 0},
      {"MOVED 123456 h:1", K::none, 0, "", 0},
      {"CROSSSLOT Keys in request don't hash to the same slot", K::none, 0, "", 0},
      {"CLUSTERDOWN The cluster is down", K::none, 0, "", 0},
      {"moved 1 h:1", K::none, 0, "", 0},
      {"", K::none, 0, "", 0},
  };
  for (const Row& r : rows) {
    const Redirect got = parse_redirect(r.error);
    EXPECT_EQ(got.kind, r.kind) << r.error;
    if (r.kind == K::none) continue;
    EXPECT_EQ(got.slot, r.slot) << r.error;
    EXPECT_EQ(got.to.host, r.host) << r.error;
    EXPECT_EQ(got.to.port, r.port) << r.error;
  }
}

}  // namespace

namespace {

TEST(BackplaneWire, RegistryKeysShareTheNamesSlotAndInstancesNameTheirNode) {
  EXPECT_EQ(registry_key(Target::channel, "news"), "rg:{c:news}:nodes");
  EXPECT_EQ(registry_key(Target::user, "alice"), "rg:{u:alice}:nodes");
  EXPECT_EQ(instance("node-1.example:8080", 1765100000123), "node-1.example:8080/1765100000123");
  EXPECT_EQ(node_key("n1/42"), "rg:{n:n1/42}");
  struct Row {
    const char* instance;
    const char* node;
  };
  const Row rows[] = {
      {"n1/42", "n1"}, {"node-1.example:8080/1765100000123", "node-1.example:8080"},
      {"n1/", ""}, {"/42", ""}, {"n1", ""}, {"n 1/42", ""}, {"n1/4x2", ""}, {"", ""},
  };
  for (const Row& r : rows) EXPECT_EQ(instance_node(r.instance), r.node) << r.instance;
}

}  // namespace
