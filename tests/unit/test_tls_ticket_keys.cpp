// The session-ticket key file's format (server/tls_context.h), table-driven.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/tls_context.h"

namespace {

using rg::server::parse_ticket_keys;
using rg::server::TlsContext;

std::string key_bytes(char fill) {
  std::string k(TlsContext::ticket_key_bytes, fill);
  k[0] = fill;  // the name's first byte tells keys apart
  return k;
}

struct Case {
  const char* what;
  std::string bytes;
  std::size_t keys;      // 0: refused
  const char* message;   // in the error when refused
};

TEST(TicketKeys, FileFormat) {
  const std::vector<Case> cases = {
      {"empty", "", 0, "holds 0 bytes"},
      {"one byte short", std::string(79, 'a'), 0, "holds 79 bytes; it must hold 1 to 16 keys of 80 bytes each"},
      {"one key", key_bytes('a'), 1, ""},
      {"two keys", key_bytes('a') + key_bytes('b'), 2, ""},
      {"a key and a half", key_bytes('a') + std::string(40, 'b'), 0, "holds 120 bytes"},
      {"sixteen keys", [] {
         std::string s;
         for (char c = 'a'; c < 'a' + 16; ++c) s += key_bytes(c);
         return s;
       }(), 16, ""},
      {"seventeen keys", std::string(17 * 80, 'x'), 0, "holds 1360 bytes"},
      {"the same name twice", key_bytes('a') + key_bytes('a'), 0, "two keys with the same 16-byte name"},
  };
  for (const Case& c : cases) {
    std::vector<TlsContext::TicketKey> keys;
    std::string error;
    const bool ok = parse_ticket_keys(c.bytes, "/etc/ringgate/tickets.key", keys, error);
    EXPECT_EQ(ok, c.keys > 0) << c.what << ": " << error;
    if (ok) {
      EXPECT_EQ(keys.size(), c.keys) << c.what;
    } else {
      EXPECT_NE(error.find(c.message), std::string::npos) << c.what << ": " << error;
      // Every refusal says how to make a good file.
      EXPECT_NE(error.find("head -c 80 /dev/urandom > /etc/ringgate/tickets.key"), std::string::npos) << c.what;
    }
  }
}

TEST(TicketKeys, LayoutIsNameThenHmacThenAes) {
  std::string bytes(80, '\0');
  for (int i = 0; i < 80; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>(i);
  std::vector<TlsContext::TicketKey> keys;
  std::string error;
  ASSERT_TRUE(parse_ticket_keys(bytes, "k", keys, error)) << error;
  EXPECT_EQ(keys[0].name[0], 0);
  EXPECT_EQ(keys[0].name[15], 15);
  EXPECT_EQ(keys[0].hmac[0], 16);
  EXPECT_EQ(keys[0].hmac[31], 47);
  EXPECT_EQ(keys[0].aes[0], 48);
  EXPECT_EQ(keys[0].aes[31], 79);
}

}  // namespace
