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
      {"rediss://h:6379", false, "", 0, "off or redis://"},
      {"redis-cluster://h:7000", false, "", 0, "off or redis://"},
      {"h:6379", false, "", 0, "off or redis://"},
  };
  for (const Row& r : rows) {
    Address a;
    std::string error;
    EXPECT_EQ(parse_url(r.url, a, error), r.ok) << r.url << ": " << error;
    if (r.ok) {
      EXPECT_EQ(a.host, r.host) << r.url;
      EXPECT_EQ(a.port, r.port) << r.url;
    } else {
      EXPECT_NE(error.find(r.says), std::string::npos) << r.url << ": " << error;
    }
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
